//! Domains, accounts, aliases and send-as addresses.

use rusqlite::{params, Connection, OptionalExtension};

use super::{mailboxes, messages, now};
use crate::types::*;
use crate::{Result, StoreError};

/// Checks and lower-cases a domain name.
pub(crate) fn valid_domain(name: &str) -> Result<String> {
    let n = normalize_address(name);
    let n = n.trim_end_matches('.').to_string();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.contains('.')
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if ok {
        Ok(n)
    } else {
        Err(StoreError::Invalid(format!(
            "{name:?} is not a valid domain name"
        )))
    }
}

/// Checks and lower-cases an address: one '@', a non-empty local part without
/// spaces or control characters, a valid domain.
pub(crate) fn valid_address(addr: &str) -> Result<String> {
    let a = normalize_address(addr);
    let bad = || StoreError::Invalid(format!("{addr:?} is not a valid mail address"));
    let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(bad());
    }
    let domain = valid_domain(domain).map_err(|_| bad())?;
    Ok(format!("{local}@{domain}"))
}

pub(crate) fn add_domain(c: &Connection, name: &str) -> Result<Domain> {
    if domain_id(c, name)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("domain {name}")));
    }
    let created = now();
    c.execute(
        "INSERT INTO domains (name, created) VALUES (?1, ?2)",
        params![name, created],
    )?;
    Ok(Domain {
        id: DomainId(c.last_insert_rowid()),
        name: name.to_string(),
        created,
    })
}

