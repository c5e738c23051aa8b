//! COPY and MOVE (RFC 9051 §6.4.7-§6.4.8, RFC 6851) with COPYUID (RFC 4315).

use crate::code::ResponseCode;
use crate::resp::{self, Sink};
use crate::seqset;
use crate::session::{bad, no, ok, store_no, Done, Session};
use bulwark_store::Uid;
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;

impl Session {
    pub(crate) async fn copy(
        &mut self,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        wire: &WireMailbox<'_>,
        uid: bool,
        is_move: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let Some(v) = self.view.as_ref() else {
            return Ok(bad("No mailbox selected"));
        };
        if is_move && v.read_only {
            return Ok(no(ResponseCode::ReadOnly.text("Mailbox is read-only")));
        }
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(bad(e.to_string())),
        };
        let src = v.mailbox;
        let dst = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(Done::No(r)) if r.has(&ResponseCode::Nonexistent) => {
                return Ok(no(ResponseCode::TryCreate.text("No such mailbox")))
            }
            Err(d) => return Ok(d),
        };
        let verb = if is_move { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(ok(format!("{verb} completed (no messages)")));
        }
        // One store transaction, whatever the count: all or nothing (RFC 9051
        // §6.4.7, RFC 6851 §3.3).
        let r = if is_move {
            self.store
                .move_messages(src, &Uid::from_raw(&uids), dst.id)
                .await
        } else {
            self.store
                .copy_messages(src, &Uid::from_raw(&uids), dst.id)
                .await
        };
        let (uidvalidity, pairs) = match r {
            Ok(r) => (r.uidvalidity, r.pairs),
            Err(e) => return Ok(store_no(&e)),
        };
        self.mark_dirty();
        metrics::counter!("bulwark_imap_messages_copied_total", "listener" => self.cfg.listener, "op" => verb).increment(pairs.len() as u64);
        if pairs.is_empty() {
            return Ok(ok(format!("{verb} completed (no messages)")));
        }
        let src_set: Vec<u32> = pairs.iter().map(|p| p.0.get()).collect();
        let dst_set: Vec<u32> = pairs.iter().map(|p| p.1.get()).collect();
        // RFC 4315 §3: COPYUID lists source and destination UIDs in matching order;
        // ranges only where both sides run together.
        let (s, d) = uid_pair_sets(&src_set, &dst_set);
        let code = ResponseCode::CopyUid {
            uidvalidity,
            src: s,
            dst: d,
        };
        if is_move {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            resp::line(sink, &code.untagged_ok("Moved")).await?;
            Ok(ok("MOVE completed"))
        } else {
            Ok(ok(code.text("COPY completed")))
        }
    }
}

/// COPYUID sets: both lists in the same order, compressed only where both run
/// consecutively, so the n-th source UID still maps to the n-th destination UID.
pub(crate) fn uid_pair_sets(src: &[u32], dst: &[u32]) -> (String, String) {
    let mut s = String::new();
    let mut d = String::new();
    let mut i = 0;
    while i < src.len() {
        let mut j = i;
        while j + 1 < src.len()
            && src[j + 1] == src[j].wrapping_add(1)
            && dst[j + 1] == dst[j].wrapping_add(1)
        {
            j += 1;
        }
        if !s.is_empty() {
            s.push(',');
            d.push(',');
        }
        if i == j {
            s.push_str(&src[i].to_string());
            d.push_str(&dst[i].to_string());
        } else {
            s.push_str(&format!("{}:{}", src[i], src[j]));
            d.push_str(&format!("{}:{}", dst[i], dst[j]));
        }
        i = j + 1;
    }
    (s, d)
}
