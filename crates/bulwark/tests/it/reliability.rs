//! The reliability suite (issue 9): the real server under sustained load, under
//! SIGKILL during mixed load, and under thousands of malformed sessions. Bounded in
//! count and time so it fits in CI on 2 cores.
//!
//! - **Soak**: 20 SMTP clients and 10 IMAP clients (Python smtplib/imaplib) for
//!   `BULWARK_SOAK_SECS` (60) seconds; every 250 and every APPEND OK is then found
//!   exactly once, over IMAP and in the store, and no client saw an error reply.
//! - **Crash**: three SIGKILLs during mixed load (SMTP inbound on 25, submission on
//!   587 with STARTTLS + AUTH, IMAP APPEND and flag changes, POP3 reads); after each
//!   restart every acknowledged message is present exactly once, SQLite's integrity
//!   check passes, and SMTP, IMAP and POP3 answer a normal session.
//! - **Malformed input**: 1,000 seeded random/mutated sessions per protocol (SMTP 25
//!   and 587, IMAP 143, POP3 110; plus TLS garbage and garbage inside TLS on 465, 993,
//!   995) from raw sockets, many at once; the same process keeps running, logs no
//!   panic, and serves normal sessions afterwards. The seed is printed;
//!   `BULWARK_MALFORMED_SEED` replays a run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_net::fuzzing::{mutate, session_bytes, Rng};
use bulwark_store::{SqliteStore, Store};

use crate::support::*;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";
const CAROL: &str = "carol@example.test";

/// Alice, Bob and Carol; timeouts short enough that abandoned sessions end quickly;
/// the limits high enough that only deliberate misbehaviour meets them.
fn setup() -> (DataDir, Server) {
    let d = DataDir::init();
    for u in [ALICE, BOB, CAROL] {
        d.add_user(u);
    }
    d.edit_config(|c| {
        for l in [
            "smtp",
            "submission",
            "submissions",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
        ] {
            c["listeners"][l]["max_connections_per_ip"] = toml_edit::value(1000);
        }
        c["auth"]["failure_delay_ms"] = toml_edit::value(1);
        c["auth"]["max_delay_ms"] = toml_edit::value(5);
        c["auth"]["block_ip_after_failures"] = toml_edit::value(1_000_000);
        c["auth"]["block_account_after_failures"] = toml_edit::value(1_000_000);
        c["smtp"]["command_timeout_secs"] = toml_edit::value(5);
        c["smtp"]["tarpit_delay_ms"] = toml_edit::value(1);
        c["imap"]["login_timeout_secs"] = toml_edit::value(5);
        c["pop3"]["timeout_secs"] = toml_edit::value(5);
    });
    let s = Server::start(&d);
    (d, s)
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Message-ID of a stored message.
fn message_id(m: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(m);
    let header = text.split("\r\n\r\n").next().unwrap_or("");
    header.split("\r\n").find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.eq_ignore_ascii_case("Message-ID") {
            return None;
        }
        Some(value.trim().trim_matches(['<', '>']).to_string())
    })
}

/// Every message in INBOX and Archive of each user, read from the store (a second
/// reader beside the running server; SQLite WAL allows it).
fn stored_messages(dir: &std::path::Path) -> Vec<((String, String), Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.join("store")).expect("store opens");
        let mut out = Vec::new();
        for user in [ALICE, BOB, CAROL] {
            let acc = store.account(user).await.unwrap().expect("account");
            for mb in ["INBOX", "Archive"] {
                let mailbox = store.mailbox(acc.id, mb).await.unwrap().expect("mailbox");
                for m in store.list_messages(mailbox.id).await.unwrap() {
                    let body = store.read_blob(m.blob_id).await.unwrap();
                    out.push(((user.to_string(), mb.to_string()), body));
                }
            }
        }
        store.close();
        out
    })
}

/// (user, mailbox) → Message-IDs of every message there, from the store.
fn stored_ids(dir: &std::path::Path) -> HashMap<(String, String), Vec<String>> {
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (k, m) in stored_messages(dir) {
        out.entry(k)
            .or_default()
            .push(message_id(&m).unwrap_or_default());
    }
    out
}

