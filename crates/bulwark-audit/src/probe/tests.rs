//! Probes against deliberately insecure fake servers: each must raise its finding.

use std::net::SocketAddr;
use std::sync::Arc;

use bulwark_config::{ListenerKind, TlsVersion};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::checks::probe_findings;

type Script = &'static [(&'static str, &'static str)];

/// Answers each line with the reply of the first script entry whose key starts the
/// line (case-insensitively); unknown lines get `fallback`.
async fn serve_script<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    greeting: &'static str,
    script: Script,
    fallback: &'static str,
) {
    let mut s = BufReader::new(s);
    let _ = s.get_mut().write_all(greeting.as_bytes()).await;
    loop {
        let mut line = String::new();
        match s.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let upper = line.to_ascii_uppercase();
        let reply = script
            .iter()
            .find(|(k, _)| upper.starts_with(&k.to_ascii_uppercase()))
            .map_or(fallback, |(_, r)| *r);
        if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        if upper.starts_with("QUIT")
            || upper.contains("LOGOUT")
            || reply.contains("Connection: close")
        {
            return;
        }
    }
}

async fn fake(greeting: &'static str, script: Script, fallback: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_script(s, greeting, script, fallback));
        }
    });
    addr
}

fn exp(kind: ListenerKind) -> Expectation {
    Expectation {
        kind,
        implicit_tls: kind.tls_mode() == bulwark_config::TlsMode::Implicit,
        min_version: TlsVersion::V1_2,
        hostname: "mail.example.test".into(),
        cert_sha256: None,
        token_required: false,
    }
}

fn ids(p: &ListenerProbe) -> Vec<&'static str> {
    let mut v: Vec<&str> = p.differences.iter().map(|d| d.finding).collect();
    v.dedup();
    v
}

#[tokio::test]
async fn smtp_with_cleartext_auth_and_open_relay() {
    let addr = fake(
        "220 fake ESMTP\r\n",
        &[
            (
                "EHLO",
                "250-fake\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n",
            ),
            ("AUTH PLAIN", "334 \r\n"),
            ("*", "501 cancelled\r\n"),
            ("MAIL", "250 ok\r\n"),
            ("RCPT", "250 ok, I relay anything\r\n"),
            ("RSET", "250 ok\r\n"),
            ("QUIT", "221 bye\r\n"),
        ],
        "500 what\r\n",
    )
    .await;
    let p = probe_listener(&exp(ListenerKind::Submission), addr).await;
    assert_eq!(p.observed.starttls_offered, Some(false));
    assert_eq!(p.observed.auth_before_tls, ["PLAIN", "LOGIN"]);
    assert!(p.observed.cleartext_auth_accepted.is_some());
    assert!(p.observed.relay_accepted.is_some());
    assert_eq!(
        ids(&p),
        ["plaintext-auth", "open-relay"],
        "{:?}",
        p.differences
    );
    let f = probe_findings(&[p]);
    assert!(f
        .iter()
        .any(|x| x.id == "open-relay" && x.severity == crate::Severity::Critical));
    assert!(f
        .iter()
        .any(|x| x.id == "plaintext-auth" && x.severity == crate::Severity::Critical));
}

#[tokio::test]
async fn imap_without_logindisabled() {
    let addr = fake(
        "* OK fake IMAP\r\n",
        &[
            (
                "p1 CAPABILITY",
                "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\np1 OK done\r\n",
            ),
            ("p3 AUTHENTICATE", "+ \r\n"),
            ("*", "p3 BAD cancelled\r\n"),
            ("p9 LOGOUT", "* BYE\r\np9 OK\r\n"),
        ],
        "* BAD what\r\n",
    )
    .await;
    let p = probe_listener(&exp(ListenerKind::Imap), addr).await;
    assert_eq!(p.observed.logindisabled_before_tls, Some(false));
    assert_eq!(p.observed.auth_before_tls, ["LOGIN", "PLAIN"]);
    assert_eq!(ids(&p), ["imap-cleartext-login"], "{:?}", p.differences);
    assert!(p.differences.len() >= 3);
}

