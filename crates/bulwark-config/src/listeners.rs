//! `[listeners.*]`: every port Bulwark accepts connections on.
//!
//! The kind of a listener fixes its protocol and how TLS is used on it (implicit or
//! STARTTLS); the file only chooses addresses and per-listener limits. That way a
//! misconfiguration cannot turn an implicit-TLS port into a cleartext one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Issue;

/// Which protocol a listener speaks, and therefore its TLS mode and standard port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// SMTP receiving from the Internet, port 25 (STARTTLS).
    Smtp,
    /// Message submission, port 587 (STARTTLS, RFC 6409).
    Submission,
    /// Message submission over implicit TLS, port 465 (RFC 8314).
    Submissions,
    /// IMAP, port 143 (STARTTLS).
    Imap,
    /// IMAP over implicit TLS, port 993.
    Imaps,
    /// POP3, port 110 (STLS).
    Pop3,
    /// POP3 over implicit TLS, port 995.
    Pop3s,
    /// HTTP, port 80 (not served yet; will only redirect to HTTPS).
    Http,
    /// HTTPS, port 443 (not served yet).
    Https,
    /// The Prometheus scrape endpoint, port 9425, loopback by default.
    Metrics,
}

/// How TLS is used on a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Cleartext greeting, upgrade with STARTTLS/STLS; credentials only after it.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// No TLS: only for the HTTP redirect and for metrics on loopback.
    None,
}

impl ListenerKind {
    /// Every listener kind, each once.
    pub const ALL: [ListenerKind; 10] = [
        ListenerKind::Smtp,
        ListenerKind::Submission,
        ListenerKind::Submissions,
        ListenerKind::Imap,
        ListenerKind::Imaps,
        ListenerKind::Pop3,
        ListenerKind::Pop3s,
        ListenerKind::Http,
        ListenerKind::Https,
        ListenerKind::Metrics,
    ];

    /// The name used in the config file, logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Smtp => "smtp",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
            ListenerKind::Imap => "imap",
            ListenerKind::Imaps => "imaps",
            ListenerKind::Pop3 => "pop3",
            ListenerKind::Pop3s => "pop3s",
            ListenerKind::Http => "http",
            ListenerKind::Https => "https",
            ListenerKind::Metrics => "metrics",
        }
    }

    /// The IANA port (RFC 8314 for the implicit-TLS ones). Metrics has none; 9425 is ours.
    pub fn standard_port(self) -> u16 {
        match self {
            ListenerKind::Smtp => 25,
            ListenerKind::Submission => 587,
            ListenerKind::Submissions => 465,
            ListenerKind::Imap => 143,
            ListenerKind::Imaps => 993,
            ListenerKind::Pop3 => 110,
            ListenerKind::Pop3s => 995,
            ListenerKind::Http => 80,
            ListenerKind::Https => 443,
            ListenerKind::Metrics => 9425,
        }
    }

    /// How TLS is used on this kind of listener; fixed, not configurable.
    pub fn tls_mode(self) -> TlsMode {
        match self {
            ListenerKind::Smtp
            | ListenerKind::Submission
            | ListenerKind::Imap
            | ListenerKind::Pop3 => TlsMode::Starttls,
            ListenerKind::Submissions
            | ListenerKind::Imaps
            | ListenerKind::Pop3s
            | ListenerKind::Https => TlsMode::Implicit,
            // Metrics is served over HTTPS when bound beyond loopback (see MetricsConfig).
            ListenerKind::Http | ListenerKind::Metrics => TlsMode::None,
        }
    }

    /// Listeners that carry user credentials.
    pub fn carries_credentials(self) -> bool {
        !matches!(
            self,
            ListenerKind::Smtp | ListenerKind::Http | ListenerKind::Metrics
        )
    }
}

impl std::fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One listener's addresses and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Set to false to not open this port at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Addresses to bind. Port 0 lets the OS choose; the chosen ports are written to
    /// `DIR/run/listeners.json` when the server starts.
    pub bind: Vec<SocketAddr>,
    /// Write the protocol log (one line per command and reply, secrets redacted) for
    /// this listener to `[log] dir`.
    #[serde(default)]
    pub protocol_log: bool,
    /// Load balancers / reverse proxies allowed to send a PROXY protocol header (v1 or
    /// v2). Connections from anywhere else are never parsed for one.
    #[serde(default)]
    pub proxy_protocol_from: Vec<IpNet>,
    /// Concurrent connections on this listener; beyond it new ones are refused with
    /// the protocol's "try later" reply.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Concurrent connections from one IP address (one /64 for IPv6).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: u32,
}

