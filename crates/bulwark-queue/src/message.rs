//! What the client needs to know about a message's octets (they go on the wire
//! dot-stuffed by `bulwark_wire::DotStuffer` as the client streams them).

/// Facts about a message that decide which SMTP extensions its transfer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    /// Length in octets (for SIZE=, RFC 1870).
    pub size: usize,
    /// Some octet ≥ 0x80 anywhere: needs BODY=8BITMIME (RFC 6152).
    pub eight_bit: bool,
    /// Some octet ≥ 0x80 in the header section (RFC 6532 UTF-8 headers).
    pub utf8_headers: bool,
}

impl MessageInfo {
    /// The facts of the message `data` (scanned once).
    pub fn of(data: &[u8]) -> MessageInfo {
        let headers = header_section(data);
        MessageInfo {
            size: data.len(),
            eight_bit: data.iter().any(|b| *b >= 0x80),
            utf8_headers: headers.iter().any(|b| *b >= 0x80),
        }
    }
}

/// The header section: everything before the first empty line (the whole message if
/// there is no body), from the one boundary every component uses
/// (`bulwark_mime::header`).
pub fn header_section(data: &[u8]) -> &[u8] {
    bulwark_mime::header::header_section(data)
}

/// True when an address cannot be written in ASCII and so needs SMTPUTF8 (RFC 6531).
pub fn needs_utf8(address: &str) -> bool {
    !address.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_section_and_8bit() {
        let m = b"Subject: x\r\nFrom: a@b\r\n\r\nbody \xc3\xa9\r\n";
        assert_eq!(header_section(m), b"Subject: x\r\nFrom: a@b\r\n");
        let i = MessageInfo::of(m);
        assert!(i.eight_bit && !i.utf8_headers);
        let h = MessageInfo::of("Subject: caf\u{e9}\r\n\r\nx".as_bytes());
        assert!(h.eight_bit && h.utf8_headers);
        assert_eq!(header_section(b"Only: headers\r\n"), b"Only: headers\r\n");
        assert!(needs_utf8("j\u{f6}rg@example.test"));
        assert!(!needs_utf8("joerg@example.test"));
    }
}
