//! The metrics every crate emits through the `metrics` facade, and the Prometheus
//! recorder that `serve` installs to expose them.
//!
//! `CATALOG` is the one list of metric names, their labels and what they mean
//! (mirrored in `METRICS.md`; a test keeps the two and the code that emits metrics in
//! step). At start `register_catalog` describes every metric and creates its usual
//! series at 0, so a scraper sees every counter from the first scrape on, before any
//! traffic, and a `rate()` over a fresh counter starts at a real zero.
//!
//! Naming: `bulwark_<area>_<what>[_total|_seconds|_bytes]`, labels in snake_case,
//! `listener` is always the listener's config name (`smtp`, `imaps`, …).

use std::sync::OnceLock;

use bulwark_config::ListenerKind;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only ever goes up (`_total`, `_bytes_…_total`); scraped with `rate()`.
    Counter,
    /// Goes up and down (sessions active, queue depth).
    Gauge,
}

/// One metric: its name, labels, meaning, and which part of Bulwark emits it.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The Prometheus name, `bulwark_<area>_<what>[_total|_seconds|_bytes]`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The label names its series carry, in snake_case.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
    /// The crate that emits it (as listed in METRICS.md).
    pub emitted_by: &'static str,
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    emitted_by: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Counter,
        labels,
        help,
        emitted_by,
    }
}

const fn gauge(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
    emitted_by: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Gauge,
        labels,
        help,
        emitted_by,
    }
}

