//! FETCH / UID FETCH (RFC 9051 §6.4.5, RFC 7162 CHANGEDSINCE/MODSEQ).
//!
//! Streams: messages are read from the store in chunks and each response is written
//! (and flushed by the connection at its high-water mark) before the next chunk is
//! read, so `1:*` over 100,000 messages holds one chunk of metadata and one body at
//! a time.

use std::collections::HashMap;

use bulwark_store::{BlobId, FlagOp, Flags, MessageMeta};
use imap_codec::imap_types::{
    command::FetchModifier,
    fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Part, Section},
    sequence::SequenceSet,
};

use crate::code::ResponseCode;
use crate::mime::{self, SectionText, Summary};
use crate::resp::{internal_date, Resp, Sink};
use crate::seqset;
use crate::session::{store_no, Done, Session};

const CHUNK: usize = 200;
/// Octets of a streamed body read from the store at a time.
const STREAM_PIECE: usize = 256 * 1024;

/// A literal from memory: announced, then sent in pieces rather than copied into the
/// response first (the log gets its placeholder).
async fn send_literal(r: &mut Resp, data: &[u8], sink: &mut dyn Sink) -> std::io::Result<()> {
    r.literal_head(data.len() as u64);
    sink.send_part(&r.take_data()).await?;
    for piece in data.chunks(STREAM_PIECE) {
        sink.send_part(piece).await?;
    }
    Ok(())
}

/// One requested item, reduced to what we need to produce it.
#[derive(Debug, Clone)]
enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    BodyStructure,
    /// BODY without section: the non-extensible structure.
    Body,
    ModSeq,
    Section {
        /// How the item is named in the response, e.g. `BODY[HEADER]` or `RFC822`.
        label: String,
        path: Vec<u32>,
        what: SectionText,
        partial: Option<(u32, u32)>,
    },
    /// RFC 3516 `BINARY[path]<partial>` or, with `size`, `BINARY.SIZE[path]`.
    Binary {
        path: Vec<u32>,
        partial: Option<(u32, u32)>,
        size: bool,
    },
}

fn part_path(p: &Option<Part>) -> Vec<u32> {
    p.as_ref()
        .map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
        .unwrap_or_default()
}

