//! SMTP replies and the errors that become them.
//!
//! Every refusal is an [`SmtpError`]: basic code (RFC 5321 §4.2), enhanced status code
//! (RFC 3463, announced with ENHANCEDSTATUSCODES, RFC 2034), whether it is temporary,
//! a message for the client that leaks nothing about the configuration, and a short
//! `reason` label for metrics and logs — the shape of maddy's `exterrors`. Stage
//! modules return `Result<Reply, SmtpError>`; `Session::reply` is the one place that
//! turns either into octets, counts it and applies the tarpit.
//!
//! Replies are formatted by `bulwark_wire::write_reply` (the one writer of the
//! multi-line form, shared with the queue) rather than with smtp-proto's writers: its
//! EHLO writer fixes the greeting text and its `Response` cannot carry two-digit
//! enhanced codes such as 5.7.11 (RFC 4954 §6 / RFC 5248).

use std::borrow::Cow;

pub use bulwark_wire::Enhanced;

/// One reply, possibly multi-line (EHLO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 §4.2), e.g. 250.
    pub code: u16,
    /// None for replies that carry none (greeting, EHLO/HELO, 334, 354: RFC 2034 §3).
    pub enhanced: Option<Enhanced>,
    /// The first line's text, then further lines (EHLO keywords).
    pub lines: Vec<Cow<'static, str>>,
    /// Label for metrics and logs (e.g. "ok", "bare_lf", "relay_denied").
    pub reason: &'static str,
}

impl Reply {
    /// A one-line reply with an enhanced status code (RFC 2034), reason "ok".
    pub fn new(code: u16, enhanced: Enhanced, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
            reason: "ok",
        }
    }

    /// A reply without an enhanced status code.
    pub fn plain(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
            reason: "ok",
        }
    }

    /// 250 2.0.0 with this text.
    pub fn ok(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::new(250, Enhanced::new(2, 0, 0), text)
    }

    /// The same reply with another metrics/log label.
    pub fn with_reason(mut self, reason: &'static str) -> Reply {
        self.reason = reason;
        self
    }

    /// 4xx: the client may try again later.
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 4xx or 5xx.
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply in wire form (`code-text` continuation lines, `code text` last,
    /// printable ASCII only: `bulwark_wire::write_reply`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        bulwark_wire::write_reply(out, self.code, self.enhanced, &self.lines);
    }

    /// The reply in wire form, as [`Reply::write_to`] appends it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.write_to(&mut v);
        v
    }
}

/// A refusal: what went wrong, in SMTP terms (maddy's `exterrors.SMTPError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {enhanced} {message}")]
pub struct SmtpError {
    /// The 4xx or 5xx reply code (RFC 5321 §4.2).
    pub code: u16,
    /// The enhanced status code (RFC 3463).
    pub enhanced: Enhanced,
    /// The text for the client; says nothing about the configuration.
    pub message: Cow<'static, str>,
    /// Label for metrics and logs.
    pub reason: &'static str,
}

