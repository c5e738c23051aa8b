//! Outbound delivery: the real server delivers queued mail to SMTP receivers on
//! loopback (a scriptable sink; see `outbound/sink.rs`), finding them through a DNS
//! test server, with the TLS level, credentials and retry behaviour each test sets.
//!
//! Most tests put messages in the queue through the store itself (`Store::ingest` with
//! a queue entry, as the SMTP server does) to choose the envelope freely; the relay
//! test submits with Python's smtplib to one Bulwark and receives on a second one.

mod sink;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bulwark_dns::testing::TestDns;
use bulwark_store::{Ingest, NewQueueEntry, QueueId, SharedStore, SqliteStore};
use sink::{acceptor_for, Behaviour, Sink};
use toml_edit::value;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);

struct Lab {
    rt: tokio::runtime::Runtime,
    dns: TestDns,
    data: DataDir,
    store: OnceLock<SharedStore>,
}

fn body(subject: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: <someone@remote.test>\r\nSubject: {subject}\r\nMessage-ID: <{subject}.{}@example.test>\r\n\r\nHello from the outbound tests.\r\n.a line starting with a dot\r\nBye.\r\n",
        std::process::id()
    )
    .into_bytes()
}

impl Lab {
    fn new() -> Lab {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dns = rt.block_on(TestDns::start());
        let data = DataDir::init();
        data.add_user("alice@example.test");
        let resolver = dns.addr().to_string();
        data.edit_config(|c| {
            let mut a = toml_edit::Array::new();
            a.push(resolver);
            c["dns"]["resolvers"] = value(a);
            let o = &mut c["outbound"];
            o["retry_initial_secs"] = value(1);
            o["retry_max_secs"] = value(2);
            o["scan_interval_secs"] = value(1);
            o["connect_timeout_secs"] = value(5);
            o["command_timeout_secs"] = value(10);
            o["protocol_log"] = value(true);
            // The sinks listen on loopback and the test DNS points MX hosts there:
            // the SSRF guard (default off) would refuse them. One test turns it on.
            o["allow_private_destinations"] = value(true);
        });
        Lab {
            rt,
            dns,
            data,
            store: OnceLock::new(),
        }
    }

    fn sink(&self, b: Behaviour) -> Sink {
        self.rt.block_on(Sink::start(b))
    }

    /// `domain`'s MX is `host`, which is 127.0.0.1.
    fn mx(&self, domain: &str, host: &str) {
        self.dns.add_mx(domain, 10, host);
        self.dns.add_a(host, "127.0.0.1".parse().unwrap());
    }

    fn outbound(&self, key: &str, v: impl Into<toml_edit::Value>) {
        let v = v.into();
        self.data
            .edit_config(|c| c["outbound"][key] = toml_edit::Item::Value(v));
    }

    /// Appends an `[[outbound.connector]]` table.
    fn connector(&self, body: &str) {
        let path = self.data.config_path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\n[[outbound.connector]]\n{body}\n"));
        std::fs::write(&path, text).unwrap();
    }

    fn store(&self) -> &SharedStore {
        self.store.get_or_init(|| {
            std::sync::Arc::new(SqliteStore::open(&self.data.path().join("store")).unwrap())
        })
    }

    /// Queues a message as the SMTP server will: one body, a queue entry.
    fn enqueue(&self, from: &str, rcpts: &[&str], subject: &str) -> QueueId {
        self.enqueue_with_params(from, rcpts, subject, "")
    }

    /// The same with the SMTP server's DSN parameters (`bulwark_queue::DeliveryParams`).
    fn enqueue_with_params(
        &self,
        from: &str,
        rcpts: &[&str],
        subject: &str,
        params: &str,
    ) -> QueueId {
        let store = self.store().clone();
        let ingest = Ingest {
            data: body(subject),
            internal_date: 0,
            deliveries: vec![],
            queue: Some(NewQueueEntry {
                return_path: from.to_string(),
                recipients: rcpts.iter().map(|s| s.to_string()).collect(),
                params: bulwark_queue::DeliveryParams::parse(params),
                data: None,
            }),
        };
        self.rt
            .block_on(async move { store.ingest(ingest).await })
            .unwrap()
            .queue_id
            .unwrap()
    }

    /// The raw messages in an account's INBOX.
    fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let store = self.store().clone();
        let user = user.to_string();
        self.rt.block_on(async move {
            let a = store.account(&user).await.unwrap().unwrap();
            let mb = store.mailbox(a.id, "INBOX").await.unwrap().unwrap();
            let mut out = Vec::new();
            for m in store.list_messages(mb.id).await.unwrap() {
                out.push(store.read_blob(m.blob_id).await.unwrap());
            }
            out
        })
    }

    fn queue_len(&self) -> usize {
        let store = self.store().clone();
        self.rt
            .block_on(async move { store.queue_list().await })
            .unwrap()
            .len()
    }

    fn wait(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn queue_cli(&self, args: &[&str]) -> (bool, String) {
        let mut a = vec!["queue"];
        a.extend_from_slice(args);
        let out = self.data.cli(&a);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn outbound_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("log/outbound.log")).unwrap_or_default()
    }
}