pub(crate) fn domain_id(c: &Connection, name: &str) -> Result<Option<DomainId>> {
    Ok(
        c.query_row("SELECT id FROM domains WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?,
    )
}

pub(crate) fn delete_domain(c: &Connection, name: &str) -> Result<()> {
    let id = domain_id(c, name)?.ok_or_else(|| StoreError::NotFound(format!("domain {name}")))?;
    let accounts: i64 = c.query_row(
        "SELECT count(*) FROM accounts WHERE domain_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    let pattern = format!("%@{name}");
    let aliases: i64 = c.query_row(
        "SELECT count(*) FROM aliases WHERE source LIKE ?1",
        [&pattern],
        |r| r.get(0),
    )?;
    if accounts > 0 || aliases > 0 {
        return Err(StoreError::Invalid(format!(
            "domain {name} still has {accounts} account(s) and {aliases} alias(es); delete them first"
        )));
    }
    c.execute("DELETE FROM domains WHERE id = ?1", [id])?;
    Ok(())
}

pub(crate) fn list_domains(c: &Connection) -> Result<Vec<Domain>> {
    let mut st = c.prepare("SELECT id, name, created FROM domains ORDER BY name")?;
    let rows = st.query_map([], |r| {
        Ok(Domain {
            id: r.get(0)?,
            name: r.get(1)?,
            created: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn row_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        address: r.get(1)?,
        created: r.get(2)?,
    })
}

pub(crate) fn create_account(c: &Connection, address: &str, hash: &str) -> Result<Account> {
    let domain = domain_of(address)
        .ok_or_else(|| StoreError::Invalid(format!("{address:?} has no domain")))?;
    let domain_id = domain_id(c, &domain)?.ok_or_else(|| {
        StoreError::Invalid(format!(
            "{domain} is not a local domain; add it first with `bulwark domain add {domain}`"
        ))
    })?;
    if account(c, address)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("account {address}")));
    }
    let alias_count: i64 = c.query_row(
        "SELECT count(*) FROM aliases WHERE source = ?1",
        [address],
        |r| r.get(0),
    )?;
    if alias_count > 0 {
        return Err(StoreError::AlreadyExists(format!("alias {address}")));
    }
    let created = now();
    c.execute(
        "INSERT INTO accounts (address, domain_id, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
        params![address, domain_id, hash, created],
    )?;
    let id = AccountId(c.last_insert_rowid());
    let mut ignored = Vec::new();
    mailboxes::create(c, id, "INBOX", None, &mut ignored)?;
    mailboxes::add_subscription(c, id, "INBOX")?;
    for u in SpecialUse::ALL {
        mailboxes::create(c, id, u.default_name(), Some(u), &mut ignored)?;
        // Clients that show only subscribed folders must see these from the start.
        mailboxes::add_subscription(c, id, u.default_name())?;
    }
    Ok(Account {
        id,
        address: address.to_string(),
        created,
    })
}

pub(crate) fn delete_account(
    c: &Connection,
    address: &str,
    ev: &mut Vec<StoreEvent>,
) -> Result<()> {
    let acc =
        account(c, address)?.ok_or_else(|| StoreError::NotFound(format!("account {address}")))?;
    let ids: Vec<MailboxId> = {
        let mut st = c.prepare("SELECT id FROM mailboxes WHERE account_id = ?1")?;
        let rows = st.query_map([acc.id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for id in ids {
        messages::remove_all(c, id)?;
        c.execute("DELETE FROM expunged WHERE mailbox_id = ?1", [id])?;
        c.execute("DELETE FROM mailboxes WHERE id = ?1", [id])?;
    }
    c.execute("DELETE FROM accounts WHERE id = ?1", [acc.id])?;
    ev.push(StoreEvent::MailboxList { account_id: acc.id });
    Ok(())
}

pub(crate) fn set_password_hash(c: &Connection, address: &str, hash: &str) -> Result<()> {
    let n = c.execute(
        "UPDATE accounts SET password_hash = ?2 WHERE address = ?1",
        params![address, hash],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("account {address}")));
    }
    Ok(())
}

pub(crate) fn account(c: &Connection, address: &str) -> Result<Option<Account>> {
    Ok(c.query_row(
        "SELECT id, address, created FROM accounts WHERE address = ?1",
        [address],
        row_account,
    )
    .optional()?)
}

pub(crate) fn account_by_id(c: &Connection, id: AccountId) -> Result<Option<Account>> {
    Ok(c.query_row(
        "SELECT id, address, created FROM accounts WHERE id = ?1",
        [id],
        row_account,
    )
    .optional()?)
}

pub(crate) fn credentials(c: &Connection, address: &str) -> Result<Option<Credentials>> {
    Ok(c.query_row(
        "SELECT id, address, created, password_hash FROM accounts WHERE address = ?1",
        [address],
        |r| {
            Ok(Credentials {
                account: row_account(r)?,
                password_hash: r.get(3)?,
            })
        },
    )
    .optional()?)
}

pub(crate) fn list_accounts(c: &Connection) -> Result<Vec<Account>> {
    let mut st = c.prepare("SELECT id, address, created FROM accounts ORDER BY address")?;
    let rows = st.query_map([], row_account)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn add_alias(c: &Connection, source: &str, target: &str) -> Result<()> {
    let domain = domain_of(source).unwrap_or_default();
    if domain_id(c, &domain)?.is_none() {
        return Err(StoreError::Invalid(format!(
            "{source}: {domain} is not a local domain; add it first with `bulwark domain add {domain}`"
        )));
    }
    if account(c, source)?.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "account {source} (an alias cannot shadow an account)"
        )));
    }
    if source == target {
        return Err(StoreError::Invalid(format!(
            "{source} cannot be an alias of itself"
        )));
    }
    if let Some(d) = domain_of(target) {
        if domain_id(c, &d)?.is_some() && account(c, target)?.is_none() && !alias_exists(c, target)?
        {
            return Err(StoreError::NotFound(format!(
                "{target} is in local domain {d} but is neither an account nor an alias"
            )));
        }
    }
    let n = c.execute(
        "INSERT OR IGNORE INTO aliases (source, target, created) VALUES (?1, ?2, ?3)",
        params![source, target, now()],
    )?;
    if n == 0 {
        return Err(StoreError::AlreadyExists(format!(
            "alias {source} -> {target}"
        )));
    }
    Ok(())
}

fn alias_exists(c: &Connection, source: &str) -> Result<bool> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM aliases WHERE source = ?1",
        [source],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

pub(crate) fn delete_alias(c: &Connection, source: &str, target: Option<&str>) -> Result<()> {
    let n = match target {
        Some(t) => c.execute(
            "DELETE FROM aliases WHERE source = ?1 AND target = ?2",
            params![source, t],
        )?,
        None => c.execute("DELETE FROM aliases WHERE source = ?1", [source])?,
    };
    if n == 0 {
        return Err(StoreError::NotFound(format!("alias {source}")));
    }
    Ok(())
}