/// Every metric Bulwark exposes. Add a line here (and to METRICS.md) with every new
/// `counter!`/`gauge!` name; `catalog_covers_every_emitted_metric` fails otherwise.
pub const CATALOG: &[MetricDef] = &[
    // ---- connections and sessions ----
    counter(
        "bulwark_connections_total",
        &["listener"],
        "TCP connections accepted",
        "bulwark-net",
    ),
    counter(
        "bulwark_connections_refused_total",
        &["listener", "reason"],
        "Connections refused by a connection limit (reason: total, per_ip, descriptors)",
        "bulwark-net",
    ),
    counter(
        "bulwark_sessions_total",
        &["listener"],
        "Sessions handed to the protocol (after limits and, on implicit-TLS listeners, the handshake)",
        "bulwark-net",
    ),
    gauge(
        "bulwark_sessions_active",
        &["listener"],
        "Sessions running now",
        "bulwark-net",
    ),
    // ---- TLS ----
    counter(
        "bulwark_tls_handshakes_total",
        &["listener", "version"],
        "Completed TLS handshakes (implicit TLS and STARTTLS) by protocol version (TLSv1.2, TLSv1.3)",
        "bulwark-net",
    ),
    counter(
        "bulwark_tls_handshake_failures_total",
        &["listener"],
        "TLS handshakes that failed or timed out",
        "bulwark-net",
    ),
    counter(
        "bulwark_starttls_total",
        &["listener"],
        "Successful STARTTLS/STLS upgrades",
        "bulwark-net",
    ),
    gauge(
        "bulwark_tls_certificate_expiry_seconds",
        &[],
        "Seconds until the served certificate expires (negative once expired)",
        "bulwark (serve)",
    ),
    // ---- authentication ----
    counter(
        "bulwark_auth_attempts_total",
        &["listener", "mechanism", "result"],
        "Password checks (mechanism: PLAIN, LOGIN, USER; result: success, failure)",
        "bulwark-auth",
    ),
    counter(
        "bulwark_auth_throttled_total",
        &["listener", "reason"],
        "Authentication attempts refused by the brute-force limiter (reason: ip, account)",
        "bulwark-auth",
    ),
    // ---- messages ----
    counter(
        "bulwark_messages_received_total",
        &["listener"],
        "Messages accepted (acknowledged) over SMTP, after they were stored",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_message_bytes_received_total",
        &["listener"],
        "Octets of the messages counted in bulwark_messages_received_total",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_messages_delivered_total",
        &["destination"],
        "Message deliveries (destination: local = into a mailbox, remote = accepted by the next hop), one per message and destination",
        "bulwark-smtp (local), bulwark-queue (remote)",
    ),
    counter(
        "bulwark_message_bytes_delivered_total",
        &["destination"],
        "Octets of the deliveries counted in bulwark_messages_delivered_total",
        "bulwark-smtp (local), bulwark-queue (remote)",
    ),
    counter(
        "bulwark_messages_queued_total",
        &[],
        "Messages put in the outbound queue",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_message_bytes_queued_total",
        &[],
        "Octets of the messages counted in bulwark_messages_queued_total",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_messages_bounced_total",
        &[],
        "Failure notices (DSN, RFC 3464) generated for undeliverable messages",
        "bulwark-queue",
    ),
    counter(
        "bulwark_message_bytes_bounced_total",
        &[],
        "Octets of the messages returned by the notices in bulwark_messages_bounced_total",
        "bulwark-queue",
    ),
    // ---- SMTP sessions (bulwark-smtp) ----
    counter(
        "bulwark_smtp_commands_total",
        &["listener", "command"],
        "SMTP commands received (command: EHLO, MAIL, RCPT, DATA, BDAT, AUTH, …; invalid for unparseable lines)",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_rejections_total",
        &["listener", "reason"],
        "SMTP error replies (4xx/5xx) by reason (e.g. relay_denied, unknown_recipient, bare_lf, size, spoofing, auth_failed, tls_required)",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_recipients_total",
        &["listener", "kind"],
        "Recipients accepted at RCPT (kind: local = our domains and aliases, remote = relayed for an authenticated client)",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_quarantined_total",
        &["listener"],
        "Messages accepted but delivered to Junk by the sender checks",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_tarpit_total",
        &["listener"],
        "Replies delayed because the session made too many errors",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_error_limit_total",
        &["listener"],
        "Sessions closed with 421 after smtp.max_errors errors",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_timeouts_total",
        &["listener"],
        "Sessions closed with 421 for the command or session timeout",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_aborted_transfers_total",
        &["listener"],
        "Clients that disconnected during a transaction (e.g. mid-DATA); nothing was stored",
        "bulwark-smtp",
    ),
    counter(
        "bulwark_smtp_undeclared_8bit_total",
        &["listener"],
        "Messages with 8-bit octets sent without BODY=8BITMIME or SMTPUTF8, accepted as 8BITMIME (RFC 6152)",
        "bulwark-smtp",
    ),
    gauge(
        "bulwark_smtp_inflight_bytes",
        &[],
        "Octets of message data SMTP sessions hold in memory while receiving (bounded by smtp.max_inflight_bytes)",
        "bulwark-smtp",
    ),
    // ---- POP3 ----
    counter(
        "bulwark_pop3_commands_total",
        &["listener", "command", "result"],
        "POP3 command lines (command: the verb, unknown, overlong, AUTH-response; result: ok, err)",
        "bulwark-pop3",
    ),
    counter(
        "bulwark_pop3_logins_total",
        &["listener", "mechanism", "result"],
        "POP3 logins (mechanism: USER, PLAIN; result: success, failed, throttled, unavailable, in_use)",
        "bulwark-pop3",
    ),
    counter(
        "bulwark_pop3_messages_sent_total",
        &["listener", "command"],
        "Messages sent to POP3 clients (command: retr, top)",
        "bulwark-pop3",
    ),
    counter(
        "bulwark_pop3_message_bytes_sent_total",
        &["listener"],
        "Octets of the RETR/TOP responses counted in bulwark_pop3_messages_sent_total",
        "bulwark-pop3",
    ),
    counter(
        "bulwark_pop3_messages_deleted_total",
        &["listener"],
        "Messages removed in the POP3 UPDATE state (after DELE and QUIT)",
        "bulwark-pop3",
    ),
    // ---- queue and delivery ----
    gauge(
        "bulwark_queue_depth",
        &[],
        "Messages in the outbound queue",
        "bulwark (serve: sampled from the store)",
    ),
    gauge(
        "bulwark_queue_oldest_age_seconds",
        &[],
        "Age of the oldest message in the outbound queue (0 when empty)",
        "bulwark (serve: sampled from the store)",
    ),
    // ---- store ----
    gauge(
        "bulwark_store_size_bytes",
        &[],
        "Size of the store's database (pages times page size, free pages included)",
        "bulwark (serve: sampled from the store)",
    ),
    gauge(
        "bulwark_store_free_pages",
        &[],
        "Pages of the store's database that hold nothing any more, waiting to be given back to the file system",
        "bulwark (serve: sampled from the store)",
    ),
    counter(
        "bulwark_store_reclaimed_bytes_total",
        &[],
        "Bytes of deleted messages given back to the file system by the background reclaim",
        "bulwark (serve)",
    ),
    counter(
        "bulwark_delivery_attempts_total",
        &["outcome", "tls"],
        "Outbound delivery attempts per recipient (outcome: delivered, deferred, failed; tls: none, TLSv1.2, TLSv1.3)",
        "bulwark-queue",
    ),
    gauge(
        "bulwark_queue_deliveries_in_progress",
        &[],
        "Outbound SMTP deliveries (connections) in progress",
        "bulwark-queue",
    ),
    counter(
        "bulwark_delivery_delay_notices_total",
        &[],
        "Delay notices (DSN, RFC 3464, action delayed) sent to senders",
        "bulwark-queue",
    ),
    counter(
        "bulwark_delivery_downgrades_total",
        &["result"],
        "8-bit messages for a next hop without 8BITMIME (RFC 6152 section 3): converted = sent as 7-bit MIME, refused = could not be converted (8-bit header fields)",
        "bulwark-queue",
    ),
    // ---- sender authentication ----
    // ---- IMAP (bulwark-imap) ----
    counter(
        "bulwark_imap_commands_total",
        &["listener", "command", "result"],
        "IMAP commands completed (command: SELECT, FETCH, …; result: ok, no, bad)",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_bad_input_total",
        &["listener", "reason"],
        "IMAP input refused (reason: line_too_long, literal_refused, too_complex, malformed, sasl, mime_too_deep, mime_parts, memory_limit)",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_write_timeouts_total",
        &["listener"],
        "IMAP sessions closed because the client did not take our output in time",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_mime_too_deep_total",
        &[],
        "Stored messages served without MIME parsing because they nest too deep or have too many parts",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_messages_appended_total",
        &["listener"],
        "Messages stored by APPEND (counted after the store call returned)",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_message_bytes_appended_total",
        &["listener"],
        "Octets of the messages counted in bulwark_imap_messages_appended_total",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_messages_fetched_total",
        &["listener"],
        "FETCH responses sent (one per message per FETCH command)",
        "bulwark-imap",
    ),
    counter(
        "bulwark_imap_messages_copied_total",
        &["listener", "op"],
        "Messages copied or moved (op: COPY, MOVE)",
        "bulwark-imap",
    ),
    gauge(
        "bulwark_imap_inflight_bytes",
        &[],
        "Octets of message data IMAP sessions hold in memory (APPEND literals, bodies read whole for FETCH; bounded by imap.max_inflight_bytes)",
        "bulwark-imap",
    ),
    gauge(
        "bulwark_imap_idle_sessions",
        &["listener"],
        "IMAP sessions in IDLE now",
        "bulwark-imap",
    ),
    counter(
        "bulwark_spf_results_total",
        &["identity", "result"],
        "SPF results (identity: mailfrom, helo; result: pass, fail, softfail, neutral, none, permerror, temperror)",
        "bulwark-senderauth",
    ),
    counter(
        "bulwark_senderid_results_total",
        &["result"],
        "Sender ID results for the PRA (as SPF, plus no_pra)",
        "bulwark-senderauth",
    ),
    counter(
        "bulwark_dkim_results_total",
        &["result"],
        "DKIM verification results (pass, fail, neutral, none, policy, permerror, temperror)",
        "bulwark-senderauth",
    ),
    counter(
        "bulwark_dmarc_results_total",
        &["result"],
        "DMARC results (pass, fail, none, permerror, temperror)",
        "bulwark-senderauth",
    ),
];

