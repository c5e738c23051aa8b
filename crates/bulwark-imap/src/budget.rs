//! How much message data IMAP sessions may hold in memory (`[imap]
//! max_inflight_bytes`) and how many APPENDs one account may have in progress
//! (`[imap] max_concurrent_appends_per_account`).
//!
//! Without them, memory is the connection limits times the largest literal or
//! message: one account with 20 unfinished 60 MiB APPENDs held 1.27 GB, 20 sessions
//! fetching a 60 MB message without reading it 2.4 GB. Every session of 143 and 993
//! draws from one [`MemoryBudget`]; a [`Hold`] is taken before the data is read (an
//! APPEND's announced literal, a body read whole for FETCH) and given back when it is
//! dropped. Refusals are `NO [LIMIT]` (RFC 5530 §3: a limit was reached; try later).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::sync::Mutex;

use bulwark_store::AccountId;

/// The text of the `NO [LIMIT]` that ends a command beyond the budget, after the code.
pub(crate) const LIMIT_MESSAGE: &str =
    "The server is holding too much message data right now; try again later";
/// `LIMIT_MESSAGE` with its code, for the shell's refusals of literals (a `const`
/// cannot format; `limit_text_is_the_code_and_message` keeps the two the same).
pub(crate) const LIMIT_TEXT: &str =
    "[LIMIT] The server is holding too much message data right now; try again later";

/// Octets of message data all IMAP sessions may hold at once.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

/// A share of the budget, given back on drop.
#[derive(Debug)]
pub struct Hold {
    budget: Arc<MemoryBudget>,
    n: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let before = self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
        metrics::gauge!("bulwark_imap_inflight_bytes").set(before.saturating_sub(self.n) as f64);
    }
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// For sessions built without a server (unit tests, fuzzing).
    pub fn unlimited() -> Arc<MemoryBudget> {
        MemoryBudget::new(u64::MAX)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Octets held by all sessions now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Takes `n` octets, or None when that would exceed the limit.
    pub fn try_take(self: &Arc<Self>, n: u64) -> Option<Hold> {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|t| *t <= self.limit)
            })
            .ok()?;
        metrics::gauge!("bulwark_imap_inflight_bytes").set(before.saturating_add(n) as f64);
        Some(Hold {
            budget: self.clone(),
            n,
        })
    }
}

/// APPENDs in progress per account. One more waits (its "+" is not sent) until one
/// of them has finished: a client with many connections is slowed, not refused, and
/// an account holding unfinished APPENDs only holds up its own sessions.
#[derive(Debug)]
pub struct AppendSlots {
    max: u32,
    by_account: Mutex<HashMap<AccountId, u32>>,
    freed: tokio::sync::Notify,
}

/// One APPEND in progress, given back on drop.
#[derive(Debug)]
pub struct AppendSlot {
    slots: Arc<AppendSlots>,
    account: AccountId,
}

impl Drop for AppendSlot {
    fn drop(&mut self) {
        let mut m = self
            .slots
            .by_account
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.account);
            }
        }
        drop(m);
        self.slots.freed.notify_waiters();
    }
}

impl AppendSlots {
    pub fn new(max: u32) -> Arc<AppendSlots> {
        Arc::new(AppendSlots {
            max,
            by_account: Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Takes a slot for `account`, waiting while it has `max` APPENDs in progress.
    pub async fn take(self: &Arc<Self>, account: AccountId) -> AppendSlot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before trying, so a slot freed in between is not missed.
            freed.as_mut().enable();
            if let Some(s) = self.try_take(account) {
                return s;
            }
            freed.await;
        }
    }

    /// Takes a slot for `account`, or None when it has `max` APPENDs in progress.
    pub fn try_take(self: &Arc<Self>, account: AccountId) -> Option<AppendSlot> {
        let mut m = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(account).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AppendSlot {
            slots: self.clone(),
            account,
        })
    }
}

