//! SEARCH / UID SEARCH (RFC 9051 §6.4.4; RFC 7162 §3.1.5 MODSEQ).
//!
//! Metadata keys (flags, sizes, dates, sets) are answered from the store's index;
//! text keys parse the message (decoded MIME, case-insensitive substring), and only
//! for messages the cheaper keys have not already decided.

use bulwark_store::{Flags, MessageMeta};
use imap_codec::imap_types::{core::Vec1, search::SearchKey};

use crate::esearch::{self, ReturnOpts};
use crate::mime::{self, SearchDoc};
use crate::resp::Sink;
use crate::seqset::{self, RangeSet};
use crate::session::{store_no, Done, Session};

/// What evaluating a key needs beyond the index.
#[derive(Default, Clone, Copy)]
struct Needs {
    headers: bool,
    body: bool,
}

fn needs(k: &SearchKey<'_>, n: &mut Needs) {
    use SearchKey as K;
    match k {
        K::Bcc(_)
        | K::Cc(_)
        | K::From(_)
        | K::To(_)
        | K::Subject(_)
        | K::Header(..)
        | K::SentBefore(_)
        | K::SentOn(_)
        | K::SentSince(_) => n.headers = true,
        K::Body(_) => n.body = true,
        K::Text(_) => {
            n.headers = true;
            n.body = true;
        }
        K::Not(k) => needs(k, n),
        K::Or(a, b) => {
            needs(a, n);
            needs(b, n);
        }
        K::And(list) => list.as_ref().iter().for_each(|k| needs(k, n)),
        _ => {}
    }
}

/// Keys compiled against the view: sets resolved to ranges, strings lower-cased.
enum Key {
    All,
    Seq(RangeSet),
    Uid(RangeSet),
    Flag(u8, bool),
    Keyword(String, bool),
    /// `\Recent` owned by this session (RFC 3501 §2.3.2).
    Recent,
    Larger(u64),
    Smaller(u64),
    Before(chrono::NaiveDate),
    On(chrono::NaiveDate),
    Since(chrono::NaiveDate),
    SentBefore(chrono::NaiveDate),
    SentOn(chrono::NaiveDate),
    SentSince(chrono::NaiveDate),
    Header(String, String),
    Body(String),
    Text(String),
    ModSeq(u64),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
}

fn lower(a: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(a.as_ref()).to_lowercase()
}

fn compile(k: &SearchKey<'_>, exists: u32, max_uid: u32, modseq_used: &mut bool) -> Key {
    use SearchKey as K;
    let date = |d: &imap_codec::imap_types::datetime::NaiveDate| *d.as_ref();
    match k {
        K::All => Key::All,
        K::SequenceSet(s) => Key::Seq(RangeSet::new(seqset::ranges(s, exists))),
        K::Uid(s) => Key::Uid(RangeSet::new(seqset::ranges(s, max_uid))),
        K::Answered => Key::Flag(Flags::ANSWERED, true),
        K::Unanswered => Key::Flag(Flags::ANSWERED, false),
        K::Deleted => Key::Flag(Flags::DELETED, true),
        K::Undeleted => Key::Flag(Flags::DELETED, false),
        K::Draft => Key::Flag(Flags::DRAFT, true),
        K::Undraft => Key::Flag(Flags::DRAFT, false),
        K::Flagged => Key::Flag(Flags::FLAGGED, true),
        K::Unflagged => Key::Flag(Flags::FLAGGED, false),
        K::Seen => Key::Flag(Flags::SEEN, true),
        K::Unseen => Key::Flag(Flags::SEEN, false),
        K::Keyword(a) => Key::Keyword(a.as_ref().to_string(), true),
        K::Unkeyword(a) => Key::Keyword(a.as_ref().to_string(), false),
        // RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT.
        K::Recent => Key::Recent,
        K::New => Key::And(vec![Key::Recent, Key::Flag(Flags::SEEN, false)]),
        K::Old => Key::Not(Box::new(Key::Recent)),
        K::Larger(n) => Key::Larger(u64::from(*n)),
        K::Smaller(n) => Key::Smaller(u64::from(*n)),
        K::Before(d) => Key::Before(date(d)),
        K::On(d) => Key::On(date(d)),
        K::Since(d) => Key::Since(date(d)),
        K::SentBefore(d) => Key::SentBefore(date(d)),
        K::SentOn(d) => Key::SentOn(date(d)),
        K::SentSince(d) => Key::SentSince(date(d)),
        K::From(s) => Key::Header("from".into(), lower(s)),
        K::To(s) => Key::Header("to".into(), lower(s)),
        K::Cc(s) => Key::Header("cc".into(), lower(s)),
        K::Bcc(s) => Key::Header("bcc".into(), lower(s)),
        K::Subject(s) => Key::Header("subject".into(), lower(s)),
        K::Header(name, value) => Key::Header(lower(name), lower(value)),
        K::Body(s) => Key::Body(lower(s)),
        K::Text(s) => Key::Text(lower(s)),
        K::ModSequence { modseq, .. } => {
            *modseq_used = true;
            Key::ModSeq(*modseq)
        }
        K::Not(k) => Key::Not(Box::new(compile(k, exists, max_uid, modseq_used))),
        K::Or(a, b) => Key::Or(
            Box::new(compile(a, exists, max_uid, modseq_used)),
            Box::new(compile(b, exists, max_uid, modseq_used)),
        ),
        K::And(list) => Key::And(
            list.as_ref()
                .iter()
                .map(|k| compile(k, exists, max_uid, modseq_used))
                .collect(),
        ),
    }
}

