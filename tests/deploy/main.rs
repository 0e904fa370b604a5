//! The shipped deployment files against this build. The Prometheus rules
//! and configuration (`deploy/prometheus/`): see `prometheus`.
//!
//! The shipped systemd units (`deploy/systemd/`) against the binaries of this
//! build: `systemd-analyze verify` has nothing to say about them, with and
//! without their drop-ins, and does speak up when a directive is misspelt
//! (so its silence means something); the units, drop-ins and environment
//! files name only `YSUM_…` variables the binaries read.
//!
//! Without systemd-analyze the verification is ignored, with the reason (see
//! `server/build.rs`); with `YSUM_REQUIRE_ENGINES=1` (CI) it runs, and fails
//! if the tool is missing. It runs offline: no systemd needs to be running,
//! and nothing is started.
//!
//! # Layout
//!
//! - `prometheus`: `promtool check` and `promtool test rules`.
//! - `units`: the shipped files, the ways they are installed together, and
//!   copies of them that start this build's binaries.
//! - `verify`: `systemd-analyze verify` on those copies; the man pages the
//!   units name.
//! - `variables`: the `YSUM_…` variables the files name, against `--help`;
//!   the stop timeouts against the default grace.

mod prometheus;
mod units;
mod variables;
mod verify;
