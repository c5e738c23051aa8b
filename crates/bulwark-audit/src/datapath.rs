//! The data-path table of DATA-PATHS.md, computed from the live configuration (and,
//! when the server runs, the addresses it actually bound).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use bulwark_config::{
    metrics_exposed, Config, ListenerConfig, ListenerKind, LoadedConfig, Requirement, TlsVersion,
};
use serde::Serialize;

use crate::probe::ListenerProbe;
use crate::runstate::{availability, Availability, RunState};
use crate::table::Table;

/// The columns of DATA-PATHS.md, in order.
pub const COLUMNS: [&str; 6] = [
    "data path",
    "port",
    "default authentication",
    "supported authentication",
    "encryption supported",
    "encrypted by default",
];

/// One row: a way data enters or leaves Bulwark.
#[derive(Debug, Clone, Serialize)]
pub struct DataPath {
    /// Who talks to whom, e.g. "Mail client → Bulwark (submission)".
    pub data_path: String,
    /// Ports (e.g. "587/TCP", "closed (enabled = false)"), or "local files" for the CLI.
    pub port: String,
    /// What a peer must present by default.
    pub default_authentication: String,
    /// Every authentication the path accepts.
    pub supported_authentication: String,
    /// How the path can be encrypted (STARTTLS, implicit TLS) and which versions.
    pub encryption_supported: String,
    /// Whether encryption is on without the peer asking, and how strictly.
    pub encrypted_by_default: String,
    /// `listener`, `accept-policy`, `proxy`, `delivery`, `connector`, `admin`, `dns`.
    pub category: &'static str,
    /// The listener behind the row (listener, accept-policy and proxy rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerKind>,
    /// Configured bind addresses, or the addresses actually bound when the server runs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<SocketAddr>,
    /// `listening`, `not running`, `disabled`, `not served` (this version never opens
    /// it), or `configured` for paths that are not listeners.
    pub state: String,
    /// With `--probe`: what the running listener offered, next to what is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ListenerProbe>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `[server] hostname`.
    pub hostname: String,
    /// The configuration file the report was computed from.
    pub config_file: String,
    /// True when `DIR/run/listeners.json` belongs to a live server.
    pub server_running: bool,
    /// Every data path: listeners first, then policies, proxies, delivery, local.
    pub data_paths: Vec<DataPath>,
}

fn tls_versions(min: TlsVersion) -> &'static str {
    match min {
        TlsVersion::V1_2 => "TLS 1.2/1.3",
        TlsVersion::V1_3 => "TLS 1.3",
    }
}

/// "25/TCP", "10025/TCP on 127.0.0.1", "OS-chosen", or "closed (enabled = false)".
fn port_cell(lc: &ListenerConfig, addrs: &[SocketAddr], running: bool) -> String {
    if !lc.enabled {
        return "closed (enabled = false)".into();
    }
    let ports: BTreeSet<u16> = addrs.iter().map(SocketAddr::port).collect();
    let ports: Vec<String> = ports
        .iter()
        .map(|p| {
            if *p == 0 && !running {
                "OS-chosen".to_string()
            } else {
                format!("{p}/TCP")
            }
        })
        .collect();
    let mut cell = ports.join(", ");
    let ips: BTreeSet<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_unspecified())
        .map(|a| a.ip().to_string())
        .collect();
    if !ips.is_empty() {
        cell.push_str(" on ");
        cell.push_str(&ips.into_iter().collect::<Vec<_>>().join(", "));
    }
    cell
}

struct Texts {
    path: &'static str,
    default_auth: &'static str,
    supported_auth: &'static str,
    encryption: String,
    by_default: String,
}

