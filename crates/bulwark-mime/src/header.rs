//! The one header boundary: where a message's header section ends, and whether every
//! line before it is a header field or a continuation line.
//!
//! Every component that splits a message into header and body takes the split from
//! here: the SMTP sender checks (the header section is cut at [`header_end`] before
//! mail-parser sees it), the DKIM signer (which refuses a section that is not
//! [`HeaderScan::is_clean`]), the IMAP header view (`BODY[HEADER]`, `BODY[TEXT]`), POP3
//! TOP, the queue's notices (text/rfc822-headers) and 8-bit header detection, the
//! removal of header fields only we may add, and Sieve when it comes.
//!
//! Why one function is not enough on its own: the parsers we rely on end the header
//! section at different lines. mail-parser (IMAP's MIME view, our sender check) ends
//! it at a line of white space only (`\x0c`, a lone space), mail-auth (DKIM, DMARC) at
//! any line without a colon, RFC 5322 §2.1 and [`header_end`] only at an empty line.
//! A message with such a line shows the user a header field (`Sender: bob`) that the
//! checks never saw. So intake refuses every message whose header section has a line
//! that is neither a field (`name:`) nor a continuation ([`scan`] finds it): for what
//! is left, every parser finds the same fields and the same boundary.
//!
//! Hand-written: it is the ground truth the parsers are checked against, so it cannot
//! be one of them. It looks at line starts and field names only, in one pass.

/// Offset just after the first empty line (RFC 5322 §2.1: the header section ends at
/// the first empty line; `\r\n` or a bare `\n`), so the header includes that line as
/// IMAP's `BODY[HEADER]` must (RFC 9051 §6.4.5). A message without an empty line is all
/// header (`raw.len()`).
pub fn header_end(raw: &[u8]) -> usize {
    boundary(raw).1
}

/// The header fields (each with its line end) without the empty line that ends them.
pub fn header_section(raw: &[u8]) -> &[u8] {
    &raw[..boundary(raw).0]
}

/// (where the empty line starts, where it ends); both `raw.len()` without one.
fn boundary(raw: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|c| *c == b'\n')
            .map_or(raw.len(), |i| pos + i);
        let line = &raw[pos..end];
        if line.is_empty() || line == b"\r" {
            return (pos, (end + 1).min(raw.len()));
        }
        pos = end + 1;
    }
    (raw.len(), raw.len())
}

/// One header field: its name as written (without white space before the colon) and
/// its raw value (after the colon, continuation lines included with their line ends,
/// the field's final line end excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name as written, without white space before the colon.
    pub name: &'a [u8],
    /// The raw value after the colon, continuation lines included (not the final line
    /// end).
    pub value: &'a [u8],
    /// Offset of the field's first octet in the message.
    pub start: usize,
    /// Offset just past the field's final line end.
    pub end: usize,
}

/// The header fields before [`header_end`], in order. Lines that are not fields
/// (which [`scan`] reports) are skipped; a continuation line belongs to the field
/// above it.
pub fn fields(raw: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let head = &raw[..header_end(raw)];
    let mut pos = 0usize;
    std::iter::from_fn(move || loop {
        if pos >= head.len() {
            return None;
        }
        let start = pos;
        let line_end = next_line(head, pos);
        pos = line_end;
        let line = trim_eol(&head[start..line_end]);
        if line.is_empty() {
            return None;
        }
        let Some(name) = field_name(line) else {
            continue;
        };
        // Continuation lines (RFC 5322 §2.2.3) start with SP or HTAB.
        while pos < head.len() && matches!(head[pos], b' ' | b'\t') {
            pos = next_line(head, pos);
        }
        let colon = line.iter().position(|b| *b == b':').unwrap_or(line.len());
        let value_start = (start + colon + 1).min(pos);
        let value = trim_eol(&head[value_start..pos]);
        return Some(Field {
            name,
            value,
            start,
            end: pos,
        });
    })
}

/// The offset after the LF ending the line at `pos` (or the end).
fn next_line(data: &[u8], pos: usize) -> usize {
    data[pos..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(data.len(), |i| pos + i + 1)
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The field name of a line that starts a field: RFC 5322 §3.6.8 `field-name =
/// 1*ftext` (printable ASCII except `:`), with white space allowed before the colon
/// (§4.5.3, obs-optional). None for anything else.
pub fn field_name(line: &[u8]) -> Option<&[u8]> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return None;
    }
    let colon = line.iter().position(|b| *b == b':')?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    (!name.is_empty() && name.iter().all(|b| (33..=126).contains(b))).then_some(name)
}

/// Whether a field `name` as a parser hands it out (white space around it allowed,
/// as RFC 5322 §4.5.3 obs-optional writes it) is `want`, ignoring ASCII case. The one
/// name comparison of the header walks (PRA selection, the Received walk).
pub fn is_named(name: &[u8], want: &str) -> bool {
    std::str::from_utf8(name).is_ok_and(|n| n.trim().eq_ignore_ascii_case(want))
}

