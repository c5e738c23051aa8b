//! Authentication shared by every protocol: Argon2id password hashes, SASL PLAIN and
//! LOGIN decoding, and the brute-force limiter.
//!
//! Owns DATA-PATHS rule 4: a failed authentication answers the same whether the
//! account exists or not (an unknown user costs one Argon2 verification like a known
//! one), and costs the attacker time (a delay on every failure, growing per IP, then
//! a block per IP and per account).
//!
//! Must not: see a connection. Whether TLS is up is the protocol's business; it must
//! not call `authenticate` before it is (rule 1). Nothing here logs a password or a
//! SASL payload; `Secret` cannot even be printed.

/// Harness for fuzz targets and seeded property tests (not server code).
#[doc(hidden)]
pub mod fuzzing;
mod limiter;
mod password;
pub mod sasl;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_config::AuthConfig;
use bulwark_store::{Account, SharedStore};

pub use limiter::{Attempt, Limiter, LimiterVerdict, NotYet};
pub use password::{hash_password, verify_password, PasswordError, MIN_PASSWORD_LEN};
pub use sasl::{SaslError, Secret};

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Why an authentication did not succeed. Protocols map each to one fixed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong user name or password (indistinguishable on purpose).
    #[error("authentication failed")]
    Failed,
    /// Too many failures from this address or for this account; try later.
    #[error("too many failed attempts; try later")]
    Throttled,
    /// The store could not be read; a temporary failure.
    #[error("authentication temporarily unavailable")]
    Unavailable,
}

/// Checks credentials against the store, through the limiter.
#[derive(Clone)]
pub struct Authenticator {
    store: SharedStore,
    limiter: Arc<Limiter>,
    config: AuthConfig,
    /// A real Argon2id hash of a random password: verifying against it makes an
    /// unknown user cost exactly what a known one costs.
    dummy_hash: Arc<String>,
    /// Argon2id verification needs 19 MiB and a core for tens of milliseconds: running
    /// more at once than there are cores only adds memory (a login burst of hundreds
    /// would otherwise hold hundreds of those buffers) without finishing sooner.
    verify_slots: Arc<tokio::sync::Semaphore>,
}

