//! `[store]`: where accounts, mailboxes, messages and the queue live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Issue;

/// `[store]`: the backend and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` (SQLite in WAL mode with full fsync, one machine) or `postgres`
    /// (several nodes sharing one database; not yet available).
    #[serde(default)]
    pub backend: StoreBackend,
    /// Directory of the embedded store, relative to the data directory.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// PostgreSQL connection URL, for `backend = "postgres"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How often (seconds) `serve` gives the space of deleted messages back to the file
    /// system (SQLite incremental vacuum, in small steps between other writes) and
    /// samples the store's size metrics. 0 turns the reclaiming off (metrics stay).
    #[serde(default = "default_reclaim_interval")]
    pub reclaim_interval_secs: u64,
}

fn default_path() -> PathBuf {
    PathBuf::from("store")
}

fn default_reclaim_interval() -> u64 {
    60
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            path: default_path(),
            url: None,
            reclaim_interval_secs: default_reclaim_interval(),
        }
    }
}

/// Where the store keeps its data (`[store] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// SQLite at `[store] path` (WAL, full fsync).
    #[default]
    Embedded,
    /// A shared PostgreSQL database (not yet available).
    Postgres,
}

impl StoreConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.reclaim_interval_secs > 86_400 {
            issues.push(Issue::new(
                "store.reclaim_interval_secs",
                format!(
                    "{} seconds would leave deleted mail's space on disk for days",
                    self.reclaim_interval_secs
                ),
                "use at most 86400 (the default, 60, keeps the file close to its content)",
            ));
        }
        if self.backend == StoreBackend::Postgres {
            issues.push(Issue::new(
                "store.backend",
                "the PostgreSQL backend is not available in this version",
                "use backend = \"embedded\"",
            ));
        }
    }
}
