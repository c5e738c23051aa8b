//! The thin async shell: reads commands (with their literals) from the connection,
//! feeds them to the session core, and does what the core asks (STARTTLS, the SASL
//! continuation, IDLE, close).
//!
//! Literal handling (RFC 9051 §4.3, RFC 7888 LITERAL+) is decided by `framing` from
//! the line that announces a literal, before a byte of it is read: a synchronising
//! literal that is refused gets a tagged NO/BAD and no "+", so the client never sends
//! it; a refused non-synchronising one is already on its way, so the connection is
//! closed after a BYE (RFC 7888 §4) rather than reading and discarding gigabytes.
//! A command is decoded once, when complete.
//!
//! Time limits: a client has `login_timeout_secs` from connecting to log in (the
//! whole unauthenticated phase, not per command); after login each command may be
//! `idle_timeout_secs` apart, and IDLE lasts at most that long, with `* OK Still
//! here` every `idle_keepalive_secs`. A client that does not take our output within
//! `WRITE_TIMEOUT` (per piece of at most `WRITE_CHUNK` octets) loses its session.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_auth::sasl::MAX_SASL_LINE;
use bulwark_auth::Authenticator;
use bulwark_config::LoadedConfig;
use bulwark_net::{
    Bounds, Connection, Input, Interrupt, LineLog, ReadError, SessionHandler, WriteFailure,
    MAX_SESSION_ERRORS,
};
use bulwark_store::SharedStore;
use bulwark_tls::TlsServer;
use tokio::time::Instant;

use crate::budget::{AppendSlot, Hold, SharedLimits};
use crate::code::ResponseCode;
use crate::framing::{FrameLimits, FrameState, Framer, Step};
use crate::notify::Notifier;
use crate::resp::Sink;
use crate::session::{Clock, Next, Session, SessionConfig};

/// How long one write may wait for the client to take our output.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// Output is handed to the connection in pieces of this size, so the write timeout
/// applies per piece: a large FETCH to a slow client is fine, a stalled one is not.
const WRITE_CHUNK: usize = 64 * 1024;
/// Literal octets are read in pieces of this size (memory grows as data arrives,
/// not with what was announced).
const READ_CHUNK: u64 = 256 * 1024;

/// The protocol handler for `imap` (143) and `imaps` (993).
pub struct ImapHandler {
    config: Arc<LoadedConfig>,
    store: SharedStore,
    auth: Authenticator,
    tls: TlsServer,
    notifier: Notifier,
    limits: SharedLimits,
}

impl ImapHandler {
    /// A handler with limits of its own; `with_limits` shares them between 143 and 993.
    pub fn new(
        config: Arc<LoadedConfig>,
        store: SharedStore,
        auth: Authenticator,
        tls: TlsServer,
    ) -> Arc<ImapHandler> {
        let limits = SharedLimits::new(&config.config.imap);
        ImapHandler::with_limits(config, store, auth, tls, limits)
    }

    /// A handler with what its sessions use: the configuration, the store, the
    /// authenticator, the TLS configuration (STARTTLS) and the memory and APPEND
    /// limits it shares with the other IMAP listener.
    pub fn with_limits(
        config: Arc<LoadedConfig>,
        store: SharedStore,
        auth: Authenticator,
        tls: TlsServer,
        limits: SharedLimits,
    ) -> Arc<ImapHandler> {
        let notifier = Notifier::new(&store);
        Arc::new(ImapHandler {
            config,
            store,
            auth,
            tls,
            notifier,
            limits,
        })
    }
}

/// What an APPEND holds from its literal's announcement until the command is done:
/// its share of `[imap] max_inflight_bytes` and one of its account's APPEND slots.
#[derive(Default)]
struct AppendHolds {
    _memory: Option<Hold>,
    _slot: Option<AppendSlot>,
    /// The memory of a MULTIAPPEND's further messages (RFC 3502), one slot for all.
    _more: Vec<Hold>,
}

