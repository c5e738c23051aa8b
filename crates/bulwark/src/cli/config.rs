//! `bulwark config check`.

use std::path::Path;
use std::process::ExitCode;

use bulwark_tls::Severity;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate bulwark.toml and the certificate/key it names; exit non-zero on errors.
    Check,
}

pub fn run(dir: &Path, cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check => check(dir),
    }
}

fn check(dir: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match bulwark_config::Config::load(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = bulwark_tls::check_files(
        &cfg.cert_path(),
        &cfg.key_path(),
        &cfg.config.server.hostname,
        super::now_unix(),
    );
    let mut errors = 0;
    for p in &problems {
        let level = match p.severity {
            Severity::Error => {
                errors += 1;
                "error"
            }
            Severity::Warning => "warning",
        };
        eprintln!(
            "{level}: {} (tls.cert / tls.key)\n  fix: {}",
            p.message, p.fix
        );
    }
    if errors > 0 {
        eprintln!("{}: {errors} error(s)", cfg.file.display());
        return Ok(ExitCode::FAILURE);
    }
    println!("{}: ok", cfg.file.display());
    Ok(ExitCode::SUCCESS)
}