/// The server log without terminal colour codes.
fn log_text(server: &Server) -> String {
    let raw = server.log();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The message part of a session's data, to compare with what was queued.
fn same_message(data: &[u8], subject: &str) -> bool {
    data == body(subject).as_slice()
}

#[test]
fn opportunistic_tls_is_used_when_offered_and_cleartext_only_without_starttls() {
    let lab = Lab::new();
    let (acc, _) = acceptor_for("mx.tls.test", lab.data.path());
    let tls_sink = lab.sink(Behaviour::new("mx.tls.test").with_tls(acc));
    let plain_sink = lab.sink(Behaviour::new("mx.plain.test"));
    lab.mx("tls.test", "mx.tls.test");
    lab.mx("plain.test", "mx.plain.test");
    // tls.test uses the implicit default connector (MX, opportunistic) on
    // remote_port; plain.test a connector that only changes the port.
    lab.outbound("remote_port", i64::from(tls_sink.port()));
    lab.connector(&format!(
        "name = \"plain\"\naddress_space = [\"plain.test\"]\nport = {}",
        plain_sink.port()
    ));
    let server = Server::start(&lab.data);
    lab.enqueue(
        "alice@example.test",
        &["bob@tls.test", "carol@plain.test"],
        "opportunistic",
    );

    tls_sink.wait("a delivery over TLS", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    plain_sink.wait("a delivery", WAIT, |s| s.iter().any(|s| s.completed));
    let t = &tls_sink.completed()[0];
    assert_eq!(t.tls.as_deref(), Some("TLSv1.3"));
    assert!(same_message(t.data.as_ref().unwrap(), "opportunistic"));
    assert_eq!(t.mail_from.as_deref(), Some("alice@example.test"));
    assert_eq!(t.rcpts, vec!["bob@tls.test".to_string()]);
    // Only EHLO and STARTTLS in cleartext; the envelope went over TLS after a new EHLO.
    let clear: Vec<&String> = t
        .lines
        .iter()
        .filter(|l| !l.starts_with("[tls] "))
        .collect();
    assert_eq!(clear.len(), 2, "{:?}", t.lines);
    assert!(clear[0].starts_with("EHLO mail.example.test") && clear[1] == "STARTTLS");
    assert!(t.lines[2].starts_with("[tls] EHLO"), "{:?}", t.lines);
    assert!(!t.lines.iter().any(|l| l.starts_with("!!")));

    let p = &plain_sink.completed()[0];
    assert_eq!(
        p.tls, None,
        "no STARTTLS offered: cleartext is allowed at this level"
    );
    assert!(same_message(p.data.as_ref().unwrap(), "opportunistic"));

    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let (ok, out) = lab.queue_cli(&["list"]);
    assert!(ok && out.contains("The queue is empty."), "{out}");
    let log = log_text(&server);
    assert!(
        log.contains("delivery attempt") && log.contains("tls=TLSv1.3 TLS13_"),
        "{log}"
    );
    // The outbound protocol log records the conversation and its TLS state.
    let plog = lab.outbound_log();
    assert!(plog.contains("\"listener\":\"outbound\"") && plog.contains("TLS established"));
}

#[test]
fn required_tls_defers_without_starttls_and_delivers_once_offered() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour::new("mx.partner.test"));
    lab.mx("partner.test", "mx.partner.test");
    lab.connector(&format!(
        "name = \"partner\"\naddress_space = [\"partner.test\"]\nport = {}\ntls = \"required\"",
        sink.port()
    ));
    let _server = Server::start(&lab.data);
    let id = lab.enqueue("alice@example.test", &["bob@partner.test"], "required");

    lab.wait("a deferral for missing STARTTLS", || {
        lab.queue_cli(&["show", &id.to_string()])
            .1
            .contains("does not offer STARTTLS")
    });
    let sessions = sink.sessions();
    assert!(!sessions.is_empty());
    assert!(
        sessions
            .iter()
            .all(|s| s.mail_from.is_none() && s.data.is_none()),
        "nothing may be sent in cleartext: {sessions:?}"
    );
    let (_, show) = lab.queue_cli(&["show", &id.to_string()]);
    assert!(
        show.contains("pending") && show.contains("tls:  none"),
        "{show}"
    );

    // The partner starts offering STARTTLS: the next retry delivers over TLS.
    let (acc, _) = acceptor_for("mx.partner.test", lab.data.path());
    sink.set(|b| {
        b.starttls = true;
        b.tls = Some(acc);
    });
    sink.wait("delivery over TLS", WAIT, |s| s.iter().any(|s| s.completed));
    let done = sink.completed();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].tls.as_deref(), Some("TLSv1.3"));
    lab.wait("the queue to empty", || lab.queue_len() == 0);
}

