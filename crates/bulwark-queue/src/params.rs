//! A queue entry's `params`: what the receiving side (SMTP) learnt from the client's
//! envelope that matters for delivery and notices, stored as JSON with the entry.
//!
//! The format is owned here; the SMTP server writes it with [`DeliveryParams::to_json`]
//! (or the same JSON by hand). An empty or unreadable value means "no parameters":
//! notices on failure and delay, headers only, and 8-bit/UTF-8 needs detected from
//! the message itself.
//!
//! ```json
//! {"ret":"hdrs","envid":"QQ314159","body_8bitmime":true,"smtputf8":false,"dkim_domain":"example.org",
//!  "rcpt":{"bob@remote.example":{"notify":["failure","delay"],"orcpt":"rfc822;bob@remote.example"}}}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RFC 3461 §4.3 RET: what a failure notice returns of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    Full,
    Hdrs,
}

/// RFC 3461 §4.1 NOTIFY keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    Never,
    Success,
    Failure,
    Delay,
}

/// Per-recipient DSN parameters (RFC 3461 §4.1, §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecipientParams {
    /// None: the client gave no NOTIFY; we notify on failure and delay (RFC 3461 §4.1
    /// leaves the default to the MTA; this is the common one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<NotifyOn>>,
    /// ORCPT as given: `addr-type;address` (xtext already decoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// ENVID (RFC 3461 §4.4), xtext already decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// The client declared BODY=8BITMIME (RFC 6152). Informational: the worker
    /// detects 8-bit content itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_8bitmime: bool,
    /// The client declared SMTPUTF8 (RFC 6531).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    /// We DKIM-signed the message at submission with d= this domain: a copy converted
    /// to 7-bit for a next hop without 8BITMIME is signed again (`downgrade`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkim_domain: Option<String>,
    /// The sender failed SPF or DMARC at intake (likely forged): no notice of any
    /// kind goes to it, so a forged sender is never bombarded with notices about mail
    /// it did not send (backscatter).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sender_auth_failed: bool,
    /// Keyed by the recipient address as queued.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rcpt: BTreeMap<String, RecipientParams>,
}

impl DeliveryParams {
    /// Reads stored params; anything unreadable means defaults (and is logged), so a
    /// message is never stuck because of its parameters.
    pub fn parse(s: &str) -> DeliveryParams {
        if s.trim().is_empty() {
            return DeliveryParams::default();
        }
        serde_json::from_str(s).unwrap_or_else(|e| {
            tracing::warn!(target: "bulwark::queue", error = %e, "unreadable queue parameters; using defaults");
            DeliveryParams::default()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn recipient(&self, rcpt: &str) -> Option<&RecipientParams> {
        self.rcpt.get(rcpt).or_else(|| {
            self.rcpt
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(rcpt))
                .map(|(_, v)| v)
        })
    }

    /// Whether the sender asked to be told about `event` for this recipient.
    pub fn wants(&self, rcpt: &str, event: NotifyOn) -> bool {
        if self.sender_auth_failed {
            return false;
        }
        match self.recipient(rcpt).and_then(|r| r.notify.as_ref()) {
            None => matches!(event, NotifyOn::Failure | NotifyOn::Delay),
            Some(list) => !list.contains(&NotifyOn::Never) && list.contains(&event),
        }
    }

    /// The recipient's NOTIFY as given, to relay to a server that supports DSN.
    pub fn notify(&self, rcpt: &str) -> Option<&[NotifyOn]> {
        self.recipient(rcpt).and_then(|r| r.notify.as_deref())
    }

    pub fn orcpt(&self, rcpt: &str) -> Option<&str> {
        self.recipient(rcpt).and_then(|r| r.orcpt.as_deref())
    }

    /// RFC 3461 §4.3: without RET, headers only.
    pub fn ret(&self) -> Ret {
        self.ret.unwrap_or(Ret::Hdrs)
    }
}

/// RFC 3461 §4 xtext: `+XX` for '+', '=', and anything outside `!`..`~`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_that_failed_authentication_gets_no_notice() {
        let p = DeliveryParams::parse(r#"{"sender_auth_failed":true}"#);
        assert!(p.sender_auth_failed);
        for e in [NotifyOn::Failure, NotifyOn::Delay, NotifyOn::Success] {
            assert!(!p.wants("a@b", e), "{e:?}");
        }
        assert!(DeliveryParams::parse(&p.to_json()).sender_auth_failed);
        assert_eq!(DeliveryParams::default().to_json(), "{}");
    }

    #[test]
    fn defaults_and_round_trip() {
        let d = DeliveryParams::parse("");
        assert_eq!(d, DeliveryParams::default());
        assert!(d.wants("a@b", NotifyOn::Failure));
        assert!(d.wants("a@b", NotifyOn::Delay));
        assert!(!d.wants("a@b", NotifyOn::Success));
        assert_eq!(d.ret(), Ret::Hdrs);
        assert_eq!(DeliveryParams::parse("not json"), DeliveryParams::default());
        assert_eq!(d.to_json(), "{}");

        let mut p = DeliveryParams {
            ret: Some(Ret::Full),
            envid: Some("QQ314159".into()),
            ..Default::default()
        };
        p.rcpt.insert(
            "Bob@Remote.test".into(),
            RecipientParams {
                notify: Some(vec![NotifyOn::Success, NotifyOn::Failure]),
                orcpt: Some("rfc822;bob@remote.test".into()),
            },
        );
        p.rcpt.insert(
            "never@remote.test".into(),
            RecipientParams {
                notify: Some(vec![NotifyOn::Never]),
                orcpt: None,
            },
        );
        let back = DeliveryParams::parse(&p.to_json());
        assert_eq!(back, p);
        assert!(back.wants("bob@remote.test", NotifyOn::Success));
        assert!(!back.wants("bob@remote.test", NotifyOn::Delay));
        assert!(!back.wants("never@remote.test", NotifyOn::Failure));
        assert_eq!(
            back.orcpt("bob@remote.test"),
            Some("rfc822;bob@remote.test")
        );
        // Unknown fields from a newer writer are ignored, not fatal.
        let newer = DeliveryParams::parse(r#"{"ret":"full","future":1}"#);
        assert_eq!(newer.ret(), Ret::Full);
    }

    #[test]
    fn xtext_encodes_plus_equals_and_controls() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("rfc822;x@y"), "rfc822;x@y");
    }
}
