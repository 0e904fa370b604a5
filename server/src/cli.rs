//! The command line, and the only place that knows clap: [`Args`] is turned
//! at once into a plain [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use offload::{StrategyConfig, StrategyKind};
use server::config::IoModel;
use server::logging::LogFormat;
use server::Config;

/// A TCP compute server: a thread per connection (--io threads) or one event
/// loop (--io events), CPU-heavy work handed to the strategy chosen with
/// --apply.
///
/// Speaks two dialects (see docs/protocol.md): the 2009 original's (send a
/// bare number n, get the sum 1+…+n, connection closed) and a line protocol
/// (`sumn N`, `prime N`, `sleep MS`, `ping`, `stats`, `quit`).
#[derive(Debug, Parser)]
#[command(
    name = "sumserver",
    version,
    after_help = "Exit status: 0 stopped cleanly (SIGINT, SIGTERM or SIGHUP, everything \
                  answered); 1 could not start or serve; 2 bad command line; 3 stopped, \
                  but the grace period ran out and requests were cut short (told \
                  `ERR shutting-down`); 128+N a second signal N during the grace period \
                  stopped it at once (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."
)]
pub(crate) struct Args {
    /// Address to listen on, HOST:PORT; a host name is resolved (its first
    /// IPv4 address, else its first); port 0 picks a free port (printed on
    /// the first line of stdout).
    #[arg(long, env = "YSUM_ADDR", default_value = "127.0.0.1:10000", value_parser = service::address::parse)]
    addr: SocketAddr,

    /// Network I/O: `threads` (a blocking thread per connection) or `events`
    /// (one mio reactor thread for every connection, jobs submitted without
    /// waiting; under inline and exclusive the reactor runs them itself).
    #[arg(long, env = "YSUM_IO", value_enum, default_value_t = Io::Threads)]
    io: Io,

    /// Where jobs run: inline, exclusive, threads, procs (alias pool) or
    /// remote (sumworker processes, through --broker).
    #[arg(long, env = "YSUM_APPLY", default_value = "inline", value_parser = parse_strategy)]
    apply: StrategyKind,

    /// Worker threads (threads) or processes (procs); inline and exclusive
    /// have no workers and take any value, 0 included.
    #[arg(long, env = "YSUM_WORKERS", default_value_t = default_workers())]
    workers: usize,

    /// Jobs that may wait for a worker at once; beyond that, `ERR busy`.
    #[arg(long, env = "YSUM_QUEUE", default_value_t = 256)]
    queue: usize,

    /// How long a job may wait for a free worker before `ERR busy`.
    #[arg(long, env = "YSUM_QUEUE_WAIT", default_value = "5s", value_parser = parse_duration)]
    queue_wait: Duration,

    /// How long a job may run before `ERR timeout`; 0 means no limit.
    #[arg(long, env = "YSUM_JOB_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    job_timeout: Duration,

    /// threads, procs (any strategy that hands work away): run a job on the
    /// connection's own thread, as inline would, when its predicted run time
    /// (from its argument and step costs measured at start-up) is below
    /// this; heavier jobs and sleeps still go to the workers. 0 is off.
    #[arg(long, env = "YSUM_INLINE_BELOW", default_value = "0", value_parser = parse_duration)]
    inline_below: Duration,

    /// procs only: replace a worker process after this many jobs; 0 never.
    #[arg(long, env = "YSUM_RECYCLE_AFTER", default_value_t = 0)]
    recycle_after: u64,

    /// Connections served at once; more are answered `ERR busy` and closed.
    #[arg(long, env = "YSUM_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,

    /// A request line must arrive within this; idle connections are closed
    /// after it.
    #[arg(long, env = "YSUM_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    read_timeout: Duration,

    /// Longest request line in bytes; longer ones get `ERR too-long` and the
    /// connection is closed.
    #[arg(long, env = "YSUM_MAX_LINE", default_value_t = 1024)]
    max_line: usize,

