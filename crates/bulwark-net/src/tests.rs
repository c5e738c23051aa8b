//! The connection layer with a tiny line protocol, real sockets and a real TLS client.

use std::sync::Arc;

use async_trait::async_trait;
use bulwark_config::{ListenerConfig, ListenerKind};
use bulwark_observe::{ProtocolLog, Redactor};
use bulwark_tls::rustls;
use bulwark_tls::TlsServer;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::*;

/// Test protocol: "OK hi" greeting; STARTTLS; ECHO <x>; anything else echoed as "? <x>".
struct Echo {
    tls: TlsServer,
}

#[async_trait]
impl SessionHandler for Echo {
    async fn run(&self, mut conn: Connection) {
        let greeting = format!("OK hi {}\r\n", if conn.is_tls() { "tls" } else { "plain" });
        if conn.send(greeting.as_bytes()).await.is_err() {
            return;
        }
        let shutdown = conn.shutdown().clone();
        loop {
            let line = tokio::select! {
                _ = shutdown.cancelled() => { let _ = conn.send(b"BYE shutdown\r\n").await; return; }
                l = conn.read_line(64) => l,
            };
            match line {
                Ok(l) if l.bytes == b"SHRINK" => {
                    conn.shrink_buffers();
                    conn.send(b"OK shrunk\r\n").await.unwrap();
                    conn.shrink_buffers();
                }
                Ok(l) if l.bytes == b"STARTTLS" => {
                    conn.send(b"OK go\r\n").await.unwrap();
                    let n = conn.start_tls(self.tls.acceptor()).await.unwrap();
                    conn.send(format!("OK tls discarded={n}\r\n").as_bytes())
                        .await
                        .unwrap();
                }
                Ok(l) if l.bytes.starts_with(b"PIECES ") => {
                    // Reads N octets piecewise, then says how many reads it took.
                    let mut n: usize = String::from_utf8_lossy(&l.bytes[7..]).parse().unwrap();
                    let (mut reads, mut got) = (0, Vec::new());
                    while n > 0 {
                        let piece = conn.read_some(n.min(4)).await.unwrap();
                        assert!(!piece.is_empty() && piece.len() <= 4);
                        n -= piece.len();
                        got.extend_from_slice(&piece);
                        reads += 1;
                    }
                    let reply = format!("OK {} in {reads}\r\n", String::from_utf8_lossy(&got));
                    conn.send(reply.as_bytes()).await.unwrap();
                }
                Ok(l) if l.bytes == b"FLOOD" => {
                    // Write far more than socket buffers hold to a client that never reads.
                    conn.set_write_timeout(std::time::Duration::from_millis(300));
                    let chunk = vec![b'x'; 1 << 20];
                    loop {
                        if let Err(e) = conn.send(&chunk).await {
                            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
                            FLOOD_TIMED_OUT.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                    }
                }
                Ok(l) => {
                    let ending = if l.ending == LineEnding::Lf {
                        " (bare LF)"
                    } else {
                        ""
                    };
                    let reply = format!("? {}{}\r\n", String::from_utf8_lossy(&l.bytes), ending);
                    conn.send(reply.as_bytes()).await.unwrap();
                }
                Err(ReadError::TooLong { crlf }) => {
                    // The start of the refused line stays available (IMAP answers
                    // it by its tag).
                    let head = conn.discarded_head();
                    let head = String::from_utf8_lossy(&head[..head.len().min(4)]).into_owned();
                    let n = conn.discarded_head().len();
                    conn.send(format!("ERR too long crlf={crlf} head={head} of {n}\r\n").as_bytes())
                        .await
                        .unwrap()
                }
                Err(_) => return,
            }
        }
    }
    fn busy_reply(&self) -> &'static [u8] {
        b"BUSY\r\n"
    }
}

static FLOOD_TIMED_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct Fixture {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    _dir: tempfile::TempDir,
    cert_pem: String,
}

async fn start(kind: ListenerKind, cfg: impl FnOnce(&mut ListenerConfig)) -> Fixture {
    start_with(kind, cfg, false).await
}

