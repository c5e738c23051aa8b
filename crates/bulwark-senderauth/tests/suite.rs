//! Checks that need DNS, against the loopback test DNS server (never the Internet):
//! the public RFC 7208 SPF test suite, served scenario by scenario (see
//! [`SUITE_VERSION`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bulwark_dns::testing::TestDns;
use bulwark_senderauth::dns::SpfDns;
use bulwark_senderauth::spf::{check_host, Query, Scope, SpfResult};
use serde_yaml::Value;

/// Which suite `tests/fixtures/rfc7208-tests.yml` is: the openspf.org RFC 7208 test
/// suite as pyspf (2.0.14) ships it. Its header still says "release 2014.04", but the
/// file carries the later "2019.08 (unreleased)" additions of the suite's changelog
/// ("creative syntax errors": trailing-space, null-text, badip4, …): 203 cases.
const SUITE_VERSION: &str =
    "openspf.org RFC 7208 test suite 2019.08 (header: release 2014.04), as in pyspf 2.0.14";

/// Every case passes; the test fails if any case fails.
const RFC7208_CASES: usize = 203;

/// RFC 7208 leaves the letter case of some explanation text open, and only there is
/// the comparison case-insensitive: the hex digits of percent-escapes (RFC 3986 §2.1:
/// "%3d" and "%3D" are equivalent) and the nibbles `%{i}` gives for IPv6 (§7.3 does
/// not fix their case; its own §7.4 example is lower case, the suite expects upper).
/// Everything else — the published text, the expanded local part, and so on — must
/// match exactly.
fn explanation_matches(got: &str, want: &str) -> bool {
    got.len() == want.len()
        && got.chars().zip(want.chars()).all(|(g, w)| {
            g == w || (g.is_ascii_hexdigit() && w.is_ascii_hexdigit() && g.eq_ignore_ascii_case(&w))
        })
}

#[test]
fn explanations_differ_in_case_only_in_hex_digits() {
    assert!(explanation_matches("l=%3d", "l=%3D"));
    assert!(explanation_matches("e.b.a.ip6", "E.B.A.ip6"));
    assert!(!explanation_matches("Postmaster", "postmaster"));
    assert!(!explanation_matches("ip6", "IP6"));
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(seq) => seq.iter().map(s).collect::<Vec<_>>().concat(),
        _ => String::new(),
    }
}

