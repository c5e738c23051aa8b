//! SORT (RFC 5256 §3) with SORT=DISPLAY (RFC 5957): the messages SEARCH would
//! find, ordered by the given keys, ties by sequence number.
//!
//! Header keys need each matching message's header, read in batches like SEARCH's
//! text keys; ARRIVAL and SIZE come from the index.

use std::cmp::Ordering;

use imap_codec::imap_types::{
    core::Vec1,
    extensions::sort::{SortCriterion, SortKey},
    search::SearchKey,
};

use crate::mime;
use crate::resp::Sink;
use crate::search::Hit;
use crate::session::{Done, Session};

/// What a message sorts by (only the keys asked for are filled in).
#[derive(Default)]
pub(crate) struct SortFields {
    pub subject: String,
    /// Sent date (UTC seconds), or the internal date when missing (RFC 5256 §3).
    pub date: i64,
    pub from: String,
    pub to: String,
    pub cc: String,
    pub display_from: String,
    pub display_to: String,
    /// THREAD (RFC 5256 §2.2): Message-ID, References (or In-Reply-To's first id),
    /// and whether the subject was a reply or forward (leader or trailer removed).
    pub message_id: Option<String>,
    pub references: Vec<String>,
    pub reply: bool,
}

/// RFC 5256 §2.1: the base subject, upper-cased for i;ascii-casemap comparison.
pub(crate) fn base_subject(subject: &str) -> String {
    // (1) whitespace runs become one space.
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        // (2) trailing "(fwd)" and whitespace.
        loop {
            let t = s.trim_end();
            let lower = t.to_ascii_lowercase();
            if lower.ends_with("(fwd)") {
                s = t[..t.len() - 5].to_string();
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)/(4) leading subj-refwd and subj-blob, repeatedly.
        loop {
            let before = s.clone();
            s = strip_leader(&s).to_string();
            if let Some(rest) = strip_blob(&s).filter(|r| !r.is_empty()) {
                s = rest.to_string();
            }
            if s == before {
                break;
            }
        }
        // (5) "[fwd:" subject "]".
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].trim().to_string();
            continue;
        }
        break;
    }
    s.to_uppercase()
}

/// RFC 5256 §2.1 (and §2.2 step 5): a subject is a reply or forward when extracting
/// the base subject removed a `Re:`/`Fwd:` leader, a `(fwd)` trailer or a `[fwd: …]`
/// wrapper — not merely blobs or whitespace.
fn is_reply(raw: &str, base: &str) -> bool {
    let collapsed = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    if collapsed == base {
        return false;
    }
    let mut s = collapsed.as_str();
    while let Some(r) = strip_blob(s).filter(|r| !r.is_empty()) {
        s = r;
    }
    s != base
}

/// `*WSP subj-blob *WSP` at the start ("[" *BLOBCHAR "]"): the rest, if there is one.
fn strip_blob(s: &str) -> Option<&str> {
    let rest = s.trim_start().strip_prefix('[')?;
    let end = rest.find(['[', ']'])?;
    (rest.as_bytes()[end] == b']').then(|| rest[end + 1..].trim_start())
}

/// subj-leader = (*subj-blob subj-refwd) / WSP, where
/// subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":".
fn strip_leader(s: &str) -> &str {
    let whole = s.trim_start();
    let mut rest = whole;
    while let Some(r) = strip_blob(rest) {
        rest = r;
    }
    let lower = rest.to_ascii_lowercase();
    let skip = if lower.starts_with("re") || (lower.starts_with("fw") && !lower.starts_with("fwd"))
    {
        2
    } else if lower.starts_with("fwd") {
        3
    } else {
        return whole;
    };
    let mut after = rest[skip..].trim_start();
    if after.starts_with('[') {
        match strip_blob(after) {
            Some(r) => after = r,
            None => return whole,
        }
    }
    after.strip_prefix(':').map_or(whole, str::trim_start)
}

