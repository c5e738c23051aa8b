//! Replies of a remote SMTP server: framing, EHLO keywords, client transaction.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_queue::fuzzing::replies(data);
});