/// The catalog entry of a metric name.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

/// The Prometheus recorder could not be installed (another recorder already is).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process-wide `metrics` recorder (once;
/// later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| MetricsError(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The installed recorder's handle, if `install` ran.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE.get().cloned()
}

/// The Prometheus text exposition of every metric now.
pub fn render(handle: &PrometheusHandle) -> String {
    // Without upkeep, histogram buckets would only be drained at render anyway; calling
    // it here keeps memory bounded without a timer task.
    handle.run_upkeep();
    handle.render()
}

/// The mechanisms a listener's protocol labels its password checks with.
fn mechanisms(kind: ListenerKind) -> &'static [&'static str] {
    match kind {
        ListenerKind::Submission | ListenerKind::Submissions | ListenerKind::Smtp => {
            &["PLAIN", "LOGIN"]
        }
        ListenerKind::Imap | ListenerKind::Imaps => &["PLAIN", "LOGIN"],
        ListenerKind::Pop3 | ListenerKind::Pop3s => &["PLAIN", "USER"],
        ListenerKind::Http | ListenerKind::Https | ListenerKind::Metrics => &[],
    }
}

const POP3_VERBS: &[&str] = &[
    "CAPA", "STLS", "USER", "PASS", "APOP", "AUTH", "QUIT", "STAT", "LIST", "RETR", "DELE", "NOOP",
    "RSET", "TOP", "UIDL",
];

