//! The outbound queue: one entry per message, state per recipient, attempts logged.

use rusqlite::{params, Connection, OptionalExtension};

use super::column_u32;
use super::messages::release_blob;
use crate::types::*;
use crate::{DeliveryParams, Result};

pub(crate) fn insert(c: &Connection, blob: BlobId, q: &NewQueueEntry, now: i64) -> Result<QueueId> {
    // The next ID above every one handed out before (migration 4), in the same
    // transaction as the entry.
    let id: QueueId = c
        .prepare_cached(
            "UPDATE meta SET value = value + 1 WHERE key = 'queue_last_id' RETURNING value",
        )?
        .query_row([], |r| r.get(0))?;
    c.prepare_cached(
        "INSERT INTO queue (id, blob_id, return_path, created, params) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, blob, q.return_path, now, q.params.to_json()])?;
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO queue_recipients (queue_id, address, status, next_attempt) VALUES (?1, ?2, 'pending', ?3)",
    )?;
    for r in &q.recipients {
        st.execute(params![id, r, now])?;
    }
    Ok(id)
}

fn recipients(c: &Connection, id: QueueId) -> Result<Vec<QueueRecipient>> {
    let mut st = c.prepare_cached(
        "SELECT address, status, attempts, next_attempt, last_reply FROM queue_recipients WHERE queue_id = ?1 ORDER BY address",
    )?;
    let rows = st.query_map([id], |r| {
        let status: String = r.get(1)?;
        Ok(QueueRecipient {
            address: r.get(0)?,
            status: RecipientStatus::from_db(&status),
            attempts: column_u32(r.get(2)?),
            next_attempt: r.get(3)?,
            last_reply: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn get(c: &Connection, id: QueueId) -> Result<Option<QueuedMessage>> {
    let head = c
        .prepare_cached(
            "SELECT q.id, q.blob_id, b.size, q.return_path, q.created, q.delay_notified, q.params
             FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = ?1",
        )?
        .query_row([id], |r| {
            Ok((
                r.get::<_, QueueId>(0)?,
                r.get::<_, BlobId>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .optional()?;
    let Some((id, blob_id, size, return_path, created, delay_notified, params)) = head else {
        return Ok(None);
    };
    let recipients = recipients(c, id)?;
    let next_attempt = recipients
        .iter()
        .filter(|r| r.status == RecipientStatus::Pending)
        .map(|r| r.next_attempt)
        .min()
        .unwrap_or(i64::MAX);
    Ok(Some(QueuedMessage {
        id,
        blob_id,
        size: size as u64,
        return_path,
        created,
        next_attempt,
        delay_notified: delay_notified != 0,
        params: DeliveryParams::parse(&params),
        recipients,
    }))
}

pub(crate) fn list(c: &Connection) -> Result<Vec<QueuedMessage>> {
    let ids: Vec<QueueId> = {
        let mut st = c.prepare("SELECT id FROM queue ORDER BY id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = get(c, id)? {
            out.push(m);
        }
    }
    Ok(out)
}

pub(crate) fn stats(c: &Connection) -> Result<QueueStats> {
    let mut st = c.prepare_cached("SELECT COUNT(*), MIN(created) FROM queue")?;
    let (entries, oldest_created): (i64, Option<i64>) =
        st.query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(QueueStats {
        entries: u64::try_from(entries).unwrap_or(0),
        oldest_created,
    })
}

pub(crate) fn claim_due(
    c: &Connection,
    now: i64,
    lease_secs: i64,
    limit: u32,
) -> Result<Vec<QueuedMessage>> {
    let ids: Vec<QueueId> = {
        let mut st = c.prepare_cached(
            "SELECT DISTINCT q.id FROM queue q JOIN queue_recipients r ON r.queue_id = q.id
             WHERE r.status = 'pending' AND r.next_attempt <= ?1 AND q.lease_until <= ?1
             ORDER BY q.id LIMIT ?2",
        )?;
        let rows = st.query_map(params![now, limit], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(ids.len());
    let mut lease = c.prepare_cached("UPDATE queue SET lease_until = ?2 WHERE id = ?1")?;
    for id in ids {
        lease.execute(params![id, now + lease_secs])?;
        if let Some(m) = get(c, id)? {
            out.push(m);
        }
    }
    Ok(out)
}

pub(crate) fn update(
    c: &Connection,
    id: QueueId,
    updates: &[RecipientUpdate],
    attempts: &[DeliveryAttempt],
    delay_notified: bool,
) -> Result<()> {
    record(c, id, updates, attempts)?;
    c.prepare_cached(
        "UPDATE queue SET lease_until = 0, delay_notified = delay_notified OR ?2 WHERE id = ?1",
    )?
    .execute(params![id, delay_notified as i64])?;
    let pending: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM queue_recipients WHERE queue_id = ?1 AND status = 'pending'",
        )?
        .query_row([id], |r| r.get(0))?;
    if pending == 0 {
        delete(c, id)?;
    }
    Ok(())
}

pub(crate) fn progress(
    c: &Connection,
    id: QueueId,
    updates: &[RecipientUpdate],
    attempts: &[DeliveryAttempt],
    lease_until: i64,
) -> Result<()> {
    let n = c
        .prepare_cached("UPDATE queue SET lease_until = ?2 WHERE id = ?1")?
        .execute(params![id, lease_until])?;
    if n == 0 {
        return Err(crate::StoreError::NotFound(format!("queue entry {id}")));
    }
    record(c, id, updates, attempts)
}

fn record(
    c: &Connection,
    id: QueueId,
    updates: &[RecipientUpdate],
    attempts: &[DeliveryAttempt],
) -> Result<()> {
    let mut st = c.prepare_cached(
        "UPDATE queue_recipients SET status = ?3, last_reply = ?4, next_attempt = ?5, attempts = attempts + 1
         WHERE queue_id = ?1 AND address = ?2",
    )?;
    for u in updates {
        st.execute(params![
            id,
            u.address,
            u.status.db(),
            u.reply,
            u.next_attempt
        ])?;
    }
    let mut st = c.prepare_cached(
        "INSERT INTO queue_attempts (queue_id, at, recipient, peer, tls, reply, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for a in attempts {
        st.execute(params![
            id,
            a.at,
            a.recipient,
            a.peer,
            a.tls,
            a.reply,
            a.outcome.db()
        ])?;
    }
    Ok(())
}

pub(crate) fn attempts(c: &Connection, id: QueueId) -> Result<Vec<DeliveryAttempt>> {
    let mut st = c.prepare_cached(
        "SELECT at, recipient, peer, tls, reply, outcome FROM queue_attempts WHERE queue_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([id], |r| {
        let outcome: String = r.get(5)?;
        Ok(DeliveryAttempt {
            at: r.get(0)?,
            recipient: r.get(1)?,
            peer: r.get(2)?,
            tls: r.get(3)?,
            reply: r.get(4)?,
            outcome: RecipientStatus::from_db(&outcome),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn retry(
    c: &Connection,
    id: Option<QueueId>,
    now: i64,
    ev: &mut Vec<StoreEvent>,
) -> Result<u64> {
    let n = match id {
        Some(id) => c.execute(
            "UPDATE queue_recipients SET next_attempt = ?2 WHERE queue_id = ?1 AND status = 'pending'",
            params![id, now],
        )?,
        None => c.execute(
            "UPDATE queue_recipients SET next_attempt = ?1 WHERE status = 'pending'",
            [now],
        )?,
    };
    if n > 0 {
        ev.push(StoreEvent::Queue);
    }
    Ok(n as u64)
}

pub(crate) fn delete(c: &Connection, id: QueueId) -> Result<bool> {
    let blob: Option<BlobId> = c
        .prepare_cached("SELECT blob_id FROM queue WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(blob) = blob else { return Ok(false) };
    c.prepare_cached("DELETE FROM queue WHERE id = ?1")?
        .execute([id])?;
    release_blob(c, blob, 1)?;
    Ok(true)
}
