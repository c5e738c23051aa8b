//! Concurrent connection limits per listener and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener has `max_connections` sessions.
    Total,
    /// This address has `max_connections_per_ip` sessions.
    PerIp,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
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
    pub fn new(max_total: u32, max_per_ip: u32) -> ConnectionLimits {
        ConnectionLimits {
            max_total,
            max_per_ip,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

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

    pub fn active(&self) -> u32 {
        self.counts.lock().total
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
}
