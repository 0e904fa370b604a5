//! `--remote W --sentinel`: two Redis nodes and three sentinels instead of
//! one Redis, the broker `redis+sentinel://…/ysum`. It starts and stops
//! cleanly; a primary killed under load fails over, and comes back as a
//! replica of the new one (never a second primary); a sentinel comes back
//! with its config, a replica as a replica at once.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{answers_through_balancer, port_of, printed_pid, Script};
use crate::one_at_a_time;
use crate::support::{eventually, Conn, IO_TIMEOUT};

/// The master's name the script gives the sentinels.
const MASTER: &str = "ysum";

/// What the script prints at start under `--servers 2 --remote 2
/// --sentinel`, in order.
const LINES: [&str; 10] = [
    "redis 1 on 127.0.0.1:",
    "redis 2 on 127.0.0.1:",
    "sentinel 1 on 127.0.0.1:",
    "sentinel 2 on 127.0.0.1:",
    "sentinel 3 on 127.0.0.1:",
    "worker 1 as w1 ",
    "worker 2 as w2 ",
    "server 1 on ",
    "server 2 on ",
    "balancer on ",
];

/// The ports the script printed for its Redis nodes and its sentinels.
struct Ports {
    nodes: [u16; 2],
    sentinels: [u16; 3],
}

impl Ports {
    fn of(script: &Script) -> Ports {
        let port = |prefix: String| port_of(&script.addr(&prefix));
        Ports {
            nodes: [1, 2].map(|i| port(format!("redis {i} on "))),
            sentinels: [1, 2, 3].map(|i| port(format!("sentinel {i} on "))),
        }
    }

    /// The broker's URL the servers and workers must have been given.
    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }
}

/// The reply of the Redis or sentinel on 127.0.0.1:`port` to `command`
/// `args`; `None` if it does not answer within half a second, or with an
/// error.
fn ask<T: redis::FromRedisValue>(port: u16, command: &str, args: &[&str]) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    redis::cmd(command).arg(args).query(&mut conn).ok()
}

/// The primary's port as the sentinel on `port` names it.
fn primary_named_by(sentinel: u16) -> Option<u16> {
    ask::<(String, u16)>(sentinel, "SENTINEL", &["GET-MASTER-ADDR-BY-NAME", MASTER])
        .map(|(_, port)| port)
}

/// How many replicas and other sentinels the sentinel on `port` knows.
fn known_by(sentinel: u16) -> (usize, usize) {
    let count = |what: &str| {
        ask::<Vec<redis::Value>>(sentinel, "SENTINEL", &[what, MASTER]).map_or(0, |v| v.len())
    };
    (count("REPLICAS"), count("SENTINELS"))
}

/// A Redis node's role, from `ROLE`.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    Primary,
    /// A replica: its primary's port, and the state of its link
    /// (`connected` once it has its copy).
    Replica(u16, String),
}

/// The role of the Redis node on `port`; `None` while it does not answer.
fn role(port: u16) -> Option<Role> {
    let reply: Vec<redis::Value> = ask(port, "ROLE", &[])?;
    let field = |i: usize| reply.get(i).cloned().unwrap_or(redis::Value::Nil);
    match redis::from_redis_value::<String>(field(0)).ok()?.as_str() {
        "master" => Some(Role::Primary),
        "slave" => Some(Role::Replica(
            redis::from_redis_value(field(2)).ok()?,
            redis::from_redis_value(field(3)).ok()?,
        )),
        _ => None,
    }
}

/// A linked replica of the node on `primary`.
fn replica_of(primary: u16) -> Role {
    Role::Replica(primary, "connected".to_owned())
}

/// What one job sent through the balancer got.
#[derive(Debug)]
enum Outcome {
    Right,
    /// An `ERR …` reply, or no reply at all (`io: …`, `connect: …`).
    Error(String),
    Wrong(String),
}

/// One job sent through the balancer: when it was sent, when its outcome
/// came, and what that was.
struct Sent {
    at: Instant,
    done: Instant,
    outcome: Outcome,
}

