//! Messages: ingest (body + deliveries + queue entry in one step), flags, copy/move,
//! expunge, and the change feed IMAP sessions synchronise with.

use rusqlite::{params, Connection, OptionalExtension};

use super::{column_u32, mailboxes, now};
use crate::types::*;
use crate::{Result, StoreError};

pub(crate) fn add_blob(c: &Connection, data: &[u8], refs: i64) -> Result<BlobId> {
    let mut st = c.prepare_cached("INSERT INTO blobs (size, refs, data) VALUES (?1, ?2, ?3)")?;
    st.execute(params![data.len() as i64, refs, data])?;
    Ok(BlobId(c.last_insert_rowid()))
}

/// Changes a body's reference count by `delta`, deleting it at zero.
pub(crate) fn release_blob(c: &Connection, blob: BlobId, delta: i64) -> Result<()> {
    let mut st =
        c.prepare_cached("UPDATE blobs SET refs = refs - ?2 WHERE id = ?1 RETURNING refs")?;
    let left: Option<i64> = st
        .query_row(params![blob, delta], |r| r.get(0))
        .optional()?;
    if left.is_some_and(|n| n <= 0) {
        c.prepare_cached("DELETE FROM blobs WHERE id = ?1")?
            .execute([blob])?;
    }
    Ok(())
}

fn retain_blob(c: &Connection, blob: BlobId, delta: i64) -> Result<()> {
    c.prepare_cached("UPDATE blobs SET refs = refs + ?2 WHERE id = ?1")?
        .execute(params![blob, delta])?;
    Ok(())
}

/// Appends one message row with the next UID and a new MODSEQ.
fn insert_message(
    c: &Connection,
    mb: MailboxId,
    blob: BlobId,
    size: u64,
    internal_date: i64,
    flags: &Flags,
) -> Result<(u32, u32, u64)> {
    let (uid, uidvalidity, modseq): (i64, i64, i64) = c
        .prepare_cached(
            "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
             WHERE id = ?1 RETURNING uidnext - 1, uidvalidity, highest_modseq",
        )?
        .query_row([mb], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{mb}")))?;
    if uid >= i64::from(u32::MAX) {
        return Err(StoreError::Invalid("mailbox UID space exhausted".into()));
    }
    c.prepare_cached(
        "INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, flags, keywords, modseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        mb,
        uid,
        blob,
        size as i64,
        internal_date,
        flags.bits as i64,
        flags.keywords_db(),
        modseq
    ])?;
    Ok((column_u32(uid), column_u32(uidvalidity), modseq as u64))
}

fn mailbox_event(
    c: &Connection,
    mb: MailboxId,
    modseq: u64,
    ev: &mut Vec<StoreEvent>,
) -> Result<()> {
    let account_id: AccountId = c
        .prepare_cached("SELECT account_id FROM mailboxes WHERE id = ?1")?
        .query_row([mb], |r| r.get(0))?;
    ev.retain(|e| !matches!(e, StoreEvent::Mailbox { mailbox_id, .. } if *mailbox_id == mb));
    ev.push(StoreEvent::Mailbox {
        account_id,
        mailbox_id: mb,
        highest_modseq: modseq,
    });
    Ok(())
}

pub(crate) fn ingest(
    c: &Connection,
    ingest: Ingest,
    ev: &mut Vec<StoreEvent>,
) -> Result<IngestReceipt> {
    let queue = ingest.queue.filter(|q| !q.recipients.is_empty());
    if ingest.deliveries.is_empty() && queue.is_none() {
        return Err(StoreError::Invalid(
            "a message needs at least one mailbox or queue recipient".into(),
        ));
    }
    // The queue shares the delivered body unless it brings its own.
    let queue_shares = queue.as_ref().is_some_and(|q| q.data.is_none());
    let refs = ingest.deliveries.len() as i64 + i64::from(queue_shares);
    let size = ingest.data.len() as u64;
    let blob = if refs > 0 {
        Some(add_blob(c, &ingest.data, refs)?)
    } else {
        None
    };
    let mut delivered = Vec::with_capacity(ingest.deliveries.len());
    if let Some(blob) = blob {
        for d in &ingest.deliveries {
            let mb = match d.target {
                DeliveryTarget::Mailbox(id) => id,
                DeliveryTarget::Inbox(account) => {
                    mailboxes::by_name(c, account, "INBOX")?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("INBOX of account #{account}"))
                        })?
                        .id
                }
                DeliveryTarget::SpecialUse(account, u) => {
                    mailboxes::special_or_inbox(c, account, u)?.id
                }
            };
            let (uid, uidvalidity, modseq) =
                insert_message(c, mb, blob, size, ingest.internal_date, &d.flags)?;
            mailbox_event(c, mb, modseq, ev)?;
            delivered.push((mb, uidvalidity, uid));
        }
    }
    let mut queue_id = None;
    let mut queue_blob = None;
    if let Some(q) = queue {
        let qb = match (&q.data, blob) {
            (Some(d), _) => add_blob(c, d, 1)?,
            (None, Some(b)) => b,
            (None, None) => unreachable_blob()?,
        };
        queue_id = Some(super::queue::insert(c, qb, &q, now())?);
        queue_blob = Some(qb);
        ev.push(StoreEvent::Queue);
    }
    Ok(IngestReceipt {
        blob_id: blob.or(queue_blob).map_or_else(unreachable_blob, Ok)?,
        delivered,
        queue_id,
    })
}

