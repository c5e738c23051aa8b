//! PROXY protocol v1/v2 header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulwark_net::fuzzing::proxy_header(data);
});