/// Every acknowledged (user, mailbox, id) is stored exactly once where it was sent,
/// and no Message-ID is stored twice anywhere.
fn assert_exactly_once(
    stored: &HashMap<(String, String), Vec<String>>,
    acked: &[(String, String, String)],
) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for ids in stored.values() {
        for id in ids.iter().filter(|i| !i.is_empty()) {
            *count.entry(id.as_str()).or_default() += 1;
        }
    }
    let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "stored more than once: {dups:?}");
    for (user, mb, id) in acked {
        let n = stored
            .get(&(user.clone(), mb.clone()))
            .map_or(0, |ids| ids.iter().filter(|i| *i == id).count());
        assert_eq!(
            n, 1,
            "{id} acknowledged for {user}/{mb} but stored {n} times"
        );
    }
}

/// Connection parameters and helpers shared by the Python clients.
const PY_PRELUDE: &str = r#"
import imaplib, os, poplib, random, smtplib, ssl, sys, threading, time
host, cafile = sys.argv[1], sys.argv[2]
args = dict(a.split("=", 1) for a in sys.argv[3:])
P = {k: int(v) for k, v in args.items() if k in ("smtp", "submission", "imap", "imaps", "pop3s")}
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # 127.0.0.1; the chain is still verified
PASSWORD = "correct horse battery"
lock = threading.Lock()
def out(*a):
    with lock:
        print(*a, flush=True)
def msg(frm, to, mid, n):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: load %d\r\nMessage-ID: <%s>\r\n\r\nmessage %d\r\n..with a leading dot\r\n" % (frm, to, n, mid, n)).encode()
"#;

/// The load: SMTP inbound (port 25, half with STARTTLS), submission (587, STARTTLS +
/// AUTH PLAIN), IMAP (APPEND to Archive, SELECT, SEARCH, FETCH, STORE flags; half on
/// 993, half STARTTLS on 143), POP3 over TLS (STAT, LIST, RETR, QUIT without DELE).
/// Prints "ACK user mailbox id" for each 250 / APPEND OK, "ERROR kind detail" for
/// every failure; a worker stops at its first error (the server may be dead).
const PY_LOAD: &str = r#"
tag, secs = args["tag"], float(args["secs"])
end = time.time() + secs
RCPTS = ["alice@example.test", "bob@example.test", "carol@example.test"]
def smtp_worker(t):
    n = 0
    try:
        while time.time() < end:
            s = smtplib.SMTP(host, P["smtp"], timeout=60)
            s.ehlo("load%d.client.test" % t)
            if t % 2:
                s.starttls(context=ctx); s.ehlo("load%d.client.test" % t)
            for _ in range(25):
                if time.time() >= end: break
                to = RCPTS[n % 3]
                mid = "%s-smtp-%d-%d@client.test" % (tag, t, n)
                s.sendmail("sender%d@remote.test" % t, [to], msg("sender@remote.test", to, mid, n))
                out("ACK", to, "INBOX", mid)
                n += 1
            s.quit()
    except Exception as e:
        out("ERROR smtp", t, type(e).__name__, str(e)[:200])
def submission_worker(t):
    n = 0
    try:
        while time.time() < end:
            s = smtplib.SMTP(host, P["submission"], timeout=60)
            s.starttls(context=ctx)
            s.login("alice@example.test", PASSWORD)
            for _ in range(25):
                if time.time() >= end: break
                mid = "%s-sub-%d-%d@example.test" % (tag, t, n)
                s.sendmail("alice@example.test", ["bob@example.test"], msg("alice@example.test", "bob@example.test", mid, n))
                out("ACK bob@example.test INBOX", mid)
                n += 1
            s.quit()
    except Exception as e:
        out("ERROR submission", t, type(e).__name__, str(e)[:200])
def ok(r, what):
    if r[0] != "OK":
        raise Exception("%s: %r" % (what, r))
    return r[1]
