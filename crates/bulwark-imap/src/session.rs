//! The sans-I/O session core: states (RFC 9051 §3: Not Authenticated, Authenticated,
//! Selected, Logout), command dispatch and every command's semantics.
//!
//! It is fed decoded commands and writes responses to a `Sink`; what needs the socket
//! (STARTTLS, the SASL continuation, IDLE's wait, closing) is returned as `Next` for
//! the shell in `server.rs` to perform. The store and the authenticator are its only
//! other dependencies, so unit tests run whole sessions on a temporary store.

use std::net::IpAddr;
use std::sync::Arc;

use crate::code::{Reply, ResponseCode};
use crate::names::{self, encode_mutf7, parse_name, Pattern, DELIMITER};
use crate::notify::{MailboxWatch, Notifier};
use crate::resp::{self, Resp, Sink};
use crate::seqset;
use crate::view::{Updates, View};
use bulwark_auth::{AuthError, Authenticator, Secret};
use bulwark_store::{
    Account, Delivery, DeliveryTarget, FlagOp, Flags, Ingest, Mailbox, SharedStore, StoreError,
};
use imap_codec::imap_types::{
    auth::AuthMechanism,
    command::{Command, CommandBody},
    extensions::enable::CapabilityEnable,
    flag::{Flag, StoreResponse, StoreType},
    mailbox::{ListMailbox, Mailbox as WireMailbox},
    status::StatusDataItemName,
};

/// Longest password LOGIN and AUTHENTICATE accept (longer ones are refused before
/// any hashing).
pub const MAX_PASSWORD: usize = 1024;
/// Longest user name (an address: RFC 5321 §4.5.3.1 allows 64 + 1 + 255 octets).
pub const MAX_USERNAME: usize = 320;

/// Per-session settings from the configuration and the connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The listener's name (`imap` or `imaps`), for metrics and the authenticator.
    pub listener: &'static str,
    pub peer: IpAddr,
    /// TLS is up (implicit TLS, or after STARTTLS).
    pub tls: bool,
    pub max_literal_size: u64,
    /// `[smtp] max_mime_parts`: APPEND takes what SMTP takes.
    pub max_mime_parts: usize,
}

/// What the shell must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// The OK was sent: start the TLS handshake, then call `tls_started`.
    StartTls,
    /// Send "+ " and pass the client's next line to `auth_response`.
    AuthContinue(String),
    /// Send "+ idling", then wait for DONE (`idle_done`) while calling
    /// `idle_updates` whenever `wait_change` returns.
    Idle(String),
    /// Close the connection.
    Close,
}

/// How a command ended, before the tagged line is written.
pub(crate) enum Done {
    Ok(Reply),
    No(Reply),
    Bad(Reply),
}

impl Done {
    /// The `result` label of `bulwark_imap_commands_total`.
    fn result(&self) -> &'static str {
        match self {
            Done::Ok(_) => "ok",
            Done::No(_) => "no",
            Done::Bad(_) => "bad",
        }
    }

    /// The tagged completion line.
    fn tagged(&self, tag: &str) -> String {
        match self {
            Done::Ok(t) => format!("{tag} OK {t}"),
            Done::No(t) => format!("{tag} NO {t}"),
            Done::Bad(t) => format!("{tag} BAD {t}"),
        }
    }
}

fn ok(s: impl Into<Reply>) -> Done {
    Done::Ok(s.into())
}
fn no(s: impl Into<Reply>) -> Done {
    Done::No(s.into())
}
fn bad(s: impl Into<Reply>) -> Done {
    Done::Bad(s.into())
}

/// Maps a store failure to a response (RFC 5530 response codes).
pub(crate) fn store_no(e: &StoreError) -> Done {
    match e {
        StoreError::NotFound(_) => no(ResponseCode::Nonexistent.text("No such mailbox")),
        StoreError::AlreadyExists(_) => {
            no(ResponseCode::AlreadyExists.text("Mailbox already exists"))
        }
        StoreError::Invalid(m) => no(ResponseCode::Cannot.text(m.as_str())),
        _ => {
            tracing::error!(target: "bulwark::imap", error = %e, "store failure");
            no(ResponseCode::Unavailable.text("Temporary server failure, try again later"))
        }
    }
}

pub struct Session {
    pub(crate) store: SharedStore,
    auth: Authenticator,
    pub(crate) cfg: SessionConfig,
    pub(crate) account: Option<Account>,
    pub(crate) view: Option<View>,
    notifier: Notifier,
    /// Changes of the selected mailbox (IDLE wake-ups, updates after commands).
    watch: Option<MailboxWatch>,
    /// The selected mailbox was deleted by another session: BYE, then close.
    closing: bool,
    /// The selected mailbox may have changed since the last sync.
    dirty: bool,
    /// RFC 7162 CONDSTORE enabled (ENABLE, SELECT (CONDSTORE) or a MODSEQ use).
    pub(crate) condstore: bool,
    /// RFC 7162 §3.2 QRESYNC enabled (ENABLE QRESYNC): VANISHED instead of EXPUNGE.
    pub(crate) qresync: bool,
    /// The RETURN options of the SEARCH being handled (RFC 4731), cut from the
    /// command by `esearch::split` before imap-codec decodes the rest.
    pub(crate) search_return: Option<crate::esearch::ReturnOpts>,
    /// The UIDs `SEARCH RETURN (SAVE)` kept for `$` (RFC 5182), ascending; emptied
    /// when the selected mailbox changes.
    pub(crate) saved_uids: Vec<u32>,
    logged_out: bool,
    /// `[imap] max_inflight_bytes`, shared by every session (see `budget`).
    pub(crate) memory: Arc<crate::budget::MemoryBudget>,
}

impl Session {
    pub fn new(
        store: SharedStore,
        auth: Authenticator,
        cfg: SessionConfig,
        notifier: Notifier,
    ) -> Session {
        Session {
            store,
            auth,
            cfg,
            account: None,
            view: None,
            notifier,
            watch: None,
            closing: false,
            dirty: false,
            condstore: false,
            qresync: false,
            search_return: None,
            saved_uids: Vec::new(),
            logged_out: false,
            memory: crate::budget::MemoryBudget::unlimited(),
        }
    }

    /// Makes FETCH draw bodies read whole from the process's memory budget.
    pub fn set_memory_budget(&mut self, memory: Arc<crate::budget::MemoryBudget>) {
        self.memory = memory;
    }

    /// The logged-in account's id.
    pub fn logged_in_account(&self) -> Option<bulwark_store::AccountId> {
        self.account.as_ref().map(|a| a.id)
    }

    /// The logged-in user, for the protocol log.
    pub fn user(&self) -> Option<&str> {
        self.account.as_ref().map(|a| a.address.as_str())
    }

    pub fn is_authenticated(&self) -> bool {
        self.account.is_some()
    }

    pub fn tls_started(&mut self) {
        self.cfg.tls = true;
    }

    /// The capability list for the current state (RFC 9051 §7.2.2). Before TLS: no
    /// way to send a password is offered (LOGINDISABLED, no AUTH=).
    pub fn capabilities(&self) -> String {
        let mut c = String::from("IMAP4rev1");
        if !self.cfg.tls {
            c.push_str(" STARTTLS LOGINDISABLED");
        } else if self.account.is_none() {
            c.push_str(" AUTH=PLAIN SASL-IR");
        }
        c.push_str(" LITERAL+ ID ENABLE");
        if self.account.is_some() {
            c.push_str(
                " IDLE NAMESPACE UNSELECT UIDPLUS MOVE SPECIAL-USE CHILDREN CONDSTORE ESEARCH SEARCHRES LIST-EXTENDED LIST-STATUS STATUS=SIZE MULTIAPPEND BINARY SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES QRESYNC",
            );
        }
        c
    }

    pub fn greeting(&self) -> String {
        let code = ResponseCode::Capability(self.capabilities());
        format!("{}\r\n", code.untagged_ok("Bulwark IMAP ready"))
    }