#[test]
fn pinned_refuses_a_wrong_certificate() {
    let lab = Lab::new();
    let (right, right_fp) = acceptor_for("mx.pinned.test", lab.data.path());
    let (wrong, wrong_fp) = acceptor_for("mx.pinned.test", lab.data.path());
    assert_ne!(right_fp, wrong_fp);
    let sink = lab.sink(Behaviour::new("mx.pinned.test").with_tls(wrong));
    lab.mx("pinned.test", "mx.pinned.test");
    // Colons and upper case as `openssl x509 -fingerprint` prints them.
    let pin: String = right_fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    lab.connector(&format!(
        "name = \"pinned\"\naddress_space = [\"pinned.test\", \"*.pinned.test\"]\nport = {}\ntls = \"pinned\"\ntls_pins = [\"{pin}\"]",
        sink.port()
    ));
    let _server = Server::start(&lab.data);
    let id = lab.enqueue("alice@example.test", &["bob@pinned.test"], "pinned");

    lab.wait("a pin mismatch", || {
        lab.queue_cli(&["show", &id.to_string()])
            .1
            .contains("matches no configured pin")
    });
    let (_, show) = lab.queue_cli(&["show", &id.to_string()]);
    assert!(
        show.contains(&wrong_fp),
        "the refused fingerprint is shown: {show}"
    );
    assert!(
        sink.sessions().iter().all(|s| s.mail_from.is_none()),
        "no envelope to an unpinned server"
    );

    sink.set(|b| b.tls = Some(right));
    sink.wait("delivery to the pinned server", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    assert!(same_message(
        sink.completed()[0].data.as_ref().unwrap(),
        "pinned"
    ));
    lab.wait("the queue to empty", || lab.queue_len() == 0);
}

#[test]
fn credentials_are_never_sent_in_cleartext() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour {
        auth: true,
        ..Behaviour::new("relay.provider.test")
    });
    lab.dns
        .add_a("relay.provider.test", "127.0.0.1".parse().unwrap());
    let secrets = lab.data.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let cred = secrets.join("relay");
    std::fs::write(&cred, "relay-user\nrelay-s3cret-password\n").unwrap();
    std::fs::set_permissions(&cred, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    lab.connector(&format!(
        "name = \"relay\"\naddress_space = [\"*\"]\nsmart_host = \"relay.provider.test\"\nport = {}\ntls = \"required\"\ncredentials_file = \"secrets/relay\"",
        sink.port()
    ));
    let server = Server::start(&lab.data);
    let id = lab.enqueue("alice@example.test", &["dave@anywhere.test"], "smarthost");

    // The smart host offers AUTH but no STARTTLS: nothing is sent, not even AUTH.
    lab.wait("a deferral", || {
        lab.queue_cli(&["show", &id.to_string()])
            .1
            .contains("does not offer STARTTLS")
    });
    for s in sink.sessions() {
        assert!(!s.auth_in_clear && s.auth.is_none(), "{s:?}");
        assert!(
            !s.lines
                .iter()
                .any(|l| l.to_ascii_uppercase().starts_with("AUTH")),
            "{s:?}"
        );
    }

    let (acc, _) = acceptor_for("relay.provider.test", lab.data.path());
    sink.set(|b| {
        b.starttls = true;
        b.tls = Some(acc);
    });
    sink.wait("an authenticated delivery", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    let s = &sink.completed()[0];
    assert_eq!(s.tls.as_deref(), Some("TLSv1.3"));
    assert!(!s.auth_in_clear);
    assert_eq!(
        s.auth,
        Some(("relay-user".into(), "relay-s3cret-password".into()))
    );
    let auth_line = s.lines.iter().find(|l| l.contains("AUTH")).unwrap();
    assert!(auth_line.starts_with("[tls] AUTH PLAIN"), "{auth_line}");
    lab.wait("the queue to empty", || lab.queue_len() == 0);

    // The password and its base64 forms appear in no log.
    let b64 = base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let plain = b64.encode(b"\0relay-user\0relay-s3cret-password");
    for log in [log_text(&server), lab.outbound_log()] {
        assert!(!log.contains("relay-s3cret-password") && !log.contains(&plain));
    }
    assert!(lab.outbound_log().contains("AUTH PLAIN ***"));
}

#[test]
fn misconfigured_credentials_stop_the_server_from_starting() {
    let lab = Lab::new();
    std::fs::write(lab.data.path().join("cred"), "u\np\n").unwrap();
    std::fs::set_permissions(
        lab.data.path().join("cred"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    lab.connector(
        "name = \"relay\"\naddress_space = [\"*\"]\nsmart_host = \"relay.test\"\ntls = \"required\"\ncredentials_file = \"cred\"",
    );
    let out = std::process::Command::new(bin())
        .args([
            "--dir",
            lab.data.path().to_str().unwrap(),
            "serve",
            "--allow-root",
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("readable by others") && e.contains("chmod 600"),
        "{e}"
    );

    // Credentials with a level that allows cleartext are a configuration error.
    let text = std::fs::read_to_string(lab.data.config_path())
        .unwrap()
        .replace(
            "tls = \"required\"\ncredentials_file",
            "tls = \"opportunistic\"\ncredentials_file",
        );
    std::fs::write(lab.data.config_path(), text).unwrap();
    let out = lab.data.cli(&["config", "check"]);
    let e =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        e.contains("outbound.connector[0].tls") && e.contains("cleartext"),
        "{e}"
    );
}

#[test]
fn temporary_failure_is_retried_then_delivered() {
    let lab = Lab::new();
    let sink = lab.sink(
        Behaviour::new("mx.remote.test")
            .rcpt("bob@remote.test", &["451 4.7.1 greylisted, try again"]),
    );
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let _server = Server::start(&lab.data);
    lab.enqueue("alice@example.test", &["bob@remote.test"], "greylisted");

    sink.wait("delivery after the retry", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    let sessions = sink.sessions();
    let first = sessions
        .iter()
        .position(|s| {
            s.lines
                .iter()
                .any(|l| l.contains("RCPT TO:<bob@remote.test>"))
        })
        .unwrap();
    assert!(sessions[first].data.is_none(), "refused at RCPT, no data");
    assert_eq!(sink.completed().len(), 1, "delivered exactly once");
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    assert!(
        lab.inbox("alice@example.test").is_empty(),
        "no notice for a delivered message"
    );
}

/// Parses a notice with Python's email package (an independent MIME parser) and
/// returns "key=value" lines describing it.
fn parse_notice(raw: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), raw).unwrap();
    python_ok(
        r#"
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
print("return-path=" + str(m["Return-Path"]))
print("from=" + str(m["From"]))
print("subject=" + str(m["Subject"]))
print("auto-submitted=" + str(m["Auto-Submitted"]))
print("type=" + m.get_content_type())
print("report-type=" + str(m.get_param("report-type")))
parts = list(m.iter_parts())
print("parts=" + ",".join(p.get_content_type() for p in parts))
status = parts[1]
# message/delivery-status: the per-message block, then one block per recipient.
blocks = status.get_payload()
for i, b in enumerate(blocks):
    for k, v in b.items():
        print("ds%d.%s=%s" % (i, k.lower(), v))
print("original=" + parts[2].get_payload().replace("\r\n", "\\n").replace("\n", "\\n"))
"#,
        &[f.path().to_str().unwrap()],
    )
}

/// NOTIFY=SUCCESS (RFC 3461 §5.2.2): a receiving server without DSN takes the
/// message and the sender gets a "relayed" notice from us; a server with DSN gets
/// NOTIFY passed on, and no notice comes from us.
#[test]
fn notify_success_gets_a_relayed_notice_only_when_the_receiver_has_no_dsn() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour::new("mx.remote.test"));
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let _server = Server::start(&lab.data);
    let params = r#"{"rcpt":{"carol@remote.test":{"notify":["success"]}}}"#;
    lab.enqueue_with_params(
        "alice@example.test",
        &["carol@remote.test"],
        "tell-me",
        params,
    );
    lab.wait("a notice in alice's INBOX", || {
        !lab.inbox("alice@example.test").is_empty()
    });
    let n = parse_notice(&lab.inbox("alice@example.test")[0]);
    for needle in [
        "report-type=delivery-status",
        "ds1.final-recipient=rfc822; carol@remote.test",
        "ds1.action=relayed",
        "Subject: tell-me",
    ] {
        assert!(n.contains(needle), "missing {needle:?} in\n{n}");
    }
    assert_eq!(
        sink.completed()[0].rcpts,
        vec!["carol@remote.test".to_string()]
    );
    lab.wait("the queue to empty", || lab.queue_len() == 0);

    sink.set(|b| b.dsn = true);
    lab.enqueue_with_params(
        "alice@example.test",
        &["carol@remote.test"],
        "quiet",
        params,
    );
    sink.wait("the second delivery", WAIT, |s| {
        s.iter().filter(|s| s.completed).count() == 2
    });
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let second = sink.completed().into_iter().nth(1).unwrap();
    assert!(
        second.lines.iter().any(|l| l.contains("NOTIFY=SUCCESS")),
        "NOTIFY passed on: {:?}",
        second.lines
    );
    assert_eq!(
        lab.inbox("alice@example.test").len(),
        1,
        "the DSN-capable server notifies, not us"
    );
}

