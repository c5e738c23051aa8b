//! `[outbound]`: the delivery queue and outbound connectors (SPEC §4).
//!
//! Data paths: Bulwark → Internet server (MX delivery, port 25, STARTTLS tried on every
//! connection) and Bulwark → smart host (an `[[outbound.connector]]` with `smart_host`,
//! port 25/587/465, TLS required whenever credentials are configured).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[outbound]`: the queue, delivery limits and timeouts, and the connectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// How long a message may wait in the queue before it bounces, in seconds (5 days).
    #[serde(default = "default_lifetime")]
    pub max_queue_lifetime_secs: u64,
    /// When the sender is told their message is delayed, in seconds (4 hours).
    #[serde(default = "default_delay_notice")]
    pub delay_notice_after_secs: u64,
    /// The name sent in EHLO; `None` means `[server] hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo_name: Option<String>,
    /// Deliveries (SMTP connections) in progress at once, over all destinations.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_deliveries: usize,
    /// Deliveries in progress at once to one destination domain (or one smart host),
    /// so a big queue for one domain cannot starve the others or flood that domain.
    /// 20 is Postfix's `default_destination_concurrency_limit`, which receiving
    /// servers are used to; each delivery waits for its own fsyncs, so fewer
    /// connections cap the throughput to a smart host.
    #[serde(default = "default_max_per_domain")]
    pub max_concurrent_per_domain: usize,
    /// First retry after a temporary failure, in seconds; doubles per attempt…
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    /// …up to this interval, in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// TCP connect timeout per address, in seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Wait for the greeting and each reply, in seconds (RFC 5321 §4.5.3.2: 5 minutes).
    #[serde(default = "default_command_timeout")]
    pub command_timeout_secs: u64,
    /// Wait for the reply to the end of the message data, in seconds (RFC 5321
    /// §4.5.3.2.6: 10 minutes).
    #[serde(default = "default_data_timeout")]
    pub data_timeout_secs: u64,
    /// How long a worker holds a claimed queue entry without renewing it, in seconds.
    /// A crashed server's entries become deliverable again this long after the crash.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// How often the queue is scanned for due entries besides the wake-ups a new
    /// message causes, in seconds (entries queued by another process, retries).
    #[serde(default = "default_scan_interval")]
    pub scan_interval_secs: u64,
    /// TCP port of remote MX hosts. Always 25 on the Internet; only tests and labs
    /// running receivers on unprivileged ports change it.
    #[serde(default = "default_remote_port")]
    pub remote_port: u16,
    /// Writes every outbound SMTP command and reply to `[log] dir`/outbound.log
    /// (AUTH payloads redacted, like every protocol log).
    #[serde(default)]
    pub protocol_log: bool,
    /// At most this many MX hosts are tried per delivery attempt (like Postfix's
    /// `smtp_mx_session_limit`): a domain listing many hosts cannot make one message
    /// fan out into many connections.
    #[serde(default = "default_mx_host_limit")]
    pub mx_host_limit: usize,
    /// At most this many IP addresses are tried per delivery attempt, over all hosts
    /// (like Postfix's `smtp_mx_address_limit`).
    #[serde(default = "default_mx_address_limit")]
    pub mx_address_limit: usize,
    /// LAB ONLY. By default mail is never delivered to loopback, private (RFC 1918,
    /// RFC 4193), link-local, CGNAT or unspecified addresses found through DNS or in an
    /// address literal: otherwise anyone who can send us mail for a domain whose MX
    /// points at 127.0.0.1 or 10.x makes this server connect to internal services
    /// (SSRF). Configured smart hosts are exempt (they are the administrator's choice).
    /// Tests on loopback set this to true.
    #[serde(default)]
    pub allow_private_destinations: bool,
    /// Connectors: how mail for an address space leaves. Mail for domains no connector
    /// matches goes to their MX hosts with opportunistic TLS.
    #[serde(default, rename = "connector", skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<ConnectorConfig>,
}

