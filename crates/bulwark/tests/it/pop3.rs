//! POP3 on 110 (STLS) and 995 (implicit TLS), driven by Python's poplib, curl, and raw
//! sockets (plain and rustls) where a library would hide the behaviour under test.
//! Mail is put into INBOX through the store directly (SQLite in WAL mode allows a
//! second process while the server runs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, MailboxId, SqliteStore, Store};

use crate::support::*;

const ALICE: &str = "alice@example.test";

// ---------------------------------------------------------------------------------
// Helpers

/// The store of a data directory, opened beside the running server.
struct Mail {
    rt: tokio::runtime::Runtime,
    store: SqliteStore,
}

impl Mail {
    fn open(d: &DataDir) -> Mail {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = SqliteStore::open(&d.path().join("store")).unwrap();
        Mail { rt, store }
    }

    fn inbox(&self, user: &str) -> MailboxId {
        self.rt.block_on(async {
            let acc = self.store.account(user).await.unwrap().unwrap();
            self.store
                .mailbox(acc.id, "INBOX")
                .await
                .unwrap()
                .unwrap()
                .id
        })
    }

    /// Delivers to the user's INBOX; returns the UID.
    fn deliver(&self, user: &str, data: &[u8]) -> u32 {
        self.rt.block_on(async {
            let acc = self.store.account(user).await.unwrap().unwrap();
            let r = self
                .store
                .ingest(Ingest {
                    data: data.to_vec(),
                    internal_date: 1_700_000_000,
                    deliveries: vec![Delivery {
                        target: DeliveryTarget::Inbox(acc.id),
                        flags: Flags::default(),
                    }],
                    queue: None,
                })
                .await
                .unwrap();
            r.delivered[0].2
        })
    }

    /// (uid, flags) of every INBOX message.
    fn messages(&self, user: &str) -> Vec<(u32, Flags)> {
        let mb = self.inbox(user);
        self.rt.block_on(async {
            self.store
                .list_messages(mb)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.uid.get(), m.flags))
                .collect()
        })
    }

    fn uids(&self, user: &str) -> Vec<u32> {
        self.messages(user).into_iter().map(|(u, _)| u).collect()
    }
}

impl Drop for Mail {
    fn drop(&mut self) {
        self.store.close();
    }
}

/// Messages that stress the encoding: dot lines, 8-bit octets, no final CRLF, size.
fn msg_dots_8bit() -> Vec<u8> {
    b"From: Bob <bob@remote.test>\r\n\
To: alice@example.test\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
caf\xc3\xa9 \xe2\x82\xac 8-bit body\r\n\
.\r\n\
..\r\n\
.hidden line\r\n\
raw latin-1 \xe9\xff\xfe\r\n\
a line with . inside\r\n\
\r\n\
-- \r\n\
end\r\n"
        .to_vec()
}

fn msg_no_final_crlf() -> Vec<u8> {
    b"From: bob@example.test\r\nSubject: no final newline\r\n\r\nfirst line\r\n.last line starts with a dot"
        .to_vec()
}

fn msg_large() -> Vec<u8> {
    let mut m = b"From: bob@example.test\r\nSubject: large\r\n\r\n".to_vec();
    for i in 0..25_000 {
        if i % 7 == 0 {
            m.extend_from_slice(
                format!(".{i:08} dotted line of a large message ....\r\n").as_bytes(),
            );
        } else {
            m.extend_from_slice(
                format!("{i:08} plain line of a large message \u{e4}\u{f6}\r\n").as_bytes(),
            );
        }
    }
    m
}

