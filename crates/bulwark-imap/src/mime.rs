//! Message structure for FETCH and SEARCH, computed with mail-parser 0.11: ENVELOPE
//! and BODYSTRUCTURE (RFC 9051 §7.5.2), BODY[section] extraction (RFC 9051 §6.4.5),
//! and the decoded text SEARCH looks at.
//!
//! ENVELOPE/BODYSTRUCTURE are pre-encoded once per body and cached in the store's
//! opaque per-body summary (`Summary::encode`), so a header FETCH of many messages
//! never re-parses them.
//!
//! Hand-written here: the IMAP encoding of those structures and the header-field
//! filtering of HEADER.FIELDS — mail-parser parses MIME, it does not speak IMAP.

use std::borrow::Cow;

use base64::Engine;
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, PartType};

use crate::resp::push_string;

/// The cached, pre-encoded per-body data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub envelope: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub body: Vec<u8>,
}

const SUMMARY_VERSION: u8 = 1;

impl Summary {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![SUMMARY_VERSION];
        for f in [&self.envelope, &self.bodystructure, &self.body] {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// None for an unknown version or a damaged value (it is then recomputed).
    pub fn decode(b: &[u8]) -> Option<Summary> {
        let (&v, mut rest) = b.split_first()?;
        if v != SUMMARY_VERSION {
            return None;
        }
        let mut fields = Vec::with_capacity(3);
        for _ in 0..3 {
            let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            fields.push(rest.get(4..4 + len)?.to_vec());
            rest = &rest[4 + len..];
        }
        let body = fields.pop()?;
        let bodystructure = fields.pop()?;
        let envelope = fields.pop()?;
        Some(Summary {
            envelope,
            bodystructure,
            body,
        })
    }
}

pub fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
}

pub fn parse(raw: &[u8]) -> Option<Message<'_>> {
    parser().parse(raw)
}

pub fn compute_summary(raw: &[u8]) -> Summary {
    match parse(raw) {
        Some(m) if !m.parts.is_empty() => {
            let mut envelope = Vec::new();
            write_envelope(&m, &mut envelope);
            let mut bodystructure = Vec::new();
            write_structure(&m, 0, true, &mut bodystructure);
            let mut body = Vec::new();
            write_structure(&m, 0, false, &mut body);
            Summary {
                envelope,
                bodystructure,
                body,
            }
        }
        _ => {
            // Unparseable: an empty envelope and a plain-text body of the whole thing.
            let basic = format!(
                "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {} {})",
                raw.len(),
                count_lines(raw)
            )
            .into_bytes();
            Summary {
                envelope: b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)".to_vec(),
                bodystructure: basic.clone(),
                body: basic,
            }
        }
    }
}

fn count_lines(b: &[u8]) -> usize {
    let n = b.iter().filter(|c| **c == b'\n').count();
    if !b.is_empty() && !b.ends_with(b"\n") {
        n + 1
    } else {
        n
    }
}

/// The raw (unfolded, trimmed) value of the first header `name` of a part.
fn raw_header<'a>(m: &'a Message<'_>, part: usize, name: &str) -> Option<Cow<'a, [u8]>> {
    let p = m.parts.get(part)?;
    let h = p
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let raw = m
        .raw_message
        .get(h.offset_start as usize..h.offset_end as usize)?;
    Some(unfold(raw))
}

fn unfold(raw: &[u8]) -> Cow<'_, [u8]> {
    let trimmed = trim(raw);
    if !trimmed.contains(&b'\n') && !trimmed.contains(&b'\r') {
        return Cow::Borrowed(trimmed);
    }
    Cow::Owned(
        trimmed
            .iter()
            .copied()
            .filter(|c| *c != b'\r' && *c != b'\n')
            .collect(),
    )
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn header_value<'a, 'x>(
    m: &'a Message<'x>,
    part: usize,
    name: &str,
) -> Option<&'a HeaderValue<'x>> {
    m.parts
        .get(part)?
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| &h.value)
}

