//! `bulwark audit`: the configuration, certificate, file permissions and (with
//! `--probe`) the running listeners, (with `--dns`) our domains' DNS records, checked
//! against best practice. Exit code 1 when a finding at or above `--fail-on` exists,
//! 2 when the audit itself could not run.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use bulwark_audit::{AuditOptions, DnsTarget, Severity};

#[derive(clap::Args)]
pub struct AuditArgs {
    /// JSON instead of text.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// A Markdown table.
    #[arg(long)]
    markdown: bool,
    /// Exit 1 when a finding of this severity or worse exists: critical, high,
    /// medium, low, info.
    #[arg(long, value_name = "SEVERITY", default_value = "critical")]
    fail_on: Severity,
    /// Also probe the running listeners (the server must be running).
    #[arg(long)]
    probe: bool,
    /// Check that our domains publish MX, SPF, DKIM and DMARC records, asking the
    /// resolver at ADDR:PORT, or `config` for [dns] resolvers / /etc/resolv.conf.
    #[arg(long, value_name = "ADDR:PORT|config")]
    dns: Option<String>,
    /// DKIM selector we sign with (repeatable). Default: `[senderauth.signing]
    /// selector` with `-rsa` and `-ed25519` (what `bulwark dkim generate` publishes).
    #[arg(long = "dkim-selector", value_name = "SELECTOR")]
    dkim_selectors: Vec<String>,
}

pub fn run(dir: &Path, args: AuditArgs) -> anyhow::Result<ExitCode> {
    match audit(dir, &args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("bulwark audit: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn audit(dir: &Path, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let (cfg, issues) = bulwark_audit::load_lenient(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dns = match args.dns.as_deref() {
        None => None,
        Some("config") => Some(DnsTarget::Configured),
        Some(a) => Some(DnsTarget::Server(a.parse::<SocketAddr>().map_err(
            |_| anyhow::anyhow!("--dns {a:?}: expected ADDR:PORT (e.g. 127.0.0.1:53) or `config`"),
        )?)),
    };
    let domains = if dns.is_some() {
        let store = super::open_store(&cfg)?;
        super::block_on_value(store.list_domains())??
            .into_iter()
            .map(|d| d.name)
            .collect()
    } else {
        Vec::new()
    };
    let dkim_selectors = if args.dkim_selectors.is_empty() {
        // `bulwark dkim generate` publishes <selector>-rsa and <selector>-ed25519.
        let sel = &cfg.config.senderauth.signing.selector;
        vec![format!("{sel}-rsa"), format!("{sel}-ed25519")]
    } else {
        args.dkim_selectors.clone()
    };
    let opts = AuditOptions {
        probe: args.probe,
        dns,
        domains,
        dkim_selectors,
        now: super::now_unix(),
        roots: bulwark_audit::checks::system_roots(),
    };
    let findings = super::block_on_value(bulwark_audit::audit(&cfg, &issues, &opts))??;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&bulwark_audit::finding::render_json(&findings))?
        );
    } else if args.markdown {
        print!("{}", bulwark_audit::finding::render_markdown(&findings));
    } else {
        print!("{}", bulwark_audit::finding::render_text(&findings));
    }
    let failing = findings.iter().any(|f| f.severity >= args.fail_on);
    Ok(if failing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