fn simple(subject: &str) -> Vec<u8> {
    format!("From: bob@example.test\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
        .into_bytes()
}

/// RFC 1939 §3 encoding, written independently of the server's: each CRLF line with a
/// leading "." gets another, then ".".
fn expected_wire(msg: &[u8]) -> Vec<u8> {
    let body = msg.strip_suffix(b"\r\n").unwrap_or(msg);
    let mut out = Vec::new();
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn plain_b64(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

fn started(d: &DataDir) -> Server {
    let s = Server::start(d);
    // Both listeners must be up: the tests use both.
    let _ = s.addr("pop3");
    let _ = s.addr("pop3s");
    s
}

fn setup() -> (DataDir, Server) {
    let d = DataDir::init();
    d.add_user(ALICE);
    let s = started(&d);
    (d, s)
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// A raw POP3 client: exact bytes in and out.
struct Raw {
    s: Option<Stream>,
    buf: Vec<u8>,
}

impl Raw {
    fn plain(addr: SocketAddr) -> Raw {
        let t = TcpStream::connect(addr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            s: Some(Stream::Plain(t)),
            buf: Vec::new(),
        }
    }

    fn tls(addr: SocketAddr, d: &DataDir) -> Raw {
        let mut r = Raw::plain(addr);
        r.upgrade(d);
        r
    }

    fn upgrade(&mut self, d: &DataDir) {
        assert!(
            self.buf.is_empty(),
            "server sent data before the TLS handshake: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let Some(Stream::Plain(t)) = self.s.take() else {
            panic!("not a plain stream")
        };
        let conn = rustls::ClientConnection::new(
            tls_client_config(d),
            rustls_pki_types::ServerName::try_from(HOSTNAME).unwrap(),
        )
        .unwrap();
        self.s = Some(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, t))));
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16384];
        let n = match self.s.as_mut().unwrap() {
            Stream::Plain(t) => t.read(&mut tmp),
            Stream::Tls(t) => t.read(&mut tmp),
        };
        // A peer that closes without close_notify is "closed" too.
        let n = n.unwrap_or(0);
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    fn send(&mut self, data: &[u8]) {
        match self.s.as_mut().unwrap() {
            Stream::Plain(t) => t.write_all(data).unwrap(),
            Stream::Tls(t) => {
                t.write_all(data).unwrap();
                t.flush().unwrap()
            }
        }
    }

    /// One line without CRLF.
    fn line(&mut self) -> String {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l: Vec<u8> = self.buf.drain(..p + 2).collect();
                return String::from_utf8_lossy(&l[..p]).into_owned();
            }
            assert!(
                self.fill() > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// The body of a multi-line response as sent, up to and including ".\r\n".
    fn multiline_raw(&mut self) -> Vec<u8> {
        loop {
            let at_start = self.buf.starts_with(b".\r\n");
            if at_start {
                return self.buf.drain(..3).collect();
            }
            if let Some(p) = self.buf.windows(5).position(|w| w == b"\r\n.\r\n") {
                return self.buf.drain(..p + 5).collect();
            }
            assert!(
                self.fill() > 0,
                "connection closed inside a multi-line response"
            );
        }
    }

    fn multiline(&mut self) -> Vec<String> {
        let raw = self.multiline_raw();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let mut lines: Vec<String> = text.split("\r\n").map(String::from).collect();
        assert_eq!(lines.pop().as_deref(), Some(""));
        assert_eq!(lines.pop().as_deref(), Some("."));
        lines
    }

    /// True when the server closed the connection (nothing more to read).
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill() == 0
    }

    fn login(&mut self, user: &str, pass: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.cmd(&format!("PASS {pass}"))
    }
}

/// Logs in on 995, retrying while an earlier session still holds the maildrop (its
/// connection may not have been noticed as closed yet).
fn login_when_free(s: &Server, d: &DataDir) -> Raw {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut c = Raw::tls(s.addr("pop3s"), d);
        assert!(c.line().starts_with("+OK"));
        let r = c.login(ALICE, PASSWORD);
        if r.starts_with("+OK") {
            return c;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        assert!(Instant::now() < deadline, "the maildrop stayed locked");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_files(dir: &Path, msgs: &[Vec<u8>]) -> Vec<PathBuf> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let p = dir.join(format!("msg{i}.eml"));
            std::fs::write(&p, m).unwrap();
            p
        })
        .collect()
}

fn curl(args: &[&str]) -> std::process::Output {
    require_tool("curl");
    Command::new("curl").args(args).output().expect("run curl")
}

fn curl_ok(args: &[&str]) -> Vec<u8> {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------
// Python poplib scripts

/// Logs in with USER/PASS (via STLS on 110 or on 995), checks CAPA before and after
/// TLS, STAT, LIST, byte-exact RETR of every message file given, TOP; prints UIDL.
const POPLIB_RETRIEVE: &str = r#"
import json, poplib, ssl, sys
mode, port, cafile, user, pw = sys.argv[1:6]
expected = [open(f, "rb").read() for f in sys.argv[6:]]
ctx = ssl.create_default_context(cafile=cafile)
# The certificate names mail.example.test; we connect to 127.0.0.1. The chain is
# still verified against the server's own certificate.
ctx.check_hostname = False
if mode == "stls":
    p = poplib.POP3("127.0.0.1", int(port), timeout=60)
    caps = p.capa()
    assert "STLS" in caps, caps
    assert "USER" not in caps and "SASL" not in caps, caps
    try:
        p.user(user)
        raise SystemExit("USER accepted before TLS")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR [SYS/PERM]"), e
    try:
        p._longcmd("AUTH")
        raise SystemExit("AUTH answered before TLS")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR [SYS/PERM]"), e
    p.stls(context=ctx)
else:
    p = poplib.POP3_SSL("127.0.0.1", int(port), context=ctx, timeout=60)
caps = p.capa()
assert "STLS" not in caps, caps
for c in ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]:
    assert c in caps, (c, caps)