#[test]
fn permanent_failure_bounces_to_the_sender_inbox_and_never_to_the_null_sender() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour::new("mx.remote.test").rcpt(
        "bob@remote.test",
        &["550 5.1.1 <bob@remote.test>: no such user"],
    ));
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let server = Server::start(&lab.data);
    lab.enqueue(
        "alice@example.test",
        &["bob@remote.test", "carol@remote.test"],
        "bounce-me",
    );

    lab.wait("a notice in alice's INBOX", || {
        !lab.inbox("alice@example.test").is_empty()
    });
    sink.wait("carol's delivery", WAIT, |s| s.iter().any(|s| s.completed));
    assert_eq!(
        sink.completed()[0].rcpts,
        vec!["carol@remote.test".to_string()]
    );
    let inbox = lab.inbox("alice@example.test");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].starts_with(b"Return-Path: <>\r\n"));
    let n = parse_notice(&inbox[0]);
    for needle in [
        "return-path=<>",
        "from=Mail Delivery System <MAILER-DAEMON@mail.example.test>",
        "subject=Undelivered Mail Returned to Sender",
        "auto-submitted=auto-replied",
        "type=multipart/report",
        "report-type=delivery-status",
        "parts=text/plain,message/delivery-status,text/rfc822-headers",
        "ds0.reporting-mta=dns; mail.example.test",
        "ds1.final-recipient=rfc822; bob@remote.test",
        "ds1.action=failed",
        "ds1.status=5.1.1",
        "ds1.remote-mta=dns; mx.remote.test",
        "ds1.diagnostic-code=smtp; 550 5.1.1 <bob@remote.test>: no such user",
        "Subject: bounce-me",
    ] {
        assert!(n.contains(needle), "missing {needle:?} in\n{n}");
    }
    assert!(
        !n.contains("carol"),
        "only failed recipients are reported:\n{n}"
    );
    assert!(
        !n.contains("Hello from the outbound tests"),
        "headers only by default"
    );
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    // Counted: one notice, returning the octets of the original message.
    let m = crate::observe::scrape(&server);
    assert_eq!(
        crate::observe::metric(&m, "bulwark_messages_bounced_total"),
        Some(1.0)
    );
    assert_eq!(
        crate::observe::metric(&m, "bulwark_message_bytes_bounced_total"),
        Some(body("bounce-me").len() as f64)
    );

    // The same failure for a message from <> (itself a notice): no notice at all.
    sink.set(|b| {
        b.default_rcpt = "550 5.1.1 no such user".into();
    });
    let before = sink.sessions().len();
    lab.enqueue("", &["bob@remote.test"], "from-null");
    lab.wait("the attempt", || sink.sessions().len() > before);
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    server.wait_log("no bounce to the null sender", WAIT);
    assert_eq!(lab.inbox("alice@example.test").len(), 1);
    assert_eq!(lab.queue_len(), 0, "no notice was queued either");
}

#[test]
fn null_mx_fails_at_once_and_a_remote_sender_gets_a_queued_notice() {
    let lab = Lab::new();
    lab.dns.add_mx("nomail.test", 0, ".");
    // The sender is remote: its notice is queued and delivered from <>.
    let sender_sink = lab.sink(Behaviour::new("mx.sender.test"));
    lab.mx("sender.test", "mx.sender.test");
    lab.outbound("remote_port", i64::from(sender_sink.port()));
    let server = Server::start(&lab.data);
    let id = lab.enqueue("bob@sender.test", &["x@nomail.test"], "null-mx");

    sender_sink.wait("the notice", WAIT, |s| s.iter().any(|s| s.completed));
    let s = &sender_sink.completed()[0];
    assert_eq!(s.mail_from.as_deref(), Some(""), "notices go from <>");
    assert_eq!(s.rcpts, vec!["bob@sender.test".to_string()]);
    let n = parse_notice(s.data.as_ref().unwrap());
    assert!(n.contains("ds1.status=5.1.10"), "{n}");
    assert!(
        n.contains("ds1.final-recipient=rfc822; x@nomail.test"),
        "{n}"
    );
    assert!(!n.contains("remote-mta"), "no server was contacted: {n}");
    let log = log_text(&server);
    assert!(
        log.contains(&format!("queue_id={id}")) && log.contains("(dns nomail.test)"),
        "{log}"
    );
    lab.wait("the queue to empty", || lab.queue_len() == 0);
}

/// Backscatter: a forwarded copy whose sender failed SPF/DMARC at intake (the SMTP
/// server marks the entry's params) fails without a notice to that sender.
#[test]
fn no_notice_goes_to_a_sender_that_failed_authentication_at_intake() {
    let lab = Lab::new();
    lab.dns.add_mx("nomail.test", 0, ".");
    let sender_sink = lab.sink(Behaviour::new("mx.sender.test"));
    lab.mx("sender.test", "mx.sender.test");
    lab.outbound("remote_port", i64::from(sender_sink.port()));
    let server = Server::start(&lab.data);
    let id = lab.enqueue_with_params(
        "victim@sender.test",
        &["x@nomail.test"],
        "forged",
        r#"{"sender_auth_failed":true}"#,
    );
    server.wait_log("failed SPF/DMARC at intake: no notice (backscatter)", WAIT);
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    assert!(sender_sink.sessions().is_empty(), "a notice was sent");
    assert!(log_text(&server).contains(&format!("queue_id={id}")));
}

