//! The path of MAIL FROM and RCPT TO (RFC 5321 §4.1.2), read before smtp-proto sees
//! the line.
//!
//! Written by hand because smtp-proto 0.2 refuses address literals
//! (`<a@[192.0.2.1]>`, `<a@[IPv6:2001:db8::1]>`, RFC 5321 §4.1.3) and hands back a
//! quoted local part without its quotes (`"bob@example.test>"@attacker.test` becomes
//! `bob@example.test>@attacker.test`, which a Return-Path reader takes for
//! bob@example.test). Here the path is read into a [`Mailbox`], written back in its
//! canonical form (quoted only where the local part needs it), and replaced in the
//! line by a plain placeholder so that smtp-proto still parses the parameters.
//! `<>` and `<Postmaster>` are left to smtp-proto.

use crate::reply::{Enhanced, SmtpError};

/// Stands in for the path in the line given to smtp-proto (`.invalid`, RFC 2606: no
/// real address has it).
const PLACEHOLDER: &str = "<path@path.invalid>";

/// A path read from a MAIL or RCPT line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreParsed {
    /// The line with the path replaced by [`PLACEHOLDER`].
    pub line: Vec<u8>,
    /// The mailbox in canonical form: `local@domain`, with the local part quoted
    /// (RFC 5321 §4.1.2 Quoted-string) only when it is not a Dot-string.
    pub address: String,
}

/// RFC 5321 §4.1.2 atext (RFC 5322 §3.2.3), plus UTF-8 (RFC 6531 §3.3; whether
/// UTF-8 is allowed is decided with SMTPUTF8 later).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn is_dot_string(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|a| !a.is_empty() && a.chars().all(is_atext))
}

/// The inside of a quoted local part we carry: nothing that a reader unaware of
/// quoting would take for the end of the address or of the quoted string.
pub(crate) fn safe_quoted_content(inner: &str) -> bool {
    !inner.is_empty()
        && !inner
            .chars()
            .any(|c| matches!(c, '<' | '>' | '@' | '"' | '\\') || c.is_control())
}

/// 501 for a MAIL or RCPT line whose path [`preparse`] did not read (`MAIL  FROM:`,
/// `MAIL FROM :<`): smtp-proto accepts such spellings but drops the quotes of a
/// quoted local part and keeps escaped ones (`"\\"x\\"bob@example.test>..."@attacker.test`
/// came out as `"x"bob@example.test>...`), so only one reader may decide a path.
pub(crate) fn unread_path(mail: bool) -> SmtpError {
    SmtpError::new(
        501,
        Enhanced::new(5, 5, 2),
        "bad_address",
        if mail {
            "Syntax: MAIL FROM:<address> (no space before or after the colon but one)"
        } else {
            "Syntax: RCPT TO:<address> (no space before or after the colon but one)"
        },
    )
}

/// 553 for a local part we will not carry: one that other software would read as a
/// different address once written into a header field or an outbound command.
fn unsafe_local_part(mail: bool) -> SmtpError {
    SmtpError::new(
        553,
        Enhanced::new(5, 1, if mail { 7 } else { 3 }),
        "bad_address",
        "Quoted local parts with <, >, @, quote, backslash or control characters are not accepted",
    )
}

fn bad_syntax(mail: bool) -> SmtpError {
    if mail {
        SmtpError::new(
            501,
            Enhanced::new(5, 1, 7),
            "bad_address",
            "Bad sender address syntax",
        )
    } else {
        SmtpError::new(
            501,
            Enhanced::new(5, 1, 3),
            "bad_address",
            "Bad recipient address syntax",
        )
    }
}