assert caps["SASL"] == ["PLAIN"], caps
# AUTH without a mechanism lists them (RFC 1734 convention), over TLS only.
resp, mechs, _ = p._longcmd("AUTH")
assert resp.startswith(b"+OK") and mechs == [b"PLAIN"], (resp, mechs)
p.user(user)
p.pass_(pw)
count, size = p.stat()
assert count == len(expected), (count, len(expected))
assert size == sum(len(e) for e in expected), size
resp, listing, _ = p.list()
want = [b"%d %d" % (i + 1, len(e)) for i, e in enumerate(expected)]
assert listing == want, (listing, want)
for i, e in enumerate(expected, 1):
    resp, lines, octets = p.retr(i)
    assert resp == b"+OK %d octets" % len(e), resp
    got = b"\r\n".join(lines)
    # The last line always ends with CRLF on the wire.
    want = e[:-2] if e.endswith(b"\r\n") else e
    assert got == want, (i, got[:300], want[:300])
    # TOP: the header, the blank line, then n body lines.
    head, body = e.split(b"\r\n\r\n", 1)
    resp, lines, _ = p.top(i, 2)
    assert lines == head.split(b"\r\n") + [b""] + body.split(b"\r\n")[:2], (i, lines)
    resp, lines, _ = p.top(i, 0)
    assert lines == head.split(b"\r\n") + [b""], lines
resp, uidl, _ = p.uidl()
print(json.dumps([l.decode() for l in uidl]))
p.quit()
"#;

/// Prints the UIDL listing of one session on 995 (and DELEtes the numbers given).
const POPLIB_UIDL: &str = r#"
import json, poplib, ssl, sys
port, cafile, user, pw = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
p = poplib.POP3_SSL("127.0.0.1", int(port), context=ctx, timeout=60)
p.user(user)
p.pass_(pw)
resp, uidl, _ = p.uidl()
for n in sys.argv[5:]:
    p.dele(int(n))
print(json.dumps([l.decode() for l in uidl]))
p.quit()
"#;

/// Tries to log in via STLS on 110; prints the server's answer.
const POPLIB_TRY_LOGIN: &str = r#"
import poplib, ssl, sys
port, cafile, user, pw = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
p = poplib.POP3("127.0.0.1", int(port), timeout=60)
p.stls(context=ctx)
p.user(user)
try:
    print(p.pass_(pw).decode())
    print(p.stat())
    p.quit()
except poplib.error_proto as e:
    print(e.args[0].decode())
"#;

