//! Mailbox names on the wire: modified UTF-7 (RFC 3501 §5.1.3, RFC 9051 §5.1.3) ↔ the
//! UTF-8 names the store keeps, the name rules we enforce, and LIST pattern matching
//! (RFC 9051 §6.3.9).
//!
//! Hand-written: imap-codec hands us the raw mailbox octets and leaves the mUTF-7
//! transformation to the server (it is ~80 lines; no maintained crate we use does it).

use base64::Engine;

/// Hierarchy delimiter (the store's).
pub(crate) const DELIMITER: char = '/';

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("mailbox name is not valid modified UTF-7")]
    BadEncoding,
    #[error("mailbox name contains a forbidden character or level")]
    Forbidden,
}

/// The modified-base64 alphabet: "," instead of "/", no padding.
fn engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::IMAP_MUTF7,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
    )
}

/// Decodes a wire name. Strict: rejects what RFC 3501 §5.1.3 forbids (unencoded
/// non-ASCII, "&-" spelt the long way, empty or non-minimal shifts, bad UTF-16).
pub(crate) fn decode_mutf7(wire: &[u8]) -> Result<String, NameError> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        if !(0x20..=0x7e).contains(&b) {
            return Err(NameError::BadEncoding);
        }
        if b != b'&' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let end = wire[i + 1..]
            .iter()
            .position(|c| *c == b'-')
            .map(|p| p + i + 1)
            .ok_or(NameError::BadEncoding)?;
        let chunk = &wire[i + 1..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let bytes = engine().decode(chunk).map_err(|_| NameError::BadEncoding)?;
            if bytes.len() % 2 != 0 {
                return Err(NameError::BadEncoding);
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let s = String::from_utf16(&units).map_err(|_| NameError::BadEncoding)?;
            // Printable ASCII must not be encoded (RFC 3501 §5.1.3).
            if s.chars().any(|c| (' '..='~').contains(&c)) {
                return Err(NameError::BadEncoding);
            }
            out.push_str(&s);
        }
        i = end + 1;
    }
    // Round-trip check: the canonical encoding must be what we were given.
    if encode_mutf7(&out).as_bytes() != wire {
        return Err(NameError::BadEncoding);
    }
    Ok(out)
}

/// Encodes a UTF-8 name for the wire.
pub(crate) fn encode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&engine().encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// A client-supplied mailbox name, decoded and checked: no NUL or control characters,
/// no empty, "." or ".." level. A trailing delimiter is dropped (RFC 9051 §6.3.4).
/// "INBOX" in any case is INBOX.
pub(crate) fn parse_name(wire: &[u8]) -> Result<String, NameError> {
    let mut name = decode_mutf7(wire)?;
    while name.len() > 1 && name.ends_with(DELIMITER) {
        name.pop();
    }
    if name.is_empty() || name.len() > 512 || name.chars().any(|c| c.is_control()) {
        return Err(NameError::Forbidden);
    }
    if name
        .split(DELIMITER)
        .any(|l| l.is_empty() || l == "." || l == "..")
    {
        return Err(NameError::Forbidden);
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok("INBOX".into());
    }
    // "inbox/x" is below INBOX: keep INBOX's canonical spelling.
    // `get`: the sixth octet may be inside a multi-octet character ("Fuzz/é").
    if name.len() > 6
        && name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("INBOX/"))
    {
        name = format!("INBOX/{}", &name[6..]);
    }
    Ok(name)
}

/// Longest LIST pattern (reference + pattern, after collapsing wildcard runs), in
/// characters. Names are at most 512 octets, so longer patterns cannot be useful.
pub(crate) const MAX_PATTERN: usize = 1024;

/// A LIST pattern, compiled: runs of wildcards collapsed ("**", "%*", "*%" → "*";
/// "%%" → "%"), which changes nothing in what matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern(Vec<char>);

impl Pattern {
    /// None when the pattern is longer than `MAX_PATTERN` after collapsing.
    pub(crate) fn new(pattern: &str) -> Option<Pattern> {
        let mut p: Vec<char> = Vec::new();
        for c in pattern.chars() {
            match (c, p.last().copied()) {
                ('*', Some('*')) | ('%', Some('*')) | ('%', Some('%')) => {}
                ('*', Some('%')) => {
                    if let Some(last) = p.last_mut() {
                        *last = '*';
                    }
                }
                _ => p.push(c),
            }
            if p.len() > MAX_PATTERN {
                return None;
            }
        }
        Some(Pattern(p))
    }

    /// RFC 9051 §6.3.9: "*" matches anything, "%" anything but the hierarchy
    /// delimiter. Iterative, two indices with backtracking: to the last "%" while it
    /// may still grow (it cannot take a "/"), else to the last "*" — an earlier "%"
    /// never needs to grow once a later one is blocked by "/", and an earlier "*"
    /// never once a later "*" can take the rest. O(pattern × name) at worst, no
    /// recursion, whatever the pattern.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let p = &self.0;
        let n: Vec<char> = name.chars().collect();
        let (mut pi, mut ni) = (0usize, 0usize);
        // (pattern index after the wildcard, name index where its match ends)
        let mut star: Option<(usize, usize)> = None;
        let mut pct: Option<(usize, usize)> = None;
        while ni < n.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi + 1, ni));
                    pct = None;
                    pi += 1;
                    continue;
                }
                Some('%') => {
                    pct = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                Some(c) if *c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
            // Mismatch (or pattern exhausted): let the last wildcard take one more.
            if let Some((ppi, pni)) = pct {
                if n[pni] != DELIMITER {
                    pct = Some((ppi, pni + 1));
                    pi = ppi;
                    ni = pni + 1;
                    continue;
                }
                pct = None;
            }
            match star {
                Some((spi, sni)) => {
                    star = Some((spi, sni + 1));
                    pi = spi;
                    ni = sni + 1;
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|c| *c == '*' || *c == '%')
    }
}

