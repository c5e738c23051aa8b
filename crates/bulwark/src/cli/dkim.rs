//! `bulwark dkim generate --domain D`: a DKIM key per domain for signing our users'
//! mail, and the DNS TXT record to publish for it.

use std::path::Path;
use std::process::ExitCode;

use bulwark_senderauth::sign::{generate_key, KeyAlgorithm};
use bulwark_senderauth::DkimSigner;

#[derive(clap::Subcommand)]
pub enum DkimCommand {
    /// Generate signing key(s) for a domain (stored under DIR/dkim/, mode 0600) and
    /// print the DNS records to publish.
    Generate {
        #[arg(long)]
        domain: String,
        /// ed25519 (RFC 8463), rsa (2048 bits) or both (recommended: not every
        /// verifier knows Ed25519 yet).
        #[arg(long, default_value = "both", value_parser = ["ed25519", "rsa", "both"])]
        algorithm: String,
        /// Selector prefix (default: [senderauth.signing] selector).
        #[arg(long)]
        selector: Option<String>,
        /// Replace existing keys (you must then republish the DNS records).
        #[arg(long)]
        force: bool,
    },
    /// List the signing keys and the DNS names they must be published at.
    List,
}

pub fn run(dir: &Path, cmd: DkimCommand) -> anyhow::Result<ExitCode> {
    let cfg = super::load_config(dir)?;
    let signing = &cfg.config.senderauth.signing;
    let key_dir = cfg.path(&signing.key_dir);
    match cmd {
        DkimCommand::Generate {
            domain,
            algorithm,
            selector,
            force,
        } => {
            let selector = selector.unwrap_or_else(|| signing.selector.clone());
            let algs = match algorithm.as_str() {
                "ed25519" => vec![KeyAlgorithm::Ed25519],
                "rsa" => vec![KeyAlgorithm::Rsa2048],
                _ => vec![KeyAlgorithm::Rsa2048, KeyAlgorithm::Ed25519],
            };
            for alg in algs {
                let k = generate_key(&key_dir, &domain, &selector, alg, force)?;
                println!(
                    "# {} key written to {} (mode 0600)",
                    alg.suffix(),
                    k.path.display()
                );
                println!("# publish:");
                println!("{}.  IN TXT  {}", k.dns_name, txt_strings(&k.dns_txt));
                println!();
            }
            if !signing.enabled {
                println!("# note: [senderauth.signing] enabled = false; mail is not signed until you enable it");
            }
            println!("# Restart `bulwark serve` to sign with the new key(s).");
        }
        DkimCommand::List => {
            let signer = DkimSigner::load(&key_dir)?;
            let keys = signer.selectors();
            if keys.is_empty() {
                println!("no DKIM keys in {}", key_dir.display());
            }
            for (domain, sel) in keys {
                println!("{sel}._domainkey.{domain}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A TXT value as zone-file strings of at most 255 octets each (RSA keys are longer).
fn txt_strings(s: &str) -> String {
    s.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}
