//! Session-core tests: whole IMAP conversations against a temporary store, without
//! sockets.

use std::sync::Arc;
use std::time::Duration;

use bulwark_auth::{hash_password, Authenticator};
use bulwark_config::AuthConfig;
use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, SharedStore, SqliteStore, Store};
use imap_codec::{decode::Decoder, CommandCodec};

use crate::mime::tests as mime_tests;
use crate::notify::Notifier;
use crate::resp::VecSink;
use crate::session::{Next, Session, SessionConfig};

const USER: &str = "alice@example.test";
const PASS: &str = "correct horse battery";

struct Env {
    store: SharedStore,
    auth: Authenticator,
    notifier: Notifier,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s")).unwrap();
    store.add_domain("example.test").await.unwrap();
    store
        .create_account(USER, &hash_password(PASS).unwrap())
        .await
        .unwrap();
    store
        .create_account("bob@example.test", &hash_password(PASS).unwrap())
        .await
        .unwrap();
    let store: SharedStore = Arc::new(store);
    let auth = Authenticator::new(
        store.clone(),
        AuthConfig {
            failure_delay_ms: 1,
            max_delay_ms: 5,
            ..AuthConfig::default()
        },
    );
    Env {
        notifier: Notifier::new(&store),
        store,
        auth,
        _dir: dir,
    }
}

struct Client {
    s: Session,
    out: VecSink,
}

impl Client {
    fn new(e: &Env, tls: bool) -> Client {
        let mut c = Client {
            s: Session::new(
                e.store.clone(),
                e.auth.clone(),
                SessionConfig {
                    listener: "imap",
                    peer: "127.0.0.1".parse().unwrap(),
                    tls,
                    max_literal_size: 1 << 20,
                    max_mime_parts: 5000,
                },
                e.notifier.clone(),
            ),
            out: VecSink::default(),
        };
        c.s.set_clock(crate::session::Clock::Fixed(NOW));
        c
    }

    async fn logged_in(e: &Env) -> Client {
        let mut c = Client::new(e, true);
        let r = c.cmd(&format!("l LOGIN {USER} \"{PASS}\"")).await;
        assert!(r.contains("l OK [CAPABILITY"), "{r}");
        c
    }

    /// Sends one command (literals inline, as the shell would have assembled them).
    async fn cmd_next(&mut self, line: &str) -> (String, Next) {
        self.raw_next(format!("{line}\r\n").as_bytes()).await
    }

    async fn raw_next(&mut self, bytes: &[u8]) -> (String, Next) {
        let next = self.s.handle_raw(bytes, &mut self.out).await.unwrap();
        (self.out.take_string(), next)
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.cmd_next(line).await.0
    }
}

/// The unit tests' fixed clock.
const NOW: i64 = 1_780_000_000;

#[tokio::test]
async fn append_without_a_date_takes_the_session_clock() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    let r = c.cmd("a APPEND INBOX {10+}\r\nSubject:\r\n").await;
    assert!(r.contains("a OK [APPENDUID"), "{r}");
    c.cmd("b SELECT INBOX").await;
    let r = c.cmd("c FETCH 1 INTERNALDATE").await;
    let want = format!("INTERNALDATE {}", crate::resp::internal_date(NOW));
    assert!(r.contains(&want), "{r}");
    assert_eq!(crate::session::Clock::Fixed(5).now(), 5);
    assert!(crate::session::Clock::System.now() > NOW - 10 * 365 * 86_400);
}

async fn deliver(e: &Env, subject: &str) -> u32 {
    let mb = e
        .store
        .mailbox(e.store.account(USER).await.unwrap().unwrap().id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let data = format!(
        "From: Bob <bob@example.test>\r\nTo: {USER}\r\nSubject: {subject}\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\n\r\nHello {subject}\r\n"
    );
    let r = e
        .store
        .ingest(Ingest {
            data: data.into_bytes(),
            internal_date: 1_772_000_000,
            deliveries: vec![Delivery {
                target: DeliveryTarget::Mailbox(mb.id),
                flags: Flags::default(),
            }],
            queue: None,
        })
        .await
        .unwrap();
    r.delivered[0].2
}

#[tokio::test]
async fn no_login_before_tls() {
    let e = env().await;
    let mut c = Client::new(&e, false);
    assert!(c.s.greeting().contains("STARTTLS LOGINDISABLED"));
    let r = c.cmd("a CAPABILITY").await;
    assert!(r.contains("LOGINDISABLED") && !r.contains("AUTH="), "{r}");
    let r = c.cmd(&format!("b LOGIN {USER} \"{PASS}\"")).await;
    assert!(r.starts_with("b NO [PRIVACYREQUIRED]"), "{r}");
    let r = c
        .cmd("c AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=")
        .await;
    assert!(r.starts_with("c NO [PRIVACYREQUIRED]"), "{r}");
    assert!(!c.s.is_authenticated());
    let r = c.cmd("d SELECT INBOX").await;
    assert!(r.starts_with("d BAD"), "{r}");
    let (r, next) = c.cmd_next("e STARTTLS").await;
    assert!(r.starts_with("e OK"), "{r}");
    assert_eq!(next, Next::StartTls);
    c.s.tls_started();
    let r = c.cmd("f CAPABILITY").await;
    assert!(
        r.contains("AUTH=PLAIN") && !r.contains("LOGINDISABLED"),
        "{r}"
    );
    let r = c.cmd("g STARTTLS").await;
    assert!(r.starts_with("g BAD"), "{r}");
}

#[tokio::test]
async fn login_failures_look_the_same() {
    let e = env().await;
    let mut c = Client::new(&e, true);
    let wrong = c.cmd(&format!("a LOGIN {USER} wrong")).await;
    let unknown = c.cmd("a LOGIN nobody@example.test wrong").await;
    assert_eq!(wrong, unknown);
    assert!(wrong.starts_with("a NO [AUTHENTICATIONFAILED]"), "{wrong}");
    // AUTHENTICATE PLAIN with SASL-IR, then without (continuation).
    let r = c
        .cmd("b AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==")
        .await;
    assert!(r.starts_with("b NO [AUTHENTICATIONFAILED]"), "{r}");
    let (r, next) = c.cmd_next("c AUTHENTICATE PLAIN").await;
    assert_eq!(r, "");
    assert_eq!(next, Next::AuthContinue("c".into()));
    c.s.auth_response("c", b"*", &mut c.out).await.unwrap();
    assert!(c.out.take_string().starts_with("c BAD"));
    c.s.auth_response(
        "c",
        b"AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=",
        &mut c.out,
    )
    .await
    .unwrap();
    let r = c.out.take_string();
    assert!(r.starts_with("c OK [CAPABILITY IMAP4rev1"), "{r}");
    assert_eq!(c.s.user(), Some(USER));
}

#[tokio::test]
async fn select_append_fetch_store_expunge() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    let r = c.cmd("a SELECT inbox").await;
    for want in [
        "* FLAGS (",
        "* OK [PERMANENTFLAGS (",
        "* 0 EXISTS",
        "* 0 RECENT",
        "* OK [UIDVALIDITY ",
        "* OK [UIDNEXT 1]",
        "* OK [HIGHESTMODSEQ ",
        "a OK [READ-WRITE]",
    ] {
        assert!(r.contains(want), "{want} missing in {r}");
    }
    let r = c
        .cmd("b APPEND INBOX (\\Flagged $Work) \"03-Mar-2026 10:00:00 +0100\" {21+}\r\nSubject: hi\r\n\r\nbody\r\n\r\n")
        .await;
    assert!(r.contains("* 1 EXISTS\r\n* 1 RECENT\r\n"), "{r}");
    assert!(r.contains("b OK [APPENDUID "), "{r}");
    deliver(&e, "second").await;
    let r = c.cmd("c NOOP").await;
    assert!(r.contains("* 2 EXISTS"), "{r}");
    let r = c
        .cmd("d FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")
        .await;
    assert!(
        r.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged $Work \\Recent) INTERNALDATE \"03-Mar-2026 09:00:00 +0000\" RFC822.SIZE 21)"),
        "{r}"
    );
    let r = c.cmd("e FETCH 2 (BODY[TEXT])").await;
    assert!(r.contains("BODY[TEXT] {14}\r\nHello second\r\n"), "{r}");
    assert!(
        r.contains("FLAGS (\\Seen \\Recent)"),
        "\\Seen set and reported: {r}"
    );
    let r = c.cmd("f UID STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(!r.contains("FETCH"), "{r}");
    let r = c.cmd("g STORE 2 -FLAGS (\\Seen)").await;
    assert!(r.contains("* 2 FETCH (FLAGS (\\Recent))"), "{r}");
    let r = c.cmd("h EXPUNGE").await;
    assert!(r.contains("* 1 EXPUNGE") && r.contains("h OK"), "{r}");
    let r = c.cmd("i FETCH 1 (UID)").await;
    assert!(r.contains("* 1 FETCH (UID 2)"), "{r}");
    let r = c.cmd("j FETCH 2 (UID)").await;
    assert!(r.starts_with("j BAD"), "seq 2 no longer exists: {r}");
    let r = c.cmd("k UID FETCH 1:* (FLAGS)").await;
    assert!(r.contains("* 1 FETCH (UID 2 FLAGS (\\Recent))"), "{r}");
}