fn path_label(path: &[u32]) -> String {
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn section_spec(section: &Option<Section<'_>>) -> (Vec<u32>, SectionText, String) {
    let join = |path: &[u32], what: &str| {
        let p = path_label(path);
        if p.is_empty() {
            what.to_string()
        } else if what.is_empty() {
            p
        } else {
            format!("{p}.{what}")
        }
    };
    let names = |v: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase())
            .collect()
    };
    match section {
        None => (Vec::new(), SectionText::Whole, String::new()),
        Some(Section::Part(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            let label = path_label(&path);
            (path, SectionText::Whole, label)
        }
        Some(Section::Header(p)) => {
            let path = part_path(p);
            let l = join(&path, "HEADER");
            (path, SectionText::Header, l)
        }
        Some(Section::HeaderFields(p, list)) | Some(Section::HeaderFieldsNot(p, list)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let path = part_path(p);
            let n = names(list.as_ref());
            let what = if not {
                "HEADER.FIELDS.NOT"
            } else {
                "HEADER.FIELDS"
            };
            let l = format!("{} ({})", join(&path, what), n.join(" "));
            (path, SectionText::HeaderFields { names: n, not }, l)
        }
        Some(Section::Text(p)) => {
            let path = part_path(p);
            let l = join(&path, "TEXT");
            (path, SectionText::Text, l)
        }
        Some(Section::Mime(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            let l = join(&path, "MIME");
            (path, SectionText::Mime, l)
        }
    }
}

impl Session {
    pub(crate) async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let names: Vec<MessageDataItemName<'_>> = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                use imap_codec::imap_types::fetch::Macro;
                use MessageDataItemName as N;
                match m {
                    Macro::Fast => vec![N::Flags, N::InternalDate, N::Rfc822Size],
                    Macro::All => vec![N::Flags, N::InternalDate, N::Rfc822Size, N::Envelope],
                    _ => vec![
                        N::Flags,
                        N::InternalDate,
                        N::Rfc822Size,
                        N::Envelope,
                        N::Body,
                    ],
                }
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => n,
        };
        let mut changed_since = None;
        let mut vanished = false;
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => {
                    changed_since = Some(n.get());
                    self.condstore = true;
                }
                // RFC 7162 §3.2.6: only in UID FETCH, with CHANGEDSINCE, once QRESYNC is on.
                FetchModifier::Vanished if self.qresync && uid => vanished = true,
                FetchModifier::Vanished => {
                    return Ok(Done::Bad(
                        "VANISHED needs ENABLE QRESYNC, UID FETCH and CHANGEDSINCE".into(),
                    ))
                }
            }
        }
        let mut list: Vec<Item> = Vec::new();
        let mut set_seen = false;
        // RFC 7162 §3.2.4: once QRESYNC is on, every FETCH response carries the UID.
        let uid_item = uid || self.qresync;
        if uid_item {
            list.push(Item::Uid);
        }
        for n in names {
            let it = match n {
                MessageDataItemName::Uid => {
                    if uid_item {
                        continue;
                    }
                    Item::Uid
                }
                MessageDataItemName::Flags => Item::Flags,
                MessageDataItemName::InternalDate => Item::InternalDate,
                MessageDataItemName::Rfc822Size => Item::Size,
                MessageDataItemName::Envelope => Item::Envelope,
                MessageDataItemName::BodyStructure => Item::BodyStructure,
                MessageDataItemName::Body => Item::Body,
                MessageDataItemName::ModSeq => {
                    self.condstore = true;
                    Item::ModSeq
                }
                MessageDataItemName::Rfc822 => {
                    set_seen = true;
                    Item::Section {
                        label: "RFC822".into(),
                        path: vec![],
                        what: SectionText::Whole,
                        partial: None,
                    }
                }
                MessageDataItemName::Rfc822Header => Item::Section {
                    label: "RFC822.HEADER".into(),
                    path: vec![],
                    what: SectionText::Header,
                    partial: None,
                },
                MessageDataItemName::Rfc822Text => {
                    set_seen = true;
                    Item::Section {
                        label: "RFC822.TEXT".into(),
                        path: vec![],
                        what: SectionText::Text,
                        partial: None,
                    }
                }
                MessageDataItemName::BodyExt {
                    section,
                    partial,
                    peek,
                } => {
                    if !peek {
                        set_seen = true;
                    }
                    let (path, what, spec) = section_spec(&section);
                    Item::Section {
                        label: format!("BODY[{spec}]"),
                        path,
                        what,
                        partial: partial.map(|(o, n)| (o, n.get())),
                    }
                }
                MessageDataItemName::Binary {
                    section,
                    partial,
                    peek,
                } => {
                    if !peek {
                        set_seen = true;
                    }
                    Item::Binary {
                        path: section.iter().map(|n| n.get()).collect(),
                        partial: partial.map(|(o, n)| (o, n.get())),
                        size: false,
                    }
                }
                MessageDataItemName::BinarySize { section } => Item::Binary {
                    path: section.iter().map(|n| n.get()).collect(),
                    partial: None,
                    size: true,
                },
            };
            list.push(it);
        }
        if self.condstore && !list.iter().any(|i| matches!(i, Item::ModSeq)) {
            // RFC 7162 §3.1.4.1: once CONDSTORE is on, FETCH responses carry MODSEQ.
            list.push(Item::ModSeq);
        }
        let Some(v) = self.view.as_ref() else {
            return Ok(Done::Bad("No mailbox selected".into()));
        };
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(Done::Bad(e.to_string().into())),
        };
        if vanished {
            let Some(since) = changed_since else {
                return Ok(Done::Bad("VANISHED needs CHANGEDSINCE".into()));
            };
            // RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE, first.
            let changes = match self.store.changes_since(v.mailbox, since).await {
                Ok(c) => c,
                Err(e) => return Ok(store_no(&e)),
            };
            let asked = seqset::RangeSet::new(seqset::ranges(set, v.max_uid()));
            let mut gone: Vec<u32> = changes
                .expunged
                .into_iter()
                .filter(|u| asked.contains(*u))
                .collect();
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                let line = format!("* VANISHED (EARLIER) {}", seqset::compress(&gone));
                crate::resp::line(sink, &line).await?;
            }
        }
        let Some(v) = self.view.as_ref() else {
            return Ok(Done::Bad("No mailbox selected".into()));
        };
        let mailbox = v.mailbox;
        let read_only = v.read_only;
        // Sections other than the whole message need it parsed or cut in memory, and
        // so does BINARY (RFC 3516: decoded from the parsed part).
        let need_parts = list.iter().any(|i| {
            matches!(i, Item::Binary { .. })
                || matches!(i, Item::Section { path, what, .. }
                if !(path.is_empty() && matches!(what, SectionText::Whole)))
        });
        let need_whole = list.iter().any(|i| {
            matches!(i, Item::Section { path, what, .. }
                if path.is_empty() && matches!(what, SectionText::Whole))
        });
        let mut unknown_cte = false;
        let need_summary = list
            .iter()
            .any(|i| matches!(i, Item::Envelope | Item::BodyStructure | Item::Body));

        let mut missing = false;
        let mut count = 0u64;
        for chunk in uids.chunks(CHUNK) {
            let (Some(&first), Some(&last)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            let metas = match self.store.messages_in_range(mailbox, first, last).await {
                Ok(m) => m,
                Err(e) => return Ok(store_no(&e)),
            };
            let mut metas: Vec<MessageMeta> = metas
                .into_iter()
                .filter(|m| chunk.binary_search(&m.uid).is_ok())
                .filter(|m| changed_since.is_none_or(|c| m.modseq > c))
                .collect();
            // \Seen is set by non-PEEK body fetches (RFC 9051 §6.4.5) before the
            // data is sent, and the new flags are part of the response.
            let mut flags_changed: Vec<u32> = Vec::new();
            if set_seen && !read_only {
                let unseen: Vec<u32> = metas
                    .iter()
                    .filter(|m| !m.flags.has(Flags::SEEN))
                    .map(|m| m.uid)
                    .collect();
                if !unseen.is_empty() {
                    let r = match self
                        .store
                        .update_flags(
                            mailbox,
                            &unseen,
                            FlagOp::Add,
                            &Flags::new(Flags::SEEN),
                            None,
                        )
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => return Ok(store_no(&e)),
                    };
                    let updated: HashMap<u32, (Flags, u64)> = r
                        .updated
                        .into_iter()
                        .map(|(u, f, ms)| (u, (f, ms)))
                        .collect();
                    for m in &mut metas {
                        if let Some((f, ms)) = updated.get(&m.uid) {
                            if *f != m.flags {
                                flags_changed.push(m.uid);
                            }
                            m.flags = f.clone();
                            m.modseq = *ms;
                            if let Some(v) = self.view.as_mut() {
                                v.note_own_change(m.uid, *ms);
                            }
                        }
                    }
                    self.mark_dirty();
                }
            }
            // Keywords other sessions set since our last FLAGS (RFC 3501 §7.2.6).
            self.announce_keywords(metas.iter().map(|m| &m.flags), sink)
                .await?;
            if metas.len() < chunk.len() && changed_since.is_none() {
                missing = true;
            }
            let summaries = if need_summary {
                self.summaries(&metas).await
            } else {
                HashMap::new()
            };
            for m in &metas {
                let Some(seq) = self.view.as_ref().and_then(|v| v.seq(m.uid)) else {
                    continue;
                };
                // BODY[], RFC822 (and their partial forms) are streamed from the store
                // in pieces; any other section, and a structure not cached yet, need
                // the body in memory, within `[imap] max_inflight_bytes` (the body and
                // the section cut from it).
                let in_memory = need_parts || (need_summary && !summaries.contains_key(&m.blob_id));
                let _hold = if in_memory {
                    match self.hold_memory(m.size.saturating_mul(2)) {
                        Ok(h) => Some(h),
                        Err(done) => return Ok(done),
                    }
                } else {
                    None
                };
                let blob = if in_memory {
                    match self.store.read_blob(m.blob_id).await {
                        Ok(b) => Some(b),
                        Err(_) => {
                            missing = true;
                            continue;
                        }
                    }
                } else {
                    None
                };
                // A streamed body is looked up before its response starts, so one
                // expunged meanwhile is left out rather than cut off mid-literal.
                if blob.is_none() && need_whole {
                    if let Err(e) = self.store.read_blob_range(m.blob_id, 0, 1).await {
                        if !matches!(e, bulwark_store::StoreError::NotFound(_)) {
                            return Ok(store_no(&e));
                        }
                        missing = true;
                        continue;
                    }
                }
                let summary = match summaries.get(&m.blob_id) {
                    Some(s) => Some(s.clone()),
                    None if need_summary => {
                        let s = mime::compute_summary(blob.as_deref().unwrap_or_default());
                        self.cache_summary(m.blob_id, &s);
                        Some(s)
                    }
                    None => None,
                };
                let (flags, modseq) = (&m.flags, m.modseq);
                let recent = self.view.as_ref().is_some_and(|v| v.is_recent(m.uid));
                let flags_changed = flags_changed.contains(&m.uid);
                let mut r = Resp::new();
                r.text(&format!("* {seq} FETCH ("));
                let mut first_item = true;
                let mut sep = |r: &mut Resp| {
                    if !first_item {
                        r.text(" ");
                    }
                    first_item = false;
                };
                let mut sent_flags = false;
                for it in &list {
                    sep(&mut r);
                    match it {
                        Item::Uid => {
                            r.text(&format!("UID {}", m.uid));
                        }
                        Item::Flags => {
                            sent_flags = true;
                            r.text("FLAGS ").flags(flags, recent);
                        }
                        Item::InternalDate => {
                            r.text("INTERNALDATE ")
                                .text(&internal_date(m.internal_date));
                        }
                        Item::Size => {
                            r.text(&format!("RFC822.SIZE {}", m.size));
                        }
                        Item::ModSeq => {
                            r.text(&format!("MODSEQ ({modseq})"));
                        }
                        Item::Envelope => {
                            r.text("ENVELOPE ");
                            if let Some(s) = &summary {
                                r.opaque(&s.envelope, "(…)");
                            }
                        }
                        Item::BodyStructure => {
                            r.text("BODYSTRUCTURE ");
                            if let Some(s) = &summary {
                                r.opaque(&s.bodystructure, "(…)");
                            }
                        }
                        Item::Body => {
                            r.text("BODY ");
                            if let Some(s) = &summary {
                                r.opaque(&s.body, "(…)");
                            }
                        }
                        Item::Section {
                            label,
                            path,
                            what,
                            partial,
                        } => {
                            let whole = path.is_empty() && matches!(what, SectionText::Whole);
                            match &blob {
                                None if whole => {
                                    // <origin.len> (RFC 9051 §6.4.5) cut from the size.
                                    let (start, end) = match partial {
                                        Some((o, l)) => {
                                            let o = u64::from(*o).min(m.size);
                                            (o, o.saturating_add(u64::from(*l)).min(m.size))
                                        }
                                        None => (0, m.size),
                                    };
                                    match partial {
                                        Some((o, _)) => r.text(&format!("{label}<{o}> ")),
                                        None => r.text(&format!("{label} ")),
                                    };
                                    r.literal_head(end - start);
                                    sink.send_part(&r.take_data()).await?;
                                    self.stream_body(m.blob_id, start, end, sink).await?;
                                }
                                _ => {
                                    // Only part numbers parse the message; HEADER and
                                    // TEXT are cut from the raw octets.
                                    let raw = blob.as_deref().unwrap_or_default();
                                    let data = mime::section(raw, path, what);
                                    match partial {
                                        Some((origin, len)) => {
                                            r.text(&format!("{label}<{origin}> "));
                                            let d: &[u8] = data.as_deref().unwrap_or_default();
                                            let start = (*origin as usize).min(d.len());
                                            let end =
                                                start.saturating_add(*len as usize).min(d.len());
                                            send_literal(&mut r, &d[start..end], sink).await?;
                                        }
                                        None => {
                                            r.text(&format!("{label} "));
                                            match data {
                                                Some(d) => send_literal(&mut r, &d, sink).await?,
                                                None => {
                                                    r.text("NIL");
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        Item::Binary {
                            path,
                            partial,
                            size,
                        } => {
                            let raw = blob.as_deref().unwrap_or_default();
                            let label = path_label(path);
                            let data = crate::binary::section(raw, path).unwrap_or_else(|_| {
                                unknown_cte = true;
                                None
                            });
                            if *size {
                                let n = data.as_deref().map_or(0, <[u8]>::len);
                                r.text(&format!("BINARY.SIZE[{label}] {n}"));
                            } else {
                                let d: &[u8] = data.as_deref().unwrap_or_default();
                                let (start, end) = match partial {
                                    Some((origin, len)) => {
                                        r.text(&format!("BINARY[{label}]<{origin}> "));
                                        let start = (*origin as usize).min(d.len());
                                        (start, start.saturating_add(*len as usize).min(d.len()))
                                    }
                                    None => {
                                        r.text(&format!("BINARY[{label}] "));
                                        (0, d.len())
                                    }
                                };
                                if data.is_none() {
                                    r.text("NIL");
                                } else {
                                    if crate::binary::needs_literal8(d) {
                                        r.text("~");
                                    }
                                    r.literal(&d[start..end]);
                                }
                            }
                        }
                    }
                }
                if flags_changed && !sent_flags {
                    sep(&mut r);
                    r.text("FLAGS ").flags(flags, recent);
                }
                r.text(")");
                r.send(sink).await?;
                count += 1;
            }
        }
        metrics::counter!("bulwark_imap_messages_fetched_total", "listener" => self.cfg.listener)
            .increment(count);
        if unknown_cte {
            // RFC 3516 §4.2: the part was sent as NIL; the command says why.
            let code = ResponseCode::UnknownCte;
            return Ok(Done::No(
                code.text("A part's Content-Transfer-Encoding cannot be decoded"),
            ));
        }
        if missing {
            // RFC 5530: another session expunged some of them meanwhile.
            let code = ResponseCode::ExpungeIssued;
            return Ok(Done::Ok(code.text("Some messages were expunged meanwhile")));
        }
        Ok(Done::Ok("FETCH completed".into()))
    }

    /// Sends octets `start..end` of a body, read from the store a piece at a time:
    /// a session fetching a 60 MB message holds one piece, not the message, however
    /// slowly its client reads. A body that vanishes mid-literal (expunged by another
    /// session meanwhile) cannot be answered correctly any more: the connection is
    /// closed (the client resynchronises on reconnect).
    async fn stream_body(
        &self,
        blob: BlobId,
        start: u64,
        end: u64,
        sink: &mut dyn Sink,
    ) -> std::io::Result<()> {
        let mut at = start;
        while at < end {
            let want = (end - at).min(STREAM_PIECE as u64) as usize;
            let piece = self
                .store
                .read_blob_range(blob, at, want)
                .await
                .map_err(|e| std::io::Error::other(format!("message body unreadable: {e}")))?;
            if piece.len() != want {
                return Err(std::io::Error::other(
                    "message body is shorter than its recorded size",
                ));
            }
            sink.send_part(&piece).await?;
            at += want as u64;
        }
        Ok(())
    }

    /// Cached ENVELOPE/BODYSTRUCTURE for the chunk's bodies.
    async fn summaries(&self, metas: &[MessageMeta]) -> HashMap<BlobId, Summary> {
        let blobs: Vec<BlobId> = metas.iter().map(|m| m.blob_id).collect();
        match self.store.blob_summaries(&blobs).await {
            Ok(v) => v
                .into_iter()
                .filter_map(|(b, s)| Summary::decode(&s).map(|s| (b, s)))
                .collect(),
            Err(_) => HashMap::new(),
        }
    }

    /// Stores a computed summary without making the client wait for the write.
    fn cache_summary(&self, blob: BlobId, s: &Summary) {
        let store = self.store.clone();
        let bytes = s.encode();
        tokio::spawn(async move {
            if let Err(e) = store.set_blob_summary(blob, &bytes).await {
                tracing::debug!(target: "bulwark::imap", error = %e, "cannot cache message summary");
            }
        });
    }
}
