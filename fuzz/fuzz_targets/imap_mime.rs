//! ENVELOPE/BODYSTRUCTURE/sections/search text of a stored message.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_imap::fuzzing::mime(data);
});
