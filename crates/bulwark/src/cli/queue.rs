//! `bulwark queue list|show|retry|delete`: the outbound queue, for administrators.

use std::path::Path;
use std::process::ExitCode;

use bulwark_store::{QueueId, QueuedMessage, RecipientStatus, SharedStore};

#[derive(clap::Subcommand)]
pub enum QueueCommand {
    /// One line per queued message: id, age, size, sender, recipients, next attempt.
    List,
    /// Everything about one message: envelope, parameters, per-recipient state and
    /// every delivery attempt (peer, TLS, reply).
    Show { id: i64 },
    /// Make one message (or all with --all) due now. A running server picks it up
    /// within [outbound] scan_interval_secs.
    Retry {
        id: Option<i64>,
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Remove a message from the queue without delivering it and without notifying
    /// the sender.
    Delete { id: i64 },
}

fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// "3h12m", "45s": how long ago (or until, for negative).
fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let text = if s >= 86400 {
        format!("{}d{}h", s / 86400, s % 86400 / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    text
}

fn relative(t: i64, now: i64) -> String {
    if t <= now {
        if now - t < 1 {
            "now".into()
        } else {
            format!("{} ago", span(now - t))
        }
    } else {
        format!("in {}", span(t - now))
    }
}

fn size(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn sender(m: &QueuedMessage) -> &str {
    if m.return_path.is_empty() {
        "<> (notice)"
    } else {
        &m.return_path
    }
}

fn status_name(s: RecipientStatus) -> &'static str {
    match s {
        RecipientStatus::Pending => "pending",
        RecipientStatus::Delivered => "delivered",
        RecipientStatus::Failed => "failed",
    }
}

pub async fn run(dir: &Path, cmd: QueueCommand) -> anyhow::Result<ExitCode> {
    let (_, store) = super::store_for(dir)?;
    let now = super::now_unix();
    match cmd {
        QueueCommand::List => list(&store, now).await,
        QueueCommand::Show { id } => show(&store, id, now).await,
        QueueCommand::Retry { id, all } => retry(&store, id, all, now).await,
        QueueCommand::Delete { id } => delete(&store, id).await,
    }
}

/// `bulwark queue list`: one line per entry with its pending recipients.
async fn list(store: &SharedStore, now: i64) -> anyhow::Result<ExitCode> {
    let list = store.queue_list().await?;
    if list.is_empty() {
        println!("The queue is empty.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:>8}  {:>9}  {:<28}  {:>7}  {:<14}  RECIPIENTS",
        "ID", "AGE", "SIZE", "SENDER", "PENDING", "NEXT ATTEMPT"
    );
    for m in &list {
        let pending: Vec<&str> = m
            .recipients
            .iter()
            .filter(|r| r.status == RecipientStatus::Pending)
            .map(|r| r.address.as_str())
            .collect();
        let next = if pending.is_empty() {
            "-".to_string()
        } else {
            relative(m.next_attempt, now)
        };
        println!(
            "{:>6}  {:>8}  {:>9}  {:<28}  {:>7}  {:<14}  {}",
            m.id,
            span(now - m.created),
            size(m.size),
            sender(m),
            format!("{}/{}", pending.len(), m.recipients.len()),
            next,
            pending.join(", ")
        );
    }
    let rcpts: usize = list
        .iter()
        .map(|m| {
            m.recipients
                .iter()
                .filter(|r| r.status == RecipientStatus::Pending)
                .count()
        })
        .sum();
    println!("{} message(s), {} recipient(s) pending.", list.len(), rcpts);
    Ok(ExitCode::SUCCESS)
}

/// `bulwark queue show ID`: the entry, each recipient, and every attempt.
async fn show(store: &SharedStore, id: i64, now: i64) -> anyhow::Result<ExitCode> {
    let Some(m) = store.queue_get(QueueId(id)).await? else {
        eprintln!("bulwark: no queue entry {id} (delivered, bounced or deleted)");
        return Ok(ExitCode::FAILURE);
    };
    println!("Queue entry {}", m.id);
    println!("  sender:        {}", sender(&m));
    println!(
        "  queued:        {} ({})",
        when(m.created),
        relative(m.created, now)
    );
    println!("  size:          {} octets", m.size);
    println!(
        "  delay notice:  {}",
        if m.delay_notified { "sent" } else { "not sent" }
    );
    let params = &m.params;
    let mut p = Vec::new();
    if let Some(r) = params.ret {
        p.push(format!("RET={r:?}").to_uppercase());
    }
    if let Some(e) = &params.envid {
        p.push(format!("ENVID={e}"));
    }
    if params.smtputf8 {
        p.push("SMTPUTF8".into());
    }
    if params.body_8bitmime {
        p.push("BODY=8BITMIME".into());
    }
    if !p.is_empty() {
        println!("  parameters:    {}", p.join(" "));
    }
    println!("Recipients:");
    for r in &m.recipients {
        let next = if r.status == RecipientStatus::Pending {
            format!(", next attempt {}", relative(r.next_attempt, now))
        } else {
            String::new()
        };
        println!(
            "  {}  {} ({} attempt(s){next})",
            r.address,
            status_name(r.status),
            r.attempts
        );
        if let Some(reply) = &r.last_reply {
            println!("      last reply: {reply}");
        }
    }
    let attempts = store.queue_attempts(QueueId(id)).await?;
    println!("Attempts:");
    if attempts.is_empty() {
        println!("  none yet");
    }
    for a in &attempts {
        let outcome = match a.outcome {
            RecipientStatus::Pending => "deferred",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Failed => "failed",
        };
        println!("  {}  {}  {outcome}", when(a.at), a.recipient);
        println!("      peer: {}", a.peer);
        println!("      tls:  {}", a.tls);
        println!("      reply: {}", a.reply);
    }
    Ok(ExitCode::SUCCESS)
}

/// `bulwark queue retry ID|--all`: makes pending recipients due now.
async fn retry(
    store: &SharedStore,
    id: Option<i64>,
    all: bool,
    now: i64,
) -> anyhow::Result<ExitCode> {
    if id.is_none() && !all {
        anyhow::bail!("name a queue entry (`bulwark queue retry ID`) or use --all");
    }
    if let Some(id) = id {
        if store.queue_get(QueueId(id)).await?.is_none() {
            eprintln!("bulwark: no queue entry {id}");
            return Ok(ExitCode::FAILURE);
        }
    }
    let n = store.queue_retry(id.map(QueueId), now).await?;
    match id {
        Some(id) => println!("Entry {id}: {n} recipient(s) due now."),
        None => println!("{n} recipient(s) due now."),
    }
    println!("A running server tries them within [outbound] scan_interval_secs.");
    Ok(ExitCode::SUCCESS)
}

/// `bulwark queue delete ID`: removes the entry without notifying the sender.
async fn delete(store: &SharedStore, id: i64) -> anyhow::Result<ExitCode> {
    if store.queue_delete(QueueId(id)).await? {
        println!("Deleted queue entry {id} (the sender is not notified).");
    } else {
        eprintln!("bulwark: no queue entry {id}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_times_and_sizes() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(3 * 3600 + 12 * 60), "3h12m");
        assert_eq!(span(2 * 86400 + 3600), "2d1h");
        assert_eq!(relative(100, 100), "now");
        assert_eq!(relative(40, 100), "1m0s ago");
        assert_eq!(relative(160, 100), "in 1m0s");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(10), "10 B");
    }
}