    /// On SIGINT, SIGTERM or SIGHUP, how long requests in flight may take to
    /// finish; past it they are told `ERR shutting-down` (exit status 3). A
    /// second signal stops the server at once.
    #[arg(long, env = "YSUM_GRACE", default_value = "5s", value_parser = parse_duration)]
    grace: Duration,

    /// remote only: the broker and what to trust there.
    #[command(flatten, next_help_heading = "Broker (--apply remote)")]
    broker: service::BrokerArgs,

    /// The job format to write: 2 (the newest, by default) or 1, the format
    /// of workers from before signed jobs. Write the older one only while
    /// such workers still run: see docs/operations.md, "Upgrades".
    #[arg(
        long,
        env = "YSUM_JOB_FORMAT",
        value_name = "N",
        help_heading = "Broker (--apply remote)"
    )]
    job_format: Option<u32>,

    /// Logging: --log-level and --log-format.
    #[command(flatten)]
    log: service::LogArgs,

    /// Every connection must begin with a PROXY protocol header (v1 or v2,
    /// as HAProxy's send-proxy-v2 sends); its client address is the one
    /// logged. A connection without one gets `ERR bad-request` and is closed.
    #[arg(long, env = "YSUM_ACCEPT_PROXY")]
    accept_proxy: bool,

    /// Serve `GET /metrics` (OpenMetrics, or the classic text format to a
    /// scraper that asks for it), `GET /healthz` and `GET /readyz` on this
    /// HOST:PORT, on a listener of its own; off unless given. Port 0 picks a
    /// free port (printed as `metrics on ADDR` after the `listening on`
    /// line).
    #[arg(long, env = "YSUM_METRICS", value_name = "ADDR", value_parser = service::address::parse)]
    metrics: Option<SocketAddr>,

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

/// The values of `--io`; mapped at once onto [`IoModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Io {
    /// A blocking thread per connection.
    Threads,
    /// One reactor thread for every connection.
    Events,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn parse_strategy(name: &str) -> Result<StrategyKind, String> {
    name.parse()
        .map_err(|err: offload::StartError| err.to_string())
}

impl Args {
    /// `--log-format`, known even when [`Args::into_config`] fails, so that
    /// its error is written in that format.
    pub(crate) fn log_format(&self) -> LogFormat {
        self.log.format()
    }

