//! `scripts/cluster`: it starts a working cluster, stops it cleanly on
//! SIGTERM, and leaves no process behind when it is SIGKILLed; with
//! `--remote W` the servers' jobs go through its own Redis to its W
//! sumworkers, which stop with the rest; bad `--remote` values start
//! nothing. It supervises: a server, worker or Redis that exits is started
//! again (a server on its port, at no cost to the clients), one that keeps
//! dying stops the cluster, HAProxy's exit is fatal. With `--sentinel`
//! the broker is a primary and a replica behind three sentinels, and a
//! killed primary fails over. A port in use or a binary that is missing
//! or cannot run is one line, before anything starts.
//!
//! # Layout
//!
//! - this file: [`Script`], the script run as a child with its own run
//!   folder, the processes under it found in `/proc`, and helpers.
//! - `stop`: SIGTERM and SIGKILL of the script.
//! - `remote`: `--remote W`, jobs through its Redis to its workers.
//! - `refusals`: bad values, missing binaries and a port in use start
//!   nothing.
//! - `supervision`: members that exit come back; one that keeps dying, or
//!   HAProxy, ends the cluster.
//! - `sentinel`: `--remote W --sentinel`, a primary, a replica and three
//!   sentinels; a failover and the restarts around it.

mod refusals;
mod remote;
mod sentinel;
mod stop;
mod supervision;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::balancer::{free_port, haproxy, workspace};
use crate::engines::{redis_sentinel, redis_server, sumworker};
use crate::process::{bury, states, Proc};
use crate::support::{eventually, Conn, Reaped, IO_TIMEOUT};

