//! `--probe`: connect to each running listener from this machine and record what it
//! really offers — STARTTLS/STLS, LOGINDISABLED, authentication before and after TLS,
//! the TLS versions it accepts (1.2 only, 1.3 only, and a raw 1.1 hello), the
//! certificate it presents, whether it relays without authentication — then compare
//! with what the configuration says it should offer.

pub mod conn;
pub mod mail;
pub mod tls;

use std::net::SocketAddr;

use bulwark_config::{metrics_exposed, ListenerKind, LoadedConfig, TlsMode, TlsVersion};
use bulwark_tls::CertInfo;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::conn::{connect_tcp, handshake, ProbeConn, ProbeError, STEP_TIMEOUT};
use self::mail::{http_get, Dialect};
use self::tls::{client_config, legacy_client_hello, parse_legacy_answer, LegacyAnswer, Versions};
use crate::runstate::{availability, probe_address, Availability, RunState};

/// What the configuration says a listener must offer.
#[derive(Debug, Clone)]
pub struct Expectation {
    /// The listener kind probed.
    pub kind: ListenerKind,
    /// TLS from the first byte (implicit-TLS kinds, and metrics beyond loopback).
    pub implicit_tls: bool,
    /// `[tls] min_version`: the lowest version that must be accepted.
    pub min_version: TlsVersion,
    /// The name clients use (SNI).
    pub hostname: String,
    /// SHA-256 of the certificate in `tls.cert`, when it can be read.
    pub cert_sha256: Option<String>,
    /// Metrics beyond loopback: a bearer token is required.
    pub token_required: bool,
}

impl Expectation {
    /// What the configuration in `cfg` says the listener of `kind` must offer.
    pub fn from_config(cfg: &LoadedConfig, kind: ListenerKind) -> Expectation {
        let c = &cfg.config;
        let exposed = kind == ListenerKind::Metrics && metrics_exposed(&c.listeners.metrics);
        Expectation {
            kind,
            implicit_tls: kind.tls_mode() == TlsMode::Implicit || exposed,
            min_version: c.tls.min_version,
            hostname: c.server.hostname.clone(),
            cert_sha256: std::fs::read(cfg.cert_path())
                .ok()
                .and_then(|pem| CertInfo::from_pem(&pem).ok())
                .map(|i| i.sha256),
            token_required: exposed,
        }
    }

    fn dialect(&self) -> Option<Dialect> {
        match self.kind {
            ListenerKind::Smtp | ListenerKind::Submission | ListenerKind::Submissions => {
                Some(Dialect::Smtp)
            }
            ListenerKind::Imap | ListenerKind::Imaps => Some(Dialect::Imap),
            ListenerKind::Pop3 | ListenerKind::Pop3s => Some(Dialect::Pop3),
            ListenerKind::Http | ListenerKind::Https | ListenerKind::Metrics => None,
        }
    }

    fn starttls(&self) -> bool {
        self.kind.tls_mode() == TlsMode::Starttls
    }

    /// Authentication that must be offered once TLS is up.
    fn auth_after_tls(&self) -> &'static [&'static str] {
        match self.kind {
            ListenerKind::Submission | ListenerKind::Submissions => &["PLAIN", "LOGIN"],
            ListenerKind::Imap | ListenerKind::Imaps => &["LOGIN", "PLAIN"],
            ListenerKind::Pop3 | ListenerKind::Pop3s => &["USER", "PLAIN"],
            _ => &[],
        }
    }

    /// One line saying what is configured.
    pub fn describe(&self) -> String {
        let versions = match self.min_version {
            TlsVersion::V1_2 => "TLS 1.2+1.3",
            TlsVersion::V1_3 => "TLS 1.3 only",
        };
        let auth = self.auth_after_tls().join(" ");
        match self.kind {
            ListenerKind::Smtp => format!("STARTTLS; no AUTH before TLS; no relay; {versions}"),
            ListenerKind::Submission => {
                format!("STARTTLS; no AUTH before TLS; {auth} after; no relay; {versions}")
            }
            ListenerKind::Submissions => format!("implicit TLS; {auth}; no relay; {versions}"),
            ListenerKind::Imap => {
                format!("STARTTLS; LOGINDISABLED before TLS; {auth} after; {versions}")
            }
            ListenerKind::Pop3 => {
                format!("STLS; no USER/SASL before TLS; {auth} after; {versions}")
            }
            ListenerKind::Imaps | ListenerKind::Pop3s => {
                format!("implicit TLS; {auth}; {versions}")
            }
            ListenerKind::Metrics if self.token_required => {
                format!("HTTPS; bearer token required; {versions}")
            }
            ListenerKind::Metrics => "plain HTTP on loopback; no token".into(),
            ListenerKind::Http => "redirect to HTTPS".into(),
            ListenerKind::Https => format!("HTTPS; {versions}"),
        }
    }
}

