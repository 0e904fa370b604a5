//! The broker as a trust boundary: the password never leaves the process,
//! refused credentials stop a process at start and are told later, keys
//! outside the prefix are never touched, deployments with other prefixes
//! share a broker without meeting, and with `--broker-secret-file` nobody
//! without the key forges a job or a reply.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redis::Value;

use crate::engines::{answers_within, sumworker, Redis, RedisOptions, Worker};
use crate::server::Launch;
use crate::support::{eventually, Io, Server, IO_TIMEOUT};
use crate::with_redis;

/// A password that no log line, reply or page would contain by chance.
const PASSWORD: &str = "Pa55-w0rd-s3cret-4c9e";

/// A folder of this test's own, for logs and secret files.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ysum-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make a scratch folder");
    dir
}

/// A Redis that asks for [`PASSWORD`].
fn guarded_redis() -> Redis {
    Redis::start_with(RedisOptions {
        args: vec!["--requirepass".into(), PASSWORD.into()],
        admin: Some(format!(":{PASSWORD}")),
        ..RedisOptions::default()
    })
}

/// A remote server on `url` under `io`, with `extra` flags, its log in a
/// file.
pub(crate) fn server_on(io: Io, url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--io", io.name(), "--apply", "remote", "--broker", url];
    args.extend_from_slice(extra);
    Server::launch(Launch::new(env!("CARGO_BIN_EXE_sumserver"), args))
}

