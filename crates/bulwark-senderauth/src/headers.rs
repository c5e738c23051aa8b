//! The header fields we add (Authentication-Results, RFC 8601; Received-SPF, RFC 7208
//! §9.1) and the removal of Authentication-Results fields that claim to be ours but
//! arrived from outside (RFC 8601 §5).
//!
//! Everything we write that came from the network or DNS (addresses, HELO names,
//! `exp=` text, reasons) goes through `comment`/`value` so it cannot break out of its
//! place: no CR/LF/control characters, parentheses and quotes escaped, bounded length.

/// Text for a `( comment )`: printable ASCII, parentheses and backslashes escaped.
pub fn comment(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(200));
    for c in s.chars().take(200) {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// A value (RFC 8601 `pvalue` / RFC 7208 key-value): as a dot-atom, `local@domain`
/// of dot-atoms, or else a quoted-string.
pub fn value(s: &str) -> String {
    let dot_atom = |p: &str| {
        !p.is_empty()
            && p.split('.')
                .all(|a| !a.is_empty() && a.chars().all(is_atext))
    };
    let plain = match s.rsplit_once('@') {
        Some((l, d)) => (l.is_empty() || dot_atom(l)) && dot_atom(d),
        None => dot_atom(s),
    };
    if plain && s.len() <= 254 {
        return s.to_string();
    }
    let mut out = String::from("\"");
    for c in s.chars().take(254) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// One `method=result (comment) ptype.property=value ...` clause of an
/// Authentication-Results header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResInfo {
    /// The method, e.g. `spf`, `dkim`, `dmarc`, `sender-id` (RFC 8601 §2.7).
    pub method: &'static str,
    /// The result word of that method.
    pub result: String,
    /// Free text shown in parentheses after the result.
    pub comment: Option<String>,
    /// The `ptype.property=value` pairs, e.g. `smtp.mailfrom` (RFC 8601 §2.3).
    pub props: Vec<(String, String)>,
}

/// `Authentication-Results: <authserv-id>; clause; clause` (RFC 8601 §2.2), folded one
/// clause per line, ending in CRLF. With no clause: `<authserv-id>; none`.
pub fn authentication_results(authserv_id: &str, clauses: &[ResInfo]) -> String {
    let mut h = format!("Authentication-Results: {}", value(authserv_id));
    if clauses.is_empty() {
        h.push_str("; none\r\n");
        return h;
    }
    for c in clauses {
        h.push_str(";\r\n\t");
        h.push_str(c.method);
        h.push('=');
        h.push_str(&c.result);
        if let Some(t) = &c.comment {
            h.push_str(" (");
            h.push_str(&comment(t));
            h.push(')');
        }
        for (k, v) in &c.props {
            h.push(' ');
            h.push_str(k);
            h.push('=');
            h.push_str(&value(v));
        }
    }
    h.push_str("\r\n");
    h
}

/// `Authentication-Results: <authserv-id>; none (comment)`: the no-result form of
/// RFC 8601 §2.2 for a message nothing was checked on, with why as a comment.
pub fn authentication_results_none(authserv_id: &str, why: Option<&str>) -> String {
    match why {
        Some(w) => format!(
            "Authentication-Results: {}; none ({})\r\n",
            value(authserv_id),
            comment(w)
        ),
        None => format!("Authentication-Results: {}; none\r\n", value(authserv_id)),
    }
}

/// `Received-SPF: result (comment) key=value; ...` (RFC 7208 §9.1), ending in CRLF.
pub fn received_spf(result: &str, comment_text: &str, pairs: &[(&str, String)]) -> String {
    let mut h = format!("Received-SPF: {result} ({})", comment(comment_text));
    for (i, (k, v)) in pairs.iter().enumerate() {
        h.push_str(if i == 0 { "\r\n\t" } else { ";\r\n\t" });
        h.push_str(k);
        h.push('=');
        h.push_str(&value(v));
    }
    h.push_str("\r\n");
    h
}

/// The authserv-id of an Authentication-Results value (RFC 8601 §2.2: the first
/// token, after optional CFWS; a version may follow it).
fn authserv_id(value: &[u8]) -> String {
    let b = value;
    let mut i = 0;
    // CFWS before it (RFC 5322 §3.2.2): comments nest and hold quoted-pairs, so the
    // first `)` need not end one; an unterminated comment names nobody.
    loop {
        while b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        if b.get(i) != Some(&b'(') {
            break;
        }
        let mut depth = 0usize;
        loop {
            match b.get(i) {
                None => return String::new(),
                Some(b'\\') => i += 1,
                Some(b'(') => depth += 1,
                Some(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
    }
    // RFC 8601 §2.2: authserv-id = value (RFC 2045: token or quoted-string).
    let mut id = Vec::new();
    if b.get(i) == Some(&b'"') {
        i += 1;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(&q) = b.get(i + 1) {
                        id.push(q);
                    }
                    i += 2;
                }
                c => {
                    id.push(c);
                    i += 1;
                }
            }
        }
    } else {
        while let Some(&c) = b.get(i) {
            if c == b';' || c == b'(' || c.is_ascii_whitespace() {
                break;
            }
            id.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&id).to_ascii_lowercase()
}

/// An authserv-id or host name as compared: lower case, without the root's trailing
/// dot (`mail.example.test.` names the same host as `mail.example.test`).
fn host_key(id: &str) -> String {
    id.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a field with this name is one only we may write: `Received-SPF` (RFC 7208
/// §9.1; it names no author, so a downstream filter cannot tell ours from one a sender
/// wrote) and every `X-Bulwark-*` field (our warnings and tags).
fn only_ours(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"x-bulwark-";
    name.eq_ignore_ascii_case(b"Received-SPF")
        || name.len() > PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

/// Removes, from a message that arrived from outside, every header field we would add
/// ourselves, so nothing a sender writes can pass for our verdict: Authentication-
/// Results whose authserv-id is ours (RFC 8601 §5: only we may speak for us; compared
/// without case or trailing dot), every Received-SPF and every X-Bulwark-* field.
/// Field names match without case and with white space before the colon. Fields
/// come from `bulwark_mime::header::fields` (the one header boundary); the body is
/// never touched. Returns the number of fields removed and the new message.
pub fn strip_forged_results(msg: &[u8], our_id: &str) -> (usize, Vec<u8>) {
    let ours = host_key(our_id);
    let mut out = Vec::with_capacity(msg.len());
    let mut last = 0;
    let mut removed = 0;
    for f in bulwark_mime::header::fields(msg) {
        let forged = if f.name.eq_ignore_ascii_case(b"Authentication-Results") {
            host_key(&authserv_id(f.value)) == ours
        } else {
            only_ours(f.name)
        };
        if forged {
            out.extend_from_slice(&msg[last..f.start]);
            last = f.end;
            removed += 1;
        }
    }
    out.extend_from_slice(&msg[last..]);
    (removed, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_comments_cannot_break_out() {
        assert_eq!(value("user@example.com"), "user@example.com");
        assert_eq!(value("a b@example.com"), "\"a b@example.com\"");
        assert_eq!(value("x\"\r\nInjected: 1"), "\"x\\\"??Injected: 1\"");
        assert_eq!(comment("a (b)\r\nX: y"), "a \\(b\\)??X: y");
        assert!(comment(&"x".repeat(1000)).len() <= 200);
    }

    #[test]
    fn authentication_results_layout() {
        let h = authentication_results(
            "mail.example.test",
            &[ResInfo {
                method: "spf",
                result: "pass".into(),
                comment: Some("192.0.2.4 matched ip4:192.0.2.0/24 of pass.test".into()),
                props: vec![("smtp.mailfrom".into(), "u@pass.test".into())],
            }],
        );
        assert_eq!(
            h,
            "Authentication-Results: mail.example.test;\r\n\tspf=pass (192.0.2.4 matched ip4:192.0.2.0/24 of pass.test) smtp.mailfrom=u@pass.test\r\n"
        );
        assert_eq!(
            authentication_results("m.test", &[]),
            "Authentication-Results: m.test; none\r\n"
        );
    }

    #[test]
    fn received_spf_layout() {
        let h = received_spf(
            "fail",
            "m.test: 192.0.2.9 matched -all of f.test",
            &[
                ("client-ip", "192.0.2.9".into()),
                ("envelope-from", "a b@f.test".into()),
            ],
        );
        assert_eq!(
            h,
            "Received-SPF: fail (m.test: 192.0.2.9 matched -all of f.test)\r\n\tclient-ip=192.0.2.9;\r\n\tenvelope-from=\"a b@f.test\"\r\n"
        );
    }

    #[test]
    fn strips_every_field_we_would_add_whatever_its_spelling() {
        let msg = b"Received: from x\r\nAuthentication-Results: mail.example.test.; spf=pass\r\nauthentication-results :\r\n  MAIL.Example.Test. ; dkim=pass\r\nAuthentication-Results: \"mail.example.test\"; dmarc=pass\r\nreceived-spf: pass (forged)\r\nReceived-SPF : pass\r\n\tclient-ip=192.0.2.1\r\nX-Bulwark-Auth-Warning: none\r\nx-BULWARK-local-from: inside\r\nX-Bulwarks: not ours\r\nAuthentication-Results: mail.example.test.evil; spf=pass\r\nSubject: hi\r\n\r\nReceived-SPF: pass (in the body)\r\nX-Bulwark-Auth-Warning: body\r\n";
        let (n, out) = strip_forged_results(msg, "mail.example.test");
        assert_eq!(n, 7, "{}", String::from_utf8_lossy(&out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from x\r\nX-Bulwarks: not ours\r\nAuthentication-Results: mail.example.test.evil; spf=pass\r\nSubject: hi\r\n\r\nReceived-SPF: pass (in the body)\r\nX-Bulwark-Auth-Warning: body\r\n"
        );
        // Our own id written with a trailing dot matches too.
        let (n, _) = strip_forged_results(
            b"Authentication-Results: mail.example.test; none\r\n\r\n",
            "Mail.Example.Test.",
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn strips_only_results_claiming_our_id() {
        let msg = b"Received: from x\r\nAuthentication-Results: MAIL.example.test;\r\n\tspf=pass smtp.mailfrom=forged@bank.test\r\nAuthentication-Results: other.test; dkim=pass\r\nAuthentication-Results: (c) mail.example.test 1; spf=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mail.example.test; body text\r\n";
        let (n, out) = strip_forged_results(msg, "mail.example.test");
        assert_eq!(n, 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from x\r\nAuthentication-Results: other.test; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mail.example.test; body text\r\n"
        );
        let (n, out) = strip_forged_results(b"Subject: x\r\n\r\nbody", "m.test");
        assert_eq!(
            (n, out.as_slice()),
            (0, b"Subject: x\r\n\r\nbody".as_slice())
        );
    }

    /// Review of issue 15 (forged Authentication-Results): RFC 5322 comments nest and
    /// hold quoted-pairs, and the authserv-id may be a quoted-string with quoted-pairs
    /// (RFC 8601 §2.2, RFC 2045 `value`). A reader that knows this takes each of these
    /// for a result in our name; the first `)` or a literal quote match hid them.
    #[test]
    fn results_behind_nested_or_escaped_comments_are_ours_too() {
        for v in [
            "(a (b) c) mail.example.test; dkim=pass header.d=bank.test",
            "(a\\) b) mail.example.test; dkim=pass header.d=bank.test",
            "(x)(y) mail.example.test; spf=pass",
            "\"mail\\.example.test\"; spf=pass",
            "(c)\r\n mail.example.test(d); spf=pass",
        ] {
            let msg = format!("Authentication-Results: {v}\r\nSubject: s\r\n\r\nb\r\n");
            let (n, out) = strip_forged_results(msg.as_bytes(), "mail.example.test");
            assert_eq!(n, 1, "{v}: {}", String::from_utf8_lossy(&out));
        }
        // An unterminated comment names nobody: nothing to strip, nothing vouched for.
        let (n, _) = strip_forged_results(
            b"Authentication-Results: (a mail.example.test; spf=pass\r\n\r\n",
            "mail.example.test",
        );
        assert_eq!(n, 0);
    }
}
