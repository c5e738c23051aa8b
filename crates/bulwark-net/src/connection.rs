//! One client connection: buffered, bounded reads of lines and literals, buffered
//! writes, and the transport changes (STARTTLS) a session may make.
//!
//! Reads are cancel-safe: bytes already received stay in the buffer if a read future
//! is dropped (e.g. in a `select!` with the shutdown signal or a timeout).

use std::net::SocketAddr;
use std::time::Duration;

use bulwark_config::ListenerKind;
use bulwark_observe::SessionLog;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::transport::{Plain, Stream, TlsInfo, Transport};

/// How long a TLS handshake may take before the connection is dropped.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long closing (final flush, TLS close_notify) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one flush may wait for the client to take our output, unless the protocol
/// sets its own: a client that stops reading must not hold a session (and its
/// connection slot) forever.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Buffered output is flushed when it grows beyond this.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// How a line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// CRLF, the line ending every mail protocol requires.
    CrLf,
    /// A bare LF: not allowed by the mail RFCs; protocols decide what to do about it.
    Lf,
}

/// One line without its ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line's octets, without the CR and LF that ended it.
    pub bytes: Vec<u8>,
    /// How the line ended (CRLF or a bare LF).
    pub ending: LineEnding,
}

/// Why a read from the client produced no line or data.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection (possibly in the middle of a line).
    #[error("connection closed by client")]
    Eof,
    /// The line was longer than allowed; it has been discarded up to and including
    /// its end, so the next read starts with the next line. `crlf` tells whether that
    /// discarded line ended in CRLF (SMTP's end-of-data detection needs to know).
    #[error("line too long")]
    TooLong {
        /// True when the discarded line ended in CRLF (false for a bare LF).
        crlf: bool,
    },
    /// The socket or TLS layer failed (including a reset by the peer).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One client connection as a protocol session sees it: buffered line and octet
/// reads bounded by shutdown, buffered writes with a write timeout, STARTTLS, and the
/// protocol log of the session.
pub struct Connection {
    transport: Option<Transport>,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    peer: SocketAddr,
    local: SocketAddr,
    kind: ListenerKind,
    tls: Option<TlsInfo>,
    session_id: String,
    shutdown: CancellationToken,
    write_timeout: Duration,
    /// The start of the last line `read_line` refused as too long (see
    /// `discarded_head`).
    discarded_head: Vec<u8>,
    /// The protocol log of this session (a no-op unless enabled for the listener).
    pub log: SessionLog,
}

/// Octets of a too-long line kept for `Connection::discarded_head`: enough for an IMAP
/// tag (RFC 9051 gives it no limit; ours accepts up to 64) and a command word.
const DISCARDED_HEAD: usize = 128;

