//! Command framing (RFC 9051 §4.3 literals, RFC 7888 LITERAL+): which literal a
//! client may send, decided from the line that announces it, before a byte of it is
//! read and before any "+" goes out.
//!
//! Sans-I/O: the shell feeds lines (`push_line`) and literal octets
//! (`literal_buffer`); the framer answers with what to do next, and hands out the
//! complete command once — it is decoded once, not after every line.
//!
//! The limits depend on the session:
//! - before login, literals are for LOGIN and AUTHENTICATE only, at most
//!   `PRE_AUTH_LITERAL` octets in all, and only over TLS (otherwise the password would
//!   cross in cleartext: `NO [PRIVACYREQUIRED]`, no "+");
//! - after login, APPEND's message literal may be as large as `max_literal_size`;
//!   any other literal (a mailbox name, a search string, a pattern) is a few
//!   kilobytes at most, so they share `max_line` octets per command.
//!
//! Hand-written because imap-codec decodes whole commands only; its fragmentizer
//! splits lines and literals but knows neither our limits nor who is logged in.

use crate::code::ResponseCode;

/// Most literal octets a command may carry before login (LOGIN user and password).
pub(crate) const PRE_AUTH_LITERAL: u64 = 8 * 1024;
/// Longest command line before login. The longest legitimate one is an ID (RFC 2971
/// §3.3: at most 30 field-value pairs, fields of at most 30 octets, values of at most
/// 1024): 30 × (30 + 1024 + 4 quotes + 2 spaces) + `tag ID ()` ≈ 31,810 octets, which
/// imaptest's `id` script sends. LOGIN and AUTHENTICATE are far shorter.
pub(crate) const PRE_AUTH_LINE: usize = 32 * 1024;
/// Most literals in one command (a LOGIN has two, an APPEND two or three, a
/// MULTIAPPEND-less SEARCH a handful). Each line is decoded once (when the command is
/// complete), so the work per command is linear in its size whatever this is.
pub(crate) const MAX_LITERALS: usize = 64;

/// Where the session stands, as far as framing is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameState {
    pub authenticated: bool,
    pub tls: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimits {
    /// Longest command line after login (literals excluded).
    pub max_line: usize,
    /// Largest APPEND message.
    pub max_literal: u64,
}

/// What to do after a line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The command is complete: decode these octets.
    Complete(Vec<u8>),
    /// Read a literal of `len` octets into `literal_buffer` (after sending "+" when
    /// `sync`), then the next line.
    Literal { len: u64, sync: bool },
    /// The literal is refused: send `reply` (tagged, no "+"). When the client is
    /// already sending it (non-synchronising literal), close the connection after a
    /// BYE (RFC 7888 §4) instead of reading it.
    Refuse { reply: String, close: bool },
    /// Not a command we can frame (bad announcement, too much text).
    Malformed { tag: Option<String> },
    /// More literals than any real command has: `BAD [TOOBIG]`. Refused when the
    /// line announcing one too many arrives, before that literal is read; `close`
    /// when it is non-synchronising (already on its way).
    TooComplex { tag: Option<String>, close: bool },
}

/// A literal announcement at the end of a line: `{n}`, `{n+}` or `~{n}` (RFC 3516).
pub(crate) fn literal_announcement(line: &[u8]) -> Option<Result<(u64, bool), ()>> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|c| *c == b'{')?;
    let mut digits = &body[open + 1..];
    let sync = match digits.strip_suffix(b"+") {
        Some(d) => {
            digits = d;
            false
        }
        None => true,
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // imap-codec (and RFC 9051's number) stop at 2^32 - 1.
    if digits.len() > 10 {
        return Some(Err(()));
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(())
        .ok()?;
    if n > u64::from(u32::MAX) {
        return Some(Err(()));
    }
    Some(Ok((n, sync)))
}

/// The tag of a line, when it has one (for replies to unparseable commands).
pub(crate) fn guess_tag(buf: &[u8]) -> Option<String> {
    let end = buf
        .iter()
        .position(|c| *c == b' ' || *c == b'\r' || *c == b'\n')
        .unwrap_or(buf.len());
    let t = &buf[..end];
    // RFC 9051 tag: 1*<any ASTRING-CHAR except "+">.
    let valid = !t.is_empty()
        && t.len() <= 64
        && t.iter()
            .all(|c| (0x21..=0x7e).contains(c) && !b"(){%*\"\\+".contains(c));
    valid.then(|| String::from_utf8_lossy(t).into_owned())
}

/// The command word of a first line (after the tag), upper-cased.
fn verb(first_line: &[u8]) -> String {
    first_line
        .split(|c| *c == b' ')
        .filter(|w| !w.is_empty())
        .nth(1)
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase())
        .unwrap_or_default()
}

