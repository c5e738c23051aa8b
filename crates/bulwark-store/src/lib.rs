//! The store: domains, accounts, aliases, mailboxes, messages and the outbound queue.
//!
//! Owns: the `Store` API every protocol uses, its durability contract, and the embedded
//! backend (SQLite in WAL mode, full fsync, group commit). A PostgreSQL backend will
//! implement the same trait and pass the same `conformance` suite.
//!
//! Durability contract: every method that writes returns only after the change is on
//! disk (the commit's fsync returned). Concurrent writes are batched into one
//! transaction and one fsync (group commit) rather than made unsafe. Message bodies
//! are immutable, stored once per ingest however many mailboxes receive them, and
//! reference-counted.
//!
//! Must not: know protocols. IMAP sequence numbers, SMTP replies and the like belong
//! to the protocol crates; the store speaks UIDs, MODSEQs and addresses.

use std::sync::Arc;

use async_trait::async_trait;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod delivery;
mod ids;
mod params;
pub mod sqlite;
mod types;

pub use delivery::{
    plan_delivery, planned_overhead, return_path_field, Envelope, Folder, Recipients,
};
pub use params::{DeliveryParams, NotifyOn, RecipientParams, Ret};
pub use sqlite::SqliteStore;
pub use types::*;

/// Store failures, typed so callers can answer precisely (e.g. IMAP `NO [ALREADYEXISTS]`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    /// The named domain, account, mailbox, message or queue entry does not exist.
    NotFound(String),
    #[error("{0} already exists")]
    /// A domain, account, alias or mailbox with that name exists already.
    AlreadyExists(String),
    #[error("{0}")]
    /// The request breaks a rule of the store (e.g. deleting INBOX); says which.
    Invalid(String),
    /// The store was written by a newer Bulwark.
    #[error("store schema version {found} is newer than this program understands ({known}); upgrade Bulwark")]
    TooNew {
        /// The store's schema version.
        found: i64,
        /// The newest version this program knows.
        known: i64,
    },
    /// The database itself failed (disk full, corruption, I/O error).
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store is shut down")]
    /// The store was shut down; no more requests are served.
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// The result of every store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Login addresses kept per account (`Store::record_login_source`).
pub const MAX_LOGIN_SOURCES: usize = 100;

/// A shared handle to whichever backend is configured.
pub type SharedStore = Arc<dyn Store>;

