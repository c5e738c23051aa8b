//! POP3 session state machine and command parser; no credentials without TLS; UPDATE deletes what DELE marked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_pop3::fuzzing::session(data);
});
