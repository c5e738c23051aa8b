//! Binding listeners and running their accept loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_config::{ListenerConfig, ListenerKind, TlsMode};
use bulwark_observe::ProtocolLog;
use bulwark_tls::TlsServer;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::HANDSHAKE_TIMEOUT;
use crate::limits::{ConnectionLimits, ConnectionSlots};
use crate::transport::{Plain, TlsInfo, Transport};
use crate::{new_session_id, proxy, Connection, Refusal};

/// A PROXY header must arrive this quickly.
const PROXY_TIMEOUT: Duration = Duration::from_secs(10);

/// A protocol: runs sessions on connections the listener admitted.
#[async_trait]
pub trait SessionHandler: Send + Sync + 'static {
    /// Runs one session until it ends. On implicit-TLS listeners TLS is already up.
    async fn run(&self, conn: Connection);

    /// The protocol's "busy, try later" line (e.g. `421 4.7.0 … \r\n`), sent in the
    /// clear before closing when a connection limit is reached on a cleartext-greeting
    /// listener. Implicit-TLS listeners just close: a handshake would cost more than
    /// the refusal is worth under a connection flood.
    fn busy_reply(&self) -> &'static [u8];
}

/// Sockets bound for one listener, not yet accepting.
pub struct BoundListener {
    /// The listener's protocol and port role.
    pub kind: ListenerKind,
    /// Its section of the configuration file.
    pub config: ListenerConfig,
    sockets: Vec<TcpListener>,
    implicit_tls: bool,
    slots: Option<ConnectionSlots>,
}

/// Binds every address of a listener. Port 0 lets the OS choose.
pub async fn bind(kind: ListenerKind, config: &ListenerConfig) -> std::io::Result<BoundListener> {
    let mut sockets = Vec::with_capacity(config.bind.len());
    for addr in &config.bind {
        let l = listen(*addr).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("listeners.{kind}: cannot bind {addr}: {e}"),
            )
        })?;
        sockets.push(l);
    }
    Ok(BoundListener {
        kind,
        config: config.clone(),
        sockets,
        implicit_tls: kind.tls_mode() == TlsMode::Implicit,
        slots: None,
    })
}

/// A listening socket. IPv6 sockets are IPv6-only, so `0.0.0.0:25` and `[::]:25` can
/// both be bound (Linux's default dual-stack sockets would make the second fail), and
/// an IPv4 client never appears as an IPv4-mapped IPv6 address that CIDR rules miss.
/// An IPv4-mapped IPv6 address (`[::ffff:192.0.2.1]`) is bound as the IPv4 address it
/// means.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

struct Shared {
    kind: ListenerKind,
    config: ListenerConfig,
    handler: Arc<dyn SessionHandler>,
    tls: TlsServer,
    log: ProtocolLog,
    limits: ConnectionLimits,
    slots: Option<ConnectionSlots>,
    shutdown: CancellationToken,
    implicit_tls: bool,
}

impl BoundListener {
    /// The addresses actually bound (with OS-chosen ports resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// Completes a TLS handshake (with the mail acceptor: no ALPN) on every connection
    /// before the handler sees it, whatever the kind's own TLS mode. For listeners
    /// whose TLS depends on where they are bound: metrics is HTTPS beyond loopback.
    pub fn with_implicit_tls(mut self) -> Self {
        self.implicit_tls = true;
        self
    }

    /// Makes every connection take one of the process's shared slots first (see
    /// [`ConnectionSlots`]); without it only the listener's own limits apply.
    pub fn with_slots(mut self, slots: ConnectionSlots) -> Self {
        self.slots = Some(slots);
        self
    }

    /// True when connections get TLS from the first byte.
    pub fn implicit_tls(&self) -> bool {
        self.implicit_tls
    }

    /// Starts accepting. Accept loops and sessions are spawned on `tracker`; accept
    /// loops end when `shutdown` is cancelled, sessions notice it themselves.
    pub fn serve(
        self,
        handler: Arc<dyn SessionHandler>,
        tls: TlsServer,
        log: ProtocolLog,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) {
        let shared = Arc::new(Shared {
            kind: self.kind,
            limits: ConnectionLimits::new(
                self.config.max_connections,
                self.config.max_connections_per_ip,
            ),
            config: self.config,
            slots: self.slots,
            handler,
            tls,
            log,
            shutdown,
            implicit_tls: self.implicit_tls,
        });
        for socket in self.sockets {
            let shared = shared.clone();
            let t = tracker.clone();
            tracker.spawn(accept_loop(socket, shared, t));
        }
    }
}

