//! The scenarios: each drives one server (Bulwark or the reference) with bounded
//! counts and durations, measures client-side latency and the server's resources, and
//! returns a `RunResult`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::Mutex;
use tokio::time::timeout;

use crate::conn::{Conn, Tls};
use crate::procstat::Sampler;
use crate::stats::{Latencies, RunResult};
use crate::{imap, message, pop3, smtp};

/// What every scenario needs to know about the server under test.
pub struct Target {
    /// "bulwark" or "reference".
    pub name: String,
    /// Root PIDs of the server's process trees (see `procstat`).
    pub roots: Vec<i32>,
    pub tls: Tls,
    /// Timeout of one operation (a transaction, a FETCH, a login).
    pub op_timeout: Duration,
}

impl Target {
    fn sampler(&self) -> Sampler {
        Sampler::start(self.roots.clone(), Duration::from_millis(200))
    }
}

async fn bounded<T>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    timeout(d, f)
        .await
        .map_err(|_| anyhow::anyhow!("{what} timed out after {d:?}"))?
}

/// An IMAP login over implicit TLS (the scenarios use 993 on both servers).
pub async fn imap_login(
    t: &Target,
    addr: SocketAddr,
    user: &str,
    pass: &str,
) -> anyhow::Result<imap::Client> {
    bounded(t.op_timeout, "IMAP login", async {
        let conn = Conn::connect(addr, Some(&t.tls)).await?;
        let mut c = imap::Client::open(conn, None).await?;
        c.login(user, pass).await?;
        Ok(c)
    })
    .await
}

// ---------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------

pub struct SmtpLoad {
    pub scenario: String,
    pub addr: SocketAddr,
    pub starttls: bool,
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: String,
    pub size: usize,
    pub clients: usize,
    pub messages: u64,
    pub per_session: u64,
    pub max_duration: Duration,
    /// Where delivery is checked: count in the recipient's INBOX via IMAP (993).
    pub verify: Option<Verify>,
    /// Relay scenario: the sink whose count must reach the number sent.
    pub sink: Option<Arc<crate::sink::Sink>>,
}

/// Where delivery is checked: the recipient's INBOX.
pub enum Verify {
    /// IMAP STATUS over TLS.
    Imap {
        imaps: SocketAddr,
        user: String,
        pass: String,
    },
    /// Bulwark's store read directly (a second SQLite connection sees only committed,
    /// fsynced transactions) — for a Bulwark without IMAP.
    Store {
        store: Arc<dyn bulwark_store::Store>,
        user: String,
    },
}

async fn inbox_count(t: &Target, v: &Verify) -> anyhow::Result<u64> {
    match v {
        Verify::Imap { imaps, user, pass } => {
            let mut c = imap_login(t, *imaps, user, pass).await?;
            let n = bounded(t.op_timeout, "STATUS", c.status_messages("INBOX")).await?;
            let _ = c.logout().await;
            Ok(n)
        }
        Verify::Store { store, user } => {
            let account = store
                .account(user)
                .await?
                .with_context(|| format!("no account {user}"))?;
            let mb = store
                .mailbox(account.id, "INBOX")
                .await?
                .context("no INBOX")?;
            Ok(u64::from(store.mailbox_status(mb.id).await?.messages))
        }
    }
}