pub(crate) fn verb_is_secret(first_line: &[u8]) -> bool {
    matches!(verb(first_line).as_str(), "LOGIN" | "AUTHENTICATE")
}

/// Collects one command.
pub(crate) struct Framer {
    state: FrameState,
    limits: FrameLimits,
    buf: Vec<u8>,
    tag: Option<String>,
    verb: String,
    /// The first line is exactly `tag APPEND {n}`: its literal is the mailbox name.
    append_mailbox_literal: bool,
    literals: usize,
    /// Literal octets other than APPEND's message.
    small_literal_total: u64,
    message_len: u64,
    /// The length of the literal just announced, when it is a message (MULTIAPPEND
    /// announces several).
    last_message: Option<u64>,
    lines: usize,
}

impl Framer {
    pub(crate) fn new(state: FrameState, limits: FrameLimits) -> Framer {
        Framer {
            state,
            limits,
            buf: Vec::new(),
            tag: None,
            verb: String::new(),
            append_mailbox_literal: false,
            literals: 0,
            small_literal_total: 0,
            message_len: 0,
            last_message: None,
            lines: 0,
        }
    }

    /// The longest line to read next (without its CRLF).
    pub(crate) fn max_line(&self) -> usize {
        if self.state.authenticated {
            self.limits.max_line
        } else {
            PRE_AUTH_LINE
        }
    }

