//! A scriptable SMTP receiver on loopback: the remote end of outbound tests. It can
//! offer STARTTLS or not, present any certificate, offer AUTH (even in cleartext, to
//! catch a client that would use it), answer chosen replies per recipient, hold the
//! reply to the data, and records everything the client sent.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How the sink behaves; changeable while it runs.
#[derive(Clone)]
pub struct Behaviour {
    pub name: String,
    pub starttls: bool,
    /// The certificate presented after STARTTLS.
    pub tls: Option<TlsAcceptor>,
    /// Offer AUTH PLAIN LOGIN (also before TLS: a correct client must not use it).
    pub auth: bool,
    pub pipelining: bool,
    pub eight_bit: bool,
    pub dsn: bool,
    /// Replies per recipient address, used in order; afterwards (or for others)
    /// `default_rcpt`.
    pub rcpt_replies: HashMap<String, VecDeque<String>>,
    pub default_rcpt: String,
    pub data_reply: String,
}

impl Behaviour {
    pub fn new(name: &str) -> Behaviour {
        Behaviour {
            name: name.to_string(),
            starttls: false,
            tls: None,
            auth: false,
            pipelining: true,
            eight_bit: true,
            dsn: false,
            rcpt_replies: HashMap::new(),
            default_rcpt: "250 2.1.5 ok".into(),
            data_reply: "250 2.0.0 queued".into(),
        }
    }

    pub fn with_tls(mut self, acceptor: TlsAcceptor) -> Behaviour {
        self.starttls = true;
        self.tls = Some(acceptor);
        self
    }

    pub fn rcpt(mut self, addr: &str, replies: &[&str]) -> Behaviour {
        self.rcpt_replies.insert(
            addr.to_string(),
            replies.iter().map(|s| s.to_string()).collect(),
        );
        self
    }
}

/// One SMTP session as the sink saw it.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// Every line the client sent, with "[tls] " in front once TLS was up.
    pub lines: Vec<String>,
    pub tls: Option<String>,
    pub tls_failed: bool,
    /// AUTH seen while the session was in cleartext.
    pub auth_in_clear: bool,
    /// Decoded (user, password) from AUTH PLAIN or LOGIN.
    pub auth: Option<(String, String)>,
    pub mail_from: Option<String>,
    pub rcpts: Vec<String>,
    pub data: Option<Vec<u8>>,
    /// The data was acknowledged with a 2xx reply that was written successfully.
    pub completed: bool,
}

struct State {
    behaviour: Behaviour,
    sessions: Vec<Session>,
}

pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    hold: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    pub async fn start(behaviour: Behaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            sessions: Vec::new(),
        }));
        let (hold, _) = watch::channel(false);
        let (st, h) = (state.clone(), hold.clone());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (st, rx) = (st.clone(), h.subscribe());
                tokio::spawn(async move {
                    let idx = {
                        let mut g = st.lock();
                        g.sessions.push(Session::default());
                        g.sessions.len() - 1
                    };
                    let _ = serve(s, st, idx, rx).await;
                });
            }
        });
        Sink {
            addr,
            state,
            hold,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().behaviour);
    }

    /// While held, the reply to the message data is not sent.
    pub fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }

    pub fn sessions(&self) -> Vec<Session> {
        self.state.lock().sessions.clone()
    }

    /// Messages received (data complete), acknowledged or not.
    pub fn received(&self) -> Vec<Session> {
        self.sessions()
            .into_iter()
            .filter(|s| s.data.is_some())
            .collect()
    }

    pub fn completed(&self) -> Vec<Session> {
        self.sessions()
            .into_iter()
            .filter(|s| s.completed)
            .collect()
    }

    /// Polls until `f` holds for the sessions, or panics with them after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, f: impl Fn(&[Session]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.sessions();
            if f(&s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sink {}: timed out waiting for {what}; sessions: {s:#?}",
                self.state.lock().behaviour.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve(
    tcp: tokio::net::TcpStream,
    st: Arc<Mutex<State>>,
    idx: usize,
    mut hold: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let name = st.lock().behaviour.name.clone();
    let mut io: BufReader<Box<dyn Io>> = BufReader::new(Box::new(tcp));
    let mut is_tls = false;
    io.get_mut()
        .write_all(format!("220 {name} ESMTP test sink\r\n").as_bytes())
        .await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut accepted = 0usize;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        {
            let mut g = st.lock();
            let s = &mut g.sessions[idx];
            s.lines
                .push(format!("{}{cmd}", if is_tls { "[tls] " } else { "" }));
        }
        let b = st.lock().behaviour.clone();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = vec![name.clone()];
            if b.pipelining {
                r.push("PIPELINING".into());
            }
            r.push("SIZE 10000000".into());
            if b.eight_bit {
                r.push("8BITMIME".into());
            }
            if b.dsn {
                r.push("DSN".into());
            }
            if b.starttls && !is_tls {
                r.push("STARTTLS".into());
            }
            if b.auth {
                r.push("AUTH PLAIN LOGIN".into());
            }
            r.push("ENHANCEDSTATUSCODES".into());
            let n = r.len();
            r.iter()
                .enumerate()
                .map(|(i, x)| format!("250{}{x}\r\n", if i + 1 == n { ' ' } else { '-' }))
                .collect()
        } else if upper.starts_with("HELO") {
            format!("250 {name}\r\n")
        } else if upper == "STARTTLS" {
            let Some(acceptor) = b.tls.clone().filter(|_| b.starttls && !is_tls) else {
                io.get_mut()
                    .write_all(b"454 4.7.0 TLS not available\r\n")
                    .await?;
                continue;
            };
            io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
            io.get_mut().flush().await?;
            // The client must not have sent anything after STARTTLS.
            let leftover = io.buffer().len();
            match acceptor.accept(TcpIo(io.into_inner())).await {
                Ok(t) => {
                    let (_, conn) = t.get_ref();
                    let v = match conn.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                        _ => "other",
                    };
                    st.lock().sessions[idx].tls = Some(v.to_string());
                    if leftover > 0 {
                        st.lock().sessions[idx]
                            .lines
                            .push("!! data pipelined after STARTTLS".into());
                    }
                    is_tls = true;
                    io = BufReader::new(Box::new(t));
                    continue;
                }
                Err(_) => {
                    st.lock().sessions[idx].tls_failed = true;
                    return Ok(());
                }
            }
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd.split_whitespace().nth(2).unwrap_or("");
            let raw = b64.decode(arg).unwrap_or_default();
            let parts: Vec<String> = raw
                .split(|c| *c == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            let mut g = st.lock();
            let s = &mut g.sessions[idx];
            s.auth_in_clear |= !is_tls;
            if parts.len() == 3 {
                s.auth = Some((parts[1].clone(), parts[2].clone()));
            }
            "235 2.7.0 ok\r\n".into()
        } else if upper.starts_with("AUTH LOGIN") {
            st.lock().sessions[idx].auth_in_clear |= !is_tls;
            io.get_mut().write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            let mut u = String::new();
            io.read_line(&mut u).await?;
            io.get_mut().write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let mut p = String::new();
            io.read_line(&mut p).await?;
            let dec = |s: &str| {
                String::from_utf8_lossy(&b64.decode(s.trim()).unwrap_or_default()).into_owned()
            };
            st.lock().sessions[idx].auth = Some((dec(&u), dec(&p)));
            "235 2.7.0 ok\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            let addr = cmd[10..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            st.lock().sessions[idx].mail_from = Some(addr);
            accepted = 0;
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_matches(['<', '>'])
                .to_string();
            let r = {
                let mut g = st.lock();
                let r = g
                    .behaviour
                    .rcpt_replies
                    .get_mut(&addr)
                    .and_then(|q| q.pop_front())
                    .unwrap_or_else(|| g.behaviour.default_rcpt.clone());
                if r.starts_with('2') {
                    g.sessions[idx].rcpts.push(addr);
                }
                r
            };
            if r.starts_with('2') {
                accepted += 1;
            }
            format!("{r}\r\n")
        } else if upper == "DATA" {
            if accepted == 0 {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                io.get_mut().write_all(b"354 go ahead\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if io.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.starts_with(b"..") {
                        l.remove(0);
                    }
                    data.extend_from_slice(&l);
                }
                st.lock().sessions[idx].data = Some(data);
                // Held: wait until released (the client may be killed meanwhile).
                let _ = hold.wait_for(|h| !*h).await;
                let r = b.data_reply.clone();
                io.get_mut()
                    .write_all(format!("{r}\r\n").as_bytes())
                    .await?;
                io.get_mut().flush().await?;
                if r.starts_with('2') {
                    st.lock().sessions[idx].completed = true;
                }
                continue;
            }
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "500 5.5.2 unknown command\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
        io.get_mut().flush().await?;
    }
}

/// Lets a boxed stream be handed to the TLS acceptor.
struct TcpIo(Box<dyn Io>);

impl AsyncRead for TcpIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A TLS acceptor presenting a new self-signed certificate for `name`; returns it
/// with the certificate's SHA-256 fingerprint.
pub fn acceptor_for(name: &str, dir: &std::path::Path) -> (TlsAcceptor, String) {
    let g = bulwark_tls::generate_self_signed(name, 30).unwrap();
    let n = rand_suffix();
    let (c, k) = (
        dir.join(format!("sink-{n}.pem")),
        dir.join(format!("sink-{n}.key")),
    );
    bulwark_tls::write_key_and_cert(&k, &g.key_pem, &c, &g.cert_pem).unwrap();
    let server = bulwark_tls::TlsServer::new(&c, &k, bulwark_config::TlsVersion::V1_2).unwrap();
    let fp = bulwark_tls::CertInfo::from_pem(g.cert_pem.as_bytes())
        .unwrap()
        .sha256;
    (server.acceptor().clone(), fp)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
