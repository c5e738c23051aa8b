//! The thin async shell: reads commands (with their literals) from the connection,
//! feeds them to the session core, and does what the core asks (STARTTLS, the SASL
//! continuation, IDLE, close).
//!
//! Literal handling (RFC 9051 §4.3, RFC 7888 LITERAL+): each line is decoded with
//! imap-codec as soon as it arrives; when it ends in a literal announcement the size
//! is checked *before* anything else happens. A synchronising literal over the limit
//! gets a tagged NO and no "+", so the client never sends it; a non-synchronising one
//! over the limit is already on its way, so the connection is closed after a BYE
//! (RFC 7888 §4) rather than reading and discarding gigabytes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_net::{Connection, ReadError, ServerContext, SessionHandler};
use imap_codec::{
    decode::{CommandDecodeError, Decoder},
    imap_types::core::LiteralMode,
    CommandCodec,
};

use crate::resp::Sink;
use crate::session::{Next, Session, SessionConfig};

/// The protocol handler for `imap` (143) and `imaps` (993).
pub struct ImapHandler {
    ctx: ServerContext,
}

impl ImapHandler {
    pub fn new(ctx: ServerContext) -> Arc<ImapHandler> {
        Arc::new(ImapHandler { ctx })
    }
}

/// Responses go to the connection's buffer and the protocol log.
struct ConnSink<'a> {
    conn: &'a mut Connection,
}

#[async_trait]
impl Sink for ConnSink<'_> {
    async fn send(&mut self, data: &[u8], log: &[u8]) -> std::io::Result<()> {
        self.conn.log.server(log);
        self.conn.write(data).await
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush().await
    }
}

/// A complete command, or why there is none.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Command(Vec<u8>),
    /// A line longer than `max_line_length`.
    LineTooLong,
    /// A literal over the limit; `sync` tells whether the client is waiting for "+".
    LiteralTooBig {
        tag: String,
        sync: bool,
    },
    /// Syntax error; the tag when one could be read.
    Malformed {
        tag: Option<String>,
    },
    /// Too many lines, or too much decoding work, for one command.
    TooComplex {
        tag: Option<String>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_line: usize,
    pub max_literal: u64,
}

/// The tag of a line, when it has one (for BAD replies to unparseable commands).
pub(crate) fn guess_tag(buf: &[u8]) -> Option<String> {
    let end = buf
        .iter()
        .position(|c| *c == b' ' || *c == b'\r' || *c == b'\n')
        .unwrap_or(buf.len());
    let t = &buf[..end];
    // RFC 9051 tag: 1*<any ASTRING-CHAR except "+">.
    let valid = !t.is_empty()
        && t.len() <= 64
        && t.iter()
            .all(|c| (0x21..=0x7e).contains(c) && !b"(){%*\"\\+".contains(c));
    valid.then(|| String::from_utf8_lossy(t).into_owned())
}

pub(crate) fn verb_is_secret(first_line: &[u8]) -> bool {
    let mut words = first_line.split(|c| *c == b' ').filter(|w| !w.is_empty());
    let _tag = words.next();
    words.next().is_some_and(|v| {
        v.eq_ignore_ascii_case(b"LOGIN") || v.eq_ignore_ascii_case(b"AUTHENTICATE")
    })
}

/// What the framer needs next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameStep {
    /// Done: answer this.
    Frame(Frame),
    /// Read a literal of `length` octets into `Framer::buf` (after sending "+" when
    /// `sync`), call `literal_read`, then read the next line.
    Literal { length: u64, sync: bool },
}

/// Assembles one command from its lines and literals (RFC 9051 §4.3, RFC 7888), without
/// I/O: `read_command` feeds it what the connection reads, the fuzz targets feed it
/// octets directly.
///
/// imap-codec has no incremental decoder, so the buffer is decoded again after each
/// line. That costs the length of the buffer each time; `work` bounds the sum so that
/// a command of many short lines, each announcing a literal, cannot make the server
/// re-parse a growing buffer a thousand times (quadratic CPU for linear input).
pub(crate) struct Framer {
    limits: Limits,
    pub buf: Vec<u8>,
    literal_total: u64,
    lines: usize,
    /// Octets decoded so far for this command.
    work: u64,
}