async fn accept_loop(socket: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = socket.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                metrics::counter!("bulwark_connections_total", "listener" => shared.kind.name())
                    .increment(1);
                let shared = shared.clone();
                tracker.spawn(handle(stream, peer, shared));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(target: "bulwark::net", listener = %shared.kind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let listener = shared.kind.name();
    // An IPv4 client reaching an IPv6 socket (e.g. through a proxy's mapped address) is
    // handled as the IPv4 address it is, so policy networks, limits and logs match.
    let mut peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    if shared
        .config
        .proxy_protocol_from
        .iter()
        .any(|n| n.contains(&peer.ip()))
    {
        match tokio::time::timeout(PROXY_TIMEOUT, proxy::read_header(&mut stream)).await {
            Ok(Ok(Some(real))) => peer = real,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "bulwark::net", listener, %peer, error = %e, "bad PROXY header; closing");
                return;
            }
            Err(_) => {
                tracing::warn!(target: "bulwark::net", listener, %peer, "no PROXY header in time; closing");
                return;
            }
        }
    }
    let slot = match &shared.slots {
        None => None,
        Some(slots) => match slots.take(uses_reserve(shared.kind)) {
            Some(p) => Some(p),
            None => {
                if slots.should_log() {
                    tracing::warn!(target: "bulwark::net", listener, %peer, used = slots.used(), slots = slots.total(), reserve = slots.reserve(), "connection cap reached: the open-file limit's connection slots are taken; refusing new connections (logged at most every 10 s)");
                }
                refuse(&mut stream, &shared, Refusal::Descriptors).await;
                return;
            }
        },
    };
    let permit = match shared.limits.admit(peer.ip()) {
        Ok(p) => p,
        Err(why) => {
            tracing::info!(target: "bulwark::net", listener, %peer, reason = why.label(), "connection limit reached");
            refuse(&mut stream, &shared, why).await;
            return;
        }
    };
    let session_id = new_session_id();
    let mut log = shared.log.session(&session_id, peer);
    log.event(&format!("connect from {peer} to {local}"));

    let (transport, tls) = if shared.implicit_tls {
        let acceptor = if shared.kind == ListenerKind::Https {
            shared.tls.https_acceptor()
        } else {
            shared.tls.acceptor()
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(Plain::Tcp(stream))).await {
            Ok(Ok(s)) => {
                let info = TlsInfo::from_stream(&s);
                metrics::counter!("bulwark_tls_handshakes_total", "listener" => listener, "version" => info.version.clone())
                    .increment(1);
                log.set_tls(info.describe());
                log.event(&format!("TLS up ({})", info.describe()));
                (Transport::Tls(Box::new(s)), Some(info))
            }
            Ok(Err(e)) => {
                metrics::counter!("bulwark_tls_handshake_failures_total", "listener" => listener)
                    .increment(1);
                log.event(&format!("TLS handshake failed: {e}"));
                tracing::debug!(target: "bulwark::net", listener, %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!("bulwark_tls_handshake_failures_total", "listener" => listener)
                    .increment(1);
                log.event("TLS handshake timed out");
                return;
            }
        }
    } else {
        (Transport::Plain(Plain::Tcp(stream)), None)
    };

    let conn = Connection::new(
        transport,
        BytesMut::new(),
        peer,
        local,
        shared.kind,
        tls,
        session_id,
        shared.shutdown.clone(),
        log,
    );
    metrics::counter!("bulwark_sessions_total", "listener" => listener).increment(1);
    metrics::gauge!("bulwark_sessions_active", "listener" => listener).increment(1.0);
    shared.handler.run(conn).await;
    metrics::gauge!("bulwark_sessions_active", "listener" => listener).decrement(1.0);
    drop(permit);
    drop(slot);
}

/// Listeners where users log in may use the slots kept in reserve; 25 and 80 may not,
/// so a flood there cannot take the last descriptors.
fn uses_reserve(kind: ListenerKind) -> bool {
    kind.carries_credentials() || kind == ListenerKind::Metrics
}

/// Counts a refused connection and, on a cleartext-greeting listener, sends the
/// protocol's busy line before it is closed.
async fn refuse(stream: &mut TcpStream, shared: &Shared, why: Refusal) {
    metrics::counter!("bulwark_connections_refused_total", "listener" => shared.kind.name(), "reason" => why.label())
        .increment(1);
    if !shared.implicit_tls {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            stream.write_all(shared.handler.busy_reply()),
        )
        .await;
    }
}
