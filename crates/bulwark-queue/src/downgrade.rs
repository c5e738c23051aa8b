//! 8-bit to 7-bit conversion for a next hop that does not offer 8BITMIME.
//!
//! RFC 6152 §3: a server that accepted 8-bit data and relays it to a server without
//! 8BITMIME either converts the message to 7-bit MIME or returns it. We convert the
//! body: every MIME leaf part whose octets are 8-bit gets a new
//! Content-Transfer-Encoding (RFC 2045 §6) — quoted-printable for text, base64 for
//! everything else — and nothing else in the message changes. What cannot be
//! converted without rewriting what the author wrote is refused: 8-bit octets in a
//! header section (RFC 6532 UTF-8 headers need SMTPUTF8; RFC 2047 encoding them would
//! rewrite addresses), in a multipart preamble or epilogue, or in a part that claims
//! to be base64 or quoted-printable already.
//!
//! The MIME structure comes from mail-parser (the part offsets into the raw message);
//! the encoders from mail-builder. Only the splicing of the re-encoded parts into the
//! original octets is written here, because neither crate rewrites a message in place
//! and rebuilding it with mail-builder would re-fold and re-encode every header.
//!
//! The input must have passed intake (MIME nesting checked, so parsing is bounded).

use std::ops::Range;
use std::sync::OnceLock;

use bulwark_mime::CheckedMessage;
use mail_builder::encoders::{
    base64::base64_encode_mime, quoted_printable::quoted_printable_encode,
};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use bulwark_wire::Enhanced;

use crate::message::{header_section, MessageInfo};
use crate::outcome::Outcome;

/// DKIM signing for a converted message (RFC 6376 §3.4: any change of the body breaks
/// the signature we made at submission). Implemented by the binary over
/// `bulwark-senderauth`, which this crate does not depend on.
pub trait Resigner: Send + Sync + 'static {
    /// DKIM-Signature header fields (with CRLF) for `message` with d=`domain`, or
    /// `None` when there is no key for the domain (any more).
    fn sign(&self, domain: &str, message: &[u8]) -> Result<Option<String>, String>;
}

/// The 7-bit form of a queued message, made at most once per delivery run and only
/// when a next hop lacks 8BITMIME: the converted message and its facts, or the
/// outcome for every recipient when it cannot be made.
#[derive(Default)]
pub struct SevenBitCopy {
    cell: OnceLock<Result<(Vec<u8>, MessageInfo), Outcome>>,
}

impl SevenBitCopy {
    /// Converts `data` (the queued message) on first use. `dkim`: the domain we signed
    /// the message for at submission (`DeliveryParams::dkim_domain`) and the signer;
    /// our old signature is replaced by one over the converted octets.
    pub fn get_or_make(
        &self,
        data: &[u8],
        dkim: Option<(&str, &dyn Resigner)>,
    ) -> Result<(&[u8], MessageInfo), Outcome> {
        let made = self.cell.get_or_init(|| {
            let r = make(data, dkim);
            let result = if r.is_ok() { "converted" } else { "refused" };
            metrics::counter!("bulwark_delivery_downgrades_total", "result" => result).increment(1);
            r.map(|m| {
                let info = MessageInfo::of(&m);
                (m, info)
            })
        });
        match made {
            Ok((payload, info)) => Ok((payload.as_slice(), *info)),
            Err(o) => Err(o.clone()),
        }
    }
}

fn make(data: &[u8], dkim: Option<(&str, &dyn Resigner)>) -> Result<Vec<u8>, Outcome> {
    let converted = to_seven_bit(data).map_err(|e| {
        Outcome::failed(
            Enhanced::new(5, 6, 3),
            format!("the next hop does not offer 8BITMIME (RFC 6152) and the message cannot be converted to 7-bit: {e}"),
        )
    })?;
    let Some((domain, signer)) = dkim else {
        return Ok(converted);
    };
    let unsigned = strip_signatures(&converted, domain);
    // The unsigned copy replaces the converted one: hold two 7-bit copies, not three.
    drop(converted);
    match signer.sign(domain, &unsigned) {
        Ok(Some(headers)) => {
            let mut out = Vec::with_capacity(headers.len() + unsigned.len());
            out.extend_from_slice(headers.as_bytes());
            out.extend_from_slice(&unsigned);
            Ok(out)
        }
        // The key is gone: a broken signature helps nobody; send it unsigned.
        Ok(None) => Ok(unsigned),
        Err(e) => Err(Outcome::deferred(
            Enhanced::new(4, 3, 0),
            format!("cannot DKIM-sign the message again after converting it to 7-bit: {e}"),
        )),
    }
}

