//! The checks as the SMTP server sees them: SPF at MAIL, everything else after DATA,
//! each result turned into an action by `[senderauth]`, all recorded in one
//! Authentication-Results header.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulwark_config::senderauth::{AuthAction, SenderAuthConfig};
use bulwark_wire::Enhanced;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
};

use crate::dns::SpfDns;
use crate::headers::{self, ResInfo};
use crate::pra::{Pra, PraSelector};
use crate::received::{self, Walk};
use crate::spf::{self, Evaluation, Query, Scope, SpfResult};

/// What the SMTP server must do with the message (or the MAIL command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver as usual.
    Accept,
    /// Deliver; a warning header is among the headers to prepend.
    Tag,
    /// Deliver to the recipients' Junk folder.
    Quarantine,
    /// Permanent refusal: `code enhanced text`, e.g. `550 5.7.23 ...`.
    Reject {
        /// The reply code (5xx).
        code: u16,
        /// The enhanced status code (RFC 3463).
        enhanced: Enhanced,
        /// The reply text.
        text: String,
    },
    /// Temporary refusal: `451 4.7.x ...`.
    TempFail {
        /// The reply code (4xx).
        code: u16,
        /// The enhanced status code (RFC 3463).
        enhanced: Enhanced,
        /// The reply text.
        text: String,
    },
}

impl Action {
    fn rank(&self) -> u8 {
        match self {
            Action::Accept => 0,
            Action::Tag => 1,
            Action::Quarantine => 2,
            Action::TempFail { .. } => 3,
            Action::Reject { .. } => 4,
        }
    }

    /// The stricter of two actions (a permanent refusal beats a temporary one).
    pub fn max(self, other: Action) -> Action {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// True for `Reject` and `TempFail`: the message (or MAIL) is refused.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Action::Reject { .. } | Action::TempFail { .. })
    }

    /// The SMTP reply line for a refusal: `550 5.7.23 text`.
    pub fn reply(&self) -> Option<String> {
        match self {
            Action::Reject {
                code,
                enhanced,
                text,
            }
            | Action::TempFail {
                code,
                enhanced,
                text,
            } => Some(format!("{code} {enhanced} {text}")),
            _ => None,
        }
    }

    /// The lower-case name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject { .. } => "reject",
            Action::TempFail { .. } => "tempfail",
        }
    }
}

/// At most this many DKIM signatures are verified per message (RFC 6376 §6.1 lets a
/// verifier limit them); more are reported as not verified.
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// The stricter of two configured actions.
fn stricter(a: AuthAction, b: AuthAction) -> AuthAction {
    let rank = |a: AuthAction| match a {
        AuthAction::Accept => 0,
        AuthAction::Tag => 1,
        AuthAction::Quarantine => 2,
        AuthAction::Tempfail => 3,
        AuthAction::Reject => 4,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// How telling a DMARC result is, to pick the decisive domain among equal actions.
fn dmarc_rank(result: &str) -> u8 {
    match result {
        "fail" => 4,
        "temperror" => 3,
        "permerror" => 2,
        "none" => 1,
        _ => 0,
    }
}

/// The distinct domains of the From addresses (lower case, in order of appearance),
/// each with its addresses.
fn from_domains(froms: &[String]) -> Vec<(String, Vec<String>)> {
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in froms {
        let Some((_, d)) = f.rsplit_once('@') else {
            continue;
        };
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            continue;
        }
        if !by.contains_key(&d) {
            order.push(d.clone());
        }
        by.entry(d).or_default().push(f.clone());
    }
    order
        .into_iter()
        .map(|d| {
            let a = by.remove(&d).unwrap_or_default();
            (d, a)
        })
        .collect()
}

/// The TXT names mail-auth will ask for this message: each verified signature's key
/// (RFC 6376 §3.6.2.1) and the DMARC tree walks (RFC 9989 §4.10, as mail-auth 0.12
/// walks them) of the From domains, the MAIL FROM domain and the signing domains
/// (relaxed alignment looks up their Organizational Domains).
fn mail_auth_txt_names(msg: &AuthenticatedMessage<'_>, mail_from_domain: &str) -> Vec<String> {
    let mut names: Vec<String> = msg
        .dkim_headers
        .iter()
        .map(|h| format!("{}._domainkey.{}", h.header.s, h.header.d))
        .collect();
    let mut domains: Vec<String> = from_domains(msg.froms())
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    domains.push(mail_from_domain.to_ascii_lowercase());
    domains.extend(
        msg.dkim_headers
            .iter()
            .map(|h| h.header.d.to_ascii_lowercase()),
    );
    for d in domains {
        names.extend(dmarc_walk(&d).into_iter().map(|n| format!("_dmarc.{n}")));
    }
    names.sort();
    names.dedup();
    names
}

/// The names a DMARC tree walk visits (RFC 9989 §4.10): the domain itself, then at
/// most 7 labels, then one label fewer each step down to the top-level domain; none
/// for a single-label name.
fn dmarc_walk(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    let mut out = Vec::new();
    if total < 2 {
        return out;
    }
    let mut count = total;
    loop {
        out.push(labels[total - count..].join("."));
        if count == 1 {
            break;
        }
        count = if count >= 8 { 7 } else { count - 1 };
    }
    out
}

/// Printable, bounded text for a reply line (an `exp=` text comes from DNS).
fn reply_text(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// What an SPF result means for `who`, in words a sender can act on: a refusal must
/// give its real reason (a DNS failure is no "not allowed to send").
fn spf_reason(ev: &Evaluation, who: &str) -> String {
    match ev.result {
        SpfResult::TempError => {
            format!("SPF temperror for {who}: could not look up its SPF record")
        }
        SpfResult::PermError => format!("SPF permerror for {who}: its SPF record is invalid"),
        SpfResult::None => format!("SPF none for {who}: it publishes no SPF record"),
        SpfResult::Neutral => format!(
            "SPF neutral for {who}: it makes no statement about {}",
            ev.ip
        ),
        SpfResult::Pass => format!("SPF pass for {who}"),
        SpfResult::Fail | SpfResult::SoftFail => {
            let exp = ev
                .explanation
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            format!(
                "SPF {} for {who}: {} is not allowed to send this mail{exp}",
                ev.result, ev.ip
            )
        }
    }
}

fn spf_action(a: AuthAction, ev: &Evaluation) -> Action {
    let who = if ev.scope == Scope::Helo {
        format!("HELO {}", ev.domain)
    } else {
        ev.domain.clone()
    };
    match a {
        AuthAction::Accept => Action::Accept,
        AuthAction::Tag => Action::Tag,
        AuthAction::Quarantine => Action::Quarantine,
        // RFC 7372 §3.2: X.7.23 SPF validation failed, X.7.24 SPF validation error.
        AuthAction::Reject => Action::Reject {
            code: 550,
            enhanced: match ev.result {
                SpfResult::PermError | SpfResult::TempError => Enhanced::new(5, 7, 24),
                _ => Enhanced::new(5, 7, 23),
            },
            text: reply_text(&spf_reason(ev, &who)),
        },
        AuthAction::Tempfail => Action::TempFail {
            code: 451,
            enhanced: Enhanced::new(4, 7, 24),
            text: reply_text(&format!("{}; try again later", spf_reason(ev, &who))),
        },
    }
}

/// What a DKIM summary result means (RFC 8601 §2.7.1), for a refusal's text.
fn dkim_reason(best: &str) -> String {
    match best {
        "temperror" => "could not look up a signing key (temperror)".into(),
        "permerror" => "a signature cannot be checked (permerror)".into(),
        "fail" => "the signature does not verify (fail)".into(),
        "none" => "the message is not signed (none)".into(),
        other => format!("signature {other}"),
    }
}

/// What one Author Domain's DMARC result means (RFC 7489), for a refusal's text:
/// only a `fail` is a rejection by the domain's policy.
fn dmarc_reason(dm: &DmarcCheck) -> String {
    let d = &dm.domain;
    match dm.result {
        "fail" => format!(
            "rejected by the DMARC policy of {d} (p={})",
            dm.policy.unwrap_or("none")
        ),
        "temperror" => format!("could not look up the DMARC record of {d} (temperror)"),
        "permerror" => format!("the DMARC record of {d} cannot be evaluated (permerror)"),
        "none" => format!("{d} publishes no DMARC record (none)"),
        other => format!("DMARC {other} for {d}"),
    }
}

fn other_action(a: AuthAction, check: &str, what: &str) -> Action {
    match a {
        AuthAction::Accept => Action::Accept,
        AuthAction::Tag => Action::Tag,
        AuthAction::Quarantine => Action::Quarantine,
        AuthAction::Reject => Action::Reject {
            code: 550,
            enhanced: Enhanced::new(5, 7, 1),
            text: reply_text(&format!("{check}: {what}")),
        },
        AuthAction::Tempfail => Action::TempFail {
            code: 451,
            enhanced: Enhanced::new(4, 7, 1),
            text: reply_text(&format!("{check}: {what}; try again later")),
        },
    }
}

/// Counts one result, under the names of the metrics catalog (METRICS.md):
/// `bulwark_spf_results_total{identity,result}`, `bulwark_senderid_results_total`,
/// `bulwark_dkim_results_total`, `bulwark_dmarc_results_total` (`{result}`).
fn count(check: &'static str, result: &str) {
    let result = result.to_string();
    match check {
        "spf_helo" => metrics::counter!("bulwark_spf_results_total", "identity" => "helo", "result" => result).increment(1),
        "spf" => metrics::counter!("bulwark_spf_results_total", "identity" => "mailfrom", "result" => result).increment(1),
        "sender_id" => metrics::counter!("bulwark_senderid_results_total", "result" => result).increment(1),
        "dkim" => metrics::counter!("bulwark_dkim_results_total", "result" => result).increment(1),
        _ => metrics::counter!("bulwark_dmarc_results_total", "result" => result).increment(1),
    }
}

fn count_spf(ev: &Evaluation) {
    count(
        if ev.scope == Scope::Helo {
            "spf_helo"
        } else {
            "spf"
        },
        ev.result.as_str(),
    );
}

/// SPF as decided at MAIL time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfOutcome {
    /// `None` when not checked at MAIL: the client is one of our internal servers
    /// (checked after DATA against the Received walk) or checks are disabled.
    pub evaluation: Option<Evaluation>,
    /// What to do now: a `Reject`/`TempFail` is the reply to MAIL.
    pub action: Action,
}

/// Sender ID as decided after DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once per message; boxing buys nothing
pub enum SenderIdOutcome {
    /// The PRA was found and checked (RFC 4406 §4).
    Checked {
        /// The Purported Responsible Address and the header field it came from.
        pra: Pra,
        /// The SPF check of its domain in the `pra` scope.
        evaluation: Evaluation,
    },
    /// RFC 4407 §2 step 6.
    NoPra {
        /// Why no PRA could be selected (shown in Authentication-Results).
        reason: String,
    },
}

/// One verified DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    /// pass, fail, neutral, permerror, temperror (RFC 8601 §2.7.1).
    pub result: &'static str,
    /// The domain of the signature (d=).
    pub domain: String,
    /// The selector (s=).
    pub selector: String,
    /// The signature algorithm (a=), as RFC 8601 writes it; empty for a summary.
    pub algorithm: &'static str,
    /// First 8 characters of b= (RFC 6008), to tell signatures apart.
    pub b: String,
    /// Why the result is not pass, when there is a reason worth showing.
    pub reason: Option<String>,
}

