//! The test bed's network: one namespace per host, each with loopback up and
//! a veth pair whose other end sits on a bridge of the bed's own, addresses
//! in 10.213.47.0/24 (a range nothing else here uses). The root namespace
//! gets no address in it, so no traffic leaves the bed, and two beds (two
//! runs at once) do not see each other.
//!
//! Every name starts with `ysn<pid>-` (the test process's pid): a bed is
//! torn down when dropped, even after a panic, and a run first removes what
//! a crashed run left (names whose pid is no longer a nemesis test).
//!
//! Partitions are nftables rules in the target host's namespace (a table
//! `inet nemesis` with an input and an output chain, made with the bed),
//! dropping packets silently, one direction at a time.

use std::cell::Cell;
use std::fs::File;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::schedule::Direction;

/// The start of every name the bed makes.
pub(crate) const PREFIX: &str = "ysn";

/// The bed's /24.
pub(crate) const SUBNET: [u8; 3] = [10, 213, 47];

/// `ip`, found by server/build.rs.
fn ip_binary() -> PathBuf {
    match option_env!("YSUM_IP") {
        Some(path) => PathBuf::from(path),
        None => panic!("ip is not installed (apt-get install -y iproute2)"),
    }
}

/// `nft`, found by server/build.rs.
pub(crate) fn nft_binary() -> PathBuf {
    match option_env!("YSUM_NFT") {
        Some(path) => PathBuf::from(path),
        None => panic!("nft is not installed (apt-get install -y nftables)"),
    }
}

/// `ip netns exec NS`, to which a program and its arguments are added.
pub(crate) fn exec(ns: &str) -> Command {
    let mut command = Command::new(ip_binary());
    command.args(["netns", "exec", ns]);
    command
}

/// Runs `program args`, returning its output; panics if it cannot start.
fn run(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("could not run {command:?}: {err}"))
}

/// Runs `ip args`; panics with its stderr if it fails.
fn ip(args: &[&str]) {
    let mut command = Command::new(ip_binary());
    command.args(args);
    let out = run(command);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Runs `ip args` and returns its stdout, or "" if it failed.
fn ip_output(args: &[&str]) -> String {
    let mut command = Command::new(ip_binary());
    command.args(args);
    String::from_utf8_lossy(&run(command).stdout).into_owned()
}

/// One host: its namespace and address.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The short name (`w1`, `lb`, …).
    pub(crate) name: String,
    /// Its namespace.
    pub(crate) ns: String,
    /// Its address on the bridge.
    pub(crate) addr: Ipv4Addr,
}

/// A partition in force: the rule to delete to heal it.
#[derive(Debug)]
pub(crate) struct Rule {
    ns: String,
    chain: &'static str,
    handle: u64,
}

/// The namespaces, bridge and veths of one run.
#[derive(Debug)]
pub(crate) struct Bed {
    tag: String,
    hosts: Vec<Host>,
    torn_down: Cell<bool>,
}

