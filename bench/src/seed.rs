//! Seeding large mailboxes quickly, outside the protocols (seeding is not what is
//! measured):
//!
//! - Bulwark: through the store crate directly (`SqliteStore::open` on the data
//!   directory's store while the server is stopped), many concurrent `ingest` calls
//!   so group commit writes them in large batches — the same code path SMTP delivery
//!   uses, with its durability.
//! - Dovecot: Maildir files written straight into `cur/` with Dovecot's file name
//!   conventions (`S=<size>` so it need not stat sizes); the caller then lets Dovecot
//!   build its index (`doveadm index`) before anything is timed.

use std::os::unix::fs::{chown, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, SqliteStore, Store};

use crate::message;

pub struct SeedSpec<'a> {
    pub address: &'a str,
    pub count: usize,
    pub size: usize,
    /// Messages are numbered from here (so a second seeding adds different ones).
    pub first_index: usize,
}

/// Fixed internal date (2 Nov 2026) plus the index, so every message differs.
const BASE_DATE: i64 = 1_793_613_600;

pub async fn seed_store(store_dir: &Path, spec: &SeedSpec<'_>) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(store_dir)
            .with_context(|| format!("cannot open the store in {}", store_dir.display()))?,
    );
    let account = store
        .account(spec.address)
        .await?
        .with_context(|| format!("no account {}", spec.address))?;
    let mut inflight = tokio::task::JoinSet::new();
    for i in spec.first_index..spec.first_index + spec.count {
        if inflight.len() >= 512 {
            if let Some(r) = inflight.join_next().await {
                r??;
            }
        }
        let store = store.clone();
        let data = message::build(i, spec.size, "sender@bench.example.test", spec.address);
        let target = DeliveryTarget::Inbox(account.id);
        inflight.spawn(async move {
            store
                .ingest(Ingest {
                    data,
                    internal_date: BASE_DATE + i as i64,
                    deliveries: vec![Delivery {
                        target,
                        flags: Flags::default(),
                    }],
                    queue: None,
                })
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        });
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    Ok(())
}

/// Writes `spec.count` messages into `maildir` (created with cur/new/tmp), owned by
/// `owner` (uid, gid).
pub fn seed_maildir(maildir: &Path, spec: &SeedSpec<'_>, owner: (u32, u32)) -> anyhow::Result<()> {
    for sub in ["", "cur", "new", "tmp"] {
        let d = maildir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        chown(&d, Some(owner.0), Some(owner.1))?;
    }
    // Parent directories up to the user's home (Dovecot creates the rest itself).
    if let Some(home) = maildir.parent() {
        chown(home, Some(owner.0), Some(owner.1))?;
    }
    let cur = maildir.join("cur");
    let pid = std::process::id();
    for i in spec.first_index..spec.first_index + spec.count {
        let data = message::build(i, spec.size, "sender@bench.example.test", spec.address);
        let name = format!(
            "{}.M{i}P{pid}.bench,S={}:2,",
            BASE_DATE + i as i64,
            data.len()
        );
        let path = cur.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::io::Write::write_all(&mut f, &data)?;
        chown(&path, Some(owner.0), Some(owner.1))?;
    }
    Ok(())
}
