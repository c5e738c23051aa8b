//! The backend-independent conformance suite: every `Store` implementation must pass
//! every check here. Each check takes a fresh, empty store.
//!
//! Use from a backend's tests with `conformance_tests!(|| async { make_store() })`,
//! which generates one `#[tokio::test]` per check.

use crate::*;

/// Generates one test per conformance check. `$make` is an expression evaluating to
/// a future that yields a fresh `SharedStore` (and anything that must outlive it).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            domains_and_accounts, aliases_resolve, send_as_rules, mailboxes_lifecycle,
            ingest_is_shared_and_uids_increase, flags_and_modseq, copy_move_expunge,
            changes_feed, queue_lifecycle, events_after_commit, concurrent_ingest_group_commit,
            account_deletion_frees_bodies, queue_with_own_body, queue_progress_keeps_lease,
            subscriptions_are_names, recent_is_claimed_once, login_sources,
            ingest_all_or_nothing);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = ($make)().await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

async fn setup(store: &SharedStore) -> (Account, Account) {
    store.add_domain("example.test").await.unwrap();
    let a = store
        .create_account("alice@example.test", "hash-a")
        .await
        .unwrap();
    let b = store
        .create_account("bob@example.test", "hash-b")
        .await
        .unwrap();
    (a, b)
}