const SPF_RESULTS: &[&str] = &[
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "permerror",
    "temperror",
];

/// Describes every catalogued metric to the recorder and creates its usual series at
/// 0: per running listener, per TLS version, per mechanism and result, per delivery
/// outcome, per SPF/Sender ID/DKIM/DMARC result.
pub fn register_catalog(listeners: &[ListenerKind]) {
    for m in CATALOG {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
        }
    }
    for &kind in listeners {
        register_listener(kind);
    }
    register_delivery();
    register_sender_auth();
}

/// Creates the counter series `name{labels}` at 0.
fn zero_counter(name: &'static str, labels: &[(&'static str, &'static str)]) {
    let labels: Vec<metrics::Label> = labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, *v))
        .collect();
    let _ = metrics::counter!(name, labels);
}

/// The series of one running listener: connections and sessions, TLS, then those of
/// its protocol.
fn register_listener(kind: ListenerKind) {
    let c = zero_counter;
    let l = kind.name();
    c("bulwark_connections_total", &[("listener", l)]);
    c("bulwark_sessions_total", &[("listener", l)]);
    let _ = metrics::gauge!("bulwark_sessions_active", "listener" => l);
    for reason in ["total", "per_ip", "descriptors"] {
        c(
            "bulwark_connections_refused_total",
            &[("listener", l), ("reason", reason)],
        );
    }
    if kind.tls_mode() != bulwark_config::TlsMode::None {
        for version in ["TLSv1.2", "TLSv1.3"] {
            c(
                "bulwark_tls_handshakes_total",
                &[("listener", l), ("version", version)],
            );
        }
        c("bulwark_tls_handshake_failures_total", &[("listener", l)]);
    }
    if kind.tls_mode() == bulwark_config::TlsMode::Starttls {
        c("bulwark_starttls_total", &[("listener", l)]);
    }
    if matches!(kind, ListenerKind::Imap | ListenerKind::Imaps) {
        register_imap(l);
    }
    register_auth(kind);
    if matches!(
        kind,
        ListenerKind::Smtp | ListenerKind::Submission | ListenerKind::Submissions
    ) {
        register_smtp(l);
    }
    if matches!(kind, ListenerKind::Pop3 | ListenerKind::Pop3s) {
        register_pop3(l);
    }
}

/// The series of an IMAP listener `l`: commands by result, bad input, messages.
fn register_imap(l: &'static str) {
    let c = zero_counter;
    for command in [
        "LOGIN",
        "AUTHENTICATE",
        "SELECT",
        "FETCH",
        "STORE",
        "SEARCH",
        "APPEND",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "IDLE",
    ] {
        for result in ["ok", "no", "bad"] {
            c(
                "bulwark_imap_commands_total",
                &[("listener", l), ("command", command), ("result", result)],
            );
        }
    }
    for reason in [
        "line_too_long",
        "literal_refused",
        "too_complex",
        "malformed",
        "sasl",
        "mime_too_deep",
        "mime_parts",
        "memory_limit",
    ] {
        c(
            "bulwark_imap_bad_input_total",
            &[("listener", l), ("reason", reason)],
        );
    }
    c("bulwark_imap_messages_appended_total", &[("listener", l)]);
    c("bulwark_imap_write_timeouts_total", &[("listener", l)]);
    c(
        "bulwark_imap_message_bytes_appended_total",
        &[("listener", l)],
    );
    c("bulwark_imap_messages_fetched_total", &[("listener", l)]);
    for op in ["COPY", "MOVE"] {
        c(
            "bulwark_imap_messages_copied_total",
            &[("listener", l), ("op", op)],
        );
    }
    let _ = metrics::gauge!("bulwark_imap_idle_sessions", "listener" => l);
}