/// A queue entry without its own body always has a shared one (refs > 0 above).
fn unreachable_blob() -> Result<BlobId> {
    Err(StoreError::Invalid("ingest without a body".into()))
}

fn row_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageMeta> {
    let kw: String = r.get(5)?;
    Ok(MessageMeta {
        uid: Uid(column_u32(r.get(0)?)),
        blob_id: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        internal_date: r.get(3)?,
        flags: Flags::from_db(r.get(4)?, &kw),
        modseq: ModSeq(r.get::<_, i64>(6)? as u64),
    })
}

const META: &str = "uid, blob_id, size, internal_date, flags, keywords, modseq";

pub(crate) fn range(
    c: &Connection,
    mb: MailboxId,
    first: Uid,
    last: Uid,
) -> Result<Vec<MessageMeta>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {META} FROM messages WHERE mailbox_id = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid"
    ))?;
    let rows = st.query_map(params![mb, first, last], row_meta)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn by_uids(c: &Connection, mb: MailboxId, uids: &[Uid]) -> Result<Vec<MessageMeta>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {META} FROM messages WHERE mailbox_id = ?1 AND uid = ?2"
    ))?;
    let mut out = Vec::with_capacity(uids.len());
    for &uid in uids {
        if let Some(m) = st.query_row(params![mb, uid], row_meta).optional()? {
            out.push(m);
        }
    }
    Ok(out)
}

pub(crate) fn read_blob(c: &Connection, blob: BlobId) -> Result<Vec<u8>> {
    c.prepare_cached("SELECT data FROM blobs WHERE id = ?1")?
        .query_row([blob], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("message body #{blob}")))
}

/// SQLite's incremental blob I/O (sqlite3_blob_read) reads only the pages of the
/// range; `substr(data, …)` would load the whole value for every piece.
pub(crate) fn read_blob_range(
    c: &Connection,
    blob: BlobId,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut b = c
        .blob_open(
            rusqlite::DatabaseName::Main,
            "blobs",
            "data",
            blob.get(),
            true,
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such rowid") => {
                StoreError::NotFound(format!("message body #{blob}"))
            }
            e => StoreError::from(e),
        })?;
    let size = b.len() as u64;
    let start = offset.min(size);
    // Beyond usize is beyond `len`.
    let n = usize::try_from(size - start).map_or(len, |rest| len.min(rest));
    let mut out = vec![0u8; n];
    b.seek(SeekFrom::Start(start))
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    b.read_exact(&mut out)
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(out)
}

