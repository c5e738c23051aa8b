//! MAIL FROM (RFC 5321 §4.1.1.2) with SIZE (RFC 1870), BODY=8BITMIME (RFC 6152),
//! SMTPUTF8 (RFC 6531), RET and ENVID (DSN, RFC 3461 §4.3, §4.4) and AUTH= (RFC 4954
//! §5); the accept policy; the anti-spoofing
//! rules (submission: the user's own addresses; port 25: our domains only with AUTH
//! or from our relays); the sender check hook.

use std::borrow::Cow;

use bulwark_store::{Ret, StoreError};
use smtp_proto::{
    MailFrom, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_RET_FULL, MAIL_RET_HDRS, MAIL_SMTPUTF8,
};

use crate::budget::Reservation;
use crate::checks::{MailFromVerdict, SenderContext};
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Effect, Pending, Session, Transaction};

/// A MAIL command that passed the syntax and policy checks, waiting for an effect.
#[derive(Debug, Clone)]
pub(crate) struct MailRequest {
    pub address: String,
    pub eight_bit: bool,
    pub utf8: bool,
    /// RET (RFC 3461 §4.3).
    pub ret: Option<Ret>,
    /// ENVID (RFC 3461 §4.4), xtext decoded.
    pub envid: Option<String>,
    /// The local-domain rule has been checked (or does not apply).
    pub local_checked: bool,
}

/// RFC 3461 §4: the decoded value of ENVID and ORCPT is printable US-ASCII. It is
/// written into notices (Original-Envelope-Id, Original-Recipient), where a control
/// character could end the field.
pub(crate) fn dsn_text_ok(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// 501 5.5.4 for a DSN parameter with a value RFC 3461 does not allow.
pub(crate) fn bad_dsn_parameter(name: &str) -> SmtpError {
    SmtpError::new(
        501,
        Enhanced::new(5, 5, 4),
        "bad_parameter",
        format!("Invalid value for parameter {name} (RFC 3461)"),
    )
}

/// RFC 5321 §4.1.2 Domain / address-literal. smtp-proto checks the local part and the
/// single `@` but accepts an empty or malformed domain, so the domain is checked here.
/// With SMTPUTF8, U-labels (RFC 6531 §3.3) are allowed.
pub(crate) fn valid_address(address: &str, utf8: bool) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    valid_local_part(local) && valid_domain_or_literal(domain, utf8)
}

/// RFC 5321 §4.1.2 `Dot-string / Quoted-string` (UTF-8 allowed as in RFC 6531 §3.3;
/// whether it may be used is checked against SMTPUTF8 separately). The quoted form
/// is what `address::preparse` wrote.
fn valid_local_part(local: &str) -> bool {
    if let Some(inner) = local.strip_prefix('"') {
        // Exactly the form `preparse` writes; anything else (smtp-proto keeps escaped
        // quotes: `"x"bob@example.test>"y"`) would be read as another address.
        return inner
            .strip_suffix('"')
            .is_some_and(crate::address::safe_quoted_content);
    }
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
}

/// RFC 5321 §4.1.2: `Domain / address-literal`, where the literal is an IPv4 address
/// or `IPv6:` and an IPv6 address (§4.1.3; general literals are not accepted). Written
/// by hand: smtp-proto passes EHLO arguments and domains through unchecked.
pub(crate) fn valid_domain_or_literal(domain: &str, utf8: bool) -> bool {
    if domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if let Some(lit) = domain.strip_prefix('[') {
        let Some(inner) = lit.strip_suffix(']') else {
            return false;
        };
        return match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
        };
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii()))
    })
}

/// 553 5.6.7 for a non-ASCII address without SMTPUTF8 (RFC 6531 §3.5).
pub(crate) fn non_ascii_address() -> SmtpError {
    SmtpError::new(
        553,
        Enhanced::new(5, 6, 7),
        "non_ascii_address",
        "Non-ASCII addresses require SMTPUTF8",
    )
}