/// The password-check series of a listener, per mechanism its protocol offers.
fn register_auth(kind: ListenerKind) {
    let c = zero_counter;
    let l = kind.name();
    for mech in mechanisms(kind) {
        for result in ["success", "failure"] {
            c(
                "bulwark_auth_attempts_total",
                &[("listener", l), ("mechanism", mech), ("result", result)],
            );
        }
    }
    if !mechanisms(kind).is_empty() {
        for reason in ["ip", "account"] {
            c(
                "bulwark_auth_throttled_total",
                &[("listener", l), ("reason", reason)],
            );
        }
    }
}

/// The series of an SMTP or submission listener `l`: messages, commands, rejections.
fn register_smtp(l: &'static str) {
    let c = zero_counter;
    c("bulwark_messages_received_total", &[("listener", l)]);
    c("bulwark_message_bytes_received_total", &[("listener", l)]);
    for name in [
        "bulwark_smtp_quarantined_total",
        "bulwark_smtp_tarpit_total",
        "bulwark_smtp_error_limit_total",
        "bulwark_smtp_timeouts_total",
        "bulwark_smtp_aborted_transfers_total",
        "bulwark_smtp_undeclared_8bit_total",
    ] {
        c(name, &[("listener", l)]);
    }
    for kind in ["local", "remote"] {
        c(
            "bulwark_smtp_recipients_total",
            &[("listener", l), ("kind", kind)],
        );
    }
    for command in ["EHLO", "MAIL", "RCPT", "DATA", "BDAT", "AUTH", "STARTTLS"] {
        c(
            "bulwark_smtp_commands_total",
            &[("listener", l), ("command", command)],
        );
    }
    for reason in [
        "relay_denied",
        "unknown_recipient",
        "bare_lf",
        "size",
        "spoofing",
        "auth_failed",
        "tls_required",
    ] {
        c(
            "bulwark_smtp_rejections_total",
            &[("listener", l), ("reason", reason)],
        );
    }
}

/// The series of a POP3 listener `l`: commands by result, logins, messages.
fn register_pop3(l: &'static str) {
    let c = zero_counter;
    // RFC 1939 / 2449 / 5034 verbs (bulwark-pop3 `command::Verb`).
    for verb in POP3_VERBS {
        for result in ["ok", "err"] {
            c(
                "bulwark_pop3_commands_total",
                &[("listener", l), ("command", verb), ("result", result)],
            );
        }
    }
    for mech in ["USER", "PLAIN"] {
        for result in ["success", "failed", "throttled", "unavailable", "in_use"] {
            c(
                "bulwark_pop3_logins_total",
                &[("listener", l), ("mechanism", mech), ("result", result)],
            );
        }
    }
    for command in ["retr", "top"] {
        c(
            "bulwark_pop3_messages_sent_total",
            &[("listener", l), ("command", command)],
        );
    }
    c("bulwark_pop3_message_bytes_sent_total", &[("listener", l)]);
    c("bulwark_pop3_messages_deleted_total", &[("listener", l)]);
}

/// The series not tied to a listener: queue, delivery, store, certificate.
fn register_delivery() {
    let c = zero_counter;
    for d in ["local", "remote"] {
        c("bulwark_messages_delivered_total", &[("destination", d)]);
        c(
            "bulwark_message_bytes_delivered_total",
            &[("destination", d)],
        );
    }
    c("bulwark_messages_queued_total", &[]);
    c("bulwark_imap_mime_too_deep_total", &[]);
    c("bulwark_message_bytes_queued_total", &[]);
    c("bulwark_messages_bounced_total", &[]);
    c("bulwark_message_bytes_bounced_total", &[]);
    let _ = metrics::gauge!("bulwark_tls_certificate_expiry_seconds");
    let _ = metrics::gauge!("bulwark_smtp_inflight_bytes");
    let _ = metrics::gauge!("bulwark_store_size_bytes");
    let _ = metrics::gauge!("bulwark_store_free_pages");
    c("bulwark_store_reclaimed_bytes_total", &[]);
    let _ = metrics::gauge!("bulwark_imap_inflight_bytes");
    let _ = metrics::gauge!("bulwark_queue_depth");
    let _ = metrics::gauge!("bulwark_queue_oldest_age_seconds");
    let _ = metrics::gauge!("bulwark_queue_deliveries_in_progress");
    c("bulwark_delivery_delay_notices_total", &[]);
    for result in ["converted", "refused"] {
        c("bulwark_delivery_downgrades_total", &[("result", result)]);
    }
    for outcome in ["delivered", "deferred", "failed"] {
        for tls in ["none", "TLSv1.2", "TLSv1.3"] {
            c(
                "bulwark_delivery_attempts_total",
                &[("outcome", outcome), ("tls", tls)],
            );
        }
    }
}

