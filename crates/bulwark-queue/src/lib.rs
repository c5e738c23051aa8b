//! Outbound delivery: the worker that empties the store's durable queue.
//!
//! Owns: claiming due queue entries (leases, so several nodes can share one store),
//! routing (connectors by address space, MX selection per RFC 5321 §5.1, null MX per
//! RFC 7505), the SMTP client with the per-connector TLS levels (`opportunistic`,
//! `required`, `verify`, `pinned`) and SASL credentials that never travel without TLS,
//! retries with exponential backoff until the queue lifetime ends, and delivery status
//! notifications (RFC 3464) to the envelope sender — never to `<>`.
//!
//! Durability: the outcome of each SMTP transaction is written (`queue_progress`)
//! before the next one starts, so a crash re-sends at most the transaction that was in
//! flight; nothing is removed from the queue before the recipients' outcomes are on
//! disk.
//!
//! Must not: accept mail (that is SMTP's), or decide who may relay (SMTP queues only
//! what it accepted for relay).
//!
//! Start with [`start`]; the `params` JSON that comes with a queue entry is described
//! in [`params`].

pub mod credentials;
pub mod downgrade;
pub mod dsn;
mod finish;
/// Harnesses for fuzz targets and seeded property tests (not delivery code).
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod outcome;
pub mod params;
pub mod route;
pub mod smtp;
pub mod tls;
mod worker;

use std::sync::Arc;

use bulwark_config::LoadedConfig;
use bulwark_store::SharedStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use params::DeliveryParams;
pub use route::ConnectorError;

/// Why outbound delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A connector's configuration refers to files that are missing or unsafe.
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    /// No DNS resolver could be built (MX lookups need one).
    #[error("outbound delivery needs DNS: {0}")]
    Dns(#[from] bulwark_dns::DnsError),
    /// The outbound protocol log cannot be opened.
    #[error("cannot open the outbound protocol log in {dir}: {source}")]
    ProtocolLog {
        /// The log directory.
        dir: String,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
}

/// Checks the outbound configuration that needs files (credentials, trust anchors)
/// and builds the worker, then runs it on `tracker` until `shutdown` is cancelled.
/// `resigner` signs 7-bit copies of messages we DKIM-signed ([`downgrade`]).
/// After cancellation it claims nothing new and finishes the deliveries in progress
/// (the caller bounds that with its grace period).
pub fn start(
    cfg: Arc<LoadedConfig>,
    store: SharedStore,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
    resigner: Option<Arc<dyn downgrade::Resigner>>,
) -> Result<(), QueueError> {
    let worker = worker::Worker::new(cfg, store, shutdown, resigner)?;
    tracker.spawn(worker.run());
    Ok(())
}

/// The current Unix time in seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