impl DkimCheck {
    fn of(
        result: &'static str,
        sig: Option<&mail_auth::dkim::Signature>,
        reason: Option<String>,
    ) -> DkimCheck {
        DkimCheck {
            result,
            domain: sig.map(|s| s.d.clone()).unwrap_or_default(),
            selector: sig.map(|s| s.s.clone()).unwrap_or_default(),
            algorithm: match sig.map(|s| s.a) {
                Some(Algorithm::Ed25519Sha256) => "ed25519-sha256",
                Some(Algorithm::RsaSha1) => "rsa-sha1",
                Some(_) => "rsa-sha256",
                None => "",
            },
            b: sig
                .map(|s| {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .encode(&s.b)
                        .chars()
                        .take(8)
                        .collect()
                })
                .unwrap_or_default(),
            reason,
        }
    }

    /// A result that stands for no particular signature (a summary or an error that
    /// prevented verification).
    fn summary(result: &'static str, reason: &str) -> DkimCheck {
        DkimCheck::of(result, None, Some(reason.to_string()))
    }
}

/// The DMARC check of one RFC5322.From domain (RFC 7489).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    /// pass, fail, none, permerror, temperror.
    pub result: &'static str,
    /// The RFC5322.From domain.
    pub domain: String,
    /// The policy requested by the domain for this message (none/quarantine/reject),
    /// after pct= sampling.
    pub policy: Option<&'static str>,
    /// pct= below 100 and this message fell outside the sample (RFC 7489 §6.6.4).
    pub sampled_out: bool,
    /// Why there is no ordinary result (no From, unparseable headers, timeout).
    pub reason: Option<String>,
}

impl DmarcCheck {
    /// A result without a policy behind it (no record applied, or none could be
    /// looked at), with the reason.
    fn without_result(result: &'static str, domain: String, reason: &str) -> DmarcCheck {
        DmarcCheck {
            result,
            domain,
            policy: None,
            sampled_out: false,
            reason: Some(reason.to_string()),
        }
    }
}

/// Everything checked for one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Results {
    /// The SPF check of MAIL FROM (or HELO when MAIL FROM is null).
    pub spf: Option<Evaluation>,
    /// Set when the checked IP/HELO came from the Received walk (internal relay).
    pub via_relay: Option<received::ExternalHop>,
    /// Sender ID (RFC 4406): the PRA and its check.
    pub sender_id: Option<SenderIdOutcome>,
    /// Every DKIM signature checked (RFC 6376), or one summary result.
    pub dkim: Vec<DkimCheck>,
    /// The decisive DMARC result: the one whose action is the strictest.
    pub dmarc: Option<DmarcCheck>,
    /// One result per RFC5322.From domain (RFC 7489 §6.6.1), in order.
    pub dmarc_domains: Vec<DmarcCheck>,
    /// Why some checks were skipped (message from inside, unreadable Received).
    pub note: Option<String>,
}

/// The decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Authentication-Results, Received-SPF and possibly X-Bulwark-Auth-Warning,
    /// CRLF-terminated, to put on top of the message.
    pub headers_to_prepend: String,
    /// The strictest action of all checks.
    pub action: Action,
    /// Everything checked, for Authentication-Results and the protocol log.
    pub results: Results,
    authserv_id: String,
}

impl Verdict {
    /// The message to store: every header field we would add that arrived with it
    /// removed (`headers::strip_forged_results`, RFC 8601 §5), our headers on top.
    pub fn apply(&self, message: &[u8]) -> Vec<u8> {
        let (_, stripped) = headers::strip_forged_results(message, &self.authserv_id);
        let mut out = Vec::with_capacity(self.headers_to_prepend.len() + stripped.len());
        out.extend_from_slice(self.headers_to_prepend.as_bytes());
        out.extend_from_slice(&stripped);
        out
    }
}

