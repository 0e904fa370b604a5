//! The Redis side of `--apply remote`, shared by the server's strategy and
//! by `sumworker`: how to reach the broker and what to trust there
//! ([`BrokerConfig`], [`Broker`]), where things live in Redis ([`Keys`]),
//! what a job and a reply look like there ([`wire`]), how they are signed
//! ([`Signer`]), and how to keep reaching the broker ([`Backoff`]).
//!
//! The picture, keys, semantics and what is trusted are in
//! `docs/distributed.md`.
//!
//! # Layout
//!
//! - `config`: [`BrokerConfig`], [`Secret`] and [`redact`].
//! - `keys`: [`Keys`], every key under one prefix.
//! - `target`: where connections go: one Redis, or (`sentinel`) the
//!   primary Redis Sentinel names, followed through failovers.
//! - `sign`: [`Signer`], HMAC-SHA256 of jobs and replies.
//! - [`wire`]: the job entry and the reply string.
//! - `clock`: [`BrokerClock`], the broker's clock, which every process
//!   reads deadlines on.
//! - `heartbeat`: [`Heartbeat`], what a worker says of itself every
//!   quarter lease.
//! - `backoff`: [`Backoff`], waits between attempts.
//! - `every`: [`Every`], at most one log line per period for a repeated
//!   failure.

mod backoff;
mod clock;
mod config;
mod every;
mod heartbeat;
mod keys;
mod sentinel;
mod sign;
mod target;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use redis::{Connection, ErrorKind, RedisError, RedisResult};

pub use backoff::Backoff;
pub use clock::{BrokerClock, OFFSET_WARNING_MS};
pub use config::{redact, BrokerConfig, Secret, DEFAULT_PREFIX};
pub use every::Every;
pub use heartbeat::Heartbeat;
pub use keys::{Keys, REPLY_TTL_S};
pub use sign::{KeyError, Signed, Signer, MAC_HEX_LEN, MIN_KEY_LEN};

use crate::error::StartError;
use target::Target;

/// How long opening a connection to the broker may take. A broker that is
/// down refuses at once; this bounds a broker host that does not answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a plain (non-blocking) command may wait for its reply before
/// the connection is given up as broken.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// After this many deliveries a job is answered `worker-lost` instead of
/// being handed out again: a job that kills every worker cannot loop.
pub const MAX_DELIVERIES: u64 = 3;

/// A broker, checked, from which connections are opened; with the keys and
/// the signer of its deployment.
#[derive(Debug, Clone)]
pub struct Broker {
    target: Target,
    /// The URL with its password replaced by `***`: the only form in which
    /// it is ever shown.
    shown: String,
    keys: Keys,
    signer: Option<Signer>,
    /// The newest job format spoken here.
    format: u32,
    /// Shared by every clone: one estimate per process.
    clock: Arc<BrokerClock>,
}

impl Broker {
    /// Checks `config` without connecting.
    ///
    /// # Errors
    ///
    /// [`StartError::BadSetting`] when the URL does not parse (quoted
    /// without its password), the password is not UTF-8, the prefix is
    /// empty or has spaces, a signing key is too short, or a CA file is
    /// given for a broker without TLS, or the job format is not one this
    /// build speaks (or is 1 with signing, which format 1 cannot carry).
    pub fn new(config: &BrokerConfig) -> Result<Broker, StartError> {
        let shown = redact(&config.url);
        let bad = |setting, expected, value: String| StartError::BadSetting {
            setting,
            expected,
            value,
        };
        let target = Target::new(config, &shown)?;
        if config.prefix.is_empty() || config.prefix.contains(|c: char| c.is_whitespace()) {
            return Err(bad(
                "broker prefix",
                "a word without spaces, such as ysum:",
                format!("{:?}", config.prefix),
            ));
        }
        if !(wire::OLDEST_FORMAT..=wire::FORMAT).contains(&config.format) {
            return Err(bad(
                "job format",
                "a format this build speaks (1 or 2)",
                config.format.to_string(),
            ));
        }
        if config.format < 2 && config.signing_keys.is_some() {
            return Err(bad(
                "job format",
                "format 2 or later with --broker-secret-file (format 1 cannot be signed)",
                config.format.to_string(),
            ));
        }
        let signer = config
            .signing_keys
            .as_deref()
            .map(Signer::new)
            .transpose()
            .map_err(|err| bad("broker secret", "usable signing keys", err.to_string()))?;
        Ok(Broker {
            target,
            shown,
            keys: Keys::new(&config.prefix),
            signer,
            format: config.format,
            clock: Arc::default(),
        })
    }