fn yes() -> bool {
    true
}
fn default_max_connections() -> u32 {
    10_000
}
fn default_max_connections_per_ip() -> u32 {
    50
}

impl ListenerConfig {
    /// An enabled listener on `bind` with the default limits, no PROXY header and no
    /// protocol log.
    pub fn new(bind: Vec<SocketAddr>) -> Self {
        ListenerConfig {
            enabled: true,
            bind,
            protocol_log: false,
            proxy_protocol_from: Vec::new(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
        }
    }
}

/// Every listener. Missing tables take the standard port on all addresses (metrics:
/// loopback only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// `[listeners.smtp]`: port 25.
    #[serde(default = "smtp")]
    pub smtp: ListenerConfig,
    /// `[listeners.submission]`: port 587.
    #[serde(default = "submission")]
    pub submission: ListenerConfig,
    /// `[listeners.submissions]`: port 465.
    #[serde(default = "submissions")]
    pub submissions: ListenerConfig,
    /// `[listeners.imap]`: port 143.
    #[serde(default = "imap")]
    pub imap: ListenerConfig,
    /// `[listeners.imaps]`: port 993.
    #[serde(default = "imaps")]
    pub imaps: ListenerConfig,
    /// `[listeners.pop3]`: port 110.
    #[serde(default = "pop3")]
    pub pop3: ListenerConfig,
    /// `[listeners.pop3s]`: port 995.
    #[serde(default = "pop3s")]
    pub pop3s: ListenerConfig,
    /// `[listeners.http]`: port 80 (not served yet).
    #[serde(default = "http")]
    pub http: ListenerConfig,
    /// `[listeners.https]`: port 443 (not served yet).
    #[serde(default = "https")]
    pub https: ListenerConfig,
    /// `[listeners.metrics]`: port 9425, loopback by default.
    #[serde(default = "metrics")]
    pub metrics: ListenerConfig,
}

/// The default bind of a listener kind: all addresses on the standard port, except
/// metrics which stays on loopback (DATA-PATHS: "loopback only by default").
pub fn default_bind(kind: ListenerKind, listen: Option<IpAddr>, port_base: u16) -> Vec<SocketAddr> {
    let port = port_base.saturating_add(kind.standard_port());
    match (kind, listen) {
        // `--listen` with a public address moves the mail listeners; metrics stays on
        // loopback (beyond it, it would need a bearer token init cannot invent).
        (ListenerKind::Metrics, Some(ip)) if !ip.is_loopback() => {
            let lo = match ip {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            };
            vec![SocketAddr::new(lo, port)]
        }
        (_, Some(ip)) => vec![SocketAddr::new(ip, port)],
        (ListenerKind::Metrics, None) => {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]
        }
        (_, None) => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)],
    }
}

fn std_listener(kind: ListenerKind) -> ListenerConfig {
    ListenerConfig::new(default_bind(kind, None, 0))
}
fn smtp() -> ListenerConfig {
    std_listener(ListenerKind::Smtp)
}
fn submission() -> ListenerConfig {
    std_listener(ListenerKind::Submission)
}
fn submissions() -> ListenerConfig {
    std_listener(ListenerKind::Submissions)
}
fn imap() -> ListenerConfig {
    std_listener(ListenerKind::Imap)
}
fn imaps() -> ListenerConfig {
    std_listener(ListenerKind::Imaps)
}
fn pop3() -> ListenerConfig {
    std_listener(ListenerKind::Pop3)
}
fn pop3s() -> ListenerConfig {
    std_listener(ListenerKind::Pop3s)
}
fn http() -> ListenerConfig {
    std_listener(ListenerKind::Http)
}
fn https() -> ListenerConfig {
    std_listener(ListenerKind::Https)
}
fn metrics() -> ListenerConfig {
    std_listener(ListenerKind::Metrics)
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            smtp: smtp(),
            submission: submission(),
            submissions: submissions(),
            imap: imap(),
            imaps: imaps(),
            pop3: pop3(),
            pop3s: pop3s(),
            http: http(),
            https: https(),
            metrics: metrics(),
        }
    }
}

impl Listeners {
    /// The listener of `kind`.
    pub fn get(&self, kind: ListenerKind) -> &ListenerConfig {
        match kind {
            ListenerKind::Smtp => &self.smtp,
            ListenerKind::Submission => &self.submission,
            ListenerKind::Submissions => &self.submissions,
            ListenerKind::Imap => &self.imap,
            ListenerKind::Imaps => &self.imaps,
            ListenerKind::Pop3 => &self.pop3,
            ListenerKind::Pop3s => &self.pop3s,
            ListenerKind::Http => &self.http,
            ListenerKind::Https => &self.https,
            ListenerKind::Metrics => &self.metrics,
        }
    }

