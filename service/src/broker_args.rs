//! [`BrokerArgs`]: the broker's options, the same on `sumserver` and
//! `sumworker` (each binary flattens them into its own `cli.rs`), and how
//! they become a [`BrokerConfig`]: the secrets are read from their files
//! here, once, at start-up.
//!
//! Secrets come from files so that they are in neither the command line
//! (which `ps` shows to every user) nor the environment (which a process's
//! children inherit and `/proc/PID/environ` shows to its owner); under
//! systemd, `LoadCredential=` puts them in such files.

use std::path::{Path, PathBuf};

use offload::broker::{BrokerConfig, Secret, DEFAULT_PREFIX};

/// The broker's options.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// The broker's URL (the help text says what it may hold).
    #[arg(
        long,
        env = "YSUM_BROKER",
        value_name = "URL",
        hide_env_values = true,
        help = "The Redis broker: redis://[USER:PASSWORD@]HOST:PORT[/DB], or \
                rediss://… for TLS (see docs/distributed.md). Shown everywhere with \
                its password as ***; prefer --broker-password-file to a password \
                here, which `ps` shows"
    )]
    pub broker: Option<String>,

    /// A file whose one line is the broker's password; it replaces any
    /// password in the URL, and stays out of the command line and the
    /// environment.
    #[arg(long, env = "YSUM_BROKER_PASSWORD_FILE", value_name = "FILE")]
    pub broker_password_file: Option<PathBuf>,

    /// Every key this deployment uses in the broker starts with this, so
    /// that deployments and other applications can share one Redis.
    /// Servers and workers of one deployment must agree on it.
    #[arg(long, env = "YSUM_BROKER_PREFIX", value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub broker_prefix: String,

    /// A file of signing keys, one per line, 16 bytes at least (`openssl
    /// rand -hex 32`; `#` starts a comment): every job and reply is signed
    /// (HMAC-SHA256) with the first and accepted under any, so that nobody
    /// without it can forge one. The same file on every server and worker.
    /// Without it, whoever can write to the broker is trusted.
    #[arg(long, env = "YSUM_BROKER_SECRET_FILE", value_name = "FILE")]
    pub broker_secret_file: Option<PathBuf>,

    /// rediss:// only: the certificate authorities (PEM) the broker's
    /// certificate must chain to; the system's when not given.
    #[arg(long, env = "YSUM_BROKER_CA_FILE", value_name = "FILE")]
    pub broker_ca_file: Option<PathBuf>,

    /// redis+sentinel:// only: a file whose one line is the sentinels' own
    /// password, when they ask for one (the URL's password is the Redis
    /// nodes').
    #[arg(long, env = "YSUM_BROKER_SENTINEL_PASSWORD_FILE", value_name = "FILE")]
    pub broker_sentinel_password_file: Option<PathBuf>,
}

/// A broker option that cannot be used; the message names the option and
/// the file, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum BrokerArgsError {
    /// A file could not be read (the cause is the error's source, which
    /// `{:#}` prints after it).
    #[error("cannot read {option} {path:?}")]
    Read {
        /// The option that named it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("{option} {path:?} {why}")]
    Unusable {
        /// The option that named it.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A broker option without `--broker`.
    #[error("{option} needs --broker")]
    NoBroker {
        /// The option given.
        option: &'static str,
    },
}

impl BrokerArgs {
    /// The first broker option given, if any (the prefix counts only when
    /// it is not the default), for binaries where they do not apply.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.broker.is_some(), "--broker"),
            (
                self.broker_password_file.is_some(),
                "--broker-password-file",
            ),
            (self.broker_prefix != DEFAULT_PREFIX, "--broker-prefix"),
            (self.broker_secret_file.is_some(), "--broker-secret-file"),
            (self.broker_ca_file.is_some(), "--broker-ca-file"),
            (
                self.broker_sentinel_password_file.is_some(),
                "--broker-sentinel-password-file",
            ),
        ]
        .into_iter()
        .find_map(|(given, option)| given.then_some(option))
    }

    /// The broker's configuration, the secrets read from their files;
    /// `None` without `--broker` (and without any other broker option).
    ///
    /// # Errors
    ///
    /// [`BrokerArgsError`]: a file that cannot be read or holds nothing
    /// usable, or a broker option without `--broker`.
    pub fn into_config(self) -> Result<Option<BrokerConfig>, BrokerArgsError> {
        let Some(url) = self.broker else {
            return match self.first_given() {
                Some(option) => Err(BrokerArgsError::NoBroker { option }),
                None => Ok(None),
            };
        };
        let password = self
            .broker_password_file
            .map(|path| read_password("--broker-password-file", &path))
            .transpose()?;
        let sentinel_password = self
            .broker_sentinel_password_file
            .map(|path| read_password("--broker-sentinel-password-file", &path))
            .transpose()?;
        let signing_keys = self
            .broker_secret_file
            .map(|path| read_keys(&path))
            .transpose()?;
        let ca_pem = self
            .broker_ca_file
            .map(|path| read("--broker-ca-file", &path))
            .transpose()?;
        Ok(Some(BrokerConfig {
            url,
            password,
            prefix: self.broker_prefix,
            signing_keys,
            ca_pem,
            sentinel_password,
            format: offload::broker::wire::FORMAT,
        }))
    }
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, BrokerArgsError> {
    std::fs::read(path).map_err(|source| BrokerArgsError::Read {
        option,
        path: path.to_owned(),
        source,
    })
}

