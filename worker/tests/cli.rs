//! `sumworker`'s command line, as a user meets it: bad values are refused
//! with a clear message and exit status 1, before anything starts.
//!
//! (This target also makes `cargo test --workspace` build the `sumworker`
//! binary that the server's remote tests start.)

use std::process::Command;

fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sumworker"))
        .args(args)
        .output()
        .expect("run sumworker");
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A broker URL that does not parse is quoted, and nothing starts.
#[test]
fn bad_broker_url_is_quoted() {
    let err = refused(&["--broker", "http://example"]);
    assert!(err.starts_with("sumworker: "), "{err}");
    assert!(err.contains("\"http://example\""), "{err}");
}

/// Out-of-range numbers and durations are refused with the value quoted.
#[test]
fn bad_values_are_refused() {
    let err = refused(&["--broker", "redis://127.0.0.1:1", "--workers", "0"]);
    assert!(err.contains("got 0"), "{err}");
    let err = refused(&["--broker", "redis://127.0.0.1:1", "--lease", "1ms"]);
    assert!(err.contains("1ms"), "{err}");
    let err = refused(&[]);
    assert!(err.contains("--broker"), "{err}");
}

/// Every flag can come from the environment as `YSUM_<FLAG>`, and `--help`
/// names the variable: here the broker and a worker count that is refused.
#[test]
fn flags_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_sumworker"))
        .env("YSUM_BROKER", "redis://127.0.0.1:1")
        .env("YSUM_WORKERS", "0")
        .output()
        .expect("run sumworker");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("--workers must be from 1 to 1024, got 0"),
        "{err}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_sumworker"))
        .arg("--help")
        .output()
        .expect("run sumworker --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for variable in [
        "[env: YSUM_BROKER]",
        "[env: YSUM_APPLY=]",
        "[env: YSUM_LEASE=",
    ] {
        assert!(help.contains(variable), "--help names {variable}: {help}");
    }
}

/// `--generate` writes completions (bash valid to `bash -n`) and a man page,
/// without the `--broker` a run needs.
#[test]
fn completions_and_man_page() {
    let generate = |what: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_sumworker"))
            .args(["--generate", what])
            .output()
            .expect("run sumworker");
        assert!(output.status.success(), "--generate {what}: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let bash = generate("bash");
    let checked = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .expect("run bash -n");
    assert!(checked.success(), "bash -n refuses the script");
    assert!(generate("zsh").starts_with("#compdef sumworker"));
    assert!(generate("fish").contains("complete -c sumworker -l broker"));
    let man = generate("man");
    assert!(
        man.contains(".TH sumworker 1") && man.contains("YSUM_BROKER"),
        "{man}"
    );
}

/// A negative duration is refused as one, quoted (it was taken for an
/// unknown flag: "unexpected argument '-1'").
#[test]
fn negative_durations_are_refused_as_such() {
    for option in ["--lease", "--job-timeout", "--grace"] {
        let err = refused(&["--broker", "redis://127.0.0.1:1", option, "-1s"]);
        assert!(
            err.contains("\"-1s\" is not a duration: a duration is never negative"),
            "{option}: {err}"
        );
    }
}