impl Authenticator {
    /// An authenticator over `store`'s accounts, with the limits and delays of
    /// `config`; hashes a random dummy password once (see `dummy_hash`).
    pub fn new(store: SharedStore, config: AuthConfig) -> Authenticator {
        let dummy: String = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            (0..32)
                .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
                .collect()
        };
        let dummy_hash = hash_password(&dummy).unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            store,
            limiter: Arc::new(Limiter::new(&config)),
            config,
            dummy_hash: Arc::new(dummy_hash),
            verify_slots: Arc::new(tokio::sync::Semaphore::new(cores.max(2))),
        }
    }

    /// Verifies `username`/`password` for a client at `peer`. `listener` and
    /// `mechanism` only label metrics and logs.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &Secret,
        peer: IpAddr,
        listener: &'static str,
        mechanism: &'static str,
    ) -> Result<Account, AuthError> {
        let user = bulwark_store::normalize_address(username);
        // The attempt is reserved (counted) before the password is looked at, so
        // parallel attempts cannot all pass a check that only later failures update.
        let attempt = if self.config.limiter_enabled {
            match self.reserve(peer, &user).await {
                Ok(a) => Some(a),
                Err(reason) => {
                    metrics::counter!("bulwark_auth_throttled_total", "listener" => listener, "reason" => reason).increment(1);
                    tracing::warn!(target: "bulwark::auth", %peer, listener, reason, "authentication refused: too many failures");
                    tokio::time::sleep(Duration::from_millis(self.config.failure_delay_ms)).await;
                    return Err(AuthError::Throttled);
                }
            }
        } else {
            None
        };
        let creds = match self.store.credentials(&user).await {
            Ok(c) => c,
            Err(e) => {
                // Not the client's failure: give the reservation back uncounted.
                if let Some(a) = attempt {
                    a.cancel();
                }
                tracing::error!(target: "bulwark::auth", error = %e, "credential lookup failed");
                return Err(AuthError::Unavailable);
            }
        };
        let hash = match &creds {
            Some(c) => c.password_hash.clone(),
            None => self.dummy_hash.as_ref().clone(),
        };
        let pw = password.clone();
        let ok = match self.verify_slots.clone().acquire_owned().await {
            Ok(slot) => tokio::task::spawn_blocking(move || {
                let ok = verify_password(&hash, pw.expose());
                drop(slot);
                ok
            })
            .await
            .unwrap_or(false),
            Err(_) => false,
        };
        match creds {
            Some(c) if ok => {
                if let Some(a) = attempt {
                    let first_time = !self.limiter.knows(peer, &user);
                    a.success();
                    if first_time {
                        self.remember_source(peer, c.account.id).await;
                    }
                }
                metrics::counter!("bulwark_auth_attempts_total", "listener" => listener, "mechanism" => mechanism, "result" => "success").increment(1);
                tracing::info!(target: "bulwark::auth", %peer, listener, mechanism, user = %c.account.address, "authenticated");
                Ok(c.account)
            }
            _ => {
                let delay = match attempt {
                    Some(a) => a.failure(),
                    None => Duration::from_millis(self.config.failure_delay_ms),
                };
                metrics::counter!("bulwark_auth_attempts_total", "listener" => listener, "mechanism" => mechanism, "result" => "failure").increment(1);
                tracing::warn!(target: "bulwark::auth", %peer, listener, mechanism, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "authentication failed");
                tokio::time::sleep(delay).await;
                Err(AuthError::Failed)
            }
        }
    }

    /// Reserves an attempt, waiting while attempts in flight could still reach a limit.
    /// The wait ends with the session's own timeouts at the latest.
    async fn reserve(&self, peer: IpAddr, user: &str) -> Result<Attempt<'_>, &'static str> {
        let mut known = false;
        loop {
            let changed = self.limiter.changed().notified();
            tokio::pin!(changed);
            // Registered before asking, so a finish between the two is not missed.
            changed.as_mut().enable();
            match self.limiter.reserve(peer, user, known) {
                Ok(a) => return Ok(a),
                // The account is blocked for strangers: is this its owner's address
                // from before the last restart? (Asked only then: one read.)
                Err(NotYet::Blocked("account"))
                    if !known && self.known_source(peer, user).await =>
                {
                    known = true;
                }
                Err(NotYet::Blocked(reason)) => return Err(reason),
                Err(NotYet::Busy) => changed.await,
            }
        }
    }

    /// The store's record of addresses the account logged in from within
    /// `KNOWN_FOR`; a store failure counts as "not known" (fail closed).
    async fn known_source(&self, peer: IpAddr, user: &str) -> bool {
        let since = unix_now() - limiter::KNOWN_FOR.as_secs() as i64;
        let network = limiter::key_ip(peer).to_string();
        match self.store.login_source_known(user, &network, since).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(target: "bulwark::auth", error = %e, "cannot read known login addresses");
                false
            }
        }
    }

    /// Remembers a successful login's address in the store, once per address and
    /// account while the server runs (the in-memory record covers the rest), so the
    /// per-account block spares it after a restart too.
    async fn remember_source(&self, peer: IpAddr, account: bulwark_store::AccountId) {
        let network = limiter::key_ip(peer).to_string();
        if let Err(e) = self
            .store
            .record_login_source(account, &network, unix_now())
            .await
        {
            tracing::warn!(target: "bulwark::auth", error = %e, "cannot record the login address");
        }
    }

    /// The brute-force limiter every protocol's logins share.
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::{SqliteStore, Store};

    async fn setup(cfg: AuthConfig) -> (Authenticator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s")).unwrap();
        store.add_domain("example.test").await.unwrap();
        store
            .create_account(
                "alice@example.test",
                &hash_password("correct horse").unwrap(),
            )
            .await
            .unwrap();
        (Authenticator::new(Arc::new(store), cfg), dir)
    }

    fn fast() -> AuthConfig {
        AuthConfig {
            failure_delay_ms: 1,
            max_delay_ms: 5,
            block_ip_after_failures: 4,
            block_account_after_failures: 6,
            ..AuthConfig::default()
        }
    }

    fn s(x: &str) -> Secret {
        Secret::new(x.to_string())
    }

    #[tokio::test]
    async fn right_wrong_and_unknown() {
        let (a, _d) = setup(fast()).await;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let acc = a
            .authenticate("Alice@Example.test", &s("correct horse"), ip, "t", "PLAIN")
            .await
            .unwrap();
        assert_eq!(acc.address, "alice@example.test");
        assert_eq!(
            a.authenticate("alice@example.test", &s("wrong"), ip, "t", "PLAIN")
                .await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            a.authenticate("nobody@example.test", &s("x"), ip, "t", "PLAIN")
                .await,
            Err(AuthError::Failed)
        );
    }

    #[tokio::test]
    async fn ip_is_blocked_after_limit_even_with_right_password() {
        let (a, _d) = setup(fast()).await;
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..4 {
            assert_eq!(
                a.authenticate("nobody@example.test", &s("x"), ip, "t", "PLAIN")
                    .await,
                Err(AuthError::Failed)
            );
        }
        assert_eq!(
            a.authenticate("alice@example.test", &s("correct horse"), ip, "t", "PLAIN")
                .await,
            Err(AuthError::Throttled)
        );
        // Another address is unaffected.
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(a
            .authenticate(
                "alice@example.test",
                &s("correct horse"),
                other,
                "t",
                "PLAIN"
            )
            .await
            .is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_logins_all_complete_through_the_bounded_verifier() {
        let (a, _d) = setup(fast()).await;
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                let ip = IpAddr::from([192, 0, 2, i]);
                a.authenticate("alice@example.test", &s("correct horse"), ip, "t", "PLAIN")
                    .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(
            a.verify_slots.available_permits(),
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .max(2)
        );
    }

    /// Issue 15 #1: a burst of parallel guesses from one address must not all be
    /// checked; only as many as the per-address limit reach the password check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_guesses_from_one_address_stop_at_the_limit() {
        let (a, _d) = setup(AuthConfig {
            block_account_after_failures: 1000,
            ..fast()
        })
        .await;
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(40));
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let a = a.clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                a.authenticate("alice@example.test", &s("guess"), ip, "t", "PLAIN")
                    .await
            }));
        }
        let mut failed = 0;
        let mut throttled = 0;
        for t in tasks {
            match t.await.unwrap() {
                Err(AuthError::Failed) => failed += 1,
                Err(AuthError::Throttled) => throttled += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!((failed, throttled), (4, 36));
        assert_eq!(a.limiter().failures_from(ip), 4);
        assert_eq!(a.limiter().in_flight(), 0);
    }

    /// The owner's addresses are remembered in the store: after a restart (a new
    /// authenticator, an empty limiter) an account blocked for strangers still lets
    /// its owner in from where he logged in before.
    #[tokio::test]
    async fn owner_addresses_survive_a_restart() {
        let (a, _d) = setup(fast()).await;
        let home: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        a.authenticate(
            "alice@example.test",
            &s("correct horse"),
            home,
            "t",
            "PLAIN",
        )
        .await
        .unwrap();
        let restarted = Authenticator::new(a.store.clone(), fast());
        for i in 0..6u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            assert_eq!(
                restarted
                    .authenticate("alice@example.test", &s("bad"), ip, "t", "PLAIN")
                    .await,
                Err(AuthError::Failed)
            );
        }
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(
            restarted
                .authenticate(
                    "alice@example.test",
                    &s("correct horse"),
                    stranger,
                    "t",
                    "PLAIN"
                )
                .await,
            Err(AuthError::Throttled)
        );
        // Another address of the same /64.
        let home_again: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        assert!(restarted
            .authenticate(
                "alice@example.test",
                &s("correct horse"),
                home_again,
                "t",
                "PLAIN"
            )
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn account_is_blocked_across_addresses() {
        let (a, _d) = setup(fast()).await;
        for i in 0..6u8 {
            let ip = IpAddr::from([198, 51, 100, i]);
            assert_eq!(
                a.authenticate("alice@example.test", &s("bad"), ip, "t", "PLAIN")
                    .await,
                Err(AuthError::Failed)
            );
        }
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(
            a.authenticate("alice@example.test", &s("correct horse"), ip, "t", "PLAIN")
                .await,
            Err(AuthError::Throttled)
        );
    }
}