/// `4.3.2.1.in-addr.arpa` / nibble `ip6.arpa` back to the address.
fn ptr_owner_ip(owner: &str) -> Option<IpAddr> {
    let o = owner.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = o.strip_suffix(".in-addr.arpa") {
        let p: Vec<u8> = rest
            .split('.')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        if p.len() != 4 {
            return None;
        }
        return Some(IpAddr::V4(Ipv4Addr::new(p[3], p[2], p[1], p[0])));
    }
    let rest = o.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|x| u8::from_str_radix(x, 16).ok())
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // reversed nibbles: [low, high] per byte, last byte first
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// Loads a scenario's zone the way the suite's reference driver (pyspf's testspf.py)
/// does: SPF-type records are copied to TXT unless the name has TXT data (`TXT: NONE`
/// says "no TXT"), and `TIMEOUT` makes queries without data for the name fail. We
/// answer SERVFAIL rather than staying silent: both are temperror for SPF, and a
/// silent server would cost the resolver's full timeout per case.
fn load_zone(dns: &TestDns, zone: &BTreeMap<String, Vec<Value>>) {
    for (name, entries) in zone {
        let has_txt = entries
            .iter()
            .any(|e| e.as_mapping().is_some_and(|m| m.contains_key("TXT")));
        let mut served = 0;
        let mut timeout = false;
        for e in entries {
            let Some(m) = e.as_mapping() else {
                if e.as_str() == Some("TIMEOUT") {
                    timeout = true;
                }
                continue;
            };
            for (k, v) in m {
                let k = k.as_str().unwrap_or("");
                match k {
                    "TXT" if s(v) != "NONE" => {
                        dns.add_txt(name, &s(v));
                        served += 1;
                    }
                    // `SPF: [ ]`: a TXT record with no strings at all (null-text).
                    "SPF" if !has_txt && v.as_sequence().is_some_and(|q| q.is_empty()) => {
                        dns.add_txt_strings(name, &[]);
                        served += 1;
                    }
                    "SPF" if !has_txt && s(v) != "NONE" => {
                        dns.add_txt(name, &s(v));
                        served += 1;
                    }
                    "A" => {
                        if let Ok(ip) = s(v).parse() {
                            dns.add_a(name, ip);
                            served += 1;
                        }
                    }
                    "AAAA" => {
                        if let Ok(ip) = s(v).parse() {
                            dns.add_aaaa(name, ip);
                            served += 1;
                        }
                    }
                    "MX" => {
                        let seq = v.as_sequence().cloned().unwrap_or_default();
                        // The suite's preferences are all 16-bit (RFC 1035 §3.3.9).
                        let pref = seq
                            .first()
                            .and_then(|p| p.as_u64())
                            .and_then(|p| u16::try_from(p).ok())
                            .unwrap_or(0);
                        let target = seq.get(1).map(s).unwrap_or_default();
                        dns.add_mx(name, pref, if target.is_empty() { "." } else { &target });
                        served += 1;
                    }
                    "PTR" => {
                        if let Some(ip) = ptr_owner_ip(name) {
                            dns.add_ptr(ip, &s(v));
                            served += 1;
                        }
                    }
                    "CNAME" => {
                        dns.add_cname(name, &s(v));
                        served += 1;
                    }
                    _ => {}
                }
            }
        }
        if timeout && served == 0 {
            dns.servfail(name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7208_test_suite() {
    let text = include_str!("fixtures/rfc7208-tests.yml");
    let mut total = 0;
    let mut passed = 0;
    let mut failures = Vec::new();
    let mut failed = std::collections::BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let scenario = Value::deserialize(doc).expect("yaml");
        let Some(desc) = scenario.get("description").map(s) else {
            continue;
        };
        let zone: BTreeMap<String, Vec<Value>> =
            serde_yaml::from_value(scenario.get("zonedata").cloned().unwrap_or(Value::Null))
                .unwrap_or_default();
        let dns = TestDns::start().await;
        load_zone(&dns, &zone);
        let resolver = bulwark_dns::SharedResolver::from_config(&dns.config()).expect("resolver");
        let spf = SpfDns::new(resolver);
        let tests: BTreeMap<String, Value> =
            serde_yaml::from_value(scenario.get("tests").cloned().unwrap_or(Value::Null))
                .expect("tests");
        for (name, case) in tests {
            total += 1;
            let helo = case.get("helo").map(s).unwrap_or_default();
            let host: IpAddr = s(case.get("host").expect("host")).parse().expect("ip");
            let mailfrom = case.get("mailfrom").map(s).unwrap_or_default();
            let expected: Vec<String> = match case.get("result") {
                Some(Value::Sequence(v)) => v.iter().map(s).collect(),
                Some(v) => vec![s(v)],
                None => vec![],
            };
            let (scope, domain, sender) = if mailfrom.is_empty() {
                (Scope::Helo, helo.clone(), format!("postmaster@{helo}"))
            } else {
                let d = mailfrom
                    .rsplit_once('@')
                    .map_or(mailfrom.as_str(), |(_, d)| d);
                (Scope::MailFrom, d.to_string(), mailfrom.clone())
            };
            let ev = check_host(
                &spf,
                Query {
                    ip: host,
                    domain: &domain,
                    sender: &sender,
                    helo: &helo,
                    receiver: "receiver.test",
                    scope,
                },
            )
            .await;
            let mut ok = expected
                .iter()
                .any(|e| SpfResult::parse(e) == Some(ev.result));
            let mut why = format!("got {}, expected {}", ev.summary(), expected.join("|"));
            if ok && ev.result == SpfResult::Fail {
                if let Some(exp) = case.get("explanation").map(s) {
                    // "DEFAULT" is the driver's own default text: we give none.
                    let want = (exp != "DEFAULT").then_some(exp.as_str());
                    let same = match (ev.explanation.as_deref(), want) {
                        (Some(g), Some(w)) => explanation_matches(g, w),
                        (g, w) => g == w,
                    };
                    if !same {
                        ok = false;
                        why = format!("explanation {:?}, expected {exp:?}", ev.explanation);
                    }
                }
            }
            if ok {
                passed += 1;
            } else {
                failures.push(format!("{desc} / {name}: {why}"));
                failed.insert(name.clone());
            }
        }
    }
    println!("{SUITE_VERSION}: {passed} of {total} cases pass");
    for f in &failures {
        println!("  FAIL: {f}");
    }
    assert_eq!(total, RFC7208_CASES, "the fixture is not the suite we name");
    assert!(failed.is_empty(), "{failures:#?}");
    assert_eq!(passed, RFC7208_CASES, "{passed} of {total} pass");
}

use serde::Deserialize;

// ---------------------------------------------------------------------------------
// DKIM, Sender ID, DMARC and the whole verdict, through SenderAuth.

use bulwark_config::SenderAuthConfig;
use bulwark_senderauth::{
    Action, DkimSigner, KeyAlgorithm, SenderAuth, SenderIdOutcome, SpfOutcome,
};

const HOST: &str = "mail.example.test";

fn auth(dns: &TestDns, cfg: SenderAuthConfig) -> SenderAuth {
    SenderAuth::new(
        &cfg,
        HOST,
        bulwark_dns::SharedResolver::from_config(&dns.config()).unwrap(),
    )
}

fn msg(from: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{extra}From: {from}\r\nTo: bob@example.test\r\nSubject: test\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn verdict(
    a: &SenderAuth,
    ip: &str,
    helo: &str,
    mail_from: &str,
    m: &[u8],
) -> bulwark_senderauth::Verdict {
    let ip: IpAddr = ip.parse().unwrap();
    let spf = a.check_mail_from(ip, helo, mail_from).await;
    a.check_message(ip, helo, mail_from, &spf, m).await
}

#[tokio::test]
async fn rfc8463_example_signatures_verify() {
    let dns = TestDns::start().await;
    for line in include_str!("fixtures/rfc8463-example.dns").lines() {
        let (name, txt) = line.split_once(' ').unwrap();
        dns.add_txt(name, txt);
    }
    let a = auth(&dns, SenderAuthConfig::default());
    let m = include_bytes!("fixtures/rfc8463-example.eml");
    let v = verdict(
        &a,
        "192.0.2.1",
        "football.example.com",
        "joe@football.example.com",
        m,
    )
    .await;
    let algs: Vec<(&str, &str)> = v
        .results
        .dkim
        .iter()
        .map(|d| (d.algorithm, d.result))
        .collect();
    assert_eq!(
        algs,
        vec![("ed25519-sha256", "pass"), ("rsa-sha256", "pass")],
        "{v:#?}"
    );
    assert!(
        v.headers_to_prepend.contains(
            "dkim=pass header.d=football.example.com header.s=brisbane header.a=ed25519-sha256"
        ),
        "{}",
        v.headers_to_prepend
    );
    // One changed body byte breaks both.
    let tampered = String::from_utf8_lossy(m).replace("hungry", "Hungry");
    let v = verdict(
        &a,
        "192.0.2.1",
        "football.example.com",
        "joe@football.example.com",
        tampered.as_bytes(),
    )
    .await;
    assert!(
        v.results.dkim.iter().all(|d| d.result == "fail"),
        "{:?}",
        v.results.dkim
    );
}

#[tokio::test]
async fn generated_keys_sign_and_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let dns = TestDns::start().await;
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
        let k = bulwark_senderauth::sign::generate_key(
            dir.path(),
            "Signed.Test",
            "bulwark",
            alg,
            false,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&k.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.path.display());
        dns.add_txt(&k.dns_name, &k.dns_txt);
        // A second generate without --force refuses to overwrite.
        assert!(bulwark_senderauth::sign::generate_key(
            dir.path(),
            "signed.test",
            "bulwark",
            alg,
            false
        )
        .is_err());
    }
    dns.add_txt("_dmarc.signed.test", "v=DMARC1; p=reject");
    let signer = DkimSigner::load(dir.path()).unwrap();
    assert_eq!(signer.selectors().len(), 2);
    let m = msg("Alice <alice@signed.test>", "", "Hello.\r\n");
    let sig = signer.sign(&m).unwrap().expect("a key for signed.test");
    assert_eq!(sig.matches("DKIM-Signature:").count(), 2);
    let mut signed = sig.into_bytes();
    signed.extend_from_slice(&m);
    let a = auth(&dns, SenderAuthConfig::default());
    // No SPF record at all: DMARC passes through the aligned DKIM signature.
    let v = verdict(
        &a,
        "192.0.2.50",
        "out.signed.test",
        "alice@signed.test",
        &signed,
    )
    .await;
    let res: Vec<&str> = v.results.dkim.iter().map(|d| d.result).collect();
    assert_eq!(res, vec!["pass", "pass"], "{:?}", v.results.dkim);
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "pass");
    assert_eq!(v.action, Action::Accept);
    // Tampered body: both fail, and DMARC p=reject now rejects.
    let mut bad = signed.clone();
    let n = bad.len();
    bad[n - 3] = b'X';
    let v = verdict(
        &a,
        "192.0.2.50",
        "out.signed.test",
        "alice@signed.test",
        &bad,
    )
    .await;
    assert!(
        v.results.dkim.iter().all(|d| d.result == "fail"),
        "{:?}",
        v.results.dkim
    );
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "fail");
    assert!(
        matches!(
            v.action,
            Action::Reject {
                code: 550,
                enhanced,
                ..
            } if enhanced == bulwark_wire::Enhanced::new(5, 7, 1)
        ),
        "{:?}",
        v.action
    );
    // No key for other domains.
    assert!(signer
        .sign(&msg("x@other.test", "", "b"))
        .unwrap()
        .is_none());
}

