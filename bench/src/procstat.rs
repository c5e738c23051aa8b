//! The server's resource use, read from /proc.
//!
//! A server is identified by its root process IDs (Bulwark: the `bulwark serve` PID;
//! the reference: the Postfix `master` and the Dovecot master). Every sample walks
//! /proc, builds the parent → children map and takes the whole process tree below the
//! roots, so the many short- and long-lived processes of Postfix and Dovecot are all
//! counted:
//!
//! - memory: the sum of RSS (`/proc/PID/stat` field 24) over the tree, sampled every
//!   `interval`, the peak kept; and on request the sum of PSS
//!   (`/proc/PID/smaps_rollup`), which counts a shared page once across processes
//!   instead of once per process — the fair figure for a multi-process server;
//! - CPU: the sum over the tree of utime + stime + cutime + cstime (fields 14–17). A
//!   process that exited and was reaped has its time in its parent's cutime/cstime,
//!   so the sum covers exited workers too; the run's CPU is the difference between
//!   the end and the start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::stats::ServerUsage;

#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcStat {
    pid: i32,
    ppid: i32,
    /// utime + stime + cutime + cstime, clock ticks.
    ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name may contain spaces and parentheses, so
/// the fields are counted after the last ')'.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let n = |i: usize| -> Option<u64> { f.get(i - 3)?.parse().ok() };
    Some(ProcStat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        ticks: n(14)? + n(15)? + n(16)? + n(17)?,
        rss_pages: n(24)?,
    })
}

fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let name = name.to_str()?;
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parse_stat(&std::fs::read_to_string(format!("/proc/{name}/stat")).ok()?)
    })
    .collect()
}

/// The processes of the trees rooted at `roots`.
fn tree(all: &[ProcStat], roots: &[i32]) -> Vec<ProcStat> {
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    let mut by_pid = HashMap::new();
    for (i, p) in all.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
        by_pid.insert(p.pid, i);
    }
    let mut out = Vec::new();
    let mut stack: Vec<usize> = roots
        .iter()
        .filter_map(|r| by_pid.get(r).copied())
        .collect();
    while let Some(i) = stack.pop() {
        out.push(all[i]);
        if let Some(c) = children.get(&all[i].pid) {
            stack.extend(c);
        }
    }
    out
}

fn page_size() -> u64 {
    let v = crate::sys::sysconf(libc::_SC_PAGESIZE);
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

fn clock_ticks() -> f64 {
    let v = crate::sys::sysconf(libc::_SC_CLK_TCK);
    if v > 0 {
        v as f64
    } else {
        100.0
    }
}

/// PSS of one process in KiB, from smaps_rollup.
fn pss_kib(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A point-in-time view of the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub rss_mib: f64,
    /// Sum of PSS, when it was read (see `snapshot`).
    pub pss_mib: Option<f64>,
    pub cpu_secs: f64,
    pub processes: usize,
}

/// Reading smaps_rollup costs far more than stat; above this many processes the
/// periodic samples skip PSS (the IDLE scenario reads it once, at rest).
const PSS_SAMPLE_MAX_PROCESSES: usize = 300;

pub fn snapshot(roots: &[i32]) -> Snapshot {
    let t = tree(&all_processes(), roots);
    let pss = (t.len() <= PSS_SAMPLE_MAX_PROCESSES && !t.is_empty())
        .then(|| t.iter().filter_map(|p| pss_kib(p.pid)).sum::<u64>() as f64 / 1024.0);
    Snapshot {
        rss_mib: (t.iter().map(|p| p.rss_pages).sum::<u64>() * page_size()) as f64
            / (1024.0 * 1024.0),
        pss_mib: pss,
        cpu_secs: t.iter().map(|p| p.ticks).sum::<u64>() as f64 / clock_ticks(),
        processes: t.len(),
    }
}

/// Sum of PSS over the server's processes, MiB.
pub fn pss_mib(roots: &[i32]) -> f64 {
    let t = tree(&all_processes(), roots);
    t.iter().filter_map(|p| pss_kib(p.pid)).sum::<u64>() as f64 / 1024.0
}

#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    rss: f64,
    pss: Option<f64>,
    processes: usize,
}

impl Peak {
    fn add(&mut self, s: &Snapshot) {
        self.rss = self.rss.max(s.rss_mib);
        if let Some(p) = s.pss_mib {
            self.pss = Some(self.pss.map_or(p, |q| q.max(p)));
        }
        self.processes = self.processes.max(s.processes);
    }
}

/// Samples the server in a background thread until `finish`.
pub struct Sampler {
    roots: Vec<i32>,
    start: Snapshot,
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<Peak>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling; an empty `roots` measures nothing (all zeros).
    pub fn start(roots: Vec<i32>, interval: Duration) -> Sampler {
        let start = snapshot(&roots);
        let stop = Arc::new(AtomicBool::new(false));
        let mut first = Peak::default();
        first.add(&start);
        let peak = Arc::new(Mutex::new(first));
        let thread = {
            let (roots, stop, peak) = (roots.clone(), stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = snapshot(&roots);
                    if let Ok(mut p) = peak.lock() {
                        p.add(&s);
                    }
                    std::thread::sleep(interval);
                }
            })
        };
        Sampler {
            roots,
            start,
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Current sum of RSS (MiB) of the server's processes.
    pub fn now(&self) -> Snapshot {
        snapshot(&self.roots)
    }

    pub fn roots(&self) -> &[i32] {
        &self.roots
    }

    pub fn finish(mut self) -> ServerUsage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let end = snapshot(&self.roots);
        let mut peak = self.peak.lock().map(|p| *p).unwrap_or_default();
        peak.add(&end);
        ServerUsage {
            peak_rss_mib: peak.rss,
            peak_pss_mib: peak.pss,
            pss_mib: None,
            rest_rss_mib: None,
            cpu_secs: (end.cpu_secs - self.start.cpu_secs).max(0.0),
            max_processes: peak.processes,
        }
    }
}

/// Reads a PID file (Postfix pads its PID with spaces).
pub fn read_pid_file(path: &std::path::Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{} does not hold a PID", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (imap (x) y) S 77 1234 1234 0 -1 4194560 300 0 0 0 \
                    11 22 33 44 20 0 1 0 500 1000000 250 18446744073709551615";
        let p = parse_stat(line).unwrap();
        assert_eq!(p.pid, 1234);
        assert_eq!(p.ppid, 77);
        assert_eq!(p.ticks, 11 + 22 + 33 + 44);
        assert_eq!(p.rss_pages, 250);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn tree_follows_children_only() {
        let p = |pid, ppid| ProcStat {
            pid,
            ppid,
            ticks: 1,
            rss_pages: 1,
        };
        let all = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 10), p(20, 1), p(21, 20)];
        let mut t: Vec<i32> = tree(&all, &[10]).iter().map(|p| p.pid).collect();
        t.sort();
        assert_eq!(t, vec![10, 11, 12]);
        assert_eq!(tree(&all, &[10, 21]).len(), 4);
        assert!(tree(&all, &[99]).is_empty());
    }

    #[test]
    fn measures_this_process() {
        let me = std::process::id() as i32;
        let s = snapshot(&[me]);
        assert!(s.processes >= 1 && s.rss_mib > 0.0);
        assert!(s.pss_mib.is_some_and(|p| p > 0.0));
        assert!(pss_mib(&[me]) > 0.0);
    }
}
