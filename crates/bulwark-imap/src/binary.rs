//! BINARY (RFC 3516): `FETCH BINARY[part]`, `BINARY.PEEK[part]<partial>` and
//! `BINARY.SIZE[part]` send a part with its Content-Transfer-Encoding undone; APPEND
//! accepts `~{n}` literal8 messages, whose binary parts are stored base64-encoded so
//! that BODY[] never carries a NUL (RFC 3516 §4.3).

use std::borrow::Cow;

use base64::Engine as _;

use crate::mime::{self, SectionText};

/// RFC 3516 §4.2: a part whose encoding the server cannot undo is `NO [UNKNOWN-CTE]`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown Content-Transfer-Encoding {0:?}")]
pub(crate) struct UnknownCte(pub String);

/// The decoded octets of `BINARY[path]`; `Ok(None)` when the part does not exist.
/// `BINARY[]` is the whole message as stored (RFC 3516 §4.1: only a part has a
/// transfer encoding to undo).
pub(crate) fn section<'r>(
    raw: &'r [u8],
    path: &[u32],
) -> Result<Option<Cow<'r, [u8]>>, UnknownCte> {
    let Some(body) = mime::section(raw, path, &SectionText::Whole) else {
        return Ok(None);
    };
    if path.is_empty() {
        return Ok(Some(body));
    }
    let header = mime::section(raw, path, &SectionText::Mime).unwrap_or_default();
    let cte = header_value(&header, "content-transfer-encoding")
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    Ok(Some(match cte.as_str() {
        "" | "7bit" | "8bit" | "binary" => body,
        "base64" => Cow::Owned(decode_base64(&body)),
        "quoted-printable" => Cow::Owned(decode_qp(&body)),
        other => return Err(UnknownCte(other.to_string())),
    }))
}

/// RFC 3516 §4.2: literal8 (`~{n}`) only when the data holds a NUL, which a literal
/// may not carry (RFC 9051 §4.3).
pub(crate) fn needs_literal8(data: &[u8]) -> bool {
    memchr::memchr(0, data).is_some()
}

/// A header field's unfolded value (first occurrence), from a header block.
fn header_value(block: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let mut value: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push_str(line);
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case(name) {
                value = Some(v.to_string());
            }
        }
    }
    value
}

/// RFC 2045 §6.8: characters outside the alphabet (line breaks, transport padding)
/// are ignored; a body that is not valid base64 decodes as far as it goes.
fn decode_base64(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    // A dangling sixth of a byte (length 4n+1) cannot be decoded: drop it.
    let usable = clean.len() - usize::from(clean.len() % 4 == 1);
    engine.decode(&clean[..usable]).unwrap_or_default()
}