fn spf_zone(dns: &TestDns) {
    dns.add_txt("pass.test", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("fail.test", "v=spf1 ip4:198.51.100.1 -all");
    dns.add_txt("soft.test", "v=spf1 ~all");
    dns.add_a("none.test", "192.0.2.99".parse().unwrap());
}

#[tokio::test]
async fn spf_results_headers_and_default_policy() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    let a = auth(&dns, SenderAuthConfig::default());
    for (from, want, action) in [
        ("u@pass.test", "pass", Action::Accept),
        ("u@fail.test", "fail", Action::Tag),
        ("u@soft.test", "softfail", Action::Accept),
        ("u@none.test", "none", Action::Accept),
    ] {
        let m = msg(from, "", "hi\r\n");
        let v = verdict(&a, "192.0.2.4", "mx.sender.test", from, &m).await;
        assert_eq!(
            v.results.spf.as_ref().unwrap().result.as_str(),
            want,
            "{from}"
        );
        assert!(
            v.headers_to_prepend.starts_with(&format!(
                "Authentication-Results: {HOST};\r\n\tspf={want} ("
            )),
            "{}",
            v.headers_to_prepend
        );
        assert!(v
            .headers_to_prepend
            .contains(&format!("Received-SPF: {want} ({HOST}: ")));
        assert!(v
            .headers_to_prepend
            .contains(&format!("smtp.mailfrom={from}")));
        assert_eq!(v.action, action, "{from}");
        if action == Action::Tag {
            assert!(v
                .headers_to_prepend
                .contains("X-Bulwark-Auth-Warning: spf=fail"));
        }
    }
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.sender.test",
        "u@pass.test",
        &msg("u@pass.test", "", ""),
    )
    .await;
    assert!(v
        .headers_to_prepend
        .contains("spf=pass (192.0.2.4 matched ip4:192.0.2.0/24 of pass.test)"));
    assert!(
        v.headers_to_prepend
            .contains("mechanism=\"ip4:192.0.2.0/24\""),
        "{}",
        v.headers_to_prepend
    );
}

#[tokio::test]
async fn spf_reject_policy_refuses_at_mail_with_5_7_23() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    dns.add_txt("fail.test", "exp=why.fail.test");
    let mut cfg = SenderAuthConfig::default();
    cfg.spf.fail = bulwark_config::senderauth::AuthAction::Reject;
    cfg.spf.temperror = bulwark_config::senderauth::AuthAction::Tempfail;
    let a = auth(&dns, cfg);
    let o = a
        .check_mail_from("192.0.2.4".parse().unwrap(), "mx.x.test", "u@fail.test")
        .await;
    let reply = o.action.reply().unwrap();
    assert!(
        reply.starts_with("550 5.7.23 SPF fail for fail.test"),
        "{reply}"
    );
    dns.servfail("broken.test");
    let o = a
        .check_mail_from("192.0.2.4".parse().unwrap(), "mx.x.test", "u@broken.test")
        .await;
    assert!(
        o.action.reply().unwrap().starts_with("451 4.7.24"),
        "{:?}",
        o.action
    );
    // null reverse-path: the HELO identity
    dns.add_txt("mx.fail.test", "v=spf1 -all");
    let o = a
        .check_mail_from("192.0.2.4".parse().unwrap(), "mx.fail.test", "")
        .await;
    assert_eq!(o.evaluation.as_ref().unwrap().scope, Scope::Helo);
    assert!(
        o.action.reply().unwrap().contains("HELO mx.fail.test"),
        "{:?}",
        o.action
    );
}

