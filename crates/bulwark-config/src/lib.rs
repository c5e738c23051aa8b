//! The typed configuration of a Bulwark server (`DIR/bulwark.toml`).
//!
//! Owns: the file format, every field's secure default, validation with messages that
//! name the file, the key and the fix, and the commented template `bulwark init` writes.
//! The same typed value feeds `serve`, `report` and `audit`, so what is reported can
//! never drift from what runs.
//!
//! Must not: touch the network, the store or certificates (checking that a certificate
//! file is valid belongs to `bulwark-tls`; this crate only says where it is).
//!
//! Layout: one module per section, each owning its struct, defaults and template
//! fragment, so work on one protocol touches one file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod auth;
pub mod dns;
pub mod imap;
pub mod listeners;
pub mod observe;
pub mod outbound;
pub mod pop3;
pub mod senderauth;
pub mod server;
pub mod smtp;
pub mod store;
pub mod template;
pub mod tls;

pub use auth::AuthConfig;
pub use dns::DnsConfig;
pub use imap::ImapConfig;
pub use listeners::{ListenerConfig, ListenerKind, Listeners, TlsMode};
pub use observe::{metrics_exposed, LogConfig, MetricsConfig};
pub use outbound::{ConnectorConfig, OutboundConfig, TlsLevel};
pub use pop3::Pop3Config;
pub use senderauth::SenderAuthConfig;
pub use server::{Role, ServerConfig};
pub use smtp::{AcceptPolicy, LocalFromAction, Requirement, SmtpConfig};
pub use store::{StoreBackend, StoreConfig};
pub use template::TemplateParams;
pub use tls::{TlsConfig, TlsVersion};

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "bulwark.toml";

/// The whole configuration. Every section except `[server]` may be omitted and then
/// takes its secure default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: hostname, role, shutdown grace, the user to drop to.
    pub server: ServerConfig,
    /// `[tls]`: the certificate every TLS listener presents and the version floor.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[store]`: where accounts, mailboxes, messages and the queue live.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[listeners.*]`: the addresses and limits of every port.
    #[serde(default)]
    pub listeners: Listeners,
    /// `[auth]`: the password-check limiter.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[smtp]`: receiving and submission limits and policy.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// `[imap]`: IMAP limits.
    #[serde(default)]
    pub imap: ImapConfig,
    /// `[pop3]`: POP3 timeouts.
    #[serde(default)]
    pub pop3: Pop3Config,
    /// `[outbound]`: the queue, delivery limits and connectors.
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// `[senderauth]`: SPF, Sender ID, DKIM and DMARC actions and DKIM signing.
    #[serde(default)]
    pub senderauth: SenderAuthConfig,
    /// `[dns]`: the resolvers for MX, SPF, DKIM and DMARC lookups.
    #[serde(default)]
    pub dns: DnsConfig,
    /// `[log]`: the server log and the protocol logs with their rotation.
    #[serde(default)]
    pub log: LogConfig,
    /// `[metrics]`: the scrape endpoint's bearer token.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// A configuration together with the directory it was loaded from; relative paths in
/// the file are resolved against that directory.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The data directory; relative paths in the file are resolved against it.
    pub dir: PathBuf,
    /// The configuration file (`DIR/bulwark.toml`).
    pub file: PathBuf,
    /// What the file says, validated.
    pub config: Config,
}

impl LoadedConfig {
    /// Resolves a path from the configuration against the data directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        resolve(&self.dir, p)
    }
    /// `[tls] cert`, resolved against the data directory.
    pub fn cert_path(&self) -> PathBuf {
        self.path(&self.config.tls.cert)
    }
    /// `[tls] key`, resolved against the data directory.
    pub fn key_path(&self) -> PathBuf {
        self.path(&self.config.tls.key)
    }
    /// `[store] path`, resolved against the data directory.
    pub fn store_path(&self) -> PathBuf {
        self.path(&self.config.store.path)
    }
    /// `[log] dir` (the protocol logs), resolved against the data directory.
    pub fn log_dir(&self) -> PathBuf {
        self.path(&self.config.log.dir)
    }
    /// Where `serve` writes runtime state such as the addresses it actually bound.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

/// Resolves `p` against `dir` unless it is absolute.
pub fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Something wrong with the configuration, phrased for the administrator who must fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read (missing: `init` was not run).
    #[error("{file}: cannot read: {source}\n  fix: run `bulwark init --dir {dir}` to create it, or pass the right --dir")]
    Read {
        /// The configuration file.
        file: String,
        /// The data directory, for the `init` hint.
        dir: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The configuration file (only used in messages).
        file: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// The file parses but some values are wrong or contradict each other.
    #[error("{file}: {}", format_issues(.issues))]
    Invalid {
        /// The configuration file (only used in messages).
        file: String,
        /// Every problem found, not just the first.
        issues: Vec<Issue>,
    },
}