    /// Whether the session must end (after a BYE it has sent).
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Handles one complete command as read from the client (with its literals):
    /// decoded with imap-codec, or, for what imap-codec does not know, by the
    /// hand-written LIST-EXTENDED parser (`list_ext`).
    pub async fn handle_raw(&mut self, bytes: &[u8], sink: &mut dyn Sink) -> std::io::Result<Next> {
        use imap_codec::decode::Decoder;
        let substituted;
        let bytes = match crate::searchres::find(bytes) {
            Some((use_, at)) if self.view.is_some() => match self.saved_set(use_) {
                Some(set) => {
                    substituted = crate::searchres::replace(bytes, &at, &set);
                    &substituted[..]
                }
                None => {
                    // RFC 5182 §2.1: `$` with an empty saved result is an empty set; the
                    // command succeeds and touches nothing.
                    let tag = crate::framing::guess_tag(bytes).unwrap_or_else(|| "*".into());
                    self.send_updates(sink, false).await?;
                    resp::line(sink, &format!("{tag} OK No messages match $")).await?;
                    return Ok(Next::Continue);
                }
            },
            _ => bytes,
        };
        match crate::esearch::split(bytes) {
            Some(crate::esearch::Split::Return { command, opts }) => {
                return match imap_codec::CommandCodec::default().decode(&command) {
                    Ok((_, cmd)) => {
                        self.search_return = Some(opts);
                        let r = self.handle(cmd, sink).await;
                        self.search_return = None;
                        r
                    }
                    Err(_) => {
                        let tag = crate::framing::guess_tag(bytes).unwrap_or_else(|| "*".into());
                        resp::line(sink, &format!("{tag} BAD Syntax error in SEARCH")).await?;
                        Ok(Next::Continue)
                    }
                };
            }
            Some(crate::esearch::Split::Bad(tag)) => {
                metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "malformed").increment(1);
                resp::line(sink, &format!("{tag} BAD Invalid SEARCH RETURN options")).await?;
                return Ok(Next::Continue);
            }
            None => {}
        }
        match imap_codec::CommandCodec::default().decode(bytes) {
            Ok((_, cmd)) => self.handle(cmd, sink).await,
            Err(_) if crate::multiappend::split(bytes).is_some() => {
                let parts = crate::multiappend::split(bytes).unwrap_or_default();
                self.handle_multiappend(&parts, sink).await
            }
            Err(_) => match crate::list_ext::parse(bytes) {
                Some(Ok(ext)) => self.handle_list_extended(ext, sink).await,
                Some(Err(tag)) => {
                    resp::line(sink, &format!("{tag} BAD Invalid LIST options")).await?;
                    Ok(Next::Continue)
                }
                None => {
                    metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "malformed").increment(1);
                    let tag = crate::framing::guess_tag(bytes).unwrap_or_else(|| "*".into());
                    resp::line(sink, &format!("{tag} BAD Syntax error or unknown command")).await?;
                    Ok(Next::Continue)
                }
            },
        }
    }

    /// Handles one decoded command.
    pub async fn handle(&mut self, cmd: Command<'_>, sink: &mut dyn Sink) -> std::io::Result<Next> {
        let tag = cmd.tag.as_ref().to_string();
        let name = command_name(&cmd.body);
        let uid_cmd = matches!(
            &cmd.body,
            CommandBody::Fetch { uid: true, .. }
                | CommandBody::Store { uid: true, .. }
                | CommandBody::Search { uid: true, .. }
                | CommandBody::Sort { uid: true, .. }
                | CommandBody::Thread { uid: true, .. }
                | CommandBody::Copy { uid: true, .. }
                | CommandBody::Move { uid: true, .. }
        );
        // RFC 9051 §7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH.
        let allow_expunge = uid_cmd
            || !matches!(
                &cmd.body,
                CommandBody::Fetch { .. }
                    | CommandBody::Store { .. }
                    | CommandBody::Search { .. }
                    | CommandBody::Sort { .. }
                    | CommandBody::Thread { .. }
            );
        let select_like = matches!(
            &cmd.body,
            CommandBody::Select { .. } | CommandBody::Examine { .. }
        );
        let condstore_before = self.condstore;
        let (done, next) = self.dispatch(&tag, cmd.body, sink).await?;
        // RFC 7162 §3.1: the first CONDSTORE-enabling command in the selected state
        // (FETCH MODSEQ, SEARCH MODSEQ, STORE UNCHANGEDSINCE…) reports the mailbox's
        // HIGHESTMODSEQ, which SELECT had no reason to send yet.
        if !condstore_before && self.condstore && !select_like {
            if let Some(v) = &self.view {
                let line = ResponseCode::HighestModSeq(v.modseq).untagged_ok("Highest");
                resp::line(sink, &line).await?;
            }
        }
        metrics::counter!("bulwark_imap_commands_total", "listener" => self.cfg.listener, "command" => name, "result" => done.result()).increment(1);
        if !matches!(done, Done::Bad(_)) && next == Next::Continue {
            self.send_updates(sink, allow_expunge).await?;
        }
        // IDLE and the SASL exchange end with their tagged line later.
        if matches!(next, Next::Idle(_) | Next::AuthContinue(_)) {
            return Ok(next);
        }
        resp::line(sink, &done.tagged(&tag)).await?;
        if self.closing {
            return Ok(Next::Close);
        }
        Ok(next)
    }

    /// Takes `octets` from `[imap] max_inflight_bytes` for message data read whole,
    /// or the `NO [LIMIT]` that ends the command (counted as `memory_limit`).
    pub(crate) fn hold_memory(&self, octets: u64) -> Result<crate::budget::Hold, Done> {
        self.memory.try_take(octets).ok_or_else(|| {
            metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "memory_limit").increment(1);
            Done::No(ResponseCode::Limit.text(crate::budget::LIMIT_MESSAGE))
        })
    }

    /// A batch of bodies read whole (SEARCH text keys, SORT/THREAD headers) within the
    /// budget: twice their size, for the bodies and what is decoded from them.
    pub(crate) async fn read_bodies_held(
        &self,
        ids: &[bulwark_store::BlobId],
        octets: u64,
    ) -> Result<(crate::budget::Hold, Vec<(bulwark_store::BlobId, Vec<u8>)>), Done> {
        let hold = self.hold_memory(octets.saturating_mul(2))?;
        let bodies = self.store.read_blobs(ids).await.map_err(|e| store_no(&e))?;
        Ok((hold, bodies))
    }

    /// Ends a command handled outside `dispatch` (extended LIST, MULTIAPPEND): the
    /// metric, pending updates unless it was BAD, and the tagged line.
    async fn conclude(
        &mut self,
        tag: &str,
        name: &'static str,
        done: Done,
        sink: &mut dyn Sink,
    ) -> std::io::Result<()> {
        metrics::counter!("bulwark_imap_commands_total", "listener" => self.cfg.listener, "command" => name, "result" => done.result()).increment(1);
        if !matches!(done, Done::Bad(_)) {
            self.send_updates(sink, true).await?;
        }
        resp::line(sink, &done.tagged(tag)).await
    }

    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        sink: &mut dyn Sink,
    ) -> std::io::Result<(Done, Next)> {
        use CommandBody as C;
        let authed = self.account.is_some();
        let selected = self.view.is_some();
        let d = match body {
            // ---- any state (RFC 9051 §6.1) ----
            C::Capability => {
                resp::line(sink, &format!("* CAPABILITY {}", self.capabilities())).await?;
                ok("CAPABILITY completed")
            }
            C::Noop => {
                // NOOP is how clients poll (RFC 9051 §6.1.2): always look at the store,
                // not only when an event said something changed.
                self.mark_dirty();
                ok("NOOP completed")
            }
            C::Check if selected => {
                self.mark_dirty();
                ok("CHECK completed")
            }
            C::Logout => {
                resp::line(sink, "* BYE Logging out").await?;
                self.logged_out = true;
                self.view = None;
                self.watch = None;
                return Ok((ok("LOGOUT completed"), Next::Close));
            }
            C::Id { .. } => {
                // RFC 2971: tell who we are; what the client says is not needed.
                resp::line(sink, "* ID (\"name\" \"Bulwark\" \"vendor\" \"Bulwark\")").await?;
                ok("ID completed")
            }
            // ---- not authenticated (RFC 9051 §6.2) ----
            C::StartTLS => {
                if self.cfg.tls {
                    bad("TLS is already active")
                } else if authed {
                    bad("STARTTLS is only allowed before login")
                } else {
                    return Ok((ok("Begin TLS negotiation now"), Next::StartTls));
                }
            }
            C::Login { username, password } => {
                if authed {
                    bad("Already authenticated")
                } else if !self.cfg.tls {
                    // RFC 9051 §6.2.3, DATA-PATHS rule 1: no password without TLS.
                    no(ResponseCode::PrivacyRequired.text("LOGIN is disabled until STARTTLS"))
                } else if password.declassify().as_ref().len() > MAX_PASSWORD
                    || username.as_ref().len() > MAX_USERNAME
                {
                    // Not worth an Argon2 run; says nothing about the account.
                    bad(format!(
                        "User names are limited to {MAX_USERNAME} octets, passwords to {MAX_PASSWORD}"
                    ))
                } else {
                    let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                    let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                    self.login(&user, Secret::new(pass), "LOGIN").await
                }
            }
            C::Authenticate {
                mechanism,
                initial_response,
            } => {
                if authed {
                    bad("Already authenticated")
                } else if !self.cfg.tls {
                    no(ResponseCode::PrivacyRequired
                        .text("AUTHENTICATE is disabled until STARTTLS"))
                } else if mechanism != AuthMechanism::Plain {
                    no("Unsupported authentication mechanism")
                } else {
                    match initial_response {
                        // RFC 4959 SASL-IR: the response came with the command.
                        Some(ir) => self.auth_plain(ir.declassify().as_ref()).await,
                        None => return Ok((ok(""), Next::AuthContinue(tag.to_string()))),
                    }
                }
            }
            _ if !authed => bad("Log in first (STARTTLS, then LOGIN or AUTHENTICATE)"),
            // ---- authenticated (RFC 9051 §6.3) ----
            C::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    if matches!(c, CapabilityEnable::CondStore) {
                        self.condstore = true;
                        enabled.push("CONDSTORE");
                    } else if c.to_string().eq_ignore_ascii_case("QRESYNC") {
                        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push("QRESYNC");
                    }
                }
                if !enabled.is_empty() {
                    resp::line(sink, &format!("* ENABLED {}", enabled.join(" "))).await?;
                }
                ok("ENABLE completed")
            }
            C::Namespace => {
                resp::line(sink, "* NAMESPACE ((\"\" \"/\")) NIL NIL").await?;
                ok("NAMESPACE completed")
            }
            C::Select {
                mailbox,
                parameters,
            } => self.select_with(&mailbox, &parameters, false, sink).await?,
            C::Examine {
                mailbox,
                parameters,
            } => self.select_with(&mailbox, &parameters, true, sink).await?,
            C::Create { mailbox } => self.create(&mailbox).await,
            C::Delete { mailbox } => self.delete(&mailbox).await,
            C::Rename { from, to } => self.rename(&from, &to).await,
            C::Subscribe { mailbox } => self.subscribe(&mailbox, true).await,
            C::Unsubscribe { mailbox } => self.subscribe(&mailbox, false).await,
            C::List {
                reference,
                mailbox_wildcard,
            } => {
                let req = ListRequest::basic(&reference, &mailbox_wildcard, false);
                self.list(req, sink).await?
            }
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let req = ListRequest::basic(&reference, &mailbox_wildcard, true);
                self.list(req, sink).await?
            }
            C::Status {
                mailbox,
                item_names,
            } => self.status(&mailbox, item_names.as_ref(), sink).await?,
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal(l) => {
                        l.data()
                    }
                    imap_codec::imap_types::extensions::binary::LiteralOrLiteral8::Literal8(l) => {
                        l.data.as_ref()
                    }
                };
                let date = date.map(|d| d.as_ref().timestamp());
                self.append(&mailbox, &flags, date, data).await
            }
            C::Idle => {
                // Pending updates first, then the continuation (RFC 2177).
                self.mark_dirty();
                self.send_updates(sink, true).await?;
                return Ok((ok("IDLE terminated"), Next::Idle(tag.to_string())));
            }
            _ if !selected => bad("No mailbox selected"),
            // ---- selected (RFC 9051 §6.4) ----
            C::Unselect => {
                self.unselect();
                ok("UNSELECT completed")
            }
            C::Close => {
                if let Some(v) = &self.view {
                    if !v.read_only {
                        // Silent expunge (RFC 9051 §6.4.1): no EXPUNGE responses.
                        if let Err(e) = self.store.expunge(v.mailbox, None).await {
                            return Ok((store_no(&e), Next::Continue));
                        }
                    }
                }
                self.unselect();
                ok("CLOSE completed")
            }
            C::Expunge => self.expunge(None).await,
            C::ExpungeUid { sequence_set } => self.expunge(Some(&sequence_set)).await,
            C::Search {
                charset,
                criteria,
                uid,
            } => {
                let charset = charset.map(|c| c.as_ref().to_string());
                let ret = self.search_return.take();
                self.search(tag, charset.as_deref(), &criteria, uid, ret, sink)
                    .await?
            }
            C::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                self.sort(
                    sort_criteria.as_ref(),
                    charset.as_ref(),
                    &search_criteria,
                    uid,
                    sink,
                )
                .await?
            }
            C::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => {
                self.thread(&algorithm, charset.as_ref(), &search_criteria, uid, sink)
                    .await?
            }
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.fetch(&sequence_set, macro_or_item_names, uid, &modifiers, sink)
                    .await?
            }
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                self.store_flags(&sequence_set, kind, response, &flags, uid, &modifiers, sink)
                    .await?
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, false, sink).await?,
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&sequence_set, &mailbox, uid, true, sink).await?,
            _ => bad("Command not supported"),
        };
        Ok((d, Next::Continue))
    }

    // ---------------------------------------------------------------- login

    async fn login(&mut self, user: &str, pass: Secret, mech: &'static str) -> Done {
        match self
            .auth
            .authenticate(user, &pass, self.cfg.peer, self.cfg.listener, mech)
            .await
        {
            Ok(account) => {
                self.account = Some(account);
                ok(ResponseCode::Capability(self.capabilities()).text("Logged in"))
            }
            // Attempts are counted by the authenticator (bulwark_auth_*).
            Err(e) => {
                match e {
                    // Same answer whether the user exists or not (DATA-PATHS rule 4).
                    AuthError::Failed => {
                        no(ResponseCode::AuthenticationFailed.text("Authentication failed"))
                    }
                    AuthError::Throttled => {
                        no(ResponseCode::Unavailable
                            .text("Too many failed attempts, try again later"))
                    }
                    AuthError::Unavailable => no(
                        ResponseCode::Unavailable.text("Authentication temporarily unavailable")
                    ),
                }
            }
        }
    }

    async fn auth_plain(&mut self, message: &[u8]) -> Done {
        match bulwark_auth::sasl::parse_plain(message) {
            Ok(c)
                if c.password.expose().len() > MAX_PASSWORD || c.username.len() > MAX_USERNAME =>
            {
                bad(format!(
                    "User names are limited to {MAX_USERNAME} octets, passwords to {MAX_PASSWORD}"
                ))
            }
            Ok(c) => self.login(&c.username, c.password, "PLAIN").await,
            Err(_) => {
                metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "sasl").increment(1);
                no(ResponseCode::AuthenticationFailed.text("Authentication failed"))
            }
        }
    }

    /// The client's answer to the "+ " of AUTHENTICATE PLAIN (RFC 9051 §6.2.2):
    /// base64, or "*" to cancel. The line is a secret; the shell logs it as `***`.
    pub async fn auth_response(
        &mut self,
        tag: &str,
        line: &[u8],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        let text = String::from_utf8_lossy(line);
        let done = match bulwark_auth::sasl::decode_response(&text) {
            Ok(msg) => self.auth_plain(&msg).await,
            Err(bulwark_auth::SaslError::Cancelled) => bad("Authentication cancelled"),
            Err(_) => bad("Invalid base64 in authentication response"),
        };
        resp::line(sink, &done.tagged(tag)).await?;
        Ok(Next::Continue)
    }

    // ---------------------------------------------------------------- updates

    /// Waits until the selected mailbox changes (for IDLE). Never returns when no
    /// mailbox is selected.
    pub async fn wait_change(&mut self) {
        match self.watch.as_mut() {
            Some(w) => w.changed().await,
            None => std::future::pending().await,
        }
        self.dirty = true;
    }

    /// Sends what changed while idling (EXPUNGE allowed, RFC 2177).
    pub async fn idle_updates(&mut self, sink: &mut dyn Sink) -> std::io::Result<()> {
        self.send_updates(sink, true).await
    }

    fn drain_events(&mut self) {
        if self.watch.as_mut().is_some_and(|w| w.take_changed()) {
            self.dirty = true;
        }
    }

    /// Folds the store's changes into the view and tells the client (EXISTS,
    /// EXPUNGE when allowed, FETCH FLAGS).
    pub(crate) async fn send_updates(
        &mut self,
        sink: &mut dyn Sink,
        allow_expunge: bool,
    ) -> std::io::Result<()> {
        self.drain_events();
        let Some(v) = self.view.as_mut() else {
            return Ok(());
        };
        if !(self.dirty || allow_expunge && v.has_pending_expunges()) {
            return Ok(());
        }
        let changes = match self.store.changes_since(v.mailbox, v.modseq).await {
            Ok(c) => c,
            Err(StoreError::NotFound(_)) => {
                // Another session deleted the selected mailbox. Its sequence numbers
                // mean nothing any more; RFC 9051 §7.1.5: BYE, and the connection ends
                // after this command's tagged response.
                self.unselect();
                self.closing = true;
                return resp::line(
                    sink,
                    &format!(
                        "* BYE {} The selected mailbox was deleted",
                        ResponseCode::Closed
                    ),
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(target: "bulwark::imap", error = %e, "cannot read mailbox changes");
                return Ok(());
            }
        };
        self.dirty = false;
        let mut up = v.sync(&changes, allow_expunge);
        if up.exists.is_some() {
            // New messages: this session is the first to be told of them, so it
            // claims their `\Recent` unless another session already has (RFC 3501
            // §2.3.2). Read-only sessions show the unclaimed ones as recent.
            let below = v.max_uid().saturating_add(1);
            let first = changes.mailbox.first_recent_uid;
            if v.read_only || first >= below {
                v.add_recent(first, below);
            } else {
                let mailbox = v.mailbox;
                match self.store.claim_recent(mailbox, below).await {
                    Ok(from) => {
                        if let Some(v) = self.view.as_mut() {
                            v.add_recent(from, below);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "bulwark::imap", error = %e, "cannot claim \\Recent");
                    }
                }
            }
            up.recent = self.view.as_ref().map(View::recent_count);
        }
        self.announce_keywords(changes.changed.iter().map(|m| &m.flags), sink)
            .await?;
        let (condstore, qresync) = (self.condstore, self.qresync);
        let Some(v) = self.view.as_ref() else {
            return Ok(());
        };
        write_updates(sink, &up, condstore, qresync, &|uid| v.is_recent(uid)).await
    }

    /// RFC 3501 §7.2.6: before a FETCH (ours or another session's change) shows a
    /// keyword the client was not told of, a new `* FLAGS` (and PERMANENTFLAGS)
    /// announces it — imaptest calls the opposite "Keyword used without being in FLAGS".
    pub(crate) async fn announce_keywords<'a>(
        &mut self,
        flags: impl Iterator<Item = &'a Flags> + Send,
        sink: &mut dyn Sink,
    ) -> std::io::Result<()> {
        let Some(v) = self.view.as_mut() else {
            return Ok(());
        };
        let mut added = false;
        for f in flags {
            for k in &f.keywords {
                added |= v.add_keyword(k);
            }
        }
        if added {
            write_flags_lines(sink, v).await?;
        }
        Ok(())
    }

    /// What `$` stands for in this command (see `searchres`); `None` for an empty
    /// sequence set, which the command cannot express.
    fn saved_set(&self, use_: crate::searchres::Use) -> Option<String> {
        use crate::searchres::Use;
        let v = self.view.as_ref()?;
        match use_ {
            Use::SearchKey if self.saved_uids.is_empty() => Some("NOT ALL".into()),
            Use::SearchKey => Some(format!("UID {}", seqset::compress(&self.saved_uids))),
            Use::Set { uid: true } if self.saved_uids.is_empty() => None,
            Use::Set { uid: true } => Some(seqset::compress(&self.saved_uids)),
            Use::Set { uid: false } => {
                let seqs: Vec<u32> = self.saved_uids.iter().filter_map(|u| v.seq(*u)).collect();
                (!seqs.is_empty()).then(|| seqset::compress(&seqs))
            }
        }
    }

    fn unselect(&mut self) {
        self.saved_uids.clear();
        self.view = None;
        self.watch = None;
        self.dirty = false;
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    // ---------------------------------------------------------------- mailboxes

    fn account_id(&self) -> i64 {
        self.account.as_ref().map_or(0, |a| a.id)
    }

    async fn find_mailbox(&self, wire: &WireMailbox<'_>) -> Result<Mailbox, Done> {
        let name = mailbox_name(wire)?;
        match self.store.mailbox(self.account_id(), &name).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(no(ResponseCode::Nonexistent.text("No such mailbox"))),
            Err(e) => Err(store_no(&e)),
        }
    }

    /// SELECT/EXAMINE with RFC 7162 parameters: (CONDSTORE) turns CONDSTORE on;
    /// (QRESYNC (uidvalidity modseq [known-uids])) also reports what changed since
    /// (§3.2.5): `* VANISHED (EARLIER)` for expunged UIDs, FETCH for flag changes.
    async fn select_with(
        &mut self,
        wire: &WireMailbox<'_>,
        parameters: &[imap_codec::imap_types::command::SelectParameter],
        read_only: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        use imap_codec::imap_types::command::SelectParameter;
        let mut resync = None;
        for p in parameters {
            self.condstore = true;
            if let SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } = p
            {
                if !self.qresync {
                    // RFC 7162 §3.2.5: QRESYNC parameters before ENABLE QRESYNC are BAD.
                    return Ok(bad("QRESYNC is not enabled (ENABLE QRESYNC first)"));
                }
                resync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids));
            }
        }
        let done = self.select(wire, read_only, sink).await?;
        let (Done::Ok(_), Some((uidvalidity, since, known))) = (&done, resync) else {
            return Ok(done);
        };
        let Some(v) = self.view.as_ref() else {
            return Ok(done);
        };
        // A different UIDVALIDITY: the client must resynchronise from scratch, and
        // the normal SELECT responses already say so.
        if v.uidvalidity != uidvalidity {
            return Ok(done);
        }
        let mailbox = v.mailbox;
        let changes = match self.store.changes_since(mailbox, since).await {
            Ok(c) => c,
            Err(e) => return Ok(store_no(&e)),
        };
        let known = known
            .as_ref()
            .map(|k| seqset::RangeSet::new(seqset::ranges(k, u32::MAX)));
        let mut vanished: Vec<u32> = changes
            .expunged
            .iter()
            .copied()
            .filter(|u| known.as_ref().is_none_or(|k| k.contains(*u)))
            .collect();
        vanished.sort_unstable();
        vanished.dedup();
        if !vanished.is_empty() {
            let line = format!("* VANISHED (EARLIER) {}", seqset::compress(&vanished));
            resp::line(sink, &line).await?;
        }
        self.announce_keywords(changes.changed.iter().map(|m| &m.flags), sink)
            .await?;
        let Some(v) = self.view.as_ref() else {
            return Ok(done);
        };
        for m in &changes.changed {
            let Some(seq) = v.seq(m.uid) else { continue };
            let mut r = Resp::new();
            r.text(&format!("* {seq} FETCH (UID {} FLAGS ", m.uid));
            r.flags(&m.flags, v.is_recent(m.uid));
            r.text(&format!(" MODSEQ ({}))", m.modseq));
            r.send(sink).await?;
        }
        Ok(done)
    }

    async fn select(
        &mut self,
        wire: &WireMailbox<'_>,
        read_only: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        // Selecting deselects first, even if the new SELECT fails (RFC 9051 §6.3.2).
        if self.view.is_some() {
            self.unselect();
            resp::line(
                sink,
                &ResponseCode::Closed.untagged_ok("Previous mailbox closed"),
            )
            .await?;
        }
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        // Watch before reading so no change falls between the read and the watch.
        let watch = self.notifier.watch(mb.id);
        let msgs = match self.store.list_messages(mb.id).await {
            Ok(m) => m,
            Err(e) => return Ok(store_no(&e)),
        };
        let mut uids = Vec::with_capacity(msgs.len());
        let mut first_unseen = None;
        let mut max_modseq = mb.highest_modseq;
        for (i, m) in msgs.iter().enumerate() {
            uids.push(m.uid);
            if first_unseen.is_none() && !m.flags.has(Flags::SEEN) {
                first_unseen = Some(i + 1);
            }
            max_modseq = max_modseq.max(m.modseq);
        }
        let uidnext = mb
            .uidnext
            .max(uids.last().map_or(1, |u| u.saturating_add(1)));
        let exists = uids.len();
        let mut view = View::new(
            mb.id,
            mb.name.clone(),
            mb.uidvalidity,
            read_only,
            uids,
            mb.highest_modseq,
        );
        for m in &msgs {
            for k in &m.flags.keywords {
                view.add_keyword(k);
            }
        }
        drop(msgs);
        write_flags_lines(sink, &view).await?;
        // RFC 3501 §2.3.2: SELECT claims `\Recent` of what arrived since the last claim
        // (in the store, so one session in the whole cluster owns each message);
        // EXAMINE shows the unclaimed messages as recent without claiming them.
        let below = view.max_uid().saturating_add(1);
        if read_only || mb.first_recent_uid >= below {
            view.add_recent(mb.first_recent_uid, below);
        } else {
            match self.store.claim_recent(mb.id, below).await {
                Ok(from) => view.add_recent(from, below),
                Err(e) => return Ok(store_no(&e)),
            }
        }
        resp::line(sink, &format!("* {exists} EXISTS")).await?;
        resp::line(sink, &format!("* {} RECENT", view.recent_count())).await?;
        if let Some(u) = first_unseen {
            resp::line(sink, &ResponseCode::Unseen(u).untagged_ok("First unseen")).await?;
        }
        resp::line(
            sink,
            &ResponseCode::UidValidity(mb.uidvalidity).untagged_ok("UIDs valid"),
        )
        .await?;
        resp::line(
            sink,
            &ResponseCode::UidNext(uidnext).untagged_ok("Predicted next UID"),
        )
        .await?;
        let line = ResponseCode::HighestModSeq(max_modseq).untagged_ok("Highest");
        resp::line(sink, &line).await?;
        self.view = Some(view);
        self.watch = Some(watch);
        // Changes between reading the mailbox row and the messages are picked up
        // by the first sync.
        self.dirty = true;
        Ok(if read_only {
            ok(ResponseCode::ReadOnly.text("EXAMINE completed"))
        } else {
            ok(ResponseCode::ReadWrite.text("SELECT completed"))
        })
    }

    async fn create(&mut self, wire: &WireMailbox<'_>) -> Done {
        let name = match mailbox_name(wire) {
            Ok(n) => n,
            Err(d) => return d,
        };
        if name == "INBOX" {
            return no(ResponseCode::AlreadyExists.text("INBOX always exists"));
        }
        // Create missing superiors too (RFC 9051 §6.3.4).
        let mut prefix = String::new();
        let levels: Vec<&str> = name.split(DELIMITER).collect();
        for (i, level) in levels.iter().enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(level);
            let last = i + 1 == levels.len();
            match self.store.mailbox(self.account_id(), &prefix).await {
                Ok(Some(_)) if last => {
                    return no(ResponseCode::AlreadyExists.text("Mailbox already exists"))
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return store_no(&e),
            }
            if let Err(e) = self
                .store
                .create_mailbox(self.account_id(), &prefix, None)
                .await
            {
                if !matches!(e, StoreError::AlreadyExists(_)) || last {
                    return store_no(&e);
                }
            }
        }
        ok("CREATE completed")
    }

    async fn delete(&mut self, wire: &WireMailbox<'_>) -> Done {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return d,
        };
        if mb.name == "INBOX" {
            return no(ResponseCode::Cannot.text("INBOX cannot be deleted"));
        }
        // RFC 3501 §6.3.4: a mailbox with inferiors loses its messages and keeps its
        // name as \Noselect. The store keeps no \Noselect mailboxes; LIST shows
        // the name as \Noselect for as long as something below it exists, which is
        // the same thing. (Deleting that name again is the error the RFC asks for:
        // it no longer exists.)
        if let Err(e) = self.store.delete_mailbox(self.account_id(), &mb.name).await {
            return store_no(&e);
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == mb.id) {
            self.unselect();
        }
        ok("DELETE completed")
    }

    async fn rename(&mut self, from: &WireMailbox<'_>, to: &WireMailbox<'_>) -> Done {
        let src = match self.find_mailbox(from).await {
            Ok(m) => m,
            Err(d) => return d,
        };
        let to = match mailbox_name(to) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let account = self.account_id();
        if src.name == "INBOX" {
            // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and
            // leaves INBOX empty.
            let dst = match self.store.create_mailbox(account, &to, None).await {
                Ok(m) => m,
                Err(e) => return store_no(&e),
            };
            let uids: Vec<u32> = match self.store.list_messages(src.id).await {
                Ok(m) => m.iter().map(|m| m.uid).collect(),
                Err(e) => return store_no(&e),
            };
            if let Err(e) = self.store.move_messages(src.id, &uids, dst.id).await {
                return store_no(&e);
            }
            if self.view.as_ref().is_some_and(|v| v.mailbox == src.id) {
                self.mark_dirty();
            }
            if let Err(e) = self.create_superiors(&to).await {
                return store_no(&e);
            }
            return ok("RENAME completed");
        }
        if to == "INBOX" {
            return no(ResponseCode::AlreadyExists.text("INBOX already exists"));
        }
        match self.store.rename_mailbox(account, &src.name, &to).await {
            Ok(()) => {
                // RFC 9051 §6.3.6: superiors the new name needs are created.
                if let Err(e) = self.create_superiors(&to).await {
                    return store_no(&e);
                }
                if let Some(v) = self.view.as_mut() {
                    if v.mailbox == src.id {
                        v.name = to;
                    }
                }
                ok("RENAME completed")
            }
            Err(e) => store_no(&e),
        }
    }

    /// Creates the missing superiors of `name` ("a" and "a/b" for "a/b/c").
    async fn create_superiors(&self, name: &str) -> Result<(), StoreError> {
        let mut end = 0;
        while let Some(i) = name[end..].find(DELIMITER) {
            end += i;
            let prefix = &name[..end];
            end += DELIMITER.len_utf8();
            if self
                .store
                .mailbox(self.account_id(), prefix)
                .await?
                .is_some()
            {
                continue;
            }
            match self
                .store
                .create_mailbox(self.account_id(), prefix, None)
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// RFC 9051 §6.3.7/§6.3.8: subscriptions are names. SUBSCRIBE checks that the
    /// mailbox exists (allowed by the RFC); UNSUBSCRIBE works on any subscribed name,
    /// including ones whose mailbox is gone.
    async fn subscribe(&mut self, wire: &WireMailbox<'_>, on: bool) -> Done {
        if on {
            let mb = match self.find_mailbox(wire).await {
                Ok(m) => m,
                Err(d) => return d,
            };
            return match self
                .store
                .add_subscription(self.account_id(), &mb.name)
                .await
            {
                Ok(()) => ok("SUBSCRIBE completed"),
                Err(e) => store_no(&e),
            };
        }
        let name = match mailbox_name(wire) {
            Ok(n) => n,
            Err(d) => return d,
        };
        match self
            .store
            .remove_subscription(self.account_id(), &name)
            .await
        {
            Ok(true) => ok("UNSUBSCRIBE completed"),
            Ok(false) => no(ResponseCode::Nonexistent.text("Not subscribed to that name")),
            Err(e) => store_no(&e),
        }
    }

    async fn handle_list_extended(
        &mut self,
        ext: crate::list_ext::ListExt,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        let tag = ext.tag.clone();
        let done = if self.account.is_none() {
            bad("Log in first (STARTTLS, then LOGIN or AUTHENTICATE)")
        } else {
            let req = ListRequest {
                lsub: false,
                reference: lenient_name(&ext.reference),
                patterns: ext.patterns.iter().map(|p| lenient_name(p)).collect(),
                select_subscribed: ext.select_subscribed,
                select_special_use: ext.select_special_use,
                return_subscribed: ext.return_subscribed || ext.select_subscribed,
                extended: true,
                recursive_match: ext.recursive_match,
                status: ext.status,
            };
            self.list(req, sink).await?
        };
        self.conclude(&tag, "LIST", done, sink).await?;
        Ok(if self.closing {
            Next::Close
        } else {
            Next::Continue
        })
    }

    /// LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), with the RFC 5258 selection
    /// and return options SUBSCRIBED and SPECIAL-USE (RFC 6154 §5.2).
    async fn list(&mut self, req: ListRequest, sink: &mut dyn Sink) -> std::io::Result<Done> {
        let verb = if req.lsub { "LSUB" } else { "LIST" };
        if req.patterns.len() == 1 && req.patterns[0].is_empty() && !req.extended {
            // RFC 9051 §6.3.9: the hierarchy delimiter and root.
            resp::line(sink, &format!("* {verb} (\\Noselect) \"/\" \"\"")).await?;
            return Ok(ok(format!("{verb} completed")));
        }
        let mut compiled = Vec::with_capacity(req.patterns.len());
        for p in &req.patterns {
            let full = format!("{}{p}", req.reference);
            let (Some(exact), Some(upper)) =
                (Pattern::new(&full), Pattern::new(&full.to_uppercase()))
            else {
                return Ok(no(ResponseCode::Limit.text(format!(
                    "Patterns are limited to {} characters",
                    names::MAX_PATTERN
                ))));
            };
            compiled.push((exact, upper));
        }
        let matches = |n: &str| {
            compiled.iter().any(|(exact, upper)| {
                // INBOX matches case-insensitively (RFC 9051 §5.1).
                exact.matches(n)
                    || ((n == "INBOX" || n.starts_with("INBOX/"))
                        && upper.matches(&n.to_uppercase()))
            })
        };
        let all = match self.store.list_mailboxes(self.account_id()).await {
            Ok(a) => a,
            Err(e) => return Ok(store_no(&e)),
        };
        let subscriptions: std::collections::BTreeSet<String> =
            if req.lsub || req.select_subscribed || req.return_subscribed {
                match self.store.subscriptions(self.account_id()).await {
                    Ok(s) => s.into_iter().collect(),
                    Err(e) => return Ok(store_no(&e)),
                }
            } else {
                Default::default()
            };
        let by_name: std::collections::BTreeMap<&str, &Mailbox> =
            all.iter().map(|m| (m.name.as_str(), m)).collect();
        let has_children = |n: &str| {
            let p = format!("{n}{DELIMITER}");
            by_name
                .range(p.as_str()..)
                .next()
                .is_some_and(|(x, _)| x.starts_with(&p))
        };
        let attributes = |m: &Mailbox| {
            let mut attrs: Vec<&str> = vec![if has_children(&m.name) {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            }];
            if let Some(u) = m.special_use {
                attrs.push(u.attribute());
            }
            if req.return_subscribed && subscriptions.contains(&m.name) {
                attrs.push("\\Subscribed");
            }
            attrs.join(" ")
        };
        // (attributes, name, RFC 5258 CHILDINFO ("SUBSCRIBED")).
        let mut out: Vec<(String, String, bool)> = Vec::new();
        if req.lsub || req.select_subscribed {
            // Subscribed names, whether or not the mailbox exists.
            let mut parents: std::collections::BTreeSet<String> = Default::default();
            for name in &subscriptions {
                if matches(name) {
                    let attrs = match by_name.get(name.as_str()) {
                        Some(m) => attributes(m),
                        None if req.lsub => "\\Noselect".to_string(),
                        None => "\\NonExistent \\Subscribed".to_string(),
                    };
                    out.push((attrs, name.clone(), false));
                } else if req.lsub {
                    // RFC 3501 §6.3.9: with "%", a subscribed child's superior that
                    // matches is listed \Noselect, even though it is not subscribed.
                    let mut p = name.as_str();
                    while let Some(i) = p.rfind(DELIMITER) {
                        p = &p[..i];
                        if !subscriptions.contains(p) && matches(p) {
                            parents.insert(p.to_string());
                        }
                    }
                }
            }
            for p in parents {
                out.push(("\\Noselect".to_string(), p, false));
            }
            if req.recursive_match {
                // RFC 5258 §3.1/§4: a matching superior of a subscribed name that the
                // patterns do not match itself is listed with CHILDINFO ("SUBSCRIBED"),
                // whether or not it is subscribed (then it is already in `out`).
                let mut parents: std::collections::BTreeSet<&str> = Default::default();
                for name in subscriptions.iter().filter(|n| !matches(n)) {
                    let mut p = name.as_str();
                    while let Some(i) = p.rfind(DELIMITER) {
                        p = &p[..i];
                        if matches(p) {
                            parents.insert(p);
                        }
                    }
                }
                for p in parents {
                    if let Some(e) = out.iter_mut().find(|e| e.1 == p) {
                        e.2 = true;
                    } else {
                        let attrs = match by_name.get(p) {
                            Some(m) => attributes(m),
                            None => "\\NonExistent".to_string(),
                        };
                        out.push((attrs, p.to_string(), true));
                    }
                }
            }
        } else {
            let mut implied: std::collections::BTreeSet<String> = Default::default();
            for m in &all {
                if req.select_special_use && m.special_use.is_none() {
                    continue;
                }
                if matches(&m.name) {
                    out.push((attributes(m), m.name.clone(), false));
                }
                if req.extended {
                    continue;
                }
                // Superiors that do not exist but match ("%" stops at them).
                let mut p = m.name.as_str();
                while let Some(i) = p.rfind(DELIMITER) {
                    p = &p[..i];
                    if !by_name.contains_key(p) && matches(p) {
                        implied.insert(p.to_string());
                    }
                }
            }
            for p in implied {
                out.push(("\\Noselect \\HasChildren".to_string(), p, false));
            }
        }
        for (attrs, name, childinfo) in out {
            let mut r = Resp::new();
            r.text(&format!("* {verb} ({attrs}) \"/\" "));
            r.astring(encode_mutf7(&name).as_bytes());
            if childinfo {
                r.text(" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            r.send(sink).await?;
            // RFC 5819 §2: a STATUS response follows the LIST response of each listed
            // mailbox that can be selected (none for \NonExistent or \Noselect).
            if let (Some(items), Some(mb)) = (&req.status, by_name.get(name.as_str())) {
                if let Err(d) = self.write_status(mb, items, sink).await? {
                    return Ok(d);
                }
            }
        }
        Ok(ok(format!("{verb} completed")))
    }

    async fn status(
        &mut self,
        wire: &WireMailbox<'_>,
        items: &[StatusDataItemName],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        Ok(match self.write_status(&mb, items, sink).await? {
            Ok(()) => ok("STATUS completed"),
            Err(d) => d,
        })
    }

    /// One `* STATUS` response (RFC 9051 §7.3.2), for STATUS and LIST-STATUS.
    async fn write_status(
        &mut self,
        mb: &Mailbox,
        items: &[StatusDataItemName],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Result<(), Done>> {
        let st = match self.store.mailbox_status(mb.id).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(store_no(&e))),
        };
        let mut parts = Vec::new();
        for it in items {
            match it {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", st.messages)),
                StatusDataItemName::Recent => parts.push(format!("RECENT {}", st.recent)),
                StatusDataItemName::UidNext => {
                    parts.push(format!("UIDNEXT {}", st.mailbox.uidnext))
                }
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", st.mailbox.uidvalidity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", st.unseen)),
                StatusDataItemName::Deleted => {
                    let n = match self.store.list_messages(mb.id).await {
                        Ok(m) => m.iter().filter(|m| m.flags.has(Flags::DELETED)).count(),
                        Err(e) => return Ok(Err(store_no(&e))),
                    };
                    parts.push(format!("DELETED {n}"));
                }
                StatusDataItemName::DeletedStorage => {}
                // RFC 8438: the total of the messages' RFC822.SIZE.
                StatusDataItemName::Size => parts.push(format!("SIZE {}", st.size)),
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", st.mailbox.highest_modseq))
                }
            }
        }
        let mut r = Resp::new();
        r.text("* STATUS ");
        r.astring(encode_mutf7(&mb.name).as_bytes());
        r.text(&format!(" ({})", parts.join(" ")));
        r.send(sink).await?;
        Ok(Ok(()))
    }

    async fn append(
        &mut self,
        wire: &WireMailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        data: &[u8],
    ) -> Done {
        self.append_all(wire, &[(flags, date, data)]).await
    }

    /// APPEND of one message or, for MULTIAPPEND (RFC 3502 §6.3.11), several: all are
    /// stored in one transaction or none is, and the OK (with `[APPENDUID v set]`,
    /// RFC 4315) goes out only once they are durable.
    async fn append_all(
        &mut self,
        wire: &WireMailbox<'_>,
        messages: &[(&[Flag<'_>], Option<i64>, &[u8])],
    ) -> Done {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            // RFC 9051 §6.3.12: TRYCREATE tells the client to create it first.
            Err(Done::No(r)) if r.has(&ResponseCode::Nonexistent) => {
                return no(ResponseCode::TryCreate.text("No such mailbox"))
            }
            Err(d) => return d,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut ingests = Vec::with_capacity(messages.len());
        let mut size = 0u64;
        for (flags, date, data) in messages {
            if data.is_empty() {
                return no("Empty message; nothing was stored");
            }
            // The limits SMTP applies at intake (bulwark_mime::measure), before anything
            // parses the message; RFC 9051 §7.1: [LIMIT] for a server limit.
            let limits = bulwark_mime::Limits {
                depth: bulwark_mime::MAX_NESTING,
                parts: self.cfg.max_mime_parts,
            };
            if let Err(e) = bulwark_mime::measure(data, limits) {
                let reason = match e {
                    bulwark_mime::StructureError::TooDeep { .. } => "mime_too_deep",
                    bulwark_mime::StructureError::TooManyParts { .. } => "mime_parts",
                };
                metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => reason).increment(1);
                return no(
                    ResponseCode::Limit.text(format!("Message refused: {e}; nothing was stored"))
                );
            }
            // RFC 3516 §4.3: binary parts (NULs, from a `~{n}` literal8) are stored
            // base64-encoded, before line ends are touched.
            let data = crate::binary::encode_binary_parts(data);
            // RFC 9051 §6.3.12 wants CRLF line ends; a bare LF is stored as CRLF, so
            // the stored size is what every protocol then sends (POP3 LIST/STAT, RETR).
            let data = crlf(&data);
            size += data.len() as u64;
            ingests.push(Ingest {
                data: data.into_owned(),
                internal_date: date.unwrap_or(now),
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(mb.id),
                    flags: to_flags(flags),
                }],
                queue: None,
            });
        }
        let count = ingests.len() as u64;
        // The OK goes out only after the store returned: the messages are durable.
        let receipts = if count == 1 {
            match ingests.pop() {
                Some(i) => self.store.ingest(i).await.map(|r| vec![r]),
                None => Ok(Vec::new()),
            }
        } else {
            self.store.ingest_all(ingests).await
        };
        match receipts {
            Ok(receipts) => {
                metrics::counter!("bulwark_imap_messages_appended_total", "listener" => self.cfg.listener)
                    .increment(count);
                metrics::counter!("bulwark_imap_message_bytes_appended_total", "listener" => self.cfg.listener).increment(size);
                if self.view.as_ref().is_some_and(|v| v.mailbox == mb.id) {
                    self.mark_dirty();
                }
                let uids: Vec<u32> = receipts
                    .iter()
                    .filter_map(|r| r.delivered.first().map(|d| d.2))
                    .collect();
                match receipts.first().and_then(|r| r.delivered.first()) {
                    Some((_, uidvalidity, _)) => ok(ResponseCode::AppendUid {
                        uidvalidity: *uidvalidity,
                        uids: seqset::compress(&uids),
                    }
                    .text("APPEND completed")),
                    None => ok("APPEND completed"),
                }
            }
            Err(e) => store_no(&e),
        }
    }

    /// A MULTIAPPEND command, split by `multiappend::split` into single APPENDs that
    /// imap-codec decodes; any part that does not decode makes the whole command BAD.
    async fn handle_multiappend(
        &mut self,
        parts: &[Vec<u8>],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        use imap_codec::decode::Decoder;
        use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8 as L;
        let tag = crate::framing::guess_tag(parts.first().map_or(&[][..], |p| p))
            .unwrap_or_else(|| "*".into());
        let mut decoded = Vec::with_capacity(parts.len());
        for p in parts {
            match imap_codec::CommandCodec::default().decode(p) {
                Ok((
                    _,
                    Command {
                        body:
                            CommandBody::Append {
                                mailbox,
                                flags,
                                date,
                                message,
                            },
                        ..
                    },
                )) => {
                    decoded.push((mailbox, flags, date, message));
                }
                _ => {
                    metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "malformed").increment(1);
                    resp::line(sink, &format!("{tag} BAD Syntax error in APPEND")).await?;
                    return Ok(Next::Continue);
                }
            }
        }
        let done = if self.account.is_none() {
            bad("Log in first (STARTTLS, then LOGIN or AUTHENTICATE)")
        } else {
            let messages: Vec<(&[Flag<'_>], Option<i64>, &[u8])> = decoded
                .iter()
                .map(|(_, flags, date, message)| {
                    let data: &[u8] = match message {
                        L::Literal(l) => l.data(),
                        L::Literal8(l) => l.data.as_ref(),
                    };
                    (
                        &flags[..],
                        date.as_ref().map(|d| d.as_ref().timestamp()),
                        data,
                    )
                })
                .collect();
            // Every part names the same mailbox: split copies it from the command.
            match decoded.first() {
                Some((mailbox, ..)) => self.append_all(mailbox, &messages).await,
                None => bad("No message"),
            }
        };
        self.conclude(&tag, "APPEND", done, sink).await?;
        Ok(Next::Continue)
    }

    // ---------------------------------------------------------------- selected

    async fn expunge(
        &mut self,
        set: Option<&imap_codec::imap_types::sequence::SequenceSet>,
    ) -> Done {
        let Some(v) = self.view.as_ref() else {
            return bad("No mailbox selected");
        };
        if v.read_only {
            return no(ResponseCode::ReadOnly.text("Mailbox is read-only"));
        }
        let uids = match set {
            Some(s) => match seqset::resolve(v, s, true) {
                Ok(u) => Some(u),
                Err(e) => return bad(e.to_string()),
            },
            None => None,
        };
        match self.store.expunge(v.mailbox, uids.as_deref()).await {
            Ok(_) => {
                self.mark_dirty();
                ok("EXPUNGE completed")
            }
            Err(e) => store_no(&e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_flags(
        &mut self,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[imap_codec::imap_types::command::StoreModifier],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let Some(v) = self.view.as_ref() else {
            return Ok(bad("No mailbox selected"));
        };
        if v.read_only {
            return Ok(no(ResponseCode::ReadOnly.text("Mailbox is read-only")));
        }
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(bad(e.to_string())),
        };
        let mut unchanged_since = None;
        for m in modifiers {
            let imap_codec::imap_types::command::StoreModifier::UnchangedSince(n) = m;
            unchanged_since = Some(*n);
            self.condstore = true;
        }
        let op = match kind {
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
            StoreType::Replace => FlagOp::Replace,
        };
        let change = to_flags(flags);
        let mailbox = v.mailbox;
        let mut result = bulwark_store::FlagUpdate::default();
        for chunk in uids.chunks(5_000) {
            match self
                .store
                .update_flags(mailbox, chunk, op, &change, unchanged_since)
                .await
            {
                Ok(r) => {
                    result.updated.extend(r.updated);
                    result.modified.extend(r.modified);
                }
                Err(e) => return Ok(store_no(&e)),
            }
        }
        self.announce_keywords(result.updated.iter().map(|(_, f, _)| f), sink)
            .await?;
        let condstore = self.condstore;
        let Some(v) = self.view.as_mut() else {
            return Ok(bad("No mailbox selected"));
        };
        for (u, f, modseq) in &result.updated {
            v.note_own_change(*u, *modseq);
            if response == StoreResponse::Silent && !condstore {
                continue;
            }
            let Some(seq) = v.seq(*u) else { continue };
            // RFC 7162 §3.2.4: with QRESYNC every FETCH response carries the UID.
            let uid = uid || self.qresync;
            let mut r = Resp::new();
            r.text(&format!("* {seq} FETCH ("));
            if response == StoreResponse::Answer {
                r.text("FLAGS ").flags(f, v.is_recent(*u));
                if uid || condstore {
                    r.text(" ");
                }
            }
            if uid {
                r.text(&format!("UID {u}"));
                if condstore {
                    r.text(" ");
                }
            }
            if condstore {
                r.text(&format!("MODSEQ ({modseq})"));
            }
            r.text(")");
            r.send(sink).await?;
        }
        self.mark_dirty();
        if !result.modified.is_empty() {
            let Some(v) = self.view.as_ref() else {
                return Ok(bad("No mailbox selected"));
            };
            let mut nums: Vec<u32> = if uid {
                result.modified.clone()
            } else {
                result.modified.iter().filter_map(|u| v.seq(*u)).collect()
            };
            nums.sort_unstable();
            let code = ResponseCode::Modified(seqset::compress(&nums));
            return Ok(ok(code.text("Conditional STORE failed for some messages")));
        }
        Ok(ok("STORE completed"))
    }

    async fn copy(
        &mut self,
        set: &imap_codec::imap_types::sequence::SequenceSet,
        wire: &WireMailbox<'_>,
        uid: bool,
        is_move: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let Some(v) = self.view.as_ref() else {
            return Ok(bad("No mailbox selected"));
        };
        if is_move && v.read_only {
            return Ok(no(ResponseCode::ReadOnly.text("Mailbox is read-only")));
        }
        let uids = match seqset::resolve(v, set, uid) {
            Ok(u) => u,
            Err(e) => return Ok(bad(e.to_string())),
        };
        let src = v.mailbox;
        let dst = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(Done::No(r)) if r.has(&ResponseCode::Nonexistent) => {
                return Ok(no(ResponseCode::TryCreate.text("No such mailbox")))
            }
            Err(d) => return Ok(d),
        };
        let verb = if is_move { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(ok(format!("{verb} completed (no messages)")));
        }
        // One store transaction, whatever the count: all or nothing (RFC 9051
        // §6.4.7, RFC 6851 §3.3).
        let r = if is_move {
            self.store.move_messages(src, &uids, dst.id).await
        } else {
            self.store.copy_messages(src, &uids, dst.id).await
        };
        let (uidvalidity, pairs) = match r {
            Ok(r) => (r.uidvalidity, r.pairs),
            Err(e) => return Ok(store_no(&e)),
        };
        self.mark_dirty();
        metrics::counter!("bulwark_imap_messages_copied_total", "listener" => self.cfg.listener, "op" => verb).increment(pairs.len() as u64);
        if pairs.is_empty() {
            return Ok(ok(format!("{verb} completed (no messages)")));
        }
        let src_set: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst_set: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        // RFC 4315 §3: COPYUID lists source and destination UIDs in matching order;
        // ranges only where both sides run together.
        let (s, d) = uid_pair_sets(&src_set, &dst_set);
        let code = ResponseCode::CopyUid {
            uidvalidity,
            src: s,
            dst: d,
        };
        if is_move {
            // RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            resp::line(sink, &code.untagged_ok("Moved")).await?;
            Ok(ok("MOVE completed"))
        } else {
            Ok(ok(code.text("COPY completed")))
        }
    }
}

/// COPYUID sets: both lists in the same order, compressed only where both run
/// consecutively, so the n-th source UID still maps to the n-th destination UID.
fn uid_pair_sets(src: &[u32], dst: &[u32]) -> (String, String) {
    let mut s = String::new();
    let mut d = String::new();
    let mut i = 0;
    while i < src.len() {
        let mut j = i;
        while j + 1 < src.len()
            && src[j + 1] == src[j].wrapping_add(1)
            && dst[j + 1] == dst[j].wrapping_add(1)
        {
            j += 1;
        }
        if !s.is_empty() {
            s.push(',');
            d.push(',');
        }
        if i == j {
            s.push_str(&src[i].to_string());
            d.push_str(&dst[i].to_string());
        } else {
            s.push_str(&format!("{}:{}", src[i], src[j]));
            d.push_str(&format!("{}:{}", dst[i], dst[j]));
        }
        i = j + 1;
    }
    (s, d)
}

/// The FLAGS response and PERMANENTFLAGS code of the selected mailbox (RFC 3501
/// §7.2.6, §7.1): system flags plus the keywords in use; `\*` lets clients create
/// keywords. Sent at SELECT and again whenever a new keyword appears.
async fn write_flags_lines(sink: &mut dyn Sink, v: &View) -> std::io::Result<()> {
    let mut flags: Vec<String> = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
        .iter()
        .map(|f| f.to_string())
        .chain(v.keywords().iter().cloned())
        .collect();
    resp::line(sink, &format!("* FLAGS ({})", flags.join(" "))).await?;
    if v.read_only {
        let code = ResponseCode::PermanentFlags(Vec::new());
        resp::line(sink, &code.untagged_ok("Read-only mailbox")).await
    } else {
        flags.push("\\*".to_string());
        let code = ResponseCode::PermanentFlags(flags);
        resp::line(sink, &code.untagged_ok("Flags permitted")).await
    }
}

pub(crate) async fn write_updates(
    sink: &mut dyn Sink,
    up: &Updates,
    condstore: bool,
    qresync: bool,
    is_recent: &(dyn Fn(u32) -> bool + Sync),
) -> std::io::Result<()> {
    if qresync {
        // RFC 7162 §3.2.10: once QRESYNC is enabled, VANISHED replaces EXPUNGE.
        if !up.vanished.is_empty() {
            let line = format!("* VANISHED {}", seqset::compress(&up.vanished));
            resp::line(sink, &line).await?;
        }
    } else {
        for seq in &up.expunged {
            resp::line(sink, &format!("* {seq} EXPUNGE")).await?;
        }
    }
    if let Some(n) = up.exists {
        resp::line(sink, &format!("* {n} EXISTS")).await?;
    }
    if let Some(n) = up.recent {
        resp::line(sink, &format!("* {n} RECENT")).await?;
    }
    for (seq, uid, flags, modseq) in &up.flags {
        let mut r = Resp::new();
        r.text(&format!("* {seq} FETCH (UID {uid} FLAGS "));
        r.flags(flags, is_recent(*uid));
        if condstore {
            r.text(&format!(" MODSEQ ({modseq})"));
        }
        r.text(")");
        r.send(sink).await?;
    }
    Ok(())
}

/// What a LIST or LSUB asks for.
struct ListRequest {
    lsub: bool,
    /// Decoded reference, prefixed to each pattern.
    reference: String,
    patterns: Vec<String>,
    select_subscribed: bool,
    select_special_use: bool,
    return_subscribed: bool,
    /// LIST-EXTENDED syntax: no implied superiors, no empty-pattern special case.
    extended: bool,
    /// RFC 5258 §3.1 RECURSIVEMATCH with SUBSCRIBED.
    recursive_match: bool,
    /// RFC 5819 LIST-STATUS items.
    status: Option<Vec<StatusDataItemName>>,
}

impl ListRequest {
    fn basic(reference: &WireMailbox<'_>, pattern: &ListMailbox<'_>, lsub: bool) -> ListRequest {
        let reference = match reference {
            WireMailbox::Inbox => "INBOX".to_string(),
            WireMailbox::Other(o) => lenient_name(o.as_ref()),
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        ListRequest {
            lsub,
            reference,
            patterns: vec![lenient_name(pattern_bytes)],
            select_subscribed: false,
            select_special_use: false,
            return_subscribed: false,
            extended: false,
            recursive_match: false,
            status: None,
        }
    }
}

/// Bare LF line ends as CRLF (borrowed when there are none).
fn crlf(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare = data
        .iter()
        .enumerate()
        .any(|(i, c)| *c == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    if !bare {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for (i, &c) in data.iter().enumerate() {
        if c == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

/// A decoded, checked mailbox name from the wire.
fn mailbox_name(wire: &WireMailbox<'_>) -> Result<String, Done> {
    match wire {
        WireMailbox::Inbox => Ok("INBOX".to_string()),
        WireMailbox::Other(o) => parse_name(o.as_ref()).map_err(|e| match e {
            // RFC 3501 §5.1.3 / §7.1.3: the command is well-formed, the name is
            // just not one we can have — NO (imaptest `atoms`), as for a forbidden one.
            names::NameError::BadEncoding => {
                no(ResponseCode::Cannot.text("Mailbox name is not valid modified UTF-7"))
            }
            names::NameError::Forbidden => no(ResponseCode::Cannot.text("Invalid mailbox name")),
        }),
    }
}

/// LIST references and patterns: decoded when they are valid mUTF-7, else taken as
/// they are (they may contain wildcards and partial names).
fn lenient_name(b: &[u8]) -> String {
    names::decode_mutf7(b).unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

/// STORE/APPEND flags to the store's form. \Recent cannot be set by clients and
/// unknown system flags are ignored (RFC 9051 §2.3.2).
pub(crate) fn to_flags(flags: &[Flag<'_>]) -> Flags {
    let mut f = Flags::default();
    for fl in flags {
        match fl {
            Flag::Seen => f.bits |= Flags::SEEN,
            Flag::Answered => f.bits |= Flags::ANSWERED,
            Flag::Flagged => f.bits |= Flags::FLAGGED,
            Flag::Deleted => f.bits |= Flags::DELETED,
            Flag::Draft => f.bits |= Flags::DRAFT,
            Flag::Keyword(k) => f.add_keyword(k.as_ref()),
            Flag::Extension(_) => {}
        }
    }
    f
}

fn command_name(b: &CommandBody<'_>) -> &'static str {
    use CommandBody as C;
    match b {
        C::Capability => "CAPABILITY",
        C::Noop => "NOOP",
        C::Logout => "LOGOUT",
        C::StartTLS => "STARTTLS",
        C::Authenticate { .. } => "AUTHENTICATE",
        C::Login { .. } => "LOGIN",
        C::Select { .. } => "SELECT",
        C::Unselect => "UNSELECT",
        C::Examine { .. } => "EXAMINE",
        C::Create { .. } => "CREATE",
        C::Delete { .. } => "DELETE",
        C::Rename { .. } => "RENAME",
        C::Subscribe { .. } => "SUBSCRIBE",
        C::Unsubscribe { .. } => "UNSUBSCRIBE",
        C::List { .. } => "LIST",
        C::Lsub { .. } => "LSUB",
        C::Status { .. } => "STATUS",
        C::Append { .. } => "APPEND",
        C::Check => "CHECK",
        C::Close => "CLOSE",
        C::Expunge => "EXPUNGE",
        C::ExpungeUid { .. } => "UID EXPUNGE",
        C::Search { .. } => "SEARCH",
        C::Sort { .. } => "SORT",
        C::Thread { .. } => "THREAD",
        C::Fetch { .. } => "FETCH",
        C::Store { .. } => "STORE",
        C::Copy { .. } => "COPY",
        C::Move { .. } => "MOVE",
        C::Idle => "IDLE",
        C::Enable { .. } => "ENABLE",
        C::Id { .. } => "ID",
        C::Namespace => "NAMESPACE",
        _ => "OTHER",
    }
}