/// LIST matching of one name (see `Pattern::matches`); false for an overlong pattern.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    Pattern::new(pattern).is_some_and(|p| p.matches(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_octet_character_at_octet_six_is_not_split() {
        // "Fuzz/&AOk-" panicked (string slice inside 'é') when checked for an
        // "INBOX/" prefix.
        assert_eq!(parse_name(b"Fuzz/&AOk-").unwrap(), "Fuzz/\u{e9}");
        assert_eq!(parse_name(b"inbox/&AOk-").unwrap(), "INBOX/\u{e9}");
        assert_eq!(parse_name(b"&AOkA6QDp-").unwrap(), "\u{e9}\u{e9}\u{e9}");
    }

    #[test]
    fn mutf7_round_trips() {
        for (utf8, wire) in [
            ("INBOX", "INBOX"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("日本語", "&ZeVnLIqe-"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("😀", "&2D3eAA-"),
        ] {
            assert_eq!(encode_mutf7(utf8), wire);
            assert_eq!(decode_mutf7(wire.as_bytes()).unwrap(), utf8);
        }
    }

    #[test]
    fn mutf7_rejects_bad_input() {
        for bad in [
            &b"&Jjo"[..],   // unterminated
            b"&AGE-",       // encodes printable "a"
            b"\xc3\xbc",    // raw 8-bit
            b"&2D0-",       // lone surrogate
            b"&ZeVnLIqe=-", // padding
            b"a\x00b",      // NUL
        ] {
            assert!(decode_mutf7(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn name_rules() {
        assert_eq!(parse_name(b"inbox").unwrap(), "INBOX");
        assert_eq!(parse_name(b"Inbox/Sub").unwrap(), "INBOX/Sub");
        assert_eq!(parse_name(b"Work/").unwrap(), "Work");
        for bad in [&b"a/../b"[..], b"..", b"a//b", b"/a", b"", b"a\x01"] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "a/b/c"));
        assert!(pattern_matches("%", "a"));
        assert!(!pattern_matches("%", "a/b"));
        assert!(pattern_matches("a/%", "a/b"));
        assert!(pattern_matches("a*c", "a/b/c"));
        assert!(!pattern_matches("a%c", "a/c"));
        assert!(pattern_matches("INBOX", "INBOX"));
        assert!(!pattern_matches("*a", "b"));
        // A hostile pattern terminates.
        let p = "*".repeat(50) + "x";
        assert!(!pattern_matches(&p, &"a".repeat(60)));
    }

    /// The recursive definition, for comparison on small inputs.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| reference(&p[1..], &n[k..])),
            Some('%') => {
                let max = n.iter().position(|c| *c == DELIMITER).unwrap_or(n.len());
                (0..=max).any(|k| reference(&p[1..], &n[k..]))
            }
            Some(c) => n.first() == Some(c) && reference(&p[1..], &n[1..]),
        }
    }

    #[test]
    fn matching_agrees_with_the_definition() {
        // Every pattern over {a, /, *, %} up to 5 characters against every name over
        // {a, b, /} up to 5 characters.
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut frontier = vec![String::new()];
            for _ in 0..max {
                let mut next = Vec::new();
                for s in &frontier {
                    for c in alphabet {
                        next.push(format!("{s}{c}"));
                    }
                }
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        let patterns = all(&['a', '/', '*', '%'], 5);
        let names = all(&['a', 'b', '/'], 5);
        for p in &patterns {
            let compiled = Pattern::new(p).unwrap();
            let pc: Vec<char> = p.chars().collect();
            for n in &names {
                let nc: Vec<char> = n.chars().collect();
                assert_eq!(compiled.matches(n), reference(&pc, &nc), "{p:?} {n:?}");
            }
        }
    }

    #[test]
    fn huge_patterns_neither_recurse_nor_take_long() {
        // 60,000 wildcards collapse to one.
        let p = Pattern::new(&"*".repeat(60_000)).unwrap();
        assert_eq!(p, Pattern::new("*").unwrap());
        assert!(p.matches("a/b/c"));
        let p = Pattern::new(&"%*".repeat(30_000)).unwrap();
        assert!(p.matches("a/b"));
        // Alternating literals cannot collapse: refused beyond the limit.
        assert!(Pattern::new(&"*a".repeat(600)).is_none());
        assert!(!pattern_matches(&"%a".repeat(30_000), "aaa"));
        // The worst allowed pattern against a long name still ends.
        let p = Pattern::new(&format!("{}b", "*a".repeat(500))).unwrap();
        assert!(!p.matches(&"a".repeat(512)));
    }
}
