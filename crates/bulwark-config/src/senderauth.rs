//! `[senderauth]`: SPF, Sender ID, DKIM and DMARC checks on received mail (SPEC §6).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Issue;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderAuthConfig {
    /// Our own edge gateways and internal relays. Mail arriving from them is checked
    /// against the first external hop found by walking the `Received:` headers.
    #[serde(default)]
    pub internal_servers: Vec<IpNet>,
}

impl SenderAuthConfig {
    pub(crate) fn validate(&self, _issues: &mut Vec<Issue>) {}
}
