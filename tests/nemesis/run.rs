//! One run, start to end: the schedule printed, the bed made, the cluster
//! started, the observer and the client started at time zero, the nemesis
//! walking the schedule, the client's end awaited, a last quiet stretch
//! read, everything killed and the bed torn down with the leak check, then
//! the checker's verdict written beside the history.
//!
//! Everything a run writes goes to its folder: `schedule.txt`,
//! `history.jsonl` (the client's), `client.json` (its report), `faults.txt`
//! (what the nemesis did, when), `broker.txt` (the observer's samples),
//! `summary.txt`, and `logs/` (every process's output, one file each).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checker::{self, Evidence, Verdict};
use crate::cluster::{binary, Cluster, HOSTS};
use crate::daemon::{self, Daemon};
use crate::history;
use crate::nemesis::{self, Log};
use crate::netns::Bed;
use crate::observer::{Observer, Sample};
use crate::process::Proc;
use crate::schedule::{Kind, Profile, Schedule};
use crate::timeline::{Clock, RECOVERY};

/// The load's jobs, each with weight 1. Every answer differs from every
/// other (twelve sums, `true`, `false`, `ok`), and the picker deals them in
/// turn, so two consecutive requests of a thread never share an answer and
/// a reply sent twice shows as the next request's wrong answer.
pub(crate) const MIX: &str = "sumn:1000=1,sumn:2500=1,sumn:5000=1,sumn:7500=1,\
    sumn:10000=1,sumn:15000=1,sumn:20000=1,sumn:25000=1,sumn:30000=1,sumn:40000=1,\
    sumn:50000=1,sumn:60000=1,prime:1000003=1,prime:1000001=1,sleep:100=1";

/// The client's threads.
const THREADS: usize = 4;

/// How long one attempt may take at the client: longer than any job's
/// deadline, so a request without a reply by then is lost.
const CLIENT_TIMEOUT: &str = "10s";

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) seed: u64,
    /// The load's length (the short profile ignores it: one deck).
    pub(crate) length: Duration,
    pub(crate) profile: Profile,
    /// Requests per second in all (an open loop).
    pub(crate) rate: u32,
    /// The run's folder.
    pub(crate) out: PathBuf,
    /// How to replay it, printed with the schedule.
    pub(crate) replay: String,
    /// The kinds of fault dealt (all of them but when looking into one).
    pub(crate) kinds: Vec<Kind>,
}

/// What a run gave.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) verdict: Verdict,
    pub(crate) summary: String,
    pub(crate) took: Duration,
}

