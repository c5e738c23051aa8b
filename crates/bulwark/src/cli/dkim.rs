//! `bulwark dkim generate|import|list`: the DKIM keys that sign our users' mail, and
//! the DNS TXT records to publish for them. `init` and `domain add` make the keys too
//! (through [`print_record`] and `ensure_keys`), so mail is signed from the first start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulwark_senderauth::keyfile::read_key_file;
use bulwark_senderauth::sign::{generate_key, import_key, KeyAlgorithm};
use bulwark_senderauth::{DkimSigner, GeneratedKey};

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
    /// Import a private key (RSA or Ed25519, PEM PKCS#8 as `openssl genpkey` writes
    /// it, or PKCS#1): stored as DIR/dkim/DOMAIN/SELECTOR.pem (PKCS#8, mode 0600).
    Import {
        #[arg(long)]
        domain: String,
        /// The full selector (the key is published at SELECTOR._domainkey.DOMAIN).
        #[arg(long)]
        selector: String,
        /// Replace an existing key with this selector.
        #[arg(long)]
        force: bool,
        /// The PEM private key file to import.
        keyfile: PathBuf,
    },
    /// List the signing keys with the DNS TXT records they must be published at.
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
                print_record(&k, "written to");
            }
            if !signing.enabled {
                println!("# note: [senderauth.signing] enabled = false; mail is not signed until you enable it");
            }
            println!("# Restart `bulwark serve` to sign with the new key(s).");
        }
        DkimCommand::Import {
            domain,
            selector,
            force,
            keyfile,
        } => {
            let k = import_key(&key_dir, &domain, &selector, &keyfile, force)?;
            print_record(&k, "imported to");
            if !signing.enabled {
                println!("# note: [senderauth.signing] enabled = false; mail is not signed until you enable it");
            }
            println!("# Restart `bulwark serve` to sign with the imported key.");
        }
        DkimCommand::List => {
            // Loading checks every key as `serve` would (format, 0600).
            let signer = DkimSigner::load(&key_dir)?;
            let keys = signer.selectors();
            if keys.is_empty() {
                println!("no DKIM keys in {}", key_dir.display());
            }
            for (domain, sel) in keys {
                let path = key_dir.join(&domain).join(format!("{sel}.pem"));
                let txt = read_key_file(&path)?.dns_txt();
                println!("{sel}._domainkey.{domain}.  IN TXT  {}", txt_strings(&txt));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints where a key is and the TXT record to publish for it.
pub fn print_record(k: &GeneratedKey, what: &str) {
    println!(
        "# {} key {what} {} (mode 0600)",
        k.algorithm.suffix(),
        k.path.display()
    );
    println!("# publish:");
    println!("{}.  IN TXT  {}", k.dns_name, txt_strings(&k.dns_txt));
    println!();
}

/// A TXT value as zone-file strings of at most 255 octets each (RSA keys are longer).
fn txt_strings(s: &str) -> String {
    s.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}
