//! `bulwark alias add|del|list`.

use std::path::Path;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum AliasCommand {
    /// Deliver mail for SOURCE to TARGET (an account, another alias, or a remote
    /// address). Repeat to add more targets.
    Add { source: String, target: String },
    /// Remove one target of SOURCE, or the whole alias when TARGET is omitted.
    Del {
        source: String,
        target: Option<String>,
    },
    /// List aliases as "source -> target".
    List,
}

pub async fn run(dir: &Path, cmd: AliasCommand) -> anyhow::Result<ExitCode> {
    let (_, store) = super::store_for(dir)?;
    match cmd {
        AliasCommand::Add { source, target } => {
            store.add_alias(&source, &target).await?;
            println!("{source} -> {target}");
        }
        AliasCommand::Del { source, target } => {
            store.delete_alias(&source, target.as_deref()).await?;
            println!(
                "deleted {source}{}",
                target.map(|t| format!(" -> {t}")).unwrap_or_default()
            );
        }
        AliasCommand::List => {
            for a in store.list_aliases().await? {
                println!("{} -> {}", a.source, a.target);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
