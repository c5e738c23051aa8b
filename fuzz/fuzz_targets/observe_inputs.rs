//! /metrics request head and protocol-log redaction.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_observe::fuzzing::inputs(data);
});