/// `[[outbound.connector]]`: the route and security for mail to an address space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// A name for logs and `queue show`.
    pub name: String,
    /// Recipient domains this connector serves: `partner.example` (exactly that
    /// domain), `*.partner.example` (its subdomains, any depth), `*` (everything). For a
    /// recipient, the most specific matching entry over all connectors wins.
    pub address_space: Vec<String>,
    /// Send everything to this host (name or IP address) instead of the recipient
    /// domain's MX hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_host: Option<String>,
    /// TCP port (25, 587, or 465 with implicit TLS). Default: `remote_port` (25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// TLS from the first byte instead of STARTTLS. Default: true exactly for port 465.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implicit_tls: Option<bool>,
    /// How much TLS the connection must have; see `TlsLevel`.
    #[serde(default)]
    pub tls: TlsLevel,
    /// For `tls = "pinned"`: SHA-256 fingerprints (hex, colons allowed) of the peer's
    /// certificate or of its public key (SPKI). One must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_pins: Vec<String>,
    /// For `tls = "verify"`: PEM file of CA certificates to trust instead of the
    /// system's trust store (e.g. a partner's private CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_anchors: Option<PathBuf>,
    /// File (mode 0600) with the SASL user name on the first line and the password on
    /// the second. Sent with AUTH PLAIN or LOGIN, and only over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
}

/// Outbound TLS levels, weakest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsLevel {
    /// STARTTLS whenever the server offers it (certificate not checked: RFC 7435
    /// opportunistic security); cleartext only when STARTTLS is not offered.
    #[default]
    Opportunistic,
    /// Never send in cleartext: no STARTTLS or a failed handshake defers the message.
    Required,
    /// As `required`, and the certificate must chain to a trust anchor and name the
    /// MX host / smart host.
    Verify,
    /// As `required`, and the peer's certificate or public key must have one of the
    /// configured SHA-256 fingerprints (direct trust).
    Pinned,
}

impl TlsLevel {
    /// The value as written in the file (`"opportunistic"`, …).
    pub fn name(self) -> &'static str {
        match self {
            TlsLevel::Opportunistic => "opportunistic",
            TlsLevel::Required => "required",
            TlsLevel::Verify => "verify",
            TlsLevel::Pinned => "pinned",
        }
    }
    /// True when the connection may never continue in cleartext.
    pub fn requires_tls(self) -> bool {
        self != TlsLevel::Opportunistic
    }
}

impl ConnectorConfig {
    /// The TCP port to connect to, given `[outbound] remote_port`.
    pub fn port_or(&self, remote_port: u16) -> u16 {
        self.port.unwrap_or(remote_port)
    }
    /// Whether TLS starts with the first byte (port 465 unless set explicitly).
    pub fn uses_implicit_tls(&self, remote_port: u16) -> bool {
        self.implicit_tls
            .unwrap_or(self.port_or(remote_port) == 465)
    }
}

/// Normalises a SHA-256 fingerprint as written by administrators (`AB:CD:…` or
/// `abcd…`) to 64 lowercase hex digits; `None` when it is not one.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// True for `*`, `*.domain` and `domain` with a valid host name.
fn valid_address_space(s: &str) -> bool {
    s == "*"
        || s.strip_prefix("*.")
            .map_or_else(|| crate::is_valid_hostname(s), crate::is_valid_hostname)
}

