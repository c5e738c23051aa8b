//! What a scenario run measured, and its JSON form (one line per run in the results
//! file that `report` turns into the table).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latencies of individual operations, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Nearest-rank percentile (p in 0..=100) in milliseconds; 0 when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let mut v = self.0.clone();
        v.sort_unstable();
        // p/100 of the length, at most the length (and `as` saturates a stray value).
        #[allow(clippy::cast_possible_truncation)]
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1] as f64 / 1000.0
    }
}

/// The server's resource use during a run (all its processes).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerUsage {
    /// Highest sum of RSS over the server's processes seen while sampling, MiB.
    pub peak_rss_mib: f64,
    /// Highest sum of PSS seen while sampling, MiB (sampled only while the server has
    /// at most a few hundred processes; see `procstat`).
    #[serde(default)]
    pub peak_pss_mib: Option<f64>,
    /// Proportional set size summed over the processes at the measuring point, MiB:
    /// shared pages (libraries, shared memory) counted once, not once per process.
    /// Only taken where a scenario asks for it (the IDLE scenario).
    #[serde(default)]
    pub pss_mib: Option<f64>,
    /// Sum of RSS at the measuring point (IDLE: all connections idle), MiB.
    #[serde(default)]
    pub rest_rss_mib: Option<f64>,
    /// CPU seconds (user + system) the server's processes used during the run,
    /// including processes that exited meanwhile.
    pub cpu_secs: f64,
    /// Most processes seen at once.
    pub max_processes: usize,
}

/// One run of one scenario against one target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub scenario: String,
    /// "bulwark" or "reference".
    pub target: String,
    /// Unit of `ops`: "msgs", "fetches", "searches", "selects", "connections", …
    pub unit: String,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    /// ops / seconds (for the IDLE scenario: connections established per second).
    pub throughput: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub server: ServerUsage,
    /// Scenario-specific notes (e.g. "SEARCH found 100 of 100").
    #[serde(default)]
    pub note: String,
}

impl RunResult {
    pub fn new(
        scenario: &str,
        target: &str,
        unit: &str,
        ops: u64,
        errors: u64,
        elapsed: Duration,
        lat: &Latencies,
    ) -> RunResult {
        let seconds = elapsed.as_secs_f64();
        RunResult {
            scenario: scenario.into(),
            target: target.into(),
            unit: unit.into(),
            ops,
            errors,
            seconds,
            throughput: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_ms: lat.percentile_ms(50.0),
            p95_ms: lat.percentile_ms(95.0),
            p99_ms: lat.percentile_ms(99.0),
            server: ServerUsage::default(),
            note: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_beyond_u64_microseconds_saturates() {
        let mut l = Latencies::default();
        l.record(Duration::MAX);
        l.record(Duration::from_micros(1500));
        assert_eq!(l.0, vec![u64::MAX, 1500]);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile_ms(99.0), 0.0);
        for ms in 1..=100u64 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.percentile_ms(50.0), 50.0);
        assert_eq!(l.percentile_ms(95.0), 95.0);
        assert_eq!(l.percentile_ms(99.0), 99.0);
        assert_eq!(l.percentile_ms(100.0), 100.0);
        assert_eq!(l.percentile_ms(0.0), 1.0);
    }

    #[test]
    fn throughput() {
        let r = RunResult::new(
            "s",
            "t",
            "msgs",
            50,
            0,
            Duration::from_secs(2),
            &Latencies::default(),
        );
        assert_eq!(r.throughput, 25.0);
    }
}
