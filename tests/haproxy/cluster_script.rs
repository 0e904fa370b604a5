//! `scripts/cluster`: it starts a working cluster, stops it cleanly on
//! SIGTERM, and leaves no process behind when it is SIGKILLed; with
//! `--remote W` the servers' jobs go through its own Redis to its W
//! sumworkers, which stop with the rest; bad `--remote` values start
//! nothing. It supervises: a server, worker or Redis that exits is started
//! again (a server on its port, at no cost to the clients), one that keeps
//! dying stops the cluster, HAProxy's exit is fatal. A port in use or a
//! binary that is missing or cannot run is one line, before anything
//! starts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::balancer::{free_port, haproxy, workspace, BACKEND};
use crate::engines::{redis_server, sumworker};
use crate::load::Load;
use crate::one_at_a_time;
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
    let mut command = Command::new(workspace().join("scripts/cluster"));
    command
        .arg("--run-dir")
        .arg(run_dir)
        .env("YSUM_SUMSERVER", env!("CARGO_BIN_EXE_sumserver"))
        .stdin(Stdio::null());
    command
}

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
    /// Its `--run-dir`, removed on drop.
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
        let run_dir = Removed(fresh_run_dir());
        let stderr = Removed(run_dir.0.with_extension("stderr"));
        let mut command = script_command(&run_dir.0);
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
        let mut child = Reaped(command.spawn().expect("spawn scripts/cluster"));
        let (lines, later) = read_until_balancer(&mut child.0, &stderr.0);
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
        let process = Proc::read(pid).unwrap_or_else(|| panic!("{line:?}: no such process"));
        assert_eq!(
            process.ppid,
            self.pid().as_raw(),
            "{line:?}: not the script's child"
        );
        self.tree.push(process);
        pid
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

/// SIGTERM: the script stops its servers and HAProxy and exits 0.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn sigterm_stops_everything() {
    let _serial = one_at_a_time();
    Script::start().sigterm_and_check_all_gone();
}

/// SIGKILL of the script: the kernel tells its children (PDEATHSIG), and
/// none of them outlives it by more than a sumserver's grace.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn kill_9_leaves_no_process() {
    let _serial = one_at_a_time();
    let mut script = Script::start();
    kill(script.pid(), Signal::SIGKILL).unwrap();
    script.child.wait(Duration::from_secs(5));
    let gone = eventually(Duration::from_secs(5), || {
        script.tree.iter().all(Proc::has_exited)
    });
    assert!(gone, "left behind: {:?}", states(&script.tree));
}

/// The jobs sent through the front, with their answers: both kinds, on two
/// connections (leastconn gives each server one).
const JOBS: [(&str, &str); 4] = [
    ("sumn 25000", "312512500"),
    ("prime 1000003", "true"),
    ("sumn 100", "5050"),
    // 101 × 9901.
    ("prime 1000001", "false"),
];

