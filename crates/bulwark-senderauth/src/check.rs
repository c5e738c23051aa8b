//! The checks as the SMTP server sees them: SPF at MAIL, everything else after DATA,
//! each result turned into an action by `[senderauth]`, all recorded in one
//! Authentication-Results header.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bulwark_config::senderauth::{AuthAction, SenderAuthConfig};
use bulwark_dns::TokioResolver;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::{AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput};

use crate::dns::SpfDns;
use crate::headers::{self, ResInfo};
use crate::pra::{Pra, PraSelector};
use crate::received::{self, Walk};
use crate::spf::{self, Evaluation, Query, Scope, SpfResult};

/// What the SMTP server must do with the message (or the MAIL command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// Deliver; a warning header is among the headers to prepend.
    Tag,
    /// Deliver to the recipients' Junk folder.
    Quarantine,
    /// Permanent refusal: `code enhanced text`, e.g. `550 5.7.23 ...`.
    Reject {
        code: u16,
        enhanced: &'static str,
        text: String,
    },
    /// Temporary refusal: `451 4.7.x ...`.
    TempFail {
        code: u16,
        enhanced: &'static str,
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
        AuthAction::Reject => {
            let (enhanced, what) = match ev.result {
                SpfResult::PermError | SpfResult::TempError => ("5.7.24", "SPF error"),
                _ => ("5.7.23", "SPF"),
            };
            let exp = ev
                .explanation
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            Action::Reject {
                code: 550,
                enhanced,
                text: reply_text(&format!(
                    "{what} {} for {who}: {} is not allowed to send this mail{exp}",
                    ev.result, ev.ip
                )),
            }
        }
        AuthAction::Tempfail => Action::TempFail {
            code: 451,
            enhanced: "4.7.24",
            text: reply_text(&format!("SPF temporary error for {who}; try again later")),
        },
    }
}

fn other_action(a: AuthAction, check: &str, what: &str) -> Action {
    match a {
        AuthAction::Accept => Action::Accept,
        AuthAction::Tag => Action::Tag,
        AuthAction::Quarantine => Action::Quarantine,
        AuthAction::Reject => Action::Reject {
            code: 550,
            enhanced: "5.7.1",
            text: reply_text(&format!("{check}: {what}")),
        },
        AuthAction::Tempfail => Action::TempFail {
            code: 451,
            enhanced: "4.7.1",
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
    Checked {
        pra: Pra,
        evaluation: Evaluation,
    },
    /// RFC 4407 §2 step 6.
    NoPra {
        reason: String,
    },
}

/// One verified DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    /// pass, fail, neutral, permerror, temperror (RFC 8601 §2.7.1).
    pub result: &'static str,
    pub domain: String,
    pub selector: String,
    pub algorithm: &'static str,
    /// First 8 characters of b= (RFC 6008), to tell signatures apart.
    pub b: String,
    pub reason: Option<String>,
}

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
}

/// Everything checked for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Results {
    pub spf: Option<Evaluation>,
    /// Set when the checked IP/HELO came from the Received walk (internal relay).
    pub via_relay: Option<received::ExternalHop>,
    pub sender_id: Option<SenderIdOutcome>,
    pub dkim: Vec<DkimCheck>,
    pub dmarc: Option<DmarcCheck>,
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
    pub results: Results,
    authserv_id: String,
}

impl Verdict {
    /// The message to store: forged Authentication-Results claiming our host name
    /// removed (RFC 8601 §5), our headers on top.
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
    /// `resolver` is shared: its cache serves SPF, DKIM and DMARC lookups alike.
    pub fn new(config: &SenderAuthConfig, hostname: &str, resolver: TokioResolver) -> SenderAuth {
        SenderAuth {
            cfg: config.clone(),
            hostname: hostname.to_ascii_lowercase(),
            spf_dns: SpfDns::new(resolver.clone()),
            authenticator: MessageAuthenticator(resolver),
            sample: AtomicU64::new(0),
        }
    }

