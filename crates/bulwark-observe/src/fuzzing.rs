//! Harnesses for the fuzz target `fuzz/fuzz_targets/observe_inputs.rs` and the seeded
//! property test below (run on every `cargo test`). Not server code.
//!
//! [`inputs`](crate::fuzzing::inputs) runs the two places this crate reads client octets: the `/metrics`
//! request head (RFC 9112, hand-parsed in `scrape.rs`) and the protocol-log redactor,
//! checking that a line whose verb carries a secret never keeps more than the words
//! before the secret, and that logged lines hold no control characters.

use crate::redact::{redact, Redactor};
use crate::scrape::{decide, parse_head, ScrapeAccess};

/// Words kept for lines with a secret-carrying verb (see `redact.rs`).
fn kept_words(r: Redactor, line: &str) -> Option<usize> {
    let mut w = line.split([' ', '\t']).filter(|w| !w.is_empty());
    let first = w.next().unwrap_or("");
    let second = w.next().unwrap_or("");
    let is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match r {
        Redactor::Smtp if is(first, "AUTH") => Some(2),
        Redactor::Pop3 if is(first, "PASS") || is(first, "APOP") => Some(1),
        Redactor::Pop3 if is(first, "AUTH") => Some(2),
        Redactor::Imap if is(second, "LOGIN") => Some(2),
        Redactor::Imap if is(second, "AUTHENTICATE") => Some(3),
        Redactor::Imap if is(first, "LOGIN") || is(first, "AUTHENTICATE") => Some(1),
        _ => None,
    }
}

/// `data`: a request head (lines separated by LF) and, for the redactor, the same
/// octets as one client line.
pub fn inputs(data: &[u8]) {
    let lines: Vec<Vec<u8>> = data
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if let Ok(head) = parse_head(&lines) {
        assert!(head.target.starts_with('/'));
        let _ = decide(&head, &ScrapeAccess::bearer("token-token-token"));
        let _ = decide(&head, &ScrapeAccess::open());
    }
    for r in [
        Redactor::Smtp,
        Redactor::Imap,
        Redactor::Pop3,
        Redactor::None,
    ] {
        let out = redact(r, data);
        assert!(
            !out.chars().any(char::is_control),
            "control character logged"
        );
        let text = String::from_utf8_lossy(data);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Some(keep) = kept_words(r, text) {
            let words: Vec<&str> = out.split(' ').filter(|w| !w.is_empty()).collect();
            assert!(
                words.len() <= keep || (words.len() == keep + 1 && words[keep] == "***"),
                "{r:?} kept too much of a secret line: {out:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 (bulwark-net's generator is not a dependency of this crate).
    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn property_inputs() {
        let words: &[&str] = &[
            "AUTH",
            "auth",
            "PLAIN",
            "PASS",
            "APOP",
            "a",
            "LOGIN",
            "AUTHENTICATE",
            "secret",
            "\"quoted pass\"",
            "{5}",
            "GET",
            "/metrics",
            "HTTP/1.1",
            "Authorization:",
            "Bearer",
            "token-token-token",
            "\t",
            " ",
            "\u{7f}",
            "\0",
            "\r",
            "é",
            "Host: x",
        ];
        let seed: u64 = std::env::var("BULWARK_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x0b5e_0001);
        eprintln!("observe inputs: seed {seed:#x} (BULWARK_FUZZ_SEED to change)");
        let mut s = seed;
        for _ in 0..5000 {
            let mut line = String::new();
            for _ in 0..(next(&mut s) % 8) {
                // Below words.len(), so the conversion never fails.
                let i = usize::try_from(next(&mut s) % words.len() as u64).unwrap_or(0);
                line.push_str(words[i]);
                line.push(match next(&mut s) % 6 {
                    0 => '\t',
                    1 => '\n',
                    _ => ' ',
                });
            }
            inputs(line.as_bytes());
        }
    }
}