fn uidl_of(stdout: &str) -> Vec<(u32, String)> {
    let v: Vec<String> = serde_json::from_str(stdout.trim()).unwrap();
    v.iter()
        .map(|l| {
            let (n, id) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), id.to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Tests

#[test]
fn before_tls_110_offers_stls_and_refuses_every_credential_command() {
    let (d, s) = setup();
    let mut c = Raw::plain(s.addr("pop3"));
    assert_eq!(c.line(), format!("+OK {HOSTNAME} POP3 server ready"));
    assert!(c.cmd("CAPA").starts_with("+OK"));
    let caps = c.multiline();
    assert!(caps.contains(&"STLS".to_string()), "{caps:?}");
    assert!(
        !caps.iter().any(|c| c == "USER" || c.starts_with("SASL")),
        "{caps:?}"
    );
    for line in [
        format!("USER {ALICE}"),
        format!("PASS {PASSWORD}"),
        format!("APOP {ALICE} c4c9334bac560ecc979e58001b3e22fb"),
        format!("AUTH PLAIN {}", plain_b64(ALICE, PASSWORD)),
        "AUTH PLAIN".to_string(),
    ] {
        let r = c.cmd(&line);
        assert!(r.starts_with("-ERR [SYS/PERM] TLS required"), "{line}: {r}");
    }
    // Nothing reached the authenticator.
    assert!(!s.log().contains("bulwark::auth"), "{}", s.log());
    // After STLS the same session offers USER and SASL PLAIN, and no STLS.
    assert_eq!(c.cmd("STLS"), "+OK Begin TLS negotiation");
    c.upgrade(&d);
    assert!(c.cmd("CAPA").starts_with("+OK"));
    let caps = c.multiline();
    assert!(caps.contains(&"USER".to_string()), "{caps:?}");
    assert!(caps.contains(&"SASL PLAIN".to_string()), "{caps:?}");
    assert!(!caps.contains(&"STLS".to_string()), "{caps:?}");
    assert!(c
        .login(ALICE, PASSWORD)
        .starts_with("+OK maildrop locked and ready"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // The check above can fail: a login does show up there.
    assert!(s.log().contains("bulwark::auth"));
}

#[test]
fn stls_discards_commands_pipelined_in_the_clear() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| c["listeners"]["pop3"]["protocol_log"] = toml_edit::value(true));
    let s = started(&d);
    let mut c = Raw::plain(s.addr("pop3"));
    c.line();
    // An attacker in the path appends USER after STLS; if the server kept it, the
    // PASS sent inside TLS would complete a login the client never asked for.
    let injected = format!("USER {ALICE}\r\n");
    c.send(format!("STLS\r\n{injected}").as_bytes());
    assert_eq!(c.line(), "+OK Begin TLS negotiation");
    c.upgrade(&d);
    // The first reply inside TLS answers PASS, and USER was never seen.
    assert_eq!(c.cmd(&format!("PASS {PASSWORD}")), "-ERR give USER first");
    assert!(c
        .cmd("STAT")
        .starts_with("-ERR STAT is only valid after login"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(c.closed());
    let log = std::fs::read_to_string(d.path().join("log/pop3.log")).unwrap();
    assert!(
        log.contains(&format!("discarded {} octets", injected.len())),
        "{log}"
    );
}

#[test]
fn poplib_stls_and_pop3_ssl_retrieve_byte_exact_with_top_and_uidl() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    let msgs = vec![msg_dots_8bit(), msg_no_final_crlf(), msg_large()];
    for m in &msgs {
        mail.deliver(ALICE, m);
    }
    let files = write_files(d.path(), &msgs);
    let cafile = d.cert_path();
    let mut args = vec![
        "stls".to_string(),
        s.port("pop3").to_string(),
        cafile.display().to_string(),
        ALICE.to_string(),
        PASSWORD.to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let uidl_110 = uidl_of(&python_ok(POPLIB_RETRIEVE, &a));
    args[0] = "ssl".into();
    args[1] = s.port("pop3s").to_string();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let uidl_995 = uidl_of(&python_ok(POPLIB_RETRIEVE, &a));
    assert_eq!(uidl_110.len(), 3);
    assert_eq!(uidl_110, uidl_995);
    // RETR was not followed by DELE: everything is still there, now read.
    let left = mail.messages(ALICE);
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(_, f)| f.has(Flags::SEEN)), "{left:?}");

    // The exact octets on the wire: dot-stuffed, CRLF-terminated, then ".".
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    for (i, m) in msgs.iter().enumerate() {
        let r = c.cmd(&format!("RETR {}", i + 1));
        assert_eq!(r, format!("+OK {} octets", m.len()));
        let wire = c.multiline_raw();
        assert!(
            wire == expected_wire(m),
            "message {} differs on the wire",
            i + 1
        );
    }
    let r = c.cmd("TOP 1 3");
    assert_eq!(r, "+OK top of message follows");
    let wire = c.multiline_raw();
    let (head, _) =
        msgs[0].split_at(msgs[0].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4);
    let mut want = head.to_vec();
    want.extend_from_slice("caf\u{e9} \u{20ac} 8-bit body\r\n..\r\n...\r\n.\r\n".as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&wire),
        String::from_utf8_lossy(&want)
    );
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

/// Mail received over SMTP (smtplib, STARTTLS on 25) and fetched with poplib (STLS).
const SMTP_THEN_POP3: &str = r#"
import poplib, smtplib, ssl, sys
smtp_port, pop_port, cafile, user, pw, path = sys.argv[1:7]
msg = open(path, "rb").read()
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(smtp_port), timeout=60)
s.ehlo("client.test")
s.starttls(context=ctx)
s.ehlo("client.test")
assert s.sendmail("x@remote.test", [user], msg, mail_options=["BODY=8BITMIME"]) == {}
s.quit()
p = poplib.POP3("127.0.0.1", int(pop_port), timeout=60)
p.stls(context=ctx)
p.user(user)
p.pass_(pw)
count, size = p.stat()
assert count == 1, count
resp, lines, _ = p.retr(1)
got = b"\r\n".join(lines) + b"\r\n"
assert size == len(got), (size, len(got))
assert got.startswith(b"Return-Path: <x@remote.test>\r\nReceived: "), got[:300]
# What the SMTP client sent comes back octet for octet after our trace headers.
assert got.endswith(msg), got
p.dele(1)
p.quit()
"#;

#[test]
fn mail_received_over_smtp_is_retrieved_and_deleted_over_pop3() {
    let (d, s) = setup();
    let files = write_files(d.path(), &[msg_dots_8bit()]);
    let (smtp, pop3) = (s.port("smtp").to_string(), s.port("pop3").to_string());
    let cafile = d.cert_path().display().to_string();
    let path = files[0].display().to_string();
    python_ok(
        SMTP_THEN_POP3,
        &[&smtp, &pop3, &cafile, ALICE, PASSWORD, &path],
    );
    assert!(Mail::open(&d).uids(ALICE).is_empty());
}

#[test]
fn curl_lists_and_retrieves_over_pop3s_and_stls() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    let m1 = msg_dots_8bit();
    let m2 = simple("second");
    mail.deliver(ALICE, &m1);
    mail.deliver(ALICE, &m2);
    let cafile = d.cert_path().display().to_string();
    let user = format!("{ALICE}:{PASSWORD}");
    let pop3s = s.port("pop3s");
    let resolve = format!("{HOSTNAME}:{pop3s}:127.0.0.1");
    let base = format!("pop3s://{HOSTNAME}:{pop3s}/");
    let common = [
        "-sS",
        "--cacert",
        &cafile,
        "--resolve",
        &resolve,
        "-u",
        &user,
    ];

    // Listing (LIST), with the host name verified against the certificate.
    let mut args = common.to_vec();
    args.push(&base);
    let list = String::from_utf8(curl_ok(&args)).unwrap();
    assert_eq!(list, format!("1 {}\r\n2 {}\r\n", m1.len(), m2.len()));

    // Retrieval (RETR 1): curl removes the dot-stuffing; the message comes back as stored.
    let url1 = format!("{base}1");
    let mut args = common.to_vec();
    args.push(&url1);
    // (curl 7.88 is lenient: it gives the same output for a body the server forgot to
    // dot-stuff, so exact stuffing is proven by the poplib and raw-socket tests.)
    assert!(curl_ok(&args) == m1, "RETR via curl is not byte-exact");

    // UIDL through a custom command.
    let mut args = common.to_vec();
    args.extend(["-X", "UIDL", &base]);
    let uidl = String::from_utf8(curl_ok(&args)).unwrap();
    assert_eq!(uidl.lines().count(), 2, "{uidl}");

    // Port 110 with STLS required by the client.
    let pop3 = s.port("pop3");
    let resolve = format!("{HOSTNAME}:{pop3}:127.0.0.1");
    let url = format!("pop3://{HOSTNAME}:{pop3}/2");
    let out = curl_ok(&[
        "-sS",
        "--ssl-reqd",
        "--cacert",
        &cafile,
        "--resolve",
        &resolve,
        "-u",
        &user,
        &url,
    ]);
    assert!(out == m2);

    // A wrong password fails (curl exits non-zero).
    let bad = format!("{ALICE}:wrong password");
    let out = curl(&[
        "-sS",
        "--cacert",
        &cafile,
        "--resolve",
        &format!("{HOSTNAME}:{pop3s}:127.0.0.1"),
        "-u",
        &bad,
        &base,
    ]);
    assert!(!out.status.success());
    // Nothing was deleted by any of this.
    assert_eq!(mail.uids(ALICE).len(), 2);
}

