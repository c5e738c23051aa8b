//! Server responses (RFC 1939 §3): a status line starting `+OK` or `-ERR`, optionally
//! followed by a multi-line body ending with a line holding a single ".". Response
//! codes in brackets follow RFC 2449 §8 (`IN-USE`, `LOGIN-DELAY`) and RFC 3206
//! (`SYS/TEMP`, `SYS/PERM`, `AUTH`).

use crate::command::MAX_REPLY_LINE;
use crate::dotstuff::DotStuffer;

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: String,
    lines: Option<Vec<String>>,
}

/// Cuts `s` so the status line with its CRLF fits in 512 octets (RFC 2449 §4),
/// at a character boundary.
fn bounded(mut s: String) -> String {
    let max = MAX_REPLY_LINE - 2;
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    // A reply never contains a line break of its own.
    s.replace(['\r', '\n'], " ")
}

impl Reply {
    /// `+OK text`.
    pub fn ok(text: impl AsRef<str>) -> Reply {
        let t = text.as_ref();
        Reply {
            status: bounded(if t.is_empty() {
                "+OK".into()
            } else {
                format!("+OK {t}")
            }),
            lines: None,
        }
    }

    /// `-ERR text` (put any response code first in `text`, e.g. `[IN-USE] …`).
    pub fn err(text: impl AsRef<str>) -> Reply {
        Reply {
            status: bounded(format!("-ERR {}", text.as_ref())),
            lines: None,
        }
    }

    /// `+OK text` followed by `lines` and the terminating ".".
    pub fn multi(text: impl AsRef<str>, lines: Vec<String>) -> Reply {
        let mut r = Reply::ok(text);
        r.lines = Some(lines);
        r
    }

    /// RFC 5034 §4: a server challenge; PLAIN's is empty (`+ `).
    pub fn continuation() -> Reply {
        Reply {
            status: "+ ".into(),
            lines: None,
        }
    }

    /// The status line without its CRLF (`+OK …`, `-ERR …` or `+ `).
    pub fn status(&self) -> &str {
        &self.status
    }

    /// True for a positive reply (`+OK`).
    pub fn is_ok(&self) -> bool {
        self.status.starts_with("+OK")
    }

    /// True for a negative reply (`-ERR`).
    pub fn is_err(&self) -> bool {
        self.status.starts_with("-ERR")
    }

    /// The body lines of a multi-line reply.
    pub fn lines(&self) -> Option<&[String]> {
        self.lines.as_deref()
    }

    /// The wire form: CRLF line ends, the body dot-stuffed and terminated.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.status.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(lines) = &self.lines {
            let mut st = DotStuffer::new();
            for l in lines {
                st.push(l.as_bytes(), out);
                st.push(b"\r\n", out);
            }
            st.finish(out);
        }
    }

    /// The wire form (see `encode`) in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(Reply::ok("").to_bytes(), b"+OK\r\n");
        assert_eq!(
            Reply::err("[IN-USE] busy").to_bytes(),
            b"-ERR [IN-USE] busy\r\n"
        );
        assert_eq!(
            Reply::multi("list", vec!["1 20".into(), ".x".into()]).to_bytes(),
            b"+OK list\r\n1 20\r\n..x\r\n.\r\n"
        );
        assert_eq!(Reply::continuation().to_bytes(), b"+ \r\n");
    }

    #[test]
    fn status_lines_are_bounded_to_512_octets() {
        let r = Reply::err("é".repeat(600));
        let b = r.to_bytes();
        assert!(b.len() <= MAX_REPLY_LINE, "{}", b.len());
        assert!(b.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&b).is_ok());
        assert_eq!(Reply::ok("a\r\nb").status(), "+OK a  b");
    }
}
