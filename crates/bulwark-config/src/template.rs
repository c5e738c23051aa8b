//! The commented `bulwark.toml` written by `bulwark init`.
//!
//! Every section says which data path it protects and what its defaults mean. A unit
//! test parses the template back and compares it with `Config::with_defaults`, so the
//! comments cannot drift from the code's defaults.

use std::net::{IpAddr, SocketAddr};

use crate::listeners::{default_bind, ListenerKind};

/// What `init` was asked for.
#[derive(Debug, Clone)]
pub struct TemplateParams {
    /// The server's name (`[server] hostname`).
    pub hostname: String,
    /// The primary domain created at init, named in the opening comment.
    pub domain: String,
    /// `--listen`: one address for every listener (default: all addresses, metrics on
    /// loopback).
    pub listen: Option<IpAddr>,
    /// `--port-base`: added to every standard port.
    pub port_base: u16,
    /// Bind every listener to port 0 (the OS chooses; see DIR/run/listeners.json).
    pub ephemeral_ports: bool,
    /// `--user`: the account `serve` drops to when started as root.
    pub user: Option<String>,
}

/// The `[server] user` line: set when init was given one, else the commented example.
fn user_line(p: &TemplateParams) -> String {
    match &p.user {
        Some(u) => format!("user = \"{u}\""),
        None => "# user = \"bulwark\"".to_string(),
    }
}