#[tokio::test]
async fn no_expunge_during_fetch_but_on_noop() {
    let e = env().await;
    for i in 0..3 {
        deliver(&e, &format!("m{i}")).await;
    }
    let mut a = Client::logged_in(&e).await;
    let mut b = Client::logged_in(&e).await;
    a.cmd("s SELECT INBOX").await;
    b.cmd("s SELECT INBOX").await;
    let r = b.cmd("x UID STORE 2 +FLAGS (\\Deleted)").await;
    assert!(r.contains("x OK"), "{r}");
    let r = b.cmd("y UID EXPUNGE 2").await;
    assert!(r.contains("* 2 EXPUNGE"), "{r}");
    // A's FETCH must not renumber: message 3 is still 3, and no EXPUNGE is sent.
    let r = a.cmd("f FETCH 1:3 (UID)").await;
    assert!(!r.contains("* 2 EXPUNGE"), "{r}");
    assert!(r.contains("* 3 FETCH (UID 3)"), "{r}");
    assert!(r.contains("f OK [EXPUNGEISSUED]"), "{r}");
    let r = a.cmd("s SEARCH ALL").await;
    assert!(!r.contains("* 2 EXPUNGE"), "{r}");
    let r = a.cmd("n NOOP").await;
    assert!(r.contains("* 2 EXPUNGE"), "{r}");
    let r = a.cmd("f FETCH 1:* (UID)").await;
    assert!(r.contains("* 2 FETCH (UID 3)"), "{r}");
    // Flag changes by B reach A as unsolicited FETCH.
    b.cmd("z STORE 1 +FLAGS (\\Answered)").await;
    let r = a.cmd("n NOOP").await;
    // A selected first, so it owns the messages' \\Recent (RFC 3501 §2.3.2).
    assert!(
        r.contains("* 1 FETCH (UID 1 FLAGS (\\Answered \\Recent))"),
        "{r}"
    );
}

#[tokio::test]
async fn idle_wakes_on_delivery() {
    let e = env().await;
    let mut a = Client::logged_in(&e).await;
    a.cmd("s SELECT INBOX").await;
    let (r, next) = a.cmd_next("i IDLE").await;
    assert_eq!(r, "");
    assert_eq!(next, Next::Idle("i".into()));
    // The delivery happens while the session waits in IDLE, not before.
    let waiting = tokio::time::timeout(Duration::from_secs(10), a.s.wait_change());
    let later = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        deliver(&e, "new").await
    };
    let (woke, _) = tokio::join!(waiting, later);
    woke.expect("IDLE must wake up on a delivery made while idling");
    a.s.idle_updates(&mut a.out).await.unwrap();
    // The idling session is the first to learn of it: it owns its \\Recent.
    assert_eq!(a.out.take_string(), "* 1 EXISTS\r\n* 1 RECENT\r\n");
}

/// Deliveries wake only the sessions that have the mailbox selected.
#[tokio::test]
async fn idle_wakes_only_sessions_of_the_changed_mailbox() {
    let e = env().await;
    let mut inbox = Client::logged_in(&e).await;
    inbox.cmd("s SELECT INBOX").await;
    let mut archive = Client::logged_in(&e).await;
    archive.cmd("s SELECT Archive").await;
    let mut bob = Client::new(&e, true);
    bob.cmd(&format!("l LOGIN bob@example.test \"{PASS}\""))
        .await;
    bob.cmd("s SELECT INBOX").await;
    assert_eq!(e.notifier.watched(), 3);
    // Alice's INBOX changes; then Archive, as a marker that the first event has
    // been dispatched too (events are dispatched in order).
    let uid = deliver(&e, "for inbox").await;
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let inbox_id = e.store.mailbox(acc.id, "INBOX").await.unwrap().unwrap().id;
    let archive_id = e
        .store
        .mailbox(acc.id, "Archive")
        .await
        .unwrap()
        .unwrap()
        .id;
    e.store
        .copy_messages(inbox_id, &[bulwark_store::Uid(uid)], archive_id)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), archive.s.wait_change())
        .await
        .expect("archive session woken");
    tokio::time::timeout(Duration::from_secs(10), inbox.s.wait_change())
        .await
        .expect("inbox session woken");
    // Bob's session was never woken: nothing pending for him.
    let r = bob.cmd("n CHECK").await;
    assert_eq!(r, "n OK CHECK completed\r\n");
    assert!(
        tokio::time::timeout(Duration::from_millis(1), bob.s.wait_change())
            .await
            .is_err(),
        "bob's INBOX did not change"
    );
    // Channels go away with the last session of a mailbox.
    drop(archive);
    assert_eq!(e.notifier.watched(), 2);
    inbox.cmd("u UNSELECT").await;
    bob.cmd("u UNSELECT").await;
    assert_eq!(e.notifier.watched(), 0);
}

#[tokio::test]
async fn mailboxes_list_rename_and_special_use() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    let r = c.cmd("a LIST \"\" *").await;
    for want in [
        "* LIST (\\HasNoChildren) \"/\" INBOX",
        "\\Sent) \"/\" Sent",
        "\\Drafts) \"/\" Drafts",
        "\\Trash) \"/\" Trash",
        "\\Junk) \"/\" Junk",
        "\\Archive) \"/\" Archive",
    ] {
        assert!(r.contains(want), "{want} missing in {r}");
    }
    let r = c.cmd("b CREATE Projekte/Entw&APw-rfe").await;
    assert!(r.starts_with("b OK"), "{r}");
    let r = c.cmd("c LIST \"\" %").await;
    assert!(r.contains("(\\HasChildren) \"/\" Projekte"), "{r}");
    assert!(!r.contains("Entw"), "{r}");
    let r = c.cmd("c LIST \"\" \"\"").await;
    assert!(r.contains("* LIST (\\Noselect) \"/\" \"\""), "{r}");
    let r = c.cmd("d LIST Projekte/ %").await;
    assert!(r.contains("\"/\" Projekte/Entw&APw-rfe"), "{r}");
    for bad in [
        "e CREATE a/../b",
        "e CREATE \"a//b\"",
        "e CREATE &Jjo",
        "e CREATE ..",
    ] {
        let r = c.cmd(bad).await;
        assert!(
            r.starts_with("e NO") || r.starts_with("e BAD"),
            "{bad}: {r}"
        );
    }
    let r = c.cmd("f DELETE INBOX").await;
    assert!(r.starts_with("f NO"), "{r}");
    // RFC 3501 §6.3.4: a mailbox with children loses its messages and stays as a
    // \Noselect name; deleting that name again is an error.
    let r = c.cmd("f DELETE Projekte").await;
    assert!(r.starts_with("f OK"), "{r}");
    let r = c.cmd("f LIST \"\" Projekte").await;
    assert!(
        r.contains("* LIST (\\Noselect \\HasChildren) \"/\" Projekte"),
        "{r}"
    );
    let r = c.cmd("f SELECT Projekte").await;
    assert!(r.starts_with("f NO [NONEXISTENT]"), "{r}");
    let r = c.cmd("f DELETE Projekte").await;
    assert!(r.starts_with("f NO [NONEXISTENT]"), "{r}");
    let r = c.cmd("f STATUS Projekte/Entw&APw-rfe (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 0)"), "the child is untouched: {r}");
    // RENAME INBOX moves the messages and leaves INBOX empty.
    deliver(&e, "one").await;
    let r = c.cmd("g RENAME INBOX Old").await;
    assert!(r.starts_with("g OK"), "{r}");
    let r = c.cmd("h STATUS INBOX (MESSAGES UIDNEXT)").await;
    assert!(r.contains("* STATUS INBOX (MESSAGES 0 UIDNEXT 2)"), "{r}");
    let r = c.cmd("h STATUS Old (MESSAGES UNSEEN RECENT)").await;
    assert!(
        r.contains("* STATUS Old (MESSAGES 1 UNSEEN 1 RECENT 1)"),
        "{r}"
    );
    // The mailbox RENAME INBOX creates is not subscribed (nor is any created one).
    let r = c.cmd("i UNSUBSCRIBE Old").await;
    assert!(r.starts_with("i NO"), "{r}");
    let r = c.cmd("j LSUB \"\" *").await;
    assert!(!r.contains(" Old"), "{r}");
    assert!(r.contains(" INBOX"), "{r}");
    // Another account's mailboxes are invisible.
    let mut bob = Client::new(&e, true);
    bob.cmd(&format!("l LOGIN bob@example.test \"{PASS}\""))
        .await;
    let r = bob.cmd("a SELECT Old").await;
    assert!(r.starts_with("a NO [NONEXISTENT]"), "{r}");
    let r = bob.cmd("a STATUS Projekte (MESSAGES)").await;
    assert!(r.starts_with("a NO [NONEXISTENT]"), "{r}");
}

