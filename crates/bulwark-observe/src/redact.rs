//! Removing secrets from client lines before they reach a log.
//!
//! Redaction keys on the command verb, so it works even when the protocol state
//! machine did not parse the line (a malformed AUTH is still redacted).

/// Which protocol's commands carry secrets where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redactor {
    /// `AUTH mech initial-response`.
    Smtp,
    /// `tag LOGIN user pass`, `tag AUTHENTICATE mech initial-response`.
    Imap,
    /// `PASS secret`, `APOP user digest`, `AUTH mech initial-response`.
    Pop3,
    /// Lines that never carry secrets (e.g. metrics).
    None,
}

impl Redactor {
    /// The redactor of a listener's protocol. Every listener that can carry a secret
    /// gets its protocol's rules; only the HTTP redirect and metrics (whose handler
    /// never passes header fields to the log) get `None`.
    pub fn for_listener(kind: bulwark_config::ListenerKind) -> Redactor {
        use bulwark_config::ListenerKind as K;
        match kind {
            K::Smtp | K::Submission | K::Submissions => Redactor::Smtp,
            K::Imap | K::Imaps => Redactor::Imap,
            K::Pop3 | K::Pop3s => Redactor::Pop3,
            K::Http | K::Https | K::Metrics => Redactor::None,
        }
    }
}

fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Keeps `keep` words of `s` and replaces the rest (if any) with `***`.
fn keep_words(s: &str, keep: usize) -> String {
    let mut out = String::new();
    let mut rest = s;
    for _ in 0..keep {
        let (w, r) = word(rest);
        if w.is_empty() {
            return out;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
        rest = r;
    }
    if !rest.trim().is_empty() {
        out.push_str(" ***");
    }
    out
}

/// The loggable form of a client line: printable, control characters escaped, secrets
/// replaced by `***`.
pub fn redact(r: Redactor, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let redacted = match r {
        Redactor::Smtp => {
            let (verb, _) = word(text);
            if verb.eq_ignore_ascii_case("AUTH") {
                keep_words(text, 2)
            } else {
                text.to_string()
            }
        }
        Redactor::Pop3 => {
            let (verb, _) = word(text);
            if verb.eq_ignore_ascii_case("PASS") || verb.eq_ignore_ascii_case("APOP") {
                keep_words(text, 1)
            } else if verb.eq_ignore_ascii_case("AUTH") {
                keep_words(text, 2)
            } else {
                text.to_string()
            }
        }
        Redactor::Imap => {
            let (tag, rest) = word(text);
            let (verb, _) = word(rest);
            if verb.eq_ignore_ascii_case("LOGIN") {
                // The user name may be a quoted string with spaces; keep only the verb.
                keep_words(text, 2)
            } else if verb.eq_ignore_ascii_case("AUTHENTICATE") {
                keep_words(text, 3)
            } else if tag.eq_ignore_ascii_case("LOGIN") || tag.eq_ignore_ascii_case("AUTHENTICATE")
            {
                // A line without a tag; redact anyway.
                keep_words(text, 1)
            } else {
                text.to_string()
            }
        }
        Redactor::None => text.to_string(),
    };
    escape(&redacted)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp() {
        assert_eq!(
            redact(Redactor::Smtp, b"AUTH PLAIN AGFsaWNlAHB3\r\n"),
            "AUTH PLAIN ***"
        );
        assert_eq!(redact(Redactor::Smtp, b"auth login"), "auth login");
        assert_eq!(
            redact(Redactor::Smtp, b"AUTH LOGIN YWxpY2U="),
            "AUTH LOGIN ***"
        );
        assert_eq!(
            redact(Redactor::Smtp, b"MAIL FROM:<a@b>"),
            "MAIL FROM:<a@b>"
        );
    }

    #[test]
    fn imap() {
        assert_eq!(
            redact(Redactor::Imap, b"a1 LOGIN alice secret"),
            "a1 LOGIN ***"
        );
        assert_eq!(
            redact(Redactor::Imap, b"a1 login \"al ice\" \"se cret\""),
            "a1 login ***"
        );
        assert_eq!(
            redact(Redactor::Imap, b"a2 AUTHENTICATE PLAIN AGFsaWNl"),
            "a2 AUTHENTICATE PLAIN ***"
        );
        assert_eq!(
            redact(Redactor::Imap, b"a2 AUTHENTICATE PLAIN"),
            "a2 AUTHENTICATE PLAIN"
        );
        assert_eq!(
            redact(Redactor::Imap, b"a3 SELECT INBOX"),
            "a3 SELECT INBOX"
        );
    }

    #[test]
    fn pop3() {
        assert_eq!(redact(Redactor::Pop3, b"PASS hunter2"), "PASS ***");
        assert_eq!(redact(Redactor::Pop3, b"pass  two words"), "pass ***");
        assert_eq!(
            redact(Redactor::Pop3, b"APOP alice 0123456789abcdef"),
            "APOP ***"
        );
        assert_eq!(
            redact(Redactor::Pop3, b"AUTH PLAIN AGFsaWNl"),
            "AUTH PLAIN ***"
        );
        assert_eq!(redact(Redactor::Pop3, b"USER alice"), "USER alice");
    }

    /// "Protocol log enabled without redaction" cannot be configured: every listener
    /// that carries credentials (and SMTP, where AUTH may be offered) has a redactor
    /// that removes the secret of each of its login commands.
    #[test]
    fn every_credential_listener_redacts_its_logins() {
        use bulwark_config::ListenerKind;
        for kind in ListenerKind::ALL {
            let r = Redactor::for_listener(kind);
            let lines: &[&[u8]] = match r {
                Redactor::Smtp => &[b"AUTH PLAIN c2VjcmV0", b"AUTH LOGIN c2VjcmV0"],
                Redactor::Imap => &[b"a LOGIN user secret", b"a AUTHENTICATE PLAIN c2VjcmV0"],
                Redactor::Pop3 => &[b"PASS secret", b"AUTH PLAIN c2VjcmV0"],
                Redactor::None => {
                    // HTTPS: web mail is not built yet; it must log request lines
                    // only (never bodies or cookies) and gets its own rules then.
                    assert!(
                        matches!(
                            kind,
                            ListenerKind::Http | ListenerKind::Https | ListenerKind::Metrics
                        ),
                        "{kind} carries credentials but is not redacted"
                    );
                    continue;
                }
            };
            for l in lines {
                let out = redact(r, l);
                assert!(
                    !out.contains("secret") && !out.contains("c2VjcmV0"),
                    "{kind}: {out}"
                );
            }
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(redact(Redactor::None, b"a\x00b\x1bc"), "a\\u{0}b\\u{1b}c");
    }
}
