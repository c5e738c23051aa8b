//! The end of a message (after the final dot or BDAT LAST): header checks, the sender
//! hooks, trace headers, and the one durable ingest that precedes the 250.
//!
//! Stages: MIME nesting depth and part count (before anything parses the message) →
//! header section hygiene (every port: one header boundary for every parser) →
//! header facts (`bulwark_mime::CheckedMessage`) → loop check → [authenticated:
//! header From / Sender must be the user's (anti-spoofing), add Date/Message-ID if
//! missing, sign]
//! [unauthenticated: one From, at most one Sender, a From in our domains only from
//! internal servers, then the message check] → ingest → 250 2.0.0.
//!
//! What is stored (top to bottom): `Return-Path:` (local copies only: RFC 5321 §4.4
//! adds it at final delivery), DKIM-Signature (sign hook), checker headers
//! (Received-SPF, Authentication-Results), our `Received:`, the Date / Message-ID we
//! added, then the client's octets unchanged. A relayed copy (queue) is the same
//! without `Return-Path:`. With only local or only remote recipients that is one body,
//! built in place around the received octets; with both, two (the local one with
//! `Return-Path:`, the queued one without), as the store keeps bodies immutable.

use bulwark_config::LocalFromAction;
use bulwark_mime::header::HeaderScan;
use bulwark_mime::CheckedMessage;
use bulwark_store::{
    plan_delivery, planned_overhead, DeliveryParams, Envelope, Folder, IngestReceipt,
    NewQueueEntry, QueueId, RecipientParams, StoreError,
};

use crate::checks::{MessageAction, MessageContext, SenderContext, SignContext};
use crate::clock::rfc5322_date;
use crate::mail::not_your_address;
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Effect, EffectResult, Pending, Session, Transaction};

/// Where the end-of-message pipeline stands while an effect runs.
pub(crate) enum MessageStage {
    /// MaySendAs for the header From/Sender addresses.
    SendAs,
    /// Port 25: IsLocalDomain for a header From domain; `rest` are still to ask.
    LocalFrom { domain: String, rest: Vec<String> },
    /// `SenderChecks::check_message`.
    Check,
    /// `SenderChecks::sign`.
    Sign,
    /// `Store::ingest`.
    Ingest {
        /// The client's octets.
        size: usize,
        /// Mailboxes delivered to.
        local: usize,
        /// Outside addresses queued.
        remote: usize,
        /// Octets of the local copy and of the queued copy.
        stored: (usize, usize),
    },
}

/// Lines the parsers could disagree on (RFC 5322 §2.2): refused on every port, so
/// the sender check, the DKIM signer and IMAP all see the same header section
/// (`bulwark_mime::header` says why).
fn header_hygiene(scan: &HeaderScan) -> Option<SmtpError> {
    let n = scan.bad_line?;
    Some(SmtpError::new(
        554,
        Enhanced::new(5, 6, 0),
        "header_syntax",
        format!("Message refused: header line {n} is not a header field (RFC 5322 section 2.2)"),
    ))
}

/// Port 25: what the sender checks rely on. Exactly one From (RFC 5322 §3.6: a
/// second one leaves DMARC without a single author domain while the user's client
/// shows either) and at most one Sender.
fn originator_fields(scan: &HeaderScan) -> Option<SmtpError> {
    if scan.from_fields != 1 {
        return Some(SmtpError::new(
            550,
            Enhanced::new(5, 7, 1),
            "header_from",
            "Message refused: exactly one From header field is required (RFC 5322 section 3.6)",
        ));
    }
    if scan.sender_fields > 1 {
        return Some(SmtpError::new(
            550,
            Enhanced::new(5, 7, 1),
            "header_from",
            "Message refused: at most one Sender header field is allowed (RFC 5322 section 3.6)",
        ));
    }
    None
}
/// Marks a message whose header From is in a local domain but that came from an
/// outside client on port 25 (`[smtp] local_from_on_inbound = "tag"`). Forged copies
/// of it are removed at intake like every `X-Bulwark-*` field.
pub(crate) const LOCAL_FROM_TAG: &str = "X-Bulwark-Local-From: outside\r\n";

