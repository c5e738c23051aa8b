//! The values the store hands out and takes in. Plain data; no backend types leak.

use crate::DeliveryParams;

pub use crate::ids::{AccountId, BlobId, DomainId, MailboxId, ModSeq, QueueId, Uid};

/// A mail domain we accept mail for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Row id.
    pub id: DomainId,
    /// Lower-case domain name.
    pub name: String,
    /// Unix seconds.
    pub created: i64,
}

/// A user account. Its address is its login name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Row id.
    pub id: AccountId,
    /// Lower-case address, also the login name.
    pub address: String,
    /// Unix seconds.
    pub created: i64,
}

/// An account with its password hash, for the authenticator only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account the hash belongs to.
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
    /// The alias address (in one of our domains).
    pub source: String,
    /// Where it delivers: an account, another alias or an outside address.
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
        /// Local accounts, each once.
        accounts: Vec<Account>,
        /// Outside addresses to queue, each once.
        forward: Vec<String>,
    },
}

/// RFC 6154 special-use attributes of the mailboxes every account gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\Sent`: messages the user sent.
    Sent,
    /// `\Drafts`: messages being composed.
    Drafts,
    /// `\Trash`: deleted messages kept for a while.
    Trash,
    /// `\Junk`: spam, also the quarantine target.
    Junk,
    /// `\Archive`: messages kept out of INBOX.
    Archive,
}

impl SpecialUse {
    /// Every special use, in the order accounts get their mailboxes.
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
    /// Row id; stays through renames.
    pub id: MailboxId,
    /// The owning account.
    pub account_id: AccountId,
    /// Full hierarchical name with "/" as delimiter; "INBOX" is always spelled so.
    pub name: String,
    /// RFC 3501 §2.3.1.1 UIDVALIDITY, unique per mailbox name's incarnation.
    pub uidvalidity: u32,
    /// The UID the next message will get; UIDs are never reused under one UIDVALIDITY.
    pub uidnext: u32,
    /// RFC 7162 MODSEQ of the last change in the mailbox (any message or expunge).
    pub highest_modseq: ModSeq,
    /// RFC 6154 role, for the mailboxes every account gets.
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
    /// The mailbox counted.
    pub mailbox: Mailbox,
    /// Messages in the mailbox.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages at or above `first_recent_uid` (recent, not yet claimed by a session).
    pub recent: u32,
    /// Sum of the message sizes in octets.
    pub size: u64,
}

/// System flags as bits plus keywords. `\Recent` is not a flag of the message but of
/// its UID against the mailbox's `first_recent_uid` and the session that claimed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    /// System flags: `SEEN`, `ANSWERED`, `FLAGGED`, `DELETED`, `DRAFT` or-ed together.
    pub bits: u8,
    /// Keywords, sorted and without duplicates; compared case-insensitively by IMAP,
    /// stored as first given.
    pub keywords: Vec<String>,
}

impl Flags {
    /// `\Seen`.
    pub const SEEN: u8 = 1;
    /// `\Answered`.
    pub const ANSWERED: u8 = 2;
    /// `\Flagged`.
    pub const FLAGGED: u8 = 4;
    /// `\Deleted`: removed by the next EXPUNGE.
    pub const DELETED: u8 = 8;
    /// `\Draft`.
    pub const DRAFT: u8 = 16;

    /// System flags only, no keywords.
    pub fn new(bits: u8) -> Flags {
        Flags {
            bits,
            keywords: Vec::new(),
        }
    }

    /// System flags and keywords (deduplicated case-insensitively, sorted).
    pub fn with_keywords(bits: u8, keywords: impl IntoIterator<Item = String>) -> Flags {
        let mut f = Flags::new(bits);
        for k in keywords {
            f.add_keyword(&k);
        }
        f
    }

    /// True when the system flag `bit` is set.
    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Adds a keyword unless present in any case.
    pub fn add_keyword(&mut self, k: &str) {
        if !self.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
            self.keywords.push(k.to_string());
            self.keywords.sort_by_key(|a| a.to_ascii_lowercase());
        }
    }

    /// Removes a keyword, compared case-insensitively.
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

    // Cannot truncate: `bits` is stored from a `u8` (`Flags::bits`).
    #[allow(clippy::cast_possible_truncation)]
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
    /// `+FLAGS`: set these, keep the others.
    Add,
    /// `-FLAGS`: clear these, keep the others.
    Remove,
    /// `FLAGS`: exactly these.
    Replace,
}

/// One message in one mailbox. The body is immutable and shared (`blob_id`); flags
/// and membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// IMAP UID within the mailbox.
    pub uid: Uid,
    /// The shared, immutable body.
    pub blob_id: BlobId,
    /// RFC 822 size in octets.
    pub size: u64,
    /// Unix seconds.
    pub internal_date: i64,
    /// Current flags.
    pub flags: Flags,
    /// RFC 7162 MODSEQ of the message's last change.
    pub modseq: ModSeq,
}