/// `sumn` jobs sent one at a time through the balancer on a kept-alive
/// connection (a new one after an I/O error), each noted as a [`Sent`].
struct Jobs {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<Sent>>,
}

impl Jobs {
    fn start(balancer: String) -> Jobs {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut outcomes = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut n = 0u64;
            while !stopped.load(Ordering::Acquire) {
                let at = Instant::now();
                if conn.is_none() {
                    match TcpStream::connect(&balancer) {
                        Ok(stream) => {
                            let mut fresh = Conn::new(stream);
                            fresh.set_read_timeout(IO_TIMEOUT);
                            conn = Some(fresh);
                        }
                        Err(err) => {
                            let error = Outcome::Error(format!("connect: {err}"));
                            let done = Instant::now();
                            outcomes.push(Sent {
                                at,
                                done,
                                outcome: error,
                            });
                            thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                    }
                }
                let Some(open) = conn.as_mut() else { continue };
                n += 1;
                let outcome = match open.try_request(&format!("sumn {n}")) {
                    Ok(reply) if reply == (n * (n + 1) / 2).to_string() => Outcome::Right,
                    Ok(reply) if reply.starts_with("ERR ") => Outcome::Error(reply),
                    Ok(reply) => Outcome::Wrong(format!("sumn {n} → {reply}")),
                    Err(err) => {
                        conn = None;
                        Outcome::Error(format!("io: {err}"))
                    }
                };
                let failed = !matches!(outcome, Outcome::Right);
                let done = Instant::now();
                outcomes.push(Sent { at, done, outcome });
                if failed {
                    thread::sleep(Duration::from_millis(20));
                }
            }
            outcomes
        });
        Jobs { stop, thread }
    }

    fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the jobs thread panicked")
    }
}

/// Asks both Redis nodes for their role every 50 ms, and counts the times
/// both said `master`.
struct RoleWatch {
    stop: Arc<AtomicBool>,
    both_primary: Arc<AtomicUsize>,
    thread: thread::JoinHandle<usize>,
}

impl RoleWatch {
    fn start(nodes: [u16; 2]) -> RoleWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let both_primary = Arc::new(AtomicUsize::new(0));
        let (stopped, seen) = (Arc::clone(&stop), Arc::clone(&both_primary));
        let thread = thread::spawn(move || {
            let mut samples = 0;
            while !stopped.load(Ordering::Acquire) {
                if nodes.iter().all(|&port| role(port) == Some(Role::Primary)) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                samples += 1;
                thread::sleep(Duration::from_millis(50));
            }
            samples
        });
        RoleWatch {
            stop,
            both_primary,
            thread,
        }
    }

    /// How many samples it took, and in how many both were primaries.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Release);
        let samples = self.thread.join().expect("the role thread panicked");
        (samples, self.both_primary.load(Ordering::Relaxed))
    }
}

/// The `stats` of server `index`, straight from it.
fn stats(script: &Script, index: usize) -> serde_json::Value {
    serde_json::from_str(&script.server_conn(index).request("stats")).expect("stats is JSON")
}