#[tokio::test]
async fn sender_id_uses_spf2_pra_then_falls_back_to_spf1() {
    let dns = TestDns::start().await;
    // v=spf1 allows the IP for MAIL FROM, spf2.0/pra forbids it for the PRA.
    dns.add_txt("both.test", "v=spf1 ip4:192.0.2.0/24 -all");
    dns.add_txt("both.test", "spf2.0/pra ip4:198.51.100.0/24 -all");
    dns.add_txt("v1only.test", "v=spf1 ip4:192.0.2.0/24 -all");
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@both.test",
        &msg("u@both.test", "", ""),
    )
    .await;
    assert_eq!(v.results.spf.as_ref().unwrap().result, SpfResult::Pass);
    let Some(SenderIdOutcome::Checked { pra, evaluation }) = &v.results.sender_id else {
        panic!()
    };
    assert_eq!((pra.address.as_str(), pra.header), ("u@both.test", "From"));
    assert_eq!(evaluation.result, SpfResult::Fail);
    assert!(
        evaluation.lookups.iter().any(|l| l.contains("spf2.0/pra")),
        "{:?}",
        evaluation.lookups
    );
    assert!(
        v.headers_to_prepend.contains("sender-id=fail ("),
        "{}",
        v.headers_to_prepend
    );
    assert!(v.headers_to_prepend.contains("header.from=u@both.test"));
    assert_eq!(v.action, Action::Tag);
    // Fallback to v=spf1, with the PRA from Sender (a list) rather than From.
    let m = msg("u@other.test", "Sender: list@v1only.test\r\n", "");
    let v = verdict(&a, "192.0.2.4", "mx.test", "bounce@v1only.test", &m).await;
    let Some(SenderIdOutcome::Checked { pra, evaluation }) = &v.results.sender_id else {
        panic!()
    };
    assert_eq!(pra.header, "Sender");
    assert_eq!(evaluation.result, SpfResult::Pass);
    assert!(v.headers_to_prepend.contains("sender-id=pass"));
    assert!(v
        .headers_to_prepend
        .contains("header.sender=list@v1only.test"));
    // No PRA: two From headers.
    let m = msg("a@v1only.test", "From: b@v1only.test\r\n", "");
    let v = verdict(&a, "192.0.2.4", "mx.test", "bounce@v1only.test", &m).await;
    assert!(matches!(
        v.results.sender_id,
        Some(SenderIdOutcome::NoPra { .. })
    ));
    assert!(
        v.headers_to_prepend
            .contains("sender-id=permerror (no PRA: 2 From headers"),
        "{}",
        v.headers_to_prepend
    );
    assert_eq!(v.action, Action::Tag);
}

#[tokio::test]
async fn dmarc_policies_and_pct() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    dns.add_txt("_dmarc.fail.test", "v=DMARC1; p=reject");
    dns.add_txt("q.test", "v=spf1 -all");
    dns.add_txt("_dmarc.q.test", "v=DMARC1; p=quarantine");
    dns.add_txt("sampled.test", "v=spf1 -all");
    dns.add_txt("_dmarc.sampled.test", "v=DMARC1; p=reject; pct=0");
    dns.add_txt("_dmarc.pass.test", "v=DMARC1; p=reject");
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@fail.test",
        &msg("u@fail.test", "", ""),
    )
    .await;
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "fail");
    let reply = v.action.reply().unwrap();
    assert!(
        reply.starts_with("550 5.7.1 DMARC: rejected by the DMARC policy of fail.test (p=reject)"),
        "{reply}"
    );
    assert!(v
        .headers_to_prepend
        .contains("dmarc=fail (p=reject) header.from=fail.test"));
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@q.test",
        &msg("u@q.test", "", ""),
    )
    .await;
    assert_eq!(v.action, Action::Quarantine);
    // pct=0: never sampled, so p=reject becomes quarantine (RFC 7489 §6.6.4).
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@sampled.test",
        &msg("u@sampled.test", "", ""),
    )
    .await;
    let d = v.results.dmarc.as_ref().unwrap();
    assert!(d.sampled_out && d.policy == Some("quarantine"), "{d:?}");
    assert_eq!(v.action, Action::Quarantine);
    // SPF pass aligned with From: DMARC pass.
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@pass.test",
        &msg("u@pass.test", "", ""),
    )
    .await;
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "pass");
    assert_eq!(v.action, Action::Accept);
    // DNS failure for the DMARC record: tempfail by default.
    dns.add_txt("dt.test", "v=spf1 -all");
    dns.servfail("_dmarc.dt.test");
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@dt.test",
        &msg("u@dt.test", "", ""),
    )
    .await;
    assert_eq!(
        v.results.dmarc.as_ref().unwrap().result,
        "temperror",
        "{:?}",
        v.results.dmarc
    );
    assert!(
        v.action.reply().unwrap().starts_with("451 4.7.1"),
        "{:?}",
        v.action
    );
}