#[test]
fn uidl_is_stable_across_sessions_and_dele_quit_deletes() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    let uids: Vec<u32> = (1..=3)
        .map(|i| mail.deliver(ALICE, &simple(&format!("m{i}"))))
        .collect();
    let port = s.port("pop3s").to_string();
    let cafile = d.cert_path().display().to_string();
    let base = [port.as_str(), cafile.as_str(), ALICE, PASSWORD];

    // Session 1 lists and deletes message 1, then QUITs.
    let mut a = base.to_vec();
    a.push("1");
    let first = uidl_of(&python_ok(POPLIB_UIDL, &a));
    assert_eq!(first.len(), 3);
    let ids: Vec<String> = first.iter().map(|(_, id)| id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "unique-ids must differ: {ids:?}");
    for id in &ids {
        assert!(id.len() <= 70 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
    assert_eq!(mail.uids(ALICE), uids[1..].to_vec());

    // Session 2: the two remaining messages keep their ids under new numbers.
    let second = uidl_of(&python_ok(POPLIB_UIDL, &base));
    assert_eq!(second, vec![(1, ids[1].clone()), (2, ids[2].clone())]);
    // A new message gets a new id; the others stay the same again.
    mail.deliver(ALICE, &simple("m4"));
    let third = uidl_of(&python_ok(POPLIB_UIDL, &base));
    assert_eq!(third[..2], second[..]);
    assert_eq!(third.len(), 3);
    assert!(!ids.contains(&third[2].1));

    // UIDL n agrees with the listing.
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert_eq!(c.cmd("UIDL 2"), format!("+OK 2 {}", ids[2]));
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn rset_unmarks_and_a_dropped_connection_deletes_nothing() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    let uids: Vec<u32> = (1..=3)
        .map(|i| mail.deliver(ALICE, &simple(&format!("m{i}"))))
        .collect();

    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c
        .login(ALICE, PASSWORD)
        .starts_with("+OK maildrop locked and ready, 3 messages"));
    assert_eq!(c.cmd("DELE 1"), "+OK message 1 deleted");
    assert_eq!(c.cmd("DELE 2"), "+OK message 2 deleted");
    assert_eq!(c.cmd("STAT").split(' ').nth(1), Some("1"));
    assert!(c.cmd("RSET").starts_with("+OK maildrop has 3 messages"));
    assert_eq!(c.cmd("DELE 3"), "+OK message 3 deleted");
    // Nothing is deleted before QUIT.
    assert_eq!(mail.uids(ALICE), uids);
    let r = c.cmd("QUIT");
    assert!(
        r.starts_with("+OK") && r.contains("(1 message deleted)"),
        "{r}"
    );
    assert!(c.closed());
    assert_eq!(mail.uids(ALICE), uids[..2].to_vec());

    // DELE, then the connection drops without QUIT: no UPDATE state, nothing deleted.
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    drop(c);
    // Once the server has ended that session (the lock is free again) both are there.
    let mut c = login_when_free(&s, &d);
    assert_eq!(c.cmd("STAT"), format!("+OK 2 {}", simple("m1").len() * 2));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(mail.uids(ALICE), uids[..2].to_vec());

    // The metrics endpoint saw it: one message removed by UPDATE, five DELEs.
    let m = scrape(&s);
    assert_eq!(
        metric(
            &m,
            "bulwark_pop3_messages_deleted_total{listener=\"pop3s\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "bulwark_pop3_commands_total{listener=\"pop3s\",command=\"DELE\",result=\"ok\"}"
        ),
        5
    );
    assert!(
        metric(
            &m,
            "bulwark_pop3_logins_total{listener=\"pop3s\",mechanism=\"USER\",result=\"success\"}"
        ) >= 3
    );
}

/// The server's metrics (loopback: plain HTTP).
fn scrape(s: &Server) -> String {
    String::from_utf8(curl_ok(&[
        "-sS",
        &format!("http://{}/metrics", s.addr("metrics")),
    ]))
    .unwrap()
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{text}")) as u64
}

#[test]
fn a_second_pop3_login_gets_in_use_while_the_mailbox_stays_usable() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    mail.deliver(ALICE, &simple("first"));
    let port = s.port("pop3").to_string();
    let cafile = d.cert_path().display().to_string();
    let args = [port.as_str(), cafile.as_str(), ALICE, PASSWORD];

    // Session A on 995 holds the maildrop.
    let mut a = Raw::tls(s.addr("pop3s"), &d);
    a.line();
    assert!(a.login(ALICE, PASSWORD).starts_with("+OK"));

    // Session B (poplib via STLS on 110: the lock spans both listeners) is refused.
    let out = python_ok(POPLIB_TRY_LOGIN, &args);
    assert!(out.starts_with("-ERR [IN-USE]"), "{out}");
    // A wrong password learns nothing about the lock.
    let out = python_ok(POPLIB_TRY_LOGIN, &[&port, &cafile, ALICE, "wrong password"]);
    assert!(out.starts_with("-ERR [AUTH]"), "{out}");

    // The mailbox itself is not locked: delivery (and so IMAP, which uses the same
    // store) keeps working while A's snapshot stays as it was at login.
    mail.deliver(ALICE, &simple("second"));
    assert_eq!(mail.uids(ALICE).len(), 2);
    assert!(a.cmd("STAT").starts_with("+OK 1 "));
    assert!(a.cmd("QUIT").starts_with("+OK"));
    assert!(a.closed());

    // Released: B gets in and sees both messages.
    let out = python_ok(POPLIB_TRY_LOGIN, &args);
    assert!(
        out.starts_with("+OK maildrop locked and ready, 2 messages"),
        "{out}"
    );
}

