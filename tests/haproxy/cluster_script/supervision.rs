//! Supervision: a server, worker or Redis that exits is started again (a
//! server on its port, at no cost to the clients); one that keeps dying
//! stops the cluster, and HAProxy's exit is fatal.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{answers_through_balancer, port_of, printed_pid, Script};
use crate::balancer::BACKEND;
use crate::load::Load;
use crate::one_at_a_time;
use crate::process::states;
use crate::support::{eventually, IO_TIMEOUT};

/// Whether process `pid` holds the socket that listens on 127.0.0.1:`port`:
/// its inode, from `/proc/net/tcp`, among the process's descriptors.
fn listens_on(pid: i32, port: u16) -> bool {
    // 127.0.0.1 as /proc/net/tcp writes it (little-endian), and LISTEN.
    let local = format!("0100007F:{port:04X}");
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let sockets: BTreeSet<String> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A"))
        .filter_map(|fields| Some(format!("socket:[{}]", fields.get(9)?)))
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .any(|link| link.to_str().is_some_and(|l| sockets.contains(l)))
}

/// `server`'s status in `show stat` on the admin socket in `run_dir`
/// (empty if it cannot be read).
fn backend_status(run_dir: &Path, server: &str) -> String {
    let Ok(mut sock) = UnixStream::connect(run_dir.join("admin.sock")) else {
        return String::new();
    };
    let _ = sock.set_read_timeout(Some(IO_TIMEOUT));
    let mut text = String::new();
    if sock.write_all(b"show stat\n").is_err() || sock.read_to_string(&mut text).is_err() {
        return String::new();
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or_default()
        .split(',')
        .collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (Some(px), Some(sv), Some(status)) = (column("pxname"), column("svname"), column("status"))
    else {
        return String::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<_>>())
        .find(|row| row.get(px) == Some(&BACKEND) && row.get(sv) == Some(&server))
        .and_then(|row| row.get(status).map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// `kill -9` of one of three servers while 4 kept-alive clients with
/// `--retries 3` run: the script starts it again on its port under a new
/// pid, which holds the listening socket, answers, and is UP in HAProxy;
/// not one request fails, and the restart is counted at the stop.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn kill_9_of_a_server_is_restarted_at_no_cost() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(3, &[], &["--apply", "threads", "--workers", "2"]);
    let balancer = script.addr("balancer on ").parse().expect("an address");
    let load = Load::start(
        balancer,
        &["4", "--keep-alive", "--retries", "3", "--duration", "4s"],
        Duration::from_secs(30),
    );
    thread::sleep(Duration::from_secs(1));
    let victim = printed_pid(script.line("server 2 on "));
    let killed = Instant::now();
    script.kill_member(victim);
    let pid = script.expect_restart("server 2 on ", victim);
    let restart = killed.elapsed();

    let port = port_of(&script.addr("server 2 on "));
    assert!(listens_on(pid, port), "pid {pid} does not listen on {port}");
    assert_eq!(script.server_conn(2).request("sumn 100"), "5050");
    let mut status = String::new();
    let up = eventually(IO_TIMEOUT, || {
        status = backend_status(&script.run_dir.0, "s2");
        status.starts_with("UP")
    });
    assert!(up, "HAProxy has s2 {status:?}");

    let report = load.finish();
    println!(
        "figures: cluster kill-9 restart_ms={} sent={} retries={:?} errors={} wrong={}",
        restart.as_millis(),
        report.sent,
        report.retries,
        report.errors,
        report.wrong
    );
    report.assert_all_right("kill -9 of a server under scripts/cluster");
    let stderr = script.sigterm_and_check_all_gone();
    let noticed = format!(
        "cluster: server 2 (pid {victim}) exited (killed by SIGKILL); restarting it in 0.1 s"
    );
    assert!(stderr.lines().any(|l| l == noticed), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "cluster: restarts: 1 (server 2: 1)"),
        "{stderr}"
    );
}

/// A server killed each time it comes back: four restarts (after 0.1, 0.2,
/// 0.4 and 0.8 s), then, at its fifth exit within 30 s, the script gives
/// up: exit 1, one line naming it, every process gone.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn a_server_that_keeps_dying_stops_the_cluster() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(1, &[], &["--apply", "inline"]);
    let mut pid = printed_pid(script.line("server 1 on "));
    let mut restarts = 0;
    let first_kill = Instant::now();
    // Bounded: the script gives up after 4 restarts; 10 would be a bug.
    for _ in 0..10 {
        script.kill_member(pid);
        let Some(line) = script.next_line(IO_TIMEOUT) else {
            break;
        };
        pid = script.restarted("server 1 on ", pid, &line);
        restarts += 1;
    }
    let status = script.wait();
    let stderr = script.stderr_text();
    println!(
        "figures: cluster gave up after {restarts} restarts, {} ms after the first kill",
        first_kill.elapsed().as_millis()
    );
    assert_eq!(restarts, 4, "{stderr}");
    assert_eq!(status.code(), Some(1), "{stderr}");
    let given_up: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("cluster: server 1 kept dying: 5 exits within 30 s, the last "))
        .collect();
    assert_eq!(given_up.len(), 1, "{stderr}");
    assert!(
        given_up[0].contains(&format!("(pid {pid}) exited (killed by SIGKILL)")),
        "{stderr}"
    );
    assert!(script.all_gone(), "left behind: {:?}", states(&script.tree));
}

/// Under `--remote 1`: Redis `kill -9`ed comes back on its port and the
/// server gets jobs through it again; the worker `kill -9`ed comes back
/// under its name and runs them; HAProxy `kill -9`ed is fatal: exit 1, one
/// line naming it, both restarts counted, every process gone.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(no_redis, not(no_haproxy)),
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn broker_and_worker_come_back_the_balancer_is_fatal() {
    let _serial = one_at_a_time();
    let mut script = Script::start_with(1, &["--remote", "1", "--worker-slots", "1"], &[]);
    for prefix in ["redis on ", "worker 1 as w1 "] {
        let old = printed_pid(script.line(prefix));
        script.kill_member(old);
        script.expect_restart(prefix, old);
        assert!(
            answers_through_balancer(&script),
            "no right answer after {prefix:?} restarted; stderr:\n{}",
            script.stderr_text()
        );
    }
    let balancer = printed_pid(script.line("balancer on "));
    script.kill_member(balancer);
    let status = script.wait();
    let stderr = script.stderr_text();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("cluster: haproxy exited (killed by SIGKILL); see ")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l == "cluster: restarts: 2 (redis: 1, worker 1: 1)"),
        "{stderr}"
    );
    assert!(script.all_gone(), "left behind: {:?}", states(&script.tree));
}