impl Bed {
    /// Makes a namespace per `(name, last octet)`, all on one bridge, each
    /// with loopback up and an nft table for partitions.
    pub(crate) fn make(hosts: &[(&str, u8)]) -> Bed {
        clean_leftovers();
        let tag = format!("{PREFIX}{}", std::process::id());
        let mut bed = Bed {
            hosts: Vec::new(),
            tag: tag.clone(),
            torn_down: Cell::new(false),
        };
        let bridge = format!("{tag}-br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        for &(name, octet) in hosts {
            let ns = format!("{tag}-{name}");
            let veth = ns.clone();
            let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], octet);
            ip(&["netns", "add", &ns]);
            bed.hosts.push(Host {
                name: name.to_owned(),
                ns: ns.clone(),
                addr,
            });
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &bridge, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            bed.nft(
                name,
                "table inet nemesis {\n\
                 \tchain input { type filter hook input priority 0; policy accept; }\n\
                 \tchain output { type filter hook output priority 0; policy accept; }\n\
                 }\n",
            );
        }
        bed
    }

    /// The host called `name`.
    pub(crate) fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the bed"))
    }

    /// `ip netns exec <ns of host>`, to which the program and its
    /// arguments are added (`ip` execs it: the child's pid is the
    /// program's).
    pub(crate) fn command(&self, host: &str) -> Command {
        exec(&self.host(host).ns)
    }

    /// Runs an nft script in `host`'s namespace.
    fn nft(&self, host: &str, script: &str) {
        let mut child = self
            .command(host)
            .arg(nft_binary())
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(script.as_bytes())
            .expect("write the nft script");
        let out = child.wait_with_output().expect("wait for nft");
        assert!(
            out.status.success(),
            "nft in {host}: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// On `host`, drops packets from (`In`) or to (`Out`) every address of
    /// `peers`, silently; returns the rule that heals it.
    pub(crate) fn partition(&self, host: &str, direction: Direction, peers: &[Ipv4Addr]) -> Rule {
        let (chain, field) = match direction {
            Direction::In => ("input", "saddr"),
            Direction::Out => ("output", "daddr"),
        };
        let set: Vec<String> = peers.iter().map(Ipv4Addr::to_string).collect();
        let out = run({
            let mut command = self.command(host);
            command
                .arg(nft_binary())
                .args([
                    "--echo", "--handle", "add", "rule", "inet", "nemesis", chain,
                ])
                .args(["ip", field, "{", &set.join(", "), "}", "drop"]);
            command
        });
        let echoed = String::from_utf8_lossy(&out.stdout);
        // "add rule … drop # handle 4", then maybe "# new generation …".
        let handle = echoed
            .split_once("# handle ")
            .and_then(|(_, h)| {
                let digits: String = h.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .unwrap_or_else(|| {
                panic!(
                    "nft add rule on {host}: {echoed} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        Rule {
            ns: self.host(host).ns.clone(),
            chain,
            handle,
        }
    }

    /// Deletes a partition's rule.
    pub(crate) fn heal(&self, rule: Rule) {
        let mut command = Command::new(ip_binary());
        command
            .args(["netns", "exec", &rule.ns])
            .arg(nft_binary())
            .args(["delete", "rule", "inet", "nemesis", rule.chain, "handle"])
            .arg(rule.handle.to_string());
        let out = run(command);
        assert!(
            out.status.success(),
            "nft delete rule {rule:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Pids still in the bed's namespaces, with their namespace.
    pub(crate) fn pids(&self) -> Vec<(String, i32)> {
        self.hosts
            .iter()
            .flat_map(|h| {
                ip_output(&["netns", "pids", &h.ns])
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(|pid| (h.name.clone(), pid))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Deletes the namespaces, the veths and the bridge, and waits (at most
    /// 5 s) until `ip` lists none of them. Returns what was still there.
    pub(crate) fn tear_down(&self) -> Vec<String> {
        self.torn_down.set(true);
        remove(&self.tag);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = ours(&self.tag);
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if !self.torn_down.get() {
            self.tear_down();
        }
    }
}

/// Names (`ysn<pid>-…`) of namespaces and links whose tag is `tag`.
fn ours(tag: &str) -> Vec<String> {
    let prefix = format!("{tag}-");
    names()
        .into_iter()
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Every namespace and link name that looks like a bed's.
fn names() -> Vec<String> {
    let namespaces = ip_output(&["netns", "list"]);
    let links = ip_output(&["-o", "link", "show"]);
    let mut names: Vec<String> = namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .chain(links.lines().filter_map(|l| {
            // "12: ysn42-w1@if2: <…"
            let name = l.split(':').nth(1)?.trim();
            Some(name.split('@').next()?.to_owned())
        }))
        .filter(|name| tag_of(name).is_some())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `ysn<pid>` of a bed's name, if it is one.
fn tag_of(name: &str) -> Option<(String, i32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    let pid: i32 = pid.parse().ok()?;
    Some((format!("{PREFIX}{pid}"), pid))
}

/// Kills what runs in the namespaces of `tag` (processes a nemesis run
/// started there), then deletes the namespaces, veths and bridge.
fn remove(tag: &str) {
    for name in ours(tag) {
        if ip_output(&["netns", "list"])
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&name))
        {
            for pid in ip_output(&["netns", "pids", &name]).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            let _ = run({
                let mut c = Command::new(ip_binary());
                c.args(["netns", "del", &name]);
                c
            });
        }
    }
    // The root ends of the veths go with their namespaces, a moment later;
    // deleting them here makes it at once. Then the bridge.
    for name in ours(tag) {
        let _ = run({
            let mut c = Command::new(ip_binary());
            c.args(["link", "del", &name]);
            c
        });
    }
}

/// Removes the beds of runs that are no longer running: their test
/// process is gone (or its pid is now another program's).
pub(crate) fn clean_leftovers() {
    let mut tags: Vec<(String, i32)> = names().iter().filter_map(|n| tag_of(n)).collect();
    tags.sort();
    tags.dedup();
    for (tag, pid) in tags {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("nemesis"));
        if !alive {
            eprintln!("nemesis: removing {tag}*, left by a run that is gone");
            remove(&tag);
        }
    }
}

/// Runs `work` on a thread inside `ns`'s network namespace: its sockets
/// are that host's (the checker's own queries come from the `ctl` host).
pub(crate) fn in_ns<T: Send>(ns: &str, work: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into `ns`'s network namespace (only this
/// thread: a network namespace is per thread).
pub(crate) fn enter(ns: &str) {
    let file = File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|err| panic!("open /run/netns/{ns}: {err}"));
    // SAFETY: setns(2) on a descriptor we own, for this thread only; it
    // touches no memory of ours.
    let done = unsafe { nix::libc::setns(file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    assert_eq!(
        done,
        0,
        "setns into {ns}: {}",
        std::io::Error::last_os_error()
    );
}