/// A fresh `--run-dir` for one run of the script (not created).
fn fresh_run_dir() -> PathBuf {
    static STARTED: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "ysum-haproxy-cluster-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The script, with the binaries of this build.
fn script_command(run_dir: &Path) -> Command {
    let mut command = script_command_in_temporary();
    command.arg("--run-dir").arg(run_dir);
    command
}

/// The script, with the binaries of this build, left to make its own
/// temporary run folder.
fn script_command_in_temporary() -> Command {
    let mut command = Command::new(workspace().join("scripts/cluster"));
    command
        .env("YSUM_SUMSERVER", env!("CARGO_BIN_EXE_sumserver"))
        .stdin(Stdio::null());
    command
}

/// What the script says on stderr before the folder it chose.
const RUN_DIR_LINE: &str = "cluster: logs, status and admin socket in ";

/// A running `scripts/cluster`, with its descendants once up.
struct Script {
    child: Reaped,
    /// Every process under the script: those found in `/proc` once it was
    /// up, then each one it announced as restarted.
    tree: Vec<Proc>,
    /// What it printed on stdout, up to `balancer on …`.
    lines: Vec<String>,
    /// Its later lines on stdout, as it prints them (restarts).
    later: mpsc::Receiver<String>,
    /// Its `--run-dir`, or the temporary folder it chose; removed on drop.
    run_dir: Removed,
    /// Its stderr, in a file beside the run folder; removed on drop.
    stderr: Removed,
}

impl Script {
    /// `--servers 2` with `--apply threads` servers.
    fn start() -> Script {
        let script = Script::start_with(2, &[], &["--apply", "threads"]);
        let expected = ["server 1 on ", "server 2 on ", "balancer on "];
        script.assert_lines(&expected);
        script
    }

    /// `--servers 2 --remote 2 --worker-slots 1`: Redis, two workers, two
    /// `--apply remote` servers and HAProxy.
    fn start_remote() -> Script {
        let script = Script::start_with(2, &["--remote", "2", "--worker-slots", "1"], &[]);
        let expected = [
            "redis on 127.0.0.1:",
            "worker 1 as w1 ",
            "worker 2 as w2 ",
            "server 1 on ",
            "server 2 on ",
            "balancer on ",
        ];
        script.assert_lines(&expected);
        script
    }

    /// Starts the script with `--servers servers`, `args` and `server_args`
    /// (after `--`, with a short `--grace`), waits for its `balancer on`
    /// line, and checks that the processes under it are exactly those whose
    /// pids it printed, and that the balancer answers.
    fn start_with(servers: usize, args: &[&str], server_args: &[&str]) -> Script {
        Script::launch(servers, args, server_args, Some(fresh_run_dir()))
    }

    /// [`Script::start_with`], in the folder `run_dir` (`--run-dir`) or,
    /// with `None`, in the temporary one the script chooses.
    fn launch(
        servers: usize,
        args: &[&str],
        server_args: &[&str],
        run_dir: Option<PathBuf>,
    ) -> Script {
        let stderr = Removed(fresh_run_dir().with_extension("stderr"));
        // Removed even if the start fails; a temporary one is known only
        // once the script has named it.
        let given = run_dir.map(Removed);
        let mut command = match &given {
            Some(run_dir) => script_command(&run_dir.0),
            None => script_command_in_temporary(),
        };
        command
            .args(["--servers", &servers.to_string()])
            .args(["--port", &free_port().to_string()])
            .args(args)
            .args(["--", "--grace", "1s"])
            .args(server_args)
            .env("YSUM_HAPROXY", haproxy())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr.0).expect("create the script's stderr file"));
        if args.contains(&"--remote") {
            command
                .env("YSUM_REDIS", redis_server())
                .env("YSUM_SUMWORKER", sumworker());
        }
        if args.contains(&"--sentinel") {
            command.env("YSUM_SENTINEL", redis_sentinel());
        }
        let mut child = Reaped(command.spawn().expect("spawn scripts/cluster"));
        let (lines, later) = read_until_balancer(&mut child.0, &stderr.0);
        let run_dir = given.unwrap_or_else(|| {
            let said = fs::read_to_string(&stderr.0).unwrap_or_default();
            let named = said.lines().find_map(|l| l.strip_prefix(RUN_DIR_LINE));
            Removed(PathBuf::from(named.unwrap_or_else(|| {
                panic!("no run folder named on stderr:\n{said}")
            })))
        });
        let pid = i32::try_from(child.0.id()).unwrap();
        let mut tree = Vec::new();
        let mut parents = vec![pid];
        while let Some(parent) = parents.pop() {
            for p in Proc::children_of(parent) {
                parents.push(p.pid);
                tree.push(p);
            }
        }
        let script = Script {
            child,
            tree,
            lines,
            later,
            run_dir,
            stderr,
        };
        let printed: BTreeSet<i32> = script.lines.iter().map(|l| printed_pid(l)).collect();
        let found: BTreeSet<i32> = script.tree.iter().map(|p| p.pid).collect();
        assert_eq!(
            printed, found,
            "the pids printed ({:?}) are the processes under the script ({:?})",
            script.lines, script.tree
        );
        let mut conn = script.balancer_conn();
        assert_eq!(conn.request("sumn 25000"), "312512500");
        script
    }

    /// Checks that line I starts with `expected[I]` (and nothing more was
    /// printed).
    fn assert_lines(&self, expected: &[&str]) {
        assert_eq!(self.lines.len(), expected.len(), "{:?}", self.lines);
        for (line, prefix) in self.lines.iter().zip(expected) {
            assert!(line.starts_with(prefix), "{prefix:?}: {:?}", self.lines);
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.0.id()).unwrap())
    }

    /// The line printed at start that begins with `prefix`.
    fn line(&self, prefix: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.lines))
    }

    /// The address on the line that starts with `prefix` (`… on ADDR (pid N)`).
    fn addr(&self, prefix: &str) -> String {
        self.line(prefix)[prefix.len()..]
            .split_whitespace()
            .next()
            .expect("an address")
            .to_owned()
    }

    /// A connection to HAProxy's front.
    fn balancer_conn(&self) -> Conn {
        let addr = self.addr("balancer on ");
        Conn::new(TcpStream::connect(addr).expect("the balancer"))
    }

    /// A connection straight to server `index`.
    fn server_conn(&self, index: usize) -> Conn {
        let addr = self.addr(&format!("server {index} on "));
        Conn::new(TcpStream::connect(addr).expect("a server"))
    }

    /// SIGKILLs `pid`, after checking that it is a child of the script (so
    /// a process this test started).
    fn kill_member(&self, pid: i32) {
        let member = Proc::read(pid).filter(|p| p.ppid == self.pid().as_raw());
        assert!(member.is_some(), "pid {pid} is not the script's child");
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }

    /// The next line on stdout within `within`; `None` at its end (the
    /// script exited) or when none came.
    fn next_line(&self, within: Duration) -> Option<String> {
        self.later.recv_timeout(within).ok()
    }

    /// Waits for the restart of the member whose start line began with
    /// `prefix` (see [`Script::restarted`]); returns its new pid.
    fn expect_restart(&mut self, prefix: &str, old_pid: i32) -> i32 {
        let line = self
            .next_line(IO_TIMEOUT)
            .unwrap_or_else(|| panic!("no restart of {prefix:?}; stderr:\n{}", self.stderr_text()));
        self.restarted(prefix, old_pid, &line)
    }

    /// Checks that `line` is `START restarted`, where START is what the
    /// line that began with `prefix` said at start up to its pid: the
    /// member is back under the same name and address, with another pid,
    /// a child of the script. Returns that pid, which joins the processes
    /// buried on drop.
    fn restarted(&mut self, prefix: &str, old_pid: i32, line: &str) -> i32 {
        let start = self.line(prefix);
        let same = &start[..start.rfind("(pid ").expect("a pid")];
        let announced = line
            .strip_suffix(" restarted")
            .unwrap_or_else(|| panic!("not a restart: {line:?}"));
        assert!(announced.starts_with(same), "{line:?} after {start:?}");
        let pid = printed_pid(announced);
        assert_ne!(pid, old_pid, "{line:?}");
        self.adopt(pid, line);
        pid
    }

    /// Checks that `pid`, printed on `line`, is a child of the script, and
    /// adds it to the processes buried on drop.
    fn adopt(&mut self, pid: i32, line: &str) {
        let process = Proc::read(pid).unwrap_or_else(|| panic!("{line:?}: no such process"));
        assert_eq!(
            process.ppid,
            self.pid().as_raw(),
            "{line:?}: not the script's child"
        );
        self.tree.push(process);
    }

    /// Waits (bounded) for the script to exit; its status.
    fn wait(&mut self) -> ExitStatus {
        self.child.wait(Duration::from_secs(20))
    }

    /// What the script wrote on stderr so far.
    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr.0).unwrap_or_default()
    }

    /// Whether every process it started has exited.
    fn all_gone(&self) -> bool {
        eventually(Duration::from_secs(5), || {
            self.tree.iter().all(Proc::has_exited)
        })
    }

    /// SIGTERM: the script exits 0 within the stop deadlines, and every
    /// process it started is gone. Returns what it wrote on stderr.
    fn sigterm_and_check_all_gone(mut self) -> String {
        self.stop_and_check_all_gone()
    }

    /// [`Script::sigterm_and_check_all_gone`], keeping the script's
    /// files for the caller to look at until it is dropped.
    fn stop_and_check_all_gone(&mut self) -> String {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = self.wait();
        assert!(
            status.success(),
            "scripts/cluster exited with {status}: {}",
            self.stderr_text()
        );
        assert!(
            self.tree.iter().all(Proc::has_exited),
            "left behind: {:?} of {:?}",
            states(&self.tree),
            self.lines
        );
        self.stderr_text()
    }
}

