//! Delivery status notifications (RFC 3464): a multipart/report (RFC 6522) with a
//! human-readable part, a message/delivery-status part and the original message's
//! header (RET=HDRS, the default) or the whole message (RET=FULL).
//!
//! A notice is sent from the null reverse-path (RFC 5321 §4.5.5, RFC 3464 §2), so it
//! can never cause another notice: the worker sends none for entries whose sender is
//! `<>`.

use bulwark_wire::Enhanced;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_builder::MessageBuilder;

use crate::message::header_section;
use crate::params::Ret;

/// RFC 3464 §2.3.3 Action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanently undeliverable; the notice is final for this recipient.
    Failed,
    /// Not delivered yet and still being retried (a delay notice, RFC 3464 §2.3.3).
    Delayed,
    /// Delivered to a server that does not support DSN, so no further notice will
    /// come (the answer to NOTIFY=SUCCESS in that case).
    Relayed,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Relayed => "relayed",
        }
    }
}

/// One recipient's part of a notice: its per-recipient fields (RFC 3464 §2.3).
#[derive(Debug, Clone)]
pub struct DsnRecipient {
    /// The recipient address (Final-Recipient: rfc822;…).
    pub address: String,
    /// ORCPT as given (`rfc822;addr`).
    pub original: Option<String>,
    /// What happened to it (the Action field).
    pub action: Action,
    /// RFC 3463 status.
    pub status: Enhanced,
    /// The remote server, when one answered.
    pub remote_mta: Option<String>,
    /// The server's reply (`smtp` diagnostic), when the outcome came from one.
    pub smtp_diagnostic: Option<String>,
    /// What happened, for the human part (our own words when no server answered).
    pub explanation: String,
    /// When we last tried it (Unix seconds; Last-Attempt-Date), if we did.
    pub last_attempt: Option<i64>,
}

/// Everything one notice is built from.
pub struct Report<'a> {
    /// Our host name (Reporting-MTA, and the MAILER-DAEMON address).
    pub reporting_mta: &'a str,
    /// The envelope sender the notice goes to.
    pub to: &'a str,
    /// The sender's ENVID (RFC 3461 §4.4), echoed as Original-Envelope-Id.
    pub envid: Option<&'a str>,
    /// When the message entered the queue (Unix seconds).
    pub arrival: i64,
    /// For delay notices: until when we keep trying.
    pub retry_until: Option<i64>,
    /// The recipients the notice reports on.
    pub recipients: &'a [DsnRecipient],
    /// The queued message (its header or all of it goes back, per `ret`).
    pub original: &'a [u8],
    /// RET: whether a failure notice carries the whole message or its header (RFC 3461 §4.3).
    pub ret: Ret,
    /// The time of the notice (Unix seconds): its Date and message-id.
    pub now: i64,
}

fn date(t: i64) -> String {
    Date::new(t).to_rfc822()
}