/// Sends `messages` messages from `clients` concurrent clients; the run ends when
/// every accepted message is in the mailbox (or at the sink), so throughput counts
/// durable delivery, not just acceptance.
pub async fn smtp_load(t: &Target, l: SmtpLoad) -> anyhow::Result<RunResult> {
    let before = match &l.verify {
        Some(v) => Some(inbox_count(t, v).await.context("STATUS before the run")?),
        None => None,
    };
    let sink_before = l.sink.as_ref().map_or(0, |s| s.count());
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let l = Arc::new(l);
    let start = Instant::now();
    let deadline = start + l.max_duration;
    let sampler = t.sampler();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..l.clients {
        let (l, next, ok, errors, first_error) = (
            l.clone(),
            next.clone(),
            ok.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let tls = t.tls.clone();
        let op_timeout = t.op_timeout;
        tasks.spawn(async move {
            let mut lat = Latencies::default();
            let mut session: Option<(smtp::Session, u64)> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= l.messages || Instant::now() >= deadline {
                    break;
                }
                if errors.load(Ordering::Relaxed) > 50 + l.messages / 10 {
                    break;
                }
                let msg = message::dot_stuff(&message::build(
                    message::saturating_usize(i),
                    l.size,
                    &l.from,
                    &l.to,
                ));
                let t0 = Instant::now();
                let res: anyhow::Result<()> = bounded(op_timeout, "SMTP transaction", async {
                    if session.is_none() {
                        let conn = Conn::connect(l.addr, None).await?;
                        let o = smtp::SessionOptions {
                            starttls: l.starttls.then_some(&tls),
                            auth: l.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
                            helo: "client.bench.example.test",
                        };
                        session = Some((smtp::Session::open(conn, &o).await?, 0));
                    }
                    let (s, n) = session.as_mut().context("no session")?;
                    s.send(&l.from, &[l.to.as_str()], &msg).await?;
                    *n += 1;
                    Ok(())
                })
                .await;
                match res {
                    Ok(()) => {
                        lat.record(t0.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                        if session.as_ref().is_some_and(|(_, n)| *n >= l.per_session) {
                            if let Some((s, _)) = session.take() {
                                let _ = timeout(op_timeout, s.quit()).await;
                            }
                        }
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        session = None;
                        let mut f = first_error.lock().await;
                        if f.is_none() {
                            *f = Some(format!("{e:#}"));
                        }
                    }
                }
            }
            if let Some((s, _)) = session.take() {
                let _ = timeout(op_timeout, s.quit()).await;
            }
            lat
        });
    }
    let mut lat = Latencies::default();
    while let Some(r) = tasks.join_next().await {
        lat.merge(r?);
    }
    let accepted = ok.load(Ordering::Relaxed);
    let delivered = wait_for_delivery(t, &l, before, sink_before, accepted).await?;
    let elapsed = start.elapsed();
    let usage = sampler.finish();
    let errs = errors.load(Ordering::Relaxed) + accepted.saturating_sub(delivered);
    let mut r = RunResult::new(
        &l.scenario,
        &t.name,
        "msgs",
        delivered.min(accepted),
        errs,
        elapsed,
        &lat,
    );
    r.server = usage;
    r.note = format!(
        "{} clients, {} B, {}{}; accepted {accepted}, delivered {delivered}",
        l.clients,
        l.size,
        if l.starttls { "STARTTLS" } else { "plain" },
        if l.auth.is_some() { " + AUTH" } else { "" },
    );
    if let Some(e) = first_error.lock().await.take() {
        r.note.push_str(&format!("; first error: {e}"));
    }
    Ok(r)
}

/// Waits (at most 120 s) for durable delivery of the `accepted` messages: counted in
/// the INBOX (`before` it held that many), at the sink (it had `sink_before`), or,
/// with neither, taken as delivered once accepted. Returns the count delivered.
async fn wait_for_delivery(
    t: &Target,
    l: &SmtpLoad,
    before: Option<u64>,
    sink_before: u64,
    accepted: u64,
) -> anyhow::Result<u64> {
    let mut delivered;
    let wait_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let (Some(v), Some(b)) = (&l.verify, before) {
            delivered = inbox_count(t, v).await?.saturating_sub(b);
        } else if let Some(s) = &l.sink {
            delivered = s.count() - sink_before;
        } else {
            delivered = accepted;
        }
        if delivered >= accepted || Instant::now() >= wait_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(delivered)
}

// ---------------------------------------------------------------------------------
// IMAP
// ---------------------------------------------------------------------------------

pub struct ImapRead {
    pub scenario: String,
    pub imaps: SocketAddr,
    pub user: String,
    pub pass: String,
    /// What one iteration does after LOGIN.
    pub kind: ImapReadKind,
    /// Messages the mailbox must hold.
    pub expect: u64,
    /// Measured iterations (after one warm-up).
    pub repeat: usize,
}

pub enum ImapReadKind {
    /// `SELECT` + `FETCH 1:* <items>`; checks one FETCH response per message.
    Fetch(String),
    /// `SELECT` + `SEARCH <criteria>`; checks the number of hits.
    Search(String, u64),
    /// SELECT alone.
    Select,
}

/// Repeats SELECT + FETCH/SEARCH (or SELECT alone) on one mailbox: one warm-up, then
/// `repeat` measured iterations, each on a fresh logged-in connection (the login is not
/// timed). Throughput is messages processed per second; latency is per iteration.
pub async fn imap_read(t: &Target, s: ImapRead) -> anyhow::Result<RunResult> {
    let mut lat = Latencies::default();
    let mut errors = 0;
    let mut total = Duration::ZERO;
    let mut first_error = None;
    let mut sampler = None;
    for iter in 0..=s.repeat {
        if iter == 1 {
            sampler = Some(t.sampler());
        }
        let mut c = imap_login(t, s.imaps, &s.user, &s.pass).await?;
        let t0 = Instant::now();
        let res: anyhow::Result<()> = bounded(t.op_timeout * 4, "IMAP iteration", async {
            let exists = c.select("INBOX").await?;
            if exists != s.expect {
                bail!("SELECT: {exists} messages, expected {}", s.expect);
            }
            match &s.kind {
                ImapReadKind::Fetch(items) => {
                    let u = c.run(&format!("FETCH 1:* {items}")).await?;
                    if u.fetches != s.expect {
                        bail!(
                            "FETCH returned {} responses, expected {}",
                            u.fetches,
                            s.expect
                        );
                    }
                }
                ImapReadKind::Search(criteria, hits) => {
                    let u = c.run(&format!("SEARCH {criteria}")).await?;
                    if u.search.len() as u64 != *hits {
                        bail!("SEARCH found {}, expected {hits}", u.search.len());
                    }
                }
                ImapReadKind::Select => {}
            }
            Ok(())
        })
        .await;
        let d = t0.elapsed();
        match res {
            Ok(()) if iter > 0 => {
                lat.record(d);
                total += d;
            }
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        let _ = timeout(t.op_timeout, c.logout()).await;
    }
    let usage = sampler.map(Sampler::finish).unwrap_or_default();
    let ok = lat.len() as u64;
    let (unit, per) = match s.kind {
        ImapReadKind::Select => ("selects", 1),
        _ => ("msgs", s.expect),
    };
    let mut r = RunResult::new(&s.scenario, &t.name, unit, ok * per, errors, total, &lat);
    r.server = usage;
    r.note = match &s.kind {
        ImapReadKind::Fetch(items) => format!(
            "FETCH 1:* {items} of {} messages, {} runs",
            s.expect, s.repeat
        ),
        ImapReadKind::Search(c, h) => format!(
            "SEARCH {c} over {} messages ({h} hits), {} runs",
            s.expect, s.repeat
        ),
        ImapReadKind::Select => format!("SELECT of {} messages, {} runs", s.expect, s.repeat),
    };
    if let Some(e) = first_error {
        r.note.push_str(&format!("; first error: {e}"));
    }
    Ok(r)
}

pub struct IdleLoad {
    pub scenario: String,
    pub imaps: SocketAddr,
    pub user: String,
    pub pass: String,
    pub connections: usize,
    /// Connections being set up at once.
    pub parallel: usize,
    /// How long all connections stay idle before memory is read.
    pub settle: Duration,
    pub max_duration: Duration,
}

/// Opens `connections` IMAP connections over TLS, each LOGIN + SELECT INBOX + IDLE,
/// waits `settle`, then reads the server's memory (RSS and PSS summed over its
/// processes). Throughput is connections established per second.
pub async fn imap_idle(t: &Target, s: IdleLoad) -> anyhow::Result<RunResult> {
    let base = crate::procstat::snapshot(&t.roots);
    let base_pss = crate::procstat::pss_mib(&t.roots);
    let sampler = t.sampler();
    let start = Instant::now();
    let deadline = start + s.max_duration;
    let sem = Arc::new(tokio::sync::Semaphore::new(s.parallel));
    let release = Arc::new(tokio::sync::Notify::new());
    let (done_tx, mut done_rx) =
        tokio::sync::mpsc::channel::<anyhow::Result<Duration>>(s.connections);
    let s = Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..s.connections {
        let (sem, release, done_tx, s) = (sem.clone(), release.clone(), done_tx.clone(), s.clone());
        let tls = t.tls.clone();
        let op = t.op_timeout;
        tasks.spawn(async move {
            let permit = sem.acquire_owned().await;
            let t0 = Instant::now();
            let res = timeout(op, async {
                let conn = Conn::connect(s.imaps, Some(&tls)).await?;
                let mut c = imap::Client::open(conn, None).await?;
                c.login(&s.user, &s.pass).await?;
                c.select("INBOX").await?;
                let tag = c.idle_start().await?;
                anyhow::Ok((c, tag))
            })
            .await
            .map_err(|_| anyhow::anyhow!("IDLE set-up timed out"))
            .and_then(|r| r);
            drop(permit);
            match res {
                Ok((mut c, tag)) => {
                    let _ = done_tx.send(Ok(t0.elapsed())).await;
                    release.notified().await;
                    let _ = timeout(op, async {
                        c.idle_done(&tag).await?;
                        c.logout().await
                    })
                    .await;
                }
                Err(e) => {
                    let _ = done_tx.send(Err(e)).await;
                }
            }
        });
    }
    drop(done_tx);
    let mut lat = Latencies::default();
    let mut errors = 0u64;
    let mut first_error = None;
    let mut seen = 0;
    while seen < s.connections {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, done_rx.recv()).await {
            Ok(Some(Ok(d))) => lat.record(d),
            Ok(Some(Err(e))) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Ok(None) | Err(_) => break,
        }
        seen += 1;
    }
    let established = start.elapsed();
    tokio::time::sleep(s.settle).await;
    let at_rest = sampler.now();
    let pss = crate::procstat::pss_mib(sampler.roots());
    // Let every connection finish its IDLE and log out (bounded).
    release.notify_waiters();
    let _ = timeout(Duration::from_secs(60), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let mut usage = sampler.finish();
    usage.pss_mib = Some(pss);
    usage.rest_rss_mib = Some(at_rest.rss_mib);
    let ok = lat.len() as u64;
    let mut r = RunResult::new(
        &s.scenario,
        &t.name,
        "connections",
        ok,
        errors,
        established,
        &lat,
    );
    r.server = usage;
    let per_conn_kib = if ok > 0 {
        (at_rest.rss_mib - base.rss_mib) * 1024.0 / ok as f64
    } else {
        0.0
    };
    r.note = format!(
        "{ok} of {} IDLE over TLS; at rest: RSS sum {:.1} MiB, PSS sum {pss:.1} MiB \
         (before: RSS {:.1} / PSS {base_pss:.1}), {} processes, {per_conn_kib:.1} KiB RSS per connection",
        s.connections, at_rest.rss_mib, base.rss_mib, at_rest.processes
    );
    if let Some(e) = first_error {
        r.note.push_str(&format!("; first error: {e}"));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------
// POP3
// ---------------------------------------------------------------------------------

pub struct Pop3Retr {
    pub scenario: String,
    pub pop3s: SocketAddr,
    pub user: String,
    pub pass: String,
    pub expect: u64,
    pub repeat: usize,
}

/// RETR of every message over implicit TLS: one warm-up pass, then `repeat` measured
/// passes. Latency is per RETR; throughput is messages per second.
pub async fn pop3_retr(t: &Target, s: Pop3Retr) -> anyhow::Result<RunResult> {
    let mut lat = Latencies::default();
    let mut errors = 0;
    let mut first_error = None;
    let mut total = Duration::ZERO;
    let mut octets = 0u64;
    let mut sampler = None;
    for iter in 0..=s.repeat {
        if iter == 1 {
            sampler = Some(t.sampler());
        }
        let res: anyhow::Result<()> = async {
            let mut c = bounded(t.op_timeout, "POP3 login", async {
                let conn = Conn::connect(s.pop3s, Some(&t.tls)).await?;
                let mut c = pop3::Client::open(conn, None).await?;
                c.login(&s.user, &s.pass).await?;
                Ok(c)
            })
            .await?;
            let (n, _) = bounded(t.op_timeout, "STAT", c.stat()).await?;
            if n != s.expect {
                bail!("STAT: {n} messages, expected {}", s.expect);
            }
            let t_pass = Instant::now();
            for i in 1..=n {
                let t0 = Instant::now();
                let m = bounded(t.op_timeout, "RETR", c.retr(i)).await?;
                if m.is_empty() {
                    bail!("RETR {i}: empty message");
                }
                if iter > 0 {
                    lat.record(t0.elapsed());
                    octets += m.len() as u64;
                }
            }
            if iter > 0 {
                total += t_pass.elapsed();
            }
            let _ = timeout(t.op_timeout, c.quit()).await;
            Ok(())
        }
        .await;
        if let Err(e) = res {
            errors += 1;
            first_error.get_or_insert_with(|| format!("{e:#}"));
        }
    }
    let usage = sampler.map(Sampler::finish).unwrap_or_default();
    let mut r = RunResult::new(
        &s.scenario,
        &t.name,
        "msgs",
        lat.len() as u64,
        errors,
        total,
        &lat,
    );
    r.server = usage;
    r.note = format!(
        "RETR of {} messages over TLS, {} runs, {:.1} MiB/s",
        s.expect,
        s.repeat,
        if total.is_zero() {
            0.0
        } else {
            octets as f64 / total.as_secs_f64() / (1024.0 * 1024.0)
        }
    );
    if let Some(e) = first_error {
        r.note.push_str(&format!("; first error: {e}"));
    }
    Ok(r)
}

pub struct ImapAppend {
    pub scenario: String,
    pub imaps: SocketAddr,
    pub user: String,
    pub pass: String,
    pub clients: usize,
    pub messages: u64,
    pub size: usize,
    pub max_duration: Duration,
}

/// APPEND from `clients` logged-in connections over TLS; an APPEND OK means the
/// message is stored durably on both servers. The run ends when STATUS shows them all.
pub async fn imap_append(t: &Target, s: ImapAppend) -> anyhow::Result<RunResult> {
    let mut c = imap_login(t, s.imaps, &s.user, &s.pass).await?;
    let before = c.status_messages("INBOX").await?;
    let s = Arc::new(s);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let mut clients = Vec::new();
    for _ in 0..s.clients {
        clients.push(imap_login(t, s.imaps, &s.user, &s.pass).await?);
    }
    let sampler = t.sampler();
    let start = Instant::now();
    let deadline = start + s.max_duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut cl in clients {
        let (s, next, errors, first_error) =
            (s.clone(), next.clone(), errors.clone(), first_error.clone());
        let op = t.op_timeout;
        tasks.spawn(async move {
            let mut lat = Latencies::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= s.messages
                    || Instant::now() >= deadline
                    || errors.load(Ordering::Relaxed) > 50
                {
                    break;
                }
                let m = message::build(
                    message::saturating_usize(i),
                    s.size,
                    "sender@bench.example.test",
                    &s.user,
                );
                let t0 = Instant::now();
                match bounded(op, "APPEND", cl.append("INBOX", &m)).await {
                    Ok(()) => lat.record(t0.elapsed()),
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .await
                            .get_or_insert_with(|| format!("{e:#}"));
                        break;
                    }
                }
            }
            let _ = timeout(op, cl.logout()).await;
            lat
        });
    }
    let mut lat = Latencies::default();
    while let Some(r) = tasks.join_next().await {
        lat.merge(r?);
    }
    let elapsed = start.elapsed();
    let usage = sampler.finish();
    let after = c.status_messages("INBOX").await?;
    let _ = c.logout().await;
    let stored = after.saturating_sub(before);
    let acked = lat.len() as u64;
    let errs = errors.load(Ordering::Relaxed) + acked.saturating_sub(stored);
    let mut r = RunResult::new(
        &s.scenario,
        &t.name,
        "msgs",
        acked.min(stored),
        errs,
        elapsed,
        &lat,
    );
    r.server = usage;
    r.note = format!(
        "APPEND of {} B from {} clients over TLS; acknowledged {acked}, stored {stored}",
        s.size, s.clients
    );
    if let Some(e) = first_error.lock().await.take() {
        r.note.push_str(&format!("; first error: {e}"));
    }
    Ok(r)
}
