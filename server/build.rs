//! Looks for the engines the engine tests start (`tests/haproxy`: HAProxy;
//! `tests/remote`: Redis, Sentinel, Prometheus, and libfaketime for a
//! worker whose clock is off; `tests/deploy`: systemd-analyze, promtool;
//! `tests/nemesis`: Redis, Sentinel, HAProxy and libfaketime on hosts of
//! their own, network namespaces, which need root, `ip` and `nft`), so that
//! a test whose engine is missing is marked ignored with the reason instead
//! of passing without having run.
//!
//! For each engine found, `YSUM_<ENGINE>` is set to its path at compile
//! time; for each one missing, the cfg `no_<engine>` is set, on which the
//! tests hang `#[cfg_attr(no_haproxy, ignore = "…")]`. With
//! `YSUM_REQUIRE_ENGINES=1` (what `.ci/run` sets) the cfg is never set, so
//! the tests run and fail, saying which engine is missing.
//!
//! The probe runs again when `PATH` or `YSUM_REQUIRE_ENGINES` changes, or
//! the engine's binary does; after installing a missing engine, `touch
//! server/build.rs` (or set `PATH` anew) to take it up.

use std::env;
use std::path::PathBuf;

/// (binary name, cfg set when it is missing, variable holding its path).
const ENGINES: &[(&str, &str, &str)] = &[
    ("haproxy", "no_haproxy", "YSUM_HAPROXY"),
    ("redis-server", "no_redis", "YSUM_REDIS"),
    // `tests/remote/sentinel.rs`: a primary, a replica and three sentinels
    // (Debian package `redis-sentinel`).
    ("redis-sentinel", "no_sentinel", "YSUM_SENTINEL"),
    // `tests/deploy`: `systemd-analyze verify` on deploy/systemd (Debian
    // package `systemd`; it runs offline, no systemd needs to be running).
    (
        "systemd-analyze",
        "no_systemd_analyze",
        "YSUM_SYSTEMD_ANALYZE",
    ),
    // `tests/deploy/prometheus.rs`: `promtool check` and `promtool test
    // rules` on deploy/prometheus; `tests/remote/prometheus.rs`: a real
    // Prometheus scraping a server and a worker (Debian package
    // `prometheus`, which brings both).
    ("promtool", "no_promtool", "YSUM_PROMTOOL"),
    ("prometheus", "no_prometheus", "YSUM_PROMETHEUS"),
];

/// libfaketime (Debian package `faketime`), preloaded into a worker whose
/// clock a test shifts: the variant for threaded programs.
const FAKETIME_LIBRARY: &str = "libfaketimeMT.so.1";

/// Debian puts daemons in sbin, which an ordinary user's PATH often lacks.
const SBIN: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=YSUM_REQUIRE_ENGINES");
    let required = env::var("YSUM_REQUIRE_ENGINES").is_ok_and(|v| v == "1");
    for (binary, missing_cfg, path_var) in ENGINES {
        println!("cargo:rustc-check-cfg=cfg({missing_cfg})");
        match find(binary) {
            Some(path) => {
                println!("cargo:rerun-if-changed={}", path.display());
                println!("cargo:rustc-env={path_var}={}", path.display());
            }
            None if required => {}
            None => println!("cargo:rustc-cfg={missing_cfg}"),
        }
    }
    println!("cargo:rustc-check-cfg=cfg(no_faketime)");
    match find_faketime() {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rustc-env=YSUM_FAKETIME_LIB={}", path.display());
        }
        None if required => {}
        None => println!("cargo:rustc-cfg=no_faketime"),
    }
    // Root is the one thing `.ci/run` cannot install: run by an ordinary
    // user, it sets YSUM_NETNS=skip and says so, and the schedule is marked
    // ignored there instead of failing; CI runs as root, where it runs.
    println!("cargo:rerun-if-env-changed=YSUM_NETNS");
    probe_netns(required && env::var("YSUM_NETNS").map_or(true, |v| v != "skip"));
}

/// Network namespaces for `tests/nemesis`: `ip` (iproute2) makes them and
/// their veth pairs, `nft` (nftables) drops packets inside them, and both
/// need CAP_SYS_ADMIN and CAP_NET_ADMIN, which root has outside an
/// unprivileged container. Their paths go to `YSUM_IP` and `YSUM_NFT`;
/// `no_netns` is set when any of it is missing (never with
/// `YSUM_REQUIRE_ENGINES=1`). Only looked at, nothing is made here.
fn probe_netns(required: bool) {
    println!("cargo:rustc-check-cfg=cfg(no_netns)");
    let mut found = true;
    for (binary, path_var) in [("ip", "YSUM_IP"), ("nft", "YSUM_NFT")] {
        match find(binary) {
            Some(path) => {
                println!("cargo:rerun-if-changed={}", path.display());
                println!("cargo:rustc-env={path_var}={}", path.display());
            }
            None => found = false,
        }
    }
    let usable = found && may_make_namespaces();
    if !usable && !required {
        println!("cargo:rustc-cfg=no_netns");
    }
}

/// Whether this process holds CAP_SYS_ADMIN (21) and CAP_NET_ADMIN (12) in
/// its effective set, as `/proc/self/status` says.
fn may_make_namespaces() -> bool {
    const NEEDED: u64 = (1 << 21) | (1 << 12);
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & NEEDED == NEEDED)
}

/// libfaketime where Debian puts it: `/usr/lib/<triple>/faketime/`.
fn find_faketime() -> Option<PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?;
    lib.filter_map(Result::ok)
        .map(|entry| entry.path().join("faketime").join(FAKETIME_LIBRARY))
        .chain(std::iter::once(
            PathBuf::from("/usr/lib/faketime").join(FAKETIME_LIBRARY),
        ))
        .find(|candidate| candidate.is_file())
}

/// The first executable file named `binary` in `PATH` or an sbin folder.
fn find(binary: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
