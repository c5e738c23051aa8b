//! `bulwark domain add|del|list`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DomainCommand {
    /// Accept mail for a domain, and make its DKIM signing keys (printing the TXT
    /// records to publish).
    Add { name: String },
    /// Stop accepting mail for a domain (its accounts and aliases must be deleted first).
    Del { name: String },
    /// List domains.
    List,
}

pub async fn run(dir: &Path, cmd: DomainCommand) -> anyhow::Result<ExitCode> {
    let (cfg, store) = super::store_for(dir)?;
    match cmd {
        DomainCommand::Add { name } => {
            let d = store.add_domain(&name).await?;
            println!("added {}", d.name);
            let signing = &cfg.config.senderauth.signing;
            let keys = bulwark_senderauth::sign::ensure_keys(
                &cfg.path(&signing.key_dir),
                &d.name,
                &signing.selector,
            )?;
            println!();
            if signing.enabled {
                println!("DKIM: mail from {} is signed with these keys (after a restart of `bulwark serve`); publish their TXT records:", d.name);
            } else {
                println!("DKIM keys for {} (not used: [senderauth.signing] enabled = false); their TXT records:", d.name);
            }
            println!();
            for (k, new) in &keys {
                super::dkim::print_record(k, if *new { "written to" } else { "kept in" });
            }
        }
        DomainCommand::Del { name } => {
            store.delete_domain(&name).await?;
            println!("deleted {name}");
        }
        DomainCommand::List => {
            for d in store.list_domains().await? {
                println!("{}", d.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