    /// Built from the whole configuration: `[senderauth]`, `[dns]`, the host name.
    pub fn from_config(
        config: &bulwark_config::Config,
    ) -> Result<SenderAuth, bulwark_dns::DnsError> {
        let resolver = bulwark_dns::resolver(&config.dns)?;
        Ok(SenderAuth::new(
            &config.senderauth,
            &config.server.hostname,
            resolver,
        ))
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

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
        let mut results = Results {
            spf: None,
            via_relay: None,
            sender_id: None,
            dkim: Vec::new(),
            dmarc: None,
            note: None,
        };
        if !self.cfg.enabled {
            return self.finish(results, Action::Accept, Vec::new());
        }
        let parsed = AuthenticatedMessage::parse(message);
        let header_list: Vec<(&[u8], &[u8])> = parsed
            .as_ref()
            .map(|m| m.headers.clone())
            .unwrap_or_default();

        // Which IP and HELO are checked.
        let (check_ip, check_helo) = if self.is_internal(ip) {
            match received::first_external_hop(&header_list, &self.cfg.internal_servers) {
                Walk::External(hop) => {
                    let r = (hop.ip, hop.helo.clone());
                    results.via_relay = Some(hop);
                    r
                }
                Walk::AllInternal => {
                    results.note = Some(format!(
                        "message from inside: every hop is an internal server of {}",
                        self.hostname
                    ));
                    return self.finish(results, Action::Accept, Vec::new());
                }
                Walk::Unreadable { index, reason } => {
                    results.note = Some(format!(
                        "cannot find the external hop (Received header {}: {reason}); sender checks skipped",
                        index + 1
                    ));
                    return self.finish(results, Action::Accept, Vec::new());
                }
            }
        } else {
            (ip, helo.to_string())
        };
        let mut tagged: Vec<String> = Vec::new();
        let mut action = Action::Accept;

        // SPF: reuse the MAIL-time result unless it was deferred.
        let spf_ev = match &spf_at_mail.evaluation {
            Some(ev) if results.via_relay.is_none() => {
                action = action.max(spf_at_mail.action.clone());
                ev.clone()
            }
            _ => {
                let ev = self.evaluate_spf(check_ip, &check_helo, mail_from).await;
                count_spf(&ev);
                action = action.max(spf_action(self.spf_policy(ev.result), &ev));
                ev
            }
        };
        if matches!(
            self.spf_policy(spf_ev.result),
            AuthAction::Tag | AuthAction::Quarantine
        ) {
            tagged.push(format!("spf={}", spf_ev.result));
        }

        // Sender ID.
        let sid = match PraSelector::select(&header_list) {
            Ok(pra) => {
                let ev = self.evaluate_pra(check_ip, &check_helo, &pra).await;
                count("sender_id", ev.result.as_str());
                let a = self.sender_id_policy(ev.result);
                if matches!(a, AuthAction::Tag | AuthAction::Quarantine) {
                    tagged.push(format!("sender-id={}", ev.result));
                }
                action = action.max(other_action(
                    a,
                    "Sender ID",
                    &format!("{} for {} ({})", ev.result, pra.address, ev.reason),
                ));
                SenderIdOutcome::Checked {
                    pra,
                    evaluation: ev,
                }
            }
            Err(no) => {
                count("sender_id", "no_pra");
                let a = self.cfg.sender_id.no_pra;
                if matches!(a, AuthAction::Tag | AuthAction::Quarantine) {
                    tagged.push("sender-id=no-pra".into());
                }
                action = action.max(other_action(
                    a,
                    "Sender ID",
                    &format!("no responsible sender address ({})", no.reason),
                ));
                SenderIdOutcome::NoPra { reason: no.reason }
            }
        };
        results.sender_id = Some(sid);

        // DKIM and DMARC need a parseable message.
        if let Some(msg) = &parsed {
            let outputs = self.authenticator.verify_dkim(msg).await;
            for o in &outputs {
                let (result, reason) = match o.result() {
                    DkimResult::Pass => ("pass", None),
                    // RFC 6376 §6.1.3: a body hash mismatch is a failed signature
                    // (mail-auth files it under neutral).
                    DkimResult::Neutral(
                        e @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch),
                    ) => ("fail", Some(e.to_string())),
                    DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
                    DkimResult::Fail(e) => ("fail", Some(e.to_string())),
                    DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
                    DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
                    DkimResult::None => ("none", None),
                };
                let sig = o.signature();
                results.dkim.push(DkimCheck {
                    result,
                    domain: sig.map(|s| s.d.clone()).unwrap_or_default(),
                    selector: sig.map(|s| s.s.clone()).unwrap_or_default(),
                    algorithm: match sig.map(|s| s.a) {
                        Some(mail_auth::common::crypto::Algorithm::Ed25519Sha256) => {
                            "ed25519-sha256"
                        }
                        Some(mail_auth::common::crypto::Algorithm::RsaSha1) => "rsa-sha1",
                        _ => "rsa-sha256",
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
                });
            }
            let best = best_dkim(&results.dkim);
            count("dkim", best);
            let p = &self.cfg.dkim;
            let a = match best {
                "pass" => p.pass,
                "fail" => p.fail,
                "neutral" => p.neutral,
                "permerror" => p.permerror,
                "temperror" => p.temperror,
                _ => p.none,
            };
            if matches!(a, AuthAction::Tag | AuthAction::Quarantine) {
                tagged.push(format!("dkim={best}"));
            }
            action = action.max(other_action(a, "DKIM", &format!("signature {best}")));

            // DMARC (RFC 7489): the SPF input is the MAIL FROM identity (or HELO).
            let spf_domain = spf_ev.domain.clone();
            let spf_for_dmarc =
                SpfOutput::new(spf_domain.clone()).with_result(to_mail_auth(spf_ev.result));
            let out = self
                .authenticator
                .verify_dmarc(DmarcParameters::new(
                    msg,
                    &outputs,
                    &spf_domain,
                    &spf_for_dmarc,
                ))
                .await;
            let dm = self.dmarc_check(msg, &out).await;
            count("dmarc", dm.result);
            let d = &self.cfg.dmarc;
            let a = match (dm.result, dm.policy) {
                ("pass", _) => d.pass,
                ("fail", Some("reject")) => d.fail_p_reject,
                ("fail", Some("quarantine")) => d.fail_p_quarantine,
                ("fail", _) => d.fail_p_none,
                ("permerror", _) => d.permerror,
                ("temperror", _) => d.temperror,
                _ => d.none,
            };
            if matches!(a, AuthAction::Tag | AuthAction::Quarantine) {
                tagged.push(format!("dmarc={}", dm.result));
            }
            action = action.max(other_action(
                a,
                "DMARC",
                &format!(
                    "rejected by the DMARC policy of {} (p={})",
                    dm.domain,
                    dm.policy.unwrap_or("none")
                ),
            ));
            results.dmarc = Some(dm);
        }
        results.spf = Some(spf_ev);
        self.finish(results, action, tagged)
    }

