//! The driver over an in-memory stream: time limits with paused time, overlong lines,
//! pipelined flushing, secret logging and STARTTLS discard.

use std::sync::Arc;
use std::time::Duration;

use bulwark_config::ListenerKind;
use bulwark_observe::{ProtocolLog, Redactor};
use bulwark_tls::{rustls, TlsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::connection::LineEnding;

fn pair(shutdown: &CancellationToken) -> (Connection, DuplexStream) {
    pair_logged(shutdown, ProtocolLog::disabled("test", Redactor::None))
}

fn pair_logged(shutdown: &CancellationToken, log: ProtocolLog) -> (Connection, DuplexStream) {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let peer = "192.0.2.1:40000".parse().unwrap();
    let conn = Connection::over_stream(
        server,
        ListenerKind::Submission,
        peer,
        "127.0.0.1:587".parse().unwrap(),
        shutdown.clone(),
        log.session("s1", peer),
    );
    (conn, client)
}

#[test]
fn first_limit_is_the_earlier_one() {
    let now = Instant::now();
    assert_eq!(Bounds::default().first_limit(now), None);
    let b = Bounds::idle(Duration::from_secs(10));
    assert_eq!(
        b.first_limit(now),
        Some((now + Duration::from_secs(10), Interrupt::IdleTimeout))
    );
    let b = b.and_until(now + Duration::from_secs(3));
    assert_eq!(
        b.first_limit(now),
        Some((now + Duration::from_secs(3), Interrupt::Deadline))
    );
    let b = Bounds::idle(Duration::from_secs(3)).and_until(now + Duration::from_secs(3));
    assert_eq!(
        b.first_limit(now).map(|l| l.1),
        Some(Interrupt::IdleTimeout)
    );
    assert_eq!(
        Bounds::until(now).first_limit(now),
        Some((now, Interrupt::Deadline))
    );
}

#[tokio::test]
async fn a_timeout_too_large_for_the_clock_is_no_limit() {
    // `timeout_secs = 18446744073709551615` in the config means "never", not a panic.
    let b = Bounds::idle(Duration::from_secs(u64::MAX));
    assert_eq!(b.first_limit(Instant::now()), None);
    assert_eq!(b.run(async { 1 }).await.ok(), Some(1));
    let at = Instant::now() + Duration::from_secs(5);
    assert_eq!(
        b.and_until(at).first_limit(Instant::now()),
        Some((at, Interrupt::Deadline))
    );
}

#[test]
fn write_failures_are_told_apart() {
    let t = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
    let g = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
    assert_eq!(WriteFailure::of(&t), WriteFailure::TimedOut);
    assert_eq!(WriteFailure::of(&g), WriteFailure::Gone);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_deadline() {
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair(&token);
    let started = Instant::now();
    let idle = Bounds::idle(Duration::from_secs(30));
    let r = conn.next_line(100, &idle, |_| LineLog::Client).await;
    assert!(matches!(r, Input::IdleTimeout), "{r:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(30));

    let b =
        Bounds::idle(Duration::from_secs(30)).and_until(Instant::now() + Duration::from_secs(5));
    let r = conn.next_line(100, &b, |_| LineLog::Client).await;
    assert!(matches!(r, Input::Deadline) && r.is_timeout(), "{r:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(35));

    // Input that arrives in time is a line, whatever comes after.
    client.write_all(b"NOOP\r\n").await.unwrap();
    match conn.next_line(100, &idle, |_| LineLog::Client).await {
        Input::Line(l) => assert_eq!((l.bytes, l.ending), (b"NOOP".to_vec(), LineEnding::CrLf)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_but_ready_input_comes_first() {
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair(&token);
    let b = Bounds::idle(Duration::from_secs(30)).or_shutdown(&token);
    client.write_all(b"ONE\r\n").await.unwrap();
    token.cancel();
    assert!(matches!(
        conn.next_line(100, &b, |_| LineLog::Client).await,
        Input::Line(_)
    ));
    let r = conn.next_line(100, &b, |_| LineLog::Client).await;
    assert!(matches!(r, Input::Shutdown), "{r:?}");
    // Without the token in its bounds, a read does not see the shutdown.
    let r = conn
        .next_line(100, &Bounds::idle(Duration::from_secs(1)), |_| {
            LineLog::Client
        })
        .await;
    assert!(matches!(r, Input::IdleTimeout), "{r:?}");
}

#[tokio::test]
async fn overlong_lines_and_close() {
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair(&token);
    let b = Bounds::default();
    client.write_all(&[b'x'; 50]).await.unwrap();
    client
        .write_all(b"\r\nshort\nlong-lf-line\n")
        .await
        .unwrap();
    let r = conn.next_line(10, &b, |_| LineLog::Client).await;
    assert!(matches!(r, Input::TooLong { crlf: true }), "{r:?}");
    match conn.next_line(10, &b, |_| LineLog::Client).await {
        Input::Line(l) => assert_eq!((l.bytes, l.ending), (b"short".to_vec(), LineEnding::Lf)),
        other => panic!("{other:?}"),
    }
    let r = conn.next_line(10, &b, |_| LineLog::Client).await;
    assert!(matches!(r, Input::TooLong { crlf: false }), "{r:?}");
    drop(client);
    let r = conn.next_line(10, &b, |_| LineLog::Client).await;
    assert!(matches!(r, Input::Closed), "{r:?}");
}

#[tokio::test]
async fn replies_wait_while_pipelined_input_is_buffered() {
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair(&token);
    let b = Bounds::default();
    client.write_all(b"A\r\nB\r\n").await.unwrap();
    assert!(matches!(
        conn.next_line(100, &b, |_| LineLog::Client).await,
        Input::Line(_)
    ));
    conn.reply_line(b"250 A").await.unwrap();
    conn.flush_unless_pipelined().await.unwrap();
    // Nothing sent yet: B is waiting.
    let mut buf = [0u8; 64];
    let pending = tokio::time::timeout(Duration::from_millis(50), client.read(&mut buf)).await;
    assert!(pending.is_err(), "a reply went out mid-batch");
    assert!(matches!(
        conn.next_line(100, &b, |_| LineLog::Client).await,
        Input::Line(_)
    ));
    conn.reply_line(b"250 B").await.unwrap();
    conn.flush_unless_pipelined().await.unwrap();
    let mut got = vec![0u8; 14];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"250 A\r\n250 B\r\n");
}

#[tokio::test]
async fn secret_lines_are_logged_as_stars() {
    let dir = tempfile::tempdir().unwrap();
    let log = ProtocolLog::open(
        dir.path(),
        "test",
        Redactor::None,
        bulwark_observe::Rotation {
            max_size: 1 << 20,
            max_age: Duration::from_secs(3600),
            keep: 1,
        },
    )
    .unwrap();
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair_logged(&token, log.clone());
    let b = Bounds::default();
    client
        .write_all(b"AUTH PLAIN\r\ndGVzdAB0ZXN0AHNlY3JldA==\r\nBODY\r\n")
        .await
        .unwrap();
    for how in [LineLog::Client, LineLog::Secret, LineLog::Silent] {
        assert!(matches!(
            conn.next_line(100, &b, |_| how).await,
            Input::Line(_)
        ));
    }
    drop(conn);
    drop(log);
    let mut text = String::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        text += &std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
    }
    assert!(text.contains("AUTH PLAIN"), "{text}");
    assert!(text.contains("***"), "{text}");
    assert!(!text.contains("dGVzdAB0ZXN0"), "{text}");
    assert!(!text.contains("BODY"), "{text}");
}

#[tokio::test]
async fn starttls_over_memory_discards_pipelined_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let g = bulwark_tls::generate_self_signed("mail.example.test", 30).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    bulwark_tls::write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
    let tls = TlsServer::new(&c, &k, bulwark_config::TlsVersion::V1_2).unwrap();
    let token = CancellationToken::new();
    let (mut conn, mut client) = pair(&token);
    let b = Bounds::default();
    // The injection: a command pipelined behind STARTTLS in the clear.
    client
        .write_all(b"STARTTLS\r\nRCPT TO:<evil@example.test>\r\n")
        .await
        .unwrap();
    assert!(matches!(
        conn.next_line(100, &b, |_| LineLog::Client).await,
        Input::Line(_)
    ));
    conn.reply_line(b"220 go ahead").await.unwrap();
    let client_side = async move {
        let mut go = vec![0u8; 14];
        client.read_exact(&mut go).await.unwrap();
        assert_eq!(go, b"220 go ahead\r\n");
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_reader_iter(&mut g.cert_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(bulwark_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls::pki_types::ServerName::try_from("mail.example.test").unwrap();
        let mut s = connector.connect(name, client).await.unwrap();
        s.write_all(b"EHLO inside\r\n").await.unwrap();
        s.flush().await.unwrap();
        s
    };
    let (discarded, _client) = tokio::join!(
        async {
            let n = conn.start_tls(tls.acceptor()).await.unwrap();
            (n, conn.next_line(100, &b, |_| LineLog::Client).await)
        },
        client_side
    );
    assert_eq!(discarded.0, b"RCPT TO:<evil@example.test>\r\n".len());
    match discarded.1 {
        Input::Line(l) => assert_eq!(l.bytes, b"EHLO inside"),
        other => panic!("{other:?}"),
    }
    assert!(conn.is_tls());
}