async fn start_with(
    kind: ListenerKind,
    cfg: impl FnOnce(&mut ListenerConfig),
    implicit_tls: bool,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let g = bulwark_tls::generate_self_signed("mail.example.test", 30).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    bulwark_tls::write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
    let tls = TlsServer::new(&c, &k, bulwark_config::TlsVersion::V1_2).unwrap();
    let mut lc = ListenerConfig::new(vec!["127.0.0.1:0".parse().unwrap()]);
    cfg(&mut lc);
    let mut bound = bind(kind, &lc).await.unwrap();
    assert_eq!(
        bound.implicit_tls(),
        kind.tls_mode() == bulwark_config::TlsMode::Implicit
    );
    if implicit_tls {
        bound = bound.with_implicit_tls();
    }
    let addr = bound.local_addrs()[0];
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    bound.serve(
        Arc::new(Echo { tls: tls.clone() }),
        tls,
        ProtocolLog::disabled("test", Redactor::None),
        shutdown.clone(),
        &tracker,
    );
    Fixture {
        addr,
        shutdown,
        tracker,
        _dir: dir,
        cert_pem: g.cert_pem,
    }
}

fn client_config(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let mut rd = cert_pem.as_bytes();
    for c in rustls_pemfile_certs(&mut rd) {
        roots.add(c).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(bulwark_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn rustls_pemfile_certs(rd: &mut &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_reader_iter(rd)
        .map(|c| c.unwrap())
        .collect()
}

async fn line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).await.unwrap();
    s
}

async fn upgrade(stream: TcpStream, cert_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_config(cert_pem));
    let name = rustls::pki_types::ServerName::try_from("mail.example.test").unwrap();
    connector.connect(name, stream).await.unwrap()
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, s: &str) {
    w.write_all(s.as_bytes()).await.unwrap();
    w.flush().await.unwrap();
}

#[tokio::test]
async fn lines_bare_lf_and_overlong() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    assert_eq!(line(&mut s).await, "OK hi plain\r\n");
    send(s.get_mut(), "hello\r\nbare\n").await;
    assert_eq!(line(&mut s).await, "? hello\r\n");
    assert_eq!(line(&mut s).await, "? bare (bare LF)\r\n");
    let long = format!("t1 {}\r\nafter\r\n", "x".repeat(500));
    send(s.get_mut(), &long).await;
    assert_eq!(
        line(&mut s).await,
        "ERR too long crlf=true head=t1 x of 128\r\n"
    );
    assert_eq!(
        line(&mut s).await,
        "? after\r\n",
        "the next line is read cleanly"
    );
}

#[tokio::test]
async fn shrunk_buffers_keep_input_and_grow_again() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let s = TcpStream::connect(f.addr).await.unwrap();
    let mut s = BufReader::new(s);
    line(&mut s).await;
    send(s.get_mut(), "STARTTLS\r\n").await;
    line(&mut s).await;
    let mut t = BufReader::new(upgrade(s.into_inner(), &f.cert_pem).await);
    line(&mut t).await;
    // Input buffered at the time of the shrink is kept.
    send(t.get_mut(), "SHRINK\r\nkept\r\n").await;
    assert_eq!(line(&mut t).await, "OK shrunk\r\n");
    assert_eq!(line(&mut t).await, "? kept\r\n");
    send(t.get_mut(), "SHRINK\r\n").await;
    assert_eq!(line(&mut t).await, "OK shrunk\r\n");
    // Reads after the shrink work, also for a line arriving in pieces.
    send(t.get_mut(), "in ").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    send(t.get_mut(), "pieces\r\n").await;
    assert_eq!(line(&mut t).await, "? in pieces\r\n");
    let long = format!("{}\r\nafter\r\n", "y".repeat(2000));
    send(t.get_mut(), &long).await;
    assert_eq!(
        line(&mut t).await,
        "ERR too long crlf=true head=yyyy of 128\r\n"
    );
    assert_eq!(line(&mut t).await, "? after\r\n");
}