/// DATA-PATHS.md's words for a listener kind, with this configuration's TLS versions
/// and per-host policies filled in.
fn listener_texts(kind: ListenerKind, cfg: &LoadedConfig) -> Texts {
    let c = &cfg.config;
    let v = tls_versions(c.tls.min_version);
    match kind {
        ListenerKind::Smtp => {
            let tls_nets = c
                .smtp
                .accept_policy
                .iter()
                .filter(|p| p.require.needs_tls())
                .count();
            Texts {
                path: "Internet server → Bulwark (SMTP receive)",
                default_auth: "anonymous",
                supported_auth: if c.smtp.accept_policy.iter().any(|p| p.require.needs_auth()) {
                    "anonymous; SASL PLAIN, LOGIN after STARTTLS where a per-host policy requires auth"
                } else {
                    "anonymous"
                },
                encryption: format!("STARTTLS, {v}"),
                by_default: if tls_nets > 0 {
                    format!(
                        "offered on every session; required by per-host policy for {tls_nets} network(s)"
                    )
                } else {
                    "offered on every session; required by per-host policy (none configured)".into()
                },
            }
        }
        ListenerKind::Submission => Texts {
            path: "Mail client → Bulwark (submission)",
            default_auth: "SASL after STARTTLS",
            supported_auth: "PLAIN, LOGIN",
            encryption: format!("STARTTLS, {v}"),
            by_default: "yes — AUTH and MAIL refused before TLS".into(),
        },
        ListenerKind::Submissions => Texts {
            path: "Mail client → Bulwark (submission, implicit TLS)",
            default_auth: "SASL",
            supported_auth: "PLAIN, LOGIN",
            encryption: format!("TLS from the first byte, {v}"),
            by_default: "yes".into(),
        },
        ListenerKind::Imap => Texts {
            path: "IMAP client → Bulwark",
            default_auth: "none until STARTTLS (LOGINDISABLED)",
            supported_auth: "LOGIN, AUTHENTICATE PLAIN",
            encryption: format!("STARTTLS, {v}"),
            by_default: "yes — no login before TLS".into(),
        },
        ListenerKind::Imaps => Texts {
            path: "IMAP client → Bulwark (implicit TLS)",
            default_auth: "LOGIN / AUTHENTICATE",
            supported_auth: "LOGIN, AUTHENTICATE PLAIN",
            encryption: format!("TLS, {v}"),
            by_default: "yes".into(),
        },
        ListenerKind::Pop3 => Texts {
            path: "POP3 client → Bulwark",
            default_auth: "none until STLS",
            supported_auth: "USER/PASS, AUTH PLAIN",
            encryption: format!("STLS, {v}"),
            by_default: "yes — no login before TLS".into(),
        },
        ListenerKind::Pop3s => Texts {
            path: "POP3 client → Bulwark (implicit TLS)",
            default_auth: "USER/PASS, AUTH",
            supported_auth: "USER/PASS, AUTH PLAIN",
            encryption: format!("TLS, {v}"),
            by_default: "yes".into(),
        },
        // Not served by this version (see `runstate::availability`): `build` shows
        // these rows as "not served"; the words below are what they will promise.
        ListenerKind::Http => Texts {
            path: "Browser → Bulwark (HTTP, redirect only)",
            default_auth: "—",
            supported_auth: "—",
            encryption: "none (redirects to HTTPS)".into(),
            by_default: http_redirect_text(c),
        },
        ListenerKind::Https => Texts {
            path: "Browser → web mail and JSON API",
            default_auth: "forms-based login, session cookie with idle timeout",
            supported_auth: "forms; API bearer tokens",
            encryption: format!("HTTPS, {v}"),
            by_default: "yes".into(),
        },
        ListenerKind::Metrics => {
            if metrics_exposed(&c.listeners.metrics) {
                Texts {
                    path: "Scraper → metrics",
                    default_auth: "bearer token",
                    supported_auth: "bearer token",
                    encryption: format!("HTTPS, {v}"),
                    by_default: "yes — bound beyond loopback: HTTPS and token required".into(),
                }
            } else {
                Texts {
                    path: "Scraper → metrics",
                    default_auth: "none on loopback",
                    supported_auth: "bearer token when not loopback",
                    encryption: "HTTPS when not loopback".into(),
                    by_default: "loopback only".into(),
                }
            }
        }
    }
}

/// "port 80 only redirects to 443", with the ports actually configured.
fn http_redirect_text(c: &bulwark_config::Config) -> String {
    let ports = |lc: &ListenerConfig| -> String {
        let set: BTreeSet<u16> = lc.bind.iter().map(SocketAddr::port).collect();
        let list: Vec<String> = set
            .iter()
            .map(|p| {
                if *p == 0 {
                    "an OS-chosen port".to_string()
                } else {
                    p.to_string()
                }
            })
            .collect();
        list.join(", ")
    };
    format!(
        "port {} only redirects to {}",
        ports(&c.listeners.http),
        ports(&c.listeners.https)
    )
}

/// The row of a path this version does not serve: its name and configured port, and
/// "not served" where a served path would say what protects it.
fn not_served_row(
    path: &str,
    port: String,
    kind: ListenerKind,
    addrs: Vec<SocketAddr>,
) -> DataPath {
    DataPath {
        data_path: path.to_string(),
        port,
        default_authentication: "—".into(),
        supported_authentication: "—".into(),
        encryption_supported: "—".into(),
        encrypted_by_default: NOT_SERVED.into(),
        category: "listener",
        listener: Some(kind),
        addresses: addrs,
        state: NOT_SERVED.into(),
        probe: None,
    }
}

