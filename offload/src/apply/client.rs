//! [`Client`]: who a job is for. Its address is what fair share counts
//! (the next free worker goes to the address with the fewest jobs running),
//! and its flag is raised when the client has gone, so that its jobs are
//! withdrawn ([`Strategy::withdraw`](super::Strategy::withdraw)): those
//! still waiting never run, and a running one stops at its next yield point
//! where the strategy can stop it.
//!
//! A connection makes one `Client` and hands it in with each of its jobs;
//! jobs handed in without one ([`Strategy::apply`](super::Strategy::apply),
//! [`Strategy::submit`](super::Strategy::submit)) share one anonymous
//! account and are never withdrawn.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Who a job is for; cheap to clone (one shared state).
#[derive(Debug, Clone)]
pub struct Client(Arc<State>);

#[derive(Debug)]
struct State {
    address: Option<IpAddr>,
    gone: AtomicBool,
}

impl Client {
    /// A client at `address` (`None`: unknown, counted with the anonymous
    /// jobs).
    pub fn new(address: Option<IpAddr>) -> Self {
        Client(Arc::new(State {
            address,
            gone: AtomicBool::new(false),
        }))
    }

    /// A client that nobody will withdraw, of no address.
    pub fn anonymous() -> Self {
        Client::new(None)
    }

    /// The address fair share counts it under.
    pub fn address(&self) -> Option<IpAddr> {
        self.0.address
    }

    /// Whether it has gone (its jobs were withdrawn).
    pub fn is_gone(&self) -> bool {
        self.0.gone.load(Ordering::Acquire)
    }

    /// Marks it gone; true if it was not already.
    pub(crate) fn leave(&self) -> bool {
        !self.0.gone.swap(true, Ordering::AcqRel)
    }

    /// The flag a running job of this client checks at its yield points.
    pub(crate) fn gone_flag(&self) -> &AtomicBool {
        &self.0.gone
    }

    /// Whether `other` is this very client (not merely one at the same
    /// address).
    pub fn is(&self, other: &Client) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clones are the same client; another at the same address is not; a
    /// client leaves once.
    #[test]
    fn identity_and_leaving() {
        let addr = Some(IpAddr::from([127, 0, 0, 2]));
        let a = Client::new(addr);
        let same = a.clone();
        let other = Client::new(addr);
        assert!(a.is(&same) && !a.is(&other));
        assert_eq!(other.address(), addr);
        assert!(!a.is_gone());
        assert!(same.leave());
        assert!(a.is_gone() && !a.leave());
        assert!(!other.is_gone());
    }
}