#[tokio::test]
async fn internal_relay_is_checked_against_the_received_walk() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    let cfg = SenderAuthConfig {
        internal_servers: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    };
    let a = auth(&dns, cfg);
    let relay: IpAddr = "10.0.0.5".parse().unwrap();
    // At MAIL the relay's own address is not checked.
    let at_mail = a
        .check_mail_from(relay, "edge.corp.test", "u@pass.test")
        .await;
    assert_eq!(
        at_mail,
        SpfOutcome {
            evaluation: None,
            action: Action::Accept
        }
    );
    let received = "Received: from mx.sender.test (mx.sender.test [192.0.2.4]) by edge.corp.test with ESMTP id 1; Mon, 1 Jan 2024 10:00:00 +0000\r\nReceived: from liar.test ([198.51.100.1]) by mx.sender.test; Mon, 1 Jan 2024 09:59:00 +0000\r\n";
    let m = msg("u@pass.test", received, "");
    let v = a
        .check_message(relay, "edge.corp.test", "u@pass.test", &at_mail, &m)
        .await;
    let ev = v.results.spf.as_ref().unwrap();
    assert_eq!(ev.ip, "192.0.2.4".parse::<IpAddr>().unwrap());
    assert_eq!(ev.result, SpfResult::Pass);
    assert_eq!(ev.helo, "mx.sender.test");
    assert!(v.headers_to_prepend.contains("via internal relay, external hop 192.0.2.4 helo=mx.sender.test from Received header #1"), "{}", v.headers_to_prepend);
    // The same message relayed for a domain that does not allow 192.0.2.4: fail.
    let m = msg("u@fail.test", received, "");
    let v = a
        .check_message(relay, "edge.corp.test", "u@fail.test", &at_mail, &m)
        .await;
    assert_eq!(v.results.spf.as_ref().unwrap().result, SpfResult::Fail);
    // Mail that never left the inside is not checked.
    let m = msg(
        "u@pass.test",
        "Received: from a ([10.9.9.9]) by edge.corp.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n",
        "",
    );
    let v = a
        .check_message(relay, "edge.corp.test", "u@pass.test", &at_mail, &m)
        .await;
    assert!(v.results.spf.is_none() && v.results.note.is_some());
    assert_eq!(v.action, Action::Accept);
}

#[tokio::test]
async fn forged_results_for_our_host_are_removed() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    let a = auth(&dns, SenderAuthConfig::default());
    let forged = format!("Authentication-Results: {HOST}; spf=pass smtp.mailfrom=ceo@fail.test; dmarc=pass\r\nAuthentication-Results: elsewhere.test; spf=fail\r\n");
    let m = msg("u@fail.test", &forged, "body\r\n");
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@fail.test", &m).await;
    let stored = String::from_utf8(v.apply(&m)).unwrap();
    assert_eq!(
        stored
            .matches(&format!("Authentication-Results: {HOST}"))
            .count(),
        1,
        "{stored}"
    );
    assert!(
        stored.starts_with(&format!("Authentication-Results: {HOST};\r\n\tspf=fail")),
        "{stored}"
    );
    assert!(stored.contains("Authentication-Results: elsewhere.test; spf=fail"));
    assert!(stored.ends_with("\r\n\r\nbody\r\n"));
}

// ---------------------------------------------------------------------------------
// Review findings: several From domains, no From, unparseable headers, an unreadable
// Received walk, DKIM work limits, rsa-sha1, oversigning, sp= and alignment.

/// Signs `m` with fresh keys for `domain` (both algorithms), publishing them in `dns`.
fn signed_by(dns: &TestDns, dir: &std::path::Path, domain: &str, m: &[u8]) -> Vec<u8> {
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa2048] {
        if let Ok(k) = bulwark_senderauth::sign::generate_key(dir, domain, "t", alg, false) {
            dns.add_txt(&k.dns_name, &k.dns_txt);
        }
    }
    let signer = DkimSigner::load(dir).unwrap();
    let mut out = signer
        .sign_as(domain, m)
        .unwrap()
        .expect("a key")
        .into_bytes();
    out.extend_from_slice(m);
    out
}

#[tokio::test]
async fn several_from_domains_are_each_evaluated_and_the_strictest_wins() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    dns.add_txt("_dmarc.pass.test", "v=DMARC1; p=none");
    dns.add_txt("_dmarc.fail.test", "v=DMARC1; p=reject");
    let a = auth(&dns, SenderAuthConfig::default());
    // mail-auth alone calls this "exempt" (no result at all): a forged p=reject
    // domain next to a passing one would be accepted.
    let m = msg("a@pass.test, boss@fail.test", "", "");
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", &m).await;
    let doms: Vec<(&str, &str)> = v
        .results
        .dmarc_domains
        .iter()
        .map(|d| (d.domain.as_str(), d.result))
        .collect();
    assert_eq!(doms, vec![("pass.test", "pass"), ("fail.test", "fail")]);
    let reply = v.action.reply().unwrap_or_default();
    assert!(
        reply.starts_with("550 5.7.1 DMARC: rejected by the DMARC policy of fail.test (p=reject)"),
        "{:?}",
        v.action
    );
    assert!(
        v.headers_to_prepend
            .contains("dmarc=pass (p=none) header.from=pass.test")
            && v.headers_to_prepend
                .contains("dmarc=fail (p=reject) header.from=fail.test"),
        "{}",
        v.headers_to_prepend
    );
    // Two From header fields behave the same.
    let m = msg("a@pass.test", "From: boss@fail.test\r\n", "");
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", &m).await;
    assert_eq!(v.results.dmarc.as_ref().unwrap().domain, "fail.test");
    assert!(matches!(v.action, Action::Reject { .. }), "{:?}", v.action);
}

#[tokio::test]
async fn a_message_without_from_is_a_dmarc_permerror_and_tagged() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    let a = auth(&dns, SenderAuthConfig::default());
    let m = b"To: bob@example.test\r\nSubject: who?\r\n\r\nbody\r\n";
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", m).await;
    let d = v.results.dmarc.as_ref().unwrap();
    assert_eq!(d.result, "permerror");
    assert!(
        v.headers_to_prepend
            .contains("dmarc=permerror (no From address (RFC 7489 §6.6.1))")
            || v.headers_to_prepend
                .contains("dmarc=permerror (no From address"),
        "{}",
        v.headers_to_prepend
    );
    assert_eq!(v.action, Action::Tag, "at least tagged");
    assert!(v.headers_to_prepend.contains("X-Bulwark-Auth-Warning:"));
}