/// Sender authentication for one server: configuration, our host name, DNS.
pub struct SenderAuth {
    cfg: SenderAuthConfig,
    hostname: String,
    spf_dns: SpfDns,
    authenticator: MessageAuthenticator,
    sample: AtomicU64,
}

impl SenderAuth {
    /// `resolver` is shared: its cache serves SPF, DKIM and DMARC lookups alike, and
    /// one single-flight gate in front of it serves every check of this server.
    pub fn new(
        config: &SenderAuthConfig,
        hostname: &str,
        resolver: impl Into<bulwark_dns::SharedResolver>,
    ) -> SenderAuth {
        let shared: bulwark_dns::SharedResolver = resolver.into();
        SenderAuth {
            cfg: config.clone(),
            hostname: hostname.to_ascii_lowercase(),
            spf_dns: SpfDns::new(shared.clone()),
            authenticator: MessageAuthenticator(shared.hickory().clone()),
            sample: AtomicU64::new(0),
        }
    }

    /// Built from the whole configuration: `[senderauth]`, `[dns]`, the host name.
    pub fn from_config(
        config: &bulwark_config::Config,
    ) -> Result<SenderAuth, bulwark_dns::DnsError> {
        let resolver = bulwark_dns::SharedResolver::from_config(&config.dns)?;
        Ok(SenderAuth::new(
            &config.senderauth,
            &config.server.hostname,
            resolver,
        ))
    }