/// Removes CR/LF so a value cannot start a new field.
fn field(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

fn human(r: &Report<'_>) -> String {
    let failed: Vec<&DsnRecipient> = r
        .recipients
        .iter()
        .filter(|x| x.action == Action::Failed)
        .collect();
    let delayed: Vec<&DsnRecipient> = r
        .recipients
        .iter()
        .filter(|x| x.action == Action::Delayed)
        .collect();
    let relayed: Vec<&DsnRecipient> = r
        .recipients
        .iter()
        .filter(|x| x.action == Action::Relayed)
        .collect();
    let mut t = format!("This is the mail system at {}.\r\n\r\n", r.reporting_mta);
    let list = |t: &mut String, xs: &[&DsnRecipient]| {
        for x in xs {
            t.push_str(&format!(
                "  <{}>:\r\n    {}\r\n",
                x.address,
                field(&x.explanation)
            ));
        }
        t.push_str("\r\n");
    };
    if !failed.is_empty() {
        t.push_str(
            "Your message could not be delivered to the following recipients.\r\nThis is a permanent error; it will not be retried:\r\n\r\n",
        );
        list(&mut t, &failed);
    }
    if !delayed.is_empty() {
        let hours = (r.now - r.arrival).max(0) / 3600;
        t.push_str(&format!(
            "Your message has not been delivered yet to the following recipients\r\n(it has been waiting for {hours} hour(s)). This is only a warning; you need\r\nnot send the message again. Delivery will be retried{}:\r\n\r\n",
            r.retry_until
                .map(|u| format!(" until {}", date(u)))
                .unwrap_or_default()
        ));
        list(&mut t, &delayed);
    }
    if !relayed.is_empty() {
        t.push_str(
            "Your message was delivered to the following recipients' servers, which\r\ndo not send delivery notifications themselves:\r\n\r\n",
        );
        list(&mut t, &relayed);
    }
    t.push_str("The delivery report and the original message's header are attached.\r\n");
    t
}

/// RFC 3464 §2.2 and §2.3 fields.
fn delivery_status(r: &Report<'_>) -> String {
    let mut s = String::new();
    s.push_str(&format!("Reporting-MTA: dns; {}\r\n", r.reporting_mta));
    if let Some(id) = r.envid {
        s.push_str(&format!("Original-Envelope-Id: {}\r\n", field(id)));
    }
    s.push_str(&format!("Arrival-Date: {}\r\n", date(r.arrival)));
    for x in r.recipients {
        s.push_str("\r\n");
        if let Some(o) = &x.original {
            s.push_str(&format!("Original-Recipient: {}\r\n", field(o)));
        }
        s.push_str(&format!(
            "Final-Recipient: rfc822; {}\r\n",
            field(&x.address)
        ));
        s.push_str(&format!("Action: {}\r\n", x.action.name()));
        s.push_str(&format!("Status: {}\r\n", x.status));
        if let Some(m) = &x.remote_mta {
            s.push_str(&format!("Remote-MTA: dns; {}\r\n", field(m)));
        }
        if let Some(d) = &x.smtp_diagnostic {
            s.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", field(d)));
        }
        if let Some(t) = x.last_attempt {
            s.push_str(&format!("Last-Attempt-Date: {}\r\n", date(t)));
        }
        if x.action == Action::Delayed {
            if let Some(u) = r.retry_until {
                s.push_str(&format!("Will-Retry-Until: {}\r\n", date(u)));
            }
        }
    }
    s
}

/// The notice as RFC 5322 octets (CRLF), without Return-Path.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let any_failed = r.recipients.iter().any(|x| x.action == Action::Failed);
    let any_delayed = r.recipients.iter().any(|x| x.action == Action::Delayed);
    let subject = if any_failed {
        "Undelivered Mail Returned to Sender"
    } else if any_delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Delivery Status Notification (relayed)"
    };
    let eight_bit = |b: &[u8]| {
        if b.iter().any(|c| *c >= 0x80) {
            "8bit"
        } else {
            "7bit"
        }
    };
    let status = delivery_status(r);
    let status_cte = eight_bit(status.as_bytes());
    // RFC 3464 §2: failures carry the original; a delay or relay notice carries its
    // header only, whatever RET says.
    let (original_type, original): (&str, &[u8]) = if r.ret == Ret::Full && any_failed {
        ("message/rfc822", r.original)
    } else {
        ("text/rfc822-headers", header_section(r.original))
    };
    let original_cte = eight_bit(original);
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        BodyPart::Multipart(vec![
            MimePart::new(
                ContentType::new("text/plain").attribute("charset", "utf-8"),
                BodyPart::Text(human(r).into()),
            )
            .transfer_encoding("8bit"),
            MimePart::new(
                ContentType::new("message/delivery-status"),
                BodyPart::Binary(status.into_bytes().into()),
            )
            .transfer_encoding(status_cte),
            MimePart::new(
                ContentType::new(original_type),
                BodyPart::Binary(original.into()),
            )
            .transfer_encoding(original_cte),
        ]),
    );
    let id = format!("{}.{}@{}", r.now, rand::random::<u64>(), r.reporting_mta);
    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{}", r.reporting_mta),
        ))
        .to(r.to)
        .subject(subject)
        .date(Date::new(r.now))
        .message_id(MessageId::new(id))
        // RFC 3834 §5: automatic responses must say so.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(action: Action) -> DsnRecipient {
        DsnRecipient {
            address: "bob@remote.test".into(),
            original: Some("rfc822;Bob@Remote.test".into()),
            action,
            status: Enhanced::new(5, 1, 1),
            remote_mta: Some("mx.remote.test".into()),
            smtp_diagnostic: Some("550 5.1.1 No such user".into()),
            explanation: "host mx.remote.test said: 550 5.1.1 No such user (in reply to RCPT TO)"
                .into(),
            last_attempt: Some(1_700_000_000),
        }
    }

    const ORIGINAL: &[u8] =
        b"From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: hello\r\n\r\nsecret body\r\n";

    #[test]
    fn failure_report_has_the_rfc3464_parts() {
        let rs = [rcpt(Action::Failed)];
        let m = build(&Report {
            reporting_mta: "mail.example.test",
            to: "alice@example.test",
            envid: Some("ENV1"),
            arrival: 1_700_000_000,
            retry_until: None,
            recipients: &rs,
            original: ORIGINAL,
            ret: Ret::Hdrs,
            now: 1_700_000_100,
        });
        let s = String::from_utf8(m).unwrap();
        for needle in [
            "From: \"Mail Delivery System\" <MAILER-DAEMON@mail.example.test>",
            "To: <alice@example.test>",
            "Subject: Undelivered Mail Returned to Sender",
            "Auto-Submitted: auto-replied",
            "Content-Type: multipart/report; report-type=\"delivery-status\"",
            "Content-Type: message/delivery-status",
            "Reporting-MTA: dns; mail.example.test",
            "Original-Envelope-Id: ENV1",
            "Original-Recipient: rfc822;Bob@Remote.test",
            "Final-Recipient: rfc822; bob@remote.test",
            "Action: failed",
            "Status: 5.1.1",
            "Remote-MTA: dns; mx.remote.test",
            "Diagnostic-Code: smtp; 550 5.1.1 No such user",
            "Content-Type: text/rfc822-headers",
            "Subject: hello",
        ] {
            assert!(s.contains(needle), "missing {needle:?} in\n{s}");
        }
        assert!(!s.contains("secret body"), "RET=HDRS returns headers only");
        assert!(!s.contains("\n\n"), "CRLF only");
    }

    #[test]
    fn full_return_and_delay_notice() {
        let rs = [rcpt(Action::Failed)];
        let full = String::from_utf8(build(&Report {
            reporting_mta: "mail.example.test",
            to: "alice@example.test",
            envid: None,
            arrival: 0,
            retry_until: None,
            recipients: &rs,
            original: ORIGINAL,
            ret: Ret::Full,
            now: 10,
        }))
        .unwrap();
        assert!(full.contains("Content-Type: message/rfc822"));
        assert!(full.contains("secret body"));

        let mut d = rcpt(Action::Delayed);
        d.status = Enhanced::new(4, 4, 1);
        let rs = [d];
        let delay = String::from_utf8(build(&Report {
            reporting_mta: "mail.example.test",
            to: "alice@example.test",
            envid: None,
            arrival: 0,
            retry_until: Some(432_000),
            recipients: &rs,
            original: ORIGINAL,
            ret: Ret::Full,
            now: 4 * 3600,
        }))
        .unwrap();
        assert!(delay.contains("Subject: Delayed Mail"));
        assert!(delay.contains("Action: delayed"));
        assert!(delay.contains("Will-Retry-Until: "));
        assert!(delay.contains("waiting for 4 hour(s)"));
        assert!(
            !delay.contains("secret body"),
            "delay notices never return the body"
        );
    }
}
