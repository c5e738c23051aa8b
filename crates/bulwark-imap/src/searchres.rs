//! SEARCHRES (RFC 5182): `$`, the result a `SEARCH RETURN (SAVE)` kept, used as a
//! sequence set (`FETCH $ …`, `UID COPY $ …`) or as a search key (`SEARCH $ UNSEEN`).
//!
//! Hand-written: imap-codec 2.0.0-alpha.10 has no `$` in its sequence-set grammar, so
//! the session replaces the `$` token with the saved set before decoding: a search key
//! becomes `UID <set>` (or `NOT ALL` when nothing was saved), a sequence set becomes
//! the saved UIDs (UID commands) or their current sequence numbers. The saved result is
//! kept as UIDs, so expunges and new messages cannot shift it (RFC 5182 §2.1).

/// Where a `$` stands in a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Use {
    /// A search key of SEARCH / UID SEARCH.
    SearchKey,
    /// The sequence set of FETCH, STORE, COPY, MOVE, EXPUNGE (`uid`: UID variant).
    Set { uid: bool },
}

/// The `$` tokens of a complete command (literals inline): their offsets, outside
/// quoted strings and literal data, and how the command uses them. `None` if there
/// is none.
pub(crate) fn find(bytes: &[u8]) -> Option<(Use, Vec<usize>)> {
    let mut at = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => {
                // `{n}` or `{n+}` then CRLF then n octets of literal data.
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let mut j = i + 1 + digits;
                if bytes.get(j) == Some(&b'+') {
                    j += 1;
                }
                if digits > 0 && bytes.get(j..j + 3) == Some(b"}\r\n") {
                    let n: usize = std::str::from_utf8(&bytes[i + 1..i + 1 + digits])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(usize::MAX);
                    i = (j + 3).saturating_add(n);
                } else {
                    i += 1;
                }
            }
            b'$' => {
                let before = i.checked_sub(1).map(|p| bytes[p]);
                let after = bytes.get(i + 1).copied();
                if matches!(before, Some(b' ' | b'('))
                    && matches!(after, None | Some(b' ' | b')' | b'\r' | b'\n'))
                {
                    at.push(i);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if at.is_empty() {
        return None;
    }
    let mut words = bytes.split(|&c| c == b' ').skip(1);
    let mut verb = words.next().unwrap_or_default();
    let uid = verb.eq_ignore_ascii_case(b"UID");
    if uid {
        verb = words.next().unwrap_or_default();
    }
    let verb = verb.to_ascii_uppercase();
    let verb: &[u8] = verb.split(|c| *c == b'\r').next().unwrap_or_default();
    let use_ = match verb {
        b"SEARCH" => Use::SearchKey,
        b"FETCH" | b"STORE" | b"COPY" | b"MOVE" | b"EXPUNGE" => Use::Set { uid },
        _ => return None,
    };
    Some((use_, at))
}

/// The command with every `$` at `at` replaced by `with`.
pub(crate) fn replace(bytes: &[u8], at: &[usize], with: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + at.len() * with.len());
    let mut from = 0;
    for &p in at {
        out.extend_from_slice(&bytes[from..p]);
        out.extend_from_slice(with.as_bytes());
        from = p + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_tokens_outside_strings_and_literals() {
        let (u, at) = find(b"a FETCH $ (FLAGS)\r\n").unwrap();
        assert_eq!((u, at), (Use::Set { uid: false }, vec![8]));
        let (u, at) = find(b"a UID MOVE $ Trash\r\n").unwrap();
        assert_eq!((u, at), (Use::Set { uid: true }, vec![11]));
        let (u, at) = find(b"a SEARCH OR $ (SUBJECT \"$\" $)\r\n").unwrap();
        assert_eq!((u, at), (Use::SearchKey, vec![12, 27]));
        assert_eq!(find(b"a SEARCH SUBJECT {1}\r\n$ ALL\r\n"), None);
        assert_eq!(find(b"a SEARCH SUBJECT $x\r\n"), None);
        assert_eq!(find(b"a SELECT $\r\n"), None, "a mailbox named $");
    }

    #[test]
    fn replaced_in_place() {
        let b = b"a SEARCH OR $ $\r\n";
        let (_, at) = find(b).unwrap();
        assert_eq!(
            replace(b, &at, "UID 4:5"),
            b"a SEARCH OR UID 4:5 UID 4:5\r\n".to_vec()
        );
    }
}
