//! Turns a results file (one `RunResult` JSON object per line) into the Markdown
//! table of `bench/results/<date>.md`: per scenario Bulwark, the reference and the
//! ratio Bulwark/reference, then the targets of the issues, each checked.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::stats::RunResult;

pub fn parse(text: &str) -> anyhow::Result<Vec<RunResult>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("bad result line {l:?}: {e}")))
        .collect()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn fmt_rate(r: Option<&RunResult>) -> String {
    match r {
        Some(r) if r.ops > 0 => format!("{:.1} {}/s", r.throughput, r.unit),
        Some(r) => format!("failed ({} errors)", r.errors),
        None => "not run".into(),
    }
}

fn fmt_lat(r: Option<&RunResult>) -> String {
    r.filter(|r| r.ops > 0).map_or("–".into(), |r| {
        format!("{:.1} / {:.1}", r.p50_ms, r.p99_ms)
    })
}

fn fmt_usage(r: Option<&RunResult>) -> String {
    r.map_or("–".into(), |r| {
        let pss = r.server.pss_mib.or(r.server.peak_pss_mib);
        match pss {
            Some(p) => format!(
                "{p:.0} MiB PSS ({:.0} RSS) / {:.1} s",
                r.server.peak_rss_mib, r.server.cpu_secs
            ),
            None => format!(
                "{:.0} MiB RSS / {:.1} s",
                r.server.peak_rss_mib, r.server.cpu_secs
            ),
        }
    })
}

/// The Markdown report. `order` keeps the scenarios in the order they ran.
pub fn render(results: &[RunResult]) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut by: BTreeMap<(&str, &str), &RunResult> = BTreeMap::new();
    for r in results {
        if !order.contains(&r.scenario.as_str()) {
            order.push(&r.scenario);
        }
        // The last run of a scenario/target wins.
        by.insert((r.scenario.as_str(), r.target.as_str()), r);
    }
    let mut out = String::new();
    out.push_str(
        "| scenario | Bulwark | reference | Bulwark/ref | p50 / p99 ms Bulwark | p50 / p99 ms ref | \
         server memory / CPU Bulwark | server memory / CPU ref | errors B / R |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &order {
        let b = by.get(&(*s, "bulwark")).copied();
        let r = by.get(&(*s, "reference")).copied();
        let _ = writeln!(
            out,
            "| {s} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            fmt_rate(b),
            fmt_rate(r),
            match (b, r) {
                (Some(b), Some(r)) if s.starts_with("imap-idle") =>
                    ratio(
                        b.server.pss_mib.unwrap_or(0.0),
                        r.server.pss_mib.unwrap_or(0.0)
                    ) + " mem",
                (Some(b), Some(r)) => ratio(b.throughput, r.throughput),
                _ => "–".into(),
            },
            fmt_lat(b),
            fmt_lat(r),
            fmt_usage(b),
            fmt_usage(r),
            b.map_or("–".into(), |b| b.errors.to_string()),
            r.map_or("–".into(), |r| r.errors.to_string()),
        );
    }
    out.push_str("\nNotes per run:\n\n");
    for s in &order {
        for t in ["bulwark", "reference"] {
            if let Some(r) = by.get(&(*s, t)) {
                let _ = writeln!(out, "- {s} / {t}: {}", r.note);
            }
        }
    }
    out.push_str("\n### Targets\n\n| target | measured | met |\n|---|---|---|\n");
    for (target, measured, met) in targets(&by) {
        let _ = writeln!(
            out,
            "| {target} | {measured} | {} |",
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            }
        );
    }
    out
}

type Check = (String, String, Option<bool>);