/// RFC 3501 §2.3.2: `\Recent` belongs to the first session that selects the mailbox
/// (or is told of the message while it has it selected); EXAMINE and STATUS show
/// unclaimed messages as recent without claiming them; copies are recent again.
#[tokio::test]
async fn recent_is_owned_by_one_session() {
    let e = env().await;
    deliver(&e, "one").await;
    deliver(&e, "two").await;
    let mut a = Client::logged_in(&e).await;
    let mut b = Client::logged_in(&e).await;
    let r = a.cmd("a1 EXAMINE INBOX").await;
    assert!(r.contains("* 2 EXISTS\r\n* 2 RECENT\r\n"), "{r}");
    let r = a.cmd("a2 FETCH 1 (FLAGS)").await;
    assert!(r.contains("* 1 FETCH (FLAGS (\\Recent))"), "{r}");
    let r = b.cmd("b1 STATUS INBOX (RECENT MESSAGES)").await;
    assert!(
        r.contains("(RECENT 2 MESSAGES 2)"),
        "EXAMINE claimed nothing: {r}"
    );
    let r = a.cmd("a3 SELECT INBOX").await;
    assert!(r.contains("* 2 RECENT"), "{r}");
    let r = b.cmd("b2 SELECT INBOX").await;
    assert!(
        r.contains("* 2 EXISTS\r\n* 0 RECENT\r\n"),
        "a owns them: {r}"
    );
    let r = b.cmd("b3 FETCH 1:2 (FLAGS)").await;
    assert!(!r.contains("Recent"), "{r}");
    // A new message goes to the first session told of it.
    deliver(&e, "three").await;
    let r = a.cmd("a4 NOOP").await;
    assert!(r.contains("* 3 EXISTS\r\n* 3 RECENT\r\n"), "{r}");
    let r = b.cmd("b4 NOOP").await;
    assert!(r.contains("* 3 EXISTS\r\n* 0 RECENT\r\n"), "{r}");
    a.cmd("a5 STORE 1 +FLAGS.SILENT (\\Seen)").await;
    for (q, want) in [
        ("SEARCH RECENT", "* SEARCH 1 2 3\r\n"),
        ("SEARCH NEW", "* SEARCH 2 3\r\n"),
        ("SEARCH OLD", "* SEARCH\r\n"),
        ("SEARCH NOT NEW", "* SEARCH 1\r\n"),
    ] {
        let r = a.cmd(&format!("a6 {q}")).await;
        assert!(r.contains(want), "{q}: {r}");
    }
    let r = b.cmd("b5 SEARCH OLD").await;
    assert!(r.contains("* SEARCH 1 2 3\r\n"), "{r}");
    let r = b.cmd("b6 SEARCH RECENT").await;
    assert!(r.contains("* SEARCH\r\n"), "{r}");
    // Another session's flag change reaches `a` with its \Recent.
    b.cmd("b7 STORE 2 +FLAGS (\\Flagged)").await;
    let r = a.cmd("a7 NOOP").await;
    assert!(r.contains("FLAGS (\\Flagged \\Recent)"), "{r}");
    // COPY makes new messages in the target: recent there, for its first SELECT.
    let r = a.cmd("a8 COPY 1:2 Archive").await;
    assert!(r.contains("a8 OK"), "{r}");
    let r = b.cmd("b8 STATUS Archive (RECENT)").await;
    assert!(r.contains("(RECENT 2)"), "{r}");
    let r = b.cmd("b9 SELECT Archive").await;
    assert!(r.contains("* 2 RECENT"), "{r}");
    let r = b.cmd("b10 FETCH 1 (FLAGS)").await;
    assert!(r.contains("\\Seen \\Recent"), "{r}");
    let r = a.cmd("a9 STATUS Archive (RECENT)").await;
    assert!(r.contains("(RECENT 0)"), "{r}");
    // Closing gives nothing back: the messages are no longer recent for anyone.
    b.cmd("b11 CLOSE").await;
    let r = b.cmd("b12 SELECT Archive").await;
    assert!(r.contains("* 0 RECENT"), "{r}");
}

/// RFC 3501 §7.2.6: a keyword new to the mailbox is announced with `* FLAGS` and
/// PERMANENTFLAGS before any FETCH shows it — to the session that set it and to every
/// other session with the mailbox selected (imaptest: "Keyword used without being in
/// FLAGS").
#[tokio::test]
async fn new_keywords_are_announced_in_flags_to_every_session() {
    let e = env().await;
    deliver(&e, "one").await;
    deliver(&e, "two").await;
    let mut a = Client::logged_in(&e).await;
    let mut b = Client::logged_in(&e).await;
    a.cmd("a1 SELECT INBOX").await;
    let r = b.cmd("b1 EXAMINE INBOX").await;
    assert!(!r.contains("$Hello"), "{r}");
    let r = a.cmd("a2 STORE 1 +FLAGS ($Hello)").await;
    let flags = r.find("* FLAGS (").expect(&r);
    let fetch = r.find("* 1 FETCH (FLAGS (").expect(&r);
    assert!(flags < fetch, "FLAGS before the FETCH that uses it: {r}");
    assert!(
        r.contains("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Hello)\r\n"),
        "{r}"
    );
    assert!(
        r.contains(
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Hello \\*)]"
        ),
        "{r}"
    );
    // Already announced: not again.
    let r = a.cmd("a3 STORE 2 +FLAGS ($hello)").await;
    assert!(!r.contains("* FLAGS"), "{r}");
    // The other session learns it with the change, before the FETCH.
    let r = b.cmd("b2 NOOP").await;
    let flags = r.find("* FLAGS (").expect(&r);
    let fetch = r.find(" FETCH (").expect(&r);
    assert!(flags < fetch, "{r}");
    assert!(
        r.contains("$Hello)\r\n* OK [PERMANENTFLAGS ()]"),
        "read-only: {r}"
    );
    // A FETCH that reads a keyword set meanwhile announces it too.
    let mut c = Client::logged_in(&e).await;
    c.cmd("c1 SELECT INBOX").await;
    a.cmd("a4 STORE 1 +FLAGS ($Later)").await;
    let r = c.cmd("c2 UID FETCH 1 (FLAGS)").await;
    let flags = r.find("$Later)\r\n* OK [PERMANENTFLAGS").expect(&r);
    let fetch = r
        .find("FETCH (UID 1 FLAGS (")
        .or_else(|| r.find("FETCH (FLAGS"))
        .expect(&r);
    assert!(flags < fetch, "{r}");
}

#[tokio::test]
async fn copy_move_and_uidplus() {
    let e = env().await;
    for i in 0..4 {
        deliver(&e, &format!("m{i}")).await;
    }
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a COPY 1:2 Archive").await;
    assert!(r.contains("a OK [COPYUID "), "{r}");
    assert!(r.contains(" 1:2 1:2]"), "{r}");
    let r = c.cmd("b UID MOVE 3 Trash").await;
    assert!(r.contains("* OK [COPYUID "), "{r}");
    assert!(r.contains("* 3 EXPUNGE"), "{r}");
    assert!(r.ends_with("b OK MOVE completed\r\n"), "{r}");
    let r = c.cmd("c COPY 1 Nowhere").await;
    assert!(r.starts_with("c NO [TRYCREATE]"), "{r}");
    let r = c.cmd("d APPEND Nowhere {1+}\r\nx").await;
    assert!(r.starts_with("d NO [TRYCREATE]"), "{r}");
    let r = c.cmd("e STATUS Archive (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 2)"), "{r}");
    let r = c.cmd("f EXAMINE Archive").await;
    assert!(
        r.contains("* OK [CLOSED]") && r.contains("[READ-ONLY]"),
        "{r}"
    );
    let r = c.cmd("g STORE 1 +FLAGS (\\Seen)").await;
    assert!(r.starts_with("g NO"), "{r}");
    let r = c.cmd("h FETCH 1 (BODY[])").await;
    assert!(!r.contains("\\Seen"), "EXAMINE must not set \\Seen: {r}");
}

#[tokio::test]
async fn search_keys() {
    let e = env().await;
    for s in ["Apples", "Bananas", "Grüße aus Köln"] {
        deliver(&e, s).await;
    }
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    c.cmd("a STORE 2 +FLAGS (\\Flagged)").await;
    for (q, want) in [
        ("SEARCH ALL", "* SEARCH 1 2 3"),
        ("SEARCH SUBJECT banana", "* SEARCH 2"),
        ("SEARCH FLAGGED", "* SEARCH 2"),
        ("SEARCH UNFLAGGED SUBJECT a", "* SEARCH 1 3"),
        ("SEARCH OR SUBJECT apples SUBJECT bananas", "* SEARCH 1 2"),
        ("SEARCH NOT FROM bob", "* SEARCH\r\n"),
        ("SEARCH BODY \"hello apples\"", "* SEARCH 1"),
        ("SEARCH CHARSET UTF-8 TEXT {5+}\r\nköln", "* SEARCH 3"),
        (
            "SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGRÜSSE",
            "* SEARCH\r\n",
        ),
        ("SEARCH CHARSET UTF-8 SUBJECT {7+}\r\ngrüße", "* SEARCH 3"),
        ("SEARCH HEADER To alice", "* SEARCH 1 2 3"),
        ("SEARCH SENTON 3-Mar-2026", "* SEARCH 1 2 3"),
        ("SEARCH SENTBEFORE 3-Mar-2026", "* SEARCH\r\n"),
        (
            "SEARCH SINCE 1-Jan-2026 BEFORE 1-Jan-2027",
            "* SEARCH 1 2 3",
        ),
        ("SEARCH LARGER 10 SMALLER 100000", "* SEARCH 1 2 3"),
        ("SEARCH 2:*", "* SEARCH 2 3"),
        ("UID SEARCH UID 2:3", "* SEARCH 2 3"),
        ("SEARCH RECENT", "* SEARCH 1 2 3"),
        ("SEARCH NEW", "* SEARCH 1 2 3"),
        ("SEARCH OLD", "* SEARCH\r\n"),
        ("SEARCH MODSEQ 1", "(MODSEQ "),
    ] {
        let r = c.cmd(&format!("t {q}")).await;
        assert!(r.contains(want), "{q}: {r}");
        assert!(r.contains("t OK"), "{q}: {r}");
    }
    let r = c.cmd("t SEARCH CHARSET KOI8-R ALL").await;
    assert!(r.starts_with("t NO [BADCHARSET"), "{r}");
}

/// RFC 7162 §3.1: the first CONDSTORE-enabling command after SELECT reports
/// HIGHESTMODSEQ (imaptest's esearch-condstore starts with `FETCH 1 MODSEQ`); later
/// ones do not repeat it.
#[tokio::test]
async fn first_condstore_command_reports_highestmodseq() {
    let e = env().await;
    deliver(&e, "one").await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("f FETCH 1 (MODSEQ)").await;
    assert!(r.contains("* OK [HIGHESTMODSEQ "), "{r}");
    let r = c.cmd("g FETCH 1 (MODSEQ)").await;
    assert!(!r.contains("HIGHESTMODSEQ"), "{r}");
}

