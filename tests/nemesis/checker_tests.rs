//! The checker can fail: each kind of wrongness it looks for, put into a
//! history made by hand or produced by a deliberately broken server (one
//! that drops a reply, one that answers twice, one that answers wrong,
//! driven by the real `sumclient --history`), must be caught; a clean
//! history, with the errors its faults explain, must pass. None of this
//! needs namespaces or engines.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::checker::{check, expected, is_prime, Evidence, Verdict};
use crate::cluster::binary;
use crate::history::{self, ClientReport, Request};
use crate::nemesis::{Applied, Note};
use crate::observer::Sample;
use crate::schedule::{Direction, Fault, Kind, Target};
use crate::timeline::Clock;

/// The load's jobs in the order a thread deals them.
const JOBS: [&str; 5] = [
    "sumn 1000",
    "sumn 2500",
    "prime 1000003",
    "prime 1000001",
    "sleep 100",
];

fn request(
    thread: u64,
    seq: u64,
    sent_ms: f64,
    reply: Option<&str>,
    failure: Option<&str>,
) -> Request {
    let line = JOBS[(seq as usize + thread as usize) % JOBS.len()];
    Request {
        thread,
        seq,
        request: line.to_owned(),
        sent_ms,
        done_ms: sent_ms + 2.0,
        attempts: vec![("10.213.47.50:10000".into(), sent_ms + 2.0, "reply".into())],
        reply: reply.map(str::to_owned),
        failure: failure.map(str::to_owned),
    }
}

fn fault(step: usize, kind: Kind, target: Target, applied_ms: f64, healed_ms: f64) -> Applied {
    Applied {
        step,
        fault: Fault {
            kind,
            target,
            direction: Some(Direction::In),
            shift_s: 0,
            after: Duration::ZERO,
            lasts: Duration::from_secs_f64((healed_ms - applied_ms) / 1000.0),
        },
        applied_ms,
        healed_ms,
        detail: String::new(),
        refused: None,
    }
}

fn sample(at_ms: f64, oldest: Option<u64>) -> Sample {
    Sample {
        at_ms,
        primary: Some("10.213.47.11:6379".into()),
        reachable: true,
        stream: u64::from(oldest.is_some()),
        oldest_entry_ms: oldest,
        pending: 0,
        oldest_pending_ms: None,
    }
}

/// A clean run of 30 s: 2 threads, a request every 5 ms each, every answer
/// right; a broker fault from 10 to 12 s (step 1) and HAProxy killed from 20
/// to 21 s (step 2), with samples every 250 ms, nothing stale.
fn clean() -> Evidence {
    let mut requests = Vec::new();
    for thread in 0..2 {
        for seq in 0..6000 {
            let mut r = request(thread, seq, seq as f64 * 5.0, None, None);
            r.reply = expected(&r.request);
            requests.push(r);
        }
    }
    Evidence {
        report: ClientReport {
            requests: requests.len() as u64,
            extra_replies: 0,
        },
        requests,
        faults: vec![
            fault(1, Kind::KillPrimary, Target::Broker, 10_000.0, 12_000.0),
            fault(2, Kind::KillHaproxy, Target::Haproxy, 20_000.0, 21_000.0),
        ],
        step_ends: vec![12_000.0, 21_000.0],
        samples: (0..140)
            .map(|i| sample(f64::from(i) * 250.0, Some(5)))
            .collect(),
        load_end_ms: 30_000.0,
        ..Evidence::default()
    }
}

/// Replaces request `(thread, seq)`'s reply and failure.
fn answer(
    evidence: &mut Evidence,
    (thread, seq): (u64, u64),
    reply: Option<&str>,
    failure: Option<&str>,
) {
    let r = evidence
        .requests
        .iter_mut()
        .find(|r| r.thread == thread && r.seq == seq)
        .expect("such a request");
    r.reply = reply.map(str::to_owned);
    r.failure = failure.map(str::to_owned);
}

fn found(verdict: &Verdict, what: &str) -> usize {
    verdict
        .findings
        .iter()
        .filter(|f| f.what.contains(what))
        .map(|f| f.count)
        .sum()
}

