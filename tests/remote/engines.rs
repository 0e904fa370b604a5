//! The processes around a remote server: a throwaway [`Redis`] on a free
//! loopback port and [`Worker`]s (`sumworker`), each killed and reaped by
//! pid when dropped, and [`Queue`], a view of the jobs stream and its
//! pending list for assertions. `tests/haproxy` includes it too, for
//! [`redis_server`] and [`sumworker`] (what `scripts/cluster --remote` runs).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use redis::streams::StreamPendingCountReply;

use crate::process::bury;
use crate::support::{eventually, Proc, IO_TIMEOUT};

/// The redis-server binary found by `server/build.rs`.
pub(crate) fn redis_server() -> PathBuf {
    match option_env!("YSUM_REDIS") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "redis-server is not installed (apt-get install -y redis-server), and \
             YSUM_REQUIRE_ENGINES=1 makes these tests mandatory"
        ),
    }
}

/// `sumworker`, which `cargo test --workspace` builds beside `sumserver`.
pub(crate) fn sumworker() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_sumserver")).with_file_name("sumworker");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p ysum-worker` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A free loopback port (never 6379): bound, read and released.
/// Whether `command` (one that answers a number: `XLEN`, `EXISTS`, `LLEN`)
/// answers `want` on `conn` within `within`, asked again and again.
pub(crate) fn answers_within(
    conn: &mut redis::Connection,
    command: &redis::Cmd,
    want: i64,
    within: Duration,
) -> bool {
    eventually(within, || {
        command
            .query::<i64>(conn)
            .is_ok_and(|answer| answer == want)
    })
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// How to run a [`Redis`] other than plain: more settings, the test's own
/// credentials, TLS.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedisOptions {
    /// More `redis-server` arguments (`--requirepass …`, `--aclfile …`).
    pub(crate) args: Vec<String>,
    /// `USER:PASSWORD` (or `:PASSWORD`) for the test's own connections.
    pub(crate) admin: Option<String>,
    /// TLS only, on the port: the certificate files and the CA (PEM) that
    /// the test's own connections trust.
    pub(crate) tls: Option<TlsFiles>,
}

/// A server certificate for `127.0.0.1` and the CA that signed it.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA's certificate (PEM file).
    pub(crate) ca: PathBuf,
    /// The server's certificate (PEM file).
    pub(crate) cert: PathBuf,
    /// The server's key (PEM file).
    pub(crate) key: PathBuf,
}

/// A throwaway `redis-server` (no persistence) on its own port.
#[derive(Debug)]
pub(crate) struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    options: RedisOptions,
}

impl Redis {
    /// Starts one and waits until it answers `PING`.
    pub(crate) fn start() -> Redis {
        Redis::start_with(RedisOptions::default())
    }

