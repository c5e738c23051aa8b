//! Checks on the configuration, the certificate and the files, without the network.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bulwark_config::{metrics_exposed, Config, Issue, ListenerKind, LoadedConfig, TlsMode};
use bulwark_observe::{redact, Redactor};
use bulwark_tls::CertInfo;

use crate::finding::{Finding, Severity};
use crate::probe::ListenerProbe;

/// Where Debian keeps the system's trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Enabled listeners that present the certificate, with their non-loopback addresses
/// (empty when only on loopback).
fn tls_listeners(cfg: &LoadedConfig) -> Vec<(ListenerKind, Vec<SocketAddr>)> {
    let c = &cfg.config;
    c.listeners
        .iter()
        .filter(|(k, l)| {
            l.enabled
                && (k.tls_mode() != TlsMode::None
                    || (*k == ListenerKind::Metrics && metrics_exposed(l)))
        })
        .map(|(k, l)| {
            (
                k,
                l.bind
                    .iter()
                    .filter(|a| !a.ip().is_loopback())
                    .copied()
                    .collect(),
            )
        })
        .collect()
}

/// The listeners reachable beyond loopback that present the certificate, as text.
fn facing(cfg: &LoadedConfig) -> Vec<String> {
    tls_listeners(cfg)
        .into_iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(k, _)| k.to_string())
        .collect()
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Files in `dir` (not recursive) whose mode gives group or others any access.
fn open_files_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?.permissions().mode() & 0o777;
            (m & 0o077 != 0).then(|| format!("{} ({m:o})", e.path().display()))
        })
        .collect();
    out.sort();
    out
}

fn config_issue_finding(i: &Issue) -> Finding {
    Finding::new(
        "config-invalid",
        Severity::High,
        i.key.clone(),
        i.problem.clone(),
        "`bulwark serve` and `bulwark config check` refuse this configuration: the server will not start (or restart) with it",
        i.fix.clone(),
    )
}

/// Everything checkable from the files alone. `issues` are the configuration's
/// validation problems (the audit reads files the server would refuse).
pub fn check_config(cfg: &LoadedConfig, issues: &[Issue], now: i64, roots: &Path) -> Vec<Finding> {
    let mut f = Vec::new();
    let c = &cfg.config;
    // Issues that have their own, more precise finding below.
    let own_finding = |i: &Issue| {
        i.key == "metrics.bearer_token"
            || (i.key.starts_with("outbound.connector") && i.problem.contains("credentials"))
    };
    for i in issues.iter().filter(|i| !own_finding(i)) {
        f.push(config_issue_finding(i));
    }
    check_certificate(cfg, now, roots, &mut f);
    check_permissions(cfg, &mut f);
    check_metrics(c, &mut f);
    check_internal_servers(c, &mut f);
    check_proxy_protocol(c, &mut f);
    check_connectors(cfg, &mut f);
    check_auth_limits(c, &mut f);
    check_protocol_logs(c, &mut f);
    f
}

/// The metrics listener beyond loopback: without a strong token, or exposed at all.
fn check_metrics(c: &Config, f: &mut Vec<Finding>) {
    // Metrics (DATA-PATHS: loopback only by default; beyond it HTTPS and a token).
    let m = &c.listeners.metrics;
    if metrics_exposed(m) {
        let addrs: Vec<String> = m.bind.iter().map(|a| a.to_string()).collect();
        if c.metrics
            .bearer_token
            .as_deref()
            .is_none_or(|t| t.len() < 16)
        {
            f.push(Finding::new(
                "metrics-no-token",
                Severity::Critical,
                format!("listeners.metrics ({})", addrs.join(", ")),
                "the metrics listener is bound beyond loopback without a bearer token of at least 16 characters",
                "anyone who can reach the port reads traffic volumes, account activity and failure counts; the server refuses to start this way",
                "set [metrics] bearer_token = \"<random>\" (e.g. `openssl rand -hex 24`), or bind listeners.metrics to [\"127.0.0.1:9425\"]",
            ));
        } else {
            f.push(Finding::new(
                "metrics-exposed",
                Severity::Low,
                format!("listeners.metrics ({})", addrs.join(", ")),
                "metrics are served beyond loopback (HTTPS and bearer token required)",
                "the token is the only barrier; a leaked token shows operational data to anyone who can reach the port",
                "restrict the port to your scrapers with a firewall, or bind listeners.metrics to loopback and scrape through a local agent",
            ));
        }
    }
}

