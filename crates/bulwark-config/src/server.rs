//! `[server]`: who this server is.

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[server]`: who this server is and how it runs.
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
    /// The unprivileged user `serve` runs as when started as root: it binds every
    /// listener and reads the key files as root, then drops to this user for good
    /// (as Postfix and Dovecot do). The data directory must be owned by it. Unset: a
    /// server started as root refuses to run unless told `--allow-root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group to run as; default: the user's primary group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn default_grace() -> u64 {
    30
}

/// What this server runs (`[server] role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every service on one machine (the only role so far).
    #[default]
    Standalone,
    /// Only the Internet-facing SMTP gateway (planned, SPEC §8).
    Edge,
}

impl ServerConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        for (key, name) in [("server.user", &self.user), ("server.group", &self.group)] {
            if let Some(n) = name {
                if !is_valid_account_name(n) {
                    issues.push(Issue::new(
                        key,
                        format!("{n:?} is not a user or group name"),
                        "use a system account name such as \"bulwark\" (letters, digits, '_', '-', '.')",
                    ));
                } else if n == "root" {
                    issues.push(Issue::new(
                        key,
                        "the server would keep root's privileges".to_string(),
                        "name an unprivileged account such as \"bulwark\" (scripts/run.sh creates it)",
                    ));
                }
            }
        }
        if self.group.is_some() && self.user.is_none() {
            issues.push(Issue::new(
                "server.group",
                "a group without a user changes nothing".to_string(),
                "set server.user as well (e.g. user = \"bulwark\")",
            ));
        }
        if !crate::is_valid_hostname(&self.hostname) {
            issues.push(Issue::new(
                "server.hostname",
                format!("{:?} is not a valid DNS host name", self.hostname),
                "use the fully qualified name your MX record points at, e.g. \"mail.example.org\"",
            ));
        }
    }
}

/// A POSIX-portable account name (the character set useradd accepts), not numeric.
fn is_valid_account_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && !n.bytes().all(|b| b.is_ascii_digit())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(user: Option<&str>, group: Option<&str>) -> Vec<Issue> {
        let c = ServerConfig {
            hostname: "mail.example.test".into(),
            role: Role::Standalone,
            shutdown_grace_secs: 30,
            user: user.map(String::from),
            group: group.map(String::from),
        };
        let mut v = Vec::new();
        c.validate(&mut v);
        v
    }

    #[test]
    fn run_as_user_names_are_checked() {
        assert!(issues(None, None).is_empty());
        assert!(issues(Some("bulwark"), None).is_empty());
        assert!(issues(Some("bulwark"), Some("mail")).is_empty());
        assert_eq!(issues(Some("root"), None).len(), 1);
        assert_eq!(issues(Some("../x"), None).len(), 1);
        assert_eq!(issues(Some("1000"), None).len(), 1);
        assert_eq!(issues(None, Some("mail")).len(), 1);
    }
}
