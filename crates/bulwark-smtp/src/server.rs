//! The thin async shell: runs a [`Session`] over a `bulwark_net::Connection`.
//!
//! It reads what the session asks for (with the command timeout, the session
//! deadline and the shutdown signal), performs its effects against the store, the
//! authenticator and the sender checks, writes the replies (buffered, flushed once per
//! pipelined batch: only when no more client input is waiting, RFC 2920 §3.2), and
//! writes the protocol log: every command line and every reply line, SASL
//! continuation lines (and stray SASL responses after a refused AUTH) as `***`,
//! message bodies never. Every read and every flush is bounded by the command
//! timeout, and the whole session by the session timeout.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_auth::Authenticator;
use bulwark_config::{ListenerKind, LoadedConfig, Requirement};
use bulwark_net::{
    Bounds, CancellationToken, Connection, Input, Line, LineLog, SessionHandler, WriteFailure,
};
use bulwark_store::SharedStore;
use bulwark_tls::TlsServer;
use tokio::time::Instant;

use crate::budget::InflightBudget;
use crate::checks::SenderChecks;
use crate::session::{
    Effect, EffectResult, Next, Session, SessionSettings, COMMAND_LINE_MAX, DATA_LINE_MAX,
    SASL_LINE_MAX,
};

/// SMTP on one listener (smtp, submission or submissions).
pub struct SmtpHandler {
    config: Arc<LoadedConfig>,
    store: SharedStore,
    auth: Authenticator,
    tls: TlsServer,
    settings: Arc<SessionSettings>,
    checks: Arc<dyn SenderChecks>,
    busy: &'static [u8],
}

impl SmtpHandler {
    /// SMTP on `kind`, with what its sessions use: the configuration, the store, the
    /// authenticator, the TLS configuration (STARTTLS) and the sender checks. `budget`
    /// is shared by every SMTP listener of the process
    /// (`InflightBudget::new(config.smtp.max_inflight_bytes)`, made once).
    pub fn new(
        kind: ListenerKind,
        config: Arc<LoadedConfig>,
        store: SharedStore,
        auth: Authenticator,
        tls: TlsServer,
        checks: Arc<dyn SenderChecks>,
        budget: Arc<InflightBudget>,
    ) -> SmtpHandler {
        let settings = Arc::new(SessionSettings::from_config(kind, &config.config, budget));
        // One line per listener for the whole process; leaking it gives the
        // `&'static` the accept loop wants.
        let busy: &'static [u8] = Box::leak(
            format!(
                "421 4.7.0 {} Too many connections, try again later\r\n",
                settings.hostname
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        SmtpHandler {
            config,
            store,
            auth,
            tls,
            settings,
            checks,
            busy,
        }
    }
}

#[async_trait]
impl SessionHandler for SmtpHandler {
    async fn run(&self, mut conn: Connection) {
        let peer = conn.peer();
        let requirement = match self.settings.listener {
            ListenerKind::Smtp => self.config.config.smtp.requirement_for(peer.ip()),
            _ => Requirement::AuthTls,
        };
        let mut s = Session::new(
            self.settings.clone(),
            conn.session_id().to_string(),
            peer,
            requirement,
            conn.tls().cloned(),
        );
        s.set_local_addr(conn.local());
        let smtp = &self.config.config.smtp;
        let command_timeout = Duration::from_secs(smtp.command_timeout_secs);
        let deadline = Instant::now() + Duration::from_secs(smtp.session_timeout_secs);
        let bounds = ReadBounds::new(command_timeout, deadline, conn.shutdown());
        // A client that stops reading our replies is dropped like a silent one.
        conn.set_write_timeout(command_timeout);

        loop {
            let written = self.write_replies(&mut s, &mut conn).await;
            if end_if_failed(&mut s, &mut conn, written).is_break() {
                return;
            }
            let flow = match s.next_step() {
                Next::Command => read_command(&mut s, &mut conn, &bounds.command).await,
                Next::DataLine => read_data_line(&mut s, &mut conn, &bounds.data).await,
                Next::SaslResponse => read_sasl_response(&mut s, &mut conn, &bounds.data).await,
                Next::Chunk { size, remaining } => {
                    read_chunk(&mut s, &mut conn, &bounds.data, size, remaining).await
                }
                Next::Effect(effect) => {
                    let r = self.perform(effect, &s, &mut conn).await;
                    s.effect_done(r);
                    ControlFlow::Continue(())
                }
                Next::StartTls => self.start_tls(&mut s, &mut conn).await,
                Next::Close => {
                    conn.close().await;
                    return;
                }
            };
            if flow.is_break() {
                return;
            }
        }
    }

    fn busy_reply(&self) -> &'static [u8] {
        self.busy
    }
}

/// The most of a BDAT chunk taken from the connection per read.
const BDAT_PIECE: u64 = 64 * 1024;