def imap_worker(t):
    user = ["alice@example.test", "bob@example.test"][t % 2]
    n = 0
    try:
        while time.time() < end:
            if t % 2:
                M = imaplib.IMAP4_SSL(host, P["imaps"], ssl_context=ctx, timeout=60)
            else:
                M = imaplib.IMAP4(host, P["imap"], timeout=60)
                M.starttls(ssl_context=ctx)
            M.login(user, PASSWORD)
            for _ in range(10):
                if time.time() >= end: break
                mid = "%s-append-%d-%d@client.test" % (tag, t, n)
                ok(M.append("Archive", None, None, msg(user, user, mid, n)), "APPEND")
                out("ACK", user, "Archive", mid)
                n += 1
                ok(M.select("INBOX"), "SELECT")
                ids = ok(M.search(None, "ALL"), "SEARCH")[0].split()
                if ids:
                    pick = random.choice(ids)
                    ok(M.fetch(pick, "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"), "FETCH")
                    ok(M.store(pick, random.choice(["+FLAGS", "-FLAGS"]), random.choice(["(\\Seen)", "(\\Flagged $Soak)"])), "STORE")
                ok(M.noop(), "NOOP")
                ok(M.close(), "CLOSE")
            M.logout()
    except Exception as e:
        out("ERROR imap", t, type(e).__name__, str(e)[:200])
def pop3_worker(t):
    try:
        while time.time() < end:
            p = poplib.POP3_SSL(host, P["pop3s"], context=ctx, timeout=60)
            p.user("carol@example.test"); p.pass_(PASSWORD)
            count, _ = p.stat()
            p.list()
            if count:
                p.retr(random.randint(1, count))
            p.quit()
            out("READ pop3", t)
            time.sleep(0.05)
    except Exception as e:
        msg_ = str(e)
        out("ERROR pop3", t, type(e).__name__, msg_[:200])
kinds = [("smtp", smtp_worker), ("submission", submission_worker), ("imap", imap_worker), ("pop3", pop3_worker)]
ts = []
for name, fn in kinds:
    for t in range(int(args.get("n_" + name, "0"))):
        ts.append(threading.Thread(target=fn, args=(t,)))
for t in ts: t.start()
for t in ts: t.join()
out("DONE")
"#;

