//! `bulwark serve`: assemble the server from the configuration and run it.
//!
//! Order: config → certificate check → privilege plan → sender checks (DKIM keys) →
//! TLS → bind every listener → drop root (`[server] user`) → store → authenticator →
//! serve the listeners → background services → `DIR/run/listeners.json` → signal
//! loop. SIGHUP reloads the certificate after the start-up checks (sessions keep
//! theirs); SIGTERM/SIGINT stop accepting, give sessions `shutdown_grace_secs` to
//! finish, and exit 0.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bulwark_audit::runstate::{self, Availability, RunListener, RunState, SkippedListener};
use bulwark_config::{metrics_exposed, ListenerKind, LoadedConfig, TlsMode};
use bulwark_net::{CancellationToken, SessionHandler, TaskTracker};
use bulwark_observe::scrape::ScrapeAccess;
use bulwark_observe::{ProtocolLog, Redactor, Rotation};
use bulwark_tls::{Severity, TlsServer};
use tokio::signal::unix::{signal, SignalKind};

use crate::privilege::Plan;

/// What the protocols and background services are built from: configuration, store,
/// TLS, authentication and the shutdown signal. Made once by `serve`; each protocol
/// handler takes the parts it uses.
#[derive(Clone)]
struct ServerContext {
    config: Arc<bulwark_config::LoadedConfig>,
    store: bulwark_store::SharedStore,
    tls: bulwark_tls::TlsServer,
    auth: bulwark_auth::Authenticator,
    /// Cancelled on SIGTERM/SIGINT.
    shutdown: CancellationToken,
}

