//! `bulwark serve`: assemble the server from the configuration and run it.
//!
//! Order: config → certificate check → store → TLS → authenticator → listeners →
//! background services → `DIR/run/listeners.json` → signal loop. SIGHUP reloads the
//! certificate (sessions keep theirs); SIGTERM/SIGINT stop accepting, give sessions
//! `shutdown_grace_secs` to finish, and exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bulwark_config::{metrics_exposed, ListenerKind, LoadedConfig, TlsMode};
use bulwark_net::{CancellationToken, ServerContext, SessionHandler, TaskTracker};
use bulwark_observe::scrape::ScrapeAccess;
use bulwark_observe::{ProtocolLog, Redactor, Rotation};
use bulwark_tls::{Severity, TlsServer};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

/// The protocol behind each listener kind: the one place protocol crates plug in.
/// `None` means the protocol is not implemented yet; the listener is not started.
fn handler_for(
    kind: ListenerKind,
    ctx: &ServerContext,
    sender_checks: &Arc<dyn bulwark_smtp::SenderChecks>,
    smtp_budget: &Arc<bulwark_smtp::InflightBudget>,
    imap_limits: &bulwark_imap::SharedLimits,
) -> Option<Arc<dyn SessionHandler>> {
    match kind {
        ListenerKind::Pop3 | ListenerKind::Pop3s => {
            Some(Arc::new(bulwark_pop3::Pop3Handler::new(kind, ctx.clone())))
        }
        ListenerKind::Imap | ListenerKind::Imaps => Some(bulwark_imap::ImapHandler::with_limits(
            ctx.clone(),
            imap_limits.clone(),
        )),
        ListenerKind::Metrics => {
            let c = &ctx.config.config;
            // Beyond loopback the token is mandatory (config validation refuses the file
            // without one) and the listener runs HTTPS (see `serve`).
            let access = match (
                &c.metrics.bearer_token,
                metrics_exposed(&c.listeners.metrics),
            ) {
                (Some(token), true) => ScrapeAccess::bearer(token),
                _ => ScrapeAccess::open(),
            };
            let handle = bulwark_observe::metrics::handle()?;
            Some(Arc::new(crate::metrics_endpoint::MetricsEndpoint::new(
                handle, access,
            )))
        }
        // Sender authentication (SPF/Sender ID/DKIM/DMARC on 25, DKIM signing on
        // 587/465): bulwark-senderauth through the SMTP crate's `SenderChecks` seam,
        // built once in `serve` (which refuses to start without it).
        ListenerKind::Smtp | ListenerKind::Submission | ListenerKind::Submissions => {
            Some(Arc::new(bulwark_smtp::SmtpHandler::new(
                kind,
                ctx.clone(),
                sender_checks.clone(),
                smtp_budget.clone(),
            )))
        }
        ListenerKind::Http | ListenerKind::Https => None,
    }
}

/// Long-running services that are not listeners (queue delivery, certificate expiry
/// watch, …), spawned on the tracker so shutdown waits for them.
fn spawn_background(ctx: &ServerContext, tracker: &TaskTracker) -> anyhow::Result<()> {
    // Outbound delivery: empties the durable queue; on shutdown it claims nothing new
    // and finishes the deliveries in progress within the grace period.
    bulwark_queue::start(
        ctx.config.clone(),
        ctx.store.clone(),
        ctx.shutdown.clone(),
        tracker,
    )
    .context("cannot start outbound delivery")?;
    let tls = ctx.tls.clone();
    let shutdown = ctx.shutdown.clone();
    tracker.spawn(async move {
        loop {
            report_certificate(&tls);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(12 * 3600)) => {}
            }
        }
    });
    let store = ctx.store.clone();
    let shutdown = ctx.shutdown.clone();
    tracker.spawn(async move {
        // Sampled on a timer, and soon after the queue changes (a new or retried entry),
        // at most once a second.
        let mut events = store.subscribe();
        loop {
            sample_queue(&store).await;
            let queue_changed = async {
                use tokio::sync::broadcast::error::RecvError;
                loop {
                    match events.recv().await {
                        Ok(bulwark_store::StoreEvent::Queue) | Err(RecvError::Lagged(_)) => {
                            return true
                        }
                        Ok(_) => continue,
                        Err(RecvError::Closed) => return false,
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(QUEUE_SAMPLE_INTERVAL) => {}
                changed = queue_changed => {
                    let pause = if changed { Duration::from_secs(1) } else { QUEUE_SAMPLE_INTERVAL };
                    tokio::time::sleep(pause).await;
                }
            }
        }
    });
    Ok(())
}

/// How often the queue gauges are refreshed from the store.
const QUEUE_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Sets `bulwark_queue_depth` and `bulwark_queue_oldest_age_seconds` from the store, so
/// they are right whoever changes the queue (SMTP, the delivery workers, `queue` CLI).
async fn sample_queue(store: &bulwark_store::SharedStore) {
    match store.queue_stats().await {
        Ok(stats) => {
            let now = crate::cli::now_unix();
            let oldest = stats.oldest_created.map_or(0, |c| (now - c).max(0));
            metrics::gauge!("bulwark_queue_depth").set(stats.entries as f64);
            metrics::gauge!("bulwark_queue_oldest_age_seconds").set(oldest as f64);
        }
        Err(e) => {
            tracing::warn!(target: "bulwark", error = %e, "cannot read the queue for its metrics")
        }
    }
}

fn redactor(kind: ListenerKind) -> Redactor {
    Redactor::for_listener(kind)
}

fn tls_mode_name(kind: ListenerKind, implicit_tls: bool) -> &'static str {
    match kind.tls_mode() {
        TlsMode::Starttls => "starttls",
        _ if implicit_tls => "implicit-tls",
        TlsMode::Implicit => "implicit-tls",
        TlsMode::None => "none",
    }
}

