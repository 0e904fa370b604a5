//! The command line, and the only place that knows clap: [`Args`] is turned
//! at once into a plain [`Config`].

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use offload::broker::BrokerConfig;
use offload::{StrategyConfig, StrategyKind};
use service::logging::LogFormat;

/// Runs the jobs of `sumserver --apply remote`: reads them from the Redis
/// stream `PREFIX jobs` (`ysum:jobs`) as consumer NAME of the group
/// `ysum:workers`, runs them with a local strategy, and pushes each answer
/// to the reply list its server named (only lists under the prefix). See
/// docs/distributed.md.
#[derive(Debug, Parser)]
#[command(name = "sumworker", version)]
pub(crate) struct Args {
    /// The broker (--broker is required) and what to trust there.
    #[command(flatten, next_help_heading = "Broker")]
    broker: service::BrokerArgs,

    /// Where jobs run on this machine: inline (one at a time on the reading
    /// thread), threads, or procs (forked processes: isolation, killable).
    #[arg(long, env = "YSUM_APPLY", value_enum, default_value_t = Apply::Threads)]
    apply: Apply,

    /// Jobs run at once; exactly this many are taken from the stream, never
    /// more (inline runs one).
    #[arg(long, env = "YSUM_WORKERS", default_value_t = default_workers())]
    workers: usize,

    /// A job whose worker stops renewing its lease for this long is handed
    /// to another worker.
    #[arg(long, env = "YSUM_LEASE", default_value = "2s", value_parser = parse_duration)]
    lease: Duration,

    /// This worker's consumer name in the group; must be unique among live
    /// workers. Defaults to HOST-PID.
    #[arg(long, env = "YSUM_NAME")]
    name: Option<String>,

    /// Longest a job may run here before it is answered `timeout`.
    #[arg(long, env = "YSUM_JOB_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    job_timeout: Duration,

    /// On SIGINT/SIGTERM, how long running jobs may take to finish; the
    /// ones still running then are handed back (another worker takes them
    /// after the lease).
    #[arg(long, env = "YSUM_GRACE", default_value = "10s", value_parser = parse_duration)]
    grace: Duration,

    /// Logging: --log-level and --log-format.
    #[command(flatten)]
    log: service::LogArgs,

    /// Serve `GET /metrics` (OpenMetrics, or the classic text format to a
    /// scraper that asks for it), `GET /healthz` and `GET /readyz` on this
    /// HOST:PORT; off unless given. Port 0 picks a free port (printed as
    /// `metrics on ADDR`).
    #[arg(long, env = "YSUM_METRICS", value_name = "ADDR", value_parser = service::address::parse)]
    metrics: Option<std::net::SocketAddr>,

    /// Tests only: speak job formats up to N alone, as a worker of an older
    /// release would (it leaves newer entries for a worker that reads them).
    #[arg(long, value_name = "N", hide = true)]
    newest_format: Option<u32>,

    /// Write shell completions (bash, zsh, fish) or the man page (man) to
    /// stdout, and exit: see the README's "Install".
    #[arg(long, value_enum, value_name = "WHAT", hide = true, exclusive = true)]
    pub(crate) generate: Option<Generate>,
}

#[path = "../../cli/generate.rs"]
mod generate;
pub(crate) use generate::Generate;

#[path = "../../cli/values.rs"]
mod values;
use values::parse_duration;

/// Parses the command line and the environment, the rules of
/// `cli/values.rs` applied (boolean flags from `YSUM_*` as yes or no, negative
/// durations refused as such); exits with status 2 when they are bad.
pub(crate) fn parse() -> Args {
    values::parse()
}

/// Writes what `what` names (completions or the man page of this binary) to
/// `out`.
///
/// # Errors
///
/// When `out` cannot be written.
pub(crate) fn write_generated(what: Generate, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    generate::write(what, values::command::<Args>(), out)
}

/// The local strategies a worker may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Apply {
    /// On the reading thread, one job at a time.
    Inline,
    /// In a pool of threads.
    Threads,
    /// In a pool of forked processes.
    Procs,
}