/// A TLS version test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionResult {
    /// Whether the handshake with only this version succeeded.
    pub accepted: bool,
    /// The negotiated session, or why it failed.
    pub detail: String,
}

/// The certificate a listener presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedCert {
    /// The subject distinguished name, as text.
    pub subject: String,
    /// DNS names from subjectAltName (or the CN).
    pub dns_names: Vec<String>,
    /// End of validity, "YYYY-MM-DD HH:MM UTC".
    pub not_after: String,
    /// Issuer equals subject.
    pub self_signed: bool,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub sha256: String,
}

impl ObservedCert {
    fn from_der(der: &[u8]) -> Option<ObservedCert> {
        let i = CertInfo::from_der(der).ok()?;
        Some(ObservedCert {
            subject: i.subject,
            dns_names: i.dns_names,
            not_after: chrono::DateTime::from_timestamp(i.not_after, 0)
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| i.not_after.to_string()),
            self_signed: i.self_signed,
            sha256: i.sha256,
        })
    }
}

/// What the probe saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The greeting line (SMTP 220, IMAP * OK, POP3 +OK).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    /// TLS from the first byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implicit_tls: Option<bool>,
    /// Whether the cleartext capabilities list STARTTLS / STLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starttls_offered: Option<bool>,
    /// IMAP: whether LOGINDISABLED was announced before STARTTLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logindisabled_before_tls: Option<bool>,
    /// Authentication advertised in cleartext.
    pub auth_before_tls: Vec<String>,
    /// The server was ready to take a password in cleartext (AUTH PLAIN got a
    /// challenge, or POP3 USER got +OK); the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleartext_auth_accepted: Option<String>,
    /// Authentication advertised once TLS is up.
    pub auth_after_tls: Vec<String>,
    /// The TLS session of the ordinary handshake, e.g. "TLSv1.3 TLS13_AES_256_GCM_SHA384".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negotiated: Option<String>,
    /// A handshake offering only TLS 1.2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_1_2: Option<VersionResult>,
    /// A handshake offering only TLS 1.3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_1_3: Option<VersionResult>,
    /// TLS 1.0/1.1 (a raw TLS 1.1 ClientHello).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_legacy: Option<VersionResult>,
    /// The certificate presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ObservedCert>,
    /// SMTP: the RCPT reply when a remote recipient was accepted without AUTH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_accepted: Option<String>,
    /// HTTP status of the unauthenticated request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Metrics beyond loopback: a plain HTTP request got an HTTP answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_http_answered: Option<bool>,
    /// Steps that failed, in order (connection, handshake, replies).
    pub errors: Vec<String>,
}

/// A difference between configured and observed, with the finding it raises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The finding id it raises (one of `FINDING_IDS`).
    pub finding: &'static str,
    /// What differs, in words.
    pub text: String,
}

/// One listener's probe.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerProbe {
    /// The listener probed.
    pub listener: ListenerKind,
    /// The address probed (a wildcard bind is probed on loopback); `None` when skipped.
    pub address: Option<SocketAddr>,
    /// What the configuration says it offers, in words.
    pub configured: String,
    /// What it offered.
    pub observed: Observed,
    /// Why it was not probed (e.g. not started by this version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Where configured and observed disagree; empty when they agree.
    pub differences: Vec<Difference>,
}

