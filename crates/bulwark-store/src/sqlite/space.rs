//! Giving deleted messages' space back to the file system.
//!
//! SQLite keeps the pages of deleted rows in a free list and reuses them, but never
//! shrinks the file by itself: deleting a mailbox of 8,000 messages left a 1.1 GB
//! file for good. New stores are created with `auto_vacuum = INCREMENTAL` (the mode
//! must be chosen before the first table exists); then `PRAGMA incremental_vacuum(N)`
//! moves up to N free pages to the end of the file and truncates them, in an ordinary
//! write transaction the group-commit writer runs between other writes (the server
//! does that in the background, in small steps). A store made before that has to be
//! rewritten once to change mode: `VACUUM`, done by `bulwark store compact` with the
//! server stopped (it needs the whole database a second time on disk, briefly).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, Transaction};

use crate::types::StoreSpace;
use crate::{Result, StoreError};

/// `PRAGMA auto_vacuum` value of incremental mode (0 none, 1 full, 2 incremental).
const INCREMENTAL: i64 = 2;

/// Pages returned per write transaction by `compact`: small enough that the running
/// server's writes wait only briefly between steps.
const COMPACT_STEP_PAGES: u32 = 2048;

/// Chosen on a new, empty database before the schema is created; on an existing one
/// SQLite only records the wish until the next VACUUM, which changes nothing here.
pub(crate) fn prefer_incremental(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    // The WAL file keeps the size of the largest transaction after checkpoints unless
    // limited; after a big reclaim it would hold the freed space instead of the file.
    conn.pragma_update(None, "journal_size_limit", 16i64 * 1024 * 1024)?;
    Ok(())
}

/// Size, free pages and mode, as of the connection's view.
pub(crate) fn space(c: &Connection) -> Result<StoreSpace> {
    let pragma = |name: &str| -> Result<i64> {
        Ok(c.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?)
    };
    let page_size = pragma("page_size")?.max(0) as u64;
    Ok(StoreSpace {
        size_bytes: pragma("page_count")?.max(0) as u64 * page_size,
        free_pages: pragma("freelist_count")?.max(0) as u64,
        page_size,
        reclaimable: pragma("auto_vacuum")? == INCREMENTAL,
    })
}

/// Returns up to `max_pages` free pages to the file system within the writer's
/// transaction. The pragma frees one page per step (one result row each), so it is
/// stepped to the end. A no-op unless the store is in incremental mode.
pub(crate) fn reclaim(tx: &Transaction<'_>, max_pages: u32) -> Result<()> {
    let mut stmt = tx.prepare(&format!("PRAGMA incremental_vacuum({max_pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Copies the WAL back into the database without waiting for anyone (PASSIVE), which
/// truncates the database file to its reclaimed size once every frame is copied. The
/// writer's connection would do it too, but only at its next automatic checkpoint;
/// any read-write connection may, so this one is opened for the purpose.
pub(crate) fn checkpoint(db: &Path) -> Result<()> {
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let _frames: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(())
}

/// What `compact` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Bytes of the database file (and its WAL) before and after.
    pub file_bytes_before: u64,
    /// Bytes of the database file (and its WAL) after compaction.
    pub file_bytes_after: u64,
    /// True when the store was rewritten (VACUUM) to switch to incremental mode.
    pub rewritten: bool,
}

fn file_bytes(db: &Path) -> u64 {
    let wal = db.with_extension("db-wal");
    [db, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Reclaims every free page of the store in `dir` and truncates its WAL. A store not
/// yet in incremental mode is rewritten once (VACUUM) when `may_rewrite` — the caller
/// makes sure no server is running — and refused otherwise with how to proceed.
pub fn compact(dir: &Path, may_rewrite: bool) -> Result<Compaction> {
    let db = dir.join(super::DB_FILE);
    if !db.exists() {
        return Err(StoreError::NotFound(format!("store {}", db.display())));
    }
    let before = file_bytes(&db);
    let mut conn = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let mut rewritten = false;
    if !space(&conn)?.reclaimable {
        if !may_rewrite {
            return Err(StoreError::Invalid(
                "this store was created before space reclamation existed and must be rewritten once (VACUUM); stop the server and run `bulwark store compact` again".into(),
            ));
        }
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        conn.execute_batch("VACUUM")?;
        rewritten = true;
    }
    loop {
        let free = space(&conn)?.free_pages;
        if free == 0 {
            break;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        reclaim(&tx, COMPACT_STEP_PAGES)?;
        tx.commit()?;
        if space(&conn)?.free_pages >= free {
            // Nothing moved (another writer holds the pages?): do not spin.
            break;
        }
    }
    // Copy the WAL into the database and empty it, so the file system sees the
    // smaller size now rather than at some later checkpoint.
    let _busy: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    drop(conn);
    Ok(Compaction {
        file_bytes_before: before,
        file_bytes_after: file_bytes(&db),
        rewritten,
    })
}
