//! The embedded backend against the conformance suite, plus what only it can show:
//! crash durability with SIGKILL, reopening, and migrations.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::*;

async fn fresh() -> (SharedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("store")).unwrap();
    (std::sync::Arc::new(store), dir)
}

crate::conformance_tests!(fresh);

#[test]
fn store_dir_and_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let s = SqliteStore::open(&p).unwrap();
    s.close();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let db = p.join(sqlite::DB_FILE);
    assert_eq!(
        std::fs::metadata(db).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Killing a process keeps the page cache, so the SIGKILL test cannot tell whether
/// commits are fsynced; this pins the settings that make them so.
#[tokio::test]
async fn writer_commits_are_fsynced_wal() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("store")).unwrap();
    let (sync, mode): (i64, String) = s
        .write(|tx, _| {
            let sync = tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let mode = tx.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            Ok((sync, mode))
        })
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    assert_eq!(mode, "wal");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    SqliteStore::open(&p).unwrap().close();
    let c = rusqlite::Connection::open(p.join(sqlite::DB_FILE)).unwrap();
    c.pragma_update(None, "user_version", sqlite::SCHEMA_VERSION + 1)
        .unwrap();
    drop(c);
    match SqliteStore::open(&p) {
        Err(StoreError::TooNew { found, .. }) => assert_eq!(found, sqlite::SCHEMA_VERSION + 1),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

/// A version-1 store (subscriptions as a column) keeps its subscriptions when the
/// subscriptions table is introduced.
/// Deleting a blob checks the foreign keys of `messages` and `queue`: by index, not
/// by a scan of every row (migration 3).
#[tokio::test]
async fn blob_references_are_found_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let store = SqliteStore::open(&p).unwrap();
    store.close();
    drop(store);
    let c = rusqlite::Connection::open(p.join(sqlite::DB_FILE)).unwrap();
    for table in ["messages", "queue"] {
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN SELECT 1 FROM {table} WHERE blob_id = ?1"
            ))
            .unwrap()
            .query_map([1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|l| l.contains("USING") && l.contains("INDEX")),
            "{table}: {plan:?}"
        );
    }
}

/// Queue parameters are stored as JSON: rows written before the type was shared (an
/// empty value, the hand-written JSON, a newer writer's fields, or garbage) still read,
/// the unreadable ones as defaults; a new row stores the same sorted-key JSON.
#[tokio::test]
async fn stored_queue_parameters_read_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let store = SqliteStore::open(&p).unwrap();
    store.add_domain("example.test").await.unwrap();
    let mut params = DeliveryParams {
        dkim_domain: Some("example.test".into()),
        ret: Some(Ret::Full),
        ..Default::default()
    };
    params.rcpt.insert(
        "x@remote.test".into(),
        RecipientParams {
            notify: Some(vec![NotifyOn::Never]),
            orcpt: None,
        },
    );
    let id = store
        .ingest(Ingest {
            data: body(1),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: "a@example.test".into(),
                recipients: vec!["x@remote.test".into()],
                params: params.clone(),
                data: None,
            }),
        })
        .await
        .unwrap()
        .queue_id
        .unwrap();
    store.close();
    drop(store);
    let c = rusqlite::Connection::open(p.join(sqlite::DB_FILE)).unwrap();
    let stored: String = c
        .query_row("SELECT params FROM queue WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored,
        r#"{"dkim_domain":"example.test","rcpt":{"x@remote.test":{"notify":["never"]}},"ret":"full"}"#
    );
    for (raw, want) in [
        ("", DeliveryParams::default()),
        ("not json", DeliveryParams::default()),
        (
            r#"{"smtputf8":true,"future":1}"#,
            DeliveryParams {
                smtputf8: true,
                ..Default::default()
            },
        ),
        (stored.as_str(), params.clone()),
    ] {
        c.execute(
            "UPDATE queue SET params = ?1 WHERE id = ?2",
            rusqlite::params![raw, id],
        )
        .unwrap();
        let store = SqliteStore::open(&p).unwrap();
        let q = store.queue_get(id).await.unwrap().unwrap();
        assert_eq!(q.params, want, "{raw}");
        store.close();
    }
}

#[tokio::test]
async fn migration_2_keeps_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let store = SqliteStore::open(&p).unwrap();
    store.add_domain("example.test").await.unwrap();
    let a = store.create_account("a@example.test", "x").await.unwrap();
    store.create_mailbox(a.id, "Kept", None).await.unwrap();
    store.create_mailbox(a.id, "Dropped", None).await.unwrap();
    store.close();
    drop(store);
    // Back to version 1: the subscription only in the old column.
    let c = rusqlite::Connection::open(p.join(sqlite::DB_FILE)).unwrap();
    c.execute_batch(
        "DROP TABLE subscriptions; UPDATE mailboxes SET subscribed = (name <> 'Dropped');
         ALTER TABLE mailboxes DROP COLUMN first_recent_uid; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(c);
    let store = SqliteStore::open(&p).unwrap();
    let subs = store.subscriptions(a.id).await.unwrap();
    assert!(subs.contains(&"Kept".to_string()), "{subs:?}");
    assert!(subs.contains(&"INBOX".to_string()), "{subs:?}");
    assert!(!subs.contains(&"Dropped".to_string()), "{subs:?}");
    store.close();
}

