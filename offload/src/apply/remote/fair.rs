//! [`Fair`]: fair share for `remote`. A worker takes the stream's entries
//! in order, so the server decides the order by what it puts there: a long
//! job (a `sleep`, or CPU work predicted at a millisecond or more) goes into
//! the stream only while this server has fewer long jobs there than the
//! live workers have slots; the others wait here, by client address, and
//! the next one to go is from the address with the fewest long jobs out.
//! Short jobs go at once: they are through a slot in microseconds, so they
//! cannot hold one. An address that sends a hundred long jobs therefore
//! delays another address's job by about one job, not a hundred.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::apply::cost::StepCosts;
use crate::job::{Cancel, Job};

/// A job predicted to run at least this long holds a worker's slot long
/// enough to be counted against the window.
const LONG: Duration = Duration::from_millis(1);

/// The long jobs out and waiting, by address.
#[derive(Debug)]
pub(super) struct Fair {
    state: Mutex<State>,
    costs: StepCosts,
}

#[derive(Debug)]
struct State {
    accounts: HashMap<Option<IpAddr>, Account>,
    /// Long jobs in the stream (or on their way to it), over every address.
    out: usize,
    /// How many may be: the live workers' slots (at least one).
    window: usize,
}

#[derive(Debug, Default)]
struct Account {
    /// Long jobs waiting to go, by number, in arrival order.
    held: VecDeque<u64>,
    /// Its long jobs out now.
    out: usize,
}

impl Fair {
    /// Fair share with step costs measured on this machine.
    pub(super) fn new() -> Self {
        Fair {
            state: Mutex::new(State {
                accounts: HashMap::new(),
                out: 0,
                window: 1,
            }),
            costs: StepCosts::calibrate(&Cancel::never()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `job` is long enough to count against the window.
    pub(super) fn is_long(&self, job: Job) -> bool {
        match job {
            Job::Sleep(ms) => Duration::from_millis(ms) >= LONG,
            _ => self.costs.predict(job).is_none_or(|cost| cost >= LONG),
        }
    }

    /// Sets the window to `slots` (the live workers' slots, from their
    /// heartbeats); returns the jobs that may go now.
    pub(super) fn set_window(&self, slots: usize) -> Vec<Going> {
        let mut state = self.lock();
        state.window = slots.max(1);
        release(&mut state)
    }

    /// Holds long job `id` of `address`; returns the jobs that may go now
    /// (this one among them if there is room).
    pub(super) fn hold(&self, id: u64, address: Option<IpAddr>) -> Vec<Going> {
        let mut state = self.lock();
        state
            .accounts
            .entry(address)
            .or_default()
            .held
            .push_back(id);
        release(&mut state)
    }

    /// A long job of `address` that was out is answered (or given up):
    /// its place goes to the next; returns the jobs that may go now.
    pub(super) fn finished(&self, address: Option<IpAddr>) -> Vec<Going> {
        let mut state = self.lock();
        if let Some(account) = state.accounts.get_mut(&address) {
            account.out = account.out.saturating_sub(1);
            state.out = state.out.saturating_sub(1);
        }
        forget_if_idle(&mut state, address);
        release(&mut state)
    }

    /// Job `id` of `address`, still held, will never go (answered at its
    /// deadline, or withdrawn): it leaves the line.
    pub(super) fn drop_held(&self, id: u64, address: Option<IpAddr>) {
        let mut state = self.lock();
        if let Some(account) = state.accounts.get_mut(&address) {
            account.held.retain(|held| *held != id);
        }
        forget_if_idle(&mut state, address);
    }

    /// Long jobs waiting here now.
    pub(super) fn held(&self) -> usize {
        self.lock().accounts.values().map(|a| a.held.len()).sum()
    }
}

/// A job that may go now: its number and its address (which gets its place
/// back if the job turns out to be gone already).
pub(super) type Going = (u64, Option<IpAddr>);

/// Lets jobs go while there is room: each from the address with the fewest
/// out, its oldest first.
fn release(state: &mut State) -> Vec<Going> {
    let mut going = Vec::new();
    while state.out < state.window {
        let next = state
            .accounts
            .iter()
            .filter(|(_, account)| !account.held.is_empty())
            .min_by_key(|(_, account)| (account.out, account.held.front().copied()))
            .map(|(address, _)| *address);
        let Some(address) = next else { break };
        let account = state.accounts.get_mut(&address).expect("just found");
        let id = account.held.pop_front().expect("not empty");
        account.out += 1;
        state.out += 1;
        going.push((id, address));
    }
    going
}

fn forget_if_idle(state: &mut State, address: Option<IpAddr>) {
    if state
        .accounts
        .get(&address)
        .is_some_and(|a| a.held.is_empty() && a.out == 0)
    {
        state.accounts.remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)));

    /// With two slots, one address's flood goes two at a time; another
    /// address's job goes at the first free place, before the flood's rest.
    #[test]
    fn a_newcomer_goes_next() {
        let fair = Fair::new();
        assert_eq!(fair.set_window(2), Vec::<Going>::new());
        let mut out = Vec::new();
        for id in 1..=100 {
            out.extend(fair.hold(id, A));
        }
        assert_eq!(out, [(1, A), (2, A)]);
        assert_eq!(fair.hold(101, B), Vec::<Going>::new());
        assert_eq!(fair.finished(A), [(101, B)], "B has none out, A has one");
        assert_eq!(fair.finished(A), [(3, A)]);
        assert_eq!(fair.held(), 97);
    }

    /// Sleeps and heavy work are long; tiny work is not.
    #[test]
    fn long_and_short() {
        let fair = Fair::new();
        assert!(fair.is_long(Job::Sleep(2_000)));
        assert!(!fair.is_long(Job::Sleep(0)));
        assert!(!fair.is_long(Job::Sumn(10)));
        assert!(fair.is_long(Job::Sumn(4_000_000_000)));
    }

    /// A held job that is given up leaves the line; a wider window lets
    /// more go.
    #[test]
    fn dropped_and_widened() {
        let fair = Fair::new();
        assert_eq!(fair.hold(1, A), [(1, A)]);
        assert!(fair.hold(2, A).is_empty());
        assert!(fair.hold(3, A).is_empty());
        fair.drop_held(2, A);
        assert_eq!(fair.set_window(3), [(3, A)]);
        assert_eq!(fair.held(), 0);
    }
}
