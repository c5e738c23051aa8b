//! `bulwark cert show|import|csr|selfsigned`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum CertCommand {
    /// Show the configured certificate: names, issuer, validity, fingerprints.
    Show,
    /// Install a CA-issued chain and its key (checked to match) in place of the current
    /// ones. Send SIGHUP to a running server to start using it.
    Import {
        /// PEM chain, leaf first (e.g. fullchain.pem).
        #[arg(long)]
        cert: PathBuf,
        /// PEM private key.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print a certificate signing request for the current key and host name.
    Csr,
    /// Replace the certificate with a new self-signed one for the host name.
    Selfsigned {
        #[arg(long, default_value_t = super::init::SELF_SIGNED_DAYS)]
        days: u32,
        /// Required: this replaces the current certificate and key.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(dir: &Path, cmd: CertCommand) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(dir)?;
    let hostname = cfg.config.server.hostname.clone();
    match cmd {
        CertCommand::Show => {
            let chain = bulwark_tls::read_chain(&cfg.cert_path())?;
            let now = super::now_unix();
            for (i, der) in chain.iter().enumerate() {
                let info = bulwark_tls::CertInfo::from_der(der.as_ref())?;
                println!("certificate {i}{}", if i == 0 { " (leaf)" } else { "" });
                println!("  subject:     {}", info.subject);
                println!(
                    "  issuer:      {}{}",
                    info.issuer,
                    if info.self_signed {
                        " (self-signed)"
                    } else {
                        ""
                    }
                );
                println!("  names:       {}", info.dns_names.join(", "));
                println!(
                    "  valid:       {} .. {} ({} days left)",
                    fmt_time(info.not_before),
                    fmt_time(info.not_after),
                    info.seconds_to_expiry(now) / 86400
                );
                println!("  sha256:      {}", info.sha256);
                println!("  spki sha256: {}", info.spki_sha256);
            }
        }
        CertCommand::Import { cert, key } => {
            // Validate the pair before touching the live files.
            bulwark_tls::load_certified_key(&cert, &key)?;
            let cert_pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("cannot read {}", cert.display()))?;
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let info = bulwark_tls::CertInfo::from_pem(cert_pem.as_bytes())?;
            bulwark_tls::write_key_and_cert(
                &cfg.key_path(),
                &key_pem,
                &cfg.cert_path(),
                &cert_pem,
            )?;
            if !info.matches_name(&hostname) {
                eprintln!(
                    "warning: the certificate names {:?}, not {hostname}",
                    info.dns_names
                );
            }
            println!(
                "installed certificate for {} (sha256 {})",
                info.dns_names.join(", "),
                info.sha256
            );
            println!(
                "reload a running server with: kill -HUP $(cat {}/bulwark.pid)",
                cfg.run_dir().display()
            );
        }
        CertCommand::Csr => {
            let key_pem = std::fs::read_to_string(cfg.key_path())
                .with_context(|| format!("cannot read {}", cfg.key_path().display()))?;
            print!("{}", bulwark_tls::generate_csr(&hostname, &key_pem)?);
        }
        CertCommand::Selfsigned { days, force } => {
            anyhow::ensure!(
                force,
                "this replaces the current certificate and key; add --force to confirm"
            );
            let g = bulwark_tls::generate_self_signed(&hostname, days)?;
            bulwark_tls::write_key_and_cert(
                &cfg.key_path(),
                &g.key_pem,
                &cfg.cert_path(),
                &g.cert_pem,
            )?;
            println!("new self-signed certificate for {hostname}, valid {days} days");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |t| t.to_rfc3339())
}
