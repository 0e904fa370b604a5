//! What the script refuses before it starts anything: bad `--remote`
//! values, a binary that is missing or cannot run, a port in use.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use super::{fresh_run_dir, port_of, script_command, Removed, Script};
use crate::balancer::{free_port, haproxy, workspace};
use crate::one_at_a_time;
use crate::process::states;
use crate::support::{Reaped, IO_TIMEOUT};

/// Runs `command` to its end (at most [`IO_TIMEOUT`]): its status, stdout
/// and stderr.
fn run_to_exit(command: &mut Command) -> (ExitStatus, String, String) {
    let mut child = Reaped(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scripts/cluster"),
    );
    let status = child.wait(IO_TIMEOUT);
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = child.0.stdout.take().expect("piped");
    stdout.read_to_string(&mut out).unwrap();
    let mut stderr = child.0.stderr.take().expect("piped");
    stderr.read_to_string(&mut err).unwrap();
    (status, out, err)
}

/// An executable that passes the script's checks, for the binaries a test
/// does not look at: the script refuses the one under test before it runs
/// anything, so this one never runs, and the test needs no engine.
fn stand_in() -> &'static str {
    env!("CARGO_BIN_EXE_sumserver")
}

/// `--remote 0`, `--remote x`, `--sentinel` without `--remote` and a
/// missing redis-server: one error, a non-zero exit, nothing started (no
/// line on stdout, no run folder).
#[test]
fn remote_bad_values_start_nothing() {
    let missing = workspace().join("no-such-dir/redis-server");
    let cases: [(&[&str], Option<&Path>, i32, &str); 4] = [
        (&["--remote", "0"], None, 2, "--remote must be from 1 to 64"),
        (
            &["--remote", "x"],
            None,
            2,
            "argument --remote: invalid int value",
        ),
        (&["--sentinel"], None, 2, "--sentinel needs --remote W"),
        (&["--remote", "2"], Some(&missing), 1, "YSUM_REDIS="),
    ];
    for (args, redis, code, error) in cases {
        let run_dir = Removed(fresh_run_dir());
        let mut command = script_command(&run_dir.0);
        command
            .args(["--servers", "1", "--port", &free_port().to_string()])
            .args(args)
            .env("YSUM_HAPROXY", stand_in());
        if let Some(redis) = redis {
            command.env("YSUM_REDIS", redis);
        }
        let (status, out, err) = run_to_exit(&mut command);
        assert_eq!(status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(error), "{args:?}: {err}");
        assert!(!err.contains("Traceback"), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?} started something");
        assert!(!run_dir.0.exists(), "{args:?} made {}", run_dir.0.display());
    }
}

/// Each of `YSUM_HAPROXY`, `YSUM_SUMSERVER`, `YSUM_SUMWORKER`,
/// `YSUM_REDIS` and `YSUM_SENTINEL` (all asked for, with `--remote 1
/// --sentinel`) naming a missing file, a file that is not executable, or a
/// name not in `PATH`: exactly one line on stderr, exit 1, nothing on
/// stdout, no run folder. A file that is executable but no program shows
/// only when run: a `cannot run` line, exit 1, and no run folder either.
#[test]
fn missing_binaries_start_nothing() {
    let scratch = Removed(fresh_run_dir().with_extension("binaries"));
    fs::create_dir_all(&scratch.0).unwrap();
    let missing = scratch.0.join("missing");
    let plain = scratch.0.join("plain");
    fs::write(&plain, "not a program\n").unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).unwrap();
    let no_program = scratch.0.join("no-program");
    fs::write(&no_program, "not a program either\n").unwrap();
    fs::set_permissions(&no_program, fs::Permissions::from_mode(0o755)).unwrap();
    let variables = [
        "YSUM_HAPROXY",
        "YSUM_SUMSERVER",
        "YSUM_SUMWORKER",
        "YSUM_REDIS",
        "YSUM_SENTINEL",
    ];
    let values = [
        (missing.to_str().unwrap(), "no such file"),
        (plain.to_str().unwrap(), "not executable"),
        ("ysum-no-such-binary", "not found in PATH"),
    ];
    for variable in variables {
        for (value, error) in values {
            let run_dir = Removed(fresh_run_dir());
            let mut command = script_command(&run_dir.0);
            command.args(["--servers", "1", "--remote", "1", "--sentinel"]);
            command.args(["--port", &free_port().to_string()]);
            for other in variables {
                command.env(other, stand_in());
            }
            command.env(variable, value);
            let (status, out, err) = run_to_exit(&mut command);
            let case = format!("{variable}={value}");
            assert_eq!(status.code(), Some(1), "{case}: {err}");
            assert_eq!(err, format!("cluster: {case}: {error}\n"));
            assert_eq!(out, "", "{case} started something");
            assert!(!run_dir.0.exists(), "{case} made {}", run_dir.0.display());
        }
    }

    let run_dir = Removed(fresh_run_dir());
    let mut command = script_command(&run_dir.0);
    command
        .args(["--servers", "1", "--port", &free_port().to_string()])
        .env("YSUM_HAPROXY", stand_in())
        .env("YSUM_SUMSERVER", &no_program);
    let (status, out, err) = run_to_exit(&mut command);
    assert_eq!(status.code(), Some(1), "{err}");
    let cannot = format!("cluster: cannot run {}: ", no_program.display());
    assert!(err.lines().any(|l| l.starts_with(&cannot)), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
    assert_eq!(out, "");
    assert!(!run_dir.0.exists(), "made {}", run_dir.0.display());
}

/// A second script on the first one's port exits 1 with one line, starts
/// nothing and leaves no folder, while the first keeps serving; the same
/// on a port that any other socket listens on.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn a_port_in_use_is_refused() {
    let _serial = one_at_a_time();
    let first = Script::start_with(1, &[], &["--apply", "inline"]);
    let held = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let ports = [
        port_of(&first.addr("balancer on ")),
        held.local_addr().unwrap().port(),
    ];
    for port in ports {
        let run_dir = Removed(fresh_run_dir());
        let mut command = script_command(&run_dir.0);
        command
            .args(["--servers", "1", "--port", &port.to_string()])
            .env("YSUM_HAPROXY", haproxy());
        let (status, out, err) = run_to_exit(&mut command);
        assert_eq!(status.code(), Some(1), "port {port}: {err}");
        assert_eq!(
            err,
            format!(
                "cluster: 127.0.0.1:{port} is already in use (another cluster?): \
                 stop it, or choose another --port\n"
            )
        );
        assert_eq!(out, "", "port {port}: started something");
        assert!(
            !run_dir.0.exists(),
            "port {port}: made {}",
            run_dir.0.display()
        );
    }
    drop(held);
    assert_eq!(first.balancer_conn().request("sumn 100"), "5050");
    assert!(
        first.tree.iter().all(|p| !p.has_exited()),
        "the first cluster lost a process: {:?}",
        states(&first.tree)
    );
    first.sigterm_and_check_all_gone();
}
