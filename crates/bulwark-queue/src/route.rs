//! Where mail for a domain goes: the connector that serves it, and the hosts to try in
//! order (RFC 5321 §5.1 MX selection, RFC 7505 null MX, or the connector's smart host).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bulwark_config::outbound::normalize_fingerprint;
use bulwark_config::{ConnectorConfig, LoadedConfig, TlsLevel};
use bulwark_dns::hickory_resolver::proto::rr::RData;
use bulwark_dns::TokioResolver;
use rand::seq::SliceRandom;
use rustls::ClientConfig;

use bulwark_wire::Enhanced;

use crate::credentials::{CredentialsError, SaslCredentials};
use crate::outcome::Outcome;
use crate::tls::{client_config, TlsSetupError};

/// A connector ready for use: configuration plus its TLS client configuration.
#[derive(Debug)]
pub struct Connector {
    /// The `[[outbound.connector]]` name (`default` for the built-in one), shown in logs.
    pub name: String,
    /// Deliver every recipient through this host instead of the domains' MX hosts.
    pub smart_host: Option<String>,
    /// The TCP port to connect to (`[outbound] remote_port` unless the connector sets one).
    pub port: u16,
    /// TLS from the first octet (RFC 8314 §3.3) instead of STARTTLS.
    pub implicit_tls: bool,
    /// How much TLS this connector demands: opportunistic, required, verify or pinned.
    pub level: TlsLevel,
    /// The rustls client configuration for `level` (trust anchors or the pinned keys).
    pub tls: Arc<ClientConfig>,
    /// Read at every connection, so a changed password needs no restart; checked at
    /// start so a wrong mode stops the server instead of deferring mail for days.
    pub credentials_file: Option<PathBuf>,
}

impl Connector {
    /// The SASL credentials, read now from `credentials_file` (None: no AUTH).
    pub fn credentials(&self) -> Result<Option<SaslCredentials>, CredentialsError> {
        self.credentials_file
            .as_deref()
            .map(SaslCredentials::load)
            .transpose()
    }

    /// Recipients grouped under one key are delivered together and share the
    /// per-destination concurrency limit: the smart host, or the recipient domain.
    pub fn destination_key(&self, domain: &str) -> String {
        match &self.smart_host {
            Some(h) => format!("{}:{h}", self.name),
            None => domain.to_string(),
        }
    }
}

/// Why a connector's configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Its TLS trust anchors or pins cannot be loaded.
    #[error("connector {name:?}: {source}")]
    Tls {
        /// The connector.
        name: String,
        /// What is wrong.
        #[source]
        source: TlsSetupError,
    },
    /// Its credentials file is refused.
    #[error("connector {name:?}: {source}")]
    Credentials {
        /// The connector.
        name: String,
        /// What is wrong.
        #[source]
        source: CredentialsError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `*.partner.test` stored as ".partner.test".
    Suffix(String),
    Any,
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if s == "*" {
            Pattern::Any
        } else if let Some(rest) = s.strip_prefix("*.") {
            Pattern::Suffix(format!(".{rest}"))
        } else {
            Pattern::Exact(s)
        }
    }

    /// How specific a match is (higher wins), or None when it does not match.
    fn specificity(&self, domain: &str) -> Option<usize> {
        match self {
            Pattern::Exact(d) => (d == domain).then_some(usize::MAX),
            Pattern::Suffix(s) => domain.ends_with(s.as_str()).then_some(s.len()),
            Pattern::Any => Some(0),
        }
    }
}

/// Every configured connector, plus the implicit default (MX, opportunistic TLS).
#[derive(Debug)]
pub struct Connectors {
    entries: Vec<(Pattern, Arc<Connector>)>,
    default: Arc<Connector>,
}

