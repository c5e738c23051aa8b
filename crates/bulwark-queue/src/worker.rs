//! The delivery loop: claim due entries, deliver each destination's recipients under
//! the concurrency limits, record every outcome, notify the sender.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark_config::LoadedConfig;
use bulwark_dns::TokioResolver;
use bulwark_observe::{ProtocolLog, Redactor, Rotation};
use bulwark_store::{
    domain_of, plan_delivery, DeliveryAttempt, Folder, QueueId, QueuedMessage, RecipientStatus,
    RecipientUpdate, Recipients, SharedStore, StoreError, StoreEvent,
};
use bulwark_wire::Enhanced;
use parking_lot::Mutex;
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::downgrade::{Resigner, SevenBitCopy};
use crate::dsn::{self, Action, DsnRecipient};
use crate::finish::{
    plan_finish, wants_relayed_notice, DelayNotice, FailureNotice, FinishInput, FinishPolicy,
    RecipientResult,
};
use crate::message::MessageInfo;
use crate::outcome::{Outcome, Verdict};
use crate::params::{DeliveryParams, Ret};
use crate::route::{self, Connector, Connectors};
use crate::smtp::client::{self, Envelope, HostResult, Settings};
use crate::{now, QueueError};

const TARGET: &str = "bulwark::queue";

pub(crate) struct Worker {
    store: SharedStore,
    hostname: String,
    own_names: Vec<String>,
    limits: route::Limits,
    settings: Settings,
    connectors: Connectors,
    resolver: TokioResolver,
    log: ProtocolLog,
    lifetime: i64,
    delay_notice_after: i64,
    retry_initial: i64,
    retry_max: i64,
    lease: i64,
    scan: Duration,
    max_entries: usize,
    /// Memory for message bodies held by deliveries, in KiB (see `BODY_BUDGET`).
    bodies: Arc<Semaphore>,
    global: Arc<Semaphore>,
    max_global: usize,
    per_destination: usize,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    in_flight: Mutex<HashSet<QueueId>>,
    sessions: AtomicU64,
    shutdown: CancellationToken,
    /// DKIM signing of 7-bit copies of messages we signed (None: signing is off).
    resigner: Option<Arc<dyn Resigner>>,
}

/// Memory all deliveries together may use for message bodies (each entry holds its
/// body; see `held_octets` for what else). Without it, `max_entries` entries of the
/// largest size could be held at once: 64 × 25 MiB = 1.6 GB with the defaults, more
/// with 7-bit copies and returned messages.
const BODY_BUDGET_KIB: u32 = 256 * 1024;

/// The octets one delivery of a message of `size` octets holds at once: the body, for
/// the whole delivery (the client streams it dot-stuffed in pieces, RFC 5321 §4.5.2,
/// without a stuffed copy); when the sender asked for the whole message back
/// (`full_return`, RFC 3461 §4.3 RET=FULL), the failure notice built at the end that
/// carries it (RFC 3464 §2); and for an 8-bit message (`eight_bit`), the 7-bit copy
/// made when a next hop lacks 8BITMIME (RFC 6152 §3): two 7-bit copies are alive at
/// once while it is made (the converted parts and the assembled message; then the
/// unsigned and the re-signed one), each at most 13/4 of the size — quoted-printable's
/// worst case (every octet `=XX`, plus a soft line break per 75 octets: about 3.1×)
/// with a margin; base64 is 4/3 plus line ends.
fn held_octets(size: u64, full_return: bool, eight_bit: bool) -> u64 {
    let mut held = size;
    if full_return {
        held = held.saturating_add(size);
    }
    if eight_bit {
        held = held.saturating_add(size.saturating_mul(13) / 2);
    }
    held
}

/// The budget share (KiB) of a delivery holding `octets`: rounded up, at least 1 KiB,
/// at most the whole budget.
fn body_permits(octets: u64) -> u32 {
    let kib = (octets / 1024).saturating_add(1);
    u32::try_from(kib)
        .unwrap_or(BODY_BUDGET_KIB)
        .min(BODY_BUDGET_KIB)
}

