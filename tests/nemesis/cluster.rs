//! The system under test on the bed, one process per host:
//!
//! | host | address | runs |
//! |---|---|---|
//! | `r1`, `r2` | 10.213.47.11, .12 | `redis-server` :6379, `appendonly yes`; r1 starts as the primary, r2 as its replica |
//! | `s1`–`s3` | .21–.23 | `redis-sentinel` :26379, `down-after-milliseconds 1000` |
//! | `a1`, `a2` | .31, .32 | `sumserver --apply remote` :10000 on the sentinels' URL |
//! | `w1`–`w3` | .41–.43 | `sumworker`, 2 slots, `--lease 1s` |
//! | `lb` | .50 | HAProxy :10000, the shipped config (`scripts/cluster --print-config`) |
//! | `cl` | .60 | `sumclient` |
//! | `ctl` | .70 | nothing: the checker's own queries come from here |
//!
//! [`Cluster`] starts them in order (each one answering before the next),
//! and has the queries the nemesis and the observer make from `ctl`: the
//! sentinels' primary, whether replication is whole, a planned failover,
//! the servers' `stats`.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::netns::{in_ns, Bed};
use crate::schedule::{SERVERS, WORKERS};
use crate::timeline::{JOB_TIMEOUT, LEASE, QUEUE_WAIT};

/// Every host of the bed: name and last octet of its address.
pub(crate) const HOSTS: &[(&str, u8)] = &[
    ("r1", 11),
    ("r2", 12),
    ("s1", 21),
    ("s2", 22),
    ("s3", 23),
    ("a1", 31),
    ("a2", 32),
    ("w1", 41),
    ("w2", 42),
    ("w3", 43),
    ("lb", 50),
    ("cl", 60),
    ("ctl", 70),
];

/// The master's name in the sentinels' configuration.
pub(crate) const MASTER: &str = "ysum";

/// Redis' port on r1 and r2.
const REDIS_PORT: u16 = 6379;
/// The sentinels' port.
const SENTINEL_PORT: u16 = 26379;
/// sumserver's and HAProxy's port.
pub(crate) const PORT: u16 = 10000;

/// How long any one process may take to answer after its start.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A connect or a query from `ctl` gives up after this.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

fn engine(path: Option<&'static str>, name: &str, package: &str) -> PathBuf {
    match path {
        Some(path) => PathBuf::from(path),
        None => panic!("{name} is not installed (apt-get install -y {package})"),
    }
}

/// `sumserver`, and `sumworker` and `sumclient` beside it.
pub(crate) fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_sumserver")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p ysum-worker -p ysum-client` \
         (cargo test --workspace does)",
        path.display()
    );
    path
}

/// The system under test.
#[derive(Debug)]
pub(crate) struct Cluster<'b> {
    bed: &'b Bed,
    dir: PathBuf,
    /// r1, r2.
    pub(crate) nodes: Vec<Daemon>,
    /// s1–s3.
    pub(crate) sentinels: Vec<Daemon>,
    /// a1, a2.
    pub(crate) servers: Vec<Daemon>,
    /// w1–w3.
    pub(crate) workers: Vec<Daemon>,
    /// lb.
    pub(crate) haproxy: Daemon,
}

