//! EXPUNGE, UID EXPUNGE (RFC 9051 §6.4.3, §6.4.9) and STORE (RFC 9051 §6.4.6,
//! UNCHANGEDSINCE: RFC 7162 §3.1.3).

use crate::code::ResponseCode;
use crate::resp::{Resp, Sink};
use crate::seqset;
use crate::session::{bad, no, ok, store_no, to_flags, Done, Session};
use bulwark_store::{FlagOp, ModSeq, Uid};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};

impl Session {
    pub(crate) async fn expunge(
        &mut self,
        set: Option<&imap_codec::imap_types::sequence::SequenceSet>,
    ) -> Done {
        let Some(v) = self.view.as_ref() else {
            return bad("No mailbox selected");
        };
        if v.read_only {
            return no(ResponseCode::ReadOnly.text("Mailbox is read-only"));
        }
        let uids = match set {
            Some(s) => match seqset::resolve(v, s, true) {
                Ok(u) => Some(u),
                Err(e) => return bad(e.to_string()),
            },
            None => None,
        };
        let uids = uids.map(|u| Uid::from_raw(&u));
        match self.store.expunge(v.mailbox, uids.as_deref()).await {
            Ok(_) => {
                self.mark_dirty();
                ok("EXPUNGE completed")
            }
            Err(e) => store_no(&e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_flags(
        &mut self,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::StoreModifier],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let Some(v) = self.view.as_ref() else {
            return Ok(bad("No mailbox selected"));
        };
        if v.read_only {
            return Ok(no(ResponseCode::ReadOnly.text("Mailbox is read-only")));
        }
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(bad(e.to_string())),
        };
        let mut unchanged_since = None;
        for m in modifiers {
            let imap_codec::imap_types::command::StoreModifier::UnchangedSince(n) = m;
            unchanged_since = Some(*n);
            self.condstore = true;
        }
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let change = to_flags(flags);
        let mailbox = v.mailbox;
        let mut result = bulwark_store::FlagUpdate::default();
        for chunk in uids.chunks(5_000) {
            match self
                .store
                .update_flags(
                    mailbox,
                    &Uid::from_raw(chunk),
                    op,
                    &change,
                    unchanged_since.map(ModSeq),
                )
                .await
            {
                Ok(r) => {
                    result.updated.extend(r.updated);
                    result.modified.extend(r.modified);
                }
                Err(e) => return Ok(store_no(&e)),
            }
        }
        self.announce_keywords(result.updated.iter().map(|(_, f, _)| f), sink)
            .await?;
        let condstore = self.condstore;
        let Some(v) = self.view.as_mut() else {
            return Ok(bad("No mailbox selected"));
        };
        for (u, f, modseq) in &result.updated {
            let u = &u.get();
            v.note_own_change(*u, modseq.get());
            if response == StoreResponse::Silent && !condstore {
                continue;
            }
            let Some(seq) = v.seq(*u) else { continue };
            // RFC 7162 §3.2.4: with QRESYNC every FETCH response carries the UID.
            let uid = uid || self.qresync;
            let mut r = Resp::new();
            r.text(&format!("* {seq} FETCH ("));
            if response == StoreResponse::Answer {
                r.text("FLAGS ").flags(f, v.is_recent(*u));
                if uid || condstore {
                    r.text(" ");
                }
            }
            if uid {
                r.text(&format!("UID {u}"));
                if condstore {
                    r.text(" ");
                }
            }
            if condstore {
                r.text(&format!("MODSEQ ({modseq})"));
            }
            r.text(")");
            r.send(sink).await?;
        }
        self.mark_dirty();
        if !result.modified.is_empty() {
            let Some(v) = self.view.as_ref() else {
                return Ok(bad("No mailbox selected"));
            };
            let mut nums: Vec<u32> = if uid {
                result.modified.iter().map(|u| u.get()).collect()
            } else {
                result
                    .modified
                    .iter()
                    .filter_map(|u| v.seq(u.get()))
                    .collect()
            };
            nums.sort_unstable();
            let code = ResponseCode::Modified(seqset::compress(&nums));
            return Ok(ok(code.text("Conditional STORE failed for some messages")));
        }
        Ok(ok("STORE completed"))
    }
}
