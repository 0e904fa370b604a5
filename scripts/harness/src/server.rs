//! A `sumserver` started for one measurement, stopped cleanly afterwards.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running server; dropping it kills it (by its pid) if `stop` was not
/// called.
pub(crate) struct Server {
    child: Option<Child>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl Server {
    /// Starts `binary --addr 127.0.0.1:0 --apply <apply> <extra>` and waits
    /// for its `listening on` line. `apply` may carry the strategy's own
    /// flags after its name (`procs --inline-below 100us`).
    pub(crate) fn start(binary: &Path, apply: &str, extra: &[String]) -> anyhow::Result<Server> {
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0", "--log-level", "warn", "--apply"])
            .args(apply.split_whitespace())
            .args(extra);
        Server::spawn(command, binary)
    }

    /// Starts one of this binary's floor servers (`bare`, `relay` or
    /// `shared`, see `floor_server.rs`); stop it with [`Server::stop_floor`].
    pub(crate) fn floor(mode: &str) -> anyhow::Result<Server> {
        let binary = std::env::current_exe()?;
        let mut command = Command::new(&binary);
        command.args(["floor-server", mode]).stdin(Stdio::piped());
        Server::spawn(command, &binary)
    }

    /// Stops a floor server: it exits, its echoes stopped and reaped, when
    /// its stdin closes; killed if it has not within 5 s.
    pub(crate) fn stop_floor(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                child.wait()?;
                bail!("the floor server did not stop when its stdin closed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn spawn(mut command: Command, binary: &Path) -> anyhow::Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut server = Server {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        read.context("reading the server's first line")?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("unexpected first line from the server: {line:?}");
        };
        server.addr = addr
            .parse()
            .with_context(|| format!("bad address {addr:?}"))?;
        Ok(server)
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
            .unwrap_or(0)
    }

    /// SIGTERM, then wait for a clean exit (at most 15 s).
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        kill(pid, Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
