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

/// A message for a remote domain that cannot be delivered (DNS refuses) stays queued:
/// the queue gauges and message counters follow.
#[test]
fn metrics_follow_the_queue() {
    let d = DataDir::init();
    let user = format!("alice@{DOMAIN}");
    d.add_user(&user);
    let s = Server::start(&d);
    let before = scrape(&s);
    assert_eq!(metric(&before, "bulwark_queue_depth"), Some(0.0));
    python_ok(
        r#"
import smtplib, ssl, sys
port, user, pw, cafile = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile); ctx.check_hostname = False
s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
s.starttls(context=ctx); s.login(user, pw)
s.sendmail(user, ["bob@remote.test"], f"From: {user}\r\nTo: bob@remote.test\r\nSubject: queued\r\n\r\nhello\r\n")
s.quit()
"#,
        &[
            &s.port("submission").to_string(),
            &user,
            PASSWORD,
            &d.cert_path().display().to_string(),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let after = loop {
        let m = scrape(&s);
        if metric(&m, "bulwark_queue_depth") == Some(1.0) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queue depth never became 1:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metric(&after, "bulwark_queue_oldest_age_seconds").unwrap() >= 0.0);
    assert_eq!(
        metric(&after, "bulwark_messages_queued_total"),
        Some(1.0),
        "{after}"
    );
    assert!(
        metric(
            &after,
            "bulwark_messages_received_total{listener=\"submission\"}"
        )
        .unwrap()
            >= 1.0
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

// ---------------------------------------------------------------------------------
// bulwark report / bulwark audit
// ---------------------------------------------------------------------------------

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `bulwark audit --json` with extra arguments: (exit code, findings as (id, severity)).
pub fn audit(d: &DataDir, extra: &[&str]) -> (i32, Vec<(String, String)>, serde_json::Value) {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(extra);
    let out = d.cli(&args);
    let code = out.status.code().unwrap_or(-1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit output is not JSON ({e}):\n{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (code, findings, v)
}

fn has(findings: &[(String, String)], id: &str, severity: &str) -> bool {
    findings.iter().any(|(i, s)| i == id && s == severity)
}

#[test]
fn report_is_computed_from_the_live_configuration_in_three_formats() {
    let d = DataDir::init();
    d.edit_config(|c| {
        c["listeners"]["submission"]["bind"] =
            toml_edit::value(toml_edit::Array::from_iter(["127.0.0.1:12587"]));
        c["listeners"]["pop3"]["enabled"] = toml_edit::value(false);
        c["listeners"]["smtp"]["proxy_protocol_from"] =
            toml_edit::value(toml_edit::Array::from_iter(["10.0.0.5/32"]));
        c["tls"]["min_version"] = toml_edit::value("1.3");
        let mut p = toml_edit::Table::new();
        p["network"] = toml_edit::value("192.0.2.0/24");
        p["require"] = toml_edit::value("tls");
        let mut arr = toml_edit::ArrayOfTables::new();
        arr.push(p);
        c["smtp"]["accept_policy"] = toml_edit::Item::ArrayOfTables(arr);
    });

    let out = d.cli(&["report"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let header = text
        .lines()
        .find(|l| l.starts_with("data path"))
        .expect("header");
    let cols: Vec<&str> = header
        .split("  ")
        .filter(|s| !s.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        cols,
        [
            "data path",
            "port",
            "default authentication",
            "supported authentication",
            "encryption supported",
            "encrypted by default"
        ]
    );
    let row = |needle: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no row {needle:?}:\n{text}"))
            .to_string()
    };
    assert!(row("Mail client → Bulwark (submission) ").contains("12587/TCP on 127.0.0.1"));
    assert!(row("Mail client → Bulwark (submission) ").contains("STARTTLS, TLS 1.3"));
    assert!(row("POP3 client → Bulwark ").contains("closed (enabled = false)"));
    assert!(
        row("Internet server in 192.0.2.0/24 → Bulwark (per-host policy)")
            .contains("required (require = \"tls\")")
    );
    assert!(row("Internet server → Bulwark (SMTP receive)")
        .contains("required by per-host policy for 1 network(s)"));
    assert!(
        row("Load balancer / reverse proxy in 10.0.0.5/32 → Bulwark (smtp)")
            .contains("PROXY protocol accepted only from 10.0.0.5/32")
    );
    assert!(row("Scraper → metrics").contains("loopback only"));
    // Columns are aligned: every row's second column starts where the header's does.
    let port_col = header.find("port").unwrap();
    for l in text
        .lines()
        .skip_while(|l| !l.starts_with("data path"))
        .skip(2)
    {
        if l.is_empty() {
            break;
        }
        let prefix: String = l.chars().take(header[..port_col].chars().count()).collect();
        assert!(prefix.ends_with("  "), "misaligned: {l}");
    }

    let out = d.cli(&["report", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["data_paths"].as_array().unwrap();
    let sub = rows
        .iter()
        .find(|r| r["listener"] == "submission" && r["category"] == "listener")
        .unwrap();
    assert_eq!(sub["port"], "12587/TCP on 127.0.0.1");
    assert_eq!(sub["default_authentication"], "SASL after STARTTLS");
    assert_eq!(sub["addresses"][0], "127.0.0.1:12587");
    assert!(rows.iter().any(|r| r["category"] == "accept-policy"));
    assert_eq!(v["server_running"], false);

    let out = d.cli(&["report", "--markdown"]);
    let md = stdout(&out);
    assert!(md.contains("| data path | port | default authentication | supported authentication | encryption supported | encrypted by default |\n|---|---|---|---|---|---|\n"), "{md}");
    assert!(md.contains("| Mail client → Bulwark (submission) | 12587/TCP on 127.0.0.1 | SASL after STARTTLS | PLAIN, LOGIN | STARTTLS, TLS 1.3 | yes — AUTH and MAIL refused before TLS |"), "{md}");

    // --probe needs a running server and says so.
    let out = d.cli(&["report", "--probe"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

/// Every listener row of `bulwark report` against what `bulwark serve` really starts:
/// a row that promises protection must be a listener the running server opened, and a
/// listener the server does not open must say "not served" — the same with the server
/// stopped (what an auditor reading the report sees) as while it runs.
#[test]
fn report_rows_match_the_listeners_serve_starts() {
    let d = DataDir::init();
    // Every listener kind enabled, so each one's row is tested.
    d.edit_config(|c| {
        for kind in ["http", "https"] {
            c["listeners"][kind]["enabled"] = toml_edit::value(true);
        }
    });
    let report = |d: &DataDir| -> serde_json::Value {
        let out = d.cli(&["report", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let listener_rows = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["data_paths"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["category"] == "listener")
            .cloned()
            .collect()
    };
    let stopped = report(&d);
    assert_eq!(stopped["server_running"], false);
    let s = Server::start(&d);
    let running = report(&d);
    assert_eq!(running["server_running"], true);
    let stopped_rows = listener_rows(&stopped);
    let running_rows = listener_rows(&running);
    assert_eq!(stopped_rows.len(), 10, "{stopped:#}");
    for (before, now) in stopped_rows.iter().zip(&running_rows) {
        let kind = before["listener"].as_str().unwrap();
        assert_eq!(now["listener"], kind);
        let started = s.listeners.contains_key(kind);
        let not_served = before["encrypted_by_default"] == "not served";
        assert_eq!(
            started,
            !not_served,
            "{kind}: serve {} it, the stopped server's report says {before:#}",
            if started { "starts" } else { "does not start" }
        );
        // The promise does not depend on whether the server runs.
        for col in [
            "data_path",
            "default_authentication",
            "supported_authentication",
            "encryption_supported",
            "encrypted_by_default",
        ] {
            assert_eq!(
                before[col], now[col],
                "{kind}: {col} changes when the server runs"
            );
        }
        if started {
            assert_eq!(now["state"], "listening", "{now:#}");
        } else {
            assert_eq!(now["state"], "not served", "{now:#}");
            assert_eq!(before["state"], "not served", "{before:#}");
        }
    }
    // The web listeners are the ones this version does not open.
    assert!(!s.listeners.contains_key("https") && !s.listeners.contains_key("http"));
    // No row claims a feature "not in this version" or "later".
    for r in stopped["data_paths"].as_array().unwrap() {
        let text = r.to_string();
        assert!(
            !text.contains("not in this version") && !text.contains("later"),
            "{r:#}"
        );
    }
}

#[test]
fn fresh_init_audits_clean_except_the_self_signed_certificate() {
    // On loopback: info.
    let d = DataDir::init();
    let (code, f, _) = audit(&d, &["--fail-on", "low"]);
    assert_eq!(f, [("cert-self-signed".to_string(), "info".to_string())]);
    assert_eq!(code, 0);
    let (code, _, _) = audit(&d, &["--fail-on", "info"]);
    assert_eq!(code, 1);

    // Running, probed: still clean.
    let s = Server::start(&d);
    let (code, f, _) = audit(&d, &["--probe", "--fail-on", "low"]);
    assert_eq!(
        f,
        [("cert-self-signed".to_string(), "info".to_string())],
        "{}",
        s.log()
    );
    assert_eq!(code, 0);
    let out = d.cli(&["report", "--probe"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("Probed on this machine"), "{text}");
    assert!(text.contains("0 difference(s)"), "{text}");
    drop(s);

    // Standard ports on all addresses: high.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let out = Command::new(bin())
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "init",
            "--domain",
            DOMAIN,
            "--hostname",
            HOSTNAME,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(bin())
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "audit",
            "--json",
            "--fail-on",
            "high",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 1, "{v:#}");
    assert_eq!(f[0]["id"], "cert-self-signed");
    assert_eq!(f[0]["severity"], "high");
    assert!(f[0]["fix"]
        .as_str()
        .unwrap()
        .contains("bulwark cert import"));
    assert_eq!(
        out.status.code(),
        Some(1),
        "--fail-on high with a high finding"
    );
    let out = Command::new(bin())
        .args([
            "--dir",
            dir.to_str().unwrap(),
            "audit",
            "--fail-on",
            "critical",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("HIGH     cert-self-signed  "), "{text}");
    assert!(text.contains("  found: ") && text.contains("  why:   ") && text.contains("  fix:   "));
}

fn chmod(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn insecure_configurations_raise_their_findings() {
    let d = DataDir::init();
    d.edit_config(|c| {
        c["auth"]["limiter_enabled"] = toml_edit::value(false);
        c["listeners"]["metrics"]["bind"] =
            toml_edit::value(toml_edit::Array::from_iter(["0.0.0.0:9425"]));
        c["listeners"]["smtp"]["proxy_protocol_from"] =
            toml_edit::value(toml_edit::Array::from_iter(["0.0.0.0/0"]));
        c["senderauth"]["internal_servers"] =
            toml_edit::value(toml_edit::Array::from_iter(["10.1.0.0/16"]));
        c["smtp"]["max_recipients"] = toml_edit::value(0);
        c["server"]["hostname"] = toml_edit::value("other.example.test");
    });
    chmod(&d.path().join("tls/key.pem"), 0o644);
    chmod(d.path(), 0o755);
    chmod(&d.path().join("store"), 0o755);
    chmod(&d.config_path(), 0o644);
    std::fs::create_dir(d.path().join("log")).unwrap();
    chmod(&d.path().join("log"), 0o755);

    let (code, f, v) = audit(&d, &["--fail-on", "medium"]);
    for (id, sev) in [
        ("auth-limiter-disabled", "high"),
        ("metrics-no-token", "critical"),
        ("proxy-protocol-too-broad", "high"),
        ("accept-policy-internal-weak", "high"),
        ("config-invalid", "high"),
        // Metrics on 0.0.0.0 serves the certificate beyond loopback: high.
        ("cert-name-mismatch", "high"),
        ("key-permissions", "critical"),
        ("data-dir-permissions", "high"),
        ("store-permissions", "high"),
        ("config-permissions", "medium"),
        ("log-permissions", "medium"),
        ("cert-self-signed", "high"),
    ] {
        assert!(has(&f, id, sev), "{id} ({sev}) missing: {v:#}");
    }
    assert_eq!(code, 1);
    assert_eq!(
        v["findings"][0]["severity"], "critical",
        "most severe first"
    );
    let fix_of = |id: &str| -> String {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()["fix"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(fix_of("key-permissions").contains("chmod 600"));
    assert!(fix_of("accept-policy-internal-weak").contains("network = \"10.1.0.0/16\""));
    assert!(fix_of("config-invalid").contains("100"));
    let out = d.cli(&["audit", "--markdown"]);
    assert!(stdout(&out).starts_with("| severity | id | subject | found | fix |\n"));

    // Weak limits, and an internal network covered by an "any" policy.
    let d = DataDir::init();
    d.edit_config(|c| {
        c["auth"]["failure_delay_ms"] = toml_edit::value(0);
        c["auth"]["block_ip_after_failures"] = toml_edit::value(1000);
        c["senderauth"]["internal_servers"] =
            toml_edit::value(toml_edit::Array::from_iter(["10.1.0.0/16"]));
        let mut p = toml_edit::Table::new();
        p["network"] = toml_edit::value("10.0.0.0/8");
        p["require"] = toml_edit::value("tls");
        let mut q = toml_edit::Table::new();
        q["network"] = toml_edit::value("10.1.2.0/24");
        q["require"] = toml_edit::value("any");
        let mut arr = toml_edit::ArrayOfTables::new();
        arr.push(p);
        arr.push(q);
        c["smtp"]["accept_policy"] = toml_edit::Item::ArrayOfTables(arr);
    });
    let (_, f, v) = audit(&d, &[]);
    assert!(has(&f, "auth-limits-weak", "medium"), "{v:#}");
    assert!(has(&f, "accept-policy-internal-weak", "high"), "{v:#}");
    // The internal network itself requires TLS now; only the weaker /24 is named.
    assert!(v.to_string().contains("10.1.2.0/24"));
}

#[test]
fn certificate_findings_expiring_and_untrusted() {
    let d = DataDir::init();
    let out = d.cli(&["cert", "selfsigned", "--force", "--days", "10"]);
    assert!(out.status.success(), "{out:?}");
    let (_, f, v) = audit(&d, &[]);
    assert!(has(&f, "cert-expiring", "high"), "{v:#}");

    // A chain from a CA nobody trusts.
    require_tool("openssl");
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n).display().to_string();
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-subj",
        "/CN=Bulwark Untrusted Test CA",
        "-days",
        "30",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
        "-subj",
        &format!("/CN={HOSTNAME}"),
    ]);
    std::fs::write(
        t.path().join("ext"),
        format!("subjectAltName=DNS:{HOSTNAME}\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("leaf.pem"),
        "-days",
        "60",
        "-extfile",
        &p("ext"),
    ]);
    let out = d.cli(&[
        "cert",
        "import",
        "--cert",
        &p("leaf.pem"),
        "--key",
        &p("leaf.key"),
    ]);
    assert!(out.status.success(), "{out:?}");
    let (_, f, v) = audit(&d, &[]);
    assert!(has(&f, "cert-untrusted", "low"), "{v:#}");
    assert!(!f.iter().any(|(i, _)| i == "cert-self-signed"), "{v:#}");
}

#[test]
fn outbound_connectors_in_report_and_audit() {
    let d = DataDir::init();
    std::fs::create_dir(d.path().join("secrets")).unwrap();
    std::fs::write(d.path().join("secrets/relay"), "relayuser\nrelaypass\n").unwrap();
    chmod(&d.path().join("secrets/relay"), 0o644);
    d.edit_config(|c| {
        let mut a = toml_edit::Table::new();
        a["name"] = toml_edit::value("partner");
        a["address_space"] = toml_edit::value(toml_edit::Array::from_iter(["partner.example"]));
        a["smart_host"] = toml_edit::value("relay.partner.example");
        a["port"] = toml_edit::value(587);
        a["tls"] = toml_edit::value("opportunistic");
        a["credentials_file"] = toml_edit::value("secrets/relay");
        let mut b = toml_edit::Table::new();
        b["name"] = toml_edit::value("bank");
        b["address_space"] = toml_edit::value(toml_edit::Array::from_iter(["*.bank.example"]));
        b["tls"] = toml_edit::value("pinned");
        b["tls_pins"] = toml_edit::value(toml_edit::Array::from_iter(["ab".repeat(32)]));
        let mut arr = toml_edit::ArrayOfTables::new();
        arr.push(a);
        arr.push(b);
        c["outbound"]["connector"] = toml_edit::Item::ArrayOfTables(arr);
    });
    let (code, f, v) = audit(&d, &[]);
    assert!(
        has(&f, "connector-credentials-without-tls", "critical"),
        "{v:#}"
    );
    assert!(has(&f, "credentials-permissions", "high"), "{v:#}");
    assert!(
        !v.to_string().contains("allows a cleartext session"),
        "the config issue is not reported twice: {v:#}"
    );
    assert_eq!(code, 1, "critical finding, default --fail-on critical");

    let out = d.cli(&["report", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<&serde_json::Value> = r["data_paths"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["category"] == "connector")
        .collect();
    assert_eq!(rows.len(), 2, "{r:#}");
    assert!(rows[0]["data_path"]
        .as_str()
        .unwrap()
        .contains("smart host relay.partner.example"));
    assert_eq!(rows[0]["port"], "587/TCP");
    assert!(rows[0]["default_authentication"]
        .as_str()
        .unwrap()
        .contains("SASL"));
    assert!(rows[1]["data_path"]
        .as_str()
        .unwrap()
        .contains("*.bank.example"));
    assert!(rows[1]["encrypted_by_default"]
        .as_str()
        .unwrap()
        .contains("pinned"));
}

#[test]
fn protocol_log_redaction_cannot_be_configured_away() {
    let d = DataDir::init();
    // There is no key that turns redaction off: any attempt is an unknown key.
    for (table, key) in [
        ("log", "redact"),
        ("log", "redaction"),
        ("listeners.smtp", "protocol_log_redact"),
    ] {
        let text = std::fs::read_to_string(d.config_path()).unwrap();
        let edited = text.replacen(
            &format!("[{table}]\n"),
            &format!("[{table}]\n{key} = false\n"),
            1,
        );
        assert_ne!(text, edited);
        std::fs::write(d.config_path(), &edited).unwrap();
        let out = d.cli(&["config", "check"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("unknown field `{key}`")));
        std::fs::write(d.config_path(), &text).unwrap();
    }
    // Every listener logging: the audit's redaction self-check finds nothing to report.
    d.edit_config(|c| {
        for l in [
            "smtp",
            "submission",
            "submissions",
            "imap",
            "imaps",
            "pop3",
            "pop3s",
            "metrics",
        ] {
            c["listeners"][l]["protocol_log"] = toml_edit::value(true);
        }
    });
    let (_, f, v) = audit(&d, &[]);
    assert!(
        !f.iter().any(|(i, _)| i == "protocol-log-unredacted"),
        "{v:#}"
    );
}

#[test]
fn probing_metrics_beyond_loopback() {
    let d = DataDir::init();
    d.edit_config(|c| {
        c["listeners"]["metrics"]["bind"] =
            toml_edit::value(toml_edit::Array::from_iter(["[::ffff:127.0.0.1]:0"]));
        c["metrics"]["bearer_token"] = toml_edit::value(TOKEN);
    });
    let s = Server::start(&d);
    let (_, f, v) = audit(&d, &["--probe"]);
    assert!(has(&f, "metrics-exposed", "low"), "{v:#}");
    assert!(
        !f.iter()
            .any(|(i, _)| i == "metrics-unprotected" || i == "listener-mismatch"),
        "{v:#}\n{}",
        s.log()
    );
    let out = d.cli(&["report", "--probe", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = r["data_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["listener"] == "metrics")
        .unwrap();
    let o = &m["probe"]["observed"];
    assert_eq!(o["http_status"], 401, "{m:#}");
    assert_eq!(o["plain_http_answered"], false);
    assert_eq!(o["implicit_tls"], true);
    assert_eq!(o["tls_1_2"]["accepted"], true);
    assert_eq!(o["tls_1_3"]["accepted"], true);
    assert_eq!(o["tls_legacy"]["accepted"], false);
    assert!(o["certificate"]["subject"]
        .as_str()
        .unwrap()
        .contains(HOSTNAME));
    assert_eq!(m["probe"]["differences"].as_array().unwrap().len(), 0);
    assert_eq!(
        m["encrypted_by_default"],
        "yes — bound beyond loopback: HTTPS and token required"
    );
}

#[test]
fn dns_records_are_checked_against_a_test_resolver() {
    use bulwark_dns::testing::TestDns;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(TestDns::start());
    dns.add_txt(DOMAIN, "v=spf1 mx -all");
    let d = DataDir::init();
    let addr = dns.addr().to_string();
    let (_, f, v) = audit(&d, &["--dns", &addr]);
    for id in [
        "dns-mx-missing",
        "dns-dkim-missing",
        "dns-dmarc-missing",
        "dns-spf-helo-missing",
    ] {
        assert!(f.iter().any(|(i, _)| i == id), "{id}: {v:#}");
    }
    assert!(!f.iter().any(|(i, _)| i == "dns-spf-missing"), "{v:#}");
    dns.add_mx(DOMAIN, 10, HOSTNAME);
    // The HELO name's record, as `bulwark spf record` prints it.
    dns.add_txt(HOSTNAME, "v=spf1 a -all");
    dns.add_txt(&format!("_dmarc.{DOMAIN}"), "v=DMARC1; p=reject");
    dns.add_txt(
        &format!("bulwark-ed25519._domainkey.{DOMAIN}"),
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    );
    let (_, f, v) = audit(&d, &["--dns", &addr]);
    assert!(!f.iter().any(|(i, _)| i.starts_with("dns-")), "{v:#}");
    let out = d.cli(&["audit", "--dns", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------
// Protocols: the protocol log after real logins, and what --probe sees.
// ---------------------------------------------------------------------------------

/// The mail listeners whose probes are tested (the protocols on main)…
const PROTOCOL_LISTENERS: &[&str] = &[
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
];
/// …and those that take logins.
fn login_listeners() -> impl Iterator<Item = &'static str> {
    PROTOCOL_LISTENERS.iter().copied().filter(|l| *l != "smtp")
}

const LOGIN_SCRIPT: &str = include_str!("observe_logins.py");

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every file under `dir`, recursively (rotated logs included).
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// DATA-PATHS rule 1: after real logins with every mechanism on every protocol, no
/// protocol log (nor the server log) contains the password, its base64 form, or the
/// base64 SASL PLAIN blob.
#[test]
fn protocol_logs_never_contain_passwords_after_real_logins() {
    let d = DataDir::init();
    let user = format!("alice@{DOMAIN}");
    d.add_user(&user);
    d.edit_config(|c| {
        for l in PROTOCOL_LISTENERS {
            c["listeners"][l]["protocol_log"] = toml_edit::value(true);
        }
    });
    let s = Server::start(&d);
    let mut args = vec![
        user.clone(),
        PASSWORD.to_string(),
        d.cert_path().display().to_string(),
    ];
    for l in login_listeners() {
        args.push(format!("{l}={}", s.port(l)));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let done = python_ok(LOGIN_SCRIPT, &args);
    for l in login_listeners() {
        assert!(
            done.lines().any(|x| x.starts_with(&format!("{l} "))),
            "no login on {l}: {done}"
        );
    }

    let secrets = [
        PASSWORD.to_string(),
        b64(PASSWORD.as_bytes()),
        b64(format!("\0{user}\0{PASSWORD}").as_bytes()),
    ];
    let mut files = Vec::new();
    files_under(&d.path().join("log"), &mut files);
    let mut logged = String::new();
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} contains {secret:?}",
                f.display()
            );
        }
        logged.push_str(&text);
    }
    let server_log = s.log();
    for secret in &secrets {
        assert!(
            !server_log.contains(secret.as_str()),
            "the server log contains {secret:?}"
        );
    }
    // The logs really recorded the logins (so the absence above means something).
    for l in login_listeners() {
        assert!(
            logged.contains(&format!("\"listener\":\"{l}\"")),
            "nothing logged for {l}"
        );
    }
    assert!(
        logged.contains(&format!("\"user\":\"{user}\"")),
        "no authenticated line"
    );
    assert!(logged.contains("***"), "no redacted line");

    // The metrics saw the same activity.
    let m = scrape(&s);
    let v = |series: &str| metric(&m, series).unwrap_or(0.0);
    for l in login_listeners() {
        assert!(
            v(&format!("bulwark_sessions_total{{listener=\"{l}\"}}")) >= 2.0,
            "{l}:\n{m}"
        );
        assert!(
            v(&format!(
                "bulwark_tls_handshakes_total{{listener=\"{l}\",version=\"TLSv1.3\"}}"
            )) >= 2.0,
            "{l}:\n{m}"
        );
    }
    // Successful logins per listener and mechanism, as the login script made them.
    for (l, mech, n) in [
        ("submission", "PLAIN", 2.0),
        ("submission", "LOGIN", 2.0),
        ("submissions", "PLAIN", 2.0),
        ("submissions", "LOGIN", 2.0),
        ("imap", "LOGIN", 1.0),
        ("imap", "PLAIN", 1.0),
        ("imaps", "LOGIN", 1.0),
        ("imaps", "PLAIN", 1.0),
        ("pop3", "USER", 1.0),
        ("pop3", "PLAIN", 2.0),
        ("pop3s", "USER", 1.0),
        ("pop3s", "PLAIN", 2.0),
    ] {
        if PROTOCOL_LISTENERS.contains(&l) {
            let series = format!(
                "bulwark_auth_attempts_total{{listener=\"{l}\",mechanism=\"{mech}\",result=\"success\"}}"
            );
            assert!(v(&series) >= n, "{series}:\n{m}");
        }
    }
    for l in ["submission", "imap", "pop3"] {
        if PROTOCOL_LISTENERS.contains(&l) {
            assert!(
                v(&format!("bulwark_starttls_total{{listener=\"{l}\"}}")) >= 2.0,
                "{l}:\n{m}"
            );
        }
    }
}

/// `--probe` against the real protocol servers: what each offers matches the
/// configuration, with TLS 1.2 and 1.3 accepted, 1.0/1.1 refused, and the configured
/// certificate presented; with min_version = "1.3", TLS 1.2 is refused.
#[test]
fn probes_see_what_the_protocols_offer() {
    let d = DataDir::init();
    let s = Server::start(&d);
    let out = d.cli(&["report", "--probe", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cert = bulwark_tls::CertInfo::from_pem(d.cert_pem().as_bytes()).unwrap();
    let probe = |l: &str| -> serde_json::Value {
        r["data_paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["listener"] == l && p["category"] == "listener")
            .unwrap()["probe"]
            .clone()
    };
    for l in PROTOCOL_LISTENERS {
        let p = probe(l);
        let o = &p["observed"];
        assert_eq!(
            p["differences"].as_array().unwrap().len(),
            0,
            "{l}: {p:#}\n{}",
            s.log()
        );
        assert_eq!(o["tls_1_2"]["accepted"], true, "{l}");
        assert_eq!(o["tls_1_3"]["accepted"], true, "{l}");
        assert_eq!(o["tls_legacy"]["accepted"], false, "{l}");
        assert_eq!(o["certificate"]["sha256"], cert.sha256.as_str(), "{l}");
        assert!(o["relay_accepted"].is_null(), "{l}");
        if ["smtp", "submission", "imap", "pop3"].contains(l) {
            assert_eq!(o["starttls_offered"], true, "{l}");
            assert_eq!(
                o["auth_before_tls"].as_array().unwrap().len(),
                0,
                "{l}: {o:#}"
            );
            assert!(o["cleartext_auth_accepted"].is_null(), "{l}");
        } else {
            assert_eq!(o["implicit_tls"], true, "{l}");
        }
        let after: Vec<&str> = o["auth_after_tls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let want: &[&str] = match *l {
            "submission" | "submissions" => &["PLAIN", "LOGIN"],
            "imap" | "imaps" => &["LOGIN", "PLAIN"],
            "pop3" | "pop3s" => &["USER", "PLAIN"],
            _ => &[],
        };
        for m in want {
            assert!(after.contains(m), "{l}: {m} missing after TLS: {after:?}");
        }
        if *l == "imap" {
            assert_eq!(o["logindisabled_before_tls"], true);
        }
    }
    drop(s);

    d.edit_config(|c| c["tls"]["min_version"] = toml_edit::value("1.3"));
    let s = Server::start(&d);
    let out = d.cli(&["report", "--probe", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for p in r["data_paths"].as_array().unwrap() {
        let Some(l) = p["listener"].as_str() else {
            continue;
        };
        if !PROTOCOL_LISTENERS.contains(&l) || p["category"] != "listener" {
            continue;
        }
        let o = &p["probe"]["observed"];
        assert_eq!(o["tls_1_2"]["accepted"], false, "{l}: {o:#}\n{}", s.log());
        assert_eq!(o["tls_1_3"]["accepted"], true, "{l}");
        assert_eq!(
            p["probe"]["differences"].as_array().unwrap().len(),
            0,
            "{l}: {p:#}"
        );
    }
    let (_, f, v) = audit(&d, &["--probe"]);
    assert_eq!(
        f,
        [("cert-self-signed".to_string(), "info".to_string())],
        "{v:#}"
    );
}
