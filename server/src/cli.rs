//! The command line, and the only place that knows clap: [`Args`] is turned
//! at once into a plain [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use offload::{StrategyConfig, StrategyKind};
use server::config::IoModel;
use server::Config;

/// A TCP compute server: one thread per connection, CPU-heavy work handed to
/// the strategy chosen with --apply.
///
/// Speaks two dialects (see docs/protocol.md): the 2009 original's (send a
/// bare number n, get the sum 1+…+n, connection closed) and a line protocol
/// (`sumn N`, `prime N`, `sleep MS`, `ping`, `stats`, `quit`).
#[derive(Debug, Parser)]
#[command(name = "sumserver", version)]
pub(crate) struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first
    /// line of stdout).
    #[arg(long, default_value = "127.0.0.1:10000")]
    addr: SocketAddr,

    /// Network I/O: `threads` (a blocking thread per connection) or `events`
    /// (one mio reactor thread for every connection, jobs submitted without
    /// waiting; under inline and exclusive the reactor runs them itself).
    #[arg(long, value_enum, default_value_t = Io::Threads)]
    io: Io,

    /// Where jobs run: inline, exclusive, threads or procs (alias pool).
    #[arg(long, default_value = "inline", value_parser = parse_strategy)]
    apply: StrategyKind,

    /// Worker threads (threads) or processes (procs).
    #[arg(long, default_value_t = default_workers())]
    workers: usize,

    /// Jobs that may wait for a worker at once; beyond that, `ERR busy`.
    #[arg(long, default_value_t = 256)]
    queue: usize,

    /// How long a job may wait for a free worker before `ERR busy`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    queue_wait: Duration,

    /// How long a job may run before `ERR timeout`; 0 means no limit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    job_timeout: Duration,

    /// threads, procs (any strategy that hands work away): run a job on the
    /// connection's own thread, as inline would, when its predicted run time
    /// (from its argument and step costs measured at start-up) is below
    /// this; heavier jobs and sleeps still go to the workers. 0 is off.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    inline_below: Duration,

    /// procs only: replace a worker process after this many jobs; 0 never.
    #[arg(long, default_value_t = 0)]
    recycle_after: u64,

    /// Connections served at once; more are answered `ERR busy` and closed.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,

    /// A request line must arrive within this; idle connections are closed
    /// after it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    read_timeout: Duration,

    /// Longest request line in bytes; longer ones get `ERR too-long` and the
    /// connection is closed.
    #[arg(long, default_value_t = 1024)]
    max_line: usize,

    /// On SIGINT/SIGTERM, how long requests in flight may take to finish.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    grace: Duration,

    /// Log filter (error, warn, info, debug, trace, or per module); RUST_LOG
    /// overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
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

/// Parses a duration as people write it: `100us` (or `100µs`), `200ms`,
/// `30s`, `2m`, `1h`, `1.5s`; a bare `0` is zero.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (write it like 200ms, 30s, 2m or 1h)");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds_per_unit = match unit {
        "us" | "µs" => 0.000_001,
        "ms" => 0.001,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())
}

impl Args {
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
        let strategy = StrategyConfig {
            kind: self.apply,
            inline_below: (!self.inline_below.is_zero()).then_some(self.inline_below),
            workers: self.workers,
            queue: self.queue,
            queue_wait: self.queue_wait,
            job_timeout: (!self.job_timeout.is_zero()).then_some(self.job_timeout),
            recycle_after: (self.recycle_after != 0).then_some(self.recycle_after),
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
            log_filter: self.log_level,
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
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "ms", "3 s", "-1s", "1x", "1e99h"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
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
    }
}