/// A clean history passes, with the errors its faults explain:
/// `unavailable` while the primary is down, `connect refused` while HAProxy
/// is, each within its grace after the heal.
#[test]
fn a_clean_history_with_explained_errors_passes() {
    let mut evidence = clean();
    // Seq 2200 is sent at 11 s (thread 0), 2700 at 13.5 s (< heal + 2 s).
    answer(
        &mut evidence,
        (0, 2200),
        Some("ERR unavailable the broker is down"),
        None,
    );
    answer(
        &mut evidence,
        (1, 2700),
        Some("ERR unavailable the broker is down"),
        None,
    );
    answer(&mut evidence, (0, 4050), None, Some("connect refused"));
    let verdict = check(&evidence);
    assert!(verdict.passed(), "{}", verdict.render());
    assert_eq!(verdict.figures.errors.values().sum::<usize>(), 3);
    assert!(
        verdict.figures.baseline > 150.0,
        "{}",
        verdict.figures.baseline
    );
}

/// A wrong answer is caught.
#[test]
fn a_wrong_answer_is_caught() {
    let mut evidence = clean();
    answer(&mut evidence, (1, 100), Some("12345"), None);
    let verdict = check(&evidence);
    assert_eq!(found(&verdict, "wrong answer"), 1, "{}", verdict.render());
    assert_eq!(verdict.figures.wrong, 1);
}

/// `unavailable` outside every broker fault's window is caught; so is one
/// during a planned failover, which promises no error at all.
#[test]
fn an_unexplained_unavailable_is_caught() {
    let mut evidence = clean();
    answer(&mut evidence, (0, 1000), Some("ERR unavailable x"), None); // at 5 s
    answer(&mut evidence, (0, 2900), Some("ERR unavailable x"), None); // at 14.5 s: past the grace
    evidence
        .faults
        .push(fault(3, Kind::Failover, Target::Broker, 24_000.0, 26_500.0));
    evidence.step_ends.push(26_500.0);
    answer(&mut evidence, (1, 5000), Some("ERR unavailable x"), None); // at 25 s
    let verdict = check(&evidence);
    assert_eq!(
        found(&verdict, "ERR unavailable while no fault explains it"),
        3,
        "{}",
        verdict.render()
    );
}

/// A request with no reply within the client's timeout is a lost reply.
#[test]
fn a_lost_reply_is_caught() {
    let mut evidence = clean();
    answer(&mut evidence, (1, 2100), None, Some("timeout"));
    let verdict = check(&evidence);
    assert_eq!(found(&verdict, "lost reply"), 1, "{}", verdict.render());
}

/// A reply that answers the thread's previous request (a reply sent
/// twice) is a duplicate; an extra reply the client saw is too.
#[test]
fn a_doubled_reply_is_caught() {
    let mut evidence = clean();
    let previous = expected(&evidence.requests[500].request);
    answer(&mut evidence, (0, 501), previous.as_deref(), None);
    let verdict = check(&evidence);
    assert_eq!(
        found(&verdict, "duplicated reply"),
        1,
        "{}",
        verdict.render()
    );
    let mut evidence = clean();
    evidence.report.extra_replies = 1;
    assert_eq!(found(&check(&evidence), "duplicated reply"), 1);
}

/// A request the client counted without a history line, or a thread's
/// sequence with a hole, is caught.
#[test]
fn a_missing_record_is_caught() {
    let mut evidence = clean();
    evidence.report.requests += 1;
    assert_eq!(found(&check(&evidence), "exactly one record"), 1);
    let mut evidence = clean();
    evidence
        .requests
        .retain(|r| !(r.thread == 1 && r.seq == 77));
    evidence.report.requests -= 1;
    assert_eq!(found(&check(&evidence), "exactly one record"), 1);
}

/// An error code the protocol does not document is caught, and so is a
/// documented one that no fault here can cause.
#[test]
fn undocumented_and_unexplainable_codes_are_caught() {
    let mut evidence = clean();
    answer(&mut evidence, (0, 2200), Some("ERR frobnicated"), None);
    answer(&mut evidence, (0, 2201), Some("ERR busy queue full"), None);
    let verdict = check(&evidence);
    assert_eq!(found(&verdict, "undocumented error ERR frobnicated"), 1);
    assert_eq!(
        found(&verdict, "ERR busy while no fault"),
        1,
        "{}",
        verdict.render()
    );
}

/// `timeout` is explained only while every worker is out at once, and
/// `worker-lost` only across three worker faults.
#[test]
fn timeouts_need_every_worker_out() {
    let mut evidence = clean();
    evidence.faults.extend([
        fault(3, Kind::KillWorker, Target::Worker(0), 23_000.0, 26_000.0),
        fault(3, Kind::PauseWorker, Target::Worker(1), 23_500.0, 25_000.0),
    ]);
    evidence.step_ends.push(26_000.0);
    answer(
        &mut evidence,
        (0, 4800),
        Some("ERR timeout sumn timed out"),
        None,
    ); // at 24 s
    answer(&mut evidence, (1, 4800), Some("ERR worker-lost lost"), None);
    let verdict = check(&evidence);
    assert_eq!(
        found(&verdict, "ERR timeout while no fault"),
        1,
        "{}",
        verdict.render()
    );
    assert_eq!(found(&verdict, "ERR worker-lost while no fault"), 1);
    evidence.faults.push(fault(
        3,
        Kind::PartitionWorkerBroker,
        Target::Worker(2),
        23_800.0,
        24_500.0,
    ));
    let verdict = check(&evidence);
    assert!(verdict.passed(), "{}", verdict.render());
}

