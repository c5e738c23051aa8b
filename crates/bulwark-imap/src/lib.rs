//! IMAP4rev1 (RFC 3501) server with the IMAP4rev2 (RFC 9051) essentials.
pub mod mime;
pub mod names;
pub mod resp;
