//! SMTP session state machine (25/587/465) over raw client octets, effects faked; the stored-octets and 250-per-ingest invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_smtp::fuzzing::session(data);
});