fn default_lifetime() -> u64 {
    5 * 24 * 3600
}
fn default_delay_notice() -> u64 {
    4 * 3600
}
fn default_max_concurrent() -> usize {
    32
}
fn default_max_per_domain() -> usize {
    20
}
fn default_retry_initial() -> u64 {
    60
}
fn default_retry_max() -> u64 {
    3600
}
fn default_connect_timeout() -> u64 {
    30
}
fn default_command_timeout() -> u64 {
    300
}
fn default_data_timeout() -> u64 {
    600
}
fn default_lease() -> u64 {
    120
}
fn default_scan_interval() -> u64 {
    5
}
fn default_remote_port() -> u16 {
    25
}
fn default_mx_host_limit() -> usize {
    2
}
fn default_mx_address_limit() -> usize {
    5
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            max_queue_lifetime_secs: default_lifetime(),
            delay_notice_after_secs: default_delay_notice(),
            helo_name: None,
            max_concurrent_deliveries: default_max_concurrent(),
            max_concurrent_per_domain: default_max_per_domain(),
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
            connect_timeout_secs: default_connect_timeout(),
            command_timeout_secs: default_command_timeout(),
            data_timeout_secs: default_data_timeout(),
            lease_secs: default_lease(),
            scan_interval_secs: default_scan_interval(),
            remote_port: default_remote_port(),
            protocol_log: false,
            mx_host_limit: default_mx_host_limit(),
            mx_address_limit: default_mx_address_limit(),
            allow_private_destinations: false,
            connectors: Vec::new(),
        }
    }
}

impl OutboundConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.max_queue_lifetime_secs == 0 {
            issues.push(Issue::new(
                "outbound.max_queue_lifetime_secs",
                "0 would bounce every message that is not delivered at the first attempt",
                "use 432000 (5 days, RFC 5321 §4.5.4.1 suggests at least 4-5 days)",
            ));
        }
        if let Some(h) = &self.helo_name {
            if !crate::is_valid_hostname(h) {
                issues.push(Issue::new(
                    "outbound.helo_name",
                    format!("{h:?} is not a host name (RFC 5321 §4.1.1.1 wants our FQDN)"),
                    "remove it to use [server] hostname, or set a fully qualified name",
                ));
            }
        }
        if self.max_concurrent_deliveries == 0 {
            issues.push(Issue::new(
                "outbound.max_concurrent_deliveries",
                "0 would never deliver anything",
                "use 32 (the default) or another positive number",
            ));
        }
        if self.max_concurrent_per_domain == 0 {
            issues.push(Issue::new(
                "outbound.max_concurrent_per_domain",
                "0 would never deliver anything",
                "use 4 (the default) or another positive number",
            ));
        }
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            issues.push(Issue::new(
                "outbound.retry_initial_secs",
                "the first retry must be at least 1 second and not above retry_max_secs",
                "use retry_initial_secs = 60 and retry_max_secs = 3600",
            ));
        }
        for (key, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("command_timeout_secs", self.command_timeout_secs),
            ("data_timeout_secs", self.data_timeout_secs),
            ("scan_interval_secs", self.scan_interval_secs),
        ] {
            if v == 0 {
                issues.push(Issue::new(
                    format!("outbound.{key}"),
                    "0 seconds is not a usable interval",
                    "remove the line to use the default",
                ));
            }
        }
        if self.mx_host_limit == 0 || self.mx_address_limit == 0 {
            issues.push(Issue::new(
                "outbound.mx_host_limit",
                "mx_host_limit and mx_address_limit must be at least 1, or nothing is ever tried",
                "use mx_host_limit = 2 and mx_address_limit = 5 (the defaults)",
            ));
        }
        if self.lease_secs < 3 {
            issues.push(Issue::new(
                "outbound.lease_secs",
                "a lease shorter than 3 seconds cannot be renewed in time",
                "use 120 (the default)",
            ));
        }
        if self.remote_port == 0 {
            issues.push(Issue::new(
                "outbound.remote_port",
                "port 0 cannot be connected to",
                "use 25 (the only port MX hosts listen on)",
            ));
        }
        let mut seen_names = std::collections::HashSet::new();
        let mut seen_spaces = std::collections::HashMap::new();
        for (i, c) in self.connectors.iter().enumerate() {
            c.validate(i, self.remote_port, issues);
            if !seen_names.insert(c.name.to_ascii_lowercase()) {
                issues.push(Issue::new(
                    format!("outbound.connector[{i}].name"),
                    format!("two connectors are named {:?}", c.name),
                    "give every connector its own name",
                ));
            }
            for s in &c.address_space {
                if let Some(other) = seen_spaces.insert(s.to_ascii_lowercase(), c.name.clone()) {
                    if other != c.name {
                        issues.push(Issue::new(
                            format!("outbound.connector[{i}].address_space"),
                            format!("{s:?} is also served by connector {other:?}: which one applies would be ambiguous"),
                            "list each address space in one connector only",
                        ));
                    }
                }
            }
        }
    }
}

