//! Integration tests: the real `bulwark` binary on loopback, driven by independent
//! clients. One test binary (one link) with a module per area.

// A test crate exports nothing (`pub` means "shared between the test modules"), a
// test reads best as one scenario from start to end, however long, and the numbers it
// narrows (metric values, seeds, counts from the environment) are small by design.
#![allow(
    unreachable_pub,
    clippy::too_many_lines,
    clippy::cast_possible_truncation
)]

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
