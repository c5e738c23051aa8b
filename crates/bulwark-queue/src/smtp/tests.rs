//! The async shell against scripted servers on loopback: what it sends, in which order,
//! and what it concludes from replies and broken connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_config::TlsLevel;
use bulwark_observe::{ProtocolLog, Redactor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::client::{deliver, Envelope, HostResult, Settings};
use crate::message::MessageInfo;
use crate::outcome::Verdict;
use crate::params::DeliveryParams;
use crate::route::Connector;
use crate::tls::client_config;

/// One step of a scripted server: wait for a line starting with `expect` (None: send
/// without reading), then write `reply` (raw, may be several lines or nothing).
type Script = Vec<(Option<&'static str>, &'static str)>;

/// Runs the script on one connection; returns the lines the client sent.
async fn scripted(script: Script) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        let mut seen = Vec::new();
        for (expect, reply) in script {
            if let Some(prefix) = expect {
                let mut line = String::new();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return seen;
                }
                let line = line.trim_end().to_string();
                assert!(
                    line.starts_with(prefix),
                    "expected {prefix:?}, got {line:?}"
                );
                seen.push(line);
            }
            if reply == "<close>" {
                return seen;
            }
            s.get_mut().write_all(reply.as_bytes()).await.unwrap();
        }
        // Collect whatever else comes until the client closes.
        loop {
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(5), s.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => seen.push(line.trim_end().to_string()),
                _ => return seen,
            }
        }
    });
    (addr, task)
}

fn connector(level: TlsLevel) -> Connector {
    Connector {
        name: "test".into(),
        smart_host: None,
        port: 25,
        implicit_tls: false,
        level,
        tls: client_config(level, None, &[]).unwrap(),
        credentials_file: None,
    }
}

fn settings() -> Settings {
    Settings {
        helo: "mail.example.test".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
    }
}

async fn run(c: &Connector, addr: SocketAddr, rcpts: &[&str]) -> super::client::HostAttempt {
    run_with(c, addr, rcpts, b"Subject: t\r\n\r\nhi\r\n").await
}

/// Delivers `data` to `rcpts` at `addr`.
async fn run_with(
    c: &Connector,
    addr: SocketAddr,
    rcpts: &[&str],
    data: &[u8],
) -> super::client::HostAttempt {
    let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
    let params = DeliveryParams::default();
    let env = Envelope {
        return_path: "a@example.test",
        recipients: &rcpts,
        params: &params,
        info: MessageInfo::of(data),
        data,
        seven_bit: &Default::default(),
        resign: None,
    };
    let log = ProtocolLog::disabled("outbound", Redactor::Smtp).session("t", addr);
    deliver(&settings(), c, "mx.remote.test", addr, &env, log).await
}

