//! `[server]`: who this server is.

use serde::{Deserialize, Serialize};

use crate::Issue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The name this server greets with and presents in its certificate; the name MX
    /// records point at.
    pub hostname: String,
    /// `standalone` runs everything; `edge` (SPEC §8) runs only the Internet-facing
    /// SMTP gateway and relays inward over direct trust.
    #[serde(default)]
    pub role: Role,
    /// On SIGTERM, sessions get this long (seconds) to finish before they are cut off.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
}

fn default_grace() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Standalone,
    Edge,
}

impl ServerConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if !crate::is_valid_hostname(&self.hostname) {
            issues.push(Issue::new(
                "server.hostname",
                format!("{:?} is not a valid DNS host name", self.hostname),
                "use the fully qualified name your MX record points at, e.g. \"mail.example.org\"",
            ));
        }
    }
}