/// Admits APPEND's message literal of `len` octets before a byte of it is read
/// (waiting for one of the account's APPEND slots), or says why not (the text of a
/// tagged `NO [LIMIT]`). The budget covers the literal and the copy handed to the
/// store.
async fn admit_append(
    limits: &SharedLimits,
    account: Option<bulwark_store::AccountId>,
    len: u64,
) -> Result<AppendHolds, String> {
    let slot = match account {
        Some(a) => Some(limits.appends.take(a).await),
        None => None,
    };
    let Some(memory) = limits.memory.try_take(len.saturating_mul(2)) else {
        return Err(crate::budget::LIMIT_TEXT.into());
    };
    Ok(AppendHolds {
        _memory: Some(memory),
        _slot: slot,
        _more: Vec::new(),
    })
}

/// Responses go to the connection's buffer and the protocol log; `BAD` responses
/// count towards the session's error limit.
struct ConnSink<'a> {
    conn: &'a mut Connection,
    errors: &'a mut u32,
}

/// True for a `BAD` response, tagged or not (RFC 9051 §7.1.3: a protocol error).
fn is_bad(response: &[u8]) -> bool {
    let mut words = response.splitn(3, |b| *b == b' ');
    let _tag = words.next();
    matches!(words.next(), Some(w) if w.eq_ignore_ascii_case(b"BAD") || w.eq_ignore_ascii_case(b"BAD\r\n"))
}

#[async_trait]
impl Sink for ConnSink<'_> {
    async fn send(&mut self, data: &[u8], log: &[u8]) -> std::io::Result<()> {
        if is_bad(data) {
            *self.errors += 1;
        }
        self.conn.log.server(log);
        for piece in data.chunks(WRITE_CHUNK) {
            self.conn.write(piece).await?;
        }
        Ok(())
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush().await
    }
    async fn send_part(&mut self, data: &[u8]) -> std::io::Result<()> {
        for piece in data.chunks(WRITE_CHUNK) {
            self.conn.write(piece).await?;
        }
        Ok(())
    }
}

/// A complete command, or why there is none.
enum Frame {
    Command(Vec<u8>),
    /// A line longer than allowed, with the command's tag when it could be read.
    LineTooLong {
        tag: Option<String>,
    },
    /// A literal refused before it was read; `close` when it is on its way anyway.
    Refused {
        reply: String,
        close: bool,
        /// Labels `bulwark_imap_bad_input_total`.
        reason: &'static str,
    },
    /// Syntax error; the tag when one could be read.
    Malformed {
        tag: Option<String>,
    },
    /// Too many literals for one command; `close` when one is on its way anyway.
    TooComplex {
        tag: Option<String>,
        close: bool,
    },
}

/// Reads one command with its literals. An APPEND's holds are put in `holds`.
async fn read_command(
    conn: &mut Connection,
    state: FrameState,
    limits: FrameLimits,
    shared: (&SharedLimits, Option<bulwark_store::AccountId>),
    holds: &mut AppendHolds,
) -> Result<Frame, ReadError> {
    let mut f = Framer::new(state, limits);
    let mut admitted = false;
    let mut first = true;
    loop {
        let line = match conn.read_line(f.max_line() + 2).await {
            Ok(l) => l,
            Err(ReadError::TooLong { .. }) => {
                // RFC 9051 §2.2.2: the refused command still gets its tagged reply;
                // the tag is the framer's (a later line) or the discarded line's.
                let tag = f
                    .tag()
                    .map(str::to_owned)
                    .or_else(|| crate::framing::guess_tag(conn.discarded_head()));
                return Ok(Frame::LineTooLong { tag });
            }
            Err(e) => return Err(e),
        };
        if first {
            // LOGIN/AUTHENTICATE arguments are redacted by verb.
            conn.log.client(&line.bytes);
            first = false;
        } else if f.is_secret() {
            // The rest of a LOGIN after a literal may hold the password.
            conn.log.client_secret();
        } else {
            conn.log.client(&line.bytes);
        }
        match f.push_line(&line.bytes) {
            Step::Complete(bytes) => return Ok(Frame::Command(bytes)),
            Step::Malformed { tag } => return Ok(Frame::Malformed { tag }),
            Step::TooComplex { tag, close } => return Ok(Frame::TooComplex { tag, close }),
            Step::Refuse { reply, close } => {
                return Ok(Frame::Refused {
                    reply,
                    close,
                    reason: "literal_refused",
                })
            }
            Step::Literal { len, sync } => {
                if f.message_literal() == Some(len) {
                    let admitted_now = if !admitted {
                        admitted = true;
                        admit_append(shared.0, shared.1, len)
                            .await
                            .map(|h| *holds = h)
                    } else {
                        // A further MULTIAPPEND message: its own share of the budget.
                        match shared.0.memory.try_take(len.saturating_mul(2)) {
                            Some(h) => {
                                holds._more.push(h);
                                Ok(())
                            }
                            None => Err(crate::budget::LIMIT_TEXT.to_string()),
                        }
                    };
                    if let Err(text) = admitted_now {
                        let tag = f.tag().unwrap_or("*").to_string();
                        return Ok(Frame::Refused {
                            reply: format!("{tag} NO {text}"),
                            close: !sync,
                            reason: "memory_limit",
                        });
                    }
                }
                if sync {
                    let cont = b"+ Ready for literal data\r\n";
                    conn.log.server(&cont[..cont.len() - 2]);
                    conn.send(cont).await?;
                }
                let mut left = len;
                while left > 0 {
                    let n = left.min(READ_CHUNK);
                    conn.read_exact_into(n as usize, f.literal_buffer()).await?;
                    left -= n;
                }
            }
        }
    }
}