    /// `host:port` of the primary, under Sentinel, as last found.
    pub fn primary(&self) -> Option<String> {
        self.target.primary()
    }

    /// Times this process saw the primary change, under Sentinel.
    pub fn failovers(&self) -> u64 {
        self.target.failovers()
    }

    /// The generation of connections: it moves when the primary changes
    /// (under Sentinel; never otherwise). A connection opened under an
    /// older one goes to a node that is no longer the primary, or will not
    /// be for long: drop it and connect again.
    pub fn generation(&self) -> u64 {
        self.target.failovers()
    }

    /// Drops the connection in `slot` if it was opened under an older
    /// generation than now (the primary changed since), and notes the
    /// generation now in `seen`: for a thread that keeps one connection,
    /// before it uses it.
    pub fn drop_if_stale(&self, slot: &mut Option<Connection>, seen: &mut u64) {
        let now = self.generation();
        if *seen != now {
            *slot = None;
            *seen = now;
        }
    }

    /// Under Sentinel, asks the sentinels where the primary is now, so that
    /// a switch moves [`Broker::generation`] at once (call it every second
    /// or so); nothing for a plain broker.
    pub fn check_primary(&self) {
        self.target.check();
    }

    /// The broker's clock, as this process estimates it.
    pub fn clock(&self) -> &BrokerClock {
        &self.clock
    }

    /// The URL, its password replaced by `***`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The keys of this deployment.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The newest job format this process speaks: the one a server writes,
    /// the newest a worker reads.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The signer, when jobs and replies are signed.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    /// Opens a connection whose replies may take at most `read_timeout`
    /// (give blocking commands their block time plus a margin).
    ///
    /// # Errors
    ///
    /// The broker's or the network's error.
    pub fn connect(&self, read_timeout: Duration) -> RedisResult<Connection> {
        let conn = self.target.connect()?;
        conn.set_read_timeout(Some(read_timeout))?;
        conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(conn)
    }

    /// Opens a connection for plain commands and makes sure the jobs stream
    /// and the workers' group exist (see [`ensure_group`]).
    ///
    /// # Errors
    ///
    /// The broker's or the network's error.
    pub fn connect_with_group(&self, read_timeout: Duration) -> RedisResult<Connection> {
        let mut conn = self.connect(read_timeout)?;
        ensure_group(&mut conn, &self.keys)?;
        Ok(conn)
    }

    /// What to say when the broker refused this process's credentials or
    /// one of its commands: one line, which never holds the password.
    pub fn refusal(&self, err: &RedisError) -> String {
        let what = if err.code() == Some("NOPERM") {
            "refused a command or key this process needs (its ACL user lacks the right)"
        } else {
            "refused the credentials (a wrong or missing password or user)"
        };
        format!(
            "the broker at {} {what}: {}",
            self.shown,
            redact(&err.to_string())
        )
    }

    /// Connects and runs, without side effects, the commands that `role`
    /// needs on its keys, to tell at start-up a broker that refuses this
    /// process (its password, its ACL user) from one that is only not there
    /// yet.
    ///
    /// # Errors
    ///
    /// [`Probe::Refused`] when the broker answered and refused the
    /// credentials or a command (a configuration error: fix and restart);
    /// [`Probe::Unreachable`] for anything else (it may come later).
    pub fn probe(&self, role: Role<'_>) -> Result<(), Probe> {
        let classify = |err: RedisError| {
            if is_refusal(&err) {
                Probe::Refused(self.refusal(&err))
            } else {
                Probe::Unreachable(redact(&err.to_string()))
            }
        };
        let mut conn = self.connect_with_group(COMMAND_TIMEOUT).map_err(classify)?;
        let keys = &self.keys;
        // One at a time (not a pipeline): a refusal keeps its error code.
        let mut checks = Vec::new();
        match role {
            Role::Server {
                reply_list,
                taken_list,
            } => {
                // Its run id, the stream's length, and a take from its own
                // (empty) reply list, which blocks a millisecond and moves
                // nothing, or moves a reply where its dispatcher finds it.
                checks.push(redis::cmd("INFO").arg("server").clone());
                checks.push(redis::cmd("XLEN").arg(keys.jobs()).clone());
                checks.push(
                    redis::cmd("BLMOVE")
                        .arg(reply_list)
                        .arg(taken_list)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(0.001)
                        .clone(),
                );
            }
            Role::Worker { name } => {
                // Its own pending entries (read, not delivered), and a
                // claim of entries idle for longer than can be.
                checks.push(
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(keys.group())
                        .arg(name)
                        .arg("COUNT")
                        .arg(1)
                        .arg("STREAMS")
                        .arg(keys.jobs())
                        .arg("0")
                        .clone(),
                );
                checks.push(
                    redis::cmd("XAUTOCLAIM")
                        .arg(keys.jobs())
                        .arg(keys.group())
                        .arg(name)
                        .arg(i64::MAX)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(1)
                        .clone(),
                );
            }
        }
        for check in checks {
            check.exec(&mut conn).map_err(classify)?;
        }
        self.clock.measure(&mut conn).map_err(classify)?;
        Ok(())
    }
}