#[test]
fn private_destinations_are_refused_unless_allowed() {
    // The default: an MX pointing at loopback (here: a running sink) is never
    // connected to; the message bounces at once with 5.4.4, to a local sender's inbox.
    let lab = Lab::new();
    lab.outbound("allow_private_destinations", false);
    let sink = lab.sink(Behaviour::new("mx.inside.test"));
    lab.mx("inside.test", "mx.inside.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let server = Server::start(&lab.data);
    lab.enqueue("alice@example.test", &["x@inside.test"], "ssrf");
    lab.wait("the bounce", || !lab.inbox("alice@example.test").is_empty());
    let n = parse_notice(&lab.inbox("alice@example.test")[0]);
    assert!(n.contains("ds1.status=5.4.4"), "{n}");
    assert!(sink.sessions().is_empty(), "the sink was contacted");
    assert!(
        log_text(&server).contains("not delivering to private or loopback addresses"),
        "{}",
        log_text(&server)
    );
    lab.wait("the queue to empty", || lab.queue_len() == 0);
}

#[test]
fn delay_notice_once_then_expiry_bounces() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour {
        default_rcpt: "451 4.3.0 temporarily unavailable".into(),
        ..Behaviour::new("mx.slow.test")
    });
    lab.mx("slow.test", "mx.slow.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    lab.outbound("delay_notice_after_secs", 1);
    lab.outbound("max_queue_lifetime_secs", 6);
    let _server = Server::start(&lab.data);
    lab.enqueue("alice@example.test", &["bob@slow.test"], "slow");

    lab.wait("the failure notice", || {
        lab.inbox("alice@example.test").len() >= 2
    });
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let inbox = lab.inbox("alice@example.test");
    assert_eq!(inbox.len(), 2, "one delay notice, one failure notice");
    let delay = parse_notice(&inbox[0]);
    assert!(delay.contains("subject=Delayed Mail"), "{delay}");
    assert!(
        delay.contains("ds1.action=delayed") && delay.contains("ds1.will-retry-until="),
        "{delay}"
    );
    let fail = parse_notice(&inbox[1]);
    assert!(fail.contains("ds1.action=failed"), "{fail}");
    assert!(fail.contains("ds1.status=4.3.0"), "{fail}");
    let raw = String::from_utf8_lossy(&inbox[1]);
    assert!(raw.contains("delivery time expired"), "{raw}");
    assert!(sink.sessions().len() >= 2, "retried before giving up");
}

#[test]
fn sigkill_during_delivery_loses_nothing_and_repeats_only_the_transaction_in_flight() {
    let lab = Lab::new();
    let fast = lab.sink(Behaviour::new("mx.fast.test"));
    let stuck = lab.sink(Behaviour::new("mx.stuck.test"));
    stuck.hold(true);
    lab.mx("fast.test", "mx.fast.test");
    lab.mx("stuck.test", "mx.stuck.test");
    lab.connector(&format!(
        "name = \"fast\"\naddress_space = [\"fast.test\"]\nport = {}",
        fast.port()
    ));
    lab.connector(&format!(
        "name = \"stuck\"\naddress_space = [\"stuck.test\"]\nport = {}",
        stuck.port()
    ));
    lab.outbound("lease_secs", 3);
    let mut server = Server::start(&lab.data);
    lab.enqueue(
        "alice@example.test",
        &["a1@fast.test", "a2@fast.test", "s1@stuck.test"],
        "crash-1",
    );
    lab.enqueue("alice@example.test", &["a3@fast.test"], "crash-2");

    fast.wait("both fast deliveries", WAIT, |s| {
        s.iter().filter(|s| s.completed).count() == 2
    });
    stuck.wait("the stuck transaction", WAIT, |s| {
        s.iter().any(|s| s.data.is_some())
    });
    // The fast deliveries are recorded before the next transaction of the entry; give
    // the recording of the second entry a moment, then kill mid-transaction.
    lab.wait("the fast entry to leave the queue", || lab.queue_len() == 1);
    server.kill9();
    stuck.hold(false);

    let _server = Server::start(&lab.data);
    stuck.wait("the redelivery after restart", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let fast_rcpts: Vec<String> = fast
        .received()
        .iter()
        .flat_map(|s| s.rcpts.clone())
        .collect();
    let mut sorted = fast_rcpts.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec!["a1@fast.test", "a2@fast.test", "a3@fast.test"],
        "each finished recipient exactly once"
    );
    let stuck_received: Vec<_> = stuck.received();
    assert!(
        (1..=2).contains(&stuck_received.len()),
        "the in-flight transaction may be repeated once: {stuck_received:?}"
    );
    assert!(stuck_received
        .iter()
        .all(|s| s.rcpts == vec!["s1@stuck.test".to_string()]));
    assert!(
        lab.inbox("alice@example.test").is_empty(),
        "nothing bounced"
    );
}

#[test]
fn sigterm_lets_the_delivery_in_progress_finish() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour::new("mx.remote.test"));
    sink.hold(true);
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let mut server = Server::start(&lab.data);
    lab.enqueue("alice@example.test", &["bob@remote.test"], "graceful");
    sink.wait("the transaction", WAIT, |s| {
        s.iter().any(|s| s.data.is_some())
    });
    server.signal(libc::SIGTERM);
    server.wait_log("finishing deliveries in progress", WAIT);
    sink.hold(false);
    let st = server.wait_exit(Duration::from_secs(40));
    assert!(st.success(), "{st}\n{}", server.log());
    assert_eq!(sink.completed().len(), 1);
    assert_eq!(lab.queue_len(), 0, "the delivery was recorded before exit");
}