impl Connectors {
    /// The connectors of `[outbound]`: the default plus each configured one, their files checked.
    pub fn from_config(cfg: &LoadedConfig) -> Result<Connectors, ConnectorError> {
        let o = &cfg.config.outbound;
        let default = Arc::new(Connector {
            name: "default".into(),
            smart_host: None,
            port: o.remote_port,
            implicit_tls: false,
            level: TlsLevel::Opportunistic,
            tls: client_config(TlsLevel::Opportunistic, None, &[]).map_err(|source| {
                ConnectorError::Tls {
                    name: "default".into(),
                    source,
                }
            })?,
            credentials_file: None,
        });
        let mut entries = Vec::new();
        for c in &o.connectors {
            let connector = Arc::new(build(cfg, c)?);
            for s in &c.address_space {
                entries.push((Pattern::parse(s), connector.clone()));
            }
        }
        Ok(Connectors { entries, default })
    }

    /// The connector for a recipient domain: the most specific address space wins
    /// (exact > longest `*.suffix` > `*`), else the default.
    pub fn select(&self, domain: &str) -> Arc<Connector> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.entries
            .iter()
            .filter_map(|(p, c)| p.specificity(&domain).map(|s| (s, c)))
            .max_by_key(|(s, _)| *s)
            .map_or_else(|| self.default.clone(), |(_, c)| c.clone())
    }
}

fn build(cfg: &LoadedConfig, c: &ConnectorConfig) -> Result<Connector, ConnectorError> {
    let remote_port = cfg.config.outbound.remote_port;
    let pins: Vec<String> = c
        .tls_pins
        .iter()
        .filter_map(|p| normalize_fingerprint(p))
        .collect();
    let anchors = c.trust_anchors.as_deref().map(|p| cfg.path(p));
    let tls =
        client_config(c.tls, anchors.as_deref(), &pins).map_err(|source| ConnectorError::Tls {
            name: c.name.clone(),
            source,
        })?;
    let connector = Connector {
        name: c.name.clone(),
        smart_host: c.smart_host.clone(),
        port: c.port_or(remote_port),
        implicit_tls: c.uses_implicit_tls(remote_port),
        level: c.tls,
        tls,
        credentials_file: c.credentials_file.as_deref().map(|p| cfg.path(p)),
    };
    connector
        .credentials()
        .map_err(|source| ConnectorError::Credentials {
            name: c.name.clone(),
            source,
        })?;
    Ok(connector)
}

/// One host to try, with its addresses in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The MX host or smart host name (for SNI and `verify`), or the address literal.
    pub name: String,
    /// The addresses of `name`, in the order to try them.
    pub addrs: Vec<IpAddr>,
}

/// Orders MX records (RFC 5321 §5.1): a lone "." is a null MX (RFC 7505 §3: the domain
/// accepts no mail); lower preference first, equal preferences shuffled to spread
/// load; if one of our own names is listed, it and every less preferred host are
/// dropped, so we never deliver to ourselves or to a backup that would send it back.
pub fn order_mx(
    mut records: Vec<(u16, String)>,
    own_names: &[String],
    rng: &mut impl rand::Rng,
) -> Result<Vec<String>, Outcome> {
    for r in &mut records {
        r.1 = r.1.trim_end_matches('.').to_ascii_lowercase();
    }
    if records.len() == 1 && records[0].1.is_empty() {
        return Err(Outcome::failed(
            Enhanced::new(5, 1, 10),
            "the recipient domain accepts no mail (null MX, RFC 7505)",
        ));
    }
    records.retain(|r| !r.1.is_empty());
    records.shuffle(rng);
    records.sort_by_key(|r| r.0);
    if let Some(own) = records
        .iter()
        .find(|r| own_names.iter().any(|n| n.eq_ignore_ascii_case(&r.1)))
        .map(|r| r.0)
    {
        records.retain(|r| r.0 < own);
        if records.is_empty() {
            return Err(Outcome::failed(
                Enhanced::new(5, 4, 6),
                "the recipient domain's MX is this server, which does not accept mail for it (mail loops back to myself)",
            ));
        }
    }
    let mut names: Vec<String> = Vec::new();
    for (_, n) in records {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    Ok(names)
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A/AAAA of a host (IPv4 first; servers without IPv6 fail those addresses at once).
/// `Ok(vec![])` when the name exists without addresses or does not exist.
async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = fqdn(host);
    let (v4, v6) = tokio::join!(
        resolver.ipv4_lookup(name.as_str()),
        resolver.ipv6_lookup(name.as_str())
    );
    let mut out = Vec::new();
    let mut errors = Vec::new();
    match v4 {
        Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })),
        Err(e) if e.is_no_records_found() => {}
        Err(e) => errors.push(e.to_string()),
    }
    match v6 {
        Ok(l) => out.extend(l.answers().iter().filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })),
        Err(e) if e.is_no_records_found() => {}
        Err(e) => errors.push(e.to_string()),
    }
    if out.is_empty() && !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(out)
}

