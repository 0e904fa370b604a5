//! The command line, and the only place that knows clap: [`Args`] is turned
//! at once into a plain [`Plan`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use client::{Amount, Config, Connection, Job, Mix};

/// A threaded load generator for sumserver: it sends requests from N client
/// threads, checks every answer, and reports throughput and latency.
///
/// Given only N, it repeats the original 2009 experiment: 1000 requests in
/// all, 1000 / N per thread, each `sumn 25000` on a new connection in the
/// seed dialect, to 127.0.0.1:10000. The first two lines of the report are
/// the original's (`1000 total requests`, then the elapsed seconds).
///
/// Without --keep-alive each request opens its own connection: sumn up to 16
/// digits goes in the seed dialect (the bare number, answered by the bare
/// sum), and larger sumn, prime, sleep and ping, which the seed dialect
/// cannot carry, in the line dialect (send one line, read one line, close).
#[derive(Debug, Parser)]
#[command(
    name = "sumclient",
    version,
    override_usage = "sumclient [OPTIONS] <N>\n       sumclient [OPTIONS] --sweep <N,N,…>",
    after_help = "Latency runs from each request's start (before its connect, for a new \
connection) to its answer; with --rate, from the time it was due, and the uncorrected \
figure from its actual start is shown beside it; a retried request, from its first attempt. \
Requests that got no reply are counted, not timed. Every planned request is counted as \
ok, wrong or an error: one whose target could not be reached counts as an error of that \
kind (connect refused).\n\n\
Ctrl-C stops sending, waits briefly for the requests in flight and prints the report of \
what was done, marked as interrupted; a second Ctrl-C quits at once.\n\n\
Exit status: 0 when every answer was right; 1 when an answer was wrong, a request \
failed or the server sent a reply nobody asked for; 2 when no connection could be made \
at all, or the arguments are wrong (output files are checked before the load starts); \
130 when interrupted by Ctrl-C."
)]
pub(crate) struct Args {
    /// Client threads: required, unless --sweep gives several counts.
    #[arg(
        value_name = "N",
        required_unless_present = "sweep",
        conflicts_with = "sweep"
    )]
    threads: Option<usize>,

    /// Server address; repeat it to spread the threads over several servers,
    /// round-robin.
    #[arg(long = "addr", env = "YSUM_ADDR", value_name = "HOST:PORT", default_value = "127.0.0.1:10000", value_parser = parse_addr)]
    addrs: Vec<SocketAddr>,

    /// Requests in all, split evenly over the threads (TOTAL / N each, the
    /// remainder dropped, as the original).
    #[arg(
        long,
        env = "YSUM_REQUESTS",
        value_name = "TOTAL",
        default_value_t = 1000,
        conflicts_with = "duration"
    )]
    requests: u64,

    /// Send requests for this long instead of a number of them: 200ms, 10s,
    /// 2m.
    #[arg(long, env = "YSUM_DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Leave the requests of this first stretch out of the figures (they are
    /// still checked); --requests or --duration count from its end.
    #[arg(long, env = "YSUM_WARMUP", default_value = "0", value_parser = parse_duration)]
    warmup: Duration,

    /// The job of every request: sumn:N, prime:N, sleep:MS or ping.
    #[arg(
        long,
        env = "YSUM_JOB",
        default_value = "sumn:25000",
        conflicts_with = "mix"
    )]
    job: Job,

    /// A weighted mix of jobs instead of one, such as
    /// 'sumn:1=90,prime:1000003=10'; latency is reported per kind too.
    #[arg(long, env = "YSUM_MIX")]
    mix: Option<Mix>,

    /// One persistent line-dialect connection per thread instead of one
    /// connection per request.
    #[arg(long, env = "YSUM_KEEP_ALIVE")]
    keep_alive: bool,

    /// Requests in flight per connection; implies --keep-alive.
    #[arg(long, env = "YSUM_PIPELINE", value_name = "D")]
    pipeline: Option<usize>,

    /// Open loop: R requests per second in total on a fixed schedule (R / N
    /// per thread); latency is measured from when each request was due.
    #[arg(long, env = "YSUM_RATE", value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,

    /// How long one attempt of a request may take.
    #[arg(long, env = "YSUM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,

    /// Send a request again on a new connection, up to this many times,
    /// when its connection failed before any byte of its reply arrived
    /// (connect refused, reset, closed) or the server answered `ERR
    /// shutting-down`. Every job is idempotent, so this is safe; the report
    /// counts the retries by cause.
    #[arg(long, env = "YSUM_RETRIES", value_name = "N", default_value_t = 0)]
    retries: u32,

    /// Run once for each of these thread counts and print one table.
    #[arg(long, env = "YSUM_SWEEP", value_name = "N,N,…", value_delimiter = ',')]
    sweep: Option<Vec<usize>>,

    /// Print one JSON result on stdout instead of the text.
    #[arg(long, env = "YSUM_JSON")]
    json: bool,

    /// Write the overall latency distribution to FILE in HdrHistogram's
    /// .hgrm text layout, in milliseconds.
    #[arg(long, env = "YSUM_HGRM", value_name = "FILE", conflicts_with = "sweep")]
    hgrm: Option<PathBuf>,

    /// Write every request to FILE as a line of JSON: the request, each
    /// attempt's target and outcome, the reply or error, and times in ms
    /// since the run began (client/src/history.rs describes the lines).
    #[arg(
        long,
        env = "YSUM_HISTORY",
        value_name = "FILE",
        conflicts_with = "sweep"
    )]
    history: Option<PathBuf>,

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