/// RFC 2045 §6.7. Hand-written: mail-parser's decoder refuses transport padding after
/// a soft line break (`=` SP CRLF), which rule (3) says to strip, and gives up on the
/// whole part at the first malformed `=`, which the robustness note says to keep as is.
fn decode_qp(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut lines = body.split(|&c| c == b'\n').peekable();
    while let Some(line) = lines.next() {
        let had_newline = lines.peek().is_some();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Rule (3): trailing whitespace is transport padding.
        let end = line
            .iter()
            .rposition(|c| !matches!(c, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let mut line = &line[..end];
        // Rule (5): a final "=" is a soft line break.
        let soft = line.last() == Some(&b'=');
        if soft {
            line = &line[..line.len() - 1];
        }
        let mut i = 0;
        while i < line.len() {
            let c = line[i];
            if c == b'=' {
                let hex = line
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(c);
            i += 1;
        }
        if had_newline && !soft {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// RFC 3516 §4.3: a message APPENDed with binary parts (any NUL octet) has each such
/// leaf part re-encoded as base64, so FETCH BODY never sends a NUL in a literal and
/// BINARY gives the original octets back. Messages without a NUL are untouched.
pub(crate) fn encode_binary_parts(raw: &[u8]) -> Cow<'_, [u8]> {
    if !needs_literal8(raw) {
        return Cow::Borrowed(raw);
    }
    let Some(msg) = mime::parse(raw) else {
        return Cow::Borrowed(raw);
    };
    // (header start, body start, body end) of leaf parts whose body holds a NUL, in
    // the top buffer (parts of a nested message decoded into another buffer are
    // left alone).
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for p in &msg.parts {
        use mail_parser::PartType;
        if matches!(p.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let (h, b, e) = (
            p.offset_header as usize,
            p.offset_body as usize,
            p.offset_end as usize,
        );
        if h <= b && b <= e && e <= raw.len() && needs_literal8(&raw[b..e]) {
            spans.push((h, b, e));
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(raw);
    }
    spans.sort_unstable();
    let mut out = Vec::with_capacity(raw.len() * 4 / 3 + 64);
    let mut at = 0;
    for (h, b, e) in spans {
        if h < at {
            continue;
        }
        out.extend_from_slice(&raw[at..h]);
        out.extend_from_slice(&rewrite_cte(&raw[h..b]));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&raw[b..e]);
        for (i, chunk) in encoded.as_bytes().chunks(76).enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(chunk);
        }
        at = e;
    }
    out.extend_from_slice(&raw[at..]);
    Cow::Owned(out)
}

/// A part header with its Content-Transfer-Encoding field(s) replaced by `base64`.
fn rewrite_cte(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 40);
    let mut skipping = false;
    let mut lines: Vec<&[u8]> = header.split_inclusive(|&c| c == b'\n').collect();
    // The blank line that ends the header goes after the new field.
    let blank = lines
        .last()
        .is_some_and(|l| l == b"\r\n" || l == b"\n")
        .then(|| lines.pop())
        .flatten();
    for line in lines {
        let continuation = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if continuation && skipping {
            continue;
        }
        skipping =
            line.len() >= 26 && line[..26].eq_ignore_ascii_case(b"content-transfer-encoding:");
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n");
    out.extend_from_slice(blank.unwrap_or(b"\r\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_per_rfc_2045() {
        let body = b"hello  \r\nbar=\r\n\r\nfoo\t=\r\nbar\r\nfoo\t \t= \r\n=62\r\nfoo = \t\r\nbar\r\nfoo_bar=3D=zz\r\n";
        assert_eq!(
            decode_qp(body),
            b"hello\r\nbar\r\nfoo\tbar\r\nfoo\t \tb\r\nfoo bar\r\nfoo_bar==zz\r\n".to_vec()
        );
    }

    #[test]
    fn base64_ignores_whitespace() {
        assert_eq!(
            decode_base64(b"  aGVs    \r\n bG8g  \r\n   d29y  \t \r\n    bGQ= \r\n"),
            b"hello world"
        );
    }

    #[test]
    fn parts_are_decoded_and_unknown_encodings_refused() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nabc\r\n--b--\r\n";
        assert_eq!(section(raw, &[1]).unwrap().unwrap().as_ref(), b"hello");
        assert!(section(raw, &[2]).is_err());
        assert_eq!(section(raw, &[3]).unwrap(), None);
    }

    #[test]
    fn binary_parts_are_stored_as_base64_and_decode_back() {
        let raw = b"Subject: x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n";
        let stored = encode_binary_parts(raw);
        assert!(
            !needs_literal8(&stored),
            "{:?}",
            String::from_utf8_lossy(&stored)
        );
        assert!(
            String::from_utf8_lossy(&stored).contains("Content-Transfer-Encoding: base64\r\n\r\n")
        );
        assert_eq!(
            section(&stored, &[1]).unwrap().unwrap().as_ref(),
            b"\x00-\xe4\r\n\r\n"
        );
        let text = b"Subject: x\r\n\r\nplain\r\n";
        assert!(matches!(encode_binary_parts(text), Cow::Borrowed(_)));
    }
}