/// Who is probing the broker, and so which commands it needs.
#[derive(Debug, Clone, Copy)]
pub enum Role<'a> {
    /// A server, with its reply list and its taken list.
    Server {
        /// Its reply list.
        reply_list: &'a str,
        /// Where it moves its replies as it takes them.
        taken_list: &'a str,
    },
    /// A worker, with its consumer name.
    Worker {
        /// Its consumer name.
        name: &'a str,
    },
}

/// Why [`Broker::probe`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The broker refused the credentials or a command: the line to show.
    Refused(String),
    /// The broker did not answer: why.
    Unreachable(String),
}

/// Whether `err` says the broker answered but refused this client: a wrong
/// or missing password (`WRONGPASS`, `NOAUTH`), or a command or key its ACL
/// user may not use (`NOPERM`). Retrying does not help; the configuration
/// (or the broker's users) must change.
pub fn is_refusal(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Creates the jobs stream and the workers' group if either is missing (a
/// broker restarted without persistence has neither). The group starts at
/// the stream's beginning, so jobs added before it existed are still read.
///
/// # Errors
///
/// The broker's or the network's error; an existing group is not one.
pub fn ensure_group(conn: &mut Connection, keys: &Keys) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.jobs())
        .arg(keys.group())
        .arg("0")
        .arg("MKSTREAM")
        .query(conn);
    match created {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Whether `err` means the group (or the stream) is gone: the broker lost
/// its data, and [`ensure_group`] must run again.
pub fn is_missing_group(err: &RedisError) -> bool {
    err.code() == Some("NOGROUP")
}

/// The broker's run id (`INFO server`), which changes when it restarts: a
/// restarted broker without persistence has lost every job in flight.
///
/// # Errors
///
/// The broker's or the network's error.
pub fn run_id(conn: &mut Connection) -> RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query(conn)?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that does not parse is refused with the URL quoted, but never
    /// its password.
    #[test]
    fn bad_urls_are_quoted_without_passwords() {
        let err = Broker::new(&BrokerConfig::new("http://nowhere"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"http://nowhere\""), "{err}");
        let err = Broker::new(&BrokerConfig::new("redis://:hunter2@[::1"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(Broker::new(&BrokerConfig::new("redis://127.0.0.1:6380/2")).is_ok());
    }

    /// The password is shown as `***`, wherever it came from; the prefix
    /// names every key.
    #[test]
    fn shown_without_the_password() {
        let broker = Broker::new(&BrokerConfig {
            prefix: "blue:".into(),
            ..BrokerConfig::new("redis://:hunter2@127.0.0.1:6380")
        })
        .expect("valid");
        assert_eq!(broker.shown(), "redis://:***@127.0.0.1:6380");
        assert!(!format!("{broker:?}").contains("hunter2"));
        assert_eq!(broker.keys().jobs(), "blue:jobs");
    }

    /// Bad prefixes, short keys, a CA without TLS, a format not spoken
    /// here and format 1 with signing are refused.
    #[test]
    fn bad_settings_are_refused() {
        let base = BrokerConfig::new("redis://127.0.0.1:6380");
        for config in [
            BrokerConfig {
                prefix: String::new(),
                ..base.clone()
            },
            BrokerConfig {
                prefix: "a b".into(),
                ..base.clone()
            },
            BrokerConfig {
                signing_keys: Some(vec![Secret::new("short")]),
                ..base.clone()
            },
            BrokerConfig {
                ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
                ..base.clone()
            },
            BrokerConfig {
                format: 3,
                ..base.clone()
            },
            BrokerConfig {
                format: 1,
                signing_keys: Some(vec![Secret::new("0123456789abcdef")]),
                ..base.clone()
            },
        ] {
            let err = Broker::new(&config).unwrap_err().to_string();
            assert!(!err.contains("short\""), "{err}");
        }
    }
}
