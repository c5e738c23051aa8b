//! DATA reader: end of data only at CRLF.CRLF (smuggling), dot-unstuffing, against a model.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_smtp::fuzzing::data_reader(data);
});