/// What a line-by-line look at the header section found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HeaderScan {
    /// Number of From fields (RFC 5322 §3.6.2: exactly one expected).
    pub from_fields: usize,
    /// Number of Sender fields (RFC 5322 §3.6.2: at most one).
    pub sender_fields: usize,
    /// 1-based number of the first line before the empty line that is neither a
    /// header field nor a continuation line.
    pub bad_line: Option<usize>,
    /// Offset where the header section ends ([`header_end`]).
    pub end: usize,
}

impl HeaderScan {
    /// Every line before the boundary is a field or a continuation: every parser
    /// reads the same fields and ends the section at the same line.
    pub fn is_clean(&self) -> bool {
        self.bad_line.is_none()
    }
}

/// Scans the header section line by line (RFC 5322 §2.2, §3.6). A continuation line
/// as the very first line has no field to continue and is a bad line too.
pub fn scan(raw: &[u8]) -> HeaderScan {
    let end = header_end(raw);
    let mut h = HeaderScan {
        end,
        ..HeaderScan::default()
    };
    for (i, raw_line) in raw[..end].split(|b| *b == b'\n').enumerate() {
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if i == 0 {
                h.bad_line.get_or_insert(1);
            }
            continue;
        }
        match field_name(line) {
            Some(n) if n.eq_ignore_ascii_case(b"From") => h.from_fields += 1,
            Some(n) if n.eq_ignore_ascii_case(b"Sender") => h.sender_fields += 1,
            Some(_) => {}
            None => {
                h.bad_line.get_or_insert(i + 1);
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_is_the_first_empty_line() {
        let m = b"From: a\r\nX: y\r\n\tz\r\n\r\nbody\r\n\r\nmore\r\n";
        assert_eq!(&m[header_end(m)..], b"body\r\n\r\nmore\r\n");
        assert_eq!(header_section(m), b"From: a\r\nX: y\r\n\tz\r\n");
        assert_eq!(header_end(b"A: b\n\nbody"), 6);
        assert_eq!(header_end(b"A: b\r\n"), 6, "no empty line: all header");
        assert_eq!(header_section(b"A: b\r\n"), b"A: b\r\n");
        assert_eq!(header_end(b"\r\nbody"), 2);
        assert_eq!(header_section(b"\r\nbody"), b"");
        assert_eq!(header_end(b""), 0);
        // A line of white space only is not empty: it does not end the section.
        let ff = b"From: alice@example.test\r\n\x0c\r\nSender: bob@example.test\r\n\r\nx\r\n";
        assert_eq!(&ff[header_end(ff)..], b"x\r\n");
        let sp = b"From: a\r\n \r\nSender: b\r\n\r\nx";
        assert_eq!(&sp[header_end(sp)..], b"x");
    }

    #[test]
    fn lines_that_are_neither_fields_nor_continuations() {
        let clean =
            scan(b"From: a\r\nSender: b\r\nX: y\r\n\tz\r\nSubject : o\r\n\r\nFrom: c\r\nbody\r\n");
        assert_eq!((clean.from_fields, clean.sender_fields), (1, 1));
        assert!(clean.is_clean());
        for (m, n) in [
            (&b"From: a\r\n\x0c\r\nSender: b\r\n\r\nx\r\n"[..], 2),
            (b"From: a\r\n\x0cSender: b\r\n\r\nx\r\n", 2),
            (b"Subject: s\r\nnot a header\r\nFrom: a\r\n\r\nx", 2),
            (b"Subject: s\r\n: no name\r\n\r\nx", 2),
            (b"From: x\r\nBad Name: v\r\n\r\nx", 2),
            (b" first line folded\r\nFrom: x\r\n\r\nx", 1),
            ("From: x\r\nX-\u{e9}: v\r\n\r\nx".as_bytes(), 2),
            (b"From: a\r\nbody without empty line", 2),
        ] {
            assert_eq!(
                scan(m).bad_line,
                Some(n),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        // A whitespace-only continuation line is a continuation (obs-FWS).
        assert!(scan(b"From: a\r\n \r\nSender: b\r\n\r\nx").is_clean());
    }

    #[test]
    fn names_compare_without_case_and_white_space() {
        assert!(is_named(b"Received", "received"));
        assert!(is_named(b" RESENT-from\t", "Resent-From"));
        assert!(!is_named(b"Received-SPF", "Received"));
        assert!(!is_named(b"\xffReceived", "Received"));
        assert!(!is_named(b"", "From"));
    }

    #[test]
    fn fields_in_order_with_continuations() {
        let m = b"From: a\r\nX-F: 1\r\n\t2\r\nbad\r\nSubject :s\r\n\r\nNot: a field\r\n";
        let f: Vec<(&[u8], &[u8])> = fields(m).map(|f| (f.name, f.value)).collect();
        assert_eq!(
            f,
            [
                (&b"From"[..], &b" a"[..]),
                (b"X-F", b" 1\r\n\t2"),
                (b"Subject", b"s"),
            ]
        );
        let spans: Vec<(usize, usize)> = fields(m).map(|f| (f.start, f.end)).collect();
        assert_eq!(spans[1], (9, 21));
        assert_eq!(&m[spans[1].0..spans[1].1], b"X-F: 1\r\n\t2\r\n");
        assert_eq!(fields(b"A: b").count(), 1);
        assert_eq!(fields(b"").count(), 0);
    }
}
