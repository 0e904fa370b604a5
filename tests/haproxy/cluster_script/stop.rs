//! SIGTERM stops the script's cluster cleanly; SIGKILL of the script
//! leaves no process behind.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};

use super::Script;
use crate::one_at_a_time;
use crate::process::{states, Proc};
use crate::support::eventually;

/// SIGTERM: the script stops its servers and HAProxy and exits 0.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn sigterm_stops_everything() {
    let _serial = one_at_a_time();
    Script::start().sigterm_and_check_all_gone();
}

/// SIGKILL of the script: the kernel tells its children (PDEATHSIG), and
/// none of them outlives it by more than a sumserver's grace.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn kill_9_leaves_no_process() {
    let _serial = one_at_a_time();
    let mut script = Script::start();
    kill(script.pid(), Signal::SIGKILL).unwrap();
    script.child.wait(Duration::from_secs(5));
    let gone = eventually(Duration::from_secs(5), || {
        script.tree.iter().all(Proc::has_exited)
    });
    assert!(gone, "left behind: {:?}", states(&script.tree));
}