    /// Our host name: the authserv-id of the Authentication-Results we write (RFC 8601 §2.5).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Whether the checks are on (`[senderauth] enabled`).
    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// True when `ip` is one of `[senderauth] internal_servers`.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        received::is_internal(ip, &self.cfg.internal_servers)
    }

    /// The raw SPF evaluation of an identity (what `bulwark spf check` shows).
    pub async fn evaluate_spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> Evaluation {
        let (scope, domain, sender) = spf_identity(helo, mail_from);
        spf::check_host(
            &self.spf_dns,
            Query {
                ip,
                domain: &domain,
                sender: &sender,
                helo,
                receiver: &self.hostname,
                scope,
            },
        )
        .await
    }

    /// The Sender ID evaluation of a PRA (RFC 4406 §4).
    pub async fn evaluate_pra(&self, ip: IpAddr, helo: &str, pra: &Pra) -> Evaluation {
        spf::check_host(
            &self.spf_dns,
            Query {
                ip,
                domain: &pra.domain,
                sender: &pra.address,
                helo,
                receiver: &self.hostname,
                scope: Scope::Pra,
            },
        )
        .await
    }

    /// SPF at MAIL time (RFC 7208 §2.4: MAIL FROM, or the HELO identity for a null
    /// reverse-path). `mail_from` is the address without angle brackets ("" = null).
    pub async fn check_mail_from(&self, ip: IpAddr, helo: &str, mail_from: &str) -> SpfOutcome {
        if !self.cfg.enabled || self.is_internal(ip) {
            return SpfOutcome {
                evaluation: None,
                action: Action::Accept,
            };
        }
        let ev = self.evaluate_spf(ip, helo, mail_from).await;
        count_spf(&ev);
        let action = spf_action(self.spf_policy(ev.result), &ev);
        SpfOutcome {
            evaluation: Some(ev),
            action,
        }
    }

    /// RFC 7505 §4.2: a MAIL FROM domain that publishes a null MX declares it sends
    /// no mail (and could take no bounce): refused with 550 5.7.27. When DNS cannot
    /// answer the sender is accepted (the other checks still run).
    pub async fn check_null_mx_sender(&self, mail_from: &str) -> Action {
        if !self.cfg.enabled || !self.cfg.reject_null_mx_senders {
            return Action::Accept;
        }
        let Some((_, domain)) = mail_from.rsplit_once('@') else {
            return Action::Accept;
        };
        match self.spf_dns.mx(domain).await {
            Ok(names) if names.len() == 1 && names[0].is_empty() => {
                tracing::info!(target: "bulwark::senderauth", %domain, "MAIL FROM refused: the domain publishes a null MX");
                Action::Reject {
                    code: 550,
                    enhanced: Enhanced::new(5, 7, 27),
                    text: reply_text(&format!(
                        "Sender address rejected: {domain} publishes a null MX and sends no mail (RFC 7505)"
                    )),
                }
            }
            _ => Action::Accept,
        }
    }

    /// RFC 7505 §3: whether `domain` publishes a null MX (a single MX of "."), i.e.
    /// accepts no mail at all. False when it does not or DNS cannot answer: only a
    /// route known to fail counts. Not gated on `enabled`: the caller decides.
    pub async fn publishes_null_mx(&self, domain: &str) -> bool {
        matches!(self.spf_dns.mx(domain).await, Ok(names) if names.len() == 1 && names[0].is_empty())
    }

    fn spf_policy(&self, r: SpfResult) -> AuthAction {
        let p = &self.cfg.spf;
        match r {
            SpfResult::Pass => p.pass,
            SpfResult::Fail => p.fail,
            SpfResult::SoftFail => p.softfail,
            SpfResult::Neutral => p.neutral,
            SpfResult::None => p.none,
            SpfResult::PermError => p.permerror,
            SpfResult::TempError => p.temperror,
        }
    }

    fn sender_id_policy(&self, r: SpfResult) -> AuthAction {
        let p = &self.cfg.sender_id;
        match r {
            SpfResult::Pass => p.pass,
            SpfResult::Fail => p.fail,
            SpfResult::SoftFail => p.softfail,
            SpfResult::Neutral => p.neutral,
            SpfResult::None => p.none,
            SpfResult::PermError => p.permerror,
            SpfResult::TempError => p.temperror,
        }
    }

    /// RFC 7489 §6.6.4: with pct below 100, a failing message outside the sample is
    /// treated with the next lower policy.
    fn in_sample(&self, pct: u8) -> bool {
        if pct >= 100 {
            return true;
        }
        // A multiplicative hash of a counter: evenly spread, no RNG dependency.
        let n = self.sample.fetch_add(1, Ordering::Relaxed);
        (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 100 < u64::from(pct)
    }

    /// Everything after DATA: SPF (if deferred), Sender ID, DKIM, DMARC, the
    /// headers to add and the action. `ip`/`helo`/`mail_from` are the session's; when
    /// `ip` is an internal server the checked IP and HELO come from the Received walk.
    pub async fn check_message(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        spf_at_mail: &SpfOutcome,
        message: &[u8],
    ) -> Verdict {
        if !self.cfg.enabled {
            return self.finish(Results::default(), Action::Accept, Vec::new());
        }
        // A hostile message (many signatures, slow DNS behind its domains) must not hold
        // the SMTP session forever: the whole check has one budget; beyond it the result
        // is a temperror and `[senderauth.dmarc] temperror` decides (451 by default).
        let limit = Duration::from_secs(self.cfg.check_timeout_secs.max(1));
        match tokio::time::timeout(
            limit,
            self.check_message_within(ip, helo, mail_from, spf_at_mail, message),
        )
        .await
        {
            Ok(v) => v,
            Err(_) => self.timed_out(spf_at_mail, message, limit),
        }
    }

    /// The verdict when the checks after DATA did not finish in time.
    fn timed_out(&self, spf_at_mail: &SpfOutcome, message: &[u8], limit: Duration) -> Verdict {
        let why = format!(
            "the sender checks did not finish within {} seconds",
            limit.as_secs()
        );
        tracing::warn!(target: "bulwark::senderauth", "{why}; treated as temperror");
        count("dkim", "temperror");
        count("dmarc", "temperror");
        let domain = crate::sign::from_domain(message).unwrap_or_default();
        let mut results = Results {
            spf: spf_at_mail.evaluation.clone(),
            ..Results::default()
        };
        results.dkim.push(DkimCheck::summary("temperror", &why));
        let dm = DmarcCheck::without_result("temperror", domain, &why);
        let action =
            spf_at_mail
                .action
                .clone()
                .max(other_action(self.cfg.dmarc.temperror, "DMARC", &why));
        let mut decision = Decision {
            action,
            tagged: Vec::new(),
        };
        decision.tag_if(self.cfg.dmarc.temperror, || "dmarc=temperror".into());
        results.dmarc_domains.push(dm.clone());
        results.dmarc = Some(dm);
        self.finish(results, decision.action, decision.tagged)
    }

    /// The checks after DATA, in their fixed order: prepare (parse, connecting hop),
    /// SPF, Sender ID, DKIM, DMARC, then the verdict and its headers.
    async fn check_message_within(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        spf_at_mail: &SpfOutcome,
        message: &[u8],
    ) -> Verdict {
        let mut results = Results::default();
        let parsed = AuthenticatedMessage::parse(message);
        let header_list: Vec<(&[u8], &[u8])> = parsed
            .as_ref()
            .map(|m| m.headers.clone())
            .unwrap_or_default();
        let walk = self
            .is_internal(ip)
            .then(|| received::first_external_hop(&header_list, &self.cfg.internal_servers));
        let session = Client { ip, helo };
        let hop = connecting_hop(walk, parsed.is_some());
        match &hop {
            Hop::Inside => {
                results.note = Some(format!(
                    "message from inside: every hop is an internal server of {}",
                    self.hostname
                ));
                return self.finish(results, Action::Accept, Vec::new());
            }
            Hop::Check(via) => results.via_relay = via.clone(),
            Hop::Unknown(_) => {}
        }
        let mut decision = Decision::default();
        let spf_ev = self
            .spf_stage(session, &hop, mail_from, spf_at_mail, &mut decision)
            .await;
        results.sender_id = Some(
            self.sender_id_stage(session, &hop, &header_list, &mut decision)
                .await,
        );
        // DKIM and DMARC need the header section. Without it no domain's policy can be
        // honoured, so the message gets `[senderauth] unparseable` (reject by default)
        // instead of slipping through unchecked.
        let Some(msg) = &parsed else {
            self.unparseable_stage(&mut results, &mut decision);
            results.spf = Some(spf_ev);
            return self.finish(results, decision.action, decision.tagged);
        };
        let selection = DkimSelection::of(msg);
        let outputs = self
            .dkim_stage(&selection, &spf_ev.domain, &mut results, &mut decision)
            .await;
        self.dmarc_stage(msg, &outputs, &spf_ev, &mut results, &mut decision)
            .await;
        results.spf = Some(spf_ev);
        self.finish(results, decision.action, decision.tagged)
    }

    /// SPF after DATA: the MAIL-time result unless it was deferred (an internal client:
    /// the external hop is checked now) or no hop can be read (permerror).
    async fn spf_stage(
        &self,
        session: Client<'_>,
        hop: &Hop,
        mail_from: &str,
        spf_at_mail: &SpfOutcome,
        decision: &mut Decision,
    ) -> Evaluation {
        let ev = match (&spf_at_mail.evaluation, hop) {
            (_, Hop::Unknown(why)) => {
                let (scope, domain, sender) = spf_identity(session.helo, mail_from);
                let ev = unchecked_evaluation(
                    scope,
                    domain,
                    sender,
                    session,
                    format!(
                        "no readable external hop behind internal server {} ({why})",
                        session.ip
                    ),
                );
                count_spf(&ev);
                decision.refuse(spf_action(self.spf_policy(ev.result), &ev));
                ev
            }
            (Some(ev), Hop::Check(None)) => {
                decision.refuse(spf_at_mail.action.clone());
                ev.clone()
            }
            _ => {
                let checked = hop.client(session);
                let ev = self.evaluate_spf(checked.ip, checked.helo, mail_from).await;
                count_spf(&ev);
                decision.refuse(spf_action(self.spf_policy(ev.result), &ev));
                ev
            }
        };
        decision.tag_if(self.spf_policy(ev.result), || format!("spf={}", ev.result));
        ev
    }

    /// Sender ID (RFC 4406): the PRA of the header fields, checked against the hop.
    async fn sender_id_stage(
        &self,
        session: Client<'_>,
        hop: &Hop,
        headers: &[(&[u8], &[u8])],
        decision: &mut Decision,
    ) -> SenderIdOutcome {
        let pra = match PraSelector::select(headers) {
            Ok(pra) => pra,
            Err(no) => {
                count("sender_id", "no_pra");
                let a = self.cfg.sender_id.no_pra;
                decision.tag_if(a, || "sender-id=no-pra".into());
                decision.refuse(other_action(
                    a,
                    "Sender ID",
                    &format!("no responsible sender address ({})", no.reason),
                ));
                return SenderIdOutcome::NoPra { reason: no.reason };
            }
        };
        let ev = match hop {
            Hop::Unknown(why) => unchecked_evaluation(
                Scope::Pra,
                pra.domain.clone(),
                pra.address.clone(),
                session,
                format!("no readable external hop ({why})"),
            ),
            _ => {
                let checked = hop.client(session);
                self.evaluate_pra(checked.ip, checked.helo, &pra).await
            }
        };
        count("sender_id", ev.result.as_str());
        let a = self.sender_id_policy(ev.result);
        decision.tag_if(a, || format!("sender-id={}", ev.result));
        decision.refuse(other_action(
            a,
            "Sender ID",
            &format!("{} for {} ({})", ev.result, pra.address, ev.reason),
        ));
        SenderIdOutcome::Checked {
            pra,
            evaluation: ev,
        }
    }

    /// No header section to read: DKIM and DMARC are permerrors and
    /// `[senderauth] unparseable` decides.
    fn unparseable_stage(&self, results: &mut Results, decision: &mut Decision) {
        let why = "the header section cannot be parsed";
        count("dkim", "permerror");
        count("dmarc", "permerror");
        results.dkim.push(DkimCheck::summary("permerror", why));
        let dm = DmarcCheck::without_result("permerror", String::new(), why);
        results.dmarc_domains.push(dm.clone());
        results.dmarc = Some(dm);
        let a = self.cfg.unparseable;
        decision.tag_if(a, || "unparseable".into());
        decision.refuse(other_action(
            a,
            "Message refused",
            "the header section cannot be parsed, so its sender cannot be authenticated (DKIM, DMARC)",
        ));
    }

    /// DKIM (RFC 6376) over the signatures [`DkimSelection`] picks; the outputs feed
    /// DMARC.
    async fn dkim_stage<'x>(
        &self,
        selection: &'x DkimSelection<'x>,
        spf_domain: &str,
        results: &mut Results,
        decision: &mut Decision,
    ) -> Vec<DkimOutput<'x>> {
        self.spf_dns
            .prefetch_txt(mail_auth_txt_names(&selection.verify, spf_domain))
            .await;
        let outputs = self.authenticator.verify_dkim(&selection.verify).await;
        results.dkim.extend(selection.report(&outputs));
        let best = best_dkim(&results.dkim);
        count("dkim", best);
        let a = self.dkim_policy(best);
        decision.tag_if(a, || format!("dkim={best}"));
        decision.refuse(other_action(a, "DKIM", &dkim_reason(best)));
        outputs
    }

    /// DMARC (RFC 7489): each Author Domain on its own, the strictest outcome decides.
    /// The SPF input is the MAIL FROM identity (or HELO); only the signatures we
    /// verified feed it (rsa-sha1 and unverified ones are no signatures for DMARC).
    async fn dmarc_stage(
        &self,
        msg: &AuthenticatedMessage<'_>,
        outputs: &[DkimOutput<'_>],
        spf_ev: &Evaluation,
        results: &mut Results,
        decision: &mut Decision,
    ) {
        let spf_domain = spf_ev.domain.clone();
        let spf_for_dmarc =
            SpfOutput::new(spf_domain.clone()).with_result(to_mail_auth(spf_ev.result));
        let domains = from_domains(msg.froms());
        if domains.is_empty() {
            // RFC 7489 §6.6.1: no usable RFC5322.From, so there is no Author Domain
            // whose policy could be honoured. Recorded as permerror, and at least
            // tagged: a message that names no author is not an ordinary one.
            let why = no_author_reason(msg.froms());
            count("dmarc", "permerror");
            let dm = DmarcCheck::without_result("permerror", String::new(), why);
            let a = stricter(self.cfg.dmarc.permerror, AuthAction::Tag);
            decision.tag_if(a, || "dmarc=permerror".into());
            decision.refuse(other_action(a, "DMARC", why));
            results.dmarc_domains.push(dm.clone());
            results.dmarc = Some(dm);
            return;
        }
        // RFC 7489 §6.6.1: with several From domains mail-auth returns no result at
        // all ("exempt"), which would let a forged p=reject domain through next to a
        // harmless one. Each Author Domain is evaluated on its own and the strictest
        // outcome applies.
        let mut decisive: Option<(Action, DmarcCheck, AuthAction)> = None;
        for (domain, addrs) in domains {
            let mut one = msg.clone();
            one.from = addrs;
            let out = self
                .authenticator
                .verify_dmarc(DmarcParameters::new(
                    &one,
                    outputs,
                    &spf_domain,
                    &spf_for_dmarc,
                ))
                .await;
            let dm = self.dmarc_check(&domain, &out).await;
            let a = self.dmarc_policy(&dm);
            let act = other_action(a, "DMARC", &dmarc_reason(&dm));
            results.dmarc_domains.push(dm.clone());
            if more_decisive(&act, &dm, decisive.as_ref().map(|(d, prev, _)| (d, prev))) {
                decisive = Some((act, dm, a));
            }
        }
        if let Some((act, dm, a)) = decisive {
            count("dmarc", dm.result);
            decision.tag_if(a, || format!("dmarc={}", dm.result));
            decision.refuse(act);
            results.dmarc = Some(dm);
        }
    }

    fn dkim_policy(&self, best: &str) -> AuthAction {
        let p = &self.cfg.dkim;
        match best {
            "pass" => p.pass,
            "fail" => p.fail,
            "neutral" => p.neutral,
            "permerror" => p.permerror,
            "temperror" => p.temperror,
            _ => p.none,
        }
    }

    fn dmarc_policy(&self, dm: &DmarcCheck) -> AuthAction {
        let d = &self.cfg.dmarc;
        match (dm.result, dm.policy) {
            ("pass", _) => d.pass,
            ("fail", Some("reject")) => d.fail_p_reject,
            ("fail", Some("quarantine")) => d.fail_p_quarantine,
            ("fail", _) => d.fail_p_none,
            ("permerror", _) => d.permerror,
            ("temperror", _) => d.temperror,
            _ => d.none,
        }
    }

    /// One Author Domain's DMARC result from mail-auth's output.
    async fn dmarc_check(&self, domain: &str, out: &mail_auth::DmarcOutput) -> DmarcCheck {
        let domain = if out.domain().is_empty() {
            domain.to_string()
        } else {
            out.domain().to_string()
        };
        let err = |r: &DmarcResult| match r {
            DmarcResult::TempError(_) => Some("temperror"),
            DmarcResult::PermError(_) => Some("permerror"),
            _ => None,
        };
        let Some(record) = out.dmarc_record() else {
            let result = err(out.spf_result())
                .or_else(|| err(out.dkim_result()))
                .unwrap_or("none");
            return DmarcCheck {
                result,
                domain,
                policy: None,
                sampled_out: false,
                reason: None,
            };
        };
        let pass = matches!(out.spf_result(), DmarcResult::Pass)
            || matches!(out.dkim_result(), DmarcResult::Pass);
        let mut policy = match out.policy() {
            Policy::Reject => "reject",
            Policy::Quarantine => "quarantine",
            _ => "none",
        };
        let mut sampled_out = false;
        if !pass && policy != "none" {
            // mail-auth 0.12 follows DMARCbis and ignores pct=; RFC 7489 §6.6.4 asks
            // for it, so read it from the record that applied.
            let pct = self.dmarc_pct(&domain, record).await;
            if !self.in_sample(pct) {
                sampled_out = true;
                policy = if policy == "reject" {
                    "quarantine"
                } else {
                    "none"
                };
            }
        }
        DmarcCheck {
            result: if pass { "pass" } else { "fail" },
            domain,
            policy: Some(policy),
            sampled_out,
            reason: None,
        }
    }

    /// The `pct=` of the DMARC record mail-auth applied: the author domain's or the
    /// nearest ancestor's (same walk, answers come from the resolver cache).
    async fn dmarc_pct(&self, domain: &str, applied: &mail_auth::dmarc::Dmarc) -> u8 {
        use mail_auth::common::parse::TxtRecordParser;
        let mut d = domain.trim_end_matches('.');
        for _ in 0..8 {
            if let Ok(txts) = self.spf_dns.txt(&format!("_dmarc.{d}")).await {
                for t in txts {
                    if let Ok(parsed) = mail_auth::dmarc::Dmarc::parse(&t) {
                        if &parsed == applied {
                            return parse_pct(&t);
                        }
                    }
                }
            }
            match d.split_once('.') {
                Some((_, rest)) if rest.contains('.') => d = rest,
                _ => break,
            }
        }
        100
    }

    fn finish(&self, results: Results, action: Action, tagged: Vec<String>) -> Verdict {
        tracing::debug!(target: "bulwark::senderauth", action = action.name(), "message verdict");
        let clauses = self.clauses(&results);
        // RFC 8601 §2.2: when nothing was checked the header says so with the
        // no-result form ("; none"), not with an invented result.
        let mut h = if clauses.is_empty() {
            headers::authentication_results_none(&self.hostname, results.note.as_deref())
        } else {
            headers::authentication_results(&self.hostname, &clauses)
        };
        if let Some(ev) = &results.spf {
            h.push_str(&self.received_spf(ev, results.via_relay.is_some()));
        }
        if !tagged.is_empty() && action != Action::Accept {
            h.push_str(&format!(
                "X-Bulwark-Auth-Warning: {}\r\n",
                headers::comment(&tagged.join("; "))
            ));
        }
        Verdict {
            headers_to_prepend: h,
            action,
            results,
            authserv_id: self.hostname.clone(),
        }
    }

    fn clauses(&self, r: &Results) -> Vec<ResInfo> {
        let mut v = Vec::new();
        if let Some(ev) = &r.spf {
            let mut c = ev.reason.clone();
            if let Some(hop) = &r.via_relay {
                c = format!(
                    "{c}; via internal relay, external hop {} helo={} from Received header #{}",
                    hop.ip,
                    hop.helo,
                    hop.internal_hops + 1
                );
            }
            let prop = if ev.scope == Scope::Helo {
                ("smtp.helo".to_string(), ev.domain.clone())
            } else {
                ("smtp.mailfrom".to_string(), ev.sender.clone())
            };
            v.push(ResInfo {
                method: "spf",
                result: ev.result.to_string(),
                comment: Some(c),
                props: vec![prop],
            });
        }
        match &r.sender_id {
            Some(SenderIdOutcome::Checked { pra, evaluation }) => v.push(ResInfo {
                method: "sender-id",
                result: evaluation.result.to_string(),
                comment: Some(evaluation.reason.clone()),
                props: vec![(
                    format!("header.{}", pra.header.to_ascii_lowercase()),
                    pra.address.clone(),
                )],
            }),
            // No PRA: RFC 4407 §2 step 6 says the message is ill-formed; RFC 8601 has
            // no "no PRA" result, so it is a permerror with the reason in the comment.
            Some(SenderIdOutcome::NoPra { reason }) => v.push(ResInfo {
                method: "sender-id",
                result: "permerror".into(),
                comment: Some(format!("no PRA: {reason}")),
                props: Vec::new(),
            }),
            None => {}
        }
        if r.dkim.is_empty() && r.dmarc.is_some() {
            v.push(ResInfo {
                method: "dkim",
                result: "none".into(),
                comment: Some("no signature".into()),
                props: Vec::new(),
            });
        }
        for d in &r.dkim {
            let props: Vec<(String, String)> = [
                ("header.d", &d.domain),
                ("header.s", &d.selector),
                ("header.a", &d.algorithm.to_string()),
                ("header.b", &d.b),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
            v.push(ResInfo {
                method: "dkim",
                result: d.result.to_string(),
                comment: d.reason.clone(),
                props,
            });
        }
        for d in &r.dmarc_domains {
            let comment = match (&d.reason, d.policy) {
                (Some(why), _) => Some(why.clone()),
                (None, Some(p)) if d.sampled_out => Some(format!("p={p} after pct sampling")),
                (None, Some(p)) => Some(format!("p={p}")),
                (None, None) => None,
            };
            let props = if d.domain.is_empty() {
                Vec::new()
            } else {
                vec![("header.from".into(), d.domain.clone())]
            };
            v.push(ResInfo {
                method: "dmarc",
                result: d.result.to_string(),
                comment,
                props,
            });
        }
        v
    }

    /// `Received-SPF:` (RFC 7208 §9.1).
    fn received_spf(&self, ev: &Evaluation, via_relay: bool) -> String {
        let comment = format!("{}: {}", self.hostname, ev.reason);
        // `envelope-from` is the envelope sender as given: for the null reverse-path
        // "<>" (quoted, the key-value grammar has no bare "<"), not the
        // postmaster@HELO mailbox that SPF evaluates in its place (RFC 7208 §2.4).
        let envelope_from = if ev.scope == Scope::Helo {
            "<>".to_string()
        } else {
            ev.sender.clone()
        };
        let mut pairs: Vec<(&str, String)> = vec![
            ("client-ip", ev.ip.to_string()),
            ("envelope-from", envelope_from),
        ];
        if ev.scope == Scope::Helo || via_relay || !ev.domain.is_empty() {
            pairs.push(("helo", helo_of(ev)));
        }
        pairs.push(("receiver", self.hostname.clone()));
        pairs.push(("identity", ev.scope.as_str().to_string()));
        if let Some(m) = &ev.mechanism {
            pairs.push(("mechanism", m.clone()));
        }
        // `problem` describes an error found while evaluating (RFC 7208 §9.1); the
        // domain owner's exp= text is an explanation for a fail, not a problem, and is
        // not repeated here.
        if matches!(ev.result, SpfResult::PermError | SpfResult::TempError) {
            pairs.push(("problem", ev.reason.clone()));
        }
        headers::received_spf(ev.result.as_str(), &comment, &pairs)
    }
}

fn helo_of(ev: &Evaluation) -> String {
    if ev.scope == Scope::Helo {
        ev.domain.clone()
    } else {
        ev.helo.clone()
    }
}

/// A client as SPF and Sender ID see it: its IP and the name it gave in HELO/EHLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Client<'a> {
    ip: IpAddr,
    helo: &'a str,
}

