//! SMTP: receiving Internet mail on port 25 (RFC 5321), submission on 587 with
//! STARTTLS and 465 with implicit TLS (RFC 6409, RFC 8314), and final delivery into
//! local mailboxes — or into the durable queue for remote recipients.
//!
//! Owns: the SMTP session state machine ([`Session`], one module per stage, no I/O),
//! the thin async shell that runs it over a `bulwark_net::Connection`
//! ([`SmtpHandler`]), the anti-smuggling octet rules, the per-host accept policy, the
//! submission anti-spoofing rule, trace headers, and the seam where sender
//! authentication plugs in ([`SenderChecks`]).
//!
//! Invariants:
//! - 250 after the message only when `Store::ingest` returned: one ingest per message,
//!   durable in every local mailbox and in the queue for remote recipients.
//! - No message is parsed before its MIME nesting depth was checked
//!   (`bulwark_mime::nesting_depth`), and message data held in memory by all sessions
//!   together stays within `[smtp] max_inflight_bytes` ([`InflightBudget`]).
//! - Never an open relay: recipients outside our domains only from authenticated
//!   clients; AUTH only under TLS.
//! - A message whose end the client and we could disagree on (bare LF/CR) is refused
//!   whole; nothing partial is ever stored.
//!
//! Must not: deliver to remote servers (`bulwark-queue` does), implement SPF/DKIM/DMARC
//! (`bulwark-senderauth` plugs in through [`SenderChecks`]), or log a message body or
//! a SASL payload.

mod address;
mod auth;
mod bdat;
mod budget;
pub mod checks;
mod clock;
mod data;
mod ehlo;
/// Harnesses for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
mod mail;
mod message;
mod numbers;
mod rcpt;
pub mod reply;
mod server;
mod session;
mod starttls;

pub use budget::InflightBudget;
pub use checks::{NoSenderChecks, SenderChecks};
pub use clock::{Environment, FixedEnvironment, SystemEnvironment};
pub use data::OctetFlags;
pub use reply::{Enhanced, Reply, SmtpError};
pub use server::SmtpHandler;
pub use session::{
    Effect, EffectResult, Next, Session, SessionSettings, COMMAND_LINE_MAX, DATA_LINE_MAX,
    SASL_LINE_MAX,
};

#[cfg(test)]
mod tests;
