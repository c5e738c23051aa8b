//! Multi-line response bodies (RFC 1939 §3): every line starting with "." gets one
//! more ".", lines end with CRLF, and the body ends with a line holding a single ".".
//!
//! `DotStuffer` works incrementally so a large message is encoded and sent in pieces
//! rather than copied whole. Messages in the store have CRLF line ends, and for them
//! the output is the stored octets exactly, plus the stuffing. A bare LF (which the
//! store should not hold, but an old import might) is sent as CRLF: otherwise a
//! client that splits lines on CRLF would miss a line start, and one that splits on
//! LF could see a "." line end the response early.

/// Incremental dot-stuffing encoder.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    line_start: bool,
    prev_cr: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    pub fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            prev_cr: false,
        }
    }

    /// Appends the encoding of the next piece of the body to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 2);
        let mut copied = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.line_start && b == b'.' {
                out.extend_from_slice(&input[copied..i]);
                out.push(b'.');
                copied = i;
            }
            if b == b'\n' && !self.prev_cr {
                out.extend_from_slice(&input[copied..i]);
                out.push(b'\r');
                copied = i;
            }
            self.line_start = b == b'\n';
            self.prev_cr = b == b'\r';
        }
        out.extend_from_slice(&input[copied..]);
    }

    /// Ends the body: completes an unterminated last line, then the "." line.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// RFC 1939 §7 TOP: the header, the blank line that ends it, and at most `body_lines`
/// lines of the body. A message without a blank line is all header. The boundary is
/// the one every component uses (`bulwark_mime::header`), so TOP 0 shows the fields
/// the SMTP checks saw.
pub fn top_prefix(msg: &[u8], body_lines: u32) -> &[u8] {
    let next_line = |pos: usize| -> usize {
        match msg[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => pos + i + 1,
            None => msg.len(),
        }
    };
    let mut pos = bulwark_mime::header::header_end(msg);
    for _ in 0..body_lines {
        if pos >= msg.len() {
            break;
        }
        pos = next_line(pos);
    }
    &msg[..pos]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(parts: &[&[u8]]) -> Vec<u8> {
        let mut st = DotStuffer::new();
        let mut out = Vec::new();
        for p in parts {
            st.push(p, &mut out);
        }
        st.finish(&mut out);
        out
    }

    #[test]
    fn stuffs_leading_dots_and_terminates() {
        assert_eq!(stuff(&[b""]), b".\r\n");
        assert_eq!(stuff(&[b"a\r\n"]), b"a\r\n.\r\n");
        assert_eq!(
            stuff(&[b".\r\n..x\r\na.b\r\n"]),
            b"..\r\n...x\r\na.b\r\n.\r\n"
        );
        // No final CRLF: one is added before the terminator.
        assert_eq!(stuff(&[b"a\r\n.end"]), b"a\r\n..end\r\n.\r\n");
        // 8-bit octets pass untouched.
        assert_eq!(stuff(&[b"\xe9\xff\r\n"]), b"\xe9\xff\r\n.\r\n");
    }

    #[test]
    fn bare_lf_becomes_crlf_and_starts_a_line() {
        assert_eq!(stuff(&[b"a\n.\nb"]), b"a\r\n..\r\nb\r\n.\r\n");
        // A bare CR is not a line end.
        assert_eq!(stuff(&[b"a\r.b\r\n"]), b"a\r.b\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let msg = b"From: a\r\n\r\n.line\r\n..two\r\nbare\n.three\r\nend.\r\n.";
        let whole = stuff(&[msg]);
        for split in 0..msg.len() {
            let (a, b) = msg.split_at(split);
            assert_eq!(stuff(&[a, b]), whole, "split at {split}");
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(stuff(&bytes), whole);
        // Unstuffing (what a client does) gives the message back.
        let text = whole;
        let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        assert_eq!(lines.pop(), Some(&b""[..]));
        assert_eq!(lines.pop(), Some(&b".\r"[..]));
        let back: Vec<u8> = lines
            .iter()
            .map(|l| {
                let l = l.strip_suffix(b"\r").unwrap();
                l.strip_prefix(b".").unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join(&b"\r\n"[..]);
        let expected = b"From: a\r\n\r\n.line\r\n..two\r\nbare\r\n.three\r\nend.\r\n.";
        assert_eq!(back, expected);
    }

    #[test]
    fn top_takes_header_blank_line_and_n_body_lines() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3";
        assert_eq!(top_prefix(m, 0), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(top_prefix(m, 1), b"A: 1\r\nB: 2\r\n\r\nl1\r\n");
        assert_eq!(top_prefix(m, 3), &m[..]);
        assert_eq!(top_prefix(m, 100), &m[..]);
        assert_eq!(top_prefix(b"A: 1\r\nB: 2\r\n", 5), b"A: 1\r\nB: 2\r\n");
        assert_eq!(top_prefix(b"A: 1", 5), b"A: 1");
        assert_eq!(top_prefix(b"\r\nbody\r\n", 0), b"\r\n");
        assert_eq!(top_prefix(b"", 3), b"");
        assert_eq!(top_prefix(b"A: 1\n\nx\ny\n", 1), b"A: 1\n\nx\n");
    }
}