pub(crate) fn read_blobs(c: &Connection, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>> {
    let mut st = c.prepare_cached("SELECT data FROM blobs WHERE id = ?1")?;
    let mut out = Vec::with_capacity(blobs.len());
    for &b in blobs {
        if let Some(d) = st.query_row([b], |r| r.get::<_, Vec<u8>>(0)).optional()? {
            out.push((b, d));
        }
    }
    Ok(out)
}

pub(crate) fn summaries(c: &Connection, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>> {
    let mut st =
        c.prepare_cached("SELECT summary FROM blobs WHERE id = ?1 AND summary IS NOT NULL")?;
    let mut out = Vec::new();
    for &b in blobs {
        if let Some(s) = st.query_row([b], |r| r.get::<_, Vec<u8>>(0)).optional()? {
            out.push((b, s));
        }
    }
    Ok(out)
}

pub(crate) fn set_summary(c: &Connection, blob: BlobId, summary: &[u8]) -> Result<()> {
    c.prepare_cached("UPDATE blobs SET summary = ?2 WHERE id = ?1")?
        .execute(params![blob, summary])?;
    Ok(())
}

pub(crate) fn update_flags(
    c: &Connection,
    mb: MailboxId,
    uids: &[Uid],
    op: FlagOp,
    change: &Flags,
    unchanged_since: Option<ModSeq>,
    ev: &mut Vec<StoreEvent>,
) -> Result<FlagUpdate> {
    mailboxes::require(c, mb)?;
    let mut out = FlagUpdate::default();
    let mut modseq = None;
    let mut st = c.prepare_cached(
        "UPDATE messages SET flags = ?3, keywords = ?4, modseq = ?5 WHERE mailbox_id = ?1 AND uid = ?2",
    )?;
    for m in by_uids(c, mb, uids)? {
        if unchanged_since.is_some_and(|u| m.modseq > u) {
            out.modified.push(m.uid);
            continue;
        }
        let new = m.flags.apply(op, change);
        if new == m.flags {
            out.updated.push((m.uid, new, m.modseq));
            continue;
        }
        let ms = match modseq {
            Some(ms) => ms,
            None => {
                let ms = mailboxes::bump_modseq(c, mb)?;
                modseq = Some(ms);
                ms
            }
        };
        st.execute(params![
            mb,
            m.uid,
            new.bits as i64,
            new.keywords_db(),
            ms as i64
        ])?;
        out.updated.push((m.uid, new, ModSeq(ms)));
    }
    if let Some(ms) = modseq {
        mailbox_event(c, mb, ms, ev)?;
    }
    Ok(out)
}

pub(crate) fn copy(
    c: &Connection,
    from: MailboxId,
    uids: &[Uid],
    to: MailboxId,
    remove_source: bool,
    ev: &mut Vec<StoreEvent>,
) -> Result<CopyResult> {
    mailboxes::require(c, from)?;
    let dst = mailboxes::require(c, to)?;
    let mut out = CopyResult {
        uidvalidity: dst.uidvalidity,
        pairs: Vec::new(),
    };
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut last_modseq = None;
    for m in by_uids(c, from, &sorted)? {
        retain_blob(c, m.blob_id, 1)?;
        // A copy keeps flags and internal date (RFC 9051 §6.4.7).
        let (uid, _, modseq) = insert_message(c, to, m.blob_id, m.size, m.internal_date, &m.flags)?;
        last_modseq = Some(modseq);
        out.pairs.push((m.uid, Uid(uid)));
    }
    if let Some(ms) = last_modseq {
        mailbox_event(c, to, ms, ev)?;
    }
    if remove_source && !out.pairs.is_empty() {
        let moved: Vec<Uid> = out.pairs.iter().map(|p| p.0).collect();
        expunge(c, from, Some(&moved), false, ev)?;
    }
    Ok(out)
}

/// Removes messages: those flagged \Deleted (`only_deleted`), restricted to `uids`
/// when given. Records each removal in `expunged` with one new MODSEQ.
pub(crate) fn expunge(
    c: &Connection,
    mb: MailboxId,
    uids: Option<&[Uid]>,
    only_deleted: bool,
    ev: &mut Vec<StoreEvent>,
) -> Result<Vec<Uid>> {
    mailboxes::require(c, mb)?;
    let candidates = match uids {
        Some(u) => by_uids(c, mb, u)?,
        None => range(c, mb, Uid(1), Uid(u32::MAX))?,
    };
    let doomed: Vec<MessageMeta> = candidates
        .into_iter()
        .filter(|m| !only_deleted || m.flags.has(Flags::DELETED))
        .collect();
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    let modseq = mailboxes::bump_modseq(c, mb)?;
    let mut del = c.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")?;
    let mut rec = c.prepare_cached(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
    )?;
    let mut out = Vec::with_capacity(doomed.len());
    for m in doomed {
        del.execute(params![mb, m.uid])?;
        rec.execute(params![mb, m.uid, modseq as i64])?;
        release_blob(c, m.blob_id, 1)?;
        out.push(m.uid);
    }
    out.sort_unstable();
    mailbox_event(c, mb, modseq, ev)?;
    Ok(out)
}

/// Drops every message of a mailbox (mailbox or account deletion).
pub(crate) fn remove_all(c: &Connection, mb: MailboxId) -> Result<()> {
    let doomed = range(c, mb, Uid(1), Uid(u32::MAX))?;
    c.execute("DELETE FROM messages WHERE mailbox_id = ?1", [mb])?;
    for m in doomed {
        release_blob(c, m.blob_id, 1)?;
    }
    Ok(())
}

pub(crate) fn changes_since(
    c: &Connection,
    mb: MailboxId,
    modseq: ModSeq,
) -> Result<MailboxChanges> {
    let mailbox = mailboxes::require(c, mb)?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {META} FROM messages WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid"
    ))?;
    let changed = st
        .query_map(params![mb, modseq.get() as i64], row_meta)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut st = c.prepare_cached(
        "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
    )?;
    let expunged = st
        .query_map(params![mb, modseq.get() as i64], |r| {
            Ok(Uid(column_u32(r.get(0)?)))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(MailboxChanges {
        mailbox,
        changed,
        expunged,
    })
}
