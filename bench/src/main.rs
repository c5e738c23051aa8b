//! `bulwark-bench`: the load generator of Bulwark's benchmarks.
//!
//! Speaks SMTP (plain, STARTTLS, AUTH PLAIN), IMAP (LOGIN, SELECT, FETCH, SEARCH,
//! STATUS, APPEND, IDLE) and POP3 (RETR) with and without TLS against any host:port,
//! with bounded counts and durations; reports throughput, p50/p95/p99 latency, errors,
//! and the server's peak RSS and CPU seconds summed over all its processes (read from
//! /proc, see `procstat`). Each run appends one JSON line to `--out`; `report` turns
//! the file into the Markdown table. `bench/run.sh` runs every scenario against
//! Bulwark and the Postfix + Dovecot reference.
//!
//! Not the product: nothing here is used by the server.

// A binary exports nothing: `pub` in its modules means "used by the other modules",
// which is what `unreachable_pub` would make us spell `pub(crate)` throughout.
#![allow(unreachable_pub)]

mod conn;
mod imap;
mod message;
mod pop3;
mod procstat;
mod report;
mod scenarios;
mod seed;
mod sink;
mod smtp;
mod space;
mod stats;
mod sys;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use scenarios::{ImapRead, ImapReadKind, Target};

#[derive(Parser)]
#[command(
    name = "bulwark-bench",
    about = "Load generator for Bulwark's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct TargetArgs {
    /// Name of the server under test in the results: "bulwark" or "reference".
    #[arg(long)]
    target: String,
    /// Root PID of the server's process tree (repeatable).
    #[arg(long = "pid")]
    pids: Vec<i32>,
    /// File holding a root PID (repeatable; Postfix's and Dovecot's master.pid).
    #[arg(long = "pid-file")]
    pid_files: Vec<PathBuf>,
    /// CA (or self-signed certificate) to trust for TLS.
    #[arg(long)]
    ca: PathBuf,
    /// Name expected in the server's certificate.
    #[arg(long, default_value = "mail.example.test")]
    tls_name: String,
    #[arg(long, default_value_t = 60)]
    op_timeout_secs: u64,
    /// Results file (JSON lines) to append to.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Scenario name in the results.
    #[arg(long)]
    scenario: String,
}

#[derive(Args)]
struct Login {
    #[arg(long)]
    user: String,
    #[arg(long, env = "BENCH_PASSWORD", default_value = "bench-password")]
    pass: String,
}

#[derive(Args)]
struct SmtpArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    starttls: bool,
    /// AUTH PLAIN as this user (after STARTTLS); password from --pass.
    #[arg(long)]
    auth_user: Option<String>,
    #[arg(long, env = "BENCH_PASSWORD", default_value = "bench-password")]
    pass: String,
    #[arg(long)]
    from: String,
    #[arg(long)]
    to: String,
    #[arg(long, default_value_t = 4096)]
    size: usize,
    #[arg(long, default_value_t = 1)]
    clients: usize,
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Messages per SMTP session (then QUIT and reconnect).
    #[arg(long, default_value_t = 1)]
    per_session: u64,
    /// Upper bound of the sending phase.
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
    /// Check delivery: count the recipient's INBOX over IMAPS at this address.
    #[arg(long)]
    verify_imaps: Option<SocketAddr>,
    /// Check delivery in Bulwark's store directory instead (a Bulwark without IMAP).
    #[arg(long, conflicts_with = "verify_imaps")]
    verify_store: Option<PathBuf>,
    #[arg(long)]
    verify_user: Option<String>,
}