impl Drop for Script {
    /// Then its fields remove the run folder and the stderr file.
    fn drop(&mut self) {
        bury(&self.tree);
    }
}

/// A file or folder removed on drop, even when the test fails.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.0).is_err() {
            let _ = fs::remove_file(&self.0);
        }
    }
}

/// The pid at the end of a summary line, `… (pid N)`.
fn printed_pid(line: &str) -> i32 {
    line.rsplit_once("(pid ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no `(pid N)` at the end of {line:?}"))
}

/// Its stdout up to `balancer on …`, and a receiver of the lines after it:
/// read on a thread, so that every wait is bounded.
fn read_until_balancer(child: &mut Child, stderr: &Path) -> (Vec<String>, mpsc::Receiver<String>) {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while lines
        .last()
        .is_none_or(|l: &String| !l.starts_with("balancer on "))
    {
        // Each line comes within the script's own start deadline (15 s).
        match rx.recv_timeout(IO_TIMEOUT * 2) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "scripts/cluster printed only {lines:?}; stderr:\n{}",
                fs::read_to_string(stderr).unwrap_or_default()
            ),
        }
    }
    (lines, rx)
}

/// The port at the end of `HOST:PORT`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// Whether a job sent through the balancer on a new connection is
/// answered right within [`IO_TIMEOUT`] (`ERR unavailable` while the
/// servers reach a restarted broker again).
fn answers_through_balancer(script: &Script) -> bool {
    let addr = script.addr("balancer on ");
    eventually(IO_TIMEOUT, || {
        TcpStream::connect(&addr)
            .ok()
            .and_then(|stream| Conn::new(stream).try_request("sumn 100").ok())
            .is_some_and(|answer| answer == "5050")
    })
}
