//! Message structure for FETCH and SEARCH, computed with mail-parser 0.11: ENVELOPE
//! and BODYSTRUCTURE (RFC 9051 §7.5.2), BODY[section] extraction (RFC 9051 §6.4.5),
//! and the decoded text SEARCH looks at.
//!
//! ENVELOPE/BODYSTRUCTURE are pre-encoded once per body and cached in the store's
//! opaque per-body summary (`Summary::encode`), so a header FETCH of many messages
//! never re-parses them.
//!
//! Hand-written here: the IMAP encoding of those structures, the header-field
//! filtering of HEADER.FIELDS (the end of the top-level header comes from
//! `bulwark_mime::header`, shared with SMTP and DKIM) — mail-parser parses MIME, it does not speak IMAP, and
//! BODY[], BODY[HEADER…] and BODY[TEXT] of the whole message need no MIME parse at
//! all (the bulk of what clients fetch during a sync).
//!
//! Safety: nothing here parses a message deeper than `bulwark_mime::MAX_NESTING` or
//! with more than `bulwark_mime::MAX_PARTS_CEILING` parts (a whole-message parse goes
//! through `bulwark_mime::CheckedMessage`, made by the linear scan; a message beyond
//! it is described as one opaque text part, with its envelope from the header section
//! alone), parsed messages are taken apart iteratively when dropped (`Parsed`:
//! mail-parser's own drop recurses once per encapsulation level), and
//! `write_structure` stops recursing at `MAX_STRUCTURE_DEPTH`.

use std::borrow::Cow;

use base64::Engine;
use bulwark_mime::MAX_NESTING;
use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, PartType};

use crate::resp::push_string;

/// The cached, pre-encoded per-body data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub envelope: Vec<u8>,
    pub bodystructure: Vec<u8>,
    pub body: Vec<u8>,
}

/// Bumped when what the summary holds changes, so cached ones are recomputed
/// (2: group comments are not addresses, obs-route goes to the adl field).
const SUMMARY_VERSION: u8 = 2;

impl Summary {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![SUMMARY_VERSION];
        for f in [&self.envelope, &self.bodystructure, &self.body] {
            // Fields over 4 GiB cannot occur (they are rendered from one message); were one
            // to, u32::MAX makes `decode` refuse the summary rather than misread it.
            let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// None for an unknown version or a damaged value (it is then recomputed).
    pub(crate) fn decode(b: &[u8]) -> Option<Summary> {
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

pub(crate) fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::Comments)
}

/// Nesting deeper than this is not described (a leaf stands for the rest); the scan
/// before parsing keeps real structures within `MAX_NESTING`, this bounds our own
/// recursion should mail-parser ever see more levels than the scan.
pub(crate) const MAX_STRUCTURE_DEPTH: usize = MAX_NESTING + 16;

/// A message parsed by mail-parser, dropped without recursion
/// (`bulwark_mime::ParsedMessage`).
pub(crate) type Parsed<'x> = bulwark_mime::ParsedMessage<'x>;

/// What a stored message may have for mail-parser to see it: the intake limits'
/// ceilings. A message beyond them (stored before the limits, or under a higher
/// `[smtp] max_mime_parts` than the ceiling allows) is described as one part, so
/// BODYSTRUCTURE and the parse behind it stay bounded.
const STORED_LIMITS: bulwark_mime::Limits = bulwark_mime::Limits {
    depth: MAX_NESTING,
    parts: bulwark_mime::MAX_PARTS_CEILING,
};

/// Whether the message may be given to mail-parser at all.
pub(crate) fn parseable(raw: &[u8]) -> bool {
    bulwark_mime::measure(raw, STORED_LIMITS).is_ok()
}

/// Parses a message, unless it nests MIME parts deeper than `MAX_NESTING` or has more
/// than `MAX_PARTS_CEILING` parts (such messages are refused at APPEND and SMTP DATA,
/// but may predate that) or mail-parser finds nothing in it.
pub(crate) fn parse(raw: &[u8]) -> Option<Parsed<'_>> {
    let Ok(checked) = bulwark_mime::CheckedMessage::check(raw, STORED_LIMITS) else {
        metrics::counter!("bulwark_imap_mime_too_deep_total").increment(1);
        return None;
    };
    checked.parse(&parser())
}

/// Where the top-level header ends: just after the first empty line (RFC 5322 §2.1),
/// so the header includes it, as BODY[HEADER] must (RFC 9051 §6.4.5). A message
/// without an empty line is all header. The one boundary every component uses
/// (`bulwark_mime::header`), so IMAP shows the fields the SMTP checks and the DKIM
/// signer saw.
pub(crate) fn header_end(raw: &[u8]) -> usize {
    bulwark_mime::header::header_end(raw)
}

