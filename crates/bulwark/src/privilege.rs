//! Running as root only as long as needed: `serve` started as root binds every
//! listener and reads its key files, then becomes `[server] user` for good, as Postfix
//! and Dovecot do.
//!
//! The drop is setgroups (only the target group), setresgid, setresuid — group before
//! user, since an unprivileged process may no longer change its groups — with real,
//! effective and saved IDs all set, so there is no way back; afterwards the process
//! checks that it cannot become root again. glibc applies set*id calls to every
//! thread of the process (POSIX semantics), so the async runtime's threads drop too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bulwark_config::LoadedConfig;

use crate::sys::{self, group_name, lookup_group, lookup_user};

/// What `serve` does about its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not started as root: keep running as whoever started it.
    Unprivileged,
    /// Started as root with `--allow-root`, and no drop possible: stay root (warned).
    StayRoot(String),
    /// Started as root: become this account once the listeners are bound.
    Drop(Account),
}

/// The account to run as, resolved from the system's user and group databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: libc::uid_t,
    pub group: String,
    pub gid: libc::gid_t,
}

/// Why a server started as root will not run.
fn no_user() -> anyhow::Error {
    anyhow::anyhow!("refusing to run as root: no [server] user is configured. Set `user = \"bulwark\"` in [server] (create the account with `useradd --system --home-dir DIR --shell /usr/sbin/nologin bulwark`, then `chown -R bulwark: DIR`; scripts/run.sh does both), or pass --allow-root to run as root deliberately")
}

fn cannot_drop(why: &str) -> anyhow::Error {
    anyhow::anyhow!("refusing to run as root: {why}. Fix that, or pass --allow-root to run as root deliberately")
}

/// Decides, before anything is bound, whether and to whom `serve` will drop.
pub fn plan(cfg: &LoadedConfig, allow_root: bool) -> anyhow::Result<Plan> {
    let euid = sys::geteuid();
    plan_for(cfg, allow_root, euid)
}

fn plan_for(cfg: &LoadedConfig, allow_root: bool, euid: libc::uid_t) -> anyhow::Result<Plan> {
    let server = &cfg.config.server;
    if euid != 0 {
        return Ok(Plan::Unprivileged);
    }
    let Some(user) = &server.user else {
        return if allow_root {
            Ok(Plan::StayRoot("no [server] user is configured".into()))
        } else {
            Err(no_user())
        };
    };
    let resolved = resolve(user, server.group.as_deref()).map(|a| {
        let wrong = not_owned(cfg, a.uid);
        (a, wrong)
    });
    let resolved = resolved.and_then(|(account, wrong)| {
        match unreachable_ancestor(&cfg.dir, account.uid, account.gid) {
            Some(p) => Err(format!(
                "the user {} cannot reach {}: {} is not searchable by it (use a data directory outside it, e.g. /var/lib/bulwark, or chmod o+x {})",
                account.user,
                cfg.dir.display(),
                p.display(),
                p.display()
            )),
            None => Ok((account, wrong)),
        }
    });
    match resolved {
        Ok((account, wrong)) if wrong.is_empty() => Ok(Plan::Drop(account)),
        Ok((account, wrong)) => {
            let list: Vec<String> = wrong.iter().map(|p| p.display().to_string()).collect();
            let why = format!(
                "{} not owned by {} (fix: chown -R {}:{} {})",
                list.join(", "),
                account.user,
                account.user,
                account.group,
                cfg.dir.display()
            );
            if allow_root {
                Ok(Plan::StayRoot(why))
            } else {
                Err(cannot_drop(&why))
            }
        }
        Err(why) if allow_root => Ok(Plan::StayRoot(why)),
        Err(why) => Err(cannot_drop(&why)),
    }
}

/// Looks the user (and group, default: the user's primary group) up.
fn resolve(user: &str, group: Option<&str>) -> Result<Account, String> {
    let (uid, primary) = lookup_user(user)?.ok_or_else(|| {
        format!("the user {user:?} ([server] user) does not exist (create it: useradd --system --shell /usr/sbin/nologin {user})")
    })?;
    if uid == 0 {
        return Err(format!("the user {user:?} is root"));
    }
    let (group, gid) = match group {
        Some(g) => {
            let gid = lookup_group(g)?.ok_or_else(|| {
                format!("the group {g:?} ([server] group) does not exist (create it: groupadd --system {g})")
            })?;
            (g.to_string(), gid)
        }
        None => (
            group_name(primary).unwrap_or_else(|| primary.to_string()),
            primary,
        ),
    };
    if gid == 0 {
        return Err(format!("the group {group:?} is root's"));
    }
    Ok(Account {
        user: user.to_string(),
        uid,
        group,
        gid,
    })
}

