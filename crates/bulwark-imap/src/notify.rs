//! Change notification for sessions with a mailbox selected (IDLE, and the updates
//! after each command).
//!
//! One task per `Notifier` reads the store's change feed; each selected mailbox has a
//! `watch` channel, shared by the sessions that have it selected and dropped when the
//! last of them leaves. A delivery wakes only the sessions that have that mailbox
//! selected — not every IDLE session of every account, which with thousands of idle
//! connections would turn each delivery into thousands of wake-ups and store reads.
//!
//! Mailbox-list events (create, delete, rename) wake no session: IMAP reports them
//! only when asked (LIST), and deleting a selected mailbox also publishes that
//! mailbox's own event, which is how its sessions learn of it.
//!
//! When the feed lags (the task fell more than the store's buffer behind), every
//! watched mailbox is woken: sessions then read what changed from the store
//! (`changes_since`), so nothing is lost, only some wake-ups are spurious.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bulwark_store::{MailboxId, SharedStore, StoreEvent};
use tokio::sync::{broadcast, watch};

#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    mailboxes: Mutex<HashMap<MailboxId, watch::Sender<u64>>>,
    /// The change feed, subscribed at creation (so nothing between then and the
    /// task's start is missed) and moved into the task when it starts.
    feed: Mutex<Option<broadcast::Receiver<StoreEvent>>>,
}

impl Inner {
    fn map(&self) -> MutexGuard<'_, HashMap<MailboxId, watch::Sender<u64>>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, mailbox: MailboxId) {
        if let Some(tx) = self.map().get(&mailbox) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for tx in self.map().values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }
}

impl Notifier {
    pub fn new(store: &SharedStore) -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                mailboxes: Mutex::new(HashMap::new()),
                feed: Mutex::new(Some(store.subscribe())),
            }),
        }
    }

    /// Starts the dispatch task on first use (it needs the runtime).
    fn start(&self) {
        let feed = self
            .inner
            .feed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut feed) = feed else { return };
        // The task holds the map weakly: it ends when the last Notifier is gone.
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let ev = feed.recv().await;
                let Some(inner) = inner.upgrade() else { return };
                match ev {
                    Ok(StoreEvent::Mailbox { mailbox_id, .. }) => inner.wake(mailbox_id),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => inner.wake_all(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Watches a mailbox until the returned handle is dropped. Changes published
    /// after this call wake it.
    pub fn watch(&self, mailbox: MailboxId) -> MailboxWatch {
        self.start();
        let rx = {
            let mut map = self.inner.map();
            match map.get(&mailbox) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(0u64);
                    map.insert(mailbox, tx);
                    rx
                }
            }
        };
        MailboxWatch {
            rx: Some(rx),
            mailbox,
            inner: self.inner.clone(),
        }
    }

    /// How many mailboxes are watched (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.inner.map().len()
    }
}

/// A session's subscription to one mailbox's changes.
pub struct MailboxWatch {
    /// Always Some until dropped (taken under the map's lock).
    rx: Option<watch::Receiver<u64>>,
    mailbox: MailboxId,
    inner: Arc<Inner>,
}

impl MailboxWatch {
    /// Waits for the next change. Never returns if the notifier is gone.
    pub async fn changed(&mut self) {
        let ok = match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !ok {
            std::future::pending::<()>().await;
        }
    }

    /// Whether something changed since the last call (or `changed`), and forgets it.
    pub fn take_changed(&mut self) -> bool {
        let Some(rx) = self.rx.as_mut() else {
            return false;
        };
        let changed = rx.has_changed().unwrap_or(false);
        if changed {
            rx.borrow_and_update();
        }
        changed
    }
}

impl Drop for MailboxWatch {
    fn drop(&mut self) {
        let mut map = self.inner.map();
        // Dropped under the lock, so concurrent leavers cannot both miss being last.
        drop(self.rx.take());
        if map
            .get(&self.mailbox)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            map.remove(&self.mailbox);
        }
    }
}