/// `--servers 2 --remote 2 --sentinel` in a temporary run folder: two Redis
/// nodes (the second a linked replica of the first), three sentinels, two
/// workers, two servers and HAProxy, each printed with its pid (exactly
/// the processes under the script); every sentinel knows the replica and
/// the other two and names the first node; jobs are answered right through
/// the balancer; each server's `stats` shows the sentinels' URL and the
/// first node as `remote.primary`. SIGTERM: exit 0, every process gone,
/// the run folder removed.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(any(no_redis, no_sentinel), not(no_haproxy)),
    ignore = "redis-server or redis-sentinel not installed: apt-get install -y redis-server redis-sentinel"
)]
fn starts_serves_and_stops() {
    let _serial = one_at_a_time();
    let started = Instant::now();
    let mut script = Script::launch(2, &["--remote", "2", "--sentinel"], &[], None);
    println!(
        "figures: cluster --sentinel up in {} ms",
        started.elapsed().as_millis()
    );
    script.assert_lines(&LINES);
    let ports = Ports::of(&script);
    let [primary, replica] = ports.nodes;
    assert!(
        script.line("redis 1 on ").contains(" as primary (pid "),
        "{:?}",
        script.lines
    );
    let follows = format!(" as replica of 127.0.0.1:{primary} (pid ");
    assert!(
        script.line("redis 2 on ").contains(&follows),
        "{:?}",
        script.lines
    );
    assert_eq!(role(primary), Some(Role::Primary));
    assert_eq!(role(replica), Some(replica_of(primary)));
    for sentinel in ports.sentinels {
        assert_eq!(primary_named_by(sentinel), Some(primary), "{sentinel}");
        assert_eq!(known_by(sentinel), (1, 2), "sentinel on {sentinel}");
    }

    let mut conn = script.balancer_conn();
    conn.set_read_timeout(IO_TIMEOUT);
    for n in 1..=20u64 {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (n * (n + 1) / 2).to_string()
        );
    }
    drop(conn);
    for index in 1..=2 {
        let stats = stats(&script, index);
        assert_eq!(stats["strategy"], "remote", "{stats}");
        assert_eq!(stats["remote"]["broker"], ports.url().as_str(), "{stats}");
        assert_eq!(
            stats["remote"]["primary"],
            format!("127.0.0.1:{primary}").as_str(),
            "{stats}"
        );
        assert_eq!(stats["remote"]["failovers"], 0, "{stats}");
    }

    let run_dir = script.run_dir.0.clone();
    assert!(run_dir.join("sentinel-1.conf").is_file(), "{run_dir:?}");
    let stderr = script.stop_and_check_all_gone();
    assert!(
        stderr.lines().any(|l| l == "cluster: restarts: 0"),
        "{stderr}"
    );
    assert!(!run_dir.exists(), "{run_dir:?} is left after a clean stop");
}