/// What `sumworker` runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The broker, and what to trust there.
    pub(crate) broker: BrokerConfig,
    /// The local strategy; its `workers` is the number of slots.
    pub(crate) strategy: StrategyConfig,
    /// How long a job's lease lasts without renewal.
    pub(crate) lease: Duration,
    /// The consumer name.
    pub(crate) name: String,
    /// How long running jobs may take to finish at shutdown.
    pub(crate) grace: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`, if anywhere.
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// The log filter.
    pub(crate) log_filter: String,
    /// How log lines are written.
    pub(crate) log_format: LogFormat,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Args {
    /// `--log-format`, known even when [`Args::into_config`] fails, so that
    /// its error is written in that format.
    pub(crate) fn log_format(&self) -> LogFormat {
        self.log.format()
    }

    /// Checks the values clap cannot, and builds the [`Config`].
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        if self.workers == 0 || self.workers > 1024 {
            bail!("--workers must be from 1 to 1024, got {}", self.workers);
        }
        if self.lease < Duration::from_millis(100) {
            bail!("--lease must be at least 100ms, got {:?}", self.lease);
        }
        if self.job_timeout.is_zero() {
            bail!("--job-timeout must be above zero");
        }
        let kind = match self.apply {
            Apply::Inline => StrategyKind::Inline,
            Apply::Threads => StrategyKind::Threads,
            Apply::Procs => StrategyKind::Procs,
        };
        let workers = if kind == StrategyKind::Inline {
            1
        } else {
            self.workers
        };
        let name = match self.name {
            Some(name) if name.is_empty() || name.contains(char::is_whitespace) => {
                bail!("--name must be a non-empty word, got {name:?}")
            }
            Some(name) => name,
            None => format!("{}-{}", hostname(), std::process::id()),
        };
        let Some(mut broker) = self.broker.into_config()? else {
            bail!("--broker is required: redis://HOST:PORT[/DB]");
        };
        if let Some(format) = self.newest_format {
            broker.format = format;
        }
        Ok(Config {
            broker,
            metrics: self.metrics,
            strategy: StrategyConfig {
                kind,
                workers,
                // The worker takes only as many jobs as it has slots, so
                // the local queue never holds more than that.
                queue: workers,
                queue_wait: Duration::from_secs(1),
                job_timeout: Some(self.job_timeout),
                recycle_after: None,
                broker: None,
                // The server decides what runs inline; a worker runs what
                // it is handed where its strategy says.
                inline_below: None,
            },
            lease: self.lease,
            name,
            grace: self.grace,
            log_format: self.log.format(),
            log_filter: self.log.log_level,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        Args::try_parse_from(
            ["sumworker", "--broker", "redis://127.0.0.1:6380"]
                .iter()
                .chain(args),
        )?
        .into_config()
    }

    /// The defaults are the issue's; inline has one slot.
    #[test]
    fn defaults() {
        let c = config(&[]).expect("valid");
        assert_eq!(c.lease, Duration::from_secs(2));
        assert_eq!(c.strategy.kind, StrategyKind::Threads);
        assert!(c.name.contains('-'), "{}", c.name);
        let c = config(&["--apply", "inline", "--workers", "4"]).expect("valid");
        assert_eq!(c.strategy.workers, 1);
        let c = config(&["--apply", "procs", "--lease", "500ms", "--name", "w1"]).expect("valid");
        assert_eq!(
            (c.lease, c.name.as_str()),
            (Duration::from_millis(500), "w1")
        );
    }

    /// Every duration option refuses `-1s` as negative (it used to be read
    /// as an unknown flag `-1`); sumworker has no boolean flag yet.
    #[test]
    fn durations_and_flags_follow_the_shared_rules() {
        let (durations, flags) = values::check_rules::<Args>(&["sumworker"]);
        assert_eq!(durations, ["--lease", "--job-timeout", "--grace"]);
        assert!(flags.is_empty(), "{flags:?}");
    }

    /// Bad values are refused with the value quoted.
    #[test]
    fn bad_values() {
        for (args, quoted) in [
            (&["--workers", "0"][..], "0"),
            (&["--lease", "10ms"], "10ms"),
            (&["--name", "a b"], "\"a b\""),
            (&["--apply", "exclusive"], "exclusive"),
            (&["--lease", "soon"], "soon"),
        ] {
            let err = config(args).expect_err("bad");
            assert!(format!("{err:#}").contains(quoted), "{args:?}: {err:#}");
        }
    }
}
