//! The Purported Responsible Address (RFC 4407 §2): which header names the party
//! most recently responsible for injecting the message. A pure function over the
//! header fields in order; mail-parser parses each candidate's address.

use bulwark_mime::header::is_named;
use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

/// The selected address and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pra {
    /// `local@domain` as written (without display name).
    pub address: String,
    /// The domain part, lower-cased, without a trailing dot: what Sender ID checks.
    pub domain: String,
    /// The header it was taken from: `Resent-Sender`, `Resent-From`, `Sender`, `From`.
    pub header: &'static str,
}

/// Why there is no PRA (RFC 4407 §2 step 6: "the message is ill-formed").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoPra {
    /// Which step of the selection failed and why.
    pub reason: String,
}

/// RFC 4407 §2, steps 1–6.
pub struct PraSelector;

/// RFC 4407 §2: "a header field is non-empty if it contains any non-whitespace".
fn non_empty(value: &[u8]) -> bool {
    value.iter().any(|b| !b.is_ascii_whitespace())
}

impl PraSelector {
    /// Selects the PRA from the message's header fields, top to bottom, as
    /// `(name, raw value)` pairs (what `mail_auth::AuthenticatedMessage` holds).
    pub fn select(headers: &[(&[u8], &[u8])]) -> Result<Pra, NoPra> {
        let find_first = |want: &str| {
            headers
                .iter()
                .position(|(n, v)| is_named(n, want) && non_empty(v))
        };
        // Step 1: the first non-empty Resent-Sender, unless it belongs to an older
        // resent block than a Resent-From above it (a Received or Return-Path
        // between that Resent-From and it).
        if let Some(rs) = find_first("Resent-Sender") {
            let older_block = find_first("Resent-From")
                .filter(|&rf| rf < rs)
                .is_some_and(|rf| {
                    headers[rf + 1..rs]
                        .iter()
                        .any(|(n, _)| is_named(n, "Received") || is_named(n, "Return-Path"))
                });
            if !older_block {
                return Self::step5(headers[rs].1, "Resent-Sender");
            }
        }
        // Step 2: the first non-empty Resent-From.
        if let Some(rf) = find_first("Resent-From") {
            return Self::step5(headers[rf].1, "Resent-From");
        }
        // Step 3: Sender — exactly one non-empty, else none or ill-formed.
        let senders: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, v)| is_named(n, "Sender") && non_empty(v))
            .map(|(_, v)| *v)
            .collect();
        match senders.len() {
            0 => {}
            1 => return Self::step5(senders[0], "Sender"),
            n => {
                return Err(NoPra {
                    reason: format!("{n} Sender headers (RFC 4407 §2 step 3)"),
                })
            }
        }
        // Step 4: From — exactly one non-empty.
        let froms: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, v)| is_named(n, "From") && non_empty(v))
            .map(|(_, v)| *v)
            .collect();
        match froms.len() {
            1 => Self::step5(froms[0], "From"),
            0 => Err(NoPra {
                reason: "no Resent-Sender, Resent-From, Sender or From header (RFC 4407 §2 step 4)"
                    .into(),
            }),
            n => Err(NoPra {
                reason: format!("{n} From headers (RFC 4407 §2 step 4)"),
            }),
        }
    }

    /// Step 5: the selected header must hold exactly one well-formed mailbox with a
    /// domain; anything else is step 6.
    fn step5(value: &[u8], header: &'static str) -> Result<Pra, NoPra> {
        let bad = |why: &str| NoPra {
            reason: format!("the {header} header {why} (RFC 4407 §2 step 5)"),
        };
        let mut addrs: Vec<String> = Vec::new();
        match MessageStream::new(value).parse_address() {
            HeaderValue::Address(Address::List(list)) => {
                for a in list {
                    addrs.push(a.address.map(|s| s.into_owned()).unwrap_or_default());
                }
            }
            HeaderValue::Address(Address::Group(_)) => return Err(bad("is a group")),
            _ => return Err(bad("holds no address")),
        }
        if addrs.len() != 1 {
            return Err(bad(&format!("holds {} mailboxes", addrs.len())));
        }
        let address = addrs.remove(0);
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(bad(&format!("address {address:?} has no domain")));
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_local_part(local) || !crate::spf::is_valid_spf_domain(&domain) {
            return Err(bad(&format!("address {address:?} is malformed")));
        }
        Ok(Pra {
            address,
            domain,
            header,
        })
    }
}

