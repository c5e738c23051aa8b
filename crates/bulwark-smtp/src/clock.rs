//! Where the sans-I/O session takes the time and randomness from: the async shell
//! leaves the real ones ([`SystemEnvironment`], the default), unit tests and the fuzz
//! harness pass a [`FixedEnvironment`] so a session's output is reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

/// The time and randomness of a session (the `Date:` and `Received:` dates, the
/// internal date of what it stores, the `Message-ID:` it adds).
pub trait Environment: Send + Sync {
    /// Now, in Unix seconds (UTC).
    fn now(&self) -> i64;
    /// 16 bytes for an identifier; unpredictable in production.
    fn random_id(&self) -> [u8; 16];
}

/// The system clock and the thread's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnvironment;

impl Environment for SystemEnvironment {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn random_id(&self) -> [u8; 16] {
        rand::random()
    }
}

/// A fixed time and a counter instead of randomness: for tests and fuzzing.
#[derive(Debug, Default)]
pub struct FixedEnvironment {
    now: i64,
    next: AtomicU64,
}

impl FixedEnvironment {
    /// Always `now` (Unix seconds); identifiers count up from 1.
    pub fn new(now: i64) -> FixedEnvironment {
        FixedEnvironment {
            now,
            next: AtomicU64::new(1),
        }
    }
}

impl Environment for FixedEnvironment {
    fn now(&self) -> i64 {
        self.now
    }

    fn random_id(&self) -> [u8; 16] {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
    }
}

/// RFC 5322 §3.3 date-time of `unix` seconds, in UTC (the epoch if out of range).
pub(crate) fn rfc5322_date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_environment_is_reproducible() {
        let a = FixedEnvironment::new(1_700_000_000);
        let b = FixedEnvironment::new(1_700_000_000);
        assert_eq!(a.now(), 1_700_000_000);
        assert_eq!(a.random_id(), b.random_id());
        assert_ne!(a.random_id(), a.random_id());
        assert_eq!(a.random_id()[15], 4);
    }

    #[test]
    fn system_environment_is_now_and_random() {
        let s = SystemEnvironment;
        assert!((s.now() - chrono::Utc::now().timestamp()).abs() <= 1);
        assert_ne!(s.random_id(), s.random_id());
    }

    #[test]
    fn dates_are_rfc5322_in_utc() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
        assert_eq!(rfc5322_date(i64::MAX), rfc5322_date(0));
    }
}