    async fn dmarc_check(
        &self,
        msg: &AuthenticatedMessage<'_>,
        out: &mail_auth::DmarcOutput,
    ) -> DmarcCheck {
        let domain = if out.domain().is_empty() {
            msg.froms()
                .first()
                .and_then(|f| f.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default()
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
        let mut h = headers::authentication_results(&self.hostname, &self.clauses(&results));
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
            v.push(ResInfo {
                method: "dkim",
                result: d.result.to_string(),
                comment: d.reason.clone(),
                props: vec![
                    ("header.d".into(), d.domain.clone()),
                    ("header.s".into(), d.selector.clone()),
                    ("header.a".into(), d.algorithm.to_string()),
                    ("header.b".into(), d.b.clone()),
                ],
            });
        }
        if let Some(d) = &r.dmarc {
            let comment = d.policy.map(|p| {
                if d.sampled_out {
                    format!("p={p} after pct sampling")
                } else {
                    format!("p={p}")
                }
            });
            v.push(ResInfo {
                method: "dmarc",
                result: d.result.to_string(),
                comment,
                props: vec![("header.from".into(), d.domain.clone())],
            });
        }
        if let Some(note) = &r.note {
            if v.is_empty() {
                v.push(ResInfo {
                    method: "spf",
                    result: "none".into(),
                    comment: Some(note.clone()),
                    props: Vec::new(),
                });
            }
        }
        v
    }

    fn received_spf(&self, ev: &Evaluation, via_relay: bool) -> String {
        let comment = format!("{}: {}", self.hostname, ev.reason);
        let mut pairs: Vec<(&str, String)> = vec![
            ("client-ip", ev.ip.to_string()),
            ("envelope-from", ev.sender.clone()),
        ];
        if ev.scope == Scope::Helo || via_relay || !ev.domain.is_empty() {
            pairs.push(("helo", helo_of(ev)));
        }
        pairs.push(("receiver", self.hostname.clone()));
        pairs.push(("identity", ev.scope.as_str().to_string()));
        if let Some(m) = &ev.mechanism {
            pairs.push(("mechanism", m.clone()));
        }
        if let Some(e) = &ev.explanation {
            pairs.push(("problem", e.clone()));
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
fn parse_pct(record: &[u8]) -> u8 {
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

    #[test]
    fn strictest_action_wins() {
        let r = Action::Reject {
            code: 550,
            enhanced: "5.7.1",
            text: "x".into(),
        };
        let t = Action::TempFail {
            code: 451,
            enhanced: "4.7.1",
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
    fn reply_text_is_printable() {
        assert_eq!(reply_text("a\r\nb"), "a??b");
    }
}
