//! The store-space figure: the database's size on disk after deleting 90 % of N
//! messages — right after the deletion, after the server's background reclaim (the
//! same `reclaim_space` steps `serve` runs), and after `bulwark store compact`.
//!
//! Bulwark only, on a store of its own in a work directory: the reference's Maildir
//! frees a file's blocks when the file is unlinked, so it has no such figure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bulwark_store::{SqliteStore, Store};

use crate::seed;

/// Pages per reclaim step and steps between checks: what `serve` does per round.
const STEP_PAGES: u32 = 2048;

pub struct SpaceSpec {
    pub work: PathBuf,
    pub count: usize,
    pub size: usize,
    pub delete_percent: usize,
}

fn file_bytes(store: &Path) -> u64 {
    ["bulwark.db", "bulwark.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(store.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Runs the scenario and returns the Markdown section for the results file.
pub async fn run(spec: &SpaceSpec) -> anyhow::Result<String> {
    let dir = spec.work.join("store-space");
    let _ = std::fs::remove_dir_all(&dir);
    let address = "space@bench.example.test";
    {
        let s = SqliteStore::open(&dir)
            .with_context(|| format!("cannot create a store in {}", dir.display()))?;
        s.add_domain("bench.example.test").await?;
        s.create_account(address, "x").await?;
        s.close();
    }
    seed::seed_store(
        &dir,
        &seed::SeedSpec {
            address,
            count: spec.count,
            size: spec.size,
            first_index: 0,
        },
    )
    .await?;
    let full = bulwark_store::sqlite::compact(&dir, false)?.file_bytes_after;

    let store = Arc::new(SqliteStore::open(&dir)?);
    let account = store.account(address).await?.context("account")?;
    let inbox = store.mailbox(account.id, "INBOX").await?.context("INBOX")?;
    let uids: Vec<bulwark_store::Uid> = store
        .list_messages(inbox.id)
        .await?
        .iter()
        .map(|m| m.uid)
        .enumerate()
        .filter(|(i, _)| i % 100 < spec.delete_percent)
        .map(|(_, u)| u)
        .collect();
    let deleted = uids.len();
    for chunk in uids.chunks(1000) {
        store.delete_messages(inbox.id, chunk).await?;
    }
    let after_delete = file_bytes(&dir);
    let mut steps = 0;
    let started = std::time::Instant::now();
    loop {
        let s = store.reclaim_space(STEP_PAGES).await?;
        steps += 1;
        if s.free_pages == 0 || !s.reclaimable {
            break;
        }
    }
    let reclaim_secs = started.elapsed().as_secs_f64();
    let after_reclaim = file_bytes(&dir);
    store.close();
    drop(store);
    let compacted = bulwark_store::sqlite::compact(&dir, false)?.file_bytes_after;
    let _ = std::fs::remove_dir_all(&dir);

    Ok(format!(
        "## Store space after deleting {pct} % of {count} messages\n\n\
         {count} messages of {size} octets in one mailbox; {deleted} deleted (POP3-style \
         `delete_messages`), then the background reclaim's steps ({STEP_PAGES} pages each) \
         until no free page is left, then `bulwark store compact`.\n\n\
         | state | database + WAL on disk |\n|---|---|\n\
         | full | {} |\n\
         | right after deleting | {} |\n\
         | after the background reclaim ({steps} steps, {reclaim_secs:.1} s) | {} |\n\
         | after `store compact` | {} |\n",
        mib(full),
        mib(after_delete),
        mib(after_reclaim),
        mib(compacted),
        pct = spec.delete_percent,
        count = spec.count,
        size = spec.size,
    ))
}
