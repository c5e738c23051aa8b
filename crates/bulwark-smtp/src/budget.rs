//! The process-wide budget for message data held in memory while it is received
//! (`[smtp] max_inflight_bytes`).
//!
//! Each session buffers its message until the final dot or BDAT LAST (the store takes
//! one body per ingest). Without a bound, the connection limits times
//! `max_message_size` (e.g. 50 connections per IP × 25 MiB) is the memory an attacker
//! can make us hold. Every listener's sessions draw from one [`InflightBudget`]; a
//! transaction's [`Reservation`] grows with the capacity of its body buffer and is
//! given back when the transaction ends (dropped). A message that cannot get its
//! share is read to its end, dropped and answered 452 4.3.1 (RFC 3463: mail system
//! full), so the client retries later and nothing is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Body buffers grow in steps of at least this much (fewer atomic operations, fewer
/// reallocations for small messages).
const GRAIN: usize = 64 * 1024;

/// Octets of message data all SMTP sessions may hold at once.
#[derive(Debug)]
pub struct InflightBudget {
    limit: u64,
    used: AtomicU64,
}

impl InflightBudget {
    /// A budget of `limit` octets (`[smtp] max_inflight_bytes`), shared by every
    /// listener's sessions.
    pub fn new(limit: u64) -> Arc<InflightBudget> {
        Arc::new(InflightBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Octets held by all sessions now.
    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// The most octets all sessions may hold at once.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn try_acquire(&self, n: u64) -> bool {
        let r = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            });
        match r {
            Ok(before) => {
                metrics::gauge!("bulwark_smtp_inflight_bytes").set((before + n) as f64);
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        metrics::gauge!("bulwark_smtp_inflight_bytes").set(before.saturating_sub(n) as f64);
    }
}

/// One transaction's share of the budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<InflightBudget>,
    held: u64,
}

impl Reservation {
    pub(crate) fn new(budget: Arc<InflightBudget>) -> Reservation {
        Reservation { budget, held: 0 }
    }

    /// Makes room in `buf` for `extra` more octets, growing its capacity (and the
    /// reservation with it) geometrically but not beyond `max` octets unless `extra`
    /// itself needs more. False, with `buf` and the reservation unchanged, when the
    /// budget cannot cover it.
    pub(crate) fn make_room(&mut self, buf: &mut Vec<u8>, extra: usize, max: usize) -> bool {
        let needed = buf.len().saturating_add(extra);
        if needed <= buf.capacity() && needed as u64 <= self.held {
            return true;
        }
        let preferred = needed
            .max(buf.capacity().saturating_mul(2))
            .max(GRAIN)
            .min(max.max(needed));
        for target in [preferred, needed] {
            if self.cover(target as u64) {
                buf.reserve_exact(target.saturating_sub(buf.len()));
                return true;
            }
        }
        false
    }

    /// Grows the reservation to at least `total` octets.
    pub(crate) fn cover(&mut self, total: u64) -> bool {
        if total <= self.held {
            return true;
        }
        if self.budget.try_acquire(total - self.held) {
            self.held = total;
            true
        } else {
            false
        }
    }

    /// Grows the reservation by `extra` octets (copies made at the end of a message).
    pub(crate) fn grow(&mut self, extra: u64) -> bool {
        self.cover(self.held.saturating_add(extra))
    }

    /// Gives everything back (the buffer it covered was dropped).
    pub(crate) fn release_all(&mut self) {
        self.budget.release(std::mem::take(&mut self.held));
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_budget_and_give_back_on_drop() {
        let b = InflightBudget::new(200 * 1024);
        let mut r1 = Reservation::new(b.clone());
        let mut buf1 = Vec::new();
        assert!(r1.make_room(&mut buf1, 10, 1 << 20));
        assert_eq!(r1.held(), GRAIN as u64, "small messages take one grain");
        assert!(buf1.capacity() >= 10);
        buf1.extend_from_slice(&[0; 10]);
        // Within the capacity already covered: nothing more is taken.
        assert!(r1.make_room(&mut buf1, 100, 1 << 20));
        assert_eq!(b.in_use(), GRAIN as u64);

        let mut r2 = Reservation::new(b.clone());
        let mut buf2 = Vec::new();
        assert!(r2.make_room(&mut buf2, 120 * 1024, 1 << 20));
        assert_eq!(b.in_use(), (GRAIN + 120 * 1024) as u64);
        buf2.resize(120 * 1024, 0);
        // Doubling would not fit; the exact size does not either.
        assert!(!r2.make_room(&mut buf2, 30 * 1024, 1 << 20));
        assert_eq!(r2.held(), 120 * 1024, "a refusal changes nothing");
        // The exact size fits once the first transaction is gone.
        drop(r1);
        assert!(r2.make_room(&mut buf2, 30 * 1024, 1 << 20));
        assert!(b.in_use() <= b.limit());
        r2.release_all();
        assert_eq!(b.in_use(), 0);
        drop(r2);
        assert_eq!(b.in_use(), 0);
    }

    #[test]
    fn growth_stops_at_the_message_size_limit() {
        let b = InflightBudget::new(1 << 30);
        let mut r = Reservation::new(b.clone());
        let mut buf = vec![0u8; 0];
        assert!(r.make_room(&mut buf, 70 * 1024, 100 * 1024));
        buf.resize(70 * 1024, 0);
        assert!(r.make_room(&mut buf, 10 * 1024, 100 * 1024));
        assert_eq!(r.held(), 100 * 1024, "not 140 KiB: capped at the maximum");
    }
}
