//! The IMAP server: IMAP4rev1 (RFC 3501) with the IMAP4rev2 (RFC 9051) essentials and
//! the extensions clients rely on (IDLE, UIDPLUS, MOVE, LITERAL+, SPECIAL-USE, ID,
//! ENABLE, NAMESPACE, UNSELECT, CONDSTORE, QRESYNC, ESEARCH, SEARCHRES, LIST-EXTENDED,
//! LIST-STATUS, STATUS=SIZE, MULTIAPPEND, BINARY, SORT, THREAD), on 143 (STARTTLS) and
//! 993 (implicit TLS).
//!
//! Owns: command framing with literal limits (`server`), the sans-I/O session core
//! (`session`, `fetch`, `search`), the per-session selected-mailbox view (`view`),
//! mailbox-name encoding (`names`) and message structure (`mime`).
//!
//! Invariants: no LOGIN/AUTHENTICATE before TLS (LOGINDISABLED, NO [PRIVACYREQUIRED]);
//! a session reaches only its own account's mailboxes (every store call is keyed by
//! the logged-in account id); APPEND's OK only after the store returned (durable);
//! sequence numbers change only at the points RFC 9051 §7.5.1 allows.
//!
//! Must not: touch the socket from the session core, or log literal contents.

pub mod binary;
pub mod budget;
mod cmd;
pub mod code;
pub mod esearch;
mod fetch;
mod fetch_plan;
pub mod framing;
/// Harnesses for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
pub mod list_ext;
pub mod mime;
pub mod multiappend;
pub mod names;
pub mod notify;
pub mod resp;
mod search;
pub mod searchres;
pub mod seqset;
mod server;
pub mod session;
mod sort;
mod thread;
pub mod view;

pub use budget::SharedLimits;
pub use server::ImapHandler;
pub use session::{Clock, Next, Session, SessionConfig};
#[cfg(test)]
mod tests;