/// The state and the "encrypted by default" cell of a path this version never opens.
pub const NOT_SERVED: &str = "not served";

fn requirement_text(r: Requirement) -> (&'static str, &'static str) {
    match r {
        Requirement::Any => ("anonymous", "optional (require = \"any\")"),
        Requirement::Tls => ("anonymous, after STARTTLS", "required (require = \"tls\")"),
        Requirement::Auth => (
            "SASL after STARTTLS (required)",
            "required (require = \"auth\")",
        ),
        Requirement::AuthTls => (
            "SASL after STARTTLS (required)",
            "required (require = \"auth+tls\")",
        ),
    }
}

/// Builds the table from the configuration (and the server's run state, if it runs).
pub fn build(cfg: &LoadedConfig, run: Option<&RunState>) -> Report {
    let c = &cfg.config;
    let mut rows = Vec::new();
    listener_rows(cfg, run, &mut rows);
    proxy_rows(c, &mut rows);
    outbound_rows(c, &mut rows);
    local_rows(c, &mut rows);
    Report {
        hostname: c.server.hostname.clone(),
        config_file: cfg.file.display().to_string(),
        server_running: run.is_some(),
        data_paths: rows,
    }
}

/// One row per listener (what it serves, or why not), with the per-host policy
/// rows after the SMTP listener.
fn listener_rows(cfg: &LoadedConfig, run: Option<&RunState>, rows: &mut Vec<DataPath>) {
    let c = &cfg.config;
    for (kind, lc) in c.listeners.iter() {
        let running = run.and_then(|r| r.listener(kind));
        let addrs = running.map_or_else(|| lc.bind.clone(), |r| r.addrs.clone());
        let t = listener_texts(kind, cfg);
        let port = port_cell(lc, &addrs, running.is_some());
        if availability(kind) != Availability::Served {
            rows.push(not_served_row(t.path, port, kind, addrs));
            continue;
        }
        let state = if !lc.enabled {
            "disabled".to_string()
        } else if running.is_some() {
            "listening".to_string()
        } else if let Some(s) = run.and_then(|r| r.skipped(kind)) {
            s.reason.clone()
        } else if run.is_some() {
            "not running".to_string()
        } else {
            "enabled (server not running)".to_string()
        };
        rows.push(DataPath {
            data_path: t.path.to_string(),
            port,
            default_authentication: t.default_auth.to_string(),
            supported_authentication: t.supported_auth.to_string(),
            encryption_supported: t.encryption,
            encrypted_by_default: t.by_default,
            category: "listener",
            listener: Some(kind),
            addresses: addrs,
            state,
            probe: None,
        });
        if kind == ListenerKind::Smtp && lc.enabled {
            let port = rows.last().map(|r| r.port.clone()).unwrap_or_default();
            accept_policy_rows(c, port, rows);
        }
    }
}

/// One row per served listener that accepts PROXY headers, naming the networks.
fn proxy_rows(c: &Config, rows: &mut Vec<DataPath>) {
    for (kind, lc) in c.listeners.iter() {
        if !lc.enabled
            || lc.proxy_protocol_from.is_empty()
            || availability(kind) != Availability::Served
        {
            continue;
        }
        let nets: Vec<String> = lc
            .proxy_protocol_from
            .iter()
            .map(|n| n.to_string())
            .collect();
        rows.push(DataPath {
            data_path: format!(
                "Load balancer / reverse proxy in {} → Bulwark ({kind})",
                nets.join(", ")
            ),
            port: rows
                .iter()
                .find(|r| r.category == "listener" && r.listener == Some(kind))
                .map(|r| r.port.clone())
                .unwrap_or_default(),
            default_authentication: format!(
                "PROXY protocol accepted only from {}",
                nets.join(", ")
            ),
            supported_authentication: "—".into(),
            encryption_supported: "as the listener".into(),
            encrypted_by_default: "as the listener".into(),
            category: "proxy",
            listener: Some(kind),
            addresses: Vec::new(),
            state: "configured".into(),
            probe: None,
        });
    }
}