/// The refusal for a message beyond a structural limit.
fn structure_refusal(e: bulwark_mime::StructureError) -> SmtpError {
    match e {
        bulwark_mime::StructureError::TooDeep { .. } => SmtpError::new(
            554,
            Enhanced::new(5, 6, 0),
            "mime_nesting",
            format!("Message refused: {e}"),
        ),
        // RFC 3463 §3.4: 5.3.4 "message too big for system".
        bulwark_mime::StructureError::TooManyParts { .. } => SmtpError::new(
            552,
            Enhanced::new(5, 3, 4),
            "mime_parts",
            format!("Message refused: {e}"),
        ),
    }
}

/// The queue entry's `params`: what the envelope said that delivery and notices need
/// — BODY/SMTPUTF8, the DSN parameters (RFC 3461: RET, ENVID, and NOTIFY/ORCPT of each
/// queued recipient that was a RCPT; alias expansions get the defaults) — the domain
/// we DKIM-signed for (a copy the queue converts to 7-bit is signed again), and
/// whether the sender failed SPF or DMARC at intake (no notice goes to it).
pub(crate) fn delivery_params(t: &Transaction, dkim_domain: Option<&str>) -> DeliveryParams {
    let rcpt =
        t.to.forward
            .iter()
            .filter_map(|f| {
                let r = t
                    .recipients
                    .iter()
                    .find(|r| r.address.eq_ignore_ascii_case(f))?;
                let p = RecipientParams {
                    notify: r.notify.clone(),
                    orcpt: r.orcpt.clone(),
                };
                (!p.is_empty()).then(|| (f.clone(), p))
            })
            .collect();
    DeliveryParams {
        body_8bitmime: t.eight_bit,
        dkim_domain: dkim_domain.map(str::to_string),
        envid: t.envid.clone(),
        rcpt,
        ret: t.ret,
        sender_auth_failed: t.sender_failed,
        smtputf8: t.utf8,
    }
}

/// An address that can stand in `for <…>` of our Received header as it is: a
/// dot-atom local part (RFC 5322 §3.2.3, UTF-8 allowed per RFC 6532) — no quotes,
/// spaces, `;` or parentheses that would end or hide parts of the field for a parser.
/// The domain was checked at RCPT.
fn traceable(address: &str) -> bool {
    let Some((local, _)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
                })
        })
}

impl Session {
    /// The message as received (for `SenderChecks::check_message`).
    pub fn message(&self) -> &[u8] {
        self.txn.as_ref().map_or(&[][..], |t| t.body.as_slice())
    }

    /// The message as it will be relayed, in pieces (for `SenderChecks::sign`).
    pub fn sign_parts(&self) -> Vec<&[u8]> {
        match &self.txn {
            Some(t) => vec![t.added.as_bytes(), t.body.as_slice()],
            None => Vec::new(),
        }
    }

    /// The message was refused as a whole; the transaction ends (RFC 5321 §4.1.1.4).
    pub(crate) fn message_refused(&mut self, e: SmtpError) {
        self.txn = None;
        tracing::info!(target: "bulwark::smtp", session = %self.id, reason = e.reason, "message refused: {}", e.message);
        self.fail(e);
    }

