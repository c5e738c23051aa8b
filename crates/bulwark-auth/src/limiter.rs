//! Counting failed logins per client address and per account over a sliding window.
//!
//! Memory is bounded: at most `MAX_KEYS` addresses/accounts are tracked; when full, the
//! entries whose newest failure is oldest are forgotten first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bulwark_config::AuthConfig;
use parking_lot::Mutex;

const MAX_KEYS: usize = 100_000;

/// Why [`Limiter::reserve`] did not admit an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotYet {
    /// Refused: the failures counted reach a limit. The reason labels metrics ("ip",
    /// "account").
    Blocked(&'static str),
    /// The failures so far are below the limits, but with the attempts still being
    /// checked they could reach them: wait for one of those to finish
    /// ([`Limiter::changed`]) and ask again. Parallel attempts near a limit are thus
    /// checked one after another instead of all at once, and an honest burst (many
    /// devices, a NAT) is delayed rather than refused.
    Busy,
}

/// Whether an attempt may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterVerdict {
    /// Under every limit: check the password.
    Allowed,
    /// Refused without checking the password; the reason labels metrics ("ip", "account").
    Blocked(&'static str),
}

#[derive(Default)]
struct Failures {
    by_ip: HashMap<IpAddr, VecDeque<Instant>>,
    by_account: HashMap<String, VecDeque<Instant>>,
    /// Attempts admitted by [`Limiter::reserve`] whose password is still being checked.
    /// They count against the limits like failures: a check-then-count limiter lets a
    /// burst of parallel attempts all pass the check before the first failure is
    /// counted (150 concurrent guesses from one address were all verified).
    inflight_ip: HashMap<IpAddr, u32>,
    inflight_account: HashMap<String, u32>,
    /// (account, client address) pairs that logged in successfully, and when. An
    /// account under attack stays reachable from where its owner logs in: the
    /// per-account block is how attackers with many addresses would otherwise lock a
    /// user out on purpose.
    known: HashMap<(String, IpAddr), Instant>,
}

/// How long a successful login keeps its address exempt from the account block.
pub(crate) const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// Counts failed logins per client address (IPv6 per /64) and per account within a
/// sliding window, slows answers after `slow_after` failures and blocks after the
/// `block_*` thresholds. The counts live in memory only.
pub struct Limiter {
    window: Duration,
    base_delay: Duration,
    max_delay: Duration,
    slow_after: u32,
    block_ip: u32,
    block_account: u32,
    state: Mutex<Failures>,
    changed: tokio::sync::Notify,
}

/// IPv6 clients usually own a whole /64: count them as one.
pub(crate) fn key_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while q.front().is_some_and(|t| now.duration_since(*t) > window) {
        q.pop_front();
    }
}

fn bound<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    now: Instant,
    window: Duration,
) {
    if map.len() < MAX_KEYS {
        return;
    }
    map.retain(|_, q| {
        prune(q, now, window);
        !q.is_empty()
    });
    if map.len() >= MAX_KEYS {
        // Still full: forget the quietest tenth.
        let mut newest: Vec<(K, Instant)> = map
            .iter()
            .filter_map(|(k, q)| q.back().map(|t| (k.clone(), *t)))
            .collect();
        newest.sort_by_key(|(_, t)| *t);
        for (k, _) in newest.into_iter().take(MAX_KEYS / 10) {
            map.remove(&k);
        }
    }
}

/// (failures in the window, attempts in flight) for one key.
fn counted<K: std::hash::Hash + Eq>(
    failures: &mut HashMap<K, VecDeque<Instant>>,
    inflight: &HashMap<K, u32>,
    key: &K,
    now: Instant,
    window: Duration,
) -> (u32, u32) {
    let failed = failures.get_mut(key).map_or(0, |q| {
        prune(q, now, window);
        saturating_u32(q.len())
    });
    (failed, inflight.get(key).copied().unwrap_or(0))
}

fn release<K: std::hash::Hash + Eq>(inflight: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = inflight.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            inflight.remove(key);
        }
    }
}

/// One admitted login attempt, counted as in flight until its outcome is recorded.
/// Dropped without an outcome (the session went away mid-check) it counts as a
/// failure: closing the connection must not be a way to guess for free.
#[must_use = "an attempt must be resolved with success() or failure()"]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    ip: IpAddr,
    user: String,
    resolved: bool,
}