/// Delivery to MX hosts, then one row per `[[outbound.connector]]`.
fn outbound_rows(c: &Config, rows: &mut Vec<DataPath>) {
    rows.push(DataPath {
        data_path: "Bulwark → Internet server (delivery)".into(),
        port: format!("{}/TCP", c.outbound.remote_port),
        default_authentication: "anonymous".into(),
        supported_authentication: "SASL per outbound connector".into(),
        encryption_supported: "STARTTLS".into(),
        encrypted_by_default: "tried on every connection (opportunistic)".into(),
        category: "delivery",
        listener: None,
        addresses: Vec::new(),
        state: "configured".into(),
        probe: None,
    });
    // One row per [[outbound.connector]]: where mail for its address space goes and
    // what protects it.
    for k in &c.outbound.connectors {
        use bulwark_config::TlsLevel;
        let implicit = k.uses_implicit_tls(c.outbound.remote_port);
        let target = match &k.smart_host {
            Some(h) => format!("smart host {h}"),
            None => "MX hosts".to_string(),
        };
        let level = match k.tls {
            TlsLevel::Opportunistic if implicit => "yes (implicit TLS, certificate not checked)",
            TlsLevel::Opportunistic => "tried on every connection (opportunistic)",
            TlsLevel::Required => "required (certificate not checked)",
            TlsLevel::Verify => "required; certificate chain and name verified",
            TlsLevel::Pinned => "required; certificate pinned (SHA-256)",
        };
        rows.push(DataPath {
            data_path: format!(
                "Bulwark → {target} (connector {}: {})",
                k.name,
                k.address_space.join(", ")
            ),
            port: format!("{}/TCP", k.port_or(c.outbound.remote_port)),
            default_authentication: if k.credentials_file.is_some() {
                "SASL PLAIN/LOGIN (credentials file), after TLS".into()
            } else {
                "anonymous".into()
            },
            supported_authentication: "PLAIN, LOGIN".into(),
            encryption_supported: if implicit {
                "implicit TLS, TLS 1.2/1.3".into()
            } else {
                "STARTTLS, TLS 1.2/1.3".into()
            },
            encrypted_by_default: level.into(),
            category: "connector",
            listener: None,
            addresses: Vec::new(),
            state: "configured".into(),
            probe: None,
        });
    }
}

/// The local paths: the administrator's CLI and files, and the DNS resolver.
fn local_rows(c: &Config, rows: &mut Vec<DataPath>) {
    rows.push(DataPath {
        data_path: "Administrator → CLI / store".into(),
        port: "local files".into(),
        default_authentication: "file-system permissions (0600/0700)".into(),
        supported_authentication: "—".into(),
        // Say what is true: the store is protected by file permissions only; Bulwark
        // does not encrypt data at rest (a disk's own encryption is the place for it).
        encryption_supported: "none at rest (use the disk's encryption)".into(),
        encrypted_by_default: "no".into(),
        category: "admin",
        listener: None,
        addresses: Vec::new(),
        state: "configured".into(),
        probe: None,
    });
    let dns_port = if c.dns.resolvers.is_empty() {
        "53 (resolvers from /etc/resolv.conf)".to_string()
    } else {
        let list: Vec<String> = c.dns.resolvers.iter().map(|a| a.to_string()).collect();
        list.join(", ")
    };
    rows.push(DataPath {
        data_path: "Bulwark → DNS resolver".into(),
        port: dns_port,
        default_authentication: "—".into(),
        supported_authentication: "—".into(),
        // Plain DNS (hickory over UDP/TCP); answers are not DNSSEC-validated.
        encryption_supported: "none (plain DNS, no DNSSEC validation)".into(),
        encrypted_by_default: "no".into(),
        category: "dns",
        listener: None,
        addresses: c.dns.resolvers.clone(),
        state: "configured".into(),
        probe: None,
    });
}

/// One row per `[[smtp.accept_policy]]`, on the port of the SMTP listener.
fn accept_policy_rows(c: &Config, port: String, rows: &mut Vec<DataPath>) {
    let v = tls_versions(c.tls.min_version);
    for p in &c.smtp.accept_policy {
        let (auth, by_default) = requirement_text(p.require);
        rows.push(DataPath {
            data_path: format!(
                "Internet server in {} → Bulwark (per-host policy)",
                p.network
            ),
            port: port.clone(),
            default_authentication: auth.to_string(),
            supported_authentication: if p.require.needs_auth() {
                "PLAIN, LOGIN".into()
            } else {
                "anonymous".into()
            },
            encryption_supported: format!("STARTTLS, {v}"),
            encrypted_by_default: by_default.to_string(),
            category: "accept-policy",
            listener: Some(ListenerKind::Smtp),
            addresses: Vec::new(),
            state: "configured".into(),
            probe: None,
        });
    }
}

