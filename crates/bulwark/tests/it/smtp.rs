//! SMTP receive (25), submission (587 STARTTLS, 465 implicit TLS) and local delivery,
//! driven by independent clients: Python's smtplib, curl, openssl s_client, and raw
//! sockets (plain and rustls) where a library would hide the behaviour under test.
//! Stored messages are read back from the store directory (SQLite WAL allows a
//! reader beside the running server).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_store::{SqliteStore, Store};

use crate::support::*;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// A data directory with alice and bob, protocol logs on, fast failure delays and
/// tarpit; `edit` may change more before the server starts.
fn setup(edit: impl FnOnce(&mut toml_edit::DocumentMut)) -> (DataDir, Server) {
    let d = DataDir::init();
    d.add_user(ALICE);
    d.add_user(BOB);
    d.edit_config(|c| {
        for l in ["smtp", "submission", "submissions"] {
            c["listeners"][l]["protocol_log"] = toml_edit::value(true);
        }
        c["auth"]["failure_delay_ms"] = toml_edit::value(1);
        c["auth"]["max_delay_ms"] = toml_edit::value(5);
        c["smtp"]["tarpit_delay_ms"] = toml_edit::value(10);
        edit(c);
    });
    let s = Server::start(&d);
    (d, s)
}

/// Every message in a mailbox of `user`, read from the store.
fn stored(dir: &std::path::Path, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.join("store")).unwrap();
        let acc = store.account(user).await.unwrap().expect("account");
        let mb = store
            .mailbox(acc.id, mailbox)
            .await
            .unwrap()
            .expect("mailbox");
        let mut out = Vec::new();
        for m in store.list_messages(mb.id).await.unwrap() {
            out.push(store.read_blob(m.blob_id).await.unwrap());
        }
        store.close();
        out
    })
}

/// The queued messages: (recipients, body).
fn queued(dir: &std::path::Path) -> Vec<(Vec<String>, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.join("store")).unwrap();
        let mut out = Vec::new();
        for q in store.queue_list().await.unwrap() {
            let body = store.read_blob(q.blob_id).await.unwrap();
            out.push((q.recipients.into_iter().map(|r| r.address).collect(), body));
        }
        store.close();
        out
    })
}

fn protocol_log(d: &DataDir, listener: &str) -> String {
    std::fs::read_to_string(d.path().join(format!("log/{listener}.log"))).unwrap_or_default()
}

/// A raw SMTP client over any stream.
struct Raw<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Raw<S> {
    fn new(s: S) -> Raw<S> {
        Raw {
            r: BufReader::new(s),
        }
    }

    /// One whole reply (all its lines, "\n"-joined, without CRLF); "" at EOF.
    fn reply(&mut self) -> String {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            match self.r.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let l = l.trim_end_matches(['\r', '\n']).to_string();
            let last = l.len() < 4 || l.as_bytes()[3] != b'-';
            lines.push(l);
            if last {
                break;
            }
        }
        lines.join("\n")
    }

    fn send(&mut self, b: &[u8]) {
        self.r.get_mut().write_all(b).unwrap();
        self.r.get_mut().flush().unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}

fn connect(addr: SocketAddr) -> Raw<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut c = Raw::new(s);
    let greeting = c.reply();
    assert!(greeting.starts_with("220 "), "{greeting}");
    c
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// STARTTLS already answered 220: hand the socket to rustls.
fn upgrade(d: &DataDir, c: Raw<TcpStream>) -> Raw<TlsStream> {
    assert!(c.r.buffer().is_empty(), "server sent more after 220");
    let mut tcp = c.r.into_inner();
    let mut conn = rustls::ClientConnection::new(
        tls_client_config(d),
        rustls_pki_types::ServerName::try_from(HOSTNAME).unwrap(),
    )
    .unwrap();
    // Handshake now, not lazily at the first command.
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).expect("TLS handshake");
    }
    Raw::new(rustls::StreamOwned::new(conn, tcp))
}

fn code(reply: &str) -> &str {
    reply.lines().last().map_or("", |l| &l[..l.len().min(3)])
}

/// A Python prelude: connection parameters and a TLS context trusting our cert.
const PY_PRELUDE: &str = r#"
import smtplib, ssl, sys, base64
host, cafile = sys.argv[1], sys.argv[2]
ports = dict(a.split("=") for a in sys.argv[3:])
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
PASSWORD = "correct horse battery"
"#;

fn py(d: &DataDir, s: &Server, body: &str) -> String {
    let script = format!("{PY_PRELUDE}\n{body}");
    let cert = d.cert_path();
    let args = [
        "127.0.0.1".to_string(),
        cert.to_str().unwrap().to_string(),
        format!("smtp={}", s.port("smtp")),
        format!("submission={}", s.port("submission")),
        format!("submissions={}", s.port("submissions")),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_ok(&script, &args)
}

/// Splits a stored message into (our added header block, the rest), where the rest
/// must be exactly what the client sent.
fn assert_sent_plus_headers(stored: &[u8], sent: &[u8], expected_added: &[&str]) {
    assert!(
        stored.ends_with(sent),
        "stored message does not end with the sent octets:\n{}",
        String::from_utf8_lossy(stored)
    );
    let added = String::from_utf8(stored[..stored.len() - sent.len()].to_vec()).unwrap();
    // Header fields we added, in order; continuation lines start with a tab.
    let names: Vec<&str> = added
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('\t'))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(names, expected_added, "added headers:\n{added}");
}

// ---------------------------------------------------------------------------------
// Python smtplib: 25 plain and STARTTLS, 587 STARTTLS + AUTH PLAIN / LOGIN, 465
// ---------------------------------------------------------------------------------

#[test]
fn smtplib_receives_on_25_plain_and_with_starttls() {
    let (d, s) = setup(|_| {});
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
code, _ = s.ehlo("client.test")
assert code == 250
for ext in ["starttls", "pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8", "chunking"]:
    assert s.has_extn(ext), ext
assert not s.has_extn("auth"), "no AUTH on port 25"
assert s.esmtp_features["size"] == "26214400"
msg = b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: plain\r\n\r\nhello\r\n"
assert s.sendmail("x@remote.test", ["bob@example.test"], msg) == {}
s.starttls(context=ctx)
s.ehlo("client.test")
assert not s.has_extn("starttls") and not s.has_extn("auth")
msg = b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: tls\r\n\r\nhello\r\n"
assert s.sendmail("x@remote.test", ["bob@example.test"], msg) == {}
print(s.sock.version())
s.mail("x@remote.test")
code, resp = s.rcpt("someone@elsewhere.test")
print(code, resp.decode())
s.quit()
"#,
    );
    let mut lines = out.lines();
    let version = lines.next().unwrap();
    assert_eq!(version, "TLSv1.3");
    assert_eq!(
        lines.next().unwrap(),
        "554 5.7.1 Relay access denied",
        "never an open relay"
    );
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 2);
    let plain = String::from_utf8_lossy(&inbox[0]);
    assert!(plain.starts_with("Return-Path: <x@remote.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mail.example.test (Bulwark) with ESMTP id "), "{plain}");
    let tls = String::from_utf8_lossy(&inbox[1]);
    assert!(
        tls.contains("\r\n\t(using TLSv1.3 with cipher TLS13_"),
        "{tls}"
    );
    assert!(tls.contains(" with ESMTPS id "), "{tls}");
    assert!(tls.contains("\tfor <bob@example.test>; "), "{tls}");
}

