//! RCPT TO (RFC 5321 §4.1.1.3) with NOTIFY and ORCPT (DSN, RFC 3461 §4.1, §4.2):
//! recipient filtering and relay control.
//!
//! Local recipients (accounts, aliases) are accepted; unknown local ones get
//! 550 5.1.1 here, not a bounce later. Recipients outside our domains are accepted
//! only from authenticated clients (then queued); anyone else gets 554 5.7.1 — never
//! an open relay. On an unauthenticated session, an alias that only forwards to
//! outside routes known to fail (`SenderChecks::check_forward_routes`: a null MX) is
//! refused here too, rather than bounced later to a sender that may be forged.

use std::borrow::Cow;

use bulwark_store::{Account, NotifyOn, Resolution, StoreError};
use smtp_proto::{
    RcptTo, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS,
};

use crate::mail::{bad_dsn_parameter, dsn_text_ok, non_ascii_address, valid_address};
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
        // Only the DSN parameters (RFC 3461 §4.1, §4.2) are announced.
        let notify_flags =
            RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER;
        if to.flags & !notify_flags != 0 || to.rrvs != 0 {
            return self.fail(SmtpError::new(
                555,
                Enhanced::new(5, 5, 4),
                "bad_parameter",
                "Unsupported RCPT parameter",
            ));
        }
        let esmtp = self.helo.as_ref().is_some_and(|h| h.esmtp);
        if !esmtp && (to.flags != 0 || to.orcpt.is_some()) {
            return self.fail(SmtpError::new(
                555,
                Enhanced::new(5, 5, 4),
                "bad_parameter",
                "RCPT parameters require EHLO",
            ));
        }
        // RFC 3461 §4.1: NEVER stands alone.
        if to.flags & RCPT_NOTIFY_NEVER != 0 && to.flags != RCPT_NOTIFY_NEVER {
            return self.fail(bad_dsn_parameter("NOTIFY"));
        }
        let notify = (to.flags != 0).then(|| {
            [
                (RCPT_NOTIFY_NEVER, NotifyOn::Never),
                (RCPT_NOTIFY_SUCCESS, NotifyOn::Success),
                (RCPT_NOTIFY_FAILURE, NotifyOn::Failure),
                (RCPT_NOTIFY_DELAY, NotifyOn::Delay),
            ]
            .iter()
            .filter(|(f, _)| to.flags & f != 0)
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
        });
        // smtp-proto accepts only the rfc822 address type and decodes the xtext.
        let orcpt = match to.orcpt {
            Some(o) if !dsn_text_ok(&o) => return self.fail(bad_dsn_parameter("ORCPT")),
            Some(o) => Some(format!("rfc822;{o}")),
            None => None,
        };
        // Every accepted RCPT counts, a repeated one too: otherwise a client could
        // send any number of them in one transaction.
        if txn.rcpt_count >= self.settings.max_recipients {
            // RFC 5321 §4.5.3.1.10: 452 and the client sends the rest later. A client
            // that does so is not misbehaving: no error count, no tarpit.
            return self.reply_uncounted(SmtpError::new(
                452,
                Enhanced::new(4, 5, 3),
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
                Enhanced::new(5, 1, 3),
                "bad_address",
                "Bad recipient address syntax",
            ));
        }
        // RFC 5321 §4.1.3: a literal naming this server is local: the local part at
        // the mail domain this host serves (as for <Postmaster>). Any other literal
        // is someone else's address, under the relay rules.
        if let Some(local) = self.literal_of_ours(&address) {
            address = format!("{local}@{}", self.settings.postmaster_domain());
        }
        if txn
            .recipients
            .iter()
            .any(|r| r.address.eq_ignore_ascii_case(&address))
        {
            // Delivered once; the first RCPT's DSN parameters stand.
            if let Some(t) = self.txn.as_mut() {
                t.rcpt_count += 1;
            }
            return self.reply(Reply::new(250, Enhanced::new(2, 1, 5), "Recipient OK"));
        }
        self.request(
            Effect::Resolve {
                address: address.clone(),
            },
            Pending::Rcpt(Recipient {
                address,
                notify,
                orcpt,
            }),
        );
    }

    /// The local part when `address` is `local@[ip]` with one of our own addresses.
    fn literal_of_ours<'a>(&self, address: &'a str) -> Option<&'a str> {
        let (local, domain) = address.rsplit_once('@')?;
        let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
        let ip: std::net::IpAddr = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse().ok()?,
            _ => inner.parse().ok()?,
        };
        let ip = ip.to_canonical();
        let ours = self.settings.own_addresses.contains(&ip)
            || self.local.is_some_and(|l| l.ip().to_canonical() == ip);
        ours.then_some(local)
    }

    pub(crate) fn rcpt_resolved(&mut self, rcpt: Recipient, r: Result<Resolution, StoreError>) {
        let authenticated = self.user.is_some();
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before RCPT"));
        };
        let address = rcpt.address.clone();
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
                    Pending::RcptRoutes { rcpt, forward },
                );
            }
            Ok(Resolution::Deliver { accounts, forward }) => {
                self.rcpt_deliver(rcpt, accounts, forward)
            }
            Ok(Resolution::NotOurDomain) if authenticated => {
                txn.to.add_forward(address.clone());
                txn.recipients.push(rcpt);
                txn.rcpt_count += 1;
                metrics::counter!("bulwark_smtp_recipients_total", "listener" => self.settings.listener.name(), "kind" => "remote")
                    .increment(1);
                self.reply(Reply::new(250, Enhanced::new(2, 1, 5), "Recipient OK"));
            }
            Ok(Resolution::NotOurDomain) => self.fail(SmtpError::new(
                554,
                Enhanced::new(5, 7, 1),
                "relay_denied",
                "Relay access denied",
            )),
            Ok(Resolution::Unknown) => self.fail(SmtpError::new(
                550,
                Enhanced::new(5, 1, 1),
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
        rcpt: Recipient,
        forward: Vec<String>,
        refusal: Option<SmtpError>,
    ) {
        if let Some(e) = refusal {
            return self.fail(e);
        }
        self.rcpt_deliver(rcpt, Vec::new(), forward);
    }

    /// Accepts a local recipient: its accounts and forward targets join the
    /// transaction.
    fn rcpt_deliver(&mut self, rcpt: Recipient, accounts: Vec<Account>, forward: Vec<String>) {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before RCPT"));
        };
        txn.to.add(accounts, forward);
        txn.recipients.push(rcpt);
        txn.rcpt_count += 1;
        metrics::counter!("bulwark_smtp_recipients_total", "listener" => self.settings.listener.name(), "kind" => "local")
            .increment(1);
        self.reply(Reply::new(250, Enhanced::new(2, 1, 5), "Recipient OK"));
    }
}
