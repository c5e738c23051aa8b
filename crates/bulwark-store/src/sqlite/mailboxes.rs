//! Mailboxes: names, UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ counters, subscriptions.

use rusqlite::{params, Connection, OptionalExtension};

use super::{column_u32, messages};
use crate::types::*;
use crate::{Result, StoreError};

/// Hierarchy delimiter of mailbox names.
pub(crate) const DELIMITER: char = '/';

/// "INBOX" in any case is INBOX (RFC 9051 §5.1); everything else is kept as given.
pub(crate) fn canonical_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// Store-level name rules: non-empty, at most 512 octets, no control characters, no
/// empty, "." or ".." hierarchy level. Protocols add their own encoding rules.
pub(crate) fn valid_name(name: &str) -> Result<String> {
    let bad = |why: &str| StoreError::Invalid(format!("mailbox name {name:?}: {why}"));
    if name.is_empty() || name.len() > 512 {
        return Err(bad("must be 1 to 512 octets"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad("control characters are not allowed"));
    }
    if name
        .split(DELIMITER)
        .any(|l| l.is_empty() || l == "." || l == "..")
    {
        return Err(bad("empty, \".\" and \"..\" levels are not allowed"));
    }
    Ok(canonical_name(name))
}

const COLUMNS: &str = "id, account_id, name, uidvalidity, uidnext, highest_modseq, special_use, \
     EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = mailboxes.account_id AND s.name = mailboxes.name), \
     first_recent_uid";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    let su: Option<String> = r.get(6)?;
    Ok(Mailbox {
        id: r.get(0)?,
        account_id: r.get(1)?,
        name: r.get(2)?,
        uidvalidity: column_u32(r.get(3)?),
        uidnext: column_u32(r.get(4)?),
        highest_modseq: ModSeq(r.get::<_, i64>(5)? as u64),
        special_use: su.as_deref().and_then(SpecialUse::from_db),
        subscribed: r.get::<_, i64>(7)? != 0,
        first_recent_uid: column_u32(r.get(8)?),
    })
}

pub(crate) fn list(c: &Connection, account: AccountId) -> Result<Vec<Mailbox>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM mailboxes WHERE account_id = ?1 ORDER BY name = 'INBOX' DESC, name"
    ))?;
    let rows = st.query_map([account], row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn by_name(c: &Connection, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM mailboxes WHERE account_id = ?1 AND name = ?2"
    ))?;
    Ok(st.query_row(params![account, name], row).optional()?)
}

pub(crate) fn by_id(c: &Connection, id: MailboxId) -> Result<Option<Mailbox>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM mailboxes WHERE id = ?1"))?;
    Ok(st.query_row([id], row).optional()?)
}

pub(crate) fn require(c: &Connection, id: MailboxId) -> Result<Mailbox> {
    by_id(c, id)?.ok_or_else(|| StoreError::NotFound(format!("mailbox #{id}")))
}

/// Finds the mailbox with a special use, else INBOX.
pub(crate) fn special_or_inbox(
    c: &Connection,
    account: AccountId,
    use_: SpecialUse,
) -> Result<Mailbox> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM mailboxes WHERE account_id = ?1 AND special_use = ?2 ORDER BY id LIMIT 1"
    ))?;
    if let Some(m) = st
        .query_row(params![account, use_.db_name()], row)
        .optional()?
    {
        return Ok(m);
    }
    by_name(c, account, "INBOX")?
        .ok_or_else(|| StoreError::NotFound(format!("INBOX of account #{account}")))
}

fn next_uidvalidity(c: &Connection) -> Result<u32> {
    let v: i64 = c.query_row(
        "UPDATE meta SET value = value + 1 WHERE key = 'uidvalidity' RETURNING value",
        [],
        |r| r.get(0),
    )?;
    Ok(column_u32(v))
}

pub(crate) fn create(
    c: &Connection,
    account: AccountId,
    name: &str,
    special_use: Option<SpecialUse>,
    ev: &mut Vec<StoreEvent>,
) -> Result<Mailbox> {
    if by_name(c, account, name)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("mailbox {name}")));
    }
    let uidvalidity = next_uidvalidity(c)?;
    c.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, highest_modseq, special_use, subscribed, first_recent_uid)
         VALUES (?1, ?2, ?3, 1, 1, ?4, 0, 1)",
        params![account, name, uidvalidity, special_use.map(|u| u.db_name())],
    )?;
    let id = MailboxId(c.last_insert_rowid());
    // Not subscribed: RFC 3501 §6.3.3 CREATE does not subscribe, SUBSCRIBE does
    // (imaptest's `subscribe` script and Dovecot agree). Accounts subscribe their
    // default mailboxes themselves.
    ev.push(StoreEvent::MailboxList {
        account_id: account,
    });
    Ok(Mailbox {
        id,
        account_id: account,
        name: name.to_string(),
        uidvalidity,
        uidnext: 1,
        highest_modseq: ModSeq(1),
        special_use,
        subscribed: false,
        first_recent_uid: 1,
    })
}

