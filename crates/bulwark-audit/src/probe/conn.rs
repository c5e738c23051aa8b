//! A probe's connection: cleartext or TLS, line-oriented, every step under a timeout
//! and every read bounded, so a misbehaving or hostile listener cannot hang or flood
//! the audit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_tls::rustls;
use bulwark_tls::tokio_rustls::client::TlsStream;
use bulwark_tls::tokio_rustls::TlsConnector;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Each network step (connect, a reply, a handshake) must finish within this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest reply line read.
const MAX_LINE: usize = 8 * 1024;

/// Why a probe step failed; recorded in `Observed::errors`, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The TCP connection was refused or failed.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// A step took longer than `STEP_TIMEOUT`; says which step.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The server closed the connection; says when.
    #[error("connection closed {0}")]
    Closed(&'static str),
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed (including a refused version).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// A reply that does not fit the protocol.
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
    /// A reply line longer than 8 KiB.
    #[error("reply line too long")]
    TooLong,
}

/// A probe's connection, before or after TLS, reading replies line by line.
pub enum ProbeConn {
    /// Cleartext TCP.
    Plain(BufReader<TcpStream>),
    /// TLS over TCP (implicit or after STARTTLS).
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
}

async fn timed<T>(
    what: &'static str,
    f: impl std::future::Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| ProbeError::Timeout(what))?
}

/// Connects to `addr` within `STEP_TIMEOUT`.
pub async fn connect_tcp(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    timed("connecting", async {
        TcpStream::connect(addr).await.map_err(ProbeError::Connect)
    })
    .await
}

/// TLS handshake over `tcp` with `config`, naming `server_name` (SNI).
pub async fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<TlsStream<TcpStream>, ProbeError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| ProbeError::Handshake(format!("bad server name: {e}")))?;
    timed("in the TLS handshake", async {
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ProbeError::Handshake(e.to_string()))
    })
    .await
}

async fn read_line_bounded<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<String, ProbeError> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Err(ProbeError::Closed("before a reply"));
    }
    if buf.len() > MAX_LINE {
        return Err(ProbeError::TooLong);
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

impl ProbeConn {
    /// A cleartext connection over `tcp`.
    pub fn plain(tcp: TcpStream) -> ProbeConn {
        ProbeConn::Plain(BufReader::new(tcp))
    }

    /// A connection over an established TLS stream.
    pub fn tls(stream: TlsStream<TcpStream>) -> ProbeConn {
        ProbeConn::Tls(Box::new(BufReader::new(stream)))
    }

    /// Whether TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self, ProbeConn::Tls(_))
    }

    /// The TLS session, when there is one.
    pub fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match self {
            ProbeConn::Tls(s) => Some(s.get_ref().get_ref().1),
            ProbeConn::Plain(_) => None,
        }
    }

    /// One reply line without its CRLF (lossy UTF-8), within `STEP_TIMEOUT`.
    pub async fn read_line(&mut self) -> Result<String, ProbeError> {
        timed("waiting for a reply", async {
            match self {
                ProbeConn::Plain(r) => read_line_bounded(r).await,
                ProbeConn::Tls(r) => read_line_bounded(r.as_mut()).await,
            }
        })
        .await
    }

    /// Sends `data` and flushes it, within `STEP_TIMEOUT`.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), ProbeError> {
        timed("sending", async {
            match self {
                ProbeConn::Plain(r) => {
                    r.get_mut().write_all(data).await?;
                    r.get_mut().flush().await?;
                }
                ProbeConn::Tls(r) => {
                    r.get_mut().write_all(data).await?;
                    r.get_mut().flush().await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Sends `line` followed by CRLF.
    pub async fn send_line(&mut self, line: &str) -> Result<(), ProbeError> {
        self.send(format!("{line}\r\n").as_bytes()).await
    }

    /// Gives back the TCP stream for a STARTTLS handshake. Bytes the server sent after
    /// its "go ahead" would be an injection attempt; they are dropped, as a careful
    /// client must.
    pub fn into_tcp(self) -> Result<TcpStream, ProbeError> {
        match self {
            ProbeConn::Plain(r) => Ok(r.into_inner()),
            ProbeConn::Tls(_) => Err(ProbeError::Unexpected("TLS is already up".into())),
        }
    }

    /// Reads everything until the server closes (bounded), e.g. an HTTP response.
    pub async fn read_to_close(&mut self, limit: usize) -> Result<Vec<u8>, ProbeError> {
        timed("reading the response", async {
            let mut out = Vec::new();
            match self {
                ProbeConn::Plain(r) => (&mut *r).take(limit as u64).read_to_end(&mut out).await,
                ProbeConn::Tls(r) => {
                    // A peer that closes without close_notify is still a complete
                    // response for our purpose.
                    match (&mut **r).take(limit as u64).read_to_end(&mut out).await {
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                        other => other,
                    }
                }
            }?;
            Ok(out)
        })
        .await
    }
}