/// Marks a claimed entry as being delivered by this worker while it lives.
struct InFlight<'a> {
    worker: &'a Worker,
    id: QueueId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.worker.in_flight.lock().remove(&self.id);
    }
}

/// The entry being delivered, shared by its destination tasks.
struct EntryCtx {
    entry: QueuedMessage,
    params: DeliveryParams,
    data: Vec<u8>,
    info: MessageInfo,
    /// Made when a next hop lacks 8BITMIME (RFC 6152 §3).
    seven_bit: SevenBitCopy,
    now: i64,
    deleted: AtomicBool,
}

impl EntryCtx {
    fn attempts_so_far(&self, address: &str) -> u32 {
        self.entry
            .recipients
            .iter()
            .find(|r| r.address == address)
            .map_or(0, |r| r.attempts)
    }
}

/// Exponential backoff: `initial` after the first failed attempt, doubling, at most
/// `max` (e.g. 1 min, 2, 4, … 60 min).
pub(crate) fn backoff(attempts: u32, initial: i64, max: i64) -> i64 {
    let shift = attempts.saturating_sub(1).min(30);
    initial.saturating_mul(1i64 << shift).min(max).max(1)
}

/// The `tls` label of `bulwark_delivery_attempts_total` (METRICS.md).
fn tls_label(tls: &Option<String>) -> &'static str {
    match tls.as_deref() {
        None => "none",
        Some(t) if t.starts_with("TLSv1.3") => "TLSv1.3",
        Some(t) if t.starts_with("TLSv1.2") => "TLSv1.2",
        Some(_) => "other",
    }
}

fn status_of(v: Verdict) -> RecipientStatus {
    match v {
        Verdict::Delivered => RecipientStatus::Delivered,
        Verdict::Deferred => RecipientStatus::Pending,
        Verdict::Failed => RecipientStatus::Failed,
    }
}

impl Worker {
    pub(crate) fn new(
        cfg: Arc<LoadedConfig>,
        store: SharedStore,
        shutdown: CancellationToken,
        resigner: Option<Arc<dyn Resigner>>,
    ) -> Result<Arc<Worker>, QueueError> {
        let c = &cfg.config;
        let o = &c.outbound;
        let connectors = Connectors::from_config(&cfg)?;
        let resolver = bulwark_dns::resolver(&c.dns)?;
        let log = if o.protocol_log {
            let rotation = Rotation {
                max_size: c.log.rotate_size,
                max_age: Duration::from_secs(c.log.rotate_age_secs),
                keep: c.log.keep,
            };
            ProtocolLog::open(&cfg.log_dir(), "outbound", Redactor::Smtp, rotation).map_err(
                |source| QueueError::ProtocolLog {
                    dir: cfg.log_dir().display().to_string(),
                    source,
                },
            )?
        } else {
            ProtocolLog::disabled("outbound", Redactor::Smtp)
        };
        let helo = o
            .helo_name
            .clone()
            .unwrap_or_else(|| c.server.hostname.clone());
        let mut own_names = vec![c.server.hostname.to_ascii_lowercase()];
        if !own_names.contains(&helo.to_ascii_lowercase()) {
            own_names.push(helo.to_ascii_lowercase());
        }
        Ok(Arc::new(Worker {
            store,
            hostname: c.server.hostname.clone(),
            own_names,
            limits: route::Limits::from_config(o),
            settings: Settings {
                helo,
                connect_timeout: Duration::from_secs(o.connect_timeout_secs),
                command_timeout: Duration::from_secs(o.command_timeout_secs),
                data_timeout: Duration::from_secs(o.data_timeout_secs),
            },
            connectors,
            resolver,
            log,
            lifetime: o.max_queue_lifetime_secs as i64,
            delay_notice_after: o.delay_notice_after_secs as i64,
            retry_initial: o.retry_initial_secs as i64,
            retry_max: o.retry_max_secs as i64,
            lease: o.lease_secs as i64,
            scan: Duration::from_secs(o.scan_interval_secs),
            // Entries waiting for a per-destination slot hold a lease; allow some
            // beyond the connection limit so other destinations keep moving.
            max_entries: o.max_concurrent_deliveries * 2,
            bodies: Arc::new(Semaphore::new(BODY_BUDGET_KIB as usize)),
            global: Arc::new(Semaphore::new(o.max_concurrent_deliveries)),
            max_global: o.max_concurrent_deliveries,
            per_destination: o.max_concurrent_per_domain,
            destinations: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            sessions: AtomicU64::new(0),
            shutdown,
            resigner,
        }))
    }

