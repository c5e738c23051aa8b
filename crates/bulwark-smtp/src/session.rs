//! The SMTP session as a state machine without I/O.
//!
//! Inputs are what the connection produced (a command line, a DATA line, a piece of a
//! BDAT chunk, the result of an effect, TLS coming up, a timeout); outputs are replies
//! ([`Session::take_replies`]), a tarpit delay ([`Session::take_delay`]) and what to do
//! next ([`Session::next_step`]): read a command, read a DATA line, read a SASL
//! response, read (the rest of) a BDAT chunk, perform an [`Effect`] (a store lookup,
//! an authentication, a sender check, the ingest) and feed its [`EffectResult`] back,
//! start TLS, or close.
//!
//! Each stage lives in its own module (`ehlo`, `starttls`, `auth`, `mail`, `rcpt`,
//! `data`, `bdat`, `message`) as `impl Session` blocks; every reply goes through
//! [`Session::reply`], which counts errors, applies the tarpit and ends sessions that
//! make too many (RFC 5321 §4.5.4.1 leaves the policy to the server).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_auth::{AuthError, Secret};
use bulwark_config::{Config, ListenerKind, LocalFromAction, Requirement};
use bulwark_net::{LineEnding, TlsInfo};
use bulwark_store::{
    Account, AccountId, Ingest, IngestReceipt, NotifyOn, Recipients, Resolution, Ret, StoreError,
};
use ipnet::IpNet;
use smtp_proto::Request;

use crate::auth::SaslStep;
use crate::bdat::Chunk;
use crate::budget::{InflightBudget, Reservation};
use crate::checks::{
    CheckNote, MailFromVerdict, MessageContext, MessageVerdict, SenderContext, SignContext,
};
use crate::clock::{Environment, SystemEnvironment};
use crate::data::DataReader;
use crate::mail::MailRequest;
use crate::message::MessageStage;
use crate::reply::{Enhanced, Reply, SmtpError};

/// Longest command line, including CRLF (RFC 5321 §4.5.3.1.4).
pub const COMMAND_LINE_MAX: usize = 1000;
/// Longest line inside DATA. RFC 5321 §4.5.3.1.6 says 1000 octets; real mail is
/// sometimes longer, so we accept up to this and refuse the message beyond it.
pub const DATA_LINE_MAX: usize = 64 * 1024;
/// Longest SASL response line: the one bound of every protocol (see
/// `bulwark_auth::sasl::MAX_SASL_LINE`; at least RFC 4954 §4's 12,290).
pub const SASL_LINE_MAX: usize = bulwark_auth::sasl::MAX_SASL_LINE;

/// Per-listener settings, shared by its sessions.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Which listener the sessions serve (port 25, 587 or 465): decides TLS/AUTH
    /// requirements and labels metrics.
    pub listener: ListenerKind,
    /// `[server] hostname`: the greeting, EHLO reply and our `Received:` line.
    pub hostname: String,
    /// `[smtp] max_message_size`, in octets (SIZE, RFC 1870; 552 5.3.4 beyond).
    pub max_message_size: u64,
    /// `[smtp] max_recipients`: RCPTs per transaction (452 4.5.3 beyond).
    pub max_recipients: u32,
    /// `[smtp] max_received_headers`: more `Received:` fields than this is a loop.
    pub max_received_headers: u32,
    /// `[smtp] tarpit_after_errors`: errors before each further one delays the reply.
    pub tarpit_after_errors: u32,
    /// `[smtp] max_errors`: errors after which the session is closed with 421.
    pub max_errors: u32,
    /// `[smtp] tarpit_delay_ms`: the delay per error beyond `tarpit_after_errors`.
    pub tarpit_delay: Duration,
    /// Shared by every listener: message data held in memory by all sessions.
    pub budget: Arc<InflightBudget>,
    /// `[senderauth] internal_servers`: our own relays, which may hand in mail from our
    /// domains without authenticating.
    pub internal_servers: Vec<IpNet>,
    /// `[smtp] reject_unauthenticated_local_senders`.
    pub reject_unauthenticated_local_senders: bool,
    /// `[smtp] max_mime_parts`.
    pub max_mime_parts: usize,
    /// `[smtp] local_from_on_inbound`.
    pub local_from_on_inbound: LocalFromAction,
    /// The addresses the SMTP listeners are bound to (not the unspecified ones): an
    /// address literal naming one of them, or the connection's own address, is us
    /// (RFC 5321 §4.1.3).
    pub own_addresses: Vec<std::net::IpAddr>,
}

