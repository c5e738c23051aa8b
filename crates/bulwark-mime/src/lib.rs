//! Structural checks on raw RFC 5322 messages that must run before any MIME parser.
//!
//! Owns: [`nesting_depth`], a linear, non-recursive scan of multipart boundaries and
//! `message/rfc822` encapsulation. MIME parsers (mail-parser, and mail-auth on top of
//! it) recurse once per nesting level — mail-parser builds nested messages iteratively
//! but drops them (and copies the ones inside encoded parts) recursively — so a
//! message of a megabyte or two with tens of thousands of nested parts overflows the
//! stack and aborts the whole server. Every entry point that accepts a message (SMTP
//! DATA/BDAT, IMAP APPEND) refuses messages deeper than [`MAX_NESTING`] before anything
//! parses them, and every reader of stored messages checks again before parsing
//! (messages stored by older versions).
//!
//! The scan follows the splitting rules of mail-parser 0.11 (the parser behind it),
//! not only those of RFC 2046, because a scanner that is stricter than the parser can
//! be blinded: mail-parser finds a boundary anywhere in a line and only the innermost
//! one, ends one encapsulated message per boundary, treats a part without
//! Content-Type inside multipart/digest as message/rfc822 (RFC 2046 §5.1.5), accepts
//! comments and quotes in Content-Type, and decodes base64/quoted-printable
//! message/rfc822 bodies (up to 3 levels) and parses what they contain. Where the two
//! might still differ, the scan errs towards counting more levels.
//!
//! Hand-written because the point is to not parse: it only looks at header names,
//! `Content-Type`/`Content-Transfer-Encoding` values and boundary delimiters, in one
//! pass (plus one per encoded message part, at most 3 deep), without recursion and
//! with memory proportional to the depth it allows.
//!
//! Also owns the one header boundary ([`header`]): where the header section ends and
//! whether every line before it is a field, for every component that splits a message.
//!
//! And the type that joins them ([`CheckedMessage`], in `checked.rs`): a message that
//! passed both, which alone hands out a parsed message ([`ParsedMessage`], dropped
//! without recursion) and the header facts intake reads ([`HeaderFacts`]).
//!
//! Must not: judge content.

pub mod checked;
pub mod header;

pub use checked::{dismantle, parse_header_section, CheckedMessage, HeaderFacts, ParsedMessage};

/// Deepest MIME nesting accepted; Postfix's `mime_nesting_limit` default. Real mail
/// rarely goes beyond 5–10 (a forwarded message inside a digest inside a reply).
pub const MAX_NESTING: usize = 100;

/// How many levels of base64/quoted-printable encoded message/rfc822 bodies
/// mail-parser 0.11 decodes and parses (`MAX_NESTED_ENCODED`).
const ENCODED_LEVELS: u32 = 3;

/// The message nests MIME entities deeper than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    /// The deepest nesting that was allowed.
    pub limit: usize,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MIME nesting deeper than {} levels", self.limit)
    }
}

impl std::error::Error for TooDeep {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Multipart,
    Message,
}

/// One open entity. A multipart owns its boundary; an encapsulated message borrows
/// the enclosing one while it is open (mail-parser's `mime_boundary.take()`), so
/// the boundary searched for is always the innermost frame's.
struct Frame {
    kind: Kind,
    boundary: Option<Vec<u8>>,
    digest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    QuotedPrintable,
}

/// What one header block says about its body.
#[derive(Default)]
struct Header {
    content_type: Option<Vec<u8>>,
    transfer_encoding: Option<Vec<u8>>,
}

/// Longest header value looked at (a Content-Type with a boundary fits easily).
const MAX_VALUE: usize = 4096;

