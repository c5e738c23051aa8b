//! PRA selector (RFC 4407), Received walk, forged Authentication-Results removal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_senderauth::fuzzing::headers(data);
});