impl Report {
    fn table(&self) -> Table {
        let mut t = Table::new(&COLUMNS);
        for r in &self.data_paths {
            let mut path = r.data_path.clone();
            if self.server_running
                && r.category == "listener"
                && r.state != "listening"
                && r.state != "disabled"
                && r.state != NOT_SERVED
            {
                path.push_str(&format!(" [{}]", r.state));
            }
            t.push(vec![
                path,
                r.port.clone(),
                r.default_authentication.clone(),
                r.supported_authentication.clone(),
                r.encryption_supported.clone(),
                r.encrypted_by_default.clone(),
            ]);
        }
        t
    }

    fn probe_table(&self) -> Option<Table> {
        let probes: Vec<&ListenerProbe> = self
            .data_paths
            .iter()
            .filter_map(|r| r.probe.as_ref())
            .collect();
        if probes.is_empty() {
            return None;
        }
        let mut t = Table::new(&[
            "listener",
            "address",
            "configured",
            "observed",
            "differences",
        ]);
        for p in probes {
            t.push(vec![
                p.listener.name().to_string(),
                p.address.map_or_else(|| "—".into(), |a| a.to_string()),
                p.configured.clone(),
                p.observed_summary(),
                if p.differences.is_empty() {
                    "none".into()
                } else {
                    p.differences
                        .iter()
                        .map(|d| format!("{} [{}]", d.text, d.finding))
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ]);
        }
        Some(t)
    }

    fn differences(&self) -> usize {
        self.data_paths
            .iter()
            .filter_map(|r| r.probe.as_ref())
            .map(|p| p.differences.len())
            .sum()
    }

    /// Aligned text: the data-path table, then (with `--probe`) observed vs configured.
    pub fn text(&self) -> String {
        let mut out = format!(
            "Data paths of {} ({}{})\n\n",
            self.hostname,
            self.config_file,
            if self.server_running {
                ", server running"
            } else {
                ", server not running"
            }
        );
        out.push_str(&self.table().text());
        if let Some(t) = self.probe_table() {
            out.push_str("\nProbed on this machine (observed vs configured):\n\n");
            out.push_str(&t.text());
            out.push_str(&format!("\n{} difference(s)\n", self.differences()));
        }
        out
    }

    /// The data-path table alone, in Markdown (DATA-PATHS.md embeds it).
    pub fn markdown_table(&self) -> String {
        self.table().markdown()
    }

    /// The whole report in Markdown: the table and, after a probe, the comparison.
    pub fn markdown(&self) -> String {
        let mut out = format!("## Data paths of {}\n\n", self.hostname);
        out.push_str(&self.table().markdown());
        if let Some(t) = self.probe_table() {
            out.push_str("\n### Probed (observed vs configured)\n\n");
            out.push_str(&t.markdown());
            out.push_str(&format!("\n{} difference(s)\n", self.differences()));
        }
        out
    }

    /// The whole report as JSON (`report --json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod connector_rows {
    use super::*;

    #[test]
    fn every_connector_is_a_data_path_row() {
        let config = bulwark_config::Config::parse(
            r#"[server]
hostname = "mail.example.test"
[[outbound.connector]]
name = "relay"
address_space = ["*"]
smart_host = "smtp.provider.example"
port = 465
tls = "verify"
credentials_file = "secrets/relay"
[[outbound.connector]]
name = "partner"
address_space = ["partner.example"]
tls = "pinned"
tls_pins = ["0000000000000000000000000000000000000000000000000000000000000000"]
"#,
            "t",
        )
        .unwrap();
        let cfg = LoadedConfig {
            dir: "/nonexistent".into(),
            file: "/nonexistent/bulwark.toml".into(),
            config,
        };
        let r = build(&cfg, None);
        let rows: Vec<&DataPath> = r
            .data_paths
            .iter()
            .filter(|d| d.category == "connector")
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(rows[0]
            .data_path
            .contains("smart host smtp.provider.example"));
        assert_eq!(rows[0].port, "465/TCP");
        assert!(rows[0].default_authentication.contains("after TLS"));
        assert!(rows[0].encryption_supported.starts_with("implicit TLS"));
        assert!(rows[0].encrypted_by_default.contains("verified"));
        assert_eq!(rows[1].port, "25/TCP");
        assert!(rows[1].encrypted_by_default.contains("pinned"));
        assert_eq!(rows[1].default_authentication, "anonymous");
    }
}

#[cfg(test)]
mod served_rows {
    use super::*;

