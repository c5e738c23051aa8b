//! EHLO / HELO (RFC 5321 §4.1.1.1) and the extensions we announce.

use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Helo, Session};

impl Session {
    /// Whether AUTH is offered now: only under TLS (RFC 8314 §3, DATA-PATHS rule 1),
    /// only where the client must authenticate (submission; port 25 only for
    /// `auth`/`auth+tls` networks), and only once.
    pub(crate) fn auth_offered(&self) -> bool {
        self.tls.is_some() && self.requirement.needs_auth() && self.user.is_none()
    }

    pub(crate) fn ehlo(&mut self, host: &str, esmtp: bool) {
        // RFC 5321 §4.1.1.1: `Domain / address-literal`, nothing else. The name goes
        // into our Received header, where a `;`, quote or parenthesis would end or
        // hide the `from` clause: the Received walk of an internal server reading it
        // (senderauth, `[senderauth] internal_servers`) could then not find the client
        // IP. U-labels are not allowed here (RFC 6531 §3.7.1 allows them only after
        // SMTPUTF8 was negotiated, which EHLO precedes).
        if !crate::mail::valid_domain_or_literal(host, false) {
            return self.fail(SmtpError::new(
                501,
                Enhanced::new(5, 5, 4),
                "bad_helo",
                "Invalid EHLO/HELO argument: a domain name or address literal is required (RFC 5321 section 4.1.1.1)",
            ));
        }
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction.
        self.txn = None;
        self.helo = Some(Helo {
            name: host.to_string(),
            esmtp,
        });
        let greet = format!("{} Hello {}", self.settings.hostname, host);
        if !esmtp {
            return self.reply(Reply::plain(250, greet));
        }
        let mut lines: Vec<std::borrow::Cow<'static, str>> = vec![greet.into()];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.settings.max_message_size).into());
        lines.push("8BITMIME".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("SMTPUTF8".into());
        lines.push("CHUNKING".into());
        // RFC 3461: NOTIFY/RET/ENVID/ORCPT are stored with the queue entry, which
        // honours them (relayed and failure notices, passing them on to a DSN hop).
        lines.push("DSN".into());
        if self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.reply(Reply {
            code: 250,
            enhanced: None,
            lines,
            reason: "ok",
        });
    }
}