/// Which host the SPF and Sender ID checks look at (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hop {
    /// The session's client (`None`), or the first external hop behind our internal
    /// servers found by the Received walk.
    Check(Option<received::ExternalHop>),
    /// Every hop is an internal server: the message originated inside.
    Inside,
    /// The client is internal but no external hop can be read: SPF and Sender ID have
    /// no IP to check (permerror), while DKIM and DMARC, which need none, still run —
    /// never fail open.
    Unknown(String),
}

impl Hop {
    /// The host to check: the external hop, or the session's client.
    fn client<'a>(&'a self, session: Client<'a>) -> Client<'a> {
        match self {
            Hop::Check(Some(hop)) => Client {
                ip: hop.ip,
                helo: &hop.helo,
            },
            _ => session,
        }
    }
}

/// The connecting hop (the prepare stage). `walk` is the Received walk, made only when the session's
/// client is one of our internal servers (`None` otherwise); `parsed` says whether
/// the header section could be read at all.
fn connecting_hop(walk: Option<Walk>, parsed: bool) -> Hop {
    match walk {
        None => Hop::Check(None),
        Some(Walk::External(hop)) => Hop::Check(Some(hop)),
        Some(Walk::AllInternal) if parsed => Hop::Inside,
        Some(Walk::AllInternal) => Hop::Unknown("the header section cannot be parsed".into()),
        Some(Walk::Unreadable { index, reason }) => {
            Hop::Unknown(format!("Received header #{}: {reason}", index + 1))
        }
    }
}

