//! `[outbound]`: the delivery queue and outbound connectors (SPEC §4).

use serde::{Deserialize, Serialize};

use crate::Issue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// How long a message may wait in the queue before it bounces, in seconds (5 days).
    #[serde(default = "default_lifetime")]
    pub max_queue_lifetime_secs: u64,
    /// When the sender is told their message is delayed, in seconds (4 hours).
    #[serde(default = "default_delay_notice")]
    pub delay_notice_after_secs: u64,
}

fn default_lifetime() -> u64 {
    5 * 24 * 3600
}
fn default_delay_notice() -> u64 {
    4 * 3600
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            max_queue_lifetime_secs: default_lifetime(),
            delay_notice_after_secs: default_delay_notice(),
        }
    }
}

impl OutboundConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.max_queue_lifetime_secs == 0 {
            issues.push(Issue::new(
                "outbound.max_queue_lifetime_secs",
                "0 would bounce every message that is not delivered at the first attempt",
                "use 432000 (5 days, RFC 5321 §4.5.4.1 suggests at least 4-5 days)",
            ));
        }
    }
}
