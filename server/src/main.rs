//! `sumserver`: serve sums and primes over TCP, with a thread per connection
//! or one event loop (`--io`), the work done where `--apply` says.
//!
//! Run: `cargo run --release -p ysum-server -- --apply threads`

mod cli;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use offload::{Strategy, StrategyKind};
use server::counts::ConnectionCounts;
use server::metrics::{MetricsEndpoint, ServerCollector};
use server::{Config, Shutdown, Stopped};
use service::StopSignals;

/// The exit status when the grace period ran out and requests were cut
/// short (each told `ERR shutting-down`).
const EXIT_CUT_SHORT: u8 = 3;

fn main() -> ExitCode {
    entry(false)
}

/// The whole program; `hidden_jobs` lets requests name a test build's
/// fault-injection jobs, which only the test binary `sumserver-faults`
/// (`src/bin/sumserver-faults.rs`) asks for.
pub(crate) fn entry(hidden_jobs: bool) -> ExitCode {
    // A fork server for `--apply procs` is this executable started again;
    // it turns off here, before anything else runs (see offload's docs).
    offload::fork_server_main_if_requested();
    let args = cli::parse();
    if let Some(what) = args.generate {
        return match cli::write_generated(what, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                server::logging::last_words(
                    "sumserver",
                    &format!("sumserver: {err}"),
                    args.log_format(),
                );
                ExitCode::FAILURE
            }
        };
    }
    let log_format = args.log_format();
    let config = args.into_config().map(|config| Config {
        hidden_jobs,
        ..config
    });
    let status = match config.and_then(serve) {
        Ok(Stopped { cut_short: 0 }) => ExitCode::SUCCESS,
        Ok(Stopped { .. }) => ExitCode::from(EXIT_CUT_SHORT),
        Err(err) => {
            server::logging::finish();
            server::logging::last_words("sumserver", &format!("sumserver: {err:#}"), log_format);
            return ExitCode::FAILURE;
        }
    };
    server::logging::finish();
    status
}

fn serve(config: Config) -> anyhow::Result<Stopped> {
    // Order matters. (1) Block the stop signals while this is the only
    // thread, so that every thread started later inherits the mask and only
    // the signal thread sees them. (2) Start the strategy (`procs` starts
    // its fork server from this executable). (3) Everything else. (4) Only
    // once the signal thread runs is the server ready to serve *and* to be
    // stopped: then, and not before, `listening on` is printed.
    let signals = StopSignals::block().context("could not block SIGINT, SIGTERM and SIGHUP")?;
    let strategy = Strategy::start(&config.strategy).context("could not start the strategy")?;
    server::logging::start(&config.log_filter, config.log_format)?;
    raise_descriptor_limit();

    let listener = TcpListener::bind(config.addr)
        .with_context(|| format!("could not listen on {}", config.addr))?;
    widen_backlog(&listener);
    let local = listener
        .local_addr()
        .context("could not read the bound address")?;
    let counts = Arc::new(ConnectionCounts::new());
    let shutdown = Shutdown::new();
    let metrics = config
        .metrics
        .map(|addr| {
            let collector = ServerCollector {
                stats: strategy.stats_reader(),
                connections: Arc::clone(&counts),
                io: config.io.name(),
            };
            let ready = server::metrics::readiness(strategy.stats_reader(), shutdown.clone());
            MetricsEndpoint::start(addr, "ysum", Box::new(collector), ready)
        })
        .transpose()?;

    signals
        .watch({
            let shutdown = shutdown.clone();
            move |signal| {
                tracing::info!(%signal, "signal received; shutting down gracefully");
                shutdown.trigger();
            }
        })
        .context("could not start the signal thread")?;

    let mut stdout = std::io::stdout();
    // Scripts wait for this line; a closed stdout must not stop the server.
    let _ = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush());
    if let Some(metrics) = &metrics {
        let _ = writeln!(stdout, "metrics on {}", metrics.addr()).and_then(|()| stdout.flush());
    }
    match local_workers(&strategy) {
        Some(workers) => tracing::info!(
            addr = %local,
            io = %config.io,
            apply = %strategy.kind(),
            workers,
            max_connections = config.max_connections,
            "sumserver started"
        ),
        None => tracing::info!(
            addr = %local,
            io = %config.io,
            apply = %strategy.kind(),
            max_connections = config.max_connections,
            "sumserver started"
        ),
    }

    let stopped = server::run(listener, &config, &strategy, &shutdown, &counts)
        .context("the accept loop failed")?;
    drop(metrics);
    drop(strategy);
    tracing::info!(cut_short = stopped.cut_short, "sumserver stopped");
    Ok(stopped)
}

/// The worker threads or processes this server runs, where it runs any:
/// under `inline` and `exclusive` a job runs on its connection's thread,
/// and under `remote` in sumworker processes, so `--workers` counts
/// nothing there and is not logged as if it did.
fn local_workers(strategy: &Strategy) -> Option<usize> {
    match strategy.kind() {
        StrategyKind::Threads | StrategyKind::Procs => Some(strategy.config().workers),
        StrategyKind::Inline | StrategyKind::Exclusive | StrategyKind::Remote => None,
    }
}

/// Raises the soft limit on open descriptors to the hard limit, so that
/// either I/O model can hold thousands of connections (the usual soft limit
/// is 1024). A failure only costs capacity, so it is logged, not fatal.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the descriptor limit"),
            Err(err) => tracing::debug!(%err, soft, hard, "could not raise the descriptor limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "descriptor limit already at its maximum"),
        Err(err) => tracing::debug!(%err, "could not read the descriptor limit"),
    }
}

/// Connections the kernel may complete before the server accepts them.
const BACKLOG: i32 = 4096;

/// std listens with a backlog of 128: a burst of more connects than that
/// (the overload tests send 2000 at once) overflows it, and the kernel
/// drops SYNs that the clients resend only after a second. Listening again
/// on a listening socket raises the backlog on Linux, up to
/// `net.core.somaxconn`.
fn widen_backlog(listener: &TcpListener) {
    use nix::sys::socket::{listen, Backlog};
    let widened = Backlog::new(BACKLOG).and_then(|backlog| listen(listener, backlog));
    if let Err(err) = widened {
        tracing::debug!(%err, "could not widen the listen backlog; it stays at 128");
    }
}