/// The one line of a password file, without its line ending.
fn read_password(option: &'static str, path: &Path) -> Result<Secret, BrokerArgsError> {
    let bytes = read(option, path)?;
    let unusable = |why| BrokerArgsError::Unusable {
        option,
        path: path.to_owned(),
        why,
    };
    let mut lines = bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty());
    let password = lines.next().ok_or_else(|| unusable("is empty"))?;
    if lines.next().is_some() {
        return Err(unusable(
            "has more than one line; it must hold the password alone",
        ));
    }
    Ok(Secret::new(
        password.strip_suffix(b"\r").unwrap_or(password),
    ))
}

/// The keys of a secret file: one per line, blank lines and `#` comments
/// skipped, surrounding spaces trimmed.
fn read_keys(path: &Path) -> Result<Vec<Secret>, BrokerArgsError> {
    const OPTION: &str = "--broker-secret-file";
    let bytes = read(OPTION, path)?;
    let keys: Vec<Secret> = bytes
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .map(Secret::new)
        .collect();
    if keys.is_empty() {
        return Err(BrokerArgsError::Unusable {
            option: OPTION,
            path: path.to_owned(),
            why: "holds no key (one per line; # starts a comment)",
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<BrokerConfig>, BrokerArgsError> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .expect("parses")
            .broker
            .into_config()
    }

    fn file(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ysum-broker-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        path
    }

    /// The files are read: a password alone on its line, keys one per line
    /// with comments; the defaults are the prefix and no secrets.
    #[test]
    fn secrets_come_from_files() {
        let password = file("password", b"hunter2\r\n");
        let keys = file(
            "keys",
            b"# new\n  new-key-0123456789  \n\nold-key-0123456789\n",
        );
        let config = parse(&[
            "--broker",
            "redis://h:1",
            "--broker-password-file",
            password.to_str().unwrap(),
            "--broker-secret-file",
            keys.to_str().unwrap(),
            "--broker-prefix",
            "blue:",
        ])
        .expect("valid")
        .expect("a broker");
        assert_eq!(config.password, Some(Secret::new("hunter2")));
        assert_eq!(
            config.signing_keys,
            Some(vec![
                Secret::new("new-key-0123456789"),
                Secret::new("old-key-0123456789")
            ])
        );
        assert_eq!(config.prefix, "blue:");
        let plain = parse(&["--broker", "redis://h:1"]).unwrap().unwrap();
        assert_eq!(plain, BrokerConfig::new("redis://h:1"));
        assert!(parse(&[]).unwrap().is_none());
    }

    /// Missing, empty and two-line files are refused, naming the option and
    /// the file but not what it holds; options need --broker.
    #[test]
    fn bad_files_are_named() {
        let two = file("two-lines", b"hunter2\nhunter3\n");
        let empty = file("empty", b"\n# only a comment\n");
        for (args, expected) in [
            (
                vec!["--broker-password-file", "/nonexistent/pw"],
                "needs --broker",
            ),
            (
                vec![
                    "--broker",
                    "r://h",
                    "--broker-password-file",
                    "/nonexistent/pw",
                ],
                "cannot read --broker-password-file \"/nonexistent/pw\"",
            ),
            (
                vec![
                    "--broker",
                    "r://h",
                    "--broker-password-file",
                    two.to_str().unwrap(),
                ],
                "more than one line",
            ),
            (
                vec![
                    "--broker",
                    "r://h",
                    "--broker-secret-file",
                    empty.to_str().unwrap(),
                ],
                "holds no key",
            ),
        ] {
            let err = parse(&args).expect_err("refused").to_string();
            assert!(err.contains(expected), "{args:?}: {err}");
            assert!(!err.contains("hunter"), "{err}");
        }
    }
}
