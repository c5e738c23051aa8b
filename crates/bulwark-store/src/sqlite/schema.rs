//! Versioned schema migrations of the embedded store, applied at open.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Migrations are only
//! ever appended; a store written by a newer Bulwark (higher version) is refused
//! rather than misread.

use rusqlite::Connection;

use crate::{Result, StoreError};

/// Each entry is one migration; its index + 1 is the version it brings the store to.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain_id     INTEGER NOT NULL REFERENCES domains(id),
    password_hash TEXT NOT NULL,
    created       INTEGER NOT NULL
);
CREATE TABLE aliases (
    source  TEXT NOT NULL,
    target  TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;
CREATE TABLE send_as (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    PRIMARY KEY (account_id, address)
) WITHOUT ROWID;
CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    name           TEXT NOT NULL,
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL,
    highest_modseq INTEGER NOT NULL,
    special_use    TEXT,
    subscribed     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
-- Message bodies: immutable, shared by every mailbox copy, reference-counted.
-- `summary` is an opaque cache owned by the IMAP layer (parsed structure).
CREATE TABLE blobs (
    id      INTEGER PRIMARY KEY,
    size    INTEGER NOT NULL,
    refs    INTEGER NOT NULL,
    data    BLOB NOT NULL,
    summary BLOB
);
CREATE TABLE messages (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
    uid           INTEGER NOT NULL,
    blob_id       INTEGER NOT NULL REFERENCES blobs(id),
    size          INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    flags         INTEGER NOT NULL,
    keywords      TEXT NOT NULL DEFAULT '',
    modseq        INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_by_modseq ON messages (mailbox_id, modseq);
-- Expunged UIDs with the MODSEQ of their removal (IDLE/NOOP updates, QRESYNC).
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_by_modseq ON expunged (mailbox_id, modseq);
CREATE TABLE queue (
    id             INTEGER PRIMARY KEY,
    blob_id        INTEGER NOT NULL REFERENCES blobs(id),
    return_path    TEXT NOT NULL,
    created        INTEGER NOT NULL,
    lease_until    INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0,
    params         TEXT NOT NULL DEFAULT ''
);
CREATE TABLE queue_recipients (
    queue_id     INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    address      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_reply   TEXT,
    PRIMARY KEY (queue_id, address)
) WITHOUT ROWID;
CREATE INDEX queue_recipients_due ON queue_recipients (status, next_attempt);
CREATE TABLE queue_attempts (
    id        INTEGER PRIMARY KEY,
    queue_id  INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    peer      TEXT NOT NULL,
    tls       TEXT NOT NULL,
    reply     TEXT NOT NULL,
    outcome   TEXT NOT NULL
);
CREATE INDEX queue_attempts_by_queue ON queue_attempts (queue_id);
"#,
    // 2: subscriptions are names of their own (RFC 9051 §6.3.7): they outlive the
    // mailbox (DELETE must not drop them) and can name mailboxes that do not exist.
    // `mailboxes.subscribed` is no longer read or written.
    r#"
CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
INSERT OR IGNORE INTO subscriptions (account_id, name)
    SELECT account_id, name FROM mailboxes WHERE subscribed = 1;
"#,
    // 3: deleting a blob (its last message expunged, its queue entry done) makes
    // SQLite check the foreign keys that point at it; without these indexes that is a
    // scan of every message and every queue entry per deletion (the relay benchmark
    // spent a third of its CPU there).
    r#"
CREATE INDEX IF NOT EXISTS messages_by_blob ON messages (blob_id);
CREATE INDEX IF NOT EXISTS queue_by_blob ON queue (blob_id);
"#,
    // 4: queue IDs are never reused. `queue.id` is a plain rowid, which SQLite hands
    // out again once the highest entries are gone (an empty queue starts over at 1):
    // logs and an administrator's `queue delete N` from an old listing would name
    // another message. The last ID handed out is kept in `meta`.
    r#"
INSERT OR IGNORE INTO meta (key, value)
    SELECT 'queue_last_id', COALESCE(MAX(id), 0) FROM queue;
"#,
    // 5: IMAP \Recent (RFC 3501 §2.3.2) lives in the store so that sessions on
    // different nodes agree which one owns a new message: UIDs at or above
    // `first_recent_uid` are recent and unclaimed; a read-write SELECT raises it.
    // Messages stored before this version are not recent (nobody can own them now).
    r#"
ALTER TABLE mailboxes ADD COLUMN first_recent_uid INTEGER NOT NULL DEFAULT 1;
UPDATE mailboxes SET first_recent_uid = uidnext;
"#,
    // 6: where each account logged in successfully from (client address, IPv6 /64),
    // and when last. The brute-force limiter's per-account block spares these
    // addresses; kept here so a restart does not lock owners out of an account under
    // attack.
    r#"
CREATE TABLE IF NOT EXISTS login_sources (
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    network      TEXT NOT NULL,
    last_success INTEGER NOT NULL,
    PRIMARY KEY (account_id, network)
) WITHOUT ROWID;
"#,
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies pending migrations, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(usize::MAX))
    {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if version == 1 {
            // UIDVALIDITY values come from one counter so a mailbox deleted and
            // re-created with the same name never reuses one (RFC 9051 §2.3.1.1).
            let start = crate::sqlite::now().max(1);
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?1)",
                [start],
            )?;
        }
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(target: "bulwark::store", version, "applied store migration");
    }
    Ok(())
}