fn msg(n: u32) -> Vec<u8> {
    format!("From: a@example.test\r\nSubject: {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

async fn inbox(store: &SharedStore, a: &Account) -> Mailbox {
    store.mailbox(a.id, "INBOX").await.unwrap().unwrap()
}

async fn deliver(store: &SharedStore, mb: MailboxId, n: u32) -> Uid {
    let r = store
        .ingest(Ingest {
            data: msg(n),
            internal_date: 1_700_000_000,
            deliveries: vec![Delivery {
                target: DeliveryTarget::Mailbox(mb),
                flags: Flags::default(),
            }],
            queue: None,
        })
        .await
        .unwrap();
    Uid(r.delivered[0].2)
}

/// Domains and accounts: creation, lookup by address and id, deletion rules.
pub async fn domains_and_accounts(store: SharedStore) {
    store.add_domain("Example.TEST").await.unwrap();
    assert!(matches!(
        store.add_domain("example.test").await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.add_domain("not a domain").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.is_local_domain("EXAMPLE.test").await.unwrap());
    assert!(!store.is_local_domain("other.test").await.unwrap());

    assert!(matches!(
        store.create_account("x@other.test", "h").await,
        Err(StoreError::Invalid(_))
    ));
    let a = store
        .create_account("Alice@Example.test", "h1")
        .await
        .unwrap();
    assert_eq!(a.address, "alice@example.test");
    assert!(matches!(
        store.create_account("alice@example.test", "h").await,
        Err(StoreError::AlreadyExists(_))
    ));
    let names: Vec<String> = store
        .list_mailboxes(a.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    for n in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let creds = store
        .credentials("ALICE@example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.password_hash, "h1");
    assert!(!format!("{creds:?}").contains("h1"));
    store
        .set_password_hash("alice@example.test", "h2")
        .await
        .unwrap();
    assert_eq!(
        store
            .credentials("alice@example.test")
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "h2"
    );
    assert!(matches!(
        store.set_password_hash("nobody@example.test", "h").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_domain("example.test").await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
    store.delete_account("alice@example.test").await.unwrap();
    assert!(store.account("alice@example.test").await.unwrap().is_none());
    store.delete_domain("example.test").await.unwrap();
    assert!(store.list_domains().await.unwrap().is_empty());
}

/// Aliases resolve recursively to accounts and outside addresses, loops cut.
pub async fn aliases_resolve(store: SharedStore) {
    let (a, b) = setup(&store).await;
    store
        .add_alias("sales@example.test", "alice@example.test")
        .await
        .unwrap();
    store
        .add_alias("sales@example.test", "bob@example.test")
        .await
        .unwrap();
    store
        .add_alias("team@example.test", "sales@example.test")
        .await
        .unwrap();
    store
        .add_alias("team@example.test", "partner@remote.test")
        .await
        .unwrap();
    // Loops are cut, not followed forever.
    store
        .add_alias("loop1@example.test", "loop2@example.test")
        .await
        .ok();
    store
        .add_alias("loop2@example.test", "loop1@example.test")
        .await
        .ok();
    assert!(matches!(
        store
            .add_alias("alice@example.test", "bob@example.test")
            .await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store
            .add_alias("x@example.test", "ghost@example.test")
            .await,
        Err(StoreError::NotFound(_))
    ));
    match store.resolve("TEAM@example.test").await.unwrap() {
        Resolution::Deliver { accounts, forward } => {
            let mut ids: Vec<_> = accounts.iter().map(|x| x.id).collect();
            ids.sort();
            assert_eq!(ids, vec![a.id, b.id]);
            assert_eq!(forward, vec!["partner@remote.test".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.resolve("ghost@example.test").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        store.resolve("loop1@example.test").await.unwrap(),
        Resolution::Unknown
    );
    assert_eq!(
        store.resolve("x@remote.test").await.unwrap(),
        Resolution::NotOurDomain
    );
    store
        .delete_alias("sales@example.test", Some("bob@example.test"))
        .await
        .unwrap();
    match store.resolve("sales@example.test").await.unwrap() {
        Resolution::Deliver { accounts, .. } => assert_eq!(accounts.len(), 1),
        other => panic!("{other:?}"),
    }
    store.delete_alias("team@example.test", None).await.unwrap();
    assert_eq!(
        store.resolve("team@example.test").await.unwrap(),
        Resolution::Unknown
    );
    assert!(store
        .list_aliases()
        .await
        .unwrap()
        .iter()
        .all(|x| x.source != "team@example.test"));
}

/// Submission's anti-spoofing rule: own address, aliases and send-as grants.
pub async fn send_as_rules(store: SharedStore) {
    let (a, b) = setup(&store).await;
    store
        .add_alias("sales@example.test", "alice@example.test")
        .await
        .unwrap();
    assert!(store.may_send_as(a.id, "Alice@example.test").await.unwrap());
    assert!(store.may_send_as(a.id, "sales@example.test").await.unwrap());
    assert!(!store.may_send_as(b.id, "sales@example.test").await.unwrap());
    assert!(!store.may_send_as(b.id, "alice@example.test").await.unwrap());
    store.add_send_as(b.id, "ceo@example.test").await.unwrap();
    assert!(store.may_send_as(b.id, "ceo@example.test").await.unwrap());
    store
        .delete_send_as(b.id, "ceo@example.test")
        .await
        .unwrap();
    assert!(!store.may_send_as(b.id, "ceo@example.test").await.unwrap());
}

/// Mailboxes: create, rename with children, delete; INBOX is protected.
pub async fn mailboxes_lifecycle(store: SharedStore) {
    let (a, b) = setup(&store).await;
    let work = store.create_mailbox(a.id, "Work", None).await.unwrap();
    store.create_mailbox(a.id, "Work/2026", None).await.unwrap();
    assert!(matches!(
        store.create_mailbox(a.id, "Work", None).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert!(matches!(
        store.create_mailbox(a.id, "a/../b", None).await,
        Err(StoreError::Invalid(_))
    ));
    // Names are per account.
    store.create_mailbox(b.id, "Work", None).await.unwrap();
    assert!(store.mailbox(a.id, "inbox").await.unwrap().is_some());
    store.rename_mailbox(a.id, "Work", "Jobs").await.unwrap();
    let jobs = store.mailbox(a.id, "Jobs").await.unwrap().unwrap();
    assert_eq!(jobs.id, work.id);
    assert_eq!(jobs.uidvalidity, work.uidvalidity);
    assert!(store.mailbox(a.id, "Jobs/2026").await.unwrap().is_some());
    assert!(store.mailbox(a.id, "Work/2026").await.unwrap().is_none());
    assert!(store.rename_mailbox(a.id, "INBOX", "Old").await.is_err());
    assert!(store.delete_mailbox(a.id, "INBOX").await.is_err());
    deliver(&store, jobs.id, 1).await;
    store.delete_mailbox(a.id, "Jobs").await.unwrap();
    assert!(store.mailbox(a.id, "Jobs").await.unwrap().is_none());
    // Re-created under the same name, it gets a new UIDVALIDITY.
    let again = store.create_mailbox(a.id, "Jobs", None).await.unwrap();
    assert_ne!(again.uidvalidity, jobs.uidvalidity);
    store.set_subscribed(a.id, "Jobs", false).await.unwrap();
    assert!(
        !store
            .mailbox(a.id, "Jobs")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
    let junk = store
        .list_mailboxes(a.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.special_use == Some(SpecialUse::Junk))
        .unwrap();
    assert_eq!(junk.name, "Junk");
}

/// One body per ingest however many mailboxes get it; UIDs strictly increase.
pub async fn ingest_is_shared_and_uids_increase(store: SharedStore) {
    let (a, b) = setup(&store).await;
    let r = store
        .ingest(Ingest {
            data: msg(1),
            internal_date: 1_700_000_000,
            deliveries: vec![
                Delivery {
                    target: DeliveryTarget::Inbox(a.id),
                    flags: Flags::default(),
                },
                Delivery {
                    target: DeliveryTarget::SpecialUse(b.id, SpecialUse::Junk),
                    flags: Flags::new(Flags::SEEN),
                },
            ],
            queue: Some(NewQueueEntry {
                return_path: "alice@example.test".into(),
                recipients: vec!["x@remote.test".into()],
                params: DeliveryParams::default(),
                data: None,
            }),
        })
        .await
        .unwrap();
    assert_eq!(r.delivered.len(), 2);
    assert!(r.queue_id.is_some());
    let ai = inbox(&store, &a).await;
    let list = store.list_messages(ai.id).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].uid, Uid(1));
    assert_eq!(list[0].blob_id, r.blob_id);
    assert_eq!(store.read_blob(r.blob_id).await.unwrap(), msg(1));
    let bj = store.mailbox(b.id, "Junk").await.unwrap().unwrap();
    let bl = store.list_messages(bj.id).await.unwrap();
    assert_eq!(bl[0].blob_id, r.blob_id, "one body for every copy");
    assert!(bl[0].flags.has(Flags::SEEN));
    let mut last = Uid(1);
    for n in 2..10 {
        let uid = deliver(&store, ai.id, n).await;
        assert!(uid > last);
        last = uid;
    }
    let st = store.mailbox_status(ai.id).await.unwrap();
    assert_eq!(st.messages, 9);
    assert_eq!(st.unseen, 9);
    assert_eq!(st.mailbox.uidnext, last.get() + 1);
    // Expunging the last UID never lets it be reused.
    store
        .update_flags(
            ai.id,
            &[last],
            FlagOp::Add,
            &Flags::new(Flags::DELETED),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.expunge(ai.id, None).await.unwrap(), vec![last]);
    assert!(deliver(&store, ai.id, 99).await > last);
    let range = store
        .messages_in_range(ai.id, Uid(2), Uid(4))
        .await
        .unwrap();
    assert_eq!(
        range.iter().map(|m| m.uid.get()).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    // Nothing to deliver to is refused.
    assert!(store
        .ingest(Ingest {
            data: msg(0),
            internal_date: 0,
            deliveries: vec![],
            queue: None
        })
        .await
        .is_err());
    // Several bodies in one call, in order; missing ones left out.
    let all = store.list_messages(ai.id).await.unwrap();
    let ids: Vec<BlobId> = all
        .iter()
        .map(|m| m.blob_id)
        .chain([BlobId(999_999)])
        .collect();
    let got = store.read_blobs(&ids).await.unwrap();
    assert_eq!(got.len(), all.len());
    for ((id, data), m) in got.iter().zip(&all) {
        assert_eq!(*id, m.blob_id);
        assert_eq!(*data, store.read_blob(m.blob_id).await.unwrap());
    }
    // Ranges of a body: a middle piece, one past the end, none beyond it, and a
    // missing body is NotFound.
    let whole = store.read_blob(r.blob_id).await.unwrap();
    assert_eq!(
        store.read_blob_range(r.blob_id, 3, 5).await.unwrap(),
        whole[3..8].to_vec()
    );
    let tail = whole.len() as u64 - 2;
    assert_eq!(
        store.read_blob_range(r.blob_id, tail, 100).await.unwrap(),
        whole[whole.len() - 2..].to_vec()
    );
    assert!(store
        .read_blob_range(r.blob_id, whole.len() as u64 + 5, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.read_blob_range(BlobId(999_999), 0, 10).await,
        Err(StoreError::NotFound(_))
    ));
    // A summary cache round-trips.
    store.set_blob_summary(r.blob_id, b"cached").await.unwrap();
    assert_eq!(
        store
            .blob_summaries(&[r.blob_id, BlobId(999_999)])
            .await
            .unwrap(),
        vec![(r.blob_id, b"cached".to_vec())]
    );
}

/// STORE semantics and MODSEQ: every change raises it, UNCHANGEDSINCE holds.
pub async fn flags_and_modseq(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let mb = inbox(&store, &a).await;
    for n in 1..=3 {
        deliver(&store, mb.id, n).await;
    }
    let before = store
        .mailbox_status(mb.id)
        .await
        .unwrap()
        .mailbox
        .highest_modseq;
    let upd = store
        .update_flags(
            mb.id,
            &Uid::from_raw(&[1, 2, 42]),
            FlagOp::Add,
            &Flags::with_keywords(Flags::SEEN, ["Work".to_string()]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(upd.updated.len(), 2);
    let ms = upd.updated[0].2;
    assert!(ms > before);
    assert!(upd
        .updated
        .iter()
        .all(|u| u.1.has(Flags::SEEN) && u.1.keywords == vec!["Work".to_string()]));
    // Conditional store (RFC 7162): message 1 changed after `before`.
    let cond = store
        .update_flags(
            mb.id,
            &Uid::from_raw(&[1, 3]),
            FlagOp::Add,
            &Flags::new(Flags::FLAGGED),
            Some(before),
        )
        .await
        .unwrap();
    assert_eq!(cond.modified, vec![Uid(1)]);
    assert_eq!(cond.updated.len(), 1);
    let rep = store
        .update_flags(
            mb.id,
            &[Uid(1)],
            FlagOp::Replace,
            &Flags::new(Flags::ANSWERED),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rep.updated[0].1, Flags::new(Flags::ANSWERED));
    // A no-op change keeps MODSEQ.
    let noop = store
        .update_flags(
            mb.id,
            &[Uid(1)],
            FlagOp::Add,
            &Flags::new(Flags::ANSWERED),
            None,
        )
        .await
        .unwrap();
    assert_eq!(noop.updated[0].2, rep.updated[0].2);
    let st = store.mailbox_status(mb.id).await.unwrap();
    assert_eq!(st.unseen, 2);
}

/// COPY, MOVE (RFC 6851) and EXPUNGE with their UID mappings.
pub async fn copy_move_expunge(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let mb = inbox(&store, &a).await;
    let trash = store.mailbox(a.id, "Trash").await.unwrap().unwrap();
    for n in 1..=4 {
        deliver(&store, mb.id, n).await;
    }
    store
        .update_flags(
            mb.id,
            &[Uid(2)],
            FlagOp::Add,
            &Flags::new(Flags::FLAGGED),
            None,
        )
        .await
        .unwrap();
    let c = store
        .copy_messages(mb.id, &Uid::from_raw(&[2, 1]), trash.id)
        .await
        .unwrap();
    assert_eq!(c.uidvalidity, trash.uidvalidity);
    assert_eq!(c.pairs, vec![(Uid(1), Uid(1)), (Uid(2), Uid(2))]);
    let t = store.list_messages(trash.id).await.unwrap();
    assert!(t[1].flags.has(Flags::FLAGGED), "copy keeps flags");
    let m = store
        .move_messages(mb.id, &[Uid(3)], trash.id)
        .await
        .unwrap();
    assert_eq!(m.pairs, vec![(Uid(3), Uid(3))]);
    let left: Vec<u32> = store
        .list_messages(mb.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid.get())
        .collect();
    assert_eq!(left, vec![1, 2, 4]);
    // EXPUNGE only removes \Deleted, and UID EXPUNGE only within the given set.
    store
        .update_flags(
            mb.id,
            &Uid::from_raw(&[1, 4]),
            FlagOp::Add,
            &Flags::new(Flags::DELETED),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .expunge(mb.id, Some(&Uid::from_raw(&[4, 2])))
            .await
            .unwrap(),
        vec![Uid(4)]
    );
    assert_eq!(store.expunge(mb.id, None).await.unwrap(), vec![Uid(1)]);
    assert_eq!(
        store.delete_messages(mb.id, &[Uid(2)]).await.unwrap(),
        vec![Uid(2)]
    );
    assert!(store.list_messages(mb.id).await.unwrap().is_empty());
    // Bodies still referenced by Trash are intact.
    for m in store.list_messages(trash.id).await.unwrap() {
        assert!(!store.read_blob(m.blob_id).await.unwrap().is_empty());
    }
}

/// `changes_since` reports changed and expunged messages after a MODSEQ.
pub async fn changes_feed(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let mb = inbox(&store, &a).await;
    deliver(&store, mb.id, 1).await;
    deliver(&store, mb.id, 2).await;
    let base = store
        .mailbox_status(mb.id)
        .await
        .unwrap()
        .mailbox
        .highest_modseq;
    deliver(&store, mb.id, 3).await;
    store
        .update_flags(
            mb.id,
            &[Uid(1)],
            FlagOp::Add,
            &Flags::new(Flags::DELETED),
            None,
        )
        .await
        .unwrap();
    store.expunge(mb.id, None).await.unwrap();
    let ch = store.changes_since(mb.id, base).await.unwrap();
    assert_eq!(
        ch.changed.iter().map(|m| m.uid.get()).collect::<Vec<_>>(),
        vec![3]
    );
    assert_eq!(ch.expunged, vec![Uid(1)]);
    assert!(ch.mailbox.highest_modseq > base);
    let none = store
        .changes_since(mb.id, ch.mailbox.highest_modseq)
        .await
        .unwrap();
    assert!(none.changed.is_empty() && none.expunged.is_empty());
}

/// `queue_lifecycle`'s first attempt: x@ delivered, y@ deferred by 300 s.
async fn x_delivered_y_deferred(store: &SharedStore, id: QueueId, now: i64) {
    store
        .queue_update(
            id,
            &[
                RecipientUpdate {
                    address: "x@remote.test".into(),
                    status: RecipientStatus::Delivered,
                    reply: "250 ok".into(),
                    next_attempt: 0,
                },
                RecipientUpdate {
                    address: "y@remote.test".into(),
                    status: RecipientStatus::Pending,
                    reply: "451 later".into(),
                    next_attempt: now + 300,
                },
            ],
            &[DeliveryAttempt {
                at: now,
                recipient: "x@remote.test".into(),
                peer: "mx.remote.test[127.0.0.1]:25".into(),
                tls: "TLSv1.3".into(),
                reply: "250 ok".into(),
                outcome: RecipientStatus::Delivered,
            }],
            false,
        )
        .await
        .unwrap();
}

/// The outbound queue: claim with leases, per-recipient updates, retry, removal.
pub async fn queue_lifecycle(store: SharedStore) {
    let (a, _) = setup(&store).await;
    assert_eq!(store.queue_stats().await.unwrap(), QueueStats::default());
    // The entry's parameters come back as they went in.
    let mut params = DeliveryParams {
        ret: Some(Ret::Full),
        envid: Some("QQ+314159".into()),
        smtputf8: true,
        ..Default::default()
    };
    params.rcpt.insert(
        "x@remote.test".into(),
        RecipientParams {
            notify: Some(vec![NotifyOn::Success, NotifyOn::Failure]),
            orcpt: Some("rfc822;X@Remote.test".into()),
        },
    );
    let r = store
        .ingest(Ingest {
            data: msg(1),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: a.address.clone(),
                recipients: vec!["x@remote.test".into(), "y@remote.test".into()],
                params: params.clone(),
                data: None,
            }),
        })
        .await
        .unwrap();
    let id = r.queue_id.unwrap();
    let list = store.queue_list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].params, params);
    assert_eq!(list[0].recipients.len(), 2);
    let now = list[0].created;
    assert_eq!(
        store.queue_stats().await.unwrap(),
        QueueStats {
            entries: 1,
            oldest_created: Some(now)
        }
    );
    let claimed = store.queue_claim_due(now, 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    // Leased: a second worker gets nothing until the lease ends.
    assert!(store.queue_claim_due(now, 60, 10).await.unwrap().is_empty());
    assert_eq!(
        store.queue_claim_due(now + 61, 60, 10).await.unwrap().len(),
        1
    );
    x_delivered_y_deferred(&store, id, now).await;
    let q = store.queue_get(id).await.unwrap().unwrap();
    assert_eq!(q.next_attempt, now + 300);
    assert_eq!(q.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(q.recipients[1].attempts, 1);
    assert!(store
        .queue_claim_due(now + 100, 60, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.queue_retry(Some(id), now + 100).await.unwrap(), 1);
    assert_eq!(
        store
            .queue_claim_due(now + 100, 60, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.queue_attempts(id).await.unwrap().len(), 1);
    store
        .queue_update(
            id,
            &[RecipientUpdate {
                address: "y@remote.test".into(),
                status: RecipientStatus::Failed,
                reply: "550 no".into(),
                next_attempt: 0,
            }],
            &[],
            false,
        )
        .await
        .unwrap();
    assert!(
        store.queue_get(id).await.unwrap().is_none(),
        "done entries leave the queue"
    );
    assert!(
        store.read_blob(r.blob_id).await.is_err(),
        "and their body is freed"
    );
    assert!(!store.queue_delete(id).await.unwrap());
    assert_eq!(store.queue_stats().await.unwrap(), QueueStats::default());
    // The queue is empty again; the next entry still gets a new ID, so an old
    // listing, log line or `queue delete` never names another message.
    let again = store
        .ingest(Ingest {
            data: msg(2),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: a.address.clone(),
                recipients: vec!["z@remote.test".into()],
                params: DeliveryParams::default(),
                data: None,
            }),
        })
        .await
        .unwrap()
        .queue_id
        .unwrap();
    assert!(again > id, "queue ID {again} reused (was {id})");
}

/// `queue_progress` records part of an attempt without releasing the lease or
/// removing the entry; the closing `queue_update` does both.
pub async fn queue_progress_keeps_lease(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let r = store
        .ingest(Ingest {
            data: msg(1),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: a.address.clone(),
                recipients: vec!["x@one.test".into(), "y@two.test".into()],
                params: DeliveryParams::default(),
                data: None,
            }),
        })
        .await
        .unwrap();
    let id = r.queue_id.unwrap();
    let now = store.queue_get(id).await.unwrap().unwrap().created;
    assert_eq!(store.queue_claim_due(now, 60, 10).await.unwrap().len(), 1);
    let delivered = |addr: &str| RecipientUpdate {
        address: addr.into(),
        status: RecipientStatus::Delivered,
        reply: "250 ok".into(),
        next_attempt: 0,
    };
    store
        .queue_progress(
            id,
            &[delivered("x@one.test")],
            &[DeliveryAttempt {
                at: now,
                recipient: "x@one.test".into(),
                peer: "mx.one.test[127.0.0.1]:25".into(),
                tls: "none".into(),
                reply: "250 ok".into(),
                outcome: RecipientStatus::Delivered,
            }],
            now + 500,
        )
        .await
        .unwrap();
    // Still leased, beyond the original lease too.
    assert!(store
        .queue_claim_due(now + 100, 60, 10)
        .await
        .unwrap()
        .is_empty());
    let q = store.queue_get(id).await.unwrap().unwrap();
    assert_eq!(q.recipients[0].status, RecipientStatus::Delivered);
    assert_eq!(q.recipients[0].attempts, 1);
    assert_eq!(store.queue_attempts(id).await.unwrap().len(), 1);
    // Nothing pending any more: the entry stays until the closing update.
    store
        .queue_progress(id, &[delivered("y@two.test")], &[], now + 500)
        .await
        .unwrap();
    assert!(store.queue_get(id).await.unwrap().is_some());
    store.queue_update(id, &[], &[], false).await.unwrap();
    assert!(store.queue_get(id).await.unwrap().is_none());
    assert!(matches!(
        store.queue_progress(id, &[], &[], now + 500).await,
        Err(crate::StoreError::NotFound(_))
    ));
}

/// Events are published after the change they announce is committed.
pub async fn events_after_commit(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let mb = inbox(&store, &a).await;
    let mut rx = store.subscribe();
    deliver(&store, mb.id, 1).await;
    // Published by the time the write returned.
    let ev = rx.try_recv().unwrap();
    assert!(
        matches!(ev, StoreEvent::Mailbox { mailbox_id, account_id, .. } if mailbox_id == mb.id && account_id == a.id)
    );
    // A failed write publishes nothing.
    assert!(store.create_mailbox(a.id, "INBOX", None).await.is_err());
    store.create_mailbox(a.id, "New", None).await.unwrap();
    assert_eq!(
        rx.recv().await.unwrap(),
        StoreEvent::MailboxList { account_id: a.id }
    );
}

/// Concurrent ingests all commit (group commit) with distinct UIDs.
pub async fn concurrent_ingest_group_commit(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let mb = inbox(&store, &a).await;
    let mut tasks = Vec::new();
    for n in 0..200u32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { deliver(&s, mb.id, n).await }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), 200, "every concurrent delivery got its own UID");
    assert_eq!(store.list_messages(mb.id).await.unwrap().len(), 200);
}

/// Deleting accounts releases their bodies: a shared body lives until its last reference goes.
pub async fn account_deletion_frees_bodies(store: SharedStore) {
    let (a, b) = setup(&store).await;
    let r = store
        .ingest(Ingest {
            data: msg(7),
            internal_date: 0,
            deliveries: vec![
                Delivery {
                    target: DeliveryTarget::Inbox(a.id),
                    flags: Flags::default(),
                },
                Delivery {
                    target: DeliveryTarget::Inbox(b.id),
                    flags: Flags::default(),
                },
            ],
            queue: None,
        })
        .await
        .unwrap();
    store.delete_account("alice@example.test").await.unwrap();
    assert_eq!(
        store.read_blob(r.blob_id).await.unwrap(),
        msg(7),
        "bob still has it"
    );
    store.delete_account("bob@example.test").await.unwrap();
    assert!(matches!(
        store.read_blob(r.blob_id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A queue entry with its own body keeps it apart from the delivered one.
pub async fn queue_with_own_body(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let local = b"Return-Path: <x@remote.test>\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
    let relay = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
    let r = store
        .ingest(Ingest {
            data: local.clone(),
            internal_date: 0,
            deliveries: vec![Delivery {
                target: DeliveryTarget::Inbox(a.id),
                flags: Flags::default(),
            }],
            queue: Some(NewQueueEntry {
                return_path: "x@remote.test".into(),
                recipients: vec!["y@remote.test".into()],
                params: DeliveryParams::default(),
                data: Some(relay.clone()),
            }),
        })
        .await
        .unwrap();
    let q = store.queue_get(r.queue_id.unwrap()).await.unwrap().unwrap();
    assert_ne!(q.blob_id, r.blob_id);
    assert_eq!(store.read_blob(q.blob_id).await.unwrap(), relay);
    assert_eq!(store.read_blob(r.blob_id).await.unwrap(), local);
    assert!(store.queue_delete(q.id).await.unwrap());
    assert!(store.read_blob(q.blob_id).await.is_err());
    assert_eq!(store.read_blob(r.blob_id).await.unwrap(), local);
    // A queue-only ingest with its own body.
    let r = store
        .ingest(Ingest {
            data: Vec::new(),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: String::new(),
                recipients: vec!["y@remote.test".into()],
                params: DeliveryParams::default(),
                data: Some(relay.clone()),
            }),
        })
        .await
        .unwrap();
    assert_eq!(store.read_blob(r.blob_id).await.unwrap(), relay);
}

/// Subscriptions are names (RFC 9051 §6.3.7), independent of mailboxes.
pub async fn subscriptions_are_names(store: SharedStore) {
    let (a, b) = setup(&store).await;
    // The mailboxes every account gets start subscribed; created ones do not
    // (RFC 3501 §6.3.3: CREATE does not subscribe, SUBSCRIBE does).
    let work = store.create_mailbox(a.id, "Work", None).await.unwrap();
    assert!(!work.subscribed);
    store.create_mailbox(a.id, "Work/2026", None).await.unwrap();
    let subs = store.subscriptions(a.id).await.unwrap();
    for n in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(subs.iter().any(|s| s == n), "{n} in {subs:?}");
    }
    assert!(!subs.iter().any(|s| s.starts_with("Work")), "{subs:?}");
    store.add_subscription(a.id, "Work").await.unwrap();
    store.add_subscription(a.id, "Work/2026").await.unwrap();
    assert!(
        store
            .mailbox(a.id, "Work")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
    // Deleting a mailbox keeps its subscription (RFC 9051 §6.3.4, §6.3.7).
    store.delete_mailbox(a.id, "Work/2026").await.unwrap();
    assert!(store
        .subscriptions(a.id)
        .await
        .unwrap()
        .contains(&"Work/2026".to_string()));
    // A stale name can be unsubscribed; unsubscribing twice says so.
    assert!(store.remove_subscription(a.id, "Work/2026").await.unwrap());
    assert!(!store.remove_subscription(a.id, "Work/2026").await.unwrap());
    // Names that never existed can be subscribed, once.
    store.add_subscription(a.id, "Later/x").await.unwrap();
    store.add_subscription(a.id, "Later/x").await.unwrap();
    let subs = store.subscriptions(a.id).await.unwrap();
    assert_eq!(subs.iter().filter(|s| *s == "Later/x").count(), 1);
    assert!(store.add_subscription(a.id, "bad//name").await.is_err());
    // Renaming moves the subscription with the mailbox.
    store.rename_mailbox(a.id, "Work", "Jobs").await.unwrap();
    let subs = store.subscriptions(a.id).await.unwrap();
    assert!(subs.contains(&"Jobs".to_string()) && !subs.contains(&"Work".to_string()));
    // set_subscribed still works on existing mailboxes.
    store.set_subscribed(a.id, "Jobs", false).await.unwrap();
    assert!(
        !store
            .mailbox(a.id, "Jobs")
            .await
            .unwrap()
            .unwrap()
            .subscribed
    );
    assert!(store.set_subscribed(a.id, "Nowhere", true).await.is_err());
    // Per account.
    assert!(!store
        .subscriptions(b.id)
        .await
        .unwrap()
        .contains(&"Later/x".to_string()));
    // Deleting the account removes its subscriptions.
    store.delete_account(&a.address).await.unwrap();
    assert!(store.subscriptions(a.id).await.unwrap().is_empty());
}

/// RFC 3501 §2.3.2 `\Recent`: new messages (delivery, APPEND, COPY, MOVE) are recent
/// until one session claims them; each UID is claimed once, whoever asks first.
pub async fn recent_is_claimed_once(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let inbox = inbox(&store, &a).await;
    assert_eq!(inbox.first_recent_uid, 1);
    let u1 = deliver(&store, inbox.id, 1).await;
    let u2 = deliver(&store, inbox.id, 2).await;
    let st = store.mailbox_status(inbox.id).await.unwrap();
    assert_eq!((st.messages, st.recent), (2, 2));
    // The first claimer owns [1, 3); a second claim of the same range gets nothing.
    assert_eq!(
        store
            .claim_recent(inbox.id, Uid(u2.get() + 1))
            .await
            .unwrap(),
        Uid(1)
    );
    assert_eq!(
        store
            .claim_recent(inbox.id, Uid(u2.get() + 1))
            .await
            .unwrap(),
        Uid(u2.get() + 1)
    );
    // A claim never lowers the mark.
    assert_eq!(
        store.claim_recent(inbox.id, u1).await.unwrap(),
        Uid(u2.get() + 1)
    );
    let st = store.mailbox_status(inbox.id).await.unwrap();
    assert_eq!((st.recent, st.mailbox.first_recent_uid), (0, u2.get() + 1));
    // Copies are new messages in their mailbox: recent there.
    let other = store.create_mailbox(a.id, "Other", None).await.unwrap();
    store
        .copy_messages(inbox.id, &[u1], other.id)
        .await
        .unwrap();
    store
        .move_messages(inbox.id, &[u2], other.id)
        .await
        .unwrap();
    assert_eq!(store.mailbox_status(other.id).await.unwrap().recent, 2);
    // Concurrent claims of the same UIDs: exactly one gets them.
    let u3 = deliver(&store, inbox.id, 3).await;
    let (x, y) = tokio::join!(
        store.claim_recent(inbox.id, Uid(u3.get() + 1)),
        store.claim_recent(inbox.id, Uid(u3.get() + 1))
    );
    let mut got = [x.unwrap(), y.unwrap()];
    got.sort_unstable();
    assert_eq!(
        got,
        [u3, Uid(u3.get() + 1)],
        "one claimer owns [u3, u3+1), the other nothing"
    );
    assert!(store
        .claim_recent(MailboxId(999_999), Uid(5))
        .await
        .is_err());
}

/// RFC 3502 §6.3.11 (MULTIAPPEND): the messages of one `ingest_all` are stored
/// together or not at all.
pub async fn ingest_all_or_nothing(store: SharedStore) {
    let (a, _) = setup(&store).await;
    let ai = inbox(&store, &a).await;
    let one = |n: u32, mb: MailboxId| Ingest {
        data: msg(n),
        internal_date: 1_700_000_000,
        deliveries: vec![Delivery {
            target: DeliveryTarget::Mailbox(mb),
            flags: Flags::default(),
        }],
        queue: None,
    };
    let r = store
        .ingest_all(vec![one(1, ai.id), one(2, ai.id)])
        .await
        .unwrap();
    assert_eq!(r.len(), 2);
    assert!(r[1].delivered[0].2 > r[0].delivered[0].2);
    // The second target does not exist: the first message must not stay either.
    let gone = MailboxId(i64::MAX);
    assert!(store
        .ingest_all(vec![one(3, ai.id), one(4, gone)])
        .await
        .is_err());
    let list = store.list_messages(ai.id).await.unwrap();
    assert_eq!(list.len(), 2, "nothing of the failed batch is stored");
}

/// Login sources: recorded per account, the most recent kept, checked by time.
pub async fn login_sources(store: SharedStore) {
    let (a, b) = setup(&store).await;
    assert!(!store
        .login_source_known("alice@example.test", "192.0.2.1", 0)
        .await
        .unwrap());
    store
        .record_login_source(a.id, "192.0.2.1", 1_000)
        .await
        .unwrap();
    // An older success does not move the time back.
    store
        .record_login_source(a.id, "192.0.2.1", 500)
        .await
        .unwrap();
    let known = |addr: &'static str, net: &'static str, since: i64| {
        let store = store.clone();
        async move { store.login_source_known(addr, net, since).await.unwrap() }
    };
    assert!(known("Alice@Example.test", "192.0.2.1", 1_000).await);
    assert!(!known("alice@example.test", "192.0.2.1", 1_001).await);
    assert!(!known("alice@example.test", "192.0.2.2", 0).await);
    assert!(!known("bob@example.test", "192.0.2.1", 0).await);
    let _ = b;
    // Only the most recent addresses of an account are kept.
    for i in 0..MAX_LOGIN_SOURCES as i64 {
        store
            .record_login_source(a.id, &format!("198.51.100.{i}"), 2_000 + i)
            .await
            .unwrap();
    }
    assert!(!known("alice@example.test", "192.0.2.1", 0).await);
    assert!(known("alice@example.test", "198.51.100.0", 0).await);
    store.delete_account("alice@example.test").await.unwrap();
    assert!(!known("alice@example.test", "192.0.2.1", 0).await);
}