impl SmtpError {
    /// A refusal; `code` must be 4xx or 5xx (checked in debug builds).
    pub fn new(
        code: u16,
        enhanced: Enhanced,
        reason: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> SmtpError {
        debug_assert!(code >= 400);
        SmtpError {
            code,
            enhanced,
            message: message.into(),
            reason,
        }
    }

    /// 4xx: the client may retry (RFC 5321 §4.2.1).
    pub fn is_temporary(&self) -> bool {
        (400..500).contains(&self.code)
    }

    // ---- the vocabulary, one constructor per kind of refusal ----

    /// 503 5.5.1: a command out of order (RFC 5321 §4.1.4).
    pub fn bad_sequence(message: &'static str) -> SmtpError {
        SmtpError::new(503, Enhanced::new(5, 5, 1), "bad_sequence", message)
    }
    /// 501 5.5.2: arguments the command does not accept (RFC 5321 §4.2.3).
    pub fn syntax(message: impl Into<Cow<'static, str>>) -> SmtpError {
        SmtpError::new(501, Enhanced::new(5, 5, 2), "syntax", message)
    }
    /// 500 5.5.2: a command line over 1000 octets (RFC 5321 §4.5.3.1.4).
    pub fn line_too_long() -> SmtpError {
        SmtpError::new(
            500,
            Enhanced::new(5, 5, 2),
            "line_too_long",
            "Line too long (at most 1000 octets including CRLF, RFC 5321 section 4.5.3.1.4)",
        )
    }
    /// 500 5.5.1: a command verb we do not know (RFC 5321 §4.2.4).
    pub fn unknown_command() -> SmtpError {
        SmtpError::new(
            500,
            Enhanced::new(5, 5, 1),
            "unknown_command",
            "Command unrecognized",
        )
    }
    /// 502 5.5.1: a known command this server does not implement (RFC 5321 §4.2.4).
    pub fn not_implemented() -> SmtpError {
        SmtpError::new(
            502,
            Enhanced::new(5, 5, 1),
            "not_implemented",
            "Command not implemented",
        )
    }
    /// 530 5.7.0 before STARTTLS where TLS is required (RFC 3207 §4).
    pub fn tls_required() -> SmtpError {
        SmtpError::new(
            530,
            Enhanced::new(5, 7, 0),
            "tls_required",
            "Must issue a STARTTLS command first",
        )
    }
    /// 530 5.7.0 where AUTH is required (RFC 4954 §6).
    pub fn auth_required() -> SmtpError {
        SmtpError::new(
            530,
            Enhanced::new(5, 7, 0),
            "auth_required",
            "Authentication required",
        )
    }
    /// 538 5.7.11: AUTH before TLS (RFC 4954 §6).
    pub fn encryption_required() -> SmtpError {
        SmtpError::new(
            538,
            Enhanced::new(5, 7, 11),
            "encryption_required",
            "Encryption required for requested authentication mechanism",
        )
    }
    /// 552 5.3.4: the message is larger than `max_message_size` (RFC 1870 §6).
    pub fn size_exceeded() -> SmtpError {
        SmtpError::new(
            552,
            Enhanced::new(5, 3, 4),
            "size",
            "Message size exceeds fixed maximum message size",
        )
    }
    /// 452 4.3.1: the memory for messages in transit (`[smtp] max_inflight_bytes`) is
    /// taken by other sessions; the client retries later (RFC 3463 §3.4 "mail system
    /// full", RFC 5321 §4.2.2 452 "insufficient system storage").
    pub fn insufficient_memory() -> SmtpError {
        SmtpError::new(
            452,
            Enhanced::new(4, 3, 1),
            "inflight_budget",
            "Insufficient system resources, try again later",
        )
    }
    /// 451 4.3.0: a local problem (store, signer); `reason` labels it in metrics.
    pub fn temporary_failure(reason: &'static str) -> SmtpError {
        SmtpError::new(
            451,
            Enhanced::new(4, 3, 0),
            reason,
            "Temporary local problem, try again later",
        )
    }
}

impl From<SmtpError> for Reply {
    fn from(e: SmtpError) -> Reply {
        Reply {
            code: e.code,
            enhanced: Some(e.enhanced),
            lines: vec![e.message],
            reason: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_single_and_multi_line() {
        assert_eq!(Reply::ok("OK").to_bytes(), b"250 2.0.0 OK\r\n".to_vec());
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec![
                "mail.example.test".into(),
                "PIPELINING".into(),
                "SIZE 10".into(),
            ],
            reason: "ok",
        };
        assert_eq!(
            r.to_bytes(),
            b"250-mail.example.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n".to_vec()
        );
        let e: Reply = SmtpError::encryption_required().into();
        assert!(e.to_bytes().starts_with(b"538 5.7.11 "));
        assert!(!e.is_temporary());
        assert!(SmtpError::temporary_failure("x").is_temporary());
    }

    #[test]
    fn never_emits_a_line_break_inside_a_reply_line() {
        let r = Reply::ok("a\r\nb");
        assert_eq!(r.to_bytes(), b"250 2.0.0 a  b\r\n".to_vec());
    }
}

#[cfg(test)]
mod ascii_tests {
    use super::*;

    #[test]
    fn replies_on_the_wire_are_ascii() {
        let r = SmtpError::new(
            550,
            Enhanced::new(5, 7, 1),
            "x",
            "DMARC (RFC 7489 \u{a7}6.6.1) \u{2014} caf\u{e9}\r\n250 fake",
        );
        let wire = Reply::from(r).to_bytes();
        assert_eq!(
            String::from_utf8(wire).unwrap(),
            "550 5.7.1 DMARC (RFC 7489 section 6.6.1) - caf?  250 fake\r\n"
        );
    }

    /// Every reply text written in this crate is ASCII at the source (the wire
    /// filter above is the net, not the rule): string literals outside comments and
    /// test modules, in every module that builds replies.
    #[test]
    fn reply_texts_in_the_sources_are_ascii() {
        let sources = [
            ("address.rs", include_str!("address.rs")),
            ("auth.rs", include_str!("auth.rs")),
            ("bdat.rs", include_str!("bdat.rs")),
            ("budget.rs", include_str!("budget.rs")),
            ("checks.rs", include_str!("checks.rs")),
            ("data.rs", include_str!("data.rs")),
            ("ehlo.rs", include_str!("ehlo.rs")),
            ("mail.rs", include_str!("mail.rs")),
            ("message.rs", include_str!("message.rs")),
            ("numbers.rs", include_str!("numbers.rs")),
            ("rcpt.rs", include_str!("rcpt.rs")),
            ("reply.rs", include_str!("reply.rs")),
            ("server.rs", include_str!("server.rs")),
            ("session.rs", include_str!("session.rs")),
            ("starttls.rs", include_str!("starttls.rs")),
        ];
        let mut bad = Vec::new();
        for (file, text) in sources {
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("#[cfg(test)]") {
                    break;
                }
                if code.starts_with("//") || code.starts_with("'") {
                    continue;
                }
                // The string literals of the line (comments after code cut off).
                let code = code.split(" //").next().unwrap_or(code);
                let literals = code.split('"').skip(1).step_by(2);
                if literals.clone().any(|l| !l.is_ascii()) {
                    bad.push(format!("{file}:{}: {line}", i + 1));
                }
            }
        }
        assert!(bad.is_empty(), "non-ASCII reply text:\n{}", bad.join("\n"));
    }
}