impl SessionSettings {
    /// `budget` is the one [`InflightBudget`] of the process (all listeners).
    pub fn from_config(
        listener: ListenerKind,
        c: &Config,
        budget: Arc<InflightBudget>,
    ) -> SessionSettings {
        SessionSettings {
            listener,
            hostname: c.server.hostname.clone(),
            max_message_size: c.smtp.max_message_size,
            max_recipients: c.smtp.max_recipients,
            max_received_headers: c.smtp.max_received_headers,
            tarpit_after_errors: c.smtp.tarpit_after_errors,
            max_errors: c.smtp.max_errors,
            tarpit_delay: Duration::from_millis(c.smtp.tarpit_delay_ms),
            budget,
            internal_servers: c.senderauth.internal_servers.clone(),
            reject_unauthenticated_local_senders: c.smtp.reject_unauthenticated_local_senders,
            max_mime_parts: c.smtp.max_mime_parts as usize,
            local_from_on_inbound: c.smtp.local_from_on_inbound,
            own_addresses: [
                &c.listeners.smtp,
                &c.listeners.submission,
                &c.listeners.submissions,
            ]
            .iter()
            .flat_map(|l| l.bind.iter().map(|a| a.ip().to_canonical()))
            .filter(|ip| !ip.is_unspecified())
            .collect(),
        }
    }

    /// The client is one of our internal relays (`[senderauth] internal_servers`).
    pub fn is_internal_server(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.internal_servers.iter().any(|n| n.contains(&ip))
    }

    /// The domain of `<Postmaster>` without a domain: the mail domain this host
    /// serves, i.e. the host name without its first label ("mail.example.org" →
    /// "example.org") when it has three or more labels.
    pub fn postmaster_domain(&self) -> &str {
        let h = self.hostname.as_str();
        match h.split_once('.') {
            Some((_, parent)) if parent.contains('.') => parent,
            _ => h,
        }
    }

    /// Submission ports always need TLS and AUTH (RFC 6409 §4.3, RFC 8314 §3.3).
    pub fn is_submission(&self) -> bool {
        matches!(
            self.listener,
            ListenerKind::Submission | ListenerKind::Submissions
        )
    }
}

/// What the connection should do next (from `Session::next_step`).
#[derive(Debug)]
pub enum Next {
    /// Read a command line of at most [`COMMAND_LINE_MAX`] octets.
    Command,
    /// Read a DATA line of at most [`DATA_LINE_MAX`] octets.
    DataLine,
    /// Read a SASL response line (a secret: log it as such).
    SaslResponse,
    /// Read at most `remaining` octets of the current BDAT chunk (of `size` octets)
    /// and hand them to `chunk_data`; again until the chunk is complete. Each read
    /// gets the command timeout (RFC 3030 does not bound a chunk's transfer time, so a
    /// slow but steady client is not cut off).
    Chunk {
        /// The chunk's size from the BDAT command, in octets.
        size: u64,
        /// Octets of it not read yet.
        remaining: u64,
    },
    /// Perform this and call `effect_done` with the result.
    Effect(Effect),
    /// Send the pending replies, start TLS, then call `tls_started`.
    StartTls,
    /// Send the pending replies and close the connection.
    Close,
}

/// Work the session needs done outside itself.
#[derive(Debug)]
pub enum Effect {
    /// `Store::resolve`.
    Resolve {
        /// The RCPT address (`<Postmaster>` and literals naming us made local).
        address: String,
    },
    /// `Store::is_local_domain`.
    IsLocalDomain {
        /// The domain of the MAIL FROM address or of a header From address.
        domain: String,
    },
    /// `Authenticator::authenticate`.
    Authenticate {
        /// The SASL authentication identity.
        username: String,
        /// The password (never logged).
        password: Secret,
        /// The SASL mechanism name ("PLAIN", "LOGIN"), for metrics and the limiter.
        mechanism: &'static str,
    },
    /// `Store::may_send_as` for every address (true only if all are allowed).
    MaySendAs {
        /// The authenticated account.
        account: AccountId,
        /// The MAIL FROM address, or the header From/Sender addresses.
        addresses: Vec<String>,
    },
    /// `SenderChecks::check_mail_from`.
    CheckMailFrom(SenderContext),
    /// `SenderChecks::check_forward_routes` for an alias's outside targets.
    CheckRoutes {
        /// The alias's outside addresses.
        targets: Vec<String>,
    },
    /// `SenderChecks::check_message` with `Session::message()`.
    CheckMessage(Box<MessageContext>, Option<CheckNote>),
    /// `SenderChecks::sign` with `Session::sign_parts()`.
    Sign(SignContext),
    /// `Store::ingest`: one call per message.
    Ingest(Box<Ingest>),
}