fn spawn_load(
    d: &DataDir,
    s: &Server,
    tag: &str,
    secs: u64,
    counts: [u32; 4],
) -> std::process::Child {
    require_tool("python3");
    Command::new("python3")
        .arg("-u")
        .arg("-c")
        .arg(format!("{PY_PRELUDE}\n{PY_LOAD}"))
        .arg("127.0.0.1")
        .arg(d.cert_path())
        .arg(format!("smtp={}", s.port("smtp")))
        .arg(format!("submission={}", s.port("submission")))
        .arg(format!("imap={}", s.port("imap")))
        .arg(format!("imaps={}", s.port("imaps")))
        .arg(format!("pop3s={}", s.port("pop3s")))
        .arg(format!("tag={tag}"))
        .arg(format!("secs={secs}"))
        .arg(format!("n_smtp={}", counts[0]))
        .arg(format!("n_submission={}", counts[1]))
        .arg(format!("n_imap={}", counts[2]))
        .arg(format!("n_pop3={}", counts[3]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Collects the loader's output lines as they come.
fn collect(
    child: &mut std::process::Child,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let l = lines.clone();
    let h = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => l.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    (lines, h)
}

fn acks(lines: &[String]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let mut w = l.split(' ');
            (w.next() == Some("ACK")).then(|| {
                let user = w.next().unwrap_or_default().to_string();
                let mb = w.next().unwrap_or_default().to_string();
                let id = w.next().unwrap_or_default().to_string();
                (user, mb, id)
            })
        })
        .collect()
}

/// Reads every Message-ID of INBOX and Archive of alice and bob over IMAP.
const PY_IMAP_IDS: &str = r#"
for user in ["alice@example.test", "bob@example.test", "carol@example.test"]:
    M = imaplib.IMAP4_SSL(host, P["imaps"], ssl_context=ctx, timeout=120)
    M.login(user, PASSWORD)
    for mb in ["INBOX", "Archive"]:
        typ, _ = M.select(mb, readonly=True)
        assert typ == "OK"
        typ, data = M.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ != "OK":
            continue
        for item in data:
            if isinstance(item, tuple):
                h = item[1].decode("utf-8", "replace").strip()
                mid = h.split(":", 1)[1].strip().strip("<>") if ":" in h else ""
                print("ID", user, mb, mid)
    M.logout()
"#;

fn imap_ids(d: &DataDir, s: &Server) -> HashMap<(String, String), Vec<String>> {
    let out = python_ok(
        &format!("{PY_PRELUDE}\n{PY_IMAP_IDS}"),
        &[
            "127.0.0.1",
            d.cert_path().to_str().unwrap(),
            &format!("imaps={}", s.port("imaps")),
        ],
    );
    let mut map: HashMap<(String, String), Vec<String>> = HashMap::new();
    for l in out.lines() {
        let mut w = l.splitn(4, ' ');
        if w.next() != Some("ID") {
            continue;
        }
        let user = w.next().unwrap_or_default().to_string();
        let mb = w.next().unwrap_or_default().to_string();
        let id = w.next().unwrap_or_default().to_string();
        map.entry((user, mb)).or_default().push(id);
    }
    map
}

/// A normal session on every protocol: SMTP 25 delivers, IMAP logs in and selects,
/// POP3 logs in and lists.
fn assert_answers_normally(d: &DataDir, s: &Server, tag: &str) {
    let script = format!(
        "{PY_PRELUDE}\n{}",
        r#"
mid = args["tag"] + "-probe@client.test"
s = smtplib.SMTP(host, P["smtp"], timeout=30)
s.ehlo("probe.client.test")
s.starttls(context=ctx); s.ehlo("probe.client.test")
s.sendmail("probe@remote.test", ["bob@example.test"], msg("probe@remote.test", "bob@example.test", mid, 0))
s.quit()
M = imaplib.IMAP4(host, P["imap"], timeout=30)
M.starttls(ssl_context=ctx)
M.login("bob@example.test", PASSWORD)
assert M.select("INBOX")[0] == "OK"
typ, data = M.search(None, 'HEADER Message-ID "%s"' % mid)
assert typ == "OK" and len(data[0].split()) == 1, data
M.logout()
p = poplib.POP3_SSL(host, P["pop3s"], context=ctx, timeout=30)
p.user("carol@example.test"); p.pass_(PASSWORD)
p.stat(); p.quit()
print("normal sessions ok")
"#
    );
    let out = python_ok(
        &script,
        &[
            "127.0.0.1",
            d.cert_path().to_str().unwrap(),
            &format!("smtp={}", s.port("smtp")),
            &format!("imap={}", s.port("imap")),
            &format!("pop3s={}", s.port("pop3s")),
            &format!("tag={tag}"),
        ],
    );
    assert!(out.contains("normal sessions ok"), "{out}");
}

fn assert_no_panic(s: &Server) {
    let log = s.log();
    assert!(
        !log.contains("panicked") && !log.contains("RUST_BACKTRACE"),
        "the server panicked:\n{log}"
    );
}

// ---------------------------------------------------------------------------------
// Soak
// ---------------------------------------------------------------------------------

#[test]
fn soak_20_smtp_and_10_imap_clients_lose_and_duplicate_nothing() {
    let (d, s) = setup();
    let secs = env_secs("BULWARK_SOAK_SECS", 60);
    let started = Instant::now();
    let mut child = spawn_load(&d, &s, "soak", secs, [20, 0, 10, 0]);
    let (lines, reader) = collect(&mut child);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(status.success(), "loader failed: {err}");
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("ERROR")).collect();
    assert!(errors.is_empty(), "clients saw errors: {errors:?}");
    assert_eq!(lines.last().map(String::as_str), Some("DONE"));
    let acked = acks(&lines);
    let smtp = acked.iter().filter(|a| a.1 == "INBOX").count();
    let appended = acked.len() - smtp;
    eprintln!(
        "soak: {smtp} messages over SMTP and {appended} APPENDs in {:.0?}",
        started.elapsed()
    );
    assert!(smtp >= 100 && appended >= 20, "the load hardly ran");

    // Every acknowledged message exactly once, seen over IMAP and in the store.
    let over_imap = imap_ids(&d, &s);
    assert_exactly_once(&over_imap, &acked);
    assert_exactly_once(&stored_ids(d.path()), &acked);
    let total: usize = over_imap.values().map(Vec::len).sum();
    assert_eq!(
        total,
        acked.len(),
        "messages nobody acknowledged were stored"
    );
    assert_no_panic(&s);
}

// ---------------------------------------------------------------------------------
// Crash
// ---------------------------------------------------------------------------------