/// The store API. All methods are safe to call concurrently; writes are durable when
/// they return.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- domains ----
    /// Adds a domain we accept mail for.
    async fn add_domain(&self, name: &str) -> Result<Domain>;
    /// Refuses while accounts or aliases of the domain exist.
    async fn delete_domain(&self, name: &str) -> Result<()>;
    /// Every domain, by name.
    async fn list_domains(&self) -> Result<Vec<Domain>>;
    /// True when mail to this domain is ours.
    async fn is_local_domain(&self, name: &str) -> Result<bool>;

    // ---- accounts ----
    /// Creates the account with INBOX and the special-use mailboxes (Sent, Drafts,
    /// Trash, Junk, Archive). The domain must exist.
    async fn create_account(&self, address: &str, password_hash: &str) -> Result<Account>;
    /// Deletes the account with all its mailboxes and messages.
    async fn delete_account(&self, address: &str) -> Result<()>;
    /// Replaces the account's password hash (PHC string).
    async fn set_password_hash(&self, address: &str, password_hash: &str) -> Result<()>;
    /// The account with this address (case-insensitive), if any.
    async fn account(&self, address: &str) -> Result<Option<Account>>;
    /// The account with this id, if any.
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>>;
    /// The account with its password hash, for authentication only.
    async fn credentials(&self, address: &str) -> Result<Option<Credentials>>;
    /// Every account, by address.
    async fn list_accounts(&self) -> Result<Vec<Account>>;

    /// Records that `account` logged in successfully from `network` (a client address,
    /// an IPv6 /64 as its prefix) at `at` (Unix seconds). The `MAX_LOGIN_SOURCES`
    /// most recent addresses of each account are kept.
    async fn record_login_source(&self, account: AccountId, network: &str, at: i64) -> Result<()>;
    /// True when the account with this address logged in from `network` at or after
    /// `since`.
    async fn login_source_known(&self, address: &str, network: &str, since: i64) -> Result<bool>;

    // ---- aliases and addresses ----
    /// Adds SOURCE → TARGET. SOURCE must be in a local domain and not an account;
    /// TARGET may be local or remote.
    async fn add_alias(&self, source: &str, target: &str) -> Result<()>;
    /// Removes SOURCE → TARGET, or every target of SOURCE when `target` is None.
    async fn delete_alias(&self, source: &str, target: Option<&str>) -> Result<()>;
    /// Every alias entry, by source then target.
    async fn list_aliases(&self) -> Result<Vec<Alias>>;
    /// What mail to `address` means (aliases expanded recursively, loops cut).
    async fn resolve(&self, address: &str) -> Result<Resolution>;
    /// Lets an account send as an extra address (beyond its own and its aliases).
    async fn add_send_as(&self, account: AccountId, address: &str) -> Result<()>;
    /// Withdraws a send-as grant of `add_send_as`.
    async fn delete_send_as(&self, account: AccountId, address: &str) -> Result<()>;
    /// True when `address` is the account's own, an alias delivering to it, or a
    /// configured send-as address: the anti-spoofing rule of submission.
    async fn may_send_as(&self, account: AccountId, address: &str) -> Result<bool>;

    // ---- mailboxes ----
    /// The account's mailboxes: INBOX first, then by name.
    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    /// The account's mailbox with this name (INBOX in any case), if any.
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>>;
    /// The mailbox with this id, if any.
    async fn mailbox_by_id(&self, id: MailboxId) -> Result<Option<Mailbox>>;
    /// Creates a mailbox; `AlreadyExists` when the name is taken.
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<Mailbox>;
    /// Deletes the mailbox and its messages. INBOX cannot be deleted.
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    /// Renames the mailbox and every mailbox below it ("old/..." → "new/..."). Renaming
    /// INBOX is refused here; IMAP implements its special meaning with `move_messages`.
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// Subscribes or unsubscribes an existing mailbox (NotFound if it does not exist).
    async fn set_subscribed(&self, account: AccountId, name: &str, subscribed: bool) -> Result<()>;
    /// The account's subscribed names (RFC 9051 §6.3.7), sorted. They are names, not
    /// mailboxes: deleting a mailbox keeps its subscription, renaming moves it, and a
    /// name may be subscribed whether or not a mailbox has it.
    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>>;
    /// Subscribes a name (idempotent). `create_mailbox` does not subscribe (RFC 3501
    /// §6.3.3 leaves that to SUBSCRIBE, as Dovecot does); `create_account` subscribes the
    /// mailboxes every account gets.
    async fn add_subscription(&self, account: AccountId, name: &str) -> Result<()>;
    /// Unsubscribes a name, existing mailbox or not; false when it was not subscribed.
    async fn remove_subscription(&self, account: AccountId, name: &str) -> Result<bool>;
    /// Message, unseen and recent counts and total size, with the mailbox.
    async fn mailbox_status(&self, mailbox: MailboxId) -> Result<MailboxStatus>;
    /// RFC 3501 §2.3.2: the session that claims a message's `\Recent` owns it, and no
    /// other session sees it recent. Atomically raises the mailbox's `first_recent_uid`
    /// to `below` (never lowers it) and returns the value before, so the caller owns
    /// exactly the UIDs in `[returned, below)`; two callers never get the same UID.
    /// Kept in the store, not in memory, so sessions on different nodes agree.
    async fn claim_recent(&self, mailbox: MailboxId, below: Uid) -> Result<Uid>;

    // ---- messages ----
    /// Stores a message body once, delivers it to every target and optionally queues it
    /// for remote recipients — atomically and durably.
    async fn ingest(&self, ingest: Ingest) -> Result<IngestReceipt>;
    /// Several ingests in one transaction: every one is stored, or none (IMAP
    /// MULTIAPPEND, RFC 3502 §6.3.11). Receipts in the order given.
    async fn ingest_all(&self, ingests: Vec<Ingest>) -> Result<Vec<IngestReceipt>>;
    /// Every message in a mailbox, by ascending UID.
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<MessageMeta>>;
    /// Messages with UID in `[first, last]`.
    async fn messages_in_range(
        &self,
        mailbox: MailboxId,
        first: Uid,
        last: Uid,
    ) -> Result<Vec<MessageMeta>>;
    /// The raw message (RFC 5322 octets, CRLF line ends).
    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>>;
    /// Up to `len` octets of a raw message from `offset` (fewer at its end, none
    /// beyond it), without loading the rest: large bodies are sent to clients in
    /// pieces so a session holds one piece, not the message.
    async fn read_blob_range(&self, blob: BlobId, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Several raw messages in one round trip (SEARCH, bulk FETCH), in the order asked;
    /// bodies that no longer exist (expunged meanwhile) are left out.
    async fn read_blobs(&self, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>>;
    /// Opaque per-body cache (e.g. IMAP's parsed ENVELOPE/BODYSTRUCTURE), None until set.
    async fn blob_summaries(&self, blobs: &[BlobId]) -> Result<Vec<(BlobId, Vec<u8>)>>;
    /// Stores the opaque per-body cache read by `blob_summaries`.
    async fn set_blob_summary(&self, blob: BlobId, summary: &[u8]) -> Result<()>;
    /// STORE: changes the flags of the given UIDs, skipping those modified after
    /// `unchanged_since` (RFC 7162 §3.1.3); raises MODSEQ for each change.
    async fn update_flags(
        &self,
        mailbox: MailboxId,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<FlagUpdate>;
    /// COPY: copies the messages to another mailbox, sharing their bodies (RFC 4315
    /// COPYUID pairs in the result).
    async fn copy_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<CopyResult>;
    /// COPY then EXPUNGE of the source messages, atomically (RFC 6851).
    async fn move_messages(
        &self,
        from: MailboxId,
        uids: &[Uid],
        to: MailboxId,
    ) -> Result<CopyResult>;
    /// Removes messages flagged \Deleted (only those in `uids` when given); returns
    /// the expunged UIDs.
    async fn expunge(&self, mailbox: MailboxId, uids: Option<&[Uid]>) -> Result<Vec<Uid>>;
    /// Removes the given messages whatever their flags (POP3 DELE at QUIT).
    async fn delete_messages(&self, mailbox: MailboxId, uids: &[Uid]) -> Result<Vec<Uid>>;
    /// Messages changed and UIDs expunged after `modseq` (RFC 7162 CONDSTORE/QRESYNC).
    async fn changes_since(&self, mailbox: MailboxId, modseq: ModSeq) -> Result<MailboxChanges>;

    // ---- queue ----
    /// Every queue entry with its recipients, by id.
    async fn queue_list(&self) -> Result<Vec<QueuedMessage>>;
    /// Entry count and oldest entry in one cheap query (the queue gauges are sampled
    /// often; `queue_list` reads every entry with its recipients).
    async fn queue_stats(&self) -> Result<QueueStats>;
    /// One queue entry with its recipients, if it still exists.
    async fn queue_get(&self, id: QueueId) -> Result<Option<QueuedMessage>>;
    /// Claims up to `limit` entries due at `now` and not leased by another worker,
    /// leasing them until `now + lease_secs`. A crashed worker's lease simply expires.
    async fn queue_claim_due(
        &self,
        now: i64,
        lease_secs: i64,
        limit: u32,
    ) -> Result<Vec<QueuedMessage>>;
    /// Records an attempt's outcome per recipient and releases the lease. When no
    /// recipient is pending any more the entry is removed.
    async fn queue_update(
        &self,
        id: QueueId,
        updates: &[RecipientUpdate],
        attempts: &[DeliveryAttempt],
        delay_notified: bool,
    ) -> Result<()>;
    /// Records the outcome of part of an attempt (one SMTP transaction) while the
    /// worker keeps the entry: the lease is extended to `lease_until` and the entry
    /// stays even when no recipient is pending (the closing `queue_update` removes
    /// it). With no updates it only renews the lease. `NotFound` when the entry was
    /// deleted meanwhile.
    async fn queue_progress(
        &self,
        id: QueueId,
        updates: &[RecipientUpdate],
        attempts: &[DeliveryAttempt],
        lease_until: i64,
    ) -> Result<()>;
    /// The entry's recorded delivery attempts, oldest first.
    async fn queue_attempts(&self, id: QueueId) -> Result<Vec<DeliveryAttempt>>;
    /// Makes one entry (or all) due now; returns how many.
    async fn queue_retry(&self, id: Option<QueueId>, now: i64) -> Result<u64>;
    /// Removes an entry without any notice; false when it did not exist.
    async fn queue_delete(&self, id: QueueId) -> Result<bool>;

    // ---- space ----
    /// The store's size on disk and its free (reclaimable) pages.
    async fn space(&self) -> Result<StoreSpace>;
    /// Gives up to `max_pages` free pages back to the file system, durably; returns
    /// the space afterwards. Does nothing on a store that is not `reclaimable` yet
    /// (`bulwark store compact` converts it).
    async fn reclaim_space(&self, max_pages: u32) -> Result<StoreSpace>;

    // ---- notifications ----
    /// Events after each committed change, for IDLE and queue workers, published
    /// before the write that caused them returns. A lagging receiver loses events and
    /// must resynchronise (e.g. with `changes_since`).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<StoreEvent>;
}
