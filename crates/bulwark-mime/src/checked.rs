//! "Nothing parses an unchecked message", as a type.
//!
//! [`CheckedMessage`] is the only way to a whole-message mail-parser parse in the
//! workspace: it is made by the linear structure scan ([`crate::measure`]) and the
//! header boundary ([`crate::header::scan`]), and it hands out the parsed message as a
//! [`ParsedMessage`], which takes nested messages apart without recursion when it is
//! dropped. The header facts every intake rule needs (From/Sender addresses,
//! Date/Message-ID presence, the Received count) are read here once
//! ([`HeaderFacts`]), from the header section up to the one boundary.
//!
//! Parsing the header section alone ([`parse_header_section`]) needs no scan: no MIME
//! structure is built from it.

use std::borrow::Cow;

use mail_parser::{Address, HeaderName, HeaderValue, Message, MessageParser, PartType};

use crate::header::{self, HeaderScan};
use crate::{Limits, Shape, StructureError};

/// A raw message that passed the structure scan under some [`Limits`]: safe to give
/// to a MIME parser. It also knows where its header section ends and whether every
/// line of that section is a field ([`HeaderScan`]); refusing a section that is not
/// is the caller's decision (SMTP intake does, stored mail is read as it is).
#[derive(Debug, Clone)]
pub struct CheckedMessage<'a> {
    raw: &'a [u8],
    shape: Shape,
    scan: HeaderScan,
}

impl<'a> CheckedMessage<'a> {
    /// Scans `raw` (nesting depth and part count first, then the header section).
    /// The error says which limit the message is beyond.
    pub fn check(raw: &'a [u8], limits: Limits) -> Result<CheckedMessage<'a>, StructureError> {
        let shape = crate::measure(raw, limits)?;
        Ok(CheckedMessage {
            raw,
            shape,
            scan: header::scan(raw),
        })
    }

    /// The message's octets, unchanged.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Nesting depth and part count the scan found.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The line-by-line look at the header section.
    pub fn header_scan(&self) -> &HeaderScan {
        &self.scan
    }

    /// The header section up to and including the empty line that ends it
    /// ([`header::header_end`]).
    pub fn header_block(&self) -> &'a [u8] {
        &self.raw[..self.scan.end]
    }

    /// The whole message parsed by `parser`; `None` when it finds nothing.
    pub fn parse(&self, parser: &MessageParser) -> Option<ParsedMessage<'a>> {
        parser.parse(self.raw).map(|m| ParsedMessage(Some(m)))
    }

    /// What the header section says ([`HeaderFacts`]).
    pub fn facts(&self) -> HeaderFacts {
        HeaderFacts::of_block(self.header_block())
    }
}

/// Parses the header section `block` alone (e.g. [`CheckedMessage::header_block`], or
/// `raw[..header::header_end(raw)]` of a message that is not parsed as a whole):
/// bounded by the section's octets, no MIME structure.
pub fn parse_header_section<'x>(
    parser: &MessageParser,
    block: &'x [u8],
) -> Option<ParsedMessage<'x>> {
    parser.parse_headers(block).map(|m| ParsedMessage(Some(m)))
}

/// A message parsed by mail-parser. Dropping it takes nested messages apart one at a
/// time ([`dismantle`]): mail-parser's own drop recurses once per message/rfc822 level.
pub struct ParsedMessage<'x>(Option<Message<'x>>);

impl<'x> std::ops::Deref for ParsedMessage<'x> {
    type Target = Message<'x>;
    fn deref(&self) -> &Message<'x> {
        // Always Some until dropped.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("ParsedMessage is only emptied by drop"))
    }
}

impl Drop for ParsedMessage<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            dismantle(m);
        }
    }
}

/// Drops a parsed message without recursing once per encapsulation level: tens of
/// thousands of levels (a megabyte or two) would overflow the stack.
pub fn dismantle(message: Message<'_>) {
    let mut pending: Vec<Message<'_>> = vec![message];
    while let Some(mut m) = pending.pop() {
        for p in m.parts.iter_mut() {
            if matches!(p.body, PartType::Message(_)) {
                if let PartType::Message(inner) =
                    std::mem::replace(&mut p.body, PartType::Text(Cow::Borrowed("")))
                {
                    pending.push(inner);
                }
            }
        }
        // `m` holds no nested message any more: dropping it does not recurse.
    }
}

/// What the header section says, as far as intake cares (RFC 5322 §3.6).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderFacts {
    /// Number of Received fields (RFC 5321 §6.3 loop detection).
    pub received: usize,
    /// Addresses of every From and Sender field (all of them: a second From must not
    /// slip past the anti-spoofing rule).
    pub originators: Vec<String>,
    /// Addresses of the From fields alone.
    pub from_addresses: Vec<String>,
    /// A From or Sender field without a parseable address.
    pub unparseable_originator: bool,
    /// A From field is present.
    pub has_from: bool,
    /// A Date field is present.
    pub has_date: bool,
    /// A Message-ID field is present.
    pub has_message_id: bool,
}