impl Session {
    pub(crate) fn mail(&mut self, from: MailFrom<Cow<'_, str>>) {
        if self.helo.is_none() {
            return self.fail(SmtpError::bad_sequence("Send EHLO/HELO first"));
        }
        if self.txn.is_some() {
            return self.fail(SmtpError::bad_sequence("Nested MAIL command"));
        }
        // Per-host accept policy and submission rules (RFC 3207 §4, RFC 4954 §6).
        if self.requirement.needs_tls() && self.tls.is_none() {
            return self.fail(SmtpError::tls_required());
        }
        if self.requirement.needs_auth() && self.user.is_none() {
            return self.fail(SmtpError::auth_required());
        }
        // Only the parameters of the extensions we announce.
        let known =
            MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8 | MAIL_RET_FULL | MAIL_RET_HDRS;
        if from.flags & !known != 0
            || from.trans_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0
        {
            return self.fail(SmtpError::new(
                555,
                Enhanced::new(5, 5, 4),
                "bad_parameter",
                "Unsupported MAIL parameter",
            ));
        }
        let esmtp = self.helo.as_ref().is_some_and(|h| h.esmtp);
        if !esmtp && (from.flags != 0 || from.env_id.is_some()) {
            return self.fail(SmtpError::new(
                555,
                Enhanced::new(5, 5, 4),
                "bad_parameter",
                "MAIL parameters require EHLO",
            ));
        }
        // RFC 1870 §6: refuse at once what we would refuse after DATA.
        if from.size as u64 > self.settings.max_message_size {
            return self.fail(SmtpError::size_exceeded());
        }
        let utf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let address = from.address.into_owned();
        if !address.is_ascii() && !utf8 {
            return self.fail(non_ascii_address());
        }
        if !address.is_empty() && !valid_address(&address, utf8) {
            return self.fail(SmtpError::new(
                501,
                Enhanced::new(5, 1, 7),
                "bad_address",
                "Bad sender address syntax",
            ));
        }
        // RFC 3461 §4.3: RET at most once.
        let ret = match (
            from.flags & MAIL_RET_FULL != 0,
            from.flags & MAIL_RET_HDRS != 0,
        ) {
            (true, true) => return self.fail(bad_dsn_parameter("RET")),
            (true, false) => Some(Ret::Full),
            (false, true) => Some(Ret::Hdrs),
            (false, false) => None,
        };
        let envid = from.env_id.map(|e| e.into_owned());
        if envid.as_deref().is_some_and(|e| !dsn_text_ok(e)) {
            return self.fail(bad_dsn_parameter("ENVID"));
        }
        let req = MailRequest {
            address,
            eight_bit: from.flags & MAIL_BODY_8BITMIME != 0,
            utf8,
            ret,
            envid,
            local_checked: false,
        };
        self.mail_checks(req);
    }

    /// The effects MAIL waits for, in order: may-send-as (authenticated), or the
    /// local-domain rule and then the sender check (unauthenticated).
    fn mail_checks(&mut self, mut req: MailRequest) {
        match &self.user {
            // Submission anti-spoofing: MAIL FROM must be the user's own address, an
            // alias delivering to them or a configured send-as address.
            Some(account) => {
                if req.address.is_empty() {
                    return self.fail(not_your_address());
                }
                let account = account.id;
                let addresses = vec![req.address.clone()];
                self.request(Effect::MaySendAs { account, addresses }, Pending::Mail(req));
            }
            None if !req.local_checked => {
                req.local_checked = true;
                // Port 25 anti-spoofing: our users authenticate; a client claiming one of
                // our domains without AUTH is a forger, unless it is one of our own relays
                // (`[senderauth] internal_servers`). The null sender is always accepted
                // (RFC 5321 §4.5.5: notices must get through).
                let domain = bulwark_store::domain_of(&req.address);
                match domain {
                    Some(domain)
                        if self.settings.reject_unauthenticated_local_senders
                            && !self.settings.is_internal_server(self.peer.ip()) =>
                    {
                        self.request(Effect::IsLocalDomain { domain }, Pending::Mail(req));
                    }
                    _ => self.mail_checks(req),
                }
            }
            None => {
                let ctx = SenderContext {
                    listener: self.settings.listener,
                    client_ip: self.peer.ip(),
                    helo: self
                        .helo
                        .as_ref()
                        .map(|h| h.name.clone())
                        .unwrap_or_default(),
                    mail_from: req.address.clone(),
                    tls: self.tls.is_some(),
                };
                self.request(Effect::CheckMailFrom(ctx), Pending::Mail(req));
            }
        }
    }