/// The outcome of an [`Effect`].
pub enum EffectResult {
    /// Of [`Effect::Resolve`]: where the recipient delivers.
    Resolved(Result<Resolution, StoreError>),
    /// Of [`Effect::IsLocalDomain`]: true when we serve the domain.
    LocalDomain(Result<bool, StoreError>),
    /// `Some`: every route is known bad; refuse the recipient with this.
    RoutesChecked(Option<SmtpError>),
    /// Of [`Effect::Authenticate`]: the account, or why not.
    Authenticated(Result<Account, AuthError>),
    /// Of [`Effect::MaySendAs`]: true when every address is allowed.
    MaySendAs(Result<bool, StoreError>),
    /// Of [`Effect::CheckMailFrom`].
    MailFromChecked(MailFromVerdict),
    /// Of [`Effect::CheckMessage`].
    MessageChecked(MessageVerdict),
    /// Of [`Effect::Sign`]: header fields to prepend (with CRLF), or a deferral.
    Signed(Result<String, SmtpError>),
    /// Of [`Effect::Ingest`]: the message is durable (the 250 may go out).
    Ingested(Result<IngestReceipt, StoreError>),
}

/// What the client said in EHLO/HELO.
#[derive(Debug, Clone)]
pub(crate) struct Helo {
    pub name: String,
    /// EHLO (extensions in use) rather than HELO.
    pub esmtp: bool,
}

/// One accepted RCPT and its DSN parameters (RFC 3461 §4.1, §4.2).
#[derive(Debug, Clone)]
pub(crate) struct Recipient {
    pub address: String,
    /// NOTIFY keywords as given.
    pub notify: Option<Vec<NotifyOn>>,
    /// ORCPT as `rfc822;address` (xtext decoded).
    pub orcpt: Option<String>,
}

/// A mail transaction: from MAIL to the end of DATA/BDAT LAST, RSET or EHLO.
#[derive(Default)]
pub(crate) struct Transaction {
    pub mail_from: String,
    /// BODY=8BITMIME (RFC 6152) was given.
    pub eight_bit: bool,
    /// SMTPUTF8 (RFC 6531) was given.
    pub utf8: bool,
    /// RET= (RFC 3461 §4.3).
    pub ret: Option<Ret>,
    /// ENVID= (RFC 3461 §4.4).
    pub envid: Option<String>,
    pub recipients: Vec<Recipient>,
    /// RCPTs answered 250, repeated ones included: what `max_recipients` bounds.
    pub rcpt_count: u32,
    /// Local accounts to deliver to and outside addresses to queue (remote
    /// recipients of authenticated clients and alias forward targets), deduplicated.
    pub to: Recipients,
    /// From the MAIL-time sender check (e.g. Received-SPF).
    pub mail_from_headers: String,
    pub note: Option<CheckNote>,
    /// The message octets as received (dot-unstuffed DATA, or BDAT chunks).
    pub body: Vec<u8>,
    /// The share of `[smtp] max_inflight_bytes` that covers `body` (and, at the end,
    /// the copies made for the ingest); given back when the transaction ends.
    pub reservation: Option<Reservation>,
    /// BDAT was used; a failed chunk fails the rest of the transaction.
    pub bdat: bool,
    pub bdat_failed: Option<SmtpError>,
    /// Headers we add below our Received: (submission: Date, Message-ID; port 25:
    /// the local-From tag).
    pub added: String,
    /// Headers from `check_message` (Authentication-Results…).
    pub check_headers: String,
    /// Headers from `sign` (DKIM-Signature).
    pub sign_headers: String,
    pub quarantine: bool,
    pub from_domain: Option<String>,
    /// `MessageVerdict::sender_failed`: queued copies get no notices.
    pub sender_failed: bool,
}