/// RFC 5182: `SEARCH RETURN (SAVE)` keeps the result as UIDs for `$`, in sequence
/// sets and as a search key; an empty saved result is an empty set.
#[tokio::test]
async fn searchres_saves_for_dollar() {
    let e = env().await;
    for s in ["one", "two", "three", "four"] {
        deliver(&e, s).await;
    }
    let mut c = Client::logged_in(&e).await;
    assert!(c.cmd("k CAPABILITY").await.contains(" SEARCHRES"));
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a SEARCH RETURN (SAVE) 2:3").await;
    assert!(!r.contains("ESEARCH") && !r.contains("* SEARCH"), "{r}");
    assert!(r.starts_with("a OK"), "{r}");
    let r = c.cmd("b FETCH $ (UID)").await;
    assert!(
        r.contains("* 2 FETCH (UID 2)") && r.contains("* 3 FETCH (UID 3)"),
        "{r}"
    );
    assert!(!r.contains("* 1 FETCH") && !r.contains("* 4 FETCH"), "{r}");
    let r = c.cmd("c SEARCH OR $ 4").await;
    assert!(r.contains("* SEARCH 2 3 4\r\n"), "{r}");
    let r = c.cmd("d UID STORE $ +FLAGS.SILENT (\\Flagged)").await;
    assert!(r.contains("d OK"), "{r}");
    let r = c.cmd("e SEARCH FLAGGED").await;
    assert!(r.contains("* SEARCH 2 3\r\n"), "{r}");
    // Expunging message 1 shifts sequence numbers, not the saved UIDs.
    c.cmd("f STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    c.cmd("g EXPUNGE").await;
    let r = c.cmd("h FETCH $ (UID)").await;
    assert!(
        r.contains("* 1 FETCH (UID 2)") && r.contains("* 2 FETCH (UID 3)"),
        "{r}"
    );
    // MIN with SAVE keeps only the minimum; a search with no match saves nothing.
    let r = c.cmd("i SEARCH RETURN (SAVE MIN) ALL").await;
    assert!(r.contains("* ESEARCH (TAG \"i\") MIN 1"), "{r}");
    let r = c.cmd("j UID SEARCH $").await;
    assert!(r.contains("* SEARCH 2\r\n"), "{r}");
    c.cmd("k SEARCH RETURN (SAVE) SUBJECT nothing-matches")
        .await;
    let r = c.cmd("l FETCH $ (UID)").await;
    assert!(r.starts_with("l OK"), "{r}");
    let r = c.cmd("m SEARCH $").await;
    assert!(r.contains("* SEARCH\r\n"), "{r}");
    // A `$` inside a string is text, not the saved result.
    let r = c.cmd("n SEARCH SUBJECT \"$\"").await;
    assert!(r.contains("* SEARCH\r\n") && r.contains("n OK"), "{r}");
    // Selecting again forgets the result.
    c.cmd("o SEARCH RETURN (SAVE) ALL").await;
    c.cmd("p SELECT INBOX").await;
    let r = c.cmd("q SEARCH $").await;
    assert!(r.contains("* SEARCH\r\n"), "{r}");
}

/// RFC 3502: one APPEND with several messages stores all of them in one transaction
/// (APPENDUID with a UID set) or none of them.
#[tokio::test]
async fn multiappend_all_or_nothing() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    assert!(c.cmd("k CAPABILITY").await.contains(" MULTIAPPEND"));
    let r = c
        .cmd("a APPEND INBOX (\\Seen) {20}\r\nSubject: one\r\n\r\nbody {22+}\r\nSubject: two\r\n\r\nbody 2")
        .await;
    assert!(r.starts_with("a OK [APPENDUID "), "{r}");
    assert!(r.contains(" 1:2] "), "{r}");
    let r = c.cmd("b STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 2)"), "{r}");
    c.cmd("s EXAMINE INBOX").await;
    let r = c
        .cmd("f FETCH 1:2 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .await;
    assert!(
        r.contains("* 1 FETCH (FLAGS (\\Seen") && r.contains("Subject: one"),
        "{r}"
    );
    assert!(
        r.contains("* 2 FETCH (FLAGS (\\Recent)") && r.contains("Subject: two"),
        "{r}"
    );
    c.cmd("u UNSELECT").await;
    // The second message is nested too deep: the first must not be stored either.
    let deep = {
        let mut m = String::new();
        for i in 0..200 {
            m.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        m
    };
    let r = c
        .cmd(&format!(
            "c APPEND INBOX {{13}}\r\nSubject: ok\r\n {{{}}}\r\n{deep}",
            deep.len()
        ))
        .await;
    assert!(r.starts_with("c NO"), "{r}");
    let r = c.cmd("d STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 2)"), "{r}");
    let r = c
        .cmd("g APPEND Nowhere {7}\r\nSubj: x {7}\r\nSubj: y")
        .await;
    assert!(r.starts_with("g NO [TRYCREATE]"), "{r}");
    let r = c
        .cmd("h APPEND INBOX {7}\r\nSubj: x (\\Bogus {7}\r\nSubj: y")
        .await;
    assert!(r.starts_with("h BAD"), "{r}");
}

/// RFC 3516: a literal8 APPEND with a NUL is stored with the part base64-encoded
/// (BODY[1] never carries the NUL); BINARY[1] gives the octets back as literal8.
#[tokio::test]
async fn binary_append_and_fetch() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    assert!(c.cmd("k CAPABILITY").await.contains(" BINARY"));
    let msg = b"Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\r\n\r\n";
    let mut cmd = format!("a APPEND INBOX ~{{{}+}}\r\n", msg.len()).into_bytes();
    cmd.extend_from_slice(msg);
    cmd.extend_from_slice(b"\r\n");
    let (r, _) = c.raw_next(&cmd).await;
    assert!(r.starts_with("a OK"), "{r}");
    c.cmd("s SELECT INBOX").await;
    let (r, _) = c.raw_next(b"f FETCH 1 (BODY.PEEK[1])\r\n").await;
    assert!(r.contains("BODY[1] {12}\r\nAC3kDQoNCg==)"), "{r:?}");
    let mut want = b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n".to_vec();
    want.extend_from_slice(b"\x00-\xe4\r\n\r\n)");
    c.out.take_string();
    c.s.handle_raw(b"g FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])\r\n", &mut c.out)
        .await
        .unwrap();
    let bytes = std::mem::take(&mut c.out.data);
    assert!(
        bytes.windows(want.len()).any(|w| w == want),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    let r = c.cmd("h FETCH 1 (BINARY.PEEK[1]<1.1>)").await;
    assert!(r.contains("BINARY[1]<1> ~{1}\r\n-"), "{r}");
    let r = c.cmd("i FETCH 1 (FLAGS)").await;
    assert!(!r.contains("\\Seen"), "PEEK leaves \\Seen alone: {r}");
    let r = c.cmd("j FETCH 1 (BINARY[9])").await;
    assert!(r.contains("BINARY[9] NIL") && r.contains("\\Seen"), "{r}");
}

/// Appends one message with the given header lines (helper for SORT/THREAD tests).
async fn append_headers(c: &mut Client, headers: &str) {
    let msg = format!("{headers}\r\n\r\nbody\r\n");
    let r = c
        .cmd(&format!("a APPEND INBOX {{{}+}}\r\n{msg}", msg.len()))
        .await;
    assert!(r.contains("a OK"), "{r}");
}

/// RFC 5256 §3 SORT and RFC 5957 DISPLAYFROM: keys in order, REVERSE per key, ties
/// by sequence number; the base subject drops Re:/Fwd:/[blob]/(fwd).
#[tokio::test]
async fn sort_by_keys() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    assert!(c.cmd("k CAPABILITY").await.contains(" SORT SORT=DISPLAY"));
    append_headers(
        &mut c,
        "Subject: Re: beta\r\nFrom: Zed <a@x.test>\r\nDate: Tue, 3 Mar 2026 10:00:00 +0000",
    )
    .await;
    append_headers(
        &mut c,
        "Subject: [list] alpha (fwd)\r\nFrom: b@x.test\r\nDate: Tue, 3 Mar 2026 09:00:00 -0200",
    )
    .await;
    append_headers(
        &mut c,
        "Subject: Fwd: beta\r\nFrom: Amy <c@x.test>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000",
    )
    .await;
    c.cmd("s SELECT INBOX").await;
    for (q, want) in [
        ("SORT (SUBJECT) UTF-8 ALL", "* SORT 2 1 3\r\n"),
        ("SORT (REVERSE SUBJECT) UTF-8 ALL", "* SORT 1 3 2\r\n"),
        ("SORT (DATE) US-ASCII ALL", "* SORT 3 1 2\r\n"),
        ("SORT (FROM) UTF-8 ALL", "* SORT 1 2 3\r\n"),
        ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 3 2 1\r\n"),
        (
            "SORT (SUBJECT REVERSE ARRIVAL) UTF-8 NOT 1",
            "* SORT 2 3\r\n",
        ),
        ("UID SORT (REVERSE DATE) UTF-8 ALL", "* SORT 2 1 3\r\n"),
    ] {
        let r = c.cmd(&format!("t {q}")).await;
        assert!(r.contains(want) && r.contains("t OK"), "{q}: {r}");
    }
    let r = c.cmd("t SORT (SUBJECT) KOI8-R ALL").await;
    assert!(r.starts_with("t NO [BADCHARSET"), "{r}");
    let r = c.cmd("t SORT (BOGUS) UTF-8 ALL").await;
    assert!(r.starts_with("t BAD"), "{r}");
}

/// RFC 5256 THREAD: REFERENCES links by Message-ID/References (a missing parent
/// becomes a dummy that is pruned), then gathers roots by base subject;
/// ORDEREDSUBJECT groups by base subject only.
#[tokio::test]
async fn thread_references_and_orderedsubject() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    assert!(c
        .cmd("k CAPABILITY")
        .await
        .contains(" THREAD=ORDEREDSUBJECT THREAD=REFERENCES"));
    let d = |h: u32| format!("Date: Tue, 3 Mar 2026 {h:02}:00:00 +0000");
    // 1: a root; 2: reply to 1; 3: reply to a message we do not have, which
    // replied to 1; 4: unrelated; 5: same subject as 4, a reply without references.
    append_headers(
        &mut c,
        &format!("Message-ID: <1@x>\r\nSubject: plan\r\n{}", d(1)),
    )
    .await;
    append_headers(
        &mut c,
        &format!(
            "Message-ID: <2@x>\r\nReferences: <1@x>\r\nSubject: Re: plan\r\n{}",
            d(2)
        ),
    )
    .await;
    append_headers(
        &mut c,
        &format!(
            "Message-ID: <3@x>\r\nReferences: <1@x> <gone@x>\r\nSubject: Re: plan\r\n{}",
            d(3)
        ),
    )
    .await;
    append_headers(
        &mut c,
        &format!("Message-ID: <4@x>\r\nSubject: lunch\r\n{}", d(4)),
    )
    .await;
    append_headers(
        &mut c,
        &format!("Message-ID: <5@x>\r\nSubject: Re: lunch\r\n{}", d(5)),
    )
    .await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("t THREAD REFERENCES UTF-8 ALL").await;
    assert!(r.contains("* THREAD (1 (2)(3))(4 5)\r\n"), "{r}");
    let r = c.cmd("t THREAD ORDEREDSUBJECT UTF-8 ALL").await;
    assert!(r.contains("* THREAD (1 (2)(3))(4 5)\r\n"), "{r}");
    let r = c.cmd("t UID THREAD REFERENCES UTF-8 NOT 1").await;
    // 2 and 3 share the missing parent: a dummy root with two children stays.
    assert!(r.contains("* THREAD ((2)(3))(4 5)\r\n"), "{r}");
    let r = c.cmd("t THREAD BOGUS UTF-8 ALL").await;
    assert!(r.starts_with("t BAD"), "{r}");
}