    pub(crate) fn mail_may_send_as(&mut self, req: MailRequest, r: Result<bool, StoreError>) {
        match r {
            Ok(true) => self.start_transaction(req, MailFromVerdict::default()),
            Ok(false) => {
                tracing::info!(target: "bulwark::smtp", session = %self.id, user = ?self.user.as_ref().map(|u| &u.address), mail_from = %req.address, "MAIL FROM refused: not the user's address");
                self.fail(not_your_address())
            }
            Err(e) => {
                tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "send-as lookup failed");
                self.fail(SmtpError::temporary_failure("store"))
            }
        }
    }

    pub(crate) fn mail_local_domain(&mut self, req: MailRequest, r: Result<bool, StoreError>) {
        match r {
            Ok(false) => self.mail_checks(req),
            Ok(true) => {
                tracing::info!(target: "bulwark::smtp", session = %self.id, peer = %self.peer.ip(), mail_from = %req.address, "MAIL FROM refused: our domain without authentication");
                self.fail(SmtpError::new(
                    550,
                    Enhanced::new(5, 7, 1),
                    "local_sender",
                    "Authentication required to send as a local address",
                ))
            }
            Err(e) => {
                tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "domain lookup failed");
                self.fail(SmtpError::temporary_failure("store"))
            }
        }
    }

    pub(crate) fn mail_checked(&mut self, req: MailRequest, v: MailFromVerdict) {
        if let Some(e) = v.refuse {
            return self.fail(e);
        }
        self.start_transaction(req, v);
    }

    fn start_transaction(&mut self, req: MailRequest, v: MailFromVerdict) {
        self.txn = Some(Transaction {
            mail_from: req.address,
            reservation: Some(Reservation::new(self.settings.budget.clone())),
            eight_bit: req.eight_bit,
            utf8: req.utf8,
            ret: req.ret,
            envid: req.envid,
            mail_from_headers: v.headers,
            note: v.note,
            ..Transaction::default()
        });
        self.reply(Reply::new(250, Enhanced::new(2, 1, 0), "Sender OK"));
    }
}

/// 550 5.7.1: an authenticated user may only send as their own addresses.
pub(crate) fn not_your_address() -> SmtpError {
    SmtpError::new(
        550,
        Enhanced::new(5, 7, 1),
        "spoofing",
        "Sender address is not owned by the authenticated user",
    )
}

#[cfg(test)]
mod tests {
    use super::valid_address;

    #[test]
    fn address_domains() {
        assert!(valid_address("a@example.test", false));
        assert!(valid_address("a@[192.0.2.1]", false));
        assert!(valid_address("a@[IPv6:2001:db8::1]", false));
        assert!(!valid_address("a@", false));
        assert!(!valid_address("a@-x.test", false));
        assert!(!valid_address("a@x..test", false));
        assert!(!valid_address("a@[999.1.1.1]", false));
        assert!(!valid_address("a@exa mple.test", false));
        assert!(!valid_address("a@bücher.test", false));
        assert!(valid_address("a@bücher.test", true));
        assert!(!valid_address("a@@example.test", false));
        assert!(!valid_address("a..b@example.test", false));
        assert!(valid_address("\"a b\"@example.test", false));
        // smtp-proto's reading of `"\"x\"bob@example.test>\"y\""@attacker.test`.
        assert!(!valid_address(
            "\"x\"bob@example.test>\"y\"@attacker.test",
            false
        ));
        assert!(!valid_address("\"a\\\\b\"@example.test", false));
        assert!(!valid_address("\"\"\"@example.test", false));
    }
}