#[tokio::test]
async fn pop3_with_user_before_stls() {
    let addr = fake(
        "+OK fake POP3\r\n",
        &[
            ("CAPA", "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
            ("USER", "+OK send PASS\r\n"),
            ("QUIT", "+OK bye\r\n"),
        ],
        "-ERR what\r\n",
    )
    .await;
    let p = probe_listener(&exp(ListenerKind::Pop3), addr).await;
    assert_eq!(p.observed.auth_before_tls, ["USER", "PLAIN"]);
    assert_eq!(ids(&p), ["pop3-cleartext-login"], "{:?}", p.differences);
    // POP3's upgrade command is STLS (RFC 2595 §4): the report names it so.
    let summary = p.observed_summary();
    assert!(summary.contains("STLS NOT offered"), "{summary}");
    assert!(!summary.contains("STARTTLS"), "{summary}");
    assert!(
        p.differences
            .iter()
            .any(|d| d.text == "STLS is not offered"),
        "{:?}",
        p.differences
    );
}

#[tokio::test]
async fn legacy_tls_is_detected() {
    // Answers any ClientHello with a TLS 1.1 ServerHello record.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(&[
                        0x16, 0x03, 0x02, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x02,
                    ])
                    .await;
                let _ = s.write_all(&[0u8; 38]).await;
            });
        }
    });
    let p = probe_listener(&exp(ListenerKind::Imaps), addr).await;
    let legacy = p.observed.tls_legacy.clone().unwrap();
    assert!(legacy.accepted, "{legacy:?}");
    assert!(
        ids(&p).contains(&"tls-legacy-version"),
        "{:?}",
        p.differences
    );
    let f = probe_findings(&[p]);
    assert!(f
        .iter()
        .any(|x| x.id == "tls-legacy-version" && x.severity == crate::Severity::High));
}

#[tokio::test]
async fn metrics_beyond_loopback_answering_plain_http() {
    let addr = fake(
        "",
        &[(
            "GET",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        )],
        "",
    )
    .await;
    let mut e = exp(ListenerKind::Metrics);
    e.implicit_tls = true;
    e.token_required = true;
    let p = probe_listener(&e, addr).await;
    assert_eq!(p.observed.plain_http_answered, Some(true));
    assert!(
        ids(&p).contains(&"metrics-unprotected"),
        "{:?}",
        p.differences
    );
}

/// A real rustls server that only speaks TLS 1.3 and presents another certificate
/// than the configured one: version mismatch and cert-not-served.
#[tokio::test]
async fn tls_versions_and_certificate_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let g = bulwark_tls::generate_self_signed("mail.example.test", 30).unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    bulwark_tls::write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
    let server = bulwark_tls::TlsServer::new(&c, &k, TlsVersion::V1_3).unwrap();
    let served = server.cert_info();
    let acceptor = server.acceptor().clone();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(t) = acceptor.accept(s).await {
                    serve_script(
                        t,
                        "* OK fake IMAPS\r\n",
                        &[
                            (
                                "p1 CAPABILITY",
                                "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\np1 OK done\r\n",
                            ),
                            ("p9 LOGOUT", "* BYE\r\np9 OK\r\n"),
                        ],
                        "* BAD\r\n",
                    )
                    .await;
                }
            });
        }
    });
    let mut e = exp(ListenerKind::Imaps);
    e.cert_sha256 = Some("00".repeat(32));
    let p = probe_listener(&e, addr).await;
    let o = &p.observed;
    assert_eq!(o.implicit_tls, Some(true));
    assert!(o.negotiated.as_deref().unwrap().starts_with("TLSv1.3"));
    assert_eq!(o.certificate.as_ref().unwrap().sha256, served.sha256);
    assert!(o.certificate.as_ref().unwrap().self_signed);
    assert!(!o.tls_1_2.as_ref().unwrap().accepted);
    assert!(o.tls_1_3.as_ref().unwrap().accepted);
    assert!(!o.tls_legacy.as_ref().unwrap().accepted);
    assert_eq!(o.auth_after_tls, ["LOGIN", "PLAIN"]);
    assert_eq!(
        ids(&p),
        ["tls-version-mismatch", "cert-not-served"],
        "{:?}",
        p.differences
    );
    // With the matching expectation: nothing differs.
    let mut e = exp(ListenerKind::Imaps);
    e.min_version = TlsVersion::V1_3;
    e.cert_sha256 = Some(served.sha256.clone());
    let p = probe_listener(&e, addr).await;
    assert!(p.differences.is_empty(), "{:?}", p.differences);
    let _ = Arc::new(());
}