/// RFC 7162 §3.2: a Thunderbird-style resync. A client that knew the mailbox at
/// HIGHESTMODSEQ n selects with (QRESYNC (uidvalidity n known-uids)) and learns the
/// expunges (VANISHED (EARLIER)) and flag changes since; a selected QRESYNC session
/// gets VANISHED instead of EXPUNGE; UID FETCH (CHANGEDSINCE n VANISHED) too.
#[tokio::test]
async fn qresync_resynchronises() {
    let e = env().await;
    for s in ["one", "two", "three", "four"] {
        deliver(&e, s).await;
    }
    let mut a = Client::logged_in(&e).await;
    assert!(a.cmd("k CAPABILITY").await.contains(" QRESYNC"));
    let r = a.cmd("q SELECT INBOX (QRESYNC (1 1))").await;
    assert!(r.starts_with("q BAD"), "before ENABLE: {r}");
    let r = a.cmd("e ENABLE QRESYNC").await;
    assert!(r.contains("* ENABLED QRESYNC"), "{r}");
    let r = a.cmd("s SELECT INBOX").await;
    let num = |r: &str, key: &str| -> u64 {
        let at = r.find(key).unwrap_or_else(|| panic!("{key}: {r}")) + key.len();
        r[at..].split(']').next().unwrap().parse().unwrap()
    };
    let (uidvalidity, modseq) = (num(&r, "[UIDVALIDITY "), num(&r, "[HIGHESTMODSEQ "));
    // Another session changes a flag and expunges a message.
    let mut b = Client::logged_in(&e).await;
    b.cmd("s SELECT INBOX").await;
    b.cmd("f STORE 2 +FLAGS (\\Flagged)").await;
    b.cmd("d STORE 3 +FLAGS (\\Deleted)").await;
    b.cmd("x EXPUNGE").await;
    let r = a.cmd("n NOOP").await;
    assert!(
        r.contains("* VANISHED 3\r\n") && !r.contains("EXPUNGE"),
        "{r}"
    );
    let r = a
        .cmd(&format!(
            "u UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"
        ))
        .await;
    assert!(r.contains("* VANISHED (EARLIER) 3\r\n"), "{r}");
    assert!(r.contains("(UID 2 FLAGS (\\Flagged"), "{r}");
    assert!(!r.contains("UID 1 "), "unchanged: {r}");
    let r = a.cmd("g FETCH 1 (FLAGS)").await;
    assert!(
        r.contains("* 1 FETCH (UID 1 FLAGS"),
        "UID in every FETCH: {r}"
    );
    // A new session that remembers (uidvalidity, modseq) resynchronises at SELECT.
    let mut c = Client::logged_in(&e).await;
    c.cmd("e ENABLE QRESYNC").await;
    let r = c
        .cmd(&format!(
            "s SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:4))"
        ))
        .await;
    assert!(r.contains("* VANISHED (EARLIER) 3\r\n"), "{r}");
    assert!(r.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged"), "{r}");
    assert!(r.contains("s OK"), "{r}");
    let r = c.cmd("v FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)").await;
    assert!(r.starts_with("v BAD"), "VANISHED only with UID FETCH: {r}");
}

/// RFC 4731: SEARCH RETURN answers with one ESEARCH line; RFC 7162 §3.1.5 MODSEQ
/// there is that of the MIN/MAX messages when only those were asked.
#[tokio::test]
async fn esearch_return_options() {
    let e = env().await;
    for s in ["one", "two", "three", "four"] {
        deliver(&e, s).await;
    }
    let mut c = Client::logged_in(&e).await;
    assert!(c.cmd("k CAPABILITY").await.contains(" ESEARCH"));
    c.cmd("s SELECT INBOX").await;
    c.cmd("a STORE 2,4 +FLAGS (\\Seen)").await;
    for (q, want) in [
        (
            "SEARCH RETURN (MIN MAX COUNT) SEEN",
            "* ESEARCH (TAG \"t\") MIN 2 MAX 4 COUNT 2\r\n",
        ),
        ("SEARCH RETURN () ALL", "* ESEARCH (TAG \"t\") ALL 1:4\r\n"),
        (
            "UID SEARCH RETURN (ALL) UNSEEN",
            "* ESEARCH (TAG \"t\") UID ALL 1,3\r\n",
        ),
        ("SEARCH RETURN (MIN) 1000", "* ESEARCH (TAG \"t\")\r\n"),
        (
            "UID SEARCH RETURN (COUNT) 1000",
            "* ESEARCH (TAG \"t\") UID COUNT 0\r\n",
        ),
        (
            "SEARCH RETURN (COUNT) CHARSET UTF-8 SUBJECT {3+}\r\ntwo",
            "COUNT 1\r\n",
        ),
        ("SEARCH ALL", "* SEARCH 1 2 3 4\r\n"),
    ] {
        let r = c.cmd(&format!("t {q}")).await;
        assert!(r.contains(want), "{q}: {r}");
        assert!(r.contains("t OK"), "{q}: {r}");
        assert!(!r.contains("* SEARCH") || !q.contains("RETURN"), "{q}: {r}");
    }
    c.cmd("b STORE 3 +FLAGS (\\Seen)").await;
    let r = c.cmd("m FETCH 1:4 (MODSEQ)").await;
    let modseq = |n: u32| -> u64 {
        let at = r.find(&format!("* {n} FETCH (MODSEQ (")).unwrap() + 18 + n.to_string().len();
        r[at..].split(')').next().unwrap().parse().unwrap()
    };
    let (m2, m3) = (modseq(2), modseq(3));
    assert!(m3 > m2, "{r}");
    let r = c.cmd("t SEARCH RETURN (MIN) 2:3 MODSEQ 1").await;
    assert!(r.contains(&format!("MIN 2 MODSEQ {m2}\r\n")), "{r}");
    let r = c.cmd("t SEARCH RETURN (ALL) 2:3 MODSEQ 1").await;
    assert!(r.contains(&format!("ALL 2:3 MODSEQ {m3}\r\n")), "{r}");
    let r = c.cmd("t SEARCH RETURN (FIRST) ALL").await;
    assert!(r.starts_with("t BAD"), "{r}");
    let r = c.cmd("t SEARCH RETURN (MIN ALL").await;
    assert!(r.starts_with("t BAD"), "{r}");
}

#[tokio::test]
async fn fetch_sections_envelope_and_condstore() {
    let e = env().await;
    deliver(&e, "structure").await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)").await;
    assert!(r.contains("ENVELOPE (\"Tue, 3 Mar 2026 10:00:00 +0100\" \"structure\" ((\"Bob\" NIL \"bob\" \"example.test\"))"), "{r}");
    assert!(
        r.contains("BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 17 1)"),
        "{r}"
    );
    assert!(r.contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 17 1 NIL NIL NIL NIL)"), "{r}");
    // The summary was cached in the store for the next FETCH.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metas = e
        .store
        .list_messages(c.s.view.as_ref().unwrap().mailbox)
        .await
        .unwrap();
    let cached = e.store.blob_summaries(&[metas[0].blob_id]).await.unwrap();
    assert_eq!(cached.len(), 1);
    let r = c
        .cmd("b FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.9> BODY.PEEK[1] RFC822.HEADER)")
        .await;
    assert!(
        r.contains("BODY[HEADER.FIELDS (SUBJECT)]<0> {9}\r\nSubject: "),
        "{r}"
    );
    assert!(r.contains("BODY[1] {17}\r\nHello structure\r\n"), "{r}");
    assert!(r.contains("RFC822.HEADER {"), "{r}");
    assert!(!r.contains("\\Seen"), "{r}");
    let r = c.cmd("c ENABLE CONDSTORE").await;
    assert!(r.contains("* ENABLED CONDSTORE"), "{r}");
    let r = c.cmd("d FETCH 1 (FLAGS) (CHANGEDSINCE 1)").await;
    assert!(r.contains("MODSEQ ("), "{r}");
    let modseq: u64 = r
        .split("MODSEQ (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    let r = c
        .cmd(&format!(
            "e STORE 1 (UNCHANGEDSINCE {}) +FLAGS (\\Seen)",
            modseq - 1
        ))
        .await;
    assert!(r.contains("e OK [MODIFIED 1]"), "{r}");
    let r = c
        .cmd(&format!(
            "e STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)"
        ))
        .await;
    assert!(
        r.contains("* 1 FETCH (FLAGS (\\Seen \\Recent) MODSEQ ("),
        "{r}"
    );
    let r = c
        .cmd(&format!("f FETCH 1:* (UID) (CHANGEDSINCE {})", modseq + 1))
        .await;
    assert!(!r.contains("* 1 FETCH"), "{r}");
}

#[tokio::test]
async fn bad_sequence_sets_and_unknown_commands() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a FETCH 1 (FLAGS)").await;
    assert!(r.starts_with("a BAD"), "empty mailbox: {r}");
    let r = c.cmd("a FETCH 1:* (FLAGS)").await;
    assert!(r.starts_with("a OK"), "{r}");
    assert!(CommandCodec::default()
        .decode(b"a FETCH 0:x (FLAGS)\r\n")
        .is_err());
    assert!(CommandCodec::default().decode(b"a FROBNICATE\r\n").is_err());
    let r = c.cmd("b UNSELECT").await;
    assert!(r.starts_with("b OK"), "{r}");
    let r = c.cmd("c FETCH 1 (FLAGS)").await;
    assert!(r.starts_with("c BAD"), "{r}");
    let (r, next) = c.cmd_next("z LOGOUT").await;
    assert!(r.starts_with("* BYE") && r.contains("z OK"), "{r}");
    assert_eq!(next, Next::Close);
}