/// Internal servers: delivering without TLS, or trusted networks too wide.
fn check_internal_servers(c: &Config, f: &mut Vec<Finding>) {
    // Per-host policy for internal servers (DATA-PATHS: edge → internal relay is
    // mutual TLS; at the very least TLS).
    for net in &c.senderauth.internal_servers {
        let req = c.smtp.requirement_for(net.network());
        let weaker: Vec<String> = c
            .smtp
            .accept_policy
            .iter()
            .filter(|p| {
                !p.require.needs_tls()
                    && (net.contains(&p.network.network()) || p.network.contains(&net.network()))
            })
            .map(|p| p.network.to_string())
            .collect();
        if !req.needs_tls() || !weaker.is_empty() {
            let found = if weaker.is_empty() {
                format!("internal servers {net} may deliver on port 25 without TLS (no [[smtp.accept_policy]] requires it)")
            } else {
                format!("internal servers {net} are covered by accept_policy network(s) {} with require = \"any\"", weaker.join(", "))
            };
            f.push(Finding::new(
                "accept-policy-internal-weak",
                Severity::High,
                format!("senderauth.internal_servers {net}"),
                found,
                "mail from internal servers is trusted (their Received headers decide the sender checks); without TLS anyone on the path can read or inject it",
                format!("add [[smtp.accept_policy]] with network = \"{net}\" and require = \"tls\" (and remove weaker entries for it)"),
            ));
        }
    }

    // Internal servers are trusted as our own relays: no SPF for them, their Received
    // headers decide the sender checks, and they may send as local users on port 25.
    // A wide or public network there hands that trust to strangers.
    for net in &c.senderauth.internal_servers {
        if let Some((severity, what)) = internal_network_breadth(net) {
            f.push(Finding::new(
                "internal-servers-too-broad",
                severity,
                "senderauth.internal_servers".to_string(),
                format!("internal servers include {net} ({what})"),
                "hosts there are trusted as your own relays: SPF is not checked for them, their Received headers decide the sender checks, and they may send as your local users on port 25",
                "list only your edge gateways and relays, as /32 (IPv4) or /128 (IPv6) addresses or the smallest networks that hold them",
            ));
        }
    }
}

/// PROXY headers accepted from networks too wide to be load balancers.
fn check_proxy_protocol(c: &Config, f: &mut Vec<Finding>) {
    // PROXY protocol from a huge network lets anyone there claim any client address.
    for (kind, l) in c.listeners.iter().filter(|(_, l)| l.enabled) {
        for n in &l.proxy_protocol_from {
            let broad = match n {
                ipnet::IpNet::V4(v4) => v4.prefix_len() < 16,
                ipnet::IpNet::V6(v6) => v6.prefix_len() < 48,
            };
            if broad {
                f.push(Finding::new(
                    "proxy-protocol-too-broad",
                    Severity::High,
                    format!("listeners.{kind}.proxy_protocol_from"),
                    format!("PROXY headers are accepted from {n}"),
                    "a host in that network can claim any client address, evading per-IP limits, brute-force blocking and per-host policy",
                    "list only your load balancers' addresses (e.g. \"10.0.0.5/32\")",
                ));
            }
        }
    }
}