    /// The command so far has a secret (LOGIN/AUTHENTICATE): later lines are logged
    /// redacted.
    pub(crate) fn is_secret(&self) -> bool {
        matches!(self.verb.as_str(), "LOGIN" | "AUTHENTICATE")
    }

    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Where literal octets go (appended).
    pub(crate) fn literal_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// One line, without its line ending.
    pub(crate) fn push_line(&mut self, line: &[u8]) -> Step {
        if self.lines == 0 {
            self.tag = guess_tag(line);
            self.verb = verb(line);
        }
        self.lines += 1;
        self.buf.extend_from_slice(line);
        self.buf.extend_from_slice(b"\r\n");
        // Lines are bounded by the reader; bound what they add up to as well.
        let non_message = self.buf.len() as u64 - self.message_octets();
        if non_message > 4 * self.max_line() as u64 + self.small_literal_total {
            return Step::Malformed {
                tag: self.tag.clone(),
            };
        }
        let Some(ann) = literal_announcement(line) else {
            return Step::Complete(std::mem::take(&mut self.buf));
        };
        let Ok((len, sync)) = ann else {
            return Step::Malformed {
                tag: self.tag.clone(),
            };
        };
        if self.literals == 0 && self.verb == "APPEND" {
            let words: Vec<&[u8]> = line
                .split(|c| *c == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            self.append_mailbox_literal = words.len() == 3;
        }
        self.literals += 1;
        if self.literals > MAX_LITERALS {
            return Step::TooComplex {
                tag: self.tag.clone(),
                close: !sync,
            };
        }
        let tag = self.tag.clone().unwrap_or_else(|| "*".into());
        let refuse = |reply: String| Step::Refuse {
            reply,
            close: !sync,
        };
        if !self.state.authenticated {
            if !self.is_secret() {
                return refuse(format!(
                    "{tag} BAD Literals are not accepted before login, except in LOGIN and AUTHENTICATE"
                ));
            }
            if !self.state.tls {
                // RFC 9051 §6.2.3, DATA-PATHS rule 1: the password must not cross in
                // cleartext at all, so no "+" invites it.
                return refuse(format!(
                    "{tag} NO {} {} is disabled until STARTTLS",
                    ResponseCode::PrivacyRequired,
                    self.verb
                ));
            }
            if self.small_literal_total + len > PRE_AUTH_LITERAL {
                return refuse(format!(
                    "{tag} NO {} Literals before login are limited to {PRE_AUTH_LITERAL} octets",
                    ResponseCode::TooBig
                ));
            }
            self.small_literal_total += len;
            return Step::Literal { len, sync };
        }
        // RFC 3502 MULTIAPPEND: every literal of APPEND but a literal mailbox name is a
        // message; together they are bounded by `max_literal_size`, as one message is.
        let is_message =
            self.verb == "APPEND" && !(self.append_mailbox_literal && self.literals == 1);
        if is_message {
            if self.message_len.saturating_add(len) > self.limits.max_literal {
                return refuse(format!(
                    "{tag} NO {} Message larger than {} octets",
                    ResponseCode::TooBig,
                    self.limits.max_literal
                ));
            }
            self.message_len += len;
            self.last_message = Some(len);
            return Step::Literal { len, sync };
        }
        if self.small_literal_total + len > self.limits.max_line as u64 {
            return refuse(format!(
                "{tag} NO {} Literals other than an APPEND message are limited to {} octets per command",
                ResponseCode::TooBig,
                self.limits.max_line
            ));
        }
        self.small_literal_total += len;
        self.last_message = None;
        Step::Literal { len, sync }
    }

    /// The size of the literal just announced when it is one of APPEND's messages
    /// (each message of a MULTIAPPEND in turn).
    pub(crate) fn message_literal(&self) -> Option<u64> {
        self.last_message
    }

    fn message_octets(&self) -> u64 {
        self.message_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_line: 1000,
        max_literal: 100_000,
    };
    const ANON_PLAIN: FrameState = FrameState {
        authenticated: false,
        tls: false,
    };
    const ANON_TLS: FrameState = FrameState {
        authenticated: false,
        tls: true,
    };
    const AUTHED: FrameState = FrameState {
        authenticated: true,
        tls: true,
    };

    fn refused(s: Step) -> (String, bool) {
        match s {
            Step::Refuse { reply, close } => (reply, close),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn announcements() {
        assert_eq!(literal_announcement(b"a LOGIN {5}"), Some(Ok((5, true))));
        assert_eq!(
            literal_announcement(b"a APPEND x {5+}"),
            Some(Ok((5, false)))
        );
        assert_eq!(
            literal_announcement(b"a APPEND x ~{7}"),
            Some(Ok((7, true)))
        );
        assert_eq!(literal_announcement(b"a NOOP"), None);
        assert_eq!(literal_announcement(b"a X {}"), None);
        assert_eq!(literal_announcement(b"a X {1a}"), None);
        assert_eq!(literal_announcement(b"a X {99999999999}"), Some(Err(())));
        assert_eq!(literal_announcement(b"a X {4294967296}"), Some(Err(())));
    }

    #[test]
    fn one_complete_command_per_line_without_literals() {
        let mut f = Framer::new(AUTHED, LIMITS);
        assert_eq!(
            f.push_line(b"a NOOP"),
            Step::Complete(b"a NOOP\r\n".to_vec())
        );
    }

    #[test]
    fn before_tls_no_literal_invites_a_password() {
        let mut f = Framer::new(ANON_PLAIN, LIMITS);
        let (r, close) = refused(f.push_line(b"a LOGIN {5}"));
        assert!(r.starts_with("a NO [PRIVACYREQUIRED]"), "{r}");
        assert!(!close);
        let mut f = Framer::new(ANON_PLAIN, LIMITS);
        let (r, close) = refused(f.push_line(b"a LOGIN alice {5+}"));
        assert!(r.starts_with("a NO [PRIVACYREQUIRED]"), "{r}");
        assert!(close, "a non-synchronising literal is already on its way");
    }

    #[test]
    fn before_login_literals_are_small_and_only_for_login() {
        let mut f = Framer::new(ANON_TLS, LIMITS);
        assert_eq!(
            f.push_line(b"a LOGIN {5}"),
            Step::Literal { len: 5, sync: true }
        );
        f.literal_buffer().extend_from_slice(b"alice");
        assert_eq!(
            f.push_line(b" {8000}"),
            Step::Literal {
                len: 8000,
                sync: true
            }
        );
        f.literal_buffer().extend_from_slice(&[b'x'; 8000]);
        assert!(matches!(f.push_line(b""), Step::Complete(_)));
        let mut f = Framer::new(ANON_TLS, LIMITS);
        let (r, _) = refused(f.push_line(b"a LOGIN alice {8193}"));
        assert!(r.starts_with("a NO [TOOBIG]"), "{r}");
        let mut f = Framer::new(ANON_TLS, LIMITS);
        let (r, _) = refused(f.push_line(b"a APPEND INBOX {5}"));
        assert!(r.starts_with("a BAD"), "{r}");
        let mut f = Framer::new(ANON_TLS, LIMITS);
        let (r, close) = refused(f.push_line(b"a SELECT {67108864+}"));
        assert!(r.starts_with("a BAD") && close, "{r}");
        assert_eq!(Framer::new(ANON_TLS, LIMITS).max_line(), PRE_AUTH_LINE);
    }

    /// RFC 3502: each message of a MULTIAPPEND is a message literal, and together
    /// they are held to `max_literal`.
    #[test]
    fn multiappend_messages_share_the_message_limit() {
        let mut f = Framer::new(AUTHED, LIMITS);
        assert_eq!(
            f.push_line(b"a APPEND INBOX {40000}"),
            Step::Literal {
                len: 40_000,
                sync: true
            }
        );
        f.literal_buffer().extend_from_slice(&[b'x'; 40_000]);
        assert_eq!(
            f.push_line(b" (\\Seen) {50000}"),
            Step::Literal {
                len: 50_000,
                sync: true
            }
        );
        // Each message is announced to the shell (which takes its memory budget).
        assert_eq!(f.message_literal(), Some(50_000));
        f.literal_buffer().extend_from_slice(&[b'x'; 50_000]);
        let (r, _) = refused(f.push_line(b" {10001}"));
        assert!(r.starts_with("a NO [TOOBIG]"), "{r}");
    }

    #[test]
    fn after_login_only_append_messages_are_big() {
        let mut f = Framer::new(AUTHED, LIMITS);
        assert_eq!(
            f.push_line(b"a APPEND INBOX (\\Seen) {100000}"),
            Step::Literal {
                len: 100_000,
                sync: true
            }
        );
        let mut f = Framer::new(AUTHED, LIMITS);
        let (r, _) = refused(f.push_line(b"a APPEND INBOX {100001}"));
        assert!(r.starts_with("a NO [TOOBIG]"), "{r}");
        // The mailbox name as a literal is small; the message after it is not.
        let mut f = Framer::new(AUTHED, LIMITS);
        let (r, _) = refused(f.push_line(b"a APPEND {5000}"));
        assert!(r.starts_with("a NO [TOOBIG]"), "{r}");
        let mut f = Framer::new(AUTHED, LIMITS);
        assert_eq!(
            f.push_line(b"a APPEND {5}"),
            Step::Literal { len: 5, sync: true }
        );
        f.literal_buffer().extend_from_slice(b"INBOX");
        assert_eq!(
            f.push_line(b" {50000+}"),
            Step::Literal {
                len: 50_000,
                sync: false
            }
        );
        f.literal_buffer().extend_from_slice(&[b'x'; 50_000]);
        assert!(matches!(f.push_line(b""), Step::Complete(_)));
        // Anything else: small literals only.
        let mut f = Framer::new(AUTHED, LIMITS);
        let (r, _) = refused(f.push_line(b"a SEARCH TEXT {100000}"));
        assert!(r.starts_with("a NO [TOOBIG]"), "{r}");
        let mut f = Framer::new(AUTHED, LIMITS);
        assert!(matches!(
            f.push_line(b"a LIST \"\" {900}"),
            Step::Literal { .. }
        ));
    }

    #[test]
    fn literal_counts_and_sizes_are_bounded() {
        let mut f = Framer::new(AUTHED, LIMITS);
        let mut last = Step::Complete(Vec::new());
        for _ in 0..100 {
            last = f.push_line(b" {1}");
            if !matches!(last, Step::Literal { .. }) {
                break;
            }
            f.literal_buffer().push(b'x');
        }
        assert_eq!(
            last,
            Step::TooComplex {
                tag: None,
                close: false
            }
        );
        let mut f = Framer::new(AUTHED, LIMITS);
        assert_eq!(
            f.push_line(b"t SEARCH TEXT {1+}"),
            Step::Literal {
                len: 1,
                sync: false
            }
        );
        let mut last = Step::Complete(Vec::new());
        for _ in 0..MAX_LITERALS {
            f.literal_buffer().push(b'x');
            last = f.push_line(b" TEXT {1+}");
        }
        assert_eq!(
            last,
            Step::TooComplex {
                tag: Some("t".into()),
                close: true
            }
        );
        let mut f = Framer::new(AUTHED, LIMITS);
        assert!(matches!(
            f.push_line(b"a X {99999999999}"),
            Step::Malformed { .. }
        ));
    }

    #[test]
    fn tags_and_secret_verbs() {
        assert_eq!(guess_tag(b"a1 NOOP"), Some("a1".into()));
        assert_eq!(guess_tag(b"+ NOOP"), None);
        assert!(verb_is_secret(b"x login a b"));
        assert!(!verb_is_secret(b"x LIST a b"));
    }
}
