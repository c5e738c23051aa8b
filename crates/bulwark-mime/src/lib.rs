//! Structural checks on raw RFC 5322 messages that must run before any MIME parser.
//!
//! Owns: [`nesting_depth`], a linear, non-recursive scan of multipart boundaries and
//! `message/rfc822` encapsulation. MIME parsers (mail-parser, and mail-auth on top of
//! it) recurse once per nesting level, so a message of a megabyte or two with tens of
//! thousands of nested parts overflows the stack and aborts the whole server. Every
//! entry point that accepts a message (SMTP DATA/BDAT, IMAP APPEND) refuses messages
//! deeper than [`MAX_NESTING`] before anything parses them, and every reader of stored
//! messages checks again before parsing (messages stored by older versions).
//!
//! Hand-written because the point is to not parse: it only looks at header names,
//! `Content-Type` values and boundary delimiter lines (RFC 2046 §5.1.1), in one pass,
//! with memory proportional to the depth it allows.
//!
//! Must not: judge content, decode anything, or allocate per line.

/// Deepest MIME nesting accepted; Postfix's `mime_nesting_limit` default. Real mail
/// rarely goes beyond 5–10 (a forwarded message inside a digest inside a reply).
pub const MAX_NESTING: usize = 100;

/// The message nests MIME entities deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MIME nesting deeper than {} levels", self.limit)
    }
}

impl std::error::Error for TooDeep {}

/// One open entity: a multipart with its boundary, or an encapsulated message (which
/// ends where its enclosing multipart's next boundary appears).
struct Frame {
    boundary: Option<Vec<u8>>,
}

/// What a header block said about the entity's body.
enum BodyKind {
    Leaf,
    Multipart(Vec<u8>),
    Message,
}

