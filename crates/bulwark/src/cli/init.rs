//! `bulwark init`: a secure, working data directory in one step.

use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use bulwark_config::{template, Config, ListenerKind, TemplateParams, CONFIG_FILE};

/// Days the self-signed certificate made at init is valid.
pub const SELF_SIGNED_DAYS: u32 = 730;

#[derive(clap::Args)]
pub struct InitArgs {
    /// The first mail domain, e.g. example.org.
    #[arg(long)]
    domain: String,
    /// This server's host name (what MX points at), e.g. mail.example.org.
    #[arg(long)]
    hostname: String,
    /// Bind every listener to this address instead of the defaults (all addresses;
    /// metrics on loopback).
    #[arg(long)]
    listen: Option<IpAddr>,
    /// Add N to every standard port (e.g. 10000 → SMTP 10025, IMAPS 10993), so no
    /// root is needed.
    #[arg(long, default_value_t = 0)]
    port_base: u16,
    /// Bind every listener to port 0 (the OS chooses; see DIR/run/listeners.json).
    #[arg(long, conflicts_with = "port_base")]
    ephemeral_ports: bool,
    /// The unprivileged account `serve` runs as when started as root ([server] user);
    /// the account must exist and own the data directory when the server starts.
    #[arg(long)]
    user: Option<String>,
    /// Overwrite an existing configuration and certificate. The store (accounts and
    /// mail) is kept.
    #[arg(long)]
    force: bool,
}

fn private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("cannot create {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", p.display()))
}

pub fn run(dir: &Path, args: InitArgs) -> anyhow::Result<ExitCode> {
    let hostname = args.hostname.trim_end_matches('.').to_ascii_lowercase();
    anyhow::ensure!(
        bulwark_config::is_valid_hostname(&hostname),
        "--hostname {:?} is not a valid host name (e.g. mail.example.org)",
        args.hostname
    );
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    anyhow::ensure!(
        bulwark_config::is_valid_hostname(&domain) && domain.contains('.'),
        "--domain {:?} is not a valid domain (e.g. example.org)",
        args.domain
    );
    let highest = ListenerKind::ALL
        .iter()
        .map(|k| k.standard_port())
        .max()
        .unwrap_or(0);
    anyhow::ensure!(
        u32::from(args.port_base) + u32::from(highest) <= 65535,
        "--port-base {} is too large: the highest standard port ({highest}) would exceed 65535; use at most {}",
        args.port_base,
        65535 - highest
    );
    let file = dir.join(CONFIG_FILE);
    if file.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it. Use --force to rewrite the configuration and certificate (the store is kept).",
            file.display()
        );
    }
    // A directory with someone else's files (say, --dir /var/lib by mistake) is not
    // turned into ours: its mode is not changed and nothing is written without --force.
    let foreign = !file.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
    if foreign && !args.force {
        anyhow::bail!(
            "{} exists and is not empty; refusing to put Bulwark's files among others. Choose a new or empty directory (or use --force).",
            dir.display()
        );
    }
    if foreign {
        eprintln!(
            "warning: {} is not empty; its permissions are left as they are — make sure only the server's user can read it",
            dir.display()
        );
        std::fs::create_dir_all(dir)?;
    } else {
        private_dir(dir)?;
    }

    let text = template::render(&TemplateParams {
        hostname: hostname.clone(),
        domain: domain.clone(),
        listen: args.listen,
        port_base: args.port_base,
        ephemeral_ports: args.ephemeral_ports,
        user: args.user.clone(),
    });
    // The file must mean what init promises; a failure here is a bug, not user error
    // (but for --user, whose name the configuration's own rules check).
    Config::parse(&text, &file.display().to_string()).map_err(|e| {
        if args.user.is_some() {
            anyhow::anyhow!("--user: {e}")
        } else {
            anyhow::anyhow!("internal: generated configuration is invalid: {e}")
        }
    })?;
    write_private(&file, text.as_bytes())?;

    let cfg = Config::load(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    private_dir(&dir.join("tls"))?;
    let cert = bulwark_tls::generate_self_signed(&hostname, SELF_SIGNED_DAYS)?;
    bulwark_tls::write_key_and_cert(
        &cfg.key_path(),
        &cert.key_pem,
        &cfg.cert_path(),
        &cert.cert_pem,
    )?;

    let store = super::open_store(&cfg)?;
    super::block_on(async {
        match store.add_domain(&domain).await {
            Ok(_) | Err(bulwark_store::StoreError::AlreadyExists(_)) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow::anyhow!("cannot add domain {domain}: {e}")),
        }
    })?;

    // DKIM from the first start (RFC 6376): keys are made now, kept on `init --force`
    // (their records may already be published).
    let signing = &cfg.config.senderauth.signing;
    let keys = bulwark_senderauth::sign::ensure_keys(
        &cfg.path(&signing.key_dir),
        &domain,
        &signing.selector,
    )?;

    let info = bulwark_tls::CertInfo::from_pem(cert.cert_pem.as_bytes())?;
    println!("Initialised {}", dir.display());
    println!("  config:      {}", file.display());
    println!(
        "  certificate: {} (self-signed for {hostname}, valid {SELF_SIGNED_DAYS} days, sha256 {})",
        cfg.cert_path().display(),
        info.sha256
    );
    println!("  store:       {}", cfg.store_path().display());
    println!("  domain:      {domain}");
    println!();
    if signing.enabled {
        println!("DKIM: mail from {domain} is signed with these keys; publish their TXT records:");
    } else {
        println!("DKIM keys for {domain} (not used: [senderauth.signing] enabled = false); their TXT records:");
    }
    println!();
    for (k, new) in &keys {
        super::dkim::print_record(k, if *new { "written to" } else { "kept in" });
    }
    println!("Next:");
    println!(
        "  bulwark --dir {} user add postmaster@{domain}",
        dir.display()
    );
    println!("  bulwark --dir {} serve", dir.display());
    println!(
        "  For a CA-issued certificate: bulwark --dir {} cert import --cert fullchain.pem --key privkey.pem",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a file readable only by the owner, fsynced.
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
