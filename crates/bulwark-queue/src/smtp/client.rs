//! The async shell: one connection to one address of one host, carrying one message
//! to a set of recipients of the same destination.

use std::net::SocketAddr;
use std::time::Duration;

use bulwark_observe::SessionLog;
use bulwark_wire::{DotStuffer, Enhanced, Stage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reply::{Capabilities, Reply, ReplyBuffer};
use super::stream::Stream;
use super::transaction::{plan, Step, Transaction};
use crate::downgrade::{Resigner, SevenBitCopy};
use crate::message::MessageInfo;
use crate::outcome::Outcome;
use crate::params::DeliveryParams;
use crate::route::Connector;
use crate::tls::{describe, server_name};

/// Timeouts and our name; from `[outbound]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our name in EHLO/HELO (`[outbound] helo_name`, else the host name).
    pub helo: String,
    /// Bound on the TCP connect.
    pub connect_timeout: Duration,
    /// Bound on one command and its reply, and on a TLS handshake (RFC 5321 §4.5.3.2).
    pub command_timeout: Duration,
    /// Bound on sending the message and waiting for the reply to its end (RFC 5321 §4.5.3.2.6).
    pub data_timeout: Duration,
}

/// What to deliver.
pub struct Envelope<'a> {
    /// The reverse-path for MAIL FROM (empty for `<>`).
    pub return_path: &'a str,
    /// The recipients to try at this destination, in envelope order.
    pub recipients: &'a [String],
    /// The entry's DSN parameters (RET, ENVID, NOTIFY, ORCPT; RFC 3461).
    pub params: &'a DeliveryParams,
    /// Facts about `data`: which extensions its transfer needs.
    pub info: MessageInfo,
    /// The message as queued; dot-stuffed as it is sent (`Conn::write_message`), and
    /// the source of a 7-bit copy when a next hop lacks 8BITMIME.
    pub data: &'a [u8],
    /// That copy, shared by every destination of the entry (made once).
    pub seven_bit: &'a SevenBitCopy,
    /// The domain we DKIM-signed for at submission and the signer, to sign the
    /// 7-bit copy again.
    pub resign: Option<(&'a str, &'a dyn Resigner)>,
}

impl Envelope<'_> {
    /// The message and facts to send to a server with these capabilities: the message
    /// as queued, or its 7-bit copy for a server without 8BITMIME (RFC 6152 §3).
    fn payload_for(&self, caps: &Capabilities) -> Result<(&[u8], MessageInfo), Outcome> {
        if self.info.eight_bit && !caps.eight_bit_mime {
            self.seven_bit.get_or_make(self.data, self.resign)
        } else {
            Ok((self.data, self.info))
        }
    }
}

/// The result of one connection.
#[derive(Debug)]
pub struct HostAttempt {
    /// "mx.remote.example[192.0.2.1]:25".
    pub peer: String,
    /// "TLSv1.3 TLS13_AES_256_GCM_SHA384", or None for a cleartext session.
    pub tls: Option<String>,
    /// The server announced DSN (RFC 3461): success notices are then its job.
    pub remote_dsn: bool,
    /// What the server decided, or why nothing was decided.
    pub result: HostResult,
}

/// How one connection ended for the recipients.
#[derive(Debug)]
pub enum HostResult {
    /// The server decided about each recipient (in envelope order).
    Done(Vec<Outcome>),
    /// Nothing was decided for any recipient with this server (no connection, no
    /// TLS, greeting refused, …): the outcome applies to all, and the next address or
    /// host may be tried.
    NextHost(Outcome),
}

/// Why a connection stopped working.
struct Broken(String);

struct Conn {
    stream: Option<Stream>,
    rbuf: ReplyBuffer,
    log: SessionLog,
    tls: Option<String>,
    peer: String,
    dsn: bool,
}

impl Conn {
    fn stream(&mut self) -> Result<&mut Stream, Broken> {
        self.stream
            .as_mut()
            .ok_or_else(|| Broken("connection already closed".into()))
    }