fn targets(by: &BTreeMap<(&str, &str), &RunResult>) -> Vec<Check> {
    let pair = |s: &str| {
        let b = by.get(&(s, "bulwark")).filter(|r| r.ops > 0);
        let r = by.get(&(s, "reference")).filter(|r| r.ops > 0);
        (b.copied(), r.copied())
    };
    let mut out = Vec::new();
    for s in ["smtp-25-4k-c50-plain", "smtp-25-4k-c50-starttls"] {
        let (b, r) = pair(s);
        out.push(match (b, r) {
            (Some(b), Some(r)) => (
                format!("{s}: ≥ 3× reference msgs/s"),
                ratio(b.throughput, r.throughput),
                Some(b.throughput >= 3.0 * r.throughput),
            ),
            _ => (format!("{s}: ≥ 3× reference msgs/s"), "–".into(), None),
        });
        out.push(match (b, r) {
            (Some(b), Some(r)) => (
                format!("{s}: p99 ≤ reference"),
                format!("{:.1} ms vs {:.1} ms", b.p99_ms, r.p99_ms),
                Some(b.p99_ms <= r.p99_ms),
            ),
            _ => (format!("{s}: p99 ≤ reference"), "–".into(), None),
        });
    }
    for s in [
        "imap-fetch-envelope-10k",
        "imap-fetch-body-1k",
        "imap-search-10k",
    ] {
        let (b, r) = pair(s);
        out.push(match (b, r) {
            (Some(b), Some(r)) => (
                format!("{s}: ≥ 2× reference"),
                ratio(b.throughput, r.throughput),
                Some(b.throughput >= 2.0 * r.throughput),
            ),
            _ => (format!("{s}: ≥ 2× reference"), "–".into(), None),
        });
    }
    let (b, _) = pair("imap-select-100k");
    out.push((
        "imap-select-100k: SELECT < 200 ms (Bulwark)".into(),
        b.map_or("–".into(), |b| {
            format!("p50 {:.1} ms, p99 {:.1} ms", b.p50_ms, b.p99_ms)
        }),
        b.map(|b| b.p99_ms < 200.0),
    ));
    let (b, r) = pair("imap-idle-5000");
    let bp = b.and_then(|b| b.server.pss_mib);
    let rp = r.and_then(|r| r.server.pss_mib);
    out.push((
        "imap-idle-5000: ≤ 1/10 of the reference's memory (PSS sum)".into(),
        match (bp, rp) {
            (Some(b), Some(r)) => format!("{b:.0} MiB vs {r:.0} MiB ({})", ratio(b, r)),
            _ => "–".into(),
        },
        bp.zip(rp).map(|(b, r)| b * 10.0 <= r),
    ));
    // Memory of the idle connections (at rest), not of the login burst before.
    let rest = |b: &RunResult| b.server.rest_rss_mib.unwrap_or(b.server.peak_rss_mib);
    out.push((
        "imap-idle-5000: < 150 MB RSS with 5,000 idle (Bulwark)".into(),
        b.map_or("–".into(), |b| {
            format!(
                "{:.0} MB RSS at rest (peak while logging in: {:.0} MB)",
                rest(b) * 1.048_576,
                b.server.peak_rss_mib * 1.048_576
            )
        }),
        b.map(|b| rest(b) * 1.048_576 < 150.0 && b.ops >= 5000),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latencies, ServerUsage};
    use std::time::Duration;

    fn run(s: &str, t: &str, ops: u64, secs: u64, p99: u64) -> RunResult {
        let mut l = Latencies::default();
        l.record(Duration::from_millis(p99));
        let mut r = RunResult::new(s, t, "msgs", ops, 0, Duration::from_secs(secs), &l);
        r.server = ServerUsage {
            peak_rss_mib: 10.0,
            peak_pss_mib: None,
            pss_mib: None,
            rest_rss_mib: None,
            cpu_secs: 1.0,
            max_processes: 1,
        };
        r
    }

    #[test]
    fn table_with_ratios_and_targets() {
        let rs = vec![
            run("smtp-25-4k-c50-plain", "bulwark", 3000, 10, 20),
            run("smtp-25-4k-c50-plain", "reference", 1000, 10, 30),
            run("imap-search-10k", "bulwark", 100, 10, 5),
        ];
        let text =
            serde_json::to_string(&rs[0]).unwrap() + "\n" + &serde_json::to_string(&rs[1]).unwrap();
        assert_eq!(parse(&text).unwrap().len(), 2);
        let md = render(&rs);
        assert!(
            md.contains("| smtp-25-4k-c50-plain | 300.0 msgs/s | 100.0 msgs/s | 3.00× |"),
            "{md}"
        );
        assert!(
            md.contains("| smtp-25-4k-c50-plain: ≥ 3× reference msgs/s | 3.00× | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| smtp-25-4k-c50-plain: p99 ≤ reference | 20.0 ms vs 30.0 ms | yes |"),
            "{md}"
        );
        assert!(
            md.contains("| imap-search-10k | 10.0 msgs/s | not run | – |"),
            "{md}"
        );
        assert!(
            md.contains("| imap-search-10k: ≥ 2× reference | – | not measured |"),
            "{md}"
        );
    }
}
