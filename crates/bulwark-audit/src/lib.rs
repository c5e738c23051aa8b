//! Seeing and proving: `bulwark report` and `bulwark audit`.
//!
//! Owns: the data-path table of DATA-PATHS.md computed from the live configuration
//! (`datapath`), DATA-PATHS.md itself (`contract`), the run state shared with `serve`
//! (`runstate`: which listeners this version serves, what a running server bound),
//! the probes that connect to the running listeners and record what they
//! really offer (`probe`), and the best-practice checks with their findings (`checks`,
//! `dns`, `finding`). Everything reads the same typed `LoadedConfig` that `serve` runs,
//! so what is reported cannot drift from what is configured; the probes then show
//! whether what runs matches it.
//!
//! Must not: change anything. Probes only ask questions a client may ask (greeting,
//! capabilities, STARTTLS, an AUTH cancelled before any credential, a RCPT followed by
//! RSET) and never send a password or a message. DNS checks use only the resolver
//! they are given.

pub mod checks;
pub mod contract;
pub mod datapath;
pub mod dns;
pub mod finding;
pub mod probe;
pub mod runstate;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bulwark_config::{Config, ConfigError, DnsConfig, Issue, LoadedConfig, CONFIG_FILE};

pub use datapath::{DataPath, Report};
pub use finding::{Finding, Severity, FINDING_IDS};
pub use runstate::{availability, Availability, RunState};

/// Why an audit or report could not run at all (findings are not errors).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// `--probe` was asked for but no live server wrote the run state.
    #[error("the server is not running ({0} has no live listeners.json); start `bulwark serve`, or leave out --probe")]
    NotRunning(String),
    /// The resolver for the DNS checks could not be built.
    #[error("DNS: {0}")]
    Dns(String),
}

/// Loads `DIR/bulwark.toml` for auditing: a file that does not parse is an error, but
/// one that parses and breaks validation rules is returned with its issues, so the
/// audit can report them next to everything else.
pub fn load_lenient(dir: &Path) -> Result<(LoadedConfig, Vec<Issue>), ConfigError> {
    match Config::load(dir) {
        Ok(c) => Ok((c, Vec::new())),
        Err(ConfigError::Invalid { file, issues }) => {
            let path = dir.join(CONFIG_FILE);
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                file: file.clone(),
                dir: dir.display().to_string(),
                source,
            })?;
            let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
                file: file.clone(),
                line: 0,
                column: 0,
                message: e.message().to_string(),
            })?;
            Ok((
                LoadedConfig {
                    dir: dir.to_path_buf(),
                    file: path,
                    config,
                },
                issues,
            ))
        }
        Err(e) => Err(e),
    }
}

/// The data-path report; with `probe`, every running listener is probed.
pub async fn report(cfg: &LoadedConfig, probe: bool) -> Result<Report, AuditError> {
    let run = RunState::read(&cfg.run_dir());
    let mut r = datapath::build(cfg, run.as_ref());
    if probe {
        let run = run.ok_or_else(|| AuditError::NotRunning(cfg.run_dir().display().to_string()))?;
        let probes = probe::probe_all(cfg, &run).await;
        attach(&mut r, probes);
    }
    Ok(r)
}

fn attach(r: &mut Report, probes: Vec<probe::ListenerProbe>) {
    for p in probes {
        if let Some(row) = r.data_paths.iter_mut().find(|d| {
            d.category == "listener" && d.listener == Some(p.listener) && d.probe.is_none()
        }) {
            row.probe = Some(p);
        }
    }
}

/// Which resolver the DNS checks use.
#[derive(Debug, Clone)]
pub enum DnsTarget {
    /// A resolver at this address (tests: a loopback DNS server).
    Server(SocketAddr),
    /// `[dns] resolvers`, else /etc/resolv.conf.
    Configured,
}

/// What `bulwark audit` should check beyond the files.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Probe every running listener (needs a running server).
    pub probe: bool,
    /// Run the DNS checks of our domains with this resolver; `None`: skip them.
    pub dns: Option<DnsTarget>,
    /// Our domains (from the store), for the DNS checks.
    pub domains: Vec<String>,
    /// DKIM selectors we sign with.
    pub dkim_selectors: Vec<String>,
    /// Unix seconds "now" (certificate validity).
    pub now: i64,
    /// PEM bundle of trusted roots for `cert-untrusted`.
    pub roots: PathBuf,
}

/// Runs every check; findings sorted most severe first.
pub async fn audit(
    cfg: &LoadedConfig,
    issues: &[Issue],
    opts: &AuditOptions,
) -> Result<Vec<Finding>, AuditError> {
    let mut findings = checks::check_config(cfg, issues, opts.now, &opts.roots);
    if opts.probe {
        let run = RunState::read(&cfg.run_dir())
            .ok_or_else(|| AuditError::NotRunning(cfg.run_dir().display().to_string()))?;
        let probes = probe::probe_all(cfg, &run).await;
        findings.extend(checks::probe_findings(&probes));
    }
    if let Some(target) = &opts.dns {
        let dns_cfg = match target {
            DnsTarget::Server(a) => DnsConfig {
                resolvers: vec![*a],
            },
            DnsTarget::Configured => cfg.config.dns.clone(),
        };
        let r = bulwark_dns::resolver(&dns_cfg).map_err(|e| AuditError::Dns(e.to_string()))?;
        findings.extend(
            dns::check_domains(
                &r,
                &opts.domains,
                &opts.dkim_selectors,
                &cfg.config.server.hostname,
                &bulwark_senderauth::record::recommended_spf(&cfg.config).record(),
            )
            .await,
        );
        let host = &cfg.config.server.hostname;
        let helo = bulwark_senderauth::record::helo_record_needed(host, &opts.domains)
            .then(|| bulwark_senderauth::record::recommended_helo_spf(&cfg.config).record());
        findings.extend(dns::check_helo(&r, host, helo.as_deref()).await);
    }
    finding::sort(&mut findings);
    Ok(findings)
}