/// Makes one run.
pub(crate) fn run(settings: &Settings) -> Outcome {
    let began = Instant::now();
    let out = &settings.out;
    std::fs::create_dir_all(out).expect("make the run's folder");
    daemon::adopt_orphans();
    let schedule = Schedule::generate_of(
        settings.seed,
        settings.length,
        settings.profile,
        &settings.kinds,
    );
    let printed = format!("{schedule}replay: {}\n", settings.replay);
    print!("{printed}");
    std::fs::write(out.join("schedule.txt"), &printed).expect("write schedule.txt");

    let bed = Bed::make(HOSTS);
    let mut cluster = Cluster::start(&bed, out);
    println!(
        "nemesis: bed and cluster up after {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // `YSUM_NEMESIS_MONITOR=1`: every command each Redis node executes,
    // with its time and client, in `logs/monitor-rN.log` (to follow a job
    // through the broker while looking into a finding; heavy).
    let mut monitors: Vec<Daemon> = Vec::new();
    if std::env::var_os("YSUM_NEMESIS_MONITOR").is_some() {
        for i in 0..2 {
            let cli = PathBuf::from(option_env!("YSUM_REDIS").unwrap_or("redis-server"))
                .with_file_name("redis-cli");
            let name = format!("monitor-r{}", i + 1);
            let mut monitor = Daemon::new(
                &name,
                &bed.host("ctl").ns,
                vec![
                    cli.into(),
                    "-h".into(),
                    cluster.node_addr(i).to_string().into(),
                    "monitor".into(),
                ],
                &out.join("logs").join(format!("{name}.log")),
            );
            monitor.start();
            monitors.push(monitor);
        }
    }
    let clock = Clock::start();
    println!("nemesis: time zero is {} (Unix ms)", clock.zero_unix_ms());
    std::fs::write(out.join("zero.txt"), format!("{}\n", clock.zero_unix_ms()))
        .expect("write zero.txt");
    let observer = Observer::start(bed.host("ctl").ns.clone(), cluster.sentinel_addrs(), clock);
    // The load outlasts the schedule by a reserve: a step starts late when
    // the broker is not whole yet, and one that would end after the load is
    // skipped.
    let load_for = schedule.end + settings.profile.reserve;
    let history_file = out.join("history.jsonl");
    let mut client = Daemon::new(
        "cl",
        &bed.host("cl").ns,
        client_argv(&cluster, settings.rate, load_for, &history_file),
        &out.join("logs").join("cl.log"),
    )
    .stdout_to(&out.join("client.json"));
    client.start();

    let stop_by = load_for.saturating_sub(settings.profile.quiet);
    let log = nemesis::run(&schedule, &mut cluster, &bed, clock, stop_by);
    let waited = Instant::now();
    let status = loop {
        if let Some(status) = client.exited() {
            break Some(status);
        }
        if waited.elapsed() > load_for + Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let load_end_ms = clock.now_ms();
    std::thread::sleep(RECOVERY + Duration::from_millis(1500));
    let samples = observer.finish();

    let mut evidence = Evidence {
        load_end_ms,
        ..Evidence::default()
    };
    match status {
        Some(status) => {
            evidence.requests = history::read(&history_file, clock);
            let report = std::fs::read_to_string(out.join("client.json")).unwrap_or_default();
            if report.trim().is_empty() {
                evidence.leaks.push(format!(
                    "sumclient ({status}) printed no report; its log ends:\n{}",
                    client.log_tail(2000)
                ));
            } else {
                evidence.report = history::client_report(&report);
            }
        }
        None => evidence.leaks.push(format!(
            "sumclient did not end within 30 s of its --duration; its log ends:\n{}",
            client.log_tail(2000)
        )),
    }
    evidence
        .leaks
        .extend(tear_down(&mut cluster, &mut client, &mut monitors, &bed));
    write_faults(out, &log, &samples);
    evidence.faults = log.faults;
    evidence.notes = log.notes;
    evidence.step_ends = log.step_ends;
    evidence.samples = samples;
    let verdict = checker::check(&evidence);
    let summary = format!(
        "nemesis run, seed {}, {:.0} s in all; {}\n{}",
        settings.seed,
        began.elapsed().as_secs_f64(),
        settings.replay,
        verdict.render()
    );
    std::fs::write(out.join("summary.txt"), &summary).expect("write summary.txt");
    Outcome {
        verdict,
        summary,
        took: began.elapsed(),
    }
}

/// `sumclient` as the issue asks: kept-alive connections, three retries,
/// every request in the history; an open loop, so that the load is the same
/// whatever the faults do to latency.
fn client_argv(
    cluster: &Cluster<'_>,
    rate: u32,
    length: Duration,
    history: &Path,
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![binary("sumclient").into()];
    for arg in [
        THREADS.to_string(),
        "--keep-alive".to_owned(),
        "--retries".to_owned(),
        "3".to_owned(),
        "--addr".to_owned(),
        cluster.front().to_string(),
        "--rate".to_owned(),
        rate.to_string(),
        "--duration".to_owned(),
        format!("{}ms", length.as_millis()),
        "--timeout".to_owned(),
        CLIENT_TIMEOUT.to_owned(),
        "--mix".to_owned(),
        MIX.replace(' ', ""),
        "--json".to_owned(),
        "--history".to_owned(),
    ] {
        argv.push(arg.into());
    }
    argv.push(history.into());
    argv
}

/// Kills every process of the run, checks that each one it started is gone
/// and reaped and that nothing else runs in the bed, then tears the bed
/// down; returns what was left behind.
fn tear_down(
    cluster: &mut Cluster<'_>,
    client: &mut Daemon,
    monitors: &mut [Daemon],
    bed: &Bed,
) -> Vec<String> {
    let mut started: Vec<(String, Proc)> = Vec::new();
    let others = std::iter::once(&mut *client).chain(monitors.iter_mut());
    for daemon in cluster.daemons().chain(others) {
        started.extend(daemon.started().iter().map(|p| (daemon.name.clone(), *p)));
        daemon.resume();
        daemon.kill();
    }
    let mut leaks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        daemon::reap_orphans();
        let left = bed.pids();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for (host, pid) in left {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                leaks.push(format!(
                    "pid {pid} ({}) still ran on {host} 3 s after every daemon was killed",
                    cmdline.trim()
                ));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever tear_down below kills there is reaped here.
    let left = bed.tear_down();
    std::thread::sleep(Duration::from_millis(200));
    daemon::reap_orphans();
    for (name, proc) in started {
        if let Some(now) = proc.now() {
            let what = if now.is_zombie() {
                "a zombie"
            } else {
                "running"
            };
            leaks.push(format!("{name}'s process {} is still {what}", proc.pid));
        }
    }
    leaks.extend(
        left.into_iter()
            .map(|name| format!("{name} is still listed by ip after the bed was torn down")),
    );
    leaks
}

/// `faults.txt` and `broker.txt`: what the nemesis did and saw, and what
/// the observer read.
fn write_faults(out: &Path, log: &Log, samples: &[Sample]) {
    let mut text = String::new();
    for f in &log.faults {
        let _ = writeln!(
            text,
            "step {:>3}  {:>9.3} s → {:>9.3} s  {} [{}]{}",
            f.step,
            f.applied_ms / 1000.0,
            f.healed_ms / 1000.0,
            f.fault,
            f.detail,
            f.refused
                .as_ref()
                .map_or(String::new(), |why| format!("  REFUSED: {why}"))
        );
    }
    for note in &log.notes {
        let _ = writeln!(
            text,
            "note at {:.3} s{}: {}",
            note.at_ms / 1000.0,
            if note.failure { " (failure)" } else { "" },
            note.text
        );
    }
    std::fs::write(out.join("faults.txt"), text).expect("write faults.txt");
    let mut text =
        String::from("at_s primary reachable stream oldest_entry_ms pending oldest_pending_ms\n");
    for s in samples {
        let _ = writeln!(
            text,
            "{:.3} {} {} {} {} {} {}",
            s.at_ms / 1000.0,
            s.primary.as_deref().unwrap_or("-"),
            s.reachable,
            s.stream,
            s.oldest_entry_ms.map_or("-".into(), |v| v.to_string()),
            s.pending,
            s.oldest_pending_ms.map_or("-".into(), |v| v.to_string()),
        );
    }
    std::fs::write(out.join("broker.txt"), text).expect("write broker.txt");
}
