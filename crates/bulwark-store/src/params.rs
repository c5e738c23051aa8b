//! A queue entry's delivery parameters: what the receiving side (SMTP) learnt from the
//! client's envelope that matters for delivery and notices. The store serialises them
//! as JSON with the entry (`NewQueueEntry::params`, `QueuedMessage::params`), so the
//! SMTP server and the queue share one type and neither writes the JSON by hand.
//!
//! An empty or unreadable stored value means "no parameters": notices on failure and
//! delay, headers only, and 8-bit/UTF-8 needs detected from the message itself.
//! Fields are declared in alphabetical order, so the JSON is the same bytes the SMTP
//! server wrote by hand before this type was shared (sorted keys).
//!
//! ```json
//! {"body_8bitmime":true,"dkim_domain":"example.org","envid":"QQ314159",
//!  "rcpt":{"bob@remote.example":{"notify":["failure","delay"],"orcpt":"rfc822;bob@remote.example"}},"ret":"hdrs"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// RFC 3461 §4.3 RET: what a failure notice returns of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ret {
    /// The whole message.
    Full,
    /// The header section only.
    Hdrs,
}

/// RFC 3461 §4.1 NOTIFY keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// No notice at all.
    Never,
    /// A notice on delivery (or relay to a server without DSN).
    Success,
    /// A notice on permanent failure.
    Failure,
    /// A notice when delivery is delayed.
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

impl RecipientParams {
    /// Neither NOTIFY nor ORCPT: the defaults, not worth storing.
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }
}

/// What the envelope said that delivery and notices need. Fields in alphabetical
/// order: serde writes them in declaration order, and the stored JSON has sorted keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryParams {
    /// The client declared BODY=8BITMIME (RFC 6152). Informational: the worker
    /// detects 8-bit content itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_8bitmime: bool,
    /// We DKIM-signed the message at submission with d= this domain: a copy converted
    /// to 7-bit for a next hop without 8BITMIME is signed again (`downgrade`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dkim_domain: Option<String>,
    /// ENVID (RFC 3461 §4.4), xtext already decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// Keyed by the recipient address as queued.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rcpt: BTreeMap<String, RecipientParams>,
    /// RET (RFC 3461 §4.3) as given; see [`DeliveryParams::ret`] for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// The sender failed SPF or DMARC at intake (likely forged): no notice of any
    /// kind goes to it, so a forged sender is never bombarded with notices about mail
    /// it did not send (backscatter).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sender_auth_failed: bool,
    /// The client declared SMTPUTF8 (RFC 6531).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
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

    /// The stored form: JSON with sorted keys, `{}` for the defaults.
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

    /// The recipient's ORCPT as given (`addr-type;address`).
    pub fn orcpt(&self, rcpt: &str) -> Option<&str> {
        self.recipient(rcpt).and_then(|r| r.orcpt.as_deref())
    }

    /// RFC 3461 §4.3: without RET, headers only.
    pub fn ret(&self) -> Ret {
        self.ret.unwrap_or(Ret::Hdrs)
    }
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
    fn the_stored_json_has_sorted_keys_as_the_hand_written_one_had() {
        // What the SMTP server wrote by hand (serde_json's sorted map) before the type
        // was shared: rows written then and now are the same bytes.
        let old = r#"{"body_8bitmime":true,"dkim_domain":"example.test","envid":"QQ+314159","rcpt":{"x@remote.test":{"notify":["success","failure"],"orcpt":"rfc822;X@Remote.test"},"y@remote.test":{"notify":["never"]}},"ret":"full","sender_auth_failed":true,"smtputf8":true}"#;
        let p = DeliveryParams::parse(old);
        assert!(p.body_8bitmime && p.smtputf8 && p.sender_auth_failed);
        assert_eq!(
            p.notify("x@remote.test"),
            Some(&[NotifyOn::Success, NotifyOn::Failure][..])
        );
        assert_eq!(p.to_json(), old);
        assert!(RecipientParams::default().is_empty());
    }
}
