//! `sumserver`: serve sums and primes over TCP, with a thread per connection
//! or one event loop (`--io`), the work done where `--apply` says.
//!
//! Run: `cargo run --release -p server -- --apply threads`

mod cli;

use std::io::Write;
use std::net::TcpListener;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use nix::sys::signal::{SigSet, Signal};
use offload::Strategy;
use server::{Config, Shutdown};

fn main() -> ExitCode {
    // A fork server for `--apply procs` is this executable started again;
    // it turns off here, before anything else runs (see offload's docs).
    offload::fork_server_main_if_requested();
    let args = cli::Args::parse();
    match args.into_config().and_then(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sumserver: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Order matters. (1) Block SIGINT and SIGTERM while this is the only
    // thread, so that every thread started later inherits the mask and only
    // `sigwait` below sees them. (2) Start the strategy (`procs` starts its
    // fork server from this executable). (3) Everything else.
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    signals
        .thread_block()
        .context("could not block SIGINT and SIGTERM")?;
    let strategy = Strategy::start(&config.strategy).context("could not start the strategy")?;
    init_logging(&config.log_filter)?;
    raise_descriptor_limit();

    let listener = TcpListener::bind(config.addr)
        .with_context(|| format!("could not listen on {}", config.addr))?;
    widen_backlog(&listener);
    let local = listener
        .local_addr()
        .context("could not read the bound address")?;
    let mut stdout = std::io::stdout();
    // Scripts wait for this line; a closed stdout must not stop the server.
    let _ = writeln!(stdout, "listening on {local}").and_then(|()| stdout.flush());
    tracing::info!(
        addr = %local,
        io = %config.io,
        apply = %strategy.kind(),
        workers = strategy.config().workers,
        max_connections = config.max_connections,
        "sumserver started"
    );

    let shutdown = Shutdown::new();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || loop {
                match signals.wait() {
                    Ok(signal) if shutdown.is_triggered() => {
                        tracing::info!(%signal, "already shutting down");
                    }
                    Ok(signal) => {
                        tracing::info!(%signal, "signal received; shutting down");
                        shutdown.trigger();
                    }
                    Err(err) => {
                        tracing::error!(%err, "cannot wait for signals");
                        return;
                    }
                }
            }
        })
        .context("could not start the signal thread")?;

    server::run(listener, &config, &strategy, &shutdown).context("the accept loop failed")?;
    drop(strategy);
    tracing::info!("sumserver stopped");
    Ok(())
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

fn init_logging(filter: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => filter.to_owned(),
    };
    let filter =
        EnvFilter::try_new(&filter).with_context(|| format!("bad log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