    /// The listener of `kind`, to change.
    pub fn get_mut(&mut self, kind: ListenerKind) -> &mut ListenerConfig {
        match kind {
            ListenerKind::Smtp => &mut self.smtp,
            ListenerKind::Submission => &mut self.submission,
            ListenerKind::Submissions => &mut self.submissions,
            ListenerKind::Imap => &mut self.imap,
            ListenerKind::Imaps => &mut self.imaps,
            ListenerKind::Pop3 => &mut self.pop3,
            ListenerKind::Pop3s => &mut self.pop3s,
            ListenerKind::Http => &mut self.http,
            ListenerKind::Https => &mut self.https,
            ListenerKind::Metrics => &mut self.metrics,
        }
    }

    /// Every listener with its kind, in the order of the data-path table.
    pub fn iter(&self) -> impl Iterator<Item = (ListenerKind, &ListenerConfig)> {
        ListenerKind::ALL.into_iter().map(move |k| (k, self.get(k)))
    }

    /// Listeners for `--listen ADDR --port-base N`.
    pub fn with_bind(listen: Option<IpAddr>, port_base: u16) -> Listeners {
        let mut l = Listeners::default();
        for kind in ListenerKind::ALL {
            l.get_mut(kind).bind = default_bind(kind, listen, port_base);
        }
        l
    }

    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        let mut seen: Vec<(SocketAddr, ListenerKind)> = Vec::new();
        for (kind, l) in self.iter() {
            let key = format!("listeners.{}", kind.name());
            if l.enabled && l.bind.is_empty() {
                issues.push(Issue::new(
                    format!("{key}.bind"),
                    "the listener is enabled but has no address",
                    format!(
                        "add an address such as [\"0.0.0.0:{}\"], or set enabled = false",
                        kind.standard_port()
                    ),
                ));
            }
            if l.max_connections == 0 || l.max_connections_per_ip == 0 {
                issues.push(Issue::new(
                    format!("{key}.max_connections"),
                    "a connection limit of 0 would refuse every client",
                    "use a positive number, or set enabled = false to close the port",
                ));
            }
            if !l.enabled {
                continue;
            }
            for addr in &l.bind {
                if addr.port() == 0 {
                    continue;
                }
                if let Some((_, other)) = seen.iter().find(|(a, _)| a == addr) {
                    issues.push(Issue::new(
                        format!("{key}.bind"),
                        format!("{addr} is also used by listeners.{other}"),
                        "give each listener its own port",
                    ));
                }
                seen.push((*addr, kind));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_base_offsets_every_listener() {
        let l = Listeners::with_bind(Some("127.0.0.1".parse().unwrap()), 10000);
        assert_eq!(l.smtp.bind, vec!["127.0.0.1:10025".parse().unwrap()]);
        assert_eq!(l.imaps.bind, vec!["127.0.0.1:10993".parse().unwrap()]);
        assert_eq!(l.https.bind, vec!["127.0.0.1:10443".parse().unwrap()]);
    }

    #[test]
    fn metrics_defaults_to_loopback() {
        let l = Listeners::default();
        assert!(l.metrics.bind.iter().all(|a| a.ip().is_loopback()));
        assert!(l.smtp.bind.iter().all(|a| a.ip().is_unspecified()));
    }

    #[test]
    fn metrics_stays_on_loopback_with_a_public_listen_address() {
        let l = Listeners::with_bind(Some("192.0.2.10".parse().unwrap()), 0);
        assert_eq!(l.smtp.bind, vec!["192.0.2.10:25".parse().unwrap()]);
        assert_eq!(l.metrics.bind, vec!["127.0.0.1:9425".parse().unwrap()]);
        let l = Listeners::with_bind(Some("::".parse().unwrap()), 0);
        assert_eq!(l.metrics.bind, vec!["[::1]:9425".parse().unwrap()]);
    }

    #[test]
    fn duplicate_ports_are_reported() {
        let mut l = Listeners::default();
        l.imap.bind = l.smtp.bind.clone();
        let mut issues = Vec::new();
        l.validate(&mut issues);
        assert_eq!(issues.len(), 1);
        assert!(issues[0].problem.contains("listeners.smtp"));
    }

    #[test]
    fn implicit_tls_kinds() {
        assert_eq!(ListenerKind::Submissions.tls_mode(), TlsMode::Implicit);
        assert_eq!(ListenerKind::Imap.tls_mode(), TlsMode::Starttls);
    }
}