#[tokio::test]
async fn starttls_discards_pipelined_plaintext() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    line(&mut s).await;
    // The classic injection: a command pipelined in the clear right after STARTTLS.
    send(s.get_mut(), "STARTTLS\r\nINJECTED\r\n").await;
    assert_eq!(line(&mut s).await, "OK go\r\n");
    let tls = upgrade(s.into_inner(), &f.cert_pem).await;
    let mut t = BufReader::new(tls);
    assert_eq!(line(&mut t).await, "OK tls discarded=10\r\n");
    send(t.get_mut(), "after\r\n").await;
    assert_eq!(line(&mut t).await, "? after\r\n", "INJECTED never ran");
}

#[tokio::test]
async fn implicit_tls_and_busy_limit() {
    let f = start(ListenerKind::Imaps, |_| {}).await;
    let tls = upgrade(TcpStream::connect(f.addr).await.unwrap(), &f.cert_pem).await;
    let mut t = BufReader::new(tls);
    assert_eq!(line(&mut t).await, "OK hi tls\r\n");
    let (_, conn) = t.get_ref().get_ref();
    assert!(matches!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    ));

    let g = start(ListenerKind::Smtp, |c| c.max_connections_per_ip = 1).await;
    let mut first = BufReader::new(TcpStream::connect(g.addr).await.unwrap());
    assert_eq!(line(&mut first).await, "OK hi plain\r\n");
    let mut second = BufReader::new(TcpStream::connect(g.addr).await.unwrap());
    assert_eq!(line(&mut second).await, "BUSY\r\n");
}

#[tokio::test]
async fn implicit_tls_can_be_switched_on_for_any_kind() {
    // Metrics beyond loopback is HTTPS: TLS from the first byte on a kind whose own
    // mode is cleartext.
    let f = start_with(ListenerKind::Metrics, |_| {}, true).await;
    let tls = upgrade(TcpStream::connect(f.addr).await.unwrap(), &f.cert_pem).await;
    let mut t = BufReader::new(tls);
    assert_eq!(line(&mut t).await, "OK hi tls\r\n");
    // Without the switch the same kind is cleartext.
    let g = start(ListenerKind::Metrics, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(g.addr).await.unwrap());
    assert_eq!(line(&mut s).await, "OK hi plain\r\n");
    // A cleartext client on the TLS listener gets no greeting.
    let mut p = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    send(p.get_mut(), "GET /metrics HTTP/1.1\r\n\r\n").await;
    let mut rest = String::new();
    let _ = p.read_line(&mut rest).await;
    assert!(!rest.contains("OK hi"), "{rest:?}");
}

#[tokio::test]
async fn tls_1_1_is_refused() {
    let f = start(ListenerKind::Imaps, |_| {}).await;
    // rustls cannot even speak TLS 1.1, so send a raw TLS 1.1 ClientHello and expect an
    // alert (or a close), never a ServerHello.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let hello: [u8; 52] = [
        0x16, 0x03, 0x02, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x02, 1, 2, 3, 4, 5, 6, 7, 8,
        9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
        32, 0x00, 0x00, 0x02, 0xc0, 0x13, 0x01, 0x00, 0x00, 0x00,
    ];
    s.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::io::AsyncReadExt::read(&mut s, &mut buf)
        .await
        .unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "expected an alert or close, got {:?}",
        &buf[..n]
    );
}

#[tokio::test]
async fn proxy_header_only_from_trusted() {
    let f = start(ListenerKind::Smtp, |c| {
        c.proxy_protocol_from = vec!["127.0.0.0/8".parse().unwrap()]
    })
    .await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    send(s.get_mut(), "PROXY TCP4 192.0.2.9 127.0.0.1 5555 25\r\n").await;
    assert_eq!(line(&mut s).await, "OK hi plain\r\n");
    // Garbage instead of a header from a trusted address: closed.
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    send(s.get_mut(), "EHLO not-a-proxy-header\r\n").await;
    let mut rest = String::new();
    let r = s.read_line(&mut rest).await;
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "closed without a greeting, got {rest:?}"
    );
    // An untrusted listener treats a PROXY line as protocol data.
    let g = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(g.addr).await.unwrap());
    line(&mut s).await;
    send(s.get_mut(), "PROXY TCP4 192.0.2.9 127.0.0.1 5555 25\r\n").await;
    assert!(line(&mut s).await.starts_with("? PROXY"));
}

