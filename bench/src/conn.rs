//! A client connection: TCP, optionally TLS from the first byte or after STARTTLS, with
//! buffered line and exact-length reads.
//!
//! TLS verifies the server's certificate against a CA file (the self-signed
//! certificates of Bulwark and of the reference peer) for the bench host name. Session
//! resumption is off, so every connection pays a full handshake on both servers — as
//! inbound mail from many different hosts does.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The TLS settings of a run: trust anchors and the name to check.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
}

impl Tls {
    /// Trusts the certificates in `ca_file` (PEM) and expects `name` in the server's.
    pub fn from_ca_file(ca_file: &Path, name: &str) -> anyhow::Result<Tls> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("cannot read {}", ca_file.display()))?
        {
            roots.add(c.with_context(|| format!("bad PEM in {}", ca_file.display()))?)?;
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Tls {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_string())?,
        })
    }
}

/// Anything a connection can run over (TCP or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// In-memory transport for unit tests.
    #[cfg(test)]
    Mem(tokio::io::DuplexStream),
}

impl Transport {
    fn io(self: Pin<&mut Self>) -> Pin<&mut dyn Io> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s),
            Transport::Tls(s) => Pin::new(s.as_mut()),
            #[cfg(test)]
            Transport::Mem(s) => Pin::new(s),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io().poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

/// A buffered client connection.
pub struct Conn {
    inner: BufReader<Transport>,
}

/// Longest line the clients accept from a server (IMAP FETCH lines can be long).
const MAX_LINE: usize = 1 << 20;

impl Conn {
    pub async fn connect(addr: SocketAddr, implicit_tls: Option<&Tls>) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        tcp.set_nodelay(true)?;
        let transport = match implicit_tls {
            Some(tls) => Transport::Tls(Box::new(handshake(tcp, tls).await?)),
            None => Transport::Plain(tcp),
        };
        Ok(Conn {
            inner: BufReader::with_capacity(64 * 1024, transport),
        })
    }

    #[cfg(test)]
    pub fn memory(s: tokio::io::DuplexStream) -> Conn {
        Conn {
            inner: BufReader::new(Transport::Mem(s)),
        }
    }

    /// Upgrades to TLS (after the server agreed to STARTTLS/STLS). Refuses when the
    /// server sent bytes beyond its reply: they would have been injected before TLS.
    pub async fn start_tls(self, tls: &Tls) -> anyhow::Result<Conn> {
        if !self.inner.buffer().is_empty() {
            bail!("server sent data after its STARTTLS reply");
        }
        let tcp = match self.inner.into_inner() {
            Transport::Plain(tcp) => tcp,
            _ => bail!("STARTTLS on a connection that is not plain TCP"),
        };
        Ok(Conn {
            inner: BufReader::with_capacity(
                64 * 1024,
                Transport::Tls(Box::new(handshake(tcp, tls).await?)),
            ),
        })
    }

    /// Reads one line including its CRLF (or LF); errors at EOF.
    pub async fn read_line(&mut self, line: &mut Vec<u8>) -> anyhow::Result<()> {
        line.clear();
        let n = (&mut self.inner)
            .take(MAX_LINE as u64)
            .read_until(b'\n', line)
            .await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        if !line.ends_with(b"\n") {
            bail!("server line too long or cut off");
        }
        Ok(())
    }

    /// Reads exactly `n` bytes, appending them to `buf`.
    pub async fn read_exact_append(&mut self, n: usize, buf: &mut Vec<u8>) -> anyhow::Result<()> {
        let start = buf.len();
        buf.resize(start + n, 0);
        self.inner.read_exact(&mut buf[start..]).await?;
        Ok(())
    }

    pub async fn write_all(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.inner.get_mut().write_all(data).await?;
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.inner.get_mut().flush().await?;
        Ok(())
    }

    /// Writes and flushes.
    pub async fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.write_all(data).await?;
        self.flush().await
    }
}

async fn handshake(
    tcp: TcpStream,
    tls: &Tls,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(tls.name.clone(), tcp)
        .await
        .context("TLS handshake failed")
}