impl ListenerProbe {
    /// One line saying what was seen.
    pub fn observed_summary(&self) -> String {
        if let Some(s) = &self.skipped {
            return format!("not probed: {s}");
        }
        let o = &self.observed;
        let mut parts = Vec::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        if let Some(t) = o.implicit_tls.filter(|t| *t) {
            parts.push(format!("implicit TLS {}", yes_no(t)));
        }
        if let Some(s) = o.starttls_offered {
            parts.push(format!(
                "{} {}",
                upgrade_verb(self.listener),
                if s { "offered" } else { "NOT offered" }
            ));
        }
        if let Some(l) = o.logindisabled_before_tls {
            parts.push(format!("LOGINDISABLED {}", yes_no(l)));
        }
        if o.starttls_offered.is_some() {
            parts.push(format!(
                "auth before TLS: {}",
                if o.auth_before_tls.is_empty() {
                    "none".to_string()
                } else {
                    o.auth_before_tls.join(" ")
                }
            ));
        }
        if !o.auth_after_tls.is_empty() {
            parts.push(format!("auth after TLS: {}", o.auth_after_tls.join(" ")));
        }
        let v = |r: &Option<VersionResult>| match r {
            Some(r) => yes_no(r.accepted),
            None => "?",
        };
        if o.tls_1_2.is_some() || o.tls_1_3.is_some() {
            parts.push(format!(
                "TLS 1.2 {}, 1.3 {}, 1.0/1.1 {}",
                v(&o.tls_1_2),
                v(&o.tls_1_3),
                v(&o.tls_legacy)
            ));
        }
        if let Some(c) = &o.certificate {
            parts.push(format!(
                "certificate {} ({}) until {}",
                c.subject,
                if c.self_signed {
                    "self-signed"
                } else {
                    "CA-issued"
                },
                c.not_after
            ));
        }
        if let Some(s) = o.http_status {
            parts.push(format!("HTTP {s} without token"));
        }
        if let Some(r) = &o.relay_accepted {
            parts.push(format!("RELAYS without auth ({r})"));
        }
        for e in &o.errors {
            parts.push(format!("error: {e}"));
        }
        parts.join("; ")
    }
}

/// The command that upgrades a cleartext session: POP3 calls it STLS (RFC 2595 §4),
/// SMTP and IMAP STARTTLS.
fn upgrade_verb(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Pop3 | ListenerKind::Pop3s => "STLS",
        _ => "STARTTLS",
    }
}

/// Opens a session: TLS from the first byte when expected.
async fn open(
    exp: &Expectation,
    addr: SocketAddr,
    obs: &mut Observed,
    alpn: &[&[u8]],
) -> Result<ProbeConn, ProbeError> {
    let tcp = connect_tcp(addr).await?;
    if !exp.implicit_tls {
        obs.implicit_tls = Some(false);
        return Ok(ProbeConn::plain(tcp));
    }
    let cfg =
        client_config(Versions::Both, alpn).map_err(|e| ProbeError::Handshake(e.to_string()))?;
    match handshake(tcp, cfg, &exp.hostname).await {
        Ok(s) => {
            obs.implicit_tls = Some(true);
            let c = ProbeConn::tls(s);
            record_session(&c, obs);
            Ok(c)
        }
        Err(e) => {
            obs.implicit_tls = Some(false);
            Err(e)
        }
    }
}

fn record_session(c: &ProbeConn, obs: &mut Observed) {
    if let Some(s) = c.tls_session() {
        obs.negotiated = Some(tls::describe(s));
        if let Some(leaf) = s.peer_certificates().and_then(|c| c.first()) {
            obs.certificate = ObservedCert::from_der(leaf.as_ref());
        }
    }
}

/// Upgrades a cleartext session after the dialect's STARTTLS was accepted.
async fn upgrade(
    c: ProbeConn,
    exp: &Expectation,
    obs: &mut Observed,
) -> Result<ProbeConn, ProbeError> {
    let tcp = c.into_tcp()?;
    let cfg =
        client_config(Versions::Both, &[]).map_err(|e| ProbeError::Handshake(e.to_string()))?;
    let s = handshake(tcp, cfg, &exp.hostname).await?;
    let c = ProbeConn::tls(s);
    record_session(&c, obs);
    Ok(c)
}