#[async_trait]
impl SessionHandler for ImapHandler {
    async fn run(&self, mut conn: Connection) {
        // Session counts and TLS handshakes are measured by bulwark-net.
        conn.log.event("connect");
        self.session(&mut conn).await;
        conn.log.event("disconnect");
        conn.close().await;
    }

    fn busy_reply(&self) -> &'static [u8] {
        BUSY_REPLY
    }
}

/// The BYE for a connection over the limit, `* BYE [UNAVAILABLE] …` (RFC 5530 §3).
/// `busy_reply` returns a `'static` slice, so it is written out here; a test checks
/// it against `ResponseCode::Unavailable`.
const BUSY_REPLY: &[u8] = b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n";

/// The session loop's time limits and frame limits, fixed at connect.
struct Limits {
    frame: FrameLimits,
    login_timeout: Duration,
    idle_timeout: Duration,
    /// The end of the unauthenticated phase (from connecting).
    login_deadline: Instant,
}

/// The `BYE` sent when the server shuts down: `* BYE [UNAVAILABLE] …` (RFC 5530 §3).
fn shutdown_bye() -> String {
    format!(
        "* BYE {}",
        ResponseCode::Unavailable.text("Server shutting down")
    )
}

/// A tagged (or, without a tag, untagged) `BAD [TOOBIG] text` (RFC 4469 §4.2).
fn too_big(tag: Option<String>, text: &str) -> String {
    let t = tag.unwrap_or_else(|| "*".into());
    format!("{t} BAD {}", ResponseCode::TooBig.text(text))
}

impl ImapHandler {
    async fn session(&self, conn: &mut Connection) {
        let icfg = &self.config.config.imap;
        let login_timeout = Duration::from_secs(icfg.login_timeout_secs);
        let limits = Limits {
            frame: FrameLimits {
                max_line: icfg.max_line_length,
                max_literal: icfg.max_literal_size,
            },
            login_timeout,
            idle_timeout: Duration::from_secs(icfg.idle_timeout_secs),
            login_deadline: Instant::now() + login_timeout,
        };
        conn.set_write_timeout(WRITE_TIMEOUT.min(login_timeout));
        let mut s = self.new_session(conn);
        let greeting = s.greeting();
        conn.log.server(greeting.trim_end().as_bytes());
        if let Err(e) = conn.send(greeting.as_bytes()).await {
            write_failed(conn, &e);
            return;
        }
        let mut authenticated = false;
        // Protocol errors so far (BAD responses); at the limit the session ends.
        let mut errors = 0u32;
        loop {
            if errors >= MAX_SESSION_ERRORS {
                conn.log.event("too many errors; closing");
                bad_input(conn.kind().name(), "too_many_errors");
                let _ = bye(conn, "* BYE Too many errors").await;
                return;
            }
            if !authenticated && s.is_authenticated() {
                authenticated = true;
                conn.set_write_timeout(WRITE_TIMEOUT);
            }
            // Held until the command read here has been handled (the APPEND stored).
            let mut holds = AppendHolds::default();
            let Some(frame) = self
                .next_frame(conn, &s, &limits, authenticated, &mut holds)
                .await
            else {
                return;
            };
            let next = match answer_frame(conn, &mut s, frame, &mut errors).await {
                ControlFlow::Continue(Ok(n)) => n,
                ControlFlow::Continue(Err(e)) => {
                    write_failed(conn, &e);
                    return;
                }
                ControlFlow::Break(()) => return,
            };
            // Pipelined commands: answer them together (RFC 9051 §5.5).
            let flushed = if next == Next::Continue {
                conn.flush_unless_pipelined().await
            } else {
                conn.flush().await
            };
            if let Err(e) = flushed {
                write_failed(conn, &e);
                return;
            }
            if self
                .follow(conn, &mut s, next, &limits, &mut errors)
                .await
                .is_break()
            {
                return;
            }
        }
    }