#[tokio::test]
async fn shutdown_reaches_sessions() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    line(&mut s).await;
    f.shutdown.cancel();
    assert_eq!(line(&mut s).await, "BYE shutdown\r\n");
    f.tracker.close();
    tokio::time::timeout(std::time::Duration::from_secs(5), f.tracker.wait())
        .await
        .unwrap();
    assert!(
        TcpStream::connect(f.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn read_some_returns_what_arrived_piece_by_piece() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    line(&mut s).await;
    // Buffered input is handed out first (the 3 octets after the command line), then
    // what later writes bring, at most 4 octets at a time.
    send(s.get_mut(), "PIECES 10\r\nabc").await;
    send(s.get_mut(), "defghij").await;
    let reply = line(&mut s).await;
    assert!(reply.starts_with("OK abcdefghij in "), "{reply}");
    let reads: usize = reply.trim_end()[17..].parse().unwrap();
    assert!(reads >= 3, "at most 4 octets per read: {reply}");
    // The next line is read normally.
    send(s.get_mut(), "x\r\n").await;
    assert_eq!(line(&mut s).await, "? x\r\n");
    f.shutdown.cancel();
}

#[tokio::test]
async fn overlong_line_reports_its_ending() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = BufReader::new(TcpStream::connect(f.addr).await.unwrap());
    line(&mut s).await;
    // Longer than the buffer limit before the LF arrives, ending in a bare LF.
    send(s.get_mut(), &format!("{}\n", "y".repeat(70_000))).await;
    assert_eq!(
        line(&mut s).await,
        "ERR too long crlf=false head=yyyy of 128\r\n"
    );
    // Split so the CR ends one read and the LF starts the next.
    send(s.get_mut(), &format!("{}\r", "z".repeat(70_000))).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    send(s.get_mut(), "\nok\r\n").await;
    assert_eq!(
        line(&mut s).await,
        "ERR too long crlf=true head=zzzz of 128\r\n"
    );
    assert_eq!(line(&mut s).await, "? ok\r\n");
}

#[tokio::test]
async fn a_client_that_stops_reading_cannot_hold_the_session() {
    let f = start(ListenerKind::Smtp, |_| {}).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    send(&mut s, "FLOOD\r\n").await;
    // Never read. The server's flush must give up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !FLOOD_TIMED_OUT.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never timed out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(s);
}

#[tokio::test]
async fn ipv4_and_ipv6_wildcards_bind_side_by_side() {
    // IPv6 sockets are IPv6-only, so the usual pair of binds does not collide.
    let v4 = bind(
        ListenerKind::Smtp,
        &ListenerConfig::new(vec!["0.0.0.0:0".parse().unwrap()]),
    )
    .await
    .unwrap();
    let port = v4.local_addrs()[0].port();
    let v6 = ListenerConfig::new(vec![format!("[::]:{port}").parse().unwrap()]);
    match bind(ListenerKind::Smtp, &v6).await {
        Ok(b) => assert_eq!(b.local_addrs()[0].port(), port),
        Err(e) if e.to_string().contains("Address family not supported") => {
            eprintln!("skipped: this machine has no IPv6 ({e})");
        }
        Err(e) => panic!("[::]:{port} next to 0.0.0.0:{port}: {e}"),
    }
    // An IPv4-mapped address binds as IPv4.
    let mapped = ListenerConfig::new(vec!["[::ffff:127.0.0.1]:0".parse().unwrap()]);
    let b = bind(ListenerKind::Smtp, &mapped).await.unwrap();
    assert!(b.local_addrs()[0].is_ipv4());
}