impl ConnectorConfig {
    fn validate(&self, i: usize, remote_port: u16, issues: &mut Vec<Issue>) {
        let key = |k: &str| format!("outbound.connector[{i}].{k}");
        if self.name.trim().is_empty() {
            issues.push(Issue::new(
                key("name"),
                "a connector needs a name",
                "add name = \"partner\" (used in logs and `bulwark queue show`)",
            ));
        }
        if self.address_space.is_empty() {
            issues.push(Issue::new(
                key("address_space"),
                "the connector serves no address space",
                "add address_space = [\"partner.example\", \"*.partner.example\"] (or [\"*\"] for everything)",
            ));
        }
        for s in &self.address_space {
            if !valid_address_space(s) {
                issues.push(Issue::new(
                    key("address_space"),
                    format!("{s:?} is not a domain, *.domain or *"),
                    "write e.g. \"partner.example\", \"*.partner.example\" or \"*\"",
                ));
            }
        }
        if let Some(h) = &self.smart_host {
            if h.parse::<std::net::IpAddr>().is_err() && !crate::is_valid_hostname(h) {
                issues.push(Issue::new(
                    key("smart_host"),
                    format!("{h:?} is neither a host name nor an IP address"),
                    "write e.g. smart_host = \"relay.provider.example\"",
                ));
            }
        }
        if self.port == Some(0) {
            issues.push(Issue::new(
                key("port"),
                "port 0 cannot be connected to",
                "use 25, 587 (STARTTLS) or 465 (implicit TLS)",
            ));
        }
        if self.tls == TlsLevel::Pinned {
            if self.tls_pins.is_empty() {
                issues.push(Issue::new(
                    key("tls_pins"),
                    "tls = \"pinned\" without any fingerprint would refuse every server",
                    "add tls_pins = [\"<sha256 of the partner's certificate or public key>\"] (`bulwark cert show` prints ours; `openssl x509 -noout -fingerprint -sha256` prints theirs)",
                ));
            }
        } else if !self.tls_pins.is_empty() {
            issues.push(Issue::new(
                key("tls_pins"),
                format!(
                    "fingerprints are only checked with tls = \"pinned\", not {:?}",
                    self.tls.name()
                ),
                "set tls = \"pinned\" or remove tls_pins",
            ));
        }
        for p in &self.tls_pins {
            if normalize_fingerprint(p).is_none() {
                issues.push(Issue::new(
                    key("tls_pins"),
                    format!("{p:?} is not a SHA-256 fingerprint (64 hex digits)"),
                    "copy the fingerprint printed by `openssl x509 -noout -fingerprint -sha256`",
                ));
            }
        }
        if self.trust_anchors.is_some() && self.tls != TlsLevel::Verify {
            issues.push(Issue::new(
                key("trust_anchors"),
                "trust anchors are only used with tls = \"verify\"",
                "set tls = \"verify\" or remove trust_anchors",
            ));
        }
        // Credentials belong to one provider: without a smart host the connector
        // delivers to each recipient domain's MX, and the provider's password would go
        // to every one of them — including a domain an attacker controls.
        if self.credentials_file.is_some() && self.smart_host.is_none() {
            issues.push(Issue::new(
                key("credentials_file"),
                "a connector with credentials but no smart_host would send the provider's password to every recipient domain's MX host (anyone can own a recipient domain)",
                "set smart_host = \"<the provider's submission host>\" on this connector, or remove credentials_file",
            ));
        }
        // DATA-PATHS rule 1: no credentials without TLS.
        if self.credentials_file.is_some() && !self.tls.requires_tls() {
            issues.push(Issue::new(
                key("tls"),
                "a connector with credentials must never send them in cleartext, but tls = \"opportunistic\" allows a cleartext session",
                "set tls = \"required\" (or \"verify\" / \"pinned\") on this connector",
            ));
        }
        if self.uses_implicit_tls(remote_port) && self.port_or(remote_port) == 25 {
            issues.push(Issue::new(
                key("implicit_tls"),
                "port 25 speaks STARTTLS, not implicit TLS",
                "use port = 465 for implicit TLS, or remove implicit_tls",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            &format!("[server]\nhostname = \"mail.example.test\"\n{extra}"),
            "t.toml",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn connectors_parse_with_defaults() {
        let c = parse(
            r#"
[outbound]
remote_port = 2525
[[outbound.connector]]
name = "partner"
address_space = ["partner.test", "*.partner.test"]
tls = "pinned"
tls_pins = ["AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"]
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "relay.example.net"
port = 465
tls = "verify"
credentials_file = "secrets/relay"
"#,
        )
        .unwrap();
        let o = &c.outbound;
        assert_eq!(o.connectors.len(), 2);
        assert_eq!(o.connectors[0].tls, super::TlsLevel::Pinned);
        assert_eq!(o.connectors[0].port_or(o.remote_port), 2525);
        assert!(!o.connectors[0].uses_implicit_tls(o.remote_port));
        assert!(o.connectors[1].uses_implicit_tls(o.remote_port));
        assert_eq!(
            super::normalize_fingerprint(&o.connectors[0].tls_pins[0]).unwrap(),
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        );
    }

    #[test]
    fn credentials_need_required_tls() {
        let err = parse(
            r#"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "relay.example.net"
port = 587
credentials_file = "secrets/relay"
"#,
        )
        .unwrap_err();
        assert!(err.contains("outbound.connector[0].tls"), "{err}");
        assert!(err.contains("cleartext"), "{err}");
        assert!(err.contains("fix: set tls = \"required\""), "{err}");
    }

    #[test]
    fn credentials_need_a_smart_host() {
        // Without smart_host the connector delivers to each recipient's MX: the
        // provider's password would go to whoever runs the recipient domain.
        let err = parse(
            r#"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
tls = "verify"
credentials_file = "secrets/relay"
"#,
        )
        .unwrap_err();
        assert!(
            err.contains("outbound.connector[0].credentials_file"),
            "{err}"
        );
        assert!(err.contains("every recipient domain's MX"), "{err}");
        assert!(err.contains("fix: set smart_host"), "{err}");
    }

    #[test]
    fn fan_out_limits_and_the_private_destination_guard_default_safe() {
        let c = parse("").unwrap();
        assert_eq!(
            (c.outbound.mx_host_limit, c.outbound.mx_address_limit),
            (2, 5)
        );
        assert!(!c.outbound.allow_private_destinations);
        let err = parse("[outbound]\nmx_address_limit = 0\n").unwrap_err();
        assert!(err.contains("outbound.mx_host_limit"), "{err}");
    }

    #[test]
    fn bad_connectors_are_explained() {
        let err = parse(
            r#"
[[outbound.connector]]
name = "a"
address_space = ["partner.test", "bad name", "*.*.x"]
tls = "pinned"
[[outbound.connector]]
name = "b"
address_space = ["partner.test"]
tls_pins = ["zz"]
trust_anchors = "ca.pem"
"#,
        )
        .unwrap_err();
        for needle in [
            "\"bad name\" is not a domain",
            "\"*.*.x\" is not a domain",
            "without any fingerprint",
            "only checked with tls = \"pinned\"",
            "\"zz\" is not a SHA-256 fingerprint",
            "trust anchors are only used",
            "also served by connector \"a\"",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    #[test]
    fn limits_are_checked() {
        let err = parse(
            "[outbound]\nmax_concurrent_deliveries = 0\nretry_initial_secs = 10\nretry_max_secs = 5\nlease_secs = 1\nremote_port = 0\nhelo_name = \"bad name\"\n",
        )
        .unwrap_err();
        for needle in [
            "outbound.max_concurrent_deliveries",
            "outbound.retry_initial_secs",
            "outbound.lease_secs",
            "outbound.remote_port",
            "outbound.helo_name",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }
}
