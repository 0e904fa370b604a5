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