/// Runs `binary args…` with `env` until it exits (at most 15 s).
pub(crate) fn run_to_exit(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let exited = eventually(Duration::from_secs(15), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("wait");
    assert!(exited, "{binary} {args:?} still ran after 15 s: {output:?}");
    (output, started.elapsed())
}

/// A job's reply list and id, read from the stream (the first entry).
pub(crate) fn first_entry(queue: &mut redis::Connection) -> (String, String) {
    let entries: Vec<Value> = redis::cmd("XRANGE")
        .arg("ysum:jobs")
        .arg("-")
        .arg("+")
        .query(queue)
        .expect("XRANGE");
    let reply: redis::streams::StreamRangeReply =
        redis::from_redis_value(Value::Array(entries)).expect("entries");
    let entry = reply.ids.first().expect("an entry in the stream");
    let field = |name: &str| -> String {
        redis::from_redis_value(entry.map.get(name).expect("the field").clone()).expect("text")
    };
    (field("reply"), field("id"))
}

/// With the password in the URL and logs at `debug`: `stats`, `ERR`
/// replies, `/metrics`, the server's and the worker's output never show
/// it; the URL is shown as `redis://:***@…`.
fn password_stays_secret(io: Io) {
    let mut redis = guarded_redis();
    let url = redis.url_as(&format!(":{PASSWORD}"));
    let dir = scratch(&format!("secret-{}", io.name()));
    let worker_log = dir.join("worker.log");
    let mut worker = Worker::launch(
        &url,
        "secretive",
        &["--log-level", "debug"],
        &[],
        Some(&worker_log),
    );
    let server = server_on(
        io,
        &url,
        &["--log-level", "debug", "--metrics", "127.0.0.1:0"],
    );
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 10"), "55");
    let stats = conn.request("stats");
    assert!(stats.contains("redis://:***@127.0.0.1:"), "{stats}");
    let metrics = server.scrape();
    redis.kill();
    let refused = conn.request("sumn 10");
    assert!(refused.starts_with("ERR unavailable "), "{refused}");
    assert!(refused.contains("redis://:***@"), "{refused}");

    server.signal(Signal::SIGTERM);
    server.wait_exit(IO_TIMEOUT);
    worker.signal(Signal::SIGTERM);
    worker.wait_exit(IO_TIMEOUT);
    let server_log = server.log();
    let worker_err = std::fs::read_to_string(&worker_log).expect("worker log");
    // Logs at debug level say a lot: the check below is not vacuous.
    assert!(server_log.contains("DEBUG"), "{server_log}");
    assert!(worker_err.contains("DEBUG"), "{worker_err}");
    for (what, text) in [
        ("stats", &stats),
        ("the ERR reply", &refused),
        ("/metrics", &metrics),
        ("the server's log", &server_log),
        ("the worker's stdout", &worker.stdout()),
        ("the worker's log", &worker_err),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password is in {what}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

with_redis!(password_stays_secret);

/// `--help` never shows the broker URL that the environment gives (clap
/// would print `[env: YSUM_BROKER=…]`).
#[test]
fn help_hides_the_broker_url() {
    let url = format!("redis://:{PASSWORD}@127.0.0.1:1");
    for binary in [
        env!("CARGO_BIN_EXE_sumserver"),
        sumworker().to_str().unwrap(),
    ] {
        let (output, _) = run_to_exit(binary, &["--help"], &[("YSUM_BROKER", &url)]);
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("--broker-password-file"), "{help}");
        assert!(!help.contains(PASSWORD), "{binary}: {help}");
    }
}

/// A broker that refuses the credentials (wrong or none) stops the server
/// and the worker at start, exit 1, with one line that says so and holds
/// no password.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn refused_at_start() {
    let redis = guarded_redis();
    let wrong = redis.url_as(":not-the-Pa55");
    for (binary, url) in [
        (env!("CARGO_BIN_EXE_sumserver"), wrong.as_str()),
        (env!("CARGO_BIN_EXE_sumserver"), &redis.url()),
        (sumworker().to_str().unwrap(), wrong.as_str()),
        (sumworker().to_str().unwrap(), &redis.url()),
    ] {
        let args = [
            "--addr",
            "127.0.0.1:0",
            "--apply",
            "remote",
            "--broker",
            url,
        ];
        // sumworker has neither --addr nor --apply remote.
        let args: &[&str] = if binary.ends_with("sumworker") {
            &args[4..]
        } else {
            &args
        };
        let (output, took) = run_to_exit(binary, args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{binary} {url}: {stderr}");
        assert!(took < Duration::from_secs(5), "{binary} took {took:?}");
        assert_eq!(stderr.lines().count(), 1, "{binary}: {stderr}");
        assert!(stderr.contains("refused the credentials"), "{stderr}");
        assert!(
            !stderr.contains("not-the-Pa55") && !stderr.contains(PASSWORD),
            "{stderr}"
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).is_empty(),
            "{binary}: printed {:?}",
            output.stdout
        );
    }
}

/// A password changed under a running server: its jobs get `ERR
/// unavailable` saying the broker refused the credentials, the refusal is
/// logged at `error` (a few lines, not one per attempt), and service comes
/// back by itself when the password does.
fn refused_later(io: Io) {
    let redis = guarded_redis();
    let url = redis.url_as(&format!(":{PASSWORD}"));
    let _worker = Worker::launch(&url, "rotated", &[], &[], None);
    let server = server_on(io, &url, &[]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 10"), "55");

    let mut admin = redis.conn();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("an0ther-Pa55")
        .query(&mut admin)
        .expect("CONFIG SET");
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut admin)
        .expect("CLIENT KILL");
    let mut reply = String::new();
    let told = eventually(Duration::from_secs(3), || {
        reply = conn.request("sumn 10");
        reply.starts_with("ERR unavailable ") && reply.contains("refused the credentials")
    });
    assert!(told, "{reply}");
    // Two more seconds of refusals, many requests and reconnections.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let reply = conn.request("sumn 10");
        assert!(reply.starts_with("ERR unavailable "), "{reply}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = server.log();
    let errors = log
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("refused the credentials"))
        .count();
    assert!((1..=2).contains(&errors), "{errors} error lines: {log}");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(PASSWORD)
        .query(&mut admin)
        .expect("CONFIG SET");
    let back = eventually(Duration::from_secs(3), || conn.request("sumn 10") == "55");
    assert!(back, "no service after the password came back");
}

with_redis!(refused_later);

/// Entries naming as their reply list the jobs stream, another
/// application's key or another ysum key: acknowledged and dropped,
/// counted, and nothing is written or expired; normal jobs still run.
fn injected_keys_are_untouched(io: Io) {
    let redis = Redis::start();
    let dir = scratch(&format!("inject-{}", io.name()));
    let log = dir.join("worker.log");
    let mut worker = Worker::launch(&redis.url(), "confined", &[], &[], Some(&log));
    let server = server_on(io, &redis.url(), &[]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 3"), "6");

    let mut admin = redis.conn();
    // The worker's heartbeat has written the hash that one entry names.
    let seen = answers_within(
        &mut admin,
        redis::cmd("EXISTS").arg("ysum:seen"),
        1,
        IO_TIMEOUT,
    );
    assert!(seen, "no heartbeat");
    let _: () = redis::cmd("RPUSH")
        .arg("session:42")
        .arg("precious")
        .query(&mut admin)
        .expect("RPUSH");
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    for target in ["ysum:jobs", "session:42", "ysum:seen"] {
        let _: String = redis::cmd("XADD")
            .arg("ysum:jobs")
            .arg("*")
            .arg(&["id", "1", "job", "sumn 3", "reply", target, "deadline"])
            .arg(&deadline)
            .query(&mut admin)
            .expect("XADD");
    }
    let drained = answers_within(
        &mut admin,
        redis::cmd("XLEN").arg("ysum:jobs"),
        0,
        IO_TIMEOUT,
    );
    assert!(drained, "the injected entries stayed in the stream");
    assert_eq!(conn.request("sumn 4"), "10");
    let ttl = |key: &str, admin: &mut redis::Connection| -> i64 {
        redis::cmd("TTL").arg(key).query(admin).expect("TTL")
    };
    assert_eq!(ttl("ysum:jobs", &mut admin), -1, "the jobs stream expires");
    assert_eq!(ttl("session:42", &mut admin), -1, "the other key expires");
    assert_eq!(ttl("ysum:seen", &mut admin), -1, "the seen hash expires");
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg("session:42")
        .arg(0)
        .arg(-1)
        .query(&mut admin)
        .expect("LRANGE");
    assert_eq!(list, ["precious"]);

    worker.signal(Signal::SIGTERM);
    worker.wait_exit(IO_TIMEOUT);
    let log = std::fs::read_to_string(&log).expect("worker log");
    assert!(log.contains("refused_foreign_key=3"), "{log}");
    assert!(log.contains("reply list is not under the prefix"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

with_redis!(injected_keys_are_untouched);

/// Two deployments on one Redis, `blue:` and `green:`: each server's jobs
/// reach only its own workers, and every key is under one prefix.
fn prefixes_keep_deployments_apart(io: Io) {
    let redis = Redis::start();
    let _blue_worker = Worker::launch(
        &redis.url(),
        "blue-w",
        &["--broker-prefix", "blue:"],
        &[],
        None,
    );
    let _green_worker = Worker::launch(
        &redis.url(),
        "green-w",
        &["--broker-prefix", "green:"],
        &[],
        None,
    );
    let blue = server_on(io, &redis.url(), &["--broker-prefix", "blue:"]);
    let green = server_on(io, &redis.url(), &["--broker-prefix", "green:"]);
    for n in 1..=20u64 {
        let server = if n % 2 == 0 { &blue } else { &green };
        assert_eq!(
            server.line_conn().request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    let names = |server: &Server| -> Vec<String> {
        let stats = server.stats();
        stats["remote"]["workers"]
            .as_array()
            .map(|workers| {
                workers
                    .iter()
                    .map(|w| w["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let seen = eventually(IO_TIMEOUT, || {
        names(&blue) == ["blue-w"] && names(&green) == ["green-w"]
    });
    assert!(
        seen,
        "blue sees {:?}, green {:?}",
        names(&blue),
        names(&green)
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.conn())
        .expect("KEYS");
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(
            key.starts_with("blue:") || key.starts_with("green:"),
            "{key} in {keys:?}"
        );
    }
}

with_redis!(prefixes_keep_deployments_apart);

/// With `--broker-secret-file` on both sides: replies forged on the
/// server's reply list (unsigned, old format, a wrong MAC) are dropped and
/// counted, and the client still gets the real answer; job entries added
/// without the key (unsigned, a wrong MAC, another key's) are refused by
/// the worker, which answers none of them.
fn forgeries_are_refused(io: Io) {
    let redis = Redis::start();
    let dir = scratch(&format!("forge-{}", io.name()));
    let secret = dir.join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let secret_arg = secret.to_str().unwrap();
    let log = dir.join("worker.log");
    let mut worker = Worker::launch(
        &redis.url(),
        "signer",
        &["--broker-secret-file", secret_arg, "--workers", "1"],
        &[],
        Some(&log),
    );
    let server = server_on(io, &redis.url(), &["--broker-secret-file", secret_arg]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 3"), "6");

    // Held in the stream while the worker is stopped.
    worker.signal(Signal::SIGSTOP);
    let mut waiting = server.line_conn();
    waiting.send("sumn 1000\n");
    let mut admin = redis.conn();
    let listed = answers_within(
        &mut admin,
        redis::cmd("XLEN").arg("ysum:jobs"),
        1,
        IO_TIMEOUT,
    );
    assert!(listed, "the job never reached the stream");
    let (reply_list, id) = first_entry(&mut admin);
    for forged in [
        format!("{id} ok 42"),
        format!("v2 - {id} ok 42"),
        format!("v2 {} {id} ok 42", "0".repeat(64)),
    ] {
        let _: () = redis::cmd("RPUSH")
            .arg(&reply_list)
            .arg(forged)
            .query(&mut admin)
            .expect("RPUSH");
    }
    let counted = eventually(IO_TIMEOUT, || {
        server.stats()["remote"]["forged_replies"] == 3
    });
    assert!(counted, "{}", server.stats());
    assert!(!waiting.has_input_within(Duration::from_millis(200)));
    worker.signal(Signal::SIGCONT);
    assert_eq!(waiting.read_line(), "500500");

    // Jobs nobody with the key wrote.
    let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let victim = "ysum:reply:victim";
    let other_key = offload::broker::Signer::new(&[offload::broker::Secret::new(
        "not-the-deployment-key-0123",
    )])
    .unwrap();
    let signed_elsewhere = offload::broker::wire::JobMessage::new(
        7,
        offload::Job::Sumn(3),
        victim.into(),
        deadline.parse().unwrap(),
    )
    .fields(Some(&other_key));
    let bodies: Vec<Vec<(String, String)>> = vec![
        vec![
            ("v", "2"),
            ("id", "7"),
            ("job", "sumn 3"),
            ("reply", victim),
            ("deadline", &deadline),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        vec![
            ("v", "2"),
            ("id", "7"),
            ("job", "sumn 3"),
            ("reply", victim),
            ("deadline", &deadline),
            ("mac", &"ab".repeat(32)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        signed_elsewhere
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    ];
    for body in bodies {
        let mut xadd = redis::cmd("XADD");
        xadd.arg("ysum:jobs").arg("*");
        for (field, value) in body {
            xadd.arg(field).arg(value);
        }
        let _: String = xadd.query(&mut admin).expect("XADD");
    }
    let drained = answers_within(
        &mut admin,
        redis::cmd("XLEN").arg("ysum:jobs"),
        0,
        IO_TIMEOUT,
    );
    assert!(drained, "the forged entries stayed in the stream");
    assert_eq!(conn.request("sumn 4"), "10");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(victim)
        .query(&mut admin)
        .expect("EXISTS");
    assert_eq!(exists, 0, "a forged job was answered");
    worker.signal(Signal::SIGTERM);
    worker.wait_exit(IO_TIMEOUT);
    let log = std::fs::read_to_string(&log).expect("worker log");
    assert!(log.contains("refused_forged=3"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

with_redis!(forgeries_are_refused);
