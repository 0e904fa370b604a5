//! The end of a graceful shutdown's grace period, kept by a thread of its
//! own: under `inline` and `exclusive` the reactor runs jobs itself, and
//! while inside one it cannot notice that the time is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use offload::Strategy;

use super::TICK;
use crate::shutdown::Shutdown;

/// Calls `strategy.shutdown()` once `grace` has passed since `shutdown` was
/// triggered, unless the reactor is `served` first.
pub(super) fn cut_short_after_grace(
    shutdown: &Shutdown,
    strategy: &Strategy,
    grace: Duration,
    served: &AtomicBool,
) {
    while !served.load(Ordering::SeqCst) {
        if shutdown
            .triggered_at()
            .is_some_and(|at| at.elapsed() >= grace)
        {
            strategy.shutdown();
            return;
        }
        std::thread::sleep(TICK);
    }
}
