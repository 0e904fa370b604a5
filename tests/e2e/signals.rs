//! Signals and start-up: `listening on` only once the server can be
//! stopped; SIGHUP is a graceful shutdown; a second SIGINT/SIGTERM during
//! the grace period stops at once; requests the grace period cuts short are
//! told `ERR shutting-down`, and the exit status says so.

use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{both_io, Io, Reaped, Server};

both_io!(
    no_listening_line_without_threads,
    sighup_is_a_graceful_shutdown,
    a_second_signal_stops_at_once,
    requests_cut_short_are_told
);

/// The user a test run as root becomes so that `RLIMIT_NPROC` binds
/// (`nobody`; the kernel does not enforce the limit on root).
const NOBODY: u32 = 65534;

/// With no thread to be had (`RLIMIT_NPROC` 1, as user `nobody` when run
/// as root, whose limit the kernel does not enforce), the server cannot
/// start its signal thread: it must say so and exit 1 without ever printing
/// `listening on` (it used to print it, then exit). As root the binary
/// runs from a folder of its own that `nobody` can enter: the clone's may
/// be closed to other users (under `mktemp -d`, or in a 0700 home), where
/// the spawn failed with "Permission denied".
fn no_listening_line_without_threads(io: Io) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let root = unsafe { nix::libc::getuid() } == 0;
    let public = root.then(|| PublicCopy::of(env!("CARGO_BIN_EXE_sumserver"), io.name()));
    let binary = public
        .as_ref()
        .map_or(env!("CARGO_BIN_EXE_sumserver").as_ref(), |copy| {
            copy.binary.as_path()
        });
    let mut command = Command::new(binary);
    command
        .args([
            "--addr",
            "127.0.0.1:0",
            "--io",
            io.name(),
            "--apply",
            "inline",
        ])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs in the child between fork and exec and calls only
    // setgroups, setgid, setuid and setrlimit, which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            use nix::libc;
            if root
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(NOBODY) != 0
                    || libc::setuid(NOBODY) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            let one = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &one) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = Reaped(command.spawn().expect("spawn sumserver"));
    let status = server.wait(Duration::from_secs(10));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = server
        .0
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout);
    let _ = server
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert_eq!(stdout, "", "printed before it could be stopped");
    assert!(stderr.starts_with("sumserver: "), "{stderr:?}");
}

/// A copy of a binary (a hard link where it can be) in a fresh folder under
/// the temporary folder, which every user may enter and run it from;
/// removed with the folder when dropped.
struct PublicCopy {
    /// The folder, mode 0755.
    dir: PathBuf,
    /// The binary in it.
    binary: PathBuf,
}

impl PublicCopy {
    /// Copies `binary` into a folder named after this process and `tag`.
    ///
    /// # Panics
    ///
    /// If the folder or the copy cannot be made, or the temporary folder
    /// itself is closed to other users.
    fn of(binary: &str, tag: &str) -> PublicCopy {
        let base = std::env::temp_dir();
        let open = |path: &Path| {
            std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0)
        };
        assert!(
            base.ancestors().all(open),
            "{} is closed to other users: set TMPDIR to a folder they can enter",
            base.display()
        );
        let dir = base.join(format!("ysum-public-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("make the public folder");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("open the public folder");
        let source = Path::new(binary);
        let copy = dir.join(source.file_name().expect("a file name"));
        if std::fs::hard_link(source, &copy).is_err() {
            std::fs::copy(source, &copy).expect("copy the binary");
        }
        let mode = std::fs::metadata(&copy)
            .expect("the copy")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o005,
            0o005,
            "{} is not for everyone",
            copy.display()
        );
        PublicCopy { dir, binary: copy }
    }
}

impl Drop for PublicCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// SIGHUP (a closed terminal) lets the request in flight finish, is logged,
/// and the server exits 0.
fn sighup_is_a_graceful_shutdown(io: Io) {
    let server = Server::start(io, "threads", &["--grace", "5s", "--workers", "2"]);
    let mut conn = server.line_conn();
    conn.send("sleep 400\n");
    thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGHUP);
    assert_eq!(conn.read_line(), "ok", "the request in flight finishes");
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(server.log().contains("SIGHUP"), "the signal is logged");
}

/// A second SIGTERM during a long grace period ends the server at once,
/// with status 128 + 15.
fn a_second_signal_stops_at_once(io: Io) {
    let server = Server::start(io, "threads", &["--grace", "30s", "--workers", "2"]);
    let mut conn = server.line_conn();
    conn.send("sleep 20000\n");
    thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGTERM);
    thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    println!(
        "figures: {io:?}: exited {:?} after the second SIGTERM, {status}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(143), "exit status {status}");
}

/// Jobs still running when `--grace` runs out get `ERR shutting-down`
/// under inline and threads, and the server exits 3.
fn requests_cut_short_are_told(io: Io) {
    for apply in ["inline", "threads"] {
        let server = Server::start(io, apply, &["--grace", "300ms", "--workers", "2"]);
        let mut conn = server.line_conn();
        conn.send("sleep 5000\n");
        thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        server.signal(Signal::SIGTERM);
        let reply = conn.read_line();
        let told = signalled.elapsed();
        assert!(
            reply.starts_with("ERR shutting-down "),
            "{apply}: got {reply:?}"
        );
        let status = server.wait_exit(Duration::from_secs(5));
        println!("figures: {io:?} × {apply}: `{reply}` {told:?} after SIGTERM with --grace 300ms; {status}");
        assert_eq!(status.code(), Some(3), "{apply}: exit status {status}");
    }
}