/// Reads the path of a `MAIL FROM:` or `RCPT TO:` line (without CRLF). `None` when the
/// line is another command or its path is `<>`/`<Postmaster>`/not in angle brackets
/// (smtp-proto decides those).
pub(crate) fn preparse(line: &[u8]) -> Result<Option<PreParsed>, SmtpError> {
    let upper: Vec<u8> = line.iter().take(10).map(u8::to_ascii_uppercase).collect();
    let (mail, prefix) = if upper.starts_with(b"MAIL FROM:") {
        (true, 10)
    } else if upper.starts_with(b"RCPT TO:") {
        (false, 8)
    } else {
        return Ok(None);
    };
    let rest = &line[prefix..];
    let skip = rest.iter().take_while(|b| **b == b' ').count();
    let start = prefix + skip;
    if line.get(start) != Some(&b'<') {
        return Ok(None);
    }
    let text = std::str::from_utf8(&line[start + 1..]).map_err(|_| bad_syntax(mail))?;
    // RFC 5321 §4.1.2 A-d-l: a source route is accepted and ignored (§C).
    let mut body = text;
    if body.starts_with('@') {
        match body.find(':') {
            Some(i) => body = &body[i + 1..],
            None => return Err(bad_syntax(mail)),
        }
    }
    let (local, after_local) = if let Some(q) = body.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                // quoted-pairSMTP: backslash and one printable character.
                '\\' => match chars.next() {
                    Some((_, e)) if (' '..='~').contains(&e) => value.push(e),
                    _ => return Err(bad_syntax(mail)),
                },
                c if c.is_control() => return Err(bad_syntax(mail)),
                c => value.push(c),
            }
        }
        let Some(end) = end else {
            return Err(bad_syntax(mail));
        };
        (value, &q[end..])
    } else {
        let end = body.find(['@', '>']).unwrap_or(body.len());
        (body[..end].to_string(), &body[end..])
    };
    if local.is_empty() || local.eq_ignore_ascii_case("postmaster") && after_local.starts_with('>')
    {
        // <> and <Postmaster>: smtp-proto's.
        return Ok(None);
    }
    let Some(domain_part) = after_local.strip_prefix('@') else {
        return Err(bad_syntax(mail));
    };
    let Some(close) = domain_part.find('>') else {
        return Err(bad_syntax(mail));
    };
    let domain = &domain_part[..close];
    // The domain is checked in full later (`mail::valid_domain_or_literal`); what
    // could make the address read differently is refused here already.
    if domain.contains(['@', '"', '<', '\\', ' ']) {
        return Err(bad_syntax(mail));
    }
    let address = if is_dot_string(&local) {
        format!("{local}@{domain}")
    } else {
        // Kept quoted. What would change meaning for a reader that does not know
        // quoting (the Return-Path, MAIL/RCPT of the next hop, DSN fields) is refused.
        if !safe_quoted_content(&local) {
            return Err(unsafe_local_part(mail));
        }
        format!("\"{local}\"@{domain}")
    };
    // Byte offset of the closing '>' in `line`.
    let consumed = text.len() - (domain_part.len() - close);
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..start]);
    out.extend_from_slice(PLACEHOLDER.as_bytes());
    out.extend_from_slice(&line[start + 1 + consumed + 1..]);
    Ok(Some(PreParsed { line: out, address }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(line: &str) -> Result<Option<(String, String)>, u16> {
        preparse(line.as_bytes())
            .map(|o| o.map(|p| (String::from_utf8(p.line).unwrap(), p.address)))
            .map_err(|e| e.code)
    }

    #[test]
    fn literals_and_plain_addresses() {
        assert_eq!(
            addr("MAIL FROM:<a@[192.0.2.1]> SIZE=10"),
            Ok(Some((
                "MAIL FROM:<path@path.invalid> SIZE=10".into(),
                "a@[192.0.2.1]".into()
            )))
        );
        assert_eq!(
            addr("rcpt to: <b.c@[IPv6:2001:db8::1]>"),
            Ok(Some((
                "rcpt to: <path@path.invalid>".into(),
                "b.c@[IPv6:2001:db8::1]".into()
            )))
        );
        assert_eq!(
            addr("RCPT TO:<@relay.test,@b.test:x@example.test> NOTIFY=NEVER"),
            Ok(Some((
                "RCPT TO:<path@path.invalid> NOTIFY=NEVER".into(),
                "x@example.test".into()
            )))
        );
        assert_eq!(addr("MAIL FROM:<>"), Ok(None));
        assert_eq!(addr("RCPT TO:<Postmaster>"), Ok(None));
        assert_eq!(addr("NOOP <a@b>"), Ok(None));
        assert_eq!(addr("MAIL FROM:<a@b"), Err(501));
        assert_eq!(addr("MAIL FROM:<ab>"), Err(501));
        assert_eq!(addr("RCPT TO:<bob@@example.test>"), Err(501));
    }

    #[test]
    fn quoted_local_parts_keep_their_quotes_or_are_refused() {
        assert_eq!(
            addr("RCPT TO:<\"a b\"@remote.test>").map(|o| o.map(|p| p.1)),
            Ok(Some("\"a b\"@remote.test".into()))
        );
        // A quoted Dot-string needs no quotes (RFC 5321 §4.1.2: the same mailbox).
        assert_eq!(
            addr("RCPT TO:<\"a.b\"@remote.test>").map(|o| o.map(|p| p.1)),
            Ok(Some("a.b@remote.test".into()))
        );
        // The case: it would read as bob@example.test elsewhere.
        assert_eq!(
            addr("MAIL FROM:<\"bob@example.test>\"@attacker.test>"),
            Err(553)
        );
        for l in [
            "RCPT TO:<\"a\\\"b\"@x.test>",
            "RCPT TO:<\"a\\\\b\"@x.test>",
            "RCPT TO:<\"<a>\"@x.test>",
        ] {
            assert_eq!(addr(l), Err(553), "{l}");
        }
        assert_eq!(addr("RCPT TO:<\"unterminated@x.test>"), Err(501));
    }
}