impl<'b> Cluster<'b> {
    /// Starts everything, in order, on `bed`; configs, data and logs go
    /// under `dir`.
    pub(crate) fn start(bed: &'b Bed, dir: &Path) -> Cluster<'b> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("make the logs folder");
        let addr = |host: &str| bed.host(host).addr;
        let redis = engine(option_env!("YSUM_REDIS"), "redis-server", "redis-server");
        let nodes = (0..2)
            .map(|i| {
                let name = format!("r{}", i + 1);
                let data = dir.join(&name);
                std::fs::create_dir_all(&data).expect("make a node's folder");
                let mut config = format!(
                    "bind {} 127.0.0.1\nport {REDIS_PORT}\nprotected-mode no\n\
                     dir {}\nappendonly yes\nappendfsync everysec\n\
                     auto-aof-rewrite-percentage 0\nsave \"\"\n\
                     repl-diskless-sync yes\nrepl-diskless-sync-delay 0\n",
                    addr(&name),
                    data.display()
                );
                if i == 1 {
                    config += &format!("replicaof {} {REDIS_PORT}\n", addr("r1"));
                }
                let file = data.join("redis.conf");
                std::fs::write(&file, config).expect("write redis.conf");
                Daemon::new(
                    &name,
                    &bed.host(&name).ns,
                    vec![redis.clone().into(), file.into()],
                    &logs.join(format!("{name}.log")),
                )
            })
            .collect();
        let sentinel = engine(
            option_env!("YSUM_SENTINEL"),
            "redis-sentinel",
            "redis-sentinel",
        );
        let sentinels = (1..=3)
            .map(|i| {
                let name = format!("s{i}");
                let data = dir.join(&name);
                std::fs::create_dir_all(&data).expect("make a sentinel's folder");
                let file = data.join("sentinel.conf");
                std::fs::write(
                    &file,
                    format!(
                        "bind {} 127.0.0.1\nport {SENTINEL_PORT}\nprotected-mode no\n\
                         dir {}\nsentinel monitor {MASTER} {} {REDIS_PORT} 2\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 5000\n\
                         sentinel parallel-syncs {MASTER} 1\n",
                        addr(&name),
                        data.display(),
                        addr("r1")
                    ),
                )
                .expect("write sentinel.conf");
                Daemon::new(
                    &name,
                    &bed.host(&name).ns,
                    vec![sentinel.clone().into(), file.into()],
                    &logs.join(format!("{name}.log")),
                )
            })
            .collect();
        let mut cluster = Cluster {
            bed,
            dir: dir.to_owned(),
            nodes,
            sentinels,
            servers: Vec::new(),
            workers: Vec::new(),
            haproxy: Daemon::new("lb", &bed.host("lb").ns, Vec::new(), &logs.join("lb.log")),
        };
        for i in 0..2 {
            cluster.nodes[i].start();
            let up = cluster.wait(|c| c.node_role(i).is_some());
            assert!(
                up,
                "{} does not answer:\n{}",
                cluster.nodes[i].name,
                cluster.nodes[i].log_tail(2000)
            );
        }
        for s in &mut cluster.sentinels {
            s.start();
        }
        let ready = cluster.wait(Cluster::sentinels_ready);
        assert!(
            ready,
            "the sentinels did not find each other and the replica:\n{}",
            cluster.sentinels[0].log_tail(3000)
        );
        for i in 0..WORKERS {
            let name = format!("w{}", i + 1);
            let worker = Daemon::new(
                &name,
                &bed.host(&name).ns,
                cluster.worker_argv(i, 0),
                &logs.join(format!("{name}.log")),
            );
            cluster.workers.push(worker);
            cluster.workers[i].start();
        }
        for i in 0..WORKERS {
            let reading = format!("sumworker w{} reading", i + 1);
            let up = cluster.wait(|c| c.workers[i].logged(&reading));
            assert!(
                up,
                "w{} is not reading:\n{}",
                i + 1,
                cluster.workers[i].log_tail(3000)
            );
        }
        for i in 0..SERVERS {
            let name = format!("a{}", i + 1);
            let server = Daemon::new(
                &name,
                &bed.host(&name).ns,
                cluster.server_argv(i),
                &logs.join(format!("{name}.log")),
            );
            cluster.servers.push(server);
            cluster.servers[i].start();
            let up = cluster.wait(|c| c.server_stats(i).is_some());
            assert!(
                up,
                "{name} does not answer:\n{}",
                cluster.servers[i].log_tail(3000)
            );
        }
        let config = cluster.haproxy_config();
        let haproxy = engine(option_env!("YSUM_HAPROXY"), "haproxy", "haproxy");
        cluster.haproxy.set_argv(vec![
            "env".into(),
            format!("SUMSERVER_BIND={}:{PORT}", addr("lb")).into(),
            format!("SUMSERVER_RUN_DIR={}", cluster.lb_dir().display()).into(),
            haproxy.into(),
            "-db".into(),
            "-f".into(),
            config.into(),
        ]);
        cluster.haproxy.start();
        let up = cluster.wait(|c| c.haproxy_up() == Some(SERVERS));
        assert!(
            up,
            "haproxy does not see both servers up:\n{}",
            cluster.haproxy.log_tail(3000)
        );
        cluster
    }

