//! Building response lines (RFC 9051 §7) and the sink they go to.
//!
//! Responses are written by this small builder rather than through imap-codec's
//! `ResponseCodec`: FETCH responses must stream message bodies straight from the store
//! into the connection (a `1:*` on a big mailbox must not build one giant value), and
//! ENVELOPE/BODYSTRUCTURE come pre-encoded from the per-body cache. imap-codec's
//! encoder needs the whole response as an owned `imap_types` value first. The string
//! rules (quoted vs literal, RFC 9051 §4.3) live in `push_string`, in one place.

use async_trait::async_trait;
use bulwark_store::Flags;

/// Where responses go: the connection in the server, a buffer in unit tests.
#[async_trait]
pub trait Sink: Send {
    /// Sends one complete response (it ends with CRLF). `log` is its loggable form
    /// (without CRLF): literal contents are replaced by a placeholder.
    async fn send(&mut self, data: &[u8], log: &[u8]) -> std::io::Result<()>;
    /// Pushes buffered output to the client now (before waiting for input).
    async fn flush(&mut self) -> std::io::Result<()>;
    /// Sends part of a response that `send` will complete (and log): a large literal
    /// goes out piece by piece instead of being built in memory first.
    async fn send_part(&mut self, data: &[u8]) -> std::io::Result<()>;
}

/// A buffer sink for tests and for collecting responses.
#[derive(Default)]
pub(crate) struct VecSink {
    pub data: Vec<u8>,
}