/// Migration 5 (`\Recent` in the store): messages stored before it are not recent,
/// messages after it are, until a session claims them.
#[tokio::test]
async fn migration_5_starts_recent_after_existing_messages() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let store = SqliteStore::open(&p).unwrap();
    store.add_domain("example.test").await.unwrap();
    let a = store.create_account("a@example.test", "x").await.unwrap();
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap().unwrap();
    let ingest = |n: u8| Ingest {
        data: format!("Subject: {n}\r\n\r\nbody\r\n").into_bytes(),
        internal_date: 1,
        deliveries: vec![Delivery {
            target: DeliveryTarget::Mailbox(inbox.id),
            flags: Flags::default(),
        }],
        queue: None,
    };
    store.ingest(ingest(1)).await.unwrap();
    store.ingest(ingest(2)).await.unwrap();
    store.close();
    drop(store);
    // Back to version 4: no first_recent_uid column.
    let c = rusqlite::Connection::open(p.join(sqlite::DB_FILE)).unwrap();
    c.execute_batch("ALTER TABLE mailboxes DROP COLUMN first_recent_uid; PRAGMA user_version = 4;")
        .unwrap();
    drop(c);
    let store = SqliteStore::open(&p).unwrap();
    assert_eq!(store.mailbox_status(inbox.id).await.unwrap().recent, 0);
    store.ingest(ingest(3)).await.unwrap();
    let st = store.mailbox_status(inbox.id).await.unwrap();
    assert_eq!(
        (st.messages, st.recent, st.mailbox.first_recent_uid),
        (3, 1, 3)
    );
    store.close();
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    {
        let s = SqliteStore::open(&p).unwrap();
        s.add_domain("example.test").await.unwrap();
        s.create_account("a@example.test", "h").await.unwrap();
        s.close();
    }
    let s = SqliteStore::open(&p).unwrap();
    assert!(s.account("a@example.test").await.unwrap().is_some());
}

fn body(n: u64) -> Vec<u8> {
    // Large enough that a torn write would be visible, with the number inside.
    let mut b = format!("Subject: message {n}\r\n\r\n").into_bytes();
    b.extend(std::iter::repeat_n(b'x', 8192));
    b.extend(format!("\r\nend {n}\r\n").into_bytes());
    b
}

const CHILD_ENV: &str = "BULWARK_STORE_SIGKILL_CHILD";

/// Child side: writes messages from 8 concurrent tasks forever, printing "ACK n"
/// only after the store acknowledged message n.
fn child_writer(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(std::path::Path::new(dir)).unwrap();
        let acc = store.account("a@example.test").await.unwrap().unwrap();
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = store.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    store
                        .ingest(Ingest {
                            data: body(n),
                            internal_date: n as i64,
                            deliveries: vec![Delivery {
                                target: DeliveryTarget::Inbox(acc.id),
                                flags: Flags::default(),
                            }],
                            queue: None,
                        })
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {n}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// A writer process is killed with SIGKILL mid-stream; the store must open cleanly
/// with every acknowledged message present exactly once and no partial message.
#[test]
fn sigkill_loses_nothing_acknowledged() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_writer(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("store");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = SqliteStore::open(&p).unwrap();
        s.add_domain("example.test").await.unwrap();
        s.create_account("a@example.test", "h").await.unwrap();
        s.close();
    });

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::tests::sigkill_loses_nothing_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &p)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ACK ") {
            acked.push(n.parse::<u64>().unwrap());
            if acked.len() == 400 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    let _ = child.wait();
    assert_eq!(acked.len(), 400, "child stopped early");

    rt.block_on(async {
        let s = SqliteStore::open(&p).unwrap();
        let acc = s.account("a@example.test").await.unwrap().unwrap();
        let inbox = s.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
        let msgs = s.list_messages(inbox.id).await.unwrap();
        let mut seen = std::collections::HashMap::new();
        for m in &msgs {
            let n = m.internal_date as u64;
            let data = s.read_blob(m.blob_id).await.unwrap();
            assert_eq!(data, body(n), "message {n} is complete");
            *seen.entry(n).or_insert(0) += 1;
        }
        for n in &acked {
            assert_eq!(
                seen.get(n),
                Some(&1),
                "acknowledged message {n} present exactly once"
            );
        }
        assert!(seen.values().all(|&c| c == 1), "no duplicates");
        // UIDs remain strictly increasing after the crash.
        let before = inbox.uidnext;
        let r = s
            .ingest(Ingest {
                data: body(999_999),
                internal_date: 0,
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Inbox(acc.id),
                    flags: Flags::default(),
                }],
                queue: None,
            })
            .await
            .unwrap();
        assert_eq!(r.delivered[0].2, before);
    });
}