    /// The sentinels' URL.
    pub(crate) fn broker_url(&self) -> String {
        let hosts: Vec<String> = (1..=3)
            .map(|i| format!("{}:{SENTINEL_PORT}", self.bed.host(&format!("s{i}")).addr))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Worker `i`'s command line, its wall clock shifted by `shift_s`
    /// seconds under libfaketime when not 0.
    pub(crate) fn worker_argv(&self, i: usize, shift_s: i32) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if shift_s != 0 {
            let lib = engine(option_env!("YSUM_FAKETIME_LIB"), "libfaketime", "faketime");
            argv.push("env".into());
            argv.push(format!("LD_PRELOAD={}", lib.display()).into());
            argv.push(format!("FAKETIME={shift_s:+}s").into());
            argv.push("FAKETIME_DONT_FAKE_MONOTONIC=1".into());
        }
        argv.push(binary("sumworker").into());
        for arg in [
            "--broker".to_owned(),
            self.broker_url(),
            "--name".to_owned(),
            format!("w{}", i + 1),
            "--lease".to_owned(),
            format!("{}ms", LEASE.as_millis()),
            "--workers".to_owned(),
            "2".to_owned(),
            "--apply".to_owned(),
            "threads".to_owned(),
            "--job-timeout".to_owned(),
            format!("{}ms", JOB_TIMEOUT.as_millis()),
            "--log-level".to_owned(),
            log_level(),
        ] {
            argv.push(arg.into());
        }
        argv
    }

    fn server_argv(&self, i: usize) -> Vec<OsString> {
        let addr = self.server_addr(i);
        [
            binary("sumserver").display().to_string(),
            "--addr".to_owned(),
            addr.to_string(),
            "--apply".to_owned(),
            "remote".to_owned(),
            "--broker".to_owned(),
            self.broker_url(),
            "--queue-wait".to_owned(),
            format!("{}ms", QUEUE_WAIT.as_millis()),
            "--job-timeout".to_owned(),
            format!("{}ms", JOB_TIMEOUT.as_millis()),
            "--log-level".to_owned(),
            log_level(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    /// Where server `i` listens.
    pub(crate) fn server_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.bed.host(&format!("a{}", i + 1)).addr, PORT))
    }

    /// Where clients connect: HAProxy.
    pub(crate) fn front(&self) -> SocketAddr {
        SocketAddr::from((self.bed.host("lb").addr, PORT))
    }

    /// Redis node `i`'s address.
    pub(crate) fn node_addr(&self, i: usize) -> Ipv4Addr {
        self.bed.host(&format!("r{}", i + 1)).addr
    }