/// Connectors sending credentials without (authenticated) TLS, or from an open file.
fn check_connectors(cfg: &LoadedConfig, f: &mut Vec<Finding>) {
    let c = &cfg.config;
    // Outbound connectors (DATA-PATHS: "required whenever credentials are configured").
    for (i, k) in c.outbound.connectors.iter().enumerate() {
        let Some(creds) = &k.credentials_file else {
            continue;
        };
        if !k.tls.requires_tls() {
            f.push(Finding::new(
                "connector-credentials-without-tls",
                Severity::Critical,
                format!("outbound.connector[{i}] ({})", k.name),
                format!(
                    "the connector sends SASL credentials but tls = \"{}\" lets the session continue in cleartext",
                    k.tls.name()
                ),
                "a server (or an attacker) that does not offer STARTTLS receives the password in cleartext (DATA-PATHS rule 1)",
                "set tls = \"required\" (or \"verify\" / \"pinned\") on this connector",
            ));
        } else if k.tls == bulwark_config::TlsLevel::Required {
            f.push(Finding::new(
                "connector-credentials-unverified-tls",
                Severity::Medium,
                format!("outbound.connector[{i}] ({})", k.name),
                "the connector sends SASL credentials over TLS that does not authenticate the server (tls = \"required\")",
                "an active attacker between us and the smart host can present any certificate and collect the password",
                "set tls = \"verify\" (or \"pinned\") on this connector",
            ));
        }
        let path = cfg.path(creds);
        if let Some(m) = mode(&path).filter(|m| m & 0o077 != 0) {
            f.push(Finding::new(
                "credentials-permissions",
                Severity::High,
                path.display().to_string(),
                format!(
                    "the credentials file of connector {} has mode {m:o}",
                    k.name
                ),
                "other local users can read the smart host password",
                format!("chmod 600 {}", path.display()),
            ));
        }
    }
}

/// The password-check limiter: off, or far weaker than its defaults.
fn check_auth_limits(c: &Config, f: &mut Vec<Finding>) {
    // Brute-force protection (DATA-PATHS rule 4).
    let a = &c.auth;
    if !a.limiter_enabled {
        f.push(Finding::new(
            "auth-limiter-disabled",
            Severity::High,
            "auth.limiter_enabled",
            "brute-force protection is turned off",
            "password guessing is limited only by the fixed failure delay; one client can try thousands of passwords a day per account",
            "set [auth] limiter_enabled = true",
        ));
    } else {
        let mut weak = Vec::new();
        if a.failure_delay_ms < 100 {
            weak.push(format!(
                "failure_delay_ms = {} (default 500)",
                a.failure_delay_ms
            ));
        }
        if a.block_ip_after_failures > 100 {
            weak.push(format!(
                "block_ip_after_failures = {} (default 20)",
                a.block_ip_after_failures
            ));
        }
        if a.block_account_after_failures > 500 {
            weak.push(format!(
                "block_account_after_failures = {} (default 50)",
                a.block_account_after_failures
            ));
        }
        if a.window_secs < 60 {
            weak.push(format!("window_secs = {} (default 900)", a.window_secs));
        }
        if !weak.is_empty() {
            f.push(Finding::new(
                "auth-limits-weak",
                Severity::Medium,
                "[auth]",
                format!(
                    "brute-force limits far weaker than the defaults: {}",
                    weak.join(", ")
                ),
                "guessing gets cheap long before anything blocks it",
                "return these keys to their defaults (see the comments in bulwark.toml)",
            ));
        }
    }
}

/// Protocol logs that would write a secret (should be impossible).
fn check_protocol_logs(c: &Config, f: &mut Vec<Finding>) {
    // The protocol log's redaction cannot be configured away; check the rule that
    // makes it so anyway, for every listener that logs.
    for (kind, l) in c.listeners.iter() {
        if !l.protocol_log {
            continue;
        }
        let r = Redactor::for_listener(kind);
        let sample: &[&[u8]] = match r {
            Redactor::Smtp => &[b"AUTH PLAIN QVVESVQtU0VDUkVU"],
            Redactor::Imap => &[
                b"a LOGIN user AUDIT-SECRET",
                b"a AUTHENTICATE PLAIN QVVESVQtU0VDUkVU",
            ],
            Redactor::Pop3 => &[b"PASS AUDIT-SECRET", b"AUTH PLAIN QVVESVQtU0VDUkVU"],
            Redactor::None => &[],
        };
        let leaks = sample.iter().any(|s| {
            let out = redact(r, s);
            out.contains("AUDIT-SECRET") || out.contains("QVVESVQtU0VDUkVU")
        }) || (kind.carries_credentials()
            && r == Redactor::None
            && kind != ListenerKind::Https);
        if leaks {
            f.push(Finding::new(
                "protocol-log-unredacted",
                Severity::Critical,
                format!("listeners.{kind}.protocol_log"),
                "the protocol log of this listener would write passwords or AUTH payloads",
                "anyone who can read the logs (or their backups) learns passwords",
                "set protocol_log = false and report this as a bug: redaction is meant to be impossible to turn off",
            ));
        }
    }
}