pub(crate) enum State {
    Command,
    Data(DataReader),
    Chunk(Chunk),
    Sasl(SaslStep),
    /// An effect was handed out by `next_step`; its result continues `Pending`.
    Waiting(Pending),
    StartTls,
    Closed,
}

/// What an effect's result continues.
pub(crate) enum Pending {
    Mail(MailRequest),
    Rcpt(Recipient),
    /// The recipient resolved to outside targets only; their routes are checked.
    RcptRoutes {
        rcpt: Recipient,
        forward: Vec<String>,
    },
    Auth(&'static str),
    Message(MessageStage),
}

/// One SMTP session, sans I/O: fed lines and effect results, it hands out replies,
/// effects to perform and what to read next ([`Session::next_step`]).
pub struct Session {
    pub(crate) settings: Arc<SessionSettings>,
    pub(crate) id: String,
    /// The time and randomness (system ones unless a test or the fuzzer sets others).
    pub(crate) env: Arc<dyn Environment>,
    pub(crate) peer: SocketAddr,
    /// Our end of the connection (an address literal naming it is local).
    pub(crate) local: Option<SocketAddr>,
    pub(crate) requirement: Requirement,
    pub(crate) tls: Option<TlsInfo>,
    pub(crate) helo: Option<Helo>,
    pub(crate) user: Option<Account>,
    pub(crate) txn: Option<Transaction>,
    pub(crate) state: State,
    effect: Option<Effect>,
    replies: Vec<Reply>,
    delay: Duration,
    errors: u32,
    pub(crate) messages: u32,
    /// An AUTH was refused before its exchange began: a client that went ahead
    /// anyway sends its SASL response(s) next, which must not reach the log.
    pub(crate) sasl_refused: bool,
}

impl Session {
    /// A new session; the greeting is the first reply. `requirement` is what the
    /// client must do before MAIL (per-host accept policy on port 25; `AuthTls` on
    /// submission). `tls` is set on implicit-TLS listeners.
    pub fn new(
        settings: Arc<SessionSettings>,
        id: String,
        peer: SocketAddr,
        requirement: Requirement,
        tls: Option<TlsInfo>,
    ) -> Session {
        let requirement = if settings.is_submission() {
            Requirement::AuthTls
        } else {
            requirement
        };
        let greeting = Reply::plain(220, format!("{} ESMTP Bulwark ready", settings.hostname));
        let mut s = Session {
            settings,
            id,
            env: Arc::new(SystemEnvironment),
            peer,
            local: None,
            requirement,
            tls,
            helo: None,
            user: None,
            txn: None,
            state: State::Command,
            effect: None,
            replies: Vec::with_capacity(4),
            delay: Duration::ZERO,
            errors: 0,
            messages: 0,
            sasl_refused: false,
        };
        s.reply(greeting);
        s
    }

    /// Replaces the system clock and randomness (for reproducible tests and fuzzing).
    pub fn set_environment(&mut self, env: Arc<dyn Environment>) {
        self.env = env;
    }

    /// Our end of the connection, for address literals that name this server.
    pub fn set_local_addr(&mut self, local: SocketAddr) {
        self.local = Some(local);
    }

    pub(crate) fn listener(&self) -> &'static str {
        self.settings.listener.name()
    }

    /// The authenticated account, if any.
    pub fn user(&self) -> Option<&Account> {
        self.user.as_ref()
    }

    /// The connection is encrypted (implicit TLS or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Replies to send, in order.
    pub fn take_replies(&mut self) -> Vec<Reply> {
        std::mem::take(&mut self.replies)
    }

    /// True when replies are waiting to be sent.
    pub fn has_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    /// How long to wait before sending the pending replies (tarpit).
    pub fn take_delay(&mut self) -> Duration {
        std::mem::take(&mut self.delay)
    }

    /// What to do next.
    pub fn next_step(&mut self) -> Next {
        match &self.state {
            State::Command => Next::Command,
            State::Data(_) => Next::DataLine,
            State::Sasl(_) => Next::SaslResponse,
            State::Chunk(c) => Next::Chunk {
                size: c.size,
                remaining: c.size.saturating_sub(c.received),
            },
            State::Waiting(_) => match self.effect.take() {
                Some(e) => Next::Effect(e),
                // An effect result is owed but none is pending: a bug; fail safe.
                None => {
                    self.fail_internal("effect lost");
                    Next::Close
                }
            },
            State::StartTls => Next::StartTls,
            State::Closed => Next::Close,
        }
    }

