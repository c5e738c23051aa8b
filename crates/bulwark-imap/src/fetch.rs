//! FETCH / UID FETCH (RFC 9051 §6.4.5, RFC 7162 CHANGEDSINCE/MODSEQ).
//!
//! Streams: messages are read from the store in chunks and each response is written
//! (and flushed by the connection at its high-water mark) before the next chunk is
//! read, so `1:*` over 100,000 messages holds one chunk of metadata and one body at
//! a time. What to send is planned and rendered without I/O in `fetch_plan`; this
//! is the loop that loads batches and writes.

use std::collections::HashMap;

use bulwark_store::{BlobId, FlagOp, Flags, MessageMeta, ModSeq, Uid};
use imap_codec::imap_types::{
    command::FetchModifier, fetch::MacroOrMessageDataItemNames, sequence::SequenceSet,
};

use crate::code::ResponseCode;
use crate::fetch_plan::{render, FetchPlan, Hole, Loaded, Modifiers, Rendered};
use crate::mime::{self, Summary};
use crate::resp::Sink;
use crate::seqset;
use crate::session::{store_no, Done, Session};

const CHUNK: usize = 200;
/// Octets of a streamed body read from the store at a time.
const STREAM_PIECE: usize = 256 * 1024;

impl Session {
    pub(crate) async fn fetch(
        &mut self,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let mods = Modifiers::new(modifiers, uid, self.qresync);
        if mods.changed_since.is_some() {
            self.condstore = true;
        }
        if let Some(text) = mods.refused {
            return Ok(Done::Bad(text.into()));
        }
        // RFC 7162 §3.2.4: once QRESYNC is on, every FETCH response carries the UID.
        let plan = FetchPlan::new(items, uid || self.qresync, self.condstore);
        if plan.asks_modseq {
            self.condstore = true;
        }
        let Some(v) = self.view.as_ref() else {
            return Ok(Done::Bad("No mailbox selected".into()));
        };
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(Done::Bad(e.to_string().into())),
        };
        if mods.vanished {
            let Some(since) = mods.changed_since else {
                return Ok(Done::Bad("VANISHED needs CHANGEDSINCE".into()));
            };
            if let Err(d) = self.send_vanished(set, since, sink).await? {
                return Ok(d);
            }
        }
        let mut outcome = Outcome::default();
        for chunk in uids.chunks(CHUNK) {
            if let Err(d) = self
                .fetch_chunk(&plan, chunk, mods.changed_since, &mut outcome, sink)
                .await?
            {
                return Ok(d);
            }
        }
        metrics::counter!("bulwark_imap_messages_fetched_total", "listener" => self.cfg.listener)
            .increment(outcome.count);
        Ok(outcome.done())
    }

    /// RFC 7162 §3.2.6: the UIDs of the set expunged since CHANGEDSINCE, first.
    async fn send_vanished(
        &self,
        set: &SequenceSet,
        since: u64,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Result<(), Done>> {
        let Some(v) = self.view.as_ref() else {
            return Ok(Err(Done::Bad("No mailbox selected".into())));
        };
        let changes = match self.store.changes_since(v.mailbox, ModSeq(since)).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(store_no(&e))),
        };
        let asked = seqset::RangeSet::new(seqset::ranges(set, v.max_uid()));
        let mut gone: Vec<u32> = changes
            .expunged
            .into_iter()
            .map(Uid::get)
            .filter(|u| asked.contains(*u))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        if !gone.is_empty() {
            let line = format!("* VANISHED (EARLIER) {}", seqset::compress(&gone));
            crate::resp::line(sink, &line).await?;
        }
        Ok(Ok(()))
    }

    /// One batch of UIDs: metadata, `\Seen`, new keywords, then each response.
    async fn fetch_chunk(
        &mut self,
        plan: &FetchPlan,
        chunk: &[u32],
        changed_since: Option<u64>,
        outcome: &mut Outcome,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Result<(), Done>> {
        let (Some(&first), Some(&last)) = (chunk.first(), chunk.last()) else {
            return Ok(Ok(()));
        };
        let Some(mailbox) = self.view.as_ref().map(|v| v.mailbox) else {
            return Ok(Err(Done::Bad("No mailbox selected".into())));
        };
        let metas = match self
            .store
            .messages_in_range(mailbox, Uid(first), Uid(last))
            .await
        {
            Ok(m) => m,
            Err(e) => return Ok(Err(store_no(&e))),
        };
        let mut metas: Vec<MessageMeta> = metas
            .into_iter()
            .filter(|m| chunk.binary_search(&m.uid.get()).is_ok())
            .filter(|m| changed_since.is_none_or(|c| m.modseq.get() > c))
            .collect();
        let flags_changed = match self.mark_seen(plan, &mut metas).await {
            Ok(f) => f,
            Err(d) => return Ok(Err(d)),
        };
        // Keywords other sessions set since our last FLAGS (RFC 3501 §7.2.6).
        self.announce_keywords(metas.iter().map(|m| &m.flags), sink)
            .await?;
        if metas.len() < chunk.len() && changed_since.is_none() {
            outcome.missing = true;
        }
        let summaries = if plan.need_summary {
            self.summaries(&metas).await
        } else {
            HashMap::new()
        };
        for m in &metas {
            let changed = flags_changed.contains(&m.uid);
            if let Err(d) = self
                .fetch_one(plan, m, changed, &summaries, outcome, sink)
                .await?
            {
                return Ok(Err(d));
            }
        }
        Ok(Ok(()))
    }

    /// \Seen is set by non-PEEK body fetches (RFC 9051 §6.4.5) before the data is
    /// sent, and the new flags are part of the response: the UIDs whose flags changed.
    async fn mark_seen(
        &mut self,
        plan: &FetchPlan,
        metas: &mut [MessageMeta],
    ) -> Result<Vec<Uid>, Done> {
        let mut flags_changed: Vec<Uid> = Vec::new();
        let Some((mailbox, read_only)) = self.view.as_ref().map(|v| (v.mailbox, v.read_only))
        else {
            return Ok(flags_changed);
        };
        if !plan.set_seen || read_only {
            return Ok(flags_changed);
        }
        let unseen: Vec<Uid> = metas
            .iter()
            .filter(|m| !m.flags.has(Flags::SEEN))
            .map(|m| m.uid)
            .collect();
        if unseen.is_empty() {
            return Ok(flags_changed);
        }
        let seen = Flags::new(Flags::SEEN);
        let r = self
            .store
            .update_flags(mailbox, &unseen, FlagOp::Add, &seen, None)
            .await
            .map_err(|e| store_no(&e))?;
        let updated: HashMap<Uid, (Flags, ModSeq)> = r
            .updated
            .into_iter()
            .map(|(u, f, ms)| (u, (f, ms)))
            .collect();
        for m in metas.iter_mut() {
            if let Some((f, ms)) = updated.get(&m.uid) {
                if *f != m.flags {
                    flags_changed.push(m.uid);
                }
                m.flags = f.clone();
                m.modseq = *ms;
                if let Some(v) = self.view.as_mut() {
                    v.note_own_change(m.uid.get(), ms.get());
                }
            }
        }
        self.mark_dirty();
        Ok(flags_changed)
    }

    /// Loads what the plan needs of one message, renders and writes its response.
    async fn fetch_one(
        &mut self,
        plan: &FetchPlan,
        m: &MessageMeta,
        flags_changed: bool,
        summaries: &HashMap<BlobId, Summary>,
        outcome: &mut Outcome,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Result<(), Done>> {
        let Some(seq) = self.view.as_ref().and_then(|v| v.seq(m.uid.get())) else {
            return Ok(Ok(()));
        };
        // BODY[], RFC822 (and their partial forms) are streamed from the store in
        // pieces; any other section, and a structure not cached yet, need the body in
        // memory, within `[imap] max_inflight_bytes`.
        let in_memory = plan.in_memory(summaries.contains_key(&m.blob_id));
        let _hold = if in_memory {
            match self.hold_memory(m.size.saturating_mul(2)) {
                Ok(h) => Some(h),
                Err(done) => return Ok(Err(done)),
            }
        } else {
            None
        };
        let blob = if in_memory {
            match self.store.read_blob(m.blob_id).await {
                Ok(b) => Some(b),
                Err(_) => {
                    outcome.missing = true;
                    return Ok(Ok(()));
                }
            }
        } else {
            None
        };
        // A streamed body is looked up before its response starts, so one expunged
        // meanwhile is left out rather than cut off mid-literal.
        if blob.is_none() && plan.need_whole {
            if let Err(e) = self.store.read_blob_range(m.blob_id, 0, 1).await {
                if !matches!(e, bulwark_store::StoreError::NotFound(_)) {
                    return Ok(Err(store_no(&e)));
                }
                outcome.missing = true;
                return Ok(Ok(()));
            }
        }
        let computed;
        let summary = match summaries.get(&m.blob_id) {
            Some(s) => Some(s),
            None if plan.need_summary => {
                computed = mime::compute_summary(blob.as_deref().unwrap_or_default());
                self.cache_summary(m.blob_id, &computed);
                Some(&computed)
            }
            None => None,
        };
        let loaded = Loaded {
            meta: m,
            seq,
            recent: self.view.as_ref().is_some_and(|v| v.is_recent(m.uid.get())),
            flags_changed,
            blob: blob.as_deref(),
            summary,
        };
        let rendered = render(plan, &loaded);
        outcome.unknown_cte |= rendered.unknown_cte;
        self.write_rendered(rendered, m.blob_id, sink).await?;
        outcome.count += 1;
        Ok(Ok(()))
    }

    /// Writes a rendered response, filling its holes: from memory piece by piece, or
    /// streamed from the store.
    async fn write_rendered(
        &self,
        rendered: Rendered<'_>,
        blob: BlobId,
        sink: &mut dyn Sink,
    ) -> std::io::Result<()> {
        let Rendered {
            mut resp, holes, ..
        } = rendered;
        if holes.is_empty() {
            return resp.send(sink).await;
        }
        let data = resp.take_data();
        let mut at = 0;
        for (offset, hole) in holes {
            sink.send_part(&data[at..offset]).await?;
            at = offset;
            match hole {
                Hole::Memory(d, range) => {
                    for piece in d[range].chunks(STREAM_PIECE) {
                        sink.send_part(piece).await?;
                    }
                }
                Hole::Stream { start, end } => self.stream_body(blob, start, end, sink).await?,
            }
        }
        resp.data = data[at..].to_vec();
        resp.send(sink).await
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
            // At most STREAM_PIECE, a usize: the fallback is never taken.
            let want = usize::try_from((end - at).min(STREAM_PIECE as u64)).unwrap_or(STREAM_PIECE);
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

/// What the batches of one FETCH added up to.
#[derive(Default)]
struct Outcome {
    /// Responses sent.
    count: u64,
    /// Messages expunged meanwhile (left out).
    missing: bool,
    /// A BINARY part was sent as NIL.
    unknown_cte: bool,
}

impl Outcome {
    fn done(&self) -> Done {
        if self.unknown_cte {
            // RFC 3516 §4.2: the part was sent as NIL; the command says why.
            let code = ResponseCode::UnknownCte;
            return Done::No(code.text("A part's Content-Transfer-Encoding cannot be decoded"));
        }
        if self.missing {
            // RFC 5530: another session expunged some of them meanwhile.
            let code = ResponseCode::ExpungeIssued;
            return Done::Ok(code.text("Some messages were expunged meanwhile"));
        }
        Done::Ok("FETCH completed".into())
    }
}