/// The hosts for `domain` through `connector`, in the order to try them. Errors are
/// outcomes for every recipient of the domain: permanent when DNS says there is no
/// such mail domain, temporary when DNS could not answer.
pub async fn resolve(
    resolver: &TokioResolver,
    domain: &str,
    connector: &Connector,
    own_names: &[String],
) -> Result<Vec<Host>, Outcome> {
    if let Some(smart) = &connector.smart_host {
        return match addresses(resolver, smart).await {
            Ok(a) if !a.is_empty() => Ok(vec![Host {
                name: smart.clone(),
                addrs: a,
            }]),
            // A smart host that does not resolve is our configuration's problem:
            // keep the mail and retry rather than bounce it.
            Ok(_) => Err(Outcome::deferred(
                Enhanced::new(4, 4, 4),
                format!("smart host {smart} has no address"),
            )),
            Err(e) => Err(Outcome::deferred(
                Enhanced::new(4, 4, 3),
                format!("cannot resolve smart host {smart}: {e}"),
            )),
        };
    }
    // RFC 5321 §4.1.3: an address literal is delivered to directly.
    if let Some(lit) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        // The tag is case-insensitive (RFC 5321 §4.1.3 ABNF, RFC 5234 §2.3), as at intake.
        let ip = match lit.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => &lit[5..],
            _ => lit,
        };
        return match ip.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![Host {
                name: ip.to_string(),
                addrs: vec![ip],
            }]),
            Err(_) => Err(Outcome::failed(
                Enhanced::new(5, 1, 2),
                format!("{domain} is not a valid address literal"),
            )),
        };
    }
    let names = match resolver.mx_lookup(fqdn(domain).as_str()).await {
        Ok(l) => {
            let records: Vec<(u16, String)> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect();
            if records.is_empty() {
                vec![domain.to_string()]
            } else {
                order_mx(records, own_names, &mut rand::thread_rng())?
            }
        }
        Err(e) if e.is_nx_domain() => {
            return Err(Outcome::failed(
                Enhanced::new(5, 1, 2),
                format!("the domain {domain} does not exist (DNS NXDOMAIN)"),
            ))
        }
        // RFC 5321 §5.1: no MX records → the domain itself is the implicit MX.
        Err(e) if e.is_no_records_found() => vec![domain.to_string()],
        Err(e) => {
            return Err(Outcome::deferred(
                Enhanced::new(4, 4, 3),
                format!("MX lookup for {domain} failed: {e}"),
            ))
        }
    };
    let implicit = names.len() == 1 && names[0].eq_ignore_ascii_case(domain);
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match addresses(resolver, &n).await {
            Ok(a) if !a.is_empty() => hosts.push(Host { name: n, addrs: a }),
            Ok(_) => errors.push(format!("{n} has no address")),
            Err(e) => errors.push(format!("{n}: {e}")),
        }
    }
    if hosts.is_empty() {
        // No MX and no address: the domain has no mail server at all (RFC 5321 §5.1).
        if implicit && errors.iter().all(|e| e.ends_with("has no address")) {
            return Err(Outcome::failed(
                Enhanced::new(5, 1, 2),
                format!("the domain {domain} has no MX and no address record"),
            ));
        }
        return Err(Outcome::deferred(
            Enhanced::new(4, 4, 3),
            format!(
                "no address for the mail hosts of {domain}: {}",
                errors.join("; ")
            ),
        ));
    }
    Ok(hosts)
}