    async fn read_reply(
        &mut self,
        limit: Duration,
        waiting_for: &str,
    ) -> Result<(Reply, Vec<u8>), Broken> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match self.rbuf.next_raw() {
                Ok(Some((reply, raw))) => {
                    for line in raw.split_inclusive(|b| *b == b'\n') {
                        self.log.server(line);
                    }
                    return Ok((reply, raw));
                }
                Ok(None) => {}
                Err(e) => return Err(Broken(e.to_string())),
            }
            let mut buf = [0u8; 4096];
            let stream = self.stream()?;
            let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => {
                    return Err(Broken(format!(
                        "no reply within {}s (waiting for the reply to {waiting_for})",
                        limit.as_secs()
                    )))
                }
                Ok(Err(e)) => return Err(Broken(format!("read error: {e}"))),
                Ok(Ok(0)) => {
                    return Err(Broken(format!(
                        "connection closed by the server (waiting for the reply to {waiting_for})"
                    )))
                }
                Ok(Ok(n)) => n,
            };
            self.rbuf.push(&buf[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Broken> {
        let stream = self.stream()?;
        let w = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        written(tokio::time::timeout(limit, w).await, limit)
    }

    /// Writes `message` dot-stuffed and terminated (RFC 5321 §4.5.2), encoding it in
    /// pieces as they go out rather than holding a stuffed copy; `limit` bounds the
    /// whole message, as it bounds one write.
    async fn write_message(&mut self, message: &[u8], limit: Duration) -> Result<(), Broken> {
        let stream = self.stream()?;
        let w = async {
            let mut stuffer = DotStuffer::new();
            let mut buf = Vec::with_capacity(MESSAGE_PIECE + MESSAGE_PIECE / 32);
            let mut pieces = message.chunks(MESSAGE_PIECE).peekable();
            while let Some(piece) = pieces.next() {
                stuffer.push(piece, &mut buf);
                if pieces.peek().is_some() {
                    stream.write_all(&buf).await?;
                    buf.clear();
                }
            }
            stuffer.finish(&mut buf);
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        written(tokio::time::timeout(limit, w).await, limit)
    }

    /// Sends command lines; each goes to the protocol log through the SMTP redactor
    /// (AUTH arguments become `***`).
    async fn send(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Broken> {
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            self.log.client(line);
        }
        self.write(bytes, limit).await
    }

    /// Sends a line that is a secret as a whole (an AUTH LOGIN answer).
    async fn send_secret(&mut self, line: &str, limit: Duration) -> Result<(), Broken> {
        self.log.client_secret();
        self.write(format!("{line}\r\n").as_bytes(), limit).await
    }

    async fn command(&mut self, line: &str, limit: Duration) -> Result<(Reply, Vec<u8>), Broken> {
        self.send(format!("{line}\r\n").as_bytes(), limit).await?;
        let verb = line.split(' ').next().unwrap_or(line).to_string();
        self.read_reply(limit, &verb).await
    }

    async fn upgrade(
        &mut self,
        connector: &Connector,
        host: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err("the connection is not in cleartext".into());
        };
        let name =
            server_name(host).ok_or_else(|| format!("{host:?} is not a usable TLS server name"))?;
        let connector = tokio_rustls::TlsConnector::from(connector.tls.clone());
        let tls = match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
            Err(_) => {
                return Err(format!(
                    "TLS handshake timed out after {}s",
                    limit.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(t)) => t,
        };
        let d = describe(tls.get_ref().1);
        self.log.set_tls(d.clone());
        self.log.event(&format!("TLS established: {d}"));
        self.tls = Some(d);
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// QUIT, politely but briefly; the outcome is already decided.
    async fn quit(&mut self, limit: Duration) {
        let limit = limit.min(Duration::from_secs(10));
        if self.stream.is_some() {
            let _ = self.command("QUIT", limit).await;
        }
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(limit, s.shutdown()).await;
        }
    }
}

/// How much of the message is dot-stuffed and written at a time.
const MESSAGE_PIECE: usize = 64 * 1024;

/// A write under a timeout, as the reason a connection broke.
fn written(
    r: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
    limit: Duration,
) -> Result<(), Broken> {
    match r {
        Err(_) => Err(Broken(format!(
            "write timed out after {}s",
            limit.as_secs()
        ))),
        Ok(Err(e)) => Err(Broken(format!("write error: {e}"))),
        Ok(Ok(())) => Ok(()),
    }
}

fn peer(host: &str, addr: SocketAddr) -> String {
    format!("{host}[{}]:{}", addr.ip(), addr.port())
}

/// Delivers `env` to `host` at `addr` through `connector`.
pub async fn deliver(
    settings: &Settings,
    connector: &Connector,
    host: &str,
    addr: SocketAddr,
    env: &Envelope<'_>,
    log: SessionLog,
) -> HostAttempt {
    let peer = peer(host, addr);
    log.event(&format!(
        "connecting to {peer} (connector {}, tls {})",
        connector.name,
        connector.level.name()
    ));
    let tcp = match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            log.event(&format!("connect failed: {e}"));
            return HostAttempt {
                peer: peer.clone(),
                tls: None,
                remote_dsn: false,
                result: HostResult::NextHost(Outcome::deferred(
                    Enhanced::new(4, 4, 1),
                    format!("cannot connect to {peer}: {e}"),
                )),
            };
        }
        Err(_) => {
            log.event("connect timed out");
            return HostAttempt {
                peer: peer.clone(),
                tls: None,
                remote_dsn: false,
                result: HostResult::NextHost(Outcome::deferred(
                    Enhanced::new(4, 4, 1),
                    format!(
                        "cannot connect to {peer}: no answer within {}s",
                        settings.connect_timeout.as_secs()
                    ),
                )),
            };
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn {
        stream: Some(Stream::Plain(tcp)),
        rbuf: ReplyBuffer::default(),
        log,
        tls: None,
        peer: peer.clone(),
        dsn: false,
    };
    let result = session(&mut conn, settings, connector, host, env).await;
    conn.quit(settings.command_timeout).await;
    conn.log.event("closed");
    HostAttempt {
        peer,
        tls: conn.tls,
        remote_dsn: conn.dsn,
        result,
    }
}

async fn session(
    conn: &mut Conn,
    settings: &Settings,
    connector: &Connector,
    host: &str,
    env: &Envelope<'_>,
) -> HostResult {
    let t = settings.command_timeout;
    let next = |o: Outcome| HostResult::NextHost(o);
    let broken = |b: Broken, peer: &str| {
        HostResult::NextHost(Outcome::deferred(
            Enhanced::new(4, 4, 2),
            format!("{peer}: {}", b.0),
        ))
    };

    // Implicit TLS (port 465, RFC 8314 §3.3): TLS before the greeting.
    if connector.implicit_tls {
        if let Err(e) = conn.upgrade(connector, host, t).await {
            conn.stream = None;
            return next(Outcome::deferred(
                Enhanced::new(4, 7, 5),
                format!("TLS handshake with {} failed: {e}", conn.peer),
            ));
        }
    }

    // RFC 5321 §3.1: a server that does not greet with 220 does not want this mail
    // now; another MX may.
    let greeting = match conn.read_reply(t, Stage::Greeting.as_str()).await {
        Ok((r, _)) => r,
        Err(b) => {
            conn.stream = None;
            return broken(b, &conn.peer);
        }
    };
    if !greeting.is_positive() {
        return next(Outcome::from_reply(&greeting, Stage::Greeting));
    }

    let mut caps = match ehlo(conn, settings).await {
        Ok(c) => c,
        Err(r) => return r,
    };

    // STARTTLS (RFC 3207) whenever offered; cleartext only for `opportunistic` and
    // only when not offered.
    if conn.tls.is_none() {
        if caps.starttls {
            let r = match conn.command("STARTTLS", t).await {
                Ok((r, _)) => r,
                Err(b) => {
                    conn.stream = None;
                    return broken(b, &conn.peer);
                }
            };
            if r.code.get() != 220 {
                return next(Outcome::deferred(
                    Enhanced::new(4, 7, 0),
                    format!(
                        "{} offered STARTTLS but refused it: {}",
                        conn.peer,
                        r.one_line()
                    ),
                ));
            }
            if conn.rbuf.has_pending() {
                // RFC 3207 §6 / CVE-2011-0411 class: anything after the 220 was sent in
                // cleartext and would be read as if it came over TLS.
                conn.stream = None;
                return next(Outcome::deferred(
                    Enhanced::new(4, 7, 0),
                    format!(
                        "{} sent data after its STARTTLS reply and before the handshake; not trusting the session",
                        conn.peer
                    ),
                ));
            }
            if let Err(e) = conn.upgrade(connector, host, t).await {
                conn.stream = None;
                return next(Outcome::deferred(
                    Enhanced::new(4, 7, 5),
                    format!("TLS handshake with {} failed: {e}", conn.peer),
                ));
            }
            // RFC 3207 §4.2: forget everything learnt before TLS and ask again.
            caps = match ehlo(conn, settings).await {
                Ok(c) => c,
                Err(r) => return r,
            };
        } else if connector.level.requires_tls() {
            return next(Outcome::deferred(
                Enhanced::new(4, 7, 10),
                format!(
                    "{} does not offer STARTTLS, and connector {:?} requires TLS ({})",
                    conn.peer,
                    connector.name,
                    connector.level.name()
                ),
            ));
        } else {
            conn.log
                .event("STARTTLS not offered: continuing in cleartext (opportunistic)");
        }
    }

    conn.dsn = caps.dsn;
    if let Some(r) = authenticate(conn, connector, &caps, t).await {
        return r;
    }

    transactions(conn, settings, &caps, env).await
}

/// EHLO, falling back to HELO when the server does not know EHLO (RFC 5321 §3.2).
async fn ehlo(conn: &mut Conn, settings: &Settings) -> Result<Capabilities, HostResult> {
    let t = settings.command_timeout;
    let (r, raw) = conn
        .command(&format!("EHLO {}", settings.helo), t)
        .await
        .map_err(|b| {
            HostResult::NextHost(Outcome::deferred(
                Enhanced::new(4, 4, 2),
                format!("{}: {}", conn.peer, b.0),
            ))
        })?;
    if r.is_positive() {
        return Capabilities::from_ehlo(&raw).map_err(|e| {
            HostResult::NextHost(Outcome::deferred(
                Enhanced::new(4, 5, 0),
                format!("{}: {e}", conn.peer),
            ))
        });
    }
    if !r.is_permanent() {
        return Err(HostResult::NextHost(Outcome::from_reply(&r, Stage::Ehlo)));
    }
    let (h, _) = conn
        .command(&format!("HELO {}", settings.helo), t)
        .await
        .map_err(|b| {
            HostResult::NextHost(Outcome::deferred(
                Enhanced::new(4, 4, 2),
                format!("{}: {}", conn.peer, b.0),
            ))
        })?;
    if !h.is_positive() {
        return Err(HostResult::NextHost(Outcome::from_reply(&h, Stage::Helo)));
    }
    Ok(Capabilities::default())
}

/// SASL for connectors with credentials: only over TLS (DATA-PATHS rule 1), PLAIN
/// (RFC 4616) when offered, else LOGIN. Every failure defers: a wrong password or a
/// smart host without AUTH is a configuration problem, not a reason to bounce mail.
async fn authenticate(
    conn: &mut Conn,
    connector: &Connector,
    caps: &Capabilities,
    t: Duration,
) -> Option<HostResult> {
    let creds = match connector.credentials() {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            return Some(HostResult::NextHost(Outcome::deferred(
                Enhanced::new(4, 7, 0),
                format!("connector {:?}: {e}", connector.name),
            )))
        }
    };
    let deferred = |text: String| {
        Some(HostResult::NextHost(Outcome::deferred(
            Enhanced::new(4, 7, 0),
            text,
        )))
    };
    if conn.tls.is_none() {
        // Unreachable with a valid configuration (credentials need tls >= required);
        // checked here too so no path can send a password in cleartext.
        return deferred(format!(
            "refusing to send credentials to {} without TLS",
            conn.peer
        ));
    }
    let reply = if caps.auth_plain {
        let line = format!("AUTH PLAIN {}\r\n", creds.plain_response());
        if let Err(b) = conn.send(line.as_bytes(), t).await {
            return deferred(b.0);
        }
        conn.read_reply(t, Stage::Auth.as_str()).await
    } else if caps.auth_login {
        let (user, pass) = creds.login_responses();
        async {
            let (r, _) = conn.command("AUTH LOGIN", t).await?;
            if r.code.get() != 334 {
                return Ok((r, Vec::new()));
            }
            conn.send_secret(&user, t).await?;
            let (r, raw) = conn.read_reply(t, "AUTH LOGIN").await?;
            if r.code.get() != 334 {
                return Ok((r, raw));
            }
            conn.send_secret(&pass, t).await?;
            conn.read_reply(t, "AUTH LOGIN").await
        }
        .await
    } else {
        return deferred(format!(
            "{} offers neither AUTH PLAIN nor AUTH LOGIN; connector {:?} has credentials",
            conn.peer, connector.name
        ));
    };
    match reply {
        Err(b) => deferred(format!("{}: {}", conn.peer, b.0)),
        Ok((r, _)) if r.code.get() == 235 => {
            conn.log.set_user(Some(creds.user.clone()));
            conn.log.event("authenticated");
            None
        }
        Ok((r, _)) => Some(HostResult::NextHost(Outcome::deferred(
            Enhanced::new(4, 7, 8),
            format!("authentication at {} failed: {}", conn.peer, r.one_line()),
        ))),
    }
}

async fn transactions(
    conn: &mut Conn,
    settings: &Settings,
    caps: &Capabilities,
    env: &Envelope<'_>,
) -> HostResult {
    let (message, info) = match env.payload_for(caps) {
        Ok(p) => p,
        Err(o) => return HostResult::NextHost(o),
    };
    if info.size != env.info.size {
        conn.log.event(&format!(
            "no 8BITMIME: sending the message converted to 7-bit MIME ({} octets)",
            info.size
        ));
    }
    let n = env.recipients.len();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut first = true;
    loop {
        let rcpts: Vec<String> = remaining
            .iter()
            .map(|i| env.recipients[*i].clone())
            .collect();
        let p = match plan(caps, env.return_path, &rcpts, &info, env.params) {
            Ok(p) => p,
            Err(o) => return HostResult::NextHost(o),
        };
        let mut tx = Transaction::new(p, caps.pipelining);
        let run = async {
            let start = tx.start();
            conn.send(&start, settings.command_timeout).await?;
            loop {
                let (limit, what) = if tx.awaiting_end() {
                    (settings.data_timeout, Stage::EndOfData.as_str())
                } else {
                    (settings.command_timeout, "command")
                };
                let (r, _) = conn.read_reply(limit, what).await?;
                match tx.on_reply(r) {
                    Step::Read => {}
                    Step::Send(b) => conn.send(&b, settings.command_timeout).await?,
                    Step::SendMessage => {
                        conn.log.event(&format!(
                            "<{} octets of message data>",
                            DotStuffer::encoded_len(message)
                        ));
                        tx.mark_message_sent();
                        conn.write_message(message, settings.data_timeout).await?;
                    }
                    Step::Done => return Ok::<(), Broken>(()),
                }
            }
        };
        if let Err(b) = run.await {
            conn.stream = None;
            let reason = format!("{}: {}", conn.peer, b.0);
            if first && !tx.has_recipient_replies() && !tx.message_sent() {
                return HostResult::NextHost(Outcome::deferred(Enhanced::new(4, 4, 2), reason));
            }
            for (j, o) in tx.abort(&reason).into_iter().enumerate() {
                outcomes[remaining[j]] = Some(o);
            }
            break;
        }
        let resend = tx.resend_now();
        for (j, o) in tx.outcomes().into_iter().enumerate() {
            if !resend.contains(&j) {
                outcomes[remaining[j]] = Some(o);
            }
        }
        if resend.is_empty() {
            break;
        }
        remaining = resend.into_iter().map(|j| remaining[j]).collect();
        first = false;
    }
    HostResult::Done(
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::deferred(Enhanced::new(4, 4, 2), "no outcome")))
            .collect(),
    )
}