pub(crate) fn list_aliases(c: &Connection) -> Result<Vec<Alias>> {
    let mut st = c.prepare("SELECT source, target FROM aliases ORDER BY source, target")?;
    let rows = st.query_map([], |r| {
        Ok(Alias {
            source: r.get(0)?,
            target: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn alias_targets(c: &Connection, source: &str) -> Result<Vec<String>> {
    let mut st =
        c.prepare_cached("SELECT target FROM aliases WHERE source = ?1 ORDER BY target")?;
    let rows = st.query_map([source], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Alias chains deeper than this are treated as loops and cut.
const MAX_ALIAS_DEPTH: usize = 10;

pub(crate) fn resolve(c: &Connection, address: &str) -> Result<Resolution> {
    let Some(domain) = domain_of(address) else {
        return Ok(Resolution::Unknown);
    };
    if domain_id(c, &domain)?.is_none() {
        return Ok(Resolution::NotOurDomain);
    }
    let mut accounts: Vec<Account> = Vec::new();
    let mut forward: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut stack = vec![(address.to_string(), 0usize)];
    while let Some((addr, depth)) = stack.pop() {
        if seen.contains(&addr) || depth > MAX_ALIAS_DEPTH {
            continue;
        }
        seen.push(addr.clone());
        if let Some(acc) = account(c, &addr)? {
            if !accounts.iter().any(|a| a.id == acc.id) {
                accounts.push(acc);
            }
            continue;
        }
        let targets = alias_targets(c, &addr)?;
        if targets.is_empty() {
            let local = domain_of(&addr)
                .map(|d| domain_id(c, &d))
                .transpose()?
                .flatten()
                .is_some();
            if !local && !forward.contains(&addr) {
                forward.push(addr);
            }
            continue;
        }
        for t in targets.into_iter().rev() {
            stack.push((t, depth + 1));
        }
    }
    if accounts.is_empty() && forward.is_empty() {
        Ok(Resolution::Unknown)
    } else {
        Ok(Resolution::Deliver { accounts, forward })
    }
}

pub(crate) fn add_send_as(c: &Connection, account: AccountId, address: &str) -> Result<()> {
    if account_by_id(c, account)?.is_none() {
        return Err(StoreError::NotFound(format!("account #{account}")));
    }
    c.execute(
        "INSERT OR IGNORE INTO send_as (account_id, address) VALUES (?1, ?2)",
        params![account, address],
    )?;
    Ok(())
}

pub(crate) fn delete_send_as(c: &Connection, account: AccountId, address: &str) -> Result<()> {
    let n = c.execute(
        "DELETE FROM send_as WHERE account_id = ?1 AND address = ?2",
        params![account, address],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("send-as {address}")));
    }
    Ok(())
}

pub(crate) fn record_login_source(
    c: &Connection,
    account: AccountId,
    network: &str,
    at: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO login_sources (account_id, network, last_success) VALUES (?1, ?2, ?3)
         ON CONFLICT (account_id, network) DO UPDATE SET last_success = max(last_success, ?3)",
    )?
    .execute(params![account, network, at])?;
    // Bounded per account: the most recent addresses are the ones that matter.
    c.prepare_cached(
        "DELETE FROM login_sources WHERE account_id = ?1 AND network NOT IN
           (SELECT network FROM login_sources WHERE account_id = ?1
            ORDER BY last_success DESC LIMIT ?2)",
    )?
    .execute(params![account, crate::MAX_LOGIN_SOURCES as i64])?;
    Ok(())
}

pub(crate) fn login_source_known(
    c: &Connection,
    address: &str,
    network: &str,
    since: i64,
) -> Result<bool> {
    let n: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM login_sources s JOIN accounts a ON a.id = s.account_id
             WHERE a.address = ?1 AND s.network = ?2 AND s.last_success >= ?3",
        )?
        .query_row(params![address, network, since], |r| r.get(0))?;
    Ok(n > 0)
}

pub(crate) fn may_send_as(c: &Connection, account: AccountId, address: &str) -> Result<bool> {
    let Some(acc) = account_by_id(c, account)? else {
        return Ok(false);
    };
    if acc.address == address {
        return Ok(true);
    }
    let explicit: i64 = c.query_row(
        "SELECT count(*) FROM send_as WHERE account_id = ?1 AND address = ?2",
        params![account, address],
        |r| r.get(0),
    )?;
    if explicit > 0 {
        return Ok(true);
    }
    // An alias that delivers to this account (directly or through other aliases).
    if alias_exists(c, address)? {
        if let Resolution::Deliver { accounts, .. } = resolve(c, address)? {
            return Ok(accounts.iter().any(|a| a.id == account));
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_validation() {
        assert_eq!(
            valid_address("Alice@Example.Test").unwrap(),
            "alice@example.test"
        );
        assert!(valid_address("alice").is_err());
        assert!(valid_address("@example.test").is_err());
        assert!(valid_address("a b@example.test").is_err());
        assert!(valid_address("a@nodot").is_err());
        assert!(valid_address("a@exa_mple.test").is_err());
        assert!(valid_domain("xn--bcher-kva.example").is_ok());
    }
}
