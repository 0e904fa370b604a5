//! `HOST:PORT` on a command line, as both binaries read it (`--addr`,
//! `--metrics`).

use std::net::{SocketAddr, ToSocketAddrs as _};

/// Resolves `HOST:PORT`, preferring an IPv4 address (`localhost` is
/// 127.0.0.1 as well as ::1, and IPv6 may be off).
///
/// # Errors
///
/// A message that quotes `text`: it does not resolve, or to nothing.
pub fn parse(text: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {text:?} (write HOST:PORT): {err}"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names resolve to IPv4 first; a port alone or a bad port is quoted.
    #[test]
    fn resolves_or_quotes() {
        assert_eq!(
            parse("localhost:9100").unwrap().to_string(),
            "127.0.0.1:9100"
        );
        assert_eq!(parse("[::1]:0").unwrap().to_string(), "[::1]:0");
        for bad in ["9100", "localhost:port", ""] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
