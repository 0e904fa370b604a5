//! `--sweep 1,2,4,8`: the same run for each thread count in turn, summed
//! up in one table, the way the original's numbers were gathered by hand.
//!
//! ```text
//! threads  requests   seconds     req/s   p50 (ms)   p99 (ms)  errors
//!       1      1000     0.235    4252.9      0.206      0.735       0
//!       2      1000     0.123    8103.1      0.228      0.667       0
//! ```

use std::fmt::Write as _;

use crate::config::Config;
use crate::interrupt::Interrupt;
use crate::report::{Report, Spectrum};
use crate::run::{run, RunError};
use crate::text::ms;

/// Runs `config` once for each thread count in `threads`, in order; an
/// interrupt ends the sweep after the run it stopped.
///
/// # Errors
///
/// The first run's error stops the sweep.
pub fn sweep(
    config: &Config,
    threads: &[usize],
    show_progress: bool,
    interrupt: &Interrupt,
) -> Result<Vec<Report>, RunError> {
    let mut reports = Vec::with_capacity(threads.len());
    for &n in threads {
        if interrupt.raised() {
            break;
        }
        let config = Config {
            threads: n,
            ..config.clone()
        };
        reports.push(run(&config, show_progress, interrupt)?);
    }
    Ok(reports)
}

/// The sweep's table: one row per run. `errors` counts wrong answers and
/// errors of the measured requests.
pub fn render(reports: &[Report]) -> String {
    let mut out = format!(
        "{:>7} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}\n",
        "threads", "requests", "seconds", "req/s", "p50 (ms)", "p99 (ms)", "errors"
    );
    for report in reports {
        let counts = report.tally().counts;
        let latency = Spectrum::of(&report.stats.latency());
        let (p50, p99) =
            latency.map_or(("-".to_owned(), "-".to_owned()), |s| (ms(s.p50), ms(s.p99)));
        let _ = writeln!(
            out,
            "{:>7} {:>9} {:>9.3} {:>9.1} {:>10} {:>10} {:>7}",
            report.config.threads,
            counts.sent,
            report.elapsed.as_secs_f64(),
            report.throughput(),
            p50,
            p99,
            counts.wrong + counts.errors
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use std::time::Duration;

    /// One header and one row per run, the columns lined up.
    #[test]
    fn table() {
        let report = |threads| Report {
            config: Config::seed(threads),
            stats: Stats::default(),
            elapsed: Duration::from_millis(250),
            send_span: Duration::ZERO,
            interrupted: false,
        };
        let text = render(&[report(1), report(16)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
        assert!(
            lines[2].starts_with("     16         0     0.250"),
            "{text}"
        );
    }
}
