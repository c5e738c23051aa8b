//! SMTP replies (RFC 5321 §4.2) and the capabilities an EHLO reply announces.
//!
//! Framing (where one reply ends in the byte stream) is done here because it is four
//! lines of logic and must be bounded against a hostile server; the reply itself —
//! code, enhanced status code (RFC 2034/3463), text — and the EHLO keywords are parsed
//! by `smtp-proto`, the parser of a mail-server team.

use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{EhloResponse, Response};

/// Longest reply we accept, all lines together (smtp-proto's own bound; RFC 5321
/// §4.5.3.1.5 allows 512 octets per line, EHLO replies are a few lines).
pub const MAX_REPLY: usize = smtp_proto::response::parser::MAX_RESPONSE_LENGTH;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (RFC 3463), when the server sent one.
    pub esc: Option<[u8; 3]>,
    /// The text of all lines, joined with a space, without codes.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the server sent a malformed reply: {0}")]
    Malformed(String),
    #[error("the server sent a reply longer than {MAX_REPLY} octets")]
    TooLong,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The RFC 3463 status this reply means: its own enhanced code when it has a
    /// plausible one, else the class with `.0.0`.
    pub fn status(&self) -> String {
        let class = (self.code / 100) as u8;
        match self.esc {
            Some([c, s, d]) if c == class => format!("{c}.{s}.{d}"),
            _ => format!("{}.0.0", class.clamp(2, 5)),
        }
    }

    /// One line for logs, `queue show` and DSN Diagnostic-Code: "550 5.1.1 No such user".
    pub fn one_line(&self) -> String {
        let mut s = self.code.to_string();
        if let Some([c, sub, d]) = self.esc {
            s.push_str(&format!(" {c}.{sub}.{d}"));
        }
        if !self.text.is_empty() {
            s.push(' ');
            s.push_str(&self.text);
        }
        s
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// Bytes read from the server, cut into replies.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    buf: Vec<u8>,
}

impl ReplyBuffer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when bytes beyond the replies taken so far are waiting. After the reply
    /// to STARTTLS this must be false: anything else was sent in cleartext before the
    /// handshake and could be an injection (the STARTTLS response-injection attack).
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next complete reply with its raw octets, if one has arrived.
    pub fn next_raw(&mut self) -> Result<Option<(Reply, Vec<u8>)>, ReplyError> {
        let mut pos = 0;
        loop {
            let Some(nl) = self.buf[pos..].iter().position(|b| *b == b'\n') else {
                if self.buf.len() > MAX_REPLY {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            let line = &self.buf[pos..pos + nl + 1];
            pos += nl + 1;
            if pos > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            // RFC 5321 §4.2: "ddd-text" continues, "ddd text" or "ddd" ends.
            if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
                return Err(ReplyError::Malformed(
                    String::from_utf8_lossy(line).trim_end().to_string(),
                ));
            }
            match line[3] {
                b'-' => continue,
                b' ' | b'\r' | b'\n' => break,
                _ => {
                    return Err(ReplyError::Malformed(
                        String::from_utf8_lossy(line).trim_end().to_string(),
                    ))
                }
            }
        }
        let raw: Vec<u8> = self.buf.drain(..pos).collect();
        let reply = parse(&raw)?;
        Ok(Some((reply, raw)))
    }

    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        Ok(self.next_raw()?.map(|(r, _)| r))
    }
}

/// Parses one complete reply (all its lines).
pub fn parse(raw: &[u8]) -> Result<Reply, ReplyError> {
    let mut rx = ResponseReceiver::default();
    let r: Response<String> = rx
        .parse(&mut raw.iter())
        .map_err(|e| ReplyError::Malformed(format!("{e:?}")))?;
    let text = r
        .message
        .split('\n')
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Reply {
        code: r.code,
        esc: (r.esc != [0, 0, 0]).then_some(r.esc),
        text: sanitize(&text),
    })
}

/// Replies go to logs, `queue show` and notices: keep them printable.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// What the server announced in its EHLO reply (RFC 5321 §4.1.1.1) that we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The reply was to EHLO (false after a HELO fallback: no extensions at all).
    pub esmtp: bool,
    pub starttls: bool,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    pub auth: bool,
    /// SIZE limit (RFC 1870), None when not announced or announced without a number.
    pub size: Option<u64>,
}