/// Decoding work allowed per command beyond `WORK_FACTOR` times its size.
const WORK_ALLOWANCE: u64 = 1 << 20;
/// Each octet of a command may be decoded this many times (a LOGIN with two literals
/// is decoded three times, an APPEND twice).
const WORK_FACTOR: u64 = 16;
/// Lines (literal announcements + 1) in one command.
const MAX_COMMAND_LINES: usize = 1000;

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            buf: Vec::new(),
            literal_total: 0,
            lines: 0,
            work: 0,
        }
    }

    /// The longest line to read (with its CRLF).
    pub fn max_line(&self) -> usize {
        self.limits.max_line + 2
    }

    fn malformed(&self) -> FrameStep {
        FrameStep::Frame(Frame::Malformed {
            tag: guess_tag(&self.buf),
        })
    }

    /// One line (without its line ending).
    pub fn line(&mut self, line: &[u8]) -> FrameStep {
        self.lines += 1;
        self.buf.extend_from_slice(line);
        self.buf.extend_from_slice(b"\r\n");
        let len = self.buf.len() as u64;
        if len > self.limits.max_literal + 64 * self.limits.max_line as u64 {
            return self.malformed();
        }
        self.work += len;
        if self.lines > MAX_COMMAND_LINES || self.work > WORK_FACTOR * len + WORK_ALLOWANCE {
            return FrameStep::Frame(Frame::TooComplex {
                tag: guess_tag(&self.buf),
            });
        }
        match CommandCodec::default().decode(&self.buf) {
            Ok(_) => FrameStep::Frame(Frame::Command(std::mem::take(&mut self.buf))),
            Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
                let length = u64::from(length);
                if self.literal_total + length > self.limits.max_literal {
                    return FrameStep::Frame(Frame::LiteralTooBig {
                        tag: tag.as_ref().to_string(),
                        sync: mode == LiteralMode::Sync,
                    });
                }
                FrameStep::Literal {
                    length,
                    sync: mode == LiteralMode::Sync,
                }
            }
            Err(_) => self.malformed(),
        }
    }

    /// The literal announced by the last `FrameStep::Literal` is in `buf`.
    pub fn literal_read(&mut self, length: u64) {
        self.literal_total += length;
    }
}

/// Reads one command with its literals.
async fn read_command(conn: &mut Connection, limits: &Limits) -> Result<Frame, ReadError> {
    let mut framer = Framer::new(*limits);
    let mut secret = false;
    for line_no in 0.. {
        let line = match conn.read_line(framer.max_line()).await {
            Ok(l) => l,
            Err(ReadError::TooLong { .. }) => return Ok(Frame::LineTooLong),
            Err(e) => return Err(e),
        };
        if line_no == 0 {
            secret = verb_is_secret(&line.bytes);
            conn.log.client(&line.bytes);
        } else if secret {
            // The rest of a LOGIN after a literal may hold the password.
            conn.log.client_secret();
        } else {
            conn.log.client(&line.bytes);
        }
        match framer.line(&line.bytes) {
            FrameStep::Frame(f) => return Ok(f),
            FrameStep::Literal { length, sync } => {
                if sync {
                    let cont = b"+ Ready for literal data\r\n";
                    conn.log.server(&cont[..cont.len() - 2]);
                    conn.send(cont).await?;
                }
                conn.read_exact_into(length as usize, &mut framer.buf)
                    .await?;
                framer.literal_read(length);
            }
        }
    }
    Ok(Frame::Malformed { tag: None })
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
        b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
    }
}

