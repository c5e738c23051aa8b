//! A session's view of its selected mailbox: the sequence-number ↔ UID map and the
//! updates not yet told to the client.
//!
//! RFC 9051 §7.5.1 / §5.5: sequence numbers change only when the server says so
//! (EXPUNGE), and the server must not send EXPUNGE while a FETCH, STORE or SEARCH by
//! sequence number runs (nor at all outside a command, except in IDLE). So the view
//! is changed only by `sync`, which the session calls at the allowed points; between
//! them other sessions' expunges are remembered as pending.
//!
//! Memory: one `u32` per message (400 KB for 100,000 messages); flags are not kept —
//! FETCH and SEARCH read them from the store, unsolicited FETCH comes from
//! `changes_since`.

use std::collections::HashMap;

use bulwark_store::{Flags, MailboxChanges, MailboxId};

/// What `sync` decided to tell the client, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Updates {
    /// Sequence numbers to announce as expunged, in the order to send them (each
    /// relative to the state after the previous one).
    pub expunged: Vec<u32>,
    /// The same messages' UIDs, ascending (RFC 7162 §3.2.10 VANISHED once QRESYNC is on).
    pub vanished: Vec<u32>,
    /// New EXISTS count, when it changed (or any message was added).
    pub exists: Option<u32>,
    /// (seq, uid, flags, modseq) of messages whose flags others changed.
    pub flags: Vec<(u32, u32, Flags, u64)>,
    /// New RECENT count, sent with EXISTS (RFC 3501 §7.3.2); set by the session once
    /// it has claimed the new messages' `\Recent`.
    pub recent: Option<u32>,
}

/// A count of, or an index into, a view's UIDs as a sequence number (RFC 9051 §2.3.1.2).
/// UIDs are distinct non-zero `u32`s, so there are fewer than 2^32 of them and
/// every count and index fits.
#[allow(clippy::cast_possible_truncation)] // bounded by construction (see above)
pub(crate) fn seq_number(n: usize) -> u32 {
    n as u32
}

#[derive(Debug)]
pub(crate) struct View {
    pub mailbox: MailboxId,
    pub name: String,
    pub uidvalidity: u32,
    pub read_only: bool,
    /// UIDs by sequence number - 1, ascending.
    uids: Vec<u32>,
    /// Highest UID ever in the view (so a changed UID above it is a new message).
    max_uid: u32,
    /// The MODSEQ up to which the store's changes are reflected.
    pub modseq: u64,
    /// Expunged in the store, not yet announced (they keep their sequence numbers).
    pending_expunge: Vec<u32>,
    /// Flag changes this session made and already reported: uid → modseq.
    own_changes: HashMap<u32, u64>,
    /// UID ranges `[from, to)` whose `\Recent` this session owns (RFC 3501 §2.3.2):
    /// claimed in the store at SELECT and when new messages are announced, so they
    /// ascend and do not overlap. Usually one or two ranges.
    recent: Vec<(u32, u32)>,
    /// Keywords announced in the last `* FLAGS` (RFC 3501 §7.2.6): a keyword the client
    /// has not been told of must be announced before a FETCH shows it.
    keywords: Vec<String>,
}

/// Most keywords announced in FLAGS per mailbox (the line stays a few KiB).
pub(crate) const MAX_ANNOUNCED_KEYWORDS: usize = 256;

impl View {
    pub(crate) fn new(
        mailbox: MailboxId,
        name: String,
        uidvalidity: u32,
        read_only: bool,
        uids: Vec<u32>,
        modseq: u64,
    ) -> View {
        let max_uid = uids.last().copied().unwrap_or(0);
        View {
            mailbox,
            name,
            uidvalidity,
            read_only,
            uids,
            max_uid,
            modseq,
            pending_expunge: Vec::new(),
            own_changes: HashMap::new(),
            recent: Vec::new(),
            keywords: Vec::new(),
        }
    }

