//! SPF / Sender ID / DKIM administration tools against a loopback DNS server:
//! `bulwark spf check`, `bulwark spf record`, `bulwark dkim generate|list`.
//!
//! End-to-end checks through SMTP sessions belong here too once the SMTP server
//! calls `bulwark_senderauth::SenderAuth` (see README, "Sender authentication").

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

    let o = d.cli(&["dkim", "generate", "--domain", "example.test"]);
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
    let o = d.cli(&["dkim", "list"]);
    assert_eq!(
        stdout(&o),
        "bulwark-ed25519._domainkey.example.test\nbulwark-rsa._domainkey.example.test\n"
    );
}
