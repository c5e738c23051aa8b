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
//! Invariants: no LOGIN/AUTHENTICATE before TLS (LOGINDISABLED, NO \[PRIVACYREQUIRED\]);
//! a session reaches only its own account's mailboxes (every store call is keyed by
//! the logged-in account id); APPEND's OK only after the store returned (durable);
//! sequence numbers change only at the points RFC 9051 §7.5.1 allows.
//!
//! Must not: touch the socket from the session core, or log literal contents.

mod binary;
mod budget;
mod cmd;
mod code;
mod esearch;
mod fetch;
mod fetch_plan;
mod framing;
/// Harnesses for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
mod list_ext;
mod mime;
mod multiappend;
mod names;
mod notify;
mod resp;
mod search;
mod searchres;
mod seqset;
mod server;
mod session;
mod sort;
mod thread;
mod view;

pub use budget::SharedLimits;
pub use server::ImapHandler;
pub use session::{Clock, Next, Session, SessionConfig};
#[cfg(test)]
mod tests;