fn check_certificate(cfg: &LoadedConfig, now: i64, roots: &Path, f: &mut Vec<Finding>) {
    let hostname = &cfg.config.server.hostname;
    let (cert_path, key_path) = (cfg.cert_path(), cfg.key_path());
    let facing = facing(cfg);
    let public = !facing.is_empty();
    let served_on = if public {
        format!("served beyond loopback on {}", facing.join(", "))
    } else {
        "served on loopback only".to_string()
    };
    let subject = format!("tls.cert {} ({served_on})", cert_path.display());
    let chain = match bulwark_tls::load_certified_key(&cert_path, &key_path) {
        Ok(ck) => ck.cert.clone(),
        Err(e) => {
            f.push(Finding::new(
                "cert-unusable",
                Severity::Critical,
                subject,
                e.to_string(),
                "the server refuses to start without a usable certificate and key",
                "import a valid chain with `bulwark cert import --cert FILE --key FILE`, or `bulwark cert selfsigned --force`",
            ));
            return;
        }
    };
    let Some(leaf) = chain
        .first()
        .and_then(|c| CertInfo::from_der(c.as_ref()).ok())
    else {
        return;
    };
    if leaf.not_after <= now || leaf.not_before > now {
        f.push(Finding::new(
            "cert-expired",
            Severity::Critical,
            subject.clone(),
            if leaf.not_after <= now {
                format!("the certificate expired {} day(s) ago", (now - leaf.not_after) / 86400)
            } else {
                "the certificate is not valid yet".to_string()
            },
            "clients refuse the connection or, worse, users learn to click through warnings",
            "renew it (import the renewed chain with `bulwark cert import`), then `kill -HUP` the server",
        ));
    } else if leaf.not_after - now < 30 * 86400 {
        f.push(Finding::new(
            "cert-expiring",
            Severity::High,
            subject.clone(),
            format!("the certificate expires in {} day(s)", (leaf.not_after - now) / 86400),
            "once it expires clients refuse to connect",
            "renew it now (import the renewed chain with `bulwark cert import`, then `kill -HUP` the server)",
        ));
    }
    if !leaf.matches_name(hostname) {
        f.push(Finding::new(
            "cert-name-mismatch",
            if public { Severity::High } else { Severity::Low },
            subject.clone(),
            format!("the certificate names {:?}, not server.hostname {hostname}", leaf.dns_names),
            "clients that verify names refuse the connection or warn; others are open to interception",
            format!("use a certificate for {hostname} (`bulwark cert csr` for a signing request), or change server.hostname"),
        ));
    }
    if leaf.self_signed {
        f.push(Finding::new(
            "cert-self-signed",
            if public { Severity::High } else { Severity::Info },
            subject,
            format!("the certificate for {:?} is self-signed", leaf.dns_names),
            if public {
                "clients cannot verify it: they warn, refuse, or (when users click through) accept an attacker's certificate just as well"
            } else {
                "fine while only local clients connect; they must trust this certificate explicitly"
            },
            format!("get a CA-issued certificate for {hostname} (e.g. ACME) and run `bulwark cert import --cert fullchain.pem --key privkey.pem`, then `kill -HUP` the server"),
        ));
    } else if let Some(why) = untrusted(&chain, hostname, roots) {
        f.push(Finding::new(
            "cert-untrusted",
            if public { Severity::High } else { Severity::Low },
            subject,
            format!("the chain does not verify against the system's trusted roots: {why}"),
            "clients cannot verify the server: they warn or refuse",
            "install the full chain from your CA (leaf first, then intermediates) with `bulwark cert import`",
        ));
    }
}