fn is_ws(b: u8) -> bool {
    b.is_ascii_whitespace()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The end of the line starting at `pos` (index of its LF, or the data's end).
fn line_end(data: &[u8], pos: usize) -> usize {
    data[pos..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(data.len(), |i| pos + i)
}

/// Reads the header block starting at `pos` (possibly in the middle of a line, right
/// after a boundary). Returns it and where the body starts, or None when the data
/// ends inside it (mail-parser then stops parsing).
///
/// Like mail-parser: leading whitespace (CR included) before a field name is
/// skipped, a line that is then empty ends the block, a line starting with a space
/// or tab after a field is a folded continuation (even if blank).
fn read_header(data: &[u8], mut pos: usize) -> Option<(Header, usize)> {
    #[derive(PartialEq)]
    enum Collect {
        None,
        ContentType,
        Encoding,
    }
    let mut h = Header::default();
    let mut seen_field = false;
    let mut collect = Collect::None;
    loop {
        if pos >= data.len() {
            return None;
        }
        let end = line_end(data, pos);
        let line = &data[pos..end];
        let next = (end + 1).min(data.len());
        if seen_field && matches!(line.first(), Some(b' ' | b'\t')) {
            let target = match collect {
                Collect::ContentType => h.content_type.as_mut(),
                Collect::Encoding => h.transfer_encoding.as_mut(),
                Collect::None => None,
            };
            if let Some(v) = target {
                if collect == Collect::ContentType {
                    // Whole and folded as written: mail-parser reads the boundary
                    // from all of it (`boundary_param`).
                    v.push(b'\n');
                    v.extend_from_slice(line);
                } else {
                    let room = MAX_VALUE.saturating_sub(v.len());
                    v.extend_from_slice(&line[..line.len().min(room)]);
                }
            }
        } else if line.iter().all(|b| is_ws(*b)) {
            if end >= data.len() {
                // No LF after the blank rest: mail-parser finds no end of headers.
                return None;
            }
            return Some((h, next));
        } else {
            seen_field = true;
            let field = trim(line);
            collect = Collect::None;
            if let Some(colon) = field.iter().position(|b| *b == b':') {
                let name = trim(&field[..colon]);
                let value = &field[colon + 1..];
                if name.eq_ignore_ascii_case(b"content-type") {
                    // The last one counts, as in mail-parser. Not cut at MAX_VALUE:
                    // a boundary after 4 KiB of other parameters is still one.
                    h.content_type = Some(value.to_vec());
                    collect = Collect::ContentType;
                    if end >= data.len() {
                        return None;
                    }
                    pos = next;
                    continue;
                }
                let value = value[..value.len().min(MAX_VALUE)].to_vec();
                if name.eq_ignore_ascii_case(b"content-type") {
                    h.content_type = Some(value);
                    collect = Collect::ContentType;
                } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
                    h.transfer_encoding = Some(value);
                    collect = Collect::Encoding;
                }
            }
        }
        if end >= data.len() {
            return None;
        }
        pos = next;
    }
}

/// Removes RFC 5322 comments (nested, with quoted pairs); quoted strings are kept.
fn strip_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &b in v {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(b);
                }
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    out
}

/// `type/subtype` of a Content-Type value, lower-cased, without comments, quotes or
/// whitespace.
fn media_type(value: &[u8]) -> Vec<u8> {
    let v = strip_comments(value);
    v.split(|b| *b == b';')
        .next()
        .unwrap_or(&[])
        .iter()
        .filter(|b| !is_ws(**b) && **b != b'"')
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

/// The `boundary` parameter (RFC 2046 §5.1.1) as mail-parser reads it: the scan
/// must find the boundaries the parser will split on, or it counts one part where
/// the parser makes millions. Hand-written readings drifted (RFC 2231 continuations,
/// `boundary*0="B"`, were not seen), so the one Content-Type field value is given
/// to mail-parser's own field parser: linear in the field, no message structure.
fn boundary_param(value: &[u8]) -> Option<Vec<u8>> {
    let mut field = Vec::with_capacity(value.len() + 1);
    field.extend_from_slice(value);
    field.push(b'\n');
    match mail_parser::parsers::MessageStream::new(&field).parse_content_type() {
        mail_parser::HeaderValue::ContentType(ct) => {
            ct.attribute("boundary").map(|b| b.as_bytes().to_vec())
        }
        _ => None,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn transfer_encoding(h: &Header) -> Option<Encoding> {
    let v: Vec<u8> = strip_comments(h.transfer_encoding.as_deref()?)
        .iter()
        .map(|b| b.to_ascii_lowercase())
        .collect();
    let v = trim(&v);
    // mail-parser compares the whole value; containing it is the cautious reading.
    if v.windows(6).any(|w| w == b"base64") {
        Some(Encoding::Base64)
    } else if v.windows(16).any(|w| w == b"quoted-printable") {
        Some(Encoding::QuotedPrintable)
    } else {
        None
    }
}

/// Lenient decoders, like mail-parser's: unknown characters are skipped.
fn decode(enc: Encoding, body: &[u8]) -> Vec<u8> {
    match enc {
        Encoding::Base64 => {
            let mut out = Vec::with_capacity(body.len() / 4 * 3);
            let (mut acc, mut bits) = (0u32, 0u32);
            for &b in body {
                let v = match b {
                    b'A'..=b'Z' => b - b'A',
                    b'a'..=b'z' => b - b'a' + 26,
                    b'0'..=b'9' => b - b'0' + 52,
                    b'+' => 62,
                    b'/' => 63,
                    _ => continue,
                };
                acc = (acc << 6 | u32::from(v)) & 0xff_ffff;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    // The decoded octet is the low 8 bits of what remains.
                    out.push((acc >> bits).to_le_bytes()[0]);
                }
            }
            out
        }
        Encoding::QuotedPrintable => {
            let mut out = Vec::with_capacity(body.len());
            let mut i = 0;
            while i < body.len() {
                if body[i] == b'=' {
                    match (body.get(i + 1), body.get(i + 2)) {
                        (Some(b'\n'), _) => {
                            i += 2;
                            continue;
                        }
                        (Some(b'\r'), Some(b'\n')) => {
                            i += 3;
                            continue;
                        }
                        (Some(&a), Some(&b)) => {
                            if let (Some(a), Some(b)) = (hex(a), hex(b)) {
                                out.push(a << 4 | b);
                                i += 3;
                                continue;
                            }
                        }
                        _ => {}
                    }
                }
                out.push(body[i]);
                i += 1;
            }
            out
        }
    }
}

/// The first `--boundary` at or after `from`, anywhere in a line (mail-parser does
/// not require it to start one): (its start, the index after it).
fn find_delimiter(data: &[u8], from: usize, boundary: &[u8]) -> Option<(usize, usize)> {
    let n = boundary.len() + 2;
    if boundary.is_empty() || from >= data.len() {
        return None;
    }
    let mut i = from;
    while i + n <= data.len() {
        let rel = data[i..data.len() - n + 2]
            .windows(2)
            .position(|w| w == b"--")?;
        let at = i + rel;
        if data[at + 2..].starts_with(boundary) {
            return Some((at, at + n));
        }
        i = at + 1;
    }
    None
}

/// mail-parser's `skip_crlf`: spaces, tabs and CRs, then at most one LF.
fn skip_crlf(data: &[u8], mut p: usize) -> usize {
    while let Some(&b) = data.get(p) {
        match b {
            b'\r' | b' ' | b'\t' => p += 1,
            b'\n' => return p + 1,
            _ => break,
        }
    }
    p
}

/// The deepest MIME nesting in `message` (0 for a single-part message), or `TooDeep`
/// as soon as it exceeds `limit`. Linear in the message size (plus one pass over each
/// encoded message part, at most 3 deep), no recursion on the message's structure.
pub fn nesting_depth(message: &[u8], limit: usize) -> Result<usize, TooDeep> {
    let limits = Limits {
        depth: limit,
        parts: usize::MAX,
    };
    match measure(message, limits) {
        Ok(shape) => Ok(shape.depth),
        Err(_) => Err(TooDeep { limit }),
    }
}

/// Default number of MIME entities per message (`[smtp] max_mime_parts`). Real mail
/// has a handful to a few hundred (a digest of 100 messages with attachments); a
/// 20 MB message can hold two million, and every part costs a parser and an IMAP
/// BODYSTRUCTURE far more than its octets (148 MB of BODYSTRUCTURE, 1.5 GB of
/// memory for one such message).
pub const MAX_PARTS: usize = 5000;

/// The most parts any configuration may allow, and what IMAP still describes part by
/// part for a stored message (one stored before the limit existed, or under a
/// higher one, is described as a single part beyond it).
pub const MAX_PARTS_CEILING: usize = 50_000;

/// What [`measure`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting ([`MAX_NESTING`]).
    pub depth: usize,
    /// Most MIME entities (header blocks: the message itself, every part, every
    /// encapsulated message; [`MAX_PARTS`]).
    pub parts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            depth: MAX_NESTING,
            parts: MAX_PARTS,
        }
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting (0 for a single-part message).
    pub depth: usize,
    /// MIME entities counted (header blocks, as in [`Limits::parts`]).
    pub parts: usize,
}

/// The message is beyond a structural limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StructureError {
    /// Nesting deeper than [`Limits::depth`].
    #[error("MIME nesting deeper than {limit} levels")]
    TooDeep {
        /// The deepest nesting that was allowed.
        limit: usize,
    },
    /// More entities than [`Limits::parts`].
    #[error("more than {limit} MIME parts")]
    TooManyParts {
        /// The most entities that were allowed.
        limit: usize,
    },
}

