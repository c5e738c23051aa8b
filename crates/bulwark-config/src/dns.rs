//! `[dns]`: the resolver used for MX, SPF, DKIM and DMARC lookups.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[dns]`: which resolvers lookups use.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Resolver addresses (UDP and TCP). Empty means the system's /etc/resolv.conf.
    /// Tests point this at a DNS server on loopback.
    #[serde(default)]
    pub resolvers: Vec<SocketAddr>,
}

impl DnsConfig {
    pub(crate) fn validate(&self, _issues: &mut Vec<Issue>) {}
}
