//! DNS for Bulwark: the resolver configuration every lookup uses (MX for delivery,
//! TXT/A/AAAA/MX/PTR for SPF, DKIM, DMARC, audit), built from `[dns]`, and — behind
//! the `test-server` feature — an in-memory authoritative DNS server on loopback so
//! tests never touch the Internet.
//!
//! The resolver is hickory-resolver 0.26, the version mail-auth 0.12 uses, so the same
//! `ResolverConfig` feeds both our own lookups and mail-auth's.
//!
//! Must not: interpret records (SPF, MX ordering, …); that belongs to the callers.

use std::time::Duration;

use bulwark_config::DnsConfig;
pub use hickory_resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
pub use hickory_resolver::TokioResolver;

mod lenient;
mod shared;
#[cfg(any(test, feature = "test-server"))]
pub mod testing;

pub use shared::SharedResolver;

/// Why the resolver for `[dns]` could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// No `[dns] resolvers` are set and `/etc/resolv.conf` is missing or unreadable.
    #[error("cannot read the system resolver configuration (/etc/resolv.conf): {0}; set [dns] resolvers")]
    SystemConfig(String),
    /// hickory-resolver rejected the configuration built from `[dns]`.
    #[error("cannot build the resolver: {0}")]
    Build(String),
}

/// The resolver configuration for `[dns]`: the listed servers (UDP and TCP, in order)
/// or the system's `/etc/resolv.conf` when none are listed.
pub fn resolver_config(cfg: &DnsConfig) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    if cfg.resolvers.is_empty() {
        return hickory_resolver::system_conf::read_system_conf()
            .map(|(c, o)| (c, with_negative_cache(o)))
            .map_err(|e| DnsError::SystemConfig(e.to_string()));
    }
    let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
    for addr in &cfg.resolvers {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        config.add_name_server(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
    }
    let mut opts = ResolverOpts::default();
    // Configured servers are usually a local validating resolver (or a test server):
    // fail fast rather than retrying for long, so SMTP sessions stay responsive.
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    Ok((config, with_negative_cache(opts)))
}

/// Negative answers (NXDOMAIN, NODATA) are cached, RFC 2308 §5: for min(SOA TTL,
/// SOA MINIMUM) of the SOA in the answer (hickory computes it), at most an hour
/// ("one to three hours" works well, §5: the lower end, so a newly published
/// DMARC/SPF/DKIM record is not ignored for long). §5 advises against caching an
/// answer without an SOA because it could loop between resolvers; we are the end
/// consumer of the configured resolver, not a resolver others ask, and some stub
/// resolvers answer from their cache without the SOA, so such an answer is believed
/// for a short floor: a burst of mail from one domain then asks once per name.
fn with_negative_cache(mut opts: ResolverOpts) -> ResolverOpts {
    opts.negative_min_ttl = Some(NEGATIVE_TTL_FLOOR);
    opts.negative_max_ttl = Some(NEGATIVE_TTL_CEILING);
    opts
}

/// The longest a "no such record" answer is believed.
pub const NEGATIVE_TTL_CEILING: Duration = Duration::from_secs(3600);
/// The shortest: also what an answer without an SOA gets.
pub const NEGATIVE_TTL_FLOOR: Duration = Duration::from_secs(30);

/// A ready resolver for `[dns]`.
pub fn resolver(cfg: &DnsConfig) -> Result<TokioResolver, DnsError> {
    let (config, opts) = resolver_config(cfg)?;
    let mut b = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *b.options_mut() = opts;
    b.build().map_err(|e| DnsError::Build(e.to_string()))
}
