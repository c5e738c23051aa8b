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

/// Whether an attempt may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterVerdict {
    Allowed,
    /// Refused without checking the password; the reason labels metrics ("ip", "account").
    Blocked(&'static str),
}

#[derive(Default)]
struct Failures {
    by_ip: HashMap<IpAddr, VecDeque<Instant>>,
    by_account: HashMap<String, VecDeque<Instant>>,
    /// (account, client address) pairs that logged in successfully, and when. An
    /// account under attack stays reachable from where its owner logs in: the
    /// per-account block is how attackers with many addresses would otherwise lock a
    /// user out on purpose.
    known: HashMap<(String, IpAddr), Instant>,
}

/// How long a successful login keeps its address exempt from the account block.
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

pub struct Limiter {
    window: Duration,
    base_delay: Duration,
    max_delay: Duration,
    slow_after: u32,
    block_ip: u32,
    block_account: u32,
    state: Mutex<Failures>,
}

/// IPv6 clients usually own a whole /64: count them as one.
fn key_ip(ip: IpAddr) -> IpAddr {
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

impl Limiter {
    pub fn new(c: &AuthConfig) -> Limiter {
        Limiter {
            window: Duration::from_secs(c.window_secs.max(1)),
            base_delay: Duration::from_millis(c.failure_delay_ms),
            max_delay: Duration::from_millis(c.max_delay_ms.max(c.failure_delay_ms)),
            slow_after: c.slow_after_failures,
            block_ip: c.block_ip_after_failures,
            block_account: c.block_account_after_failures,
            state: Mutex::new(Failures::default()),
        }
    }

    /// May this address try to log in as this (normalised) user now?
    pub fn check(&self, ip: IpAddr, user: &str) -> LimiterVerdict {
        let now = Instant::now();
        let mut s = self.state.lock();
        if let Some(q) = s.by_ip.get_mut(&key_ip(ip)) {
            prune(q, now, self.window);
            if q.len() as u32 >= self.block_ip {
                return LimiterVerdict::Blocked("ip");
            }
        }
        let known = s
            .known
            .get(&(user.to_string(), key_ip(ip)))
            .is_some_and(|t| now.duration_since(*t) < KNOWN_FOR);
        if let Some(q) = s.by_account.get_mut(user) {
            prune(q, now, self.window);
            if q.len() as u32 >= self.block_account && !known {
                return LimiterVerdict::Blocked("account");
            }
        }
        LimiterVerdict::Allowed
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
        let n = q.len() as u32;
        let acc = s.by_account.entry(user.to_string()).or_default();
        prune(acc, now, self.window);
        acc.push_back(now);
        let extra = n.saturating_sub(self.slow_after).min(16);
        self.base_delay
            .saturating_mul(1u32 << extra)
            .min(self.max_delay)
    }

    /// A successful login clears that account's failures (not the address's: one known
    /// password must not reset an attacker's counter for guessing others) and marks the
    /// address as one its owner uses.
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        let mut s = self.state.lock();
        s.by_account.remove(user);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