#[async_trait]
impl Sink for VecSink {
    async fn send(&mut self, data: &[u8], _log: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    async fn send_part(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
impl VecSink {
    pub(crate) fn take_string(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned()
    }
}

/// One response under construction, with its loggable twin.
#[derive(Default)]
pub(crate) struct Resp {
    pub data: Vec<u8>,
    pub log: Vec<u8>,
}

impl Resp {
    pub(crate) fn new() -> Resp {
        Resp::default()
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.raw(s.as_bytes())
    }

    pub(crate) fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.data.extend_from_slice(b);
        self.log.extend_from_slice(b);
        self
    }

    /// Pre-encoded IMAP data that is not worth logging (ENVELOPE, BODYSTRUCTURE).
    pub(crate) fn opaque(&mut self, b: &[u8], placeholder: &str) -> &mut Self {
        self.data.extend_from_slice(b);
        self.log.extend_from_slice(placeholder.as_bytes());
        self
    }

    /// A literal whose contents never reach the log (message data).
    pub(crate) fn literal(&mut self, b: &[u8]) -> &mut Self {
        let head = format!("{{{}}}\r\n", b.len());
        self.data.extend_from_slice(head.as_bytes());
        self.data.extend_from_slice(b);
        self.log
            .extend_from_slice(format!("{{{}}}<{} octets>", b.len(), b.len()).as_bytes());
        self
    }

    /// The announcement of a literal of `len` octets whose contents the caller sends
    /// itself (`Sink::send_part`), after sending what is built so far (`take_data`).
    pub(crate) fn literal_head(&mut self, len: u64) -> &mut Self {
        self.data
            .extend_from_slice(format!("{{{len}}}\r\n").as_bytes());
        self.log
            .extend_from_slice(format!("{{{len}}}<{len} octets>").as_bytes());
        self
    }

    /// The octets built so far, to be sent with `Sink::send_part`; the log keeps
    /// growing until `send`.
    pub(crate) fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    /// A string: quoted when it can be, a literal otherwise (RFC 9051 §4.3).
    pub(crate) fn string(&mut self, b: &[u8]) -> &mut Self {
        push_string(&mut self.data, b);
        push_string(&mut self.log, b);
        self
    }

    /// An astring: an atom when it is one, else a string.
    pub(crate) fn astring(&mut self, b: &[u8]) -> &mut Self {
        if !b.is_empty() && b.iter().all(|c| is_astring_char(*c)) {
            self.raw(b)
        } else {
            self.string(b)
        }
    }

    pub(crate) fn flags(&mut self, f: &Flags, recent: bool) -> &mut Self {
        let mut s = String::from("(");
        write_flags(&mut s, f);
        if recent {
            if s.len() > 1 {
                s.push(' ');
            }
            s.push_str("\\Recent");
        }
        s.push(')');
        self.text(&s)
    }

    pub(crate) async fn send(mut self, sink: &mut dyn Sink) -> std::io::Result<()> {
        if !self.data.ends_with(b"\r\n") {
            self.data.extend_from_slice(b"\r\n");
        }
        sink.send(&self.data, &self.log).await
    }
}

/// Sends a one-line response built from text.
pub(crate) async fn line(sink: &mut dyn Sink, text: &str) -> std::io::Result<()> {
    let mut r = Resp::new();
    r.text(text);
    r.send(sink).await
}

fn is_astring_char(c: u8) -> bool {
    // ATOM-CHAR or resp-specials "]" (RFC 9051 §9 ASTRING-CHAR).
    (0x21..=0x7e).contains(&c) && !b"(){ %*\"\\".contains(&c)
}

pub(crate) fn push_string(out: &mut Vec<u8>, b: &[u8]) {
    let quotable = b.len() <= 1024 && b.iter().all(|c| (0x20..=0x7e).contains(c));
    if quotable {
        out.push(b'"');
        for &c in b {
            if c == b'"' || c == b'\\' {
                out.push(b'\\');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    }
}

/// `\Seen \Answered …` and keywords, space separated, without parentheses.
pub(crate) fn write_flags(s: &mut String, f: &Flags) {
    let mut first = true;
    let mut put = |s: &mut String, t: &str| {
        if !first {
            s.push(' ');
        }
        first = false;
        s.push_str(t);
    };
    for (bit, name) in SYSTEM_FLAGS {
        if f.has(bit) {
            put(s, name);
        }
    }
    for k in &f.keywords {
        put(s, k);
    }
}

pub(crate) const SYSTEM_FLAGS: [(u8, &str); 5] = [
    (Flags::ANSWERED, "\\Answered"),
    (Flags::FLAGGED, "\\Flagged"),
    (Flags::DELETED, "\\Deleted"),
    (Flags::SEEN, "\\Seen"),
    (Flags::DRAFT, "\\Draft"),
];

/// INTERNALDATE form: `"02-Jan-2026 15:04:05 +0000"` (RFC 9051 §9 date-time), in UTC.
pub(crate) fn internal_date(unix: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    format!("\"{}\"", dt.format("%d-%b-%Y %H:%M:%S +0000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut v = Vec::new();
        push_string(&mut v, b"a \"b\" \\c");
        assert_eq!(v, b"\"a \\\"b\\\" \\\\c\"");
        let mut v = Vec::new();
        push_string(&mut v, "ü".as_bytes());
        assert_eq!(v, b"{2}\r\n\xc3\xbc");
        let mut v = Vec::new();
        push_string(&mut v, b"a\r\nb");
        assert_eq!(v, b"{4}\r\na\r\nb");
    }

    #[test]
    fn flags_and_dates() {
        let mut r = Resp::new();
        r.flags(
            &Flags::with_keywords(Flags::SEEN | Flags::FLAGGED, ["$Junk".to_string()]),
            false,
        );
        assert_eq!(r.data, b"(\\Flagged \\Seen $Junk)");
        assert_eq!(internal_date(0), "\"01-Jan-1970 00:00:00 +0000\"");
    }

    #[test]
    fn literal_contents_stay_out_of_the_log() {
        let mut r = Resp::new();
        r.text("* 1 FETCH (BODY[] ")
            .literal(b"secret body")
            .text(")");
        assert!(String::from_utf8_lossy(&r.data).contains("secret body"));
        assert!(!String::from_utf8_lossy(&r.log).contains("secret"));
    }
}