/// The limits shared by every IMAP listener of the process (built once by `serve`).
#[derive(Debug, Clone)]
pub struct SharedLimits {
    /// `[imap] max_inflight_bytes`: octets of literals and APPEND copies in memory.
    pub memory: Arc<MemoryBudget>,
    /// `[imap] max_concurrent_appends_per_account`: APPENDs in progress per account.
    pub appends: Arc<AppendSlots>,
}

impl SharedLimits {
    /// The limits `[imap]` configures, shared by whoever holds a clone.
    pub fn new(c: &bulwark_config::ImapConfig) -> SharedLimits {
        SharedLimits {
            memory: MemoryBudget::new(c.max_inflight_bytes),
            appends: AppendSlots::new(c.max_concurrent_appends_per_account),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::AccountId;

    #[test]
    fn limit_text_is_the_code_and_message() {
        let reply = crate::code::ResponseCode::Limit.text(LIMIT_MESSAGE);
        assert_eq!(reply.to_string(), LIMIT_TEXT);
    }

    #[test]
    fn budget_refuses_beyond_its_limit_and_recovers() {
        let b = MemoryBudget::new(100);
        let h1 = b.try_take(60).unwrap();
        assert!(b.try_take(41).is_none());
        let h2 = b.try_take(40).unwrap();
        assert_eq!(b.in_use(), 100);
        drop(h1);
        assert!(b.try_take(60).is_some());
        drop(h2);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn appends_are_limited_per_account() {
        let s = AppendSlots::new(2);
        let a1 = s.try_take(AccountId(1)).unwrap();
        let _a2 = s.try_take(AccountId(1)).unwrap();
        assert!(s.try_take(AccountId(1)).is_none());
        let _b = s.try_take(AccountId(2)).unwrap();
        drop(a1);
        assert!(s.try_take(AccountId(1)).is_some());
    }

    #[tokio::test]
    async fn an_append_beyond_the_account_limit_waits_for_a_slot() {
        let s = AppendSlots::new(1);
        let first = s.take(AccountId(7)).await;
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.take(AccountId(7)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        let _second = waiter.await.unwrap();
        assert!(s.try_take(AccountId(7)).is_none());
    }

    /// FETCH within `[imap] max_inflight_bytes`: BODY[] is streamed and needs no
    /// share; a section cut from the body in memory (HEADER) does, and beyond the
    /// budget the FETCH ends with NO [LIMIT]. The same body is byte-exact both ways.
    #[tokio::test]
    async fn fetch_streams_whole_bodies_and_budgets_the_rest() {
        use crate::notify::Notifier;
        use crate::resp::VecSink;
        use crate::session::{Session, SessionConfig};
        use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, SqliteStore, Store};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s")).unwrap();
        store.add_domain("example.test").await.unwrap();
        let pw = "correct horse battery";
        let acc = store
            .create_account("a@example.test", &bulwark_auth::hash_password(pw).unwrap())
            .await
            .unwrap();
        let inbox = store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
        // Larger than one streamed piece (256 KiB), so it goes out in several.
        let mut body = b"Subject: big\r\n\r\n".to_vec();
        while body.len() < 600_000 {
            body.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
        }
        store
            .ingest(Ingest {
                data: body.clone(),
                internal_date: 1_772_000_000,
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(inbox.id),
                    flags: Flags::default(),
                }],
                queue: None,
            })
            .await
            .unwrap();
        let store: bulwark_store::SharedStore = Arc::new(store);
        let auth = bulwark_auth::Authenticator::new(store.clone(), Default::default());
        let mut s = Session::new(
            store.clone(),
            auth,
            SessionConfig {
                listener: "imap",
                peer: "127.0.0.1".parse().unwrap(),
                tls: true,
                max_literal_size: 1 << 20,
                max_mime_parts: 5000,
            },
            Notifier::new(&store),
        );
        let budget = MemoryBudget::new(100_000);
        s.set_memory_budget(budget.clone());
        let mut out = VecSink::default();
        for c in [
            format!("l LOGIN a@example.test \"{pw}\"\r\n"),
            "s SELECT INBOX\r\n".into(),
        ] {
            s.handle_raw(c.as_bytes(), &mut out).await.unwrap();
        }
        out.take_string();
        s.handle_raw(b"f FETCH 1 BODY.PEEK[]\r\n", &mut out)
            .await
            .unwrap();
        let head = format!("* 1 FETCH (BODY[] {{{}}}\r\n", body.len());
        let mut want = head.into_bytes();
        want.extend_from_slice(&body);
        want.extend_from_slice(b")\r\nf OK FETCH completed\r\n");
        assert!(out.data == want, "streamed BODY[] differs");
        out.data.clear();
        s.handle_raw(b"g FETCH 1 BODY.PEEK[HEADER]\r\n", &mut out)
            .await
            .unwrap();
        let r = out.take_string();
        assert!(r.starts_with("g NO [LIMIT]"), "{r}");
        assert_eq!(budget.in_use(), 0);
        // With room for it, the same section is served.
        s.set_memory_budget(MemoryBudget::new(10_000_000));
        s.handle_raw(b"h FETCH 1 BODY.PEEK[HEADER]\r\n", &mut out)
            .await
            .unwrap();
        let r = out.take_string();
        assert!(r.contains("BODY[HEADER] {16}") && r.contains("h OK"), "{r}");
    }

    /// Review of issue 15 #2: SEARCH BODY/TEXT read whole bodies (a batch of up to
    /// 4 MiB, or one larger message) outside `[imap] max_inflight_bytes`, so 20
    /// sessions searching a mailbox with a 60 MB message held what FETCH no longer may.
    #[tokio::test]
    async fn search_reads_bodies_within_the_budget() {
        use crate::notify::Notifier;
        use crate::resp::VecSink;
        use crate::session::{Session, SessionConfig};
        use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, SqliteStore, Store};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s")).unwrap();
        store.add_domain("example.test").await.unwrap();
        let pw = "correct horse battery";
        let acc = store
            .create_account("a@example.test", &bulwark_auth::hash_password(pw).unwrap())
            .await
            .unwrap();
        let inbox = store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
        let mut body = b"Subject: big\r\n\r\n".to_vec();
        while body.len() < 600_000 {
            body.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef\r\n");
        }
        body.extend_from_slice(b"needle\r\n");
        store
            .ingest(Ingest {
                data: body,
                internal_date: 1_772_000_000,
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(inbox.id),
                    flags: Flags::default(),
                }],
                queue: None,
            })
            .await
            .unwrap();
        let store: bulwark_store::SharedStore = Arc::new(store);
        let auth = bulwark_auth::Authenticator::new(store.clone(), Default::default());
        let mut s = Session::new(
            store.clone(),
            auth,
            SessionConfig {
                listener: "imap",
                peer: "127.0.0.1".parse().unwrap(),
                tls: true,
                max_literal_size: 1 << 20,
                max_mime_parts: 5000,
            },
            Notifier::new(&store),
        );
        let budget = MemoryBudget::new(100_000);
        s.set_memory_budget(budget.clone());
        let mut out = VecSink::default();
        for c in [
            format!("l LOGIN a@example.test \"{pw}\"\r\n"),
            "s SELECT INBOX\r\n".into(),
        ] {
            s.handle_raw(c.as_bytes(), &mut out).await.unwrap();
        }
        out.take_string();
        s.handle_raw(b"t SEARCH BODY needle\r\n", &mut out)
            .await
            .unwrap();
        let r = out.take_string();
        assert!(r.starts_with("t NO [LIMIT]"), "{r}");
        assert_eq!(budget.in_use(), 0);
        s.set_memory_budget(MemoryBudget::new(10_000_000));
        s.handle_raw(b"u SEARCH BODY needle\r\n", &mut out)
            .await
            .unwrap();
        let r = out.take_string();
        assert!(r.contains("* SEARCH 1\r\n") && r.contains("u OK"), "{r}");
    }
}