#[tokio::test]
async fn select_of_a_large_mailbox_is_compact() {
    let e = env().await;
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let mb = e.store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
    let mut futs = Vec::new();
    for i in 0..2000 {
        let store = e.store.clone();
        futs.push(tokio::spawn(async move {
            store
                .ingest(Ingest {
                    data: format!("Subject: {i}\r\n\r\nx\r\n").into_bytes(),
                    internal_date: 1,
                    deliveries: vec![Delivery {
                        target: DeliveryTarget::Mailbox(mb.id),
                        flags: Flags::new(if i == 0 { 0 } else { Flags::SEEN }),
                    }],
                    queue: None,
                })
                .await
                .unwrap();
        }));
    }
    for f in futs {
        f.await.unwrap();
    }
    let mut c = Client::logged_in(&e).await;
    let r = c.cmd("s SELECT INBOX").await;
    assert!(r.contains("* 2000 EXISTS"), "{r}");
    assert!(r.contains("* OK [UNSEEN "), "{r}");
    let r = c.cmd("f FETCH 1:* (UID)").await;
    assert_eq!(r.matches(" FETCH (UID ").count(), 2000);
}

/// How many messages the figure tests seed: a few thousand in the suite (CI checks
/// the answers), the full size with `BULWARK_FIGURES=full` (for the printed timings;
/// timings are never asserted — bench/ compares them with the reference).
fn figure_count(suite: u32, full: u32) -> u32 {
    match std::env::var("BULWARK_FIGURES").as_deref() {
        Ok("full") => full,
        _ => suite,
    }
}

/// Seeds `n` messages made by `make` into INBOX from 16 concurrent ingests (group
/// commit batches them).
async fn seed_inbox(e: &Env, n: u32, make: impl Fn(u32) -> Vec<u8> + Send + Sync + 'static) {
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let mb = e.store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
    let make = std::sync::Arc::new(make);
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let store = e.store.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(16) {
                store
                    .ingest(Ingest {
                        data: make(i),
                        internal_date: 1,
                        deliveries: vec![Delivery {
                            target: DeliveryTarget::Mailbox(mb.id),
                            flags: Flags::new(Flags::SEEN),
                        }],
                        queue: None,
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// SELECT and FETCH of a large mailbox: the answers are checked; the time is printed.
/// Full size (100,000 messages):
/// `BULWARK_FIGURES=full cargo test --release -p bulwark-imap large_mailbox -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_mailbox_select_and_fetch() {
    let e = env().await;
    let n = figure_count(3_000, 100_000);
    let t = std::time::Instant::now();
    seed_inbox(&e, n, |i| format!("Subject: {i}\r\n\r\nx\r\n").into_bytes()).await;
    eprintln!("filled in {:?}", t.elapsed());
    let mut c = Client::logged_in(&e).await;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let r = c.cmd("s SELECT INBOX").await;
        eprintln!("SELECT of {n} messages took {:?}", t.elapsed());
        assert!(r.contains(&format!("* {n} EXISTS\r\n")), "{r}");
        assert!(r.lines().last().unwrap_or("").starts_with("s OK"), "{r}");
    }
    let t = std::time::Instant::now();
    let r = c.cmd("f FETCH 1:* (UID FLAGS)").await;
    eprintln!("FETCH 1:* (UID FLAGS) of {n} took {:?}", t.elapsed());
    assert_eq!(r.matches(" FETCH (UID ").count(), n as usize);
}

async fn ingest_raw(e: &Env, mailbox: &str, data: Vec<u8>, copies: usize) -> Vec<u32> {
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let mb = e.store.mailbox(acc.id, mailbox).await.unwrap().unwrap();
    let r = e
        .store
        .ingest(Ingest {
            data,
            internal_date: 1_772_000_000,
            deliveries: (0..copies)
                .map(|_| Delivery {
                    target: DeliveryTarget::Mailbox(mb.id),
                    flags: Flags::default(),
                })
                .collect(),
            queue: None,
        })
        .await
        .unwrap();
    r.delivered.iter().map(|d| d.2).collect()
}

#[tokio::test]
async fn list_patterns_of_60000_wildcards() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    let stars = "*".repeat(60_000);
    let r = c.cmd(&format!("a LIST \"\" {{60000}}\r\n{stars}")).await;
    assert!(
        r.contains("* LIST (\\HasNoChildren) \"/\" INBOX"),
        "{}",
        &r[..r.len().min(300)]
    );
    assert!(r.ends_with("a OK LIST completed\r\n"), "{r}");
    let mixed = "%*".repeat(30_000);
    let r = c.cmd(&format!("b LSUB \"\" {{60000}}\r\n{mixed}")).await;
    assert!(
        r.contains(" INBOX\r\n") && r.ends_with("b OK LSUB completed\r\n"),
        "{r}"
    );
    // Patterns that cannot collapse are refused beyond the limit.
    let alternating = "%a".repeat(30_000);
    let r = c
        .cmd(&format!("c LIST \"\" {{60000}}\r\n{alternating}"))
        .await;
    assert!(r.starts_with("c NO [LIMIT]"), "{r}");
}

/// RFC 5819 LIST-STATUS and RFC 8438 STATUS=SIZE: a STATUS response after each
/// selectable mailbox listed; RFC 5258 §3.1 RECURSIVEMATCH: CHILDINFO for a parent
/// whose subscribed child the pattern does not match.
#[tokio::test]
async fn list_status_size_and_childinfo() {
    let e = env().await;
    deliver(&e, "one").await;
    deliver(&e, "two").await;
    let mut c = Client::logged_in(&e).await;
    let caps = c.cmd("k CAPABILITY").await;
    for cap in [" LIST-EXTENDED", " LIST-STATUS", " STATUS=SIZE"] {
        assert!(caps.contains(cap), "{cap}: {caps}");
    }
    let r = c.cmd("a STATUS INBOX (MESSAGES SIZE)").await;
    let size: u64 = r
        .split("SIZE ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    c.cmd("s EXAMINE INBOX").await;
    let r = c.cmd("f FETCH 1:2 (RFC822.SIZE)").await;
    let sum: u64 = r
        .split("RFC822.SIZE ")
        .skip(1)
        .map(|s| s.split(')').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(size, sum, "{r}");
    c.cmd("u UNSELECT").await;
    c.cmd("b CREATE Lists/Work").await;
    c.cmd("b CREATE Lists/Home").await;
    c.cmd("c SUBSCRIBE Lists/Work").await;
    let r = c
        .cmd("d LIST \"\" (INBOX Lists/%) RETURN (STATUS (MESSAGES UNSEEN SIZE))")
        .await;
    assert!(
        r.contains(&format!(
            "* STATUS INBOX (MESSAGES 2 UNSEEN 2 SIZE {size})\r\n"
        )),
        "{r}"
    );
    assert!(
        r.contains("* STATUS Lists/Home (MESSAGES 0 UNSEEN 0 SIZE 0)\r\n"),
        "{r}"
    );
    let inbox_list = r.find("* LIST (").unwrap();
    assert!(inbox_list < r.find("* STATUS INBOX").unwrap(), "{r}");
    assert!(r.contains("d OK"), "{r}");
    let r = c
        .cmd("e LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN)")
        .await;
    assert!(
        r.contains("* LIST (\\HasChildren) \"/\" Lists (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"),
        "{r}"
    );
    assert!(!r.contains("Lists/Work"), "{r}");
    let r = c.cmd("g LIST (SUBSCRIBED RECURSIVEMATCH) \"\" *").await;
    assert!(!r.contains("CHILDINFO"), "the child itself is listed: {r}");
    let r = c.cmd("h LIST \"\" % RETURN (STATUS (BOGUS))").await;
    assert!(r.starts_with("h BAD"), "{r}");
}

#[tokio::test]
async fn list_extended_special_use_and_subscribed() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("a CREATE Work").await;
    // MailKit's forms once SPECIAL-USE is advertised (RFC 6154 §5.2).
    let r = c.cmd("b LIST (SPECIAL-USE) \"\" \"*\"").await;
    for want in ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"] {
        assert!(r.contains(want), "{want}: {r}");
    }
    assert!(!r.contains(" INBOX\r\n") && !r.contains(" Work\r\n"), "{r}");
    assert!(r.ends_with("b OK LIST completed\r\n"), "{r}");
    let r = c.cmd("c LIST \"\" \"*\" RETURN (SPECIAL-USE)").await;
    assert!(
        r.contains(" INBOX\r\n") && r.contains(" Work\r\n") && r.contains("\\Junk"),
        "{r}"
    );
    // SUBSCRIBED: subscribed names, existing or not.
    c.cmd("d CREATE Gone").await;
    c.cmd("d SUBSCRIBE Gone").await;
    c.cmd("d DELETE Gone").await;
    let r = c
        .cmd("e LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN)")
        .await;
    assert!(
        r.contains("* LIST (\\NonExistent \\Subscribed) \"/\" Gone"),
        "{r}"
    );
    assert!(r.contains("\\Subscribed) \"/\" INBOX"), "{r}");
    assert!(!r.contains(" Work\r\n"), "{r}");
    let r = c.cmd("f LIST \"\" (INBOX Work) RETURN (SUBSCRIBED)").await;
    assert!(
        r.contains("* LIST (\\HasNoChildren \\Subscribed) \"/\" INBOX"),
        "{r}"
    );
    assert!(r.contains("* LIST (\\HasNoChildren) \"/\" Work"), "{r}");
    let r = c.cmd("g LIST (BOGUS) \"\" *").await;
    assert!(r.starts_with("g BAD"), "{r}");
    let mut anon = Client::new(&e, true);
    let r = anon.cmd("h LIST (SPECIAL-USE) \"\" *").await;
    assert!(r.starts_with("h BAD"), "{r}");
}

#[tokio::test]
async fn subscriptions_outlive_mailboxes_and_lsub_shows_superiors() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("a CREATE Lists/rust").await;
    let r = c.cmd("b SUBSCRIBE Lists/rust").await;
    assert!(r.starts_with("b OK"), "{r}");
    // RFC 3501 §6.3.9: "%" reports the unsubscribed superior as \Noselect.
    let r = c.cmd("c LSUB \"\" %").await;
    assert!(r.contains("* LSUB (\\Noselect) \"/\" Lists\r\n"), "{r}");
    assert!(!r.contains("Lists/rust"), "{r}");
    let r = c.cmd("c LSUB \"\" *").await;
    assert!(
        r.contains(" Lists/rust\r\n") && !r.contains(" Lists\r\n"),
        "{r}"
    );
    // DELETE does not unsubscribe (RFC 3501 §6.3.4); the stale name can be removed.
    let r = c.cmd("d DELETE Lists/rust").await;
    assert!(r.starts_with("d OK"), "{r}");
    let r = c.cmd("e LSUB \"\" Lists/*").await;
    assert!(r.contains("* LSUB (\\Noselect) \"/\" Lists/rust"), "{r}");
    let r = c.cmd("f UNSUBSCRIBE Lists/rust").await;
    assert!(r.starts_with("f OK"), "{r}");
    let r = c.cmd("f UNSUBSCRIBE Lists/rust").await;
    assert!(r.starts_with("f NO"), "{r}");
    let r = c.cmd("g SUBSCRIBE Nowhere").await;
    assert!(r.starts_with("g NO [NONEXISTENT]"), "{r}");
}

