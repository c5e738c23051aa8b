//! The async shell: runs a `Session` on a `bulwark_net::Connection`. It reads bounded
//! lines, logs them, feeds them to the session and performs the actions it returns
//! (TLS upgrade, authentication, message streaming, UPDATE). No protocol decisions
//! are made here.

use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;
use bulwark_auth::AuthError;
use std::sync::Arc;

use bulwark_auth::Authenticator;
use bulwark_config::{ListenerKind, LoadedConfig, TlsMode};
use bulwark_net::{
    Bounds, Connection, Input, Line, LineLog, SessionHandler, WriteFailure, DEFAULT_WRITE_TIMEOUT,
};
use bulwark_store::{Account, BlobId, FlagOp, Flags, SharedStore, StoreError, Uid};
use bulwark_tls::TlsServer;

use crate::command::{metric_label, MAX_COMMAND_LINE, MAX_SASL_LINE};
use crate::dotstuff::{top_prefix, DotStuffer};
use crate::lock::{MaildropGuard, MaildropLocks};
use crate::maildrop::Maildrop;
use crate::reply::Reply;
use crate::session::{Action, LoginOutcome, LoginRequest, Session, SessionSettings};

/// Sent (in the clear, on 110) when a connection limit is reached.
pub const BUSY_REPLY: &[u8] = b"-ERR [SYS/TEMP] too many connections; try again later\r\n";

/// Message bodies are encoded and written in pieces of this size.
const STREAM_CHUNK: usize = 32 * 1024;

/// The POP3 protocol for one listener (110 or 995).
pub struct Pop3Handler {
    config: Arc<LoadedConfig>,
    store: SharedStore,
    auth: Authenticator,
    tls: TlsServer,
    kind: ListenerKind,
    locks: MaildropLocks,
}

impl Pop3Handler {
    /// A handler using the process-wide maildrop locks (shared by 110 and 995).
    pub fn new(
        kind: ListenerKind,
        config: Arc<LoadedConfig>,
        store: SharedStore,
        auth: Authenticator,
        tls: TlsServer,
    ) -> Pop3Handler {
        Pop3Handler::with_locks(
            kind,
            config,
            store,
            auth,
            tls,
            MaildropLocks::process_wide(),
        )
    }

    /// A handler with maildrop locks of its own.
    pub fn with_locks(
        kind: ListenerKind,
        config: Arc<LoadedConfig>,
        store: SharedStore,
        auth: Authenticator,
        tls: TlsServer,
        locks: MaildropLocks,
    ) -> Pop3Handler {
        Pop3Handler {
            config,
            store,
            auth,
            tls,
            kind,
            locks,
        }
    }
}

#[async_trait]
impl SessionHandler for Pop3Handler {
    async fn run(&self, conn: Connection) {
        // Sessions are counted by bulwark-net (bulwark_sessions_total / _active).
        let listener = self.kind.name();
        let mut shell = Shell {
            h: self,
            conn,
            session: Session::new(SessionSettings {
                tls: false,
                stls_available: self.kind.tls_mode() == TlsMode::Starttls,
                hostname: self.config.config.server.hostname.clone(),
            }),
            guard: None,
            login_deadline: Instant::now()
                + Duration::from_secs(self.config.config.pop3.login_timeout_secs),
            listener,
        };
        if shell.conn.is_tls() {
            shell.session.tls_started();
        }
        // A client that stops reading cannot hold the session (and its maildrop lock)
        // forever: a write that makes no progress for the session timeout fails.
        let timeout = shell.timeout();
        shell
            .conn
            .set_write_timeout(DEFAULT_WRITE_TIMEOUT.min(timeout));
        shell.run().await;
        // The lock goes first: closing may wait on a client that stopped reading.
        drop(shell.guard.take());
        shell.conn.close().await;
    }

    fn busy_reply(&self) -> &'static [u8] {
        BUSY_REPLY
    }
}

