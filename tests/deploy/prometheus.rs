//! The shipped Prometheus files (`deploy/prometheus/`): `promtool check
//! rules` and `check config` accept them, and `promtool test rules` runs
//! their unit tests (each alert fires on the series that should fire it and
//! stays quiet on healthy ones). That the metrics they name exist is checked
//! against real scrapes in `tests/remote/prometheus.rs`.
//!
//! Without promtool the tests are ignored, with the reason (see
//! `server/build.rs`); with `YSUM_REQUIRE_ENGINES=1` (CI) they run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The promtool `server/build.rs` found.
///
/// # Panics
///
/// When it found none (only then do the tests run without it, because
/// `YSUM_REQUIRE_ENGINES=1` made them mandatory).
fn promtool() -> &'static str {
    option_env!("YSUM_PROMTOOL").unwrap_or_else(|| {
        panic!(
            "promtool is not installed (apt-get install -y prometheus), and \
             YSUM_REQUIRE_ENGINES=1 makes the Prometheus tests mandatory"
        )
    })
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// Runs `promtool ARGS…` in `dir`; returns whether it succeeded and what it
/// printed.
fn promtool_in(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The rules and the configuration are valid.
#[test]
#[cfg_attr(
    no_promtool,
    ignore = "promtool not installed: apt-get install -y prometheus"
)]
fn rules_and_config_check() {
    let (ok, said) = promtool_in(&shipped(), &["check", "rules", "rules.yml"]);
    assert!(ok, "{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    let (ok, said) = promtool_in(&shipped(), &["check", "config", "prometheus.yml"]);
    assert!(ok, "{said}");
}

/// The rules' unit tests pass; and they can fail: with one alert's
/// threshold moved, the same tests fail.
#[test]
#[cfg_attr(
    no_promtool,
    ignore = "promtool not installed: apt-get install -y prometheus"
)]
fn rules_unit_tests_pass_and_can_fail() {
    let (ok, said) = promtool_in(&shipped(), &["test", "rules", "rules.test.yml"]);
    assert!(ok, "{said}");

    let scratch = std::env::temp_dir().join(format!("ysum-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch folder");
    let rules = std::fs::read_to_string(shipped().join("rules.yml")).expect("rules.yml");
    let moved = rules.replace(
        "/ sum by (instance) (rate(ysum_jobs_total[5m])) > 0.05",
        "/ sum by (instance) (rate(ysum_jobs_total[5m])) > 0.5",
    );
    assert_ne!(
        moved, rules,
        "the busy alert's threshold is where this test expects it"
    );
    std::fs::write(scratch.join("rules.yml"), moved).expect("write the changed rules");
    std::fs::copy(
        shipped().join("rules.test.yml"),
        scratch.join("rules.test.yml"),
    )
    .expect("copy the tests");
    let (ok, said) = promtool_in(&scratch, &["test", "rules", "rules.test.yml"]);
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(!ok, "the tests passed with a moved threshold: {said}");
    assert!(said.contains("YsumBusyRate"), "{said}");
}
