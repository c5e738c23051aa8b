//! SELECT and EXAMINE (RFC 9051 §6.3.2-§6.3.3) with CONDSTORE/QRESYNC parameters
//! (RFC 7162 §3.1.8, §3.2.5), and the FLAGS/PERMANENTFLAGS lines.

use crate::code::ResponseCode;
use crate::resp::{self, Resp, Sink};
use crate::seqset;
use crate::session::{bad, ok, store_no, Done, Session};
use crate::view::View;
use bulwark_store::{Flags, ModSeq, Uid};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;

impl Session {
    /// SELECT/EXAMINE with RFC 7162 parameters: (CONDSTORE) turns CONDSTORE on;
    /// (QRESYNC (uidvalidity modseq [known-uids])) also reports what changed since
    /// (§3.2.5): `* VANISHED (EARLIER)` for expunged UIDs, FETCH for flag changes.
    pub(crate) async fn select_with(
        &mut self,
        wire: &WireMailbox<'_>,
        parameters: &[imap_codec::imap_types::command::SelectParameter],
        read_only: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        use imap_codec::imap_types::command::SelectParameter;
        let mut resync = None;
        for p in parameters {
            self.condstore = true;
            if let SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } = p
            {
                if !self.qresync {
                    // RFC 7162 §3.2.5: QRESYNC parameters before ENABLE QRESYNC are BAD.
                    return Ok(bad("QRESYNC is not enabled (ENABLE QRESYNC first)"));
                }
                resync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids));
            }
        }
        let done = self.select(wire, read_only, sink).await?;
        let (Done::Ok(_), Some((uidvalidity, since, known))) = (&done, resync) else {
            return Ok(done);
        };
        let Some(v) = self.view.as_ref() else {
            return Ok(done);
        };
        // A different UIDVALIDITY: the client must resynchronise from scratch, and
        // the normal SELECT responses already say so.
        if v.uidvalidity != uidvalidity {
            return Ok(done);
        }
        let mailbox = v.mailbox;
        let changes = match self.store.changes_since(mailbox, ModSeq(since)).await {
            Ok(c) => c,
            Err(e) => return Ok(store_no(&e)),
        };
        let known = known
            .as_ref()
            .map(|k| seqset::RangeSet::new(seqset::ranges(k, u32::MAX)));
        let mut vanished: Vec<u32> = changes
            .expunged
            .iter()
            .map(|u| u.get())
            .filter(|u| known.as_ref().is_none_or(|k| k.contains(*u)))
            .collect();
        vanished.sort_unstable();
        vanished.dedup();
        if !vanished.is_empty() {
            let line = format!("* VANISHED (EARLIER) {}", seqset::compress(&vanished));
            resp::line(sink, &line).await?;
        }
        self.announce_keywords(changes.changed.iter().map(|m| &m.flags), sink)
            .await?;
        let Some(v) = self.view.as_ref() else {
            return Ok(done);
        };
        for m in &changes.changed {
            let Some(seq) = v.seq(m.uid.get()) else {
                continue;
            };
            let mut r = Resp::new();
            r.text(&format!("* {seq} FETCH (UID {} FLAGS ", m.uid));
            r.flags(&m.flags, v.is_recent(m.uid.get()));
            r.text(&format!(" MODSEQ ({}))", m.modseq));
            r.send(sink).await?;
        }
        Ok(done)
    }

    pub(crate) async fn select(
        &mut self,
        wire: &WireMailbox<'_>,
        read_only: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        // Selecting deselects first, even if the new SELECT fails (RFC 9051 §6.3.2).
        if self.view.is_some() {
            self.unselect();
            resp::line(
                sink,
                &ResponseCode::Closed.untagged_ok("Previous mailbox closed"),
            )
            .await?;
        }
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        // Watch before reading so no change falls between the read and the watch.
        let watch = self.notifier.watch(mb.id);
        let msgs = match self.store.list_messages(mb.id).await {
            Ok(m) => m,
            Err(e) => return Ok(store_no(&e)),
        };
        let mut uids = Vec::with_capacity(msgs.len());
        let mut first_unseen = None;
        let mut max_modseq = mb.highest_modseq.get();
        for (i, m) in msgs.iter().enumerate() {
            uids.push(m.uid.get());
            if first_unseen.is_none() && !m.flags.has(Flags::SEEN) {
                first_unseen = Some(i + 1);
            }
            max_modseq = max_modseq.max(m.modseq.get());
        }
        let uidnext = mb
            .uidnext
            .max(uids.last().map_or(1, |u| u.saturating_add(1)));
        let exists = uids.len();
        let mut view = View::new(
            mb.id,
            mb.name.clone(),
            mb.uidvalidity,
            read_only,
            uids,
            mb.highest_modseq.get(),
        );
        for m in &msgs {
            for k in &m.flags.keywords {
                view.add_keyword(k);
            }
        }
        drop(msgs);
        write_flags_lines(sink, &view).await?;
        // RFC 3501 §2.3.2: SELECT claims `\Recent` of what arrived since the last claim
        // (in the store, so one session in the whole cluster owns each message);
        // EXAMINE shows the unclaimed messages as recent without claiming them.
        let below = view.max_uid().saturating_add(1);
        if read_only || mb.first_recent_uid >= below {
            view.add_recent(mb.first_recent_uid, below);
        } else {
            match self.store.claim_recent(mb.id, Uid(below)).await {
                Ok(from) => view.add_recent(from.get(), below),
                Err(e) => return Ok(store_no(&e)),
            }
        }
        resp::line(sink, &format!("* {exists} EXISTS")).await?;
        resp::line(sink, &format!("* {} RECENT", view.recent_count())).await?;
        if let Some(u) = first_unseen {
            resp::line(sink, &ResponseCode::Unseen(u).untagged_ok("First unseen")).await?;
        }
        resp::line(
            sink,
            &ResponseCode::UidValidity(mb.uidvalidity).untagged_ok("UIDs valid"),
        )
        .await?;
        resp::line(
            sink,
            &ResponseCode::UidNext(uidnext).untagged_ok("Predicted next UID"),
        )
        .await?;
        let line = ResponseCode::HighestModSeq(max_modseq).untagged_ok("Highest");
        resp::line(sink, &line).await?;
        self.view = Some(view);
        self.watch = Some(watch);
        // Changes between reading the mailbox row and the messages are picked up
        // by the first sync.
        self.dirty = true;
        Ok(if read_only {
            ok(ResponseCode::ReadOnly.text("EXAMINE completed"))
        } else {
            ok(ResponseCode::ReadWrite.text("SELECT completed"))
        })
    }
}

/// The FLAGS response and PERMANENTFLAGS code of the selected mailbox (RFC 3501
/// §7.2.6, §7.1): system flags plus the keywords in use; `\*` lets clients create
/// keywords. Sent at SELECT and again whenever a new keyword appears.
pub(crate) async fn write_flags_lines(sink: &mut dyn Sink, v: &View) -> std::io::Result<()> {
    let mut flags: Vec<String> = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        .iter()
        .map(|f| f.to_string())
        .chain(v.keywords().iter().cloned())
        .collect();
    resp::line(sink, &format!("* FLAGS ({})", flags.join(" "))).await?;
    if v.read_only {
        let code = ResponseCode::PermanentFlags(Vec::new());
        resp::line(sink, &code.untagged_ok("Read-only mailbox")).await
    } else {
        flags.push("\\*".to_string());
        let code = ResponseCode::PermanentFlags(flags);
        resp::line(sink, &code.untagged_ok("Flags permitted")).await
    }
}
