//! SEARCH result options: `SEARCH RETURN (MIN MAX ALL COUNT SAVE)` (RFC 4731 ESEARCH,
//! RFC 5182 SEARCHRES) and the `* ESEARCH` response that answers them.
//!
//! Hand-written: imap-codec 2.0.0-alpha.10 knows neither `RETURN` after SEARCH nor the
//! ESEARCH response. The return options always come first (RFC 4731 §3:
//! `search = "SEARCH" [search-return-opts] SP search-program`), and contain only atoms,
//! so they are cut from the front of the command and the rest — criteria, charset,
//! literals — is still decoded by imap-codec as an ordinary SEARCH.

/// RFC 4731 §3.1 result options (and RFC 5182 §2.1's SAVE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReturnOpts {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl ReturnOpts {
    /// RFC 5182 §2.1: `RETURN (SAVE)` alone returns no ESEARCH data at all
    /// (only the result is kept for `$`).
    pub(crate) fn answers_nothing(&self) -> bool {
        self.save && !(self.min || self.max || self.all || self.count)
    }
}

/// What `split` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Split {
    /// `tag [UID ]SEARCH RETURN (…)`: the command without the RETURN clause.
    Return { command: Vec<u8>, opts: ReturnOpts },
    /// A RETURN clause that is not well-formed: the tag for a BAD.
    Bad(String),
}

/// Finds a `RETURN (…)` right after `[UID] SEARCH`; `None` for every other command.
pub(crate) fn split(bytes: &[u8]) -> Option<Split> {
    let tag_end = bytes.iter().position(|&c| c == b' ')?;
    let tag = &bytes[..tag_end];
    let mut i = tag_end + 1;
    let word = |i: usize, w: &[u8]| {
        bytes.len() > i + w.len()
            && bytes[i..i + w.len()].eq_ignore_ascii_case(w)
            && bytes[i + w.len()] == b' '
    };
    if word(i, b"UID") {
        i += 4;
    }
    if !word(i, b"SEARCH") {
        return None;
    }
    let search_end = i + 7;
    if !word(search_end, b"RETURN") {
        return None;
    }
    let bad = || Some(Split::Bad(String::from_utf8_lossy(tag).into_owned()));
    let mut j = search_end + 7;
    if bytes.get(j) != Some(&b'(') {
        return bad();
    }
    j += 1;
    let close = match bytes[j..].iter().position(|&c| c == b')') {
        Some(p) => j + p,
        None => return bad(),
    };
    let mut opts = ReturnOpts::default();
    for opt in bytes[j..close]
        .split(|&c| c == b' ')
        .filter(|o| !o.is_empty())
    {
        match opt.to_ascii_uppercase().as_slice() {
            b"MIN" => opts.min = true,
            b"MAX" => opts.max = true,
            b"ALL" => opts.all = true,
            b"COUNT" => opts.count = true,
            b"SAVE" => opts.save = true,
            // RFC 4731 §3.1: an unknown option is an error (BAD).
            _ => return bad(),
        }
    }
    // RFC 4731 §3.1: "RETURN ()" is the same as "RETURN (ALL)".
    if opts == ReturnOpts::default() {
        opts.all = true;
    }
    if bytes.get(close + 1) != Some(&b' ') {
        return bad();
    }
    let mut command = Vec::with_capacity(bytes.len());
    command.extend_from_slice(&bytes[..search_end]);
    command.extend_from_slice(&bytes[close + 2..]);
    Some(Split::Return { command, opts })
}

/// The untagged ESEARCH line (RFC 4731 §3.1, RFC 7162 §3.1.5 for MODSEQ).
/// `hits` ascend; `modseq` is the highest mod-sequence of the matches, or of the
/// reported MIN/MAX ones when only those were asked (RFC 4731 §3.2).
pub(crate) fn response(
    tag: &str,
    uid: bool,
    opts: &ReturnOpts,
    hits: &[u32],
    modseq: Option<u64>,
) -> String {
    let mut line = String::from("* ESEARCH (TAG ");
    line.push_str(&quote(tag));
    line.push(')');
    if uid {
        line.push_str(" UID");
    }
    if let (Some(min), true) = (hits.first(), opts.min) {
        line.push_str(&format!(" MIN {min}"));
    }
    if let (Some(max), true) = (hits.last(), opts.max) {
        line.push_str(&format!(" MAX {max}"));
    }
    if opts.all && !hits.is_empty() {
        line.push_str(" ALL ");
        line.push_str(&crate::seqset::compress(hits));
    }
    if opts.count {
        line.push_str(&format!(" COUNT {}", hits.len()));
    }
    if let (Some(m), false) = (modseq, hits.is_empty()) {
        line.push_str(&format!(" MODSEQ {m}"));
    }
    line
}

/// A tag as an IMAP quoted string (RFC 4731 `search-correlator = SP "(" "TAG" SP
/// tag-string ")"`); tags are atoms, so only `"` and `\` could need escaping.
fn quote(tag: &str) -> String {
    let mut s = String::with_capacity(tag.len() + 2);
    s.push('"');
    for c in tag.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ret(b: &[u8]) -> (String, ReturnOpts) {
        match split(b) {
            Some(Split::Return { command, opts }) => (String::from_utf8(command).unwrap(), opts),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn return_clause_is_cut_from_the_command() {
        let (c, o) = ret(b"a1 SEARCH RETURN (MIN COUNT) UNSEEN\r\n");
        assert_eq!(c, "a1 SEARCH UNSEEN\r\n");
        assert!(o.min && o.count && !o.max && !o.all && !o.save);
        let (c, o) = ret(b"a2 uid search return () charset utf-8 all\r\n");
        assert_eq!(c, "a2 uid search charset utf-8 all\r\n");
        assert!(o.all, "RETURN () means ALL");
        let (_, o) = ret(b"a3 SEARCH RETURN (SAVE) 1:3\r\n");
        assert!(o.save && o.answers_nothing());
    }

    #[test]
    fn other_commands_are_left_alone() {
        assert_eq!(split(b"a SEARCH ALL\r\n"), None);
        assert_eq!(split(b"a UID FETCH 1 FLAGS\r\n"), None);
        assert_eq!(split(b"a SEARCH SUBJECT RETURN\r\n"), None);
    }

    #[test]
    fn unknown_or_unclosed_options_are_bad() {
        assert_eq!(
            split(b"t SEARCH RETURN (NEWEST) ALL\r\n"),
            Some(Split::Bad("t".into()))
        );
        assert_eq!(
            split(b"t SEARCH RETURN (MIN ALL\r\n"),
            Some(Split::Bad("t".into()))
        );
        assert_eq!(
            split(b"t SEARCH RETURN MIN ALL\r\n"),
            Some(Split::Bad("t".into()))
        );
    }

    #[test]
    fn esearch_response_forms() {
        let all = ReturnOpts {
            all: true,
            ..Default::default()
        };
        assert_eq!(
            response("a", true, &all, &[1, 2, 3, 5, 6], None),
            "* ESEARCH (TAG \"a\") UID ALL 1:3,5:6"
        );
        let every = ReturnOpts {
            min: true,
            max: true,
            all: false,
            count: true,
            save: false,
        };
        assert_eq!(
            response("b", false, &every, &[], None),
            "* ESEARCH (TAG \"b\") COUNT 0"
        );
        assert_eq!(
            response("b", false, &every, &[4, 9], Some(7)),
            "* ESEARCH (TAG \"b\") MIN 4 MAX 9 COUNT 2 MODSEQ 7"
        );
    }
}