/// Ends the session when a reply could not be sent: the client went away, or did not
/// read for the command timeout (it may be trying to hold the session open).
fn end_if_failed(
    s: &mut Session,
    conn: &mut Connection,
    written: std::io::Result<()>,
) -> ControlFlow<()> {
    let Err(e) = written else {
        return ControlFlow::Continue(());
    };
    if WriteFailure::of(&e) == WriteFailure::TimedOut {
        conn.log
            .event("the client did not read our replies within the command timeout; closing");
        s.write_timed_out();
    } else {
        conn.log.event(&format!("write failed: {e}"));
        s.disconnected();
    }
    ControlFlow::Break(())
}

/// The limits of one session's reads, made once per session.
#[derive(Debug)]
struct ReadBounds {
    /// Waiting for a command: the command timeout, the session deadline, and server
    /// shutdown (which the session answers with 421).
    command: Bounds,
    /// Inside DATA, BDAT or a SASL exchange: the command timeout and the session
    /// deadline only, so shutdown does not cut a message in transit.
    data: Bounds,
}

impl ReadBounds {
    fn new(command_timeout: Duration, deadline: Instant, shutdown: &CancellationToken) -> Self {
        let data = Bounds::idle(command_timeout).and_until(deadline);
        ReadBounds {
            command: data.clone().or_shutdown(shutdown),
            data,
        }
    }
}

/// Reads one command line into the session (after flushing once per pipelined batch).
async fn read_command(s: &mut Session, conn: &mut Connection, bounds: &Bounds) -> ControlFlow<()> {
    // Flush once per pipelined batch.
    let flushed = conn.flush_unless_pipelined().await;
    end_if_failed(s, conn, flushed)?;
    let input = conn
        .next_line(COMMAND_LINE_MAX, bounds, |line| {
            if s.command_is_secret(line) {
                LineLog::Secret
            } else {
                LineLog::Client
            }
        })
        .await;
    match input {
        Input::Line(Line { bytes, ending }) => s.command(bytes, ending),
        Input::TooLong { .. } => {
            conn.log.client(b"<line too long, discarded>");
            s.command_too_long();
        }
        Input::IdleTimeout | Input::Deadline => s.timed_out(),
        Input::Shutdown => s.shutting_down(),
        Input::Closed | Input::Failed(_) => {
            conn.log.event("client closed the connection");
            s.disconnected();
            return ControlFlow::Break(());
        }
    }
    ControlFlow::Continue(())
}

/// Reads one DATA line into the session; message bodies are never logged.
async fn read_data_line(
    s: &mut Session,
    conn: &mut Connection,
    bounds: &Bounds,
) -> ControlFlow<()> {
    // The 354 must reach the client before it sends the message; a no-op once nothing
    // is buffered.
    let flushed = conn.flush().await;
    end_if_failed(s, conn, flushed)?;
    match conn
        .next_line(DATA_LINE_MAX, bounds, |_| LineLog::Silent)
        .await
    {
        Input::Line(line) => s.data_line(&line.bytes, line.ending),
        Input::TooLong { crlf } => s.data_line_too_long(crlf),
        Input::Closed | Input::Failed(_) => {
            conn.log
                .event("client closed the connection during DATA; nothing stored");
            s.disconnected();
            return ControlFlow::Break(());
        }
        Input::IdleTimeout | Input::Deadline | Input::Shutdown => {
            conn.log.event("timeout during DATA; nothing stored");
            s.timed_out();
        }
    }
    ControlFlow::Continue(())
}

/// Reads one SASL response line into the session, logged as a secret.
async fn read_sasl_response(
    s: &mut Session,
    conn: &mut Connection,
    bounds: &Bounds,
) -> ControlFlow<()> {
    let flushed = conn.flush().await;
    end_if_failed(s, conn, flushed)?;
    match conn
        .next_line(SASL_LINE_MAX, bounds, |_| LineLog::Secret)
        .await
    {
        Input::Line(line) => s.sasl_response(&line.bytes, line.ending),
        Input::TooLong { .. } => {
            conn.log.client_secret();
            s.sasl_too_long();
        }
        Input::Closed | Input::Failed(_) => {
            s.disconnected();
            return ControlFlow::Break(());
        }
        Input::IdleTimeout | Input::Deadline | Input::Shutdown => s.timed_out(),
    }
    ControlFlow::Continue(())
}