/// What `DIR/run/listeners.json` says: the addresses actually bound.
#[derive(Serialize)]
struct RunState {
    pid: u32,
    listeners: Vec<RunListener>,
    /// Enabled listeners not started, and why (read by `report`/`audit --probe`).
    skipped: Vec<SkippedListener>,
}

#[derive(Serialize)]
struct SkippedListener {
    kind: ListenerKind,
    reason: &'static str,
}

#[derive(Serialize)]
struct RunListener {
    kind: ListenerKind,
    addrs: Vec<SocketAddr>,
    tls: &'static str,
}

fn report_certificate(tls: &TlsServer) {
    let info = tls.cert_info();
    let left = info.seconds_to_expiry(crate::cli::now_unix());
    metrics::gauge!("bulwark_tls_certificate_expiry_seconds").set(left as f64);
    if left <= 0 {
        tracing::error!(target: "bulwark::tls", names = ?info.dns_names, "the certificate has EXPIRED; clients will refuse it");
    } else if left < 30 * 86400 {
        tracing::warn!(target: "bulwark::tls", names = ?info.dns_names, days_left = left / 86400, "the certificate expires soon; renew it");
    }
}

/// Every password check (Argon2id) allocates 19 MiB. glibc's adaptive mmap threshold
/// moves such blocks onto the malloc heaps after the first free, where they stay: a
/// burst of logins then leaves hundreds of MiB (measured: 3 GiB after 200 IMAP
/// logins) that are never returned. A fixed threshold keeps every allocation of
/// 1 MiB or more in its own mapping, given back to the OS when freed.
fn keep_large_allocations_unmappable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    keep_large_allocations_unmappable();
    let cfg = super::cli::load_config(dir)?;
    bulwark_observe::init_tracing(&cfg.config.log.level, cfg.config.log.format);
    let problems = bulwark_tls::check_files(
        &cfg.cert_path(),
        &cfg.key_path(),
        &cfg.config.server.hostname,
        crate::cli::now_unix(),
    );
    for p in &problems {
        match p.severity {
            Severity::Error => tracing::error!(target: "bulwark", "{} — fix: {}", p.message, p.fix),
            Severity::Warning => {
                tracing::warn!(target: "bulwark", "{} — fix: {}", p.message, p.fix)
            }
        }
    }
    anyhow::ensure!(
        !problems.iter().any(|p| p.severity == Severity::Error),
        "refusing to start with an unusable certificate (run `bulwark config check`)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bulwark")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: LoadedConfig) -> anyhow::Result<ExitCode> {
    // Signals first: a reload or stop that arrives while we start must not find the
    // default dispositions (SIGHUP would kill the process).
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // First, so that every metric emitted from here on is recorded.
    bulwark_observe::metrics::install()?;
    // Fail closed: mail must not flow without the configured sender checks (SPF/DMARC
    // on 25) and DKIM signing (587/465) just because a key or the resolver is broken.
    let sender_checks: Arc<dyn bulwark_smtp::SenderChecks> = Arc::new(
        crate::sender_checks::SenderAuthChecks::from_config(&cfg).context(
            "sender authentication cannot start (fix the error above, or set [senderauth] enabled = false / [senderauth.signing] enabled = false deliberately)",
        )?,
    );
    let store = super::cli::open_store(&cfg)?;
    let tls = TlsServer::new(
        &cfg.cert_path(),
        &cfg.key_path(),
        cfg.config.tls.min_version,
    )?;
    let auth = bulwark_auth::Authenticator::new(store.clone(), cfg.config.auth.clone());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let cfg = Arc::new(cfg);
    let ctx = ServerContext {
        config: cfg.clone(),
        store,
        tls: tls.clone(),
        auth,
        shutdown: shutdown.clone(),
    };

    let c = &cfg.config;
    let rotation = Rotation {
        max_size: c.log.rotate_size,
        max_age: Duration::from_secs(c.log.rotate_age_secs),
        keep: c.log.keep,
    };
    // Connection slots from the open-file limit, a quarter kept for the listeners
    // users log in to, so a flood on 25 cannot take the descriptors 993 needs.
    let nofile = crate::fdlimit::raise_open_file_limit().unwrap_or(1024);
    let slots = bulwark_net::ConnectionSlots::from_fd_limit(
        nofile,
        bulwark_net::INTERNAL_DESCRIPTORS + c.outbound.max_concurrent_deliveries as u64,
    );
    tracing::info!(target: "bulwark", open_file_limit = nofile, connection_slots = slots.total(), client_reserve = slots.reserve(), "connection slots");
    // One memory budget for message data shared by the SMTP listeners (25, 587, 465).
    let smtp_budget = bulwark_smtp::InflightBudget::new(c.smtp.max_inflight_bytes);
    // The same for IMAP (143, 993), with the per-account APPEND limit.
    let imap_limits = bulwark_imap::SharedLimits::new(&c.imap);
    let mut running = Vec::new();
    let mut skipped = Vec::new();
    for (kind, lc) in c.listeners.iter() {
        if !lc.enabled {
            tracing::info!(target: "bulwark", listener = %kind, "disabled in configuration");
            continue;
        }
        let Some(handler) = handler_for(kind, &ctx, &sender_checks, &smtp_budget, &imap_limits)
        else {
            tracing::info!(target: "bulwark", listener = %kind, "not started: this protocol is not available yet");
            skipped.push(SkippedListener {
                kind,
                reason: "not available in this version",
            });
            continue;
        };
        let mut bound = bulwark_net::bind(kind, lc).await?.with_slots(slots.clone());
        if kind == ListenerKind::Metrics && metrics_exposed(lc) {
            // DATA-PATHS: "HTTPS when not loopback".
            bound = bound.with_implicit_tls();
        }
        let tls_name = tls_mode_name(kind, bound.implicit_tls());
        let addrs = bound.local_addrs();
        let log = if lc.protocol_log {
            ProtocolLog::open(&cfg.log_dir(), kind.name(), redactor(kind), rotation).with_context(
                || {
                    format!(
                        "cannot open the protocol log in {}",
                        cfg.log_dir().display()
                    )
                },
            )?
        } else {
            ProtocolLog::disabled(kind.name(), redactor(kind))
        };
        for a in &addrs {
            tracing::info!(target: "bulwark", listener = %kind, address = %a, tls = tls_name, protocol_log = lc.protocol_log, "listening");
        }
        bound.serve(handler, tls.clone(), log, shutdown.clone(), &tracker);
        running.push(RunListener {
            kind,
            addrs,
            tls: tls_name,
        });
    }
    // Series for every enabled listener, running or not yet implemented: a scraper sees
    // the same set of series whatever this version serves.
    let kinds: Vec<ListenerKind> = c
        .listeners
        .iter()
        .filter(|(_, l)| l.enabled)
        .map(|(k, _)| k)
        .collect();
    bulwark_observe::metrics::register_catalog(&kinds);
    spawn_background(&ctx, &tracker)?;
    write_run_state(&cfg, &running, skipped)?;
    tracing::info!(target: "bulwark", hostname = %c.server.hostname, listeners = running.len(), "bulwark is running");

    loop {
        tokio::select! {
            _ = hup.recv() => match tls.reload() {
                Ok(info) => {
                    tracing::info!(target: "bulwark::tls", names = ?info.dns_names, sha256 = %info.sha256, "certificate reloaded");
                    report_certificate(&tls);
                }
                Err(e) => tracing::error!(target: "bulwark::tls", error = %e, "certificate reload failed; keeping the current one"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!(target: "bulwark", grace_secs = c.server.shutdown_grace_secs, "shutting down: no new connections");
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(
        Duration::from_secs(c.server.shutdown_grace_secs),
        tracker.wait(),
    )
    .await
    .is_err()
    {
        tracing::warn!(target: "bulwark", "sessions still running after the grace period were cut off (nothing they had acknowledged is lost)");
    }
    let run = cfg.run_dir();
    let _ = std::fs::remove_file(run.join("listeners.json"));
    let _ = std::fs::remove_file(run.join("bulwark.pid"));
    tracing::info!(target: "bulwark", "stopped");
    Ok(ExitCode::SUCCESS)
}

fn write_run_state(
    cfg: &LoadedConfig,
    running: &[RunListener],
    skipped: Vec<SkippedListener>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let run = cfg.run_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&run)?;
    let pid = std::process::id();
    std::fs::write(run.join("bulwark.pid"), format!("{pid}\n"))?;
    let state = RunState {
        pid,
        listeners: running
            .iter()
            .map(|r| RunListener {
                kind: r.kind,
                addrs: r.addrs.clone(),
                tls: r.tls,
            })
            .collect(),
        skipped,
    };
    let tmp = run.join(".listeners.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
    std::fs::rename(&tmp, run.join("listeners.json"))?;
    Ok(())
}