/// What the binary will do: the run's settings and where its report goes.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The run (for a sweep, everything but the thread count).
    pub(crate) config: Config,
    /// The thread counts of a sweep.
    pub(crate) sweep: Option<Vec<usize>>,
    /// JSON instead of text on stdout.
    pub(crate) json: bool,
    /// Where to write the .hgrm distribution.
    pub(crate) hgrm: Option<PathBuf>,
    /// Where to write the history of every request.
    pub(crate) history: Option<PathBuf>,
}

/// Parses `HOST:PORT`, resolving a host name to its first address.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = |why: String| format!("{text:?} is not an address HOST:PORT ({why})");
    text.to_socket_addrs()
        .map_err(|err| bad(err.to_string()))?
        .next()
        .ok_or_else(|| bad("it resolves to no address".into()))
}

/// Parses a rate in requests per second, above zero.
fn parse_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("{text:?} is not a rate above 0 requests per second"))
}

impl Args {
    /// Checks what clap cannot, and builds the [`Plan`].
    pub(crate) fn into_plan(self) -> anyhow::Result<Plan> {
        let counts: Vec<usize> = match (&self.sweep, self.threads) {
            (Some(sweep), _) => sweep.clone(),
            (None, Some(n)) => vec![n],
            (None, None) => bail!("give the number of threads N, or --sweep"),
        };
        if counts.contains(&0) {
            bail!("the number of threads must be at least 1, got 0");
        }
        if counts.is_empty() {
            bail!("--sweep needs at least one thread count");
        }
        let amount = match self.duration {
            Some(length) if length.is_zero() => bail!("--duration must be above zero"),
            Some(length) => Amount::Duration(length),
            None => Amount::Requests(self.requests),
        };
        if let Amount::Requests(total) = amount {
            let most = counts.iter().copied().max().unwrap_or(1);
            if total < most as u64 {
                bail!(
                    "--requests {total} leaves some of the {most} threads nothing to do \
                     (each makes TOTAL / N)"
                );
            }
        }
        if self.timeout.is_zero() {
            bail!("--timeout must be above zero");
        }
        let connection = match self.pipeline {
            Some(0) => bail!("--pipeline must be at least 1, got 0"),
            Some(pipeline) => Connection::KeepAlive { pipeline },
            None if self.keep_alive => Connection::KeepAlive { pipeline: 1 },
            None => Connection::Fresh,
        };
        let config = Config {
            threads: counts[0],
            targets: self.addrs,
            amount,
            warmup: self.warmup,
            mix: self.mix.unwrap_or_else(|| Mix::single(self.job)),
            connection,
            rate: self.rate,
            timeout: self.timeout,
            retries: self.retries,
            history: None,
        };
        Ok(Plan {
            config,
            sweep: self.sweep,
            json: self.json,
            hgrm: self.hgrm,
            history: self.history,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(args: &[&str]) -> anyhow::Result<Plan> {
        let mut argv = vec!["sumclient"];
        argv.extend_from_slice(args);
        values::try_parse_from::<Args>(argv)?.into_plan()
    }

    /// Durations read as people write them; bad ones are quoted.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "ms", "-1s", "1x", "99999999999999999999h", "1..2s"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// Every duration option refuses `-1s` as negative (it used to be read
    /// as an unknown flag `-1`), and `--keep-alive` and `--json` take yes or
    /// no from their variables in every spelling.
    #[test]
    fn durations_and_flags_follow_the_shared_rules() {
        let (durations, flags) = values::check_rules::<Args>(&["sumclient", "4"]);
        assert_eq!(durations, ["--duration", "--warmup", "--timeout"]);
        assert_eq!(flags, ["--keep-alive", "--json"]);
    }

    /// With only N, the plan is the original experiment.
    #[test]
    fn defaults_are_the_original() {
        let plan = plan_of(&["4"]).expect("valid");
        let c = &plan.config;
        assert_eq!(c.threads, 4);
        assert_eq!(c.targets, vec!["127.0.0.1:10000".parse().unwrap()]);
        assert_eq!(c.amount, Amount::Requests(1000));
        assert_eq!(c.mix, Mix::single(Job::Sumn(25_000)));
        assert_eq!(c.connection, Connection::Fresh);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retries, 0);
        assert_eq!((c.rate, plan.json, plan.sweep), (None, false, None));
    }

    /// Every option maps onto the plan; --pipeline implies --keep-alive.
    #[test]
    fn options_map() {
        let plan = plan_of(&[
            "2",
            "--addr",
            "127.0.0.1:1",
            "--addr",
            "127.0.0.1:2",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
            "--mix",
            "sumn:1=9,ping=1",
            "--pipeline",
            "8",
            "--rate",
            "200",
            "--timeout",
            "2s",
            "--retries",
            "3",
            "--json",
            "--hgrm",
            "out.hgrm",
        ])
        .expect("valid");
        let c = &plan.config;
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.amount, Amount::Duration(Duration::from_secs(3)));
        assert_eq!(c.warmup, Duration::from_millis(500));
        assert_eq!(c.mix.to_string(), "sumn:1=9,ping=1");
        assert_eq!(c.connection, Connection::KeepAlive { pipeline: 8 });
        assert_eq!(c.rate, Some(200.0));
        assert_eq!(c.retries, 3);
        assert!(plan.json && plan.hgrm.is_some());
        let swept = plan_of(&["--sweep", "1,2,4", "--keep-alive", "--job", "prime:7"]);
        let swept = swept.expect("valid");
        assert_eq!(swept.sweep, Some(vec![1, 2, 4]));
        assert_eq!(
            swept.config.connection,
            Connection::KeepAlive { pipeline: 1 }
        );
        assert_eq!(swept.config.mix, Mix::single(Job::Prime(7)));
    }

    /// Bad values are refused with the value quoted.
    #[test]
    fn bad_values_quoted() {
        for (args, quoted) in [
            (&["4", "--job", "fib:3"][..], "\"fib:3\""),
            (&["4", "--job", "sumn:-1"][..], "\"sumn:-1\""),
            (&["4", "--mix", "sumn:1=ninety"][..], "\"sumn:1=ninety\""),
            (&["4", "--duration", "soon"][..], "\"soon\""),
            (&["4", "--rate", "-5"][..], "\"-5\""),
            (&["4", "--addr", "nowhere"][..], "\"nowhere\""),
            (&["4", "--retries", "-1"][..], "-1"),
            (&["four"][..], "four"),
        ] {
            let err = plan_of(args).expect_err(quoted);
            assert!(err.to_string().contains(quoted), "{args:?}: {err}");
        }
    }

    /// Settings that cannot make a run are refused, and conflicting options
    /// too.
    #[test]
    fn impossible_settings_refused() {
        for args in [
            &["0"][..],
            &["4", "--requests", "3"],
            &["4", "--pipeline", "0"],
            &["4", "--timeout", "0"],
            &["4", "--duration", "0"],
            &["--sweep", "1,0"],
            &["--sweep", "1,8", "--requests", "4"],
            &["4", "--requests", "10", "--duration", "1s"],
            &["4", "--job", "ping", "--mix", "ping"],
            &["4", "--sweep", "1,2"],
            &["--sweep", "1,2", "--hgrm", "x"],
            &[],
        ] {
            assert!(plan_of(args).is_err(), "{args:?} accepted");
        }
    }

    /// The usage and the help say N is required, as it is.
    #[test]
    fn help_agrees_that_n_is_required() {
        use clap::CommandFactory as _;
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("Usage: sumclient [OPTIONS] <N>\n"), "{help}");
        assert!(help.contains("Given only N, it repeats"), "{help}");
        assert!(help.contains("required, unless --sweep"), "{help}");
        let err = Args::try_parse_from(["sumclient"]).expect_err("N is required");
        assert!(err.to_string().contains("<N>"), "{err}");
    }
}