/// Where a new message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryTarget {
    /// This mailbox.
    Mailbox(MailboxId),
    /// The account's INBOX.
    Inbox(AccountId),
    /// The account's mailbox with this special use (e.g. Junk for quarantine); INBOX
    /// if the user deleted it.
    SpecialUse(AccountId, SpecialUse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One mailbox delivery of an ingest.
pub struct Delivery {
    /// The mailbox it lands in.
    pub target: DeliveryTarget,
    /// The message's initial flags.
    pub flags: Flags,
}

/// A new queue entry for outbound delivery, stored with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQueueEntry {
    /// Envelope sender; empty for the null sender `<>` (never bounced to).
    pub return_path: String,
    /// Envelope recipients to relay to.
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
    /// The body as stored for local deliveries (RFC 5322 octets, CRLF).
    pub data: Vec<u8>,
    /// Unix seconds.
    pub internal_date: i64,
    /// The mailboxes it lands in.
    pub deliveries: Vec<Delivery>,
    /// The outbound queue entry, when it has remote recipients.
    pub queue: Option<NewQueueEntry>,
}

/// What an ingest produced; returned only after it is durable on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReceipt {
    /// The stored body.
    pub blob_id: BlobId,
    /// (mailbox, uidvalidity, uid) per delivery, in order.
    pub delivered: Vec<(MailboxId, u32, u32)>,
    /// The queue entry made, when the ingest queued one.
    pub queue_id: Option<QueueId>,
}

/// Result of STORE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagUpdate {
    /// Messages whose flags are now as listed, with their new MODSEQ. Messages whose
    /// flags did not change are listed too (with their old MODSEQ) so FETCH responses
    /// can be sent for them.
    pub updated: Vec<(Uid, Flags, ModSeq)>,
    /// UIDs not changed because their MODSEQ was above UNCHANGEDSINCE (RFC 7162).
    pub modified: Vec<Uid>,
}

/// Result of COPY / MOVE: the destination's UIDVALIDITY and (source, destination)
/// UID pairs, for UIDPLUS COPYUID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    /// The destination mailbox's UIDVALIDITY.
    pub uidvalidity: u32,
    /// (source UID, destination UID), in source order.
    pub pairs: Vec<(Uid, Uid)>,
}

/// What changed in a mailbox after a MODSEQ: for IDLE, NOOP and QRESYNC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxChanges {
    /// The mailbox as it is now (counters, HIGHESTMODSEQ).
    pub mailbox: Mailbox,
    /// Messages added or whose flags changed, by UID.
    pub changed: Vec<MessageMeta>,
    /// UIDs expunged.
    pub expunged: Vec<Uid>,
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
/// One recipient of a queued message and its delivery state.
pub struct QueueRecipient {
    /// The envelope recipient address.
    pub address: String,
    /// Where its delivery stands.
    pub status: RecipientStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (Unix seconds).
    pub next_attempt: i64,
    /// The last remote reply or error, for `queue show` and notices.
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
    /// Bytes per page.
    pub page_size: u64,
    /// Free pages can be given back to the file system while the server runs
    /// (SQLite incremental auto-vacuum). False for a store made before that existed,
    /// until `bulwark store compact` rewrites it once.
    pub reclaimable: bool,
}

/// A message waiting for outbound delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Its id.
    pub id: QueueId,
    /// The body to relay.
    pub blob_id: BlobId,
    /// Body size in octets.
    pub size: u64,
    /// Envelope sender; empty for the null sender `<>`.
    pub return_path: String,
    /// When it was queued (Unix seconds).
    pub created: i64,
    /// Earliest next attempt over the pending recipients.
    pub next_attempt: i64,
    /// A delay notice was sent already (it is sent once).
    pub delay_notified: bool,
    /// The entry's delivery parameters; an unreadable stored value reads as defaults.
    pub params: DeliveryParams,
    /// Its recipients and their states.
    pub recipients: Vec<QueueRecipient>,
}

/// One delivery attempt, recorded for `queue show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When (Unix seconds).
    pub at: i64,
    /// The recipient tried.
    pub recipient: String,
    /// "mx.example.net[192.0.2.1]:25" or similar.
    pub peer: String,
    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384" or "none".
    pub tls: String,
    /// The remote reply or the local error.
    pub reply: String,
    /// What it meant for the recipient.
    pub outcome: RecipientStatus,
}

/// The outcome of one attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientUpdate {
    /// The recipient.
    pub address: String,
    /// Its new state.
    pub status: RecipientStatus,
    /// The reply or error that decided it.
    pub reply: String,
    /// For `Pending`: when to try again.
    pub next_attempt: i64,
}

/// Something changed; sessions that watch a mailbox (IMAP IDLE) or the queue wake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// Messages were added, changed or expunged in a mailbox.
    Mailbox {
        /// The mailbox's owner.
        account_id: AccountId,
        /// The mailbox that changed.
        mailbox_id: MailboxId,
        /// Its MODSEQ after the change.
        highest_modseq: u64,
    },
    /// Mailboxes of an account were created, deleted or renamed.
    MailboxList {
        /// The account whose mailbox list changed.
        account_id: AccountId,
    },
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