/// One field of an `XINFO …` reply (a flat list of names and values).
fn xinfo_field(reply: &[redis::Value], name: &str) -> redis::Value {
    reply
        .chunks(2)
        .find_map(|pair| match pair {
            [key, value] if redis::from_redis_value_ref::<String>(key).is_ok_and(|k| k == name) => {
                Some(value.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
}

fn xinfo_int(reply: &[redis::Value], name: &str) -> i64 {
    redis::from_redis_value(xinfo_field(reply, name)).expect("an integer")
}

/// `--remote 2`: right answers through HAProxy, every job through the
/// script's Redis and taken and settled by its workers; SIGTERM stops all
/// six processes (servers, HAProxy, workers, Redis).
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(no_redis, not(no_haproxy)),
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn remote_runs_the_jobs_on_its_workers() {
    let _serial = one_at_a_time();
    let script = Script::start_remote();
    // Start also asked `sumn 25000` once through the front.
    let mut sent = 1;
    let mut conns = [script.balancer_conn(), script.balancer_conn()];
    for conn in &mut conns {
        for (job, answer) in JOBS {
            assert_eq!(conn.request(job), answer, "{job}");
            sent += 1;
        }
    }
    drop(conns);

    // The broker's side: every job was added to the stream, and workers
    // settled each one (a settled entry is acknowledged and deleted in the
    // worker's MULTI); both workers are consumers of the group.
    let broker = format!("redis://{}", script.addr("redis on "));
    let mut redis = redis::Client::open(broker.as_str())
        .and_then(|c| c.get_connection_with_timeout(IO_TIMEOUT))
        .expect("connect to the cluster's redis");
    let stream: Vec<redis::Value> = redis::cmd("XINFO")
        .arg(&["STREAM", "ysum:jobs"])
        .query(&mut redis)
        .expect("XINFO STREAM");
    assert_eq!(xinfo_int(&stream, "entries-added"), sent, "{stream:?}");
    assert_eq!(xinfo_int(&stream, "length"), 0, "{stream:?}");
    let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg(&["GROUPS", "ysum:jobs"])
        .query(&mut redis)
        .expect("XINFO GROUPS");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(xinfo_int(&groups[0], "pending"), 0, "{groups:?}");
    // A worker joins the group as a consumer at its first read, moments
    // after its `reading` line.
    let both = BTreeSet::from(["w1".to_owned(), "w2".to_owned()]);
    let mut names = BTreeSet::new();
    let joined = eventually(IO_TIMEOUT, || {
        let consumers: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg(&["CONSUMERS", "ysum:jobs", "ysum:workers"])
            .query(&mut redis)
            .expect("XINFO CONSUMERS");
        names = consumers
            .iter()
            .map(|c| redis::from_redis_value(xinfo_field(c, "name")).expect("a name"))
            .collect();
        names == both
    });
    assert!(joined, "the group's consumers: {names:?}");

    // The servers' side: both run `remote` on that broker, see both
    // workers (read every half second), and together answered every job.
    let mut answered = 0;
    for index in 1..=2 {
        let mut conn = script.server_conn(index);
        let mut stats = serde_json::Value::Null;
        let seen = eventually(IO_TIMEOUT, || {
            stats = serde_json::from_str(&conn.request("stats")).expect("stats is JSON");
            let workers: BTreeSet<&str> = stats["remote"]["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["name"].as_str())
                .collect();
            workers == BTreeSet::from(["w1", "w2"])
        });
        assert!(seen, "server {index} does not list both workers: {stats}");
        assert_eq!(stats["strategy"], "remote", "{stats}");
        assert_eq!(stats["remote"]["broker"], broker.as_str(), "{stats}");
        let jobs: BTreeMap<&str, i64> = ["sumn", "prime"]
            .into_iter()
            .map(|kind| (kind, stats["jobs"][kind]["ok"].as_i64().expect("ok")))
            .collect();
        answered += jobs.values().sum::<i64>();
    }
    assert_eq!(answered, sent);

    script.sigterm_and_check_all_gone();
}

/// Runs `command` to its end (at most [`IO_TIMEOUT`]): its status, stdout
/// and stderr.
fn run_to_exit(command: &mut Command) -> (ExitStatus, String, String) {
    let mut child = Reaped(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scripts/cluster"),
    );
    let status = child.wait(IO_TIMEOUT);
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = child.0.stdout.take().expect("piped");
    stdout.read_to_string(&mut out).unwrap();
    let mut stderr = child.0.stderr.take().expect("piped");
    stderr.read_to_string(&mut err).unwrap();
    (status, out, err)
}

/// An executable that passes the script's checks, for the binaries a test
/// does not look at: the script refuses the one under test before it runs
/// anything, so this one never runs, and the test needs no engine.
fn stand_in() -> &'static str {
    env!("CARGO_BIN_EXE_sumserver")
}

/// `--remote 0`, `--remote x` and a missing redis-server: one error, a
/// non-zero exit, nothing started (no line on stdout, no run folder).
#[test]
fn remote_bad_values_start_nothing() {
    let missing = workspace().join("no-such-dir/redis-server");
    let cases: [(&[&str], Option<&Path>, i32, &str); 3] = [
        (&["--remote", "0"], None, 2, "--remote must be from 1 to 64"),
        (
            &["--remote", "x"],
            None,
            2,
            "argument --remote: invalid int value",
        ),
        (&["--remote", "2"], Some(&missing), 1, "YSUM_REDIS="),
    ];
    for (args, redis, code, error) in cases {
        let run_dir = Removed(fresh_run_dir());
        let mut command = script_command(&run_dir.0);
        command
            .args(["--servers", "1", "--port", &free_port().to_string()])
            .args(args)
            .env("YSUM_HAPROXY", stand_in());
        if let Some(redis) = redis {
            command.env("YSUM_REDIS", redis);
        }
        let (status, out, err) = run_to_exit(&mut command);
        assert_eq!(status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(error), "{args:?}: {err}");
        assert!(!err.contains("Traceback"), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?} started something");
        assert!(!run_dir.0.exists(), "{args:?} made {}", run_dir.0.display());
    }
}

/// Each of `YSUM_HAPROXY`, `YSUM_SUMSERVER`, `YSUM_SUMWORKER` and
/// `YSUM_REDIS` naming a missing file, a file that is not executable, or a
/// name not in `PATH`: exactly one line on stderr, exit 1, nothing on
/// stdout, no run folder. A file that is executable but no program shows
/// only when run: a `cannot run` line, exit 1, and no run folder either.
#[test]
fn missing_binaries_start_nothing() {
    let scratch = Removed(fresh_run_dir().with_extension("binaries"));
    fs::create_dir_all(&scratch.0).unwrap();
    let missing = scratch.0.join("missing");
    let plain = scratch.0.join("plain");
    fs::write(&plain, "not a program\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let no_program = scratch.0.join("no-program");
    fs::write(&no_program, "not a program either\n").unwrap();
    fs::set_permissions(&no_program, fs::Permissions::from_mode(0o755)).unwrap();
    let variables = [
        "YSUM_HAPROXY",
        "YSUM_SUMSERVER",
        "YSUM_SUMWORKER",
        "YSUM_REDIS",
    ];
    let values = [
        (missing.to_str().unwrap(), "no such file"),
        (plain.to_str().unwrap(), "not executable"),
        ("ysum-no-such-binary", "not found in PATH"),
    ];
    for variable in variables {
        for (value, error) in values {
            let run_dir = Removed(fresh_run_dir());
            let mut command = script_command(&run_dir.0);
            command.args(["--servers", "1", "--remote", "1"]);
            command.args(["--port", &free_port().to_string()]);
            for other in variables {
                command.env(other, stand_in());
            }
            command.env(variable, value);
            let (status, out, err) = run_to_exit(&mut command);
            let case = format!("{variable}={value}");
            assert_eq!(status.code(), Some(1), "{case}: {err}");
            assert_eq!(err, format!("cluster: {case}: {error}\n"));
            assert_eq!(out, "", "{case} started something");
            assert!(!run_dir.0.exists(), "{case} made {}", run_dir.0.display());
        }
    }

    let run_dir = Removed(fresh_run_dir());
    let mut command = script_command(&run_dir.0);
    command
        .args(["--servers", "1", "--port", &free_port().to_string()])
        .env("YSUM_HAPROXY", stand_in())
        .env("YSUM_SUMSERVER", &no_program);
    let (status, out, err) = run_to_exit(&mut command);
    assert_eq!(status.code(), Some(1), "{err}");
    let cannot = format!("cluster: cannot run {}: ", no_program.display());
    assert!(err.lines().any(|l| l.starts_with(&cannot)), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
    assert_eq!(out, "");
    assert!(!run_dir.0.exists(), "made {}", run_dir.0.display());
}

/// The port at the end of `HOST:PORT`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// A second script on the first one's port exits 1 with one line, starts
/// nothing and leaves no folder, while the first keeps serving; the same
/// on a port that any other socket listens on.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn a_port_in_use_is_refused() {
    let _serial = one_at_a_time();
    let first = Script::start_with(1, &[], &["--apply", "inline"]);
    let held = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let ports = [
        port_of(&first.addr("balancer on ")),
        held.local_addr().unwrap().port(),
    ];
    for port in ports {
        let run_dir = Removed(fresh_run_dir());
        let mut command = script_command(&run_dir.0);
        command
            .args(["--servers", "1", "--port", &port.to_string()])
            .env("YSUM_HAPROXY", haproxy());
        let (status, out, err) = run_to_exit(&mut command);
        assert_eq!(status.code(), Some(1), "port {port}: {err}");
        assert_eq!(
            err,
            format!(
                "cluster: 127.0.0.1:{port} is already in use (another cluster?): \
                 stop it, or choose another --port\n"
            )
        );
        assert_eq!(out, "", "port {port}: started something");
        assert!(
            !run_dir.0.exists(),
            "port {port}: made {}",
            run_dir.0.display()
        );
    }
    drop(held);
    assert_eq!(first.balancer_conn().request("sumn 100"), "5050");
    assert!(
        first.tree.iter().all(|p| !p.has_exited()),
        "the first cluster lost a process: {:?}",
        states(&first.tree)
    );
    first.sigterm_and_check_all_gone();
}

/// Whether process `pid` holds the socket that listens on 127.0.0.1:`port`:
/// its inode, from `/proc/net/tcp`, among the process's descriptors.
fn listens_on(pid: i32, port: u16) -> bool {
    // 127.0.0.1 as /proc/net/tcp writes it (little-endian), and LISTEN.
    let local = format!("0100007F:{port:04X}");
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let sockets: BTreeSet<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
        .filter_map(|fields| Some(format!("socket:[{}]", fields.get(9)?)))
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .any(|link| link.to_str().is_some_and(|l| sockets.contains(l)))
}

/// `server`'s status in `show stat` on the admin socket in `run_dir`
/// (empty if it cannot be read).
fn backend_status(run_dir: &Path, server: &str) -> String {
    let Ok(mut sock) = UnixStream::connect(run_dir.join("admin.sock")) else {
        return String::new();
    };
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let mut text = String::new();
    if sock.write_all(b"show stat\n").is_err() || sock.read_to_string(&mut text).is_err() {
        return String::new();
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or_default()
        .split(',')
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status"))
    else {
        return String::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|row| row.get(px) == Some(&BACKEND) && row.get(sv) == Some(&server))
        .and_then(|row| row.get(status).map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// `kill -9` of one of three servers while 4 kept-alive clients with
/// `--retries 3` run: the script starts it again on its port under a new
/// pid, which holds the listening socket, answers, and is UP in HAProxy;
/// not one request fails, and the restart is counted at the stop.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn kill_9_of_a_server_is_restarted_at_no_cost() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(3, &[], &["--apply", "threads", "--workers", "2"]);
    let balancer = script.addr("balancer on ").parse().expect("an address");
    let load = Load::start(
        balancer,
        &["4", "--keep-alive", "--retries", "3", "--duration", "4s"],
        Duration::from_secs(30),
    );
    thread::sleep(Duration::from_secs(1));
    let victim = printed_pid(script.line("server 2 on "));
    let killed = Instant::now();
    script.kill_member(victim);
    let pid = script.expect_restart("server 2 on ", victim);
    let restart = killed.elapsed();

    let port = port_of(&script.addr("server 2 on "));
    assert!(listens_on(pid, port), "pid {pid} does not listen on {port}");
    assert_eq!(script.server_conn(2).request("sumn 100"), "5050");
    let mut status = String::new();
    let up = eventually(IO_TIMEOUT, || {
        status = backend_status(&script.run_dir.0, "s2");
        status.starts_with("UP")
    });
    assert!(up, "HAProxy has s2 {status:?}");

    let report = load.finish();
    println!(
        "figures: cluster kill-9 restart_ms={} sent={} retries={:?} errors={} wrong={}",
        restart.as_millis(),
        report.sent,
        report.retries,
        report.errors,
        report.wrong
    );
    report.assert_all_right("kill -9 of a server under scripts/cluster");
    let stderr = script.sigterm_and_check_all_gone();
    let noticed = format!(
        "cluster: server 2 (pid {victim}) exited (killed by SIGKILL); restarting it in 0.1 s"
    );
    assert!(stderr.lines().any(|l| l == noticed), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "cluster: restarts: 1 (server 2: 1)"),
        "{stderr}"
    );
}

/// A server killed each time it comes back: four restarts (after 0.1, 0.2,
/// 0.4 and 0.8 s), then, at its fifth exit within 30 s, the script gives
/// up: exit 1, one line naming it, every process gone.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn a_server_that_keeps_dying_stops_the_cluster() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(1, &[], &["--apply", "inline"]);
    let mut pid = printed_pid(script.line("server 1 on "));
    let mut restarts = 0;
    let first_kill = Instant::now();
    // Bounded: the script gives up after 4 restarts; 10 would be a bug.
    for _ in 0..10 {
        script.kill_member(pid);
        let Some(line) = script.next_line(IO_TIMEOUT) else {
            break;
        };
        pid = script.restarted("server 1 on ", pid, &line);
        restarts += 1;
    }
    let status = script.wait();
    let stderr = script.stderr_text();
    println!(
        "figures: cluster gave up after {restarts} restarts, {} ms after the first kill",
        first_kill.elapsed().as_millis()
    );
    assert_eq!(restarts, 4, "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let given_up: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("cluster: server 1 kept dying: 5 exits within 30 s, the last "))
        .collect();
    assert_eq!(given_up.len(), 1, "{stderr}");
    assert!(
        given_up[0].contains(&format!("(pid {pid}) exited (killed by SIGKILL)")),
        "{stderr}"
    );
    assert!(script.all_gone(), "left behind: {:?}", states(&script.tree));
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

/// Under `--remote 1`: Redis `kill -9`ed comes back on its port and the
/// server gets jobs through it again; the worker `kill -9`ed comes back
/// under its name and runs them; HAProxy `kill -9`ed is fatal: exit 1, one
/// line naming it, both restarts counted, every process gone.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(no_redis, not(no_haproxy)),
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn broker_and_worker_come_back_the_balancer_is_fatal() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(1, &["--remote", "1", "--worker-slots", "1"], &[]);
    for prefix in ["redis on ", "worker 1 as w1 "] {
        let old = printed_pid(script.line(prefix));
        script.kill_member(old);
        script.expect_restart(prefix, old);
        assert!(
            answers_through_balancer(&script),
            "no right answer after {prefix:?} restarted; stderr:\n{}",
            script.stderr_text()
        );
    }
    let balancer = printed_pid(script.line("balancer on "));
    script.kill_member(balancer);
    let status = script.wait();
    let stderr = script.stderr_text();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("cluster: haproxy exited (killed by SIGKILL); see ")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "cluster: restarts: 2 (redis: 1, worker 1: 1)"),
        "{stderr}"
    );
    assert!(script.all_gone(), "left behind: {:?}", states(&script.tree));
}
