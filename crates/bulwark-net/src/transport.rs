//! A stream that is either cleartext or TLS, behind one AsyncRead/AsyncWrite. The
//! cleartext side is a TCP socket in the server and any in-memory stream
//! (`tokio::io::duplex`) in tests and harnesses, so a whole protocol shell, STARTTLS
//! included, can run without sockets (as quinn-proto's and rustls' tests do).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Any byte stream a session can run over besides a TCP socket.
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}

/// The cleartext stream under a session (and under its TLS, once TLS is up).
pub enum Plain {
    /// An accepted socket.
    Tcp(TcpStream),
    /// An in-memory stream (tests, harnesses).
    Memory(Box<dyn Stream>),
}

/// The stream a session reads and writes: cleartext, or TLS over the cleartext one.
pub enum Transport {
    /// No TLS (yet).
    Plain(Plain),
    /// TLS, from the first byte or after STARTTLS.
    Tls(Box<TlsStream<Plain>>),
}

/// Forwards a poll method to the stream inside `Plain`.
macro_rules! plain_poll {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Plain::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Plain::Memory($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        plain_poll!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        plain_poll!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        plain_poll!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Plain::Tcp(s) => s.is_write_vectored(),
            Plain::Memory(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        plain_poll!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        plain_poll!(self, s => s.poll_shutdown(cx))
    }
}

/// What was negotiated, for Received headers, logs, metrics and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// "TLSv1.3" or "TLSv1.2".
    pub version: String,
    /// IANA-style suite name, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
    /// Server name the client asked for (SNI), if any.
    pub sni: Option<String>,
}

impl TlsInfo {
    pub(crate) fn from_stream(s: &TlsStream<Plain>) -> TlsInfo {
        let (_, conn) = s.get_ref();
        let (version, cipher) = bulwark_tls::session_parameters(conn);
        TlsInfo {
            version,
            cipher,
            sni: conn.server_name().map(str::to_string),
        }
    }

    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384".
    pub fn describe(&self) -> String {
        format!("{} {}", self.version, self.cipher)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
