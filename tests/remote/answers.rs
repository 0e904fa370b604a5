//! Every job kind answers through workers as the local strategies answer.

use offload::job::Cancel;
use offload::{Job, Strategy, StrategyConfig, StrategyKind};

use crate::engines::{Redis, Worker};
use crate::remote_server;
use crate::support::{sum_of, Io};

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn job(&mut self) -> Job {
        match self.next() % 3 {
            0 => Job::Sumn(self.next() % 2_000_000),
            1 => Job::Prime(self.next() % 1_000_000_000),
            _ => Job::Sleep(self.next() % 5),
        }
    }
}

/// Random jobs sent through a remote server on four pipelining connections
/// get exactly the answers a local `inline` strategy gives, whichever of a
/// `threads` and a `procs` worker runs them.
fn same_answers(io: Io, seed: u64) {
    let redis = Redis::start();
    let _threads = Worker::start(&redis, "answers-threads", &["--workers", "2"]);
    let _procs = Worker::start(
        &redis,
        "answers-procs",
        &["--apply", "procs", "--workers", "2"],
    );
    let server = remote_server(io, &redis, &[]);
    let local = Strategy::start(&StrategyConfig::new(StrategyKind::Inline)).expect("inline");
    let mut cases = Cases(seed);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let jobs: Vec<Job> = (0..30).map(|_| cases.job()).collect();
            let server = &server;
            let local = &local;
            scope.spawn(move || {
                let mut conn = server.line_conn();
                let text: String = jobs.iter().map(|job| format!("{job}\n")).collect();
                conn.send(&text);
                for job in &jobs {
                    let expected = local.apply(*job).expect("local answer").to_string();
                    assert_eq!(conn.read_line(), expected, "{job} (seed {seed})");
                }
            });
        }
    });
    // One check that the local answers are the true ones, not only equal.
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 2000000"), sum_of(2_000_000).to_string());
    assert_eq!(
        offload::job::is_prime(1_000_003, &Cancel::never()),
        Ok(true)
    );
    // The broker's view (`workers`) is read at most half a second ago, so
    // a fast run can ask before the first read that saw both workers.
    let listed = |stats: &serde_json::Value| {
        let names: Vec<&str> = stats["remote"]["workers"]
            .as_array()
            .expect("workers listed")
            .iter()
            .filter_map(|w| w["name"].as_str())
            .collect();
        names.contains(&"answers-threads") && names.contains(&"answers-procs")
    };
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut stats = server.stats();
    while !listed(&stats) && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(100));
        stats = server.stats();
    }
    let remote = &stats["remote"];
    assert_eq!(remote["connected"], true, "{stats}");
    assert_eq!(remote["late_replies"], 0, "{stats}");
    assert!(listed(&stats), "both workers should be listed: {stats}");
}

/// Under `--io threads`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn same_answers_threads() {
    same_answers(Io::Threads, 0x5eed_0001);
}

/// Under `--io events`.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn same_answers_events() {
    same_answers(Io::Events, 0x5eed_0002);
}