fn binds(p: &TemplateParams, kind: ListenerKind) -> String {
    let addrs: Vec<SocketAddr> = default_bind(kind, p.listen, p.port_base)
        .into_iter()
        .map(|mut a| {
            if p.ephemeral_ports {
                a.set_port(0);
            }
            a
        })
        .collect();
    let items: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// Renders the configuration file.
pub fn render(p: &TemplateParams) -> String {
    [
        &header(p),
        &server(p),
        &tls_store(p),
        &listeners(p),
        LIMITS,
        &outbound(p),
        SENDER_AUTH,
        DNS_LOG_METRICS,
    ]
    .concat()
}

/// The file's opening comment: what it covers and where domains and accounts live.
fn header(p: &TemplateParams) -> String {
    format!(
        r#"# Bulwark configuration for {hostname}
#
# Every data path (port) is listed below with its security settings at the defaults of
# DATA-PATHS.md. `bulwark report --dir DIR` prints the resulting data-path table and
# `bulwark audit --dir DIR` checks it against best practice. `bulwark config check`
# validates this file. Relative paths are inside the data directory.
#
# Domains, accounts and aliases live in the store, not here:
#   bulwark domain add|del|list, bulwark user add|del|list|passwd, bulwark alias ...
# The primary domain created at init is {domain}.

"#,
        hostname = p.hostname,
        domain = p.domain,
    )
}

/// `[server]`: hostname, role, shutdown grace, the user to drop to.
fn server(p: &TemplateParams) -> String {
    format!(
        r#"[server]
# The name this server greets with, presents in its certificate, and that MX
# records point at.
hostname = "{hostname}"
# "standalone" runs every service. ("edge" — Internet-facing gateway only — is planned.)
role = "standalone"
# On SIGTERM: stop accepting, let sessions finish for up to this many seconds, exit 0.
shutdown_grace_secs = 30
# Started as root, `serve` binds every listener and reads the key files, then runs as
# this unprivileged user for good (setgroups, setgid, setuid), like Postfix and
# Dovecot. The data directory must belong to it (chown -R bulwark: DIR). Unset, a
# server started as root refuses to run unless given `serve --allow-root`.
# `group` defaults to the user's primary group.
{user_line}
# group = "bulwark"

"#,
        hostname = p.hostname,
        user_line = user_line(p),
    )
}

/// `[tls]` and `[store]`.
fn tls_store(p: &TemplateParams) -> String {
    format!(
        r#"[tls]
# The certificate every TLS listener presents (chain, leaf first) and its key (0600).
# init made a self-signed certificate for {hostname}. For a CA-issued certificate run
#   bulwark cert import --dir DIR --cert fullchain.pem --key privkey.pem
# or point these paths at the files; `kill -HUP <pid>` reloads them without dropping
# sessions. `bulwark cert csr --dir DIR` prints a signing request for the current key.
cert = "tls/cert.pem"
key = "tls/key.pem"
# Lowest protocol version: "1.2" (default) or "1.3". Nothing below 1.2 exists here.
min_version = "1.2"

[store]
# "embedded": SQLite (WAL, full fsync, group commit) in the directory below. Every
# acknowledged message (SMTP 250, IMAP APPEND OK) is on disk before the reply.
backend = "embedded"
path = "store"
# Every this many seconds the server gives the space of deleted messages back to the
# file system (in small steps between other writes) and updates the store's size
# metrics. 0 turns reclaiming off. `bulwark store compact` does it all at once.
reclaim_interval_secs = 60

"#,
        hostname = p.hostname,
    )
}

/// Every `[listeners.*]` table with its bind addresses.
fn listeners(p: &TemplateParams) -> String {
    let b = |k| binds(p, k);
    format!(
        r#"# ---------------------------------------------------------------------------------
# Listeners. The kind of each listener fixes its protocol and TLS mode; here you only
# choose addresses and limits. Set `enabled = false` to close a port.
#   protocol_log          one line per command/reply in [log] dir (secrets redacted)
#   proxy_protocol_from   CIDRs of load balancers allowed to send a PROXY header
#   max_connections / max_connections_per_ip   refused with "try later" beyond
# ---------------------------------------------------------------------------------

# Internet servers -> Bulwark (SMTP receive). Anonymous; STARTTLS offered on every
# session; required for networks listed in [smtp] accept_policy. Never relays.
[listeners.smtp]
bind = {smtp}

# Mail clients -> Bulwark (submission, STARTTLS). AUTH and MAIL refused before TLS.
[listeners.submission]
bind = {submission}

# Mail clients -> Bulwark (submission, implicit TLS from the first byte).
[listeners.submissions]
bind = {submissions}

# IMAP clients (STARTTLS). LOGINDISABLED until TLS: no login in cleartext.
[listeners.imap]
bind = {imap}

# IMAP clients (implicit TLS).
[listeners.imaps]
bind = {imaps}

# POP3 clients (STLS). USER/PASS/AUTH refused until TLS.
[listeners.pop3]
bind = {pop3}

# POP3 clients (implicit TLS).
[listeners.pop3s]
bind = {pop3s}

# Browsers. Not served by this version (there is no web server yet): `bulwark serve`
# does not open these two ports whatever they say, and `bulwark report` shows them as
# "not served". Once built, port 80 will only redirect to HTTPS.
[listeners.http]
bind = {http}

[listeners.https]
bind = {https}

# Prometheus scrapers. Loopback only by default; bound elsewhere it needs
# [metrics] bearer_token and is served over HTTPS.
[listeners.metrics]
bind = {metrics}

"#,
        smtp = b(ListenerKind::Smtp),
        submission = b(ListenerKind::Submission),
        submissions = b(ListenerKind::Submissions),
        imap = b(ListenerKind::Imap),
        imaps = b(ListenerKind::Imaps),
        pop3 = b(ListenerKind::Pop3),
        pop3s = b(ListenerKind::Pop3s),
        http = b(ListenerKind::Http),
        https = b(ListenerKind::Https),
        metrics = b(ListenerKind::Metrics),
    )
}

/// `[auth]`, `[smtp]`, `[imap]` and `[pop3]`: the limits of the protocols clients use.
const LIMITS: &str = r#"[auth]
# Password checks on every protocol (SMTP AUTH, IMAP, POP3, web) share this limiter.
# A failure answers the same whether the account exists or not, after a delay.
limiter_enabled = true
failure_delay_ms = 500
window_secs = 900
# Attempts still being checked count too: parallel guesses near a limit are checked
# one after another, never more than the limit in all.
# From one IP: slower and slower after 3 failures, refused after 20 (per window).
slow_after_failures = 3
max_delay_ms = 8000
block_ip_after_failures = 20
# For one account, from anywhere: after 50 failures (per window) it is refused from
# every address that has not logged in to it successfully in the last 30 days; the
# owner's own addresses (kept in the store) still get in: an attacker cannot lock a
# user out.
block_account_after_failures = 50

[smtp]
# Limits for receiving (25) and submission (587/465).
max_message_size = 26214400   # octets (25 MiB), announced with SIZE
max_recipients = 100
max_received_headers = 50     # more hops than this is a mail loop
command_timeout_secs = 300
session_timeout_secs = 1800
# Errors per session: replies slow down after 3, the session is closed after 20.
# A recipient refused because max_recipients is reached (452 4.5.3) is no error.
tarpit_after_errors = 3
max_errors = 20
tarpit_delay_ms = 1000
# Message data all SMTP sessions together may hold in memory while receiving; a
# message beyond it is read, dropped and answered 452 4.3.1 (try again later).
max_inflight_bytes = 536870912   # 512 MiB; at least max_message_size
# Port 25: MAIL FROM in our own domains needs AUTH (550 5.7.1), unless the client is
# one of [senderauth] internal_servers. Set to false if a third party relays mail
# from our domains to port 25 without authenticating. <> is always accepted.
reject_unauthenticated_local_senders = true
# Port 25: a header From: in our own domains from a client that is neither
# authenticated nor an internal server: "reject" (550 5.7.1) or "tag" (accepted with
# X-Bulwark-Local-From: outside). Our users send through submission.
local_from_on_inbound = "reject"
# MIME parts per message (the message, each part, each attached message), on every
# SMTP port and for IMAP APPEND: 552 5.3.4 / NO [LIMIT] beyond. At most 50000.
max_mime_parts = 5000
# Per-host accept policy for port 25: client networks and what they must do before
# MAIL. require = "any" | "tls" | "auth" | "auth+tls". Most specific network wins.
# [[smtp.accept_policy]]
# network = "192.0.2.0/24"     # e.g. a partner that must use TLS
# require = "tls"

[imap]
max_literal_size = 67108864   # largest APPEND, refused before it is read
max_line_length = 65536
idle_timeout_secs = 1800      # authenticated sessions without a command, and IDLE
login_timeout_secs = 60       # from connecting to a successful login, in all
idle_keepalive_secs = 120     # "* OK Still here" during IDLE, for NAT and mobiles
# Message data all IMAP sessions together may hold in memory (APPEND literals, bodies
# read whole for FETCH; BODY[]/RFC822 are streamed in pieces). Beyond it: NO [LIMIT].
max_inflight_bytes = 536870912   # 512 MiB; at least twice max_literal_size
max_concurrent_appends_per_account = 4   # more at once wait for one to finish

[pop3]
# Closes a session (without deleting anything) after this long without a command,
# or when the client stops reading a reply. RFC 1939 asks for at least 10 minutes.
timeout_secs = 600
login_timeout_secs = 60       # from connecting to a successful login, in all

"#;

/// `[outbound]`: the queue, delivery limits and the connector examples.
fn outbound(p: &TemplateParams) -> String {
    format!(
        r#"[outbound]
# Bulwark -> Internet servers (MX hosts, port 25) and smart hosts. STARTTLS is tried on
# every connection; TLS 1.2 is the floor. `bulwark queue list|show|retry|delete`
# manages the queue.
max_queue_lifetime_secs = 432000   # 5 days, then the sender gets a failure notice
delay_notice_after_secs = 14400    # 4 hours, then the sender gets a delay notice
# helo_name = "{hostname}"   # EHLO name; default: [server] hostname
max_concurrent_deliveries = 32     # SMTP connections at once, all destinations
max_concurrent_per_domain = 20     # ... and to one domain or smart host (Postfix: 20)
retry_initial_secs = 60            # retries after temporary failures: 1 min,
retry_max_secs = 3600              # doubling up to 1 hour, until the lifetime ends
connect_timeout_secs = 30
command_timeout_secs = 300         # per reply (RFC 5321 §4.5.3.2)
data_timeout_secs = 600            # for the reply to the message data
lease_secs = 120                   # a crashed server's deliveries resume after this
scan_interval_secs = 5             # look for due messages at least this often
remote_port = 25                   # MX port; change only for tests and labs
protocol_log = false               # outbound SMTP transcript in [log] dir/outbound.log
mx_host_limit = 2                  # MX hosts tried per attempt (Postfix smtp_mx_session_limit)
mx_address_limit = 5               # addresses tried per attempt (smtp_mx_address_limit)
# LAB ONLY: allow delivery to loopback/private/link-local addresses found in DNS or
# address literals. Off, a domain whose MX points inside cannot make this server
# connect to internal services (SSRF). Smart hosts are exempt.
allow_private_destinations = false
#
# Connectors: how mail for an address space leaves. The most specific match wins
# ("partner.example" > "*.partner.example" > "*"); unmatched domains go to their MX
# hosts with opportunistic TLS. tls = one of
#   "opportunistic"  STARTTLS when offered (certificate not checked), else cleartext
#   "required"       never cleartext: no STARTTLS or a failed handshake defers
#   "verify"         required + certificate chains to the system trust store (or
#                    trust_anchors) and names the MX host / smart host
#   "pinned"         required + the peer certificate's or public key's SHA-256 is in
#                    tls_pins (direct trust)
# Credentials (credentials_file: user name line, password line; mode 0600) are sent
# only over TLS, need tls = "required" or stronger (better "verify" or "pinned":
# "required" does not authenticate the server, so an active attacker could collect
# them; `bulwark audit` flags it) and a smart_host (never to recipients' MX hosts).
# [[outbound.connector]]
# name = "partner"
# address_space = ["partner.example", "*.partner.example"]
# tls = "pinned"
# tls_pins = ["<64 hex digits>"]
#
# [[outbound.connector]]
# name = "relay"
# address_space = ["*"]
# smart_host = "smtp.provider.example"
# port = 587                        # 465 = implicit TLS
# tls = "verify"
# credentials_file = "secrets/relay.credentials"

"#,
        hostname = p.hostname,
    )
}

/// `[senderauth]` and its per-check action tables and signing.
const SENDER_AUTH: &str = r#"[senderauth]
# Who sent it: SPF (RFC 7208), Sender ID (RFC 4406), DKIM (RFC 6376) and DMARC
# (RFC 7489) on mail received on port 25. Every result is recorded in one
# Authentication-Results: header (plus Received-SPF:); the tables below say what is
# done per result: "accept" (record only), "tag" (deliver with an
# X-Bulwark-Auth-Warning: header), "quarantine" (deliver to Junk), "reject" (550;
# for SPF at MAIL with 5.7.23, others after DATA with 5.7.1), "tempfail" (451 4.7.x,
# temperror only). The strictest action of all checks wins.
enabled = true
# Our own edge gateways / internal relays (CIDR). For mail arriving from them the
# sender checks use the first external hop found in the Received: headers.
internal_servers = []
# A message whose header section cannot be parsed cannot be checked for DKIM and
# DMARC; failing closed, it is refused (or "quarantine" / "tag").
unparseable = "reject"
check_timeout_secs = 60      # the checks after DATA; beyond it: DMARC temperror
reject_null_mx_senders = true # MAIL FROM a domain with a null MX: 550 5.7.27 (RFC 7505)

[senderauth.spf]
# SPF breaks on plain forwarding, so a fail is tagged, not rejected; DMARC (which
# also accepts a DKIM pass) is what blocks forgeries of domains that ask for it.
pass = "accept"
fail = "tag"
softfail = "accept"
neutral = "accept"
none = "accept"
permerror = "accept"   # the sender's broken record; rejecting would lose real mail
temperror = "accept"   # fail is only tagged, so an unknown result need not delay mail

[senderauth.sender_id]
# Checks the header sender the reader sees (the PRA: Resent-Sender, Resent-From,
# Sender, From) against spf2.0/pra, falling back to v=spf1. Misfires on mailing
# lists, so only tagged.
pass = "accept"
fail = "tag"
softfail = "accept"
neutral = "accept"
none = "accept"
permerror = "accept"
temperror = "accept"
no_pra = "tag"         # headers too ill-formed to name a sender (RFC 4407 §2)

[senderauth.dkim]
# A broken signature counts as no signature (RFC 6376 §6.3; lists modify mail).
pass = "accept"
fail = "accept"
neutral = "accept"
none = "accept"
permerror = "accept"
temperror = "accept"

[senderauth.dmarc]
# A failing message gets the action for the policy its domain publishes (after
# pct= sampling): honouring p=reject stops exact-domain phishing.
pass = "accept"
fail_p_reject = "reject"
fail_p_quarantine = "quarantine"
fail_p_none = "tag"
none = "accept"
permerror = "accept"
temperror = "tempfail" # the domain may say p=reject: let the sender retry

[senderauth.signing]
# DKIM-sign mail our users submit when a key exists for the From domain. `init` and
# `domain add` make each domain's keys (PKCS#8, mode 0600, under key_dir); publish
# the TXT records they print (again: `bulwark dkim list`) at
# <selector>-rsa._domainkey.D / <selector>-ed25519._domainkey.D. Keys made elsewhere:
# `bulwark dkim import --domain D --selector S KEYFILE`.
enabled = true
selector = "bulwark"
key_dir = "dkim"

"#;

/// `[dns]`, `[log]` and `[metrics]`.
const DNS_LOG_METRICS: &str = r#"[dns]
# Resolvers for MX/SPF/DKIM/DMARC lookups; empty = /etc/resolv.conf.
resolvers = []

[log]
level = "info"          # server log on stderr
format = "text"         # or "json"
dir = "log"             # protocol logs, one file per listener
rotate_size = 67108864  # rotate at 64 MiB
rotate_age_secs = 86400 # or after a day
keep = 14

[metrics]
# bearer_token = "..."  # required when listeners.metrics is not on loopback
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Listeners};

    fn params(listen: Option<IpAddr>, port_base: u16) -> TemplateParams {
        TemplateParams {
            hostname: "mail.example.test".into(),
            domain: "example.test".into(),
            listen,
            port_base,
            ephemeral_ports: false,
            user: None,
        }
    }

    #[test]
    fn template_means_exactly_the_defaults() {
        let text = render(&params(None, 0));
        let parsed = Config::parse(&text, "template").unwrap();
        assert_eq!(parsed, Config::with_defaults("mail.example.test"));
    }

    #[test]
    fn template_with_port_base() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let parsed = Config::parse(&render(&params(Some(ip), 10000)), "t").unwrap();
        assert_eq!(parsed.listeners, Listeners::with_bind(Some(ip), 10000));
        assert_eq!(parsed.listeners.smtp.bind[0].port(), 10025);
    }

    #[test]
    fn init_user_is_written() {
        let mut p = params(None, 0);
        p.user = Some("bulwark".into());
        let parsed = Config::parse(&render(&p), "t").unwrap();
        assert_eq!(parsed.server.user.as_deref(), Some("bulwark"));
        assert_eq!(parsed.server.group, None);
    }

    #[test]
    fn each_section_is_whole_tables_separated_by_a_blank_line() {
        let p = params(None, 0);
        let sections = [
            (server(&p), "[server]"),
            (tls_store(&p), "[tls]"),
            (LIMITS.to_string(), "[auth]"),
            (outbound(&p), "[outbound]"),
            (SENDER_AUTH.to_string(), "[senderauth]"),
        ];
        for (text, first) in &sections {
            assert!(text.starts_with(&format!("{first}\n")), "{text}");
            assert!(text.ends_with("\n\n"), "{text}");
        }
        assert!(DNS_LOG_METRICS.starts_with("[dns]\n"));
        assert!(listeners(&p).starts_with("# ----"));
        assert!(header(&p).starts_with("# Bulwark configuration for mail.example.test\n"));
        assert!(outbound(&p).contains("# helo_name = \"mail.example.test\""));
        let whole = render(&p);
        assert!(whole.starts_with(&header(&p)));
        assert!(whole.ends_with(DNS_LOG_METRICS));
    }

    #[test]
    fn ephemeral_ports_are_zero() {
        let mut p = params(Some("127.0.0.1".parse().unwrap()), 0);
        p.ephemeral_ports = true;
        let parsed = Config::parse(&render(&p), "t").unwrap();
        assert!(parsed.listeners.iter().all(|(_, l)| l.bind[0].port() == 0));
    }
}