#[test]
fn failed_logins_answer_the_same_for_unknown_users_and_get_throttled() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| {
        c["auth"]["failure_delay_ms"] = toml_edit::value(10);
        c["auth"]["block_ip_after_failures"] = toml_edit::value(4);
    });
    let s = started(&d);
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    let wrong_pw = c.login(ALICE, "wrong password");
    let unknown = c.login("nobody@example.test", "wrong password");
    assert_eq!(wrong_pw, "-ERR [AUTH] authentication failed");
    assert_eq!(unknown, wrong_pw);
    let sasl = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain_b64(ALICE, "wrong password")
    ));
    assert_eq!(sasl, wrong_pw);
    assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
    assert_eq!(c.cmd(&plain_b64("nobody@example.test", "x")), wrong_pw);
    // Four failures from this address: even the right password is now refused, as a
    // temporary condition.
    let r = c.login(ALICE, PASSWORD);
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain_b64(ALICE, PASSWORD)));
    assert!(r.starts_with("-ERR [SYS/TEMP]"), "{r}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn protocol_log_has_commands_but_no_secrets_or_bodies() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| {
        c["listeners"]["pop3"]["protocol_log"] = toml_edit::value(true);
        c["listeners"]["pop3s"]["protocol_log"] = toml_edit::value(true);
    });
    let s = started(&d);
    let mail = Mail::open(&d);
    let marker = "BODY-MARKER-7f3a91";
    mail.deliver(
        ALICE,
        format!("Subject: log test\r\n\r\n{marker}\r\n").as_bytes(),
    );

    // USER/PASS after STLS on 110.
    let mut c = Raw::plain(s.addr("pop3"));
    c.line();
    assert!(c.cmd("STLS").starts_with("+OK"));
    c.upgrade(&d);
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert!(c.cmd("RETR 1").starts_with("+OK"));
    assert!(String::from_utf8_lossy(&c.multiline_raw()).contains(marker));
    assert!(c.cmd("TOP 1 5").starts_with("+OK"));
    c.multiline_raw();
    assert!(c.cmd("QUIT").starts_with("+OK"));

    // AUTH PLAIN with an initial response, then as a continuation, on 995.
    let ir = plain_b64(ALICE, PASSWORD);
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.cmd(&format!("AUTH PLAIN {ir}")).starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
    assert!(c.cmd(&ir).starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));

    let log110 = std::fs::read_to_string(d.path().join("log/pop3.log")).unwrap();
    let log995 = std::fs::read_to_string(d.path().join("log/pop3s.log")).unwrap();
    for log in [&log110, &log995] {
        assert!(!log.contains(PASSWORD), "{log}");
        assert!(!log.contains("correct horse"), "{log}");
        assert!(!log.contains(&ir), "{log}");
        assert!(
            !log.contains(marker),
            "a message body reached the log: {log}"
        );
    }
    let lines = |log: &str| -> Vec<(String, String)> {
        log.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["dir"].as_str().unwrap().to_string(),
                    v["line"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let l110 = lines(&log110);
    for want in [
        ("C", "STLS".to_string()),
        ("C", format!("USER {ALICE}")),
        ("C", "PASS ***".to_string()),
        ("C", "RETR 1".to_string()),
        ("S", "+OK Begin TLS negotiation".to_string()),
    ] {
        assert!(
            l110.iter().any(|(d, l)| d == want.0 && *l == want.1),
            "{want:?} missing from {log110}"
        );
    }
    assert!(l110
        .iter()
        .any(|(d, l)| d == "*" && l.contains("RETR message 1:")));
    let l995 = lines(&log995);
    assert!(
        l995.iter().any(|(d, l)| d == "C" && l == "AUTH PLAIN ***"),
        "{log995}"
    );
    assert!(l995.iter().any(|(d, l)| d == "C" && l == "***"), "{log995}");
    assert!(l995.iter().any(|(d, l)| d == "S" && l == "+ "), "{log995}");
}

#[test]
fn idle_timeout_and_shutdown_close_without_deleting() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| c["pop3"]["timeout_secs"] = toml_edit::value(3));
    let mut s = started(&d);
    let mail = Mail::open(&d);
    let uids = vec![mail.deliver(ALICE, &simple("a"))];

    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    // Say nothing: the autologout timer closes the session, without UPDATE.
    assert_eq!(c.line(), "-ERR autologout: idle for 3 seconds");
    assert!(c.closed());
    assert_eq!(mail.uids(ALICE), uids);

    // A server shutdown mid-session is not a QUIT either.
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    s.signal(libc::SIGTERM);
    assert!(c.line().starts_with("-ERR [SYS/TEMP] server shutting down"));
    assert!(c.closed());
    assert!(s.wait_exit(Duration::from_secs(40)).success());
    assert_eq!(mail.uids(ALICE), uids);
}