#[tokio::test]
async fn an_unparseable_header_section_fails_closed() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    dns.add_txt("_dmarc.pass.test", "v=DMARC1; p=reject");
    let a = auth(&dns, SenderAuthConfig::default());
    // No header field at all: mail-auth cannot parse it, so DKIM and DMARC would be
    // skipped; a forged "From:" in the body is what a reader might see.
    let m = b"\r\nFrom: ceo@pass.test\r\nSubject: wire the money\r\n\r\nnow\r\n";
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", m).await;
    let reply = v.action.reply().unwrap_or_default();
    assert!(
        reply.starts_with("550 5.7.1 Message refused: the header section cannot be parsed"),
        "{:?}",
        v.action
    );
    assert!(
        v.headers_to_prepend
            .contains("dkim=permerror (the header section cannot be parsed)")
            && v.headers_to_prepend
                .contains("dmarc=permerror (the header section cannot be parsed)"),
        "{}",
        v.headers_to_prepend
    );
    // Configurable: quarantine instead.
    let cfg = SenderAuthConfig {
        unparseable: bulwark_config::senderauth::AuthAction::Quarantine,
        ..Default::default()
    };
    let a = auth(&dns, cfg);
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", m).await;
    assert_eq!(v.action, Action::Quarantine);
}

#[tokio::test]
async fn an_unreadable_received_walk_still_runs_dkim_and_dmarc() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    dns.add_txt("_dmarc.fail.test", "v=DMARC1; p=reject");
    let cfg = SenderAuthConfig {
        internal_servers: vec!["10.0.0.0/8".parse().unwrap()],
        ..Default::default()
    };
    let a = auth(&dns, cfg);
    let relay: IpAddr = "10.0.0.5".parse().unwrap();
    let at_mail = a
        .check_mail_from(relay, "edge.corp.test", "u@fail.test")
        .await;
    // Hostile HELO names our edge wrote into its Received header: the walk cannot find
    // the sending IP. Before, this skipped every check and accepted.
    for helo in ["a;b", "x) by evil ([10.0.0.1])", "\"x"] {
        let received = format!("Received: from {helo} ([203.0.113.5])\r\n\tby edge.corp.test (Bulwark) with ESMTP id 1; Mon, 1 Jan 2024 10:00:00 +0000\r\n");
        let m = msg("boss@fail.test", &received, "");
        let v = a
            .check_message(relay, "edge.corp.test", "u@fail.test", &at_mail, &m)
            .await;
        let ev = v.results.spf.as_ref().unwrap();
        assert_eq!(ev.result, SpfResult::PermError, "{helo}");
        assert!(
            v.headers_to_prepend.contains(
                "spf=permerror (no readable external hop behind internal server 10.0.0.5"
            ),
            "{helo}: {}",
            v.headers_to_prepend
        );
        assert!(
            v.headers_to_prepend.contains("sender-id=permerror"),
            "{}",
            v.headers_to_prepend
        );
        assert_eq!(v.results.dmarc.as_ref().unwrap().result, "fail", "{helo}");
        assert!(
            matches!(v.action, Action::Reject { .. }),
            "{helo}: {:?}",
            v.action
        );
    }
    // A DKIM signature aligned with From still passes DMARC without any IP.
    let dir = tempfile::tempdir().unwrap();
    let received = "Received: from a;b ([203.0.113.5])\r\n\tby edge.corp.test (Bulwark) with ESMTP id 1; Mon, 1 Jan 2024 10:00:00 +0000\r\n";
    let m = signed_by(
        &dns,
        dir.path(),
        "fail.test",
        &msg("boss@fail.test", "", ""),
    );
    let mut relayed = received.as_bytes().to_vec();
    relayed.extend_from_slice(&m);
    let v = a
        .check_message(relay, "edge.corp.test", "u@fail.test", &at_mail, &relayed)
        .await;
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "pass");
    assert_eq!(v.action, Action::Accept);
}

#[tokio::test]
async fn at_most_ten_dkim_signatures_are_verified() {
    let dns = TestDns::start().await;
    dns.add_txt("_dmarc.signed.test", "v=DMARC1; p=reject");
    let dir = tempfile::tempdir().unwrap();
    let m = msg("alice@signed.test", "", "Hello.\r\n");
    let once = signed_by(&dns, dir.path(), "signed.test", &m);
    let sigs = &once[..once.len() - m.len()];
    // 14 signatures (7 × the two keys).
    let mut many = Vec::new();
    for _ in 0..7 {
        many.extend_from_slice(sigs);
    }
    many.extend_from_slice(&m);
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.50",
        "out.signed.test",
        "alice@signed.test",
        &many,
    )
    .await;
    let verified = v.results.dkim.iter().filter(|d| d.result == "pass").count();
    assert_eq!(verified, 10, "{:?}", v.results.dkim);
    let last = v.results.dkim.last().unwrap();
    assert_eq!(last.result, "neutral");
    assert!(
        last.reason
            .as_deref()
            .unwrap()
            .starts_with("4 more signature(s) not verified"),
        "{last:?}"
    );
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "pass");
}

#[tokio::test]
async fn the_checks_after_data_have_a_time_limit() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    let dir = tempfile::tempdir().unwrap();
    let m = signed_by(
        &dns,
        dir.path(),
        "slow.test",
        &msg("a@slow.test", "", "x\r\n"),
    );
    // The signing domain's name servers never answer.
    dns.silent("t-rsa._domainkey.slow.test");
    dns.silent("t-ed25519._domainkey.slow.test");
    let cfg = SenderAuthConfig {
        check_timeout_secs: 1,
        ..Default::default()
    };
    let a = auth(&dns, cfg);
    let v = verdict(&a, "192.0.2.4", "mx.test", "u@pass.test", &m).await;
    let reply = v.action.reply().unwrap_or_default();
    assert!(
        reply.starts_with("451 4.7.1 DMARC: the sender checks did not finish within 1 seconds"),
        "{:?}",
        v.action
    );
    assert!(
        v.headers_to_prepend
            .contains("dmarc=temperror (the sender checks did not finish"),
        "{}",
        v.headers_to_prepend
    );
}