/// SQLite's own check of the store file, by Python's sqlite3 (an independent reader).
fn assert_store_intact(d: &DataDir) {
    let db = d.path().join("store").join("bulwark.db");
    let out = python_ok(
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("PRAGMA integrity_check").fetchone()[0])
"#,
        &[db.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok", "integrity_check: {out}");
}

#[test]
fn three_sigkills_during_mixed_load_lose_nothing_acknowledged() {
    let (d, mut s) = setup();
    let mut acked: Vec<(String, String, String)> = Vec::new();
    for round in 0..3 {
        let tag = format!("crash{round}");
        let mut child = spawn_load(&d, &s, &tag, 120, [6, 3, 4, 1]);
        let (lines, reader) = collect(&mut child);
        // Kill once every kind of client has had acknowledgements, mid-stream.
        let deadline = Instant::now() + Duration::from_secs(90);
        let target = 600 + 200 * round;
        loop {
            let (a, reads) = {
                let l = lines.lock().unwrap();
                (acks(&l), l.iter().filter(|x| x.starts_with("READ")).count())
            };
            let sub = a.iter().filter(|x| x.2.contains("-sub-")).count();
            let app = a.iter().filter(|x| x.1 == "Archive").count();
            if a.len() >= target && sub >= 20 && app >= 20 && reads >= 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: load did not get going: {:?}",
                lines
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s.kill9();
        let _ = child.wait();
        reader.join().unwrap();
        let round_acks = acks(&lines.lock().unwrap());
        eprintln!(
            "crash round {round}: {} acknowledged before SIGKILL",
            round_acks.len()
        );
        acked.extend(round_acks);

        // The store opens cleanly (the server starts on it), passes SQLite's
        // integrity check, and holds every acknowledged message exactly once.
        s = Server::start(&d);
        assert_store_intact(&d);
        assert_exactly_once(&stored_ids(d.path()), &acked);
        assert_answers_normally(&d, &s, &format!("{tag}-after"));
        acked.push((
            BOB.into(),
            "INBOX".into(),
            format!("{tag}-after-probe@client.test"),
        ));
        assert_no_panic(&s);
    }
    assert_exactly_once(&imap_ids(&d, &s), &acked);
}

// ---------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------

/// What a malformed session does besides sending its bytes.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Half-close and read the answers to the end.
    Drain,
    /// Close right after sending (often with unread replies: an RST).
    Abrupt,
    /// Close after sending only part of the bytes.
    Midway,
}

/// Reads until the server closes (or the deadline); returns the octets read.
fn read_until_closed(s: &mut impl Read, deadline: Instant) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total
}

/// Extra hostile lines per protocol, beyond the mutated dictionaries.
fn hostile(proto: &str, rng: &mut Rng) -> Vec<u8> {
    let long = vec![b'A'; 70_000 + rng.below(200_000)];
    let pick: Vec<Vec<u8>> = match proto {
        "imap" => vec![
            b"a APPEND INBOX {4294967295}\r\n".to_vec(),
            b"a APPEND INBOX {99999999999+}\r\n".to_vec(),
            b"a LOGIN {1000000}\r\n".to_vec(),
            b"a SEARCH TEXT {1+}\r\nx TEXT {1+}\r\nx TEXT {1+}\r\nx\r\n".to_vec(),
            [
                b"a SEARCH TEXT {1+}\r\nx".as_slice(),
                &b" TEXT {1+}\r\nx".repeat(1100),
                b"\r\n",
            ]
            .concat(),
            b"a LIST \"\" \""
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'*', 20_000))
                .chain(*b"\"\r\n")
                .collect(),
            b"a FETCH 1:4294967295,*:1 (BODY[1.2.3.4.5.6.7.8.9.10])\r\n".to_vec(),
            [b"a NOOP ".as_slice(), &long, b"\r\n"].concat(),
        ],
        "pop3" => vec![
            b"AUTH PLAIN\r\n".to_vec(),
            [b"AUTH PLAIN ".as_slice(), &long, b"\r\n"].concat(),
            b"USER \0root\r\nPASS \0\r\n".to_vec(),
            b"TOP 1 4294967296\r\nRETR 99999999999\r\n".to_vec(),
            [b"USER ".as_slice(), &long].concat(),
        ],
        _ => vec![
            b"BDAT 999999999999999 LAST\r\n".to_vec(),
            b"DATA\r\n".to_vec(),
            b"MAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n".to_vec(),
            b"AUTH PLAIN\r\n".to_vec(),
            [b"EHLO ".as_slice(), &long, b"\r\n"].concat(),
            [b"RCPT TO:<".as_slice(), &long, b">\r\n"].concat(),
            b"\0\0\0\r\n\r\n\n\n".to_vec(),
        ],
    };
    rng.pick(&pick).clone()
}

