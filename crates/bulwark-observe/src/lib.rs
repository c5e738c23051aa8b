//! What the server records about itself: the server log (tracing), the protocol
//! log (one JSON line per command and reply, per listener), and the metrics (the
//! catalog of every metric name, the Prometheus recorder, and the metrics endpoint's
//! HTTP exchange without I/O).
//!
//! Owns the redaction rule (DATA-PATHS rule 1): a protocol log line passes through
//! the protocol's `Redactor` before it is written, and AUTH continuation lines are
//! written only as `***`. There is no way to write a raw client line, so "protocol log
//! without redaction" cannot be configured.
//!
//! Must not: hold protocol state. Protocols tell the session log what they know (TLS
//! state, authenticated identity); this crate only writes.

/// Harness for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod protocol_log;
mod redact;
pub mod scrape;

pub use protocol_log::{ProtocolLog, Rotation, SessionLog};
pub use redact::{redact, Redactor};

use bulwark_config::observe::LogFormat;

/// Installs the global tracing subscriber for the server log on stderr. `RUST_LOG`
/// overrides `level` when set.
pub fn init_tracing(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in files and journals they garble lines.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
