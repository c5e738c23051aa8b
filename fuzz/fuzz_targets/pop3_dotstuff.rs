//! Dot-stuffing of RETR/TOP bodies: the response cannot end early.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_pop3::fuzzing::dotstuff(data);
});
