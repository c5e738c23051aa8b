//! `[senderauth]`: SPF, Sender ID, DKIM and DMARC checks on received mail, the action
//! taken per check and result, and DKIM signing of our users' mail (SPEC §6).

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[senderauth]`: which checks run on port 25 mail and what each result does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderAuthConfig {
    /// Run the checks on mail received on port 25 (submitted mail is never checked,
    /// it is signed).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Our own edge gateways and internal relays. Mail arriving from them is checked
    /// against the first external hop found by walking the `Received:` headers.
    #[serde(default)]
    pub internal_servers: Vec<IpNet>,
    /// A message whose header section cannot be parsed (no header field at all, or
    /// garbage): DKIM and DMARC cannot be evaluated, so no domain's policy can be
    /// honoured. Failing closed is the default: such a message is refused.
    #[serde(default = "reject")]
    pub unparseable: AuthAction,
    /// The whole check after DATA (Sender ID, DKIM, DMARC, and SPF for relayed mail)
    /// must finish within this many seconds; otherwise it is a temperror and
    /// `[senderauth.dmarc] temperror` decides (default: 451, the sender retries).
    #[serde(default = "default_check_timeout")]
    pub check_timeout_secs: u64,
    /// RFC 7505 §4.2: refuse MAIL FROM a domain that publishes a null MX ("this
    /// domain sends no mail", so nobody could get a bounce) with 550 5.7.27.
    #[serde(default = "yes")]
    pub reject_null_mx_senders: bool,
    /// `[senderauth.spf]`: the action per SPF result.
    #[serde(default)]
    pub spf: SpfPolicy,
    /// `[senderauth.sender_id]`: the action per Sender ID result.
    #[serde(default)]
    pub sender_id: SenderIdPolicy,
    /// `[senderauth.dkim]`: the action per DKIM result.
    #[serde(default)]
    pub dkim: DkimPolicy,
    /// `[senderauth.dmarc]`: the action per DMARC result and published policy.
    #[serde(default)]
    pub dmarc: DmarcPolicy,
    /// `[senderauth.signing]`: DKIM signing of our users' mail.
    #[serde(default)]
    pub signing: SigningConfig,
}

fn yes() -> bool {
    true
}

fn default_check_timeout() -> u64 {
    60
}

impl Default for SenderAuthConfig {
    fn default() -> Self {
        SenderAuthConfig {
            enabled: true,
            internal_servers: Vec::new(),
            unparseable: reject(),
            check_timeout_secs: default_check_timeout(),
            reject_null_mx_senders: true,
            spf: SpfPolicy::default(),
            sender_id: SenderIdPolicy::default(),
            dkim: DkimPolicy::default(),
            dmarc: DmarcPolicy::default(),
            signing: SigningConfig::default(),
        }
    }
}

/// What happens to a message for one check result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthAction {
    /// Deliver; the result is recorded in Authentication-Results only.
    Accept,
    /// Deliver to the inbox with an `X-Bulwark-Auth-Warning:` header naming the
    /// result, so clients and filters can flag it.
    Tag,
    /// Deliver to the recipient's Junk folder.
    Quarantine,
    /// Refuse: 550 5.7.23 (SPF fail) / 5.7.24 (SPF permerror) at MAIL for SPF, 550 5.7.1
    /// after DATA for the other checks.
    Reject,
    /// Ask the sender to retry later: 451 4.7.x. Only meaningful for temperror.
    Tempfail,
}

fn accept() -> AuthAction {
    AuthAction::Accept
}
fn tag() -> AuthAction {
    AuthAction::Tag
}
fn quarantine() -> AuthAction {
    AuthAction::Quarantine
}
fn reject() -> AuthAction {
    AuthAction::Reject
}
fn tempfail() -> AuthAction {
    AuthAction::Tempfail
}

/// SPF (RFC 7208) result → action. SPF alone breaks on plain forwarding (RFC 7208
/// §9.2 / Appendix D), so a fail is tagged, not rejected: DMARC, which also accepts a
/// DKIM pass, is what blocks forgeries of domains that ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpfPolicy {
    /// The sender's IP is authorized (default: accept).
    #[serde(default = "accept")]
    pub pass: AuthAction,
    /// The domain says the IP is not authorized (default: tag).
    #[serde(default = "tag")]
    pub fail: AuthAction,
    /// `~all`: probably not authorized (default: accept).
    #[serde(default = "accept")]
    pub softfail: AuthAction,
    /// `?all`: the domain makes no assertion (default: accept).
    #[serde(default = "accept")]
    pub neutral: AuthAction,
    /// No SPF record (default: accept).
    #[serde(default = "accept")]
    pub none: AuthAction,
    /// The sender's broken record: their problem, and rejecting would lose real mail.
    #[serde(default = "accept")]
    pub permerror: AuthAction,
    /// SPF fail is only tagged, so an unknown SPF result need not delay mail.
    #[serde(default = "accept")]
    pub temperror: AuthAction,
}

impl Default for SpfPolicy {
    fn default() -> Self {
        SpfPolicy {
            pass: accept(),
            fail: tag(),
            softfail: accept(),
            neutral: accept(),
            none: accept(),
            permerror: accept(),
            temperror: accept(),
        }
    }
}

/// Sender ID (RFC 4406) result → action. It checks the header sender the user sees,
/// but misfires on mailing lists and forwarders (RFC 4406 §5), so fail and "no PRA"
/// are tagged only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderIdPolicy {
    /// The PRA's domain authorizes the IP (default: accept).
    #[serde(default = "accept")]
    pub pass: AuthAction,
    /// The PRA's domain says the IP is not authorized (default: tag).
    #[serde(default = "tag")]
    pub fail: AuthAction,
    /// Probably not authorized (default: accept).
    #[serde(default = "accept")]
    pub softfail: AuthAction,
    /// No assertion (default: accept).
    #[serde(default = "accept")]
    pub neutral: AuthAction,
    /// No Sender ID or SPF record (default: accept).
    #[serde(default = "accept")]
    pub none: AuthAction,
    /// The record is broken (default: accept).
    #[serde(default = "accept")]
    pub permerror: AuthAction,
    /// DNS failed (default: accept).
    #[serde(default = "accept")]
    pub temperror: AuthAction,
    /// No Purported Responsible Address: the headers are ill-formed (RFC 4407 §2).
    #[serde(default = "tag")]
    pub no_pra: AuthAction,
}

impl Default for SenderIdPolicy {
    fn default() -> Self {
        SenderIdPolicy {
            pass: accept(),
            fail: tag(),
            softfail: accept(),
            neutral: accept(),
            none: accept(),
            permerror: accept(),
            temperror: accept(),
            no_pra: tag(),
        }
    }
}

/// DKIM (RFC 6376) result → action, for the best signature. RFC 6376 §6.3: a broken
/// signature must be treated like no signature (lists modify messages), so nothing
/// but DMARC acts on DKIM by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimPolicy {
    /// A valid signature (default: accept).
    #[serde(default = "accept")]
    pub pass: AuthAction,
    /// A signature that does not verify; treated as none (default: accept).
    #[serde(default = "accept")]
    pub fail: AuthAction,
    /// A signature that cannot be judged (default: accept).
    #[serde(default = "accept")]
    pub neutral: AuthAction,
    /// No signature (default: accept).
    #[serde(default = "accept")]
    pub none: AuthAction,
    /// A malformed signature or key record (default: accept).
    #[serde(default = "accept")]
    pub permerror: AuthAction,
    /// DNS failed fetching the key (default: accept).
    #[serde(default = "accept")]
    pub temperror: AuthAction,
}

impl Default for DkimPolicy {
    fn default() -> Self {
        DkimPolicy {
            pass: accept(),
            fail: accept(),
            neutral: accept(),
            none: accept(),
            permerror: accept(),
            temperror: accept(),
        }
    }
}

/// DMARC (RFC 7489) result → action. A failing message gets the action configured for
/// the policy its domain publishes (after `pct=` sampling, §6.6.4): the domain owner
/// asked for it, and honouring p=reject is what stops exact-domain phishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmarcPolicy {
    /// SPF or DKIM passes aligned with the From domain (default: accept).
    #[serde(default = "accept")]
    pub pass: AuthAction,
    /// DMARC fail, domain publishes p=reject (or sp=reject for a subdomain).
    #[serde(default = "reject")]
    pub fail_p_reject: AuthAction,
    /// DMARC fail, domain publishes p=quarantine.
    #[serde(default = "quarantine")]
    pub fail_p_quarantine: AuthAction,
    /// DMARC fail, domain publishes p=none (monitoring only).
    #[serde(default = "tag")]
    pub fail_p_none: AuthAction,
    /// The From domain publishes no DMARC record (default: accept).
    #[serde(default = "accept")]
    pub none: AuthAction,
    /// The DMARC record is broken (default: accept).
    #[serde(default = "accept")]
    pub permerror: AuthAction,
    /// The domain may publish p=reject but DNS failed: let the sender retry rather
    /// than accept a possible forgery.
    #[serde(default = "tempfail")]
    pub temperror: AuthAction,
}

impl Default for DmarcPolicy {
    fn default() -> Self {
        DmarcPolicy {
            pass: accept(),
            fail_p_reject: reject(),
            fail_p_quarantine: quarantine(),
            fail_p_none: tag(),
            none: accept(),
            permerror: accept(),
            temperror: tempfail(),
        }
    }
}

/// DKIM signing of mail our users submit (587/465).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// Sign when a key exists for the From domain (made by `init` / `domain add`, or
    /// `bulwark dkim generate` / `dkim import`).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Selector prefix: keys are published at `<selector>-rsa._domainkey.<domain>` and
    /// `<selector>-ed25519._domainkey.<domain>`.
    #[serde(default = "default_selector")]
    pub selector: String,
    /// Where the private keys live (mode 0600), relative to the data directory.
    #[serde(default = "default_key_dir")]
    pub key_dir: PathBuf,
}

fn default_selector() -> String {
    "bulwark".into()
}
fn default_key_dir() -> PathBuf {
    PathBuf::from("dkim")
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            enabled: true,
            selector: default_selector(),
            key_dir: default_key_dir(),
        }
    }
}

impl SenderAuthConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.unparseable == AuthAction::Tempfail {
            issues.push(Issue::new(
                "senderauth.unparseable",
                "\"tempfail\" makes senders retry a message whose headers will not change",
                "use \"reject\" (the default), \"quarantine\" or \"tag\"",
            ));
        }
        if self.check_timeout_secs == 0 || self.check_timeout_secs > 600 {
            issues.push(Issue::new(
                "senderauth.check_timeout_secs",
                format!(
                    "{} seconds: the check after DATA needs a limit between 1 and 600 seconds (RFC 5321 §4.5.3.2.6 gives the client 10 minutes for the reply)",
                    self.check_timeout_secs
                ),
                "use 60 (the default)",
            ));
        }
        let mut check = |key: &str, result: &str, a: AuthAction| {
            let k = format!("senderauth.{key}.{result}");
            if a == AuthAction::Tempfail && result != "temperror" {
                issues.push(Issue::new(
                    k,
                    "\"tempfail\" makes senders retry a result that will not change",
                    "use \"tempfail\" only for temperror; choose accept, tag, quarantine or reject",
                ));
            } else if result == "pass" && a != AuthAction::Accept && a != AuthAction::Tag {
                issues.push(Issue::new(
                    k,
                    "a passing check would block authenticated mail",
                    "use \"accept\" for pass",
                ));
            }
        };
        let s = &self.spf;
        for (r, a) in [
            ("pass", s.pass),
            ("fail", s.fail),
            ("softfail", s.softfail),
            ("neutral", s.neutral),
            ("none", s.none),
            ("permerror", s.permerror),
            ("temperror", s.temperror),
        ] {
            check("spf", r, a);
        }
        let s = &self.sender_id;
        for (r, a) in [
            ("pass", s.pass),
            ("fail", s.fail),
            ("softfail", s.softfail),
            ("neutral", s.neutral),
            ("none", s.none),
            ("permerror", s.permerror),
            ("temperror", s.temperror),
            ("no_pra", s.no_pra),
        ] {
            check("sender_id", r, a);
        }
        let s = &self.dkim;
        for (r, a) in [
            ("pass", s.pass),
            ("fail", s.fail),
            ("neutral", s.neutral),
            ("none", s.none),
            ("permerror", s.permerror),
            ("temperror", s.temperror),
        ] {
            check("dkim", r, a);
        }
        let s = &self.dmarc;
        for (r, a) in [
            ("pass", s.pass),
            ("fail_p_reject", s.fail_p_reject),
            ("fail_p_quarantine", s.fail_p_quarantine),
            ("fail_p_none", s.fail_p_none),
            ("none", s.none),
            ("permerror", s.permerror),
            ("temperror", s.temperror),
        ] {
            check("dmarc", r, a);
        }
        let sel = &self.signing.selector;
        let label_ok = !sel.is_empty()
            && sel.len() <= 50
            && sel.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !sel.starts_with('-');
        if !label_ok {
            issues.push(Issue::new(
                "senderauth.signing.selector",
                format!(
                    "{sel:?} is not a DNS label (it becomes <selector>-rsa._domainkey.<domain>)"
                ),
                "use letters, digits and hyphens, e.g. \"bulwark\" or \"2025\"",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn parse(extra: &str) -> Result<Config, String> {
        Config::parse(
            &format!("[server]\nhostname = \"m.example.test\"\n{extra}"),
            "f",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn policies_parse_and_default() {
        let c = parse("[senderauth.spf]\nfail = \"reject\"\n[senderauth.dmarc]\nfail_p_reject = \"quarantine\"\n").unwrap();
        assert_eq!(c.senderauth.spf.fail, super::AuthAction::Reject);
        assert_eq!(c.senderauth.spf.softfail, super::AuthAction::Accept);
        assert_eq!(
            c.senderauth.dmarc.fail_p_reject,
            super::AuthAction::Quarantine
        );
        assert_eq!(c.senderauth.dmarc.temperror, super::AuthAction::Tempfail);
    }

    #[test]
    fn nonsense_actions_are_refused_with_a_fix() {
        let e = parse("[senderauth.spf]\nfail = \"tempfail\"\n").unwrap_err();
        assert!(
            e.contains("senderauth.spf.fail") && e.contains("fix:"),
            "{e}"
        );
        let e = parse("[senderauth.dkim]\npass = \"reject\"\n").unwrap_err();
        assert!(e.contains("senderauth.dkim.pass"), "{e}");
        let e = parse("[senderauth.signing]\nselector = \"a b\"\n").unwrap_err();
        assert!(e.contains("selector"), "{e}");
        let e = parse("[senderauth.spf]\nfial = \"tag\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
