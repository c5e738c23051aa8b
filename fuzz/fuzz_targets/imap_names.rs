//! Mailbox names (modified UTF-7) and LIST pattern matching.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_imap::fuzzing::names(data);
});
