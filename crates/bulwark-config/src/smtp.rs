//! `[smtp]`: receiving (port 25) and submission (587/465) policy and limits.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[smtp]`: limits and policy for receiving (port 25) and submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Largest message accepted, in octets (SIZE extension, RFC 1870; 552 5.3.4 beyond).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    /// Recipients per message (452 4.5.3 beyond).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: u32,
    /// Messages with more `Received:` headers than this are refused as a loop.
    #[serde(default = "default_max_received_headers")]
    pub max_received_headers: u32,
    /// Seconds to wait for the next command (RFC 5321 §4.5.3.2 asks for at least 5 min).
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// Upper bound for a whole session, in seconds.
    #[serde(default = "default_session_timeout")]
    pub session_timeout_secs: u64,
    /// Errors tolerated per session; each error beyond `tarpit_after_errors` delays the
    /// reply (growing), and at `max_errors` the session is closed with 421. A
    /// recipient refused only because the message has `max_recipients` already
    /// (452 4.5.3) is not an error: RFC 5321 §4.5.3.1.10 has the client send the rest
    /// in a later transaction.
    #[serde(default = "default_tarpit_after")]
    pub tarpit_after_errors: u32,
    /// Errors per session after which it is closed with 421.
    #[serde(default = "default_max_errors")]
    pub max_errors: u32,
    /// Delay added per error beyond `tarpit_after_errors`, in milliseconds.
    #[serde(default = "default_tarpit_delay_ms")]
    pub tarpit_delay_ms: u64,
    /// Octets of message data all SMTP sessions together may hold in memory while
    /// receiving (every listener, every connection). A message that would go beyond
    /// it is read to its end, dropped and answered 452 4.3.1 (try again later), so a
    /// burst of large messages cannot exhaust memory. At least `max_message_size`.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: u64,
    /// Port 25: refuse (550 5.7.1) an unauthenticated MAIL FROM in one of our own
    /// domains, unless the client is one of `[senderauth] internal_servers`. Our
    /// users send through submission; only a forger claims our domain from outside.
    /// Turn off when a third party (a mailing service, a scanner) relays mail from
    /// our domains to port 25 without authenticating. The null sender is always
    /// accepted.
    #[serde(default = "yes")]
    pub reject_unauthenticated_local_senders: bool,
    /// Most MIME entities (the message, every part, every encapsulated message) in
    /// one message, on every SMTP port and for IMAP APPEND (552 5.3.4 / NO `[LIMIT]`
    /// beyond). Every part costs parsing and IMAP BODYSTRUCTURE far more than its
    /// octets. At most 50000.
    #[serde(default = "default_max_mime_parts")]
    pub max_mime_parts: u32,
    /// Port 25: a header `From:` in one of our own domains on a message from a
    /// client that is neither authenticated nor one of `[senderauth]
    /// internal_servers`. Our users send through submission, so only a forger
    /// writes our domain from outside: `reject` (550 5.7.1) or `tag` (accept with an
    /// `X-Bulwark-Local-From: outside` header for filters).
    #[serde(default)]
    pub local_from_on_inbound: LocalFromAction,
    /// Per-host accept policy for port 25: client networks and what they must do
    /// before MAIL is accepted. The most specific matching network wins; clients in no
    /// listed network need nothing beyond the defaults (`any`).
    #[serde(default)]
    pub accept_policy: Vec<AcceptPolicy>,
}

/// What port 25 does with a header From in our domains from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LocalFromAction {
    /// 550 5.7.1.
    #[default]
    #[serde(rename = "reject")]
    Reject,
    /// Accept, marked with `X-Bulwark-Local-From: outside`.
    #[serde(rename = "tag")]
    Tag,
}

/// What a client network must do on port 25 before its mail is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptPolicy {
    /// The client network (CIDR); the most specific one wins.
    pub network: IpNet,
    /// What a client from it must do before MAIL.
    pub require: Requirement,
}

/// What a port-25 client must have done before MAIL (`require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Requirement {
    /// Anonymous mail, TLS offered but optional (the Internet default).
    #[serde(rename = "any")]
    Any,
    /// STARTTLS before MAIL (530 5.7.0 otherwise).
    #[serde(rename = "tls")]
    Tls,
    /// SMTP AUTH before MAIL. AUTH itself is only offered after TLS, so this implies TLS.
    #[serde(rename = "auth")]
    Auth,
    /// TLS and then AUTH: the same as `auth`, spelled out.
    #[serde(rename = "auth+tls")]
    AuthTls,
}

impl Requirement {
    /// Whether TLS must be up before MAIL.
    pub fn needs_tls(self) -> bool {
        !matches!(self, Requirement::Any)
    }
    /// Whether the client must have authenticated before MAIL.
    pub fn needs_auth(self) -> bool {
        matches!(self, Requirement::Auth | Requirement::AuthTls)
    }
}

/// Messages are held in memory while received and stored as one database value;
/// beyond this the embedded store cannot keep them.
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * 1024 * 1024;