/// One semantic problem: which key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The dotted key, e.g. `smtp.max_message_size`.
    pub key: String,
    /// What is wrong with its value.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
}

impl Issue {
    /// An issue with `key`, what is wrong, and the fix.
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Issue {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}\n  fix: {}", self.key, self.problem, self.fix)
    }
}

fn format_issues(issues: &[Issue]) -> String {
    let mut out = format!("{} problem(s)", issues.len());
    for i in issues {
        out.push_str("\n- ");
        out.push_str(&i.to_string());
    }
    out
}

impl Config {
    /// Parses and validates configuration text. `file` is only used in messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Syntax {
                file: file.to_string(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        let issues = config.validate();
        if issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: file.to_string(),
                issues,
            })
        }
    }

    /// Loads `DIR/bulwark.toml`.
    pub fn load(dir: &Path) -> Result<LoadedConfig, ConfigError> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            file: file.display().to_string(),
            dir: dir.display().to_string(),
            source,
        })?;
        let config = Config::parse(&text, &file.display().to_string())?;
        Ok(LoadedConfig {
            dir: dir.to_path_buf(),
            file,
            config,
        })
    }

    /// Semantic checks that serde cannot express. Each section checks itself.
    pub fn validate(&self) -> Vec<Issue> {
        let mut issues = Vec::new();
        self.server.validate(&mut issues);
        self.tls.validate(&mut issues);
        self.store.validate(&mut issues);
        self.listeners.validate(&mut issues);
        self.auth.validate(&mut issues);
        self.smtp.validate(&mut issues);
        self.imap.validate(&mut issues);
        self.pop3.validate(&mut issues);
        self.outbound.validate(&mut issues);
        self.senderauth.validate(&mut issues);
        self.dns.validate(&mut issues);
        self.log.validate(&mut issues);
        self.metrics.validate(&self.listeners.metrics, &mut issues);
        issues
    }

    /// A configuration with every default and the given host name: what a fresh
    /// `bulwark init` means.
    pub fn with_defaults(hostname: &str) -> Config {
        Config {
            server: ServerConfig {
                hostname: hostname.to_string(),
                role: Role::default(),
                shutdown_grace_secs: 30,
                user: None,
                group: None,
            },
            tls: TlsConfig::default(),
            store: StoreConfig::default(),
            listeners: Listeners::default(),
            auth: AuthConfig::default(),
            smtp: SmtpConfig::default(),
            imap: ImapConfig::default(),
            pop3: Pop3Config::default(),
            outbound: OutboundConfig::default(),
            senderauth: SenderAuthConfig::default(),
            dns: DnsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

/// True when a host name is syntactically a DNS name we can put in a certificate and a
/// greeting: letters, digits, hyphens and dots, no empty label, at most 253 octets.
pub fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_takes_secure_defaults() {
        let c = Config::parse("[server]\nhostname = \"mail.example.test\"\n", "t.toml").unwrap();
        assert_eq!(c, Config::with_defaults("mail.example.test"));
        assert_eq!(c.tls.min_version, TlsVersion::V1_2);
        assert!(c.auth.limiter_enabled);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = "[server]\nhostname = \"mail.example.test\"\n\n[tls]\ncertificate = \"x\"\n";
        let err = Config::parse(text, "bulwark.toml").unwrap_err().to_string();
        assert!(err.starts_with("bulwark.toml:5:"), "{err}");
        assert!(err.contains("unknown field `certificate`"), "{err}");
    }

    #[test]
    fn bad_address_is_a_syntax_error_with_position() {
        let text = "[server]\nhostname = \"m.example.test\"\n[listeners.smtp]\nbind = [\"300.1.1.1:25\"]\n";
        let err = Config::parse(text, "f").unwrap_err().to_string();
        assert!(err.starts_with("f:4:"), "{err}");
        assert!(err.contains("invalid socket address"), "{err}");
    }

    #[test]
    fn invalid_hostname_is_reported_with_fix() {
        let err = Config::parse("[server]\nhostname = \"bad host\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`server.hostname`"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn tls_below_1_2_is_refused() {
        let err = Config::parse(
            "[server]\nhostname = \"m.example.test\"\n[tls]\nmin_version = \"1.1\"\n",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("f:4:"), "{err}");
    }

    #[test]
    fn hostname_rules() {
        assert!(is_valid_hostname("mail.example.test"));
        assert!(is_valid_hostname("localhost"));
        assert!(!is_valid_hostname("-a.example"));
        assert!(!is_valid_hostname("a..example"));
        assert!(!is_valid_hostname("a b"));
        assert!(!is_valid_hostname(""));
    }
}