#[test]
fn a_client_that_does_not_log_in_in_time_is_closed_however_busy() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| c["pop3"]["login_timeout_secs"] = toml_edit::value(2));
    let s = started(&d);
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    let start = Instant::now();
    // Busy but never logged in: each command resets the idle timer (600 s), not the
    // login one; then the login deadline closes the session.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        assert!(!c.cmd("NOOP").contains("autologout"));
    }
    let last = c.line();
    assert_eq!(
        last,
        "-ERR autologout: log in within 2 seconds of connecting"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(c.closed());
    // Logged in in time: the login deadline no longer applies.
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.cmd("STAT").starts_with("+OK"));
}

#[test]
fn a_client_that_stops_reading_loses_its_session_and_lock() {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.edit_config(|c| c["pop3"]["timeout_secs"] = toml_edit::value(3));
    let s = started(&d);
    let mail = Mail::open(&d);
    // Larger than the loopback socket buffers, so the server's writes block.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 16 << 20 {
        big.extend_from_slice(&[b'x'; 998]);
        big.extend_from_slice(b"\r\n");
    }
    mail.deliver(ALICE, &big);

    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    c.send(b"RETR 1\r\n");
    // The stuck session still holds the maildrop...
    let mut other = Raw::tls(s.addr("pop3s"), &d);
    other.line();
    let r = other.login(ALICE, PASSWORD);
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    // ...until its write makes no progress for timeout_secs and the session ends.
    let mut other = login_when_free(&s, &d);
    assert!(other.cmd("STAT").starts_with("+OK 1 "));
    assert!(other.cmd("QUIT").starts_with("+OK"));
    drop(c);
}

// ---- bad input: an -ERR with a reason each, and the server keeps serving ----------