#[test]
fn queue_cli_lists_shows_retries_and_deletes() {
    let lab = Lab::new();
    let (acc, _) = acceptor_for("mx.remote.test", lab.data.path());
    let sink = lab.sink(Behaviour {
        default_rcpt: "451 4.7.1 please try later".into(),
        ..Behaviour::new("mx.remote.test").with_tls(acc)
    });
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    lab.outbound("retry_initial_secs", 600);
    lab.outbound("retry_max_secs", 600);
    let _server = Server::start(&lab.data);
    let id = lab.enqueue("alice@example.test", &["bob@remote.test"], "cli");
    let ids = id.to_string();
    lab.wait("the first attempt", || {
        lab.queue_cli(&["show", &ids]).1.contains("451 4.7.1")
    });

    let (ok, list) = lab.queue_cli(&["list"]);
    assert!(ok, "{list}");
    assert!(
        list.contains(&ids)
            && list.contains("alice@example.test")
            && list.contains("1/1")
            && list.contains("bob@remote.test"),
        "{list}"
    );
    assert!(
        list.contains("1 message(s), 1 recipient(s) pending."),
        "{list}"
    );
    let (ok, show) = lab.queue_cli(&["show", &ids]);
    assert!(ok);
    for needle in [
        &format!("Queue entry {id}"),
        "sender:        alice@example.test",
        "bob@remote.test  pending (1 attempt(s), next attempt in ",
        &format!("peer: mx.remote.test[127.0.0.1]:{}", sink.port()),
        "tls:  TLSv1.3 TLS13_",
        "reply: 451 4.7.1 please try later",
        "deferred",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in\n{show}");
    }

    // retry makes it due at once; the server tries again within the scan interval.
    let before = sink.sessions().len();
    let (ok, out) = lab.queue_cli(&["retry", &ids]);
    assert!(ok && out.contains("1 recipient(s) due now"), "{out}");
    lab.wait("the retried attempt", || sink.sessions().len() > before);
    let (ok, out) = lab.queue_cli(&["retry", "--all"]);
    assert!(ok && out.contains("due now"), "{out}");
    let (ok, out) = lab.queue_cli(&["retry"]);
    assert!(!ok && out.contains("--all"), "{out}");
    let (ok, out) = lab.queue_cli(&["retry", "999999"]);
    assert!(!ok && out.contains("no queue entry 999999"), "{out}");

    let (ok, out) = lab.queue_cli(&["delete", &ids]);
    assert!(
        ok && out.contains(&format!("Deleted queue entry {id}")),
        "{out}"
    );
    let (ok, out) = lab.queue_cli(&["show", &ids]);
    assert!(!ok && out.contains("no queue entry"), "{out}");
    let (ok, out) = lab.queue_cli(&["delete", &ids]);
    assert!(!ok, "{out}");
    let (_, out) = lab.queue_cli(&["list"]);
    assert!(out.contains("The queue is empty."), "{out}");
    assert!(
        lab.inbox("alice@example.test").is_empty(),
        "delete sends no notice"
    );
}