/// Pushes each non-empty address of `addr` to `out`; whether there was one.
fn collect(addr: &Address<'_>, out: &mut Vec<String>) -> bool {
    let mut any = false;
    for a in addr.iter() {
        if let Some(x) = a.address() {
            if !x.is_empty() {
                out.push(x.to_string());
                any = true;
            }
        }
    }
    any
}

impl HeaderFacts {
    /// Reads the header section of `message` with mail-parser. mail-parser only sees
    /// the section up to our boundary ([`header::header_end`]), so it cannot take a
    /// field from what IMAP shows as the body.
    pub fn of(message: &[u8]) -> HeaderFacts {
        HeaderFacts::of_block(&message[..header::header_end(message)])
    }

    fn of_block(block: &[u8]) -> HeaderFacts {
        let mut f = HeaderFacts::default();
        let parser = MessageParser::new()
            .header_address(HeaderName::From)
            .header_address(HeaderName::Sender);
        let Some(m) = parse_header_section(&parser, block) else {
            return f;
        };
        for h in m.headers() {
            match h.name {
                HeaderName::Received => f.received += 1,
                HeaderName::Date => f.has_date = true,
                HeaderName::MessageId => f.has_message_id = true,
                HeaderName::From | HeaderName::Sender => {
                    if h.name == HeaderName::From {
                        f.has_from = true;
                        if let HeaderValue::Address(a) = &h.value {
                            collect(a, &mut f.from_addresses);
                        }
                    }
                    let ok = match &h.value {
                        HeaderValue::Address(a) => collect(a, &mut f.originators),
                        _ => false,
                    };
                    if !ok {
                        f.unparseable_originator = true;
                    }
                }
                _ => {}
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::nested_messages;

    #[test]
    fn header_facts() {
        let m = b"Received: a\r\nReceived: b\r\nFrom: Alice <alice@example.test>\r\nSender: bob@example.test\r\nFrom: eve@example.test\r\nSubject: x\r\n\r\nReceived: not a header\r\n";
        let f = HeaderFacts::of(m);
        assert_eq!(f.received, 2);
        assert_eq!(
            f.originators,
            vec!["alice@example.test", "bob@example.test", "eve@example.test"]
        );
        assert_eq!(
            f.from_addresses,
            vec!["alice@example.test", "eve@example.test"]
        );
        assert!(f.has_from && !f.has_date && !f.has_message_id);
        assert!(!f.unparseable_originator);

        let f = HeaderFacts::of(b"From: nobody\r\nDate: x\r\nMessage-ID: <a@b>\r\n\r\n");
        assert!(f.unparseable_originator);
        assert!(f.has_date && f.has_message_id);
        assert_eq!(HeaderFacts::of(b""), HeaderFacts::default());
    }

    #[test]
    fn only_a_scanned_message_is_parsed() {
        let limits = Limits {
            depth: 5,
            parts: 100,
        };
        assert_eq!(
            CheckedMessage::check(&nested_messages(6), limits).err(),
            Some(StructureError::TooDeep { limit: 5 })
        );
        let raw = b"From: a@example.test\r\n\x0c\r\nSubject: s\r\n\r\nbody\r\n";
        let c = CheckedMessage::check(raw, limits).unwrap();
        assert_eq!(c.shape(), Shape { depth: 0, parts: 1 });
        // Not clean, but parseable: the caller decides.
        assert_eq!(c.header_scan().bad_line, Some(2));
        assert_eq!(c.header_block(), &raw[..raw.len() - 6]);
        assert_eq!(c.raw(), raw);
        assert!(c.facts().has_from);
        let m = c.parse(&MessageParser::new()).unwrap();
        assert_eq!(
            m.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("a@example.test")
        );
    }

    #[test]
    fn header_section_alone() {
        let raw = b"Subject: hi\r\n\r\nbody";
        let m = parse_header_section(&MessageParser::new(), &raw[..15]).unwrap();
        assert_eq!(m.subject(), Some("hi"));
    }

    #[test]
    fn dropping_a_deep_parse_does_not_recurse() {
        // Parsed directly (no scan): mail-parser builds 40,000 nested messages, which
        // its own drop would take apart recursively.
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(|| {
                let raw = nested_messages(40_000);
                let m = ParsedMessage(MessageParser::new().parse(&raw[..]));
                assert!(!m.parts.is_empty());
                drop(m);
                if let Some(m) = MessageParser::new().parse(&raw[..]) {
                    dismantle(m);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
