//! Sender authentication end to end: SMTP sessions on port 25 (Python's smtplib) with
//! the sending domains' SPF/DMARC records served by a loopback DNS server, the stored
//! message's Authentication-Results and the policy outcome, the internal-relay case;
//! DKIM signing on 587/465 from the first start (keys made by `init`, or imported
//! from OpenSSL); and the administration tools `bulwark spf check|record`,
//! `bulwark dkim generate|import|list`.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::sync::Arc;

use bulwark_dns::testing::TestDns;

use crate::support::*;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or("").to_string()
}

/// Runs the CLI off the async runtime that serves the test DNS.
async fn cli(d: &Arc<DataDir>, args: Vec<String>, stdin: &str) -> Output {
    let d = d.clone();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        d.cli_stdin(&a, &stdin)
    })
    .await
    .unwrap()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_check_prints_lookups_and_the_result_last() {
    let dns = TestDns::start().await;
    dns.add_txt("pass.test", "v=spf1 include:_spf.pass.test -all");
    dns.add_txt("_spf.pass.test", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("fail.test", "v=spf1 mx -all exp=exp.fail.test");
    dns.add_txt("exp.fail.test", "%{i} is not one of %{d}'s servers");
    dns.add_mx("fail.test", 10, "mx.fail.test");
    dns.add_a("mx.fail.test", "198.51.100.7".parse().unwrap());
    dns.add_txt("pra.test", "v=spf1 -all");
    dns.add_txt("pra.test", "spf2.0/pra ip4:192.0.2.4 -all");
    let d = Arc::new(DataDir::init());
    let at = dns.addr().to_string();

    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.4",
            "--mail-from",
            "u@pass.test",
            "--helo",
            "mx.pass.test",
            "--dns",
            &at,
        ]),
        "",
    )
    .await;
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("TXT pass.test: \"v=spf1 include:_spf.pass.test -all\""),
        "{out}"
    );
    assert!(out.contains("TXT _spf.pass.test"), "{out}");
    assert_eq!(
        last_line(&o),
        "pass (192.0.2.4 matched include:_spf.pass.test of pass.test)"
    );

    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.9",
            "--mail-from",
            "u@fail.test",
            "--dns",
            &at,
        ]),
        "",
    )
    .await;
    let out = stdout(&o);
    assert!(out.contains("MX fail.test: mx.fail.test"), "{out}");
    assert!(
        out.contains("explanation (exp=): 192.0.2.9 is not one of fail.test's servers"),
        "{out}"
    );
    assert_eq!(last_line(&o), "fail (192.0.2.9 matched -all of fail.test)");

    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.9",
            "--mail-from",
            "u@nowhere.test",
            "--dns",
            &at,
        ]),
        "",
    )
    .await;
    assert_eq!(last_line(&o), "none (no SPF record for nowhere.test)");

    // Sender ID from a header block on stdin: the PRA is the Sender.
    let headers = "From: Boss <boss@other.test>\r\nSender: assistant@pra.test\r\nSubject: x\r\n";
    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.4",
            "--helo",
            "mx.pra.test",
            "--headers",
            "-",
            "--dns",
            &at,
        ]),
        headers,
    )
    .await;
    let out = stdout(&o);
    assert!(
        out.contains("PRA: assistant@pra.test (from the Sender header)"),
        "{out}"
    );
    assert!(out.contains("(spf2.0/pra)"), "{out}");
    assert_eq!(
        last_line(&o),
        "pass (192.0.2.4 matched ip4:192.0.2.4 of pra.test)"
    );
    // ... and without a usable PRA.
    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.4",
            "--headers",
            "-",
            "--dns",
            &at,
        ]),
        "From: a@pra.test\r\nFrom: b@pra.test\r\n",
    )
    .await;
    assert!(
        stdout(&o).contains("no PRA: 2 From headers"),
        "{}",
        stdout(&o)
    );
    assert!(
        last_line(&o).starts_with("no-pra (2 From headers"),
        "{}",
        last_line(&o)
    );
    // --pra: the same address given directly; the v=spf1 record would fail it.
    let o = cli(
        &d,
        args(&[
            "spf",
            "check",
            "--ip",
            "192.0.2.5",
            "--mail-from",
            "x@pass.test",
            "--pra",
            "someone@pra.test",
            "--dns",
            &at,
        ]),
        "",
    )
    .await;
    assert_eq!(
        last_line(&o),
        "fail (192.0.2.5 matched -all of pra.test)",
        "{}",
        stdout(&o)
    );
}

