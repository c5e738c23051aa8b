//! The values the store hands out and takes in. Plain data; no backend types leak.

use crate::DeliveryParams;

pub use crate::ids::{AccountId, BlobId, DomainId, MailboxId, QueueId};

/// A mail domain we accept mail for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub id: DomainId,
    pub name: String,
    pub created: i64,
}

/// A user account. Its address is its login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub address: String,
    pub created: i64,
}

/// An account with its password hash, for the authenticator only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub account: Account,
    /// PHC string (Argon2id). Never logged: Debug prints it redacted.
    pub password_hash: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account", &self.account)
            .field("password_hash", &"***")
            .finish()
    }
}

/// One `alias add SOURCE TARGET` entry. Several entries may share a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub source: String,
    pub target: String,
}

/// What mail to an address means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not one of ours.
    NotOurDomain,
    /// Our domain, but no account or alias has this address (RCPT gets 550 5.1.1).
    Unknown,
    /// Deliver to these accounts' mailboxes and forward to these outside addresses
    /// (aliases expanded, duplicates removed).
    Deliver {
        accounts: Vec<Account>,
        forward: Vec<String>,
    },
}

/// RFC 6154 special-use attributes of the mailboxes every account gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The IMAP attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The name of the mailbox created for it with a new account.
    pub fn default_name(self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }

    pub(crate) fn db_name(self) -> &'static str {
        self.default_name()
    }

    pub(crate) fn from_db(s: &str) -> Option<SpecialUse> {
        SpecialUse::ALL.into_iter().find(|u| u.db_name() == s)
    }
}

/// A mailbox (folder) with its IMAP counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account_id: AccountId,
    /// Full hierarchical name with "/" as delimiter; "INBOX" is always spelled so.
    pub name: String,
    pub uidvalidity: u32,
    /// The UID the next message will get; UIDs are never reused under one UIDVALIDITY.
    pub uidnext: u32,
    /// RFC 7162 MODSEQ of the last change in the mailbox (any message or expunge).
    pub highest_modseq: u64,
    pub special_use: Option<SpecialUse>,
    /// Subscribed under its current name (from the subscriptions, which are names).
    pub subscribed: bool,
    /// RFC 3501 §2.3.2 `\Recent`: messages with a UID at or above this one arrived
    /// after the last session that claimed them (`Store::claim_recent`), so they are
    /// recent and no session owns them yet.
    pub first_recent_uid: u32,
}

/// Counts for IMAP STATUS / SELECT and POP3 STAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    pub mailbox: Mailbox,
    pub messages: u32,
    pub unseen: u32,
    /// Messages at or above `first_recent_uid` (recent, not yet claimed by a session).
    pub recent: u32,
    pub size: u64,
}

/// System flags as bits plus keywords. `\Recent` is not a flag of the message but of
/// its UID against the mailbox's `first_recent_uid` and the session that claimed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    pub bits: u8,
    /// Keywords, sorted and without duplicates; compared case-insensitively by IMAP,
    /// stored as first given.
    pub keywords: Vec<String>,
}

impl Flags {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;

    pub fn new(bits: u8) -> Flags {
        Flags {
            bits,
            keywords: Vec::new(),
        }
    }

    pub fn with_keywords(bits: u8, keywords: impl IntoIterator<Item = String>) -> Flags {
        let mut f = Flags::new(bits);
        for k in keywords {
            f.add_keyword(&k);
        }
        f
    }

    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    pub fn add_keyword(&mut self, k: &str) {
        if !self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            self.keywords.push(k.to_string());
            self.keywords.sort_by_key(|a| a.to_ascii_lowercase());
        }
    }

    pub fn remove_keyword(&mut self, k: &str) {
        self.keywords.retain(|x| !x.eq_ignore_ascii_case(k));
    }

    /// Applies a STORE-style change and returns the result.
    pub fn apply(&self, op: FlagOp, change: &Flags) -> Flags {
        match op {
            FlagOp::Replace => change.clone(),
            FlagOp::Add => {
                let mut f = self.clone();
                f.bits |= change.bits;
                for k in &change.keywords {
                    f.add_keyword(k);
                }
                f
            }
            FlagOp::Remove => {
                let mut f = self.clone();
                f.bits &= !change.bits;
                for k in &change.keywords {
                    f.remove_keyword(k);
                }
                f
            }
        }
    }

    pub(crate) fn keywords_db(&self) -> String {
        self.keywords.join(" ")
    }

    pub(crate) fn from_db(bits: i64, keywords: &str) -> Flags {
        Flags {
            bits: bits as u8,
            keywords: keywords
                .split(' ')
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// One message in one mailbox. The body is immutable and shared (`blob_id`); flags
/// and membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub blob_id: BlobId,
    pub size: u64,
    /// Unix seconds.
    pub internal_date: i64,
    pub flags: Flags,
    pub modseq: u64,
}

/// Where a new message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    Mailbox(MailboxId),
    Inbox(AccountId),
    /// The account's mailbox with this special use (e.g. Junk for quarantine); INBOX
    /// if the user deleted it.
    SpecialUse(AccountId, SpecialUse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub target: DeliveryTarget,
    pub flags: Flags,
}

/// A new queue entry for outbound delivery, stored with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueEntry {
    /// Envelope sender; empty for the null sender `<>` (never bounced to).
    pub return_path: String,
    pub recipients: Vec<String>,
    /// What the envelope said that delivery and notices need (DSN RET/ENVID/NOTIFY,
    /// BODY/SMTPUTF8, …); stored as JSON with the entry.
    pub params: DeliveryParams,
    /// The body to relay when it differs from the one delivered locally (local copies
    /// carry a `Return-Path:` added at final delivery; relayed copies must not).
    /// `None` shares the ingest's body.
    pub data: Option<Vec<u8>>,
}