#[tokio::test]
async fn rsa_sha1_signatures_do_not_count() {
    let dns = TestDns::start().await;
    for line in include_str!("fixtures/rsa-sha1-example.dns").lines() {
        let (name, txt) = line.split_once(' ').unwrap();
        dns.add_txt(name, txt);
    }
    dns.add_txt("sha1.example", "v=spf1 -all");
    dns.add_txt("_dmarc.sha1.example", "v=DMARC1; p=reject");
    let m = include_bytes!("fixtures/rsa-sha1-example.eml");
    // The signature itself is valid (dkimpy made it; mail-auth verifies it)…
    let parsed = mail_auth::AuthenticatedMessage::parse(m).unwrap();
    let ma = mail_auth::MessageAuthenticator(bulwark_dns::resolver(&dns.config()).unwrap());
    let raw = ma.verify_dkim(&parsed).await;
    assert_eq!(raw[0].result(), &mail_auth::DkimResult::Pass);
    // …but RFC 8301 §3.1 forbids treating it as valid: permerror, and DMARC fails.
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(&a, "192.0.2.4", "mx.test", "joe@sha1.example", m).await;
    let d = &v.results.dkim[0];
    assert_eq!((d.result, d.algorithm), ("permerror", "rsa-sha1"));
    assert!(
        v.headers_to_prepend.contains(
            "dkim=permerror (rsa-sha1 not accepted per RFC 8301 section 3.1) header.d=sha1.example"
        ),
        "{}",
        v.headers_to_prepend
    );
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "fail");
    assert!(matches!(v.action, Action::Reject { .. }), "{:?}", v.action);
}

#[tokio::test]
async fn oversigned_headers_cannot_be_added_after_signing() {
    let dns = TestDns::start().await;
    dns.add_txt("_dmarc.signed.test", "v=DMARC1; p=reject");
    let dir = tempfile::tempdir().unwrap();
    let m = msg("alice@signed.test", "", "Hello.\r\n");
    let signed = signed_by(&dns, dir.path(), "signed.test", &m);
    let text = String::from_utf8_lossy(&signed).into_owned();
    // h= names each present header once more than it occurs, and absent ones once.
    let h: String = text
        .split("h=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let names: Vec<String> = h.split(':').map(|n| n.to_ascii_lowercase()).collect();
    let count = |n: &str| names.iter().filter(|x| x.as_str() == n).count();
    for (n, want) in [
        ("from", 2),
        ("subject", 2),
        ("to", 2),
        ("date", 2),
        ("message-id", 2),
        ("sender", 1),
        ("reply-to", 1),
        ("cc", 1),
    ] {
        assert_eq!(count(n), want, "{n} in h={h}");
    }
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.50",
        "out.signed.test",
        "alice@signed.test",
        &signed,
    )
    .await;
    assert_eq!(v.results.dmarc.as_ref().unwrap().result, "pass");
    // Anything the reader sees, added on top afterwards, breaks every signature.
    for added in [
        "From: ceo@signed.test\r\n",
        "Subject: URGENT: wire the money\r\n",
        "Sender: ceo@signed.test\r\n",
        "Reply-To: thief@elsewhere.test\r\n",
        "Cc: everyone@signed.test\r\n",
    ] {
        let mut tampered = added.as_bytes().to_vec();
        tampered.extend_from_slice(&signed);
        let v = verdict(
            &a,
            "192.0.2.50",
            "out.signed.test",
            "alice@signed.test",
            &tampered,
        )
        .await;
        assert!(
            v.results.dkim.iter().all(|d| d.result == "fail"),
            "{added}: {:?}",
            v.results.dkim
        );
        assert_eq!(v.results.dmarc.as_ref().unwrap().result, "fail", "{added}");
        assert!(matches!(v.action, Action::Reject { .. }), "{added}");
    }
}

#[tokio::test]
async fn dmarc_subdomain_policy_and_dkim_only_alignment() {
    let dns = TestDns::start().await;
    spf_zone(&dns);
    // sp= applies to subdomains (which exist), p= to the domain itself.
    dns.add_txt("_dmarc.org.test", "v=DMARC1; p=none; sp=reject");
    dns.add_a("sub.org.test", "192.0.2.70".parse().unwrap());
    dns.add_txt("org.test", "v=spf1 -all");
    dns.add_txt("sub.org.test", "v=spf1 -all");
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@sub.org.test",
        &msg("u@sub.org.test", "", ""),
    )
    .await;
    let d = v.results.dmarc.as_ref().unwrap();
    assert_eq!((d.result, d.policy), ("fail", Some("reject")), "{d:?}");
    assert!(matches!(v.action, Action::Reject { .. }));
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.test",
        "u@org.test",
        &msg("u@org.test", "", ""),
    )
    .await;
    let d = v.results.dmarc.as_ref().unwrap();
    assert_eq!((d.result, d.policy), ("fail", Some("none")), "{d:?}");
    assert_eq!(v.action, Action::Tag);

    // DKIM-only alignment: the envelope is a bounce address elsewhere (SPF passes for
    // pass.test, which is not aligned), the signature's d= is the organisational
    // domain of From (relaxed alignment): pass. With adkim=s: fail.
    let dir = tempfile::tempdir().unwrap();
    dns.add_txt("_dmarc.news.test", "v=DMARC1; p=reject");
    dns.add_txt("_dmarc.strict.test", "v=DMARC1; p=reject; adkim=s");
    for (from, signer, want) in [
        ("alice@mail.news.test", "news.test", "pass"),
        ("alice@mail.strict.test", "strict.test", "fail"),
    ] {
        let m = signed_by(&dns, dir.path(), signer, &msg(from, "", "hi\r\n"));
        let v = verdict(&a, "192.0.2.4", "mx.test", "bounces@pass.test", &m).await;
        assert_eq!(v.results.spf.as_ref().unwrap().result, SpfResult::Pass);
        assert!(v.results.dkim.iter().all(|d| d.result == "pass"));
        assert_eq!(v.results.dmarc.as_ref().unwrap().result, want, "{from}");
    }
}

