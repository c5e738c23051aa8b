//! `bulwark store compact`: give the space of deleted messages back to the file
//! system now (the running server does it in the background, in small steps).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Give the space of deleted messages back to the file system now. Works while
    /// the server runs; a store made before space reclamation existed is rewritten
    /// once (VACUUM: stop the server first; needs its size again in free disk space).
    Compact,
}

pub fn run(dir: &Path, cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Compact => compact(dir),
    }
}

fn compact(dir: &Path) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(dir)?;
    let store = cfg.store_path();
    // A rewrite (VACUUM) would hold the write lock for as long as it takes to copy the
    // whole database: the running server's deliveries would time out meanwhile.
    let server_running = bulwark_audit::RunState::read(&cfg.run_dir()).is_some();
    let c = bulwark_store::sqlite::compact(&store, !server_running)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot compact the store in {}", store.display()))?;
    keep_owner(&store)?;
    println!(
        "store {}: {} → {}{}",
        store.display(),
        human(c.file_bytes_before),
        human(c.file_bytes_after),
        if c.rewritten {
            " (rewritten once; from now on the server gives space back by itself)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Run as root on a store the server's unprivileged user owns, SQLite may have made
/// its -wal/-shm files root's; give them back, or `serve` would refuse the directory.
fn keep_owner(store: &Path) -> anyhow::Result<()> {
    let owner = std::fs::metadata(store)?;
    for entry in std::fs::read_dir(store)?.flatten() {
        let m = entry.metadata()?;
        if m.uid() != owner.uid() || m.gid() != owner.gid() {
            std::os::unix::fs::chown(entry.path(), Some(owner.uid()), Some(owner.gid()))
                .with_context(|| {
                    format!("cannot give {} back to its owner", entry.path().display())
                })?;
        }
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
