//! `[auth]`: how password checks are protected against guessing, for every protocol
//! (SMTP AUTH, IMAP, POP3, web) alike. DATA-PATHS rule 4: a failure answers the same
//! whether the user exists or not, and costs the attacker time.

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[auth]`: the password-check limiter shared by every protocol (brute-force protection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Brute-force protection. Turning it off is an audit finding.
    #[serde(default = "yes")]
    pub limiter_enabled: bool,
    /// Every failed attempt is answered only after this delay (milliseconds).
    #[serde(default = "default_failure_delay_ms")]
    pub failure_delay_ms: u64,
    /// Failures are counted over this sliding window (seconds).
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// After this many failures from one IP in the window, each further attempt from
    /// it is delayed twice as long as the one before (up to `max_delay_ms`).
    #[serde(default = "default_slow_after")]
    pub slow_after_failures: u32,
    /// Upper bound of that growing delay (milliseconds).
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// After this many failures from one IP in the window, attempts from it are
    /// refused without checking the password until the window has passed.
    #[serde(default = "default_block_ip")]
    pub block_ip_after_failures: u32,
    /// After this many failures for one account in the window (from anywhere), attempts
    /// for it are refused until the window has passed — except from addresses (IPv6:
    /// /64s) that logged in to the account successfully in the last 30 days, so an
    /// attacker cannot lock its owner out. Higher than the per-IP limit so that a
    /// single attacker is blocked by IP long before it applies.
    #[serde(default = "default_block_account")]
    pub block_account_after_failures: u32,
}

fn yes() -> bool {
    true
}
fn default_failure_delay_ms() -> u64 {
    500
}
fn default_window_secs() -> u64 {
    900
}
fn default_slow_after() -> u32 {
    3
}
fn default_max_delay_ms() -> u64 {
    8_000
}
fn default_block_ip() -> u32 {
    20
}
fn default_block_account() -> u32 {
    50
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            limiter_enabled: true,
            failure_delay_ms: default_failure_delay_ms(),
            window_secs: default_window_secs(),
            slow_after_failures: default_slow_after(),
            max_delay_ms: default_max_delay_ms(),
            block_ip_after_failures: default_block_ip(),
            block_account_after_failures: default_block_account(),
        }
    }
}

impl AuthConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.limiter_enabled {
            if self.window_secs == 0 {
                issues.push(Issue::new(
                    "auth.window_secs",
                    "a window of 0 seconds never counts a failure",
                    "use e.g. 900 (15 minutes)",
                ));
            }
            if self.block_ip_after_failures == 0 || self.block_account_after_failures == 0 {
                issues.push(Issue::new(
                    "auth.block_ip_after_failures",
                    "a limit of 0 would block every login",
                    "use a positive number (defaults: 20 per IP, 50 per account)",
                ));
            }
        }
        if self.max_delay_ms > 60_000 {
            issues.push(Issue::new(
                "auth.max_delay_ms",
                "delays over a minute outlast client timeouts",
                "use at most 60000",
            ));
        }
    }
}