#[test]
fn alice_sends_to_bob_via_587_byte_exact_with_plain_and_login() {
    let (d, s) = setup(|_| {});
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP(host, int(ports["submission"]), timeout=30)
s.ehlo("client.test")
assert s.has_extn("starttls") and not s.has_extn("auth"), "no AUTH before TLS"
creds = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode()
print(s.docmd("AUTH", "PLAIN " + creds))
print(s.docmd("MAIL", "FROM:<alice@example.test>"))
s.starttls(context=ctx)
s.ehlo("client.test")
assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
s.login("alice@example.test", PASSWORD)  # smtplib picks PLAIN
exact = (b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n"
         b"Subject: exact\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
         b"Message-ID: <exact-1@example.test>\r\n\r\nLine one\r\n.leading dot\r\n\r\n"
         b"caf\xc3\xa9 8-bit\r\nend\r\n")
assert s.sendmail("alice@example.test", ["bob@example.test"], exact, mail_options=["BODY=8BITMIME"]) == {}
s.quit()

s = smtplib.SMTP(host, int(ports["submission"]), timeout=30)
s.starttls(context=ctx)
s.ehlo("client.test")
s.user, s.password = "alice@example.test", PASSWORD
code, _ = s.auth("LOGIN", s.auth_login)
print(code)
bare = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: no date\r\n\r\nhi\r\n"
assert s.sendmail("alice@example.test", ["bob@example.test"], bare) == {}
s.quit()
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("(538, b'5.7.11 "), "{out}");
    assert!(
        lines[1].starts_with("(530, b'5.7.0 Must issue a STARTTLS"),
        "{out}"
    );
    assert_eq!(lines[2], "235");

    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 2);
    let exact = b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: exact\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <exact-1@example.test>\r\n\r\nLine one\r\n.leading dot\r\n\r\ncaf\xc3\xa9 8-bit\r\nend\r\n";
    // `init` made example.test's DKIM keys, so submissions are signed (RSA and
    // Ed25519) from the first start.
    assert_sent_plus_headers(
        &inbox[0],
        exact,
        &[
            "Return-Path",
            "DKIM-Signature",
            "DKIM-Signature",
            "Received",
        ],
    );
    let m = String::from_utf8_lossy(&inbox[0]);
    assert!(
        m.starts_with("Return-Path: <alice@example.test>\r\n"),
        "{m}"
    );
    assert!(m.contains(" with ESMTPSA id "), "{m}");
    // Date and Message-ID are added when missing.
    let bare =
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: no date\r\n\r\nhi\r\n";
    assert_sent_plus_headers(
        &inbox[1],
        bare,
        &[
            "Return-Path",
            "DKIM-Signature",
            "DKIM-Signature",
            "Received",
            "Date",
            "Message-ID",
        ],
    );
    assert!(String::from_utf8_lossy(&inbox[1]).contains("Message-ID: <"));

    // The protocol log has every command but no credentials.
    let log = protocol_log(&d, "submission");
    assert!(log.contains("\"line\":\"AUTH PLAIN ***\""), "{log}");
    // smtplib sends LOGIN's user name as an initial response.
    assert!(log.contains("\"line\":\"AUTH LOGIN ***\""), "{log}");
    assert!(
        log.contains("\"line\":\"***\""),
        "LOGIN continuations are secrets"
    );
    assert!(
        log.contains("\"line\":\"MAIL FROM:<alice@example.test>"),
        "{log}"
    );
    assert!(
        log.contains("\"dir\":\"S\",\"line\":\"250 2.0.0 Message accepted"),
        "{log}"
    );
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    for secret in [
        PASSWORD.to_string(),
        b64(&format!("\0{ALICE}\0{PASSWORD}")),
        b64(PASSWORD),
    ] {
        assert!(!log.contains(&secret), "secret in protocol log");
        assert!(!s.log().contains(&secret), "secret in server log");
    }
    assert!(!log.contains("Line one"), "bodies are never logged");
}

#[test]
fn smtplib_smtp_ssl_on_465_and_remote_mail_is_queued() {
    let (d, s) = setup(|_| {});
    py(
        &d,
        &s,
        r#"
s = smtplib.SMTP_SSL(host, int(ports["submissions"]), context=ctx, timeout=30)
s.ehlo("client.test")
assert not s.has_extn("starttls")
s.login("alice@example.test", PASSWORD)
msg = b"From: alice@example.test\r\nTo: friend@remote.test\r\nSubject: out\r\n\r\nhi\r\n"
refused = s.sendmail("alice@example.test", ["friend@remote.test", "bob@example.test"], msg)
assert refused == {}, refused
s.quit()
"#,
    );
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 1);
    let q = queued(d.path());
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].0, vec!["friend@remote.test".to_string()]);
    // The relayed copy is the local one without Return-Path.
    let local = &inbox[0];
    let rp = b"Return-Path: <alice@example.test>\r\n";
    assert!(local.starts_with(rp));
    assert_eq!(&local[rp.len()..], &q[0].1[..]);
    // And the metrics say so.
    let m = crate::observe::scrape(&s);
    let get = |series: &str| crate::observe::metric(&m, series);
    assert_eq!(
        get("bulwark_messages_received_total{listener=\"submissions\"}"),
        Some(1.0)
    );
    assert_eq!(
        get("bulwark_messages_delivered_total{destination=\"local\"}"),
        Some(1.0)
    );
    assert_eq!(get("bulwark_messages_queued_total"), Some(1.0));
    assert_eq!(
        get("bulwark_message_bytes_queued_total"),
        Some(q[0].1.len() as f64)
    );
    let remote = m
        .lines()
        .find(|l| {
            l.starts_with("bulwark_smtp_recipients_total{")
                && l.contains("listener=\"submissions\"")
                && l.contains("kind=\"remote\"")
        })
        .unwrap_or_default();
    assert!(remote.ends_with(" 1"), "{m}");
}

#[test]
fn anti_spoofing_on_submission() {
    let (d, s) = setup(|_| {});
    d.cli(&["alias", "add", "sales@example.test", ALICE]);
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP_SSL(host, int(ports["submissions"]), context=ctx, timeout=30)
s.login("alice@example.test", PASSWORD)
def attempt(envelope, header_from, extra=b""):
    msg = b"From: " + header_from + b"\r\n" + extra + b"To: bob@example.test\r\nSubject: s\r\n\r\nx\r\n"
    try:
        s.sendmail(envelope, ["bob@example.test"], msg)
        return "250"
    except smtplib.SMTPSenderRefused as e:
        return "MAIL %d %s" % (e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPDataError as e:
        return "DATA %d %s" % (e.smtp_code, e.smtp_error.decode())
print(attempt("bob@example.test", b"alice@example.test"))
print(attempt("alice@example.test", b"Bob <bob@example.test>"))
print(attempt("alice@example.test", b"alice@example.test", b"Sender: bob@example.test\r\n"))
print(attempt("alice@example.test", b"alice@example.test", b"From: bob@example.test\r\n"))
print(attempt("sales@example.test", b"Sales <sales@example.test>"))
s.quit()
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "MAIL 550 5.7.1 Sender address is not owned by the authenticated user"
    );
    assert_eq!(
        lines[1],
        "DATA 550 5.7.1 Sender address is not owned by the authenticated user"
    );
    assert_eq!(lines[2], lines[1], "Sender: is checked too");
    assert_eq!(lines[3], lines[1], "a second From: is checked too");
    assert_eq!(lines[4], "250", "an alias of hers is hers");
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
}

#[test]
fn submission_refuses_a_form_feed_line_that_hides_a_sender_field_on_587_and_465() {
    let (d, s) = setup(|_| {});
    let out = py(
        &d,
        &s,
        r#"
def session(port):
    if port == "submissions":
        s = smtplib.SMTP_SSL(host, int(ports[port]), context=ctx, timeout=30)
    else:
        s = smtplib.SMTP(host, int(ports[port]), timeout=30)
        s.starttls(context=ctx)
    s.login("alice@example.test", PASSWORD)
    return s
for port in ["submission", "submissions"]:
    s = session(port)
    for msg in [
        b"From: alice@example.test\r\n\x0c\r\nSender: bob@example.test\r\nSubject: s\r\n\r\nx\r\n",
        b"From: alice@example.test\r\n \x0c\r\n\x0cSender: bob@example.test\r\n\r\nx\r\n",
    ]:
        try:
            s.sendmail("alice@example.test", ["bob@example.test", "friend@remote.test"], msg)
            print("250")
        except smtplib.SMTPDataError as e:
            print("%d %s" % (e.smtp_code, e.smtp_error.decode()))
    s.quit()
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    let refused = |n: usize| {
        format!("554 5.6.0 Message refused: header line {n} is not a header field (RFC 5322 section 2.2)")
    };
    assert_eq!(
        lines,
        [refused(2), refused(3), refused(2), refused(3)],
        "{out}"
    );
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
    assert!(queued(d.path()).is_empty(), "nothing relayed (or signed)");
}

// ---------------------------------------------------------------------------------
// curl and openssl
// ---------------------------------------------------------------------------------

fn curl(
    d: &DataDir,
    url_scheme: &str,
    port: u16,
    user: Option<&str>,
    mail_from: &str,
    mail: &str,
) -> std::process::Output {
    require_tool("curl");
    let file = d.path().join("curl-mail.txt");
    std::fs::write(&file, mail).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--ssl-reqd"])
        .arg("--cacert")
        .arg(d.cert_path())
        .args(["--resolve", &format!("{HOSTNAME}:{port}:127.0.0.1")])
        .arg(format!("{url_scheme}://{HOSTNAME}:{port}"))
        .args(["--mail-from", mail_from, "--mail-rcpt", BOB])
        .arg("--upload-file")
        .arg(&file);
    if let Some(u) = user {
        cmd.args(["--user", &format!("{u}:{PASSWORD}")]);
    }
    cmd.output().unwrap()
}

#[test]
fn curl_submits_over_starttls_and_implicit_tls() {
    let (d, s) = setup(|_| {});
    let mail =
        "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: curl\r\n\r\nvia curl\r\n";
    let out = curl(&d, "smtp", s.port("submission"), Some(ALICE), ALICE, mail);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = curl(&d, "smtps", s.port("submissions"), Some(ALICE), ALICE, mail);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without credentials the server refuses MAIL (530), and curl reports failure.
    let out = curl(&d, "smtp", s.port("submission"), None, ALICE, mail);
    assert!(!out.status.success());
    // Nor may anyone claim alice's address on port 25 without AUTH (550 5.7.1).
    let out = curl(&d, "smtp", s.port("smtp"), None, ALICE, mail);
    assert!(!out.status.success());
    // --ssl-reqd also works against port 25 (STARTTLS is offered there).
    let inbound =
        "From: carol@remote.test\r\nTo: bob@example.test\r\nSubject: curl\r\n\r\nvia curl\r\n";
    let out = curl(
        &d,
        "smtp",
        s.port("smtp"),
        None,
        "carol@remote.test",
        inbound,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 3);
    assert!(inbox[..2].iter().all(|m| m.ends_with(mail.as_bytes())));
    assert!(inbox[2].ends_with(inbound.as_bytes()));
    assert!(String::from_utf8_lossy(&inbox[0]).contains(" with ESMTPSA id "));
    assert!(String::from_utf8_lossy(&inbox[2]).contains(" with ESMTPS id "));
}

/// `openssl s_client -starttls smtp`; returns (success, stdout + stderr).
fn s_client(d: &DataDir, port: u16, extra: &[&str]) -> (bool, String) {
    require_tool("openssl");
    let mut child = Command::new("openssl")
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-servername",
            HOSTNAME,
            "-verify_return_error",
            "-showcerts",
        ])
        .arg("-CAfile")
        .arg(d.cert_path())
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"QUIT\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn first_pem(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start;
    text[start..end].split_whitespace().collect()
}