#[derive(Subcommand)]
enum Cmd {
    /// SMTP load (inbound on 25 or submission on 587); counts a message only once it
    /// is in the recipient's mailbox when --verify-imaps is given.
    Smtp {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        s: SmtpArgs,
    },
    /// Submission → queue → a sink on loopback that this command runs; counts a
    /// message once the sink has it.
    Relay {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        s: SmtpArgs,
        /// Where the sink listens.
        #[arg(long)]
        sink: SocketAddr,
    },
    /// SELECT + FETCH 1:* ITEMS over IMAPS, repeated.
    ImapFetch {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        imaps: SocketAddr,
        #[arg(long, default_value = "(FLAGS ENVELOPE)")]
        items: String,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// SELECT + SEARCH TEXT <the bench word> over IMAPS, repeated.
    // clap prints this doc as the subcommand's help: plain text, not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    ImapSearch {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        imaps: SocketAddr,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// SELECT alone over IMAPS, repeated.
    ImapSelect {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        imaps: SocketAddr,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// Many IMAP connections over TLS in IDLE; reads the server's memory at rest.
    ImapIdle {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        imaps: SocketAddr,
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        #[arg(long, default_value_t = 64)]
        parallel: usize,
        #[arg(long, default_value_t = 5)]
        settle_secs: u64,
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
    },
    /// APPEND over IMAPS from several connections.
    ImapAppend {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        imaps: SocketAddr,
        #[arg(long, default_value_t = 10)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 120)]
        max_secs: u64,
    },
    /// RETR of every message over POP3S, repeated.
    Pop3Retr {
        #[command(flatten)]
        t: TargetArgs,
        #[command(flatten)]
        l: Login,
        #[arg(long)]
        pop3s: SocketAddr,
        #[arg(long)]
        expect: u64,
        #[arg(long, default_value_t = 2)]
        repeat: usize,
    },
    /// The store-space figure: database size after deleting a share of N messages,
    /// after the background reclaim and after `store compact` (Markdown on stdout).
    StoreSpace {
        /// Work directory (a store is created and removed inside it).
        #[arg(long)]
        work: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
        delete_percent: u8,
    },
    /// Seeds a Bulwark account's INBOX through the store crate (server stopped).
    SeedStore {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        first: usize,
    },
    /// Seeds a Maildir for Dovecot with files written directly.
    SeedMaildir {
        #[arg(long)]
        maildir: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        #[arg(long, default_value_t = 0)]
        first: usize,
        /// Owner of the files, UID:GID (Dovecot's mail user).
        #[arg(long)]
        owner: String,
    },
    /// Prints an Argon2id hash (Bulwark's parameters) of the password read from stdin,
    /// so the reference verifies logins at the same cost.
    HashPassword {
        /// A cheap Argon2id hash (m = 1 MiB, t = 1) instead: for the IDLE scenario's
        /// user on both servers, whose 5,000 logins are set-up, not what is measured.
        #[arg(long)]
        cheap: bool,
    },
    /// Replaces an account's password hash in Bulwark's store (server stopped).
    SetPasswordHash {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        user: String,
        /// PHC string.
        #[arg(long)]
        hash: String,
    },
    /// Prints the number of messages that contain the SEARCH word among N.
    SearchHits { count: usize },
    /// Renders a results file as the Markdown table.
    Report {
        #[arg(long)]
        results: PathBuf,
    },
}

fn target(t: &TargetArgs) -> anyhow::Result<Target> {
    let mut roots = t.pids.clone();
    for f in &t.pid_files {
        roots.push(procstat::read_pid_file(f)?);
    }
    Ok(Target {
        name: t.target.clone(),
        roots,
        tls: conn::Tls::from_ca_file(&t.ca, &t.tls_name)?,
        op_timeout: Duration::from_secs(t.op_timeout_secs),
    })
}

fn emit(t: &TargetArgs, r: &stats::RunResult) -> anyhow::Result<()> {
    let line = serde_json::to_string(r)?;
    eprintln!(
        "{:<28} {:<9} {:>10.1} {}/s  p50 {:>8.1} ms  p99 {:>8.1} ms  errors {}  server: peak RSS {:.0} MiB{}, CPU {:.1} s  ({})",
        r.scenario,
        r.target,
        r.throughput,
        r.unit,
        r.p50_ms,
        r.p99_ms,
        r.errors,
        r.server.peak_rss_mib,
        r.server.pss_mib.map_or(String::new(), |p| format!(", PSS {p:.0} MiB")),
        r.server.cpu_secs,
        r.note
    );
    println!("{line}");
    if let Some(out) = &t.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("cannot append to {}", out.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

/// The IDLE scenario needs thousands of descriptors: raise the soft limit to the hard.
fn raise_fd_limit() {
    let _ = sys::raise_open_file_limit();
}

fn smtp_load(
    t: &TargetArgs,
    s: &SmtpArgs,
    sink: Option<Arc<sink::Sink>>,
) -> anyhow::Result<scenarios::SmtpLoad> {
    let user = s.verify_user.clone().unwrap_or_else(|| s.to.clone());
    let verify = match (&s.verify_imaps, &s.verify_store) {
        (Some(imaps), _) => Some(scenarios::Verify::Imap {
            imaps: *imaps,
            user,
            pass: s.pass.clone(),
        }),
        (None, Some(dir)) => Some(scenarios::Verify::Store {
            store: Arc::new(
                bulwark_store::SqliteStore::open(dir)
                    .with_context(|| format!("cannot open the store in {}", dir.display()))?,
            ),
            user,
        }),
        (None, None) => None,
    };
    Ok(scenarios::SmtpLoad {
        scenario: t.scenario.clone(),
        addr: s.addr,
        starttls: s.starttls || s.auth_user.is_some(),
        auth: s.auth_user.clone().map(|u| (u, s.pass.clone())),
        from: s.from.clone(),
        to: s.to.clone(),
        size: s.size,
        clients: s.clients,
        messages: s.messages,
        per_session: s.per_session.max(1),
        max_duration: Duration::from_secs(s.max_secs),
        verify,
        sink,
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Smtp { t, s } => run_smtp(&t, &s).await,
        Cmd::Relay { t, s, sink } => run_relay(&t, &s, sink).await,
        Cmd::ImapFetch {
            t,
            l,
            imaps,
            items,
            expect,
            repeat,
        } => run_imap_read(&t, l, imaps, ImapReadKind::Fetch(items), expect, repeat).await,
        Cmd::ImapSearch {
            t,
            l,
            imaps,
            expect,
            repeat,
        } => run_imap_read(&t, l, imaps, search_kind(expect), expect, repeat).await,
        Cmd::ImapSelect {
            t,
            l,
            imaps,
            expect,
            repeat,
        } => run_imap_read(&t, l, imaps, ImapReadKind::Select, expect, repeat).await,
        Cmd::ImapIdle {
            t,
            l,
            imaps,
            connections,
            parallel,
            settle_secs,
            max_secs,
        } => {
            let load = scenarios::IdleLoad {
                scenario: t.scenario.clone(),
                imaps,
                user: l.user,
                pass: l.pass,
                connections,
                parallel,
                settle: Duration::from_secs(settle_secs),
                max_duration: Duration::from_secs(max_secs),
            };
            run_imap_idle(&t, load).await
        }
        Cmd::ImapAppend {
            t,
            l,
            imaps,
            clients,
            messages,
            size,
            max_secs,
        } => {
            let load = scenarios::ImapAppend {
                scenario: t.scenario.clone(),
                imaps,
                user: l.user,
                pass: l.pass,
                clients,
                messages,
                size,
                max_duration: Duration::from_secs(max_secs),
            };
            run_imap_append(&t, load).await
        }
        Cmd::Pop3Retr {
            t,
            l,
            pop3s,
            expect,
            repeat,
        } => run_pop3_retr(&t, l, pop3s, expect, repeat).await,
        Cmd::StoreSpace {
            work,
            count,
            size,
            delete_percent,
        } => run_store_space(work, count, size, delete_percent).await,
        Cmd::SeedStore {
            store,
            user,
            count,
            size,
            first,
        } => {
            let spec = seed_spec(&user, count, size, first);
            seed::seed_store(&store, &spec).await
        }
        Cmd::SeedMaildir {
            maildir,
            user,
            count,
            size,
            first,
            owner,
        } => {
            let spec = seed_spec(&user, count, size, first);
            seed::seed_maildir(&maildir, &spec, parse_owner(&owner)?)
        }
        Cmd::HashPassword { cheap } => run_hash_password(cheap),
        Cmd::SetPasswordHash { store, user, hash } => {
            run_set_password_hash(&store, &user, &hash).await
        }
        Cmd::SearchHits { count } => {
            println!("{}", message::search_hits(count));
            Ok(())
        }
        Cmd::Report { results } => run_report(&results),
    }
}

/// `smtp`: SMTP load, delivery checked as its arguments say.
async fn run_smtp(t: &TargetArgs, s: &SmtpArgs) -> anyhow::Result<()> {
    let tg = target(t)?;
    let r = scenarios::smtp_load(&tg, smtp_load(t, s, None)?).await?;
    emit(t, &r)
}

/// `relay`: submission through the queue to a sink this command runs.
async fn run_relay(t: &TargetArgs, s: &SmtpArgs, sink: SocketAddr) -> anyhow::Result<()> {
    let tg = target(t)?;
    let sink = Arc::new(sink::Sink::start(sink).await?);
    let sink_addr = sink.addr;
    let mut load = smtp_load(t, s, Some(sink))?;
    load.verify = None;
    let mut r = scenarios::smtp_load(&tg, load).await?;
    r.note
        .push_str(&format!("; counted at the sink on {sink_addr}"));
    emit(t, &r)
}

/// `imap-search`'s SEARCH: the bench word, and how many of `expect` messages hold it.
fn search_kind(expect: u64) -> ImapReadKind {
    let hits = message::search_hits(message::saturating_usize(expect)) as u64;
    ImapReadKind::Search(format!("TEXT {}", message::SEARCH_WORD), hits)
}

/// `imap-fetch`, `imap-search`, `imap-select`: one read scenario over IMAPS.
async fn run_imap_read(
    t: &TargetArgs,
    l: Login,
    imaps: SocketAddr,
    kind: ImapReadKind,
    expect: u64,
    repeat: usize,
) -> anyhow::Result<()> {
    let tg = target(t)?;
    let r = scenarios::imap_read(
        &tg,
        ImapRead {
            scenario: t.scenario.clone(),
            imaps,
            user: l.user,
            pass: l.pass,
            kind,
            expect,
            repeat,
        },
    )
    .await?;
    emit(t, &r)
}

/// `imap-idle`: many connections in IDLE.
async fn run_imap_idle(t: &TargetArgs, load: scenarios::IdleLoad) -> anyhow::Result<()> {
    let tg = target(t)?;
    let r = scenarios::imap_idle(&tg, load).await?;
    emit(t, &r)
}

/// `imap-append`: APPEND from several connections.
async fn run_imap_append(t: &TargetArgs, load: scenarios::ImapAppend) -> anyhow::Result<()> {
    let tg = target(t)?;
    let r = scenarios::imap_append(&tg, load).await?;
    emit(t, &r)
}

/// `pop3-retr`: RETR of every message over POP3S.
async fn run_pop3_retr(
    t: &TargetArgs,
    l: Login,
    pop3s: SocketAddr,
    expect: u64,
    repeat: usize,
) -> anyhow::Result<()> {
    let tg = target(t)?;
    let r = scenarios::pop3_retr(
        &tg,
        scenarios::Pop3Retr {
            scenario: t.scenario.clone(),
            pop3s,
            user: l.user,
            pass: l.pass,
            expect,
            repeat,
        },
    )
    .await?;
    emit(t, &r)
}

/// `store-space`: the store-space figure, Markdown on stdout.
async fn run_store_space(
    work: PathBuf,
    count: usize,
    size: usize,
    delete_percent: u8,
) -> anyhow::Result<()> {
    let md = space::run(&space::SpaceSpec {
        work,
        count,
        size,
        delete_percent: delete_percent.into(),
    })
    .await?;
    print!("{md}");
    Ok(())
}

/// What `seed-store` and `seed-maildir` write: `count` messages of `size` bytes.
fn seed_spec(user: &str, count: usize, size: usize, first: usize) -> seed::SeedSpec<'_> {
    seed::SeedSpec {
        address: user,
        count,
        size,
        first_index: first,
    }
}

/// `--owner UID:GID` of `seed-maildir`.
fn parse_owner(owner: &str) -> anyhow::Result<(u32, u32)> {
    owner
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .context("--owner must be UID:GID")
}

/// `hash-password`: an Argon2id hash of the password on stdin.
fn run_hash_password(cheap: bool) -> anyhow::Result<()> {
    let mut pw = String::new();
    std::io::stdin().read_line(&mut pw)?;
    let pw = pw.trim_end_matches(['\r', '\n']);
    let h = if cheap {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let params = argon2::Params::new(1024, 1, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(pw.as_bytes(), &SaltString::generate(&mut OsRng))
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string()
    } else {
        bulwark_auth::hash_password(pw)?
    };
    println!("{h}");
    Ok(())
}

/// `set-password-hash`: replaces an account's hash in Bulwark's store.
async fn run_set_password_hash(store: &Path, user: &str, hash: &str) -> anyhow::Result<()> {
    use bulwark_store::Store;
    let s = bulwark_store::SqliteStore::open(store)
        .with_context(|| format!("cannot open the store in {}", store.display()))?;
    s.set_password_hash(user, hash).await?;
    Ok(())
}

/// `report`: a results file as the Markdown table.
fn run_report(results: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(results)
        .with_context(|| format!("cannot read {}", results.display()))?;
    print!("{}", report::render(&report::parse(&text)?));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulwark-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulwark-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_uid_colon_gid() {
        assert_eq!(parse_owner("5000:5001").unwrap(), (5000, 5001));
        assert!(parse_owner("5000").is_err());
        assert!(parse_owner("vmail:5001").is_err());
        assert!(parse_owner("5000:").is_err());
    }

    #[test]
    fn search_kind_counts_the_hits_among_expect() {
        match search_kind(10_000) {
            ImapReadKind::Search(criteria, hits) => {
                assert_eq!(criteria, format!("TEXT {}", message::SEARCH_WORD));
                assert_eq!(hits, 100);
            }
            _ => panic!("not a SEARCH"),
        }
    }
}