struct Shell<'a> {
    h: &'a Pop3Handler,
    conn: Connection,
    session: Session,
    /// The maildrop lock, held from login to the end of the session (after UPDATE).
    guard: Option<MaildropGuard>,
    /// `[pop3] login_timeout_secs` after connecting: a client that has not logged in
    /// by then is closed, however busy it keeps the session.
    login_deadline: Instant,
    listener: &'static str,
}

impl Shell<'_> {
    async fn run(&mut self) {
        let greeting = self.session.greeting();
        if self.reply(&greeting).await.is_err() || self.flush().await.is_err() {
            return;
        }
        loop {
            let action = match self.read().await {
                Input::Line(Line { bytes: line, .. }) => {
                    let label = if self.session.expects_secret() {
                        "AUTH-response"
                    } else {
                        metric_label(&line)
                    };
                    let action = self.session.on_line(&line);
                    let ok = match &action {
                        Action::Reply(r) | Action::Close(r) | Action::StartTls(r) => !r.is_err(),
                        _ => true,
                    };
                    metrics::counter!("bulwark_pop3_commands_total", "listener" => self.listener,
                        "command" => label, "result" => if ok { "ok" } else { "err" })
                    .increment(1);
                    action
                }
                Input::TooLong { .. } => {
                    self.conn.log.event("line too long; discarded");
                    metrics::counter!("bulwark_pop3_commands_total", "listener" => self.listener,
                        "command" => "overlong", "result" => "err")
                    .increment(1);
                    self.session.on_line_too_long()
                }
                Input::Closed | Input::Failed(_) => {
                    // RFC 1939 §6: no QUIT, no UPDATE: nothing is deleted.
                    self.conn.log.event("connection closed by client");
                    return;
                }
                Input::Deadline => {
                    let r = Reply::err(format!(
                        "autologout: log in within {} seconds of connecting",
                        self.h.config.config.pop3.login_timeout_secs
                    ));
                    self.conn.log.event("login timeout");
                    let _ = self.reply(&r).await;
                    return;
                }
                Input::IdleTimeout => {
                    // RFC 1939 §3: the autologout timer closes without UPDATE.
                    let r = Reply::err(format!(
                        "autologout: idle for {} seconds",
                        self.h.config.config.pop3.timeout_secs
                    ));
                    self.conn.log.event("idle timeout");
                    let _ = self.reply(&r).await;
                    return;
                }
                Input::Shutdown => {
                    let r = Reply::err("[SYS/TEMP] server shutting down; nothing was deleted");
                    self.conn.log.event("server shutdown");
                    let _ = self.reply(&r).await;
                    return;
                }
            };
            match self.perform(action).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.h.config.config.pop3.timeout_secs)
    }

    /// Queues output (see the write timeout set in `run`).
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        let r = self.conn.write(data).await;
        self.note_write(r)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let r = self.conn.flush().await;
        self.note_write(r)
    }

    fn note_write(&self, r: std::io::Result<()>) -> std::io::Result<()> {
        if let Err(e) = &r {
            if WriteFailure::of(e) == WriteFailure::TimedOut {
                self.conn.log.event("client stopped reading; closing");
            }
        }
        r
    }

    /// Reads the next line, flushing pending replies first unless the client has
    /// already pipelined more commands (RFC 2449 §6.6).
    async fn read(&mut self) -> Input {
        if !self.conn.has_buffered_input() && self.flush().await.is_err() {
            return Input::Closed;
        }
        let secret = self.session.expects_secret();
        let max = if secret {
            MAX_SASL_LINE
        } else {
            MAX_COMMAND_LINE
        };
        let mut bounds = Bounds::idle(self.timeout()).or_shutdown(self.conn.shutdown());
        if self.guard.is_none() {
            // Not logged in yet (the maildrop lock comes with the login).
            bounds = bounds.and_until(self.login_deadline);
        }
        let how = if secret {
            LineLog::Secret
        } else {
            LineLog::Client
        };
        let input = self.conn.next_line(max, &bounds, |_| how).await;
        if let Input::Failed(e) = &input {
            self.conn.log.event(&format!("read error: {e}"));
        }
        input
    }

    /// Queues a reply (flushed before the next read) and logs it: the status line, and
    /// for a multi-line reply how many lines followed.
    async fn reply(&mut self, r: &Reply) -> std::io::Result<()> {
        self.conn.log.server(r.status().as_bytes());
        if let Some(lines) = r.lines() {
            self.conn
                .log
                .event(&format!("multi-line response: {} lines", lines.len()));
        }
        self.write(&r.to_bytes()).await
    }

    /// Performs an action and what follows from it. `Ok(false)` ends the session.
    async fn perform(&mut self, first: Action) -> std::io::Result<bool> {
        let mut next = Some(first);
        while let Some(action) = next.take() {
            match action {
                Action::Reply(r) => self.reply(&r).await?,
                Action::Close(r) => {
                    self.reply(&r).await?;
                    self.flush().await?;
                    return Ok(false);
                }
                Action::StartTls(r) => {
                    self.reply(&r).await?;
                    // Flushes the reply, then discards anything the client pipelined
                    // after STLS (the command-injection attack).
                    if self.conn.start_tls(self.h.tls.acceptor()).await.is_err() {
                        return Ok(false);
                    }
                    self.session.tls_started();
                }
                Action::Login(req) => {
                    let outcome = self.login(req).await;
                    next = Some(self.session.login_result(outcome));
                }
                Action::Retrieve {
                    reply,
                    number,
                    blob,
                    body_lines,
                } => self.retrieve(reply, number, blob, body_lines).await?,
                Action::Update {
                    mailbox,
                    delete,
                    seen,
                } => {
                    let result = self.update(mailbox, &delete, &seen).await;
                    next = Some(self.session.update_result(result));
                }
            }
        }
        Ok(true)
    }

    async fn login(&mut self, req: LoginRequest) -> LoginOutcome {
        let result = self
            .h
            .auth
            .authenticate(
                &req.username,
                &req.password,
                self.conn.peer().ip(),
                self.listener,
                req.mechanism,
            )
            .await;
        let outcome = match result {
            Ok(account) => self.open_maildrop(&account).await,
            Err(AuthError::Failed) => LoginOutcome::Failed,
            Err(AuthError::Throttled) => LoginOutcome::Throttled,
            Err(AuthError::Unavailable) => LoginOutcome::Unavailable,
        };
        let label = match &outcome {
            LoginOutcome::LoggedIn(_) => "success",
            LoginOutcome::Failed => "failed",
            LoginOutcome::Throttled => "throttled",
            LoginOutcome::Unavailable | LoginOutcome::MaildropUnavailable => "unavailable",
            LoginOutcome::InUse => "in_use",
        };
        metrics::counter!("bulwark_pop3_logins_total", "listener" => self.listener,
            "mechanism" => req.mechanism, "result" => label)
        .increment(1);
        outcome
    }

    /// Locks the account's maildrop, then snapshots INBOX (RFC 1939 §4: the lock is
    /// taken once the credentials are right, so a wrong password never learns that a
    /// session is active).
    async fn open_maildrop(&mut self, account: &Account) -> LoginOutcome {
        let Some(guard) = self.h.locks.try_lock(account.id) else {
            self.conn.log.event(&format!(
                "{} authenticated; maildrop in use",
                account.address
            ));
            return LoginOutcome::InUse;
        };
        let store = &self.h.store;
        let snapshot = async {
            let inbox = store
                .mailbox(account.id, "INBOX")
                .await?
                .ok_or_else(|| StoreError::NotFound("INBOX".into()))?;
            let messages = store.list_messages(inbox.id).await?;
            Ok::<_, StoreError>(Maildrop::new(&inbox, &messages))
        }
        .await;
        match snapshot {
            Ok(md) => {
                self.guard = Some(guard);
                self.conn.log.set_user(Some(account.address.clone()));
                self.conn.log.event(&format!(
                    "logged in; maildrop locked with {} messages",
                    md.stat().0
                ));
                LoginOutcome::LoggedIn(md)
            }
            Err(e) => {
                tracing::error!(target: "bulwark::pop3", account = %account.address, error = %e, "cannot open the maildrop");
                LoginOutcome::MaildropUnavailable
            }
        }
    }

    /// RETR / TOP: the body is dot-stuffed and written in pieces; only the store's one
    /// copy of the message is held in memory.
    async fn retrieve(
        &mut self,
        reply: Reply,
        number: u32,
        blob: BlobId,
        body_lines: Option<u32>,
    ) -> std::io::Result<()> {
        let body = match self.h.store.read_blob(blob).await {
            Ok(b) => b,
            Err(StoreError::NotFound(_)) => {
                return self
                    .reply(&Reply::err(format!(
                        "message {number} was removed by another session"
                    )))
                    .await
            }
            Err(e) => {
                tracing::error!(target: "bulwark::pop3", blob = blob.get(), error = %e, "cannot read a message");
                return self
                    .reply(&Reply::err("[SYS/TEMP] the message cannot be read now"))
                    .await;
            }
        };
        let part = match body_lines {
            Some(n) => top_prefix(&body, n),
            None => &body[..],
        };
        self.reply(&reply).await?;
        let mut st = DotStuffer::new();
        let mut out = Vec::with_capacity(STREAM_CHUNK + STREAM_CHUNK / 8);
        let mut sent = 0u64;
        for chunk in part.chunks(STREAM_CHUNK) {
            out.clear();
            st.push(chunk, &mut out);
            sent += out.len() as u64;
            self.write(&out).await?;
        }
        out.clear();
        st.finish(&mut out);
        sent += out.len() as u64;
        self.write(&out).await?;
        // The protocol log never holds message bodies: only their size.
        self.conn.log.event(&format!(
            "{} message {number}: {sent} octets sent (body not logged)",
            if body_lines.is_some() { "TOP" } else { "RETR" }
        ));
        let kind = if body_lines.is_some() { "top" } else { "retr" };
        metrics::counter!("bulwark_pop3_messages_sent_total", "listener" => self.listener, "command" => kind)
            .increment(1);
        metrics::counter!("bulwark_pop3_message_bytes_sent_total", "listener" => self.listener)
            .increment(sent);
        Ok(())
    }

    /// RFC 1939 §6 UPDATE: remove the messages marked as deleted (durably, in one
    /// store transaction), and flag the retrieved ones \Seen so IMAP shows them read.
    async fn update(
        &mut self,
        mailbox: bulwark_store::MailboxId,
        delete: &[u32],
        seen: &[u32],
    ) -> Result<usize, ()> {
        let store = &self.h.store;
        if !seen.is_empty() {
            // Best effort: a flag is not worth failing the QUIT for.
            if let Err(e) = store
                .update_flags(
                    mailbox,
                    &Uid::from_raw(seen),
                    FlagOp::Add,
                    &Flags::new(Flags::SEEN),
                    None,
                )
                .await
            {
                tracing::warn!(target: "bulwark::pop3", error = %e, "cannot flag retrieved messages as seen");
            }
        }
        if delete.is_empty() {
            return Ok(0);
        }
        match store.delete_messages(mailbox, &Uid::from_raw(delete)).await {
            Ok(removed) => {
                metrics::counter!("bulwark_pop3_messages_deleted_total", "listener" => self.listener)
                    .increment(removed.len() as u64);
                self.conn
                    .log
                    .event(&format!("UPDATE: {} messages deleted", removed.len()));
                // Messages IMAP expunged meanwhile are gone too: count what was asked.
                Ok(delete.len())
            }
            Err(e) => {
                tracing::error!(target: "bulwark::pop3", error = %e, "UPDATE failed; nothing deleted");
                self.conn.log.event("UPDATE failed; nothing deleted");
                Err(())
            }
        }
    }
}
