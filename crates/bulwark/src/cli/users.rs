//! `bulwark user add|del|list|passwd|send-as`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create an account with INBOX, Sent, Drafts, Trash, Junk and Archive.
    Add {
        address: String,
        /// Read the password from the first line of stdin instead of the terminal.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and all its mail.
    Del { address: String },
    /// List accounts.
    List,
    /// Set a new password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Let an account send mail as another address (beyond its own and its aliases).
    SendAs {
        address: String,
        send_as: String,
        /// Remove the permission instead.
        #[arg(long)]
        remove: bool,
    },
}

pub async fn run(dir: &Path, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let (_, store) = super::store_for(dir)?;
    match cmd {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            let pw = super::read_password(password_stdin)?;
            let hash =
                tokio::task::spawn_blocking(move || bulwark_auth::hash_password(&pw)).await??;
            let acc = store.create_account(&address, &hash).await?;
            println!("created {}", acc.address);
            ensure_postmaster(store.as_ref(), &acc.address).await?;
        }
        UserCommand::Del { address } => {
            store.delete_account(&address).await?;
            println!("deleted {address}");
        }
        UserCommand::List => {
            for a in store.list_accounts().await? {
                println!("{}", a.address);
            }
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            store
                .account(&address)
                .await?
                .with_context(|| format!("account {address} not found"))?;
            let pw = super::read_password(password_stdin)?;
            let hash =
                tokio::task::spawn_blocking(move || bulwark_auth::hash_password(&pw)).await??;
            store.set_password_hash(&address, &hash).await?;
            println!("password changed for {address}");
        }
        UserCommand::SendAs {
            address,
            send_as,
            remove,
        } => {
            let acc = store
                .account(&address)
                .await?
                .with_context(|| format!("account {address} not found"))?;
            if remove {
                store.delete_send_as(acc.id, &send_as).await?;
                println!("{address} may no longer send as {send_as}");
            } else {
                store.add_send_as(acc.id, &send_as).await?;
                println!("{address} may now send as {send_as}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 5321 §4.5.1: every domain must accept mail for `postmaster`. When a domain gets
/// its first account and has no postmaster yet, that account receives it (an alias the
/// administrator can change with `bulwark alias`).
async fn ensure_postmaster(store: &dyn bulwark_store::Store, address: &str) -> anyhow::Result<()> {
    let Some(domain) = bulwark_store::domain_of(address) else {
        return Ok(());
    };
    let postmaster = format!("postmaster@{domain}");
    if postmaster != address
        && store.resolve(&postmaster).await? == bulwark_store::Resolution::Unknown
    {
        store.add_alias(&postmaster, address).await?;
        println!("{postmaster} -> {address} (RFC 5321 requires a postmaster; change it with `bulwark alias`)");
    }
    Ok(())
}
