//! `[pop3]`: POP3 (110 STLS, 995 implicit TLS) limits.

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[pop3]`: POP3 timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3Config {
    /// Inactivity timeout in seconds (RFC 1939 §3: at least 10 minutes).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// How long a client has, from connecting, to log in (seconds): an absolute limit
    /// for the AUTHORIZATION state, whatever it sends meanwhile.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
}

fn default_timeout() -> u64 {
    600
}
fn default_login_timeout() -> u64 {
    60
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            timeout_secs: default_timeout(),
            login_timeout_secs: default_login_timeout(),
        }
    }
}

impl Pop3Config {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.timeout_secs == 0 {
            issues.push(Issue::new(
                "pop3.timeout_secs",
                "a timeout of 0 would close every session at once",
                "use 600 (RFC 1939 asks for at least 10 minutes)",
            ));
        }
        if self.login_timeout_secs == 0 {
            issues.push(Issue::new(
                "pop3.login_timeout_secs",
                "a limit of 0 would close every connection before login",
                "use 60",
            ));
        }
    }
}
