//! DNS checks for our domains: MX, SPF (RFC 7208 §4.5), DKIM keys (RFC 6376 §3.6.2.1)
//! and DMARC (RFC 7489 §6.1) records published.

use bulwark_dns::hickory_resolver::proto::rr::RData;
use bulwark_dns::TokioResolver;

use crate::finding::{Finding, Severity};

enum Txt {
    Records(Vec<String>),
    /// NXDOMAIN or no TXT at the name.
    None,
    Failed(String),
}

async fn txt(r: &TokioResolver, name: &str) -> Txt {
    match r.txt_lookup(format!("{name}.")).await {
        Ok(l) => Txt::Records(
            l.answers()
                .iter()
                .filter_map(|rr| match &rr.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|d| String::from_utf8_lossy(d).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Txt::None,
        Err(e) => Txt::Failed(e.to_string()),
    }
}

fn starts_with_tag(record: &str, tag: &str) -> bool {
    record
        .trim_start()
        .get(..tag.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(tag))
        && record
            .trim_start()
            .as_bytes()
            .get(tag.len())
            .is_none_or(|b| *b == b' ' || *b == b';')
}

fn failed(domain: &str, what: &str, e: &str) -> Finding {
    Finding::new(
        "dns-lookup-failed",
        Severity::Low,
        domain.to_string(),
        format!("the {what} lookup failed: {e}"),
        "the check could not be completed; the record may or may not be published",
        "check the resolver (--dns ADDR:PORT or [dns] resolvers) and the domain's name servers, then audit again",
    )
}

/// Checks every domain; `dkim_selectors` are the selectors we sign with (a key under
/// any one of them is enough). `hostname` and `spf_record` (what `bulwark spf record`
/// prints: `bulwark_senderauth::record::recommended_spf`) are only used in the
/// suggested records.
pub async fn check_domains(
    r: &TokioResolver,
    domains: &[String],
    dkim_selectors: &[String],
    hostname: &str,
    spf_record: &str,
) -> Vec<Finding> {
    let mut f = Vec::new();
    for d in domains {
        match r.mx_lookup(format!("{d}.")).await {
            Ok(_) => {}
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => f.push(Finding::new(
                "dns-mx-missing",
                Severity::Low,
                d.clone(),
                format!("no MX record for {d}"),
                "senders fall back to the domain's A/AAAA record, which is rarely the mail server",
                format!("publish: {d}. MX 10 {hostname}."),
            )),
            Err(e) => f.push(failed(d, "MX", &e.to_string())),
        }
        match txt(r, d).await {
            Txt::Records(rs) if rs.iter().any(|t| starts_with_tag(t, "v=spf1")) => {}
            Txt::Failed(e) => f.push(failed(d, "SPF (TXT)", &e)),
            _ => f.push(Finding::new(
                "dns-spf-missing",
                Severity::Medium,
                d.clone(),
                format!("no SPF record (TXT \"v=spf1 …\") at {d}"),
                "receivers cannot tell your servers from forgers; your mail scores worse and your domain is easier to spoof",
                format!("publish: {d}. TXT \"{spf_record}\" (`bulwark spf record` explains each term)"),
            )),
        }
        let dmarc = format!("_dmarc.{d}");
        match txt(r, &dmarc).await {
            Txt::Records(rs) if rs.iter().any(|t| starts_with_tag(t, "v=DMARC1")) => {}
            Txt::Failed(e) => f.push(failed(d, "DMARC", &e)),
            _ => f.push(Finding::new(
                "dns-dmarc-missing",
                Severity::Medium,
                d.clone(),
                format!("no DMARC record (TXT \"v=DMARC1 …\") at {dmarc}"),
                "receivers have no policy for mail that fails SPF and DKIM in your name, so forgeries get delivered",
                format!("publish: {dmarc}. TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{d}\""),
            )),
        }
        let mut found_key = false;
        let mut errors = Vec::new();
        for s in dkim_selectors {
            match txt(r, &format!("{s}._domainkey.{d}")).await {
                Txt::Records(rs) if rs.iter().any(|t| t.contains("p=") && !t.contains("p=;")) => {
                    found_key = true;
                }
                Txt::Failed(e) => errors.push(e),
                _ => {}
            }
        }
        if !found_key {
            if let Some(e) = errors.first() {
                f.push(failed(d, "DKIM", e));
            } else {
                let names: Vec<String> = dkim_selectors
                    .iter()
                    .map(|s| format!("{s}._domainkey.{d}"))
                    .collect();
                f.push(Finding::new(
                    "dns-dkim-missing",
                    Severity::Medium,
                    d.clone(),
                    format!("no DKIM public key at {}", names.join(" or ")),
                    "receivers cannot verify your signatures, so DMARC passes only on SPF, which breaks on forwarding",
                    format!("publish the TXT records `bulwark dkim list` prints (at {}; `bulwark dkim generate --domain {d}` if there are no keys)", names.join(" / ")),
                ));
            }
        }
    }
    f
}

/// The host name's own SPF record (RFC 7208 §2.3: the HELO identity, which receivers
/// check for our bounces). `helo_record` is what `bulwark spf record` prints for it
/// (`bulwark_senderauth::record::recommended_helo_spf`), or `None` when the host name
/// is one of our domains (their check covers it).
pub async fn check_helo(
    r: &TokioResolver,
    hostname: &str,
    helo_record: Option<&str>,
) -> Vec<Finding> {
    let Some(rec) = helo_record else {
        return Vec::new();
    };
    match txt(r, hostname).await {
        Txt::Records(rs) if rs.iter().any(|t| starts_with_tag(t, "v=spf1")) => Vec::new(),
        Txt::Failed(e) => vec![failed(hostname, "SPF (TXT) of the HELO name", &e)],
        _ => vec![Finding::new(
            "dns-spf-helo-missing",
            Severity::Low,
            hostname.to_string(),
            format!("no SPF record (TXT \"v=spf1 …\") at {hostname}, the name this server gives in HELO"),
            "bounces (MAIL FROM:<>) are checked against the HELO name and get SPF \"none\"",
            format!("publish: {hostname}. TXT \"{rec}\" (`bulwark spf record` prints it)"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_dns::testing::TestDns;

    const SPF: &str = "v=spf1 a:mail.bare.test mx ~all";

    #[test]
    fn tags() {
        assert!(starts_with_tag("v=spf1 mx -all", "v=spf1"));
        assert!(starts_with_tag("V=SPF1", "v=spf1"));
        assert!(!starts_with_tag("v=spf10", "v=spf1"));
        assert!(starts_with_tag("v=DMARC1; p=reject", "v=DMARC1"));
    }

    #[tokio::test]
    async fn missing_and_present_records() {
        let dns = TestDns::start().await;
        dns.add_mx("good.test", 10, "mail.good.test");
        dns.add_txt("good.test", "v=spf1 mx -all");
        dns.add_txt("_dmarc.good.test", "v=DMARC1; p=reject");
        dns.add_txt("bulwark-rsa._domainkey.good.test", "v=DKIM1; k=rsa; p=MIIB");
        dns.add_a("bare.test", "192.0.2.1".parse().unwrap());
        dns.add_txt("bare.test", "google-site-verification=x");
        dns.servfail("broken.test");
        let r = bulwark_dns::resolver(&dns.config()).unwrap();
        let sel = vec!["bulwark-rsa".to_string(), "bulwark-ed25519".to_string()];
        let f = check_domains(&r, &["good.test".into()], &sel, "mail.good.test", SPF).await;
        assert!(f.is_empty(), "{f:?}");
        let f = check_domains(&r, &["bare.test".into()], &sel, "mail.bare.test", SPF).await;
        let ids: Vec<&str> = f.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            [
                "dns-mx-missing",
                "dns-spf-missing",
                "dns-dmarc-missing",
                "dns-dkim-missing"
            ],
            "{f:?}"
        );
        // The fix suggests the record `bulwark spf record` prints, not another one.
        assert!(f[1].fix.contains(SPF), "{f:?}");
        // A failing server is not reported as a missing record.
        let f = check_domains(&r, &["broken.test".into()], &sel, "m", SPF).await;
        let failed: Vec<&str> = f
            .iter()
            .filter(|x| x.id == "dns-lookup-failed")
            .map(|x| x.found.as_str())
            .collect();
        assert_eq!(failed.len(), 2, "{f:?}");
        assert!(!f
            .iter()
            .any(|x| x.id == "dns-spf-missing" || x.id == "dns-mx-missing"));

        // The HELO name: missing, present, or covered by a domain's record.
        let helo = "v=spf1 a -all";
        let f = check_helo(&r, "mail.bare.test", Some(helo)).await;
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].id, "dns-spf-helo-missing");
        assert!(f[0].fix.contains(helo), "{f:?}");
        dns.add_txt("mail.bare.test", helo);
        // A new resolver: the first one remembers the negative answer (RFC 2308).
        let r = bulwark_dns::resolver(&dns.config()).unwrap();
        assert!(check_helo(&r, "mail.bare.test", Some(helo))
            .await
            .is_empty());
        assert!(check_helo(&r, "mail.none.test", None).await.is_empty());
    }
}