pub(crate) fn delete(
    c: &Connection,
    account: AccountId,
    name: &str,
    ev: &mut Vec<StoreEvent>,
) -> Result<()> {
    if name == "INBOX" {
        return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
    }
    let mb = by_name(c, account, name)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
    messages::remove_all(c, mb.id)?;
    c.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [mb.id])?;
    c.execute("DELETE FROM mailboxes WHERE id = ?1", [mb.id])?;
    ev.push(StoreEvent::MailboxList {
        account_id: account,
    });
    // Sessions that have it selected must notice it is gone.
    ev.push(StoreEvent::Mailbox {
        account_id: account,
        mailbox_id: mb.id,
        highest_modseq: mb.highest_modseq.get() + 1,
    });
    Ok(())
}

pub(crate) fn rename(
    c: &Connection,
    account: AccountId,
    from: &str,
    to: &str,
    ev: &mut Vec<StoreEvent>,
) -> Result<()> {
    if from == "INBOX" {
        return Err(StoreError::Invalid(
            "renaming INBOX moves its messages; the protocol layer does that".into(),
        ));
    }
    if from == to {
        return Err(StoreError::AlreadyExists(format!("mailbox {to}")));
    }
    if to.starts_with(&format!("{from}{DELIMITER}")) {
        return Err(StoreError::Invalid(format!(
            "cannot move {from} into itself"
        )));
    }
    by_name(c, account, from)?.ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
    let prefix = format!("{from}{DELIMITER}");
    let mut moves: Vec<(MailboxId, String)> = Vec::new();
    for m in list(c, account)? {
        if m.name == from {
            moves.push((m.id, to.to_string()));
        } else if let Some(rest) = m.name.strip_prefix(&prefix) {
            moves.push((m.id, format!("{to}{DELIMITER}{rest}")));
        }
    }
    for (_, new_name) in &moves {
        if by_name(c, account, new_name)?.is_some() {
            return Err(StoreError::AlreadyExists(format!("mailbox {new_name}")));
        }
    }
    for (id, new_name) in moves {
        let old: String = c.query_row("SELECT name FROM mailboxes WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
        c.execute(
            "UPDATE mailboxes SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        )?;
        // A subscription follows its mailbox.
        if remove_subscription(c, account, &old)? {
            add_subscription(c, account, &new_name)?;
        }
    }
    ev.push(StoreEvent::MailboxList {
        account_id: account,
    });
    Ok(())
}

pub(crate) fn set_subscribed(
    c: &Connection,
    account: AccountId,
    name: &str,
    subscribed: bool,
) -> Result<()> {
    if by_name(c, account, name)?.is_none() {
        return Err(StoreError::NotFound(format!("mailbox {name}")));
    }
    if subscribed {
        add_subscription(c, account, name)?;
    } else {
        remove_subscription(c, account, name)?;
    }
    Ok(())
}

pub(crate) fn subscriptions(c: &Connection, account: AccountId) -> Result<Vec<String>> {
    let mut st =
        c.prepare_cached("SELECT name FROM subscriptions WHERE account_id = ?1 ORDER BY name")?;
    let rows = st.query_map([account], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn add_subscription(c: &Connection, account: AccountId, name: &str) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?1, ?2)")?
        .execute(params![account, name])?;
    Ok(())
}

pub(crate) fn remove_subscription(c: &Connection, account: AccountId, name: &str) -> Result<bool> {
    let n = c
        .prepare_cached("DELETE FROM subscriptions WHERE account_id = ?1 AND name = ?2")?
        .execute(params![account, name])?;
    Ok(n > 0)
}

pub(crate) fn status(c: &Connection, id: MailboxId) -> Result<MailboxStatus> {
    let mailbox = require(c, id)?;
    let (messages, unseen, size): (i64, i64, i64) = c.query_row(
        "SELECT count(*), coalesce(sum((flags & 1) = 0), 0), coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // The primary key (mailbox_id, uid) makes this a range count.
    let recent: i64 = c.query_row(
        "SELECT count(*) FROM messages WHERE mailbox_id = ?1 AND uid >= ?2",
        params![id, mailbox.first_recent_uid],
        |r| r.get(0),
    )?;
    Ok(MailboxStatus {
        mailbox,
        messages: column_u32(messages),
        unseen: column_u32(unseen),
        recent: column_u32(recent),
        size: size as u64,
    })
}

/// See `Store::claim_recent`. Runs in the writer's transaction, so concurrent claims
/// are serialised and each UID is handed out once.
pub(crate) fn claim_recent(c: &Connection, id: MailboxId, below: Uid) -> Result<Uid> {
    let before: i64 = c
        .query_row(
            "SELECT first_recent_uid FROM mailboxes WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox #{id}")))?;
    if i64::from(below.get()) > before {
        c.execute(
            "UPDATE mailboxes SET first_recent_uid = ?2 WHERE id = ?1",
            params![id, below],
        )?;
    }
    Ok(Uid(column_u32(before)))
}

/// Allocates the next MODSEQ of a mailbox (one per changing transaction step).
pub(crate) fn bump_modseq(c: &Connection, id: MailboxId) -> Result<u64> {
    let v: i64 = c.query_row(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?1 RETURNING highest_modseq",
        [id],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules() {
        assert_eq!(valid_name("inbox").unwrap(), "INBOX");
        assert_eq!(valid_name("Work/2026").unwrap(), "Work/2026");
        for bad in ["", "a//b", "/a", "a/", "a/../b", "..", "a\0b", "a\nb"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}