#[test]
fn openssl_starttls_versions_and_certificate() {
    let (d, s) = setup(|_| {});
    for listener in ["smtp", "submission"] {
        let port = s.port(listener);
        let (ok, out) = s_client(&d, port, &["-tls1_3"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("Protocol  : TLSv1.3") || out.contains("TLSv1.3"),
            "{out}"
        );
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert_eq!(first_pem(&out), first_pem(&d.cert_pem()));
        let (ok, out) = s_client(&d, port, &["-tls1_2"]);
        assert!(ok, "TLS 1.2 is the floor: {out}");
        // Security level 0 lets this OpenSSL offer TLS 1.1, so only our server refuses.
        let (ok, out) = s_client(&d, port, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(!ok, "TLS 1.1 must be refused: {out}");
    }
}

#[test]
fn sighup_reloaded_certificate_is_seen_by_new_starttls_sessions() {
    let (d, s) = setup(|_| {});
    let (ok, before) = s_client(&d, s.port("smtp"), &[]);
    assert!(ok, "{before}");
    let old = first_pem(&d.cert_pem());
    assert_eq!(first_pem(&before), old);
    // A session that is already up keeps working across the reload.
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    assert!(c.cmd("STARTTLS").starts_with("220 "));
    let mut t = upgrade(&d, c);

    let out = d.cli(&["cert", "selfsigned", "--force"]);
    assert!(out.status.success());
    s.signal(libc::SIGHUP);
    s.wait_log("certificate reloaded", Duration::from_secs(10));
    let new = first_pem(&d.cert_pem());
    assert_ne!(new, old);
    let (ok, after) = s_client(&d, s.port("smtp"), &[]);
    assert!(ok, "{after}");
    assert_eq!(
        first_pem(&after),
        new,
        "new STARTTLS sessions see the new certificate"
    );
    assert_eq!(code(&t.cmd("EHLO client.test")), "250");
    assert_eq!(
        t.cmd("QUIT"),
        "221 2.0.0 mail.example.test closing connection"
    );
}

// ---------------------------------------------------------------------------------
// Raw sockets: injection, smuggling, bad input, limits
// ---------------------------------------------------------------------------------

#[test]
fn starttls_command_injection_is_discarded() {
    let (d, s) = setup(|_| {});
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    // One write: STARTTLS plus a command pipelined in the clear.
    c.send(b"STARTTLS\r\nEHLO injected.test\r\n");
    assert_eq!(c.reply(), "220 2.0.0 Ready to start TLS");
    let mut t = upgrade(&d, c);
    // Were the injected EHLO executed inside TLS, its 250- lines would come first.
    assert_eq!(t.cmd("NOOP"), "250 2.0.0 OK");
    // And the session was reset: MAIL needs a new EHLO.
    assert!(t.cmd("MAIL FROM:<x@remote.test>").starts_with("503 5.5.1 "));
    assert_eq!(code(&t.cmd("EHLO client.test")), "250");
    let log = protocol_log(&d, "smtp");
    assert!(
        log.contains("discarded 20 octets sent before the handshake"),
        "{log}"
    );
}

/// Opens a transaction to bob on port 25 and sends DATA.
fn start_data(addr: SocketAddr) -> Raw<TcpStream> {
    let mut c = connect(addr);
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("354 "));
    c
}

fn assert_smuggling_refused(payload: &[u8]) {
    let (d, s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    c.send(payload);
    let r = c.reply();
    assert!(
        r.starts_with("554 5.6.0 Message refused: bare LF or CR"),
        "{r}"
    );
    // Exactly one reply: the smuggled commands were never run.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert!(stored(d.path(), BOB, "INBOX").is_empty(), "nothing stored");
    assert!(
        stored(d.path(), ALICE, "INBOX").is_empty(),
        "nothing smuggled"
    );
}

#[test]
fn smuggling_with_lf_dot_lf_is_refused() {
    assert_smuggling_refused(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<admin@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFrom: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n");
}

#[test]
fn smuggling_with_cr_dot_cr_is_refused() {
    assert_smuggling_refused(b"Subject: one\r\n\r\nbody\r.\rMAIL FROM:<admin@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nFrom: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n");
}

#[test]
fn smuggling_with_lf_dot_crlf_is_refused() {
    assert_smuggling_refused(b"Subject: one\r\n\r\nbody\n.\r\nMAIL FROM:<admin@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n");
}

#[test]
fn nul_octets_are_refused() {
    let (d, s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    c.send(b"Subject: a\0b\r\n\r\nx\r\n.\r\n");
    assert_eq!(
        c.reply(),
        "554 5.6.0 Message refused: NUL octets are not allowed"
    );
    assert!(c.cmd("NO\0OP").starts_with("500 5.5.2 "));
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
}

#[test]
fn overlong_command_lines_get_500_5_5_2() {
    let (d, s) = setup(|_| {});
    let mut c = connect(s.addr("smtp"));
    // 998 octets + CRLF = 1000: allowed.
    let ok = format!("NOOP {}", "a".repeat(993));
    assert_eq!(ok.len(), 998);
    assert_eq!(c.cmd(&ok), "250 2.0.0 OK");
    let long = format!("NOOP {}", "a".repeat(994));
    assert!(c.cmd(&long).starts_with("500 5.5.2 Line too long"));
    // A huge line (more than any buffer) is discarded too, and the session goes on.
    let huge = format!("NOOP {}", "a".repeat(200_000));
    assert!(c.cmd(&huge).starts_with("500 5.5.2 Line too long"));
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    // Inside DATA a line beyond 64 KiB gets the message refused, after its end.
    drop(c);
    let mut c = start_data(s.addr("smtp"));
    c.send(
        format!(
            "Subject: long\r\n\r\n{}\r\nend\r\n.\r\n",
            "b".repeat(70_000)
        )
        .as_bytes(),
    );
    assert_eq!(c.reply(), "554 5.6.0 Message refused: a line is too long");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
}

#[test]
fn undeclared_8bit_data_is_accepted_as_8bitmime() {
    let (d, s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    c.send("From: x@remote.test\r\nSubject: caf\u{e9}\r\n\r\nGr\u{fc}\u{df}e\r\n.\r\n".as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 "));
    c.send(
        "MAIL FROM:<x@remote.test> BODY=8BITMIME\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            .as_bytes(),
    );
    assert_eq!(code(&c.reply()), "250");
    assert_eq!(code(&c.reply()), "250");
    assert_eq!(code(&c.reply()), "354");
    c.send("From: x@remote.test\r\nSubject: caf\u{e9}\r\n\r\nx\r\n.\r\n".as_bytes());
    assert!(c.reply().starts_with("250 2.0.0 "));
    // SMTPUTF8 addresses need SMTPUTF8.
    assert!(c
        .cmd("MAIL FROM:<j\u{f6}rg@remote.test>")
        .starts_with("553 5.6.7 "));
    assert!(c
        .cmd("MAIL FROM:<j\u{f6}rg@remote.test> SMTPUTF8")
        .starts_with("250 "));
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 2);
    assert!(inbox[0].ends_with("Gr\u{fc}\u{df}e\r\n".as_bytes()));
    let m = crate::observe::scrape(&s);
    assert_eq!(
        crate::observe::metric(&m, "bulwark_smtp_undeclared_8bit_total{listener=\"smtp\"}"),
        Some(1.0),
        "only the undeclared one is counted"
    );
}

/// msmtp (1.8) as a user runs it: it never declares BODY=8BITMIME.
fn msmtp(d: &DataDir, port: u16, starttls: bool, mail: &str) -> std::process::Output {
    require_tool("msmtp");
    let mut child = Command::new("msmtp")
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg("--tls=on")
        .arg(format!(
            "--tls-starttls={}",
            if starttls { "on" } else { "off" }
        ))
        .arg(format!("--tls-trust-file={}", d.cert_path().display()))
        .arg(format!("--tls-host-override={HOSTNAME}"))
        .arg("--auth=plain")
        .arg(format!("--user={ALICE}"))
        .arg(format!("--passwordeval=printf %s '{PASSWORD}'"))
        .arg(format!("--from={ALICE}"))
        .arg(BOB)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(mail.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Issue: "Grüße" from msmtp or curl, which cannot declare BODY=8BITMIME, was refused
/// with 554 on 587 and 465. Both deliver now, byte for byte, and are counted.
#[test]
fn msmtp_and_curl_deliver_utf8_bodies_on_587_and_465() {
    let (d, s) = setup(|_| {});
    let mail = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: greetings\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n";
    for (what, out) in [
        ("msmtp 587", msmtp(&d, s.port("submission"), true, mail)),
        ("msmtp 465", msmtp(&d, s.port("submissions"), false, mail)),
        (
            "curl 587",
            curl(&d, "smtp", s.port("submission"), Some(ALICE), ALICE, mail),
        ),
        (
            "curl 465",
            curl(&d, "smtps", s.port("submissions"), Some(ALICE), ALICE, mail),
        ),
    ] {
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 4);
    for m in &inbox {
        assert!(
            m.ends_with("\r\n\r\nGr\u{fc}\u{df}e aus K\u{f6}ln\r\n".as_bytes()),
            "{}",
            String::from_utf8_lossy(m)
        );
    }
    let m = crate::observe::scrape(&s);
    for l in ["submission", "submissions"] {
        assert_eq!(
            crate::observe::metric(
                &m,
                &format!("bulwark_smtp_undeclared_8bit_total{{listener=\"{l}\"}}")
            ),
            Some(2.0),
            "{l}"
        );
    }
}

#[test]
fn invalid_addresses_are_refused() {
    let (d, s) = setup(|c| c["smtp"]["max_errors"] = toml_edit::value(50));
    let mut c = connect(s.addr("smtp"));
    assert!(
        c.cmd("MAIL FROM:<x@remote.test>").starts_with("503 5.5.1 "),
        "EHLO first"
    );
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    assert!(c.cmd("MAIL FROM:<no-at-sign>").starts_with("501 5.1.7 "));
    assert!(c.cmd("MAIL FROM:<a@>").starts_with("501 5.1.7 "));
    assert!(c.cmd("MAIL FROM:x@remote.test").starts_with("501 5.5.2 "));
    assert_eq!(code(&c.cmd("MAIL FROM:<x@remote.test>")), "250");
    assert!(c
        .cmd("RCPT TO:<bob@@example.test>")
        .starts_with("501 5.1.3 "));
    assert!(c
        .cmd("RCPT TO:<bob@exa_mple.test>")
        .starts_with("501 5.1.3 "));
    // `user add` gave the domain's first account the postmaster alias.
    assert_eq!(
        code(&c.cmd("RCPT TO:<Postmaster>")),
        "250",
        "RFC 5321 §4.5.1"
    );
    // A new transaction, so the recipient is looked up again.
    assert_eq!(code(&c.cmd("RSET")), "250");
    assert_eq!(code(&c.cmd("MAIL FROM:<x@remote.test>")), "250");
    let del = d.cli(&["alias", "del", "postmaster@example.test"]);
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let r = c.cmd("RCPT TO:<Postmaster>");
    assert!(r.starts_with("550 5.1.1 "), "no postmaster: {r}");
    d.cli(&["alias", "add", "postmaster@example.test", ALICE]);
    assert_eq!(
        code(&c.cmd("RCPT TO:<Postmaster>")),
        "250",
        "RFC 5321 §4.5.1"
    );
    assert!(c
        .cmd("RCPT TO:<nobody@example.test>")
        .starts_with("550 5.1.1 "));
    assert!(c
        .cmd("RCPT TO:<x@elsewhere.test>")
        .starts_with("554 5.7.1 "));
    // DSN's NOTIFY is offered now (RFC 3461); RRVS (RFC 7293) is not.
    assert!(c
        .cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")
        .starts_with("250 "));
    assert!(c
        .cmd("RCPT TO:<bob@example.test> RRVS=2014-04-03T23:01:00Z")
        .starts_with("555 5.5.4 "));
}

#[test]
fn pipelining_abuse_is_answered_tarpitted_and_cut_off() {
    let (d, s) = setup(|c| c["smtp"]["max_errors"] = toml_edit::value(6));
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    // A client that pipelines DATA and the body although every RCPT failed: DATA is
    // refused and the body lines are commands — errors, slower and slower, then 421.
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\nSubject: x\r\n\r\nline one\r\nline two\r\nline three\r\n.\r\nQUIT\r\n");
    let mut replies = Vec::new();
    loop {
        let r = c.reply();
        if r.is_empty() {
            break;
        }
        replies.push(r);
    }
    assert_eq!(replies[0], "250 2.1.0 Sender OK");
    assert!(replies[1].starts_with("550 5.1.1 "));
    assert!(replies[2].starts_with("554 5.5.1 No valid recipients"));
    let last = replies.last().unwrap();
    assert!(
        last.starts_with("421 4.7.0 ") && last.contains("Too many errors"),
        "{replies:?}"
    );
    assert!(
        !replies.iter().any(|r| r.starts_with("221")),
        "QUIT was never reached: {replies:?}"
    );
    let m = crate::observe::scrape(&s);
    assert_eq!(
        crate::observe::metric(&m, "bulwark_smtp_error_limit_total{listener=\"smtp\"}"),
        Some(1.0)
    );
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
    // The server keeps serving others.
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
}

#[test]
fn disconnect_mid_data_stores_nothing_and_others_go_on() {
    let (d, s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    c.send(b"Subject: cut\r\n\r\nhalf a message\r\n");
    drop(c);
    // Meanwhile, and afterwards, other sessions work.
    let mut c = start_data(s.addr("smtp"));
    c.send(b"From: x@remote.test\r\nSubject: whole\r\n\r\nok\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 "));
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].ends_with(b"From: x@remote.test\r\nSubject: whole\r\n\r\nok\r\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !protocol_log(&d, "smtp")
        .contains("client closed the connection during DATA; nothing stored")
    {
        assert!(Instant::now() < deadline, "{}", protocol_log(&d, "smtp"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn disconnect_mid_bdat_stores_nothing() {
    let (d, s) = setup(|_| {});
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 1000 LAST\r\nSubject: cut\r\n");
    assert_eq!(code(&c.reply()), "250");
    assert_eq!(code(&c.reply()), "250");
    drop(c);
    // BDAT done right works.
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    let body = b"From: x@remote.test\r\nSubject: chunks\r\n\r\nbody\r\n";
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 10\r\n");
    c.send(&body[..10]);
    c.send(format!("BDAT {} LAST\r\n", body.len() - 10).as_bytes());
    c.send(&body[10..]);
    let replies: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert_eq!(replies[2], "250 2.0.0 10 octets received");
    assert!(
        replies[3].starts_with("250 2.0.0 Message accepted"),
        "{replies:?}"
    );
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].ends_with(body));
}

#[test]
fn limits_size_recipients_and_connections() {
    let (d, s) = setup(|c| {
        c["smtp"]["max_message_size"] = toml_edit::value(2048);
        c["smtp"]["max_recipients"] = toml_edit::value(2);
        c["listeners"]["smtp"]["max_connections_per_ip"] = toml_edit::value(2);
    });
    let mut c = connect(s.addr("smtp"));
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("250-SIZE 2048"), "{ehlo}");
    assert!(c
        .cmd("MAIL FROM:<x@remote.test> SIZE=4096")
        .starts_with("552 5.3.4 "));
    assert_eq!(code(&c.cmd("MAIL FROM:<x@remote.test>")), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<bob@example.test>")), "250");
    assert_eq!(code(&c.cmd("RCPT TO:<alice@example.test>")), "250");
    assert!(c
        .cmd("RCPT TO:<postmaster@example.test>")
        .starts_with("452 4.5.3 "));
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(format!("Subject: big\r\n\r\n{}.\r\n", "0123456789\r\n".repeat(300)).as_bytes());
    assert!(c.reply().starts_with("552 5.3.4 "));
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
    // Per-IP connection limit: the third concurrent connection gets 421 4.7.0.
    let _second = connect(s.addr("smtp"));
    let mut third = TcpStream::connect(s.addr("smtp")).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = String::new();
    third.read_to_string(&mut buf).unwrap();
    assert_eq!(
        buf,
        "421 4.7.0 mail.example.test Too many connections, try again later\r\n"
    );
}

#[test]
fn command_timeout_closes_with_421() {
    let (_d, s) = setup(|c| c["smtp"]["command_timeout_secs"] = toml_edit::value(1));
    let mut c = connect(s.addr("smtp"));
    assert!(
        c.reply().starts_with("421 4.4.2 "),
        "silent client is cut off"
    );
    assert!(c.closed());
}

// ---------------------------------------------------------------------------------
// Per-host accept policy and the brute-force limiter
// ---------------------------------------------------------------------------------

fn policy(require: &str) -> impl FnOnce(&mut toml_edit::DocumentMut) + '_ {
    move |c| {
        let mut t = toml_edit::Table::new();
        t["network"] = toml_edit::value("127.0.0.0/8");
        t["require"] = toml_edit::value(require);
        let mut a = toml_edit::ArrayOfTables::new();
        a.push(t);
        c["smtp"]["accept_policy"] = toml_edit::Item::ArrayOfTables(a);
    }
}

#[test]
fn accept_policy_tls_network_must_starttls() {
    let (d, s) = setup(policy("tls"));
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
s.ehlo("partner.test")
print(s.docmd("MAIL", "FROM:<x@partner.test>"))
s.starttls(context=ctx)
s.ehlo("partner.test")
assert not s.has_extn("auth")
assert s.sendmail("x@partner.test", ["bob@example.test"], b"From: x@partner.test\r\nSubject: partner\r\n\r\nx\r\n") == {}
s.quit()
"#,
    );
    assert!(
        out.starts_with("(530, b'5.7.0 Must issue a STARTTLS command first')"),
        "{out}"
    );
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
}

#[test]
fn accept_policy_auth_network_must_authenticate() {
    let (d, s) = setup(policy("auth"));
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
s.ehlo("office.test")
assert not s.has_extn("auth"), "AUTH only after TLS"
print(s.docmd("MAIL", "FROM:<alice@example.test>"))
s.starttls(context=ctx)
s.ehlo("office.test")
assert "PLAIN" in s.esmtp_features["auth"]
print(s.docmd("MAIL", "FROM:<alice@example.test>"))
s.login("alice@example.test", PASSWORD)
msg = b"From: alice@example.test\r\nSubject: relay\r\n\r\nx\r\n"
assert s.sendmail("alice@example.test", ["someone@remote.test"], msg) == {}
s.quit()
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("(530, b'5.7.0 Must issue a STARTTLS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("(530, b'5.7.0 Authentication required"),
        "{out}"
    );
    let q = queued(d.path());
    assert_eq!(q.len(), 1, "authenticated relay is queued");
    assert_eq!(q[0].0, vec!["someone@remote.test".to_string()]);
}

#[test]
fn brute_force_is_refused_then_blocked() {
    let (d, s) = setup(|c| {
        c["auth"]["block_ip_after_failures"] = toml_edit::value(3);
        c["auth"]["slow_after_failures"] = toml_edit::value(1);
    });
    let out = py(
        &d,
        &s,
        r#"
s = smtplib.SMTP_SSL(host, int(ports["submissions"]), context=ctx, timeout=30)
s.ehlo("client.test")
def plain(user, pw):
    return s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode())
print(plain("alice@example.test", "wrong password"))
print(plain("nobody@example.test", "wrong password"))
print(plain("alice@example.test", "also wrong"))
print(plain("alice@example.test", PASSWORD))
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "(535, b'5.7.8 Authentication credentials invalid')"
    );
    assert_eq!(lines[1], lines[0], "unknown users get the same answer");
    assert_eq!(lines[2], lines[0]);
    assert_eq!(
        lines[3], "(454, b'4.7.0 Too many failed authentication attempts, try again later')",
        "blocked even with the right password"
    );
    assert!(s
        .log()
        .contains("authentication refused: too many failures"));
    let log = protocol_log(&d, "submissions");
    assert!(log.contains("authentication failed (PLAIN)"), "{log}");
}

// ---------------------------------------------------------------------------------
// Load and crash durability
// ---------------------------------------------------------------------------------

/// A Python loader: `threads` connections, each sending `per` messages to bob on
/// port 25; prints the Message-ID of each message as soon as it got 250.
const PY_LOADER: &str = r#"
import threading
threads, per = int(ports["threads"]), int(ports["per"])
lock = threading.Lock()
def run(t):
    try:
        s = smtplib.SMTP(host, int(ports["smtp"]), timeout=60)
        s.ehlo("load.test")
        for i in range(per):
            mid = "load-%d-%d@remote.test" % (t, i)
            msg = ("From: load@remote.test\r\nTo: bob@example.test\r\nSubject: %d/%d\r\n"
                   "Message-ID: <%s>\r\n\r\n%s\r\n" % (t, i, mid, "x" * 2000)).encode()
            s.sendmail("load@remote.test", ["bob@example.test"], msg)
            with lock:
                print(mid, flush=True)
        s.quit()
    except Exception as e:
        with lock:
            print("ERROR", t, type(e).__name__, flush=True)
ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
"#;

fn spawn_loader(d: &DataDir, s: &Server, threads: u32, per: u32) -> std::process::Child {
    require_tool("python3");
    Command::new("python3")
        .arg("-u")
        .arg("-c")
        .arg(format!("{PY_PRELUDE}\n{PY_LOADER}"))
        .arg("127.0.0.1")
        .arg(d.cert_path())
        .arg(format!("smtp={}", s.port("smtp")))
        .arg(format!("threads={threads}"))
        .arg(format!("per={per}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn message_ids(messages: &[Vec<u8>]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let start = text.find("\r\nMessage-ID: <").expect("Message-ID") + 15;
            let end = text[start..].find('>').unwrap() + start;
            text[start..end].to_string()
        })
        .collect()
}

#[test]
fn load_2000_messages_over_20_connections_each_stored_once() {
    let (d, s) = setup(|_| {});
    let child = spawn_loader(&d, &s, 20, 100);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("ERROR"), "{stdout}");
    let mut acked: Vec<String> = stdout.lines().map(str::to_string).collect();
    assert_eq!(acked.len(), 2000);
    let mut ids = message_ids(&stored(d.path(), BOB, "INBOX"));
    ids.sort();
    acked.sort();
    assert_eq!(ids, acked, "every accepted message stored exactly once");
}

#[test]
fn sigkill_during_load_loses_no_acknowledged_message() {
    let (d, mut s) = setup(|_| {});
    let mut child = spawn_loader(&d, &s, 10, 200);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let acked = acked.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                if !line.starts_with("ERROR") {
                    acked.lock().unwrap().push(line);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "load did not get going");
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill9();
    let _ = child.wait();
    reader.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 300 && acked.len() < 2000,
        "killed mid-load: {}",
        acked.len()
    );

    let s2 = Server::start(&d);
    let ids = message_ids(&stored(d.path(), BOB, "INBOX"));
    for id in &acked {
        let n = ids.iter().filter(|x| *x == id).count();
        assert_eq!(n, 1, "{id} acknowledged but stored {n} times");
    }
    // At most the messages in flight at the kill were stored without their 250.
    assert!(
        ids.len() <= acked.len() + 10,
        "{} stored, {} acked",
        ids.len(),
        acked.len()
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no message stored twice");
    // And the restarted server takes mail again.
    let mut c = connect(s2.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
}

// ---------------------------------------------------------------------------------
// Review findings: MIME nesting, memory budget, header hygiene, HELO, local senders,
// error counting, BDAT timeouts, the log after a refused AUTH, queue parameters,
// timeouts, connection caps, metrics, graceful shutdown
// ---------------------------------------------------------------------------------

/// A Python helper: `nested(kind, levels)` builds a deeply nested message.
const PY_NESTED: &str = r#"
def nested(kind, levels, sender):
    head = ("From: %s\r\nTo: bob@example.test\r\nSubject: deep\r\n" % sender).encode()
    if kind == "multipart":
        body = b"".join(b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i) for i in range(levels))
        body += b"Content-Type: text/plain\r\n\r\nhello\r\n"
        body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    else:
        body = b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\n" * levels + b"Subject: end\r\n\r\nbody\r\n"
    return head + body
def data_reply(s, sender, msg):
    try:
        s.sendmail(sender, ["bob@example.test"], msg)
        return "250"
    except smtplib.SMTPDataError as e:
        return "%d %s" % (e.smtp_code, e.smtp_error.decode())
"#;

#[test]
fn deeply_nested_mime_is_refused_on_25_and_587_and_the_server_keeps_running() {
    let (d, s) = setup(|_| {});
    let out = py(
        &d,
        &s,
        &format!(
            "{PY_NESTED}\n{}",
            r#"
m1, m2 = nested("multipart", 20000, "x@remote.test"), nested("message", 40000, "x@remote.test")
assert 1_000_000 < len(m1) < 2_500_000 and 1_000_000 < len(m2) < 2_500_000, (len(m1), len(m2))
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=60)
s.ehlo("client.test")
print(data_reply(s, "x@remote.test", m1))
print(data_reply(s, "x@remote.test", m2))
s.quit()
s = smtplib.SMTP(host, int(ports["submission"]), timeout=60)
s.starttls(context=ctx)
s.login("alice@example.test", PASSWORD)
for kind, n in [("multipart", 20000), ("message", 40000)]:
    print(data_reply(s, "alice@example.test", nested(kind, n, "alice@example.test")))
# Within the limit: delivered.
print(data_reply(s, "alice@example.test", nested("multipart", 20, "alice@example.test")))
s.quit()
"#
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    let refused = "554 5.6.0 Message refused: MIME nesting deeper than 100 levels";
    assert_eq!(lines, [refused, refused, refused, refused, "250"], "{out}");
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
    // Still serving.
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
}

#[test]
fn too_many_mime_parts_are_refused_on_25_and_587_and_the_server_keeps_running() {
    let (d, s) = setup(|c| c["smtp"]["max_mime_parts"] = toml_edit::value(100));
    let out = py(
        &d,
        &s,
        r#"
def parts(n, sender):
    m = "From: %s\r\nTo: bob@example.test\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" % sender
    m += "--B\r\n\r\nx\r\n" * n
    return (m + "--B--\r\n").encode()
def data_reply(s, sender, msg):
    try:
        s.sendmail(sender, ["bob@example.test"], msg)
        return "250"
    except smtplib.SMTPDataError as e:
        return "%d %s" % (e.smtp_code, e.smtp_error.decode())
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=60)
s.ehlo("client.test")
print(data_reply(s, "x@remote.test", parts(100, "x@remote.test")))
print(data_reply(s, "x@remote.test", parts(99, "x@remote.test")))
s.quit()
s = smtplib.SMTP(host, int(ports["submission"]), timeout=60)
s.starttls(context=ctx)
s.login("alice@example.test", PASSWORD)
print(data_reply(s, "alice@example.test", parts(200000, "alice@example.test")))
print(data_reply(s, "alice@example.test", parts(99, "alice@example.test")))
s.quit()
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    let refused = "552 5.3.4 Message refused: more than 100 MIME parts";
    assert_eq!(lines, [refused, "250", refused, "250"], "{out}");
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 2);
    let m = crate::observe::scrape(&s);
    assert!(
        m.lines()
            .any(|l| l.starts_with("bulwark_smtp_rejections_total{")
                && l.contains("reason=\"mime_parts\"")
                && l.contains("listener=\"smtp\"")
                && l.ends_with(" 1")),
        "{m}"
    );
}

#[test]
fn a_local_header_from_on_25_is_refused_by_default_and_tagged_when_configured() {
    let script = r#"
def attempt(header_from):
    s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
    s.ehlo("client.test")
    msg = b"From: " + header_from + b"\r\nTo: bob@example.test\r\nSubject: s\r\n\r\nx\r\n"
    try:
        s.sendmail("x@remote.test", ["bob@example.test"], msg)
        r = "250"
    except smtplib.SMTPDataError as e:
        r = "%d %s" % (e.smtp_code, e.smtp_error.decode())
    s.quit()
    return r
print(attempt(b"Alice <alice@example.test>"))
print(attempt(b"x@remote.test"))
"#;
    let (d, s) = setup(|_| {});
    let out = py(&d, &s, script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "550 5.7.1 Message refused: the From address is in a local domain; local users must authenticate (submission)",
            "250"
        ],
        "{out}"
    );
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
    // Tagged instead, and internal servers are exempt.
    let (d, s) = setup(|c| c["smtp"]["local_from_on_inbound"] = toml_edit::value("tag"));
    let out = py(&d, &s, script);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["250", "250"], "{out}");
    let inbox = stored(d.path(), BOB, "INBOX");
    let tagged =
        |m: &[u8]| String::from_utf8_lossy(m).contains("\r\nX-Bulwark-Local-From: outside\r\n");
    assert_eq!(inbox.iter().filter(|m| tagged(m)).count(), 1);
    let (d, s) = setup(|c| {
        let mut a = toml_edit::Array::new();
        a.push("127.0.0.0/8");
        c["senderauth"]["internal_servers"] = toml_edit::value(a);
    });
    let out = py(&d, &s, script);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["250", "250"], "{out}");
    assert!(stored(d.path(), BOB, "INBOX").iter().all(|m| !tagged(m)));
}

#[test]
fn every_header_field_we_would_add_is_stripped_from_inbound_mail() {
    let (d, s) = setup(|_| {});
    py(
        &d,
        &s,
        r#"
msg = (b"Authentication-Results: mail.example.test.; dkim=pass header.d=bank.test\r\n"
       b"authentication-results : MAIL.EXAMPLE.TEST ; dmarc=pass header.from=bank.test\r\n"
       b"Received-SPF: pass (mail.example.test: forged) client-ip=192.0.2.1\r\n"
       b"received-spf :\r\n\tpass\r\n"
       b"X-Bulwark-Auth-Warning: none\r\n"
       b"x-bulwark-local-from: inside\r\n"
       b"Authentication-Results: other.test; spf=pass\r\n"
       b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: forged\r\n\r\n"
       b"Received-SPF: pass (a body line stays)\r\n")
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
s.ehlo("client.test")
assert s.sendmail("x@remote.test", ["bob@example.test"], msg) == {}
s.quit()
"#,
    );
    let m = String::from_utf8(stored(d.path(), BOB, "INBOX").remove(0)).unwrap();
    let (head, body) = m.split_once("\r\n\r\n").unwrap();
    let lower = head.to_ascii_lowercase();
    for gone in [
        "mail.example.test.;",
        "mail.example.test ;",
        "received-spf",
        "x-bulwark-",
        "bank.test",
    ] {
        assert!(!lower.contains(gone), "{gone}: {m}");
    }
    assert!(
        head.contains("Authentication-Results: other.test; spf=pass"),
        "{m}"
    );
    assert_eq!(body, "Received-SPF: pass (a body line stays)\r\n");
}

#[test]
fn overlong_last_line_before_the_dot_is_answered_at_once() {
    let (d, s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    // The LAST line is beyond 64 KiB; its CRLF and the "." line end the message. A
    // reader that lost track of that line's ending would wait for more (30 s read
    // timeout here, then an empty reply).
    c.send(
        format!(
            "From: x@remote.test\r\nSubject: long\r\n\r\n{}\r\n.\r\n",
            "b".repeat(70_000)
        )
        .as_bytes(),
    );
    assert_eq!(c.reply(), "554 5.6.0 Message refused: a line is too long");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 OK");
    assert!(stored(d.path(), BOB, "INBOX").is_empty());
}

#[test]
fn inflight_budget_answers_452_while_other_sessions_hold_the_memory() {
    let (d, s) = setup(|c| {
        c["smtp"]["max_message_size"] = toml_edit::value(1_048_576);
        c["smtp"]["max_inflight_bytes"] = toml_edit::value(1_572_864);
    });
    let inflight = |s: &Server| {
        crate::observe::metric(&crate::observe::scrape(s), "bulwark_smtp_inflight_bytes")
            .unwrap_or(0.0)
    };
    assert_eq!(inflight(&s), 0.0);
    // A holds ~900 KB without finishing its message.
    let mut a = start_data(s.addr("smtp"));
    let line = format!("{}\r\n", "a".repeat(998));
    let part = format!(
        "From: x@remote.test\r\nSubject: a\r\n\r\n{}",
        line.repeat(900)
    );
    a.send(part.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(30);
    while inflight(&s) < 900_000.0 {
        assert!(Instant::now() < deadline, "A's data never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    // B's 800 KB message does not fit beside it: read to its end, refused, retried.
    let b_msg = format!(
        "From: y@remote.test\r\nSubject: b\r\n\r\n{}.\r\n",
        line.repeat(800)
    );
    let mut b = start_data(s.addr("smtp"));
    b.send(b_msg.as_bytes());
    assert_eq!(
        b.reply(),
        "452 4.3.1 Insufficient system resources, try again later"
    );
    assert_eq!(b.cmd("NOOP"), "250 2.0.0 OK", "the session goes on");
    // A finishes; B's retry now fits.
    a.send(b".\r\n");
    assert!(a.reply().starts_with("250 2.0.0 Message accepted"));
    b.send(b"MAIL FROM:<y@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    for _ in 0..3 {
        b.reply();
    }
    b.send(b_msg.as_bytes());
    assert!(b.reply().starts_with("250 2.0.0 Message accepted"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while inflight(&s) != 0.0 {
        assert!(Instant::now() < deadline, "memory never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = crate::observe::scrape(&s);
    assert_eq!(
        crate::observe::metric(
            &m,
            "bulwark_smtp_rejections_total{listener=\"smtp\",reason=\"inflight_budget\"}"
        ),
        Some(1.0)
    );
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 2);
}

#[test]
fn port_25_refuses_what_sender_checks_could_be_fooled_by() {
    let (d, s) = setup(|_| {});
    let out = py(
        &d,
        &s,
        r#"
def attempt(msg):
    s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
    s.ehlo("client.test")
    try:
        s.sendmail("x@remote.test", ["bob@example.test"], msg)
        r = "250"
    except smtplib.SMTPDataError as e:
        r = "%d %s" % (e.smtp_code, e.smtp_error.decode())
    s.quit()
    return r
# Two From fields: DMARC sees no single author domain; the user sees one of them.
print(attempt(b"From: ceo@bank.test\r\nFrom: x@remote.test\r\nSubject: pay\r\n\r\nx\r\n"))
print(attempt(b"To: bob@example.test\r\nSubject: no author\r\n\r\nx\r\n"))
print(attempt(b"From: x@remote.test\r\nSender: a@bank.test\r\nSender: b@bank.test\r\n\r\nx\r\n"))
# A non-header line in the header section: the DKIM/DMARC parser and IMAP disagree.
print(attempt(b"Subject: pay\r\nthis is no header\r\nFrom: ceo@bank.test\r\n\r\nx\r\n"))
print(attempt(b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: fine\r\n\r\nx\r\n"))
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "550 5.7.1 Message refused: exactly one From header field is required (RFC 5322 section 3.6)",
            "550 5.7.1 Message refused: exactly one From header field is required (RFC 5322 section 3.6)",
            "550 5.7.1 Message refused: at most one Sender header field is allowed (RFC 5322 section 3.6)",
            "554 5.6.0 Message refused: header line 2 is not a header field (RFC 5322 section 2.2)",
            "250",
        ],
        "{out}"
    );
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
}

#[test]
fn ehlo_needs_a_domain_or_address_literal_and_received_stays_parseable() {
    let (d, s) = setup(|_| {});
    let mut c = connect(s.addr("smtp"));
    for bad in ["EHLO x;", "HELO a\"b", "EHLO x(y)", "EHLO a_b.example"] {
        let r = c.cmd(bad);
        assert!(
            r.starts_with("501 5.5.4 Invalid EHLO/HELO argument"),
            "{bad}: {r}"
        );
    }
    assert!(c.cmd("MAIL FROM:<x@remote.test>").starts_with("503 5.5.1 "));
    assert_eq!(code(&c.cmd("EHLO [127.0.0.1]")), "250");
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n");
    for _ in 0..3 {
        c.reply();
    }
    c.send(b"From: x@remote.test\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 "));
    let m = String::from_utf8(stored(d.path(), BOB, "INBOX").remove(0)).unwrap();
    assert!(
        m.contains("\r\nReceived: from [127.0.0.1] ([127.0.0.1])\r\n"),
        "{m}"
    );
}

#[test]
fn unauthenticated_senders_in_our_domains_are_refused_on_25() {
    let script = r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
s.ehlo("client.test")
for sender in ["alice@example.test", "ALICE@Example.TEST", "", "x@remote.test"]:
    code, text = s.mail(sender)
    print(code, text.decode())
    s.rset()
s.quit()
"#;
    let (d, s) = setup(|_| {});
    let out = py(&d, &s, script);
    let lines: Vec<&str> = out.lines().collect();
    let refused = "550 5.7.1 Authentication required to send as a local address";
    assert_eq!(
        lines,
        [
            refused,
            refused,
            "250 2.1.0 Sender OK",
            "250 2.1.0 Sender OK"
        ],
        "{out}"
    );
    // Our own relays may, and a site can turn the rule off.
    for edit in [
        (|c: &mut toml_edit::DocumentMut| {
            let mut a = toml_edit::Array::new();
            a.push("127.0.0.0/8");
            c["senderauth"]["internal_servers"] = toml_edit::value(a);
        }) as fn(&mut toml_edit::DocumentMut),
        |c| c["smtp"]["reject_unauthenticated_local_senders"] = toml_edit::value(false),
    ] {
        let (d, s) = setup(edit);
        let out = py(&d, &s, script);
        assert!(out.lines().all(|l| l == "250 2.1.0 Sender OK"), "{out}");
    }
}

#[test]
fn recipient_limit_replies_do_not_close_the_session() {
    let (d, s) = setup(|c| c["smtp"]["max_recipients"] = toml_edit::value(2));
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    // 30 recipients in one batch: the limit answers 452 4.5.3 for 28 of them (more
    // than the default max_errors of 20), and the message still goes through.
    let mut batch = String::from("MAIL FROM:<x@remote.test>\r\n");
    batch += "RCPT TO:<bob@example.test>\r\nRCPT TO:<alice@example.test>\r\n";
    batch += &"RCPT TO:<postmaster@example.test>\r\n".repeat(28);
    batch += "DATA\r\n";
    c.send(batch.as_bytes());
    let replies: Vec<String> = (0..32).map(|_| c.reply()).collect();
    assert!(
        replies[3..31].iter().all(|r| r.starts_with("452 4.5.3 ")),
        "{replies:?}"
    );
    assert_eq!(code(&replies[31]), "354", "{replies:?}");
    c.send(b"From: x@remote.test\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 "));
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
}

#[test]
fn a_slow_bdat_chunk_is_not_cut_off_by_the_command_timeout() {
    let (d, s) = setup(|c| c["smtp"]["command_timeout_secs"] = toml_edit::value(2));
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    let body = format!(
        "From: x@remote.test\r\nSubject: slow\r\n\r\n{}",
        format!("{}\r\n", "s".repeat(98)).repeat(60)
    );
    c.send(
        format!(
            "MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT {} LAST\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(code(&c.reply()), "250");
    assert_eq!(code(&c.reply()), "250");
    // Six pieces, 0.6 s apart: 3 s for the chunk, more than the 2 s command timeout,
    // but never 2 s without progress.
    for piece in body.as_bytes().chunks(body.len().div_ceil(6)) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(600));
    }
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 Message accepted"), "{r}");
    assert!(stored(d.path(), BOB, "INBOX")[0].ends_with(body.as_bytes()));
    // A chunk that stalls is still cut off.
    c.send(b"MAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nBDAT 100 LAST\r\nFrom: x");
    assert_eq!(code(&c.reply()), "250");
    assert_eq!(code(&c.reply()), "250");
    assert!(c.reply().starts_with("421 4.4.2 "));
    assert!(c.closed());
}

#[test]
fn sasl_responses_after_a_refused_auth_never_reach_the_log() {
    let (d, s) = setup(|_| {});
    use base64::Engine;
    let b64 = |x: &str| base64::engine::general_purpose::STANDARD.encode(x);
    let plain = b64(&format!("\0{ALICE}\0{PASSWORD}"));
    // Port 25 has no AUTH; the client sends its response without waiting.
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    c.send(format!("AUTH PLAIN\r\n{plain}\r\nNOOP\r\n").as_bytes());
    assert!(c
        .reply()
        .starts_with("503 5.5.1 Authentication not available"));
    assert!(c.reply().starts_with("500 5.5.1 "));
    assert_eq!(c.reply(), "250 2.0.0 OK");
    // 587 before STARTTLS: 538, and LOGIN's two responses follow.
    let mut c = connect(s.addr("submission"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    c.send(
        format!(
            "AUTH LOGIN\r\n{}\r\n{}\r\nQUIT\r\n",
            b64(ALICE),
            b64(PASSWORD)
        )
        .as_bytes(),
    );
    assert!(c.reply().starts_with("538 5.7.11 "));
    assert!(c.reply().starts_with("500 5.5.1 "));
    assert!(c.reply().starts_with("500 5.5.1 "));
    assert!(c.reply().starts_with("221 "));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !protocol_log(&d, "submission").contains("221 2.0.0") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    for l in ["smtp", "submission"] {
        let log = protocol_log(&d, l);
        for secret in [&plain, &b64(ALICE), &b64(PASSWORD)] {
            assert!(!log.contains(secret.as_str()), "{l}: {log}");
        }
        assert!(log.contains("\"line\":\"***\""), "{l}: {log}");
    }
    assert!(protocol_log(&d, "smtp").contains("\"line\":\"NOOP\""));
}

#[test]
fn queued_messages_carry_8bitmime_and_smtputf8() {
    let (d, s) = setup(|_| {});
    py(
        &d,
        &s,
        r#"
s = smtplib.SMTP_SSL(host, int(ports["submissions"]), context=ctx, timeout=30)
s.login("alice@example.test", PASSWORD)
msg = "From: alice@example.test\r\nTo: j\u00f6rg@remote.test\r\nSubject: caf\u00e9\r\n\r\nx\r\n".encode()
assert s.sendmail("alice@example.test", ["j\u00f6rg@remote.test"], msg, mail_options=["BODY=8BITMIME", "SMTPUTF8"]) == {}
assert s.sendmail("alice@example.test", ["friend@remote.test"], b"From: alice@example.test\r\n\r\nx\r\n") == {}
s.quit()
"#,
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let params: Vec<bulwark_queue::DeliveryParams> = rt.block_on(async {
        let store = SqliteStore::open(&d.path().join("store")).unwrap();
        let q = store.queue_list().await.unwrap();
        store.close();
        q.into_iter().map(|e| e.params).collect()
    });
    assert_eq!(params.len(), 2);
    assert!(params[0].body_8bitmime && params[0].smtputf8, "{params:?}");
    // Submissions are DKIM-signed from the first start (init makes the keys): the
    // entry names the signing domain so a 7-bit conversion can sign again.
    assert_eq!(
        params[1],
        bulwark_queue::DeliveryParams {
            dkim_domain: Some("example.test".into()),
            ..Default::default()
        }
    );
}

#[test]
fn session_timeout_ends_even_a_busy_session() {
    let (_d, s) = setup(|c| c["smtp"]["session_timeout_secs"] = toml_edit::value(2));
    let mut c = connect(s.addr("smtp"));
    // A client that never pauses long enough for the command timeout.
    for _ in 0..200 {
        let r = c.cmd("NOOP");
        if r.starts_with("421 4.4.2 ") {
            assert!(c.closed());
            return;
        }
        assert_eq!(r, "250 2.0.0 OK");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the session outlived session_timeout_secs by far");
}

#[test]
fn total_connection_cap_and_the_implicit_tls_port() {
    let (_d, s) = setup(|c| {
        c["listeners"]["smtp"]["max_connections"] = toml_edit::value(2);
        c["listeners"]["submissions"]["max_connections"] = toml_edit::value(1);
    });
    let _one = connect(s.addr("smtp"));
    let _two = connect(s.addr("smtp"));
    let mut third = TcpStream::connect(s.addr("smtp")).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = String::new();
    third.read_to_string(&mut buf).unwrap();
    assert_eq!(
        buf,
        "421 4.7.0 mail.example.test Too many connections, try again later\r\n"
    );
    // On 465 TLS comes first, so there is no way to say 421: the connection is closed.
    let _tls = TcpStream::connect(s.addr("submissions")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut second = TcpStream::connect(s.addr("submissions")).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut bytes = Vec::new();
    second.read_to_end(&mut bytes).unwrap();
    assert!(bytes.is_empty(), "{bytes:?}");
    let m = crate::observe::scrape(&s);
    assert_eq!(
        crate::observe::metric(
            &m,
            "bulwark_connections_refused_total{listener=\"smtp\",reason=\"total\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        crate::observe::metric(
            &m,
            "bulwark_connections_refused_total{listener=\"submissions\",reason=\"total\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn auth_failures_and_throttling_show_in_metrics() {
    let (d, s) = setup(|c| {
        c["auth"]["block_ip_after_failures"] = toml_edit::value(3);
        c["auth"]["slow_after_failures"] = toml_edit::value(1);
    });
    let get = |m: &str, series: &str| crate::observe::metric(m, series).unwrap_or(0.0);
    let before = crate::observe::scrape(&s);
    let failure = "bulwark_auth_attempts_total{listener=\"submissions\",mechanism=\"PLAIN\",result=\"failure\"}";
    let throttled = "bulwark_auth_throttled_total{listener=\"submissions\",reason=\"ip\"}";
    let rejected = "bulwark_smtp_rejections_total{listener=\"submissions\",reason=\"auth_failed\"}";
    assert_eq!(get(&before, failure), 0.0);
    py(
        &d,
        &s,
        r#"
s = smtplib.SMTP_SSL(host, int(ports["submissions"]), context=ctx, timeout=30)
s.ehlo("client.test")
def plain(user, pw):
    return s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0%s\0%s" % (user, pw)).encode()).decode())[0]
assert [plain("alice@example.test", "wrong %d" % i) for i in range(3)] == [535, 535, 535]
assert plain("alice@example.test", PASSWORD) == 454
"#,
    );
    let after = crate::observe::scrape(&s);
    assert_eq!(get(&after, failure), 3.0, "{after}");
    assert_eq!(get(&after, rejected), 3.0, "{after}");
    assert!(get(&after, throttled) >= 1.0, "{after}");
}

#[test]
fn data_in_progress_finishes_during_the_sigterm_grace_period() {
    let (d, mut s) = setup(|_| {});
    let mut c = start_data(s.addr("smtp"));
    c.send(b"From: x@remote.test\r\nSubject: late\r\n\r\nfirst half\r\n");
    s.signal(libc::SIGTERM);
    // New connections are refused once the listeners are closed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(s.addr("smtp")).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The transfer in progress completes and is acknowledged...
    c.send(b"second half\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 Message accepted"), "{r}");
    // ...then the session is told the server is going away.
    assert!(c.reply().starts_with("421 4.3.2 "));
    let st = s.wait_exit(Duration::from_secs(40));
    assert!(st.success(), "{st}");
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].ends_with(b"\r\n\r\nfirst half\r\nsecond half\r\n"));
}

#[test]
fn a_client_that_stops_reading_replies_is_dropped() {
    let (_d, s) = setup(|c| {
        c["smtp"]["command_timeout_secs"] = toml_edit::value(2);
        // Hundreds of thousands of NOOPs are not worth logging.
        c["listeners"]["smtp"]["protocol_log"] = toml_edit::value(false);
    });
    let c = connect(s.addr("smtp"));
    let mut w = c.r.into_inner();
    // Pipeline NOOPs forever and never read: the replies pile up until our write
    // blocks; after the command timeout the server gives up on the client.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let batch = b"NOOP\r\n".repeat(10_000);
        let r = loop {
            if let Err(e) = w.write_all(&batch) {
                break e;
            }
        };
        let _ = done.send(r.kind());
    });
    let kind = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the server kept a client that does not read");
    assert!(
        matches!(
            kind,
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
    let m = crate::observe::scrape(&s);
    assert_eq!(
        crate::observe::metric(&m, "bulwark_smtp_timeouts_total{listener=\"smtp\"}"),
        Some(1.0)
    );
}

/// Backscatter: an alias that only forwards to a domain accepting no mail (null MX)
/// is refused at RCPT on port 25 (556 5.1.10), so the queue never has to send a
/// failure notice to a sender that may be forged. A good recipient in the same
/// transaction is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_alias_to_a_null_mx_domain_is_refused_at_rcpt() {
    let dns = bulwark_dns::testing::TestDns::start().await;
    dns.add_mx("nomail.test", 0, ".");
    let at = dns.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let d = DataDir::init();
        d.add_user(BOB);
        d.edit_config(|c| {
            c["senderauth"]["enabled"] = toml_edit::value(true);
            let mut a = toml_edit::Array::new();
            a.push(at.as_str());
            c["dns"]["resolvers"] = toml_edit::value(a);
        });
        assert!(d
            .cli(&["alias", "add", "gone@example.test", "x@nomail.test"])
            .status
            .success());
        let s = Server::start(&d);
        let out = py(
            &d,
            &s,
            r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=30)
s.ehlo("client.test")
print(s.mail("x@remote.test")[0])
for rcpt in ["gone@example.test", "bob@example.test"]:
    code, text = s.rcpt(rcpt)
    print(code, text.decode())
s.quit()
"#,
        );
        (out, d)
    })
    .await
    .unwrap();
    let lines: Vec<&str> = out.0.lines().collect();
    assert_eq!(
        lines,
        [
            "250",
            "556 5.1.10 This address forwards to a domain that accepts no mail (null MX, RFC 7505)",
            "250 2.1.5 Recipient OK"
        ],
        "{}",
        out.0
    );
}

/// A DMARC record that cannot be looked up is a temporary failure and says so: it
/// once read "rejected by the DMARC policy of remote.test (p=none)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dmarc_lookup_failure_says_try_again_not_rejected_by_policy() {
    let dns = bulwark_dns::testing::TestDns::start().await;
    dns.add_txt("remote.test", "v=spf1 ip4:127.0.0.0/8 -all");
    dns.servfail("_dmarc.remote.test");
    let at = dns.addr().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let d = DataDir::init();
        d.add_user(BOB);
        d.edit_config(|c| {
            c["senderauth"]["enabled"] = toml_edit::value(true);
            let mut a = toml_edit::Array::new();
            a.push(at.as_str());
            c["dns"]["resolvers"] = toml_edit::value(a);
        });
        let s = Server::start(&d);
        py(
            &d,
            &s,
            r#"
s = smtplib.SMTP(host, int(ports["smtp"]), timeout=60)
s.ehlo("client.test")
try:
    s.sendmail("x@remote.test", ["bob@example.test"], b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: s\r\n\r\nx\r\n")
    print("250")
except smtplib.SMTPDataError as e:
    print("%d %s" % (e.smtp_code, e.smtp_error.decode()))
s.quit()
"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        out.trim(),
        "451 4.7.1 DMARC: could not look up the DMARC record of remote.test (temperror); try again later",
        "{out}"
    );
}

/// Issue: `<a@[192.0.2.1]>` got 501 (RFC 5321 §4.1.3 allows address literals), and a
/// quoted local part lost its quotes (`"bob@example.test>"@attacker.test` was stored
/// as `Return-Path: <bob@example.test>@attacker.test>`).
#[test]
fn address_literals_and_quoted_local_parts_on_the_wire() {
    let (d, s) = setup(|_| {});
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    let r = c.cmd("MAIL FROM:<\"bob@example.test>\"@attacker.test>");
    assert!(r.starts_with("553 5.1.7 "), "{r}");
    assert_eq!(code(&c.cmd("MAIL FROM:<\"a b\"@[192.0.2.1]>")), "250");
    // This server's own address (the one the client connected to) is local...
    let ours = format!("RCPT TO:<bob@[{}]>", s.addr("smtp").ip());
    assert_eq!(code(&c.cmd(&ours)), "250", "{ours}");
    // ...any other literal is not ours to deliver: no relay.
    let r = c.cmd("RCPT TO:<bob@[IPv6:2001:db8::25]>");
    assert!(r.starts_with("554 5.7.1 "), "{r}");
    assert_eq!(code(&c.cmd("DATA")), "354");
    c.send(b"From: x@remote.test\r\nSubject: literal\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250 2.0.0 "));
    let m = stored(d.path(), BOB, "INBOX").remove(0);
    assert!(
        m.starts_with(b"Return-Path: <\"a b\"@[192.0.2.1]>\r\n"),
        "{}",
        String::from_utf8_lossy(&m)
    );
}

/// Issue 15 (low): a 21-digit SIZE= was accepted, replies carried `§`, and 102
/// duplicate RCPTs passed a limit of 100.
#[test]
fn numbers_are_bounded_replies_are_ascii_and_duplicates_count() {
    let (_d, s) = setup(|c| c["smtp"]["max_recipients"] = toml_edit::value(100));
    let mut c = connect(s.addr("smtp"));
    assert_eq!(code(&c.cmd("EHLO client.test")), "250");
    let r = c.cmd("MAIL FROM:<x@remote.test> SIZE=999999999999999999999");
    assert!(r.starts_with("501 5.5.4 "), "{r}");
    let r = c.cmd("EHLO bad_name!");
    assert!(
        r.is_ascii() && r.contains("RFC 5321 section 4.1.1.1"),
        "{r}"
    );
    assert_eq!(code(&c.cmd("MAIL FROM:<x@remote.test>")), "250");
    c.send("RCPT TO:<bob@example.test>\r\n".repeat(102).as_bytes());
    let codes: Vec<String> = (0..102).map(|_| code(&c.reply()).to_string()).collect();
    assert_eq!(
        codes.iter().filter(|c| *c == "250").count(),
        100,
        "{codes:?}"
    );
    assert_eq!(&codes[100..], ["452", "452"]);
}