    /// The session core for this connection, on the system clock (the server's
    /// choice; tests and fuzz harnesses pass a fixed one).
    fn new_session(&self, conn: &Connection) -> Session {
        let mut s = Session::new(
            self.store.clone(),
            self.auth.clone(),
            SessionConfig {
                listener: conn.kind().name(),
                peer: conn.peer().ip(),
                tls: conn.is_tls(),
                max_literal_size: self.config.config.imap.max_literal_size,
                max_mime_parts: self.config.config.smtp.max_mime_parts as usize,
            },
            self.notifier.clone(),
        );
        s.set_clock(Clock::System);
        s.set_memory_budget(self.limits.memory.clone());
        s
    }

    /// Reads the next command under the login deadline (before login) or the idle
    /// timeout (after), or shutdown. `None` when the session ends (the BYE, if any,
    /// was sent).
    async fn next_frame(
        &self,
        conn: &mut Connection,
        s: &Session,
        limits: &Limits,
        authenticated: bool,
        holds: &mut AppendHolds,
    ) -> Option<Frame> {
        let deadline = if authenticated {
            Instant::now() + limits.idle_timeout
        } else {
            limits.login_deadline
        };
        let state = FrameState {
            authenticated,
            tls: conn.is_tls(),
        };
        let bounds = Bounds::until(deadline).or_shutdown(conn.shutdown());
        let shared = (&self.limits, s.logged_in_account());
        let frame = bounds
            .run(read_command(conn, state, limits.frame, shared, holds))
            .await;
        match frame {
            Err(Interrupt::Shutdown) => {
                let _ = bye(conn, &shutdown_bye()).await;
                None
            }
            Err(_) if authenticated => {
                let _ = bye(conn, "* BYE Autologout; idle for too long").await;
                None
            }
            Err(_) => {
                conn.log.event("login timeout");
                let text = format!(
                    "* BYE Autologout; log in within {} seconds of connecting",
                    limits.login_timeout.as_secs()
                );
                let _ = bye(conn, &text).await;
                None
            }
            Ok(Err(ReadError::Eof)) => None,
            Ok(Err(e)) => {
                conn.log.event(&format!("read error: {e}"));
                None
            }
            Ok(Ok(f)) => Some(f),
        }
    }

