//! A program run on one host of the bed (`ip netns exec NS program …`, which
//! execs it, so the child's pid is the program's): started, killed, paused
//! and started again by pid, every start noted for the leak check, its
//! output appended to a log file of its own. Dropping it kills and reaps it.
//!
//! The test process is a child subreaper ([`adopt_orphans`]): what a daemon
//! forks and leaves behind (Redis' children writing a snapshot for a
//! replica when Redis is killed) comes back to it and is reaped by
//! [`reap_orphans`].

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::process::Proc;

/// The pids of the children some [`Daemon`] holds a handle to: the orphan
/// reaper leaves them to their handles.
static HELD: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// A program on one host.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// Its short name (`w1`, `r2`, `lb` …).
    pub(crate) name: String,
    /// The namespace it runs in.
    ns: String,
    argv: Vec<OsString>,
    log: PathBuf,
    /// Where its stdout goes instead of the log, if set.
    stdout: Option<PathBuf>,
    child: Option<Child>,
    /// Every process started, for the leak check.
    started: Vec<Proc>,
    /// Set while SIGSTOPped.
    paused: bool,
}

impl Daemon {
    /// A daemon that runs `argv` in the namespace `ns`, its output
    /// appended to `log`. Not started yet.
    pub(crate) fn new(name: &str, ns: &str, argv: Vec<OsString>, log: &Path) -> Daemon {
        Daemon {
            name: name.to_owned(),
            ns: ns.to_owned(),
            argv,
            log: log.to_owned(),
            stdout: None,
            child: None,
            started: Vec::new(),
            paused: false,
        }
    }

    /// Sends its stdout to `path` (created anew at each start), apart from
    /// its log.
    pub(crate) fn stdout_to(mut self, path: &Path) -> Daemon {
        self.stdout = Some(path.to_owned());
        self
    }

    /// The program and arguments of the next start.
    pub(crate) fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Replaces the program and arguments of the next starts.
    pub(crate) fn set_argv(&mut self, argv: Vec<OsString>) {
        self.argv = argv;
    }

    /// Starts it (it must not be running).
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|err| panic!("open {}: {err}", self.log.display()));
        let _ = writeln!(
            log,
            "=== nemesis: start {} of {}: {:?}",
            self.started.len() + 1,
            self.name,
            self.argv
        );
        let stdout = match &self.stdout {
            Some(path) => {
                File::create(path).unwrap_or_else(|err| panic!("create {}: {err}", path.display()))
            }
            None => log.try_clone().expect("clone the log"),
        };
        let mut command = crate::netns::exec(&self.ns);
        let child = command
            .args(&self.argv)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", self.name));
        let pid = pid_of(&child);
        HELD.lock().unwrap().insert(pid);
        if let Some(proc) = Proc::read(pid) {
            self.started.push(proc);
        }
        self.child = Some(child);
        self.paused = false;
    }

    /// Its pid, while it runs.
    pub(crate) fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(pid_of)
    }

    /// `None` while it runs (or was never started); its exit status once it
    /// has exited by itself (it is reaped then, and counts as down).
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.forget();
        Some(status)
    }

    /// `kill -9`, and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            HELD.lock().unwrap().remove(&pid_of(&child));
        }
        self.paused = false;
    }

    /// SIGTERM, then `kill -9` if it has not exited within `grace`.
    pub(crate) fn terminate(&mut self, grace: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if self.paused {
            let _ = kill(Pid::from_raw(pid_of(child)), Signal::SIGCONT);
        }
        let _ = kill(Pid::from_raw(pid_of(child)), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.forget();
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// SIGSTOP.
    pub(crate) fn pause(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub(crate) fn resume(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        self.paused = false;
    }

    /// Every process it started.
    pub(crate) fn started(&self) -> &[Proc] {
        &self.started
    }

    /// The last `bytes` of its log.
    pub(crate) fn log_tail(&self, bytes: u64) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut tail = String::new();
        let _ = file.read_to_string(&mut tail);
        tail
    }

    /// Whether its log holds `text` (from the last start on).
    pub(crate) fn logged(&self, text: &str) -> bool {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = log.rfind("=== nemesis: start").unwrap_or(0);
        log[last..].contains(text)
    }

    fn forget(&mut self) {
        if let Some(child) = self.child.take() {
            HELD.lock().unwrap().remove(&pid_of(&child));
        }
        self.paused = false;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.paused {
            self.resume();
        }
        self.kill();
    }
}

fn pid_of(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("pids fit in i32")
}

/// Makes this process a child subreaper: orphans of its daemons' children
/// are re-parented to it instead of to init.
pub(crate) fn adopt_orphans() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Reaps the exited children that no [`Daemon`] holds (adopted orphans);
/// returns how many.
pub(crate) fn reap_orphans() -> usize {
    let me = i32::try_from(std::process::id()).expect("pids fit in i32");
    let held = HELD.lock().unwrap().clone();
    let mut reaped = 0;
    for proc in Proc::children_of(me) {
        if proc.is_zombie()
            && !held.contains(&proc.pid)
            && waitpid(Pid::from_raw(proc.pid), Some(WaitPidFlag::WNOHANG)).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}
