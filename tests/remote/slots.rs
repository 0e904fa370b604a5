//! A worker reads no more jobs than it has free slots: no prefetching.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::engines::{Redis, Worker};
use crate::remote_server;
use crate::support::{sum_of, Io};

/// Four connections pipeline 800 tiny jobs, 20 at a time, through one
/// worker with 2 slots, so that entries always wait in the stream when a
/// job finishes; meanwhile the test reads the group's pending list as fast
/// as it can. The worker never holds more entries than its slots: a slot
/// holds a job from its read to its answer, and the thread that finished a
/// job acknowledges it before reading the next one for that slot, in the
/// same round trip. Every answer is right.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn reads_never_exceed_the_free_slots() {
    let redis = Redis::start();
    let _worker = Worker::start(&redis, "two-slots", &["--workers", "2"]);
    let server = remote_server(Io::Threads, &redis, &[]);
    let mut queue = redis.queue();
    let clients_done = AtomicBool::new(false);
    let (most, samples) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let (mut most, mut samples) = (0, 0_u64);
            while !clients_done.load(Ordering::Acquire) {
                let held = queue
                    .pending()
                    .iter()
                    .filter(|p| p.worker == "two-slots")
                    .count();
                most = most.max(held);
                samples += 1;
            }
            (most, samples)
        });
        let clients: Vec<_> = (0..4_u64)
            .map(|client| {
                let mut conn = server.line_conn();
                scope.spawn(move || {
                    for batch in 0..10_u64 {
                        let ns: Vec<u64> =
                            (0..20).map(|i| client * 1_000 + batch * 20 + i).collect();
                        let text: String = ns.iter().map(|n| format!("sumn {n}\n")).collect();
                        conn.send(&text);
                        for n in ns {
                            assert_eq!(conn.read_line(), sum_of(n).to_string(), "sumn {n}");
                        }
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client");
        }
        clients_done.store(true, Ordering::Release);
        sampler.join().expect("sampler")
    });
    assert!(
        most <= 2,
        "the 2-slot worker held {most} entries at once ({samples} samples)"
    );
    // The sampler did see the worker at work: the bound is not vacuous.
    assert!(most >= 1, "no entry ever seen pending ({samples} samples)");
}