/// The summary of a message we do not parse: the envelope from its header section
/// alone (parsing a header section costs what its octets cost) and one plain-text
/// part, the body after the header (what BODY[1] and BODY[TEXT] then return).
fn opaque_summary(raw: &[u8]) -> Summary {
    let h = header_end(raw);
    let body = &raw[h..];
    let basic = format!(
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {} {})",
        body.len(),
        count_lines(body)
    );
    let mut envelope = Vec::new();
    match bulwark_mime::parse_header_section(&parser(), &raw[..h]) {
        Some(m) if !m.parts.is_empty() => write_envelope(&m, &mut envelope),
        _ => envelope.extend_from_slice(EMPTY_ENVELOPE),
    }
    Summary {
        envelope,
        bodystructure: format!("{} NIL NIL NIL NIL)", &basic[..basic.len() - 1]).into_bytes(),
        body: basic.into_bytes(),
    }
}

pub(crate) fn compute_summary(raw: &[u8]) -> Summary {
    match parse(raw) {
        Some(m) if !m.parts.is_empty() => {
            let mut envelope = Vec::new();
            write_envelope(&m, &mut envelope);
            let mut bodystructure = Vec::new();
            write_structure(&m, 0, true, 0, &mut bodystructure);
            let mut body = Vec::new();
            write_structure(&m, 0, false, 0, &mut body);
            Summary {
                envelope,
                bodystructure,
                body,
            }
        }
        _ => opaque_summary(raw),
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

/// One address (RFC 9051 §7.5.2 ENVELOPE). NIL host or NIL mailbox would mark a group
/// start or end, so an address without a domain (`root`) or an entry with only a
/// display name gets empty strings instead.
fn write_addr(out: &mut Vec<u8>, name: Option<&str>, address: Option<&str>) {
    out.push(b'(');
    nstring(out, name.map(encode_word).as_deref());
    out.push(b' ');
    let (mut local, host) = match address {
        Some(a) => a.rsplit_once('@').unwrap_or((a, "")),
        None => ("", ""),
    };
    // RFC 5322 §4.4 obs-route (`<@route:user@domain>`): mail-parser keeps the route
    // in the address; ENVELOPE has a field of its own for it (the "adl").
    match local.strip_prefix('@').and_then(|r| r.split_once(':')) {
        Some((route, mailbox)) if !route.is_empty() => {
            push_string(out, format!("@{route}").as_bytes());
            local = mailbox;
        }
        _ => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    push_string(out, local.as_bytes());
    out.push(b' ');
    push_string(out, host.as_bytes());
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
                        // RFC 5322 §3.4: a group's members are addresses; what
                        // mail-parser returns without one (`group2: (foo) ;`) is a
                        // comment, not a member.
                        for addr in g.addresses.iter().filter(|a| a.address.is_some()) {
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
pub(crate) fn write_envelope(m: &Message<'_>, out: &mut Vec<u8>) {
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

/// Content type and subtype (upper case) as a part's header declares them.
fn declared_type(ct: Option<&mail_parser::ContentType<'_>>) -> Option<(String, String)> {
    let c = ct?;
    let t = c.c_type.to_uppercase();
    let st = c.c_subtype.as_deref().unwrap_or("").to_uppercase();
    Some((t, st))
}

/// An empty text body, for a message/rfc822 part whose content is empty.
const EMPTY_TEXT: &[u8] = b"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0)";
const EMPTY_ENVELOPE: &[u8] = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";

/// BODYSTRUCTURE (`ext` = true) or BODY of one part of `m` (RFC 9051 §7.5.2).
///
/// The IMAP type follows what mail-parser made of the part, not only its header: a
/// part parsed as a message is MESSAGE/RFC822 even without a Content-Type (the default
/// inside multipart/digest, RFC 2046 §5.1.5); a multipart header on a part that is
/// not one (no boundary) describes a TEXT/PLAIN leaf; a message/rfc822 header on a
/// part mail-parser could not open describes APPLICATION/OCTET-STREAM.
pub(crate) fn write_structure(
    m: &Message<'_>,
    part: usize,
    ext: bool,
    depth: usize,
    out: &mut Vec<u8>,
) {
    let Some(p) = m.parts.get(part) else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let ct = content_type(m, part);
    let declared = declared_type(ct);
    let body = m
        .raw_message
        .get(p.offset_body as usize..p.offset_end as usize)
        .unwrap_or_default();
    if depth >= MAX_STRUCTURE_DEPTH {
        // Not described further: an opaque leaf.
        out.extend_from_slice(
            format!(
                "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" {}",
                body.len()
            )
            .as_bytes(),
        );
        if ext {
            out.extend_from_slice(b" NIL NIL NIL NIL");
        }
        out.push(b')');
        return;
    }
    if let PartType::Multipart(children) = &p.body {
        out.push(b'(');
        if children.is_empty() {
            // RFC 9051 requires at least one part; describe an empty text part.
            out.extend_from_slice(EMPTY_TEXT);
        }
        for &c in children {
            write_structure(m, c as usize, ext, depth + 1, out);
        }
        out.push(b' ');
        let subtype = match &declared {
            Some((t, st)) if t == "MULTIPART" && !st.is_empty() => st.clone(),
            _ => "MIXED".to_string(),
        };
        push_string(out, subtype.as_bytes());
        if ext {
            out.push(b' ');
            write_params(out, ct, &[]);
            write_ext_tail(m, part, out);
        }
        out.push(b')');
        return;
    }
    let is_message = matches!(p.body, PartType::Message(_));
    let (ctype, subtype) = leaf_type(declared, is_message);
    // Parameters of a header that no longer describes the part are left out.
    let own_params = match ct {
        Some(c) => {
            let t = c.c_type.to_uppercase();
            t == ctype || (t == "MESSAGE" && ctype == "APPLICATION")
        }
        None => false,
    };
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
    write_params(out, if own_params { ct } else { None }, default_params);
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
    if let PartType::Message(nested) = &p.body {
        // body-type-msg: envelope, body, lines — all three are required.
        out.push(b' ');
        if nested.parts.is_empty() {
            out.extend_from_slice(EMPTY_ENVELOPE);
            out.push(b' ');
            out.extend_from_slice(EMPTY_TEXT);
        } else {
            write_envelope(nested, out);
            out.push(b' ');
            write_structure(nested, 0, ext, depth + 1, out);
        }
        out.push(b' ');
        out.extend_from_slice(count_lines(body).to_string().as_bytes());
    } else if ctype == "TEXT" {
        out.push(b' ');
        out.extend_from_slice(count_lines(body).to_string().as_bytes());
    }
    if ext {
        out.push(b' ');
        nstring(out, raw_header(m, part, "Content-MD5").as_deref());
        write_ext_tail(m, part, out);
    }
    out.push(b')');
}

/// The type and subtype BODYSTRUCTURE gives a leaf part: what mail-parser made of
/// it wins over a header that does not describe it (see `write_structure`).
fn leaf_type(declared: Option<(String, String)>, is_message: bool) -> (String, String) {
    match declared {
        _ if is_message => match &declared {
            Some((t, st)) if t == "MESSAGE" && !st.is_empty() => {
                ("MESSAGE".to_string(), st.clone())
            }
            _ => ("MESSAGE".to_string(), "RFC822".to_string()),
        },
        Some((t, _)) if t == "MULTIPART" => ("TEXT".to_string(), "PLAIN".to_string()),
        Some((t, st)) if t == "MESSAGE" && (st == "RFC822" || st == "GLOBAL") => {
            ("APPLICATION".to_string(), "OCTET-STREAM".to_string())
        }
        Some((t, st)) if !t.is_empty() => {
            let st = if !st.is_empty() {
                st
            } else if t == "TEXT" {
                "PLAIN".to_string()
            } else {
                "OCTET-STREAM".to_string()
            };
            (t, st)
        }
        _ => ("TEXT".to_string(), "PLAIN".to_string()),
    }
}

/// What a BODY[...] section asks for, after the part path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SectionText {
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

/// The octets of a section; None when the part does not exist (sent as NIL).
///
/// Sections of the whole message (BODY[], BODY[HEADER], BODY[HEADER.FIELDS …],
/// BODY[TEXT]) are cut from the raw octets without parsing: the header ends at the
/// first empty line. Part numbers need the MIME structure; a message that is not
/// parsed (too deep, or nothing mail-parser recognises) has one part, its body.
/// (Parsing, which decodes every text part's charset, was 25% of the server's CPU
/// when clients download whole messages: bench/README.md, imap-fetch-body-1k.)
pub(crate) fn section<'r>(
    raw: &'r [u8],
    path: &[u32],
    what: &SectionText,
) -> Option<Cow<'r, [u8]>> {
    if path.is_empty() {
        let h = header_end(raw);
        return Some(match what {
            SectionText::Whole => Cow::Borrowed(raw),
            SectionText::Header | SectionText::Mime => Cow::Borrowed(&raw[..h]),
            SectionText::HeaderFields { names, not } => {
                Cow::Owned(filter_header(&raw[..h], names, *not))
            }
            SectionText::Text => Cow::Borrowed(&raw[h..]),
        });
    }
    let top = match parse(raw) {
        Some(t) if !t.parts.is_empty() => t,
        _ => {
            let h = header_end(raw);
            return match (path, what) {
                ([1], SectionText::Whole) => Some(Cow::Borrowed(&raw[h..])),
                ([1], SectionText::Mime) => Some(Cow::Borrowed(&b""[..])),
                _ => None,
            };
        }
    };
    let node = find(&top, path)?;
    let p = node.msg.parts.get(node.idx)?;
    Some(Cow::Owned(match what {
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
                _ => {
                    // RFC 3501 §6.4.5: TEXT is the embedded message's body, up to the
                    // end of the part that holds it. A multipart root ends at its closing
                    // boundary in mail-parser, which would drop the epilogue; the
                    // enclosing part's end keeps it. (A nested message that had to be
                    // decoded first has a buffer of its own, where the root ends at
                    // that buffer's end already.)
                    let same_buffer = std::ptr::eq(
                        nested.raw_message.as_ref().as_ptr(),
                        node.msg.raw_message.as_ref().as_ptr(),
                    );
                    let end = if same_buffer {
                        p.offset_end
                    } else {
                        root.offset_end
                    };
                    slice(nested, root.offset_body, end).to_vec()
                }
            }
        }
    }))
}

/// Keeps (or drops, for HEADER.FIELDS.NOT) the named fields of a header block and
/// ends it with the blank line (RFC 9051 §6.4.5).
pub(crate) fn filter_header(block: &[u8], names: &[String], not: bool) -> Vec<u8> {
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
pub(crate) struct SearchDoc {
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

/// The top-level header fields as (lower-case name, unfolded raw value), for a
/// message that is not parsed.
fn raw_fields(header: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in header.split(|c| *c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if let Some(last) = out.last_mut() {
                last.1
                    .push_str(&String::from_utf8_lossy(line).to_lowercase());
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|c| *c == b':') {
            out.push((
                String::from_utf8_lossy(trim(&line[..colon])).to_lowercase(),
                String::from_utf8_lossy(&line[colon + 1..]).to_lowercase(),
            ));
        }
    }
    out
}

pub(crate) fn search_doc(raw: &[u8], want_body: bool) -> SearchDoc {
    let Some(m) = parse(raw) else {
        // Not parsed (too deep, or not MIME): raw header fields and body text.
        let h = header_end(raw);
        return SearchDoc {
            headers: raw_fields(&raw[..h]),
            body: if want_body {
                String::from_utf8_lossy(&raw[h..]).to_lowercase()
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

/// Octets that every decoder mail-parser may apply leaves as they are: ASCII
/// without NUL, and no transfer encoding (base64, quoted-printable, uuencode…) or
/// charset (UTF-7/16/32, ISO-2022, HZ) that turns ASCII into other text. Judged by
/// words anywhere in the message, so a false "no" only costs the full decode.
fn decodes_to_itself(raw: &[u8]) -> bool {
    if !raw.iter().all(|b| (1..0x80).contains(b)) {
        return false;
    }
    const ENCODED: &[&[u8]] = &[
        b"base64",
        b"quoted-printable",
        b"uue",
        b"binhex",
        b"yenc",
        b"utf-7",
        b"utf7",
        b"utf-16",
        b"utf16",
        b"utf-32",
        b"utf32",
        b"ucs",
        b"unicode",
        b"2022",
        b"hz",
    ];
    let lower = raw.to_ascii_lowercase();
    !ENCODED
        .iter()
        .any(|w| memchr::memmem::find(&lower, w).is_some())
}

/// `search_doc` for text keys with these (lower-cased) needles, skipping the body's
/// decode when it cannot matter: if the message decodes to itself and no needle
/// occurs anywhere in its octets (ASCII case-insensitively), no needle occurs in its
/// decoded text either (every text part is a piece of the octets), so the body is
/// left empty — evaluating BODY/TEXT against it gives the same answers — and only
/// the header is parsed. (bench/README.md: decoding was most of SEARCH TEXT's CPU
/// once bodies were read in batches.)
pub(crate) fn search_doc_for(raw: &[u8], want_body: bool, needles: &[&str]) -> SearchDoc {
    let h = header_end(raw);
    // A needle across a line break could span two parts (joined by "\n").
    let skippable = want_body
        && h < raw.len()
        && !needles.is_empty()
        && needles
            .iter()
            .all(|n| !n.is_empty() && !n.contains(['\r', '\n']))
        && decodes_to_itself(raw)
        && parseable(raw);
    if !skippable {
        return search_doc(raw, want_body);
    }
    let lower = raw.to_ascii_lowercase();
    if needles
        .iter()
        .any(|n| memchr::memmem::find(&lower, n.as_bytes()).is_some())
    {
        return search_doc(raw, want_body);
    }
    // mail-parser reads the header the same way whatever follows it.
    search_doc(&raw[..h], false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn leaf_types_follow_the_parse_over_the_header() {
        let t = |d: Option<(&str, &str)>, msg: bool| {
            let (a, b) = leaf_type(d.map(|(a, b)| (a.to_string(), b.to_string())), msg);
            format!("{a}/{b}")
        };
        assert_eq!(t(None, false), "TEXT/PLAIN");
        assert_eq!(t(None, true), "MESSAGE/RFC822");
        assert_eq!(t(Some(("MESSAGE", "GLOBAL")), true), "MESSAGE/GLOBAL");
        assert_eq!(
            t(Some(("MESSAGE", "RFC822")), false),
            "APPLICATION/OCTET-STREAM"
        );
        assert_eq!(t(Some(("MULTIPART", "MIXED")), false), "TEXT/PLAIN");
        assert_eq!(t(Some(("TEXT", "")), false), "TEXT/PLAIN");
        assert_eq!(t(Some(("IMAGE", "")), false), "IMAGE/OCTET-STREAM");
        assert_eq!(t(Some(("IMAGE", "PNG")), true), "MESSAGE/RFC822");
    }

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
            assert_eq!(
                section(&raw, &[], &SectionText::Whole).as_deref(),
                Some(&raw[..])
            );
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
            String::from_utf8(
                section(&raw, path, &w)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|| b"<none>".to_vec()),
            )
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
            String::from_utf8(
                section(SIMPLE, &[1], &SectionText::Whole)
                    .unwrap()
                    .into_owned()
            )
            .unwrap(),
            "Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
        );
    }

    /// imaptest `fetch-body-message-rfc822-mime`: BODY[1.TEXT] of a message/rfc822
    /// part whose message is a multipart runs to the end of the part, epilogue
    /// included (168 octets, not the 154 up to the closing boundary).
    #[test]
    fn text_of_an_embedded_multipart_keeps_its_epilogue() {
        let inner = "prologue\r\n\r\n--foo \r\n\r\nFrom: m1@example.com\r\nSubject: m1\r\n\r\nm1 body\r\n\r\n\
                     --foo \r\nX-Mime: m2 header\r\n\r\nFrom: m2@example.com\r\nSubject: m2\r\n\r\nm2 body\r\n\r\n\
                     --foo--\r\n\r\nepilogue\r\n";
        let raw = format!(
            "From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n\
             From: sub@domain.org\r\nSubject: submsg\r\n\
             Content-Type: multipart/digest; boundary=\"foo\"\r\n\r\n{inner}"
        );
        let text = section(raw.as_bytes(), &[1], &SectionText::Text).unwrap();
        assert_eq!(String::from_utf8_lossy(&text), inner);
        assert_eq!(text.len(), 168);
        // The part itself (header + text) ends at the same place.
        let whole = section(raw.as_bytes(), &[1], &SectionText::Whole).unwrap();
        assert!(whole.ends_with(b"epilogue\r\n"));
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

    /// Parses `* 1 FETCH (BODYSTRUCTURE … BODY … ENVELOPE …)` with imap-codec's
    /// response parser — an implementation independent of our encoder, strict about
    /// the RFC 9051 grammar (e.g. a TEXT part must have lines, a MESSAGE/RFC822 part an
    /// envelope, body and lines).
    fn decode_items(s: &Summary) -> Vec<imap_codec::imap_types::fetch::MessageDataItem<'static>> {
        use imap_codec::decode::Decoder;
        use imap_codec::imap_types::response::{Data, Response};
        use imap_codec::imap_types::IntoStatic;
        let mut line = b"* 1 FETCH (BODYSTRUCTURE ".to_vec();
        line.extend_from_slice(&s.bodystructure);
        line.extend_from_slice(b" BODY ");
        line.extend_from_slice(&s.body);
        line.extend_from_slice(b" ENVELOPE ");
        line.extend_from_slice(&s.envelope);
        line.extend_from_slice(b")\r\n");
        match imap_codec::ResponseCodec::default().decode(&line) {
            Ok((&[], Response::Data(Data::Fetch { items, .. }))) => items
                .into_inner()
                .into_iter()
                .map(|i| i.into_static())
                .collect(),
            other => panic!(
                "not valid IMAP: {other:?}\n{}",
                String::from_utf8_lossy(&line)
            ),
        }
    }

    fn structure(s: &Summary) -> imap_codec::imap_types::body::BodyStructure<'static> {
        use imap_codec::imap_types::fetch::MessageDataItem;
        decode_items(s)
            .into_iter()
            .find_map(|i| match i {
                MessageDataItem::BodyStructure(b) => Some(b),
                _ => None,
            })
            .unwrap()
    }

    fn envelope(s: &Summary) -> imap_codec::imap_types::envelope::Envelope<'static> {
        use imap_codec::imap_types::fetch::MessageDataItem;
        decode_items(s)
            .into_iter()
            .find_map(|i| match i {
                MessageDataItem::Envelope(e) => Some(e),
                _ => None,
            })
            .unwrap()
    }

    /// (type, subtype) of each part in order, "MULTIPART/x" for multiparts.
    fn shape(b: &imap_codec::imap_types::body::BodyStructure<'_>, out: &mut Vec<String>) {
        use imap_codec::imap_types::body::{BodyStructure, SpecificFields};
        let s = |x: &imap_codec::imap_types::core::IString<'_>| {
            String::from_utf8_lossy(x.as_ref()).to_uppercase()
        };
        match b {
            BodyStructure::Single { body, .. } => match &body.specific {
                SpecificFields::Basic { r#type, subtype } => {
                    out.push(format!("{}/{}", s(r#type), s(subtype)))
                }
                SpecificFields::Text { subtype, .. } => out.push(format!("TEXT/{}", s(subtype))),
                SpecificFields::Message { body_structure, .. } => {
                    out.push("MESSAGE/RFC822".into());
                    shape(body_structure, out);
                }
            },
            BodyStructure::Multi {
                bodies, subtype, ..
            } => {
                out.push(format!("MULTIPART/{}", s(subtype)));
                for b in bodies.as_ref() {
                    shape(b, out);
                }
            }
        }
    }

    fn shape_of(raw: &[u8]) -> Vec<String> {
        let mut v = Vec::new();
        shape(&structure(&compute_summary(raw)), &mut v);
        v
    }

    #[test]
    fn structures_follow_what_was_parsed() {
        // multipart/digest: a part without Content-Type is a message (RFC 2046 §5.1.5).
        let digest = b"Subject: d\r\nContent-Type: multipart/digest; boundary=\"B\"\r\n\r\n--B\r\n\r\nSubject: inner1\r\nFrom: a@b.example\r\n\r\nbody1\r\n--B\r\nContent-Type: text/plain\r\n\r\nplain\r\n--B--\r\n";
        assert_eq!(
            shape_of(digest),
            [
                "MULTIPART/DIGEST",
                "MESSAGE/RFC822",
                "TEXT/PLAIN",
                "TEXT/PLAIN"
            ]
        );
        // A multipart header without a boundary is not a multipart.
        let nob = b"Subject: n\r\nContent-Type: multipart/mixed\r\n\r\nhello\r\n";
        assert_eq!(shape_of(nob), ["TEXT/PLAIN"]);
        // message/rfc822 parts: empty, unparseable (encoded emptiness), nested.
        let broken = b"Subject: r\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n--B\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n--B\r\nContent-Type: message/rfc822\r\n\r\nSubject: ok\r\nContent-Type: multipart/alternative; boundary=C\r\n\r\n--C\r\nContent-Type: text/plain\r\n\r\nx\r\n--C\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--C--\r\n--B--\r\n";
        let sh = shape_of(broken);
        assert_eq!(sh[0], "MULTIPART/MIXED", "{sh:?}");
        assert!(
            sh.ends_with(&[
                "MESSAGE/RFC822".to_string(),
                "MULTIPART/ALTERNATIVE".to_string(),
                "TEXT/PLAIN".to_string(),
                "TEXT/HTML".to_string()
            ]),
            "{sh:?}"
        );
        // Every message/rfc822 part carries envelope, body and lines, or is opaque.
        assert!(
            sh.iter().all(|t| t == "MULTIPART/MIXED"
                || t == "MESSAGE/RFC822"
                || t.starts_with("TEXT/")
                || t == "APPLICATION/OCTET-STREAM"
                || t == "MULTIPART/ALTERNATIVE"),
            "{sh:?}"
        );
        // The test messages of this module, and unparseable input.
        for raw in [SIMPLE, &multipart()[..], b"", b"just text, no header\r\n"] {
            structure(&compute_summary(raw));
        }
    }

    /// imaptest `fetch-envelope`: a comment in an empty group is not a member
    /// (RFC 5322 §3.4), and an obs-route goes to the adl field (RFC 3501 §7.4.2).
    #[test]
    fn envelope_groups_with_comments_and_routes() {
        let raw = b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\n\
            To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: group:;, group2: (foo) ;\r\n\r\nbody\r\n";
        let env = String::from_utf8(compute_summary(raw).envelope).unwrap();
        assert!(
            env.contains("((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL))"),
            "{env}"
        );
        assert!(
            env.contains("((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL))"),
            "{env}"
        );
        let raw = b"From: <@route:user@domain>\r\n\r\nbody\r\n";
        let env = String::from_utf8(compute_summary(raw).envelope).unwrap();
        assert!(
            env.contains("((NIL \"@route\" \"user\" \"domain\"))"),
            "{env}"
        );
        // A summary cached by an older version is recomputed, not served.
        let mut old = compute_summary(raw).encode();
        old[0] = 1;
        assert!(Summary::decode(&old).is_none());
    }

    #[test]
    fn envelope_addresses_are_never_mistaken_for_groups() {
        let raw = b"From: root\r\nTo: John Doe, <x@y.example>, undisclosed-recipients:;\r\nCc: \"Only Name\", team: a@b.example, c@d.example;\r\nSubject: s\r\n\r\nb\r\n";
        let e = envelope(&compute_summary(raw));
        let is_nil = |n: &imap_codec::imap_types::core::NString<'_>| n.0.is_none();
        for (field, list) in [("from", &e.from), ("to", &e.to), ("cc", &e.cc)] {
            // Group start: NIL host and a mailbox; group end: NIL mailbox and NIL host.
            let mut open = 0i32;
            let mut groups = 0;
            for a in list {
                match (is_nil(&a.mailbox), is_nil(&a.host)) {
                    (false, true) => {
                        open += 1;
                        groups += 1;
                    }
                    (true, true) => open -= 1,
                    _ => {}
                }
                assert!(
                    (0..=1).contains(&open),
                    "{field}: unbalanced groups {list:?}"
                );
            }
            assert_eq!(open, 0, "{field}: {list:?}");
            let want = if field == "from" { 0 } else { 1 };
            assert_eq!(groups, want, "{field}: {list:?}");
        }
        assert_eq!(e.from.len(), 1);
        assert_eq!(e.to.len(), 4, "John Doe, x@y, group start, group end");
        assert_eq!(
            e.cc.len(),
            5,
            "Only Name, group start, 2 members, group end"
        );
    }

    pub(crate) fn nested_multipart(levels: usize) -> Vec<u8> {
        let mut m = b"From: a@example.test\r\nSubject: deep\r\n".to_vec();
        for i in 0..levels {
            m.extend(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                    .into_bytes(),
            );
        }
        m.extend(b"Content-Type: text/plain\r\n\r\nhello deep world\r\n");
        for i in (0..levels).rev() {
            m.extend(format!("--b{i}--\r\n").into_bytes());
        }
        m
    }

    pub(crate) fn nested_messages(levels: usize) -> Vec<u8> {
        let mut m =
            b"From: a@example.test\r\nSubject: deep\r\nContent-Type: message/rfc822\r\n\r\n"
                .to_vec();
        for _ in 1..levels {
            m.extend(b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
        }
        m.extend(b"Subject: end\r\n\r\nhello deep world\r\n");
        m
    }

    /// Runs `f` on a thread with a small stack, so a regression overflows here
    /// (and aborts the test binary) rather than passing by luck.
    fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn deep_messages_are_described_without_parsing() {
        on_small_stack(|| {
            for raw in [nested_multipart(20_000), nested_messages(40_000)] {
                assert!(!parseable(&raw));
                let s = compute_summary(&raw);
                // The envelope comes from the header section alone.
                let env = String::from_utf8(s.envelope.clone()).unwrap();
                assert!(
                    env.starts_with("(NIL \"deep\" ((NIL NIL \"a\" \"example.test\"))"),
                    "{env}"
                );
                structure(&s);
                let h = header_end(&raw);
                assert_eq!(
                    section(&raw, &[], &SectionText::Header).unwrap().as_ref(),
                    &raw[..h]
                );
                assert_eq!(
                    section(&raw, &[], &SectionText::Whole).unwrap().as_ref(),
                    &raw[..]
                );
                assert_eq!(
                    section(&raw, &[1], &SectionText::Whole).unwrap().as_ref(),
                    &raw[h..]
                );
                assert!(section(&raw, &[1, 1], &SectionText::Whole).is_none());
                let d = search_doc(&raw, true);
                assert!(d.body.contains("hello deep world"));
                assert!(d
                    .headers
                    .iter()
                    .any(|(n, v)| n == "subject" && v.contains("deep")));
            }
        });
    }

    #[test]
    fn dropping_a_deeply_nested_parse_does_not_recurse() {
        // Parsed directly (no depth check): mail-parser builds 40,000 nested messages;
        // `bulwark_mime::dismantle` (what `Parsed` drops with) must take them apart
        // without recursing.
        on_small_stack(|| {
            let raw = nested_messages(40_000);
            let m = parser().parse(&raw[..]).unwrap();
            assert!(!m.parts.is_empty());
            bulwark_mime::dismantle(m);
            // And the structure writer stops at its depth limit.
            let m = parser().parse(&raw[..]).unwrap();
            let mut out = Vec::new();
            write_structure(&m, 0, true, 0, &mut out);
            assert!(out.windows(14).any(|w| w == b"\"OCTET-STREAM\""));
            bulwark_mime::dismantle(m);
        });
    }

    /// The depth mail-parser actually builds (each multipart and each encapsulated
    /// message adds one), measured without recursion.
    fn parsed_depth(m: &Message<'_>) -> usize {
        let mut deepest = 0;
        let mut todo: Vec<(&Message<'_>, usize, usize)> = vec![(m, 0, 0)];
        while let Some((msg, idx, depth)) = todo.pop() {
            deepest = deepest.max(depth);
            let Some(p) = msg.parts.get(idx) else {
                continue;
            };
            match &p.body {
                PartType::Multipart(children) => {
                    for &c in children {
                        todo.push((msg, c as usize, depth + 1));
                    }
                }
                PartType::Message(inner) => todo.push((inner, 0, depth + 1)),
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn the_depth_scan_never_sees_less_than_mail_parser_builds() {
        // Constructions where a scanner that follows RFC 2046 alone undercounts.
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let chain = |n: usize, level: &str| {
            let mut m = Vec::new();
            for _ in 0..n {
                m.extend_from_slice(level.as_bytes());
            }
            m.extend_from_slice(b"Subject: end\r\n\r\nx\r\n");
            m
        };
        let mut cases: Vec<Vec<u8>> = vec![
            chain(6, "Content-Type: message/rfc822 (c)\r\n\r\n"),
            chain(6, "Content-Type: \"message/rfc822\"\r\n\r\n"),
            chain(6, "\rContent-Type: message/rfc822\r\n\r\n"),
            chain(
                6,
                "Content-Type: text/plain\r\nContent-Type: message/rfc822\r\n\r\n",
            ),
            nested_multipart(6),
            nested_messages(6),
        ];
        let mut digest = Vec::new();
        for i in 0..6 {
            digest.extend(
                format!("Content-Type: multipart/digest; boundary=d{i}\r\n\r\n--d{i}\r\n\r\n")
                    .into_bytes(),
            );
        }
        digest.extend(b"Subject: end\r\n\r\nx\r\n");
        cases.push(digest);
        let mut anywhere = Vec::new();
        for i in 0..6 {
            anywhere.extend(format!("Content-Type: multipart/mixed; boundary = b{i}\r\n\r\njunk--b{i}\r\nContent-Type: message/rfc822\r\n\r\n").into_bytes());
        }
        anywhere.extend(b"Subject: end\r\n\r\nx\r\n");
        cases.push(anywhere);
        let inner = nested_messages(6);
        cases.push(
            format!(
                "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(&inner)
            )
            .into_bytes(),
        );
        let mut pops = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n".to_vec();
        for _ in 0..4 {
            pops.extend(b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nx\r\n--B\r\n");
        }
        cases.push(pops);
        for raw in cases {
            let m = parser().parse(&raw[..]).unwrap();
            let actual = parsed_depth(&m);
            let scanned = bulwark_mime::nesting_depth(&raw, MAX_NESTING).unwrap();
            assert!(
                actual >= 3,
                "the case should nest: {actual} {}",
                String::from_utf8_lossy(&raw)
            );
            assert!(
                scanned >= actual,
                "scan {scanned} < parsed {actual}: {}",
                String::from_utf8_lossy(&raw)
            );
        }
    }

    /// `search_doc_for` answers every BODY/TEXT needle as `search_doc` does, and
    /// skips the decode where it may.
    #[test]
    fn search_doc_for_skips_only_what_cannot_match() {
        let messages: Vec<Vec<u8>> = vec![
            SIMPLE.to_vec(),
            multipart(),
            b"Subject: plain\r\nFrom: \"Doe, J\" <j@x.test>\r\n\r\nthe quick brown fox\r\n".to_vec(),
            b"Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\ndGhlIGhpZGRlbiB3b3Jk\r\n"
                .to_vec(),
            b"Subject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nhid=\r\nden word\r\n"
                .to_vec(),
            b"Subject: u7\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n+AGgAaQBk-den\r\n".to_vec(),
            b"Subject: =?utf-8?q?hidden?=\r\n\r\nbody\r\n".to_vec(),
            b"From: a@x.test\r\nnot a header line\r\nSubject: hidden\r\n\r\nbody\r\n".to_vec(),
            b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhidden deep\r\n"
                .to_vec(),
            b"Subject: latin\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9 hidden\r\n"
                .to_vec(),
            b"no header at all".to_vec(),
            b"Subject: only a header\r\n".to_vec(),
            b"\r\nbody after an empty header\r\n".to_vec(),
            nested_multipart(150),
        ];
        let needles = [
            "hidden", "quick", "fox\r\nx", "zzz", "subject", "boundary", "doe, j", "café", "hid",
            "word", "inner", "body",
        ];
        let mut skipped = 0;
        for raw in &messages {
            let full = search_doc(raw, true);
            for n in needles {
                let fast = search_doc_for(raw, true, &[n]);
                assert_eq!(
                    fast.headers,
                    full.headers,
                    "{:?}",
                    String::from_utf8_lossy(raw)
                );
                assert_eq!(fast.sent, full.sent);
                assert_eq!(
                    fast.body.contains(n),
                    full.body.contains(n),
                    "{n:?} in {:?}",
                    String::from_utf8_lossy(raw)
                );
                if fast.body.is_empty() && !full.body.is_empty() {
                    skipped += 1;
                }
            }
        }
        assert!(skipped >= 10, "the fast path is taken ({skipped})");
        // Several needles: the body is kept as soon as one of them may occur.
        let raw = &messages[2];
        assert!(search_doc_for(raw, true, &["zzz", "fox"])
            .body
            .contains("fox"));
        assert!(search_doc_for(raw, true, &["zzz", "yyy"]).body.is_empty());
        assert!(!decodes_to_itself(&messages[3]) && !decodes_to_itself(&messages[5]));
        assert!(decodes_to_itself(&messages[2]));
    }
}