    pub(crate) fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// Adds a keyword to the announced set; true when it is new (and fits).
    pub(crate) fn add_keyword(&mut self, k: &str) -> bool {
        if self.keywords.len() >= MAX_ANNOUNCED_KEYWORDS
            || self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k))
        {
            return false;
        }
        self.keywords.push(k.to_string());
        true
    }

    /// Highest UID the view has announced.
    pub(crate) fn max_uid(&self) -> u32 {
        self.max_uid
    }

    /// Records that this session owns the `\Recent` of UIDs in `[from, to)`.
    pub(crate) fn add_recent(&mut self, from: u32, to: u32) {
        if from >= to {
            return;
        }
        match self.recent.last_mut() {
            Some(last) if last.1 >= from => last.1 = last.1.max(to),
            _ => self.recent.push((from, to)),
        }
    }

    pub(crate) fn is_recent(&self, uid: u32) -> bool {
        let i = self.recent.partition_point(|r| r.1 <= uid);
        self.recent.get(i).is_some_and(|r| r.0 <= uid)
    }

    /// Messages in the view with `\Recent` (the RECENT response).
    pub(crate) fn recent_count(&self) -> u32 {
        self.recent
            .iter()
            .map(|&(from, to)| {
                let a = self.uids.partition_point(|u| *u < from);
                let b = self.uids.partition_point(|u| *u < to);
                seq_number(b - a)
            })
            .sum()
    }

    pub(crate) fn exists(&self) -> u32 {
        seq_number(self.uids.len())
    }

    pub(crate) fn uids(&self) -> &[u32] {
        &self.uids
    }

    #[cfg(test)]
    pub(crate) fn uid(&self, seq: u32) -> Option<u32> {
        self.uids
            .get(usize::try_from(seq).ok()?.checked_sub(1)?)
            .copied()
    }

    pub(crate) fn seq(&self, uid: u32) -> Option<u32> {
        self.uids
            .binary_search(&uid)
            .ok()
            .map(|i| seq_number(i) + 1)
    }

    /// Whether the message was expunged by someone else and not yet announced.
    pub(crate) fn is_expunged(&self, uid: u32) -> bool {
        self.pending_expunge.binary_search(&uid).is_ok()
    }

    pub(crate) fn has_pending_expunges(&self) -> bool {
        !self.pending_expunge.is_empty()
    }

    /// Remembers a flag change this session reported itself, so `sync` does not
    /// repeat it.
    pub(crate) fn note_own_change(&mut self, uid: u32, modseq: u64) {
        // Bounded: a giant STORE just means some repeats later.
        if self.own_changes.len() < 100_000 {
            self.own_changes.insert(uid, modseq);
        }
    }

    /// Folds the store's changes into the view. `allow_expunge` is false during
    /// FETCH/STORE/SEARCH by sequence number (RFC 9051 §7.5.1).
    pub(crate) fn sync(&mut self, changes: &MailboxChanges, allow_expunge: bool) -> Updates {
        let mut up = Updates::default();
        // 1. Expunges (of messages we know), remembered until they may be announced.
        for uid in changes.expunged.iter().map(|u| u.get()) {
            if self.uids.binary_search(&uid).is_ok() {
                if let Err(pos) = self.pending_expunge.binary_search(&uid) {
                    self.pending_expunge.insert(pos, uid);
                }
            }
        }
        // 2. New messages and flag changes.
        let mut added = 0;
        for m in &changes.changed {
            let (uid, modseq) = (m.uid.get(), m.modseq.get());
            if uid > self.max_uid {
                self.uids.push(uid);
                self.max_uid = uid;
                added += 1;
            } else if let Ok(i) = self.uids.binary_search(&uid) {
                if self.own_changes.get(&uid) == Some(&modseq) {
                    continue;
                }
                if !self.is_expunged(uid) {
                    up.flags
                        .push((seq_number(i) + 1, uid, m.flags.clone(), modseq));
                }
            }
        }
        self.own_changes.clear();
        // 3. Announce expunges, highest sequence number first so each number is
        //    still valid when the client applies it.
        if allow_expunge && !self.pending_expunge.is_empty() {
            let doomed = std::mem::take(&mut self.pending_expunge);
            let mut seqs: Vec<u32> = doomed
                .iter()
                .filter_map(|u| self.uids.binary_search(u).ok().map(|i| seq_number(i) + 1))
                .collect();
            seqs.sort_unstable_by(|a, b| b.cmp(a));
            self.uids.retain(|u| doomed.binary_search(u).is_err());
            // Flag updates refer to sequence numbers after the expunges.
            for f in &mut up.flags {
                let below = seq_number(seqs.iter().filter(|s| **s < f.0).count());
                f.0 -= below;
            }
            up.expunged = seqs;
            up.vanished = doomed;
        }
        // EXISTS after the EXPUNGEs, with the final count (RFC 9051 §7.4.1).
        if added > 0 {
            up.exists = Some(seq_number(self.uids.len()));
        }
        self.modseq = self.modseq.max(changes.mailbox.highest_modseq.get());
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::{AccountId, BlobId, Mailbox, MailboxId, MessageMeta};

    #[test]
    fn sequence_numbers_are_counts_unchanged() {
        assert_eq!(seq_number(0), 0);
        assert_eq!(seq_number(41), 41);
        assert_eq!(seq_number(u32::MAX as usize), u32::MAX);
    }

    fn mb(modseq: u64) -> Mailbox {
        Mailbox {
            id: MailboxId(1),
            account_id: AccountId(1),
            name: "INBOX".into(),
            uidvalidity: 7,
            uidnext: 100,
            highest_modseq: bulwark_store::ModSeq(modseq),
            special_use: None,
            subscribed: true,
            first_recent_uid: 1,
        }
    }

    fn meta(uid: u32, flags: u8, modseq: u64) -> MessageMeta {
        MessageMeta {
            uid: bulwark_store::Uid(uid),
            blob_id: BlobId(1),
            size: 1,
            internal_date: 0,
            flags: Flags::new(flags),
            modseq: bulwark_store::ModSeq(modseq),
        }
    }

    #[test]
    fn expunges_wait_until_allowed() {
        let mut v = View::new(MailboxId(1), "INBOX".into(), 7, false, vec![1, 2, 3, 5], 10);
        let ch = MailboxChanges {
            mailbox: mb(12),
            changed: vec![meta(6, 0, 11)],
            expunged: bulwark_store::Uid::from_raw(&[2, 4]),
        };
        // During FETCH: the new message is announced, the expunge is not.
        let up = v.sync(&ch, false);
        assert_eq!(up.exists, Some(5));
        assert!(up.expunged.is_empty());
        assert_eq!(v.uid(2), Some(2));
        assert!(v.is_expunged(2));
        // At the next allowed point: one EXPUNGE for sequence 2.
        let none = MailboxChanges {
            mailbox: mb(12),
            changed: vec![],
            expunged: vec![],
        };
        let up = v.sync(&none, true);
        assert_eq!(up.expunged, vec![2]);
        assert_eq!(up.exists, None);
        assert_eq!(v.uids(), &[1, 3, 5, 6]);
        assert_eq!(v.seq(5), Some(3));
    }

    #[test]
    fn expunges_go_highest_first_and_flags_follow() {
        let mut v = View::new(
            MailboxId(1),
            "INBOX".into(),
            7,
            false,
            vec![10, 20, 30, 40],
            10,
        );
        let ch = MailboxChanges {
            mailbox: mb(13),
            changed: vec![meta(40, Flags::SEEN, 12)],
            expunged: bulwark_store::Uid::from_raw(&[10, 30]),
        };
        let up = v.sync(&ch, true);
        assert_eq!(up.expunged, vec![3, 1]);
        assert_eq!(up.flags.len(), 1);
        assert_eq!(up.flags[0].0, 2, "uid 40 is now sequence 2");
        assert_eq!(v.exists(), 2);
        assert_eq!(v.modseq, 13);
    }

    #[test]
    fn own_changes_are_not_repeated() {
        let mut v = View::new(MailboxId(1), "INBOX".into(), 7, false, vec![1, 2], 10);
        v.note_own_change(1, 11);
        let ch = MailboxChanges {
            mailbox: mb(12),
            changed: vec![meta(1, Flags::SEEN, 11), meta(2, Flags::SEEN, 12)],
            expunged: vec![],
        };
        let up = v.sync(&ch, true);
        assert_eq!(up.flags.len(), 1);
        assert_eq!(up.flags[0].1, 2);
        assert_eq!(up.exists, None);
    }

    #[test]
    fn recent_ranges() {
        let mut v = View::new(
            MailboxId(1),
            "INBOX".into(),
            7,
            false,
            vec![1, 2, 5, 6, 9],
            10,
        );
        assert_eq!(v.recent_count(), 0);
        v.add_recent(2, 6);
        v.add_recent(6, 7);
        v.add_recent(9, 9);
        v.add_recent(9, 12);
        assert_eq!(v.recent, vec![(2, 7), (9, 12)]);
        let recent: Vec<u32> = (0..13).filter(|u| v.is_recent(*u)).collect();
        assert_eq!(recent, vec![2, 3, 4, 5, 6, 9, 10, 11]);
        assert_eq!(v.recent_count(), 4, "UIDs 2, 5, 6 and 9 are in the view");
    }
}