    fn loaded(text: &str) -> LoadedConfig {
        LoadedConfig {
            dir: "/nonexistent".into(),
            file: "/nonexistent/bulwark.toml".into(),
            config: bulwark_config::Config::parse(text, "t").unwrap(),
        }
    }

    #[test]
    fn paths_serve_does_not_open_say_not_served() {
        let cfg = loaded("[server]\nhostname = \"mail.example.test\"\n");
        let r = build(&cfg, None);
        for row in r.data_paths.iter().filter(|d| d.category == "listener") {
            let kind = row.listener.unwrap();
            match availability(kind) {
                Availability::Served => {
                    assert_ne!(row.state, NOT_SERVED, "{row:?}");
                    assert_ne!(row.encrypted_by_default, NOT_SERVED, "{row:?}");
                }
                Availability::NotServed(_) => {
                    assert_eq!(row.state, NOT_SERVED, "{row:?}");
                    assert_eq!(row.encrypted_by_default, NOT_SERVED, "{row:?}");
                    assert_eq!(row.default_authentication, "—", "{row:?}");
                }
            }
        }
        let https = r
            .data_paths
            .iter()
            .find(|d| d.listener == Some(ListenerKind::Https))
            .unwrap();
        assert_eq!(https.encrypted_by_default, NOT_SERVED);
        for row in &r.data_paths {
            assert!(
                !row.encryption_supported.contains("not in this version")
                    && !row.encryption_supported.contains("later"),
                "{row:?}"
            );
        }
    }

    #[test]
    fn the_redirect_names_the_configured_ports() {
        let cfg = loaded(
            "[server]\nhostname = \"mail.example.test\"\n\
             [listeners.http]\nbind = [\"127.0.0.1:10080\"]\n\
             [listeners.https]\nbind = [\"127.0.0.1:10443\"]\n",
        );
        let t = listener_texts(ListenerKind::Http, &cfg);
        assert_eq!(t.by_default, "port 10080 only redirects to 10443");
        let cfg = loaded("[server]\nhostname = \"mail.example.test\"\n");
        let t = listener_texts(ListenerKind::Http, &cfg);
        assert_eq!(t.by_default, "port 80 only redirects to 443");
    }
}

#[cfg(test)]
mod build_steps {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(
            &format!("[server]\nhostname = \"mail.example.test\"\n{text}"),
            "t",
        )
        .unwrap()
    }

    #[test]
    fn accept_policy_rows_carry_the_port_and_requirement() {
        let c = config("[[smtp.accept_policy]]\nnetwork = \"192.0.2.0/24\"\nrequire = \"tls\"\n");
        let mut rows = Vec::new();
        accept_policy_rows(&c, "25/TCP".into(), &mut rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].port, "25/TCP");
        assert_eq!(rows[0].category, "accept-policy");
        assert_eq!(rows[0].listener, Some(ListenerKind::Smtp));
        assert!(
            rows[0].data_path.contains("192.0.2.0/24"),
            "{}",
            rows[0].data_path
        );
        assert_eq!(rows[0].supported_authentication, "anonymous");
    }

    #[test]
    fn proxy_rows_only_for_enabled_listeners_with_proxies() {
        let mut rows = Vec::new();
        proxy_rows(&config(""), &mut rows);
        assert!(rows.is_empty());
        let c = config(
            "[listeners.imaps]\nbind = [\"0.0.0.0:993\"]\nproxy_protocol_from = [\"10.0.0.5/32\"]\n\
             [listeners.pop3s]\nenabled = false\nbind = [\"0.0.0.0:995\"]\nproxy_protocol_from = [\"10.0.0.5/32\"]\n",
        );
        proxy_rows(&c, &mut rows);
        let kinds: Vec<_> = rows.iter().map(|r| (r.category, r.listener)).collect();
        assert_eq!(kinds, [("proxy", Some(ListenerKind::Imaps))]);
    }

    #[test]
    fn outbound_and_local_rows_end_the_table() {
        let c = config("[dns]\nresolvers = [\"192.0.2.53:53\"]\n");
        let mut rows = Vec::new();
        outbound_rows(&c, &mut rows);
        local_rows(&c, &mut rows);
        let cats: Vec<_> = rows.iter().map(|r| r.category).collect();
        assert_eq!(cats, ["delivery", "admin", "dns"]);
        assert_eq!(rows[2].port, "192.0.2.53:53");
    }
}
