//! The `bulwark` binary: command line, wiring, and `serve`.
//!
//! Owns: parsing the command line, turning library errors into messages for the
//! administrator, and assembling the server (config → store → TLS → auth → listeners).
//! Protocol crates plug in at one place: `serve::handler_for`.

// A binary exports nothing: `pub` in its modules means "used by the other modules",
// which is what `unreachable_pub` would make us spell `pub(crate)` ~70 times.
#![allow(unreachable_pub)]
// The CLI's doc comments are its `--help` text, which names config sections the way
// bulwark.toml writes them (`[server] user`); rustdoc would read those as links.
#![allow(rustdoc::broken_intra_doc_links)]

mod cli;
mod fdlimit;
mod metrics_endpoint;
mod privilege;
mod resign;
mod sender_checks;
mod serve;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bulwark: a mail server in which every communication path is protected by default.
#[derive(Parser)]
#[command(name = "bulwark", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Data directory holding bulwark.toml, the certificate and the store.
    #[arg(
        long,
        global = true,
        env = "BULWARK_DIR",
        default_value = "/var/lib/bulwark"
    )]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: commented config, self-signed certificate, store, domain.
    Init(cli::init::InitArgs),
    /// Run every configured listener until SIGTERM/SIGINT; SIGHUP reloads certificates.
    /// Started as root, binds the listeners and then runs as [server] user.
    Serve(ServeArgs),
    /// Check the configuration.
    #[command(subcommand)]
    Config(cli::config::ConfigCommand),
    /// Manage user accounts (the address is the login name).
    #[command(subcommand)]
    User(cli::users::UserCommand),
    /// Manage the domains this server accepts mail for.
    #[command(subcommand)]
    Domain(cli::domains::DomainCommand),
    /// Manage aliases (an address delivering to accounts or forwarding elsewhere).
    #[command(subcommand)]
    Alias(cli::aliases::AliasCommand),
    /// Manage the TLS certificate every listener presents.
    #[command(subcommand)]
    Cert(cli::cert::CertCommand),
    /// Print every data path (port, authentication, encryption) from the live
    /// configuration; --probe checks what the running listeners really offer.
    Report(cli::report::ReportArgs),
    /// Check configuration, certificate, file permissions, running listeners (--probe)
    /// and DNS records (--dns) against best practice.
    Audit(cli::audit::AuditArgs),
    /// SPF and Sender ID: diagnose a sender, print the record to publish.
    #[command(subcommand)]
    Spf(cli::spf::SpfCommand),
    /// DKIM signing keys for our domains.
    #[command(subcommand)]
    Dkim(cli::dkim::DkimCommand),
    /// Inspect and manage the outbound delivery queue.
    #[command(subcommand)]
    Queue(cli::queue::QueueCommand),
    /// The mail store's disk space: `store compact` gives deleted mail's space back.
    #[command(subcommand)]
    Store(cli::store::StoreCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Run as root when no [server] user is configured or the drop to it cannot be
    /// done (labs and tests only: every session would run with root's privileges).
    #[arg(long)]
    allow_root: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => cli::init::run(&cli.dir, args),
        Command::Serve(a) => serve::run(&cli.dir, a.allow_root),
        Command::Config(c) => cli::config::run(&cli.dir, c),
        Command::User(c) => cli::block_on(cli::users::run(&cli.dir, c)),
        Command::Domain(c) => cli::block_on(cli::domains::run(&cli.dir, c)),
        Command::Alias(c) => cli::block_on(cli::aliases::run(&cli.dir, c)),
        Command::Cert(c) => cli::cert::run(&cli.dir, c),
        Command::Report(a) => cli::report::run(&cli.dir, a),
        Command::Audit(a) => cli::audit::run(&cli.dir, a),
        Command::Spf(c) => cli::spf::run(&cli.dir, c),
        Command::Dkim(c) => cli::dkim::run(&cli.dir, c),
        Command::Queue(c) => cli::block_on(cli::queue::run(&cli.dir, c)),
        Command::Store(c) => cli::store::run(&cli.dir, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bulwark: {e:#}");
            ExitCode::FAILURE
        }
    }
}
