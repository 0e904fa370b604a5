//! [`BrokerConfig`]: how to reach the broker and what to trust there, as
//! plain data that the binaries build from their command lines; and
//! [`Secret`], which holds a password or a key without ever printing it.

use std::fmt;

/// The key prefix when none is given: every key ysum writes starts with it.
pub const DEFAULT_PREFIX: &str = "ysum:";

/// Bytes that must never be printed: a password, a signing key.
///
/// Its `Debug` shows `***`, so a configuration that holds one can be logged
/// or put in an error whole without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The bytes themselves, for the one place that uses them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Everything needed to reach the broker and to trust what comes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `redis://[USER[:PASSWORD]@]HOST:PORT[/DB]`, `rediss://…` for TLS.
    /// Never printed as given: see [`redact`].
    pub url: String,
    /// The password, when it comes from a file (`--broker-password-file`);
    /// it replaces any password in the URL.
    pub password: Option<Secret>,
    /// Every key is under this prefix (`--broker-prefix`).
    pub prefix: String,
    /// The keys that sign and check jobs and replies
    /// (`--broker-secret-file`): the first signs, every one is accepted, so
    /// that a new key can be rolled out before the old one is retired.
    /// `None`: nothing is signed, and whoever can write to the broker is
    /// trusted.
    pub signing_keys: Option<Vec<Secret>>,
    /// The certificate authorities (PEM) that a `rediss://` broker's
    /// certificate must chain to (`--broker-ca-file`); `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// `redis+sentinel://` only: the sentinels' own password
    /// (`--broker-sentinel-password-file`), when they ask for one.
    pub sentinel_password: Option<Secret>,
    /// The newest job format this process speaks (`sumserver
    /// --job-format`): a server writes its jobs in it, a worker leaves an
    /// entry in a newer one for a worker that speaks it. Below
    /// [`FORMAT`](super::wire::FORMAT) only while a fleet is upgraded (see
    /// docs/operations.md).
    pub format: u32,
}

impl BrokerConfig {
    /// A broker at `url` with the default prefix, no password file, no
    /// signing and the system's certificate authorities.
    pub fn new(url: impl Into<String>) -> Self {
        BrokerConfig {
            url: url.into(),
            password: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            signing_keys: None,
            ca_pem: None,
            sentinel_password: None,
            format: super::wire::FORMAT,
        }
    }
}

/// `url` with its password replaced by `***` (`redis://:***@host:6380`), so
/// that it can go into a log line, `stats` or an error reply. A URL without
/// a password is returned as it is.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The user information ends at the last `@` before the query. A path
    // is not looked for: a password with a raw `/` would hide its `@`, and
    // showing too little is the safe mistake.
    let authority_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user_info = &rest[..at];
    let user = match user_info.split_once(':') {
        Some((user, _password)) => user,
        // `redis://NAME@host`: a user name alone, nothing secret.
        None => return url.to_owned(),
    };
    format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passwords are replaced wherever they sit; URLs without one are kept.
    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            ("redis://:hunter2@h:6380", "redis://:***@h:6380"),
            ("redis://app:hunter2@h:6380/2", "redis://app:***@h:6380/2"),
            ("rediss://:p@ss:w@rd@h:1/0", "rediss://:***@h:1/0"),
            ("redis://h:6380", "redis://h:6380"),
            ("redis://app@h:6380", "redis://app@h:6380"),
            ("not a url", "not a url"),
            ("redis://h:1/0?x=a@b", "redis://h:1/0?x=a@b"),
            ("redis://:pa/ss@h:1/0", "redis://:***@h:1/0"),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    /// A configuration prints its secrets as `***`.
    #[test]
    fn secrets_never_print() {
        let config = BrokerConfig {
            password: Some(Secret::new("hunter2")),
            signing_keys: Some(vec![Secret::new("k3y-k3y-k3y-k3y-k3y")]),
            ..BrokerConfig::new("redis://h:1")
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("k3y"),
            "{shown}"
        );
        assert!(shown.contains("***"), "{shown}");
    }
}