/// The permerror recorded for an identity that could not be checked because no hop
/// can be read (`session` is what the session saw).
fn unchecked_evaluation(
    scope: Scope,
    domain: String,
    sender: String,
    session: Client<'_>,
    reason: String,
) -> Evaluation {
    Evaluation {
        result: SpfResult::PermError,
        scope,
        domain,
        ip: session.ip,
        sender,
        helo: session.helo.to_string(),
        mechanism: None,
        reason,
        explanation: None,
        lookups: Vec::new(),
    }
}

/// The verdict being built: the strictest action so far (the first of equally strict
/// ones stays: its reply is sent) and the results that ask for the warning header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    action: Action,
    tagged: Vec<String>,
}

impl Default for Decision {
    fn default() -> Decision {
        Decision {
            action: Action::Accept,
            tagged: Vec::new(),
        }
    }
}

impl Decision {
    /// Takes `action` when it is stricter than the one so far.
    fn refuse(&mut self, action: Action) {
        self.action = std::mem::replace(&mut self.action, Action::Accept).max(action);
    }

    /// Notes `what` for X-Bulwark-Auth-Warning when the configured action tags or
    /// quarantines.
    fn tag_if(&mut self, configured: AuthAction, what: impl FnOnce() -> String) {
        if matches!(configured, AuthAction::Tag | AuthAction::Quarantine) {
            self.tagged.push(what());
        }
    }
}

/// Which DKIM signatures are verified. rsa-sha1 is not verified at all (RFC 8301
/// §3.1: it MUST NOT be considered valid), and at most [`MAX_DKIM_SIGNATURES`] are
/// verified (RFC 6376 §6.1 lets a verifier limit its work; each one costs a DNS
/// lookup and a public-key operation): the rest are reported, not verified.
struct DkimSelection<'m> {
    /// The message with only the signatures to verify.
    verify: AuthenticatedMessage<'m>,
    /// rsa-sha1 signatures, reported as permerror.
    sha1: Vec<mail_auth::dkim::Signature>,
    /// Signatures (and unparseable ones) beyond the limit.
    not_verified: usize,
}