    /// Checks the values clap cannot, and builds the server's [`Config`].
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1, got 0");
        }
        if self.max_line == 0 {
            bail!("--max-line must be at least 1 byte, got 0");
        }
        if self.read_timeout.is_zero() {
            bail!("--read-timeout must be above zero, got {:?}", "0");
        }
        match (self.apply, self.broker.first_given()) {
            (StrategyKind::Remote, _) if self.broker.broker.is_none() => {
                bail!("--apply remote needs --broker redis://HOST:PORT")
            }
            (StrategyKind::Remote, _) if self.job_timeout.is_zero() => {
                bail!("--apply remote needs a --job-timeout above zero: the deadline travels with the job")
            }
            (kind, Some(option)) if kind != StrategyKind::Remote => {
                bail!("{option} is for --apply remote only, not {kind}")
            }
            _ => {}
        }
        if let (Some(_), false) = (self.job_format, self.apply == StrategyKind::Remote) {
            bail!(
                "--job-format is for --apply remote only, not {}",
                self.apply
            );
        }
        let broker = self
            .broker
            .into_config()?
            .map(|broker| match self.job_format {
                Some(format) => offload::broker::BrokerConfig { format, ..broker },
                None => broker,
            });
        // offload checks `workers` for every strategy; inline and exclusive
        // have none, so the count means nothing there: any value is fine.
        let workers = match self.apply {
            StrategyKind::Inline | StrategyKind::Exclusive => self.workers.max(1),
            StrategyKind::Threads | StrategyKind::Procs | StrategyKind::Remote => self.workers,
        };
        let strategy = StrategyConfig {
            kind: self.apply,
            inline_below: (!self.inline_below.is_zero()).then_some(self.inline_below),
            workers,
            queue: self.queue,
            queue_wait: self.queue_wait,
            job_timeout: (!self.job_timeout.is_zero()).then_some(self.job_timeout),
            recycle_after: (self.recycle_after != 0).then_some(self.recycle_after),
            broker,
        };
        Ok(Config {
            addr: self.addr,
            io: match self.io {
                Io::Threads => IoModel::Threads,
                Io::Events => IoModel::Events,
            },
            strategy,
            max_connections: self.max_connections,
            read_timeout: self.read_timeout,
            max_line: self.max_line,
            grace: self.grace,
            log_format: self.log.format(),
            log_filter: self.log.log_level,
            metrics: self.metrics,
            accept_proxy: self.accept_proxy,
            hidden_jobs: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Durations read as people write them; bad ones are quoted.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("2.5µs"), Ok(Duration::from_nanos(2500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "ms", "-1s", "1x", "1e99h", "99999999999999999999h"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// Every duration option refuses `-1s` as negative (it used to be read
    /// as an unknown flag `-1`), and `--accept-proxy` takes yes or no from
    /// `YSUM_ACCEPT_PROXY` in every spelling.
    #[test]
    fn durations_and_flags_follow_the_shared_rules() {
        let (durations, flags) = values::check_rules::<Args>(&["sumserver"]);
        let expected = [
            "--queue-wait",
            "--job-timeout",
            "--inline-below",
            "--read-timeout",
            "--grace",
        ];
        assert_eq!(durations, expected);
        assert_eq!(flags, ["--accept-proxy"]);
    }

    /// Every duration the README, the CHANGELOG and docs/ write in
    /// backticks (`1.5s`, `100us`…) is one the parser takes, and none is
    /// said there to be refused (the CHANGELOG said `1.5s` was no longer
    /// accepted, which it is).
    #[test]
    fn durations_in_the_docs_are_taken() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md"), root.join("CHANGELOG.md")];
        let docs = std::fs::read_dir(root.join("docs")).expect("docs/");
        files.extend(docs.map(|entry| entry.expect("a docs/ entry").path()));
        let mut seen = 0;
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "md"))
        {
            let text = std::fs::read_to_string(file).expect("readable");
            // Prose only: fenced blocks would upset the backticks' pairing.
            let prose: String = text.split("```").step_by(2).collect::<Vec<_>>().join(" ");
            let spans: Vec<&str> = prose.split('`').collect();
            for (i, span) in spans.iter().enumerate().skip(1).step_by(2) {
                let digits = span.trim_end_matches(|c: char| c.is_alphabetic());
                let unit = &span[digits.len()..];
                let is_number = !digits.is_empty() && digits.parse::<f64>().is_ok();
                if !is_number || !["us", "µs", "ms", "s", "m", "h"].contains(&unit) {
                    continue;
                }
                seen += 1;
                let place = format!("{}: `{span}`", file.display());
                assert!(parse_duration(span).is_ok(), "{place} is refused");
                // What the rest of its clause says of it.
                let after = spans[i + 1].split([';', '.', ',', '(', ')']).next();
                let after = after.unwrap_or_default();
                for refusal in ["no longer accepted", "not accepted", "is refused"] {
                    assert!(!after.contains(refusal), "{place}{after}: it is taken");
                }
            }
        }
        assert!(seen >= 5, "only {seen} durations found in the docs");
    }

    /// The defaults are the issue's, and the command line maps onto Config.
    #[test]
    fn defaults_and_mapping() {
        let config = Args::parse_from(["sumserver"])
            .into_config()
            .expect("defaults are valid");
        assert_eq!(config.addr.to_string(), "127.0.0.1:10000");
        assert_eq!(config.strategy.kind, StrategyKind::Inline);
        assert_eq!(config.strategy.job_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.io, IoModel::Threads);
        let config = Args::parse_from(["sumserver", "--io", "events"])
            .into_config()
            .expect("valid");
        assert_eq!(config.io, IoModel::Events);
        let config = Args::parse_from(["sumserver", "--apply", "pool", "--job-timeout", "0"])
            .into_config()
            .expect("valid");
        assert_eq!(config.strategy.kind, StrategyKind::Procs);
        assert_eq!(config.strategy.job_timeout, None);
    }

    /// Bad values are refused with the value quoted.
    #[test]
    fn bad_values_quoted() {
        let err = Args::try_parse_from(["sumserver", "--apply", "gil"]).expect_err("unknown");
        assert!(err.to_string().contains("\"gil\""), "{err}");
        let err = Args::try_parse_from(["sumserver", "--io", "fibers"]).expect_err("unknown");
        assert!(err.to_string().contains("fibers"), "{err}");
        let err = Args::try_parse_from(["sumserver", "--grace", "soon"]).expect_err("bad");
        assert!(err.to_string().contains("\"soon\""), "{err}");
        for filter in ["garbage", "warn=x"] {
            let err = Args::try_parse_from(["sumserver", "--log-level", filter]).expect_err(filter);
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(err.to_string().contains(&format!("{filter:?}")), "{err}");
        }
    }

    /// Host names resolve; inline and exclusive take `--workers 0`.
    #[test]
    fn host_names_and_workers() {
        let config = Args::parse_from(["sumserver", "--addr", "localhost:10000"])
            .into_config()
            .expect("valid");
        assert!(config.addr.ip().is_loopback(), "{}", config.addr);
        assert_eq!(config.addr.port(), 10_000);
        for apply in ["inline", "exclusive"] {
            Args::parse_from(["sumserver", "--apply", apply, "--workers", "0"])
                .into_config()
                .expect(apply);
        }
    }

    /// `--job-format` is the broker's format, for `remote` only.
    #[test]
    fn job_format_is_for_remote() {
        let config = |args: &[&str]| {
            Args::parse_from(std::iter::once("sumserver").chain(args.iter().copied())).into_config()
        };
        let err = config(&["--job-format", "1"]).expect_err("not remote");
        assert!(err.to_string().contains("--job-format"), "{err}");
        let ok = config(&[
            "--apply",
            "remote",
            "--broker",
            "redis://h:1",
            "--job-format",
            "1",
        ])
        .expect("valid");
        assert_eq!(ok.strategy.broker.map(|broker| broker.format), Some(1));
        let newest = config(&["--apply", "remote", "--broker", "redis://h:1"]).expect("valid");
        assert_eq!(
            newest.strategy.broker.map(|broker| broker.format),
            Some(offload::broker::wire::FORMAT)
        );
    }

    /// `remote` needs a broker and a job timeout; a broker needs `remote`.
    #[test]
    fn remote_needs_a_broker() {
        let config = |args: &[&str]| {
            Args::parse_from(std::iter::once("sumserver").chain(args.iter().copied())).into_config()
        };
        let err = config(&["--apply", "remote"]).expect_err("no broker");
        assert!(err.to_string().contains("--broker"), "{err}");
        let err = config(&[
            "--apply",
            "remote",
            "--broker",
            "redis://h:1",
            "--job-timeout",
            "0",
        ])
        .expect_err("no timeout");
        assert!(err.to_string().contains("--job-timeout"), "{err}");
        let err = config(&["--broker", "redis://h:1"]).expect_err("not remote");
        assert!(err.to_string().contains("inline"), "{err}");
        let err = config(&["--broker-prefix", "blue:"]).expect_err("not remote");
        assert!(err.to_string().contains("--broker-prefix"), "{err}");
        let ok = config(&["--apply", "remote", "--broker", "redis://h:1/2"]).expect("valid");
        assert_eq!(ok.strategy.kind, StrategyKind::Remote);
        assert_eq!(
            ok.strategy.broker.map(|broker| broker.url),
            Some("redis://h:1/2".to_owned())
        );
    }
}
