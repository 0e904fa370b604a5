//! What `/proc` says about the servers under test: the CPU time of a whole
//! process tree (the server, its fork server and workers), the machine's
//! stolen time, and resident memory.
//!
//! These explain a throughput figure: a strategy short of the physical limit
//! either left cores idle (low CPU use) or ran on a machine whose hypervisor
//! took time away (steal).

use std::collections::HashMap;
use std::fs;

use anyhow::Context;

/// Clock ticks per second of `/proc`'s CPU times.
fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// The fields after the command name of `/proc/<pid>/stat` (the name may hold
/// spaces and parentheses, so the split is at its last `)`).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `pid` and every process descended from it.
fn tree(root: i32) -> Vec<i32> {
    let mut parent_of = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            // After the name: state, ppid, ...
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<i32>().ok()) {
                parent_of.insert(pid, ppid);
            }
        }
    }
    let mut members = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (&pid, ppid) in &parent_of {
            if members.contains(ppid) && !members.contains(&pid) {
                members.push(pid);
                grew = true;
            }
        }
    }
    members
}

/// CPU seconds (user and system) used so far by `root` and its descendants,
/// including children they have already reaped (a recycled worker's time
/// stays counted in its fork server's).
pub(crate) fn tree_cpu_seconds(root: i32) -> anyhow::Result<f64> {
    fs::metadata(format!("/proc/{root}")).with_context(|| format!("no process {root}"))?;
    let ticks: u64 = tree(root)
        .into_iter()
        .filter_map(stat_fields)
        // utime, stime, cutime, cstime are fields 14–17 of stat, which are
        // 11–14 here (the pid and the name come before `rest`).
        .map(|f| {
            f[11..15]
                .iter()
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum();
    Ok(ticks as f64 / ticks_per_second())
}

/// CPU seconds the hypervisor has taken from this machine since it booted,
/// over all cores (0 on bare metal).
pub(crate) fn steal_seconds() -> f64 {
    let ticks = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| {
            let line = text.lines().next()?.to_owned();
            // cpu user nice system idle iowait irq softirq steal ...
            line.split_whitespace().nth(8)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    ticks as f64 / ticks_per_second()
}

/// Resident memory of one process, in MiB (`VmRSS`), and its peak (`VmHWM`).
pub(crate) fn rss_mib(pid: i32) -> anyhow::Result<(f64, f64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("no process {pid}"))?;
    let field = |name: &str| -> anyhow::Result<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_tree_and_uses_cpu() {
        let me = std::process::id() as i32;
        assert!(tree(me).contains(&me));
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(tree_cpu_seconds(me).unwrap() > 0.0);
        let (rss, peak) = rss_mib(me).unwrap();
        assert!(rss > 0.0 && peak >= rss);
        assert!(tree_cpu_seconds(i32::MAX).is_err());
    }
}
