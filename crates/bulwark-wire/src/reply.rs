//! SMTP replies (RFC 5321 §4.2): the code and its class, a bounded parser for replies
//! read from a peer that may be hostile, and the one writer of the multi-line
//! `250-`/`250 ` form.
//!
//! Framing (where one reply ends in the byte stream) and parsing are one pass over
//! lines: "ddd-text" continues, "ddd text" or "ddd" ends, every line of a reply
//! carries the same code (RFC 5321 §4.2.1), and a reply is at most [`MAX_REPLY`]
//! octets and [`MAX_LINES`] lines.

use std::fmt;

use crate::enhanced::Enhanced;

/// Longest reply we accept, all lines together (RFC 5321 §4.5.3.1.5 allows 512
/// octets per line; EHLO replies are a few lines).
pub const MAX_REPLY: usize = 4096;

/// Most lines of one reply we accept (an EHLO reply has a dozen).
pub const MAX_LINES: usize = 256;

/// What a reply code says about the command (RFC 5321 §4.2.1, first digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 2yz: done.
    Positive,
    /// 3yz: go on (354 after DATA, 334 during AUTH).
    Intermediate,
    /// 4yz: not now; the same command may succeed later.
    Transient,
    /// 5yz: not at all.
    Permanent,
}

/// A three-digit reply code whose first digit is 2 to 5 (RFC 5321 §4.2: 1yz is not
/// used in SMTP, and nothing else is a code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// A code from a constant; an invalid one stops the build (or panics at run time,
    /// which only literals in our code can reach; peers' codes go through
    /// [`ReplyCode::checked`]).
    pub const fn new(code: u16) -> ReplyCode {
        match ReplyCode::checked(code) {
            Some(c) => c,
            None => panic!("invalid SMTP reply code"),
        }
    }

    /// A code from a number that may be anything.
    pub const fn checked(code: u16) -> Option<ReplyCode> {
        if code >= 200 && code < 600 {
            Some(ReplyCode(code))
        } else {
            None
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// What the first digit says.
    pub const fn class(self) -> Class {
        match self.0 / 100 {
            2 => Class::Positive,
            3 => Class::Intermediate,
            4 => Class::Transient,
            _ => Class::Permanent,
        }
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why octets from a peer are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line that is not `ddd`, `ddd text` or `ddd-text`, or whose code differs from
    /// the first line's.
    #[error("the server sent a malformed reply: {0}")]
    Malformed(String),
    /// More than [`MAX_REPLY`] octets without the end of the reply.
    #[error("the server sent a reply longer than {MAX_REPLY} octets")]
    TooLong,
    /// More than [`MAX_LINES`] lines without the end of the reply.
    #[error("the server sent a reply of more than {MAX_LINES} lines")]
    TooManyLines,
}

/// One reply read from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code (the same on every line).
    pub code: ReplyCode,
    /// The enhanced status code (RFC 2034/3463) the lines start with, when one does;
    /// the last such line's when several do.
    pub enhanced: Option<Enhanced>,
    /// The text of each line after `ddd-`/`ddd `, verbatim (enhanced code included),
    /// without the line end; invalid UTF-8 replaced.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2yz.
    pub fn is_positive(&self) -> bool {
        self.code.class() == Class::Positive
    }
    /// 3yz.
    pub fn is_intermediate(&self) -> bool {
        self.code.class() == Class::Intermediate
    }
    /// 4yz.
    pub fn is_transient(&self) -> bool {
        self.code.class() == Class::Transient
    }
    /// 5yz.
    pub fn is_permanent(&self) -> bool {
        self.code.class() == Class::Permanent
    }

    /// The text of all lines without codes, joined with a space, control characters
    /// as `?`: it goes to logs, `queue show` and notices.
    pub fn text(&self) -> String {
        let text = self
            .lines
            .iter()
            .map(|l| strip_enhanced(l).1.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        text.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }

    /// The RFC 3463 status this reply means: its own enhanced code when it has one of
    /// its class, else the class with `.0.0`. A 3yz reply, for which RFC 3463 has no
    /// class, means "not done yet": 4.0.0.
    pub fn status(&self) -> Enhanced {
        // A ReplyCode is 200..=599 by construction: its first digit is 2 to 5.
        #[allow(clippy::cast_possible_truncation)]
        let class = (self.code.get() / 100) as u8;
        match (self.enhanced, self.code.class()) {
            (Some(e), _) if e.class() == class => e,
            (_, Class::Positive) => Enhanced::new(2, 0, 0),
            (_, Class::Intermediate | Class::Transient) => Enhanced::new(4, 0, 0),
            (_, Class::Permanent) => Enhanced::new(5, 0, 0),
        }
    }

    /// One line for logs, `queue show` and DSN Diagnostic-Code: "550 5.1.1 No such user".
    pub fn one_line(&self) -> String {
        let mut s = self.code.to_string();
        if let Some(e) = self.enhanced {
            s.push_str(&format!(" {e}"));
        }
        let text = self.text();
        if !text.is_empty() {
            s.push(' ');
            s.push_str(&text);
        }
        s
    }

    /// Appends the reply in wire form, lines as they were read.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_reply(out, self.code.get(), None, &self.lines);
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

/// The enhanced status code a line's text starts with (followed by a space or the
/// end), and the text after it.
fn strip_enhanced(text: &str) -> (Option<Enhanced>, &str) {
    let (token, rest) = text.split_once(' ').unwrap_or((text, ""));
    match token.parse::<Enhanced>() {
        Ok(e) => (Some(e), rest),
        Err(_) => (None, text),
    }
}

/// One line of a reply: its code digits, whether another line follows, its text.
fn split_line(line: &[u8]) -> Result<(&[u8], bool, &[u8]), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).trim_end().to_string());
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    match line[3] {
        b'-' => Ok((&line[..3], true, body.get(4..).unwrap_or_default())),
        b' ' => Ok((&line[..3], false, body.get(4..).unwrap_or_default())),
        b'\r' | b'\n' => Ok((&line[..3], false, b"")),
        _ => Err(malformed()),
    }
}