/// RFC 3501 §6.3.3/§6.3.9 and imaptest's `subscribe` script: CREATE does not subscribe
/// (neither the mailbox nor the superiors it creates); LSUB lists subscribed names only,
/// and with "%" an unsubscribed superior of a subscribed name — existing or only
/// implied — is `\Noselect`.
#[tokio::test]
async fn create_does_not_subscribe_and_lsub_marks_superiors_noselect() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    for m in [
        "box/",
        "box/test",
        "box/test2/",
        "box/test3/",
        "box/test2/test",
        "box/test3/test3",
    ] {
        let r = c.cmd(&format!("a CREATE {m}")).await;
        assert!(r.starts_with("a OK"), "{m}: {r}");
    }
    let r = c.cmd("b LSUB \"\" box*").await;
    assert!(!r.contains("* LSUB"), "nothing is subscribed yet: {r}");
    for m in ["box/test", "box/test2/test", "box/test3/test3"] {
        let r = c.cmd(&format!("c SUBSCRIBE {m}")).await;
        assert!(r.starts_with("c OK"), "{m}: {r}");
    }
    let r = c.cmd("d LSUB \"\" box/%").await;
    assert!(
        r.contains("* LSUB (\\HasNoChildren) \"/\" box/test\r\n"),
        "{r}"
    );
    assert!(r.contains("* LSUB (\\Noselect) \"/\" box/test2\r\n"), "{r}");
    assert!(r.contains("* LSUB (\\Noselect) \"/\" box/test3\r\n"), "{r}");
    assert!(
        !r.contains("box/test2/test") && !r.contains("box/test3/test3"),
        "{r}"
    );
    c.cmd("e UNSUBSCRIBE box/test3/test3").await;
    let r = c.cmd("f LSUB \"\" box/%").await;
    assert!(!r.contains("box/test3"), "unsubscribed, only created: {r}");
    assert!(r.contains(" box/test2\r\n"), "{r}");
    // LIST still shows every mailbox.
    let r = c.cmd("g LIST \"\" box/%").await;
    assert!(
        r.contains(" box/test3\r\n") && r.contains(" box/test\r\n"),
        "{r}"
    );
}

/// A well-formed command whose mailbox name is not valid modified UTF-7 gets NO
/// (RFC 3501 §7.1.2: BAD is for commands that cannot be parsed); imaptest `atoms`.
#[tokio::test]
async fn invalid_modified_utf7_names_get_no() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    for q in [
        "CREATE &Jjo",
        "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",
        "STATUS &- (MESSAGES)",
        "DELETE a&b",
    ] {
        let r = c.cmd(&format!("t {q}")).await;
        assert!(r.starts_with("t NO"), "{q}: {r}");
    }
    let r = c
        .cmd("u LIST \"\" \"!#$&'+,-.0123456789:;<=>?@^_`|[}%*\"")
        .await;
    assert!(r.ends_with("u OK LIST completed\r\n"), "{r}");
}

#[tokio::test]
async fn rename_creates_superiors() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("a CREATE Old").await;
    let r = c.cmd("b RENAME Old Year/2026/Old").await;
    assert!(r.starts_with("b OK"), "{r}");
    for name in ["Year", "Year/2026"] {
        let r = c.cmd(&format!("c SELECT {name}")).await;
        assert!(r.contains("c OK [READ-WRITE]"), "{name}: {r}");
    }
    deliver(&e, "moved").await;
    let r = c.cmd("d RENAME INBOX Archive2/Inbox").await;
    assert!(r.starts_with("d OK"), "{r}");
    let r = c.cmd("e STATUS Archive2/Inbox (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 1)"), "{r}");
    let r = c.cmd("e STATUS Archive2 (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 0)"), "{r}");
}

/// COPY and MOVE of more messages than any batch are one transaction: the target
/// changes once, never half.
#[tokio::test]
async fn copy_and_move_are_all_or_nothing() {
    let e = env().await;
    let n = 10_050;
    ingest_raw(&e, "INBOX", b"Subject: many\r\n\r\nx\r\n".to_vec(), n).await;
    let mut c = Client::logged_in(&e).await;
    let r = c.cmd("s SELECT INBOX").await;
    assert!(r.contains(&format!("* {n} EXISTS")), "{r}");
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let trash = e.store.mailbox(acc.id, "Trash").await.unwrap().unwrap().id;
    let archive = e
        .store
        .mailbox(acc.id, "Archive")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut events = e.store.subscribe();
    let r = c.cmd("a COPY 1:* Archive").await;
    assert!(
        r.contains("a OK [COPYUID "),
        "{}",
        &r[r.len().saturating_sub(200)..]
    );
    let r = c.cmd("b MOVE 1:* Trash").await;
    assert!(
        r.ends_with("b OK MOVE completed\r\n"),
        "{}",
        &r[r.len().saturating_sub(200)..]
    );
    let mut changes = std::collections::HashMap::new();
    while let Ok(ev) = events.try_recv() {
        if let bulwark_store::StoreEvent::Mailbox { mailbox_id, .. } = ev {
            *changes.entry(mailbox_id).or_insert(0) += 1;
        }
    }
    assert_eq!(changes.get(&archive), Some(&1), "{changes:?}");
    assert_eq!(changes.get(&trash), Some(&1), "{changes:?}");
    let r = c.cmd("c STATUS Trash (MESSAGES)").await;
    assert!(r.contains(&format!("(MESSAGES {n})")), "{r}");
}

#[tokio::test]
async fn a_session_whose_mailbox_is_deleted_gets_bye() {
    let e = env().await;
    let mut a = Client::logged_in(&e).await;
    let mut b = Client::logged_in(&e).await;
    a.cmd("c CREATE Work").await;
    a.cmd("s SELECT Work").await;
    b.cmd("d DELETE Work").await;
    let (r, next) = a.cmd_next("n NOOP").await;
    assert!(r.starts_with("* BYE [CLOSED]"), "{r}");
    assert_eq!(next, Next::Close);
    // The same in IDLE.
    let mut a = Client::logged_in(&e).await;
    a.cmd("c CREATE Work").await;
    a.cmd("s SELECT Work").await;
    a.cmd_next("i IDLE").await;
    b.cmd("d DELETE Work").await;
    tokio::time::timeout(Duration::from_secs(10), a.s.wait_change())
        .await
        .expect("woken by the deletion");
    a.s.idle_updates(&mut a.out).await.unwrap();
    assert!(a.out.take_string().starts_with("* BYE [CLOSED]"));
    assert!(a.s.is_closing());
}

#[tokio::test]
async fn close_expunges_silently() {
    let e = env().await;
    for i in 0..3 {
        deliver(&e, &format!("m{i}")).await;
    }
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    c.cmd("a STORE 1:2 +FLAGS.SILENT (\\Deleted)").await;
    let r = c.cmd("b CLOSE").await;
    // RFC 9051 §6.4.1: no EXPUNGE responses, and the messages are gone.
    assert_eq!(r, "b OK CLOSE completed\r\n");
    let r = c.cmd("c STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 1)"), "{r}");
    // EXAMINE + CLOSE expunges nothing.
    c.cmd("d EXAMINE INBOX").await;
    c.cmd("e STORE 1 +FLAGS (\\Deleted)").await;
    c.cmd("f CLOSE").await;
    let r = c.cmd("g STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 1)"), "{r}");
}