/// The main session of a mail listener: capabilities before and after TLS, the
/// cleartext-auth and relay questions.
async fn mail_session(
    exp: &Expectation,
    d: Dialect,
    addr: SocketAddr,
    obs: &mut Observed,
) -> Result<(), ProbeError> {
    let mut c = open(exp, addr, obs, &[]).await?;
    obs.greeting = Some(d.greeting(&mut c).await?);
    let caps = d.capabilities(&mut c).await?;
    if c.is_tls() {
        obs.auth_after_tls = caps.auth;
    } else {
        obs.starttls_offered = Some(caps.starttls);
        obs.auth_before_tls = caps.auth;
        if d == Dialect::Imap {
            obs.logindisabled_before_tls = Some(caps.logindisabled);
        }
        obs.cleartext_auth_accepted = d.try_cleartext_auth(&mut c).await?;
        if !caps.starttls {
            // Nothing more to learn without TLS; the relay question is still asked.
            if d == Dialect::Smtp {
                obs.relay_accepted = d.try_relay(&mut c).await?;
            }
            d.quit(&mut c).await;
            return Ok(());
        }
        d.starttls(&mut c).await?;
        c = upgrade(c, exp, obs).await?;
        obs.auth_after_tls = d.capabilities(&mut c).await?.auth;
    }
    if d == Dialect::Smtp {
        obs.relay_accepted = d.try_relay(&mut c).await?;
    }
    d.quit(&mut c).await;
    Ok(())
}

/// Gets a fresh connection to the point where a TLS handshake starts.
async fn to_handshake(
    exp: &Expectation,
    addr: SocketAddr,
) -> Result<tokio::net::TcpStream, ProbeError> {
    let tcp = connect_tcp(addr).await?;
    if exp.implicit_tls || !exp.starttls() {
        return Ok(tcp);
    }
    let Some(d) = exp.dialect() else {
        return Ok(tcp);
    };
    let mut c = ProbeConn::plain(tcp);
    d.preamble(&mut c).await?;
    c.into_tcp()
}

async fn version_test(
    exp: &Expectation,
    addr: SocketAddr,
    v: Versions,
    alpn: &[&[u8]],
) -> VersionResult {
    let r = async {
        let tcp = to_handshake(exp, addr).await?;
        let cfg = client_config(v, alpn).map_err(|e| ProbeError::Handshake(e.to_string()))?;
        let s = handshake(tcp, cfg, &exp.hostname).await?;
        let d = tls::describe(s.get_ref().1);
        let (mut io, _) = s.into_inner();
        let _ = io.shutdown().await;
        Ok::<String, ProbeError>(d)
    }
    .await;
    match r {
        Ok(d) => VersionResult {
            accepted: true,
            detail: d,
        },
        Err(e) => VersionResult {
            accepted: false,
            detail: e.to_string(),
        },
    }
}

async fn legacy_test(exp: &Expectation, addr: SocketAddr) -> VersionResult {
    let r = async {
        let mut tcp = to_handshake(exp, addr).await?;
        tcp.write_all(&legacy_client_hello(&exp.hostname)).await?;
        let mut buf = Vec::with_capacity(64);
        let answer = tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let mut chunk = [0u8; 64];
                let n = tcp.read(&mut chunk).await?;
                if n == 0 {
                    return Ok::<LegacyAnswer, ProbeError>(LegacyAnswer::Refused(
                        "connection closed".into(),
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
                match parse_legacy_answer(&buf) {
                    LegacyAnswer::Incomplete if buf.len() < 64 => continue,
                    LegacyAnswer::Incomplete => {
                        return Ok(LegacyAnswer::Refused("garbled answer".into()))
                    }
                    a => return Ok(a),
                }
            }
        })
        .await
        .map_err(|_| ProbeError::Timeout("waiting for a ServerHello"))??;
        Ok::<LegacyAnswer, ProbeError>(answer)
    }
    .await;
    match r {
        Ok(LegacyAnswer::Accepted(v)) => VersionResult {
            accepted: true,
            detail: format!("ServerHello {v}"),
        },
        Ok(LegacyAnswer::Refused(why)) => VersionResult {
            accepted: false,
            detail: why,
        },
        Ok(LegacyAnswer::Incomplete) => VersionResult {
            accepted: false,
            detail: "no answer".into(),
        },
        // A reset is a refusal too.
        Err(e) => VersionResult {
            accepted: false,
            detail: e.to_string(),
        },
    }
}

