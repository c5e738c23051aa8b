//! `bulwark domain add|del|list`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DomainCommand {
    /// Accept mail for a domain.
    Add { name: String },
    /// Stop accepting mail for a domain (its accounts and aliases must be deleted first).
    Del { name: String },
    /// List domains.
    List,
}

pub async fn run(dir: &Path, cmd: DomainCommand) -> anyhow::Result<ExitCode> {
    let (_, store) = super::store_for(dir)?;
    match cmd {
        DomainCommand::Add { name } => {
            let d = store.add_domain(&name).await?;
            println!("added {}", d.name);
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