/// Why the chain does not verify against `roots` (None when it does, or when the
/// system has no root store to check against).
fn untrusted(
    chain: &[bulwark_tls::rustls::pki_types::CertificateDer<'static>],
    hostname: &str,
    roots: &Path,
) -> Option<String> {
    use bulwark_tls::rustls;
    let pem = std::fs::read(roots).ok()?;
    let mut store = rustls::RootCertStore::empty();
    let mut rd = pem.as_slice();
    for c in rustls_pemfile::certs(&mut rd).flatten() {
        let _ = store.add(c);
    }
    if store.is_empty() {
        return None;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(store),
        bulwark_tls::provider(),
    )
    .build()
    .ok()?;
    let name = rustls::pki_types::ServerName::try_from(hostname.to_string()).ok()?;
    let (leaf, rest) = chain.split_first()?;
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], rustls::pki_types::UnixTime::now())
        .err()
        .map(|e| e.to_string())
}

fn check_permissions(cfg: &LoadedConfig, f: &mut Vec<Finding>) {
    let key = cfg.key_path();
    if let Some(m) = mode(&key).filter(|m| m & 0o077 != 0) {
        f.push(Finding::new(
            "key-permissions",
            Severity::Critical,
            key.display().to_string(),
            format!("the private key has mode {m:o}: readable by other users"),
            "whoever reads the key can impersonate the server and decrypt recorded sessions that did not use forward secrecy",
            format!("chmod 600 {}", key.display()),
        ));
    }
    // DKIM signing keys: `bulwark serve` refuses to load one others can read, but the
    // audit says so before a restart does.
    let signing = &cfg.config.senderauth.signing;
    for (path, m) in bulwark_senderauth::sign::insecure_key_files(&cfg.path(&signing.key_dir)) {
        f.push(Finding::new(
            "dkim-key-permissions",
            Severity::Critical,
            path.display().to_string(),
            format!("the DKIM private key has mode {m:o}: readable by other users"),
            "whoever reads it can sign mail as the domain, and DMARC will accept the forgeries; bulwark serve refuses to start with it",
            format!("chmod 600 {}", path.display()),
        ));
    }
    let dir = &cfg.dir;
    if let Some(m) = mode(dir).filter(|m| m & 0o077 != 0) {
        f.push(Finding::new(
            "data-dir-permissions",
            Severity::High,
            dir.display().to_string(),
            format!("the data directory has mode {m:o}"),
            "it holds the store, the key and the logs: other local users can reach whatever is not locked down below it",
            format!("chmod 700 {}", dir.display()),
        ));
    }
    let store = cfg.store_path();
    let mut open: Vec<String> = Vec::new();
    if let Some(m) = mode(&store).filter(|m| m & 0o077 != 0) {
        open.push(format!("{} ({m:o})", store.display()));
    }
    open.extend(open_files_in(&store));
    if !open.is_empty() {
        f.push(Finding::new(
            "store-permissions",
            Severity::High,
            store.display().to_string(),
            format!("accessible to group or others: {}", open.join(", ")),
            "the store holds every message and the password hashes",
            format!("chmod 700 {0} && chmod 600 {0}/*", store.display()),
        ));
    }
    if let Some(m) = mode(&cfg.file).filter(|m| m & 0o077 != 0) {
        let secret = cfg.config.metrics.bearer_token.is_some();
        f.push(Finding::new(
            "config-permissions",
            if secret {
                Severity::High
            } else {
                Severity::Medium
            },
            cfg.file.display().to_string(),
            format!(
                "bulwark.toml has mode {m:o}{}",
                if secret {
                    " and contains the metrics bearer token"
                } else {
                    ""
                }
            ),
            "it describes every path's security and may hold secrets",
            format!("chmod 600 {}", cfg.file.display()),
        ));
    }
    let logs = cfg.log_dir();
    let mut open: Vec<String> = Vec::new();
    if let Some(m) = mode(&logs).filter(|m| m & 0o077 != 0) {
        open.push(format!("{} ({m:o})", logs.display()));
    }
    open.extend(open_files_in(&logs));
    if !open.is_empty() {
        f.push(Finding::new(
            "log-permissions",
            Severity::Medium,
            logs.display().to_string(),
            format!("accessible to group or others: {}", open.join(", ")),
            "protocol logs name users, peers and what they did",
            format!("chmod 700 {0} && chmod 600 {0}/*", logs.display()),
        ));
    }
}

