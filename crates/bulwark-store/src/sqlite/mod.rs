//! The embedded backend: SQLite in WAL mode with `synchronous = FULL`.
//!
//! One writer thread owns the only write connection and commits concurrent jobs
//! together (see `writer`); reads run on a small pool of read-only connections, which
//! WAL lets proceed while the writer commits. Bodies live in the database too, so one
//! fsync covers body, index and queue entry of a whole batch of messages.

mod accounts;
mod mailboxes;
mod messages;
mod queue;
mod schema;
mod space;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{broadcast, Semaphore};

pub use schema::SCHEMA_VERSION;
pub use space::{compact, Compaction};

use crate::types::*;
use crate::{Result, Store, StoreError};
use writer::Writer;

/// File name of the database inside the store directory.
pub const DB_FILE: &str = "bulwark.db";
const READERS: usize = 4;

/// A column the store only ever writes from a `u32` (UIDs, UIDVALIDITY, attempts) or
/// that counts messages of one mailbox (fewer than its `u32` UIDs), read back as one.
// Cannot truncate: every value stored in these columns came from a u32.
#[allow(clippy::cast_possible_truncation)]
pub(crate) fn column_u32(v: i64) -> u32 {
    v as u32
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: Arc<parking_lot::Mutex<Vec<Connection>>>,
    read_slots: Semaphore,
    events: broadcast::Sender<StoreEvent>,
}