#[test]
fn spf_record_and_dkim_generate() {
    let d = DataDir::init();
    let o = d.cli(&["spf", "record"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("example.test.  IN TXT  \"v=spf1 a:mail.example.test mx ~all\""),
        "{out}"
    );
    assert!(out.contains("~all"), "{out}");
    // The HELO name gets its own record, so bounces (MAIL FROM:<>) pass SPF.
    assert!(
        out.contains("mail.example.test.  IN TXT  \"v=spf1 a -all\""),
        "{out}"
    );

    // `init` made the domain's keys: `dkim generate` replaces them only with --force.
    let o = d.cli(&[
        "dkim",
        "generate",
        "--domain",
        "example.test",
        "--algorithm",
        "ed25519",
    ]);
    assert!(!o.status.success(), "must refuse to overwrite");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    let o = d.cli(&["dkim", "generate", "--domain", "example.test", "--force"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("bulwark-rsa._domainkey.example.test.  IN TXT  \"v=DKIM1; k=rsa; p=MIIBIjAN"),
        "{out}"
    );
    assert!(
        out.contains("bulwark-ed25519._domainkey.example.test.  IN TXT  \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    for f in ["bulwark-rsa.pem", "bulwark-ed25519.pem"] {
        let p = d.path().join("dkim/example.test").join(f);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
    // `dkim list` shows the records of the keys now on disk (the regenerated ones).
    let o = d.cli(&["dkim", "list"]);
    let listed = stdout(&o);
    let records = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("._domainkey."))
            .map(|l| l.to_string())
            .collect()
    };
    let mut generated = records(&out);
    generated.sort();
    assert_eq!(records(&listed), generated, "{listed}");
    assert!(
        listed.starts_with(
            "bulwark-ed25519._domainkey.example.test.  IN TXT  \"v=DKIM1; k=ed25519; p="
        ),
        "{listed}"
    );
}

/// A bounce (MAIL FROM:<>) is checked against the HELO name (RFC 7208 §2.3): with the
/// record `bulwark spf record` prints for the host name published, it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helo_record_spf_record_prints_makes_bounces_pass() {
    let dns = TestDns::start().await;
    let d = Arc::new(tokio::task::spawn_blocking(DataDir::init).await.unwrap());
    let o = cli(&d, args(&["spf", "record"]), "").await;
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{HOSTNAME}.  IN TXT  ")))
        .unwrap_or_else(|| panic!("no record for the HELO name:\n{out}"));
    let txt: String = line.split('"').skip(1).step_by(2).collect();
    dns.add_txt(HOSTNAME, &txt);
    dns.add_a(HOSTNAME, "192.0.2.25".parse().unwrap());
    let at = dns.addr().to_string();
    let check = |ip: &'static str| {
        let (d, at) = (d.clone(), at.clone());
        async move {
            let o = cli(
                &d,
                args(&["spf", "check", "--ip", ip, "--helo", HOSTNAME, "--dns", &at]),
                "",
            )
            .await;
            last_line(&o)
        }
    };
    let l = check("192.0.2.25").await;
    assert!(l.starts_with("pass "), "{l}");
    // Someone else using our name in HELO fails.
    let l = check("192.0.2.99").await;
    assert!(l.starts_with("fail "), "{l}");
}

/// The `._domainkey.` TXT records a command printed, as (name, value).
fn printed_records(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter(|l| l.contains("._domainkey."))
        .map(|line| {
            let (name, rest) = line.split_once(".  IN TXT  ").unwrap();
            let txt: String = rest.split('"').skip(1).step_by(2).collect();
            (name.to_string(), txt)
        })
        .collect()
}

