//! RCPT TO (RFC 5321 §4.1.1.3): recipient filtering and relay control.
//!
//! Local recipients (accounts, aliases) are accepted; unknown local ones get
//! 550 5.1.1 here, not a bounce later. Recipients outside our domains are accepted
//! only from authenticated clients (then queued); anyone else gets 554 5.7.1 — never
//! an open relay. On an unauthenticated session, an alias that only forwards to
//! outside routes known to fail (`SenderChecks::check_forward_routes`: a null MX) is
//! refused here too, rather than bounced later to a sender that may be forged.

use std::borrow::Cow;

use bulwark_store::{Account, Resolution, StoreError};
use smtp_proto::RcptTo;

use crate::mail::{non_ascii_address, valid_address};
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Effect, Pending, Recipient, Session};

impl Session {
    pub(crate) fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>) {
        let Some(txn) = &self.txn else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before RCPT"));
        };
        if txn.bdat {
            return self.fail(SmtpError::bad_sequence("RCPT not allowed during BDAT"));
        }
        // DSN parameters (RFC 3461) are not announced.
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return self.fail(SmtpError::new(
                555,
                Enhanced(5, 5, 4),
                "bad_parameter",
                "Unsupported RCPT parameter",
            ));
        }
        if txn.recipients.len() >= self.settings.max_recipients as usize {
            // RFC 5321 §4.5.3.1.10: 452 and the client sends the rest later. A client
            // that does so is not misbehaving: no error count, no tarpit.
            return self.reply_uncounted(SmtpError::new(
                452,
                Enhanced(4, 5, 3),
                "too_many_recipients",
                "Too many recipients",
            ));
        }
        let mut address = to.address.into_owned();
        if address.is_empty() {
            // smtp-proto reads `<Postmaster>` (no domain) as empty; RFC 5321 §4.5.1
            // requires accepting it: it means our postmaster.
            address = format!("postmaster@{}", self.settings.postmaster_domain());
        }
        if !address.is_ascii() && !txn.utf8 {
            return self.fail(non_ascii_address());
        }
        if !valid_address(&address, txn.utf8) {
            return self.fail(SmtpError::new(
                501,
                Enhanced(5, 1, 3),
                "bad_address",
                "Bad recipient address syntax",
            ));
        }
        if txn
            .recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(&address))
        {
            return self.reply(Reply::new(250, Enhanced(2, 1, 5), "Recipient OK"));
        }
        self.request(
            Effect::Resolve {
                address: address.clone(),
            },
            Pending::Rcpt(address),
        );
    }

    pub(crate) fn rcpt_resolved(&mut self, address: String, r: Result<Resolution, StoreError>) {
        let authenticated = self.user.is_some();
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before RCPT"));
        };
        match r {
            // Backscatter: an alias that only forwards, from an unauthenticated client,
            // to routes known to fail would make the queue send a notice to a sender
            // who may be forged. Refuse it here instead, while the client is listening.
            Ok(Resolution::Deliver { accounts, forward })
                if !authenticated && accounts.is_empty() && !forward.is_empty() =>
            {
                self.request(
                    Effect::CheckRoutes {
                        targets: forward.clone(),
                    },
                    Pending::RcptRoutes { address, forward },
                );
            }
            Ok(Resolution::Deliver { accounts, forward }) => {
                self.rcpt_deliver(address, accounts, forward)
            }
            Ok(Resolution::NotOurDomain) if authenticated => {
                if !txn.forward.iter().any(|x| x.eq_ignore_ascii_case(&address)) {
                    txn.forward.push(address.clone());
                }
                txn.recipients.push(Recipient { address });
                metrics::counter!("bulwark_smtp_recipients_total", "listener" => self.settings.listener.name(), "kind" => "remote")
                    .increment(1);
                self.reply(Reply::new(250, Enhanced(2, 1, 5), "Recipient OK"));
            }
            Ok(Resolution::NotOurDomain) => self.fail(SmtpError::new(
                554,
                Enhanced(5, 7, 1),
                "relay_denied",
                "Relay access denied",
            )),
            Ok(Resolution::Unknown) => self.fail(SmtpError::new(
                550,
                Enhanced(5, 1, 1),
                "unknown_recipient",
                "No such user here",
            )),
            Err(e) => {
                tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "recipient lookup failed");
                self.fail(SmtpError::temporary_failure("store"))
            }
        }
    }

    /// The routes of an alias's outside targets were checked (`check_forward_routes`).
    pub(crate) fn rcpt_routes_checked(
        &mut self,
        address: String,
        forward: Vec<String>,
        refusal: Option<SmtpError>,
    ) {
        if let Some(e) = refusal {
            return self.fail(e);
        }
        self.rcpt_deliver(address, Vec::new(), forward);
    }

    /// Accepts a local recipient: its accounts and forward targets join the
    /// transaction.
    fn rcpt_deliver(&mut self, address: String, accounts: Vec<Account>, forward: Vec<String>) {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before RCPT"));
        };
        for a in accounts {
            if !txn.accounts.iter().any(|x| x.id == a.id) {
                txn.accounts.push(a);
            }
        }
        for f in forward {
            if !txn.forward.iter().any(|x| x.eq_ignore_ascii_case(&f)) {
                txn.forward.push(f);
            }
        }
        txn.recipients.push(Recipient { address });
        metrics::counter!("bulwark_smtp_recipients_total", "listener" => self.settings.listener.name(), "kind" => "local")
            .increment(1);
        self.reply(Reply::new(250, Enhanced(2, 1, 5), "Recipient OK"));
    }
}