    /// The one place replies are queued: counts errors, tarpits, and closes the
    /// session at `max_errors` with 421 4.7.0 instead of the error.
    pub(crate) fn reply(&mut self, r: impl Into<Reply>) {
        self.push_reply(r.into(), true);
    }

    /// A refusal that is not the client's error and must not bring it closer to the
    /// error limit or the tarpit: RFC 5321 §4.5.3.1.10 has a client that meets
    /// `max_recipients` (452 4.5.3) send the rest in a later transaction.
    pub(crate) fn reply_uncounted(&mut self, r: impl Into<Reply>) {
        self.push_reply(r.into(), false);
    }

    fn push_reply(&mut self, mut r: Reply, counted: bool) {
        if r.is_negative() && r.code != 421 {
            metrics::counter!("bulwark_smtp_rejections_total", "listener" => self.listener(), "reason" => r.reason)
                .increment(1);
        }
        if counted && r.is_negative() && r.code != 421 {
            self.errors += 1;
            if self.errors >= self.settings.max_errors {
                metrics::counter!("bulwark_smtp_error_limit_total", "listener" => self.listener())
                    .increment(1);
                r = Reply::new(
                    421,
                    Enhanced::new(4, 7, 0),
                    format!(
                        "{} Too many errors, closing connection",
                        self.settings.hostname
                    ),
                )
                .with_reason("too_many_errors");
                self.txn = None;
                self.state = State::Closed;
            } else if self.errors > self.settings.tarpit_after_errors {
                let n = self.errors - self.settings.tarpit_after_errors;
                self.delay += self.settings.tarpit_delay.saturating_mul(n);
                metrics::counter!("bulwark_smtp_tarpit_total", "listener" => self.listener())
                    .increment(1);
            }
        }
        self.replies.push(r);
    }

    pub(crate) fn fail(&mut self, e: SmtpError) {
        self.reply(e);
    }

    /// Requests an effect; its result continues `pending`.
    pub(crate) fn request(&mut self, effect: Effect, pending: Pending) {
        self.effect = Some(effect);
        self.state = State::Waiting(pending);
    }

    pub(crate) fn fail_internal(&mut self, what: &str) {
        tracing::error!(target: "bulwark::smtp", session = %self.id, "internal error: {what}");
        self.reply(
            Reply::new(
                421,
                Enhanced::new(4, 3, 0),
                format!(
                    "{} Internal error, closing connection",
                    self.settings.hostname
                ),
            )
            .with_reason("internal"),
        );
        self.txn = None;
        self.state = State::Closed;
    }

    // ---------------------------------------------------------------------------
    // Inputs
    // ---------------------------------------------------------------------------

    /// Whether the protocol log must show this command line as `***`: after a refused
    /// AUTH, a client that did not wait for the refusal sends its SASL response(s)
    /// (base64 credentials) as the next line(s). Lines that start with an SMTP verb
    /// are commands and logged as usual (AUTH lines are redacted by the log itself).
    pub fn command_is_secret(&self, line: &[u8]) -> bool {
        self.sasl_refused && !starts_with_verb(line)
    }

    /// A command line (without its line ending).
    pub fn command(&mut self, mut line: Vec<u8>, ending: LineEnding) {
        if !matches!(self.state, State::Command) {
            return self.fail_internal("command in wrong state");
        }
        if starts_with_verb(&line) {
            self.sasl_refused = false;
        }
        // RFC 5321 §2.3.8: lines end with CRLF; a bare LF or CR is not a line end, and a
        // NUL is not text. Refuse rather than guess (command smuggling).
        if ending == LineEnding::Lf {
            return self.fail(SmtpError::new(
                500,
                Enhanced::new(5, 5, 2),
                "bare_lf",
                "Lines must end with CRLF (RFC 5321 section 2.3.8)",
            ));
        }
        if line.contains(&b'\r') {
            return self.fail(SmtpError::new(
                500,
                Enhanced::new(5, 5, 2),
                "bare_cr",
                "Bare CR in command (RFC 5321 section 2.3.8)",
            ));
        }
        if line.contains(&0) {
            return self.fail(SmtpError::new(
                500,
                Enhanced::new(5, 5, 2),
                "nul",
                "NUL octet in command",
            ));
        }
        if let Some(e) = crate::numbers::check(&line) {
            metrics::counter!("bulwark_smtp_commands_total", "listener" => self.listener(), "command" => "invalid")
                .increment(1);
            return self.fail(e);
        }
        // Address literals and quoted local parts (see `address`).
        let path = match crate::address::preparse(&line) {
            Ok(Some(p)) => {
                line = p.line;
                Some(p.address)
            }
            Ok(None) => None,
            Err(e) => {
                metrics::counter!("bulwark_smtp_commands_total", "listener" => self.listener(), "command" => "invalid")
                    .increment(1);
                return self.fail(e);
            }
        };
        line.extend_from_slice(b"\r\n");
        let parsed = Request::parse(&mut line.iter());
        match parsed {
            Ok(req) => {
                metrics::counter!("bulwark_smtp_commands_total", "listener" => self.listener(), "command" => req.name())
                    .increment(1);
                self.dispatch(req, path)
            }
            Err(e) => {
                metrics::counter!("bulwark_smtp_commands_total", "listener" => self.listener(), "command" => "invalid")
                    .increment(1);
                self.fail(parse_error(e))
            }
        }
    }

