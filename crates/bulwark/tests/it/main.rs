//! Integration tests: the real `bulwark` binary on loopback, driven by independent
//! clients. One test binary (one link) with a module per area.

mod support;

mod cli;
mod imap;
mod limits;
mod observe;
mod outbound;
mod pop3;
mod reliability;
mod senderauth;
mod serve;
mod smtp;
