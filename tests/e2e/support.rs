//! The end-to-end suite's side of the harness: the [`Io`] model each
//! scenario runs under ([`both_io!`]), how it starts a server (`--io`,
//! `--apply`, a stderr or an environment of its own), and [`Reaped`] for
//! other child processes. The server guard, the connection and the waits
//! are shared with the reliability suite (`tests/common/server.rs`).

use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

pub(crate) use crate::conn::Conn;
pub(crate) use crate::process::{states, Proc};
pub(crate) use crate::server::{eventually, sum_of, Launch, Server, IO_TIMEOUT};

/// The server's I/O model, `--io`: every protocol test runs under both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Io {
    /// A blocking thread per connection.
    Threads,
    /// One reactor thread for every connection.
    Events,
}

impl Io {
    /// The name after `--io`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Io::Threads => "threads",
            Io::Events => "events",
        }
    }
}

/// Turns each scenario `fn name(io: Io)` into two tests, `name::threads`
/// and `name::events`, one per I/O model.
macro_rules! both_io {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            /// The scenario with a thread per connection.
            #[test]
            fn threads() {
                super::$name($crate::support::Io::Threads);
            }

            /// The scenario with one event loop.
            #[test]
            fn events() {
                super::$name($crate::support::Io::Events);
            }
        }
    )+};
}
pub(crate) use both_io;

impl Server {
    /// Starts `sumserver --addr 127.0.0.1:0 --io <io> --apply <apply>
    /// <extra_args…>` and waits (at most [`IO_TIMEOUT`]) for its
    /// `listening on ADDR` line.
    pub(crate) fn start(io: Io, apply: &str, extra_args: &[&str]) -> Server {
        Server::start_e2e(
            env!("CARGO_BIN_EXE_sumserver"),
            io,
            Some(apply),
            extra_args,
            None,
            &[],
        )
    }

    /// [`Server::start`] of the test binary `sumserver-faults`, which also
    /// serves the fault-injection job `panic 1`.
    pub(crate) fn start_faulty(io: Io, apply: &str, extra_args: &[&str]) -> Server {
        Server::start_e2e(
            env!("CARGO_BIN_EXE_sumserver-faults"),
            io,
            Some(apply),
            extra_args,
            None,
            &[],
        )
    }

    /// [`Server::start`] with the server's stderr set to `stderr` (a broken
    /// pipe, `/dev/full`…) instead of a log file.
    pub(crate) fn start_with_stderr(
        io: Io,
        apply: &str,
        extra_args: &[&str],
        stderr: Stdio,
    ) -> Server {
        Server::start_e2e(
            env!("CARGO_BIN_EXE_sumserver"),
            io,
            Some(apply),
            extra_args,
            Some(stderr),
            &[],
        )
    }

    /// [`Server::start`] without `--apply`, with `env` added to the
    /// server's environment (`YSUM_APPLY=procs`…).
    pub(crate) fn start_with_env(io: Io, env: &[(&str, &str)], extra_args: &[&str]) -> Server {
        Server::start_e2e(
            env!("CARGO_BIN_EXE_sumserver"),
            io,
            None,
            extra_args,
            None,
            env,
        )
    }

    /// Starts `binary` with `--io`, `--apply` when given, and the rest.
    /// `NO_COLOR` is left unset: logs are plain whenever stderr is not a
    /// terminal (the flags test relies on it).
    fn start_e2e(
        binary: &str,
        io: Io,
        apply: Option<&str>,
        extra_args: &[&str],
        stderr: Option<Stdio>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut args = vec!["--io", io.name()];
        if let Some(apply) = apply {
            args.extend(["--apply", apply]);
        }
        args.extend_from_slice(extra_args);
        Server::launch(Launch {
            env,
            stderr,
            ..Launch::new(binary, args)
        })
    }
}

/// A child process other than the server (e.g. `python3`), SIGKILLed and
/// reaped when dropped.
#[derive(Debug)]
pub(crate) struct Reaped(pub(crate) Child);

impl Reaped {
    /// Waits at most `within` for the process to exit.
    ///
    /// # Panics
    ///
    /// If it is still running by then.
    pub(crate) fn wait(&mut self, within: Duration) -> ExitStatus {
        let mut status = None;
        eventually(within, || {
            status = self.0.try_wait().expect("try_wait");
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("child {} still running after {within:?}", self.0.id()))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