    /// The command line was longer than [`COMMAND_LINE_MAX`] (and has been discarded).
    pub fn command_too_long(&mut self) {
        self.fail(SmtpError::line_too_long());
    }

    /// The client stayed silent for the command timeout, or the session ran too long.
    pub fn timed_out(&mut self) {
        self.reply(
            Reply::new(
                421,
                Enhanced::new(4, 4, 2),
                format!(
                    "{} Timeout exceeded, closing connection",
                    self.settings.hostname
                ),
            )
            .with_reason("timeout"),
        );
        metrics::counter!("bulwark_smtp_timeouts_total", "listener" => self.listener())
            .increment(1);
        self.txn = None;
        self.state = State::Closed;
    }

    /// The client did not take our replies within the command timeout: nothing more
    /// can be said to it; the session ends (counted as a timeout).
    pub fn write_timed_out(&mut self) {
        metrics::counter!("bulwark_smtp_timeouts_total", "listener" => self.listener())
            .increment(1);
        self.disconnected();
    }

    /// The server is shutting down: say so between commands (RFC 5321 §3.8).
    pub fn shutting_down(&mut self) {
        self.reply(
            Reply::new(
                421,
                Enhanced::new(4, 3, 2),
                format!(
                    "{} Service shutting down, try again later",
                    self.settings.hostname
                ),
            )
            .with_reason("shutdown"),
        );
        self.txn = None;
        self.state = State::Closed;
    }

    /// The client went away. Whatever was not acknowledged is dropped; nothing
    /// partial was ever handed to the store.
    pub fn disconnected(&mut self) {
        if let Some(t) = self.txn.take() {
            if matches!(self.state, State::Data(_) | State::Chunk(_)) || !t.body.is_empty() {
                metrics::counter!("bulwark_smtp_aborted_transfers_total", "listener" => self.listener())
                    .increment(1);
            }
        }
        self.state = State::Closed;
    }

    /// The result of the effect handed out by `next`.
    pub fn effect_done(&mut self, result: EffectResult) {
        let State::Waiting(pending) = std::mem::replace(&mut self.state, State::Command) else {
            return self.fail_internal("effect result without a pending effect");
        };
        match (pending, result) {
            (Pending::Rcpt(rcpt), EffectResult::Resolved(r)) => self.rcpt_resolved(rcpt, r),
            (Pending::RcptRoutes { rcpt, forward }, EffectResult::RoutesChecked(r)) => {
                self.rcpt_routes_checked(rcpt, forward, r)
            }
            (Pending::Mail(req), EffectResult::LocalDomain(r)) => self.mail_local_domain(req, r),
            (Pending::Mail(req), EffectResult::MaySendAs(r)) => self.mail_may_send_as(req, r),
            (Pending::Mail(req), EffectResult::MailFromChecked(v)) => self.mail_checked(req, v),
            (Pending::Auth(mech), EffectResult::Authenticated(r)) => self.auth_result(mech, r),
            (Pending::Message(stage), r) => self.message_continue(stage, r),
            _ => self.fail_internal("effect result does not match the request"),
        }
    }

