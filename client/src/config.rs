//! The settings one run is made with, as plain data. The binary's `cli`
//! module builds them from the command line; tests build them directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::history::History;
use crate::job::Job;
use crate::mix::Mix;

/// Everything a run needs to know, already validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client threads (at least 1).
    pub threads: usize,
    /// Where to send requests (at least one); thread `i` uses
    /// `targets[i % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    /// When the measured part of the run ends.
    pub amount: Amount,
    /// A first stretch of the run whose requests are left out of the
    /// figures (they are still checked).
    pub warmup: Duration,
    /// The jobs to send.
    pub mix: Mix,
    /// A new connection per request, or persistent ones.
    pub connection: Connection,
    /// Open loop: requests per second in total, on a fixed schedule. `None`
    /// is a closed loop: each thread sends its next request when the last
    /// is answered.
    pub rate: Option<f64>,
    /// How long one attempt of a request may take, from its start (connect
    /// included).
    pub timeout: Duration,
    /// How many times a request whose connection failed before any byte of
    /// its reply arrived (or that was answered `ERR shutting-down`) is sent
    /// again on a new connection.
    pub retries: u32,
    /// Where to write every request as a line of JSON (`--history`).
    pub history: Option<Arc<History>>,
}

/// How much to do after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// This many requests in all, split evenly over the threads as the
    /// original does (`total / threads` each, the remainder dropped).
    Requests(u64),
    /// Start requests for this long.
    Duration(Duration),
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// The original's way: each request on a new connection, `sumn` in the
    /// seed dialect, other jobs as one line of the line dialect.
    Fresh,
    /// One persistent line-dialect connection per thread, with up to
    /// `pipeline` requests in flight on it.
    KeepAlive {
        /// Requests in flight per connection (at least 1).
        pipeline: usize,
    },
}

impl Config {
    /// The original experiment against `127.0.0.1:10000`: 1000 requests of
    /// `sumn 25000` over `threads` threads, a connection per request.
    pub fn seed(threads: usize) -> Config {
        Config {
            threads,
            targets: vec![SocketAddr::from(([127, 0, 0, 1], 10_000))],
            amount: Amount::Requests(1000),
            warmup: Duration::ZERO,
            mix: Mix::single(Job::Sumn(25_000)),
            connection: Connection::Fresh,
            rate: None,
            timeout: Duration::from_secs(10),
            retries: 0,
            history: None,
        }
    }

    /// Requests each thread makes after the warmup, for
    /// [`Amount::Requests`].
    pub fn requests_per_thread(&self) -> Option<u64> {
        match self.amount {
            Amount::Requests(total) => Some(total / self.threads.max(1) as u64),
            Amount::Duration(_) => None,
        }
    }

    /// The requests the run plans to measure (`threads × (total / threads)`,
    /// the original's first line), for [`Amount::Requests`].
    pub fn planned_requests(&self) -> Option<u64> {
        self.requests_per_thread()
            .map(|each| each * self.threads as u64)
    }

    /// The address thread `index` sends to.
    pub fn target(&self, index: usize) -> SocketAddr {
        self.targets[index % self.targets.len()]
    }

    /// The requests in flight per connection (1 for fresh connections).
    pub fn pipeline(&self) -> usize {
        match self.connection {
            Connection::Fresh => 1,
            Connection::KeepAlive { pipeline } => pipeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split is the original's: `1000 // N` each.
    #[test]
    fn split_as_the_original() {
        let mut config = Config::seed(3);
        assert_eq!(config.requests_per_thread(), Some(333));
        assert_eq!(config.planned_requests(), Some(999));
        config.threads = 8;
        assert_eq!(config.planned_requests(), Some(1000));
        config.amount = Amount::Duration(Duration::from_secs(1));
        assert_eq!(config.planned_requests(), None);
    }
}
