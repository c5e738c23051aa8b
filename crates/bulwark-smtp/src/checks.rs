//! The seam where sender authentication plugs in (SPF, Sender ID, DKIM, DMARC:
//! `bulwark-senderauth`). This crate implements none of it; it calls a
//! [`SenderChecks`] at these points and acts on the answers (plus, at RCPT on an
//! unauthenticated session, [`SenderChecks::check_forward_routes`] for an alias that
//! only forwards outside):
//!
//! 1. **MAIL** on an unauthenticated session ([`SenderChecks::check_mail_from`]): SPF
//!    for the MAIL FROM / HELO identity (RFC 7208 §2.4) may refuse the sender right
//!    away, and may hand back a `Received-SPF` header and an opaque [`CheckNote`] that
//!    is given back, untouched, at step 2 (e.g. the SPF output DMARC needs).
//! 2. **End of DATA / last BDAT** on an unauthenticated session
//!    ([`SenderChecks::check_message`]): sees the message exactly as received (before
//!    our trace headers). Returns headers to prepend (Authentication-Results RFC 8601,
//!    Received-SPF) and an action: accept, tag (accept with the headers), quarantine
//!    (local copies go to the recipient's Junk mailbox), reject or tempfail.
//! 3. **End of DATA on an authenticated session** ([`SenderChecks::sign`]): the message
//!    as it will be relayed (our added Message-ID/Date included, trace headers not)
//!    may be signed; the returned header lines (DKIM-Signature) are prepended.
//!
//! The headers returned are complete header fields including their CRLF line ends
//! (folded as the checker wishes); they are inserted below our `Received:` line.
//! Every method has a default that does nothing, so an implementation only writes
//! what it checks. `serve.rs` passes the implementation to `SmtpHandler::new`.

use std::any::Any;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bulwark_config::ListenerKind;

use crate::reply::SmtpError;

/// Whatever a checker wants to remember from MAIL to the end of DATA.
pub type CheckNote = Arc<dyn Any + Send + Sync>;

/// What is known about the client when MAIL arrives.
#[derive(Debug, Clone)]
pub struct SenderContext {
    /// The listener the client connected to.
    pub listener: ListenerKind,
    /// The client's address: SPF's `<ip>` (RFC 7208 §4.1).
    pub client_ip: IpAddr,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The MAIL FROM address; empty for the null sender `<>`.
    pub mail_from: String,
    /// The session is encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
}

/// The answer at MAIL.
#[derive(Default)]
pub struct MailFromVerdict {
    /// `Some` refuses MAIL with this reply (e.g. 550 5.7.23 for an SPF fail under a
    /// reject policy, 451 4.7.24 for a temporary DNS error).
    pub refuse: Option<SmtpError>,
    /// Header fields to add to the message (e.g. Received-SPF), with CRLF.
    pub headers: String,
    /// Given back to `check_message`.
    pub note: Option<CheckNote>,
}

/// What a message check decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MessageAction {
    /// Deliver normally.
    #[default]
    Accept,
    /// Deliver normally; the headers carry the verdict (for metrics it differs from
    /// Accept).
    Tag,
    /// Deliver local copies to the recipient's Junk mailbox
    /// (`DeliveryTarget::SpecialUse(_, Junk)`); remote forward copies are still queued,
    /// with the verdict in their headers.
    Quarantine,
    /// Refuse (5xx) or defer (4xx) the whole message.
    Refuse(SmtpError),
}

/// The answer after DATA.
#[derive(Default)]
pub struct MessageVerdict {
    /// What to do with the message.
    pub action: MessageAction,
    /// Header fields to prepend (Authentication-Results, Received-SPF), with CRLF.
    pub headers: String,
    /// The received message rewritten, to be stored instead of the client's octets:
    /// RFC 8601 §5 asks to remove Authentication-Results fields that claim our
    /// authserv-id but arrived from outside. `None` keeps the message as received.
    pub replace_message: Option<Vec<u8>>,
    /// The envelope sender failed authentication (SPF fail, or DMARC fail of the
    /// header From): it is likely forged, so the queue sends it no delivery notice
    /// for copies it forwards (no backscatter to the victim of the forgery).
    pub sender_failed: bool,
}

/// The envelope of a received message.
#[derive(Debug, Clone)]
pub struct MessageContext {
    /// The client and MAIL FROM, as at MAIL.
    pub sender: SenderContext,
    /// The accepted RCPT addresses, in order.
    pub recipients: Vec<String>,
    /// Received-SPF etc. produced at MAIL (already to be prepended; for reference).
    pub mail_from_headers: String,
}

/// What a signer knows about a submitted message.
#[derive(Debug, Clone)]
pub struct SignContext {
    /// The listener the message was submitted on.
    pub listener: ListenerKind,
    /// The authenticated account.
    pub user: String,
    /// The MAIL FROM address; empty for the null sender `<>`.
    pub mail_from: String,
    /// Domain of the (checked) header From address.
    pub from_domain: Option<String>,
}

/// Sender authentication, implemented by `bulwark-senderauth`.
#[async_trait]
pub trait SenderChecks: Send + Sync + 'static {
    /// RFC 7208 SPF (and anything else decided on the envelope) at MAIL, for
    /// unauthenticated sessions only.
    async fn check_mail_from(&self, _ctx: &SenderContext) -> MailFromVerdict {
        MailFromVerdict::default()
    }

    /// At RCPT on an unauthenticated session, for a recipient (an alias) that only
    /// forwards to these outside addresses: `Some` refuses the recipient when every
    /// route is known to fail (e.g. a null MX, RFC 7505), so no failure notice has to
    /// go to a sender that may be forged (backscatter). `None` accepts, also when DNS
    /// cannot answer.
    async fn check_forward_routes(&self, _targets: &[String]) -> Option<SmtpError> {
        None
    }

    /// DKIM verification, Sender ID (RFC 4406 PRA), DMARC… on the message as received
    /// (`message` is the raw RFC 5322 octets with CRLF line ends), for unauthenticated
    /// sessions only.
    async fn check_message(
        &self,
        _ctx: &MessageContext,
        _note: Option<&CheckNote>,
        _message: &[u8],
    ) -> MessageVerdict {
        MessageVerdict::default()
    }

    /// DKIM signing (RFC 6376) of an authenticated submission. `message` is the
    /// message in pieces to be concatenated (added headers, then the client's octets).
    /// Returns header fields to prepend (with CRLF), or an error that defers the
    /// message (e.g. 451 4.3.0 when the key cannot be read).
    async fn sign(&self, _ctx: &SignContext, _message: &[&[u8]]) -> Result<String, SmtpError> {
        Ok(String::new())
    }
}

/// No sender authentication: every check passes, nothing is signed.
pub struct NoSenderChecks;

#[async_trait]
impl SenderChecks for NoSenderChecks {}