struct Msg<'a> {
    seq: u32,
    recent: bool,
    meta: &'a MessageMeta,
    doc: Option<&'a SearchDoc>,
}

fn internal_day(unix: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .date_naive()
}

/// Evaluates a key; `None` when it depends on the message's text and the text has
/// not been read (`m.doc` is None). Three-valued (Kleene) logic, so metadata keys
/// decide as many messages as they can before any body is fetched.
fn eval(k: &Key, m: &Msg<'_>) -> Option<bool> {
    let sent = |d: &SearchDoc| {
        d.sent
            .and_then(|(y, mo, d)| chrono::NaiveDate::from_ymd_opt(y, mo, d))
    };
    let text = |f: &dyn Fn(&SearchDoc) -> bool| m.doc.map(f);
    Some(match k {
        Key::All => true,
        Key::Recent => m.recent,
        Key::Seq(r) => r.contains(m.seq),
        Key::Uid(r) => r.contains(m.meta.uid.get()),
        Key::Flag(bit, set) => m.meta.flags.has(*bit) == *set,
        Key::Keyword(kw, set) => {
            m.meta
                .flags
                .keywords
                .iter()
                .any(|k| k.eq_ignore_ascii_case(kw))
                == *set
        }
        Key::Larger(n) => m.meta.size > *n,
        Key::Smaller(n) => m.meta.size < *n,
        Key::Before(d) => internal_day(m.meta.internal_date) < *d,
        Key::On(d) => internal_day(m.meta.internal_date) == *d,
        Key::Since(d) => internal_day(m.meta.internal_date) >= *d,
        Key::SentBefore(d) => return text(&|doc| sent(doc).is_some_and(|s| s < *d)),
        Key::SentOn(d) => return text(&|doc| sent(doc).is_some_and(|s| s == *d)),
        Key::SentSince(d) => return text(&|doc| sent(doc).is_some_and(|s| s >= *d)),
        Key::Header(name, needle) => {
            return text(&|d| {
                d.headers
                    .iter()
                    .any(|(n, v)| n == name && v.contains(needle.as_str()))
            })
        }
        Key::Body(needle) => return text(&|d| d.body.contains(needle.as_str())),
        Key::Text(needle) => {
            return text(&|d| {
                d.body.contains(needle.as_str())
                    || d.headers
                        .iter()
                        .any(|(n, v)| n.contains(needle.as_str()) || v.contains(needle.as_str()))
            })
        }
        Key::ModSeq(n) => m.meta.modseq.get() >= *n,
        Key::Not(k) => return eval(k, m).map(|b| !b),
        Key::Or(a, b) => {
            return match (eval(a, m), eval(b, m)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        Key::And(list) => return all(list, m),
    })
}

/// The strings BODY and TEXT keys look for, wherever they are in the criteria.
fn body_needles<'k>(k: &'k Key, out: &mut Vec<&'k str>) {
    match k {
        Key::Body(s) | Key::Text(s) => out.push(s),
        Key::Not(k) => body_needles(k, out),
        Key::Or(a, b) => {
            body_needles(a, out);
            body_needles(b, out);
        }
        Key::And(list) => list.iter().for_each(|k| body_needles(k, out)),
        _ => {}
    }
}

/// A conjunction of keys (the top-level criteria list is one).
fn all(keys: &[Key], m: &Msg<'_>) -> Option<bool> {
    let mut known = true;
    for k in keys {
        match eval(k, m) {
            Some(false) => return Some(false),
            Some(true) => {}
            None => known = false,
        }
    }
    known.then_some(true)
}

/// A matching message.
pub(crate) struct Hit {
    pub seq: u32,
    pub uid: u32,
    pub modseq: u64,
    pub size: u64,
    pub internal_date: i64,
    pub blob_id: bulwark_store::BlobId,
}

pub(crate) struct Matches {
    pub hits: Vec<Hit>,
    /// A MODSEQ key was used (RFC 7162 §3.1.5: the response reports MODSEQ).
    pub modseq_used: bool,
}

/// Bodies fetched per store round trip for text keys: at most this many messages…
pub(crate) const BATCH_MESSAGES: usize = 256;
/// …and about this many octets (a single larger message is still one batch).
pub(crate) const BATCH_OCTETS: u64 = 4 << 20;

impl Session {
    /// The messages of the selected mailbox that match every key, by ascending
    /// sequence number (SEARCH, and SORT/THREAD before they order them).
    pub(crate) async fn matching(
        &mut self,
        criteria: &Vec1<SearchKey<'_>>,
    ) -> std::io::Result<Result<Matches, Done>> {
        let Some(v) = self.view.as_ref() else {
            return Ok(Err(Done::Bad("No mailbox selected".into())));
        };
        let mut n = Needs::default();
        criteria.as_ref().iter().for_each(|k| needs(k, &mut n));
        let mut modseq_used = false;
        let max_uid = v.uids().last().copied().unwrap_or(0);
        let keys: Vec<Key> = criteria
            .as_ref()
            .iter()
            .map(|k| compile(k, v.exists(), max_uid, &mut modseq_used))
            .collect();
        if modseq_used {
            self.condstore = true;
        }
        let metas = match self.store.list_messages(v.mailbox).await {
            Ok(m) => m,
            Err(e) => return Ok(Err(store_no(&e))),
        };
        let mut hits: Vec<Hit> = Vec::new();
        let mut hit = |seq: u32, meta: &MessageMeta| {
            hits.push(Hit {
                seq,
                uid: meta.uid.get(),
                modseq: meta.modseq.get(),
                size: meta.size,
                internal_date: meta.internal_date,
                blob_id: meta.blob_id,
            });
        };
        let mut needles = Vec::new();
        keys.iter().for_each(|k| body_needles(k, &mut needles));
        // Messages the metadata keys could not decide, waiting for their bodies.
        let mut pending: Vec<(u32, &MessageMeta)> = Vec::new();
        let mut pending_octets = 0u64;
        // Both lists ascend by UID: merge them to get each message's sequence number.
        let uids = v.uids();
        let mut i = 0usize;
        let mut metas_iter = metas.iter();
        loop {
            let next = metas_iter.next();
            if let Some(meta) = next {
                while i < uids.len() && uids[i] < meta.uid.get() {
                    i += 1;
                }
                if i >= uids.len() || uids[i] != meta.uid.get() {
                    continue; // not (yet) in this session's view
                }
                let seq = crate::view::seq_number(i) + 1;
                let m = Msg {
                    seq,
                    recent: v.is_recent(meta.uid.get()),
                    meta,
                    doc: None,
                };
                match all(&keys, &m) {
                    Some(true) => hit(seq, meta),
                    Some(false) => {}
                    None => {
                        pending.push((seq, meta));
                        pending_octets += meta.size;
                    }
                }
            }
            let full = pending.len() >= BATCH_MESSAGES || pending_octets >= BATCH_OCTETS;
            if !pending.is_empty() && (full || next.is_none()) {
                // One round trip for the whole batch instead of one per message.
                let ids: Vec<_> = pending.iter().map(|(_, m)| m.blob_id).collect();
                // The batch's bodies and the text decoded from them, within
                // `[imap] max_inflight_bytes` like FETCH (see `budget`).
                let (_hold, bodies) = match self.read_bodies_held(&ids, pending_octets).await {
                    Ok(r) => r,
                    Err(done) => return Ok(Err(done)),
                };
                // In the order asked, bodies expunged meanwhile left out.
                let mut bodies = bodies.into_iter().peekable();
                for (seq, meta) in pending.drain(..) {
                    let Some((_, raw)) = bodies.next_if(|(id, _)| *id == meta.blob_id) else {
                        continue;
                    };
                    let doc = mime::search_doc_for(&raw, n.body, &needles);
                    let m = Msg {
                        seq,
                        recent: v.is_recent(meta.uid.get()),
                        meta,
                        doc: Some(&doc),
                    };
                    if all(&keys, &m) == Some(true) {
                        hit(seq, meta);
                    }
                }
                pending_octets = 0;
            }
            if next.is_none() {
                break;
            }
        }
        // Messages decided by metadata alone were answered before earlier text matches.
        hits.sort_unstable_by_key(|h| h.seq);
        drop(metas);
        Ok(Ok(Matches { hits, modseq_used }))
    }

    pub(crate) async fn search(
        &mut self,
        tag: &str,
        charset: Option<&str>,
        criteria: &Vec1<SearchKey<'_>>,
        uid: bool,
        ret: Option<ReturnOpts>,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        if let Some(cs) = charset {
            // RFC 9051 §6.4.4: UTF-8 must be supported; US-ASCII is a subset.
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                let code = crate::code::ResponseCode::BadCharset;
                return Ok(Done::No(code.text("Unsupported charset")));
            }
        }
        // RFC 5182 §2.1: a SEARCH that saves and fails leaves `$` empty.
        if ret.is_some_and(|r| r.save) {
            self.saved_uids.clear();
        }
        let Matches { hits, modseq_used } = match self.matching(criteria).await? {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        let num = |h: &Hit| if uid { h.uid } else { h.seq };
        if let Some(ret) = ret {
            let nums: Vec<u32> = hits.iter().map(num).collect();
            if ret.save {
                // RFC 5182 §2.1: with MIN and/or MAX only, just those are saved.
                self.saved_uids = if (ret.min || ret.max) && !(ret.all || ret.count) {
                    let mut k: Vec<u32> = [
                        hits.first().filter(|_| ret.min),
                        hits.last().filter(|_| ret.max),
                    ]
                    .into_iter()
                    .flatten()
                    .map(|h| h.uid)
                    .collect();
                    k.dedup();
                    k
                } else {
                    hits.iter().map(|h| h.uid).collect()
                };
                if ret.answers_nothing() {
                    return Ok(Done::Ok("SEARCH completed, result saved".into()));
                }
            }
            // RFC 4731 §3.2 / RFC 7162 §3.1.5: with only MIN and/or MAX asked, MODSEQ
            // is that of the messages returned, not of every match.
            let modseq = modseq_used.then(|| {
                if (ret.min || ret.max) && !(ret.all || ret.count) {
                    let ends = [
                        hits.first().filter(|_| ret.min),
                        hits.last().filter(|_| ret.max),
                    ];
                    ends.iter().flatten().map(|h| h.modseq).max().unwrap_or(0)
                } else {
                    hits.iter().map(|h| h.modseq).max().unwrap_or(0)
                }
            });
            crate::resp::line(sink, &esearch::response(tag, uid, &ret, &nums, modseq)).await?;
            return Ok(Done::Ok("SEARCH completed".into()));
        }
        let max_modseq = hits.iter().map(|h| h.modseq).max().unwrap_or(0);
        let mut line = String::with_capacity(8 + hits.len() * 7);
        line.push_str("* SEARCH");
        for h in &hits {
            line.push(' ');
            line.push_str(&num(h).to_string());
        }
        if modseq_used && !hits.is_empty() {
            line.push_str(&format!(" (MODSEQ {max_modseq})"));
        }
        crate::resp::line(sink, &line).await?;
        Ok(Done::Ok("SEARCH completed".into()))
    }
}
