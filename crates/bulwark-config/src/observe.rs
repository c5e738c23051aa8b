//! `[log]` and `[metrics]`: what the server records about itself (SPEC §9).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Issue, ListenerConfig};

/// `[log]`: the server log on stderr and the per-listener protocol logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Minimum level of the server log on stderr: error, warn, info, debug, trace.
    #[serde(default = "default_level")]
    pub level: String,
    /// `text` or `json` for the server log.
    #[serde(default)]
    pub format: LogFormat,
    /// Directory of the protocol logs (per listener, enabled per listener with
    /// `protocol_log = true`). Passwords and AUTH payloads are always redacted.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// A protocol log file is rotated when it reaches this size (octets)…
    #[serde(default = "default_rotate_size")]
    pub rotate_size: u64,
    /// …or this age (seconds).
    #[serde(default = "default_rotate_age")]
    pub rotate_age_secs: u64,
    /// Rotated files kept per listener.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

/// How the server log on stderr is written (`[log] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

fn default_level() -> String {
    "info".to_string()
}
fn default_dir() -> PathBuf {
    PathBuf::from("log")
}
fn default_rotate_size() -> u64 {
    64 * 1024 * 1024
}
fn default_rotate_age() -> u64 {
    24 * 3600
}
fn default_keep() -> u32 {
    14
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            format: LogFormat::Text,
            dir: default_dir(),
            rotate_size: default_rotate_size(),
            rotate_age_secs: default_rotate_age(),
            keep: default_keep(),
        }
    }
}

impl LogConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if !["error", "warn", "info", "debug", "trace"].contains(&self.level.as_str()) {
            issues.push(Issue::new(
                "log.level",
                format!("{:?} is not a level", self.level),
                "use one of error, warn, info, debug, trace",
            ));
        }
        if self.rotate_size < 4096 {
            issues.push(Issue::new(
                "log.rotate_size",
                "is below 4 KiB",
                "use e.g. 67108864 (64 MiB)",
            ));
        }
    }
}

/// `[metrics]`: who may scrape the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token required from scrapers when the metrics listener is bound beyond
    /// loopback (it is then also served over HTTPS). Keep it out of version control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
}

/// True when the metrics listener is reachable beyond loopback: it is then served over
/// HTTPS and needs the bearer token.
pub fn metrics_exposed(listener: &ListenerConfig) -> bool {
    listener.enabled && listener.bind.iter().any(|a| !a.ip().is_loopback())
}

impl MetricsConfig {
    pub(crate) fn validate(&self, listener: &ListenerConfig, issues: &mut Vec<Issue>) {
        let public = metrics_exposed(listener);
        if public && self.bearer_token.as_deref().is_none_or(|t| t.len() < 16) {
            issues.push(Issue::new(
                "metrics.bearer_token",
                "the metrics listener is bound beyond loopback without a bearer token of at least 16 characters",
                "set bearer_token = \"<random string>\" (e.g. from `openssl rand -hex 24`), or bind listeners.metrics to 127.0.0.1",
            ));
        }
    }
}