#[tokio::test]
async fn null_mx_senders_are_refused_at_mail() {
    let dns = TestDns::start().await;
    dns.add_mx("nomail.test", 0, ".");
    dns.add_mx("mail.test", 10, "mx.mail.test");
    dns.servfail("broken.test");
    let a = auth(&dns, SenderAuthConfig::default());
    let r = a.check_null_mx_sender("u@nomail.test").await;
    assert_eq!(
        r.reply().unwrap(),
        "550 5.7.27 Sender address rejected: nomail.test publishes a null MX and sends no mail (RFC 7505)"
    );
    for ok in ["u@mail.test", "u@broken.test", "u@nowhere.test", ""] {
        assert_eq!(a.check_null_mx_sender(ok).await, Action::Accept, "{ok}");
    }
    let cfg = SenderAuthConfig {
        reject_null_mx_senders: false,
        ..Default::default()
    };
    assert_eq!(
        auth(&dns, cfg).check_null_mx_sender("u@nomail.test").await,
        Action::Accept
    );
}

#[tokio::test]
async fn received_spf_for_the_null_sender_and_without_exp_in_problem() {
    let dns = TestDns::start().await;
    dns.add_txt("mx.fail.test", "v=spf1 -all exp=why.fail.test");
    dns.add_txt("why.fail.test", "go away %{i}");
    dns.add_txt("fail.test", "v=spf1 -all exp=why.fail.test");
    let a = auth(&dns, SenderAuthConfig::default());
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.fail.test",
        "",
        &msg("x@other.test", "", ""),
    )
    .await;
    assert!(
        v.headers_to_prepend.contains("envelope-from=\"<>\";"),
        "{}",
        v.headers_to_prepend
    );
    assert!(!v.headers_to_prepend.contains("postmaster@mx.fail.test;"));
    let v = verdict(
        &a,
        "192.0.2.4",
        "mx.x.test",
        "u@fail.test",
        &msg("u@fail.test", "", ""),
    )
    .await;
    assert!(
        !v.headers_to_prepend.contains("problem=") && !v.headers_to_prepend.contains("go away"),
        "{}",
        v.headers_to_prepend
    );
}

#[tokio::test]
async fn dkim_keys_readable_by_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = bulwark_senderauth::sign::generate_key(
        dir.path(),
        "example.test",
        "bulwark",
        KeyAlgorithm::Ed25519,
        false,
    )
    .unwrap();
    assert!(bulwark_senderauth::sign::insecure_key_files(dir.path()).is_empty());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = DkimSigner::load(dir.path()).err().unwrap().to_string();
    assert!(
        e.contains("readable by others (mode 640)") && e.contains("fix: chmod 600"),
        "{e}"
    );
    assert_eq!(
        bulwark_senderauth::sign::insecure_key_files(dir.path()),
        vec![(k.path.clone(), 0o640)]
    );
}

/// 200 concurrent messages from one sender domain (SPF at MAIL, a DKIM signature, no
/// DMARC record): every name reaches the DNS server once — the same questions one
/// message asks alone. Identical lookups in flight are shared (single-flight, also for
/// the lookups mail-auth makes itself) and negative answers are cached (RFC 2308 §5:
/// for the SOA's minimum; without an SOA, for a short floor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_domain_costs_one_query_per_name() {
    for negative_soa in [true, false] {
        burst_from_one_domain(negative_soa).await;
    }
}

async fn burst_from_one_domain(negative_soa: bool) {
    let dir = tempfile::tempdir().unwrap();
    let dns = TestDns::start().await;
    if negative_soa {
        dns.negative_soa(300);
    }
    dns.add_txt("burst.test", "v=spf1 ip4:192.0.2.0/24 -all");
    let k = bulwark_senderauth::sign::generate_key(
        dir.path(),
        "burst.test",
        "b",
        KeyAlgorithm::Ed25519,
        false,
    )
    .unwrap();
    dns.add_txt(&k.dns_name, &k.dns_txt);
    let signer = DkimSigner::load(dir.path()).unwrap();
    let plain = msg("a@burst.test", "", "hello\r\n");
    let mut m = signer.sign(&plain).unwrap().unwrap().into_bytes();
    m.extend_from_slice(&plain);

    // One message alone, on its own resolver (empty cache): the questions it asks,
    // each once.
    let one = auth(&dns, SenderAuthConfig::default());
    let v = verdict(&one, "192.0.2.7", "mx.burst.test", "a@burst.test", &m).await;
    assert_eq!(v.results.dkim[0].result, "pass", "{v:#?}");
    let mut alone = dns.query_log();
    alone.sort();
    assert_eq!(
        alone,
        [
            "_dmarc.burst.test TXT",
            "_dmarc.test TXT",
            "b-ed25519._domainkey.burst.test TXT",
            "burst.test TXT"
        ],
        "soa: {negative_soa}"
    );

    // 200 at once on a fresh resolver.
    let before = dns.query_log().len();
    let a = std::sync::Arc::new(auth(&dns, SenderAuthConfig::default()));
    let m = std::sync::Arc::new(m);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (a, m) = (a.clone(), m.clone());
        tasks.push(tokio::spawn(async move {
            verdict(&a, "192.0.2.7", "mx.burst.test", "a@burst.test", &m)
                .await
                .results
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.dkim[0].result, "pass", "{r:#?}");
        assert_eq!(r.dmarc.map(|d| d.result), Some("none"));
    }
    let mut burst = dns.query_log()[before..].to_vec();
    burst.sort();
    assert_eq!(
        burst, alone,
        "each name once, as for one message (soa: {negative_soa})"
    );
}
