//! The report for people. The first two lines are the original's
//! (`1000 total requests`, then the elapsed seconds as a bare float); then
//! throughput, latency percentiles overall and per job kind, connect times,
//! and errors by kind.
//!
//! ```text
//! 1000 total requests
//! 0.143564099
//! throughput: 6965.5 requests/s (1000 ok, 0 wrong, 0 errors)
//! latency (ms)            count      p50      p90      p99    p99.9      max
//!   all                    1000    0.467    0.870    2.313    3.973    4.207
//!   sumn                   1000    0.467    0.870    2.313    3.973    4.207
//! connect (ms)             1000    0.024    0.041    0.283    0.561    0.761
//! errors: none
//! ```
//!
//! With `--rate`, the table's title says latency runs from each request's
//! due time, and an `uncorrected` row (from its actual start) follows each
//! row. With several `--addr`, a table and counts per target follow; with
//! `--retries`, the retries by cause; extra replies and an interrupted run
//! are said last.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::{Report, Spectrum};

/// Width of the row labels.
const LABEL: usize = 22;

/// The header of a latency table, after its title.
fn header(title: &str) -> String {
    format!(
        "{title:<LABEL$} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "count", "p50", "p90", "p99", "p99.9", "max"
    )
}

/// One row of a latency table, values in milliseconds.
fn row(label: &str, h: &Histogram<u64>) -> String {
    match Spectrum::of(h) {
        None => format!("{label:<LABEL$} {:>6}\n", 0),
        Some(s) => format!(
            "{label:<LABEL$} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            s.count,
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.p99_9),
            ms(s.max)
        ),
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

/// The whole text report, ending in a newline.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let tally = report.tally();
    let c = &tally.counts;
    let stats = &report.stats;
    let open_loop = report.config.rate.is_some();

    // The original's two lines.
    let _ = writeln!(out, "{} total requests", report.total_requests());
    let _ = writeln!(out, "{:?}", report.elapsed.as_secs_f64());

    let _ = writeln!(
        out,
        "throughput: {:.1} requests/s ({} ok, {} wrong, {} errors)",
        report.throughput(),
        c.ok,
        c.wrong,
        c.errors
    );
    if let Some(rate) = report.rate_check() {
        let _ = writeln!(
            out,
            "rate: {:.1} requests/s asked, {:.1} achieved{}",
            rate.target,
            rate.achieved,
            if rate.short { " (short)" } else { "" }
        );
    }
    out.push_str(&header(if open_loop {
        "latency (ms) from due"
    } else {
        "latency (ms)"
    }));
    out.push_str(&row("  all", &stats.latency()));
    if open_loop {
        out.push_str(&row("  all, uncorrected", &stats.uncorrected()));
    }
    for (kind, seen) in &stats.kinds {
        out.push_str(&row(&format!("  {kind}"), &seen.latency));
        if open_loop {
            out.push_str(&row(&format!("  {kind}, uncorrected"), &seen.uncorrected));
        }
    }
    out.push_str(&row("connect (ms)", &stats.connect));
    let _ = writeln!(out, "errors: {}", tally.errors);
    if report.config.retries > 0 || stats.retries.total > 0 {
        let _ = writeln!(out, "retries: {}", retries(&stats.retries));
    }
    if report.config.targets.len() > 1 {
        out.push_str(&header("by target (ms)"));
        for (addr, seen) in &stats.targets {
            out.push_str(&row(&format!("  {addr}"), &seen.latency));
        }
        for (addr, seen) in &stats.targets {
            let k = &seen.tally.counts;
            let _ = writeln!(
                out,
                "  {addr}: {} ok, {} wrong, {} errors ({})",
                k.ok, k.wrong, k.errors, seen.tally.errors
            );
        }
    }
    if stats.kinds.len() > 1 {
        for (kind, seen) in &stats.kinds {
            let k = &seen.tally.counts;
            if k.wrong + k.errors > 0 {
                let _ = writeln!(
                    out,
                    "  {kind}: {} wrong, errors: {}",
                    k.wrong, seen.tally.errors
                );
            }
        }
    }
    let warmup = &stats.warmup.counts;
    if warmup.sent > 0 {
        let _ = writeln!(
            out,
            "warmup (not in the figures): {} requests, {} ok, {} wrong, {} errors",
            warmup.sent, warmup.ok, warmup.wrong, warmup.errors
        );
    }
    if let Some(wrong) = &stats.first_wrong {
        let _ = writeln!(
            out,
            "first wrong answer: request {:?} ({} dialect) to {} got {:?}, expected {:?}",
            wrong.request,
            dialect_name(wrong.dialect),
            wrong.addr,
            wrong.reply,
            wrong.expected
        );
    }
    if stats.extra.count > 0 {
        let first = stats
            .extra
            .first
            .as_ref()
            .map_or(String::new(), |(addr, reply)| {
                format!(", the first from {addr}: {reply:?}")
            });
        let _ = writeln!(
            out,
            "extra replies: {} that no request asked for{first}",
            stats.extra.count
        );
    }
    if report.interrupted {
        let planned = report
            .config
            .planned_requests()
            .map_or(String::new(), |planned| {
                format!(" of the {planned} planned")
            });
        let _ = writeln!(
            out,
            "interrupted by Ctrl-C: the figures cover the {} requests made{planned}",
            c.sent
        );
    }
    out
}

/// `12 (8 connect refused, 4 closed)`, or `none`.
pub fn retries(retries: &crate::stats::Retries) -> String {
    if retries.total == 0 {
        return "none".to_owned();
    }
    let causes: Vec<String> = retries
        .causes
        .iter()
        .map(|(cause, n)| format!("{n} {cause}"))
        .collect();
    format!("{} ({})", retries.total, causes.join(", "))
}

fn dialect_name(dialect: crate::job::Dialect) -> &'static str {
    match dialect {
        crate::job::Dialect::Seed => "seed",
        crate::job::Dialect::Line => "line",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds keep three decimals.
    #[test]
    fn milliseconds() {
        assert_eq!(ms(1), "0.001");
        assert_eq!(ms(1_234_567), "1234.567");
    }

    /// Retries read with their causes.
    #[test]
    fn retries_with_causes() {
        let mut seen = crate::stats::Retries::default();
        assert_eq!(retries(&seen), "none");
        seen.total = 3;
        seen.causes.insert("connect refused".into(), 2);
        seen.causes.insert("ERR shutting-down".into(), 1);
        assert_eq!(retries(&seen), "3 (1 ERR shutting-down, 2 connect refused)");
    }

    /// A row lines up under its header.
    #[test]
    fn rows_line_up() {
        let mut h = crate::stats::histogram();
        h.record(1500).expect("in range");
        let head = header("latency (ms)");
        let line = row("  all", &h);
        assert_eq!(head.len(), line.len(), "{head}{line}");
        assert!(line.contains("   1.500"), "{line}");
    }
}
