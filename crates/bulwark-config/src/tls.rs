//! `[tls]`: the certificate every listener presents and the protocol floor.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[tls]`: the certificate and key every TLS listener presents, and the floor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Relative paths are inside the data directory.
    #[serde(default = "default_cert")]
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1), readable only by the server (0600).
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// Lowest TLS version accepted. DATA-PATHS rule 2: 1.2 is the floor, so only
    /// "1.2" and "1.3" exist.
    #[serde(default)]
    pub min_version: TlsVersion,
}

fn default_cert() -> PathBuf {
    PathBuf::from("tls/cert.pem")
}
fn default_key() -> PathBuf {
    PathBuf::from("tls/key.pem")
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: default_cert(),
            key: default_key(),
            min_version: TlsVersion::default(),
        }
    }
}

/// A TLS protocol version (`[tls] min_version`); nothing below 1.2 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246), the default floor.
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 (RFC 8446).
    #[serde(rename = "1.3")]
    V1_3,
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "TLS 1.2",
            TlsVersion::V1_3 => "TLS 1.3",
        })
    }
}

impl TlsConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.cert.as_os_str().is_empty() {
            issues.push(Issue::new(
                "tls.cert",
                "is empty",
                "point it at a PEM certificate chain, e.g. \"tls/cert.pem\"",
            ));
        }
        if self.key.as_os_str().is_empty() {
            issues.push(Issue::new(
                "tls.key",
                "is empty",
                "point it at the PEM private key, e.g. \"tls/key.pem\"",
            ));
        }
    }
}
