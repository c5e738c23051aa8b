//! LIST with selection and return options (RFC 5258 syntax), for what clients send
//! once SPECIAL-USE is advertised (RFC 6154 §5.2): `LIST (SPECIAL-USE) "" "*"` and
//! `LIST "" "*" RETURN (SPECIAL-USE)`; also SUBSCRIBED, CHILDREN, REMOTE,
//! RECURSIVEMATCH (RFC 5258 §3.1) and `RETURN (STATUS (…))` (RFC 5819 LIST-STATUS).
//!
//! Hand-written: imap-codec 2.0.0-alpha.10 parses only the RFC 3501 form of LIST (its
//! `ext_list_extended` feature covers response items, not the command), so commands
//! it rejects are tried here. Only the grammar of RFC 5258 §6 `list` is accepted:
//!
//! ```text
//! list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
//! list-select-opts = "(" [option *(SP option)] ")"
//! mbox-or-pat = list-mailbox / "(" list-mailbox *(SP list-mailbox) ")"
//! list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
//! return-option = option / "STATUS" SP "(" status-att *(SP status-att) ")"   ; RFC 5819
//! ```

use imap_codec::imap_types::status::StatusDataItemName;

/// A parsed extended LIST.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ListExt {
    pub tag: String,
    /// Raw (still modified UTF-7) reference and patterns.
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    pub select_subscribed: bool,
    pub select_special_use: bool,
    pub return_subscribed: bool,
    pub return_special_use: bool,
    /// RFC 5258 §3.1 RECURSIVEMATCH (only with SUBSCRIBED): parents of subscribed
    /// names that do not match are listed with CHILDINFO.
    pub recursive_match: bool,
    /// RFC 5819: a STATUS response for each selectable mailbox listed.
    pub status: Option<Vec<StatusDataItemName>>,
}

/// The STATUS items RFC 9051 §6.3.11, RFC 7162 §3.1.3 (HIGHESTMODSEQ) and RFC 8438
/// (SIZE) define.
fn status_item(name: &str) -> Option<StatusDataItemName> {
    Some(match name {
        "MESSAGES" => StatusDataItemName::Messages,
        "RECENT" => StatusDataItemName::Recent,
        "UIDNEXT" => StatusDataItemName::UidNext,
        "UIDVALIDITY" => StatusDataItemName::UidValidity,
        "UNSEEN" => StatusDataItemName::Unseen,
        "DELETED" => StatusDataItemName::Deleted,
        "SIZE" => StatusDataItemName::Size,
        "HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn sp(&mut self) -> Option<()> {
        self.eat(b' ')
    }

    /// An atom or list-mailbox token: anything up to SP, parentheses, quote, CR/LF.
    fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c <= b' ' || c >= 0x7f || b"(){\"\\".contains(&c) {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| &self.b[start..self.i])
    }

    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    let c = self.peek()?;
                    if c != b'"' && c != b'\\' {
                        return None;
                    }
                    out.push(c);
                    self.i += 1;
                }
                b'\r' | b'\n' => return None,
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// `{n}` or `{n+}`, CRLF, then n octets (the shell has put them inline).
    fn literal(&mut self) -> Option<Vec<u8>> {
        self.eat(b'{')?;
        let start = self.i;
        while self.peek()?.is_ascii_digit() {
            self.i += 1;
        }
        let n: usize = std::str::from_utf8(&self.b[start..self.i])
            .ok()?
            .parse()
            .ok()?;
        let _ = self.eat(b'+');
        self.eat(b'}')?;
        self.eat(b'\r')?;
        self.eat(b'\n')?;
        let data = self.b.get(self.i..self.i.checked_add(n)?)?.to_vec();
        self.i += n;
        Some(data)
    }

    fn string_or_atom(&mut self) -> Option<Vec<u8>> {
        match self.peek()? {
            b'"' => self.quoted(),
            b'{' => self.literal(),
            _ => self.atom().map(<[u8]>::to_vec),
        }
    }

    /// `(` [atom *(SP atom)] `)`, upper-cased.
    fn options(&mut self) -> Option<Vec<String>> {
        self.eat(b'(')?;
        let mut out = Vec::new();
        if self.eat(b')').is_some() {
            return Some(out);
        }
        loop {
            out.push(String::from_utf8_lossy(self.atom()?).to_ascii_uppercase());
            if self.eat(b')').is_some() {
                return Some(out);
            }
            self.sp()?;
        }
    }
}

/// None when the command is not a LIST at all; `Err(tag)` for a LIST we cannot
/// accept (bad syntax, unknown option).
pub(crate) fn parse(cmd: &[u8]) -> Option<Result<ListExt, String>> {
    let mut c = Cursor { b: cmd, i: 0 };
    let tag = String::from_utf8_lossy(c.atom()?).into_owned();
    c.sp()?;
    let verb = c.atom()?;
    if !verb.eq_ignore_ascii_case(b"LIST") {
        return None;
    }
    Some(parse_rest(&mut c, &tag).ok_or(tag))
}