/// The SPF, Sender ID, DKIM and DMARC result series.
fn register_sender_auth() {
    let c = zero_counter;
    for identity in ["mailfrom", "helo"] {
        for r in SPF_RESULTS {
            c(
                "bulwark_spf_results_total",
                &[("identity", identity), ("result", r)],
            );
        }
    }
    for r in SPF_RESULTS.iter().chain(&["no_pra"]) {
        c("bulwark_senderid_results_total", &[("result", r)]);
    }
    for r in [
        "pass",
        "fail",
        "neutral",
        "none",
        "policy",
        "permerror",
        "temperror",
    ] {
        c("bulwark_dkim_results_total", &[("result", r)]);
    }
    for r in ["pass", "fail", "none", "permerror", "temperror"] {
        c("bulwark_dmarc_results_total", &[("result", r)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn render_with(f: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, f);
        handle.render()
    }

    #[test]
    fn a_listener_gets_only_its_protocol_series() {
        let text = render_with(|| register_listener(ListenerKind::Pop3s));
        assert!(text.contains(
            "bulwark_pop3_commands_total{listener=\"pop3s\",command=\"STLS\",result=\"err\"} 0"
        ));
        assert!(text.contains("bulwark_tls_handshake_failures_total{listener=\"pop3s\"} 0"));
        assert!(!text.contains("bulwark_starttls_total"), "{text}");
        assert!(!text.contains("bulwark_smtp_"), "{text}");
        assert!(!text.contains("bulwark_imap_"), "{text}");
        assert!(!text.contains("bulwark_messages_delivered_total"), "{text}");
    }

    #[test]
    fn catalog_series_exist_at_zero_with_help() {
        let text = render_with(|| register_catalog(&ListenerKind::ALL));
        for m in CATALOG {
            assert!(
                text.contains(&format!("# HELP {} ", m.name)),
                "{} not described:\n{text}",
                m.name
            );
            assert!(
                text.lines().any(|l| l.starts_with(m.name)),
                "{} has no series:\n{text}",
                m.name
            );
        }
        assert!(text.contains(
            "bulwark_auth_attempts_total{listener=\"submission\",mechanism=\"PLAIN\",result=\"failure\"} 0"
        ));
        assert!(text.contains("bulwark_starttls_total{listener=\"imap\"} 0"));
        assert!(!text.contains("bulwark_starttls_total{listener=\"imaps\"}"));
    }

    #[test]
    fn catalog_names_are_unique_and_well_formed() {
        for (i, m) in CATALOG.iter().enumerate() {
            assert!(m.name.starts_with("bulwark_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            if m.kind == MetricKind::Counter {
                assert!(m.name.ends_with("_total"), "{}", m.name);
            }
            assert!(
                CATALOG[i + 1..].iter().all(|o| o.name != m.name),
                "{} twice",
                m.name
            );
        }
    }

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("workspace root")
            .to_path_buf()
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    rust_files(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every `counter!("bulwark_…")`/`gauge!`/`histogram!` in the workspace's sources is
    /// in CATALOG, and every catalogued name is in METRICS.md: the list operators read
    /// is the list the code emits.
    #[test]
    fn catalog_covers_every_emitted_metric() {
        let root = workspace_root();
        let mut files = Vec::new();
        rust_files(&root.join("crates"), &mut files);
        let mut missing = Vec::new();
        for f in files {
            if f.ends_with("bulwark-observe/src/metrics.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (i, _) in text.match_indices(macro_name) {
                    let rest = text[i + macro_name.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name: String = rest.chars().take_while(|c| *c != '"').collect();
                    if name.starts_with("bulwark_") && lookup(&name).is_none() {
                        missing.push(format!("{name} ({})", f.display()));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "metrics emitted but not in bulwark-observe/src/metrics.rs CATALOG (add them there and to METRICS.md): {missing:?}"
        );
        let doc = std::fs::read_to_string(root.join("METRICS.md")).expect("METRICS.md");
        for m in CATALOG {
            assert!(
                doc.contains(&format!("`{}`", m.name)),
                "{} is not documented in METRICS.md",
                m.name
            );
        }
    }
}