    /// Does what the core asked after a command: STARTTLS, the SASL continuation,
    /// IDLE. `Break` when the session ends.
    async fn follow(
        &self,
        conn: &mut Connection,
        s: &mut Session,
        next: Next,
        limits: &Limits,
        errors: &mut u32,
    ) -> ControlFlow<()> {
        match next {
            Next::Continue => ControlFlow::Continue(()),
            Next::Close => ControlFlow::Break(()),
            Next::StartTls => {
                let acceptor = self.tls.acceptor().clone();
                if conn.start_tls(&acceptor).await.is_err() {
                    return ControlFlow::Break(());
                }
                s.tls_started();
                ControlFlow::Continue(())
            }
            Next::AuthContinue(tag) => auth_continue(conn, s, &tag, limits, errors).await,
            Next::Idle(tag) => {
                let frame = &limits.frame;
                if self.idle(conn, s, &tag, frame, limits.idle_timeout).await {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            }
        }
    }

    /// RFC 2177 IDLE: updates as they happen until DONE. Returns false when the
    /// connection should end.
    async fn idle(
        &self,
        conn: &mut Connection,
        s: &mut Session,
        tag: &str,
        limits: &FrameLimits,
        idle_timeout: Duration,
    ) -> bool {
        conn.log.server(b"+ idling");
        if conn.send(b"+ idling\r\n").await.is_err() {
            return false;
        }
        let listener = conn.kind().name();
        metrics::gauge!("bulwark_imap_idle_sessions", "listener" => listener).increment(1.0);
        let r = self.idle_loop(conn, s, tag, limits, idle_timeout).await;
        metrics::gauge!("bulwark_imap_idle_sessions", "listener" => listener).decrement(1.0);
        r
    }

    async fn idle_loop(
        &self,
        conn: &mut Connection,
        s: &mut Session,
        tag: &str,
        limits: &FrameLimits,
        idle_timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + idle_timeout;
        let keepalive = Duration::from_secs(self.config.config.imap.idle_keepalive_secs.max(1));
        let mut next_keepalive = Instant::now() + keepalive;
        let shutdown = conn.shutdown().clone();
        loop {
            // Thousands of sessions may idle for hours: hold no buffer meanwhile.
            conn.shrink_buffers();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = bye(conn, &shutdown_bye()).await;
                    return false;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = bye(conn, "* BYE Autologout; idle for too long").await;
                    return false;
                }
                _ = tokio::time::sleep_until(next_keepalive) => {
                    // Keeps NAT mappings and mobile radios from dropping the
                    // connection (RFC 2177 §3 suggests re-issuing IDLE; this spares it).
                    next_keepalive = Instant::now() + keepalive;
                    if let Err(e) = bye(conn, "* OK Still here").await {
                        write_failed(conn, &e);
                        return false;
                    }
                }
                line = conn.read_line(limits.max_line + 2) => {
                    let text = match line {
                        Ok(l) => l.bytes,
                        Err(ReadError::TooLong { .. }) => Vec::new(),
                        Err(_) => return false,
                    };
                    conn.log.client(&text);
                    let r = if text.eq_ignore_ascii_case(b"DONE") {
                        reply(conn, &format!("{tag} OK IDLE terminated")).await
                    } else {
                        reply(conn, &format!("{tag} BAD Expected DONE")).await
                    };
                    return r.is_ok() && conn.flush().await.is_ok();
                }
                _ = s.wait_change() => {
                    let mut no_errors = 0;
                    let r = s.idle_updates(&mut ConnSink { conn, errors: &mut no_errors }).await;
                    let r = match r {
                        Ok(()) => conn.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        write_failed(conn, &e);
                        return false;
                    }
                    if s.is_closing() {
                        // The selected mailbox was deleted: BYE was sent.
                        return false;
                    }
                }
            }
        }
    }
}

/// Answers one frame: a complete command goes to the core, the rest get their BAD
/// or NO here. `Break` when a refused literal is already on its way (the BYE was
/// sent); a write error is returned for the caller to count.
async fn answer_frame(
    conn: &mut Connection,
    s: &mut Session,
    frame: Frame,
    errors: &mut u32,
) -> ControlFlow<(), std::io::Result<Next>> {
    let listener = conn.kind().name();
    let next = match frame {
        Frame::LineTooLong { tag } => {
            bad_input(listener, "line_too_long");
            *errors += 1;
            reply(conn, &too_big(tag, "Command line too long")).await
        }
        Frame::Refused {
            reply: text,
            close,
            reason,
        } => {
            bad_input(listener, reason);
            *errors += u32::from(is_bad(text.as_bytes()));
            return refuse(conn, &text, close).await;
        }
        Frame::TooComplex { tag, close } => {
            bad_input(listener, "too_complex");
            *errors += 1;
            let text = too_big(tag, "Too many literals in one command");
            return refuse(conn, &text, close).await;
        }
        Frame::Malformed { tag } => {
            bad_input(listener, "malformed");
            *errors += 1;
            let t = tag.unwrap_or_else(|| "*".into());
            reply(conn, &format!("{t} BAD Syntax error or unknown command")).await
        }
        Frame::Command(bytes) => {
            let r = s.handle_raw(&bytes, &mut ConnSink { conn, errors }).await;
            conn.log.set_user(s.user().map(str::to_string));
            r
        }
    };
    ControlFlow::Continue(next)
}

