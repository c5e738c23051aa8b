//! `[imap]`: IMAP4 (143 STARTTLS, 993 implicit TLS) limits.

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[imap]`: IMAP size limits, timeouts and memory budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// Largest literal accepted (APPEND size), in octets; larger ones are refused before
    /// a byte of them is read.
    #[serde(default = "default_max_literal")]
    pub max_literal_size: u64,
    /// Largest command line, in octets, excluding literals.
    #[serde(default = "default_max_line")]
    pub max_line_length: usize,
    /// Idle timeout for an authenticated session, seconds (RFC 9051 §5.4: at least 30 min).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// How long a client has, from connecting, to log in (seconds); an absolute limit
    /// for the whole unauthenticated phase, not per command.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// While a client is in IDLE, `* OK Still here` is sent this often (seconds), so
    /// NAT gateways and mobile networks keep the idle connection open.
    #[serde(default = "default_idle_keepalive")]
    pub idle_keepalive_secs: u64,
    /// Octets of message data all IMAP sessions together may hold in memory: APPEND
    /// literals being received and message bodies read whole for FETCH (BODY[] and
    /// RFC822 are streamed in pieces and need none). An APPEND beyond it gets
    /// `NO [LIMIT]` before its literal is read; a FETCH beyond it gets `NO [LIMIT]`.
    #[serde(default = "default_max_inflight_bytes")]
    pub max_inflight_bytes: u64,
    /// APPENDs one account may have in progress at once (all its sessions); one more
    /// waits for one of them to finish before its "+" is sent.
    #[serde(default = "default_max_appends")]
    pub max_concurrent_appends_per_account: u32,
}

fn default_max_literal() -> u64 {
    64 * 1024 * 1024
}
fn default_max_line() -> usize {
    64 * 1024
}
fn default_idle_timeout() -> u64 {
    1800
}
fn default_login_timeout() -> u64 {
    60
}
fn default_idle_keepalive() -> u64 {
    120
}
fn default_max_inflight_bytes() -> u64 {
    512 * 1024 * 1024
}
fn default_max_appends() -> u32 {
    4
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            max_literal_size: default_max_literal(),
            max_line_length: default_max_line(),
            idle_timeout_secs: default_idle_timeout(),
            login_timeout_secs: default_login_timeout(),
            idle_keepalive_secs: default_idle_keepalive(),
            max_inflight_bytes: default_max_inflight_bytes(),
            max_concurrent_appends_per_account: default_max_appends(),
        }
    }
}

impl ImapConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.max_literal_size > crate::smtp::MAX_MESSAGE_SIZE_LIMIT {
            issues.push(Issue::new(
                "imap.max_literal_size",
                "is beyond what the store keeps in one piece",
                "use at most 536870912 (512 MiB); 67108864 (64 MiB) is the default",
            ));
        }
        if self.max_line_length < 1024 {
            issues.push(Issue::new(
                "imap.max_line_length",
                "is below 1024 octets; ordinary FETCH/SEARCH commands would not fit",
                "use e.g. 65536",
            ));
        }
        if self.idle_timeout_secs < 60 || self.login_timeout_secs == 0 {
            issues.push(Issue::new(
                "imap.idle_timeout_secs",
                "timeouts this short cut off ordinary clients",
                "use idle_timeout_secs >= 1800 (RFC 9051) and login_timeout_secs >= 30",
            ));
        }
        // An APPEND holds its literal and the copy handed to the store.
        if self.max_inflight_bytes < self.max_literal_size.saturating_mul(2) {
            issues.push(Issue::new(
                "imap.max_inflight_bytes",
                format!(
                    "{} is below twice max_literal_size ({}): the largest APPEND could never be accepted",
                    self.max_inflight_bytes, self.max_literal_size
                ),
                "raise it to at least twice max_literal_size (default 536870912, 512 MiB)",
            ));
        }
        if self.max_concurrent_appends_per_account == 0 {
            issues.push(Issue::new(
                "imap.max_concurrent_appends_per_account",
                "0 would refuse every APPEND",
                "use a positive number (default 4)",
            ));
        }
        if self.idle_keepalive_secs == 0 || self.idle_keepalive_secs >= self.idle_timeout_secs {
            issues.push(Issue::new(
                "imap.idle_keepalive_secs",
                "must be above 0 and below idle_timeout_secs",
                "use 120 (two minutes keeps most NAT mappings alive)",
            ));
        }
    }
}
