//! Dot-stuffing (RFC 5321 §4.5.2 for SMTP DATA, RFC 1939 §3 for POP3 multi-line
//! responses): every line starting with "." gets one more ".", lines end with CRLF,
//! and the body ends with a line holding a single ".".
//!
//! [`DotStuffer`] works incrementally so a large message is encoded and sent in
//! pieces rather than copied whole. For a message with CRLF line ends the output is
//! the octets exactly, plus the stuffing. A bare LF is sent as CRLF (RFC 5321 §2.3.8
//! forbids it on the wire): otherwise a reader that splits lines on CRLF would miss a
//! line start, and one that splits on LF could see a "." line end the body early. A
//! bare CR is not a line end and passes unchanged.

/// Incremental dot-stuffing encoder: feed the body with [`DotStuffer::push`] in
/// pieces of any size, then end it with [`DotStuffer::finish`].
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
    /// An encoder at the start of a body.
    pub fn new() -> DotStuffer {
        DotStuffer {
            line_start: true,
            prev_cr: false,
        }
    }

    /// Appends the encoding of the next piece of the body to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 2);
        self.push_with(input, |s| out.extend_from_slice(s));
    }

    /// The encoding of the next piece, as runs of octets handed to `emit` in order.
    fn push_with(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut copied = 0;
        for (i, &b) in input.iter().enumerate() {
            if self.line_start && b == b'.' {
                emit(&input[copied..i]);
                emit(b".");
                copied = i;
            }
            if b == b'\n' && !self.prev_cr {
                emit(&input[copied..i]);
                emit(b"\r");
                copied = i;
            }
            self.line_start = b == b'\n';
            self.prev_cr = b == b'\r';
        }
        emit(&input[copied..]);
    }

    /// Ends the body: completes an unterminated last line, then the "." line.
    pub fn finish(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.tail());
    }

    /// What [`DotStuffer::finish`] appends.
    fn tail(&self) -> &'static [u8] {
        if self.line_start {
            b".\r\n"
        } else {
            b"\r\n.\r\n"
        }
    }

    /// The length of the whole encoding of `body` (what `push` of all of it and
    /// `finish` give), without making it.
    pub fn encoded_len(body: &[u8]) -> usize {
        let mut st = DotStuffer::new();
        let mut n = 0;
        st.push_with(body, |s| n += s.len());
        n + st.tail().len()
    }
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
        assert_eq!(stuff(&[]), b".\r\n");
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

    /// The cases of the queue's former whole-copy `dot_stuff`.
    #[test]
    fn smtp_data_payloads() {
        assert_eq!(
            stuff(&[b"a\r\n.b\r\n..\r\n"]),
            b"a\r\n..b\r\n...\r\n.\r\n".to_vec()
        );
        assert_eq!(stuff(&[b".x\nend"]), b"..x\r\nend\r\n.\r\n".to_vec());
        assert_eq!(stuff(&[b"a\r\n.\r\n"]), b"a\r\n..\r\n.\r\n".to_vec());
        // A last line ending in a bare CR still gets its CRLF.
        assert_eq!(stuff(&[b"a\r"]), b"a\r\r\n.\r\n".to_vec());
    }

    #[test]
    fn bare_lf_becomes_crlf_and_starts_a_line() {
        assert_eq!(stuff(&[b"a\n.\nb"]), b"a\r\n..\r\nb\r\n.\r\n");
        // A bare CR is not a line end.
        assert_eq!(stuff(&[b"a\r.b\r\n"]), b"a\r.b\r\n.\r\n");
    }

    #[test]
    fn a_dot_after_a_crlf_split_across_pieces() {
        assert_eq!(stuff(&[b"a\r", b"\n", b".b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b"a\r\n", b".", b"\r\n"]), b"a\r\n..\r\n.\r\n");
        // The CR of a CRLF in one piece and the LF in the next: no second CR.
        assert_eq!(stuff(&[b"a\r", b"\nb"]), b"a\r\nb\r\n.\r\n");
        // A bare LF at the end of a piece, then a dot.
        assert_eq!(stuff(&[b"a\n", b".x"]), b"a\r\n..x\r\n.\r\n");
        // A piece that ends mid-line: finish completes it; one that ends a line: not.
        assert_eq!(stuff(&[b"a\r\nb", b""]), b"a\r\nb\r\n.\r\n");
        assert_eq!(stuff(&[b"a", b"\r\n"]), b"a\r\n.\r\n");
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
        let mut lines: Vec<&[u8]> = whole.split(|b| *b == b'\n').collect();
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
    fn encoded_len_is_the_length_of_the_encoding() {
        for body in [
            &b""[..],
            b"a",
            b"a\r\n",
            b".",
            b"..\n.\r\n",
            b"x\ny\r\n.z",
            b"\r\r\n\n",
        ] {
            assert_eq!(
                DotStuffer::encoded_len(body),
                stuff(&[body]).len(),
                "{body:?}"
            );
        }
    }
}
