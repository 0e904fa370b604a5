//! Processes as `/proc` shows them, shared by the end-to-end tests and the
//! reliability suite (each includes this file as its `process` module): a
//! [`Proc`] tells a process apart from a later one with the same pid, and
//! [`bury`] kills and reaps what a test left behind.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// SIGKILLs whichever of `procs` still run, waits (at most 2 s) for them to
/// exit, and reaps those that were re-parented to this process (it may be a
/// child subreaper).
pub(crate) fn bury(procs: &[Proc]) {
    for p in procs {
        if !p.has_exited() {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while !procs.iter().all(Proc::has_exited) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let me = i32::try_from(std::process::id()).expect("pids fit in i32");
    for p in procs {
        if p.now().is_some_and(|now| now.ppid == me && now.is_zombie()) {
            let _ = waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// A process as `/proc/PID/stat` shows it; `start` (its start time) tells it
/// apart from a later process that reuses the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    /// Process id.
    pub(crate) pid: i32,
    /// Parent process id.
    pub(crate) ppid: i32,
    /// State letter: `R` running, `S` sleeping, `Z` zombie, …
    pub(crate) state: char,
    /// Start time in clock ticks after boot.
    start: u64,
}

impl Proc {
    /// Reads `/proc/PID/stat`; `None` if there is no such process.
    pub(crate) fn read(pid: i32) -> Option<Proc> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold anything: skip it.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        // Fields 3 (state), 4 (ppid) and 22 (starttime) of proc(5).
        Some(Proc {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
        })
    }

    /// Every process whose parent is `ppid`.
    pub(crate) fn children_of(ppid: i32) -> Vec<Proc> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut children: Vec<Proc> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter_map(Proc::read)
            .filter(|p| p.ppid == ppid)
            .collect();
        children.sort_by_key(|p| p.pid);
        children
    }

    /// The same process as it is now; `None` once it is gone (or its pid
    /// belongs to another process).
    pub(crate) fn now(&self) -> Option<Proc> {
        Proc::read(self.pid).filter(|p| p.start == self.start)
    }

    /// True for a zombie (exited, not reaped yet).
    pub(crate) fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// True once the process has exited: gone from `/proc`, or a zombie.
    pub(crate) fn has_exited(&self) -> bool {
        self.now().is_none_or(|p| p.is_zombie())
    }
}

/// Where each of `procs` stands now, for assertion messages.
pub(crate) fn states(procs: &[Proc]) -> BTreeMap<i32, String> {
    procs
        .iter()
        .map(|p| {
            let state = p
                .now()
                .map_or("gone".to_owned(), |now| now.state.to_string());
            (p.pid, state)
        })
        .collect()
}
