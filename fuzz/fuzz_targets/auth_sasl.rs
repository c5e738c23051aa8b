//! SASL PLAIN / LOGIN response decoding.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_auth::fuzzing::sasl(data);
});