impl ImapHandler {
    async fn session(&self, conn: &mut Connection) {
        let icfg = &self.ctx.config.config.imap;
        let limits = Limits {
            max_line: icfg.max_line_length,
            max_literal: icfg.max_literal_size,
        };
        let login_timeout = Duration::from_secs(icfg.login_timeout_secs);
        let idle_timeout = Duration::from_secs(icfg.idle_timeout_secs);
        let listener = conn.kind().name();
        let mut s = Session::new(
            self.ctx.store.clone(),
            self.ctx.auth.clone(),
            SessionConfig {
                listener,
                peer: conn.peer().ip(),
                tls: conn.is_tls(),
                max_literal_size: icfg.max_literal_size,
            },
        );
        let shutdown = self.ctx.shutdown.clone();
        let greeting = s.greeting();
        conn.log.server(greeting.trim_end().as_bytes());
        if conn.send(greeting.as_bytes()).await.is_err() {
            return;
        }
        loop {
            let timeout = if s.is_authenticated() {
                idle_timeout
            } else {
                login_timeout
            };
            let frame = tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = bye(conn, "* BYE [UNAVAILABLE] Server shutting down").await;
                    return;
                }
                r = tokio::time::timeout(timeout, read_command(conn, &limits)) => r,
            };
            let frame = match frame {
                Err(_) => {
                    let _ = bye(conn, "* BYE Autologout; idle for too long").await;
                    return;
                }
                Ok(Err(ReadError::Eof)) => return,
                Ok(Err(e)) => {
                    conn.log.event(&format!("read error: {e}"));
                    return;
                }
                Ok(Ok(f)) => f,
            };
            let next = match frame {
                Frame::LineTooLong => {
                    bad_input(listener, "line_too_long");
                    reply(conn, "* BAD [TOOBIG] Command line too long").await
                }
                Frame::LiteralTooBig { tag, sync: true } => {
                    bad_input(listener, "literal_too_big");
                    reply(
                        conn,
                        &format!(
                            "{tag} NO [TOOBIG] Literal larger than {} octets",
                            limits.max_literal
                        ),
                    )
                    .await
                }
                Frame::LiteralTooBig { tag, sync: false } => {
                    bad_input(listener, "literal_too_big");
                    let _ = reply(
                        conn,
                        &format!(
                            "{tag} NO [TOOBIG] Literal larger than {} octets",
                            limits.max_literal
                        ),
                    )
                    .await;
                    let _ = bye(conn, "* BYE Non-synchronizing literal too large").await;
                    return;
                }
                Frame::TooComplex { tag } => {
                    bad_input(listener, "too_complex");
                    let t = tag.unwrap_or_else(|| "*".into());
                    reply(
                        conn,
                        &format!("{t} BAD [TOOBIG] Too many literals or lines in one command"),
                    )
                    .await
                }
                Frame::Malformed { tag } => {
                    bad_input(listener, "malformed");
                    let t = tag.unwrap_or_else(|| "*".into());
                    reply(conn, &format!("{t} BAD Syntax error or unknown command")).await
                }
                Frame::Command(bytes) => match CommandCodec::default().decode(&bytes) {
                    Ok((_, cmd)) => {
                        let r = s.handle(cmd, &mut ConnSink { conn }).await;
                        conn.log.set_user(s.user().map(str::to_string));
                        match r {
                            Ok(n) => Ok(n),
                            Err(e) => Err(e),
                        }
                    }
                    Err(_) => reply(conn, "* BAD Syntax error").await,
                },
            };
            let next = match next {
                Ok(n) => n,
                Err(_) => return,
            };
            // Pipelined commands: answer them together (RFC 9051 §5.5).
            if (!conn.has_buffered_input() || next != Next::Continue) && conn.flush().await.is_err()
            {
                return;
            }
            match next {
                Next::Continue => {}
                Next::Close => return,
                Next::StartTls => {
                    let acceptor = self.ctx.tls.acceptor().clone();
                    if conn.start_tls(&acceptor).await.is_err() {
                        return;
                    }
                    s.tls_started();
                }
                Next::AuthContinue(tag) => {
                    if conn.send(b"+ \r\n").await.is_err() {
                        return;
                    }
                    conn.log.server(b"+ ");
                    let line = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = tokio::time::timeout(login_timeout, conn.read_line(16 * 1024)) => r,
                    };
                    let line = match line {
                        Ok(Ok(l)) => l,
                        Ok(Err(ReadError::TooLong { .. })) => {
                            let _ = reply(conn, &format!("{tag} BAD Authentication data too long"))
                                .await;
                            continue;
                        }
                        _ => return,
                    };
                    conn.log.client_secret();
                    let r = s
                        .auth_response(&tag, &line.bytes, &mut ConnSink { conn })
                        .await;
                    conn.log.set_user(s.user().map(str::to_string));
                    if r.is_err() || conn.flush().await.is_err() {
                        return;
                    }
                }
                Next::Idle(tag) => {
                    if !self.idle(conn, &mut s, &tag, &limits, idle_timeout).await {
                        return;
                    }
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
        limits: &Limits,
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
        limits: &Limits,
        idle_timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + idle_timeout;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            // Thousands of sessions may idle for hours: hold no buffer meanwhile.
            conn.shrink_buffers();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = bye(conn, "* BYE [UNAVAILABLE] Server shutting down").await;
                    return false;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let _ = bye(conn, "* BYE Autologout; idle for too long").await;
                    return false;
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
                    let ok = s.idle_updates(&mut ConnSink { conn }).await.is_ok();
                    if !ok || conn.flush().await.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

fn bad_input(listener: &'static str, reason: &'static str) {
    metrics::counter!("bulwark_imap_bad_input_total", "listener" => listener, "reason" => reason)
        .increment(1);
}

async fn reply(conn: &mut Connection, text: &str) -> std::io::Result<Next> {
    conn.log.server(text.as_bytes());
    conn.write(text.as_bytes()).await?;
    conn.write(b"\r\n").await?;
    Ok(Next::Continue)
}

async fn bye(conn: &mut Connection, text: &str) -> std::io::Result<()> {
    reply(conn, text).await?;
    conn.flush().await
}
