//! The many-connections workload (issue 7): thousands of idle keep-alive
//! connections held open while 64 others do real work. What each `--io`
//! mode pays for an idle connection shows in the server's resident memory;
//! whether the idle ones get in the way shows in the active ones' throughput.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::procfs;
use crate::server::Server;
use crate::sweep::Binaries;

/// Connections doing work while the idle ones are held.
const ACTIVE: u32 = 64;

/// One `--io` mode holding `idle` connections.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Connections {
    /// threads or events.
    pub(crate) io: String,
    /// Idle connections held open (each answered one `ping` first).
    pub(crate) idle: usize,
    /// Seconds it took to open them one after another.
    pub(crate) open_s: f64,
    /// Server RSS before any connection, MiB.
    pub(crate) rss_before_mib: f64,
    /// Server RSS with the idle connections open, MiB.
    pub(crate) rss_idle_mib: f64,
    /// Server peak RSS (`VmHWM`) by the end of the active run, MiB.
    pub(crate) rss_peak_mib: f64,
    /// Threads of the server process with the idle connections open.
    pub(crate) threads: usize,
    /// Active connections' requests per second, idle ones held meanwhile.
    pub(crate) throughput: f64,
    /// Active connections' p99 latency, µs.
    pub(crate) p99_us: f64,
    /// Wrong answers and errors of the active run.
    pub(crate) errors: u64,
}

/// Runs the workload against `--io io --apply threads`.
pub(crate) fn run(
    bins: &Binaries<'_>,
    io: &str,
    idle: usize,
    duration: Duration,
    cores: usize,
) -> anyhow::Result<Connections> {
    let limit = (idle + ACTIVE as usize + 64).to_string();
    let server = Server::start(
        bins.server,
        "threads",
        &[
            "--io",
            io,
            "--workers",
            &cores.to_string(),
            "--max-connections",
            &limit,
            // The idle connections must outlive the run.
            "--read-timeout",
            "10m",
        ]
        .map(String::from),
    )?;
    let pid = server.pid();
    let (rss_before_mib, _) = procfs::rss_mib(pid)?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(idle);
    for i in 0..idle {
        let conn = TcpStream::connect(server.addr)
            .with_context(|| format!("idle connection {i} of {idle}"))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(conn);
        reader.get_mut().write_all(b"ping\n")?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line != "pong\n" {
            bail!("idle connection {i} got {line:?} to ping");
        }
        held.push(reader);
    }
    let open_s = started.elapsed().as_secs_f64();
    let (rss_idle_mib, _) = procfs::rss_mib(pid)?;
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| tasks.count())
        .unwrap_or(0);
    let output = Command::new(bins.client)
        .args(["--addr", &server.addr.to_string(), "--json"])
        .arg(ACTIVE.to_string())
        .args(["--keep-alive", "--job", "sumn:1000", "--warmup", "300ms"])
        .arg("--duration")
        .arg(format!("{}ms", duration.as_millis()))
        .output()
        .context("cannot run sumclient")?;
    let (_, rss_peak_mib) = procfs::rss_mib(pid)?;
    drop(held);
    server
        .stop()
        .with_context(|| format!("stopping the {io} server"))?;
    let report: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "sumclient printed no JSON: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let counts = &report["overall"]["counts"];
    Ok(Connections {
        io: io.to_owned(),
        idle,
        open_s,
        rss_before_mib,
        rss_idle_mib,
        rss_peak_mib,
        threads,
        throughput: report["throughput"].as_f64().context("no throughput")?,
        p99_us: report["overall"]["latency_us"]["p99"]
            .as_f64()
            .context("no p99")?,
        errors: counts["errors"].as_u64().unwrap_or(0) + counts["wrong"].as_u64().unwrap_or(0),
    })
}

/// Lets this process hold `wanted` descriptors, if the hard limit allows.
pub(crate) fn raise_descriptor_limit(wanted: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        bail!("the descriptor limit is {hard} (hard); this workload needs {wanted}: raise it with ulimit -Hn");
    }
    setrlimit(Resource::RLIMIT_NOFILE, wanted, hard)?;
    Ok(())
}