/// A client-side failure outside HAProxy's outages (and one server's
/// outage alone) is caught; with both servers away at once it is not.
#[test]
fn client_failures_need_the_front_down() {
    let mut evidence = clean();
    evidence.faults.push(fault(
        3,
        Kind::KillServer,
        Target::Server(0),
        23_000.0,
        25_000.0,
    ));
    evidence.step_ends.push(25_000.0);
    answer(&mut evidence, (0, 4700), None, Some("closed")); // at 23.5 s
    assert_eq!(found(&check(&evidence), "client failure 'closed'"), 1);
    evidence.faults.push(fault(
        3,
        Kind::PauseServer,
        Target::Server(1),
        23_200.0,
        24_000.0,
    ));
    let verdict = check(&evidence);
    assert!(verdict.passed(), "{}", verdict.render());
}

/// An entry older than the stale bound after a heal is caught; so is a
/// broker that cannot be read at all then.
#[test]
fn stale_entries_and_an_unreadable_broker_are_caught() {
    let mut evidence = clean();
    evidence.samples[60] = sample(15_000.0, Some(9_000)); // 3 s after step 1's heal
    let verdict = check(&evidence);
    assert_eq!(found(&verdict, "stale entry"), 1, "{}", verdict.render());
    let mut evidence = clean();
    for s in evidence.samples.iter_mut().filter(|s| s.at_ms >= 23_000.0) {
        s.reachable = false;
    }
    assert!(found(&check(&evidence), "broker unreadable") >= 1);
}

/// Throughput that stays low for longer than 2 s after a heal is caught.
#[test]
fn slow_recovery_is_caught() {
    let mut evidence = clean();
    for r in evidence
        .requests
        .iter_mut()
        .filter(|r| (12_000.0..14_600.0).contains(&r.done_ms))
    {
        r.reply = Some("ERR unavailable still down".into());
    }
    let verdict = check(&evidence);
    assert_eq!(
        found(&verdict, "throughput not back"),
        1,
        "{}",
        verdict.render()
    );
}

/// Whatever the nemesis noted as a failure, and anything left behind, fails
/// the run.
#[test]
fn notes_and_leaks_fail_the_run() {
    let mut evidence = clean();
    evidence.notes.push(Note {
        at_ms: 5.0,
        text: "a1 exited by itself".into(),
        failure: true,
    });
    evidence.leaks.push("pid 42 still running".into());
    let verdict = check(&evidence);
    assert_eq!(found(&verdict, "nemesis saw a failure"), 1);
    assert_eq!(found(&verdict, "left behind"), 1);
}

/// The reference primality test agrees with trial division.
#[test]
fn the_reference_primes_are_right() {
    let slow = |n: u64| {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    };
    for n in 0..5000 {
        assert_eq!(is_prime(n), slow(n), "{n}");
    }
    assert!(is_prime(1_000_003) && !is_prime(1_000_001));
    assert!(is_prime(18_446_744_073_709_551_557));
}

/// How a broken server misbehaves, on the request numbered `at` (from 0,
/// over all its connections).
#[derive(Debug, Clone, Copy)]
enum Broken {
    DropsReply(usize),
    AnswersTwice(usize),
    AnswersWrong(usize),
}

