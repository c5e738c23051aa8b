//! The outbound SMTP client.
//!
//! Our own, on `smtp-proto` for reply and EHLO parsing, rather than `mail-send` 0.6:
//! delivery needs an outcome per recipient (mail-send's `send` fails the whole message
//! at the first refused RCPT and does not pipeline), exact control of the STARTTLS
//! policy per TLS level (mail-send decides itself whether to upgrade), verification
//! that a pinned key really signed the handshake (its "allow invalid certs" verifier
//! accepts any signature), detection of cleartext injected before the TLS handshake,
//! and a transcript in the protocol log with AUTH redacted. mail-send would also pull
//! rustls-platform-verifier and mail-auth into the build.
//!
//! `transaction` is the state machine (no I/O, unit tested); `client` is the thin
//! async shell around it: connect, greeting, EHLO, STARTTLS, AUTH, transactions, QUIT.

pub mod client;
pub mod reply;
mod stream;
#[cfg(test)]
mod tests;
pub mod transaction;
