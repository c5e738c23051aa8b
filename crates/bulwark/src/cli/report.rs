//! `bulwark report`: the data-path table from the live configuration, optionally with
//! what the running listeners really offer (`--probe`).

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// JSON instead of an aligned table.
    #[arg(long, conflicts_with = "markdown")]
    json: bool,
    /// A Markdown table (as in DATA-PATHS.md).
    #[arg(long)]
    markdown: bool,
    /// Also connect to each running listener from this machine and record what it
    /// offers (STARTTLS, AUTH before/after TLS, TLS versions, certificate), flagging
    /// every difference from the configuration. The server must be running.
    #[arg(long)]
    probe: bool,
}

pub fn run(dir: &Path, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (cfg, issues) = bulwark_audit::load_lenient(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in &issues {
        eprintln!("warning: {}: {i}", cfg.file.display());
    }
    let report = super::block_on_value(bulwark_audit::report(&cfg, args.probe))??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json())?);
    } else if args.markdown {
        print!("{}", report.markdown());
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}
