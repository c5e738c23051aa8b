//! POP3 (RFC 1939) on 110 with STLS (RFC 2595) and 995 with implicit TLS, with CAPA
//! and response codes (RFC 2449, RFC 3206), AUTH PLAIN (RFC 5034, RFC 4616), UIDL and
//! TOP.
//!
//! Owns: the POP3 session state machine (`session`, no I/O, unit-tested without
//! sockets), its command parser (`command`), dot-stuffing (`dotstuff`), the INBOX
//! snapshot a session works on (`maildrop`), the per-account maildrop lock (`lock`),
//! and the thin async shell that runs a session on a `bulwark_net::Connection`
//! (`server`).
//!
//! Invariants:
//! - No user name, password or SASL exchange before TLS: USER, PASS, APOP and AUTH are
//!   refused by verb on a cleartext connection, and CAPA lists neither USER nor SASL
//!   there (DATA-PATHS rule 1).
//! - Messages are removed only in the UPDATE state, after QUIT; a dropped connection,
//!   a timeout or a shutdown deletes nothing (RFC 1939 §6).
//! - One POP3 session per maildrop (`[IN-USE]`); other protocols are not locked out.
//! - The protocol log gets every command and status line (passwords and SASL
//!   responses redacted), never a message body.
//!
//! Must not: parse MIME, change messages, or lock anything other protocols use.

pub mod command;
pub mod dotstuff;
/// Harnesses for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
pub mod lock;
pub mod maildrop;
pub mod reply;
mod server;
pub mod session;
#[cfg(test)]
mod shell_tests;

pub use lock::{MaildropGuard, MaildropLocks};
pub use server::{Pop3Handler, BUSY_REPLY};