/// A line-dialect server on loopback that answers right except as
/// `broken` says; it serves connections one after another, until `stop` is
/// set and a connection wakes it.
fn broken_server(
    broken: Broken,
    stop: Arc<AtomicBool>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let handle = std::thread::spawn(move || {
        let mut served = 0usize;
        for stream in listener.incoming() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let Ok(stream) = stream else { return };
            let mut writer: TcpStream = stream.try_clone().expect("clone");
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let right = expected(&line).unwrap_or_else(|| "ERR bad-request".into());
                let n = served;
                served += 1;
                let reply = match broken {
                    Broken::DropsReply(at) if at == n => continue,
                    Broken::AnswersTwice(at) if at == n => format!("{right}\n{right}\n"),
                    Broken::AnswersWrong(at) if at == n => "42\n".to_owned(),
                    _ => format!("{right}\n"),
                };
                if writer.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (addr, handle)
}

/// Runs the real `sumclient --history` against a broken server and
/// returns the checker's verdict on what it recorded.
fn client_against(broken: Broken) -> Verdict {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, server) = broken_server(broken, Arc::clone(&stop));
    let dir = std::env::temp_dir().join(format!(
        "ysum-nemesis-check-{}-{broken:?}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("make a folder");
    let history_file = dir.join("history.jsonl");
    let clock = Clock::start();
    let out = Command::new(binary("sumclient"))
        .args([
            "1",
            "--keep-alive",
            "--retries",
            "3",
            "--requests",
            "40",
            "--timeout",
            "1s",
        ])
        .args([
            "--mix",
            &crate::run::MIX.replace(' ', ""),
            "--json",
            "--addr",
        ])
        .arg(addr.to_string())
        .arg("--history")
        .arg(&history_file)
        .output()
        .expect("run sumclient");
    let requests = history::read(&history_file, clock);
    let report = history::client_report(&String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    stop.store(true, Ordering::Release);
    let _ = TcpStream::connect(addr);
    server.join().expect("the broken server panicked");
    let load_end_ms = requests.iter().map(|r| r.done_ms).fold(0.0, f64::max);
    check(&Evidence {
        requests,
        report,
        load_end_ms,
        ..Evidence::default()
    })
}

/// A server that drops one reply: the client times out on it, and the
/// checker calls it lost.
#[test]
fn a_server_that_drops_a_reply_is_caught() {
    let _one = crate::one_at_a_time();
    let verdict = client_against(Broken::DropsReply(7));
    assert_eq!(found(&verdict, "lost reply"), 1, "{}", verdict.render());
}

/// A server that answers one request twice: every later answer on that
/// connection is its predecessor's, and the checker calls them duplicated.
#[test]
fn a_server_that_answers_twice_is_caught() {
    let _one = crate::one_at_a_time();
    let verdict = client_against(Broken::AnswersTwice(7));
    assert!(
        found(&verdict, "duplicated reply") >= 1,
        "{}",
        verdict.render()
    );
    assert_eq!(verdict.figures.wrong, 0, "{}", verdict.render());
}

/// A server that answers one request wrong: the checker calls it wrong.
#[test]
fn a_server_that_answers_wrong_is_caught() {
    let _one = crate::one_at_a_time();
    let verdict = client_against(Broken::AnswersWrong(7));
    assert_eq!(found(&verdict, "wrong answer"), 1, "{}", verdict.render());
    assert_eq!(verdict.figures.ok, 39, "{}", verdict.render());
}

/// F1, fixed: a job in flight while its server was cut off from the
/// broker, answered `ERR timeout` at its deadline though the partition
/// healed seconds before, fails the run (a reply was lost).
#[test]
fn a_timeout_after_a_healed_server_partition_fails() {
    let mut evidence = clean();
    evidence.faults.push(fault(
        3,
        Kind::PartitionServerBroker,
        Target::Server(1),
        23_000.0,
        25_000.0,
    ));
    evidence.step_ends.push(25_000.0);
    let r = evidence
        .requests
        .iter_mut()
        .find(|r| r.thread == 0 && r.seq == 4590)
        .expect("sent at 22.95 s");
    r.done_ms = r.sent_ms + 6000.5;
    r.reply = Some("ERR timeout sumn 1000 timed out after 6.0005s".into());
    let verdict = check(&evidence);
    assert!(!verdict.passed(), "{}", verdict.render());
    assert!(
        verdict.findings.iter().all(|f| f.known.is_none()),
        "{}",
        verdict.render()
    );
}

/// F2, fixed: old entries on a node the nemesis restarted and a failover
/// promoted right after fail the run (the bed now brings a node back as a
/// replica of the current primary).
#[test]
fn resurrected_entries_after_a_promotion_fail() {
    let mut evidence = clean();
    // Step 1 killed r2 as the primary from 10 to 12 s; at 15 s the
    // sentinels switch to it, and it holds 9 s old entries.
    evidence.faults[0].detail = "r2 (the primary)".into();
    for s in evidence.samples.iter_mut().filter(|s| s.at_ms >= 15_000.0) {
        s.primary = Some("10.213.47.12:6379".into());
    }
    evidence.samples[60] = Sample {
        primary: Some("10.213.47.12:6379".into()),
        ..sample(15_000.0, Some(9_000))
    };
    let verdict = check(&evidence);
    assert!(!verdict.passed(), "{}", verdict.render());
    assert!(
        verdict.render().contains("a stale entry after a heal"),
        "{}",
        verdict.render()
    );
}