/// `kill -9` of the primary (the one the sentinels name) while jobs go
/// through the balancer one after another: the sentinels fail over to the
/// replica, jobs are answered right again within 8 s of the kill (only
/// `ERR unavailable` meanwhile, never a wrong answer), both servers' `stats`
/// show `remote.failovers` ≥ 1 and the new primary; the killed node comes
/// back on its port as a linked replica of the new primary, and at no
/// sample (every 50 ms) were both nodes primaries. Then a sentinel killed
/// comes back on its port under the same id, knowing the replica and the
/// other two at once; the replica killed comes back as a replica at once,
/// with no failover. Jobs are still answered; SIGTERM stops everything and
/// counts the three restarts.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(any(no_redis, no_sentinel), not(no_haproxy)),
    ignore = "redis-server or redis-sentinel not installed: apt-get install -y redis-server redis-sentinel"
)]
fn a_killed_primary_fails_over_and_comes_back_as_a_replica() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(2, &["--remote", "2", "--sentinel"], &[]);
    script.assert_lines(&LINES);
    let ports = Ports::of(&script);
    let [old, new] = ports.nodes;
    let named = primary_named_by(ports.sentinels[0]);
    assert_eq!(named, Some(old), "sentinel 1 names {named:?}");

    let watch = RoleWatch::start(ports.nodes);
    let jobs = Jobs::start(script.addr("balancer on "));
    thread::sleep(Duration::from_millis(500));
    let victim = printed_pid(script.line("redis 1 on "));
    let killed = Instant::now();
    script.kill_member(victim);
    // Within the script's wait for a failover (15 s) and a copy.
    let line = script
        .next_line(Duration::from_secs(25))
        .unwrap_or_else(|| panic!("redis 1 not restarted; stderr:\n{}", script.stderr_text()));
    let restarted = killed.elapsed();
    let expected = format!("redis 1 on 127.0.0.1:{old} as replica of 127.0.0.1:{new} (pid ");
    assert!(
        line.starts_with(&expected) && line.ends_with(") restarted"),
        "{line:?}; stderr:\n{}",
        script.stderr_text()
    );
    let pid = printed_pid(line.strip_suffix(" restarted").expect("a restart"));
    script.adopt(pid, &line);
    assert_eq!(role(old), Some(replica_of(new)));
    assert_eq!(role(new), Some(Role::Primary));
    for sentinel in ports.sentinels {
        let switched = eventually(IO_TIMEOUT, || primary_named_by(sentinel) == Some(new));
        assert!(switched, "sentinel on {sentinel} does not name {new}");
    }
    // Jobs for a while longer on the new primary.
    thread::sleep(Duration::from_millis(500));
    let outcomes = jobs.finish();

    let wrong: Vec<&String> = outcomes
        .iter()
        .filter_map(|sent| match &sent.outcome {
            Outcome::Wrong(w) => Some(w),
            _ => None,
        })
        .collect();
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    let errors: Vec<&Sent> = outcomes
        .iter()
        .filter(|sent| matches!(sent.outcome, Outcome::Error(_)))
        .collect();
    for sent in &errors {
        assert!(
            matches!(&sent.outcome, Outcome::Error(e) if e.starts_with("ERR unavailable ")),
            "{:?}",
            sent.outcome
        );
    }
    // Service is back with the first right answer to a job sent after the
    // kill and after the last error: a reply on its way at the kill does
    // not count.
    let since = errors.last().map_or(killed, |sent| sent.done).max(killed);
    let mut after = outcomes
        .iter()
        .filter(|sent| sent.at > since && matches!(sent.outcome, Outcome::Right));
    let back = after
        .next()
        .map(|sent| sent.done.duration_since(killed))
        .expect("no right answer after the kill and the last error");
    let right_after = 1 + after.count();
    println!(
        "figures: cluster --sentinel primary killed: jobs answered again after {} ms \
         ({} ERR unavailable), redis 1 back as a replica after {} ms, {right_after} right after",
        back.as_millis(),
        errors.len(),
        restarted.as_millis()
    );
    assert!(back < Duration::from_secs(8), "service back after {back:?}");
    assert!(right_after >= 10, "only {right_after} right answers after");
    for index in 1..=2 {
        let mut seen = serde_json::Value::Null;
        let followed = eventually(IO_TIMEOUT, || {
            seen = stats(&script, index);
            seen["remote"]["failovers"].as_u64() >= Some(1)
                && seen["remote"]["primary"] == format!("127.0.0.1:{new}").as_str()
        });
        assert!(followed, "server {index}: {seen}");
    }

    // A sentinel: back on its port, under its id, knowing what it knew.
    let sentinel = ports.sentinels[1];
    let id: String = ask(sentinel, "SENTINEL", &["MYID"]).expect("sentinel 2's id");
    let old_pid = printed_pid(script.line("sentinel 2 on "));
    script.kill_member(old_pid);
    script.expect_restart("sentinel 2 on ", old_pid);
    assert_eq!(ask(sentinel, "SENTINEL", &["MYID"]), Some(id));
    assert_eq!(primary_named_by(sentinel), Some(new));
    assert_eq!(known_by(sentinel), (1, 2));

    // The replica: back at once, a replica again.
    script.kill_member(pid);
    let line = script
        .next_line(IO_TIMEOUT)
        .unwrap_or_else(|| panic!("replica not restarted; stderr:\n{}", script.stderr_text()));
    assert!(line.starts_with(&expected), "{line:?}");
    script.adopt(
        printed_pid(line.strip_suffix(" restarted").expect("a restart")),
        &line,
    );
    assert_eq!(role(old), Some(replica_of(new)));
    assert!(
        answers_through_balancer(&script),
        "no right answer at the end; stderr:\n{}",
        script.stderr_text()
    );
    let (samples, both_primary) = watch.finish();
    assert_eq!(
        both_primary, 0,
        "two primaries in {both_primary} of {samples} samples"
    );

    let stderr = script.sigterm_and_check_all_gone();
    assert!(
        stderr.lines().any(|l| l
            == "cluster: redis 1: the sentinels still name it the primary; \
                waiting for a failover (at most 15 s)"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "cluster: restarts: 3 (redis 1: 2, sentinel 2: 1)"),
        "{stderr}"
    );
}