/// The protocol behind each listener kind: the one place protocol crates plug in.
/// `None` for the kinds `bulwark_audit::runstate::availability` calls not served (the
/// one list `report` also reads); `serve` fails if the two ever disagree.
fn handler_for(
    kind: ListenerKind,
    ctx: &ServerContext,
    sender_checks: &Arc<dyn bulwark_smtp::SenderChecks>,
    smtp_budget: &Arc<bulwark_smtp::InflightBudget>,
    imap_limits: &bulwark_imap::SharedLimits,
) -> Option<Arc<dyn SessionHandler>> {
    match kind {
        ListenerKind::Pop3 | ListenerKind::Pop3s => Some(Arc::new(bulwark_pop3::Pop3Handler::new(
            kind,
            ctx.config.clone(),
            ctx.store.clone(),
            ctx.auth.clone(),
            ctx.tls.clone(),
        ))),
        ListenerKind::Imap | ListenerKind::Imaps => Some(bulwark_imap::ImapHandler::with_limits(
            ctx.config.clone(),
            ctx.store.clone(),
            ctx.auth.clone(),
            ctx.tls.clone(),
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
                ctx.config.clone(),
                ctx.store.clone(),
                ctx.auth.clone(),
                ctx.tls.clone(),
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
    let resigner = crate::resign::from_config(&ctx.config).context("cannot load DKIM keys")?;
    bulwark_queue::start(
        ctx.config.clone(),
        ctx.store.clone(),
        ctx.shutdown.clone(),
        tracker,
        resigner,
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
    let store = ctx.store.clone();
    let shutdown = ctx.shutdown.clone();
    let interval = ctx.config.config.store.reclaim_interval_secs;
    tracker.spawn(async move { keep_store_compact(store, interval, shutdown).await });
    Ok(())
}

/// Pages given back per reclaim step: one short write transaction among the others.
const RECLAIM_STEP_PAGES: u32 = 2048;
/// Steps per round (at 4 KiB pages, 128 MiB a round).
const RECLAIM_STEPS_PER_ROUND: usize = 16;

/// The store's size gauges, and the space of deleted mail given back to the file
/// system in small steps every `interval` seconds (0: gauges only, every minute).
async fn keep_store_compact(
    store: bulwark_store::SharedStore,
    interval: u64,
    shutdown: CancellationToken,
) {
    let mut warned = false;
    loop {
        match store.space().await {
            Ok(space) => {
                set_store_gauges(&space);
                if !space.reclaimable && !warned {
                    warned = true;
                    tracing::warn!(target: "bulwark::store", free_pages = space.free_pages, "this store was made before space reclamation existed: deleted mail's space is reused but never given back; stop the server once and run `bulwark store compact`");
                }
                if interval > 0 && space.reclaimable && space.free_pages > 0 {
                    reclaim_round(&store, &shutdown).await;
                }
            }
            Err(e) => {
                tracing::warn!(target: "bulwark::store", error = %e, "cannot read the store's size")
            }
        }
        let pause = Duration::from_secs(if interval == 0 { 60 } else { interval });
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn reclaim_round(store: &bulwark_store::SharedStore, shutdown: &CancellationToken) {
    for _ in 0..RECLAIM_STEPS_PER_ROUND {
        if shutdown.is_cancelled() {
            return;
        }
        let before = store.space().await.map(|s| s.size_bytes).unwrap_or(0);
        match store.reclaim_space(RECLAIM_STEP_PAGES).await {
            Ok(after) => {
                metrics::counter!("bulwark_store_reclaimed_bytes_total")
                    .increment(before.saturating_sub(after.size_bytes));
                set_store_gauges(&after);
                if after.free_pages == 0 {
                    tracing::info!(target: "bulwark::store", size_bytes = after.size_bytes, "space of deleted mail given back to the file system");
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(target: "bulwark::store", error = %e, "cannot reclaim the store's free space");
                return;
            }
        }
    }
}

fn set_store_gauges(space: &bulwark_store::StoreSpace) {
    metrics::gauge!("bulwark_store_size_bytes").set(space.size_bytes as f64);
    metrics::gauge!("bulwark_store_free_pages").set(space.free_pages as f64);
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

/// How to get past a listener that cannot be bound: said with the error, since the
/// usual cause (another mail server on the standard ports) is not Bulwark's to fix.
fn bind_failure_fix(kind: ListenerKind, e: &std::io::Error) -> String {
    let table = format!("[listeners.{kind}] bind in bulwark.toml");
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "another program holds that port (a local MTA such as Postfix or Exim, or another Bulwark: `ss -ltnp` names it). Stop it, or move Bulwark's ports: `./scripts/run.sh --port-base 10000` (every listener at its standard port + 10000), `bulwark init --port-base N` for a new data directory, or edit {table}"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "ports below 1024 need root: start `serve` as root with [server] user set (it drops to that user after binding), or use ports above 1024 (`./scripts/run.sh --port-base 10000`, or edit {table})"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "that address is not on this machine: choose one it has (`./scripts/run.sh --listen ADDR`, or edit {table})"
        ),
        _ => format!("check {table}"),
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

/// The checks on the certificate and key files (readable, matching, valid now, key
/// not readable by others), logged with their fixes; false when one is an error. Run
/// before starting and again before every reload (SIGHUP), so a reload cannot bring
/// in what a start refuses; a refused reload keeps the current certificate.
fn certificate_usable(cfg: &LoadedConfig) -> bool {
    let problems = bulwark_tls::check_files(
        &cfg.cert_path(),
        &cfg.key_path(),
        &cfg.config.server.hostname,
        crate::cli::now_unix(),
    );
    for p in &problems {
        match p.severity {
            Severity::Error => {
                tracing::error!(target: "bulwark::tls", "{} — fix: {}", p.message, p.fix)
            }
            Severity::Warning => {
                tracing::warn!(target: "bulwark::tls", "{} — fix: {}", p.message, p.fix)
            }
        }
    }
    !problems.iter().any(|p| p.severity == Severity::Error)
}

/// SIGHUP: re-reads the certificate and key if they pass the start-up checks.
fn reload_certificate(cfg: &LoadedConfig, tls: &TlsServer) {
    if !certificate_usable(cfg) {
        tracing::error!(target: "bulwark::tls", "certificate reload failed: the files do not pass the checks `serve` makes at start (see above); keeping the current one");
        return;
    }
    match tls.reload() {
        Ok(info) => {
            tracing::info!(target: "bulwark::tls", names = ?info.dns_names, sha256 = %info.sha256, "certificate reloaded");
            report_certificate(tls);
        }
        Err(e) => {
            tracing::error!(target: "bulwark::tls", error = %e, "certificate reload failed; keeping the current one")
        }
    }
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

pub fn run(dir: &Path, allow_root: bool) -> anyhow::Result<ExitCode> {
    crate::sys::keep_large_allocations_unmappable();
    let cfg = super::cli::load_config(dir)?;
    bulwark_observe::init_tracing(&cfg.config.log.level, cfg.config.log.format);
    anyhow::ensure!(
        certificate_usable(&cfg),
        "refusing to start with an unusable certificate (run `bulwark config check`)"
    );
    // Decided before anything is bound: as root without a usable [server] user,
    // refuse (unless --allow-root) rather than serve with root's privileges.
    let plan = crate::privilege::plan(&cfg, allow_root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bulwark")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(cfg, plan))
}

/// One bound listener with its configuration.
type Bound = (
    ListenerKind,
    bulwark_config::ListenerConfig,
    bulwark_net::BoundListener,
);

/// Binds every enabled listener this version serves (while we may still be root, for
/// ports below 1024); the others are logged and listed as skipped for the run state.
async fn bind_listeners(
    cfg: &LoadedConfig,
    slots: &bulwark_net::ConnectionSlots,
) -> anyhow::Result<(Vec<Bound>, Vec<SkippedListener>)> {
    let mut bound_listeners = Vec::new();
    let mut skipped = Vec::new();
    for (kind, lc) in cfg.config.listeners.iter() {
        if !lc.enabled {
            tracing::info!(target: "bulwark", listener = %kind, "disabled in configuration");
            continue;
        }
        if let Availability::NotServed(reason) = runstate::availability(kind) {
            tracing::info!(target: "bulwark", listener = %kind, reason, "not started");
            skipped.push(SkippedListener {
                kind,
                reason: reason.to_string(),
            });
            continue;
        }
        let mut bound = bulwark_net::bind(kind, lc)
            .await
            .map_err(|e| anyhow::anyhow!("{e} — {}", bind_failure_fix(kind, &e)))?
            .with_slots(slots.clone());
        if kind == ListenerKind::Metrics && metrics_exposed(lc) {
            // DATA-PATHS: "HTTPS when not loopback".
            bound = bound.with_implicit_tls();
        }
        bound_listeners.push((kind, lc.clone(), bound));
    }
    Ok((bound_listeners, skipped))
}

/// Drops root for `[server] user` when the plan says so (or says why not).
fn become_unprivileged(plan: &Plan, cfg: &LoadedConfig) -> anyhow::Result<()> {
    match plan {
        Plan::Drop(account) => {
            crate::privilege::drop_to(account)?;
            tracing::info!(target: "bulwark", user = %account.user, uid = account.uid, group = %account.group, gid = account.gid, "listeners bound; running as an unprivileged user from here on");
            // SIGHUP re-reads the files as this user: say now if it could not.
            for file in [cfg.cert_path(), cfg.key_path()] {
                if let Err(e) = std::fs::File::open(&file) {
                    tracing::warn!(target: "bulwark::tls", file = %file.display(), error = %e, user = %account.user, "after the drop this file cannot be read: certificate reloads (SIGHUP) will fail until it is (chown it to the user, mode 0600 for the key)");
                }
            }
        }
        Plan::StayRoot(why) => {
            tracing::warn!(target: "bulwark", reason = %why, "running as root (--allow-root): every session runs with root's privileges; set [server] user");
        }
        Plan::Unprivileged => {}
    }
    Ok(())
}

/// Gives each bound listener its protocol handler and protocol log and starts
/// accepting; returns what the run state records.
fn start_listeners(
    bound_listeners: Vec<Bound>,
    ctx: &ServerContext,
    sender_checks: &Arc<dyn bulwark_smtp::SenderChecks>,
    tracker: &TaskTracker,
) -> anyhow::Result<Vec<RunListener>> {
    let cfg = &ctx.config;
    let tls = &ctx.tls;
    let shutdown = &ctx.shutdown;
    let c = &cfg.config;
    let rotation = Rotation {
        max_size: c.log.rotate_size,
        max_age: Duration::from_secs(c.log.rotate_age_secs),
        keep: c.log.keep,
    };
    // One memory budget for message data shared by the SMTP listeners (25, 587, 465).
    let smtp_budget = bulwark_smtp::InflightBudget::new(c.smtp.max_inflight_bytes);
    // The same for IMAP (143, 993), with the per-account APPEND limit.
    let imap_limits = bulwark_imap::SharedLimits::new(&c.imap);
    let mut running = Vec::new();
    for (kind, lc, bound) in bound_listeners {
        let handler = handler_for(kind, ctx, sender_checks, &smtp_budget, &imap_limits)
            .with_context(|| format!("cannot serve the {kind} listener"))?;
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
        bound.serve(handler, tls.clone(), log, shutdown.clone(), tracker);
        running.push(RunListener {
            kind,
            addrs,
            tls: tls_name.to_string(),
        });
    }
    Ok(running)
}

/// Stops accepting, gives running sessions the grace period, and removes the run
/// state files.
async fn shut_down(cfg: &LoadedConfig, shutdown: &CancellationToken, tracker: &TaskTracker) {
    let c = &cfg.config;
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
}

async fn serve(cfg: LoadedConfig, plan: Plan) -> anyhow::Result<ExitCode> {
    // Signals first: a reload or stop that arrives while we start must not find the
    // default dispositions (SIGHUP would kill the process).
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // First, so that every metric emitted from here on is recorded.
    bulwark_observe::metrics::install()?;
    // Fail closed: mail must not flow without the configured sender checks (SPF/DMARC
    // on 25) and DKIM signing (587/465) just because a key or the resolver is broken.
    // Read before the privilege drop: the keys may be readable by root only.
    let sender_checks: Arc<dyn bulwark_smtp::SenderChecks> = Arc::new(
        crate::sender_checks::SenderAuthChecks::from_config(&cfg).context(
            "sender authentication cannot start (fix the error above, or set [senderauth] enabled = false / [senderauth.signing] enabled = false deliberately)",
        )?,
    );
    let tls = TlsServer::new(
        &cfg.cert_path(),
        &cfg.key_path(),
        cfg.config.tls.min_version,
    )?;
    // Connection slots from the open-file limit (raised before the drop), a quarter kept for the listeners
    // users log in to, so a flood on 25 cannot take the descriptors 993 needs.
    let nofile = crate::fdlimit::raise_open_file_limit().unwrap_or(1024);
    let slots = bulwark_net::ConnectionSlots::from_fd_limit(
        nofile,
        bulwark_net::INTERNAL_DESCRIPTORS + cfg.config.outbound.max_concurrent_deliveries as u64,
    );
    tracing::info!(target: "bulwark", open_file_limit = nofile, connection_slots = slots.total(), client_reserve = slots.reserve(), "connection slots");
    // Every listener is bound while we may still be root (ports below 1024), and
    // nothing is served before the drop.
    let (bound_listeners, skipped) = bind_listeners(&cfg, &slots).await?;
    become_unprivileged(&plan, &cfg)?;
    // From here on files are created as the unprivileged user: the store (and its
    // WAL), the run state, the protocol logs.
    let store = super::cli::open_store(&cfg)?;
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
    let running = start_listeners(bound_listeners, &ctx, &sender_checks, &tracker)?;
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
    let started = running.len();
    RunState {
        pid: std::process::id(),
        listeners: running,
        skipped,
    }
    .write(&cfg.run_dir())
    .with_context(|| format!("cannot write {}", cfg.run_dir().display()))?;
    tracing::info!(target: "bulwark", hostname = %c.server.hostname, listeners = started, "bulwark is running");

    loop {
        tokio::select! {
            _ = hup.recv() => reload_certificate(&cfg, &tls),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    shut_down(&cfg, &shutdown, &tracker).await;
    Ok(ExitCode::SUCCESS)
}
