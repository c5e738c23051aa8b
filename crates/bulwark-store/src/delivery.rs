//! One delivery planner: from where the recipients resolved to, the message and the
//! envelope, the one [`Ingest`] to store. The SMTP server's end of DATA and the
//! queue's notices both deliver through it, so the rules of final delivery live once:
//! local copies carry `Return-Path:` (RFC 5321 §4.4, added at final delivery), the
//! copy queued for relay does not, and every account gets one delivery.
//!
//! Pure: no store access; the caller stores the result with [`crate::Store::ingest`].

use crate::{
    Account, Delivery, DeliveryParams, DeliveryTarget, Flags, Ingest, NewQueueEntry, Resolution,
    SpecialUse,
};

/// Where a message's recipients resolved to: the accounts to deliver to and the
/// outside addresses to queue, each without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Local accounts (deduplicated by id across recipients and aliases).
    pub accounts: Vec<Account>,
    /// Outside addresses: remote recipients and aliases' forward targets
    /// (deduplicated case-insensitively, first spelling kept).
    pub forward: Vec<String>,
}

impl Recipients {
    /// The recipients of one address: an outside address is queued to itself, an
    /// unknown one of our domains goes nowhere (`None`).
    pub fn of(address: &str, resolution: Resolution) -> Option<Recipients> {
        match resolution {
            Resolution::NotOurDomain => Some(Recipients {
                accounts: Vec::new(),
                forward: vec![address.to_string()],
            }),
            Resolution::Unknown => None,
            Resolution::Deliver { accounts, forward } => {
                let mut r = Recipients::default();
                r.add(accounts, forward);
                Some(r)
            }
        }
    }

    /// Adds accounts and outside addresses, skipping ones already present.
    pub fn add(&mut self, accounts: Vec<Account>, forward: Vec<String>) {
        for a in accounts {
            if !self.accounts.iter().any(|x| x.id == a.id) {
                self.accounts.push(a);
            }
        }
        for f in forward {
            self.add_forward(f);
        }
    }

    /// Adds one outside address unless it is already present (case-insensitively).
    pub fn add_forward(&mut self, address: String) {
        if !self
            .forward
            .iter()
            .any(|x| x.eq_ignore_ascii_case(&address))
        {
            self.forward.push(address);
        }
    }

    /// No account and no outside address.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.forward.is_empty()
    }
}

/// The local mailbox a delivery lands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// The account's INBOX.
    Inbox,
    /// The account's Junk mailbox (quarantine); INBOX if the user deleted it.
    Junk,
}

/// The envelope and trace of one message to deliver.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The reverse-path, empty for the null sender.
    pub return_path: &'a str,
    /// Header fields put on top of every copy (DKIM-Signature, Received, …), in order.
    pub trace: &'a [&'a [u8]],
    /// Where local copies go.
    pub folder: Folder,
    /// Unix seconds, the local copies' internal date.
    pub internal_date: i64,
    /// The queued copy's parameters.
    pub params: DeliveryParams,
}

/// The `Return-Path:` field of a local copy (RFC 5321 §4.4).
pub fn return_path_field(return_path: &str) -> String {
    format!("Return-Path: <{return_path}>\r\n")
}

/// The octets [`plan_delivery`] adds beyond the message: the trace on every body and,
/// with both local and remote recipients, the second body (RFC 5321 §4.4: the local
/// one with `Return-Path:`, the queued one without). For in-flight budgets.
pub fn planned_overhead(to: &Recipients, env: &Envelope<'_>, message_len: usize) -> usize {
    let trace: usize = env.trace.iter().map(|p| p.len()).sum();
    let return_path = return_path_field(env.return_path).len();
    let second = if !to.accounts.is_empty() && !to.forward.is_empty() {
        return_path + trace + message_len
    } else {
        0
    };
    trace + return_path + second
}

/// The one ingest of a message: local deliveries with `Return-Path:` on top, the
/// outside addresses queued without it (sharing the body when there is no local
/// copy), the trace on both. `None` when there is nobody to deliver to.
pub fn plan_delivery(to: &Recipients, env: Envelope<'_>, mut message: Vec<u8>) -> Option<Ingest> {
    if to.is_empty() {
        return None;
    }
    let deliveries: Vec<Delivery> = to
        .accounts
        .iter()
        .map(|a| Delivery {
            target: match env.folder {
                Folder::Inbox => DeliveryTarget::Inbox(a.id),
                Folder::Junk => DeliveryTarget::SpecialUse(a.id, SpecialUse::Junk),
            },
            flags: Flags::default(),
        })
        .collect();
    let entry = |data: Option<Vec<u8>>| NewQueueEntry {
        return_path: env.return_path.to_string(),
        recipients: to.forward.clone(),
        params: env.params.clone(),
        data,
    };
    let return_path = return_path_field(env.return_path);
    let (data, queue) = match (deliveries.is_empty(), to.forward.is_empty()) {
        // Local copies carry Return-Path; the relayed one must not.
        (false, false) => {
            prepend(&mut message, env.trace);
            let mut local = Vec::with_capacity(return_path.len() + message.len());
            local.extend_from_slice(return_path.as_bytes());
            local.extend_from_slice(&message);
            (local, Some(entry(Some(message))))
        }
        (false, true) => {
            let mut parts = vec![return_path.as_bytes()];
            parts.extend_from_slice(env.trace);
            prepend(&mut message, &parts);
            (message, None)
        }
        (true, _) => {
            prepend(&mut message, env.trace);
            (message, Some(entry(None)))
        }
    };
    Some(Ingest {
        data,
        internal_date: env.internal_date,
        deliveries,
        queue,
    })
}

