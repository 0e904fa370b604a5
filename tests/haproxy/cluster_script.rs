//! `scripts/cluster`: it starts a working cluster, stops it cleanly on
//! SIGTERM, and leaves no process behind when it is SIGKILLed; with
//! `--remote W` the servers' jobs go through its own Redis to its W
//! sumworkers, which stop with the rest; bad `--remote` values start
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::balancer::{free_port, haproxy, workspace};
use crate::engines::{redis_server, sumworker};
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

/// A running `scripts/cluster --servers 2`, with its descendants once up.
struct Script {
    child: Reaped,
    /// Every process under the script, found in `/proc` once it was up.
    tree: Vec<Proc>,
    /// What it printed on stdout, up to `balancer on …`.
    lines: Vec<String>,
    /// Its `--run-dir`, removed on drop.
    run_dir: PathBuf,
}

impl Script {
    /// `--servers 2` with `--apply threads` servers.
    fn start() -> Script {
        let script = Script::start_with(&[], &["--apply", "threads"]);
        let expected = ["server 1 on ", "server 2 on ", "balancer on "];
        script.assert_lines(&expected);
        script
    }

    /// `--servers 2 --remote 2 --worker-slots 1`: Redis, two workers, two
    /// `--apply remote` servers and HAProxy.
    fn start_remote() -> Script {
        let script = Script::start_with(&["--remote", "2", "--worker-slots", "1"], &[]);
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

    /// Starts the script with `args` and `server_args` (after `--`, with a
    /// short `--grace`), waits for its `balancer on` line, and checks that
    /// the processes under it are exactly those whose pids it printed, and
    /// that the balancer answers.
    fn start_with(args: &[&str], server_args: &[&str]) -> Script {
        let run_dir = fresh_run_dir();
        let mut command = script_command(&run_dir);
        command
            .args(["--servers", "2", "--port", &free_port().to_string()])
            .args(args)
            .args(["--", "--grace", "1s"])
            .args(server_args)
            .env("YSUM_HAPROXY", haproxy())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if args.contains(&"--remote") {
            command
                .env("YSUM_REDIS", redis_server())
                .env("YSUM_SUMWORKER", sumworker());
        }
        let mut child = command.spawn().expect("spawn scripts/cluster");
        let lines = read_until_balancer(&mut child);
        let child = Reaped(child);
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
            run_dir,
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

    /// The address on the line that starts with `prefix` (`… on ADDR (pid N)`).
    fn addr(&self, prefix: &str) -> String {
        let line = self
            .lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.lines));
        line[prefix.len()..]
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

    /// SIGTERM: the script exits 0 within the stop deadlines, and every
    /// process it started is gone.
    fn sigterm_and_check_all_gone(mut self) {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        let status = self.child.wait(Duration::from_secs(20));
        assert!(status.success(), "scripts/cluster exited with {status}");
        assert!(
            self.tree.iter().all(Proc::has_exited),
            "left behind: {:?} of {:?}",
            states(&self.tree),
            self.lines
        );
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        bury(&self.tree);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// The pid at the end of a summary line, `… (pid N)`.
fn printed_pid(line: &str) -> i32 {
    line.rsplit_once("(pid ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no `(pid N)` at the end of {line:?}"))
}

/// Its stdout up to `balancer on …`, read on a thread so that the wait is
/// bounded.
fn read_until_balancer(child: &mut Child) -> Vec<String> {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let last = line.starts_with("balancer on ");
            if tx.send(line).is_err() || last {
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
            Err(_) => panic!("scripts/cluster printed only {lines:?}"),
        }
    }
    lines
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

/// `--remote 0`, `--remote x` and a missing redis-server: one error, a
/// non-zero exit, nothing started (no line on stdout, no run folder).
#[test]
fn remote_bad_values_start_nothing() {
    // The broker is looked for before anything starts, so haproxy need not
    // be installed for this test: its path is never run.
    let haproxy = option_env!("YSUM_HAPROXY").unwrap_or("haproxy");
    let missing = workspace().join("no-such-dir/redis-server");
    let cases: [(&[&str], Option<&Path>, i32, &str); 3] = [
        (&["--remote", "0"], None, 2, "--remote must be from 1 to 64"),
        (
            &["--remote", "x"],
            None,
            2,
            "argument --remote: invalid int value",
        ),
        (
            &["--remote", "2"],
            Some(&missing),
            1,
            "redis-server is not installed",
        ),
    ];
    for (args, redis, code, error) in cases {
        let run_dir = fresh_run_dir();
        let mut command = script_command(&run_dir);
        command
            .args(["--servers", "1", "--port", &free_port().to_string()])
            .args(args)
            .env("YSUM_HAPROXY", haproxy);
        if let Some(redis) = redis {
            command.env("YSUM_REDIS", redis);
        }
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
        child
            .0
            .stdout
            .take()
            .expect("piped")
            .read_to_string(&mut out)
            .unwrap();
        child
            .0
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(error), "{args:?}: {err}");
        assert!(!err.contains("Traceback"), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?} started something");
        assert!(!run_dir.exists(), "{args:?} made {}", run_dir.display());
    }
}