fn classify(content_type: &[u8]) -> BodyKind {
    let lower: Vec<u8> = content_type
        .iter()
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let value = lower.split(|b| *b == b';').next().unwrap_or(&[]);
    let value = trim(value);
    if value.starts_with(b"multipart/") {
        match boundary_param(content_type) {
            Some(b) if !b.is_empty() => BodyKind::Multipart(b),
            _ => BodyKind::Leaf,
        }
    } else if value == b"message/rfc822" || value == b"message/global" {
        BodyKind::Message
    } else {
        BodyKind::Leaf
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

/// The `boundary` parameter (RFC 2046 §5.1.1), quoted or not, case preserved.
fn boundary_param(content_type: &[u8]) -> Option<Vec<u8>> {
    let lower: Vec<u8> = content_type
        .iter()
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let key = b"boundary=";
    let pos = lower.windows(key.len()).position(|w| w == key)?;
    // The parameter name must start a parameter (after ';' and optional spaces).
    let before = trim(&lower[..pos]);
    if !before.ends_with(b";") {
        return None;
    }
    let rest = &content_type[pos + key.len()..];
    let rest = trim(rest);
    if let Some(q) = rest.strip_prefix(b"\"") {
        let end = q.iter().position(|b| *b == b'"')?;
        Some(q[..end].to_vec())
    } else {
        let end = rest
            .iter()
            .position(|b| *b == b';' || *b == b' ' || *b == b'\t')
            .unwrap_or(rest.len());
        Some(rest[..end].to_vec())
    }
}

/// The deepest MIME nesting in `message` (0 for a single-part message), or `TooDeep`
/// as soon as it exceeds `limit`. Linear in the message size, no recursion.
pub fn nesting_depth(message: &[u8], limit: usize) -> Result<usize, TooDeep> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest = 0usize;
    let mut in_headers = true;
    // The Content-Type of the header block being read, unfolded (bounded).
    let mut content_type: Option<Vec<u8>> = None;
    let mut collecting = false;
    for raw in message.split(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if in_headers {
            if line.is_empty() {
                in_headers = false;
                collecting = false;
                match content_type
                    .take()
                    .map(|ct| classify(&ct))
                    .unwrap_or(BodyKind::Leaf)
                {
                    BodyKind::Multipart(b) => stack.push(Frame { boundary: Some(b) }),
                    BodyKind::Message => {
                        // The body is another message: its header block starts now.
                        stack.push(Frame { boundary: None });
                        in_headers = true;
                    }
                    BodyKind::Leaf => {}
                }
                deepest = deepest.max(stack.len());
                if stack.len() > limit {
                    return Err(TooDeep { limit });
                }
            } else if matches!(line.first(), Some(b' ' | b'\t')) {
                if collecting {
                    if let Some(ct) = content_type.as_mut() {
                        if ct.len() < 4096 {
                            ct.extend_from_slice(line);
                        }
                    }
                }
            } else {
                let name_end = line.iter().position(|b| *b == b':');
                collecting = name_end
                    .is_some_and(|i| trim(&line[..i]).eq_ignore_ascii_case(b"content-type"));
                if collecting {
                    let value = &line[name_end.unwrap_or(0) + 1..];
                    content_type = Some(value[..value.len().min(4096)].to_vec());
                }
            }
            continue;
        }
        if !line.starts_with(b"--") {
            continue;
        }
        // A delimiter of any open multipart closes everything opened inside it.
        let text = trim(&line[2..]);
        let hit = stack.iter().rposition(|f| {
            f.boundary.as_deref().is_some_and(|b| {
                text == b
                    || (text.len() == b.len() + 2 && text.starts_with(b) && text.ends_with(b"--"))
            })
        });
        if let Some(i) = hit {
            let closing = text.ends_with(b"--")
                && stack[i]
                    .boundary
                    .as_deref()
                    .is_some_and(|b| text.len() == b.len() + 2);
            if closing {
                stack.truncate(i);
            } else {
                stack.truncate(i + 1);
                in_headers = true;
                content_type = None;
                collecting = false;
            }
        }
    }
    Ok(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_multipart(levels: usize) -> Vec<u8> {
        let mut m = b"From: a@example.test\r\nSubject: deep\r\n".to_vec();
        for i in 0..levels {
            m.extend(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .into_bytes(),
            );
        }
        m.extend(b"Content-Type: text/plain\r\n\r\nhello\r\n");
        for i in (0..levels).rev() {
            m.extend(format!("--b{i}--\r\n").into_bytes());
        }
        m
    }

    fn nested_messages(levels: usize) -> Vec<u8> {
        let mut m = Vec::new();
        for _ in 0..levels {
            m.extend(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        m.extend(b"Subject: end\r\n\r\nbody\r\n");
        m
    }

    #[test]
    fn simple_messages() {
        assert_eq!(nesting_depth(b"Subject: hi\r\n\r\nbody\r\n", 100), Ok(0));
        assert_eq!(nesting_depth(b"", 100), Ok(0));
        assert_eq!(nesting_depth(b"no header block at all", 100), Ok(0));
        let two = b"Content-Type: multipart/alternative; boundary=XYZ\r\n\r\npreamble\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\na\r\n--XYZ\r\nContent-Type: text/html\r\n\r\n<b>a</b>\r\n--XYZ--\r\nepilogue\r\n";
        assert_eq!(nesting_depth(two, 100), Ok(1));
    }

    #[test]
    fn siblings_do_not_add_up() {
        let mut m = b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n".to_vec();
        for i in 0..300 {
            m.extend(format!("--outer\r\nContent-Type: multipart/alternative; boundary=in{i}\r\n\r\n--in{i}\r\nContent-Type: text/plain\r\n\r\nx\r\n--in{i}--\r\n").into_bytes());
        }
        m.extend(b"--outer--\r\n");
        assert_eq!(nesting_depth(&m, 100), Ok(2));
    }

    #[test]
    fn deep_nesting_is_refused() {
        assert_eq!(nesting_depth(&nested_multipart(50), 100), Ok(50));
        assert_eq!(
            nesting_depth(&nested_multipart(101), 100),
            Err(TooDeep { limit: 100 })
        );
        assert_eq!(
            nesting_depth(&nested_multipart(20_000), 100),
            Err(TooDeep { limit: 100 })
        );
        assert_eq!(nesting_depth(&nested_messages(10), 100), Ok(10));
        assert_eq!(
            nesting_depth(&nested_messages(40_000), 100),
            Err(TooDeep { limit: 100 })
        );
    }

    #[test]
    fn encapsulated_message_ends_at_the_enclosing_boundary() {
        let m = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n\r\nx\r\n--C--\r\n--B\r\nContent-Type: text/plain\r\n\r\ny\r\n--B--\r\n";
        assert_eq!(nesting_depth(m, 100), Ok(3));
    }

    #[test]
    fn folded_and_quoted_boundaries() {
        let m = b"Content-Type: multipart/mixed;\r\n\tboundary=\"a b;c\"\r\n\r\n--a b;c\r\n\r\nx\r\n--a b;c--\r\n";
        assert_eq!(nesting_depth(m, 100), Ok(1));
        // Bare LF line ends are handled too.
        let lf = b"Content-Type: multipart/mixed; boundary=Q\n\n--Q\n\nx\n--Q--\n";
        assert_eq!(nesting_depth(lf, 100), Ok(1));
    }

    #[test]
    fn boundary_parameter_must_be_a_parameter() {
        assert_eq!(boundary_param(b"multipart/mixed; xboundary=1"), None);
        assert_eq!(
            boundary_param(b"multipart/mixed; Boundary=Abc"),
            Some(b"Abc".to_vec())
        );
        // Multipart without a boundary is treated as a leaf.
        assert_eq!(
            nesting_depth(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n", 100),
            Ok(0)
        );
    }
}
