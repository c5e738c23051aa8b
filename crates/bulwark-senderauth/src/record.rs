//! The SPF record our domains should publish (RFC 7208), computed from the
//! configuration: this server, the MX hosts, and every outbound smart host. One
//! function for `bulwark spf record` and for the fix `bulwark audit` suggests, so the
//! two can never disagree.

use std::net::IpAddr;

use bulwark_config::Config;

/// One term of the record and why it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub term: String,
    pub why: String,
}

/// The recommended record, its terms explained, and notes for the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfRecommendation {
    pub terms: Vec<Term>,
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