impl<'m> DkimSelection<'m> {
    fn of(msg: &AuthenticatedMessage<'m>) -> DkimSelection<'m> {
        let mut verify = msg.clone();
        verify.dkim_headers.clear();
        verify.errors.truncate(MAX_DKIM_SIGNATURES);
        let mut sha1 = Vec::new();
        let mut not_verified = 0usize;
        for h in &msg.dkim_headers {
            if h.header.a == Algorithm::RsaSha1 {
                sha1.push(h.header.clone());
            } else if verify.dkim_headers.len() < MAX_DKIM_SIGNATURES {
                verify.dkim_headers.push(h.clone());
            } else {
                not_verified += 1;
            }
        }
        not_verified += msg.errors.len().saturating_sub(MAX_DKIM_SIGNATURES);
        DkimSelection {
            verify,
            sha1,
            not_verified,
        }
    }

    /// One result per verified signature, then the rsa-sha1 ones (within the limit),
    /// then a summary of those not verified.
    fn report(&self, outputs: &[DkimOutput<'_>]) -> Vec<DkimCheck> {
        let mut out: Vec<DkimCheck> = outputs
            .iter()
            .map(|o| {
                let (result, reason) = dkim_result(o.result());
                DkimCheck::of(result, o.signature(), reason)
            })
            .collect();
        let mut not_verified = self.not_verified;
        for (i, sig) in self.sha1.iter().enumerate() {
            if i < MAX_DKIM_SIGNATURES {
                out.push(DkimCheck::of(
                    "permerror",
                    Some(sig),
                    Some("rsa-sha1 not accepted per RFC 8301 section 3.1".into()),
                ));
            } else {
                not_verified += 1;
            }
        }
        if not_verified > 0 {
            out.push(DkimCheck::summary(
                "neutral",
                &format!(
                    "{not_verified} more signature(s) not verified: at most {MAX_DKIM_SIGNATURES} are checked per message"
                ),
            ));
        }
        out
    }
}

/// One signature's result (RFC 8601 §2.7.1) and why.
fn dkim_result(r: &DkimResult) -> (&'static str, Option<String>) {
    match r {
        DkimResult::Pass => ("pass", None),
        // RFC 6376 §6.1.3: a body hash mismatch is a failed signature (mail-auth files
        // it under neutral).
        DkimResult::Neutral(e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some(e.to_string()))
        }
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

/// Why there is no Author Domain (RFC 7489 §6.6.1), given the From addresses.
fn no_author_reason(froms: &[String]) -> &'static str {
    if froms.is_empty() {
        "no From address (RFC 7489 §6.6.1)"
    } else {
        "no From address with a domain (RFC 7489 §6.6.1)"
    }
}

/// The strictest-From rule: whether one Author Domain's outcome (`action`, `dm`)
/// decides over the one deciding so far — a stricter action, or an equal one with a
/// more telling DMARC result. The first of equals stays.
fn more_decisive(
    action: &Action,
    dm: &DmarcCheck,
    current: Option<(&Action, &DmarcCheck)>,
) -> bool {
    current.is_none_or(|(d, prev)| {
        action.rank() > d.rank()
            || (action.rank() == d.rank() && dmarc_rank(dm.result) > dmarc_rank(prev.result))
    })
}

/// `(scope, domain, sender)` for SPF: MAIL FROM, or HELO for a null reverse-path.
pub fn spf_identity(helo: &str, mail_from: &str) -> (Scope, String, String) {
    let mf = mail_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if mf.is_empty() {
        (Scope::Helo, helo.to_string(), format!("postmaster@{helo}"))
    } else {
        let d = mf.rsplit_once('@').map_or(mf, |(_, d)| d);
        (Scope::MailFrom, d.to_string(), mf.to_string())
    }
}

/// The result of the best signature: pass if any passes, else the most telling error.
fn best_dkim(sigs: &[DkimCheck]) -> &'static str {
    for want in ["pass", "fail", "permerror", "temperror", "neutral"] {
        if sigs.iter().any(|s| s.result == want) {
            return want;
        }
    }
    "none"
}

fn to_mail_auth(r: SpfResult) -> mail_auth::SpfResult {
    match r {
        SpfResult::Pass => mail_auth::SpfResult::Pass,
        SpfResult::Fail => mail_auth::SpfResult::Fail,
        SpfResult::SoftFail => mail_auth::SpfResult::SoftFail,
        SpfResult::Neutral => mail_auth::SpfResult::Neutral,
        SpfResult::None => mail_auth::SpfResult::None,
        SpfResult::PermError => mail_auth::SpfResult::PermError,
        SpfResult::TempError => mail_auth::SpfResult::TempError,
    }
}

/// `pct=` of a DMARC record (RFC 7489 §6.3), 100 when absent or invalid.
pub(crate) fn parse_pct(record: &[u8]) -> u8 {
    String::from_utf8_lossy(record)
        .split(';')
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u8>().ok())
        .map_or(100, |p| p.min(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluation(result: SpfResult) -> Evaluation {
        Evaluation {
            result,
            scope: Scope::MailFrom,
            domain: "remote.test".into(),
            ip: "192.0.2.9".parse().unwrap(),
            sender: "a@remote.test".into(),
            helo: "mx.remote.test".into(),
            mechanism: None,
            reason: String::new(),
            explanation: None,
            lookups: Vec::new(),
        }
    }

    #[test]
    fn every_refusal_says_its_real_reason() {
        let dm = |result, policy| DmarcCheck {
            result,
            domain: "remote.test".into(),
            policy,
            sampled_out: false,
            reason: None,
        };
        let text = |a: Action| a.reply().unwrap();
        // A lookup that timed out is no policy rejection (it once read "rejected by
        // the DMARC policy of remote.test (p=none)").
        assert_eq!(
            text(other_action(AuthAction::Tempfail, "DMARC", &dmarc_reason(&dm("temperror", None)))),
            "451 4.7.1 DMARC: could not look up the DMARC record of remote.test (temperror); try again later"
        );
        assert_eq!(
            text(other_action(
                AuthAction::Reject,
                "DMARC",
                &dmarc_reason(&dm("fail", Some("reject")))
            )),
            "550 5.7.1 DMARC: rejected by the DMARC policy of remote.test (p=reject)"
        );
        assert_eq!(
            text(other_action(
                AuthAction::Reject,
                "DMARC",
                &dmarc_reason(&dm("permerror", None))
            )),
            "550 5.7.1 DMARC: the DMARC record of remote.test cannot be evaluated (permerror)"
        );
        assert_eq!(
            text(other_action(
                AuthAction::Tempfail,
                "DKIM",
                &dkim_reason("temperror")
            )),
            "451 4.7.1 DKIM: could not look up a signing key (temperror); try again later"
        );
        // SPF: a DNS failure under a reject policy is not "not allowed to send".
        assert_eq!(
            text(spf_action(
                AuthAction::Reject,
                &evaluation(SpfResult::TempError)
            )),
            "550 5.7.24 SPF temperror for remote.test: could not look up its SPF record"
        );
        assert_eq!(
            text(spf_action(AuthAction::Tempfail, &evaluation(SpfResult::TempError))),
            "451 4.7.24 SPF temperror for remote.test: could not look up its SPF record; try again later"
        );
        assert_eq!(
            text(spf_action(
                AuthAction::Reject,
                &evaluation(SpfResult::PermError)
            )),
            "550 5.7.24 SPF permerror for remote.test: its SPF record is invalid"
        );
        assert_eq!(
            text(spf_action(AuthAction::Reject, &evaluation(SpfResult::Fail))),
            "550 5.7.23 SPF fail for remote.test: 192.0.2.9 is not allowed to send this mail"
        );
    }

    #[test]
    fn strictest_action_wins() {
        let r = Action::Reject {
            code: 550,
            enhanced: Enhanced::new(5, 7, 1),
            text: "x".into(),
        };
        let t = Action::TempFail {
            code: 451,
            enhanced: Enhanced::new(4, 7, 1),
            text: "y".into(),
        };
        assert_eq!(Action::Accept.max(Action::Tag), Action::Tag);
        assert_eq!(Action::Quarantine.max(Action::Tag), Action::Quarantine);
        assert_eq!(t.clone().max(r.clone()), r);
        assert_eq!(r.clone().max(t), r);
        assert_eq!(r.reply().unwrap(), "550 5.7.1 x");
    }

    #[test]
    fn pct_and_identity() {
        assert_eq!(parse_pct(b"v=DMARC1; p=reject; pct=20"), 20);
        assert_eq!(parse_pct(b"v=DMARC1; p=reject"), 100);
        assert_eq!(parse_pct(b"v=DMARC1; p=reject; pct=abc"), 100);
        assert_eq!(
            spf_identity("mx.a.test", ""),
            (
                Scope::Helo,
                "mx.a.test".into(),
                "postmaster@mx.a.test".into()
            )
        );
        assert_eq!(
            spf_identity("mx.a.test", "<u@b.test>"),
            (Scope::MailFrom, "b.test".into(), "u@b.test".into())
        );
    }

    #[test]
    fn dmarc_walk_matches_mail_auths() {
        assert_eq!(dmarc_walk("a.b.test"), ["a.b.test", "b.test", "test"]);
        assert!(dmarc_walk("localhost").is_empty());
        let w = dmarc_walk("1.2.3.4.5.6.7.8.9.test");
        assert_eq!(w[0], "1.2.3.4.5.6.7.8.9.test");
        assert_eq!(w[1], "4.5.6.7.8.9.test");
        assert_eq!(w.len(), 8);
    }

    #[test]
    fn connecting_hop_follows_the_received_walk() {
        let hop = received::ExternalHop {
            ip: "192.0.2.4".parse().unwrap(),
            helo: "mx.sender.test".into(),
            internal_hops: 1,
        };
        assert_eq!(connecting_hop(None, true), Hop::Check(None));
        assert_eq!(connecting_hop(None, false), Hop::Check(None));
        assert_eq!(
            connecting_hop(Some(Walk::External(hop.clone())), true),
            Hop::Check(Some(hop.clone()))
        );
        assert_eq!(connecting_hop(Some(Walk::AllInternal), true), Hop::Inside);
        // Nothing readable is not "from inside": never fail open.
        assert_eq!(
            connecting_hop(Some(Walk::AllInternal), false),
            Hop::Unknown("the header section cannot be parsed".into())
        );
        assert_eq!(
            connecting_hop(
                Some(Walk::Unreadable {
                    index: 1,
                    reason: "no IP".into()
                }),
                true
            ),
            Hop::Unknown("Received header #2: no IP".into())
        );
        let session = Client {
            ip: "10.0.0.5".parse().unwrap(),
            helo: "edge.corp.test",
        };
        let relayed = Hop::Check(Some(hop));
        assert_eq!(
            relayed.client(session),
            Client {
                ip: "192.0.2.4".parse().unwrap(),
                helo: "mx.sender.test"
            }
        );
        assert_eq!(Hop::Check(None).client(session), session);
        let ev = unchecked_evaluation(
            Scope::Pra,
            "a.test".into(),
            "u@a.test".into(),
            session,
            "why".into(),
        );
        assert_eq!(
            (ev.result, ev.ip, ev.helo.as_str(), ev.reason.as_str()),
            (SpfResult::PermError, session.ip, "edge.corp.test", "why")
        );
    }

    #[test]
    fn decision_keeps_the_first_of_equally_strict_actions() {
        let reject = |t: &str| Action::Reject {
            code: 550,
            enhanced: Enhanced::new(5, 7, 1),
            text: t.into(),
        };
        let mut d = Decision::default();
        assert_eq!(d.action, Action::Accept);
        d.refuse(Action::Tag);
        d.refuse(reject("spf"));
        d.refuse(Action::Quarantine);
        d.refuse(reject("dkim"));
        assert_eq!(d.action, reject("spf"));
        d.tag_if(AuthAction::Reject, || "spf=fail".into());
        d.tag_if(AuthAction::Tag, || "dkim=none".into());
        d.tag_if(AuthAction::Quarantine, || "dmarc=fail".into());
        d.tag_if(AuthAction::Accept, || "x".into());
        assert_eq!(d.tagged, ["dkim=none", "dmarc=fail"]);
    }

    #[test]
    fn strictest_author_domain_decides() {
        let dm = |result| DmarcCheck::without_result(result, "a.test".into(), "r");
        let quarantine = Action::Quarantine;
        assert!(more_decisive(&Action::Accept, &dm("pass"), None));
        assert!(more_decisive(
            &quarantine,
            &dm("none"),
            Some((&Action::Tag, &dm("fail")))
        ));
        assert!(!more_decisive(
            &Action::Tag,
            &dm("fail"),
            Some((&quarantine, &dm("none")))
        ));
        // Equal actions: the more telling result, else the first stays.
        assert!(more_decisive(
            &quarantine,
            &dm("fail"),
            Some((&quarantine, &dm("none")))
        ));
        assert!(!more_decisive(
            &quarantine,
            &dm("fail"),
            Some((&quarantine, &dm("fail")))
        ));
        assert!(!more_decisive(
            &quarantine,
            &dm("none"),
            Some((&quarantine, &dm("temperror")))
        ));
        let d = dm("permerror");
        assert_eq!(
            (d.policy, d.sampled_out, d.reason.as_deref()),
            (None, false, Some("r"))
        );
        assert_eq!(no_author_reason(&[]), "no From address (RFC 7489 §6.6.1)");
        assert_eq!(
            no_author_reason(&["nobody".into()]),
            "no From address with a domain (RFC 7489 §6.6.1)"
        );
    }

    #[test]
    fn dkim_selection_skips_sha1_and_caps_the_count() {
        let sig = |a: &str, n: usize| {
            format!("DKIM-Signature: v=1; a={a}; d=d{n}.test; s=s; c=relaxed/relaxed; h=from; bh=YWJj; b=YWJj{n}\r\n")
        };
        let mut m = String::new();
        m.push_str(&sig("rsa-sha1", 0));
        for n in 1..=12 {
            m.push_str(&sig("rsa-sha256", n));
        }
        m.push_str("From: a@a.test\r\n\r\nbody\r\n");
        let msg = AuthenticatedMessage::parse(m.as_bytes()).unwrap();
        let sel = DkimSelection::of(&msg);
        assert_eq!(sel.verify.dkim_headers.len(), MAX_DKIM_SIGNATURES);
        assert!(sel
            .verify
            .dkim_headers
            .iter()
            .all(|h| h.header.a != Algorithm::RsaSha1));
        assert_eq!((sel.sha1.len(), sel.not_verified), (1, 2));
        let report = sel.report(&[]);
        assert_eq!(report.len(), 2);
        assert_eq!(
            (report[0].result, report[0].domain.as_str()),
            ("permerror", "d0.test")
        );
        assert_eq!(report[1].result, "neutral");
        assert_eq!(
            report[1].reason.as_deref(),
            Some("2 more signature(s) not verified: at most 10 are checked per message")
        );
        assert_eq!(best_dkim(&report), "permerror");
        assert_eq!(dkim_result(&DkimResult::Pass), ("pass", None));
        assert_eq!(dkim_result(&DkimResult::None), ("none", None));
        let (r, why) = dkim_result(&DkimResult::Neutral(mail_auth::Error::Dkim(
            DkimError::FailedBodyHashMatch,
        )));
        assert_eq!(r, "fail");
        assert!(why.is_some());
    }

    #[test]
    fn reply_text_is_printable() {
        assert_eq!(reply_text("a\r\nb"), "a??b");
    }
}