/// A second Bulwark (domain remote.test, host mx.remote.test) as the final destination:
/// alice submits on 587 with Python's smtplib, the first server relays over verified
/// TLS to the second, which refuses an unknown user at RCPT (→ a notice for alice).
#[test]
fn relays_to_a_second_bulwark_over_verified_tls() {
    let lab = Lab::new();
    // The destination server.
    let remote = tempfile::tempdir().unwrap();
    let rdir = remote.path().join("data");
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut c = std::process::Command::new(bin())
            .arg("--dir")
            .arg(&rdir)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        &[
            "init",
            "--domain",
            "remote.test",
            "--hostname",
            "mx.remote.test",
            "--listen",
            "127.0.0.1",
            "--ephemeral-ports",
        ],
        "",
    );
    run(
        &["user", "add", "bob@remote.test", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    let cfg_path = rdir.join("bulwark.toml");
    let mut doc: toml_edit::DocumentMut =
        std::fs::read_to_string(&cfg_path).unwrap().parse().unwrap();
    let mut a = toml_edit::Array::new();
    a.push(lab.dns.addr().to_string());
    doc["dns"]["resolvers"] = value(a);
    std::fs::write(&cfg_path, doc.to_string()).unwrap();
    let b = Server::start_in(&rdir);

    // The sending server trusts exactly the destination's certificate.
    lab.mx("remote.test", "mx.remote.test");
    std::fs::copy(
        rdir.join("tls/cert.pem"),
        lab.data.path().join("remote-ca.pem"),
    )
    .unwrap();
    lab.connector(&format!(
        "name = \"remote\"\naddress_space = [\"remote.test\"]\nport = {}\ntls = \"verify\"\ntrust_anchors = \"remote-ca.pem\"",
        b.port("smtp")
    ));
    let a = Server::start(&lab.data);
    python_ok(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.starttls(context=ctx)
s.login("alice@example.test", "correct horse battery")
msg = b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: across\r\n\r\nfrom one Bulwark to another\r\n"
assert s.sendmail("alice@example.test", ["bob@remote.test", "nobody@remote.test"], msg) == {}
s.quit()
"#,
        &[
            &a.port("submission").to_string(),
            lab.data.cert_path().to_str().unwrap(),
        ],
    );

    // bob's INBOX on the destination.
    let rstore: SharedStore = std::sync::Arc::new(SqliteStore::open(&rdir.join("store")).unwrap());
    let bob_inbox = || {
        let s = rstore.clone();
        lab.rt.block_on(async move {
            let acc = s.account("bob@remote.test").await.unwrap().unwrap();
            let mb = s.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
            let mut out = Vec::new();
            for m in s.list_messages(mb.id).await.unwrap() {
                out.push(
                    String::from_utf8_lossy(&s.read_blob(m.blob_id).await.unwrap()).into_owned(),
                );
            }
            out
        })
    };
    lab.wait("bob's copy on the second server", || {
        !bob_inbox().is_empty()
    });
    let got = &bob_inbox()[0];
    assert!(
        got.starts_with("Return-Path: <alice@example.test>\r\n"),
        "{got}"
    );
    assert!(got.contains("by mx.remote.test"), "{got}");
    assert!(
        got.ends_with("Subject: across\r\n\r\nfrom one Bulwark to another\r\n"),
        "{got}"
    );

    // nobody@remote.test was refused by the second server: alice gets the notice.
    lab.wait("the notice for nobody@remote.test", || {
        !lab.inbox("alice@example.test").is_empty()
    });
    let n = parse_notice(&lab.inbox("alice@example.test")[0]);
    assert!(
        n.contains("ds1.final-recipient=rfc822; nobody@remote.test"),
        "{n}"
    );
    assert!(
        n.contains("ds1.status=5.1.1") && n.contains("ds1.remote-mta=dns; mx.remote.test"),
        "{n}"
    );
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let log = log_text(&a);
    assert!(
        log.contains("connector=remote") && log.contains("tls=TLSv1.3"),
        "{log}"
    );
    drop(b);
}

/// `bulwark dkim generate --force` for `domain` (init already made keys; fresh ones
/// print their records): its TXT records as "name. value" lines.
fn dkim_records(data: &DataDir, domain: &str) -> String {
    let out = data.cli(&["dkim", "generate", "--domain", domain, "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut records = String::new();
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("._domainkey."))
    {
        let (name, rest) = line.split_once(".  IN TXT  ").unwrap();
        let txt: String = rest.split('"').skip(1).step_by(2).collect();
        records.push_str(&format!("{name}. {txt}\n"));
    }
    assert!(!records.is_empty(), "no TXT records printed");
    records
}

/// Issue: undeclared 8-bit mail is accepted now, so the queue must not hand 8-bit
/// octets to a next hop without 8BITMIME (RFC 6152 §3). It converts the body to 7-bit
/// MIME, signs the converted message again (our submission signature covered the
/// 8-bit body), and bounces only what cannot be converted (8-bit header fields).
#[test]
fn eight_bit_mail_is_relayed_as_signed_7bit_mime_to_a_hop_without_8bitmime() {
    require_tool("python3");
    let lab = Lab::new();
    let records = dkim_records(&lab.data, "example.test");
    let sink = lab.sink(Behaviour {
        eight_bit: false,
        ..Behaviour::new("mx.remote.test")
    });
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let server = Server::start(&lab.data);
    // Python's smtplib, as msmtp and curl do, sends the 8-bit octets without
    // BODY=8BITMIME.
    python_ok(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.login("alice@example.test", sys.argv[3])
body = "From: alice@example.test\r\nTo: carol@remote.test\r\nSubject: greetings\r\n\r\nGr\u00fc\u00dfe aus K\u00f6ln\r\n.a dot line\r\n".encode()
assert s.sendmail("alice@example.test", ["carol@remote.test"], body) == {}
head = "From: alice@example.test\r\nTo: dave@remote.test\r\nSubject: caf\u00e9\r\n\r\nx\r\n".encode()
assert s.sendmail("alice@example.test", ["dave@remote.test"], head) == {}
s.quit()
"#,
        &[
            &server.port("submissions").to_string(),
            lab.data.cert_path().to_str().unwrap(),
            PASSWORD,
        ],
    );
    sink.wait("the converted message", WAIT, |s| {
        s.iter().any(|s| s.completed)
    });
    let got = sink.completed().remove(0);
    let data = got.data.unwrap();
    assert!(
        data.is_ascii(),
        "7-bit only: {}",
        String::from_utf8_lossy(&data)
    );
    assert!(
        got.lines
            .iter()
            .any(|l| l.starts_with("MAIL FROM:<alice@example.test>") && !l.contains("8BITMIME")),
        "{:?}",
        got.lines
    );
    // An independent MIME parser reads the text back, and an independent DKIM
    // verifier (dkimpy) accepts every signature on the converted octets.
    let tmp = tempfile::tempdir().unwrap();
    let (msg_path, dns_path) = (tmp.path().join("m.eml"), tmp.path().join("dns.txt"));
    std::fs::write(&msg_path, &data).unwrap();
    std::fs::write(&dns_path, records).unwrap();
    let o = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            r#"
import sys, dkim, email
from email import policy
recs = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines())
def dnsfunc(name, timeout=5):
    return recs.get(name.decode(), "").encode()
raw = open(sys.argv[1], "rb").read()
m = email.message_from_bytes(raw, policy=policy.default)
print("cte=" + m["Content-Transfer-Encoding"])
print("text=" + repr(m.get_content()))
d = dkim.DKIM(raw)
n = raw.count(b"DKIM-Signature:")
print("signatures=%d" % n)
for i in range(n):
    print("verify%d=%s" % (i, d.verify(idx=i, dnsfunc=dnsfunc)))
"#,
        )
        .arg(&msg_path)
        .arg(&dns_path)
        .output()
        .expect("run /usr/bin/python3 (scripts/ensure-deps.sh test installs python3-dkim)");
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for needle in [
        "cte=quoted-printable",
        "text='Grüße aus Köln\\r\\n.a dot line\\r\\n'",
        "signatures=2",
        "verify0=True",
        "verify1=True",
    ] {
        assert!(so.contains(needle), "missing {needle:?} in\n{so}");
    }

    // The 8-bit Subject cannot be converted: alice gets a failure notice, and the
    // sink never saw dave.
    lab.wait("the notice for dave", || {
        !lab.inbox("alice@example.test").is_empty()
    });
    let n = parse_notice(&lab.inbox("alice@example.test")[0]);
    for needle in [
        "ds1.final-recipient=rfc822; dave@remote.test",
        "ds1.action=failed",
        "ds1.status=5.6.3",
    ] {
        assert!(n.contains(needle), "missing {needle:?} in\n{n}");
    }
    assert!(sink
        .sessions()
        .iter()
        .all(|s| !s.rcpts.contains(&"dave@remote.test".to_string())));
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let m = crate::observe::scrape(&server);
    for (result, n) in [("converted", 1.0), ("refused", 1.0)] {
        assert_eq!(
            crate::observe::metric(
                &m,
                &format!("bulwark_delivery_downgrades_total{{result=\"{result}\"}}")
            ),
            Some(n),
            "{result}"
        );
    }
}

