//! The sans-I/O session core: states (RFC 9051 §3: Not Authenticated, Authenticated,
//! Selected, Logout), command dispatch and every command's semantics.
//!
//! It is fed decoded commands and writes responses to a `Sink`; what needs the socket
//! (STARTTLS, the SASL continuation, IDLE's wait, closing) is returned as `Next` for
//! the shell in `server.rs` to perform. The store and the authenticator are its only
//! other dependencies, so unit tests run whole sessions on a temporary store.

use std::net::IpAddr;
use std::sync::Arc;

use crate::cmd::{mailbox_name, write_flags_lines, ListRequest};
use crate::code::{Reply, ResponseCode};
use crate::notify::{MailboxWatch, Notifier};
use crate::resp::{self, Resp, Sink};
use crate::seqset;
use crate::view::{Updates, View};
use bulwark_auth::{Authenticator, Secret};
use bulwark_store::{Account, AccountId, Flags, Mailbox, ModSeq, SharedStore, StoreError, Uid};
use imap_codec::imap_types::{
    auth::AuthMechanism,
    command::{Command, CommandBody},
    extensions::enable::CapabilityEnable,
    flag::Flag,
    mailbox::Mailbox as WireMailbox,
};

/// Longest password LOGIN and AUTHENTICATE accept (longer ones are refused before
/// any hashing): the bound every protocol's SASL shares.
pub(crate) use bulwark_auth::sasl::MAX_PASSWORD;
/// Longest user name (an address: RFC 5321 §4.5.3.1 allows 64 + 1 + 255 octets): the
/// bound every protocol's SASL shares.
pub(crate) use bulwark_auth::sasl::MAX_USERNAME;

/// Per-session settings from the configuration and the connection.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The listener's name (`imap` or `imaps`), for metrics and the authenticator.
    pub listener: &'static str,
    /// The client's address, for the authenticator's brute-force limiter and the log.
    pub peer: IpAddr,
    /// TLS is up (implicit TLS, or after STARTTLS).
    pub tls: bool,
    /// `[imap] max_literal_size`: the largest literal (octets), APPEND's message too.
    pub max_literal_size: u64,
    /// `[smtp] max_mime_parts`: APPEND takes what SMTP takes.
    pub max_mime_parts: usize,
}

/// Where the session core reads the time (APPEND's internal date when the client
/// gives none): the system clock in the server; a fixed instant in unit tests and the
/// fuzz harnesses, so their runs repeat exactly. The core uses no random source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system's clock.
    #[default]
    System,
    /// Always this Unix time (seconds).
    Fixed(i64),
}

impl Clock {
    /// The current Unix time in seconds (0 before 1970).
    pub fn now(self) -> i64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Clock::Fixed(t) => t,
        }
    }
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
    pub(crate) fn tagged(&self, tag: &str) -> String {
        match self {
            Done::Ok(t) => format!("{tag} OK {t}"),
            Done::No(t) => format!("{tag} NO {t}"),
            Done::Bad(t) => format!("{tag} BAD {t}"),
        }
    }
}

pub(crate) fn ok(s: impl Into<Reply>) -> Done {
    Done::Ok(s.into())
}
pub(crate) fn no(s: impl Into<Reply>) -> Done {
    Done::No(s.into())
}
pub(crate) fn bad(s: impl Into<Reply>) -> Done {
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

/// The sans-I/O IMAP session core: takes complete commands (literals included),
/// writes responses to a sink and tells the shell what to do next (`Next`).
pub struct Session {
    pub(crate) store: SharedStore,
    pub(crate) auth: Authenticator,
    pub(crate) cfg: SessionConfig,
    pub(crate) account: Option<Account>,
    pub(crate) view: Option<View>,
    pub(crate) notifier: Notifier,
    /// Changes of the selected mailbox (IDLE wake-ups, updates after commands).
    pub(crate) watch: Option<MailboxWatch>,
    /// The selected mailbox was deleted by another session: BYE, then close.
    pub(crate) closing: bool,
    /// The selected mailbox may have changed since the last sync.
    pub(crate) dirty: bool,
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
    pub(crate) logged_out: bool,
    /// `[imap] max_inflight_bytes`, shared by every session (see `budget`).
    pub(crate) memory: Arc<crate::budget::MemoryBudget>,
    /// The time source (see `Clock`).
    pub(crate) clock: Clock,
}

impl Session {
    /// A session in the not-authenticated state, on the system clock and without a
    /// memory budget until the shell sets them.
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
            clock: Clock::System,
        }
    }

    /// Replaces the system clock (tests and fuzz harnesses pass a fixed one).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
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

    /// Whether a login succeeded (the authenticated or selected state).
    pub fn is_authenticated(&self) -> bool {
        self.account.is_some()
    }

    /// STARTTLS completed: the connection is encrypted from here on.
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

    /// The greeting line with CRLF: `* OK [CAPABILITY …]` (RFC 9051 §7.1.1).
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
    pub(crate) async fn conclude(
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
            body => return self.dispatch_authenticated(tag, body, sink).await,
        };
        Ok((d, Next::Continue))
    }

    /// Commands of the authenticated state (RFC 9051 §6.3); the selected state's go on to
    /// `dispatch_selected`.
    async fn dispatch_authenticated(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        sink: &mut dyn Sink,
    ) -> std::io::Result<(Done, Next)> {
        use CommandBody as C;
        let selected = self.view.is_some();
        let d = match body {
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
            body => return self.dispatch_selected(tag, body, sink).await,
        };
        Ok((d, Next::Continue))
    }

    /// Commands of the selected state (RFC 9051 §6.4).
    async fn dispatch_selected(
        &mut self,
        tag: &str,
        body: CommandBody<'_>,
        sink: &mut dyn Sink,
    ) -> std::io::Result<(Done, Next)> {
        use CommandBody as C;
        let d = match body {
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
        let changes = match self.store.changes_since(v.mailbox, ModSeq(v.modseq)).await {
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
                match self.store.claim_recent(mailbox, Uid(below)).await {
                    Ok(from) => {
                        if let Some(v) = self.view.as_mut() {
                            v.add_recent(from.get(), below);
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

    pub(crate) fn unselect(&mut self) {
        self.saved_uids.clear();
        self.view = None;
        self.watch = None;
        self.dirty = false;
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn account_id(&self) -> AccountId {
        self.account.as_ref().map_or(AccountId(0), |a| a.id)
    }

    pub(crate) async fn find_mailbox(&self, wire: &WireMailbox<'_>) -> Result<Mailbox, Done> {
        let name = mailbox_name(wire)?;
        match self.store.mailbox(self.account_id(), &name).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(no(ResponseCode::Nonexistent.text("No such mailbox"))),
            Err(e) => Err(store_no(&e)),
        }
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