fn configure(conn: &Connection, writer: bool) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if writer {
        // WAL + FULL: every commit fsyncs the WAL before returning.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "cannot enable WAL (got {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
    } else {
        conn.pragma_update(None, "query_only", "ON")?;
        conn.pragma_update(None, "mmap_size", 256i64 * 1024 * 1024)?;
    }
    conn.pragma_update(None, "cache_size", -16_000i64)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0700) the store in `dir` and applies migrations.
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        restrict_file(&path);
        // Before anything else touches a new file: the vacuum mode is fixed when the
        // first table is created (see space.rs).
        space::prefer_incremental(&conn)?;
        configure(&conn, true)?;
        schema::migrate(&mut conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let c = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            configure(&c, false)?;
            readers.push(c);
        }
        let (events, _) = broadcast::channel(4096);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: dir.to_path_buf(),
                writer: Writer::start(conn, events.clone()),
                readers: Arc::new(parking_lot::Mutex::new(readers)),
                read_slots: Semaphore::new(READERS),
                events,
            }),
        })
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Finishes queued writes and stops the writer. Further writes fail with `Closed`.
    pub fn close(&self) {
        self.inner.writer.close();
    }

    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let _slot = self
            .inner
            .read_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = self.inner.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().pop().ok_or(StoreError::Closed)?;
            let r = f(&conn);
            readers.lock().push(conn);
            r
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }

    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &mut Vec<StoreEvent>) -> Result<R> + Send + 'static,
    {
        self.inner.writer.write(f).await
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

fn restrict_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_domain(&self, name: &str) -> Result<Domain> {
        let name = accounts::valid_domain(name)?;
        self.write(move |tx, _| accounts::add_domain(tx, &name))
            .await
    }
    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = normalize_address(name);
        self.write(move |tx, _| accounts::delete_domain(tx, &name))
            .await
    }
    async fn list_domains(&self) -> Result<Vec<Domain>> {
        self.read(accounts::list_domains).await
    }
    async fn is_local_domain(&self, name: &str) -> Result<bool> {
        let name = normalize_address(name);
        self.read(move |c| accounts::domain_id(c, &name).map(|d| d.is_some()))
            .await
    }

    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account> {
        let address = accounts::valid_address(address)?;
        let hash = password_hash.to_string();
        self.write(move |tx, _| accounts::create_account(tx, &address, &hash))
            .await
    }
    async fn delete_account(&self, address: &str) -> Result<()> {
        let address = normalize_address(address);
        self.write(move |tx, ev| accounts::delete_account(tx, &address, ev))
            .await
    }
    async fn set_password_hash(&self, address: &str, password_hash: &str) -> Result<()> {
        let address = normalize_address(address);
        let hash = password_hash.to_string();
        self.write(move |tx, _| accounts::set_password_hash(tx, &address, &hash))
            .await
    }
    async fn account(&self, address: &str) -> Result<Option<Account>> {
        let address = normalize_address(address);
        self.read(move |c| accounts::account(c, &address)).await
    }
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>> {
        self.read(move |c| accounts::account_by_id(c, id)).await
    }
    async fn credentials(&self, address: &str) -> Result<Option<Credentials>> {
        let address = normalize_address(address);
        self.read(move |c| accounts::credentials(c, &address)).await
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(accounts::list_accounts).await
    }

    async fn add_alias(&self, source: &str, target: &str) -> Result<()> {
        let source = accounts::valid_address(source)?;
        let target = accounts::valid_address(target)?;
        self.write(move |tx, _| accounts::add_alias(tx, &source, &target))
            .await
    }
    async fn delete_alias(&self, source: &str, target: Option<&str>) -> Result<()> {
        let source = normalize_address(source);
        let target = target.map(normalize_address);
        self.write(move |tx, _| accounts::delete_alias(tx, &source, target.as_deref()))
            .await
    }
    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(accounts::list_aliases).await
    }
    async fn resolve(&self, address: &str) -> Result<Resolution> {
        let address = normalize_address(address);
        self.read(move |c| accounts::resolve(c, &address)).await
    }
    async fn add_send_as(&self, account: AccountId, address: &str) -> Result<()> {
        let address = accounts::valid_address(address)?;
        self.write(move |tx, _| accounts::add_send_as(tx, account, &address))
            .await
    }
    async fn delete_send_as(&self, account: AccountId, address: &str) -> Result<()> {
        let address = normalize_address(address);
        self.write(move |tx, _| accounts::delete_send_as(tx, account, &address))
            .await
    }
    async fn record_login_source(&self, account: AccountId, network: &str, at: i64) -> Result<()> {
        let network = network.to_string();
        self.write(move |tx, _| accounts::record_login_source(tx, account, &network, at))
            .await
    }
    async fn login_source_known(&self, address: &str, network: &str, since: i64) -> Result<bool> {
        let address = normalize_address(address);
        let network = network.to_string();
        self.read(move |c| accounts::login_source_known(c, &address, &network, since))
            .await
    }
    async fn may_send_as(&self, account: AccountId, address: &str) -> Result<bool> {
        let address = normalize_address(address);
        self.read(move |c| accounts::may_send_as(c, account, &address))
            .await
    }

    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |c| mailboxes::list(c, account)).await
    }
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let name = mailboxes::canonical_name(name);
        self.read(move |c| mailboxes::by_name(c, account, &name))
            .await
    }
    async fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>> {
        self.read(move |c| mailboxes::by_id(c, id)).await
    }
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox> {
        let name = mailboxes::valid_name(name)?;
        self.write(move |tx, ev| mailboxes::create(tx, account, &name, special_use, ev))
            .await
    }
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = mailboxes::canonical_name(name);
        self.write(move |tx, ev| mailboxes::delete(tx, account, &name, ev))
            .await
    }
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let from = mailboxes::canonical_name(from);
        let to = mailboxes::valid_name(to)?;
        self.write(move |tx, ev| mailboxes::rename(tx, account, &from, &to, ev))
            .await
    }
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()> {
        let name = mailboxes::canonical_name(name);
        self.write(move |tx, _| mailboxes::set_subscribed(tx, account, &name, subscribed))
            .await
    }
    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        self.read(move |c| mailboxes::subscriptions(c, account))
            .await
    }
    async fn add_subscription(&self, account: AccountId, name: &str) -> Result<()> {
        let name = mailboxes::valid_name(name)?;
        self.write(move |tx, _| mailboxes::add_subscription(tx, account, &name))
            .await
    }
    async fn remove_subscription(&self, account: AccountId, name: &str) -> Result<bool> {
        let name = mailboxes::canonical_name(name);
        self.write(move |tx, _| mailboxes::remove_subscription(tx, account, &name))
            .await
    }
    async fn mailbox_status(&self, mailbox: MailboxId) -> Result<MailboxStatus> {
        self.read(move |c| mailboxes::status(c, mailbox)).await
    }
    async fn claim_recent(&self, mailbox: MailboxId, below: Uid) -> Result<Uid> {
        self.write(move |tx, _| mailboxes::claim_recent(tx, mailbox, below))
            .await
    }

    async fn ingest(&self, ingest: Ingest) -> Result<IngestReceipt> {
        self.write(move |tx, ev| messages::ingest(tx, ingest, ev))
            .await
    }
    async fn ingest_all(&self, ingests: Vec<Ingest>) -> Result<Vec<IngestReceipt>> {
        // One writer job is one SAVEPOINT: an error in any ingest rolls back all.
        self.write(move |tx, ev| {
            ingests
                .into_iter()
                .map(|i| messages::ingest(tx, i, ev))
                .collect()
        })
        .await
    }
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>> {
        self.read(move |c| messages::range(c, mailbox, Uid(1), Uid(u32::MAX)))
            .await
    }
    async fn messages_in_range(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
    ) -> Result<Vec<MessageMeta>> {
        self.read(move |c| messages::range(c, mailbox, first, last))
            .await
    }
    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>> {
        self.read(move |c| messages::read_blob(c, blob)).await
    }
    async fn read_blob_range(&self, blob: BlobId, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.read(move |c| messages::read_blob_range(c, blob, offset, len))
            .await
    }
    async fn read_blobs(&self, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>> {
        let blobs = blobs.to_vec();
        self.read(move |c| messages::read_blobs(c, &blobs)).await
    }
    async fn blob_summaries(&self, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>> {
        let blobs = blobs.to_vec();
        self.read(move |c| messages::summaries(c, &blobs)).await
    }
    async fn set_blob_summary(&self, blob: BlobId, summary: &[u8]) -> Result<()> {
        let summary = summary.to_vec();
        self.write(move |tx, _| messages::set_summary(tx, blob, &summary))
            .await
    }
    async fn update_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<FlagUpdate> {
        let uids = uids.to_vec();
        let flags = flags.clone();
        self.write(move |tx, ev| {
            messages::update_flags(tx, mailbox, &uids, op, &flags, unchanged_since, ev)
        })
        .await
    }
    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<CopyResult> {
        let uids = uids.to_vec();
        self.write(move |tx, ev| messages::copy(tx, from, &uids, to, false, ev))
            .await
    }
    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<CopyResult> {
        let uids = uids.to_vec();
        self.write(move |tx, ev| messages::copy(tx, from, &uids, to, true, ev))
            .await
    }
    async fn expunge(&self, mailbox: MailboxId, uids: Option<&[Uid]>) -> Result<Vec<Uid>> {
        let uids = uids.map(|u| u.to_vec());
        self.write(move |tx, ev| messages::expunge(tx, mailbox, uids.as_deref(), true, ev))
            .await
    }
    async fn delete_messages(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>> {
        let uids = uids.to_vec();
        self.write(move |tx, ev| messages::expunge(tx, mailbox, Some(&uids), false, ev))
            .await
    }
    async fn changes_since(&self, mailbox: MailboxId, modseq: ModSeq) -> Result<MailboxChanges> {
        self.read(move |c| messages::changes_since(c, mailbox, modseq))
            .await
    }

    async fn queue_list(&self) -> Result<Vec<QueuedMessage>> {
        self.read(queue::list).await
    }
    async fn queue_stats(&self) -> Result<QueueStats> {
        self.read(queue::stats).await
    }
    async fn queue_get(&self, id: QueueId) -> Result<Option<QueuedMessage>> {
        self.read(move |c| queue::get(c, id)).await
    }
    async fn queue_claim_due(
        &self,
        now: i64,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<QueuedMessage>> {
        self.write(move |tx, _| queue::claim_due(tx, now, lease_secs, limit))
            .await
    }
    async fn queue_update(
        &self,
        id: QueueId,
        updates: &[RecipientUpdate],
        attempts: &[DeliveryAttempt],
        delay_notified: bool,
    ) -> Result<()> {
        let updates = updates.to_vec();
        let attempts = attempts.to_vec();
        self.write(move |tx, _| queue::update(tx, id, &updates, &attempts, delay_notified))
            .await
    }
    async fn queue_progress(
        &self,
        id: QueueId,
        updates: &[RecipientUpdate],
        attempts: &[DeliveryAttempt],
        lease_until: i64,
    ) -> Result<()> {
        let updates = updates.to_vec();
        let attempts = attempts.to_vec();
        self.write(move |tx, _| queue::progress(tx, id, &updates, &attempts, lease_until))
            .await
    }
    async fn queue_attempts(&self, id: QueueId) -> Result<Vec<DeliveryAttempt>> {
        self.read(move |c| queue::attempts(c, id)).await
    }
    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> Result<u64> {
        self.write(move |tx, ev| queue::retry(tx, id, now, ev))
            .await
    }
    async fn queue_delete(&self, id: QueueId) -> Result<bool> {
        self.write(move |tx, _| queue::delete(tx, id)).await
    }

    async fn space(&self) -> Result<StoreSpace> {
        self.read(space::space).await
    }
    async fn reclaim_space(&self, max_pages: u32) -> Result<StoreSpace> {
        let after = self
            .write(move |tx, _| {
                space::reclaim(tx, max_pages)?;
                space::space(tx)
            })
            .await?;
        if after.reclaimable && after.free_pages == 0 {
            // The last step: let the file system see the smaller file now.
            let db = self.inner.path.join(DB_FILE);
            tokio::task::spawn_blocking(move || space::checkpoint(&db))
                .await
                .map_err(|e| StoreError::Backend(format!("checkpoint task failed: {e}")))??;
        }
        Ok(after)
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }
}
