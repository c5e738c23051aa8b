//! SPF record selection and parsing, DMARC pct=.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_senderauth::fuzzing::records(data);
});