/// After the bad input, the same session and a new one still work.
fn still_serving(c: &mut Raw, s: &Server, d: &DataDir) {
    assert!(c.cmd("CAPA").starts_with("+OK"));
    c.multiline();
    let mut fresh = Raw::tls(s.addr("pop3s"), d);
    assert!(fresh.line().starts_with("+OK"));
    assert!(fresh.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn bad_input_overlong_line() {
    let (d, s) = setup();
    let mut c = Raw::plain(s.addr("pop3"));
    c.line();
    let r = c.cmd(&format!("NOOP {}", "x".repeat(300)));
    assert!(r.starts_with("-ERR line too long"), "{r}");
    // A megabyte without a line end is discarded, not buffered.
    c.send(&vec![b'A'; 1 << 20]);
    let r = c.cmd("");
    assert!(r.starts_with("-ERR line too long"), "{r}");
    // Exactly 255 octets with CRLF is still a command.
    let r = c.cmd(&format!("USER {}", "u".repeat(255 - 7)));
    assert!(r.starts_with("-ERR [SYS/PERM]"), "{r}");
    still_serving(&mut c, &s, &d);
}

#[test]
fn bad_input_unknown_command() {
    let (d, s) = setup();
    let mut c = Raw::plain(s.addr("pop3"));
    c.line();
    assert_eq!(c.cmd("XYZZY"), "-ERR unknown command");
    assert_eq!(c.cmd("EHLO client.example"), "-ERR unknown command");
    assert_eq!(c.cmd("a1 LOGIN alice pw"), "-ERR unknown command");
    assert_eq!(c.cmd(""), "-ERR empty command");
    still_serving(&mut c, &s, &d);
}

#[test]
fn bad_input_bad_message_numbers() {
    let (d, s) = setup();
    let mail = Mail::open(&d);
    mail.deliver(ALICE, &simple("only"));
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert_eq!(c.cmd("RETR 2"), "-ERR no such message: 2");
    assert_eq!(c.cmd("RETR 0"), "-ERR no such message: 0");
    assert_eq!(c.cmd("LIST 4294967295"), "-ERR no such message: 4294967295");
    assert!(c
        .cmd("RETR 99999999999")
        .starts_with("-ERR RETR: message numbers"));
    assert!(c.cmd("DELE abc").starts_with("-ERR DELE: message numbers"));
    assert!(c.cmd("TOP 1 -1").starts_with("-ERR TOP: message numbers"));
    assert!(c.cmd("UIDL 1 2").starts_with("-ERR syntax: UIDL"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert_eq!(c.cmd("RETR 1"), "-ERR message 1 is marked as deleted");
    assert_eq!(c.cmd("DELE 1"), "-ERR message 1 is marked as deleted");
    assert!(c.cmd("RSET").starts_with("+OK"));
    still_serving(&mut c, &s, &d);
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(mail.uids(ALICE).len(), 1);
}

#[test]
fn bad_input_commands_in_the_wrong_state() {
    let (d, s) = setup();
    let mut c = Raw::tls(s.addr("pop3s"), &d);
    c.line();
    for cmd in [
        "STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP",
    ] {
        let r = c.cmd(cmd);
        assert!(r.contains("only valid after login"), "{cmd}: {r}");
    }
    assert_eq!(c.cmd("PASS x"), "-ERR give USER first");
    assert_eq!(c.cmd("STLS"), "-ERR TLS is already active");
    assert!(c.login(ALICE, PASSWORD).starts_with("+OK"));
    assert_eq!(c.cmd(&format!("USER {ALICE}")), "-ERR already logged in");
    assert_eq!(c.cmd("AUTH PLAIN"), "-ERR already logged in");
    assert_eq!(c.cmd("STLS"), "-ERR STLS is only valid before login");
    still_serving(&mut c, &s, &d);
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn bad_input_nul_bytes() {
    let (d, s) = setup();
    let mut c = Raw::plain(s.addr("pop3"));
    c.line();
    c.send(b"CAPA\0\r\n");
    assert_eq!(c.line(), "-ERR NUL bytes are not allowed in commands");
    c.send(b"\0\0\0\r\n");
    assert_eq!(c.line(), "-ERR NUL bytes are not allowed in commands");
    let mut t = Raw::tls(s.addr("pop3s"), &d);
    t.line();
    t.send(format!("USER {ALICE}\0admin\r\n").as_bytes());
    assert_eq!(t.line(), "-ERR NUL bytes are not allowed in commands");
    still_serving(&mut c, &s, &d);
    still_serving(&mut t, &s, &d);
}

#[test]
fn busy_reply_is_a_pop3_error() {
    let d = DataDir::init();
    d.edit_config(|c| c["listeners"]["pop3"]["max_connections"] = toml_edit::value(1));
    let s = started(&d);
    let mut first = Raw::plain(s.addr("pop3"));
    assert!(first.line().starts_with("+OK"));
    let mut second = Raw::plain(s.addr("pop3"));
    assert_eq!(
        second.line(),
        "-ERR [SYS/TEMP] too many connections; try again later"
    );
    assert!(second.closed());
    assert!(first.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn report_probe_sees_stls_and_no_cleartext_login() {
    let (d, _s) = setup();
    let out = d.cli(&["report", "--probe", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = |listener: &str| {
        r["data_paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["listener"] == listener)
            .unwrap_or_else(|| panic!("{listener} not reported: {r:#}"))["probe"]
            .clone()
    };
    let p110 = probe("pop3");
    let o = &p110["observed"];
    assert_eq!(o["starttls_offered"], true, "{p110:#}");
    assert_eq!(o["auth_before_tls"], serde_json::json!([]), "{p110:#}");
    assert_eq!(o["auth_after_tls"], serde_json::json!(["USER", "PLAIN"]));
    assert_eq!(p110["differences"], serde_json::json!([]), "{p110:#}");
    let p995 = probe("pop3s");
    assert_eq!(p995["observed"]["implicit_tls"], true, "{p995:#}");
    assert_eq!(p995["differences"], serde_json::json!([]), "{p995:#}");
    let out = d.cli(&["audit", "--probe", "--json"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !a["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "pop3-cleartext-login"),
        "{a:#}"
    );
}
