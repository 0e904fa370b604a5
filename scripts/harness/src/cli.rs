//! The command line of `scripts/bench`.

use std::path::PathBuf;

use clap::Parser;

/// Measures every strategy of sumserver with sumclient, beside the floors of
/// this machine, and writes results.json, results.md and SVG charts.
#[derive(Debug, Parser)]
#[command(name = "scripts/bench")]
pub(crate) struct Args {
    /// A smoke run of about a minute: short runs, the same files.
    #[arg(long)]
    pub(crate) quick: bool,

    /// Where to write the results (default: `results/run-<UTC date and
    /// time>`, such as `results/run-2026-12-01T224005Z`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,

    /// Measure nothing: write results.md and the charts again from this
    /// results.json (into --out, or beside the file), with the current
    /// layout.
    #[arg(long, value_name = "RESULTS_JSON", conflicts_with = "quick")]
    pub(crate) from: Option<PathBuf>,

    /// Where sumserver and sumclient are (default: next to this binary).
    #[arg(long)]
    pub(crate) bin_dir: Option<PathBuf>,
}