    /// Starts one with `options` and waits until it answers `PING`.
    pub(crate) fn start_with(options: RedisOptions) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("ysum-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make redis' directory");
        let mut redis = Redis {
            child: None,
            port,
            dir,
            options,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = Command::new(redis_server());
        match &self.options.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let up = eventually(IO_TIMEOUT, || {
            self.try_conn()
                .is_some_and(|mut c| redis::cmd("PING").query::<String>(&mut c).is_ok())
        });
        assert!(up, "redis-server on port {} did not answer", self.port);
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` with TLS), without credentials.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// [`Redis::url`] with `user_info` (`USER:PASSWORD` or `:PASSWORD`).
    pub(crate) fn url_as(&self, user_info: &str) -> String {
        self.url().replacen("://", &format!("://{user_info}@"), 1)
    }

    /// Its port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn try_conn(&self) -> Option<redis::Connection> {
        let url = match &self.options.admin {
            Some(admin) => self.url_as(admin),
            None => self.url(),
        };
        let client = match &self.options.tls {
            None => redis::Client::open(url).ok()?,
            Some(tls) => redis::Client::build_with_tls(
                url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(&tls.ca).ok()?),
                },
            )
            .ok()?,
        };
        let conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        conn.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        Some(conn)
    }

    /// A connection for the test's own queries.
    pub(crate) fn conn(&self) -> redis::Connection {
        self.try_conn().expect("connect to the test's redis-server")
    }

    /// SIGKILLs it (it keeps nothing: no persistence).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A view of the jobs stream.
    pub(crate) fn queue(&self) -> Queue {
        Queue(self.conn())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One pending entry of the jobs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingEntry {
    /// The stream entry id.
    pub(crate) id: String,
    /// The worker it is delivered to.
    pub(crate) worker: String,
    /// How many times it was delivered.
    pub(crate) deliveries: usize,
}

/// Queries on the jobs stream and its group.
pub(crate) struct Queue(redis::Connection);

impl Queue {
    /// The connection, for the test's own commands.
    pub(crate) fn conn(&mut self) -> &mut redis::Connection {
        &mut self.0
    }

    /// Every pending entry (at most 100).
    pub(crate) fn pending(&mut self) -> Vec<PendingEntry> {
        let reply: redis::RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
            .arg("ysum:jobs")
            .arg("ysum:workers")
            .arg("-")
            .arg("+")
            .arg(100)
            .query(&mut self.0);
        match reply {
            Ok(reply) => reply
                .ids
                .into_iter()
                .map(|p| PendingEntry {
                    id: p.id,
                    worker: p.consumer,
                    deliveries: p.times_delivered,
                })
                .collect(),
            Err(err) if err.code() == Some("NOGROUP") => Vec::new(),
            Err(err) => panic!("XPENDING: {err}"),
        }
    }

    /// Entries in the jobs stream.
    pub(crate) fn length(&mut self) -> u64 {
        redis::cmd("XLEN")
            .arg("ysum:jobs")
            .query(&mut self.0)
            .expect("XLEN")
    }

    /// Waits until exactly one entry is pending, with `worker`; returns it.
    pub(crate) fn wait_pending_with(&mut self, worker: &str, within: Duration) -> PendingEntry {
        let mut found = None;
        let ok = eventually(within, || {
            let pending = self.pending();
            found = pending.first().cloned();
            pending.len() == 1 && pending[0].worker == worker
        });
        assert!(
            ok,
            "no single entry pending with {worker} within {within:?}: {found:?}"
        );
        found.expect("found")
    }

    /// The reply lists' remaining lives, in seconds (-1: no expiry).
    pub(crate) fn reply_list_ttls(&mut self) -> Vec<i64> {
        let lists: Vec<String> = redis::cmd("KEYS")
            .arg("ysum:reply:*")
            .query(&mut self.0)
            .expect("KEYS");
        lists
            .iter()
            .map(|list| redis::cmd("TTL").arg(list).query(&mut self.0).expect("TTL"))
            .collect()
    }
}

/// A running `sumworker`, SIGKILLed and reaped (with any process it forked)
/// when dropped.
#[derive(Debug)]
pub(crate) struct Worker {
    child: Child,
    /// Its consumer name.
    pub(crate) name: String,
    descendants: Vec<Proc>,
    /// What it printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    /// Where its metrics endpoint listens, when started with `--metrics`.
    pub(crate) metrics: Option<SocketAddr>,
}

impl Worker {
    /// Starts `sumworker --broker URL --name NAME <extra…>` and waits for
    /// its `reading` line.
    pub(crate) fn start(redis: &Redis, name: &str, extra: &[&str]) -> Worker {
        Worker::launch(&redis.url(), name, extra, &[], None)
    }

    /// Starts `sumworker --broker URL --name NAME <extra…>` with `env`
    /// added, its stderr to `log` when given, and waits for its `reading`
    /// line.
    pub(crate) fn launch(
        url: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> Worker {
        let stderr = match log {
            Some(path) => std::fs::File::create(path)
                .expect("create the worker's log")
                .into(),
            None => Stdio::null(),
        };
        Worker::launch_with(&[], url, name, extra, env, stderr)
    }

    /// [`Worker::launch`] run through `wrapper` (`faketime +20s`…), its
    /// stderr as given.
    pub(crate) fn launch_with(
        wrapper: &[&str],
        url: &str,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Worker {
        let worker = sumworker();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&worker);
                command
            }
            None => Command::new(&worker),
        };
        let mut child = command
            .args(["--broker", url, "--name", name])
            .args(extra)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn sumworker");
        let stdout = child.stdout.take().expect("piped");
        let (line_tx, line_rx) = mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = std::sync::Arc::clone(&printed);
        let (metrics_tx, metrics_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            // With --metrics, `metrics on ADDR` comes before the `reading`
            // line.
            let first = loop {
                line.clear();
                let read = reader.read_line(&mut line).map(|_| line.clone());
                keep.lock().unwrap().push_str(&line);
                match line.strip_prefix("metrics on ") {
                    Some(addr) => {
                        let _ = metrics_tx.send(addr.trim().parse::<SocketAddr>().ok());
                    }
                    None => break read,
                }
            };
            let _ = line_tx.send(first);
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
            keep.lock().unwrap().push_str(&rest);
        });
        let mut worker = Worker {
            child,
            name: name.to_owned(),
            descendants: Vec::new(),
            stdout: printed,
            metrics: None,
        };
        match line_rx.recv_timeout(IO_TIMEOUT) {
            Ok(Ok(line)) if line.starts_with(&format!("sumworker {name} reading")) => {}
            other => panic!("sumworker {name} did not start reading: {other:?}"),
        }
        worker.metrics = metrics_rx.try_recv().ok().flatten();
        let pid = worker.pid();
        worker.descendants = Proc::children_of(pid);
        worker
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// What it printed on stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends `signal` to it.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the worker");
    }

    /// SIGKILLs it and reaps it.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `within` for it to exit.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "sumworker {} still running after {within:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGCONT);
        self.kill9();
        bury(&self.descendants);
    }
}

/// The redis-sentinel binary found by `server/build.rs`.
pub(crate) fn redis_sentinel() -> PathBuf {
    match option_env!("YSUM_SENTINEL") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "redis-sentinel is not installed (apt-get install -y redis-sentinel), and \
             YSUM_REQUIRE_ENGINES=1 makes these tests mandatory"
        ),
    }
}

/// The master's name the sentinels watch.
pub(crate) const MASTER: &str = "ysum";

/// A primary, a replica of it and three sentinels watching them
/// (`down-after-milliseconds 1000`), each on a free loopback port, killed
/// and reaped when dropped.
#[derive(Debug)]
pub(crate) struct SentinelSet {
    /// The Redis nodes: the first starts as the primary.
    pub(crate) nodes: Vec<Redis>,
    sentinels: Vec<(Child, u16)>,
    dir: PathBuf,
}

impl SentinelSet {
    /// Starts them and waits until every sentinel knows the primary, the
    /// replica and the two other sentinels, so that a failover can happen.
    pub(crate) fn start() -> SentinelSet {
        let primary = Redis::start();
        let replica = Redis::start_with(RedisOptions {
            args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port().to_string(),
            ],
            ..RedisOptions::default()
        });
        let dir = std::env::temp_dir().join(format!(
            "ysum-sentinels-{}-{}",
            std::process::id(),
            primary.port()
        ));
        std::fs::create_dir_all(&dir).expect("make the sentinels' folder");
        let mut set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels: Vec::new(),
            dir,
        };
        for index in 0..3 {
            let port = free_port();
            let config = set.dir.join(format!("sentinel-{index}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 5000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir = set.dir.display(),
                    primary = set.nodes[0].port(),
                ),
            )
            .expect("write a sentinel's config");
            let child = Command::new(redis_sentinel())
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            set.sentinels.push((child, port));
        }
        let ready = eventually(Duration::from_secs(20), || {
            set.sentinels.iter().all(|(_, port)| {
                let query = |args: &[&str]| -> Option<redis::Value> {
                    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
                    let mut conn = client
                        .get_connection_with_timeout(Duration::from_millis(300))
                        .ok()?;
                    redis::cmd("SENTINEL").arg(args).query(&mut conn).ok()
                };
                let count = |value: Option<redis::Value>| match value {
                    Some(redis::Value::Array(items)) => items.len(),
                    _ => 0,
                };
                count(query(&["replicas", MASTER])) >= 1
                    && count(query(&["sentinels", MASTER])) >= 2
            })
        });
        assert!(
            ready,
            "the sentinels did not all find each other and the replica"
        );
        set
    }

    /// `redis+sentinel://` URL naming every sentinel.
    pub(crate) fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// Asks the first sentinel for the primary's port.
    pub(crate) fn primary_port(&self) -> u16 {
        let port = self.sentinels[0].1;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .expect("a sentinel");
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER)
            .query(&mut conn)
            .expect("the master's address");
        port
    }

    /// The node listening on `port`.
    pub(crate) fn node(&mut self, port: u16) -> &mut Redis {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("one of ours")
    }

    /// `SENTINEL FAILOVER` on the first sentinel: a planned switch.
    pub(crate) fn planned_failover(&self) {
        let port = self.sentinels[0].1;
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .expect("a sentinel");
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query(&mut conn)
            .expect("SENTINEL FAILOVER");
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