async fn http_session(
    exp: &Expectation,
    addr: SocketAddr,
    obs: &mut Observed,
) -> Result<(), ProbeError> {
    let (path, alpn): (&str, &[&[u8]]) = match exp.kind {
        ListenerKind::Metrics => ("/metrics", &[]),
        _ => ("/", &[b"http/1.1"]),
    };
    if exp.implicit_tls && exp.kind == ListenerKind::Metrics {
        // Beyond loopback a cleartext request must get no HTTP answer at all.
        let mut plain = ProbeConn::plain(connect_tcp(addr).await?);
        obs.plain_http_answered = Some(http_get(&mut plain, &exp.hostname, path).await.is_ok());
    }
    let mut c = open(exp, addr, obs, alpn).await?;
    let (status, location, _) = http_get(&mut c, &exp.hostname, path).await?;
    obs.http_status = Some(status);
    if let Some(l) = location {
        obs.greeting = Some(format!("Location: {l}"));
    }
    Ok(())
}

/// Probes one listener at `addr` and compares with `exp`.
pub async fn probe_listener(exp: &Expectation, addr: SocketAddr) -> ListenerProbe {
    let mut obs = Observed::default();
    let main = match exp.dialect() {
        Some(d) => mail_session(exp, d, addr, &mut obs).await,
        None => http_session(exp, addr, &mut obs).await,
    };
    if let Err(e) = main {
        obs.errors.push(e.to_string());
    }
    let tls_capable = exp.implicit_tls || (exp.starttls() && obs.starttls_offered == Some(true));
    if tls_capable {
        let alpn: &[&[u8]] = if exp.kind == ListenerKind::Https {
            &[b"http/1.1"]
        } else {
            &[]
        };
        obs.tls_1_2 = Some(version_test(exp, addr, Versions::Only12, alpn).await);
        obs.tls_1_3 = Some(version_test(exp, addr, Versions::Only13, alpn).await);
        obs.tls_legacy = Some(legacy_test(exp, addr).await);
    }
    let differences = compare(exp, &obs);
    ListenerProbe {
        listener: exp.kind,
        address: Some(addr),
        configured: exp.describe(),
        observed: obs,
        skipped: None,
        differences,
    }
}

fn diff(finding: &'static str, text: impl Into<String>) -> Difference {
    Difference {
        finding,
        text: text.into(),
    }
}