fn yes() -> bool {
    true
}
/// `bulwark_mime::MAX_PARTS` (config sits below every other crate).
fn default_max_mime_parts() -> u32 {
    5000
}
/// `bulwark_mime::MAX_PARTS_CEILING`: what IMAP still describes part by part.
pub const MAX_MIME_PARTS_LIMIT: u32 = 50_000;
fn default_max_inflight_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_message_size() -> u64 {
    25 * 1024 * 1024
}
fn default_max_recipients() -> u32 {
    100
}
fn default_max_received_headers() -> u32 {
    50
}
fn default_command_timeout() -> u64 {
    300
}
fn default_session_timeout() -> u64 {
    1800
}
fn default_tarpit_after() -> u32 {
    3
}
/// Postfix's `smtpd_hard_error_limit`.
fn default_max_errors() -> u32 {
    20
}
fn default_tarpit_delay_ms() -> u64 {
    1000
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            max_message_size: default_max_message_size(),
            max_recipients: default_max_recipients(),
            max_received_headers: default_max_received_headers(),
            command_timeout_secs: default_command_timeout(),
            session_timeout_secs: default_session_timeout(),
            tarpit_after_errors: default_tarpit_after(),
            max_errors: default_max_errors(),
            tarpit_delay_ms: default_tarpit_delay_ms(),
            max_inflight_bytes: default_max_inflight_bytes(),
            reject_unauthenticated_local_senders: true,
            max_mime_parts: default_max_mime_parts(),
            local_from_on_inbound: LocalFromAction::default(),
            accept_policy: Vec::new(),
        }
    }
}

impl SmtpConfig {
    /// The requirement for a client address: the most specific (longest prefix)
    /// matching network, else `any`.
    pub fn requirement_for(&self, ip: std::net::IpAddr) -> Requirement {
        self.accept_policy
            .iter()
            .filter(|p| p.network.contains(&ip))
            .max_by_key(|p| p.network.prefix_len())
            .map_or(Requirement::Any, |p| p.require)
    }

    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            issues.push(Issue::new(
                "smtp.max_message_size",
                format!(
                    "{} octets is beyond what the store keeps in one piece",
                    self.max_message_size
                ),
                format!(
                    "use at most {MAX_MESSAGE_SIZE_LIMIT} (512 MiB); 26214400 (25 MiB) is usual"
                ),
            ));
        }
        if self.max_message_size < 1024 {
            issues.push(Issue::new(
                "smtp.max_message_size",
                "is smaller than 1 KiB; no real message would fit",
                "use e.g. 26214400 (25 MiB)",
            ));
        }
        if self.max_recipients == 0 {
            issues.push(Issue::new(
                "smtp.max_recipients",
                "0 would refuse every message",
                "RFC 5321 §4.5.3.1.8 asks for at least 100",
            ));
        }
        if self.max_errors == 0 || self.max_errors < self.tarpit_after_errors {
            issues.push(Issue::new(
                "smtp.max_errors",
                "must be positive and at least tarpit_after_errors",
                "use e.g. tarpit_after_errors = 3, max_errors = 20",
            ));
        }
        if self.max_inflight_bytes < self.max_message_size {
            issues.push(Issue::new(
                "smtp.max_inflight_bytes",
                format!(
                    "{} octets cannot hold even one message of max_message_size ({})",
                    self.max_inflight_bytes, self.max_message_size
                ),
                "use at least max_message_size; 536870912 (512 MiB) is the default",
            ));
        }
        if self.max_mime_parts == 0 || self.max_mime_parts > MAX_MIME_PARTS_LIMIT {
            issues.push(Issue::new(
                "smtp.max_mime_parts",
                format!(
                    "{} is outside 1..={MAX_MIME_PARTS_LIMIT}",
                    self.max_mime_parts
                ),
                "use e.g. 5000 (the default); real mail has a few hundred parts at most",
            ));
        }
        if self.command_timeout_secs == 0 || self.session_timeout_secs == 0 {
            issues.push(Issue::new(
                "smtp.command_timeout_secs",
                "a timeout of 0 would close every session at once",
                "use e.g. 300 for commands and 1800 for sessions",
            ));
        }
        for (i, p) in self.accept_policy.iter().enumerate() {
            if self
                .accept_policy
                .iter()
                .skip(i + 1)
                .any(|q| q.network == p.network)
            {
                issues.push(Issue::new(
                    format!("smtp.accept_policy[{i}].network"),
                    format!("{} is listed twice", p.network),
                    "keep one entry per network",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_part_limit_is_bounded() {
        for (n, ok) in [
            (0, false),
            (1, true),
            (5000, true),
            (50_000, true),
            (50_001, false),
        ] {
            let mut issues = Vec::new();
            SmtpConfig {
                max_mime_parts: n,
                ..Default::default()
            }
            .validate(&mut issues);
            assert_eq!(issues.is_empty(), ok, "{n}: {issues:?}");
        }
        let c: SmtpConfig = toml::from_str("local_from_on_inbound = \"tag\"").unwrap();
        assert_eq!(c.local_from_on_inbound, LocalFromAction::Tag);
        assert_eq!(
            SmtpConfig::default().local_from_on_inbound,
            LocalFromAction::Reject
        );
        assert!(toml::from_str::<SmtpConfig>("local_from_on_inbound = \"drop\"").is_err());
    }

    #[test]
    fn inflight_budget_must_hold_one_message() {
        let mut issues = Vec::new();
        SmtpConfig::default().validate(&mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        let c = SmtpConfig {
            max_inflight_bytes: 1024 * 1024,
            ..Default::default()
        };
        c.validate(&mut issues);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "smtp.max_inflight_bytes");
    }

    #[test]
    fn most_specific_network_wins() {
        let c = SmtpConfig {
            accept_policy: vec![
                AcceptPolicy {
                    network: "10.0.0.0/8".parse().unwrap(),
                    require: Requirement::Tls,
                },
                AcceptPolicy {
                    network: "10.1.0.0/16".parse().unwrap(),
                    require: Requirement::AuthTls,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            c.requirement_for("10.1.2.3".parse().unwrap()),
            Requirement::AuthTls
        );
        assert_eq!(
            c.requirement_for("10.2.2.3".parse().unwrap()),
            Requirement::Tls
        );
        assert_eq!(
            c.requirement_for("192.0.2.1".parse().unwrap()),
            Requirement::Any
        );
    }
}