/// A notice read by Python's email package: the envelope ID, each recipient block
/// and what the third part returned of the original.
fn notice_summary(raw: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), raw).unwrap();
    python_ok(
        r#"
import email, sys
from email import policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)
parts = list(m.iter_parts())
blocks = parts[1].get_payload()
print("envid=" + str(blocks[0].get("Original-Envelope-Id")))
for b in blocks[1:]:
    print("rcpt %s %s %s orig=%s" % (b["Final-Recipient"], b["Action"], b["Status"], b.get("Original-Recipient")))
print("returned=" + parts[2].get_content_type())
print("has-body=" + str(b"BODY-MARKER" in parts[2].as_bytes()))
print("has-subject=" + str(b"Subject: dsn-" in parts[2].as_bytes()))
"#,
        &[f.path().to_str().unwrap()],
    )
}

/// DSN (RFC 3461) end to end: the client's NOTIFY/RET/ENVID/ORCPT, given over
/// submission, decide which notices alice gets and what they return. carol's server
/// takes the message but has no DSN (so NOTIFY=SUCCESS gets a `relayed` notice from
/// us); bob, dave and erin are refused there.
#[test]
fn dsn_parameters_from_the_client_decide_the_notices() {
    let lab = Lab::new();
    let sink = lab.sink(
        Behaviour::new("mx.remote.test")
            .rcpt("bob@remote.test", &["550 5.1.1 no such user bob"])
            .rcpt("dave@remote.test", &["550 5.1.1 no such user dave"])
            .rcpt("erin@remote.test", &["550 5.1.1 no such user erin"]),
    );
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let server = Server::start(&lab.data);
    let ehlo = python_ok(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.ehlo()
print("dsn=" + str(s.has_extn("dsn")))
s.login("alice@example.test", sys.argv[3])
def msg(n):
    return ("From: alice@example.test\r\nTo: x@remote.test\r\nSubject: dsn-%s\r\n\r\nBODY-MARKER %s\r\n" % (n, n)).encode()
# A: full message back, success and failure asked for both recipients.
s.mail("alice@example.test", ["RET=FULL", "ENVID=env+2BA"])
assert s.rcpt("carol@remote.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Carol@remote.test"])[0] == 250
assert s.rcpt("bob@remote.test", ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
assert s.data(msg("a"))[0] == 250
# B: headers only; dave wants no notice at all, erin only on failure.
s.mail("alice@example.test", ["RET=HDRS"])
assert s.rcpt("dave@remote.test", ["NOTIFY=NEVER"])[0] == 250
assert s.rcpt("erin@remote.test", ["NOTIFY=FAILURE"])[0] == 250
assert s.data(msg("b"))[0] == 250
s.quit()
"#,
        &[
            &server.port("submissions").to_string(),
            lab.data.cert_path().to_str().unwrap(),
            PASSWORD,
        ],
    );
    assert!(ehlo.contains("dsn=True"), "{ehlo}");
    lab.wait("two notices in alice's INBOX", || {
        lab.inbox("alice@example.test").len() >= 2
    });
    lab.wait("the queue to empty", || lab.queue_len() == 0);
    let notices: Vec<String> = lab
        .inbox("alice@example.test")
        .iter()
        .map(|n| notice_summary(n))
        .collect();
    assert_eq!(notices.len(), 2, "{notices:#?}");
    let a = notices
        .iter()
        .find(|n| n.contains("envid=env+A"))
        .unwrap_or_else(|| panic!("no notice with ENVID env+A: {notices:#?}"));
    for needle in [
        "rcpt rfc822; bob@remote.test failed 5.1.1 orig=None",
        "rcpt rfc822; carol@remote.test relayed 2.0.0 orig=rfc822;Carol@remote.test",
        "returned=message/rfc822",
        "has-body=True",
    ] {
        assert!(a.contains(needle), "missing {needle:?} in\n{a}");
    }
    let b = notices.iter().find(|n| *n != a).unwrap();
    for needle in [
        "envid=None",
        "rcpt rfc822; erin@remote.test failed 5.1.1",
        "returned=text/rfc822-headers",
        "has-body=False",
        "has-subject=True",
    ] {
        assert!(b.contains(needle), "missing {needle:?} in\n{b}");
    }
    assert!(!b.contains("dave"), "NOTIFY=NEVER: no word of dave\n{b}");
    // The sink (no DSN) got neither NOTIFY nor RET: parameters go only to a DSN hop.
    assert!(sink
        .sessions()
        .iter()
        .flat_map(|s| s.lines.iter())
        .all(|l| !l.contains("NOTIFY=") && !l.contains("RET=")));
}

/// Issue: `RCPT TO:<"a b"@…>` went out as `<a b@…>`. The queue writes the quoted form
/// in its MAIL and RCPT, and the failure notice names it the same way.
#[test]
fn quoted_local_parts_are_relayed_quoted() {
    let lab = Lab::new();
    let sink = lab.sink(Behaviour {
        default_rcpt: "550 5.1.1 no such user".into(),
        ..Behaviour::new("mx.remote.test")
    });
    lab.mx("remote.test", "mx.remote.test");
    lab.outbound("remote_port", i64::from(sink.port()));
    let server = Server::start(&lab.data);
    python_ok(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.login("alice@example.test", sys.argv[3])
assert s.docmd("MAIL FROM:<alice@example.test>")[0] == 250
assert s.docmd('RCPT TO:<"x y"@remote.test>')[0] == 250
assert s.docmd('RCPT TO:<"x>"@remote.test>')[0] == 553
assert s.data(b"From: alice@example.test\r\nSubject: quoted\r\n\r\nhi\r\n")[0] == 250
s.quit()
"#,
        &[
            &server.port("submissions").to_string(),
            lab.data.cert_path().to_str().unwrap(),
            PASSWORD,
        ],
    );
    lab.wait("the notice", || !lab.inbox("alice@example.test").is_empty());
    let lines: Vec<String> = sink.sessions().into_iter().flat_map(|s| s.lines).collect();
    assert!(
        lines.iter().any(|l| l == "RCPT TO:<\"x y\"@remote.test>"),
        "{lines:?}"
    );
    let n = parse_notice(&lab.inbox("alice@example.test")[0]);
    assert!(
        n.contains("ds1.final-recipient=rfc822; \"x y\"@remote.test"),
        "{n}"
    );
}
