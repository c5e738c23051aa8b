//! `[store]`: where accounts, mailboxes, messages and the queue live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Issue;

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
}

fn default_path() -> PathBuf {
    PathBuf::from("store")
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            path: default_path(),
            url: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Postgres,
}

impl StoreConfig {
    pub(crate) fn validate(&self, issues: &mut Vec<Issue>) {
        if self.backend == StoreBackend::Postgres {
            issues.push(Issue::new(
                "store.backend",
                "the PostgreSQL backend is not available in this version",
                "use backend = \"embedded\"",
            ));
        }
    }
}
