//! A guard around one HAProxy process ([`Balancer`]) running the shipped
//! `deploy/haproxy/sumserver.cfg`, with its server lines put in by
//! `scripts/cluster --print-config`; its admin socket ([`Balancer::admin`])
//! and the servers' rows of `show stat` ([`Stat`]).
//!
//! HAProxy listens on a free loopback port, keeps its socket, config and log
//! in a folder of its own, and is SIGKILLed and reaped on drop.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{eventually, IO_TIMEOUT};

/// The top of the workspace (`server/..`).
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ sits in the workspace")
        .to_path_buf()
}

/// The haproxy binary `server/build.rs` found.
///
/// # Panics
///
/// When it found none: only then do the tests run without it, because
/// `YSUM_REQUIRE_ENGINES=1` made them mandatory.
pub(crate) fn haproxy() -> &'static str {
    option_env!("YSUM_HAPROXY").unwrap_or_else(|| {
        panic!(
            "haproxy is not installed (apt-get install -y haproxy), and \
             YSUM_REQUIRE_ENGINES=1 makes the HAProxy tests mandatory"
        )
    })
}

/// The backend's name in the shipped config.
pub(crate) const BACKEND: &str = "sumservers";

/// A running HAProxy in front of some servers.
#[derive(Debug)]
pub(crate) struct Balancer {
    child: Child,
    addr: SocketAddr,
    /// Config, admin socket and log; removed on drop unless a test failed.
    dir: PathBuf,
}

impl Balancer {
    /// HAProxy in front of `servers` (named `s1`, `s2`, … in that order),
    /// with the PROXY protocol towards them when `send_proxy`; returns once
    /// every server is UP (at most [`IO_TIMEOUT`]).
    pub(crate) fn start(servers: &[SocketAddr], send_proxy: bool) -> Balancer {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ysum-haproxy-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create the balancer's folder");
        let port = free_port();
        let config = dir.join("haproxy.cfg");
        fs::write(&config, render(servers, port, &dir, send_proxy)).expect("write the config");
        let log = File::create(dir.join("haproxy.log")).expect("create haproxy.log");
        let mut command = Command::new(haproxy());
        command
            .args(["-db", "-f"])
            .arg(&config)
            .env("SUMSERVER_BIND", format!("127.0.0.1:{port}"))
            .env("SUMSERVER_RUN_DIR", &dir)
            .env_remove("SUMSERVER_SEND_PROXY")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log);
        if send_proxy {
            command.env("SUMSERVER_SEND_PROXY", "1");
        }
        let child = command.spawn().expect("spawn haproxy");
        let mut balancer = Balancer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        // HAProxy binds every listener, the admin socket among them, before
        // it serves any: once the socket answers, the frontend is bound. (A
        // probe connect would become a session on some server, and skew the
        // tests that count them.)
        let listening = eventually(IO_TIMEOUT, || {
            if let Ok(Some(status)) = balancer.child.try_wait() {
                panic!("haproxy exited at start ({status}):\n{}", balancer.log());
            }
            UnixStream::connect(balancer.dir.join("admin.sock")).is_ok()
        });
        assert!(listening, "haproxy's admin socket does not answer");
        balancer.wait_all_up(servers.len());
        balancer
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new connection through the balancer, with timeouts.
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect to the balancer");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// One command on the admin socket; its whole answer.
    pub(crate) fn admin(&self, command: &str) -> String {
        let mut sock = UnixStream::connect(self.dir.join("admin.sock")).expect("admin socket");
        sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        sock.write_all(format!("{command}\n").as_bytes())
            .expect("send an admin command");
        let mut answer = String::new();
        sock.read_to_string(&mut answer)
            .unwrap_or_else(|err| panic!("admin command {command:?}: {err}"));
        answer
    }

    /// The servers' rows of `show stat`, by server name.
    pub(crate) fn stat(&self) -> BTreeMap<String, Stat> {
        let text = self.admin("show stat");
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|line| line.strip_prefix("# "))
            .unwrap_or_else(|| panic!("`show stat` has no header: {text:?}"))
            .split(',')
            .collect();
        let column = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .unwrap_or_else(|| panic!("`show stat` has no column {name}"))
        };
        let (px, sv, scur, stot, status) = (
            column("pxname"),
            column("svname"),
            column("scur"),
            column("stot"),
            column("status"),
        );
        lines
            .map(|line| line.split(',').collect::<Vec<&str>>())
            .filter(|row| row.len() > status && row[px] == BACKEND)
            .filter(|row| row[sv] != "BACKEND")
            .map(|row| {
                let number = |i: usize| row[i].parse().unwrap_or(0);
                let stat = Stat {
                    current: number(scur),
                    total: number(stot),
                    status: row[status].to_owned(),
                };
                (row[sv].to_owned(), stat)
            })
            .collect()
    }

    /// Waits at most `within` until `server`'s status starts with `status`
    /// (`UP`, `DOWN`, `DRAIN`…); returns how long that took.
    ///
    /// # Panics
    ///
    /// If it does not by then.
    pub(crate) fn wait_status(&self, server: &str, status: &str, within: Duration) -> Duration {
        let start = Instant::now();
        let mut last = String::new();
        let reached = eventually(within, || {
            last = self
                .stat()
                .get(server)
                .map_or_else(String::new, |s| s.status.clone());
            last.starts_with(status)
        });
        assert!(
            reached,
            "{server} is {last:?}, not {status} after {within:?}"
        );
        start.elapsed()
    }

    /// Waits until every one of the `count` servers is UP.
    pub(crate) fn wait_all_up(&self, count: usize) {
        let mut last = BTreeMap::new();
        let up = eventually(IO_TIMEOUT, || {
            last = self.stat();
            last.len() == count && last.values().all(|s| s.status.starts_with("UP"))
        });
        assert!(up, "not every server is UP: {last:?}\n{}", self.log());
    }

    /// HAProxy's own log so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- haproxy's log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One server as `show stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Connections open to it now (`scur`).
    pub(crate) current: u64,
    /// Connections it has been given in all (`stot`).
    pub(crate) total: u64,
    /// `UP`, `DOWN`, `DRAIN`, `UP 1/2` (going down), …
    pub(crate) status: String,
}

/// The config HAProxy runs: the shipped file with `servers` as its server
/// lines, rendered by `scripts/cluster --print-config` (the one place that
/// knows how).
pub(crate) fn render(servers: &[SocketAddr], port: u16, dir: &Path, send_proxy: bool) -> String {
    let mut command = Command::new(workspace().join("scripts/cluster"));
    command
        .args(["--port", &port.to_string(), "--run-dir"])
        .arg(dir)
        .arg("--print-config")
        .args(servers.iter().map(SocketAddr::to_string));
    if send_proxy {
        command.arg("--send-proxy");
    }
    let output = command
        .output()
        .expect("run scripts/cluster --print-config");
    assert!(
        output.status.success(),
        "scripts/cluster --print-config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the config is UTF-8")
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