/// The client octets of one malformed session.
fn malformed_bytes(proto: &str, seed: u64) -> (Vec<u8>, Ending) {
    let mut rng = Rng::new(seed);
    let dict = match proto {
        "imap" => bulwark_imap::fuzzing::DICTIONARY,
        "pop3" => bulwark_pop3::fuzzing::DICTIONARY,
        _ => bulwark_smtp::fuzzing::DICTIONARY,
    };
    let mut data = session_bytes(&mut rng, dict, 30);
    if rng.chance(1, 3) {
        let at = rng.below(data.len() + 1);
        let h = hostile(proto, &mut rng);
        data.splice(at..at, h);
    }
    let ending = match rng.below(5) {
        0 => Ending::Abrupt,
        1 => Ending::Midway,
        _ => Ending::Drain,
    };
    (data, ending)
}

/// One plaintext session: greeting, the bytes, then the ending. Returns whether the
/// server greeted, and how many octets it answered after that (drained sessions).
fn plain_session(addr: SocketAddr, data: &[u8], ending: Ending, cut: usize) -> (bool, usize) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (false, 0);
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    let mut greeting = [0u8; 512];
    let greeted = matches!(s.read(&mut greeting), Ok(n) if n > 0);
    match ending {
        Ending::Abrupt => {
            let _ = s.write_all(data);
            (greeted, 0)
        }
        Ending::Midway => {
            let _ = s.write_all(&data[..cut.min(data.len())]);
            (greeted, 0)
        }
        Ending::Drain => {
            let _ = s.write_all(data);
            let _ = s.shutdown(Shutdown::Write);
            (
                greeted,
                read_until_closed(&mut s, Instant::now() + Duration::from_secs(20)),
            )
        }
    }
}

/// A ClientHello for our host, as a real client would send it.
fn client_hello(d: &DataDir) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        tls_client_config(d),
        rustls_pki_types::ServerName::try_from(HOSTNAME).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// An implicit-TLS session: TLS garbage (random octets or a mutated ClientHello), or
/// a real handshake with protocol garbage inside.
fn tls_session(d: &DataDir, addr: SocketAddr, proto: &str, hello: &[u8], seed: u64) {
    let mut rng = Rng::new(seed);
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    match rng.below(4) {
        0 => {
            let n = rng.below(4096);
            let _ = tcp.write_all(&rng.bytes(n));
        }
        1 | 2 => {
            let _ = tcp.write_all(&mutate(&mut rng, hello));
        }
        _ => {
            let mut conn = rustls::ClientConnection::new(
                tls_client_config(d),
                rustls_pki_types::ServerName::try_from(HOSTNAME).unwrap(),
            )
            .unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    return;
                }
            }
            let (data, _) = malformed_bytes(proto, seed);
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let _ = tls.write_all(&data);
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            read_until_closed(&mut tls, Instant::now() + Duration::from_secs(20));
            return;
        }
    }
    let _ = tcp.shutdown(Shutdown::Write);
    read_until_closed(&mut tcp, Instant::now() + Duration::from_secs(20));
}

