//! The reactor end to end, in process: a real listener on port 0, real
//! sockets, the `threads` strategy.

use super::*;
use offload::{StrategyConfig, StrategyKind};
use std::io::{BufRead, BufReader, Write};

/// The library entry point serves a pipelined connection in order under
/// `threads`, and returns promptly once the shutdown is triggered.
#[test]
fn serves_in_order_and_stops_on_shutdown() {
    let strategy = Strategy::start(&StrategyConfig {
        workers: 2,
        ..StrategyConfig::new(StrategyKind::Threads)
    })
    .expect("strategy starts");
    let config = Config {
        io: crate::IoModel::Events,
        ..Config::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let shutdown = Shutdown::new();
    let counts = crate::counts::ConnectionCounts::new();
    std::thread::scope(|scope| {
        let server = scope.spawn(|| run(listener, &config, &strategy, &shutdown, &counts));
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"sleep 50\nping\nsumn 4\nstats\n")
            .expect("send");
        let mut lines = BufReader::new(stream.try_clone().expect("clone")).lines();
        let mut next = || lines.next().expect("a line").expect("read");
        assert_eq!(next(), "ok");
        assert_eq!(next(), "pong");
        assert_eq!(next(), "10");
        assert!(next().contains("\"open\":1"), "stats counts the connection");
        let stopping = Instant::now();
        shutdown.trigger();
        let stopped = server.join().expect("no panic").expect("served");
        assert_eq!(stopped.cut_short, 0, "nothing was running");
        assert!(stopping.elapsed() < Duration::from_secs(1));
    });
}
