//! Harness for the fuzz target `fuzz/fuzz_targets/auth_sasl.rs` and the seeded
//! property test below (run on every `cargo test`). Not authentication code.
//!
//! [`sasl`] decodes client SASL responses (RFC 4616 PLAIN, LOGIN) as every protocol
//! does before anything reaches the authenticator, and checks the bounds the
//! authenticator relies on.

use crate::sasl::{decode_login_field, decode_plain, parse_plain, MAX_PASSWORD, MAX_USERNAME};

pub fn sasl(data: &[u8]) {
    if let Ok(c) = parse_plain(data) {
        assert!(!c.username.is_empty() && c.username.len() <= MAX_USERNAME);
        assert!(c.password.expose().len() <= MAX_PASSWORD);
        assert!(!c.username.contains('\0') && !c.password.expose().contains('\0'));
    }
    let text = String::from_utf8_lossy(data);
    let _ = decode_plain(&text);
    if let Ok(f) = decode_login_field(&text) {
        assert!(f.len() <= MAX_PASSWORD && !f.contains('\0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn property_sasl() {
        let mut s: u64 = 0x5a51_0001;
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let parts: &[&[u8]] = &[
            b"\0",
            b"alice@example.test",
            b"secret",
            b"",
            b"\xff",
            b"*",
            b"=",
        ];
        for _ in 0..5000 {
            let mut raw = Vec::new();
            for _ in 0..(next() % 6) {
                // The remainder is below `parts.len()`, a usize: it cannot truncate.
                #[allow(clippy::cast_possible_truncation)]
                let i = (next() % parts.len() as u64) as usize;
                raw.extend_from_slice(parts[i]);
            }
            sasl(&raw);
            sasl(
                base64::engine::general_purpose::STANDARD
                    .encode(&raw)
                    .as_bytes(),
            );
        }
    }
}