/// Bounds on where one delivery attempt may connect (`[outbound] mx_host_limit`,
/// `mx_address_limit`, `allow_private_destinations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many MX hosts are tried per attempt.
    pub mx_hosts: usize,
    /// At most this many addresses (over all hosts) are tried per attempt.
    pub addresses: usize,
    /// Whether loopback, private, link-local and CGNAT addresses found through DNS may be
    /// connected to (lab only: refused by default against SSRF).
    pub allow_private: bool,
}

impl Limits {
    /// The limits set in `[outbound]`, each at least 1.
    pub fn from_config(o: &bulwark_config::OutboundConfig) -> Limits {
        Limits {
            mx_hosts: o.mx_host_limit.max(1),
            addresses: o.mx_address_limit.max(1),
            allow_private: o.allow_private_destinations,
        }
    }
}

/// Addresses mail found through DNS (or in an address literal) must never be sent to
/// unless the administrator allows it: loopback, unspecified, RFC 1918 and RFC 4193
/// private, link-local, CGNAT (RFC 6598), broadcast and multicast. Anyone can publish
/// an MX pointing there, and would make us connect to internal services (SSRF).
pub fn is_private_destination(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_destination(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Applies `limits` to the hosts `resolve` found for `domain`: private destinations
/// are dropped unless allowed, then at most `mx_hosts` hosts and `addresses`
/// addresses over all of them are kept (Postfix's smtp_mx_session_limit and
/// smtp_mx_address_limit), so one message cannot fan out into dozens of connections.
/// A connector's smart host is the administrator's choice and is exempt.
pub fn limit(
    hosts: Vec<Host>,
    domain: &str,
    connector: &Connector,
    limits: &Limits,
) -> Result<Vec<Host>, Outcome> {
    if connector.smart_host.is_some() {
        return Ok(hosts);
    }
    let mut refused: Vec<String> = Vec::new();
    let mut left = limits.addresses;
    let mut out = Vec::new();
    for mut h in hosts {
        if out.len() == limits.mx_hosts || left == 0 {
            break;
        }
        if !limits.allow_private {
            h.addrs.retain(|a| {
                let private = is_private_destination(*a);
                if private {
                    refused.push(format!("{} ({a})", h.name));
                }
                !private
            });
        }
        h.addrs.truncate(left);
        if h.addrs.is_empty() {
            continue;
        }
        left -= h.addrs.len();
        out.push(h);
    }
    if !refused.is_empty() {
        tracing::warn!(target: "bulwark::queue", %domain, refused = %refused.join(", "), "not delivering to private or loopback addresses ([outbound] allow_private_destinations = false)");
    }
    if out.is_empty() {
        return Err(Outcome::failed(
            Enhanced::new(5, 4, 4),
            format!(
                "the mail hosts of {domain} resolve only to loopback or private addresses ({}), which this server does not deliver to",
                refused.join(", ")
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_dns::testing::TestDns;
    use rand::SeedableRng;

    fn mx(v: &[(u16, &str)]) -> Vec<(u16, String)> {
        v.iter().map(|(p, n)| (*p, n.to_string())).collect()
    }

    #[test]
    fn mx_order_preference_randomised_null_and_self() {
        let own = vec!["mail.example.test".to_string()];
        let mut seen_first = std::collections::HashSet::new();
        for seed in 0..50 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let o = order_mx(
                mx(&[
                    (20, "c.test."),
                    (10, "a.test."),
                    (10, "b.test."),
                    (30, "d.test."),
                ]),
                &own,
                &mut rng,
            )
            .unwrap();
            assert_eq!(o.len(), 4);
            assert_eq!(&o[2..], &["c.test".to_string(), "d.test".to_string()]);
            seen_first.insert(o[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");

        let mut rng = rand::thread_rng();
        let e = order_mx(mx(&[(0, ".")]), &own, &mut rng).unwrap_err();
        assert_eq!(e.status.to_string(), "5.1.10");
        // We are a backup MX: only more preferred hosts remain.
        let o = order_mx(
            mx(&[
                (10, "primary.test"),
                (20, "MAIL.example.test."),
                (30, "other.test"),
            ]),
            &own,
            &mut rng,
        )
        .unwrap();
        assert_eq!(o, vec!["primary.test".to_string()]);
        let e = order_mx(mx(&[(10, "mail.example.test")]), &own, &mut rng).unwrap_err();
        assert_eq!(e.status.to_string(), "5.4.6");
    }

    fn loaded(toml: &str) -> LoadedConfig {
        let config = bulwark_config::Config::parse(
            &format!("[server]\nhostname = \"mail.example.test\"\n{toml}"),
            "t",
        )
        .unwrap();
        LoadedConfig {
            dir: "/nonexistent".into(),
            file: "/nonexistent/bulwark.toml".into(),
            config,
        }
    }

    #[test]
    fn most_specific_connector_wins() {
        let cfg = loaded(
            r#"
[[outbound.connector]]
name = "everything"
address_space = ["*"]
smart_host = "relay.example.net"
[[outbound.connector]]
name = "partner-subs"
address_space = ["*.partner.test"]
tls = "required"
[[outbound.connector]]
name = "partner"
address_space = ["partner.test", "*.deep.partner.test"]
tls = "required"
port = 465
"#,
        );
        let c = Connectors::from_config(&cfg).unwrap();
        assert_eq!(c.select("partner.test").name, "partner");
        assert_eq!(c.select("PARTNER.test.").name, "partner");
        assert_eq!(c.select("mx.partner.test").name, "partner-subs");
        assert_eq!(c.select("a.deep.partner.test").name, "partner");
        assert_eq!(c.select("xpartner.test").name, "everything");
        let p = c.select("partner.test");
        assert!(p.implicit_tls && p.port == 465);
        assert_eq!(
            c.select("x.test").destination_key("x.test"),
            "everything:relay.example.net"
        );

        let none = Connectors::from_config(&loaded("")).unwrap();
        let d = none.select("x.test");
        assert_eq!(
            (d.name.as_str(), d.level, d.port),
            ("default", TlsLevel::Opportunistic, 25)
        );
        assert_eq!(d.destination_key("x.test"), "x.test");
    }

    #[test]
    fn unreadable_credentials_stop_the_start() {
        let cfg = loaded(
            r#"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "relay.example.net"
tls = "required"
credentials_file = "missing"
"#,
        );
        let e = Connectors::from_config(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("connector \"relay\"") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn resolves_mx_fallback_null_mx_and_failures() {
        let dns = TestDns::start().await;
        dns.add_mx("two.test", 20, "mx2.two.test");
        dns.add_mx("two.test", 10, "mx1.two.test");
        dns.add_a("mx1.two.test", "127.0.0.1".parse().unwrap());
        dns.add_a("mx1.two.test", "127.0.0.2".parse().unwrap());
        dns.add_aaaa("mx2.two.test", "::1".parse().unwrap());
        dns.add_a("plain.test", "127.0.0.3".parse().unwrap());
        dns.add_mx("null.test", 0, ".");
        dns.add_txt("nomail.test", "v=spf1 -all");
        dns.add_mx("dangling.test", 10, "nowhere.dangling.test");
        dns.servfail("broken.test");
        let r = bulwark_dns::resolver(&dns.config()).unwrap();
        let cfg = loaded("");
        let c = Connectors::from_config(&cfg).unwrap();
        let d = c.select("x");
        let own = vec!["mail.example.test".to_string()];

        let h = resolve(&r, "two.test", &d, &own).await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name, "mx1.two.test");
        assert_eq!(h[0].addrs.len(), 2, "every address of every MX");
        assert_eq!(h[1].addrs, vec!["::1".parse::<IpAddr>().unwrap()]);

        let h = resolve(&r, "plain.test", &d, &own).await.unwrap();
        assert_eq!(h[0].name, "plain.test", "no MX: the domain is its own MX");

        let e = resolve(&r, "null.test", &d, &own).await.unwrap_err();
        assert_eq!(
            (e.verdict, e.status.to_string().as_str()),
            (crate::outcome::Verdict::Failed, "5.1.10")
        );
        let e = resolve(&r, "missing.test", &d, &own).await.unwrap_err();
        assert_eq!(e.status.to_string(), "5.1.2");
        let e = resolve(&r, "nomail.test", &d, &own).await.unwrap_err();
        assert_eq!(e.status.to_string(), "5.1.2");
        let e = resolve(&r, "dangling.test", &d, &own).await.unwrap_err();
        assert_eq!(e.verdict, crate::outcome::Verdict::Deferred);
        let e = resolve(&r, "broken.test", &d, &own).await.unwrap_err();
        assert_eq!(e.verdict, crate::outcome::Verdict::Deferred);
        let h = resolve(&r, "[127.0.0.9]", &d, &own).await.unwrap();
        assert_eq!(h[0].addrs, vec!["127.0.0.9".parse::<IpAddr>().unwrap()]);
        for lit in ["[IPv6:::1]", "[ipv6:::1]", "[IPV6:::1]"] {
            let h = resolve(&r, lit, &d, &own).await.unwrap();
            assert_eq!(h[0].addrs, vec!["::1".parse::<IpAddr>().unwrap()], "{lit}");
        }
    }

    fn host(name: &str, addrs: &[&str]) -> Host {
        Host {
            name: name.into(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn private_destinations_are_refused_and_fan_out_is_capped() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private_destination(a.parse().unwrap()), "{a}");
        }
        for a in [
            "192.0.2.25",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::25",
            "::ffff:192.0.2.1",
        ] {
            assert!(!is_private_destination(a.parse().unwrap()), "{a}");
        }
        let cfg = loaded("");
        let c = Connectors::from_config(&cfg).unwrap();
        let mx = c.select("x");
        let strict = Limits::from_config(&cfg.config.outbound);
        assert_eq!(
            strict,
            Limits {
                mx_hosts: 2,
                addresses: 5,
                allow_private: false
            }
        );
        // An MX at 169.254.169.254 (cloud metadata) is never connected to.
        let e = limit(
            vec![host("mx.evil.test", &["169.254.169.254", "127.0.0.1"])],
            "evil.test",
            &mx,
            &strict,
        )
        .unwrap_err();
        assert_eq!(
            (e.verdict, e.status.to_string().as_str()),
            (crate::outcome::Verdict::Failed, "5.4.4")
        );
        assert!(
            e.text.contains("mx.evil.test (169.254.169.254)"),
            "{}",
            e.text
        );
        // Private addresses are dropped, public ones kept; hosts and addresses capped.
        let many = vec![
            host("a", &["10.0.0.1", "192.0.2.1", "192.0.2.2"]),
            host("b", &["192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"]),
            host("c", &["192.0.2.7"]),
        ];
        let h = limit(many.clone(), "many.test", &mx, &strict).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].addrs.len() + h[1].addrs.len(), 5);
        assert_eq!(h[1].addrs.len(), 3);
        let lab = Limits {
            allow_private: true,
            ..strict
        };
        let h = limit(many, "many.test", &mx, &lab).unwrap();
        assert_eq!(h[0].addrs[0], "10.0.0.1".parse::<IpAddr>().unwrap());
        // A smart host is the administrator's choice: exempt.
        let cfg = loaded(
            "[[outbound.connector]]\nname = \"r\"\naddress_space = [\"*\"]\nsmart_host = \"127.0.0.1\"\n",
        );
        let c = Connectors::from_config(&cfg).unwrap();
        let h = limit(
            vec![host("127.0.0.1", &["127.0.0.1"])],
            "x.test",
            &c.select("x.test"),
            &strict,
        )
        .unwrap();
        assert_eq!(h.len(), 1);
    }
}