#[tokio::test]
async fn append_stores_crlf_and_refuses_deep_mime() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    let r = c
        .cmd("a APPEND INBOX {25+}\r\nSubject: lf\n\nline1\nline2\n")
        .await;
    assert!(r.starts_with("a OK [APPENDUID"), "{r}");
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("b FETCH 1 (RFC822.SIZE BODY.PEEK[])").await;
    assert!(
        r.contains("RFC822.SIZE 29 BODY[] {29}\r\nSubject: lf\r\n\r\nline1\r\nline2\r\n)"),
        "{r}"
    );
    let deep = mime_tests::nested_multipart(150);
    let r = c
        .raw_next(
            &[
                format!("d APPEND INBOX {{{}+}}\r\n", deep.len()).as_bytes(),
                &deep,
                b"\r\n",
            ]
            .concat(),
        )
        .await
        .0;
    assert!(r.starts_with("d NO [LIMIT]"), "{r}");
    let r = c.cmd("e STATUS INBOX (MESSAGES)").await;
    assert!(r.contains("(MESSAGES 1)"), "nothing stored: {r}");
}

/// Messages stored before the depth check existed (or by another path) are served
/// without parsing them: every FETCH item and SEARCH answer, the process survives.
#[tokio::test]
async fn deep_messages_in_the_store_are_served() {
    let e = env().await;
    ingest_raw(&e, "INBOX", mime_tests::nested_multipart(20_000), 1).await;
    ingest_raw(&e, "INBOX", mime_tests::nested_messages(40_000), 1).await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c
        .cmd("a FETCH 1:2 (UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[] BODY.PEEK[]<0.10> BODY.PEEK[HEADER] BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[1.1.HEADER])")
        .await;
    assert!(
        r.ends_with("a OK FETCH completed\r\n"),
        "{}",
        &r[r.len().saturating_sub(300)..]
    );
    // The envelope from the header section alone.
    assert_eq!(
        r.matches("ENVELOPE (NIL \"deep\" ((NIL NIL \"a\" \"example.test\"))")
            .count(),
        2,
        "{}",
        &r[..r.len().min(600)]
    );
    // Both top-level headers are cut from the octets, not parsed.
    assert_eq!(
        r.matches("BODY[HEADER.FIELDS (SUBJECT)] {17}\r\nSubject: deep\r\n\r\n")
            .count(),
        2
    );
    assert!(r.contains("BODY[HEADER.FIELDS.NOT (SUBJECT)] {70}\r\nFrom: a@example.test\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"));
    let r = c
        .cmd("b FETCH 1:2 (RFC822 RFC822.HEADER RFC822.TEXT)")
        .await;
    assert!(r.ends_with("b OK FETCH completed\r\n"));
    for q in [
        "SEARCH TEXT \"hello deep world\"",
        "SEARCH BODY hello",
        "SEARCH SUBJECT deep",
        "SEARCH FROM a@example.test",
    ] {
        let r = c.cmd(&format!("c {q}")).await;
        assert!(r.starts_with("* SEARCH 1 2\r\n"), "{q}: {r}");
    }
}

#[tokio::test]
async fn overlong_credentials_are_refused_before_hashing() {
    let e = env().await;
    let mut c = Client::new(&e, true);
    let long = "x".repeat(1025);
    let r = c.cmd(&format!("a LOGIN {USER} {{1025}}\r\n{long}")).await;
    assert!(r.starts_with("a BAD"), "{r}");
    let ok = "x".repeat(1024);
    let r = c.cmd(&format!("b LOGIN {USER} {{1024}}\r\n{ok}")).await;
    assert!(r.starts_with("b NO [AUTHENTICATIONFAILED]"), "{r}");
}

/// Text keys read bodies in batches (`Store::read_blobs`); answers stay exact across
/// batch boundaries, metadata keys decide first (three-valued), and hits ascend.
#[tokio::test]
async fn search_text_across_body_batches() {
    let e = env().await;
    let n = 2 * u32::try_from(super::search::BATCH_MESSAGES).expect("small") + 7;
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let inbox = e.store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
    for i in 1..=n {
        let word = if i % 100 == 0 { "needle" } else { "hay" };
        e.store
            .ingest(Ingest {
                data: format!("Subject: m{i}\r\n\r\nsome {word} here\r\n").into_bytes(),
                internal_date: 1_772_000_000,
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(inbox.id),
                    flags: Flags::default(),
                }],
                queue: None,
            })
            .await
            .unwrap();
    }
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a SEARCH TEXT NEEDLE").await;
    assert_eq!(
        r,
        "* SEARCH 100 200 300 400 500\r\na OK SEARCH completed\r\n"
    );
    c.cmd("b STORE 1,200 +FLAGS.SILENT (\\Flagged)").await;
    // OR: message 1 is decided by its flag, the others by their text.
    let r = c.cmd("c SEARCH OR FLAGGED BODY needle").await;
    assert_eq!(
        r,
        "* SEARCH 1 100 200 300 400 500\r\nc OK SEARCH completed\r\n"
    );
    // AND: only flagged messages need their bodies.
    let r = c.cmd("d SEARCH FLAGGED BODY needle").await;
    assert!(r.starts_with("* SEARCH 200\r\n"), "{r}");
    let r = c.cmd("e SEARCH NOT BODY hay").await;
    assert!(r.starts_with("* SEARCH 100 200 300 400 500\r\n"), "{r}");
    let r = c.cmd("f SEARCH NOT UNFLAGGED NOT SUBJECT m1").await;
    assert!(r.starts_with("* SEARCH 200\r\n"), "{r}");
    let r = c.cmd(&format!("g UID SEARCH SUBJECT m{n}")).await;
    assert!(r.starts_with(&format!("* SEARCH {n}\r\n")), "{r}");
    // Expunged messages are left out, the rest keep their sequence numbers.
    c.cmd("h STORE 100 +FLAGS.SILENT (\\Deleted)").await;
    c.cmd("h EXPUNGE").await;
    let r = c.cmd("i SEARCH BODY needle").await;
    assert!(r.starts_with("* SEARCH 199 299 399 499\r\n"), "{r}");
}

/// SEARCH TEXT over many 4 KB messages (one in 100 matches): the hits are checked
/// against one `read_blob` and a full decode per message (the former way), and both
/// times are printed. Full size (10,000 messages):
/// `BULWARK_FIGURES=full cargo test --release -p bulwark-imap search_text_over -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_text_over_many_messages() {
    let e = env().await;
    let n = figure_count(1_000, 10_000);
    let filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(70);
    seed_inbox(&e, n, move |i| {
        let word = if i % 100 == 0 { "zanzibarquux" } else { "plain" };
        format!(
            "From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: message {i}\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{filler}\r\n{word}\r\n"
        )
        .into_bytes()
    })
    .await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let want = n.div_ceil(100) as usize;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let r = c.cmd("a SEARCH TEXT zanzibarquux").await;
        let hits = r.lines().next().unwrap_or("").split(' ').count() - 2;
        eprintln!("SEARCH TEXT: {hits} hits in {:?}", t.elapsed());
        assert_eq!(hits, want, "{r}");
    }
    let acc = e.store.account(USER).await.unwrap().unwrap();
    let mb = e.store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
    let metas = e.store.list_messages(mb.id).await.unwrap();
    let t = std::time::Instant::now();
    let mut hits = 0;
    for m in &metas {
        let raw = e.store.read_blob(m.blob_id).await.unwrap();
        let d = crate::mime::search_doc(&raw, true);
        hits += usize::from(d.body.contains("zanzibarquux"));
    }
    eprintln!(
        "one read_blob + full decode per message: {hits} hits in {:?}",
        t.elapsed()
    );
    assert_eq!(hits, want);
}

fn flat_parts(parts: usize) -> Vec<u8> {
    let mut m =
        b"From: a@example.test\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            .to_vec();
    for _ in 0..parts {
        m.extend_from_slice(b"--B\r\n\r\nx\r\n");
    }
    m.extend_from_slice(b"--B--\r\n");
    m
}

#[tokio::test]
async fn append_refuses_more_parts_than_smtp_takes() {
    let e = env().await;
    let mut c = Client::logged_in(&e).await;
    c.s.cfg.max_mime_parts = 10;
    for (tag, parts, ok) in [("a", 10, false), ("b", 9, true)] {
        let m = flat_parts(parts);
        let r = c
            .raw_next(
                &[
                    format!("{tag} APPEND INBOX {{{}+}}\r\n", m.len()).as_bytes(),
                    &m,
                    b"\r\n",
                ]
                .concat(),
            )
            .await
            .0;
        if ok {
            assert!(r.starts_with(&format!("{tag} OK [APPENDUID")), "{r}");
        } else {
            assert_eq!(
                r,
                format!("{tag} NO [LIMIT] Message refused: more than 10 MIME parts; nothing was stored\r\n")
            );
        }
    }
    let r = c.cmd("e STATUS INBOX (MESSAGES)").await;
    assert!(
        r.contains("(MESSAGES 1)"),
        "only the one within the limit: {r}"
    );
}

/// A message stored with more parts than any configuration allows (before the limit
/// existed) gets a one-part BODYSTRUCTURE of bounded size, and its real envelope.
#[tokio::test]
async fn a_stored_message_with_too_many_parts_has_a_bounded_structure() {
    let e = env().await;
    let many = flat_parts(bulwark_mime::MAX_PARTS_CEILING + 10);
    let body_len = many.len() - bulwark_mime::header::header_end(&many);
    ingest_raw(&e, "INBOX", many, 1).await;
    ingest_raw(&e, "INBOX", flat_parts(3), 1).await;
    let mut c = Client::logged_in(&e).await;
    c.cmd("s SELECT INBOX").await;
    let r = c.cmd("a FETCH 1 (ENVELOPE BODYSTRUCTURE BODY)").await;
    assert!(r.ends_with("a OK FETCH completed\r\n"), "{r}");
    assert!(r.len() < 1000, "bounded: {} octets", r.len());
    assert!(
        r.contains("ENVELOPE (NIL \"many\" ((NIL NIL \"a\" \"example.test\"))"),
        "{r}"
    );
    assert!(
        r.contains(&format!("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {body_len} ")),
        "{r}"
    );
    // Within the limits, the structure is described part by part.
    let r = c.cmd("b FETCH 2 BODYSTRUCTURE").await;
    assert_eq!(r.matches("(\"TEXT\" \"PLAIN\"").count(), 3, "{r}");
    assert!(r.contains("\"MIXED\""), "{r}");
}