/// What the server writes after the drop — the data directory itself, the store, the
/// run directory and the protocol logs (and what is in them) — that the user does not
/// own. Missing paths are fine: the server creates them as that user.
fn not_owned(cfg: &LoadedConfig, uid: libc::uid_t) -> Vec<PathBuf> {
    let mut wrong = Vec::new();
    let mut check = |p: &Path| {
        if let Ok(m) = std::fs::symlink_metadata(p) {
            if m.uid() != uid {
                wrong.push(p.to_path_buf());
            }
        }
    };
    check(&cfg.dir);
    for d in [cfg.store_path(), cfg.run_dir(), cfg.log_dir()] {
        check(&d);
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                check(&e.path());
            }
        }
    }
    wrong
}

/// The first directory above `dir` that the user could not pass through (no search
/// permission for it as owner, group or other): after the drop the server could not
/// open its own files. Checked on the absolute path as given.
fn unreachable_ancestor(dir: &Path, uid: libc::uid_t, gid: libc::gid_t) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let abs = std::path::absolute(dir).ok()?;
    for a in abs.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else {
            continue;
        };
        let mode = m.permissions().mode();
        let bit = if m.uid() == uid {
            0o100
        } else if m.gid() == gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Some(a.to_path_buf());
        }
    }
    None
}

/// Becomes `account` for good. Call once every listener is bound and every file that
/// needs root has been read.
pub fn drop_to(account: &Account) -> anyhow::Result<()> {
    let (uid, gid) = (account.uid, account.gid);
    // Order matters: groups, then gid, then uid (after setresuid the process may not
    // change its groups any more).
    sys::become_ids(uid, gid)
        .map_err(|(what, e)| anyhow::anyhow!("cannot drop privileges: {what}: {e}"))?;
    let ids = sys::current_ids();
    if ids != Some(([uid; 3], [gid; 3])) {
        let shown = ids.map_or_else(
            || "unknown".to_string(),
            |(u, g)| {
                format!(
                    "uid {}/{}/{}, gid {}/{}/{}",
                    u[0], u[1], u[2], g[0], g[1], g[2]
                )
            },
        );
        anyhow::bail!("cannot drop privileges: the process still has other IDs ({shown})");
    }
    // No way back: regaining root must fail.
    if sys::can_become_root() {
        anyhow::bail!("cannot drop privileges: the process could become root again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path, server_extra: &str) -> LoadedConfig {
        let text = format!("[server]\nhostname = \"mail.example.test\"\n{server_extra}");
        LoadedConfig {
            dir: dir.to_path_buf(),
            file: dir.join("bulwark.toml"),
            config: bulwark_config::Config::parse(&text, "t").unwrap(),
        }
    }

    #[test]
    fn not_root_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            plan_for(&cfg(d.path(), ""), false, 1000).unwrap(),
            Plan::Unprivileged
        );
    }

    #[test]
    fn root_without_a_user_refuses_unless_allowed() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), "");
        let e = plan_for(&c, false, 0).unwrap_err();
        assert!(e.to_string().contains("--allow-root"), "{e}");
        assert!(matches!(plan_for(&c, true, 0).unwrap(), Plan::StayRoot(_)));
    }

    #[test]
    fn root_with_an_unknown_user_refuses_unless_allowed() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), "user = \"no-such-user-bulwark-test\"\n");
        let e = plan_for(&c, false, 0).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(matches!(plan_for(&c, true, 0).unwrap(), Plan::StayRoot(_)));
    }

    #[test]
    fn a_parent_the_user_cannot_pass_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let closed = d.path().join("closed");
        let data = closed.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Someone who is neither the owner nor in the group (uid/gid 4242424).
        assert_eq!(
            unreachable_ancestor(&data, 4_242_424, 4_242_424),
            Some(closed.clone())
        );
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(unreachable_ancestor(&data, 4_242_424, 4_242_424), None);
    }

    #[test]
    fn a_data_directory_owned_by_someone_else_is_named_with_the_fix() {
        // `nobody` exists on every Debian system; the temp dir belongs to whoever
        // runs the test, never to nobody.
        if lookup_user("nobody").ok().flatten().is_none() {
            eprintln!("skipped: this system has no user `nobody`");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), "user = \"nobody\"\n");
        let e = plan_for(&c, false, 0).unwrap_err().to_string();
        assert!(e.contains("not owned by nobody"), "{e}");
        assert!(e.contains("chown -R nobody:"), "{e}");
    }
}