fn key_mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `openssl pkey` reads a key file (an independent PKCS#8 reader).
fn openssl_reads(p: &std::path::Path) -> String {
    let o = std::process::Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(p)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl cannot read {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_and_domain_add_make_dkim_keys_openssl_reads() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin())
            .arg("--dir")
            .arg(&dir)
            .args(args)
            .env_remove("BULWARK_DIR")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        stdout(&o)
    };
    let init = [
        "init",
        "--domain",
        "example.test",
        "--hostname",
        "mail.example.test",
        "--ephemeral-ports",
    ];
    let out = run(&init);
    let recs = printed_records(&out);
    let names: Vec<&str> = recs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "bulwark-rsa._domainkey.example.test",
            "bulwark-ed25519._domainkey.example.test"
        ],
        "{out}"
    );
    assert!(recs[0].1.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{out}");
    assert!(recs[1].1.starts_with("v=DKIM1; k=ed25519; p="), "{out}");
    for (f, alg) in [
        ("bulwark-rsa.pem", "Private-Key: (2048 bit"),
        ("bulwark-ed25519.pem", "ED25519 Private-Key"),
    ] {
        let p = dir.join("dkim/example.test").join(f);
        assert_eq!(key_mode(&p), 0o600, "{f}");
        let text = std::fs::read_to_string(&p).unwrap();
        // PKCS#8, the form OpenSSL 3 writes and reads.
        assert!(
            text.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{f}: {text}"
        );
        let o = openssl_reads(&p);
        assert!(o.contains(alg), "{f}: {o}");
    }
    // `init --force` rewrites the configuration, not the published keys.
    let again = run(&[&init[..], &["--force"]].concat());
    assert_eq!(printed_records(&again), recs, "{again}");
    assert!(again.contains("kept in"), "{again}");

    let out = run(&["domain", "add", "other.test"]);
    let recs = printed_records(&out);
    assert_eq!(recs.len(), 2, "{out}");
    assert_eq!(recs[0].0, "bulwark-rsa._domainkey.other.test");
    for f in ["bulwark-rsa.pem", "bulwark-ed25519.pem"] {
        let p = dir.join("dkim/other.test").join(f);
        assert_eq!(key_mode(&p), 0o600, "{f}");
        openssl_reads(&p);
    }
}

