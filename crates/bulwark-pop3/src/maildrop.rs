//! The maildrop a POP3 session works on: a snapshot of INBOX taken at login, so that
//! message numbers stay the same for the whole session (RFC 1939 §5), plus the
//! per-session "marked as deleted" state.

use bulwark_store::{BlobId, Mailbox, MailboxId, MessageMeta};

/// RFC 1939 §7 UIDL: a unique-id is 1–70 characters in 0x21–0x7E, the same for a
/// message in every session. UIDVALIDITY and UID together name a message for as long
/// as it exists (UIDs are never reused under one UIDVALIDITY), so a client keeping
/// messages on the server downloads each exactly once. If the mailbox is ever
/// re-created (new UIDVALIDITY) every id changes, which is the safe direction.
pub fn unique_id(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity}.{uid}")
}

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The message's IMAP UID in INBOX (RFC 3501 §2.3.1.1).
    pub uid: u32,
    /// The stored body to send for RETR and TOP.
    pub blob: BlobId,
    /// The body's size in octets, as LIST and STAT report it.
    pub size: u64,
    /// Marked by DELE in this session; removed only in UPDATE.
    pub deleted: bool,
    /// Retrieved whole with RETR: flagged \Seen at QUIT, so IMAP shows it as read.
    pub retrieved: bool,
}

/// Why a message number cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Zero, or greater than the number of messages in the snapshot.
    NoSuchMessage,
    /// The message is marked as deleted (RFC 1939 §5: it may not be referred to).
    Deleted,
}

impl NumberError {
    /// The text of the `-ERR` reply for message number `n`.
    pub fn reason(self, n: u32) -> String {
        match self {
            NumberError::NoSuchMessage => format!("no such message: {n}"),
            NumberError::Deleted => format!("message {n} is marked as deleted"),
        }
    }
}

/// The session's view of INBOX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildrop {
    /// The INBOX the snapshot was taken of; UPDATE changes this mailbox.
    pub mailbox: MailboxId,
    /// INBOX's UIDVALIDITY at login: the first half of every unique-id.
    pub uidvalidity: u32,
    entries: Vec<Entry>,
}

impl Maildrop {
    /// `messages` by ascending UID, as `Store::list_messages` returns them: message
    /// number n is the n-th.
    pub fn new(mailbox: &Mailbox, messages: &[MessageMeta]) -> Maildrop {
        Maildrop {
            mailbox: mailbox.id,
            uidvalidity: mailbox.uidvalidity,
            entries: messages
                .iter()
                .map(|m| Entry {
                    uid: m.uid.get(),
                    blob: m.blob_id,
                    size: m.size,
                    deleted: false,
                    retrieved: false,
                })
                .collect(),
        }
    }

    /// Messages not marked as deleted: (count, octets). RFC 1939 §5 STAT.
    pub fn stat(&self) -> (usize, u64) {
        self.entries
            .iter()
            .filter(|e| !e.deleted)
            .fold((0, 0), |(n, s), e| (n + 1, s + e.size))
    }

    /// Message `n` (1-based), unless it does not exist or is marked as deleted.
    pub fn get(&self, n: u32) -> Result<&Entry, NumberError> {
        let e = (n as usize)
            .checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .ok_or(NumberError::NoSuchMessage)?;
        if e.deleted {
            return Err(NumberError::Deleted);
        }
        Ok(e)
    }

    fn get_mut(&mut self, n: u32) -> Result<&mut Entry, NumberError> {
        self.get(n)?;
        let i = n as usize - 1;
        Ok(&mut self.entries[i])
    }

    /// RFC 1939 §5 DELE: marks message `n` as deleted for the rest of the session.
    pub fn mark_deleted(&mut self, n: u32) -> Result<(), NumberError> {
        self.get_mut(n)?.deleted = true;
        Ok(())
    }

    /// Records that message `n` was sent whole (RETR), to flag it \Seen at QUIT.
    pub fn mark_retrieved(&mut self, n: u32) -> Result<(), NumberError> {
        self.get_mut(n)?.retrieved = true;
        Ok(())
    }

