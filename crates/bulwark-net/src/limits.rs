//! Concurrent connection limits per listener and per client address, and the
//! connection slots all listeners share, sized from the open-file limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener has `max_connections` sessions.
    Total,
    /// This address has `max_connections_per_ip` sessions.
    PerIp,
    /// The process's connection slots (its open-file limit) are taken, or all but the
    /// share kept for client listeners.
    Descriptors,
}

impl Refusal {
    /// The `reason` label of the refused-connections metric.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
            Refusal::Descriptors => "descriptors",
        }
    }
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Counts live sessions; a `Permit` is held for each and released on drop.
#[derive(Clone)]
pub struct ConnectionLimits {
    max_total: u32,
    max_per_ip: u32,
    counts: Arc<Mutex<Counts>>,
}

/// One admitted connection.
pub struct Permit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// IPv6 clients are counted per /64, like the auth limiter does.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl ConnectionLimits {
    /// Limits of `max_total` sessions on the listener and `max_per_ip` per client
    /// address (IPv6 clients are counted per /64, see `key`).
    pub fn new(max_total: u32, max_per_ip: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_total,
            max_per_ip,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// Counts a new connection from `ip`, or says which limit refuses it. The count is
    /// given back when the returned permit is dropped.
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let ip = key(ip);
        let mut c = self.counts.lock();
        if c.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        *n += 1;
        c.total += 1;
        Ok(Permit {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// The number of connections admitted and not yet dropped.
    pub fn active(&self) -> u32 {
        self.counts.lock().total
    }
}

/// File descriptors kept for everything that is not a client connection: the store
/// (a writer and readers, each with database, WAL and shared-memory files), logs,
/// the runtime, DNS sockets, listening sockets, TLS key reloads. Outbound deliveries
/// are added on top by the caller.
pub const INTERNAL_DESCRIPTORS: u64 = 96;

/// The connection slots of the whole process. Every connection holds a descriptor, and
/// once the process runs out of them `accept` fails on every port alike: a flood of
/// idle connections on 25 would keep users from logging in on 993. So connections
/// take a slot first, slots are fewer than the open-file limit (the rest is kept for
/// the store, logs and outbound delivery), and a share of them (`reserve`) is only
/// for listeners where users log in (587, 465, 143, 993, 110, 995, web, metrics).
#[derive(Clone)]
pub struct ConnectionSlots {
    inner: Arc<SlotsInner>,
}

struct SlotsInner {
    total: u32,
    reserve: u32,
    used: AtomicU32,
    /// When "all slots taken" was last logged: at most once per `LOG_EVERY`.
    last_log: Mutex<Option<Instant>>,
}

const LOG_EVERY: Duration = Duration::from_secs(10);

/// One connection's slot, given back on drop.
pub struct SlotPermit {
    inner: Arc<SlotsInner>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.inner.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionSlots {
    /// `total` slots, of which `reserve` (capped at `total`) only client listeners
    /// may take.
    pub fn new(total: u32, reserve: u32) -> ConnectionSlots {
        ConnectionSlots {
            inner: Arc::new(SlotsInner {
                total,
                reserve: reserve.min(total),
                used: AtomicU32::new(0),
                last_log: Mutex::new(None),
            }),
        }
    }

    /// Slots for an open-file limit of `nofile` descriptors of which `internal` are
    /// kept for the server itself; a quarter of the slots is the client reserve.
    pub fn from_fd_limit(nofile: u64, internal: u64) -> ConnectionSlots {
        let total = nofile.saturating_sub(internal).max(nofile / 4).max(4);
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        ConnectionSlots::new(total, total / 4)
    }

    /// The number of slots.
    pub fn total(&self) -> u32 {
        self.inner.total
    }

    /// How many of the slots are kept for client listeners.
    pub fn reserve(&self) -> u32 {
        self.inner.reserve
    }

    /// The number of slots taken now.
    pub fn used(&self) -> u32 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// Takes a slot; `client` listeners may use the reserve, others (25, 80) may not.
    pub fn take(&self, client: bool) -> Option<SlotPermit> {
        let limit = if client {
            self.inner.total
        } else {
            self.inner.total - self.inner.reserve
        };
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SlotPermit {
                inner: self.inner.clone(),
            })
    }

    /// True at most once per `LOG_EVERY`: a flood must not turn into a log flood.
    pub fn should_log(&self) -> bool {
        let now = Instant::now();
        let mut last = self.inner.last_log.lock();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let l = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let _p2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::PerIp));
        let _p3 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refusal::Total));
        drop(p1);
        assert!(l.admit(a).is_ok());
    }

    #[test]
    fn slots_keep_a_reserve_for_client_listeners() {
        let s = ConnectionSlots::new(8, 2);
        let public: Vec<_> = (0..6).map_while(|_| s.take(false)).collect();
        assert_eq!(public.len(), 6);
        assert!(s.take(false).is_none());
        let c1 = s.take(true).unwrap();
        let _c2 = s.take(true).unwrap();
        assert!(s.take(true).is_none());
        drop(c1);
        assert!(s.take(false).is_none());
        assert!(s.take(true).is_some());
        drop(public);
        assert_eq!(s.used(), 1);
    }

    #[test]
    fn slots_fit_under_the_open_file_limit() {
        let s = ConnectionSlots::from_fd_limit(1024, 128);
        assert_eq!((s.total(), s.reserve()), (896, 224));
        // A limit below what the server needs for itself still admits some clients.
        let s = ConnectionSlots::from_fd_limit(100, 128);
        assert_eq!(s.total(), 25);
        assert!(s.should_log());
        assert!(!s.should_log());
    }
}