/// Reads the next piece (at most [`BDAT_PIECE`] octets) of a BDAT chunk of `size`
/// octets, `remaining` of them still to come, into the session.
async fn read_chunk(
    s: &mut Session,
    conn: &mut Connection,
    bounds: &Bounds,
    size: u64,
    remaining: u64,
) -> ControlFlow<()> {
    // Replies to a pipelined batch must not wait behind a chunk the client has not
    // finished sending.
    let flushed = conn.flush().await;
    end_if_failed(s, conn, flushed)?;
    if remaining == size {
        conn.log
            .client(format!("<BDAT chunk of {size} octets>").as_bytes());
    }
    // The timeout bounds each read, not the whole chunk (up to the message size
    // limit): a slow client that keeps sending goes on.
    let max = usize::try_from(remaining.min(BDAT_PIECE)).unwrap_or(1);
    match bounds.run(conn.read_some(max)).await {
        Ok(Ok(piece)) => s.chunk_data(&piece),
        Ok(Err(_)) => {
            conn.log
                .event("client closed the connection during BDAT; nothing stored");
            s.disconnected();
            return ControlFlow::Break(());
        }
        Err(_) => {
            conn.log.event("timeout during BDAT; nothing stored");
            s.timed_out();
        }
    }
    ControlFlow::Continue(())
}

impl SmtpHandler {
    /// Writes pending replies (after the tarpit delay) and logs each line.
    async fn write_replies(&self, s: &mut Session, conn: &mut Connection) -> std::io::Result<()> {
        let delay = s.take_delay();
        if !delay.is_zero() {
            conn.flush().await?;
            tokio::time::sleep(delay).await;
        }
        let mut buf = Vec::with_capacity(128);
        for r in s.take_replies() {
            buf.clear();
            r.write_to(&mut buf);
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                conn.log.server(line);
            }
            conn.write(&buf).await?;
        }
        Ok(())
    }

    /// Starts TLS after the 220 to STARTTLS (RFC 3207 §4); a failed handshake ends the
    /// session.
    async fn start_tls(&self, s: &mut Session, conn: &mut Connection) -> ControlFlow<()> {
        match conn.start_tls(self.tls.acceptor()).await {
            Ok(_) => match conn.tls().cloned() {
                Some(info) => s.tls_started(info),
                None => return ControlFlow::Break(()),
            },
            Err(e) => {
                let peer = conn.peer();
                tracing::debug!(target: "bulwark::smtp", %peer, error = %e, "STARTTLS failed");
                s.disconnected();
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    async fn perform(&self, effect: Effect, s: &Session, conn: &mut Connection) -> EffectResult {
        let store = &self.store;
        match effect {
            Effect::Resolve { address } => EffectResult::Resolved(store.resolve(&address).await),
            Effect::IsLocalDomain { domain } => {
                EffectResult::LocalDomain(store.is_local_domain(&domain).await)
            }
            Effect::Authenticate {
                username,
                password,
                mechanism,
            } => {
                let r = self
                    .auth
                    .authenticate(
                        &username,
                        &password,
                        conn.peer().ip(),
                        self.settings.listener.name(),
                        mechanism,
                    )
                    .await;
                match &r {
                    Ok(account) => {
                        conn.log.set_user(Some(account.address.clone()));
                        conn.log.event(&format!("authenticated ({mechanism})"));
                    }
                    Err(e) => conn
                        .log
                        .event(&format!("authentication failed ({mechanism}): {e}")),
                }
                EffectResult::Authenticated(r)
            }
            Effect::MaySendAs { account, addresses } => {
                let mut all = Ok(true);
                for a in &addresses {
                    match store.may_send_as(account, a).await {
                        Ok(true) => {}
                        other => {
                            all = other;
                            break;
                        }
                    }
                }
                EffectResult::MaySendAs(all)
            }
            Effect::CheckMailFrom(ctx) => {
                EffectResult::MailFromChecked(self.checks.check_mail_from(&ctx).await)
            }
            Effect::CheckRoutes { targets } => {
                EffectResult::RoutesChecked(self.checks.check_forward_routes(&targets).await)
            }
            Effect::CheckMessage(ctx, note) => EffectResult::MessageChecked(
                self.checks
                    .check_message(&ctx, note.as_ref(), s.message())
                    .await,
            ),
            Effect::Sign(ctx) => {
                EffectResult::Signed(self.checks.sign(&ctx, &s.sign_parts()).await)
            }
            Effect::Ingest(ingest) => {
                let n = ingest.data.len();
                let r = store.ingest(*ingest).await;
                if r.is_ok() {
                    conn.log.event(&format!("message of {n} octets stored"));
                }
                EffectResult::Ingested(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bounds_let_only_the_wait_for_a_command_stop_at_shutdown() {
        let shutdown = CancellationToken::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        let b = ReadBounds::new(Duration::from_secs(300), deadline, &shutdown);
        for bounds in [&b.command, &b.data] {
            assert_eq!(bounds.idle, Some(Duration::from_secs(300)));
            assert_eq!(bounds.deadline, Some(deadline));
        }
        assert!(b.command.shutdown.is_some());
        assert!(b.data.shutdown.is_none(), "shutdown must not cut a message");
    }
}
