//! `scripts/cluster`: it starts a working cluster, stops it cleanly on
//! SIGTERM, and leaves no process behind when it is SIGKILLed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::balancer::{free_port, haproxy, workspace};
use crate::one_at_a_time;
use crate::process::{bury, states, Proc};
use crate::support::{eventually, Conn, Reaped, IO_TIMEOUT};

/// A running `scripts/cluster --servers 2`, with its descendants once up.
struct Script {
    child: Reaped,
    /// The two sumservers and HAProxy, found under the script in `/proc`.
    tree: Vec<Proc>,
    lines: Vec<String>,
    /// Its `--run-dir`, removed on drop.
    run_dir: PathBuf,
}

impl Script {
    fn start() -> Script {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let run_dir = std::env::temp_dir().join(format!(
            "ysum-haproxy-cluster-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let port = free_port();
        let mut child = Command::new(workspace().join("scripts/cluster"))
            .args(["--servers", "2", "--port", &port.to_string(), "--run-dir"])
            .arg(&run_dir)
            .args(["--", "--apply", "threads", "--grace", "1s"])
            .env("YSUM_SUMSERVER", env!("CARGO_BIN_EXE_sumserver"))
            .env("YSUM_HAPROXY", haproxy())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn scripts/cluster");
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
        assert_eq!(
            script.tree.len(),
            3,
            "two sumservers and haproxy under the script: {:?}",
            script.tree
        );
        let balancer = script.lines.last().unwrap();
        let addr = balancer.strip_prefix("balancer on ").unwrap();
        let mut conn = Conn::new(std::net::TcpStream::connect(addr).expect("the balancer"));
        assert_eq!(conn.request("sumn 25000"), "312512500");
        script
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.0.id()).unwrap())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        bury(&self.tree);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
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
        match rx.recv_timeout(IO_TIMEOUT) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("scripts/cluster printed only {lines:?}"),
        }
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines[..2].iter().enumerate() {
        assert!(
            line.starts_with(&format!("server {} on 127.0.0.1:", i + 1)),
            "{lines:?}"
        );
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
    let mut script = Script::start();
    kill(script.pid(), Signal::SIGTERM).unwrap();
    let status = script.child.wait(Duration::from_secs(15));
    assert!(status.success(), "scripts/cluster exited with {status}");
    assert!(
        script.tree.iter().all(Proc::has_exited),
        "left behind: {:?}",
        states(&script.tree)
    );
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
