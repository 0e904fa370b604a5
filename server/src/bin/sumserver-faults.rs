//! `sumserver-faults`: `sumserver` for the tests, which also serves the
//! fault-injection jobs (`panic 1`) of a test build of offload.
//!
//! `cargo test` turns offload's `fault-injection` feature on for every
//! binary it builds (features unify across one build), so the shipped
//! `sumserver` cannot rely on the feature being off: it refuses the hidden
//! jobs at run time, and only this binary asks for them. Built without the
//! feature it knows no hidden job either.
//!
//! Run: `cargo test -p ysum-server --test e2e panicking`

#[allow(dead_code, unreachable_pub)]
#[path = "../main.rs"]
mod sumserver;

fn main() -> std::process::ExitCode {
    sumserver::entry(true)
}