/// What differs between configured and observed.
// One check after another over the same two values; the probe is being restructured
// by the wire-parsing step of issue 16, so this is not split here.
#[allow(clippy::too_many_lines)]
pub fn compare(exp: &Expectation, o: &Observed) -> Vec<Difference> {
    let mut d = Vec::new();
    if let Some(e) = o.errors.first() {
        if o.greeting.is_none() && o.http_status.is_none() {
            d.push(diff("listener-mismatch", format!("not usable: {e}")));
        }
    }
    let cleartext_finding = match exp.kind {
        ListenerKind::Imap | ListenerKind::Imaps => "imap-cleartext-login",
        ListenerKind::Pop3 | ListenerKind::Pop3s => "pop3-cleartext-login",
        ListenerKind::Metrics => "metrics-unprotected",
        _ => "plaintext-auth",
    };
    if exp.starttls() && exp.dialect().is_some() && o.greeting.is_some() {
        if o.starttls_offered == Some(false) {
            d.push(diff(
                cleartext_finding,
                format!("{} is not offered", upgrade_verb(exp.kind)),
            ));
        }
        if !o.auth_before_tls.is_empty() {
            d.push(diff(
                cleartext_finding,
                format!(
                    "authentication offered before TLS: {}",
                    o.auth_before_tls.join(" ")
                ),
            ));
        }
        if exp.kind == ListenerKind::Imap && o.logindisabled_before_tls == Some(false) {
            d.push(diff(
                cleartext_finding,
                "LOGINDISABLED is not announced before STARTTLS",
            ));
        }
        if let Some(r) = &o.cleartext_auth_accepted {
            d.push(diff(
                cleartext_finding,
                format!("ready to take a password in cleartext ({r})"),
            ));
        }
    }
    if exp.implicit_tls && o.implicit_tls == Some(false) {
        d.push(diff("listener-mismatch", "no TLS from the first byte"));
    }
    let tls_up = o.negotiated.is_some();
    if tls_up {
        for mech in exp.auth_after_tls() {
            if !o
                .auth_after_tls
                .iter()
                .any(|m| m.eq_ignore_ascii_case(mech))
            {
                d.push(diff(
                    "listener-mismatch",
                    format!("{mech} is not offered after TLS"),
                ));
            }
        }
    }
    if let Some(r) = &o.tls_1_2 {
        match (exp.min_version, r.accepted) {
            (TlsVersion::V1_2, false) => d.push(diff(
                "tls-version-mismatch",
                format!(
                    "TLS 1.2 refused although min_version = \"1.2\" ({})",
                    r.detail
                ),
            )),
            (TlsVersion::V1_3, true) => d.push(diff(
                "tls-version-mismatch",
                "TLS 1.2 accepted although min_version = \"1.3\"",
            )),
            _ => {}
        }
    }
    if let Some(r) = o.tls_1_3.as_ref().filter(|r| !r.accepted) {
        d.push(diff(
            "tls-version-mismatch",
            format!("TLS 1.3 refused ({})", r.detail),
        ));
    }
    if let Some(r) = o.tls_legacy.as_ref().filter(|r| r.accepted) {
        d.push(diff(
            "tls-legacy-version",
            format!("legacy TLS accepted: {}", r.detail),
        ));
    }
    if let (Some(c), Some(want)) = (&o.certificate, &exp.cert_sha256) {
        if &c.sha256 != want {
            d.push(diff(
                "cert-not-served",
                format!(
                    "presents certificate sha256 {}…, tls.cert is {}…",
                    &c.sha256[..16],
                    &want[..16.min(want.len())]
                ),
            ));
        }
    }
    if let Some(r) = &o.relay_accepted {
        d.push(diff(
            "open-relay",
            format!("accepted a remote recipient without authentication: {r}"),
        ));
    }
    if exp.kind == ListenerKind::Metrics {
        if exp.token_required {
            if o.plain_http_answered == Some(true) {
                d.push(diff(
                    "metrics-unprotected",
                    "answers plain HTTP although bound beyond loopback",
                ));
            }
            if let Some(s) = o.http_status.filter(|s| *s != 401) {
                d.push(diff(
                    "metrics-unprotected",
                    format!("answers HTTP {s} without the bearer token"),
                ));
            }
        } else if let Some(s) = o.http_status.filter(|s| *s != 200) {
            d.push(diff(
                "listener-mismatch",
                format!("GET /metrics answered HTTP {s}"),
            ));
        }
    }
    d
}

/// Probes every enabled listener of a running server.
pub async fn probe_all(cfg: &LoadedConfig, run: &RunState) -> Vec<ListenerProbe> {
    let mut out = Vec::new();
    for (kind, lc) in cfg.config.listeners.iter() {
        if !lc.enabled {
            continue;
        }
        let mut exp = Expectation::from_config(cfg, kind);
        match run.listener(kind) {
            Some(l) => {
                exp.implicit_tls = l.tls == "implicit-tls";
                let exp_cfg = Expectation::from_config(cfg, kind);
                for a in &l.addrs {
                    let mut p = probe_listener(&exp, probe_address(*a)).await;
                    if exp_cfg.implicit_tls != exp.implicit_tls {
                        p.differences.push(diff(
                            "listener-mismatch",
                            format!("the server runs it with TLS mode {:?}, the configuration says otherwise", l.tls),
                        ));
                    }
                    out.push(p);
                }
            }
            None => {
                let (skipped, differences) = match (run.skipped(kind), availability(kind)) {
                    (_, Availability::NotServed(reason)) => (Some(reason.to_string()), Vec::new()),
                    (Some(s), Availability::Served) => (Some(s.reason.clone()), Vec::new()),
                    (None, Availability::Served) => (
                        Some("not listening".to_string()),
                        vec![diff(
                            "listener-mismatch",
                            "enabled in the configuration but not listening (restart the server?)",
                        )],
                    ),
                };
                out.push(ListenerProbe {
                    listener: kind,
                    address: None,
                    configured: exp.describe(),
                    observed: Observed::default(),
                    skipped,
                    differences,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