/// The message without the DKIM-Signature fields of its header section that name
/// d=`domain`: ours, made over the octets before the conversion (RFC 6376 §3.5 tags;
/// written by hand because only the `d=` tag of a field we wrote is needed).
pub fn strip_signatures(message: &[u8], domain: &str) -> Vec<u8> {
    let head = header_section(message);
    let mut out = Vec::with_capacity(message.len());
    let mut fields: Vec<&[u8]> = Vec::new();
    for line in head.split_inclusive(|b| *b == b'\n') {
        match (line.first(), fields.last_mut()) {
            (Some(b' ' | b'\t'), Some(last)) => {
                // Extend the field to cover its continuation line (same buffer).
                let start = last.as_ptr() as usize - head.as_ptr() as usize;
                *last = &head[start..start + last.len() + line.len()];
            }
            _ => fields.push(line),
        }
    }
    for f in fields {
        if !is_signature_for(f, domain) {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(&message[head.len()..]);
    out
}

fn is_signature_for(field: &[u8], domain: &str) -> bool {
    let Some(colon) = field.iter().position(|c| *c == b':') else {
        return false;
    };
    let (name, value) = (&field[..colon], &field[colon + 1..]);
    if !name.trim_ascii().eq_ignore_ascii_case(b"DKIM-Signature") {
        return false;
    }
    String::from_utf8_lossy(value).split(';').any(|tag| {
        let tag: String = tag.chars().filter(|c| !c.is_whitespace()).collect();
        tag.get(..2).is_some_and(|t| t.eq_ignore_ascii_case("d="))
            && tag[2..].trim_end_matches('.').eq_ignore_ascii_case(domain)
    })
}

/// Why a message cannot go to a server without 8BITMIME.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DowngradeError {
    /// A header field has 8-bit octets: only SMTPUTF8 could carry it, not a re-encoding.
    #[error("a header section has 8-bit octets (UTF-8 header fields need SMTPUTF8, RFC 6532)")]
    EightBitHeaders,
    /// 8-bit octets where no Content-Transfer-Encoding can be changed (the reason says where).
    #[error("the message has 8-bit octets outside any MIME part that can be re-encoded ({0})")]
    Unconvertible(&'static str),
}

/// One leaf part to rewrite: its header section and its body, replaced.
struct Edit {
    header: Range<usize>,
    new_header: Vec<u8>,
    body: Range<usize>,
    new_body: Vec<u8>,
}

fn has_8bit(b: &[u8]) -> bool {
    b.iter().any(|c| *c >= 0x80)
}

/// The message with every 8-bit leaf part re-encoded in 7-bit; the input unchanged
/// (copied) when it has no 8-bit octets.
pub fn to_seven_bit(message: &[u8]) -> Result<Vec<u8>, DowngradeError> {
    if !has_8bit(message) {
        return Ok(message.to_vec());
    }
    if has_8bit(header_section(message)) {
        return Err(DowngradeError::EightBitHeaders);
    }
    // mail-parser drops nested messages recursively and `collect` recurses per
    // level: only a structure within intake's limits is parsed here (one queued
    // before the limits, or past a scan that missed a boundary, aborted the server
    // with a stack overflow on every retry).
    let ceilings = bulwark_mime::Limits {
        depth: bulwark_mime::MAX_NESTING,
        parts: bulwark_mime::MAX_PARTS_CEILING,
    };
    let checked = CheckedMessage::check(message, ceilings).map_err(|_| {
        DowngradeError::Unconvertible("MIME structure beyond the nesting or part limits")
    })?;
    let parsed = checked
        .parse(&MessageParser::default())
        .ok_or(DowngradeError::Unconvertible("not a parseable message"))?;
    let mut edits = Vec::new();
    collect(message, &parsed, 0, true, &mut edits)?;
    edits.sort_by_key(|e| e.header.start);
    let mut out = Vec::with_capacity(message.len() + message.len() / 3);
    let mut at = 0;
    for e in &edits {
        // Parts do not overlap; a parser oddity that made them must not corrupt mail.
        if e.header.start < at || e.header.end > e.body.start || e.body.end > message.len() {
            return Err(DowngradeError::Unconvertible("overlapping MIME parts"));
        }
        out.extend_from_slice(&message[at..e.header.start]);
        out.extend_from_slice(&e.new_header);
        out.extend_from_slice(&message[e.header.end..e.body.start]);
        out.extend_from_slice(&e.new_body);
        at = e.body.end;
    }
    out.extend_from_slice(&message[at..]);
    // The safety net: whatever the parser made of the structure, the result is 7-bit
    // or it is not sent.
    if has_8bit(&out) {
        return Err(DowngradeError::Unconvertible(
            "8-bit octets in a multipart preamble or epilogue",
        ));
    }
    Ok(out)
}

/// Walks the part tree from `index` of `msg` (multiparts and message/rfc822 parts
/// recurse; their own bodies are never re-encoded, RFC 2045 §6.4).
fn collect(
    raw: &[u8],
    msg: &Message<'_>,
    index: usize,
    top: bool,
    edits: &mut Vec<Edit>,
) -> Result<(), DowngradeError> {
    let Some(part) = msg.parts.get(index) else {
        return Ok(());
    };
    let header = part.offset_header as usize..part.offset_body as usize;
    let body = part.offset_body as usize..(part.offset_end as usize).max(part.offset_body as usize);
    let (Some(head), Some(content)) = (raw.get(header.clone()), raw.get(body.clone())) else {
        return Err(DowngradeError::Unconvertible(
            "MIME part outside the message",
        ));
    };
    if has_8bit(head) {
        return Err(DowngradeError::EightBitHeaders);
    }
    match &part.body {
        PartType::Multipart(children) => {
            for c in children {
                collect(raw, msg, *c as usize, false, edits)?;
            }
            Ok(())
        }
        PartType::Message(nested) => collect(raw, nested, 0, false, edits),
        _ if !has_8bit(content) => Ok(()),
        body_type => {
            let cte = part.content_transfer_encoding().unwrap_or("7bit");
            if !["7bit", "8bit", "binary"]
                .iter()
                .any(|e| cte.trim().eq_ignore_ascii_case(e))
            {
                return Err(DowngradeError::Unconvertible(
                    "8-bit octets in a part that claims another encoding",
                ));
            }
            let text = matches!(body_type, PartType::Text(_) | PartType::Html(_));
            let mut new_body = Vec::with_capacity(content.len() * 4 / 3 + 8);
            // Writing to a Vec cannot fail.
            let encoded = if text {
                quoted_printable_encode(content, &mut new_body, true)
            } else {
                base64_encode_mime(content, &mut new_body, false)
            };
            encoded.map_err(|_| DowngradeError::Unconvertible("encoder failed"))?;
            // A part inside a multipart ends before the CRLF that belongs to the next
            // boundary delimiter (RFC 2046 §5.1.1): the encoder's closing line end
            // would add an empty line to the content.
            if !top && new_body.ends_with(b"\r\n") && !(text && content.ends_with(b"\r\n")) {
                new_body.truncate(new_body.len() - 2);
            }
            let charset = if std::str::from_utf8(content).is_ok() {
                "utf-8"
            } else {
                // RFC 1428: 8-bit text of an unknown character set.
                "unknown-8bit"
            };
            edits.push(Edit {
                new_header: rewrite_header(
                    head,
                    if text { "quoted-printable" } else { "base64" },
                    top,
                    part.content_type().is_none().then_some(charset),
                ),
                header,
                body,
                new_body,
            });
            Ok(())
        }
    }
}

/// The header section with its Content-Transfer-Encoding replaced by `cte`; at the top
/// level also `MIME-Version` (RFC 2045 §4) when missing, and a Content-Type naming the
/// charset when the part had none (the default, US-ASCII, would be wrong now).
fn rewrite_header(head: &[u8], cte: &str, top: bool, add_type: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + 80);
    let mut skipping = false;
    let mut has_version = false;
    let mut blank = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            blank = true;
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if !skipping {
                out.extend_from_slice(line);
            }
            continue;
        }
        let name = line.split(|b| *b == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        skipping = name.eq_ignore_ascii_case(b"Content-Transfer-Encoding");
        has_version |= name.eq_ignore_ascii_case(b"MIME-Version");
        if !skipping {
            out.extend_from_slice(line);
            if !line.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if top && !has_version {
        out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    }
    if let Some(charset) = add_type {
        out.extend_from_slice(
            format!("Content-Type: text/plain; charset={charset}\r\n").as_bytes(),
        );
    }
    out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n").as_bytes());
    if blank {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    fn text_of(m: &[u8], part: usize) -> String {
        let p = MessageParser::default().parse(m).unwrap();
        p.body_text(part).unwrap().into_owned()
    }

    /// Review: a message nested deeper than intake allows (queued before the limit,
    /// or past a scan that missed its boundary) must be refused, not parsed: mail-parser's
    /// drop recursed once per level and overflowed the stack (the whole server aborted,
    /// again on every retry of the entry).
    #[test]
    fn a_message_beyond_the_nesting_limit_is_not_parsed() {
        let mut m = String::from("Subject: x\r\n\r\nGr\u{fc}\u{df}e\r\n");
        for _ in 0..30_000 {
            m = format!("Content-Type: message/rfc822\r\n\r\n{m}");
        }
        let m = format!("From: a@example.test\r\n{m}");
        // The default test thread's stack, as a tokio worker's.
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || to_seven_bit(m.as_bytes()))
            .unwrap()
            .join()
            .unwrap();
        assert!(matches!(r, Err(DowngradeError::Unconvertible(_))), "{r:?}");
    }

    #[test]
    fn a_plain_8bit_body_becomes_quoted_printable() {
        let m = "From: a@example.test\r\nSubject: hi\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n.dot line\r\n".as_bytes();
        let out = to_seven_bit(m).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(out.is_ascii(), "{s}");
        assert!(s.starts_with("From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"), "{s}");
        assert!(s.contains("Gr=C3=BC=C3=9Fe"), "{s}");
        assert_eq!(
            text_of(&out, 0),
            "Gr\u{fc}\u{df}e aus K\u{f6}ln\r\n.dot line\r\n"
        );
    }

    #[test]
    fn only_8bit_leaf_parts_change_in_a_multipart() {
        let m = concat!(
            "From: a@example.test\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
            "preamble\r\n",
            "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain ascii\r\n",
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\u{e9} ",
            "with a long line that goes on and on and on and on and on and on and on and on and on\r\n",
            "--b1\r\nContent-Type: application/octet-stream\r\n\r\n\u{ff}\u{fe}bin\r\n",
            "--b1--\r\nepilogue\r\n"
        )
        .as_bytes();
        let out = to_seven_bit(m).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(out.is_ascii(), "{s}");
        assert!(
            s.contains(
                "--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain ascii\r\n--b1\r\n"
            ),
            "untouched: {s}"
        );
        assert!(!s.contains("Content-Transfer-Encoding: 8bit"), "{s}");
        assert!(s.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9"), "{s}");
        assert!(s.contains("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nw7/DvmJpbg==\r\n--b1--\r\nepilogue\r\n"), "{s}");
        assert!(s.lines().all(|l| l.len() <= 78), "{s}");
        let p = MessageParser::default().parse(&out).unwrap();
        assert_eq!(p.body_text(1).unwrap(), format!("caf\u{e9} with a long line that goes on and on and on and on and on and on and on and on and on"));
        assert_eq!(
            p.attachment(0).unwrap().contents(),
            "\u{ff}\u{fe}bin".as_bytes()
        );
    }

    #[test]
    fn a_nested_message_is_converted_inside() {
        let m = concat!(
            "From: a@example.test\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n",
            "--o\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n",
            "--o\r\nContent-Type: message/rfc822\r\n\r\n",
            "From: b@example.test\r\nSubject: inner\r\n\r\nna\u{ef}ve\r\n",
            "--o--\r\n"
        )
        .as_bytes();
        let out = to_seven_bit(m).unwrap();
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(out.is_ascii(), "{s}");
        assert!(s.contains("Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=C3=AFve\r\n--o--"), "{s}");
    }

    #[test]
    fn what_cannot_be_converted_is_refused() {
        let h = "From: a@example.test\r\nSubject: caf\u{e9}\r\n\r\nx\r\n".as_bytes();
        assert_eq!(to_seven_bit(h), Err(DowngradeError::EightBitHeaders));
        let part_header = concat!(
            "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/plain; name=\"caf\u{e9}.txt\"\r\n\r\nx\r\n--b--\r\n"
        );
        assert_eq!(
            to_seven_bit(part_header.as_bytes()),
            Err(DowngradeError::EightBitHeaders)
        );
        let preamble = concat!(
            "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            "pr\u{e9}amble\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
        );
        assert!(matches!(
            to_seven_bit(preamble.as_bytes()),
            Err(DowngradeError::Unconvertible(_))
        ));
        let lying = "From: a@example.test\r\nContent-Transfer-Encoding: base64\r\n\r\n\u{e9}\r\n";
        assert!(matches!(
            to_seven_bit(lying.as_bytes()),
            Err(DowngradeError::Unconvertible(_))
        ));
        let ascii = b"From: a@example.test\r\n\r\nplain\r\n";
        assert_eq!(to_seven_bit(ascii).unwrap(), ascii.to_vec());
    }

    struct FakeSigner;
    impl Resigner for FakeSigner {
        fn sign(&self, domain: &str, message: &[u8]) -> Result<Option<String>, String> {
            assert!(message.is_ascii(), "signed after the conversion");
            Ok(Some(format!(
                "DKIM-Signature: v=1; d={domain}; s=new; b=x\r\n"
            )))
        }
    }

    #[test]
    fn our_signature_is_replaced_after_conversion() {
        let m = "DKIM-Signature: v=1; a=rsa-sha256;\r\n\td=Example.test; s=old; b=abc\r\nDKIM-Signature: v=1; d=other.test; s=x; b=y\r\nReceived: from x\r\nFrom: a@example.test\r\n\r\nGr\u{fc}\u{df}e\r\n".as_bytes();
        let copy = SevenBitCopy::default();
        let (payload, info) = copy
            .get_or_make(m, Some(("example.test", &FakeSigner)))
            .unwrap();
        assert!(!info.eight_bit);
        let s = String::from_utf8(payload.to_vec()).unwrap();
        assert!(s.starts_with("DKIM-Signature: v=1; d=example.test; s=new; b=x\r\nDKIM-Signature: v=1; d=other.test; s=x; b=y\r\nReceived: from x\r\n"), "{s}");
        assert!(!s.contains("s=old"), "{s}");
        assert!(
            s.ends_with("Gr=C3=BC=C3=9Fe\r\n"),
            "converted, not dot-stuffed (the client stuffs as it sends): {s}"
        );
        // Not ours: converted, and the foreign signature is left as it is.
        let plain = SevenBitCopy::default();
        let (payload, _) = plain.get_or_make(m, None).unwrap();
        assert!(String::from_utf8_lossy(payload).contains("s=old"));
        let bad = "From: a@example.test\r\nSubject: caf\u{e9}\r\n\r\nx\r\n".as_bytes();
        let e = SevenBitCopy::default().get_or_make(bad, None).unwrap_err();
        assert_eq!(e.status.to_string(), "5.6.3");
    }
}