    /// `path`: the MAIL/RCPT address as `address::preparse` read it, when it did.
    fn dispatch(&mut self, req: Request<Cow<'_, str>>, path: Option<String>) {
        match req {
            Request::Ehlo { host } => self.ehlo(&host, true),
            Request::Helo { host } => self.ehlo(&host, false),
            Request::Lhlo { .. } => self.fail(SmtpError::unknown_command()),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            // A non-empty path is taken only as `address::preparse` read it: smtp-proto
            // also parses spellings the reader refuses to guess at (`MAIL  FROM:`), and
            // reads quoted local parts differently.
            Request::Mail { mut from } => {
                match path {
                    Some(p) => from.address = Cow::Owned(p),
                    None if !from.address.is_empty() => {
                        return self.fail(crate::address::unread_path(true))
                    }
                    None => {}
                }
                self.mail(from)
            }
            Request::Rcpt { mut to } => {
                match path {
                    Some(p) => to.address = Cow::Owned(p),
                    None if !to.address.is_empty() => {
                        return self.fail(crate::address::unread_path(false))
                    }
                    None => {}
                }
                self.rcpt(to)
            }
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size as u64, is_last),
            Request::Rset => {
                self.txn = None;
                self.reply(Reply::ok("Flushed"));
            }
            Request::Noop { .. } => self.reply(Reply::ok("OK")),
            // RFC 5321 §3.5.3: 252 when we will not verify; never disclose accounts.
            Request::Vrfy { .. } => self.reply(Reply::new(
                252,
                Enhanced::new(2, 5, 0),
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Expn { .. } => self.fail(SmtpError::new(
                502,
                Enhanced::new(5, 5, 1),
                "not_implemented",
                "EXPN is not available",
            )),
            Request::Help { .. } => self.reply(Reply::new(
                214,
                Enhanced::new(2, 0, 0),
                "See RFC 5321; commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT",
            )),
            Request::Quit => {
                self.reply(Reply::new(
                    221,
                    Enhanced::new(2, 0, 0),
                    format!("{} closing connection", self.settings.hostname),
                ));
                self.txn = None;
                self.state = State::Closed;
            }
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.fail(SmtpError::not_implemented())
            }
        }
    }
}

/// The verbs of RFC 5321 §4.1 and the extensions we know (RFC 3207, 4954, 3030, 1985,
/// 2645, 4468); used only to tell commands from stray SASL responses in the log.
const VERBS: [&[u8]; 18] = [
    b"EHLO",
    b"HELO",
    b"MAIL",
    b"RCPT",
    b"DATA",
    b"BDAT",
    b"RSET",
    b"NOOP",
    b"QUIT",
    b"VRFY",
    b"EXPN",
    b"HELP",
    b"STARTTLS",
    b"AUTH",
    b"ETRN",
    b"ATRN",
    b"BURL",
    b"LHLO",
];

/// The line starts with an SMTP verb followed by a space or nothing. A base64 SASL
/// response has no space, and one that happened to spell a bare verb would be three
/// octets of binary, not a credential.
fn starts_with_verb(line: &[u8]) -> bool {
    let word = line.split(|b| *b == b' ').next().unwrap_or_default();
    VERBS.iter().any(|v| word.eq_ignore_ascii_case(v))
}

/// smtp-proto's parse errors in SMTP terms (RFC 5321 §4.2.2, RFC 3463).
fn parse_error(e: smtp_proto::Error) -> SmtpError {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => SmtpError::unknown_command(),
        E::InvalidSenderAddress => SmtpError::new(
            501,
            Enhanced::new(5, 1, 7),
            "bad_address",
            "Bad sender address syntax",
        ),
        E::InvalidRecipientAddress => SmtpError::new(
            501,
            Enhanced::new(5, 1, 3),
            "bad_address",
            "Bad recipient address syntax",
        ),
        E::SyntaxError { syntax } => SmtpError::syntax(format!("Syntax: {syntax}")),
        E::InvalidParameter { param } => SmtpError::new(
            501,
            Enhanced::new(5, 5, 4),
            "bad_parameter",
            format!("Invalid value for parameter {param}"),
        ),
        // RFC 5321 §4.1.1.11: 555 for MAIL/RCPT parameters not recognized.
        E::UnsupportedParameter { .. } => SmtpError::new(
            555,
            Enhanced::new(5, 5, 4),
            "bad_parameter",
            "Unsupported parameter",
        ),
        _ => SmtpError::syntax("Syntax error"),
    }
}