    /// Claims and delivers until shutdown; then waits for the deliveries in progress.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut events = self.store.subscribe();
        let mut tasks: JoinSet<()> = JoinSet::new();
        tracing::info!(target: TARGET, helo = %self.settings.helo, max_concurrent = self.max_global, per_destination = self.per_destination, "outbound delivery started");
        loop {
            while tasks.try_join_next().is_some() {}
            if self.shutdown.is_cancelled() {
                break;
            }
            let capacity = self.max_entries.saturating_sub(tasks.len());
            if capacity > 0 {
                match self
                    .store
                    .queue_claim_due(
                        now(),
                        self.lease,
                        u32::try_from(capacity).unwrap_or(u32::MAX),
                    )
                    .await
                {
                    Ok(entries) => {
                        for e in entries {
                            if self.in_flight.lock().insert(e.id) {
                                tasks.spawn(self.clone().process(e));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(target: TARGET, error = %e, "cannot claim queue entries")
                    }
                }
            }
            // Sleep until something may be due: a queue event, a finished entry (a
            // slot is free), or the scan interval.
            let sleep = tokio::time::sleep(self.scan);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = &mut sleep => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => break,
                    ev = events.recv() => match ev {
                        Ok(StoreEvent::Queue) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Closed) => {
                            events = self.store.subscribe();
                            break;
                        }
                    },
                }
            }
        }
        tracing::info!(target: TARGET, in_progress = tasks.len(), "outbound delivery stopping: finishing deliveries in progress");
        while tasks.join_next().await.is_some() {}
        tracing::info!(target: TARGET, "outbound delivery stopped");
    }

    /// Delivers one claimed entry, renewing its lease while that takes.
    async fn process(self: Arc<Self>, entry: QueuedMessage) {
        let id = entry.id;
        // Released however this ends, a panic included: the entry's lease then
        // expires and another attempt claims it, instead of it being skipped as "in
        // flight" until the next restart.
        let _in_flight = InFlight { worker: &self, id };
        let work = self.clone().deliver_entry(entry);
        tokio::pin!(work);
        let period = Duration::from_secs((self.lease / 3).max(1) as u64);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = &mut work => break,
                _ = renew.tick() => {
                    if let Err(e) = self.store.queue_progress(id, &[], &[], now() + self.lease).await {
                        tracing::warn!(target: TARGET, queue_id = id.get(), error = %e, "cannot renew the queue lease");
                    }
                }
            }
        }
    }

    async fn deliver_entry(self: Arc<Self>, entry: QueuedMessage) {
        let id = entry.id;
        // The body (and a notice returning it) stays in memory while the entry is
        // delivered: wait for its share of the budget first (the lease is renewed
        // meanwhile). A message larger than the whole budget takes all of it.
        let full_return = entry.params.ret() == Ret::Full;
        let Ok(mut memory) = self
            .bodies
            .clone()
            .acquire_many_owned(body_permits(held_octets(entry.size, full_return, false)))
            .await
        else {
            return;
        };
        let data = match self.store.read_blob(entry.blob_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: TARGET, queue_id = id.get(), error = %e, "cannot read the queued message; will retry");
                let _ = self
                    .store
                    .queue_update(id, &[], &[], entry.delay_notified)
                    .await;
                return;
            }
        };
        let params = entry.params.clone();
        let info = MessageInfo::of(&data);
        if info.eight_bit {
            // It may need a 7-bit copy: a larger share. The first is given back
            // before waiting, so no two entries can each hold a part and wait for the
            // other's.
            drop(memory);
            memory = match self
                .bodies
                .clone()
                .acquire_many_owned(body_permits(held_octets(entry.size, full_return, true)))
                .await
            {
                Ok(m) => m,
                Err(_) => return,
            };
        }
        let _memory = memory;
        let now = now();
        let mut groups: BTreeMap<String, (Arc<Connector>, String, Vec<String>)> = BTreeMap::new();
        let mut immediate = Vec::new();
        for r in &entry.recipients {
            if r.status != RecipientStatus::Pending || r.next_attempt > now {
                continue;
            }
            let Some(domain) = domain_of(&r.address) else {
                immediate.push(RecipientResult {
                    address: r.address.clone(),
                    outcome: Outcome::failed(Enhanced::new(5, 1, 3), "the address has no domain"),
                    remote: None,
                    remote_dsn: false,
                });
                continue;
            };
            let connector = self.connectors.select(&domain);
            let key = connector.destination_key(&domain);
            groups
                .entry(key)
                .or_insert_with(|| (connector, domain, Vec::new()))
                .2
                .push(r.address.clone());
        }
        let ctx = Arc::new(EntryCtx {
            entry,
            params,
            data,
            info,
            seven_bit: SevenBitCopy::default(),
            now,
            deleted: AtomicBool::new(false),
        });
        let mut set = JoinSet::new();
        for (key, (connector, domain, rcpts)) in groups {
            set.spawn(
                self.clone()
                    .deliver_destination(ctx.clone(), key, connector, domain, rcpts),
            );
        }
        let mut results = immediate;
        while let Some(r) = set.join_next().await {
            if let Ok(mut rs) = r {
                results.append(&mut rs);
            }
        }
        if ctx.deleted.load(Ordering::Relaxed) {
            tracing::info!(target: TARGET, queue_id = id.get(), "the entry was deleted during delivery");
            return;
        }
        self.finish(&ctx, results).await;
    }

    fn destination(&self, key: &str) -> Arc<Semaphore> {
        self.destinations
            .lock()
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_destination)))
            .clone()
    }

    fn release_destination(&self, key: &str, sem: Arc<Semaphore>) {
        let mut map = self.destinations.lock();
        drop(sem);
        if map.get(key).is_some_and(|s| Arc::strong_count(s) == 1) {
            map.remove(key);
        }
    }

    /// One destination of one entry: connect (within the limits), deliver, and record
    /// the delivered and deferred recipients at once. Permanent failures are returned
    /// and recorded by `finish` together with the notice.
    async fn deliver_destination(
        self: Arc<Self>,
        ctx: Arc<EntryCtx>,
        key: String,
        connector: Arc<Connector>,
        domain: String,
        rcpts: Vec<String>,
    ) -> Vec<RecipientResult> {
        let dest = self.destination(&key);
        let results = {
            let Ok(_slot) = dest.clone().acquire_owned().await else {
                return Vec::new();
            };
            let Ok(_conn) = self.global.clone().acquire_owned().await else {
                return Vec::new();
            };
            if self.shutdown.is_cancelled() || ctx.deleted.load(Ordering::Relaxed) {
                // Not attempted: the recipients stay due for the next start.
                Vec::new()
            } else {
                metrics::gauge!("bulwark_queue_deliveries_in_progress").increment(1.0);
                let (results, attempts) = self.attempt(&ctx, &connector, &domain, &rcpts).await;
                metrics::gauge!("bulwark_queue_deliveries_in_progress").decrement(1.0);
                let now = now();
                let mut updates = Vec::new();
                let mut rest = Vec::new();
                for r in results {
                    match self.settle(&ctx, &r, now) {
                        Some(u) => {
                            updates.push(u);
                            // Recorded as delivered now; `finish` still sends the
                            // "relayed" notice NOTIFY=SUCCESS asked for when the
                            // receiving server does not do DSN (RFC 3461 §5.2.2).
                            if wants_relayed_notice(&ctx.params, &r) {
                                rest.push(r);
                            }
                        }
                        None => rest.push(r),
                    }
                }
                // Durable before the next transaction starts: a crash from here on
                // never re-sends to these recipients.
                match self
                    .store
                    .queue_progress(ctx.entry.id, &updates, &attempts, now + self.lease)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::NotFound(_)) => ctx.deleted.store(true, Ordering::Relaxed),
                    Err(e) => {
                        tracing::error!(target: TARGET, queue_id = ctx.entry.id.get(), error = %e, "cannot record delivery outcomes")
                    }
                }
                rest
            }
        };
        self.release_destination(&key, dest);
        results
    }

    /// The update to record now for a delivered or deferred recipient; None for a
    /// permanent failure (or expiry), which `finish` records with its notice.
    fn settle(&self, ctx: &EntryCtx, r: &RecipientResult, now: i64) -> Option<RecipientUpdate> {
        match r.outcome.verdict {
            Verdict::Delivered => Some(RecipientUpdate {
                address: r.address.clone(),
                status: RecipientStatus::Delivered,
                reply: r.outcome.text.clone(),
                next_attempt: 0,
            }),
            Verdict::Failed => None,
            Verdict::Deferred => {
                let expires = ctx.entry.created + self.lifetime;
                if now >= expires {
                    return None;
                }
                let attempts = ctx.attempts_so_far(&r.address) + 1;
                let next = (now + backoff(attempts, self.retry_initial, self.retry_max))
                    .min(expires)
                    .max(now + 1);
                Some(RecipientUpdate {
                    address: r.address.clone(),
                    status: RecipientStatus::Pending,
                    reply: r.outcome.text.clone(),
                    next_attempt: next,
                })
            }
        }
    }

    /// Routes and tries every address of every host until one server decides.
    async fn attempt(
        &self,
        ctx: &EntryCtx,
        connector: &Connector,
        domain: &str,
        rcpts: &[String],
    ) -> (Vec<RecipientResult>, Vec<DeliveryAttempt>) {
        let id = ctx.entry.id;
        let mut attempts = Vec::new();
        let record = |attempts: &mut Vec<DeliveryAttempt>,
                      rcpt: &str,
                      peer: &str,
                      tls: &Option<String>,
                      o: &Outcome| {
            let tls_text = tls.clone().unwrap_or_else(|| "none".into());
            metrics::counter!("bulwark_delivery_attempts_total", "outcome" => o.verdict.name(), "tls" => tls_label(tls)).increment(1);
            tracing::info!(target: TARGET, queue_id = id.get(), rcpt, peer, tls = %tls_text, connector = %connector.name, outcome = o.verdict.name(), reply = %o.text, "delivery attempt");
            attempts.push(DeliveryAttempt {
                at: now(),
                recipient: rcpt.to_string(),
                peer: peer.to_string(),
                tls: tls_text,
                reply: o.text.clone(),
                outcome: status_of(o.verdict),
            });
        };
        let all = |o: &Outcome, remote: Option<&str>| -> Vec<RecipientResult> {
            rcpts
                .iter()
                .map(|a| RecipientResult {
                    address: a.clone(),
                    outcome: o.clone(),
                    remote: remote.map(str::to_string),
                    remote_dsn: false,
                })
                .collect()
        };
        let hosts = match route::resolve(&self.resolver, domain, connector, &self.own_names)
            .await
            .and_then(|h| route::limit(h, domain, connector, &self.limits))
        {
            Ok(h) => h,
            Err(o) => {
                for r in rcpts {
                    record(&mut attempts, r, &format!("(dns {domain})"), &None, &o);
                }
                return (all(&o, None), attempts);
            }
        };
        let envelope = Envelope {
            return_path: &ctx.entry.return_path,
            recipients: rcpts,
            params: &ctx.params,
            info: ctx.info,
            data: &ctx.data,
            seven_bit: &ctx.seven_bit,
            resign: ctx
                .params
                .dkim_domain
                .as_deref()
                .zip(self.resigner.as_deref()),
        };
        let mut last_temporary: Option<(Outcome, String)> = None;
        let mut last_permanent: Option<(Outcome, String)> = None;
        'hosts: for host in &hosts {
            for ip in &host.addrs {
                if self.shutdown.is_cancelled() {
                    let o =
                        Outcome::deferred(Enhanced::new(4, 3, 2), "the server is shutting down");
                    last_temporary = Some((o, host.name.clone()));
                    break 'hosts;
                }
                let addr = SocketAddr::new(*ip, connector.port);
                let n = self.sessions.fetch_add(1, Ordering::Relaxed);
                let log = self.log.session(&format!("q{id}-{n}"), addr);
                let a =
                    client::deliver(&self.settings, connector, &host.name, addr, &envelope, log)
                        .await;
                match a.result {
                    HostResult::Done(outcomes) => {
                        if outcomes.iter().any(|o| o.verdict == Verdict::Delivered) {
                            metrics::counter!("bulwark_messages_delivered_total", "destination" => "remote").increment(1);
                            metrics::counter!("bulwark_message_bytes_delivered_total", "destination" => "remote")
                                .increment(ctx.data.len() as u64);
                        }
                        let mut out = Vec::with_capacity(rcpts.len());
                        for (rcpt, o) in rcpts.iter().zip(outcomes) {
                            record(&mut attempts, rcpt, &a.peer, &a.tls, &o);
                            out.push(RecipientResult {
                                address: rcpt.clone(),
                                outcome: o,
                                remote: Some(host.name.clone()),
                                remote_dsn: a.remote_dsn,
                            });
                        }
                        return (out, attempts);
                    }
                    HostResult::NextHost(o) => {
                        for rcpt in rcpts {
                            record(&mut attempts, rcpt, &a.peer, &a.tls, &o);
                        }
                        if o.verdict == Verdict::Failed {
                            last_permanent = Some((o, host.name.clone()));
                        } else {
                            last_temporary = Some((o, host.name.clone()));
                        }
                    }
                }
            }
        }
        // No server decided. Permanent only when every server refused permanently.
        let (o, remote) = match (last_temporary, last_permanent) {
            (Some(t), _) => t,
            (None, Some(p)) => p,
            (None, None) => (
                Outcome::deferred(
                    Enhanced::new(4, 4, 4),
                    format!("no usable mail host for {domain}"),
                ),
                String::new(),
            ),
        };
        let remote = (!remote.is_empty()).then_some(remote);
        (all(&o, remote.as_deref()), attempts)
    }

    /// After every destination: notices, then the closing update with the failures,
    /// which also releases the lease (and removes the entry when nothing is pending).
    /// Executes `plan_finish`.
    async fn finish(&self, ctx: &EntryCtx, results: Vec<RecipientResult>) {
        let e = &ctx.entry;
        let now = now();
        let input = FinishInput {
            entry: e,
            params: &ctx.params,
            results: &results,
            started: ctx.now,
            now,
        };
        let policy = FinishPolicy {
            lifetime: self.lifetime,
            delay_notice_after: self.delay_notice_after,
            retry_initial: self.retry_initial,
        };
        let plan = plan_finish(&input, &policy);
        let sender = e.return_path.as_str();
        if plan.backscatter_withheld > 0 {
            tracing::info!(target: TARGET, queue_id = e.id.get(), recipients = plan.backscatter_withheld, "permanent failure of a message whose sender failed SPF/DMARC at intake: no notice (backscatter)");
        }
        let mut notice_ok = true;
        match &plan.failure_notice {
            FailureNotice::None => {}
            FailureNotice::NullSender { recipients } => {
                tracing::info!(target: TARGET, queue_id = e.id.get(), recipients, "permanent failure of a message from <>: no notice (RFC 3464 §2, no bounce to the null sender)");
            }
            FailureNotice::Send(recipients) => {
                let has_failure = recipients.iter().any(|d| d.action == Action::Failed);
                let bytes = self.notice(ctx, recipients, None, now);
                match self.send_notice(sender, bytes).await {
                    Ok(()) => {
                        let kind = if has_failure { "failure" } else { "relayed" };
                        if has_failure {
                            metrics::counter!("bulwark_messages_bounced_total").increment(1);
                            metrics::counter!("bulwark_message_bytes_bounced_total")
                                .increment(e.size);
                        }
                        tracing::info!(target: TARGET, queue_id = e.id.get(), to = sender, kind, recipients = recipients.len(), "delivery status notification sent");
                    }
                    Err(err) => {
                        notice_ok = false;
                        tracing::error!(target: TARGET, queue_id = e.id.get(), error = %err, "cannot send the failure notice; the recipients stay queued");
                    }
                }
            }
        }
        let updates = plan.updates(notice_ok);
        let mut delay_sent = false;
        if let DelayNotice::Send(still) = &plan.delay_notice {
            let bytes = self.notice(ctx, still, Some(plan.expires), now);
            match self.send_notice(sender, bytes).await {
                Ok(()) => {
                    metrics::counter!("bulwark_delivery_delay_notices_total").increment(1);
                    tracing::info!(target: TARGET, queue_id = e.id.get(), to = sender, recipients = still.len(), "delay notice sent");
                    delay_sent = true;
                }
                Err(err) => {
                    tracing::error!(target: TARGET, queue_id = e.id.get(), error = %err, "cannot send the delay notice; will try again")
                }
            }
        }
        match self
            .store
            .queue_update(e.id, &updates, &[], plan.delay_notified(delay_sent))
            .await
        {
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(err) => {
                tracing::error!(target: TARGET, queue_id = e.id.get(), error = %err, "cannot record the end of the attempt; the lease will expire")
            }
        }
    }

    /// A notice about this entry to its sender (RFC 3464).
    fn notice(
        &self,
        ctx: &EntryCtx,
        recipients: &[DsnRecipient],
        retry_until: Option<i64>,
        now: i64,
    ) -> Vec<u8> {
        dsn::build(&dsn::Report {
            reporting_mta: &self.hostname,
            to: &ctx.entry.return_path,
            envid: ctx.params.envid.as_deref(),
            arrival: ctx.entry.created,
            retry_until,
            recipients,
            original: &ctx.data,
            ret: ctx.params.ret(),
            now,
        })
    }

    /// Delivers a notice: into the sender's mailboxes when the sender is local (its
    /// aliases' remote targets get a queued copy), else queued for delivery — always
    /// with the null reverse-path, so it can never bounce back.
    async fn send_notice(&self, to: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let Some(recipients) = Recipients::of(to, self.store.resolve(to).await?) else {
            tracing::warn!(target: TARGET, to, "the sender's local address does not exist; notice dropped");
            return Ok(());
        };
        let env = bulwark_store::Envelope {
            return_path: "",
            trace: &[],
            folder: Folder::Inbox,
            internal_date: now(),
            params: DeliveryParams::default(),
        };
        if let Some(ingest) = plan_delivery(&recipients, env, bytes) {
            self.store.ingest(ingest).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b: Vec<i64> = (1..=9).map(|n| backoff(n, 60, 3600)).collect();
        assert_eq!(b, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(0, 60, 3600), 60);
        assert_eq!(backoff(u32::MAX, 60, 3600), 3600);
        assert_eq!(backoff(3, 1, 2), 2);
    }

    #[test]
    fn body_budget_shares() {
        // One copy of the body, rounded up to whole KiB.
        assert_eq!(body_permits(0), 1);
        assert_eq!(body_permits(4096), 5);
        assert_eq!(body_permits(4095), 4);
        assert_eq!(body_permits(25 * 1024 * 1024), 25 * 1024 + 1);
        // Ten messages of the largest default size fit at once, not more: the rest
        // wait for memory instead of being read.
        let largest = body_permits(held_octets(25 * 1024 * 1024, false, false));
        assert_eq!(BODY_BUDGET_KIB / largest, 10);
        // A message beyond the budget takes all of it and still goes.
        assert_eq!(body_permits(u64::MAX), BODY_BUDGET_KIB);
        assert_eq!(body_permits(1 << 40), BODY_BUDGET_KIB);
    }

    #[test]
    fn a_delivery_holds_the_body_and_only_the_copies_it_may_make() {
        // No dot-stuffed copy: the client streams the body.
        assert_eq!(held_octets(1000, false, false), 1000);
        // RET=FULL: a failure notice carries the message.
        assert_eq!(held_octets(1000, true, false), 2000);
        // 8-bit: two 7-bit copies while converting, each at quoted-printable's worst
        // case with a margin.
        assert_eq!(held_octets(1000, false, true), 7500);
        assert_eq!(held_octets(1000, true, true), 8500);
        assert_eq!(held_octets(u64::MAX, true, true), u64::MAX);
    }
}