fn parse_rest(c: &mut Cursor<'_>, tag: &str) -> Option<ListExt> {
    let mut out = ListExt {
        tag: tag.to_string(),
        ..ListExt::default()
    };
    c.sp()?;
    if c.peek()? == b'(' {
        let mut recursive = false;
        let opts = c.options()?;
        for o in &opts {
            match o.as_str() {
                "SUBSCRIBED" => out.select_subscribed = true,
                "SPECIAL-USE" => out.select_special_use = true,
                // RFC 5258 §3.1: all our mailboxes are local.
                "REMOTE" => {}
                "RECURSIVEMATCH" => recursive = true,
                _ => return None,
            }
        }
        // RFC 5258 §3: RECURSIVEMATCH needs another selection option to recurse on.
        if recursive && !(out.select_subscribed || out.select_special_use) {
            return None;
        }
        out.recursive_match = recursive && out.select_subscribed;
        c.sp()?;
    }
    out.reference = c.string_or_atom()?;
    c.sp()?;
    if c.peek()? == b'(' {
        c.eat(b'(')?;
        loop {
            out.patterns.push(c.string_or_atom()?);
            if c.eat(b')').is_some() {
                break;
            }
            c.sp()?;
        }
    } else {
        out.patterns.push(c.string_or_atom()?);
    }
    if c.sp().is_some() {
        let kw = c.atom()?;
        if !kw.eq_ignore_ascii_case(b"RETURN") {
            return None;
        }
        c.sp()?;
        c.eat(b'(')?;
        if c.eat(b')').is_none() {
            loop {
                let o = String::from_utf8_lossy(c.atom()?).to_ascii_uppercase();
                match o.as_str() {
                    "SUBSCRIBED" => out.return_subscribed = true,
                    "SPECIAL-USE" => out.return_special_use = true,
                    // \HasChildren / \HasNoChildren are always sent.
                    "CHILDREN" => {}
                    "STATUS" if out.status.is_none() => {
                        c.sp()?;
                        let items = c.options()?;
                        if items.is_empty() {
                            return None;
                        }
                        let items = items.iter().map(|i| status_item(i));
                        out.status = Some(items.collect::<Option<Vec<_>>>()?);
                    }
                    _ => return None,
                }
                if c.eat(b')').is_some() {
                    break;
                }
                c.sp()?;
            }
        }
    }
    c.eat(b'\r')?;
    c.eat(b'\n')?;
    (c.i == c.b.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> ListExt {
        match parse(s.as_bytes()) {
            Some(Ok(l)) => l,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn what_mailkit_sends() {
        let l = ok("a LIST (SPECIAL-USE) \"\" \"*\"\r\n");
        assert!(l.select_special_use && !l.return_special_use);
        assert_eq!(
            (l.reference, l.patterns),
            (b"".to_vec(), vec![b"*".to_vec()])
        );
        let l = ok("b list \"\" \"*\" return (special-use)\r\n");
        assert!(l.return_special_use && !l.select_special_use);
        let l = ok("c LIST (SUBSCRIBED REMOTE) \"\" (INBOX \"Sent\" {3}\r\nA/%) RETURN (CHILDREN SUBSCRIBED)\r\n");
        assert!(l.select_subscribed && l.return_subscribed);
        assert_eq!(
            l.patterns,
            vec![b"INBOX".to_vec(), b"Sent".to_vec(), b"A/%".to_vec()]
        );
        let l = ok("d LIST () \"\" % RETURN ()\r\n");
        assert!(!l.select_subscribed && !l.return_subscribed);
        let l = ok("e LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n");
        assert!(l.recursive_match && l.select_subscribed);
        assert_eq!(
            l.status,
            Some(vec![StatusDataItemName::Messages, StatusDataItemName::Size])
        );
    }

    #[test]
    fn the_rest_is_refused() {
        assert_eq!(parse(b"a NOOP\r\n"), None);
        for bad in [
            "a LIST (BOGUS) \"\" *\r\n",
            "a LIST (RECURSIVEMATCH) \"\" *\r\n",
            "a LIST \"\" * RETURN (STATUS (MESSAGES BOGUS))\r\n",
            "a LIST \"\" * RETURN (STATUS ())\r\n",
            "a LIST \"\" * RETURN (IMAPTEST)\r\n",
            "a LIST (RECURSIVEMATCH REMOTE) \"\" *\r\n",
            "a LIST \"\" * EXTRA\r\n",
            "a LIST (SPECIAL-USE \"\" *\r\n",
            "a LIST \"\" {5}\r\nab\r\n",
            "a LIST \"\" * RETURN (SPECIAL-USE)",
        ] {
            assert_eq!(parse(bad.as_bytes()), Some(Err("a".into())), "{bad:?}");
        }
    }
}
