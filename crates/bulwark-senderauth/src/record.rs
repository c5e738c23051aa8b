//! The SPF records we should publish (RFC 7208), computed from the configuration: for
//! our domains (this server, the MX hosts, every outbound smart host) and for this
//! server's host name, the HELO identity. The same functions serve `bulwark spf
//! record` and the fixes `bulwark audit --dns` suggests, so the two never disagree.

use std::net::IpAddr;

use bulwark_config::Config;

/// One term of the record and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The term as it goes into the record, e.g. `mx` or `ip4:192.0.2.1`.
    pub term: String,
    /// Why it is there, for the administrator.
    pub why: String,
}

/// The recommended record, its terms explained, and notes for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecommendation {
    /// The terms in record order (after `v=spf1`).
    pub terms: Vec<Term>,
    /// Things the administrator should know or check.
    pub notes: Vec<String>,
}

impl SpfRecommendation {
    /// `v=spf1 a:mail.example.org mx ~all`
    pub fn record(&self) -> String {
        let mut r = String::from("v=spf1");
        for t in &self.terms {
            r.push(' ');
            r.push_str(&t.term);
        }
        r
    }

    /// The zone-file line for `domain`: `example.org.  IN TXT  "v=spf1 …"`.
    pub fn zone_line(&self, domain: &str) -> String {
        format!(
            "{}.  IN TXT  \"{}\"",
            domain.trim_end_matches('.'),
            self.record()
        )
    }
}

/// What our domains' SPF record should say, from `[server]` and `[outbound]`.
pub fn recommended_spf(c: &Config) -> SpfRecommendation {
    let mut terms: Vec<Term> = Vec::new();
    let mut notes = Vec::new();
    let push = |terms: &mut Vec<Term>, term: String, why: String| {
        if !terms.iter().any(|t| t.term == term) {
            terms.push(Term { term, why });
        }
    };
    let host = &c.server.hostname;
    let connectors = &c.outbound.connectors;
    // Mail leaves from this server itself unless a "*" connector sends everything
    // through a smart host and no other connector delivers to MX hosts directly.
    let all_via_smart_hosts = connectors
        .iter()
        .any(|k| k.smart_host.is_some() && k.address_space.iter().any(|s| s == "*"))
        && connectors.iter().all(|k| k.smart_host.is_some());
    if !all_via_smart_hosts {
        push(
            &mut terms,
            format!("a:{host}"),
            format!("this server delivers outbound mail itself, from the addresses of {host}"),
        );
    }
    push(
        &mut terms,
        "mx".into(),
        "the domain's MX hosts may send too (usually this server)".into(),
    );
    for k in connectors {
        let Some(smart) = &k.smart_host else {
            continue;
        };
        let (term, what) = match smart.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => (format!("ip4:{v4}"), "that address sends"),
            Ok(IpAddr::V6(v6)) => (format!("ip6:{v6}"), "that address sends"),
            Err(_) => (format!("a:{smart}"), "the addresses of that name send"),
        };
        push(
            &mut terms,
            term,
            format!(
                "connector {:?} ({}) relays through smart host {smart}: {what} our mail",
                k.name,
                k.address_space.join(", ")
            ),
        );
        if smart.parse::<IpAddr>().is_err() {
            notes.push(format!(
                "{smart} is a smart host: if it is a provider's relay, its outgoing servers may differ from the name you connect to — replace a:{smart} with the include: term the provider documents (e.g. include:_spf.provider.example)."
            ));
        }
    }
    // ~all rather than -all: RFC 7489 §10.1 warns that receivers which act on SPF
    // before DMARC reject a "-all" failure outright, so mail forwarded by a third
    // party (which breaks SPF but keeps a valid DKIM signature) would be lost before
    // DMARC could accept it. Forgeries are stopped by DMARC (p=quarantine/reject) with
    // DKIM, which survives forwarding.
    push(
        &mut terms,
        "~all".into(),
        "anything else is softfail: receivers mark it; DMARC with DKIM decides rejection (RFC 7489 §10.1: -all can make receivers reject forwarded mail before DMARC runs)".into(),
    );
    SpfRecommendation { terms, notes }
}

/// The record for this server's host name (`[server] hostname`), which it gives in
/// HELO/EHLO. RFC 7208 §2.3: a bounce has an empty MAIL FROM, so receivers check SPF
/// for `postmaster@<HELO name>`; without a record there, our bounces get "none"
/// (and DMARC has no SPF result for them). §10.1.3 recommends exactly this for a
/// host name: its own addresses, and nothing else (`-all`: a HELO name is not
/// forwarded, so the reason for `~all` on domains does not apply).
pub fn recommended_helo_spf(c: &Config) -> SpfRecommendation {
    let host = &c.server.hostname;
    SpfRecommendation {
        terms: vec![
            Term {
                term: "a".into(),
                why: format!(
                    "{host} is the name this server gives in HELO/EHLO; receivers check it for bounces (MAIL FROM:<>, RFC 7208 §2.3): its own addresses send"
                ),
            },
            Term {
                term: "-all".into(),
                why: "no one else uses this host name in HELO (RFC 7208 §10.1.3)".into(),
            },
        ],
        notes: Vec::new(),
    }
}

/// Whether the host name needs a record of its own: not when it is itself one of our
/// mail domains, whose record already names it (`a:<host>`) — a second `v=spf1`
/// record at one name is a permerror (RFC 7208 §4.5).
pub fn helo_record_needed(hostname: &str, domains: &[String]) -> bool {
    let h = hostname.trim_end_matches('.');
    !domains
        .iter()
        .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(
            &format!("[server]\nhostname = \"mail.example.test\"\n{extra}"),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn plain_server() {
        let r = recommended_spf(&cfg(""));
        assert_eq!(r.record(), "v=spf1 a:mail.example.test mx ~all");
        assert_eq!(
            r.zone_line("example.test."),
            "example.test.  IN TXT  \"v=spf1 a:mail.example.test mx ~all\""
        );
        assert!(r.notes.is_empty());
    }

    #[test]
    fn helo_name_record() {
        let r = recommended_helo_spf(&cfg(""));
        assert_eq!(
            r.zone_line("mail.example.test"),
            "mail.example.test.  IN TXT  \"v=spf1 a -all\""
        );
        assert!(helo_record_needed(
            "mail.example.test",
            &["example.test".into()]
        ));
        assert!(!helo_record_needed(
            "Mail.Example.Test.",
            &["mail.example.test".into()]
        ));
    }

    #[test]
    fn smart_hosts_are_authorised() {
        let r = recommended_spf(&cfg(r#"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "smtp.provider.test"
port = 587
tls = "verify"
[[outbound.connector]]
name = "partner"
address_space = ["partner.test"]
smart_host = "192.0.2.25"
[[outbound.connector]]
name = "v6"
address_space = ["v6.test"]
smart_host = "2001:db8::25"
"#));
        // Every route goes through a smart host: this server never sends directly.
        assert_eq!(
            r.record(),
            "v=spf1 mx a:smtp.provider.test ip4:192.0.2.25 ip6:2001:db8::25 ~all"
        );
        assert!(r.notes[0].contains("include:"), "{:?}", r.notes);
        // A connector without smart host: this server delivers too.
        let r = recommended_spf(&cfg(r#"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "smtp.provider.test"
[[outbound.connector]]
name = "partner"
address_space = ["partner.test"]
tls = "verify"
"#));
        assert_eq!(
            r.record(),
            "v=spf1 a:mail.example.test mx a:smtp.provider.test ~all"
        );
    }
}