/// The sort fields of one message from its header (RFC 5256 §3, RFC 5957 §2).
pub(crate) fn fields(raw: &[u8], internal_date: i64) -> SortFields {
    let head = &raw[..mime::header_end(raw)];
    let Some(m) = mail_parser::MessageParser::new().parse_headers(head) else {
        return SortFields {
            date: internal_date,
            ..SortFields::default()
        };
    };
    // addr-mailbox (the local part) of the first address, for FROM/TO/CC; for a
    // group, its name (the first address of the IMAP ENVELOPE is the group marker).
    let mailbox = |a: Option<&mail_parser::Address<'_>>| -> String {
        match first_address(a) {
            Some(First::Group(n)) => n.to_uppercase(),
            Some(First::Addr { address, .. }) => address
                .rsplit_once('@')
                .map_or(address, |(l, _)| l)
                .to_uppercase(),
            None => String::new(),
        }
    };
    // RFC 5957 §2: the display name, else the addr-spec (a group's name for a group).
    let display = |a: Option<&mail_parser::Address<'_>>| -> String {
        match first_address(a) {
            Some(First::Group(n)) => n.to_uppercase(),
            Some(First::Addr { name, address }) => {
                match name.map(str::trim).filter(|n| !n.is_empty()) {
                    Some(n) => n.to_uppercase(),
                    None => address.to_uppercase(),
                }
            }
            None => String::new(),
        }
    };
    let ids = |h: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        match h {
            mail_parser::HeaderValue::Text(s) => vec![s.to_string()],
            mail_parser::HeaderValue::TextList(l) => l.iter().map(|s| s.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    let mut references = ids(m.references());
    if references.is_empty() {
        references = ids(m.in_reply_to()).into_iter().take(1).collect();
    }
    let raw_subject = m.subject().unwrap_or_default();
    let subject = base_subject(raw_subject);
    SortFields {
        reply: is_reply(raw_subject, &subject),
        message_id: m.message_id().map(str::to_string),
        references,
        subject,
        date: m.date().map_or(internal_date, |d| d.to_timestamp()),
        from: mailbox(m.from()),
        to: mailbox(m.to()),
        cc: mailbox(m.cc()),
        display_from: display(m.from()),
        display_to: display(m.to()),
    }
}

/// The first entry of an address header as the IMAP ENVELOPE lists it.
enum First<'a> {
    Group(&'a str),
    Addr {
        name: Option<&'a str>,
        address: &'a str,
    },
}

fn first_address<'a>(a: Option<&'a mail_parser::Address<'_>>) -> Option<First<'a>> {
    let addr = |x: &'a mail_parser::Addr<'_>| First::Addr {
        name: x.name.as_deref(),
        address: x.address.as_deref().unwrap_or_default(),
    };
    match a? {
        mail_parser::Address::List(l) => l.first().map(addr),
        mail_parser::Address::Group(g) => {
            let g = g.first()?;
            match g.name.as_deref() {
                Some(n) => Some(First::Group(n)),
                None => g.addresses.first().map(addr),
            }
        }
    }
}

fn compare(keys: &[SortCriterion], a: (&Hit, &SortFields), b: (&Hit, &SortFields)) -> Ordering {
    for k in keys {
        let o = match k.key {
            SortKey::Arrival => a.0.internal_date.cmp(&b.0.internal_date),
            SortKey::Size => a.0.size.cmp(&b.0.size),
            SortKey::Date => a.1.date.cmp(&b.1.date),
            SortKey::Subject => a.1.subject.cmp(&b.1.subject),
            SortKey::From => a.1.from.cmp(&b.1.from),
            SortKey::To => a.1.to.cmp(&b.1.to),
            SortKey::Cc => a.1.cc.cmp(&b.1.cc),
            SortKey::DisplayFrom => a.1.display_from.cmp(&b.1.display_from),
            SortKey::DisplayTo => a.1.display_to.cmp(&b.1.display_to),
        };
        let o = if k.reverse { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    // RFC 5256 §3: ties by sequence number, whatever REVERSE said.
    a.0.seq.cmp(&b.0.seq)
}

impl Session {
    /// The matching messages with the header fields SORT/THREAD need.
    pub(crate) async fn matching_with_fields(
        &mut self,
        charset: &str,
        criteria: &Vec1<SearchKey<'_>>,
        need_header: bool,
    ) -> std::io::Result<Result<Vec<(Hit, SortFields)>, Done>> {
        // RFC 5256 §3: US-ASCII and UTF-8 must be supported.
        if !charset.eq_ignore_ascii_case("UTF-8") && !charset.eq_ignore_ascii_case("US-ASCII") {
            let code = crate::code::ResponseCode::BadCharset;
            return Ok(Err(Done::No(code.text("Unsupported charset"))));
        }
        let hits = match self.matching(criteria).await? {
            Ok(m) => m.hits,
            Err(d) => return Ok(Err(d)),
        };
        let mut out = Vec::with_capacity(hits.len());
        if !need_header {
            out.extend(hits.into_iter().map(|h| {
                let f = SortFields {
                    date: h.internal_date,
                    ..SortFields::default()
                };
                (h, f)
            }));
            return Ok(Ok(out));
        }
        let mut hits = hits.into_iter().peekable();
        while hits.peek().is_some() {
            // As SEARCH: at most 256 messages and about 4 MiB per store round trip.
            let mut batch: Vec<Hit> = Vec::new();
            let mut batch_octets = 0u64;
            while batch.len() < crate::search::BATCH_MESSAGES
                && batch_octets < crate::search::BATCH_OCTETS
            {
                let Some(h) = hits.next() else { break };
                batch_octets += h.size;
                batch.push(h);
            }
            let ids: Vec<_> = batch.iter().map(|h| h.blob_id).collect();
            // The batch's bodies, within `[imap] max_inflight_bytes` like SEARCH's.
            let octets: u64 = batch.iter().map(|h| h.size).sum();
            let (_hold, bodies) = match self.read_bodies_held(&ids, octets).await {
                Ok(r) => r,
                Err(done) => return Ok(Err(done)),
            };
            let mut bodies = bodies.into_iter().peekable();
            for h in batch {
                // A body expunged meanwhile: the message is left out.
                let Some((_, raw)) = bodies.next_if(|(id, _)| *id == h.blob_id) else {
                    continue;
                };
                let f = fields(&raw, h.internal_date);
                out.push((h, f));
            }
        }
        Ok(Ok(out))
    }

    pub(crate) async fn sort(
        &mut self,
        criteria: &[SortCriterion],
        charset: &str,
        search: &Vec1<SearchKey<'_>>,
        uid: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let need_header = criteria
            .iter()
            .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
        let mut found = match self
            .matching_with_fields(charset, search, need_header)
            .await?
        {
            Ok(f) => f,
            Err(d) => return Ok(d),
        };
        found.sort_by(|a, b| compare(criteria, (&a.0, &a.1), (&b.0, &b.1)));
        let mut line = String::from("* SORT");
        for (h, _) in &found {
            line.push(' ');
            line.push_str(&(if uid { h.uid } else { h.seq }).to_string());
        }
        crate::resp::line(sink, &line).await?;
        Ok(Done::Ok("SORT completed".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_per_rfc_5256() {
        for (s, want) in [
            ("Re: hello", "HELLO"),
            ("RE: Re: re: hello  (fwd)", "HELLO"),
            ("Fwd: [list] Re: hello", "HELLO"),
            ("[fwd: Re: hello]", "HELLO"),
            ("[list] hello", "HELLO"),
            ("[list]", "[LIST]"),
            ("  hello\t  world ", "HELLO WORLD"),
            ("Re[2]: hello", "HELLO"),
            ("Reply: hello", "REPLY: HELLO"),
            ("", ""),
        ] {
            assert_eq!(base_subject(s), want, "{s:?}");
        }
    }
}