/// Fills a mailbox "Big" of alice with `n` messages of `size` octets each (in batches,
/// concurrently, so group commit keeps this quick) and returns its id.
async fn fill_mailbox(store: &SqliteStore, n: usize, size: usize) -> Account {
    store.add_domain("example.test").await.unwrap();
    let a = store
        .create_account("alice@example.test", "hash")
        .await
        .unwrap();
    let mb = store.create_mailbox(a.id, "Big", None).await.unwrap();
    let body = "x".repeat(size);
    // Concurrent ingests, so group commit makes this a few fsyncs, not n.
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|i| {
                let store = store.clone();
                let data = format!("Subject: {i}\r\n\r\n{body}\r\n").into_bytes();
                tokio::spawn(async move {
                    store
                        .ingest(Ingest {
                            data,
                            internal_date: 1_700_000_000,
                            deliveries: vec![Delivery {
                                target: DeliveryTarget::Mailbox(mb.id),
                                flags: Flags::default(),
                            }],
                            queue: None,
                        })
                        .await
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap().unwrap();
        }
    }
    a
}

fn db_file_bytes(dir: &std::path::Path) -> u64 {
    ["bulwark.db", "bulwark.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Deleting a mailbox of many messages leaves free pages; the background reclaim
/// (`reclaim_space`, in steps) gives them back and the file shrinks.
#[tokio::test]
async fn deleted_mail_is_given_back_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SqliteStore::open(&path).unwrap();
    assert!(
        store.space().await.unwrap().reclaimable,
        "new stores reclaim"
    );
    let a = fill_mailbox(&store, 400, 32 * 1024).await;
    let full = store.space().await.unwrap();
    assert!(full.size_bytes > 12 * 1024 * 1024, "{full:?}");
    store.delete_mailbox(a.id, "Big").await.unwrap();
    let deleted = store.space().await.unwrap();
    assert!(
        deleted.free_pages * deleted.page_size > 10 * 1024 * 1024,
        "{deleted:?}"
    );
    let mut steps = 0;
    loop {
        let s = store.reclaim_space(1024).await.unwrap();
        steps += 1;
        if s.free_pages == 0 {
            break;
        }
        assert!(steps < 100, "reclaim makes no progress: {s:?}");
    }
    assert!(steps > 1, "reclaimed in steps, not in one go");
    let after = store.space().await.unwrap();
    assert!(
        after.size_bytes < full.size_bytes / 4,
        "{after:?} vs {full:?}"
    );
    // On disk too: the last step checkpoints, which truncates the database file.
    let db = std::fs::metadata(path.join(sqlite::DB_FILE)).unwrap().len();
    assert!(db < full.size_bytes / 4, "{db} vs {full:?}");
    store.close();
    drop(store);
    let c = sqlite::compact(&path, false).unwrap();
    assert!(!c.rewritten);
    assert_eq!(c.file_bytes_after, db_file_bytes(&path));
    assert!(
        c.file_bytes_after < full.size_bytes / 4,
        "{c:?} vs {full:?}"
    );
}

/// A store created before incremental auto-vacuum cannot reclaim in the background;
/// `compact` refuses to rewrite it while a server may run, and with permission
/// rewrites it once (VACUUM), after which it reclaims like a new one.
#[tokio::test]
async fn an_old_store_is_converted_once_by_compact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    std::fs::create_dir_all(&path).unwrap();
    {
        // What older versions made: the default (no auto-vacuum) fixed by the first table.
        let c = rusqlite::Connection::open(path.join(sqlite::DB_FILE)).unwrap();
        c.execute_batch("PRAGMA auto_vacuum = NONE; PRAGMA journal_mode = WAL; CREATE TABLE legacy (x); DROP TABLE legacy;")
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(!store.space().await.unwrap().reclaimable);
    let a = fill_mailbox(&store, 300, 32 * 1024).await;
    let full = store.space().await.unwrap();
    store.delete_mailbox(a.id, "Big").await.unwrap();
    let s = store.reclaim_space(100_000).await.unwrap();
    assert!(
        s.free_pages > 1000,
        "nothing reclaimed without the mode: {s:?}"
    );
    store.close();
    let e = sqlite::compact(&path, false).unwrap_err();
    assert!(e.to_string().contains("stop the server"), "{e}");
    let c = sqlite::compact(&path, true).unwrap();
    assert!(c.rewritten);
    assert!(
        c.file_bytes_after < full.size_bytes / 4,
        "{c:?} vs {full:?}"
    );
    let store = SqliteStore::open(&path).unwrap();
    let s = store.space().await.unwrap();
    assert!(s.reclaimable && s.free_pages == 0, "{s:?}");
    // The mail that was not deleted is still there.
    let inbox = store.mailbox(a.id, "INBOX").await.unwrap().unwrap();
    assert!(store.list_messages(inbox.id).await.unwrap().is_empty());
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
}

#[test]
fn u32_columns_read_back_unchanged() {
    use super::column_u32;
    assert_eq!(column_u32(0), 0);
    assert_eq!(column_u32(i64::from(u32::MAX)), u32::MAX);
}
