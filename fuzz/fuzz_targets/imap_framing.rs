//! IMAP command framing: lines, literal announcements and limits, imap-codec decoding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_imap::fuzzing::framing(data);
});