fn nstring(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => push_string(out, v),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// RFC 2047-encodes a decoded display name when it is not plain ASCII, so clients
/// that expect the classic ENVELOPE see what the header had.
fn encode_word(s: &str) -> Cow<'_, [u8]> {
    if s.bytes().all(|c| (0x20..0x7f).contains(&c)) {
        Cow::Borrowed(s.as_bytes())
    } else {
        Cow::Owned(
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
            .into_bytes(),
        )
    }
}

fn write_addr(out: &mut Vec<u8>, name: Option<&str>, address: Option<&str>) {
    out.push(b'(');
    nstring(out, name.map(encode_word).as_deref());
    out.extend_from_slice(b" NIL ");
    match address {
        Some(a) => {
            let (local, host) = match a.rsplit_once('@') {
                Some((l, h)) => (l, Some(h)),
                None => (a, None),
            };
            nstring(out, Some(local.as_bytes()));
            out.push(b' ');
            nstring(out, host.map(str::as_bytes));
        }
        None => out.extend_from_slice(b"NIL NIL"),
    }
    out.push(b')');
}

fn write_addresses(out: &mut Vec<u8>, v: Option<&HeaderValue<'_>>) -> bool {
    let Some(HeaderValue::Address(a)) = v else {
        return false;
    };
    let mut any = false;
    let mut body = Vec::new();
    match a {
        Address::List(list) => {
            for addr in list {
                any = true;
                write_addr(&mut body, addr.name.as_deref(), addr.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for g in groups {
                any = true;
                match &g.name {
                    // RFC 9051 §7.5.2: a group is (NIL NIL "name" NIL) … (NIL NIL NIL NIL).
                    Some(name) => {
                        body.extend_from_slice(b"(NIL NIL ");
                        push_string(&mut body, name.as_bytes());
                        body.extend_from_slice(b" NIL)");
                        for addr in &g.addresses {
                            write_addr(&mut body, addr.name.as_deref(), addr.address.as_deref());
                        }
                        body.extend_from_slice(b"(NIL NIL NIL NIL)");
                    }
                    None => {
                        for addr in &g.addresses {
                            write_addr(&mut body, addr.name.as_deref(), addr.address.as_deref());
                        }
                    }
                }
            }
        }
    }
    if !any {
        return false;
    }
    out.push(b'(');
    out.extend_from_slice(&body);
    out.push(b')');
    true
}

/// ENVELOPE of the message whose root is `m.parts[0]` (RFC 9051 §7.5.2).
pub fn write_envelope(m: &Message<'_>, out: &mut Vec<u8>) {
    out.push(b'(');
    nstring(out, raw_header(m, 0, "Date").as_deref());
    out.push(b' ');
    nstring(out, raw_header(m, 0, "Subject").as_deref());
    let from = header_value(m, 0, "From");
    for (name, fallback) in [
        ("From", None),
        ("Sender", from),
        ("Reply-To", from),
        ("To", None),
        ("Cc", None),
        ("Bcc", None),
    ] {
        out.push(b' ');
        let v = header_value(m, 0, name);
        if !write_addresses(out, v) && !write_addresses(out, fallback) {
            out.extend_from_slice(b"NIL");
        }
    }
    out.push(b' ');
    nstring(out, raw_header(m, 0, "In-Reply-To").as_deref());
    out.push(b' ');
    nstring(out, raw_header(m, 0, "Message-ID").as_deref());
    out.push(b')');
}

fn write_params(
    out: &mut Vec<u8>,
    ct: Option<&mail_parser::ContentType<'_>>,
    default: &[(&str, &str)],
) {
    let attrs: Vec<(String, String)> = match ct.and_then(|c| c.attributes.as_ref()) {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|a| (a.name.to_uppercase(), a.value.to_string()))
            .collect(),
        _ => default
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    if attrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_string(out, k.as_bytes());
        out.push(b' ');
        push_string(out, v.as_bytes());
    }
    out.push(b')');
}

fn content_type<'a, 'x>(
    m: &'a Message<'x>,
    part: usize,
) -> Option<&'a mail_parser::ContentType<'x>> {
    match header_value(m, part, "Content-Type") {
        Some(HeaderValue::ContentType(ct)) => Some(ct),
        _ => None,
    }
}

/// Extension data shared by single and multipart bodies: disposition, language,
/// location (RFC 9051 §7.5.2 body-ext-1part / body-ext-mpart).
fn write_ext_tail(m: &Message<'_>, part: usize, out: &mut Vec<u8>) {
    out.push(b' ');
    match header_value(m, part, "Content-Disposition") {
        Some(HeaderValue::ContentType(d)) => {
            out.push(b'(');
            push_string(out, d.c_type.to_uppercase().as_bytes());
            out.push(b' ');
            write_params(out, Some(d), &[]);
            out.push(b')');
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match raw_header(m, part, "Content-Language") {
        Some(l) => {
            out.push(b'(');
            let langs: Vec<&[u8]> = l
                .split(|c| *c == b',')
                .map(trim)
                .filter(|s| !s.is_empty())
                .collect();
            for (i, lang) in langs.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                push_string(out, lang);
            }
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    nstring(out, raw_header(m, part, "Content-Location").as_deref());
}

/// BODYSTRUCTURE (`ext` = true) or BODY of one part of `m`.
pub fn write_structure(m: &Message<'_>, part: usize, ext: bool, out: &mut Vec<u8>) {
    let Some(p) = m.parts.get(part) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let ct = content_type(m, part);
    if let PartType::Multipart(children) = &p.body {
        out.push(b'(');
        if children.is_empty() {
            // RFC 9051 requires at least one part; describe an empty text part.
            out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        }
        for &c in children {
            write_structure(m, c as usize, ext, out);
        }
        out.push(b' ');
        let subtype = ct
            .and_then(|c| c.c_subtype.as_deref())
            .unwrap_or("MIXED")
            .to_uppercase();
        push_string(out, subtype.as_bytes());
        if ext {
            out.push(b' ');
            write_params(out, ct, &[]);
            write_ext_tail(m, part, out);
        }
        out.push(b')');
        return;
    }
    let (ctype, subtype) = match ct {
        Some(c) => (
            c.c_type.to_uppercase(),
            c.c_subtype.as_deref().unwrap_or("").to_uppercase(),
        ),
        None => ("TEXT".into(), "PLAIN".into()),
    };
    let subtype = if subtype.is_empty() {
        if ctype == "TEXT" {
            "PLAIN".to_string()
        } else {
            "OCTET-STREAM".to_string()
        }
    } else {
        subtype
    };
    let body = m
        .raw_message
        .get(p.offset_body as usize..p.offset_end as usize)
        .unwrap_or_default();
    out.push(b'(');
    push_string(out, ctype.as_bytes());
    out.push(b' ');
    push_string(out, subtype.as_bytes());
    out.push(b' ');
    let default_params: &[(&str, &str)] = if ctype == "TEXT" {
        &[("CHARSET", "US-ASCII")]
    } else {
        &[]
    };
    write_params(out, ct, default_params);
    out.push(b' ');
    nstring(out, raw_header(m, part, "Content-ID").as_deref());
    out.push(b' ');
    nstring(out, raw_header(m, part, "Content-Description").as_deref());
    out.push(b' ');
    let enc = raw_header(m, part, "Content-Transfer-Encoding")
        .map(|e| e.to_ascii_uppercase())
        .unwrap_or_else(|| b"7BIT".to_vec());
    push_string(out, &enc);
    out.push(b' ');
    out.extend_from_slice(body.len().to_string().as_bytes());
    match &p.body {
        PartType::Message(nested) if !nested.parts.is_empty() => {
            out.push(b' ');
            write_envelope(nested, out);
            out.push(b' ');
            write_structure(nested, 0, ext, out);
            out.push(b' ');
            out.extend_from_slice(count_lines(body).to_string().as_bytes());
        }
        _ if ctype == "TEXT" => {
            out.push(b' ');
            out.extend_from_slice(count_lines(body).to_string().as_bytes());
        }
        _ => {}
    }
    if ext {
        out.push(b' ');
        nstring(out, raw_header(m, part, "Content-MD5").as_deref());
        write_ext_tail(m, part, out);
    }
    out.push(b')');
}

/// What a BODY[...] section asks for, after the part path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// The part's content (BODY[] or BODY[1.2]).
    Whole,
    Header,
    HeaderFields {
        names: Vec<String>,
        not: bool,
    },
    Text,
    Mime,
}

/// A node found by a part path.
struct Node<'m, 'x> {
    msg: &'m Message<'x>,
    idx: usize,
}

/// Follows a part path (RFC 9051 §6.4.5): numbers go into multiparts; a part that
/// is message/rfc822 is entered; a non-multipart message has one part, 1.
fn find<'m, 'x>(top: &'m Message<'x>, path: &[u32]) -> Option<Node<'m, 'x>> {
    let mut msg = top;
    let mut idx = 0usize;
    let mut at_message = true;
    for &n in path {
        if !at_message {
            match &msg.parts.get(idx)?.body {
                PartType::Message(nested) if !nested.parts.is_empty() => {
                    msg = nested;
                    idx = 0;
                    at_message = true;
                }
                PartType::Multipart(_) => {}
                _ => return None,
            }
        }
        let p = msg.parts.get(idx)?;
        match &p.body {
            PartType::Multipart(children) => {
                idx = *children.get((n as usize).checked_sub(1)?)? as usize;
            }
            _ if at_message && n == 1 => {}
            _ => return None,
        }
        at_message = false;
    }
    Some(Node { msg, idx })
}

fn slice<'a>(m: &'a Message<'_>, a: u32, b: u32) -> &'a [u8] {
    m.raw_message
        .get(a as usize..b as usize)
        .unwrap_or_default()
}

/// The octets of a section; None when the part does not exist (the client then gets
/// an empty string, as RFC 9051 §6.4.5 suggests for non-existent parts... we send NIL).
pub fn section(raw: &[u8], path: &[u32], what: &SectionText) -> Option<Vec<u8>> {
    // BODY[] / RFC822 is the stored octets as they are: no need to parse. Parsing
    // (which decodes every text part's charset) was 25% of the server's CPU when
    // clients download whole messages (bench/README.md, imap-fetch-body-1k).
    if path.is_empty() && matches!(what, SectionText::Whole) {
        return Some(raw.to_vec());
    }
    let Some(top) = parse(raw) else {
        // Not MIME at all: everything is body, there is no header.
        return match (path, what) {
            ([], SectionText::Whole | SectionText::Text) | ([1], SectionText::Whole) => {
                Some(raw.to_vec())
            }
            ([], _) => Some(Vec::new()),
            _ => None,
        };
    };
    if top.parts.is_empty() {
        return Some(Vec::new());
    }
    if path.is_empty() {
        let root = &top.parts[0];
        return Some(match what {
            SectionText::Whole => raw.to_vec(),
            SectionText::Header | SectionText::Mime => {
                slice(&top, root.offset_header, root.offset_body).to_vec()
            }
            SectionText::HeaderFields { names, not } => filter_header(
                slice(&top, root.offset_header, root.offset_body),
                names,
                *not,
            ),
            SectionText::Text => slice(
                &top,
                root.offset_body,
                root.offset_end.max(root.offset_body),
            )
            .to_vec(),
        });
    }
    let node = find(&top, path)?;
    let p = node.msg.parts.get(node.idx)?;
    Some(match what {
        SectionText::Whole => slice(node.msg, p.offset_body, p.offset_end).to_vec(),
        SectionText::Mime => slice(node.msg, p.offset_header, p.offset_body).to_vec(),
        SectionText::Header | SectionText::HeaderFields { .. } | SectionText::Text => {
            // Only defined for message/rfc822 parts: their embedded message.
            let PartType::Message(nested) = &p.body else {
                return None;
            };
            let root = nested.parts.first()?;
            match what {
                SectionText::Header => slice(nested, root.offset_header, root.offset_body).to_vec(),
                SectionText::HeaderFields { names, not } => filter_header(
                    slice(nested, root.offset_header, root.offset_body),
                    names,
                    *not,
                ),
                _ => slice(nested, root.offset_body, root.offset_end).to_vec(),
            }
        }
    })
}

/// Keeps (or drops, for HEADER.FIELDS.NOT) the named fields of a header block and
/// ends it with the blank line (RFC 9051 §6.4.5).
pub fn filter_header(block: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in block.split_inclusive(|c| *c == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            if keep {
                out.extend_from_slice(line);
            }
            continue;
        }
        let name = line
            .iter()
            .position(|c| *c == b':')
            .map(|i| trim(&line[..i]))
            .unwrap_or_default();
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        keep = !name.is_empty() && listed != not;
        if keep {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Decoded, lower-cased text of a message for SEARCH (RFC 9051 §6.4.4: substring
/// match, case-insensitive, after MIME decoding).
pub struct SearchDoc {
    /// (lower-case header name, lower-case decoded value) of the top-level header.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Date: header as (year, month, day) in its own time zone.
    pub sent: Option<(i32, u32, u32)>,
}

fn value_text(v: &HeaderValue<'_>, raw: &[u8]) -> String {
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::Address(a) => {
            let mut s = String::new();
            for addr in a.iter() {
                if let Some(n) = &addr.name {
                    s.push_str(n);
                    s.push(' ');
                }
                if let Some(ad) = &addr.address {
                    s.push('<');
                    s.push_str(ad);
                    s.push_str("> ");
                }
            }
            if let Address::Group(groups) = a {
                for g in groups {
                    if let Some(n) = &g.name {
                        s.push_str(n);
                        s.push(' ');
                    }
                }
            }
            s
        }
        _ => String::from_utf8_lossy(&unfold(raw)).into_owned(),
    }
}

pub fn search_doc(raw: &[u8], want_body: bool) -> SearchDoc {
    let Some(m) = parse(raw) else {
        return SearchDoc {
            headers: Vec::new(),
            body: if want_body {
                String::from_utf8_lossy(raw).to_lowercase()
            } else {
                String::new()
            },
            sent: None,
        };
    };
    let mut headers = Vec::new();
    let mut sent = None;
    if let Some(root) = m.parts.first() {
        for h in &root.headers {
            let raw_v = m
                .raw_message
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            if let HeaderValue::DateTime(d) = &h.value {
                if sent.is_none() && h.name.as_str().eq_ignore_ascii_case("Date") {
                    sent = Some((i32::from(d.year), u32::from(d.month), u32::from(d.day)));
                }
            }
            headers.push((
                h.name.as_str().to_lowercase(),
                value_text(&h.value, raw_v).to_lowercase(),
            ));
        }
    }
    let mut body = String::new();
    if want_body {
        for p in &m.parts {
            match &p.body {
                PartType::Text(t) => {
                    body.push_str(&t.to_lowercase());
                    body.push('\n');
                }
                PartType::Html(h) => {
                    body.push_str(&h.to_lowercase());
                    body.push('\n');
                }
                PartType::Message(nested) => {
                    // Nested messages count with their text (RFC 9051 is silent; Dovecot does).
                    for np in &nested.parts {
                        if let PartType::Text(t) | PartType::Html(t) = &np.body {
                            body.push_str(&t.to_lowercase());
                            body.push('\n');
                        }
                    }
                }
                _ => {}
            }
        }
    }
    SearchDoc {
        headers,
        body,
        sent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";

    fn multipart() -> Vec<u8> {
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\r\n\
To: a@example.test, \"B b\" <b@example.test>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Gr=C3=BC=C3=9Fe aus Berlin\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
From: x@example.test\r\n\
\r\n\
inner body\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--XX--\r\n"
            .to_vec()
    }

    #[test]
    fn envelope_and_structure_of_a_simple_message() {
        let s = compute_summary(SIMPLE);
        assert_eq!(
            String::from_utf8(s.envelope).unwrap(),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
\"<B27397-0100000@Blurdybloop.example>\")"
        );
        assert_eq!(
            String::from_utf8(s.body).unwrap(),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 55 1)"
        );
        assert_eq!(
            Summary::decode(&compute_summary(SIMPLE).encode()),
            Some(compute_summary(SIMPLE))
        );
    }

    #[test]
    fn whole_message_is_the_raw_octets() {
        for raw in [
            SIMPLE.to_vec(),
            multipart(),
            b"no header at all".to_vec(),
            Vec::new(),
        ] {
            assert_eq!(section(&raw, &[], &SectionText::Whole), Some(raw.clone()));
        }
    }

    #[test]
    fn multipart_structure_and_sections() {
        let raw = multipart();
        let s = String::from_utf8(compute_summary(&raw).bodystructure).unwrap();
        assert!(s.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 26 1 NIL NIL NIL NIL)"), "{s}");
        assert!(
            s.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 50 (NIL \"inner\""),
            "{s}"
        );
        assert!(
            s.contains("(\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\"))"),
            "{s}"
        );
        assert!(
            s.ends_with(" \"MIXED\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)"),
            "{s}"
        );

        let sec = |path: &[u32], w: SectionText| {
            String::from_utf8(section(&raw, path, &w).unwrap_or_else(|| b"<none>".to_vec()))
                .unwrap()
        };
        // The CRLF before a boundary belongs to the boundary (RFC 2046 §5.1.1).
        assert_eq!(sec(&[1], SectionText::Whole), "Gr=C3=BC=C3=9Fe aus Berlin");
        assert_eq!(
            sec(&[1], SectionText::Mime),
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        );
        assert_eq!(sec(&[2, 1], SectionText::Whole), "inner body");
        assert_eq!(sec(&[2], SectionText::Text), "inner body");
        assert_eq!(
            sec(&[2], SectionText::Header),
            "Subject: inner\r\nFrom: x@example.test\r\n\r\n"
        );
        assert_eq!(sec(&[3], SectionText::Whole), "JVBERi0=");
        assert_eq!(sec(&[4], SectionText::Whole), "<none>");
        assert_eq!(
            sec(
                &[],
                SectionText::HeaderFields {
                    names: vec!["subject".into(), "TO".into()],
                    not: false
                }
            ),
            "To: a@example.test, \"B b\" <b@example.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n"
        );
        let not = sec(
            &[],
            SectionText::HeaderFields {
                names: vec!["subject".into(), "to".into(), "content-type".into()],
                not: true,
            },
        );
        assert_eq!(
            not,
            "From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\r\n\r\n"
        );
        assert!(sec(&[], SectionText::Text).starts_with("preamble\r\n--XX"));
        // A single-part message has part 1 = its body.
        assert_eq!(
            String::from_utf8(section(SIMPLE, &[1], &SectionText::Whole).unwrap()).unwrap(),
            "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
        );
    }

    #[test]
    fn search_text_is_decoded() {
        let raw = multipart();
        let d = search_doc(&raw, true);
        assert!(d
            .headers
            .iter()
            .any(|(n, v)| n == "subject" && v.contains("grüße")));
        assert!(d
            .headers
            .iter()
            .any(|(n, v)| n == "from" && v.contains("jürgen")));
        assert!(d.body.contains("grüße aus berlin"), "{}", d.body);
        assert!(d.body.contains("inner body"));
    }

    #[test]
    fn non_ascii_names_are_encoded_words() {
        let s = String::from_utf8(compute_summary(&multipart()).envelope).unwrap();
        assert!(
            s.contains("((\"=?utf-8?b?SsO8cmdlbg==?=\" NIL \"j\" \"example.test\"))"),
            "{s}"
        );
        assert!(
            s.contains("((NIL NIL \"a\" \"example.test\")(\"B b\" NIL \"b\" \"example.test\"))"),
            "{s}"
        );
    }
}
