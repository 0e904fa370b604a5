//! The Redis side of `--apply remote`, shared by the server's strategy and
//! by `sumworker`: where things live in Redis ([`keys`]), what a job and a
//! reply look like there ([`wire`]), and how to reach the broker and keep
//! reaching it ([`Broker`], [`Backoff`]).
//!
//! The picture, keys and semantics are in `docs/distributed.md`.

mod backoff;
pub mod keys;
pub mod wire;

use std::time::Duration;

use redis::{Client, Connection, RedisError, RedisResult};

pub use backoff::Backoff;

use crate::error::StartError;

/// How long opening a connection to the broker may take. A broker that is
/// down refuses at once; this bounds a broker host that does not answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a plain (non-blocking) command may wait for its reply before
/// the connection is given up as broken.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// After this many deliveries a job is answered `worker-lost` instead of
/// being handed out again: a job that kills every worker cannot loop.
pub const MAX_DELIVERIES: u64 = 3;

/// A broker address, checked, from which connections are opened.
#[derive(Debug, Clone)]
pub struct Broker {
    client: Client,
    url: String,
}

impl Broker {
    /// Checks `url` (`redis://HOST:PORT[/DB]`) without connecting.
    ///
    /// # Errors
    ///
    /// [`StartError::BadSetting`] quoting the URL when it does not parse.
    pub fn new(url: &str) -> Result<Broker, StartError> {
        let client = Client::open(url).map_err(|err| StartError::BadSetting {
            setting: "broker",
            expected: "a redis://HOST:PORT[/DB] URL",
            value: format!("{url:?} ({err})"),
        })?;
        Ok(Broker {
            client,
            url: url.to_owned(),
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens a connection whose replies may take at most `read_timeout`
    /// (give blocking commands their block time plus a margin).
    ///
    /// # Errors
    ///
    /// The broker's or the network's error.
    pub fn connect(&self, read_timeout: Duration) -> RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
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
        ensure_group(&mut conn)?;
        Ok(conn)
    }
}

/// Creates the jobs stream and the workers' group if either is missing (a
/// broker restarted without persistence has neither). The group starts at
/// the stream's beginning, so jobs added before it existed are still read.
///
/// # Errors
///
/// The broker's or the network's error; an existing group is not one.
pub fn ensure_group(conn: &mut Connection) -> RedisResult<()> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys::JOBS)
        .arg(keys::GROUP)
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

/// Milliseconds since the Unix epoch now: deadlines travel between machines
/// as wall-clock times.
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL that does not parse is refused with the URL quoted.
    #[test]
    fn bad_urls_are_quoted() {
        let err = Broker::new("http://nowhere").unwrap_err().to_string();
        assert!(err.contains("\"http://nowhere\""), "{err}");
        assert!(Broker::new("redis://127.0.0.1:6380/2").is_ok());
    }
}
