//! Header From/Sender extraction of the submission anti-spoofing rule.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_smtp::fuzzing::header_facts(data);
});