impl Capabilities {
    /// From the raw octets of a 250 reply to EHLO.
    pub fn from_ehlo(raw: &[u8]) -> Result<Capabilities, ReplyError> {
        let e = EhloResponse::parse(&mut raw.iter())
            .map_err(|e| ReplyError::Malformed(format!("EHLO reply: {e:?}")))?;
        let has = |c: u32| e.has_capability(c);
        Ok(Capabilities {
            esmtp: true,
            starttls: has(smtp_proto::EXT_START_TLS),
            pipelining: has(smtp_proto::EXT_PIPELINING),
            eight_bit_mime: has(smtp_proto::EXT_8BIT_MIME),
            smtputf8: has(smtp_proto::EXT_SMTP_UTF8),
            dsn: has(smtp_proto::EXT_DSN),
            auth: has(smtp_proto::EXT_AUTH),
            auth_plain: e.auth() & smtp_proto::AUTH_PLAIN != 0,
            auth_login: e.auth() & smtp_proto::AUTH_LOGIN != 0,
            size: (has(smtp_proto::EXT_SIZE) && e.size > 0).then_some(e.size as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Reply {
        let mut b = ReplyBuffer::default();
        b.push(bytes);
        let r = b.next_reply().unwrap().unwrap();
        assert!(!b.has_pending());
        r
    }

    #[test]
    fn single_and_multi_line_replies() {
        let r = one(b"250 2.1.0 Sender ok\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.esc, Some([2, 1, 0]));
        assert_eq!(r.text, "Sender ok");
        assert_eq!(r.status(), "2.1.0");
        assert_eq!(r.one_line(), "250 2.1.0 Sender ok");

        let r = one(b"550-5.1.1 No such\r\n550 5.1.1 user here\r\n");
        assert_eq!(r.code, 550);
        assert!(r.is_permanent());
        assert_eq!(r.status(), "5.1.1");
        assert_eq!(r.text, "No such user here");

        let r = one(b"451 try later\r\n");
        assert_eq!(r.esc, None);
        assert_eq!(r.status(), "4.0.0");
        assert!(r.is_transient());

        let r = one(b"354\r\n");
        assert!(r.is_intermediate());
        // A nonsense enhanced code of another class is not believed.
        assert_eq!(one(b"550 2.0.0 odd\r\n").status(), "5.0.0");
    }

    #[test]
    fn replies_arrive_in_pieces_and_back_to_back() {
        let mut b = ReplyBuffer::default();
        b.push(b"250-first\r\n250 sec");
        assert_eq!(b.next_reply().unwrap(), None);
        b.push(b"ond\r\n221 bye\r\n");
        assert_eq!(b.next_reply().unwrap().unwrap().text, "first second");
        assert!(b.has_pending());
        assert_eq!(b.next_reply().unwrap().unwrap().code, 221);
        assert_eq!(b.next_reply().unwrap(), None);
    }

    #[test]
    fn hostile_replies_are_errors() {
        let mut b = ReplyBuffer::default();
        b.push(b"hello there\r\n");
        assert!(matches!(b.next_reply(), Err(ReplyError::Malformed(_))));
        let mut b = ReplyBuffer::default();
        b.push(&vec![b'2'; MAX_REPLY + 10]);
        assert_eq!(b.next_reply(), Err(ReplyError::TooLong));
        let mut b = ReplyBuffer::default();
        for _ in 0..1000 {
            b.push(b"250-more\r\n");
        }
        assert_eq!(b.next_reply(), Err(ReplyError::TooLong));
        // Control characters never reach a log.
        assert_eq!(one(b"250 ok\x1b[31m\r\n").text, "ok?[31m");
    }

    #[test]
    fn ehlo_capabilities() {
        let raw = b"250-mx.remote.test greets you\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-8BITMIME\r\n250-DSN\r\n250-AUTH LOGIN PLAIN\r\n250 SMTPUTF8\r\n";
        let c = Capabilities::from_ehlo(raw).unwrap();
        assert!(c.esmtp && c.starttls && c.pipelining && c.eight_bit_mime && c.dsn);
        assert!(c.smtputf8 && c.auth && c.auth_plain && c.auth_login);
        assert_eq!(c.size, Some(1000));
        let c = Capabilities::from_ehlo(b"250-x\r\n250-SIZE\r\n250 X-UNKNOWN foo\r\n").unwrap();
        assert_eq!(c.size, None);
        assert!(!c.starttls && !c.auth);
        let c = Capabilities::from_ehlo(b"250 x\r\n").unwrap();
        assert_eq!(
            c,
            Capabilities {
                esmtp: true,
                ..Default::default()
            }
        );
    }
}