/// Sends a refusal; when the refused literal is on its way anyway (`close`), a BYE
/// follows and the session ends (RFC 7888 §4).
async fn refuse(
    conn: &mut Connection,
    text: &str,
    close: bool,
) -> ControlFlow<(), std::io::Result<Next>> {
    if close {
        let _ = reply(conn, text).await;
        let _ = bye(conn, "* BYE Refused literal is already on its way").await;
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(reply(conn, text).await)
}

/// The SASL continuation of AUTHENTICATE: `+ `, one secret line under the login
/// deadline, then the core's answer. `Break` when the session ends.
async fn auth_continue(
    conn: &mut Connection,
    s: &mut Session,
    tag: &str,
    limits: &Limits,
    errors: &mut u32,
) -> ControlFlow<()> {
    if conn.send(b"+ \r\n").await.is_err() {
        return ControlFlow::Break(());
    }
    conn.log.server(b"+ ");
    let bounds = Bounds::until(limits.login_deadline).or_shutdown(conn.shutdown());
    let line = match conn
        .next_line(MAX_SASL_LINE, &bounds, |_| LineLog::Secret)
        .await
    {
        Input::Line(l) => l,
        Input::TooLong { .. } => {
            *errors += 1;
            let _ = reply(conn, &format!("{tag} BAD Authentication data too long")).await;
            return ControlFlow::Continue(());
        }
        Input::IdleTimeout | Input::Deadline => {
            conn.log.event("login timeout");
            let _ = bye(conn, "* BYE Autologout; login took too long").await;
            return ControlFlow::Break(());
        }
        Input::Shutdown | Input::Closed | Input::Failed(_) => return ControlFlow::Break(()),
    };
    let r = s
        .auth_response(tag, &line.bytes, &mut ConnSink { conn, errors })
        .await;
    conn.log.set_user(s.user().map(str::to_string));
    if r.is_err() || conn.flush().await.is_err() {
        return ControlFlow::Break(());
    }
    ControlFlow::Continue(())
}

/// A write failed: the client is gone or stopped reading (the write timeout).
fn write_failed(conn: &mut Connection, e: &std::io::Error) {
    if WriteFailure::of(e) == WriteFailure::TimedOut {
        conn.log.event("client stopped reading; closing");
        metrics::counter!("bulwark_imap_write_timeouts_total", "listener" => conn.kind().name())
            .increment(1);
    }
}

fn bad_input(listener: &'static str, reason: &'static str) {
    metrics::counter!("bulwark_imap_bad_input_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

async fn reply(conn: &mut Connection, text: &str) -> std::io::Result<Next> {
    conn.reply_line(text.as_bytes()).await?;
    Ok(Next::Continue)
}

async fn bye(conn: &mut Connection, text: &str) -> std::io::Result<()> {
    reply(conn, text).await?;
    conn.flush().await
}

#[cfg(test)]
mod shell_tests {
    use super::{is_bad, shutdown_bye, too_big, BUSY_REPLY};
    use crate::code::ResponseCode;

    #[test]
    fn shell_responses_carry_their_typed_codes() {
        assert_eq!(shutdown_bye(), "* BYE [UNAVAILABLE] Server shutting down");
        assert_eq!(
            too_big(Some("a1".into()), "Command line too long"),
            "a1 BAD [TOOBIG] Command line too long"
        );
        assert_eq!(
            too_big(None, "Too many literals in one command"),
            "* BAD [TOOBIG] Too many literals in one command"
        );
        let busy = format!(
            "* BYE {}\r\n",
            ResponseCode::Unavailable.text("Too many connections, try again later")
        );
        assert_eq!(BUSY_REPLY, busy.as_bytes());
    }

    #[test]
    fn bad_responses_are_recognised() {
        assert!(is_bad(b"a BAD Syntax error or unknown command\r\n"));
        assert!(is_bad(b"* BAD [TOOBIG] Command line too long\r\n"));
        assert!(is_bad(b"a bad\r\n"));
        assert!(!is_bad(b"a NO [LIMIT] too much\r\n"));
        assert!(!is_bad(b"* 3 EXISTS\r\n"));
        assert!(!is_bad(b"* OK BAD news\r\n"));
        assert!(!is_bad(b"BAD"));
    }
}
