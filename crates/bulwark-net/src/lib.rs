//! The connection layer under every protocol: listeners, connection limits, the PROXY
//! protocol, implicit TLS, STARTTLS, line and literal reading, graceful shutdown, and
//! the session driver every protocol shell runs on (bounded reads, secret-aware
//! logging, flushing once per pipelined batch, the write-timeout policy).
//!
//! Invariants owned here, so no protocol can get them wrong:
//! - STARTTLS discards every byte the client sent before the handshake (the
//!   command-injection attack of CVE-2011-0411 and friends): `Connection::start_tls`
//!   drops the read buffer.
//! - Implicit-TLS listeners complete the handshake before the protocol sees the
//!   connection; the protocol cannot write a cleartext byte on them.
//! - A PROXY header is only read from addresses listed in `proxy_protocol_from`.
//! - Line reads are bounded; an overlong line is reported, never buffered unbounded.
//!
//! Must not: speak a mail protocol.

mod connection;
mod driver;
mod limits;
mod listener;
mod proxy;
mod transport;

/// Harness support for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{Connection, Line, LineEnding, ReadError, DEFAULT_WRITE_TIMEOUT};
pub use driver::{Bounds, Input, Interrupt, LineLog, WriteFailure, MAX_SESSION_ERRORS};
pub use limits::{ConnectionLimits, ConnectionSlots, Refusal, SlotPermit, INTERNAL_DESCRIPTORS};
pub use listener::{bind, BoundListener, SessionHandler};
pub use transport::{Plain, Stream, TlsInfo, Transport};

pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

/// A short, unique-enough id for a session: a random per-process prefix and a counter.
pub fn new_session_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let p = PREFIX.get_or_init(rand::random::<u32>);
    format!(
        "{:08x}{:06x}",
        p,
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
    )
}

#[cfg(test)]
mod tests;