impl Connection {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        transport: Transport,
        initial: BytesMut,
        peer: SocketAddr,
        local: SocketAddr,
        kind: ListenerKind,
        tls: Option<TlsInfo>,
        session_id: String,
        shutdown: CancellationToken,
        log: SessionLog,
    ) -> Connection {
        Connection {
            transport: Some(transport),
            rbuf: initial,
            wbuf: Vec::with_capacity(1024),
            peer,
            local,
            kind,
            tls,
            session_id,
            shutdown,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            discarded_head: Vec::new(),
            log,
        }
    }

    /// A connection over an in-memory stream (`tokio::io::duplex`), for tests and
    /// harnesses that drive a whole protocol shell without sockets. No TLS yet;
    /// STARTTLS works over it like over TCP.
    pub fn over_stream(
        io: impl Stream + 'static,
        kind: ListenerKind,
        peer: SocketAddr,
        local: SocketAddr,
        shutdown: CancellationToken,
        log: SessionLog,
    ) -> Connection {
        let session_id = log.session_id().to_string();
        Connection::new(
            Transport::Plain(Plain::Memory(Box::new(io))),
            BytesMut::new(),
            peer,
            local,
            kind,
            None,
            session_id,
            shutdown,
            log,
        )
    }

    /// Bounds how long a flush may wait for the client to read (default
    /// [`DEFAULT_WRITE_TIMEOUT`]); protocols set their command timeout here.
    pub fn set_write_timeout(&mut self, t: Duration) {
        self.write_timeout = t;
    }

    /// The client's address (after any PROXY protocol header).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
    /// Our socket's address (the PROXY protocol header does not change it).
    pub fn local(&self) -> SocketAddr {
        self.local
    }
    /// Which listener (protocol and port role) accepted the connection.
    pub fn kind(&self) -> ListenerKind {
        self.kind
    }
    /// The protocol log's id of this session (it ties the session's log lines together).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// TLS parameters once TLS is up (from the first byte or after STARTTLS).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }
    /// True once TLS is up (implicit TLS or after STARTTLS).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
    /// Cancelled when the server shuts down; sessions finish their current command
    /// and say goodbye in their protocol's words.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
    /// True when the client has already sent more input (pipelining): replies may
    /// stay buffered until it has been processed.
    pub fn has_buffered_input(&self) -> bool {
        !self.rbuf.is_empty()
    }

    fn transport(&mut self) -> std::io::Result<&mut Transport> {
        self.transport.as_mut().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "transport lost during TLS upgrade",
            )
        })
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.rbuf.capacity() == 0 {
            // After `shrink_buffers`: wait for the next input without holding a read
            // buffer, so a long wait (IMAP IDLE) costs no buffer memory.
            let mut small = [0u8; 512];
            let t = self.transport.as_mut().ok_or(ReadError::Eof)?;
            let n = t.read(&mut small).await?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.rbuf.extend_from_slice(&small[..n]);
            return Ok(());
        }
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        let t = self.transport.as_mut().ok_or(ReadError::Eof)?;
        let n = t.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        Ok(())
    }

    /// Gives back the read and write buffers' spare memory before a long wait for
    /// input (IMAP IDLE): thousands of idle sessions should not each keep 16 KiB+
    /// of buffers. Buffered input and output are kept; the next read allocates only
    /// what arrives, and buffers grow again as usual afterwards.
    pub fn shrink_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
    }

    /// The first octets (at most 128) of the line the last `ReadError::TooLong` discarded,
    /// so a protocol can still answer the refused command by its tag (IMAP: every
    /// command gets a tagged reply, RFC 9051 §2.2.2).
    pub fn discarded_head(&self) -> &[u8] {
        &self.discarded_head
    }

    /// Reads one line of at most `max` octets including its line ending.
    pub async fn read_line(&mut self, max: usize) -> Result<Line, ReadError> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.rbuf[scanned..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| p + scanned)
            {
                if pos + 1 > max {
                    let crlf = pos > 0 && self.rbuf[pos - 1] == b'\r';
                    self.keep_discarded_head();
                    self.rbuf.advance(pos + 1);
                    return Err(ReadError::TooLong { crlf });
                }
                let mut bytes = self.rbuf.split_to(pos + 1).to_vec();
                bytes.pop();
                let ending = if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                    LineEnding::CrLf
                } else {
                    LineEnding::Lf
                };
                return Ok(Line { bytes, ending });
            }
            scanned = self.rbuf.len();
            if self.rbuf.len() >= max {
                self.keep_discarded_head();
                let crlf = self.discard_line().await?;
                return Err(ReadError::TooLong { crlf });
            }
            self.fill().await?;
        }
    }

    fn keep_discarded_head(&mut self) {
        let n = self.rbuf.len().min(DISCARDED_HEAD);
        self.discarded_head.clear();
        self.discarded_head.extend_from_slice(&self.rbuf[..n]);
    }

    /// Drops input up to and including the next LF; returns whether a CR preceded it.
    async fn discard_line(&mut self) -> Result<bool, ReadError> {
        let mut last = None;
        loop {
            if let Some(pos) = self.rbuf.iter().position(|b| *b == b'\n') {
                let before = if pos > 0 {
                    Some(self.rbuf[pos - 1])
                } else {
                    last
                };
                self.rbuf.advance(pos + 1);
                return Ok(before == Some(b'\r'));
            }
            last = self.rbuf.last().copied().or(last);
            self.rbuf.clear();
            self.fill().await?;
        }
    }

    /// Reads exactly `n` octets (an IMAP literal, a BDAT chunk) and appends them to
    /// `out`. The caller bounds `n` before calling.
    pub async fn read_exact_into(
        &mut self,
        mut n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ReadError> {
        out.reserve(n.min(64 * 1024 * 1024));
        while n > 0 {
            if self.rbuf.is_empty() {
                self.fill().await?;
            }
            let take = n.min(self.rbuf.len());
            out.extend_from_slice(&self.rbuf[..take]);
            self.rbuf.advance(take);
            n -= take;
        }
        Ok(())
    }

    /// Reads at least one and at most `max` octets: what is already buffered, else
    /// what the next read from the socket brings. For transfers a protocol bounds per
    /// read rather than as a whole (a large BDAT chunk from a slow but steady client):
    /// each call can get its own timeout. Cancel-safe.
    pub async fn read_some(&mut self, max: usize) -> Result<BytesMut, ReadError> {
        if self.rbuf.is_empty() {
            self.fill().await?;
        }
        let take = max.min(self.rbuf.len());
        Ok(self.rbuf.split_to(take))
    }

    /// Reads and throws away exactly `n` octets (e.g. a BDAT chunk after an error).
    pub async fn skip_exact(&mut self, mut n: u64) -> Result<(), ReadError> {
        while n > 0 {
            if self.rbuf.is_empty() {
                self.fill().await?;
            }
            // An `n` beyond usize is beyond the buffer too: take all of it.
            let take = usize::try_from(n).map_or(self.rbuf.len(), |n| n.min(self.rbuf.len()));
            self.rbuf.advance(take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Queues output; it is sent at the next `flush` (or when the buffer is large).
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.wbuf.extend_from_slice(data);
        if self.wbuf.len() >= WRITE_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends queued output. Fails with `TimedOut` when the client does not take it
    /// within the write timeout.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let limit = self.write_timeout;
        let t = self.transport()?;
        let r = tokio::time::timeout(limit, async {
            t.write_all(&buf).await?;
            t.flush().await
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read our output in time",
            ))
        });
        self.wbuf = buf;
        self.wbuf.clear();
        r
    }

    /// Writes and flushes.
    pub async fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.write(data).await?;
        self.flush().await
    }

    /// Upgrades to TLS after the protocol's "go ahead" reply has been sent. Everything
    /// the client sent before the handshake is discarded (never interpreted as
    /// commands in the TLS session); returns how many octets that was.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> std::io::Result<usize> {
        if self.tls.is_some() {
            return Err(std::io::Error::other("TLS is already active"));
        }
        self.flush().await?;
        let discarded = self.rbuf.len();
        self.rbuf.clear();
        let plain = match self.transport.take() {
            Some(Transport::Plain(s)) => s,
            Some(other) => {
                self.transport = Some(other);
                return Err(std::io::Error::other("TLS is already active"));
            }
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "no transport",
                ))
            }
        };
        let listener = self.kind.name();
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await;
        let stream = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics::counter!("bulwark_tls_handshake_failures_total", "listener" => listener)
                    .increment(1);
                self.log.event(&format!("STARTTLS handshake failed: {e}"));
                return Err(e);
            }
            Err(_) => {
                metrics::counter!("bulwark_tls_handshake_failures_total", "listener" => listener)
                    .increment(1);
                self.log.event("STARTTLS handshake timed out");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
        };
        let info = TlsInfo::from_stream(&stream);
        metrics::counter!("bulwark_starttls_total", "listener" => listener).increment(1);
        metrics::counter!("bulwark_tls_handshakes_total", "listener" => listener, "version" => info.version.clone())
            .increment(1);
        self.log.set_tls(info.describe());
        if discarded > 0 {
            self.log.event(&format!(
                "TLS up ({}); discarded {discarded} octets sent before the handshake",
                info.describe()
            ));
            tracing::warn!(target: "bulwark::net", session = %self.session_id, peer = %self.peer, discarded, "client pipelined data after STARTTLS; discarded");
        } else {
            self.log.event(&format!("TLS up ({})", info.describe()));
        }
        self.tls = Some(info);
        self.transport = Some(Transport::Tls(Box::new(stream)));
        Ok(discarded)
    }

    /// Closes the connection (TLS close_notify first when TLS is up). Bounded: a
    /// client that stopped reading cannot hold the session open.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.flush()).await;
        if let Some(mut t) = self.transport.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, t.shutdown()).await;
        }
    }
}