/// A message entering the store: one body, any number of mailbox deliveries, and
/// optionally a queue entry — all in one durable transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingest {
    pub data: Vec<u8>,
    /// Unix seconds.
    pub internal_date: i64,
    pub deliveries: Vec<Delivery>,
    pub queue: Option<NewQueueEntry>,
}

/// What an ingest produced; returned only after it is durable on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReceipt {
    pub blob_id: BlobId,
    /// (mailbox, uidvalidity, uid) per delivery, in order.
    pub delivered: Vec<(MailboxId, u32, u32)>,
    pub queue_id: Option<QueueId>,
}

/// Result of STORE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    /// Messages whose flags are now as listed, with their new MODSEQ. Messages whose
    /// flags did not change are listed too (with their old MODSEQ) so FETCH responses
    /// can be sent for them.
    pub updated: Vec<(u32, Flags, u64)>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE (RFC 7162).
    pub modified: Vec<u32>,
}

/// Result of COPY / MOVE: the destination's UIDVALIDITY and (source, destination)
/// UID pairs, for UIDPLUS COPYUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    pub uidvalidity: u32,
    pub pairs: Vec<(u32, u32)>,
}

/// What changed in a mailbox after a MODSEQ: for IDLE, NOOP and QRESYNC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxChanges {
    pub mailbox: Mailbox,
    /// Messages added or whose flags changed, by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged.
    pub expunged: Vec<u32>,
}

/// Per-recipient state of a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientStatus {
    /// Not yet delivered; retried at `next_attempt`.
    Pending,
    /// The remote server accepted it (250).
    Delivered,
    /// Permanently failed (5xx, or lifetime exceeded); a DSN is due or sent.
    Failed,
}

impl RecipientStatus {
    pub(crate) fn db(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Failed => "failed",
        }
    }
    pub(crate) fn from_db(s: &str) -> RecipientStatus {
        match s {
            "delivered" => RecipientStatus::Delivered,
            "failed" => RecipientStatus::Failed,
            _ => RecipientStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecipient {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_reply: Option<String>,
}

/// Size and age of the outbound queue (its gauges), without loading the entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries in the queue (messages with recipients still to deliver or report).
    pub entries: u64,
    /// When the oldest entry was queued (Unix seconds); `None` when the queue is empty.
    pub oldest_created: Option<i64>,
}

/// The store's use of disk space (its gauges; `bulwark store compact`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSpace {
    /// Bytes of the database (pages × page size), free pages included.
    pub size_bytes: u64,
    /// Pages that hold nothing any more (deleted messages), waiting to be reclaimed.
    pub free_pages: u64,
    pub page_size: u64,
    /// Free pages can be given back to the file system while the server runs
    /// (SQLite incremental auto-vacuum). False for a store made before that existed,
    /// until `bulwark store compact` rewrites it once.
    pub reclaimable: bool,
}

/// A message waiting for outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: QueueId,
    pub blob_id: BlobId,
    pub size: u64,
    pub return_path: String,
    pub created: i64,
    /// Earliest next attempt over the pending recipients.
    pub next_attempt: i64,
    pub delay_notified: bool,
    /// The entry's delivery parameters; an unreadable stored value reads as defaults.
    pub params: DeliveryParams,
    pub recipients: Vec<QueueRecipient>,
}

/// One delivery attempt, recorded for `queue show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub at: i64,
    pub recipient: String,
    /// "mx.example.net[192.0.2.1]:25" or similar.
    pub peer: String,
    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384" or "none".
    pub tls: String,
    pub reply: String,
    pub outcome: RecipientStatus,
}

/// The outcome of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    pub address: String,
    pub status: RecipientStatus,
    pub reply: String,
    /// For `Pending`: when to try again.
    pub next_attempt: i64,
}

/// Something changed; sessions that watch a mailbox (IMAP IDLE) or the queue wake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// Messages were added, changed or expunged in a mailbox.
    Mailbox {
        account_id: AccountId,
        mailbox_id: MailboxId,
        highest_modseq: u64,
    },
    /// Mailboxes of an account were created, deleted or renamed.
    MailboxList { account_id: AccountId },
    /// A queue entry became due (new message or retry requested).
    Queue,
}

/// Lower-cases an address for lookups: domains are case-insensitive (RFC 5321 §2.4)
/// and, like every common server, we treat local parts case-insensitively too.
pub fn normalize_address(addr: &str) -> String {
    addr.trim().to_lowercase()
}

/// The domain part of an address (after the last '@'), lower-cased.
pub fn domain_of(addr: &str) -> Option<String> {
    addr.rsplit_once('@')
        .map(|(_, d)| d.to_lowercase())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_ops() {
        let f = Flags::with_keywords(Flags::SEEN, ["$Junk".to_string()]);
        let add = f.apply(
            FlagOp::Add,
            &Flags::with_keywords(Flags::FLAGGED, ["$junk".to_string(), "Work".into()]),
        );
        assert_eq!(add.bits, Flags::SEEN | Flags::FLAGGED);
        assert_eq!(add.keywords, vec!["$Junk".to_string(), "Work".to_string()]);
        let rm = add.apply(
            FlagOp::Remove,
            &Flags::with_keywords(Flags::SEEN, ["$JUNK".to_string()]),
        );
        assert_eq!(
            rm,
            Flags::with_keywords(Flags::FLAGGED, ["Work".to_string()])
        );
        assert_eq!(Flags::from_db(rm.bits as i64, &rm.keywords_db()), rm);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_address(" Alice@Example.TEST "),
            "alice@example.test"
        );
        assert_eq!(domain_of("a@B.test"), Some("b.test".into()));
        assert_eq!(domain_of("nodomain"), None);
    }
}
