//! MULTIAPPEND (RFC 3502): `APPEND mailbox 1*(SP [flags SP] [date-time SP] literal)`.
//!
//! Hand-written: imap-codec 2.0.0-alpha.10 decodes APPEND with exactly one message.
//! This module only finds where each message's arguments begin and end, and turns the
//! command into one single-message APPEND per message, which imap-codec then decodes
//! (and so still validates the mailbox, flags, date and literal). Grammar, RFC 3502 §6:
//!
//! ```text
//! append          = "APPEND" SP mailbox 1*append-message
//! append-message  = SP [flag-list SP] [date-time SP] literal      ; literal8 with BINARY
//! ```

/// Splits a complete command (literals inline) into single-message APPENDs with the
/// same tag. `None` when it is not an APPEND of two or more messages.
pub(crate) fn split(cmd: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut c = Cursor { b: cmd, i: 0 };
    c.token()?;
    c.sp()?;
    let verb = c.token()?;
    if !verb.eq_ignore_ascii_case(b"APPEND") {
        return None;
    }
    c.sp()?;
    let head_end = {
        c.mailbox()?;
        c.i
    };
    let mut parts = Vec::new();
    while c.peek() == Some(b' ') {
        c.i += 1;
        let start = c.i;
        if c.peek() == Some(b'(') {
            c.skip_until(b')')?;
            c.sp()?;
        }
        if c.peek() == Some(b'"') {
            c.quoted()?;
            c.sp()?;
        }
        if c.peek() == Some(b'~') {
            c.i += 1;
        }
        c.literal()?;
        parts.push(&cmd[start..c.i]);
    }
    if c.rest() != b"\r\n" || parts.len() < 2 {
        return None;
    }
    Some(
        parts
            .into_iter()
            .map(|p| {
                let mut one = Vec::with_capacity(head_end + p.len() + 3);
                one.extend_from_slice(&cmd[..head_end]);
                one.push(b' ');
                one.extend_from_slice(p);
                one.extend_from_slice(b"\r\n");
                one
            })
            .collect(),
    )
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn rest(&self) -> &[u8] {
        self.b.get(self.i..).unwrap_or_default()
    }

    fn sp(&mut self) -> Option<()> {
        (self.peek()? == b' ').then(|| self.i += 1)
    }

    /// Up to SP or CR (tags, the verb, atom mailbox names).
    fn token(&mut self) -> Option<&[u8]> {
        let start = self.i;
        while self.peek().is_some_and(|c| c != b' ' && c != b'\r') {
            self.i += 1;
        }
        (self.i > start).then(|| &self.b[start..self.i])
    }

    fn skip_until(&mut self, end: u8) -> Option<()> {
        let n = self.rest().iter().position(|&c| c == end || c == b'\r')?;
        self.i += n;
        (self.peek()? == end).then(|| self.i += 1)
    }

    fn quoted(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => self.i += 2,
                b'\r' | b'\n' => return None,
                _ => self.i += 1,
            }
        }
    }

    /// `{n}` / `{n+}` CRLF and n octets.
    fn literal(&mut self) -> Option<()> {
        if self.peek()? != b'{' {
            return None;
        }
        self.i += 1;
        let digits = self
            .rest()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let n: usize = std::str::from_utf8(&self.b[self.i..self.i + digits])
            .ok()?
            .parse()
            .ok()?;
        self.i += digits;
        if self.peek() == Some(b'+') {
            self.i += 1;
        }
        if !self.rest().starts_with(b"}\r\n") {
            return None;
        }
        self.i = self.i.checked_add(3 + n)?;
        (self.i <= self.b.len()).then_some(())
    }

    fn mailbox(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => self.token().map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_into_single_appends() {
        let cmd = b"a1 APPEND \"My box\" (\\Seen) \"24-Mar-2007 23:00:00 +0200\" {5}\r\nabcde {3+}\r\nxyz\r\n";
        let parts = split(cmd).unwrap();
        assert_eq!(
            parts,
            vec![
                b"a1 APPEND \"My box\" (\\Seen) \"24-Mar-2007 23:00:00 +0200\" {5}\r\nabcde\r\n"
                    .to_vec(),
                b"a1 APPEND \"My box\" {3+}\r\nxyz\r\n".to_vec(),
            ]
        );
        let parts = split(b"b APPEND {5}\r\nINBOX {1}\r\nx ~{1}\r\ny\r\n").unwrap();
        assert_eq!(parts[1], b"b APPEND {5}\r\nINBOX ~{1}\r\ny\r\n".to_vec());
    }

    #[test]
    fn single_or_malformed_appends_are_not_split() {
        assert_eq!(split(b"a APPEND INBOX {1}\r\nx\r\n"), None);
        assert_eq!(split(b"a APPEND INBOX {1}\r\nx {5}\r\nab\r\n"), None);
        assert_eq!(split(b"a APPEND INBOX {1}\r\nx {1}\r\ny junk\r\n"), None);
        assert_eq!(split(b"a NOOP\r\n"), None);
        assert_eq!(split(b"a APPEND INBOX (\\Seen {1}\r\nx {1}\r\ny\r\n"), None);
    }
}