/// Nesting depth and number of MIME entities, in the same linear pass as
/// [`nesting_depth`]; stops as soon as either limit is passed, so a message of
/// millions of parts costs no more than reading it once.
pub fn measure(message: &[u8], limits: Limits) -> Result<Shape, StructureError> {
    let mut parts = 0usize;
    let depth = scan(
        message,
        limits.depth,
        ENCODED_LEVELS,
        &mut parts,
        limits.parts,
    )?;
    Ok(Shape { depth, parts })
}

/// The scan proper. `parts` counts header blocks across nested scans of encoded
/// messages too.
fn scan(
    data: &[u8],
    limit: usize,
    encoded_levels: u32,
    parts: &mut usize,
    max_parts: usize,
) -> Result<usize, StructureError> {
    let too_deep = StructureError::TooDeep { limit };
    let mut stack: Vec<Frame> = Vec::new();
    let mut deepest = 0usize;
    let mut pos = 0usize;
    loop {
        // A part's header block. Its default type is message/rfc822 directly inside
        // multipart/digest (RFC 2046 §5.1.5).
        let in_digest = matches!(
            stack.last(),
            Some(Frame {
                kind: Kind::Multipart,
                digest: true,
                ..
            })
        );
        let Some((h, body)) = read_header(data, pos) else {
            break;
        };
        *parts += 1;
        if *parts > max_parts {
            return Err(StructureError::TooManyParts { limit: max_parts });
        }
        pos = body;
        let media = h.content_type.as_deref().map(media_type);
        let is_message = match &media {
            Some(m) => m == b"message/rfc822" || m == b"message/global",
            None => in_digest,
        };
        if let (Some(m), Some(ct)) = (&media, &h.content_type) {
            if m.starts_with(b"multipart/") {
                if let Some(b) = boundary_param(ct).filter(|b| !b.is_empty()) {
                    // Without a first delimiter mail-parser treats it as text.
                    if let Some((_, after)) = find_delimiter(data, pos, &b) {
                        stack.push(Frame {
                            kind: Kind::Multipart,
                            boundary: Some(b),
                            digest: m == b"multipart/digest",
                        });
                        deepest = deepest.max(stack.len());
                        if stack.len() > limit {
                            return Err(too_deep);
                        }
                        pos = skip_crlf(data, after);
                        continue;
                    }
                }
            }
        }
        let encoding = transfer_encoding(&h);
        if is_message && encoding.is_none() {
            // Encapsulated message: its header block starts right here.
            let inherited = stack.last_mut().and_then(|f| f.boundary.take());
            stack.push(Frame {
                kind: Kind::Message,
                boundary: inherited,
                digest: false,
            });
            deepest = deepest.max(stack.len());
            if stack.len() > limit {
                return Err(too_deep);
            }
            continue;
        }
        // A leaf: its body runs to the innermost boundary (or the end).
        let current = stack.last().and_then(|f| f.boundary.clone());
        let found = current
            .as_deref()
            .and_then(|b| find_delimiter(data, pos, b));
        let body_end = found.map_or(data.len(), |(start, _)| start);
        if let (true, Some(enc)) = (is_message, encoding) {
            if encoded_levels > 0 {
                // mail-parser decodes it and parses what it holds.
                let here = stack.len() + 1;
                let inner = decode(enc, &data[pos..body_end.max(pos)]);
                let inner_limit = limit.checked_sub(here).ok_or(too_deep)?;
                let nested = scan(&inner, inner_limit, encoded_levels - 1, parts, max_parts)
                    .map_err(|e| match e {
                        StructureError::TooDeep { .. } => too_deep,
                        other => other,
                    })?;
                deepest = deepest.max(here + nested);
                if deepest > limit {
                    return Err(too_deep);
                }
            }
        }
        let Some((_, mut p)) = found else {
            break;
        };
        loop {
            // One encapsulated message ends per delimiter.
            if matches!(stack.last(), Some(f) if f.kind == Kind::Message) {
                if let Some(f) = stack.pop() {
                    if let Some(top) = stack.last_mut() {
                        top.boundary = f.boundary;
                    }
                }
            }
            if data[p..].starts_with(b"--") {
                // Close delimiter: the multipart ends; look for its parent's next one.
                stack.pop();
                let parent = stack.last().and_then(|f| f.boundary.clone());
                match parent.and_then(|b| find_delimiter(data, p + 2, &b)) {
                    Some((_, after)) => {
                        p = after;
                        continue;
                    }
                    None => return Ok(deepest),
                }
            }
            // mail-parser's `is_multipart_end` when it is not one.
            p = match (data.get(p), data.get(p + 1)) {
                (Some(b'\r'), Some(b'\n')) => p + 2,
                (Some(b'\n'), _) => p + 1,
                (Some(&b), _) if is_ws(b) => skip_crlf(data, p + 1),
                _ => p,
            };
            break;
        }
        pos = p;
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

    pub(crate) fn nested_messages(levels: usize) -> Vec<u8> {
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

    fn chain(levels: usize, level: &str, end: &str) -> Vec<u8> {
        let mut m = Vec::new();
        for _ in 0..levels {
            m.extend_from_slice(level.as_bytes());
        }
        m.extend_from_slice(end.as_bytes());
        m
    }

    #[test]
    fn content_type_spellings_mail_parser_accepts() {
        for level in [
            "Content-Type: message/rfc822 (a comment)\r\n\r\n",
            "Content-Type: \"message/rfc822\"\r\n\r\n",
            "Content-Type: Message/RFC822\r\n\r\n",
            "\rContent-Type: message/rfc822\r\n\r\n",
            " Content-Type: message/rfc822\r\n\r\n",
            "Content-Type :message/global\r\n\r\n",
            "Content-Type: text/plain\r\nContent-Type: message/rfc822\r\n\r\n",
            "Content-Type:\r\n message/rfc822\r\n\r\n",
        ] {
            let m = chain(150, level, "Subject: end\r\n\r\nx\r\n");
            assert_eq!(
                nesting_depth(&m, 100),
                Err(TooDeep { limit: 100 }),
                "{level:?}"
            );
            assert_eq!(
                nesting_depth(&chain(3, level, "\r\nx"), 100),
                Ok(3),
                "{level:?}"
            );
        }
    }

    #[test]
    fn boundary_spellings_and_delimiters_anywhere() {
        for (ct, delim) in [
            ("multipart/mixed; boundary = \"b{i}\"", "--b{i}\r\n"),
            ("multipart/mixed; boundary*=b{i}", "--b{i}\r\n"),
            (
                "multipart/mixed; boundary*=us-ascii''b%7B{i}",
                "--b{{{i}\r\n",
            ),
            ("multipart/mixed; (c) boundary=b{i}", "--b{i}\r\n"),
            // mail-parser finds the delimiter in the middle of a line.
            ("multipart/mixed; boundary=b{i}", "junk--b{i}\r\n"),
            ("multipart/mixed; boundary=b{i}", "--b{i} "),
        ] {
            let mut m = Vec::new();
            for i in 0..150 {
                let ct = ct.replace("{i}", &i.to_string());
                let d = delim.replace("{i}", &i.to_string()).replace("{{", "{");
                m.extend(format!("Content-Type: {ct}\r\n\r\n{d}").into_bytes());
            }
            m.extend(b"\r\nx\r\n");
            assert_eq!(
                nesting_depth(&m, 100),
                Err(TooDeep { limit: 100 }),
                "{ct} {delim}"
            );
        }
    }

    #[test]
    fn digest_parts_default_to_messages() {
        // Each level: a digest whose part has no Content-Type, i.e. message/rfc822.
        let mut m = Vec::new();
        for i in 0..60 {
            m.extend(
                format!("Content-Type: multipart/digest; boundary=d{i}\r\n\r\n--d{i}\r\n\r\n")
                    .into_bytes(),
            );
        }
        m.extend(b"Subject: end\r\n\r\nx\r\n");
        assert_eq!(nesting_depth(&m, 100), Err(TooDeep { limit: 100 }));
        let one = b"Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\nSubject: a\r\n\r\nx\r\n--D--\r\n";
        assert_eq!(nesting_depth(one, 100), Ok(2));
    }

    #[test]
    fn encoded_messages_are_looked_into() {
        use std::fmt::Write;
        let inner = nested_messages(300);
        let b64 = {
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut s = String::new();
            for (n, c) in inner.chunks(3).enumerate() {
                let v = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for k in 0..=c.len() {
                    s.push(A[(v >> (18 - 6 * k) & 63) as usize] as char);
                }
                if n % 19 == 18 {
                    s.push_str("\r\n");
                }
            }
            s
        };
        let m = format!("Subject: x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n");
        assert_eq!(
            nesting_depth(m.as_bytes(), 100),
            Err(TooDeep { limit: 100 })
        );
        let mut qp = String::new();
        for b in &inner {
            let _ = write!(qp, "={b:02X}");
        }
        let m = format!("Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\r\n--B--\r\n");
        assert_eq!(
            nesting_depth(m.as_bytes(), 100),
            Err(TooDeep { limit: 100 })
        );
        // A shallow encoded message is fine.
        let m = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaQ0KDQpoaQ0K\r\n";
        assert_eq!(nesting_depth(m.as_bytes(), 100), Ok(1));
    }

    fn flat_parts(n: usize) -> Vec<u8> {
        let mut m =
            b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n".to_vec();
        for _ in 0..n {
            m.extend(b"--B\r\n\r\nx\r\n");
        }
        m.extend(b"--B--\r\n");
        m
    }

    /// `n` parts under a Content-Type header `ct` whose boundary is `b`.
    fn parts_under(ct: &str, b: &str, n: usize) -> Vec<u8> {
        let mut m = format!("From: a@example.test\r\nContent-Type: {ct}\r\n\r\n").into_bytes();
        for _ in 0..n {
            m.extend(format!("--{b}\r\n\r\nx\r\n").as_bytes());
        }
        m.extend(format!("--{b}--\r\n").as_bytes());
        m
    }

    /// Review of issue 15 #3: mail-parser takes the boundary from RFC 2231 parameter
    /// continuations (`boundary*0=`) and from a Content-Type value of any length; the
    /// scan saw neither, counted one part and let any number through (and nesting
    /// inside such a multipart went unmeasured as well).
    #[test]
    fn boundaries_mail_parser_finds_are_found_too() {
        let limits = Limits {
            depth: 100,
            parts: 10,
        };
        let long = format!(
            "multipart/mixed; x=\"{}\"; boundary=\"B\"",
            "y".repeat(5000)
        );
        let folded_long = format!(
            "multipart/mixed;{}\r\n boundary=B",
            "\r\n x=y;".repeat(1000)
        );
        for (ct, b) in [
            ("multipart/mixed; boundary*0=\"B\"", "B"),
            ("multipart/mixed; boundary*0=B", "B"),
            ("multipart/mixed; boundary*0*=us-ascii''B", "B"),
            ("multipart/mixed; boundary*0=\"B\"; boundary*1=\"2\"", "B2"),
            ("multipart/mixed; boundary*1=\"2\"; boundary*0=\"B\"", "B2"),
            (&long, "B"),
            (&folded_long, "B"),
        ] {
            assert_eq!(
                measure(&parts_under(ct, b, 20), limits),
                Err(StructureError::TooManyParts { limit: 10 }),
                "{}",
                &ct[..ct.len().min(80)]
            );
        }
    }

    #[test]
    fn parts_are_counted_and_limited() {
        let limits = Limits {
            depth: 100,
            parts: 10,
        };
        assert_eq!(
            measure(b"Subject: x\r\n\r\nbody", limits),
            Ok(Shape { depth: 0, parts: 1 })
        );
        // The message itself and its nine parts.
        assert_eq!(
            measure(&flat_parts(9), limits),
            Ok(Shape {
                depth: 1,
                parts: 10
            })
        );
        assert_eq!(
            measure(&flat_parts(10), limits),
            Err(StructureError::TooManyParts { limit: 10 })
        );
        // Two million parts cost one pass and are refused at the first one too many.
        let huge = flat_parts(2_000_000);
        assert_eq!(
            measure(&huge, Limits::default()),
            Err(StructureError::TooManyParts { limit: MAX_PARTS })
        );
        // Encapsulated messages and the parts inside encoded ones count too.
        assert_eq!(
            measure(&nested_messages(12), limits),
            Err(StructureError::TooManyParts { limit: 10 })
        );
        let m = "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaQ0KDQpoaQ0K\r\n";
        assert_eq!(
            measure(m.as_bytes(), limits),
            Ok(Shape { depth: 1, parts: 2 })
        );
        assert_eq!(
            StructureError::TooManyParts { limit: 5000 }.to_string(),
            "more than 5000 MIME parts"
        );
    }

    #[test]
    fn one_message_ends_per_delimiter() {
        // mail-parser closes only the innermost encapsulated message at a delimiter,
        // so messages opened in successive parts keep adding up.
        let mut m = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n".to_vec();
        for _ in 0..150 {
            m.extend(b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nx\r\n--B\r\n");
        }
        assert_eq!(nesting_depth(&m, 100), Err(TooDeep { limit: 100 }));
    }
}
