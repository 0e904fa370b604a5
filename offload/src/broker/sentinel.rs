//! [`Sentinels`]: a broker run by Redis Sentinel
//! (`redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER`): the sentinels are
//! asked where the primary is, the answer is checked (`ROLE` says
//! `master`), and it is kept until a connection to it fails or finds it a
//! replica, which sends the next connection back to the sentinels. So a
//! process follows a failover, planned or not, and never writes to a
//! replica.
//!
//! The sentinels are asked with the crate's plain connections, each with a
//! connect and a read timeout, one sentinel after another: a sentinel that
//! is down or cut off costs its timeouts, never a hang (the redis crate's
//! own Sentinel type opens its connections without either), and the first
//! sentinel listed being down costs nothing more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use redis::{Client, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, RedisResult};

use super::target::client_for;
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};

/// The port a sentinel listens on when the URL names none.
const SENTINEL_PORT: u16 = 26379;

/// Where the primary is, as the sentinels say.
#[derive(Debug)]
pub(crate) struct Sentinels {
    /// Each sentinel, ready to connect to.
    sentinels: Vec<ConnectionInfo>,
    /// The master's name in the sentinels' configuration.
    master: String,
    /// How to reach a node (credentials, TLS, database): the primary's
    /// address is put in it.
    node: ConnectionInfo,
    /// The CA (PEM) a `rediss+sentinel://` node's certificate must chain to.
    ca_pem: Option<Vec<u8>>,
    /// The primary last found, and a client for it while it is trusted.
    current: Mutex<Current>,
    /// Times the primary found was another than the one before.
    switches: AtomicU64,
}

/// The primary last found.
#[derive(Debug, Default)]
struct Current {
    /// Its `host:port`, kept after it is forgotten (to count a switch).
    address: Option<String>,
    /// A client for it; `None` once forgotten.
    client: Option<Client>,
}

/// A `redis+sentinel://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentinelUrl {
    /// `host:port` of each sentinel.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The master's name.
    pub(crate) master: String,
    /// A `redis://` (or `rediss://`) URL with the same user information and
    /// database, for the nodes; its host is a placeholder.
    pub(crate) node_url: String,
}

/// Why a `redis+sentinel://` URL does not parse (quoted without secrets by
/// the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SentinelUrlError {
    /// No `/MASTER` after the sentinels.
    #[error("no master name: write redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER")]
    NoMaster,
    /// No sentinel, or one whose port is not a number.
    #[error("bad sentinel address {0:?}: write HOST or HOST:PORT")]
    BadSentinel(String),
}

impl SentinelUrl {
    /// Takes `url` apart, if it is a sentinel URL (`None` otherwise).
    pub(crate) fn parse(url: &str) -> Option<Result<SentinelUrl, SentinelUrlError>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some(parse_rest(tls, rest))
    }
}