impl Attempt<'_> {
    /// The password was right: see [`Limiter::record_success`].
    pub fn success(mut self) {
        self.resolved = true;
        self.limiter.finish(self.ip, &self.user, true);
    }

    /// The password was wrong: returns how long to wait before answering it (see
    /// [`Limiter::record_failure`]).
    pub fn failure(mut self) -> Duration {
        self.resolved = true;
        self.limiter.finish(self.ip, &self.user, false)
    }
}

impl Attempt<'_> {
    /// Gives the reservation back without counting it (the server, not the client,
    /// could not decide, e.g. the store was unreadable).
    pub fn cancel(mut self) {
        self.resolved = true;
        {
            let mut s = self.limiter.state.lock();
            release(&mut s.inflight_ip, &self.ip);
            release(&mut s.inflight_account, &self.user);
        }
        self.limiter.changed.notify_waiters();
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.resolved {
            self.limiter.finish(self.ip, &self.user, false);
        }
    }
}

/// A count for comparing with the u32 thresholds; beyond u32 it is "over any limit".
fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Limiter {
    /// A limiter with the window, delays and thresholds of `c`.
    pub fn new(c: &AuthConfig) -> Limiter {
        Limiter {
            window: Duration::from_secs(c.window_secs.max(1)),
            base_delay: Duration::from_millis(c.failure_delay_ms),
            max_delay: Duration::from_millis(c.max_delay_ms.max(c.failure_delay_ms)),
            slow_after: c.slow_after_failures,
            block_ip: c.block_ip_after_failures,
            block_account: c.block_account_after_failures,
            state: Mutex::new(Failures::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Admits one attempt by this address for this (normalised) user, or refuses it.
    /// The check and the count are one step under one lock, so N parallel attempts
    /// cannot all see "below the limit": an admitted attempt counts as a failure
    /// until its outcome says otherwise.
    ///
    /// The per-address limit refuses every attempt from the address. The per-account
    /// limit refuses attempts for the account only from addresses that have not
    /// logged in to it successfully within `KNOWN_FOR` (`known_elsewhere` says the
    /// caller's durable record knows the pair): guessing from many addresses slows
    /// the account down for strangers without locking its owner out.
    pub fn reserve(
        &self,
        ip: IpAddr,
        user: &str,
        known_elsewhere: bool,
    ) -> Result<Attempt<'_>, NotYet> {
        let now = Instant::now();
        let ip = key_ip(ip);
        let mut s = self.state.lock();
        let st = &mut *s;
        let (failed, pending) = counted(&mut st.by_ip, &st.inflight_ip, &ip, now, self.window);
        if failed >= self.block_ip {
            return Err(NotYet::Blocked("ip"));
        }
        let mut busy = failed + pending >= self.block_ip;
        let known = known_elsewhere || Self::is_known(st, user, ip, now);
        let user_key = user.to_string();
        if !known {
            let (failed, pending) = counted(
                &mut st.by_account,
                &st.inflight_account,
                &user_key,
                now,
                self.window,
            );
            if failed >= self.block_account {
                return Err(NotYet::Blocked("account"));
            }
            busy |= failed + pending >= self.block_account;
        }
        if busy {
            return Err(NotYet::Busy);
        }
        *st.inflight_ip.entry(ip).or_insert(0) += 1;
        *st.inflight_account.entry(user_key.clone()).or_insert(0) += 1;
        Ok(Attempt {
            limiter: self,
            ip,
            user: user_key,
            resolved: false,
        })
    }

    /// Notified whenever an admitted attempt finishes: a `Busy` caller asks again.
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    fn is_known(st: &Failures, user: &str, ip: IpAddr, now: Instant) -> bool {
        st.known
            .get(&(user.to_string(), ip))
            .is_some_and(|t| now.duration_since(*t) < KNOWN_FOR)
    }

    /// True when this address logged in to this account successfully (in memory,
    /// since the server started) within `KNOWN_FOR`.
    pub fn knows(&self, ip: IpAddr, user: &str) -> bool {
        Self::is_known(&self.state.lock(), user, key_ip(ip), Instant::now())
    }

    /// Would an attempt be refused now (without reserving one)? For callers that
    /// only want to ask, e.g. before a costlier lookup.
    pub fn check(&self, ip: IpAddr, user: &str) -> LimiterVerdict {
        match self.reserve(ip, user, false) {
            Ok(a) => {
                a.cancel();
                LimiterVerdict::Allowed
            }
            Err(NotYet::Busy) => LimiterVerdict::Allowed,
            Err(NotYet::Blocked(why)) => LimiterVerdict::Blocked(why),
        }
    }

    fn finish(&self, ip: IpAddr, user: &str, success: bool) -> Duration {
        // Recorded before the in-flight count drops, so no waiter sees neither.
        let delay = if success {
            self.record_success(ip, user);
            Duration::ZERO
        } else {
            self.record_failure(ip, user)
        };
        {
            let mut s = self.state.lock();
            release(&mut s.inflight_ip, &ip);
            release(&mut s.inflight_account, &user.to_string());
        }
        self.changed.notify_waiters();
        delay
    }

    /// Records a failure and returns how long to wait before answering it: the base
    /// delay, doubled for each failure from this address beyond `slow_after`.
    pub fn record_failure(&self, ip: IpAddr, user: &str) -> Duration {
        let now = Instant::now();
        let mut s = self.state.lock();
        bound(&mut s.by_ip, now, self.window);
        bound(&mut s.by_account, now, self.window);
        let q = s.by_ip.entry(key_ip(ip)).or_default();
        prune(q, now, self.window);
        q.push_back(now);
        let n = saturating_u32(q.len());
        let acc = s.by_account.entry(user.to_string()).or_default();
        prune(acc, now, self.window);
        acc.push_back(now);
        let extra = n.saturating_sub(self.slow_after).min(16);
        self.base_delay
            .saturating_mul(1u32 << extra)
            .min(self.max_delay)
    }

    /// A successful login marks the address as one the account's owner uses. It clears
    /// no failures: not the address's (one known password must not reset an
    /// attacker's counter for guessing others), and not the account's either (a mail
    /// client logging in every few minutes would otherwise hand an attacker with many
    /// addresses a fresh account budget each time; the owner is not slowed by it,
    /// his addresses are exempt).
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let mut s = self.state.lock();
        if s.known.len() >= MAX_KEYS {
            s.known.retain(|_, t| now.duration_since(*t) < KNOWN_FOR);
            if s.known.len() >= MAX_KEYS {
                let mut oldest: Vec<((String, IpAddr), Instant)> =
                    s.known.iter().map(|(k, t)| (k.clone(), *t)).collect();
                oldest.sort_by_key(|(_, t)| *t);
                for (k, _) in oldest.into_iter().take(MAX_KEYS / 10) {
                    s.known.remove(&k);
                }
            }
        }
        s.known.insert((user.to_string(), key_ip(ip)), now);
    }

    /// Failures currently counted for an address (for metrics and tests).
    pub fn failures_from(&self, ip: IpAddr) -> usize {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.by_ip.get_mut(&key_ip(ip)).map_or(0, |q| {
            prune(q, now, self.window);
            q.len()
        })
    }

    /// Attempts admitted and not yet resolved (for tests).
    pub fn in_flight(&self) -> u32 {
        self.state.lock().inflight_ip.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(saturating_u32(0), 0);
        assert_eq!(saturating_u32(7), 7);
        assert_eq!(saturating_u32(u32::MAX as usize), u32::MAX);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(saturating_u32(u32::MAX as usize + 1), u32::MAX);
    }

    #[test]
    fn delay_grows_then_caps() {
        let l = Limiter::new(&AuthConfig {
            failure_delay_ms: 100,
            max_delay_ms: 1000,
            slow_after_failures: 2,
            ..AuthConfig::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let d: Vec<u128> = (0..8)
            .map(|_| l.record_failure(ip, "u").as_millis())
            .collect();
        assert_eq!(d, vec![100, 100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn account_block_spares_addresses_its_owner_used() {
        let l = Limiter::new(&AuthConfig {
            block_account_after_failures: 3,
            block_ip_after_failures: 100,
            ..AuthConfig::default()
        });
        let home: IpAddr = "198.51.100.7".parse().unwrap();
        l.record_success(home, "alice");
        for i in 0..3u8 {
            l.record_failure(IpAddr::from([203, 0, 113, i]), "alice");
        }
        assert_eq!(
            l.check("203.0.113.200".parse().unwrap(), "alice"),
            LimiterVerdict::Blocked("account")
        );
        assert_eq!(l.check(home, "alice"), LimiterVerdict::Allowed);
    }

    #[test]
    fn in_flight_attempts_hold_back_others_until_they_resolve() {
        let l = Limiter::new(&AuthConfig {
            block_ip_after_failures: 3,
            block_account_after_failures: 100,
            ..AuthConfig::default()
        });
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        // Three attempts admitted and still being checked: the fourth must wait
        // although no failure has been recorded yet; once they failed it is refused.
        let held: Vec<_> = (0..3).map(|_| l.reserve(ip, "u", false).unwrap()).collect();
        assert_eq!(l.failures_from(ip), 0);
        assert_eq!(l.reserve(ip, "u", false).err(), Some(NotYet::Busy));
        assert_eq!(l.in_flight(), 3);
        for a in held {
            let _ = a.failure();
        }
        assert_eq!(l.in_flight(), 0);
        assert_eq!(l.failures_from(ip), 3);
        assert_eq!(l.reserve(ip, "u", false).err(), Some(NotYet::Blocked("ip")));
    }

    #[test]
    fn an_abandoned_attempt_counts_and_a_cancelled_one_does_not() {
        let l = Limiter::new(&AuthConfig::default());
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        drop(l.reserve(ip, "u", false).unwrap());
        assert_eq!(l.failures_from(ip), 1);
        l.reserve(ip, "u", false).unwrap().cancel();
        assert_eq!(l.failures_from(ip), 1);
        l.reserve(ip, "u", false).unwrap().success();
        assert_eq!(l.failures_from(ip), 1);
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn account_limit_counts_in_flight_but_spares_known_addresses() {
        let l = Limiter::new(&AuthConfig {
            block_account_after_failures: 2,
            block_ip_after_failures: 100,
            ..AuthConfig::default()
        });
        let home: IpAddr = "198.51.100.7".parse().unwrap();
        l.reserve(home, "alice", false).unwrap().success();
        let a1 = l
            .reserve("203.0.113.1".parse().unwrap(), "alice", false)
            .unwrap();
        let a2 = l
            .reserve("203.0.113.2".parse().unwrap(), "alice", false)
            .unwrap();
        assert_eq!(
            l.reserve("203.0.113.3".parse().unwrap(), "alice", false)
                .err(),
            Some(NotYet::Busy)
        );
        // The owner's address, and one the caller's durable record knows, still get in.
        assert!(l.knows(home, "alice"));
        l.reserve(home, "alice", false).unwrap().success();
        l.reserve("192.0.2.44".parse().unwrap(), "alice", true)
            .unwrap()
            .cancel();
        // Other accounts are not affected.
        l.reserve("203.0.113.3".parse().unwrap(), "bob", false)
            .unwrap()
            .cancel();
        let _ = (a1.failure(), a2.failure());
        assert_eq!(
            l.reserve("203.0.113.3".parse().unwrap(), "alice", false)
                .err(),
            Some(NotYet::Blocked("account"))
        );
        l.reserve(home, "alice", false).unwrap().success();
    }

    #[test]
    fn a_success_in_flight_lets_the_waiter_through() {
        let l = Limiter::new(&AuthConfig {
            block_ip_after_failures: 1,
            ..AuthConfig::default()
        });
        let ip: IpAddr = "192.0.2.11".parse().unwrap();
        let a = l.reserve(ip, "u", false).unwrap();
        assert_eq!(l.reserve(ip, "v", false).err(), Some(NotYet::Busy));
        a.success();
        l.reserve(ip, "v", false).unwrap().cancel();
    }

    #[test]
    fn ipv6_counts_per_64() {
        let l = Limiter::new(&AuthConfig {
            block_ip_after_failures: 2,
            ..AuthConfig::default()
        });
        l.record_failure("2001:db8::1".parse().unwrap(), "a");
        l.record_failure("2001:db8::2".parse().unwrap(), "b");
        assert_eq!(
            l.check("2001:db8::3".parse().unwrap(), "c"),
            LimiterVerdict::Blocked("ip")
        );
        assert_eq!(
            l.check("2001:db8:1::3".parse().unwrap(), "c"),
            LimiterVerdict::Allowed
        );
    }
}