#[test]
fn thousands_of_malformed_sessions_leave_the_server_up_and_serving() {
    let (d, s) = setup();
    let pid = s.pid();
    let seed = std::env::var("BULWARK_MALFORMED_SEED")
        .ok()
        .and_then(|v| v.trim().trim_start_matches("0x").parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |t| t.as_secs())
        });
    let per_protocol = env_secs("BULWARK_MALFORMED_SESSIONS", 1000) as usize;
    eprintln!(
        "malformed input: seed {seed} ({per_protocol} sessions per protocol); replay with BULWARK_MALFORMED_SEED={seed}"
    );
    // (listener, dictionary, implicit TLS, sessions)
    let plan: Vec<(&str, &str, bool, usize)> = vec![
        ("smtp", "smtp", false, per_protocol),
        ("submission", "smtp", false, per_protocol),
        ("imap", "imap", false, per_protocol),
        ("pop3", "pop3", false, per_protocol),
        ("submissions", "smtp", true, per_protocol / 5),
        ("imaps", "imap", true, per_protocol / 5),
        ("pop3s", "pop3", true, per_protocol / 5),
    ];
    let mut jobs: Vec<(SocketAddr, &str, bool, u64)> = Vec::new();
    for (i, (listener, proto, tls, n)) in plan.iter().enumerate() {
        for k in 0..*n {
            let job_seed = seed
                .wrapping_mul(0x100_0000)
                .wrapping_add((i as u64) << 20 | k as u64);
            jobs.push((s.addr(listener), proto, *tls, job_seed));
        }
    }
    // Interleave the protocols so every listener is busy at once.
    jobs.sort_by_key(|j| j.3.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let hello = client_hello(&d);
    let next = AtomicUsize::new(0);
    let (greeted, answered, plain) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..24 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(addr, proto, tls, job_seed)) = jobs.get(i) else {
                    return;
                };
                if tls {
                    tls_session(&d, addr, proto, &hello, job_seed);
                } else {
                    let (data, ending) = malformed_bytes(proto, job_seed);
                    let cut = (job_seed as usize) % (data.len() + 1);
                    let (g, n) = plain_session(addr, &data, ending, cut);
                    plain.fetch_add(1, Ordering::Relaxed);
                    greeted.fetch_add(usize::from(g), Ordering::Relaxed);
                    answered.fetch_add(usize::from(n > 0), Ordering::Relaxed);
                }
            });
        }
    });
    let (plain, greeted, answered) = (
        plain.into_inner(),
        greeted.into_inner(),
        answered.into_inner(),
    );
    eprintln!(
        "malformed input: {} sessions in {:.1?}; {plain} plaintext, {greeted} greeted, {answered} answered after the greeting",
        jobs.len(),
        started.elapsed()
    );
    // Every session reached the protocol (nothing refused by a limit), and the
    // drained ones (3 in 5) got answers.
    assert_eq!(greeted, plain, "sessions not greeted");
    assert!(
        answered * 2 >= plain,
        "too few sessions answered: {answered} of {plain}"
    );
    // Logged in, hostile input reaches deeper code: a LIST pattern of 60,000
    // wildcards overflowed the matcher's stack and aborted the whole process.
    let out = python_ok(
        &format!(
            "{PY_PRELUDE}\n{}",
            r#"
M = imaplib.IMAP4_SSL(host, P["imaps"], ssl_context=ctx, timeout=60)
M.login("alice@example.test", PASSWORD)
print(M.list('""', '"' + "*%" * 30000 + '"')[0])
print(M.list('""', '"' + "*" * 60000 + '"')[0])
print(M.noop()[0])
M.logout()
"#
        ),
        &[
            "127.0.0.1",
            d.cert_path().to_str().unwrap(),
            &format!("imaps={}", s.port("imaps")),
        ],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["OK", "OK", "OK"]
    );
    // Same process, no panic, and normal sessions work.
    assert_eq!(s.pid(), pid);
    std::thread::sleep(Duration::from_millis(200));
    let mut s = s;
    assert!(
        s.is_running(),
        "the server exited during malformed input (seed {seed}):\n{}",
        s.log()
    );
    assert_no_panic(&s);
    assert_answers_normally(&d, &s, "malformed");
    assert!(s.is_running());
    // Whatever the sessions managed to deliver obeys the octet rules: CRLF line ends
    // only, no NUL (nothing partial or smuggled).
    for ((user, mb), m) in stored_messages(d.path()) {
        let bad = m.iter().enumerate().any(|(i, &b)| {
            b == 0
                || (b == b'\n' && (i == 0 || m[i - 1] != b'\r'))
                || (b == b'\r' && m.get(i + 1) != Some(&b'\n'))
        });
        assert!(
            !bad,
            "{user}/{mb}: stored message breaks the octet rules: {:?}",
            String::from_utf8_lossy(&m)
        );
    }
}