fn parse_rest(tls: bool, rest: &str) -> Result<SentinelUrl, SentinelUrlError> {
    let (user_info, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or(SentinelUrlError::NoMaster)?;
    // The master's name, then an optional database: MASTER[/DB].
    let (master, db) = match path.split_once('/') {
        Some((master, db)) => (master, Some(db)),
        None => (path, None),
    };
    if master.is_empty() {
        return Err(SentinelUrlError::NoMaster);
    }
    let sentinels = hosts
        .split(',')
        .map(|host| {
            let bad = || SentinelUrlError::BadSentinel(host.to_owned());
            if host.is_empty() {
                return Err(bad());
            }
            match host.rsplit_once(':') {
                Some((name, port)) if !name.is_empty() => {
                    Ok((name.to_owned(), port.parse().map_err(|_| bad())?))
                }
                Some(_) => Err(bad()),
                None => Ok((host.to_owned(), SENTINEL_PORT)),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scheme = if tls { "rediss" } else { "redis" };
    let user_info = user_info.map_or(String::new(), |info| format!("{info}@"));
    let db = db.map_or(String::new(), |db| format!("/{db}"));
    Ok(SentinelUrl {
        sentinels,
        master: master.to_owned(),
        node_url: format!("{scheme}://{user_info}primary.invalid:6379{db}"),
    })
}

impl Sentinels {
    /// Sentinels at `sentinels` (their own password, if they ask for one,
    /// is `sentinel_auth`), for master `master`, whose nodes are reached as
    /// `node` says.
    pub(crate) fn new(
        sentinels: Vec<ConnectionInfo>,
        master: String,
        node: ConnectionInfo,
        ca_pem: Option<Vec<u8>>,
    ) -> Sentinels {
        Sentinels {
            sentinels,
            master,
            node,
            ca_pem,
            current: Mutex::new(Current::default()),
            switches: AtomicU64::new(0),
        }
    }

    /// A client for the primary: the one last found, or a new one from the
    /// sentinels.
    ///
    /// # Errors
    ///
    /// When no sentinel answers with a primary that says it is one.
    pub(crate) fn primary(&self) -> RedisResult<Client> {
        if let Some(client) = &self.current().client {
            return Ok(client.clone());
        }
        let (address, client) = self.discover()?;
        let mut current = self.current();
        if current
            .address
            .as_ref()
            .is_some_and(|known| *known != address)
        {
            self.switches.fetch_add(1, Ordering::AcqRel);
        }
        current.address = Some(address);
        current.client = Some(client.clone());
        Ok(client)
    }

    /// The primary last found failed or turned out a replica: the next
    /// connection asks the sentinels again. The address is kept, to count
    /// a switch when another comes.
    pub(crate) fn forget(&self) {
        self.current().client = None;
    }

    /// `host:port` of the primary last found, if any.
    pub(crate) fn primary_address(&self) -> Option<String> {
        self.current().address.clone()
    }

    /// Times the primary changed, as this process saw it: also the
    /// generation of the connections, since one opened before the last
    /// change goes to a node that is no longer (or soon no longer) the
    /// primary.
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Acquire)
    }

    /// Asks the sentinels (the first that answers) where the primary is
    /// now; if elsewhere than the one last found (a failover, planned or
    /// not), forgets that one and counts the switch, so that connections
    /// opened before are known to be stale. A planned switch leaves the old
    /// primary taking writes until the sentinels demote it, seconds later:
    /// every process must leave it at once, not then.
    pub(crate) fn check(&self) {
        let named = self.sentinels.iter().find_map(|sentinel| {
            ask(sentinel, &self.master, self.ca_pem.as_deref())
                .ok()
                .map(|(host, port)| format!("{host}:{port}"))
        });
        let Some(named) = named else { return };
        let mut current = self.current();
        if current
            .address
            .as_ref()
            .is_some_and(|known| *known != named)
        {
            current.address = Some(named);
            current.client = None;
            self.switches.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks each sentinel in turn where the primary is, until one names a
    /// node that says it is the primary.
    fn discover(&self) -> RedisResult<(String, Client)> {
        let mut last: Option<RedisError> = None;
        for sentinel in &self.sentinels {
            let found =
                ask(sentinel, &self.master, self.ca_pem.as_deref()).and_then(|(host, port)| {
                    let client = self.client_for(&host, port)?;
                    check_primary(&client)?;
                    Ok((format!("{host}:{port}"), client))
                });
            match found {
                Ok(found) => return Ok(found),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Io, "no sentinel to ask"))))
    }

    fn client_for(&self, host: &str, port: u16) -> RedisResult<Client> {
        let addr = match self.node.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        client_for(self.node.clone().set_addr(addr), self.ca_pem.as_deref())
    }
}

/// One sentinel's answer to `SENTINEL GET-MASTER-ADDR-BY-NAME`.
fn ask(sentinel: &ConnectionInfo, master: &str, ca: Option<&[u8]>) -> RedisResult<(String, u16)> {
    let client = client_for(sentinel.clone(), ca)?;
    let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let found: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master)
        .query(&mut conn)?;
    found.ok_or_else(|| {
        RedisError::from((
            ErrorKind::Io,
            "the sentinel knows no such master",
            master.to_owned(),
        ))
    })
}

/// Whether the node `client` reaches says it is a primary (`ROLE`).
fn check_primary(client: &Client) -> RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let role: redis::Value = redis::cmd("ROLE").query(&mut conn)?;
    let is_master = match &role {
        redis::Value::Array(parts) => matches!(
            parts.first(),
            Some(redis::Value::BulkString(word)) if word == b"master"
        ),
        _ => false,
    };
    if is_master {
        Ok(())
    } else {
        Err(RedisError::from((
            ErrorKind::Io,
            "the node the sentinels named is not a primary (yet)",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sentinel URLs come apart into sentinels, master and a node URL with
    /// the same credentials and database.
    #[test]
    fn urls_come_apart() {
        let url = SentinelUrl::parse("redis+sentinel://:pw@s1:26380,s2,10.0.0.3:1/ysum/2")
            .expect("a sentinel URL")
            .expect("valid");
        assert_eq!(
            url.sentinels,
            [
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), SENTINEL_PORT),
                ("10.0.0.3".to_owned(), 1)
            ]
        );
        assert_eq!(url.master, "ysum");
        assert_eq!(url.node_url, "redis://:pw@primary.invalid:6379/2");
        let tls = SentinelUrl::parse("rediss+sentinel://h:1/m")
            .unwrap()
            .unwrap();
        assert_eq!(tls.node_url, "rediss://primary.invalid:6379");
        assert!(SentinelUrl::parse("redis://h:1").is_none());
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h:x/m",
            "redis+sentinel://,h/m",
        ] {
            assert!(SentinelUrl::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
