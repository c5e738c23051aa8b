//! Multi-line response bodies (RFC 1939 §3): every line starting with "." gets one
//! more ".", lines end with CRLF, and the body ends with a line holding a single ".".
//!
//! The encoder is the one SMTP DATA uses too (`bulwark_wire::DotStuffer`, re-exported
//! here): incremental, so a large message is sent in pieces rather than copied whole,
//! and a bare LF (which the store should not hold, but an old import might) is sent as
//! CRLF. This module adds what only POP3 needs: the part of a message TOP shows.

pub use bulwark_wire::DotStuffer;

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
