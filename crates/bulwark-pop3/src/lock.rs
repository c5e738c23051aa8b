//! The exclusive-access lock on a maildrop (RFC 1939 §8: "the POP3 server then
//! acquires an exclusive-access lock on the maildrop, as necessary to prevent
//! messages from being modified or removed before the session enters the UPDATE
//! state").
//!
//! It only excludes other POP3 sessions of the same account: IMAP, delivery and the
//! web client keep working on the same INBOX (a POP3 session works on a snapshot, and
//! the store tolerates messages vanishing under it).
//!
//! One node: the lock lives in this process. Several nodes sharing one store (the
//! PostgreSQL deployment) need the lock in the store instead — e.g. a lease row per
//! account, taken with `INSERT … ON CONFLICT DO NOTHING` and renewed while the session
//! lives. That is a change to this type's internals only: sessions call `try_lock` and
//! hold the guard.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use bulwark_store::AccountId;
use parking_lot::Mutex;

/// The set of maildrops locked by POP3 sessions.
#[derive(Clone, Default)]
pub struct MaildropLocks {
    held: Arc<Mutex<HashSet<AccountId>>>,
}

impl MaildropLocks {
    /// An empty set, private to its holders (tests and embedders; the server uses
    /// `process_wide`).
    pub fn new() -> MaildropLocks {
        MaildropLocks::default()
    }

    /// The locks of this process, shared by the 110 and 995 listeners.
    pub fn process_wide() -> MaildropLocks {
        static LOCKS: OnceLock<MaildropLocks> = OnceLock::new();
        LOCKS.get_or_init(MaildropLocks::new).clone()
    }

    /// Locks `account`'s maildrop, or `None` when another session holds it.
    pub fn try_lock(&self, account: AccountId) -> Option<MaildropGuard> {
        if self.held.lock().insert(account) {
            Some(MaildropGuard {
                locks: self.clone(),
                account,
            })
        } else {
            None
        }
    }

    /// True while a POP3 session holds `account`'s maildrop.
    pub fn is_locked(&self, account: AccountId) -> bool {
        self.held.lock().contains(&account)
    }
}

/// Holds the lock until dropped (the end of the session, after UPDATE).
pub struct MaildropGuard {
    locks: MaildropLocks,
    account: AccountId,
}

impl Drop for MaildropGuard {
    fn drop(&mut self) {
        self.locks.held.lock().remove(&self.account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::AccountId;

    #[test]
    fn one_session_per_maildrop() {
        let locks = MaildropLocks::new();
        let g = locks.try_lock(AccountId(1)).unwrap();
        assert!(locks.try_lock(AccountId(1)).is_none());
        let other = locks.try_lock(AccountId(2)).unwrap();
        assert!(locks.is_locked(AccountId(1)));
        drop(g);
        assert!(!locks.is_locked(AccountId(1)));
        assert!(locks.try_lock(AccountId(1)).is_some());
        drop(other);
        assert!(!locks.is_locked(AccountId(2)));
    }

    #[test]
    fn process_wide_locks_are_shared() {
        let a = MaildropLocks::process_wide();
        let b = MaildropLocks::process_wide();
        let _g = a.try_lock(AccountId(-42)).unwrap();
        assert!(b.try_lock(AccountId(-42)).is_none());
    }
}
