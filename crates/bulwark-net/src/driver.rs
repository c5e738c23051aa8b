//! The session driver: what every protocol shell does around its sans-I/O core, in
//! one place. Reading the next line under the idle timeout, the session deadline and
//! the shutdown signal ([`Bounds`], [`Input`]); logging that line as a secret when
//! the protocol says it is one (SASL responses, [`LineLog`]); flushing replies once
//! per pipelined batch (RFC 2920 §3.2, RFC 2449 §6.6, RFC 9051 §5.5); telling a
//! client that stopped reading from one that went away ([`WriteFailure`]). STARTTLS
//! with discard and the bounded close are `Connection::start_tls` and
//! `Connection::close`.
//!
//! These are methods on [`Connection`] rather than a wrapper type, so a shell keeps
//! one value for its connection and the protocol state machines stay free of I/O.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::{Connection, Line, ReadError};

/// Protocol errors (refused or malformed commands) one session may make before it is
/// closed, in every protocol without a configured limit of its own (POP3, IMAP; SMTP
/// has `[smtp] max_errors`): a client that keeps failing is broken or probing, and
/// the brute-force limiter handles password guessing itself.
pub const MAX_SESSION_ERRORS: u32 = 20;

/// Why a bounded read gave up before its input arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// Nothing came within the idle (per-command) timeout.
    IdleTimeout,
    /// The session's deadline passed.
    Deadline,
    /// The server is shutting down.
    Shutdown,
}

/// The limits one read runs under. Any of them may be absent.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// How long the read may wait from when it starts.
    pub idle: Option<Duration>,
    /// When the session (or its phase, such as IMAP's login) must end.
    pub deadline: Option<Instant>,
    /// Cancelled on server shutdown.
    pub shutdown: Option<CancellationToken>,
}

impl Bounds {
    /// A read that may wait `idle` from when it starts.
    pub fn idle(idle: Duration) -> Bounds {
        Bounds {
            idle: Some(idle),
            ..Bounds::default()
        }
    }

    /// A read that must end by `deadline`.
    pub fn until(deadline: Instant) -> Bounds {
        Bounds {
            deadline: Some(deadline),
            ..Bounds::default()
        }
    }

    /// These bounds, ending also at `deadline`.
    pub fn and_until(mut self, deadline: Instant) -> Bounds {
        self.deadline = Some(deadline);
        self
    }

    /// These bounds, interrupted also by `shutdown`.
    pub fn or_shutdown(mut self, shutdown: &CancellationToken) -> Bounds {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// The time limit that comes first for a read starting at `now`, and which one it
    /// is (the idle timeout when both fall at the same instant).
    pub fn first_limit(&self, now: Instant) -> Option<(Instant, Interrupt)> {
        // A timeout too large to add to the clock (a configured "never") is no limit,
        // as tokio::time::timeout treats it, rather than a panic.
        let idle = self
            .idle
            .and_then(|d| now.checked_add(d))
            .map(|at| (at, Interrupt::IdleTimeout));
        let deadline = self.deadline.map(|d| (d, Interrupt::Deadline));
        match (idle, deadline) {
            (Some(i), Some(d)) => Some(if d.0 < i.0 { d } else { i }),
            (i, d) => i.or(d),
        }
    }

    /// Runs `read` under these bounds. Input that is ready wins over a shutdown that
    /// is also ready, so already pipelined commands are answered first.
    pub async fn run<F: Future>(&self, read: F) -> Result<F::Output, Interrupt> {
        let limit = self.first_limit(Instant::now());
        let timed = async {
            match limit {
                Some((at, why)) => tokio::time::timeout_at(at, read).await.map_err(|_| why),
                None => Ok(read.await),
            }
        };
        match &self.shutdown {
            Some(token) => tokio::select! {
                biased;
                r = timed => r,
                _ = token.cancelled() => Err(Interrupt::Shutdown),
            },
            None => timed.await,
        }
    }
}

/// How the read of the next line ended.
#[derive(Debug)]
pub enum Input {
    /// A line, without its ending.
    Line(Line),
    /// A line longer than allowed, discarded; whether it ended in CRLF.
    TooLong {
        /// The discarded line ended in CRLF.
        crlf: bool,
    },
    /// The client closed the connection.
    Closed,
    /// The connection failed.
    Failed(std::io::Error),
    /// Nothing came within the idle timeout.
    IdleTimeout,
    /// The session deadline passed.
    Deadline,
    /// The server is shutting down.
    Shutdown,
}

impl From<Interrupt> for Input {
    fn from(i: Interrupt) -> Input {
        match i {
            Interrupt::IdleTimeout => Input::IdleTimeout,
            Interrupt::Deadline => Input::Deadline,
            Interrupt::Shutdown => Input::Shutdown,
        }
    }
}

impl Input {
    /// True for the idle timeout and the deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Input::IdleTimeout | Input::Deadline)
    }
}

/// How a line read by [`Connection::next_line`] goes to the protocol log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineLog {
    /// As sent.
    Client,
    /// As `***` (credentials: SASL responses, a LOGIN's password).
    Secret,
    /// Not at all (message bodies).
    Silent,
}

/// Why a reply could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailure {
    /// The client did not take our output within the write timeout: it may be trying
    /// to hold its session (and connection slot) open.
    TimedOut,
    /// The connection is gone.
    Gone,
}

impl WriteFailure {
    /// Classifies an error of `Connection::flush`/`write`/`send`.
    pub fn of(e: &std::io::Error) -> WriteFailure {
        if e.kind() == std::io::ErrorKind::TimedOut {
            WriteFailure::TimedOut
        } else {
            WriteFailure::Gone
        }
    }
}

impl Connection {
    /// Reads the next line of at most `max` octets (ending included) under `bounds`
    /// and logs it as `log` decides from its content. Overlong lines, timeouts and
    /// closes are not logged here: each protocol words them itself.
    pub async fn next_line(
        &mut self,
        max: usize,
        bounds: &Bounds,
        log: impl FnOnce(&[u8]) -> LineLog,
    ) -> Input {
        match bounds.run(self.read_line(max)).await {
            Err(i) => i.into(),
            Ok(Ok(line)) => {
                match log(&line.bytes) {
                    LineLog::Client => self.log.client(&line.bytes),
                    LineLog::Secret => self.log.client_secret(),
                    LineLog::Silent => {}
                }
                Input::Line(line)
            }
            Ok(Err(ReadError::TooLong { crlf })) => Input::TooLong { crlf },
            Ok(Err(ReadError::Eof)) => Input::Closed,
            Ok(Err(ReadError::Io(e))) => Input::Failed(e),
        }
    }

    /// Sends buffered replies unless the client has already sent more input: replies
    /// to a pipelined batch go out together, once it has been processed.
    pub async fn flush_unless_pipelined(&mut self) -> std::io::Result<()> {
        if self.has_buffered_input() {
            return Ok(());
        }
        self.flush().await
    }

    /// Queues one server line (`line` without its CRLF) and logs it.
    pub async fn reply_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.log.server(line);
        self.write(line).await?;
        self.write(b"\r\n").await
    }
}

#[cfg(test)]
mod tests;