    /// All octets are in and passed the octet rules.
    pub(crate) fn message_received(&mut self) {
        let max_hops = self.settings.max_received_headers as usize;
        let max_parts = self.settings.max_mime_parts;
        let hostname = self.settings.hostname.clone();
        let env = std::sync::Arc::clone(&self.env);
        let Some(t) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("No transaction"));
        };
        if t.body.is_empty() {
            return self.message_refused(SmtpError::new(
                554,
                Enhanced::new(5, 6, 0),
                "empty",
                "Message refused: empty message",
            ));
        }
        // Before anything parses the message (our header inspection, the sender
        // checks, IMAP later): MIME parsers recurse per nesting level, and a message of
        // a megabyte or two can nest deep enough to overflow the stack and abort the
        // whole server; millions of parts cost parsing and IMAP BODYSTRUCTURE far more
        // than their octets. One linear scan, no recursion.
        let limits = bulwark_mime::Limits {
            depth: bulwark_mime::MAX_NESTING,
            parts: max_parts,
        };
        let checked = match CheckedMessage::check(&t.body, limits) {
            Ok(c) => c,
            Err(e) => return self.message_refused(structure_refusal(e)),
        };
        // One header boundary for everyone: a line the parsers could disagree on (a
        // form feed ends the section for mail-parser, not for IMAP) is refused on
        // every port, before anything reads the header fields.
        let scan = checked.header_scan().clone();
        if let Some(e) = header_hygiene(&scan) {
            return self.message_refused(e);
        }
        let facts = checked.facts();
        // RFC 5321 §6.3: a message that has been around too often is a loop.
        if facts.received > max_hops {
            return self.message_refused(SmtpError::new(
                554,
                Enhanced::new(5, 4, 6),
                "loop",
                "Message refused: too many Received headers (mail loop?)",
            ));
        }
        let Some(account) = self.user.as_ref().map(|u| u.id) else {
            if let Some(e) = originator_fields(&scan) {
                return self.message_refused(e);
            }
            // Port 25 anti-spoofing of the header From (what the user sees): our
            // domains' mail comes through submission or an internal server.
            let mut domains: Vec<String> = if self.settings.is_internal_server(self.peer.ip()) {
                Vec::new()
            } else {
                facts
                    .from_addresses
                    .iter()
                    .filter_map(|a| bulwark_store::domain_of(a))
                    .map(|d| d.trim_end_matches('.').to_string())
                    .collect()
            };
            domains.sort();
            domains.dedup();
            return self.local_from_next(domains);
        };
        // Submission (RFC 6409 §8): the header From must exist, and every From and
        // Sender address must be one the user may send as.
        if !facts.has_from || facts.unparseable_originator || facts.originators.is_empty() {
            return self.message_refused(SmtpError::new(
                550,
                Enhanced::new(5, 7, 1),
                "spoofing",
                "Message refused: a From header with your address is required",
            ));
        }
        // RFC 6409 §8.3, §8.2: add what the client left out.
        if !facts.has_date {
            t.added.push_str("Date: ");
            t.added.push_str(&rfc5322_date(env.now()));
            t.added.push_str("\r\n");
        }
        if !facts.has_message_id {
            let id = env.random_id();
            t.added.push_str(&format!(
                "Message-ID: <{}@{}>\r\n",
                hex::encode(id),
                hostname
            ));
        }
        t.from_domain = facts
            .originators
            .first()
            .and_then(|a| bulwark_store::domain_of(a));
        let mut addresses = facts.originators;
        addresses.dedup();
        self.request(
            Effect::MaySendAs { account, addresses },
            Pending::Message(MessageStage::SendAs),
        );
    }

    /// Asks whether the next header From domain is ours; with none left, the sender
    /// checks run.
    fn local_from_next(&mut self, mut domains: Vec<String>) {
        match domains.pop() {
            Some(domain) => self.request(
                Effect::IsLocalDomain {
                    domain: domain.clone(),
                },
                Pending::Message(MessageStage::LocalFrom {
                    domain,
                    rest: domains,
                }),
            ),
            None => self.check_message(),
        }
    }

    /// A header From domain is one of ours and the client is an outsider.
    fn local_from_outside(&mut self, domain: &str) {
        tracing::info!(target: "bulwark::smtp", session = %self.id, %domain, "header From in a local domain from an outside client");
        match self.settings.local_from_on_inbound {
            LocalFromAction::Reject => self.message_refused(SmtpError::new(
                550,
                Enhanced::new(5, 7, 1),
                "local_from",
                "Message refused: the From address is in a local domain; local users must authenticate (submission)",
            )),
            LocalFromAction::Tag => {
                if let Some(t) = self.txn.as_mut() {
                    if !t.added.contains(LOCAL_FROM_TAG) {
                        t.added.push_str(LOCAL_FROM_TAG);
                    }
                }
                self.check_message();
            }
        }
    }

    /// Hands the message to `SenderChecks::check_message` (unauthenticated sessions).
    fn check_message(&mut self) {
        let Some(t) = self.txn.as_ref() else {
            return self.fail(SmtpError::bad_sequence("No transaction"));
        };
        let ctx = MessageContext {
            sender: SenderContext {
                listener: self.settings.listener,
                client_ip: self.peer.ip(),
                helo: self
                    .helo
                    .as_ref()
                    .map(|h| h.name.clone())
                    .unwrap_or_default(),
                mail_from: t.mail_from.clone(),
                tls: self.tls.is_some(),
            },
            recipients: t.recipients.iter().map(|r| r.address.clone()).collect(),
            mail_from_headers: t.mail_from_headers.clone(),
        };
        let note = t.note.clone();
        self.request(
            Effect::CheckMessage(Box::new(ctx), note),
            Pending::Message(MessageStage::Check),
        );
    }

    pub(crate) fn message_continue(&mut self, stage: MessageStage, r: EffectResult) {
        match (stage, r) {
            (MessageStage::LocalFrom { domain, rest }, EffectResult::LocalDomain(r)) => match r {
                Ok(true) => self.local_from_outside(&domain),
                Ok(false) => self.local_from_next(rest),
                Err(e) => {
                    tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "local domain lookup failed");
                    self.message_refused(SmtpError::temporary_failure("store"))
                }
            },
            (MessageStage::SendAs, EffectResult::MaySendAs(Ok(true))) => {
                let (Some(user), Some(t)) = (&self.user, &self.txn) else {
                    return self.fail(SmtpError::bad_sequence("No transaction"));
                };
                let ctx = SignContext {
                    listener: self.settings.listener,
                    user: user.address.clone(),
                    mail_from: t.mail_from.clone(),
                    from_domain: t.from_domain.clone(),
                };
                self.request(Effect::Sign(ctx), Pending::Message(MessageStage::Sign));
            }
            (MessageStage::SendAs, EffectResult::MaySendAs(Ok(false))) => {
                tracing::info!(target: "bulwark::smtp", session = %self.id, user = ?self.user.as_ref().map(|u| &u.address), "message refused: header From/Sender not the user's address");
                self.message_refused(not_your_address())
            }
            (MessageStage::SendAs, EffectResult::MaySendAs(Err(e))) => {
                tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "send-as lookup failed");
                self.message_refused(SmtpError::temporary_failure("store"))
            }
            (MessageStage::Check, EffectResult::MessageChecked(v)) => {
                let Some(t) = self.txn.as_mut() else {
                    return self.fail(SmtpError::bad_sequence("No transaction"));
                };
                t.check_headers = v.headers;
                t.sender_failed = v.sender_failed;
                if let Some(rewritten) = v.replace_message {
                    t.body = rewritten;
                }
                match v.action {
                    MessageAction::Refuse(e) => return self.message_refused(e),
                    MessageAction::Quarantine => t.quarantine = true,
                    MessageAction::Accept | MessageAction::Tag => {}
                }
                self.ingest();
            }
            (MessageStage::Sign, EffectResult::Signed(Ok(headers))) => {
                if let Some(t) = self.txn.as_mut() {
                    t.sign_headers = headers;
                }
                self.ingest();
            }
            (MessageStage::Sign, EffectResult::Signed(Err(e))) => self.message_refused(e),
            (
                MessageStage::Ingest {
                    size,
                    local,
                    remote,
                    stored,
                },
                EffectResult::Ingested(r),
            ) => self.ingested(size, local, remote, stored, r),
            _ => self.fail(SmtpError::temporary_failure("internal")),
        }
    }

    /// `Received:` (RFC 5321 §4.4) with the RFC 3848 / RFC 6531 §3.7.3 protocol name
    /// and the TLS parameters as a comment.
    pub(crate) fn received_header(&self, id: &str) -> String {
        let Some(t) = &self.txn else {
            return String::new();
        };
        let helo = self.helo.as_ref();
        let esmtp = helo.is_some_and(|h| h.esmtp);
        let proto = match (esmtp, t.utf8, self.tls.is_some(), self.user.is_some()) {
            (false, _, _, _) => "SMTP",
            (true, false, false, false) => "ESMTP",
            (true, false, false, true) => "ESMTPA",
            (true, false, true, false) => "ESMTPS",
            (true, false, true, true) => "ESMTPSA",
            (true, true, false, false) => "UTF8SMTP",
            (true, true, false, true) => "UTF8SMTPA",
            (true, true, true, false) => "UTF8SMTPS",
            (true, true, true, true) => "UTF8SMTPSA",
        };
        let ip = match self.peer.ip() {
            std::net::IpAddr::V4(v4) => format!("[{v4}]"),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => format!("[{v4}]"),
                None => format!("[IPv6:{v6}]"),
            },
        };
        let mut h = format!(
            "Received: from {} ({ip})\r\n",
            helo.map_or("unknown", |h| h.name.as_str())
        );
        if let Some(tls) = &self.tls {
            h.push_str(&format!(
                "\t(using {} with cipher {})\r\n",
                tls.version, tls.cipher
            ));
        }
        h.push_str(&format!(
            "\tby {} (Bulwark) with {proto} id {id}",
            self.settings.hostname
        ));
        // Name the recipient only when there is exactly one (RFC 5321 §7.2), and only
        // when it cannot confuse a parser of this field.
        if let [r] = t.recipients.as_slice() {
            if traceable(&r.address) {
                h.push_str(&format!("\r\n\tfor <{}>", r.address));
            }
        }
        // The date stays on a folded line of the field (RFC 5322 §2.2.3): a line
        // starting with ";" would end the header section for strict parsers.
        h.push_str(&format!("; {}\r\n", rfc5322_date(self.env.now())));
        h
    }

    /// Builds the one `Ingest` of this message and hands it out.
    fn ingest(&mut self) {
        self.messages += 1;
        let id = format!("{}.{}", self.id, self.messages);
        let received = self.received_header(&id);
        let Some(t) = self.txn.as_mut() else {
            return self.fail(SmtpError::bad_sequence("No transaction"));
        };
        let body = std::mem::take(&mut t.body);
        let size = body.len();
        // The relayed form: our trace headers on top of the octets received.
        let trace: [&[u8]; 5] = [
            t.sign_headers.as_bytes(),
            t.mail_from_headers.as_bytes(),
            t.check_headers.as_bytes(),
            received.as_bytes(),
            t.added.as_bytes(),
        ];
        let signed_for = (!t.sign_headers.is_empty())
            .then_some(t.from_domain.as_deref())
            .flatten();
        let env = Envelope {
            return_path: &t.mail_from,
            trace: &trace,
            folder: if t.quarantine {
                Folder::Junk
            } else {
                Folder::Inbox
            },
            internal_date: self.env.now(),
            params: delivery_params(t, signed_for),
        };
        let local = t.to.accounts.len();
        let remote = t.to.forward.len();
        // The copies made here count against the in-flight budget too.
        let extra = planned_overhead(&t.to, &env, size);
        let covered = t.reservation.as_mut().is_some_and(|r| r.grow(extra as u64));
        if !covered {
            return self.message_refused(SmtpError::insufficient_memory());
        }
        let Some(ingest) = plan_delivery(&t.to, env, body) else {
            return self.fail(SmtpError::bad_sequence("No valid recipients"));
        };
        let stored = match &ingest.queue {
            Some(NewQueueEntry { data: Some(d), .. }) => (ingest.data.len(), d.len()),
            Some(_) => (0, ingest.data.len()),
            None => (ingest.data.len(), 0),
        };
        self.request(
            Effect::Ingest(Box::new(ingest)),
            Pending::Message(MessageStage::Ingest {
                size,
                local,
                remote,
                stored,
            }),
        );
    }

    fn ingested(
        &mut self,
        size: usize,
        local: usize,
        remote: usize,
        stored: (usize, usize),
        r: Result<IngestReceipt, StoreError>,
    ) {
        let quarantined = self.txn.as_ref().is_some_and(|t| t.quarantine);
        let mail_from = self.txn.take().map(|t| t.mail_from).unwrap_or_default();
        match r {
            Ok(receipt) => {
                // The catalogue in bulwark-observe/src/metrics.rs (METRICS.md).
                let listener = self.listener();
                metrics::counter!("bulwark_messages_received_total", "listener" => listener)
                    .increment(1);
                metrics::counter!("bulwark_message_bytes_received_total", "listener" => listener)
                    .increment(size as u64);
                if local > 0 {
                    metrics::counter!("bulwark_messages_delivered_total", "destination" => "local")
                        .increment(1);
                    metrics::counter!("bulwark_message_bytes_delivered_total", "destination" => "local")
                        .increment(stored.0 as u64);
                }
                if remote > 0 {
                    metrics::counter!("bulwark_messages_queued_total").increment(1);
                    metrics::counter!("bulwark_message_bytes_queued_total")
                        .increment(stored.1 as u64);
                }
                if quarantined {
                    metrics::counter!("bulwark_smtp_quarantined_total", "listener" => listener)
                        .increment(1);
                }
                tracing::info!(target: "bulwark::smtp", session = %self.id, from = %mail_from, size, local, remote, blob = receipt.blob_id.get(), queue = ?receipt.queue_id.map(QueueId::get), "message accepted");
                let id = match receipt.queue_id {
                    Some(q) => format!("{}.{} (queue {q})", self.id, self.messages),
                    None => format!("{}.{}", self.id, self.messages),
                };
                self.reply(Reply::new(
                    250,
                    Enhanced::new(2, 0, 0),
                    format!("Message accepted as {id}"),
                ));
            }
            Err(e) => {
                tracing::error!(target: "bulwark::smtp", session = %self.id, error = %e, "ingest failed; message not accepted");
                self.fail(SmtpError::temporary_failure("store"));
            }
        }
    }
}
