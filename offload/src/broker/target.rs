//! [`Target`]: what a connection to the broker is opened to: one Redis
//! (`redis://`, `rediss://`), or the primary that Redis Sentinel names
//! (`redis+sentinel://`, [`Sentinels`]).

use std::sync::Arc;

use redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, RedisResult};

use super::config::{redact, BrokerConfig, Secret};
use super::sentinel::{SentinelUrl, Sentinels};
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT};
use crate::error::StartError;

/// Where connections go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// One Redis (boxed: a client is large beside an `Arc`).
    Direct(Box<Client>),
    /// The primary the sentinels name, found again after a failover.
    Sentinel(Arc<Sentinels>),
}

impl Target {
    /// Builds the target `config` names, without connecting; `shown` is the
    /// URL without its password, for errors.
    pub(crate) fn new(config: &BrokerConfig, shown: &str) -> Result<Target, StartError> {
        let bad = |expected, why: String| StartError::BadSetting {
            setting: "broker",
            expected,
            value: format!("{shown:?} ({})", redact(&why)),
        };
        let password = config.password.as_ref().map(utf8).transpose()?;
        if let Some(parsed) = SentinelUrl::parse(&config.url) {
            let parsed = parsed.map_err(|err| {
                bad(
                    "a redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER URL",
                    err.to_string(),
                )
            })?;
            let node = node_info(parsed.node_url.as_str(), password)
                .map_err(|err| bad("a usable broker URL", err.to_string()))?;
            let tls = matches!(node.addr(), redis::ConnectionAddr::TcpTls { .. });
            check_ca(config, tls, shown)?;
            let sentinel_password = config.sentinel_password.as_ref().map(utf8).transpose()?;
            let sentinels = parsed
                .sentinels
                .iter()
                .map(|(host, port)| {
                    let scheme = if tls { "rediss" } else { "redis" };
                    node_info(format!("{scheme}://{host}:{port}").as_str(), None).map(|info| {
                        match &sentinel_password {
                            Some(password) => {
                                let settings = info.redis_settings().clone().set_password(password);
                                info.set_redis_settings(settings)
                            }
                            None => info,
                        }
                    })
                })
                .collect::<RedisResult<Vec<_>>>()
                .map_err(|err| bad("usable sentinel addresses", err.to_string()))?;
            return Ok(Target::Sentinel(Arc::new(Sentinels::new(
                sentinels,
                parsed.master,
                node,
                config.ca_pem.clone(),
            ))));
        }
        if config.sentinel_password.is_some() {
            return Err(StartError::BadSetting {
                setting: "broker sentinel password",
                expected: "given only with a redis+sentinel:// URL",
                value: shown.to_owned(),
            });
        }
        let info = node_info(config.url.as_str(), password).map_err(|err| {
            bad(
                "a redis://HOST:PORT[/DB] or rediss://… URL",
                err.to_string(),
            )
        })?;
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        check_ca(config, tls, shown)?;
        let client = client_for(info, config.ca_pem.as_deref())
            .map_err(|err| bad("a usable broker address", err.to_string()))?;
        Ok(Target::Direct(Box::new(client)))
    }

    /// Opens a connection to the broker (the primary, under Sentinel: the
    /// one last found if it still says it is one, else the one the
    /// sentinels name now).
    pub(crate) fn connect(&self) -> RedisResult<Connection> {
        match self {
            Target::Direct(client) => client.get_connection_with_timeout(CONNECT_TIMEOUT),
            Target::Sentinel(sentinels) => {
                // The primary last found may have died or been demoted
                // since: then once more, from the sentinels.
                let first = sentinels
                    .primary()
                    .and_then(|client| connect_primary(&client));
                match first {
                    Ok(conn) => Ok(conn),
                    Err(_) => {
                        sentinels.forget();
                        let client = sentinels.primary()?;
                        connect_primary(&client)
                    }
                }
            }
        }
    }

    /// `host:port` of the primary (under Sentinel), as last found.
    pub(crate) fn primary(&self) -> Option<String> {
        match self {
            Target::Direct(_) => None,
            Target::Sentinel(sentinels) => sentinels.primary_address(),
        }
    }

    /// Times this process saw the primary change (under Sentinel): the
    /// generation of connections.
    pub(crate) fn failovers(&self) -> u64 {
        match self {
            Target::Direct(_) => 0,
            Target::Sentinel(sentinels) => sentinels.switches(),
        }
    }

    /// Under Sentinel, asks where the primary is now (see
    /// [`Sentinels::check`]); nothing otherwise.
    pub(crate) fn check(&self) {
        if let Target::Sentinel(sentinels) = self {
            sentinels.check();
        }
    }
}

/// A connection to `client`'s node, if it still says it is the primary:
/// nothing is ever written to a replica.
fn connect_primary(client: &Client) -> RedisResult<Connection> {
    let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    let role: redis::Value = redis::cmd("ROLE").query(&mut conn)?;
    match role {
        redis::Value::Array(parts) if matches!(parts.first(), Some(redis::Value::BulkString(w)) if w == b"master") => {
            Ok(conn)
        }
        _ => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the node is no longer the primary",
        ))),
    }
}

/// A node's connection settings from `url`, with `password` (from a file)
/// in place of the URL's, and no `CLIENT SETINFO` on connect.
fn node_info(url: &str, password: Option<String>) -> RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
    if let Some(password) = password {
        settings = settings.set_password(password);
    }
    Ok(info.set_redis_settings(settings))
}

fn utf8(secret: &Secret) -> Result<String, StartError> {
    String::from_utf8(secret.expose().to_vec()).map_err(|_| StartError::BadSetting {
        setting: "broker password",
        expected: "UTF-8 text",
        value: "bytes that are not (not shown)".into(),
    })
}

fn check_ca(config: &BrokerConfig, tls: bool, shown: &str) -> Result<(), StartError> {
    if config.ca_pem.is_some() && !tls {
        return Err(StartError::BadSetting {
            setting: "broker CA file",
            expected: "given only with a rediss:// URL (TLS)",
            value: shown.to_owned(),
        });
    }
    Ok(())
}

/// A client for `info`, trusting the CA of `--broker-ca-file` for TLS if
/// one was given (else the system's roots).
pub(super) fn client_for(info: ConnectionInfo, ca: Option<&[u8]>) -> RedisResult<Client> {
    match ca {
        Some(ca) => Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        None => Client::open(info),
    }
}