    /// The sentinels' addresses.
    pub(crate) fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        (1..=3)
            .map(|i| SocketAddr::from((self.bed.host(&format!("s{i}")).addr, SENTINEL_PORT)))
            .collect()
    }

    fn lb_dir(&self) -> PathBuf {
        let dir = self.dir.join("lb");
        std::fs::create_dir_all(&dir).expect("make lb's folder");
        dir
    }

    /// The shipped HAProxy config with a1 and a2 as its servers, rendered
    /// by `scripts/cluster --print-config`, written to a file.
    fn haproxy_config(&self) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace");
        let out = Command::new(root.join("scripts/cluster"))
            .args(["--port", &PORT.to_string(), "--run-dir"])
            .arg(self.lb_dir())
            .arg("--print-config")
            .args((0..SERVERS).map(|i| self.server_addr(i).to_string()))
            .output()
            .expect("run scripts/cluster --print-config");
        assert!(
            out.status.success(),
            "scripts/cluster --print-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = self.lb_dir().join("haproxy.cfg");
        std::fs::write(&file, &out.stdout).expect("write haproxy.cfg");
        file
    }

    /// Polls `ready` every 50 ms for at most [`START_WITHIN`].
    fn wait(&self, mut ready: impl FnMut(&Cluster<'b>) -> bool) -> bool {
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if ready(self) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn ctl<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.bed.host("ctl").ns, work)
    }

    /// `ROLE`'s first word on node `i` (`master` or `slave`), asked from
    /// `ctl`; `None` if it does not answer.
    pub(crate) fn node_role(&self, i: usize) -> Option<String> {
        let addr = SocketAddr::from((self.node_addr(i), REDIS_PORT));
        self.ctl(|| {
            let mut conn = redis_conn(addr)?;
            let role: redis::Value = redis::cmd("ROLE").query(&mut conn).ok()?;
            match role {
                redis::Value::Array(items) => items.first().and_then(text),
                _ => None,
            }
        })
    }

    /// The index of the node every sentinel that answers names as the
    /// primary, if they agree.
    pub(crate) fn primary(&self) -> Option<usize> {
        let sentinels = self.sentinel_addrs();
        let named: Vec<Option<Ipv4Addr>> = self.ctl(|| {
            sentinels
                .iter()
                .map(|&s| primary_by(s).map(|(ip, _)| ip))
                .collect()
        });
        let first = named.iter().flatten().next().copied()?;
        if named.iter().flatten().any(|&ip| ip != first) {
            return None;
        }
        (0..2).find(|&i| self.node_addr(i) == first)
    }

    /// The broker is whole: the sentinels agree on a primary, it says
    /// `master` and has an online replica, and the other node says it is
    /// that replica, its link up.
    pub(crate) fn broker_whole(&self) -> bool {
        let Some(primary) = self.primary() else {
            return false;
        };
        let replica = 1 - primary;
        let (p, r) = (
            SocketAddr::from((self.node_addr(primary), REDIS_PORT)),
            SocketAddr::from((self.node_addr(replica), REDIS_PORT)),
        );
        self.ctl(|| {
            let info = |addr| -> Option<String> {
                let mut conn = redis_conn(addr)?;
                redis::cmd("INFO").arg("replication").query(&mut conn).ok()
            };
            let (Some(p), Some(r)) = (info(p), info(r)) else {
                return false;
            };
            p.contains("role:master")
                && p.contains("state=online")
                && r.contains("role:slave")
                && r.contains("master_link_status:up")
        })
    }

    /// Whether the sentinels know both nodes and each other.
    fn sentinels_ready(&self) -> bool {
        let sentinels = self.sentinel_addrs();
        self.ctl(|| {
            sentinels.iter().all(|&s| {
                let Some(mut conn) = redis_conn(s) else {
                    return false;
                };
                let count =
                    |args: &[&str], conn: &mut redis::Connection| match redis::cmd("SENTINEL")
                        .arg(args)
                        .query(conn)
                    {
                        Ok(redis::Value::Array(items)) => items.len(),
                        _ => 0,
                    };
                count(&["replicas", MASTER], &mut conn) >= 1
                    && count(&["sentinels", MASTER], &mut conn) >= 2
            })
        })
    }

    /// `SENTINEL FAILOVER` on the first sentinel that takes it; the error
    /// of each that refused otherwise.
    pub(crate) fn failover(&self) -> Result<(), String> {
        let sentinels = self.sentinel_addrs();
        self.ctl(|| {
            let mut refusals = Vec::new();
            for s in sentinels {
                let Some(mut conn) = redis_conn(s) else {
                    refusals.push(format!("{s}: no answer"));
                    continue;
                };
                match redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(MASTER)
                    .query::<redis::Value>(&mut conn)
                {
                    Ok(_) => return Ok(()),
                    Err(err) => refusals.push(format!("{s}: {err}")),
                }
            }
            Err(refusals.join("; "))
        })
    }

    /// Server `i`'s `stats`, read directly from `ctl` (not through
    /// HAProxy).
    pub(crate) fn server_stats(&self, i: usize) -> Option<serde_json::Value> {
        let addr = self.server_addr(i);
        self.ctl(|| {
            let mut stream = TcpStream::connect_timeout(&addr, QUERY_TIMEOUT).ok()?;
            stream.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
            stream.set_write_timeout(Some(QUERY_TIMEOUT)).ok()?;
            stream.write_all(b"stats\nquit\n").ok()?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).ok()?;
            serde_json::from_str(&line).ok()
        })
    }

    /// Jobs answered `ok` by each server so far (`None`: no answer).
    pub(crate) fn ok_counts(&self) -> Vec<Option<u64>> {
        (0..SERVERS)
            .map(|i| {
                let stats = self.server_stats(i)?;
                let jobs = stats.get("jobs")?.as_object()?;
                Some(jobs.values().filter_map(|k| k["ok"].as_u64()).sum())
            })
            .collect()
    }

    /// How many servers HAProxy shows `UP` (its admin socket is a Unix
    /// socket, reachable from any namespace).
    pub(crate) fn haproxy_up(&self) -> Option<usize> {
        let mut socket = UnixStream::connect(self.lb_dir().join("admin.sock")).ok()?;
        socket.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        // `show stat` is CSV: pxname, svname, …, status (field 17).
        Some(
            csv.lines()
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|f| f.len() > 17 && f[0] == "sumservers")
                .filter(|f| f[1] != "FRONTEND" && f[1] != "BACKEND" && f[17] == "UP")
                .count(),
        )
    }

    /// Deletes node `i`'s data (its append-only file), while it is down.
    pub(crate) fn wipe_node(&self, i: usize) {
        let data = self.dir.join(format!("r{}", i + 1));
        let _ = std::fs::remove_dir_all(data.join("appendonlydir"));
        let _ = std::fs::remove_file(data.join("dump.rdb"));
    }

    /// Starts node `i` again, with its data, as a deployment should bring
    /// back a Redis node under Sentinel (docs/distributed.md): a replica of
    /// the primary the sentinels name, when that is the other node. Started
    /// plain, it would say `master` with its old data until the sentinels
    /// convert it, about ten seconds later, and a failover meanwhile would
    /// promote it (finding F2, docs/reliability.md).
    pub(crate) fn restart_node(&mut self, i: usize) {
        let mut argv = self.nodes[i].argv()[..2].to_vec();
        if let Some(primary) = self.primary().filter(|&p| p != i) {
            argv.push("--replicaof".into());
            argv.push(self.node_addr(primary).to_string().into());
            argv.push(REDIS_PORT.to_string().into());
        }
        self.nodes[i].set_argv(argv);
        self.nodes[i].start();
    }

    /// Every daemon.
    pub(crate) fn daemons(&mut self) -> impl Iterator<Item = &mut Daemon> {
        self.nodes
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .chain(self.servers.iter_mut())
            .chain(self.workers.iter_mut())
            .chain(std::iter::once(&mut self.haproxy))
    }
}

/// The servers' and workers' `--log-level`: `YSUM_NEMESIS_LOG_LEVEL`, or
/// `info` (`debug` logs each job a worker does, and each job a server
/// answers at its deadline or whose reply came late: what a finding's
/// evidence needs, at some cost in disk).
fn log_level() -> String {
    std::env::var("YSUM_NEMESIS_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned())
}

/// A connection to `addr`, made from the calling thread's namespace, with
/// short timeouts.
pub(crate) fn redis_conn(addr: SocketAddr) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}")).ok()?;
    let conn = client.get_connection_with_timeout(QUERY_TIMEOUT).ok()?;
    conn.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
    conn.set_write_timeout(Some(QUERY_TIMEOUT)).ok()?;
    Some(conn)
}

/// What the sentinel at `sentinel` names as the primary.
pub(crate) fn primary_by(sentinel: SocketAddr) -> Option<(Ipv4Addr, u16)> {
    let mut conn = redis_conn(sentinel)?;
    let (ip, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(MASTER)
        .query(&mut conn)
        .ok()?;
    Some((ip.parse().ok()?, port))
}

/// A bulk or simple string's text.
pub(crate) fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