#[tokio::test]
async fn helo_fallback_and_sequential_transaction() {
    let (addr, srv) = scripted(vec![
        (None, "220 old server\r\n"),
        (Some("EHLO mail.example.test"), "502 5.5.1 what?\r\n"),
        (Some("HELO mail.example.test"), "250 hi\r\n"),
        (Some("MAIL FROM:<a@example.test>"), "250 ok\r\n"),
        (Some("RCPT TO:<x@remote.test>"), "250 ok\r\n"),
        (Some("DATA"), "354 go\r\n"),
        (Some("Subject: t"), ""),
        (Some(""), ""),
        (Some("hi"), ""),
        (Some("."), "250 queued\r\n"),
        (Some("QUIT"), "221 bye\r\n"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test"],
    )
    .await;
    let HostResult::Done(o) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(o[0].verdict, Verdict::Delivered);
    assert_eq!(a.tls, None);
    assert!(
        !srv.await.unwrap().iter().any(|l| l.contains("SIZE=")),
        "no ESMTP parameters after HELO"
    );
}

#[tokio::test]
async fn required_level_sends_nothing_without_starttls() {
    let (addr, srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 PIPELINING\r\n"),
        (Some("QUIT"), "221 bye\r\n"),
    ])
    .await;
    let a = run(&connector(TlsLevel::Required), addr, &["x@remote.test"]).await;
    let HostResult::NextHost(o) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(
        (o.verdict, o.status.to_string().as_str()),
        (Verdict::Deferred, "4.7.10")
    );
    let lines = srv.await.unwrap();
    assert_eq!(
        lines,
        vec!["EHLO mail.example.test".to_string(), "QUIT".to_string()]
    );
}

#[tokio::test]
async fn cleartext_injected_after_the_starttls_reply_aborts() {
    let (addr, srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 STARTTLS\r\n"),
        // An attacker appends a reply the client would read as if it came over TLS.
        (Some("STARTTLS"), "220 go ahead\r\n250 injected\r\n"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test"],
    )
    .await;
    let HostResult::NextHost(o) = a.result else {
        panic!("{:?}", a.result)
    };
    assert!(o.text.contains("before the handshake"), "{}", o.text);
    assert_eq!(a.tls, None);
    let lines = srv.await.unwrap();
    assert!(!lines.iter().any(|l| l.starts_with("MAIL")), "{lines:?}");
}

#[tokio::test]
async fn refused_greeting_and_broken_connections_move_to_the_next_host() {
    let (addr, _srv) = scripted(vec![
        (None, "554 5.7.1 no service\r\n"),
        (Some("QUIT"), "221 bye\r\n"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test"],
    )
    .await;
    assert!(
        matches!(&a.result, HostResult::NextHost(o) if o.verdict == Verdict::Failed && o.status.to_string() == "5.7.1"),
        "{:?}",
        a.result
    );

    // Closed before any recipient was answered: nothing decided, try the next host.
    let (addr, _srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 PIPELINING\r\n"),
        (Some("MAIL"), "<close>"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test"],
    )
    .await;
    assert!(
        matches!(&a.result, HostResult::NextHost(o) if o.verdict == Verdict::Deferred),
        "{:?}",
        a.result
    );

    // Closed after the data was sent: deferred with this host (the server may have
    // it), not tried elsewhere.
    let (addr, _srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 8BITMIME\r\n"),
        (Some("MAIL"), "250 ok\r\n"),
        (Some("RCPT"), "250 ok\r\n"),
        (Some("DATA"), "354 go\r\n"),
        (Some("Subject"), ""),
        (Some(""), ""),
        (Some("hi"), ""),
        (Some("."), "<close>"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test"],
    )
    .await;
    let HostResult::Done(o) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(o[0].verdict, Verdict::Deferred);
}

#[tokio::test]
async fn recipients_refused_for_too_many_go_in_a_second_transaction() {
    let (addr, srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 PIPELINING\r\n"),
        (Some("MAIL"), ""),
        (Some("RCPT TO:<x@"), ""),
        (Some("RCPT TO:<y@"), ""),
        (
            Some("DATA"),
            "250 ok\r\n250 ok\r\n452 4.5.3 too many recipients\r\n354 go\r\n",
        ),
        (Some("Subject"), ""),
        (Some(""), ""),
        (Some("hi"), ""),
        (Some("."), "250 first\r\n"),
        (Some("MAIL"), ""),
        (Some("RCPT TO:<y@"), ""),
        (Some("DATA"), "250 ok\r\n250 ok\r\n354 go\r\n"),
        (Some("Subject"), ""),
        (Some(""), ""),
        (Some("hi"), ""),
        (Some("."), "250 second\r\n"),
        (Some("QUIT"), "221 bye\r\n"),
    ])
    .await;
    let a = run(
        &connector(TlsLevel::Opportunistic),
        addr,
        &["x@remote.test", "y@remote.test"],
    )
    .await;
    let HostResult::Done(o) = a.result else {
        panic!("{:?}", a.result)
    };
    assert_eq!(o[0].text, "250 first");
    assert_eq!(o[1].text, "250 second");
    srv.await.unwrap();
}

#[tokio::test]
async fn credentials_are_not_sent_without_tls_even_if_asked() {
    // A connector that (against validation) has credentials but allows cleartext.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cred");
    std::fs::write(&f, "u\np\n").unwrap();
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut c = connector(TlsLevel::Opportunistic);
    c.credentials_file = Some(f);
    let c = Arc::new(c);
    let (addr, srv) = scripted(vec![
        (None, "220 hi\r\n"),
        (Some("EHLO"), "250-hi\r\n250 AUTH PLAIN LOGIN\r\n"),
        (Some("QUIT"), "221 bye\r\n"),
    ])
    .await;
    let a = run(&c, addr, &["x@remote.test"]).await;
    assert!(
        matches!(&a.result, HostResult::NextHost(o) if o.text.contains("without TLS")),
        "{:?}",
        a.result
    );
    let lines = srv.await.unwrap();
    assert!(!lines.iter().any(|l| l.starts_with("AUTH")), "{lines:?}");
}

/// The body is dot-stuffed as it is written, in pieces: a "." line at the start of a
/// piece and a bare LF just before one arrive as a one-piece encoding would have them.
#[tokio::test]
async fn the_streamed_body_is_the_dot_stuffed_message() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = BufReader::new(s);
        s.get_mut().write_all(b"220 x\r\n").await.unwrap();
        let mut body = Vec::new();
        let mut in_data = false;
        loop {
            let mut line = Vec::new();
            if s.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return body;
            }
            if in_data {
                body.extend_from_slice(&line);
                if line == b".\r\n" {
                    in_data = false;
                    s.get_mut().write_all(b"250 ok\r\n").await.unwrap();
                }
                continue;
            }
            let reply: &[u8] = match &line[..4] {
                b"EHLO" => b"250-x\r\n250 8BITMIME\r\n",
                b"DATA" => {
                    in_data = true;
                    b"354 go\r\n"
                }
                b"QUIT" => b"221 bye\r\n",
                _ => b"250 ok\r\n",
            };
            s.get_mut().write_all(reply).await.unwrap();
        }
    });
    // 64 KiB pieces: the second starts with "." and the first ends with a bare LF.
    let mut data = b"Subject: t\r\n\r\n".to_vec();
    data.resize(64 * 1024 - 1, b'a');
    data.extend_from_slice(b"\n.dot\r\n..two\nend");
    let c = connector(TlsLevel::Opportunistic);
    let a = run_with(&c, addr, &["x@remote.test"], &data).await;
    assert!(matches!(&a.result, HostResult::Done(o) if o[0].verdict == Verdict::Delivered));
    let mut expected = Vec::new();
    let mut st = bulwark_wire::DotStuffer::new();
    st.push(&data, &mut expected);
    st.finish(&mut expected);
    let body = srv.await.unwrap();
    assert!(body.ends_with(b"a\r\n..dot\r\n...two\r\nend\r\n.\r\n"));
    assert_eq!(body, expected);
}