/// Findings raised by what `--probe` observed.
pub fn probe_findings(probes: &[ListenerProbe]) -> Vec<Finding> {
    let mut f = Vec::new();
    for p in probes {
        let subject = match p.address {
            Some(a) => format!("listeners.{} ({a})", p.listener),
            None => format!("listeners.{}", p.listener),
        };
        for d in &p.differences {
            let (sev, why, fix): (Severity, &str, String) = match d.finding {
                "plaintext-auth" => (
                    Severity::Critical,
                    "passwords could cross the network in cleartext (DATA-PATHS rule 1)",
                    "run a Bulwark build whose SMTP offers AUTH only after STARTTLS; until then set enabled = false on this listener".into(),
                ),
                "imap-cleartext-login" => (
                    Severity::Critical,
                    "IMAP passwords could cross the network in cleartext",
                    "the IMAP listener must announce STARTTLS and LOGINDISABLED before TLS; until fixed, set listeners.imap enabled = false and use 993".into(),
                ),
                "pop3-cleartext-login" => (
                    Severity::Critical,
                    "POP3 passwords could cross the network in cleartext",
                    "the POP3 listener must offer STLS and refuse USER/PASS/AUTH before it; until fixed, set listeners.pop3 enabled = false and use 995".into(),
                ),
                "open-relay" => (
                    Severity::Critical,
                    "anyone can send mail anywhere through this server: spam, blocklisting, and mail in your name",
                    "only authenticated sessions may relay; check [[smtp.accept_policy]] and any trusted networks, then restart".into(),
                ),
                "tls-legacy-version" => (
                    Severity::High,
                    "TLS 1.0/1.1 are broken and deprecated (RFC 8996); DATA-PATHS rule 2 sets 1.2 as the floor",
                    "make sure nothing in front of Bulwark (a load balancer terminating TLS) accepts them; Bulwark itself cannot".into(),
                ),
                "tls-version-mismatch" => (
                    Severity::Medium,
                    "the running server's TLS versions differ from [tls] min_version",
                    "restart the server after changing [tls] min_version; check what terminates TLS in front of it".into(),
                ),
                "cert-not-served" => (
                    Severity::Medium,
                    "clients see another certificate than the one in tls.cert (a renewed certificate not loaded yet?)",
                    "reload the certificate: kill -HUP $(cat DIR/run/bulwark.pid)".into(),
                ),
                "metrics-unprotected" => (
                    Severity::Critical,
                    "operational data is readable without the token or over cleartext",
                    "bind listeners.metrics to loopback, or make sure [metrics] bearer_token is set and restart the server".into(),
                ),
                _ => (
                    Severity::Medium,
                    "what runs is not what the configuration says; the report and audit of the configuration do not describe this server",
                    "restart the server with the current configuration (`bulwark report --probe` shows the details)".into(),
                ),
            };
            f.push(Finding::new(
                d.finding,
                sev,
                subject.clone(),
                d.text.clone(),
                why,
                fix,
            ));
        }
    }
    f
}

/// The default trusted-roots file, as a path.
pub fn system_roots() -> PathBuf {
    PathBuf::from(SYSTEM_ROOTS)
}

/// Private and local address space (RFC 1918, RFC 6598 shared, loopback, link-local;
/// IPv6 unique-local RFC 4193, loopback, link-local): a network inside one of these is
/// not reachable from the Internet as such.
fn is_private_network(net: &ipnet::IpNet) -> bool {
    const PRIVATE: [&str; 10] = [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "::1/128",
        "fe80::/10",
        "::ffff:127.0.0.0/104",
    ];
    PRIVATE
        .iter()
        .filter_map(|p| p.parse::<ipnet::IpNet>().ok())
        .any(|p| p.contains(net))
}

/// How much too wide an `internal_servers` network is, if it is: the whole (or a
/// large part of the) Internet is critical, a public network beyond a /24 (IPv6 /48)
/// high, a private one beyond a /16 (IPv6 /48) medium.
fn internal_network_breadth(net: &ipnet::IpNet) -> Option<(Severity, &'static str)> {
    let (prefix, everything, public_max, private_max) = match net {
        ipnet::IpNet::V4(n) => (n.prefix_len(), 8, 24, 16),
        ipnet::IpNet::V6(n) => (n.prefix_len(), 16, 48, 48),
    };
    if prefix < everything {
        return Some((Severity::Critical, "a large part of the Internet"));
    }
    if is_private_network(net) {
        (prefix < private_max).then_some((Severity::Medium, "a very wide private network"))
    } else {
        (prefix < public_max).then_some((Severity::High, "a wide public network"))
    }
}

