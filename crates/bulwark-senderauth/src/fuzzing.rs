//! Harnesses for the fuzz targets (`fuzz/fuzz_targets/senderauth_*.rs`) and for the
//! seeded property tests below, which run them on every `cargo test`. Not part of
//! the checks: nothing outside tests and fuzzing calls this.
//!
//! [`headers`](crate::fuzzing::headers) takes a message as it arrives after DATA and
//! runs the header paths we own on it, split into fields by mail-auth exactly as
//! `check.rs` does: the PRA selector (RFC 4407 §2), the Received walk past internal
//! relays, and the removal of forged Authentication-Results (RFC 8601 §5).
//! [`records`](crate::fuzzing::records) runs SPF record selection and parsing
//! (RFC 7208 §4.5, §4.6) and the DMARC `pct=` reader on TXT data, which comes from DNS
//! answers anyone can publish.

use ipnet::IpNet;
use mail_auth::AuthenticatedMessage;

use crate::headers::strip_forged_results;
use crate::pra::PraSelector;
use crate::received::{first_external_hop, Walk};
use crate::spf::{parse_record, select_record, Scope};

const OUR_ID: &str = "mail.example.test";

/// Header lines for the generators.
pub const DICTIONARY: &[&[u8]] = &[
    b"From: Alice <alice@example.test>",
    b"From: a@b.test, c@d.test",
    b"From: group: a@b.test, c@d.test;",
    b"Sender: bob@example.test",
    b"Sender:",
    b"Resent-From: list@lists.test",
    b"Resent-Sender: owner@lists.test",
    b"Return-Path: <x@y.test>",
    b"Received: from mx.sender.test (mx.sender.test [192.0.2.4]) by edge.corp.test with ESMTP id 2; Mon, 20 Feb 2006 15:04:47 -1000",
    b"Received: from edge.corp.test ([10.0.0.5]) by mail.corp.test; Mon, 20 Feb 2006 15:04:53 -1000",
    b"Received: from [IPv6:2001:db8::1] by x",
    b"Received: by localhost",
    b"Authentication-Results: mail.example.test; spf=pass",
    b"Authentication-Results: (comment) MAIL.EXAMPLE.TEST 1; dkim=pass",
    b"Authentication-Results: other.test; none",
    b"\tcontinued",
    b" folded",
    b"\x0c",
    b" ",
    b"From : spaced@colon.test",
    b"no colon here",
    b"Subject: hi",
    b"",
    b"body",
];

/// Line ends are CRLF and nothing else, and the data ends with one: what SMTP intake
/// lets through (RFC 5321 §2.3.8).
fn crlf_only(data: &[u8]) -> bool {
    data.ends_with(b"\r\n")
        && data.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && data[i - 1] == b'\r',
            b'\r' => data.get(i + 1) == Some(&b'\n'),
            _ => true,
        })
}

/// The header paths of `check_message` on a raw message.
pub fn headers(data: &[u8]) {
    let internal: Vec<IpNet> = ["10.0.0.0/8", "192.0.2.0/24"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if let Some(m) = AuthenticatedMessage::parse(data) {
        let list: Vec<(&[u8], &[u8])> = m.headers.clone();
        // The one header boundary (`bulwark_mime::header`): for a section intake
        // accepts (clean lines, CRLF line ends only, a final CRLF: the SMTP octet
        // rules), what DKIM and DMARC read is field for field what IMAP shows.
        if bulwark_mime::header::scan(data).is_clean() && crlf_only(data) {
            let ours: Vec<&[u8]> = bulwark_mime::header::fields(data).map(|f| f.name).collect();
            let theirs: Vec<&[u8]> = list.iter().map(|(n, _)| n.trim_ascii()).collect();
            assert_eq!(
                ours,
                theirs,
                "mail-auth and the header scan disagree on the fields of {:?}",
                String::from_utf8_lossy(data)
            );
        }
        if let Ok(pra) = PraSelector::select(&list) {
            assert!(pra.address.contains('@'), "PRA without a domain");
            assert!(!pra.domain.is_empty() && pra.domain == pra.domain.to_ascii_lowercase());
        }
        match first_external_hop(&list, &internal) {
            Walk::External(hop) => {
                assert!(!crate::received::is_internal(hop.ip, &internal));
            }
            Walk::AllInternal | Walk::Unreadable { .. } => {}
        }
    }
    let (removed, out) = strip_forged_results(data, OUR_ID);
    assert!(out.len() <= data.len());
    assert_eq!(
        removed == 0,
        out.len() == data.len(),
        "removed fields but kept the length"
    );
    // Removing is complete: nothing left claims our id.
    let (again, out2) = strip_forged_results(&out, OUR_ID);
    assert_eq!(
        (again, out2.as_slice()),
        (0, out.as_slice()),
        "strip is not idempotent"
    );
}

/// SPF record selection and parsing, and DMARC `pct=`, on TXT records separated by
/// NUL octets.
pub fn records(data: &[u8]) {
    let txts: Vec<Vec<u8>> = data.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    for scope in [Scope::MailFrom, Scope::Pra] {
        if let Ok(Some((text, _))) = select_record(&txts, scope) {
            let _ = parse_record(&text);
        }
    }
    for t in &txts {
        let _ = parse_record(&String::from_utf8_lossy(t));
        assert!(crate::check::parse_pct(t) <= 100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_net::fuzzing::{mutate, run_cases, session_bytes, Rng};

    #[test]
    fn property_headers() {
        run_cases("senderauth headers", 0x5a17_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            headers(&session_bytes(&mut rng, DICTIONARY, 16));
        });
    }

    #[test]
    fn property_records() {
        let dict: &[&[u8]] = &[
            b"v=spf1 -all",
            b"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx/24 include:x.test ~all",
            b"v=spf1 a:%{d}.%{l1r}.x.test exists:%{i}._spf.%{d} redirect=x.test exp=e.test",
            b"spf2.0/pra,mfrom +all",
            b"v=spf1 ip4:0.0.0.0/0 ip6:::/0 -all",
            b"v=DMARC1; p=reject; pct=20",
            b"\0",
        ];
        run_cases("senderauth records", 0x5a17_0002, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut d = Vec::new();
            for _ in 0..=rng.below(3) {
                let base = *rng.pick(dict);
                d.extend(mutate(&mut rng, base));
                d.push(0);
            }
            records(&d);
        });
    }
}