/// Puts `parts` in front of `body`, in place.
fn prepend(body: &mut Vec<u8>, parts: &[&[u8]]) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    // Exact: `splice` alone would reserve by doubling a message-sized buffer.
    body.reserve_exact(n);
    body.splice(0..0, parts.iter().flat_map(|p| p.iter().copied()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccountId;

    fn account(id: i64) -> Account {
        Account {
            id: AccountId(id),
            address: format!("u{id}@example.test"),
            created: 0,
        }
    }

    fn env<'a>(trace: &'a [&'a [u8]], folder: Folder) -> Envelope<'a> {
        Envelope {
            return_path: "a@x.test",
            trace,
            folder,
            internal_date: 7,
            params: DeliveryParams::default(),
        }
    }

    #[test]
    fn recipients_of_a_resolution() {
        assert_eq!(Recipients::of("x@y", Resolution::Unknown), None);
        let r = Recipients::of("x@remote.test", Resolution::NotOurDomain).unwrap();
        assert_eq!(r.forward, ["x@remote.test"]);
        assert!(r.accounts.is_empty());
        let mut r = Recipients::of(
            "team@example.test",
            Resolution::Deliver {
                accounts: vec![account(1), account(1)],
                forward: vec!["F@remote.test".into(), "f@remote.test".into()],
            },
        )
        .unwrap();
        assert_eq!((r.accounts.len(), r.forward.len()), (1, 1));
        r.add(vec![account(2), account(1)], vec!["g@remote.test".into()]);
        assert_eq!(
            r.accounts.iter().map(|a| a.id).collect::<Vec<_>>(),
            [AccountId(1), AccountId(2)]
        );
        assert_eq!(r.forward, ["F@remote.test", "g@remote.test"]);
        assert!(Recipients::default().is_empty());
    }

    #[test]
    fn nobody_means_no_ingest() {
        assert!(plan_delivery(
            &Recipients::default(),
            env(&[], Folder::Inbox),
            b"x".to_vec()
        )
        .is_none());
    }

    #[test]
    fn local_only_has_return_path_and_trace() {
        let to = Recipients {
            accounts: vec![account(1), account(2)],
            forward: vec![],
        };
        let trace: [&[u8]; 2] = [b"T1: a\r\n", b"T2: b\r\n"];
        let e = env(&trace, Folder::Junk);
        assert_eq!(planned_overhead(&to, &e, 3), 14 + 25);
        let i = plan_delivery(&to, e, b"M\r\n".to_vec()).unwrap();
        assert_eq!(
            i.data,
            b"Return-Path: <a@x.test>\r\nT1: a\r\nT2: b\r\nM\r\n"
        );
        assert_eq!(i.internal_date, 7);
        assert!(i.queue.is_none());
        assert_eq!(
            i.deliveries
                .iter()
                .map(|d| d.target.clone())
                .collect::<Vec<_>>(),
            [
                DeliveryTarget::SpecialUse(AccountId(1), SpecialUse::Junk),
                DeliveryTarget::SpecialUse(AccountId(2), SpecialUse::Junk)
            ]
        );
    }

    #[test]
    fn remote_only_shares_the_body_without_return_path() {
        let to = Recipients {
            accounts: vec![],
            forward: vec!["x@remote.test".into()],
        };
        let trace: [&[u8]; 1] = [b"T: a\r\n"];
        let mut e = env(&trace, Folder::Inbox);
        e.params.smtputf8 = true;
        let i = plan_delivery(&to, e, b"M\r\n".to_vec()).unwrap();
        assert_eq!(i.data, b"T: a\r\nM\r\n");
        assert!(i.deliveries.is_empty());
        let q = i.queue.unwrap();
        assert_eq!(q.data, None);
        assert_eq!(q.return_path, "a@x.test");
        assert_eq!(q.recipients, ["x@remote.test"]);
        assert!(q.params.smtputf8);
    }

    #[test]
    fn mixed_stores_a_relayed_copy_without_return_path() {
        let to = Recipients {
            accounts: vec![account(1)],
            forward: vec!["x@remote.test".into()],
        };
        let trace: [&[u8]; 1] = [b"T: a\r\n"];
        let e = env(&trace, Folder::Inbox);
        assert_eq!(planned_overhead(&to, &e, 3), 6 + 25 + (25 + 6 + 3));
        let i = plan_delivery(&to, e, b"M\r\n".to_vec()).unwrap();
        assert_eq!(i.data, b"Return-Path: <a@x.test>\r\nT: a\r\nM\r\n");
        assert_eq!(i.deliveries[0].target, DeliveryTarget::Inbox(AccountId(1)));
        assert_eq!(
            i.queue.unwrap().data.as_deref(),
            Some(&b"T: a\r\nM\r\n"[..])
        );
        // The null sender.
        let mut e = env(&[], Folder::Inbox);
        e.return_path = "";
        let i = plan_delivery(&to, e, b"M\r\n".to_vec()).unwrap();
        assert!(i.data.starts_with(b"Return-Path: <>\r\nM"));
    }
}