/// Parses one complete reply (all its lines, each ending with LF).
pub fn parse(raw: &[u8]) -> Result<Reply, ReplyError> {
    let mut first: Option<&[u8]> = None;
    let mut enhanced = None;
    let mut lines = Vec::new();
    let mut ended = false;
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let malformed =
            || ReplyError::Malformed(String::from_utf8_lossy(line).trim_end().to_string());
        let (digits, more, text) = split_line(line)?;
        if ended || *first.get_or_insert(digits) != digits {
            return Err(malformed());
        }
        ended = !more;
        let text = String::from_utf8_lossy(text).into_owned();
        if let (Some(e), _) = strip_enhanced(&text) {
            enhanced = Some(e);
        }
        lines.push(text);
    }
    let code = first
        .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
        .and_then(ReplyCode::checked)
        .ok_or_else(|| {
            ReplyError::Malformed(String::from_utf8_lossy(raw).trim_end().to_string())
        })?;
    if !ended {
        return Err(ReplyError::Malformed("the reply has no last line".into()));
    }
    Ok(Reply {
        code,
        enhanced,
        lines,
    })
}

/// Bytes read from a peer, cut into replies.
#[derive(Debug, Default)]
pub struct ReplyBuffer {
    buf: Vec<u8>,
}

impl ReplyBuffer {
    /// Adds bytes as they arrive.
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
        let mut count = 0;
        loop {
            let Some(nl) = self.buf[pos..].iter().position(|b| *b == b'\n') else {
                if self.buf.len() > MAX_REPLY {
                    return Err(ReplyError::TooLong);
                }
                return Ok(None);
            };
            let line = &self.buf[pos..pos + nl + 1];
            pos += nl + 1;
            count += 1;
            if pos > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            if count > MAX_LINES {
                return Err(ReplyError::TooManyLines);
            }
            if !split_line(line)?.1 {
                break;
            }
        }
        let raw: Vec<u8> = self.buf.drain(..pos).collect();
        let reply = parse(&raw)?;
        Ok(Some((reply, raw)))
    }

    /// The next complete reply, if one has arrived.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        Ok(self.next_raw()?.map(|(r, _)| r))
    }
}

/// Appends a reply in wire form: `code-text` continuation lines, `code text` last,
/// each with the enhanced code when there is one (RFC 2034 §3), one line per entry of
/// `lines`.
pub fn write_reply<S: AsRef<str>>(
    out: &mut Vec<u8>,
    code: u16,
    enhanced: Option<Enhanced>,
    lines: &[S],
) {
    use std::io::Write;
    let n = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == n { ' ' } else { '-' };
        let _ = write!(out, "{code}{sep}");
        if let Some(e) = enhanced {
            let _ = write!(out, "{e} ");
        }
        write_ascii(line.as_ref(), out);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reply text on the wire: printable US-ASCII only (RFC 5321 §4.2: textstring is
/// HT, SP and %d33-126; RFC 6531 allows UTF-8 only in some replies to SMTPUTF8
/// clients, and a client that did not ask may choke on it). Texts from elsewhere
/// (the sender checks) may carry a `§` or a dash; they are spelled out, anything
/// else non-ASCII becomes `?`, and line breaks a space (a reply never ends early).
fn write_ascii(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match c {
            '§' => out.extend_from_slice(b"section "),
            '\u{2013}' | '\u{2014}' => out.push(b'-'),
            '\u{2018}' | '\u{2019}' => out.push(b'\''),
            '\u{201c}' | '\u{201d}' => out.push(b'"'),
            '\r' | '\n' => out.push(b' '),
            '\t' | ' '..='~' => out.push(c as u8),
            _ => out.push(b'?'),
        }
    }
}

#[cfg(test)]
mod tests;