/// RFC 5322 §3.4.1 (with RFC 6532 §3.2's UTF-8): `local-part = dot-atom /
/// quoted-string`. mail-parser reads addresses leniently (`alice@@example.com` comes
/// back whole), and RFC 4407 §2 step 5 wants a valid mailbox, so the grammar is
/// checked here; it is a few lines, with no crate that checks only this.
fn is_local_part(local: &str) -> bool {
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    {
        // quoted-string: qtext (printable but `"` and `\`) or quoted-pairs.
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.next().is_none() => return false,
                '\\' => {}
                '"' => return false,
                c if c.is_ascii_control() && c != '\t' => return false,
                _ => {}
            }
        }
        return true;
    }
    // dot-atom: atext runs separated by single dots.
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    !local.is_empty()
        && local
            .split('.')
            .all(|a| !a.is_empty() && a.chars().all(atext))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a header block into (name, value) pairs the way the message parser does.
    fn hdrs(block: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for line in block.split('\n').filter(|l| !l.is_empty()) {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = out.last_mut() {
                    last.1.extend_from_slice(line.as_bytes());
                    last.1.extend_from_slice(b"\r\n");
                }
                continue;
            }
            let (n, v) = line.split_once(':').unwrap();
            out.push((n.as_bytes().to_vec(), format!("{v}\r\n").into_bytes()));
        }
        out
    }

    fn select(block: &str) -> Result<(String, &'static str), String> {
        let owned = hdrs(block);
        let refs: Vec<(&[u8], &[u8])> = owned
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        PraSelector::select(&refs)
            .map(|p| (p.address, p.header))
            .map_err(|e| e.reason)
    }

    /// RFC 4407 §2, step by step. Each row: headers (top first) → PRA or "no PRA".
    #[test]
    fn rfc4407_section2_table() {
        type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>);
        let cases: &[Case] = &[
            // step 4: a single From
            ("plain From", "From: Alice <alice@a.test>\n", Some(("alice@a.test", "From"))),
            // step 3 beats 4: Sender
            (
                "Sender over From",
                "From: alice@a.test\nSender: list@lists.b.test\n",
                Some(("list@lists.b.test", "Sender")),
            ),
            // step 2: Resent-From beats Sender and From
            (
                "Resent-From over Sender",
                "Resent-From: fwd@c.test\nFrom: alice@a.test\nSender: s@b.test\n",
                Some(("fwd@c.test", "Resent-From")),
            ),
            // step 1: Resent-Sender of the same (topmost) block
            (
                "Resent-Sender, same block",
                "Resent-From: boss@c.test\nResent-Sender: assistant@c.test\nFrom: alice@a.test\n",
                Some(("assistant@c.test", "Resent-Sender")),
            ),
            (
                "Resent-Sender alone",
                "Resent-Sender: r@d.test\nFrom: alice@a.test\n",
                Some(("r@d.test", "Resent-Sender")),
            ),
            // step 1 → 2: Resent-Sender from an OLDER block (Received in between)
            (
                "Resent-Sender of an older block",
                "Resent-From: new@e.test\nReceived: from x by y\nResent-Sender: old@f.test\nFrom: a@a.test\n",
                Some(("new@e.test", "Resent-From")),
            ),
            (
                "Return-Path also separates blocks",
                "Resent-From: new@e.test\nReturn-Path: <b@b.test>\nResent-Sender: old@f.test\n",
                Some(("new@e.test", "Resent-From")),
            ),
            // the first non-empty header of a kind is the one used
            (
                "empty Resent-Sender is skipped",
                "Resent-Sender:   \nFrom: alice@a.test\n",
                Some(("alice@a.test", "From")),
            ),
            (
                "first of two Resent-From",
                "Resent-From: one@g.test\nReceived: from x by y\nResent-From: two@h.test\nFrom: a@a.test\n",
                Some(("one@g.test", "Resent-From")),
            ),
            (
                "empty Sender falls to From",
                "Sender: \nFrom: alice@a.test\n",
                Some(("alice@a.test", "From")),
            ),
            // step 3 → 6: two Sender headers
            ("two Sender headers", "Sender: a@a.test\nSender: b@b.test\nFrom: c@c.test\n", None),
            // step 4 → 6: no From, two From
            ("no originator at all", "Subject: hi\nTo: bob@b.test\n", None),
            ("two From headers", "From: a@a.test\nFrom: b@b.test\n", None),
            // step 5 → 6: malformed
            ("From with two mailboxes", "From: a@a.test, b@b.test\n", None),
            ("From without a domain", "From: alice\n", None),
            ("From with a group", "From: team: a@a.test, b@b.test;\n", None),
            ("Resent-Sender malformed", "Resent-Sender: nobody\nFrom: a@a.test\n", None),
            ("From with an invalid domain", "From: a@[192.0.2.1]\n", None),
            // RFC 5322 §3.4.1: the local part is a dot-atom or a quoted-string.
            ("From with two @", "From: alice@@example.com\n", None),
            ("From with two @, angle form", "From: Alice <alice@@example.com>\n", None),
            ("Sender with a bare @ in the local part", "Sender: a@b@c.test\nFrom: a@a.test\n", None),
            ("From with an empty atom", "From: a..b@a.test\n", None),
            ("From with a leading dot", "From: .a@a.test\n", None),
            ("dot-atom with specials", "From: a.b+c=d@a.test\n", Some(("a.b+c=d@a.test", "From"))),
        ];
        for (name, block, want) in cases {
            let got = select(block);
            match want {
                Some((addr, hdr)) => {
                    assert_eq!(got, Ok((addr.to_string(), *hdr)), "{name}");
                }
                None => assert!(got.is_err(), "{name}: expected no PRA, got {got:?}"),
            }
        }
    }

    #[test]
    fn local_part_grammar() {
        for ok in [
            "a",
            "a.b",
            "a+tag",
            "\"a b\"",
            "\"a@b\"",
            "\"a\\\"b\"",
            "jörg",
        ] {
            assert!(is_local_part(ok), "{ok}");
        }
        for bad in [
            "", "alice@", "a b", ".a", "a.", "a..b", "\"a\"b\"", "\"", "a\"b",
        ] {
            assert!(!is_local_part(bad), "{bad}");
        }
    }

    #[test]
    fn folded_header_and_display_name() {
        let got = select("From: \"Alice, Example\"\n <alice@a.test>\n");
        assert_eq!(got, Ok(("alice@a.test".into(), "From")));
    }
}
