//! The command line of `scripts/bench`.

use std::path::PathBuf;

use clap::Parser;

/// Measures every strategy of sumserver with sumclient, beside the floors of
/// this machine, and writes results.json, results.md and SVG charts.
#[derive(Debug, Parser)]
#[command(name = "scripts/bench")]
pub(crate) struct Args {
    /// A smoke run of under a minute: short runs, the same files.
    #[arg(long)]
    pub(crate) quick: bool,

    /// Where to write the results (default: `results/run-<unix time>`).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,

    /// Where sumserver and sumclient are (default: next to this binary).
    #[arg(long)]
    pub(crate) bin_dir: Option<PathBuf>,
}