#[cfg(test)]
mod internal_servers {
    use super::*;

    fn findings(nets: &str) -> Vec<(String, Severity)> {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "[server]\nhostname = \"mail.example.test\"\n[senderauth]\ninternal_servers = [{nets}]\n"
        );
        let cfg = LoadedConfig {
            dir: d.path().to_path_buf(),
            file: d.path().join("bulwark.toml"),
            config: bulwark_config::Config::parse(&text, "t").unwrap(),
        };
        check_config(&cfg, &[], 0, d.path())
            .into_iter()
            .filter(|f| f.id == "internal-servers-too-broad")
            .map(|f| (f.subject.clone(), f.severity))
            .collect()
    }

    #[test]
    fn over_broad_internal_networks_are_findings() {
        let f = findings(r#""0.0.0.0/0""#);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].1, Severity::Critical);
        assert_eq!(findings(r#""::/0""#)[0].1, Severity::Critical);
        assert_eq!(findings(r#""198.51.0.0/16""#)[0].1, Severity::High);
        assert_eq!(findings(r#""2001:db8::/32""#)[0].1, Severity::High);
        assert_eq!(findings(r#""10.0.0.0/8""#)[0].1, Severity::Medium);
        // What an edge gateway or a site's relays look like: fine.
        for ok in [
            r#""192.0.2.25/32""#,
            r#""198.51.100.0/24""#,
            r#""10.1.2.0/24""#,
            r#""192.168.0.0/16""#,
            r#""2001:db8:1::/48""#,
            r#""fd00:1::/64""#,
        ] {
            assert!(findings(ok).is_empty(), "{ok}");
        }
    }
}

#[cfg(test)]
mod config_steps {
    use super::*;

    fn config(text: &str) -> bulwark_config::Config {
        bulwark_config::Config::parse(
            &format!("[server]\nhostname = \"mail.example.test\"\n{text}"),
            "t",
        )
        .unwrap()
    }

    fn ids(check: fn(&bulwark_config::Config, &mut Vec<Finding>), text: &str) -> Vec<&'static str> {
        let mut f = Vec::new();
        check(&config(text), &mut f);
        f.iter().map(|f| f.id).collect()
    }

    #[test]
    fn each_step_is_quiet_on_the_defaults() {
        for check in [
            check_metrics,
            check_internal_servers,
            check_proxy_protocol,
            check_auth_limits,
            check_protocol_logs,
        ] {
            assert_eq!(ids(check, ""), Vec::<&str>::new());
        }
    }

    #[test]
    fn proxy_protocol_from_a_wide_network_only() {
        let wide =
            "[listeners.imaps]\nbind = [\"0.0.0.0:993\"]\nproxy_protocol_from = [\"10.0.0.0/8\"]\n";
        assert_eq!(
            ids(check_proxy_protocol, wide),
            ["proxy-protocol-too-broad"]
        );
        let narrow = "[listeners.imaps]\nbind = [\"0.0.0.0:993\"]\nproxy_protocol_from = [\"10.0.0.5/32\"]\n";
        assert!(ids(check_proxy_protocol, narrow).is_empty());
    }

    #[test]
    fn auth_limits_off_or_weak() {
        assert_eq!(
            ids(check_auth_limits, "[auth]\nlimiter_enabled = false\n"),
            ["auth-limiter-disabled"]
        );
        assert_eq!(
            ids(check_auth_limits, "[auth]\nwindow_secs = 30\n"),
            ["auth-limits-weak"]
        );
    }

    #[test]
    fn metrics_beyond_loopback_with_a_token() {
        let text = "[listeners.metrics]\nbind = [\"0.0.0.0:9425\"]\n[metrics]\nbearer_token = \"0123456789abcdef0123\"\n";
        assert_eq!(ids(check_metrics, text), ["metrics-exposed"]);
    }
}
