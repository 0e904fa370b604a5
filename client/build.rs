//! Looks for a Prometheus text parser for the metrics test
//! (`tests/metrics.rs`): a Python with the `prometheus_client` package
//! (Debian: `apt-get install -y python3-prometheus-client`). As for the
//! engine tests (HAProxy, Redis), a missing parser marks the test ignored
//! with the reason, through the cfg `no_prometheus_parser`, rather than
//! letting it pass without having run; with `YSUM_REQUIRE_ENGINES=1` (what
//! `.ci/run` sets) the cfg is never set, and the test fails saying what is
//! missing. The interpreter found is handed to the test as
//! `YSUM_PROMETHEUS_PYTHON`.
//!
//! The probe runs again when `PATH` or `YSUM_REQUIRE_ENGINES` changes, or
//! Debian's package is installed or removed; after installing it some other
//! way, `touch client/build.rs` to take it up.

use std::process::{Command, Stdio};

/// Interpreters to try: the one on PATH, then the system's, which is the
/// one Debian's package installs into when PATH leads elsewhere (pyenv).
const PYTHONS: [&str; 2] = ["python3", "/usr/bin/python3"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=YSUM_REQUIRE_ENGINES");
    // Where Debian's package lives: installing or removing it runs the
    // probe again (a path that does not exist makes it run every build,
    // which costs two short python3 starts).
    println!("cargo:rerun-if-changed=/usr/lib/python3/dist-packages/prometheus_client");
    println!("cargo:rustc-check-cfg=cfg(no_prometheus_parser)");
    let required = std::env::var("YSUM_REQUIRE_ENGINES").is_ok_and(|v| v == "1");
    let found = PYTHONS.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    match found {
        Some(python) => println!("cargo:rustc-env=YSUM_PROMETHEUS_PYTHON={python}"),
        None if required => {}
        None => println!("cargo:rustc-cfg=no_prometheus_parser"),
    }
}
