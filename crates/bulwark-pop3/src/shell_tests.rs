//! The whole POP3 shell over an in-memory stream (`Connection::over_stream`): what the
//! session driver decides (pipelined flushing, overlong lines, the idle timeout, the
//! shutdown) seen from a client, without sockets.

use std::sync::Arc;
use std::time::Duration;

use bulwark_auth::Authenticator;
use bulwark_config::{Config, ListenerKind, LoadedConfig};
use bulwark_net::{CancellationToken, Connection, SessionHandler};
use bulwark_observe::{ProtocolLog, Redactor};
use bulwark_store::{SharedStore, SqliteStore};
use bulwark_tls::TlsServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use crate::lock::MaildropLocks;
use crate::server::Pop3Handler;

struct Fixture {
    handler: Arc<Pop3Handler>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn fixture_with(adjust: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::with_defaults("mail.example.test");
    config.pop3.timeout_secs = 600;
    adjust(&mut config);
    let config = Arc::new(LoadedConfig {
        dir: dir.path().to_path_buf(),
        file: dir.path().join("bulwark.toml"),
        config,
    });
    let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("store")).unwrap());
    let auth = Authenticator::new(store.clone(), config.config.auth.clone());
    let g = bulwark_tls::generate_self_signed("mail.example.test", 30).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    bulwark_tls::write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
    let tls = TlsServer::new(&c, &k, bulwark_config::TlsVersion::V1_2).unwrap();
    let handler = Pop3Handler::with_locks(
        ListenerKind::Pop3,
        config,
        store,
        auth,
        tls,
        MaildropLocks::default(),
    );
    Fixture {
        handler: Arc::new(handler),
        _dir: dir,
    }
}

/// Runs one session on the handler; returns the client's end.
fn connect(f: &Fixture, shutdown: &CancellationToken) -> BufReader<DuplexStream> {
    let (server, client) = tokio::io::duplex(64 * 1024);
    let peer = "192.0.2.7:50000".parse().unwrap();
    let log = ProtocolLog::disabled("pop3", Redactor::None).session("t1", peer);
    let conn = Connection::over_stream(
        server,
        ListenerKind::Pop3,
        peer,
        "127.0.0.1:110".parse().unwrap(),
        shutdown.clone(),
        log,
    );
    let handler = f.handler.clone();
    tokio::spawn(async move { handler.run(conn).await });
    BufReader::new(client)
}

async fn line(c: &mut BufReader<DuplexStream>) -> String {
    let mut l = String::new();
    c.read_line(&mut l).await.unwrap();
    l
}

#[tokio::test]
async fn pipelined_commands_overlong_lines_and_quit() {
    let f = fixture();
    let token = CancellationToken::new();
    let mut c = connect(&f, &token);
    assert_eq!(
        line(&mut c).await,
        "+OK mail.example.test POP3 server ready\r\n"
    );
    // Two commands in one write: both answered, in order.
    c.get_mut()
        .write_all(b"NOOP\r\nUSER alice@example.test\r\n")
        .await
        .unwrap();
    assert!(line(&mut c).await.starts_with("-ERR"));
    // No login in the clear on 110 (RFC 2595 §2.2).
    assert!(line(&mut c).await.starts_with("-ERR"));
    let long = format!("NOOP {}\r\n", "x".repeat(400));
    c.get_mut().write_all(long.as_bytes()).await.unwrap();
    assert!(line(&mut c).await.starts_with("-ERR"));
    c.get_mut().write_all(b"QUIT\r\n").await.unwrap();
    assert!(line(&mut c).await.starts_with("+OK"));
    assert_eq!(line(&mut c).await, "", "the session did not end after QUIT");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_is_an_autologout() {
    // The login deadline later than the idle timeout: the idle timeout ends it.
    let f = fixture_with(|c| c.pop3.login_timeout_secs = 3600);
    let token = CancellationToken::new();
    let mut c = connect(&f, &token);
    line(&mut c).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        line(&mut c).await,
        "-ERR autologout: idle for 600 seconds\r\n"
    );
    assert!(started.elapsed() >= Duration::from_secs(600));
    assert_eq!(line(&mut c).await, "");
}

#[tokio::test(start_paused = true)]
async fn login_timeout_is_an_autologout() {
    // The default login deadline (60 s) comes before the idle timeout (600 s).
    let f = fixture();
    let token = CancellationToken::new();
    let mut c = connect(&f, &token);
    line(&mut c).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        line(&mut c).await,
        "-ERR autologout: log in within 60 seconds of connecting\r\n"
    );
    assert!(started.elapsed() >= Duration::from_secs(60));
    assert!(started.elapsed() < Duration::from_secs(600));
    assert_eq!(line(&mut c).await, "");
}

#[tokio::test]
async fn shutdown_says_nothing_was_deleted() {
    let f = fixture();
    let token = CancellationToken::new();
    let mut c = connect(&f, &token);
    line(&mut c).await;
    token.cancel();
    assert_eq!(
        line(&mut c).await,
        "-ERR [SYS/TEMP] server shutting down; nothing was deleted\r\n"
    );
}