    /// RFC 1939 §5 RSET: unmarks every message.
    pub fn reset(&mut self) {
        for e in &mut self.entries {
            e.deleted = false;
        }
    }

    /// (number, entry) for every message not marked as deleted.
    pub fn visible(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.deleted)
            .map(|(i, e)| (message_number(i), e))
    }

    /// UIDs marked as deleted: removed in the UPDATE state.
    pub fn deleted_uids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|e| e.deleted)
            .map(|e| e.uid)
            .collect()
    }

    /// UIDs retrieved and not deleted: flagged \Seen in the UPDATE state.
    pub fn retrieved_uids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|e| e.retrieved && !e.deleted)
            .map(|e| e.uid)
            .collect()
    }

    /// The UIDL unique-id of `e` (see the free function [`unique_id`]).
    pub fn unique_id(&self, e: &Entry) -> String {
        unique_id(self.uidvalidity, e.uid)
    }
}

/// The 1-based message number of the entry at index `i`.
// Entries are distinct messages of one mailbox, each with its own non-zero 32-bit UID,
// so there are fewer than 2^32 - 1 of them: `i + 1` fits a u32.
#[allow(clippy::cast_possible_truncation)]
fn message_number(i: usize) -> u32 {
    i as u32 + 1
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bulwark_store::{AccountId, BlobId, Flags, MailboxId};

    // A handful of test messages: the indexes fit any integer type.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn maildrop(sizes: &[u64]) -> Maildrop {
        let mb = Mailbox {
            id: MailboxId(7),
            account_id: AccountId(1),
            name: "INBOX".into(),
            uidvalidity: 1234,
            uidnext: 100,
            highest_modseq: bulwark_store::ModSeq(1),
            special_use: None,
            subscribed: true,
            first_recent_uid: 1,
        };
        let msgs: Vec<MessageMeta> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| MessageMeta {
                uid: bulwark_store::Uid(10 + 2 * i as u32),
                blob_id: BlobId(100 + i as i64),
                size: *s,
                internal_date: 0,
                flags: Flags::default(),
                modseq: bulwark_store::ModSeq(1),
            })
            .collect();
        Maildrop::new(&mb, &msgs)
    }

    #[test]
    fn message_numbers_are_one_based_indexes() {
        assert_eq!(message_number(0), 1);
        assert_eq!(message_number(41), 42);
        let m = maildrop(&[1, 2]);
        for (n, e) in m.visible() {
            assert_eq!(m.get(n), Ok(e));
        }
    }

    #[test]
    fn numbers_deletion_and_reset() {
        let mut m = maildrop(&[10, 20, 30]);
        assert_eq!(m.stat(), (3, 60));
        assert_eq!(m.get(0), Err(NumberError::NoSuchMessage));
        assert_eq!(m.get(4), Err(NumberError::NoSuchMessage));
        assert_eq!(m.get(u32::MAX), Err(NumberError::NoSuchMessage));
        assert_eq!(m.get(2).unwrap().uid, 12);
        m.mark_deleted(2).unwrap();
        assert_eq!(m.mark_deleted(2), Err(NumberError::Deleted));
        assert_eq!(m.get(2), Err(NumberError::Deleted));
        assert_eq!(m.stat(), (2, 40));
        assert_eq!(m.visible().map(|(n, _)| n).collect::<Vec<_>>(), vec![1, 3]);
        // Numbers do not shift after a deletion.
        assert_eq!(m.get(3).unwrap().uid, 14);
        assert_eq!(m.deleted_uids(), vec![12]);
        m.mark_retrieved(1).unwrap();
        m.mark_retrieved(3).unwrap();
        m.mark_deleted(3).unwrap();
        assert_eq!(m.retrieved_uids(), vec![10]);
        m.reset();
        assert_eq!(m.stat(), (3, 60));
        assert!(m.deleted_uids().is_empty());
    }

    #[test]
    fn unique_ids_are_stable_and_printable() {
        let m = maildrop(&[1]);
        let id = m.unique_id(m.get(1).unwrap());
        assert_eq!(id, "1234.10");
        assert_eq!(id, unique_id(1234, 10));
        let longest = unique_id(u32::MAX, u32::MAX);
        assert!(longest.len() <= 70);
        assert!(longest.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}
