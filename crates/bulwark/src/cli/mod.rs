//! Administrative subcommands. Each works on the data directory directly and can run
//! while the server runs (the store handles concurrent writers).

pub mod aliases;
pub mod audit;
pub mod cert;
pub mod config;
pub mod dkim;
pub mod domains;
pub mod init;
pub mod queue;
pub mod report;
pub mod spf;
pub mod store;
pub mod users;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use bulwark_config::{Config, LoadedConfig};
use bulwark_store::{SharedStore, SqliteStore};

/// Runs an async command on a small runtime.
pub fn block_on(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

/// Runs a future on a small runtime and returns its output.
pub fn block_on_value<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f))
}

/// Loads the configuration, with the file/line/fix message on error.
pub fn load_config(dir: &Path) -> anyhow::Result<LoadedConfig> {
    Config::load(dir).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Opens the configured store.
pub fn open_store(cfg: &LoadedConfig) -> anyhow::Result<SharedStore> {
    let path = cfg.store_path();
    let store = SqliteStore::open(&path)
        .with_context(|| format!("cannot open the store in {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Loads config and opens the store: what most subcommands need.
pub fn store_for(dir: &Path) -> anyhow::Result<(LoadedConfig, SharedStore)> {
    let cfg = load_config(dir)?;
    let store = open_store(&cfg)?;
    Ok((cfg, store))
}

/// Reads a password: the first line of stdin with `--password-stdin`, else from the
/// terminal without echo, twice.
pub fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let a = rpassword::prompt_password("Password: ")
            .context("cannot read the password from the terminal (use --password-stdin)")?;
        let b = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        anyhow::ensure!(a == b, "the passwords differ");
        a
    };
    anyhow::ensure!(
        pw.chars().count() >= bulwark_auth::MIN_PASSWORD_LEN,
        "the password must have at least {} characters",
        bulwark_auth::MIN_PASSWORD_LEN
    );
    Ok(pw)
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