#[test]
fn dkim_import_refuses_what_it_cannot_sign_with() {
    let d = DataDir::init();
    let junk = d.path().join("junk.pem");
    std::fs::write(&junk, "not a key\n").unwrap();
    let o = d.cli(&[
        "dkim",
        "import",
        "--domain",
        "example.test",
        "--selector",
        "s1",
        junk.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no PEM private key"), "{e}");
    assert!(!d.path().join("dkim/example.test/s1.pem").exists());
    // An existing selector is not replaced without --force.
    let o = d.cli(&[
        "dkim",
        "import",
        "--domain",
        "example.test",
        "--selector",
        "bulwark-rsa",
        d.path()
            .join("dkim/example.test/bulwark-ed25519.pem")
            .to_str()
            .unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
}

// ---------------------------------------------------------------------------------
// Through SMTP
// ---------------------------------------------------------------------------------

const BOB: &str = "bob@example.test";

fn zone(dns: &TestDns) {
    dns.add_txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    dns.add_txt("fail.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("soft.test", "v=spf1 ip4:192.0.2.1 ~all");
    dns.add_a("norecord.test", "192.0.2.80".parse().unwrap());
    dns.add_txt("reject.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("_dmarc.reject.test", "v=DMARC1; p=reject");
    dns.add_txt("junk.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.add_txt("_dmarc.junk.test", "v=DMARC1; p=quarantine");
    dns.add_txt("relayed.test", "v=spf1 ip4:192.0.2.4 -all");
}

/// Starts a server with sender checks on, resolving through `dns`.
async fn server(dns: &TestDns, internal: &[&str]) -> (Arc<DataDir>, Arc<Server>) {
    let at = dns.addr().to_string();
    let internal: Vec<String> = internal.iter().map(|s| s.to_string()).collect();
    let (d, s) = tokio::task::spawn_blocking(move || {
        let d = DataDir::init();
        d.add_user(BOB);
        d.add_user("alice@example.test");
        d.edit_config(|c| {
            c["senderauth"]["enabled"] = toml_edit::value(true);
            let mut dns = toml_edit::Array::new();
            dns.push(at.as_str());
            c["dns"]["resolvers"] = toml_edit::value(dns);
            let mut nets = toml_edit::Array::new();
            for n in &internal {
                nets.push(n.as_str());
            }
            c["senderauth"]["internal_servers"] = toml_edit::value(nets);
        });
        let s = Server::start(&d);
        (d, s)
    })
    .await
    .unwrap();
    (Arc::new(d), Arc::new(s))
}

/// Sends one message per (mail_from, extra headers) with smtplib on port 25 and
/// prints one line per message: "ok" or the refusal code and text.
const SEND: &str = r#"
import smtplib, sys
port = int(sys.argv[1])
jobs = sys.argv[2:]
for i in range(0, len(jobs), 2):
    sender, extra = jobs[i], jobs[i + 1].replace("|", "\r\n")
    msg = ("%sFrom: <%s>\r\nTo: bob@example.test\r\nSubject: %s\r\nMessage-ID: <%d@t>\r\n\r\nhello\r\n" % (extra, sender, sender, i)).encode()
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("client.sender.test")
    try:
        s.sendmail(sender, ["bob@example.test"], msg)
        print("ok")
    except smtplib.SMTPSenderRefused as e:
        print("MAIL", e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPDataError as e:
        print("DATA", e.smtp_code, e.smtp_error.decode())
    s.quit()
"#;

async fn send(s: &Arc<Server>, jobs: &[(&str, &str)]) -> Vec<String> {
    let mut a = vec![s.port("smtp").to_string()];
    for (f, x) in jobs {
        a.push(f.to_string());
        a.push(x.to_string());
    }
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        python_ok(SEND, &a).lines().map(|l| l.to_string()).collect()
    })
    .await
    .unwrap()
}

fn stored(dir: &std::path::Path, user: &str, mailbox: &str) -> Vec<String> {
    let dir = dir.to_path_buf();
    let user = user.to_string();
    let mailbox = mailbox.to_string();
    // The test's own runtime serves DNS; read the store on a separate thread.
    std::thread::spawn(move || {
        use bulwark_store::{SqliteStore, Store};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = SqliteStore::open(&dir.join("store")).unwrap();
            let acc = store.account(&user).await.unwrap().expect("account");
            let mb = store
                .mailbox(acc.id, &mailbox)
                .await
                .unwrap()
                .expect("mailbox");
            let mut out = Vec::new();
            for m in store.list_messages(mb.id).await.unwrap() {
                let b = store.read_blob(m.blob_id).await.unwrap();
                out.push(String::from_utf8_lossy(&b).into_owned());
            }
            store.close();
            out
        })
    })
    .join()
    .unwrap()
}

/// Our Authentication-Results header (unfolded) of a stored message.
fn our_results(m: &str) -> String {
    let start = m
        .find("Authentication-Results: mail.example.test;")
        .unwrap_or_else(|| panic!("no Authentication-Results in {m}"));
    let rest = &m[start..];
    let mut end = 0;
    for (i, _) in rest.match_indices("\r\n") {
        if !rest[i + 2..].starts_with('\t') {
            end = i;
            break;
        }
    }
    rest[..end].replace("\r\n\t", " ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_25_spf_results_policy_and_authentication_results() {
    let dns = TestDns::start().await;
    zone(&dns);
    let (d, s) = server(&dns, &[]).await;
    let forged = "Authentication-Results: mail.example.test; spf=pass smtp.mailfrom=ceo@pass.test; dmarc=pass|";
    let replies = send(
        &s,
        &[
            ("u@pass.test", forged),
            ("u@fail.test", ""),
            ("u@soft.test", ""),
            ("u@norecord.test", ""),
            ("u@reject.test", ""),
            ("u@junk.test", ""),
        ],
    )
    .await;
    assert_eq!(replies[..4], ["ok", "ok", "ok", "ok"], "{replies:?}");
    // DMARC p=reject with SPF fail and no DKIM: refused after DATA, nothing stored.
    assert!(
        replies[4].starts_with(
            "DATA 550 5.7.1 DMARC: rejected by the DMARC policy of reject.test (p=reject)"
        ),
        "{replies:?}"
    );
    assert_eq!(replies[5], "ok");
    let inbox = stored(d.path(), BOB, "INBOX");
    assert_eq!(inbox.len(), 4, "pass, fail, softfail, none in INBOX");
    let by_subject = |subj: &str| {
        inbox
            .iter()
            .find(|m| m.contains(&format!("Subject: {subj}")))
            .unwrap_or_else(|| panic!("{subj} not stored"))
            .clone()
    };
    let m = by_subject("u@pass.test");
    let ar = our_results(&m);
    assert!(
        ar.starts_with("Authentication-Results: mail.example.test; spf=pass (127.0.0.1 matched ip4:127.0.0.0/8 of pass.test) smtp.mailfrom=u@pass.test;"),
        "{ar}"
    );
    assert!(ar.contains("sender-id=pass"), "{ar}");
    assert!(ar.contains("dkim=none"), "{ar}");
    assert!(ar.contains("dmarc=none header.from=pass.test"), "{ar}");
    assert!(
        m.contains("Received-SPF: pass (mail.example.test: 127.0.0.1 matched"),
        "{m}"
    );
    // The forged result claiming our host name is gone; exactly one is ours.
    assert_eq!(
        m.matches("Authentication-Results: mail.example.test")
            .count(),
        1,
        "{m}"
    );
    assert!(!m.contains("ceo@pass.test"), "{m}");

    let m = by_subject("u@fail.test");
    assert!(
        our_results(&m).contains("spf=fail (127.0.0.1 matched -all of fail.test)"),
        "{m}"
    );
    assert!(
        m.contains("X-Bulwark-Auth-Warning: spf=fail"),
        "SPF fail is tagged: {m}"
    );
    let m = by_subject("u@soft.test");
    assert!(our_results(&m).contains("spf=softfail"), "{m}");
    assert!(
        !m.contains("X-Bulwark-Auth-Warning"),
        "softfail is only recorded: {m}"
    );
    let m = by_subject("u@norecord.test");
    assert!(
        our_results(&m).contains("spf=none (no SPF record for norecord.test)"),
        "{m}"
    );

    // p=quarantine: delivered to Junk.
    let junk = stored(d.path(), BOB, "Junk");
    assert_eq!(junk.len(), 1);
    assert!(
        our_results(&junk[0]).contains("dmarc=fail (p=quarantine)"),
        "{}",
        junk[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spf_reject_policy_refuses_mail_from_with_5_7_23() {
    let dns = TestDns::start().await;
    zone(&dns);
    let (d, s) = server(&dns, &[]).await;
    tokio::task::spawn_blocking({
        let d = d.clone();
        move || d.edit_config(|c| c["senderauth"]["spf"]["fail"] = toml_edit::value("reject"))
    })
    .await
    .unwrap();
    drop(s);
    let s = Arc::new(
        tokio::task::spawn_blocking({
            let d = d.clone();
            move || Server::start(&d)
        })
        .await
        .unwrap(),
    );
    let replies = send(&s, &[("u@fail.test", ""), ("u@pass.test", "")]).await;
    assert!(
        replies[0].starts_with(
            "MAIL 550 5.7.23 SPF fail for fail.test: 127.0.0.1 is not allowed to send this mail"
        ),
        "{replies:?}"
    );
    assert_eq!(replies[1], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_relay_uses_the_first_external_hop() {
    let dns = TestDns::start().await;
    zone(&dns);
    // 127.0.0.1 plays our edge gateway.
    let (d, s) = server(&dns, &["127.0.0.0/8"]).await;
    let hop = "Received: from mx.sender.test (mx.sender.test [192.0.2.4]) by edge.example.test with ESMTP id 7; Mon, 1 Jan 2024 10:00:00 +0000|Received: from forged.test ([198.51.100.66]) by mx.sender.test; Mon, 1 Jan 2024 09:59:00 +0000|";
    let replies = send(&s, &[("u@relayed.test", hop), ("u@fail.test", hop)]).await;
    assert_eq!(replies, ["ok", "ok"]);
    let inbox = stored(d.path(), BOB, "INBOX");
    let m = inbox
        .iter()
        .find(|m| m.contains("Subject: u@relayed.test"))
        .unwrap();
    let ar = our_results(m);
    assert!(
        ar.contains("spf=pass (192.0.2.4 matched ip4:192.0.2.4 of relayed.test; via internal relay, external hop 192.0.2.4 helo=mx.sender.test from Received header #1)"),
        "{ar}"
    );
    assert!(m.contains("client-ip=192.0.2.4"), "{m}");
    let m = inbox
        .iter()
        .find(|m| m.contains("Subject: u@fail.test"))
        .unwrap();
    assert!(
        our_results(m).contains("spf=fail (192.0.2.4 matched -all of fail.test"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_dkim_signed_and_verify() {
    let dns = TestDns::start().await;
    let (d, s) = server(&dns, &[]).await;
    // No `dkim generate`: `init` made the keys and the server signs from its first
    // start. The records to publish are those `dkim list` prints.
    let out = cli(&d, args(&["dkim", "list"]), "").await;
    let records = printed_records(&stdout(&out));
    assert_eq!(records.len(), 2, "{}", stdout(&out));
    for (name, txt) in &records {
        dns.add_txt(name, txt);
    }
    dns.add_txt("_dmarc.example.test", "v=DMARC1; p=reject");
    let port = s.port("submissions").to_string();
    let cert = d.cert_path().to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        python_ok(
            r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.login("alice@example.test", sys.argv[3])
s.sendmail("alice@example.test", ["bob@example.test"], b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: signed\r\n\r\nhi\r\n")
s.quit()
"#,
            &[&port, &cert, PASSWORD],
        )
    })
    .await
    .unwrap();
    let m = stored(d.path(), BOB, "INBOX").pop().unwrap();
    assert_eq!(m.matches("DKIM-Signature:").count(), 2, "{m}");
    // Verify what was stored with the library, against the published keys.
    let body = &m[m.find("DKIM-Signature:").unwrap()..];
    let auth = bulwark_senderauth::SenderAuth::new(
        &Default::default(),
        "verifier.test",
        bulwark_dns::resolver(&dns.config()).unwrap(),
    );
    let spf = bulwark_senderauth::SpfOutcome {
        evaluation: None,
        action: bulwark_senderauth::Action::Accept,
    };
    let v = auth
        .check_message(
            "192.0.2.1".parse().unwrap(),
            "x.test",
            "alice@example.test",
            &spf,
            body.as_bytes(),
        )
        .await;
    let res: Vec<(&str, &str)> = v
        .results
        .dkim
        .iter()
        .map(|d| (d.algorithm, d.result))
        .collect();
    assert_eq!(
        res,
        vec![("ed25519-sha256", "pass"), ("rsa-sha256", "pass")],
        "{m}"
    );
    assert_eq!(v.results.dmarc.unwrap().result, "pass");

    // An independent verifier: dkimpy (Debian python3-dkim, installed by
    // scripts/ensure-deps.sh into the system interpreter), with the TXT records
    // `bulwark dkim generate` printed as its DNS. Both signatures must verify, and
    // the oversigned headers (From, Sender, …) must be listed once more than present.
    dkimpy_verifies(body, &records, 2);
    let h = body
        .split("DKIM-Signature:")
        .nth(1)
        .unwrap()
        .replace("\r\n\t", "")
        .replace(' ', "")
        .to_ascii_lowercase();
    let list: Vec<&str> = h
        .split(";h=")
        .nth(1)
        .and_then(|x| x.split(';').next())
        .unwrap_or_default()
        .split(':')
        .collect();
    let n = |name: &str| list.iter().filter(|x| **x == name).count();
    // Present once → listed twice; absent (Sender, Reply-To, Cc) → listed once.
    for (name, times) in [
        ("from", 2),
        ("subject", 2),
        ("to", 2),
        ("sender", 1),
        ("reply-to", 1),
        ("cc", 1),
    ] {
        assert_eq!(n(name), times, "{name} in {list:?}");
    }
}

/// dkimpy (Debian python3-dkim, installed by scripts/ensure-deps.sh into the system
/// interpreter) verifies each of the first `n` signatures of `message`, with
/// `records` as its DNS.
fn dkimpy_verifies(message: &str, records: &[(String, String)], n: usize) {
    let recs: String = records
        .iter()
        .map(|(name, txt)| format!("{name}. {txt}\n"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let msg_path = tmp.path().join("m.eml");
    let dns_path = tmp.path().join("dns.txt");
    std::fs::write(&msg_path, message).unwrap();
    std::fs::write(&dns_path, recs).unwrap();
    let o = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            r#"
import sys, dkim
recs = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().splitlines())
def dnsfunc(name, timeout=5):
    return recs.get(name.decode(), "").encode()
m = open(sys.argv[1], "rb").read()
d = dkim.DKIM(m)
for i in range(int(sys.argv[3])):
    print(i, d.verify(idx=i, dnsfunc=dnsfunc))
"#,
        )
        .arg(&msg_path)
        .arg(&dns_path)
        .arg(n.to_string())
        .output()
        .expect("run /usr/bin/python3 (scripts/ensure-deps.sh test installs python3-dkim)");
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && (0..n).all(|i| so.contains(&format!("{i} True"))),
        "dkimpy does not verify our signatures:\n{so}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Keys made by `openssl genpkey` (PKCS#8, OpenSSL 3's default) and `openssl genrsa
/// -traditional` (PKCS#1) are imported, sign submissions, and dkimpy verifies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_keys_import_sign_and_verify() {
    require_tool("openssl");
    let dns = TestDns::start().await;
    let d = Arc::new(tokio::task::spawn_blocking(DataDir::init).await.unwrap());
    let at = dns.addr().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let ossl = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl {args:?}: {o:?}");
    };
    ossl(&["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    ossl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa8.pem",
    ]);
    ossl(&["genrsa", "-traditional", "-out", "rsa1.pem", "2048"]);
    assert!(std::fs::read_to_string(tmp.path().join("rsa1.pem"))
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    // Only the imported keys sign: init's own are removed.
    std::fs::remove_dir_all(d.path().join("dkim/example.test")).unwrap();
    let mut records = Vec::new();
    for (file, selector) in [
        ("ed.pem", "ossl-ed"),
        ("rsa8.pem", "ossl-rsa8"),
        ("rsa1.pem", "ossl-rsa1"),
    ] {
        let o = cli(
            &d,
            args(&[
                "dkim",
                "import",
                "--domain",
                "example.test",
                "--selector",
                selector,
                tmp.path().join(file).to_str().unwrap(),
            ]),
            "",
        )
        .await;
        assert!(o.status.success(), "{o:?}");
        let r = printed_records(&stdout(&o));
        assert_eq!(r.len(), 1, "{}", stdout(&o));
        assert_eq!(r[0].0, format!("{selector}._domainkey.example.test"));
        records.extend(r);
        let stored = d.path().join(format!("dkim/example.test/{selector}.pem"));
        assert_eq!(key_mode(&stored), 0o600);
        openssl_reads(&stored);
    }
    for (name, txt) in &records {
        dns.add_txt(name, txt);
    }
    let s = tokio::task::spawn_blocking({
        let d = d.clone();
        move || {
            d.add_user("alice@example.test");
            d.add_user(BOB);
            d.edit_config(|c| {
                let mut a = toml_edit::Array::new();
                a.push(at.as_str());
                c["dns"]["resolvers"] = toml_edit::value(a);
            });
            Server::start(&d)
        }
    })
    .await
    .unwrap();
    let port = s.port("submissions").to_string();
    let cert = d.cert_path().to_string_lossy().into_owned();
    tokio::task::spawn_blocking(move || {
        python_ok(
            r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2]); ctx.check_hostname = False
s = smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=30)
s.login("alice@example.test", sys.argv[3])
s.sendmail("alice@example.test", ["bob@example.test"], b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: imported\r\n\r\nhi\r\n")
s.quit()
"#,
            &[&port, &cert, PASSWORD],
        )
    })
    .await
    .unwrap();
    let m = stored(d.path(), BOB, "INBOX").pop().unwrap();
    assert_eq!(m.matches("DKIM-Signature:").count(), 3, "{m}");
    let unfolded = m.replace("\r\n\t", "").replace(' ', "");
    for sel in ["ossl-ed", "ossl-rsa8", "ossl-rsa1"] {
        assert!(unfolded.contains(&format!("s={sel};")), "{sel}: {m}");
    }
    let body = &m[m.find("DKIM-Signature:").unwrap()..];
    dkimpy_verifies(body, &records, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_sender_is_refused_at_mail_with_5_7_27() {
    let dns = TestDns::start().await;
    zone(&dns);
    // RFC 7505: "this domain sends and receives no mail".
    dns.add_mx("nomail.test", 0, ".");
    dns.add_txt("nomail.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let (d, s) = server(&dns, &[]).await;
    let series = [
        "bulwark_spf_results_total{identity=\"mailfrom\",result=\"pass\"}",
        "bulwark_dkim_results_total{result=\"none\"}",
        "bulwark_dmarc_results_total{result=\"none\"}",
    ];
    let counts = |s: Arc<Server>| async move {
        tokio::task::spawn_blocking(move || {
            let text = crate::observe::scrape(&s);
            series.map(|x| crate::observe::metric(&text, x).unwrap_or(0.0))
        })
        .await
        .unwrap()
    };
    let before = counts(s.clone()).await;
    let replies = send(&s, &[("u@nomail.test", ""), ("u@pass.test", "")]).await;
    assert_eq!(
        replies,
        [
            "MAIL 550 5.7.27 Sender address rejected: nomail.test publishes a null MX and sends no mail (RFC 7505)",
            "ok"
        ]
    );
    assert_eq!(stored(d.path(), BOB, "INBOX").len(), 1);
    // The checks of the accepted message are counted (the refused one never got to
    // SPF: the null MX refused it first).
    let after = counts(s.clone()).await;
    for (i, name) in series.iter().enumerate() {
        assert_eq!(after[i] - before[i], 1.0, "{name}: {before:?} -> {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_results_are_removed_even_with_checks_disabled() {
    let dns = TestDns::start().await;
    let (d, s) = server(&dns, &[]).await;
    drop(s);
    let s = Arc::new(
        tokio::task::spawn_blocking({
            let d = d.clone();
            move || {
                d.edit_config(|c| c["senderauth"]["enabled"] = toml_edit::value(false));
                Server::start(&d)
            }
        })
        .await
        .unwrap(),
    );
    let forged = "Authentication-Results: mail.example.test; dkim=pass header.d=bank.test; dmarc=pass|Authentication-Results: other.test; spf=pass|";
    let replies = send(&s, &[("u@pass.test", forged)]).await;
    assert_eq!(replies, ["ok"]);
    let m = stored(d.path(), BOB, "INBOX").pop().unwrap();
    // Ours is gone (nobody may write results in our name); another host's stays.
    assert!(
        !m.contains("Authentication-Results: mail.example.test"),
        "{m}"
    );
    assert!(!m.contains("bank.test"), "{m}");
    assert!(
        m.contains("Authentication-Results: other.test; spf=pass"),
        "{m}"
    );
}

#[test]
fn spf_record_lists_smart_hosts_like_the_audit() {
    let d = DataDir::init();
    d.edit_config(|c| {
        let mut t = toml_edit::Table::new();
        t["name"] = toml_edit::value("relay");
        let mut space = toml_edit::Array::new();
        space.push("*");
        t["address_space"] = toml_edit::value(space);
        t["smart_host"] = toml_edit::value("192.0.2.25");
        let mut arr = toml_edit::ArrayOfTables::new();
        arr.push(t);
        c["outbound"]["connector"] = toml_edit::Item::ArrayOfTables(arr);
    });
    let o = d.cli(&["spf", "record"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    // Every route goes through the smart host: it, not this server, sends our mail.
    assert!(
        out.contains("example.test.  IN TXT  \"v=spf1 mx ip4:192.0.2.25 ~all\""),
        "{out}"
    );
    assert!(out.contains("connector \"relay\""), "{out}");
}

#[test]
fn audit_flags_readable_dkim_keys_and_unverified_tls_for_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let d = DataDir::init();
    let key = d.path().join("dkim/example.test/bulwark-rsa.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::create_dir_all(d.path().join("secrets")).unwrap();
    let creds = d.path().join("secrets/relay");
    std::fs::write(&creds, "user\npass\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.edit_config(|c| {
        let mut t = toml_edit::Table::new();
        t["name"] = toml_edit::value("relay");
        t["address_space"] = toml_edit::value(toml_edit::Array::from_iter(["*"]));
        t["smart_host"] = toml_edit::value("smtp.provider.test");
        t["port"] = toml_edit::value(587);
        t["tls"] = toml_edit::value("required");
        t["credentials_file"] = toml_edit::value("secrets/relay");
        let mut arr = toml_edit::ArrayOfTables::new();
        arr.push(t);
        c["outbound"]["connector"] = toml_edit::Item::ArrayOfTables(arr);
    });
    let (_, f, v) = crate::observe::audit(&d, &[]);
    let has = |id: &str, sev: &str| f.iter().any(|(i, s)| i == id && s == sev);
    assert!(has("dkim-key-permissions", "critical"), "{v:#}");
    assert!(v.to_string().contains("bulwark-rsa.pem"), "{v:#}");
    assert!(
        has("connector-credentials-unverified-tls", "medium"),
        "{v:#}"
    );
}
