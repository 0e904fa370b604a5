//! What both accept loops share: backing off when the process runs out of
//! descriptors.

use std::io;
use std::time::Duration;

/// How long to wait before accepting again after the process ran out of
/// descriptors or memory.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accept errors that mean "not now" rather than "this connection is bad".
pub(crate) fn is_resource_exhaustion(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}
