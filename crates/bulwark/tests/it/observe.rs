//! Seeing and proving: the metrics endpoint (scraped with curl), `bulwark report` and
//! `bulwark audit` (their output formats and findings for insecure configurations),
//! and the protocol log after real logins.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "0123456789abcdef-scrape-token";

/// Runs curl; returns (HTTP status, body). Status 0 when no HTTP response came.
fn curl(args: &[&str]) -> (u16, String) {
    require_tool("curl");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of one series (`name{labels}` exactly as exposed), or None.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

pub fn scrape(s: &Server) -> String {
    let url = format!("http://{}/metrics", loopback(s.addr("metrics")));
    let (code, body) = curl(&[&url]);
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn metrics_on_loopback_are_plain_http_and_count_activity() {
    let d = DataDir::init();
    let s = Server::start(&d);
    let first = scrape(&s);
    // Every catalogued metric is described and present from the start.
    for name in [
        "bulwark_connections_total",
        "bulwark_sessions_active",
        "bulwark_tls_handshakes_total",
        "bulwark_tls_handshake_failures_total",
        "bulwark_starttls_total",
        "bulwark_auth_attempts_total",
        "bulwark_auth_throttled_total",
        "bulwark_messages_received_total",
        "bulwark_messages_delivered_total",
        "bulwark_messages_queued_total",
        "bulwark_messages_bounced_total",
        "bulwark_queue_depth",
        "bulwark_queue_oldest_age_seconds",
        "bulwark_delivery_attempts_total",
        "bulwark_spf_results_total",
        "bulwark_senderid_results_total",
        "bulwark_dkim_results_total",
        "bulwark_dmarc_results_total",
        "bulwark_tls_certificate_expiry_seconds",
    ] {
        assert!(
            first.contains(&format!("# HELP {name} ")),
            "{name} missing:\n{first}"
        );
    }
    let expiry = metric(&first, "bulwark_tls_certificate_expiry_seconds").unwrap();
    assert!(
        expiry > 700.0 * 86400.0,
        "self-signed for 730 days: {expiry}"
    );
    assert_eq!(metric(&first, "bulwark_queue_depth"), Some(0.0));

    // Activity changes the counters: two more connections to the metrics listener.
    let conns = "bulwark_connections_total{listener=\"metrics\"}";
    let before = metric(&first, conns).unwrap();
    let (code, _) = curl(&[&format!(
        "http://{}/nothing-here",
        loopback(s.addr("metrics"))
    )]);
    assert_eq!(code, 404);
    let (code, _) = curl(&[
        "-X",
        "POST",
        &format!("http://{}/metrics", loopback(s.addr("metrics"))),
    ]);
    assert_eq!(code, 405);
    let second = scrape(&s);
    assert_eq!(metric(&second, conns), Some(before + 3.0), "{second}");
    assert_eq!(
        metric(&second, "bulwark_sessions_total{listener=\"metrics\"}"),
        Some(before + 3.0)
    );
}

#[test]
fn metrics_request_heads_are_bounded() {
    let d = DataDir::init();
    let s = Server::start(&d);
    let addr = loopback(s.addr("metrics"));
    let exchange = |req: &[u8]| -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = c.write_all(req);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert!(exchange(long.as_bytes()).starts_with("HTTP/1.1 431 "));
    let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
    let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
    assert!(exchange(many.as_bytes()).starts_with("HTTP/1.1 431 "));
    assert!(exchange(b"GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(exchange(b"\x16\x03\x01\x00\x05hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // The server is still there.
    scrape(&s);
}

/// Metrics bound beyond loopback: HTTPS and a bearer token. The test binds the
/// IPv4-mapped IPv6 form of 127.0.0.1 — traffic stays on loopback, but the address is
/// not `::1`/127.0.0.0/8, so the server treats the listener as exposed.
#[test]
fn metrics_beyond_loopback_need_https_and_the_token() {
    let d = DataDir::init();
    d.edit_config(|c| {
        c["listeners"]["metrics"]["bind"] =
            toml_edit::value(toml_edit::Array::from_iter(["[::ffff:127.0.0.1]:0"]));
        c["metrics"]["bearer_token"] = toml_edit::value(TOKEN);
    });
    let s = Server::start(&d);
    let port = s.port("metrics");
    let run: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("run/listeners.json")).unwrap(),
    )
    .unwrap();
    let m = run["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "metrics")
        .unwrap();
    assert_eq!(m["tls"], "implicit-tls");

    let resolve = format!("{HOSTNAME}:{port}:127.0.0.1");
    let https = format!("https://{HOSTNAME}:{port}/metrics");
    let cacert = d.cert_path().display().to_string();
    // Plain HTTP gets no HTTP answer at all.
    let (code, _) = curl(&[&format!("http://127.0.0.1:{port}/metrics")]);
    assert_eq!(code, 0, "plain HTTP must not be answered");
    // HTTPS without, or with a wrong, token: 401.
    let (code, body) = curl(&["--resolve", &resolve, "--cacert", &cacert, &https]);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("bulwark_"), "{body}");
    let (code, _) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        "-H",
        "Authorization: Bearer not-the-token-at-all",
        &https,
    ]);
    assert_eq!(code, 401);
    // With it: the metrics, showing the TLS handshakes just made.
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &cacert,
        "-H",
        &auth,
        &https,
    ]);
    assert_eq!(code, 200, "{body}");
    let tls13 = metric(
        &body,
        "bulwark_tls_handshakes_total{listener=\"metrics\",version=\"TLSv1.3\"}",
    )
    .unwrap();
    assert!(tls13 >= 3.0, "{body}");
    assert!(
        metric(
            &body,
            "bulwark_tls_handshake_failures_total{listener=\"metrics\"}"
        )
        .unwrap()
            >= 1.0,
        "the plain HTTP attempt failed its handshake:\n{body}"
    );
    // The token never reaches a log.
    assert!(!s.log().contains(TOKEN));
}
