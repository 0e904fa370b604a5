//! `--accept-proxy`: the PROXY protocol header (version 1, text, or 2,
//! binary) that a balancer such as HAProxy (`send-proxy-v2`) puts at the
//! start of each connection, naming the client it stands for. The header is
//! parsed by the `ppp` crate; this module decides how many bytes to read
//! next, so that neither I/O model ever reads past the header (the seed
//! dialect's single first read must start right after it).
//!
//! Both models use [`parse`] on the bytes read so far, read
//! [`Progress::Partial`]'s `more` bytes at most, and try again.

use std::net::SocketAddr;

use ppp::v1;
use ppp::v2;

use crate::protocol::{quote, Code, Reject};

/// A version 1 header starts with this.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The shortest version 1 header, `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;

/// A version 1 header is at most this long, `\r\n` included (the spec's
/// worst case, TCP6 with the longest addresses).
const V1_MAX: usize = 107;

/// A version 2 header starts with this signature.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A version 2 header's fixed part: the signature, version and command,
/// family and protocol, and the length of the rest.
const V2_FIXED: usize = 16;

/// The longest version 2 header accepted: the addresses of any family and
/// room for a few TLVs. HAProxy's `send-proxy-v2` sends 28 bytes for IPv4
/// and 52 for IPv6 unless told to add TLVs.
const V2_MAX: usize = 536;

/// How far a connection's first bytes are towards a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A whole header, exactly the bytes given.
    Complete {
        /// The client it names; `None` for a header without an address
        /// (v2 `LOCAL`, such as HAProxy's health checks, or v1 `UNKNOWN`):
        /// the connection is the proxy's own, and its peer is the client.
        client: Option<SocketAddr>,
    },
    /// Not yet: read at most this many more bytes, then parse again.
    Partial {
        /// Bytes still missing, at least 1; reading no more than this never
        /// reads past the header.
        more: usize,
    },
    /// Not a header, or a malformed one: the reply that refuses it.
    Invalid(Reject),
}

/// Where `bytes`, the first a connection sent, stand.
pub fn parse(bytes: &[u8]) -> Progress {
    if bytes.is_empty() {
        // The first byte tells the versions apart; a version 1 header may
        // be shorter than a version 2's fixed part.
        return Progress::Partial { more: 1 };
    }
    if starts_like(bytes, V2_SIGNATURE) {
        parse_v2(bytes)
    } else if starts_like(bytes, V1_PREFIX) {
        parse_v1(bytes)
    } else {
        refuse(format!(
            "expected a PROXY protocol header (the server runs with --accept-proxy); \
             the connection began with {}",
            quote(bytes)
        ))
    }
}

fn parse_v2(bytes: &[u8]) -> Progress {
    if bytes.len() < V2_FIXED {
        return Progress::Partial {
            more: V2_FIXED - bytes.len(),
        };
    }
    let total = V2_FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if total > V2_MAX {
        return refuse(format!(
            "PROXY v2 header of {total} bytes, over the {V2_MAX} accepted"
        ));
    }
    if bytes.len() < total {
        return Progress::Partial {
            more: total - bytes.len(),
        };
    }
    match v2::Header::try_from(&bytes[..total]) {
        Ok(header) => Progress::Complete {
            client: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                _ => None,
            },
        },
        Err(err) => refuse(format!("bad PROXY v2 header: {err}")),
    }
}

fn parse_v1(bytes: &[u8]) -> Progress {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return if bytes.len() < V1_MIN {
            Progress::Partial {
                more: V1_MIN - bytes.len(),
            }
        } else if bytes.len() >= V1_MAX {
            refuse(format!(
                "PROXY v1 header without \\r\\n in its first {V1_MAX} bytes: {}",
                quote(bytes)
            ))
        } else {
            // The end can be any byte from here on: one at a time.
            Progress::Partial { more: 1 }
        };
    };
    let Some(end) = (end >= V1_MIN - 1).then_some(end) else {
        return refuse(format!(
            "PROXY v1 header too short: {}",
            quote(&bytes[..=end])
        ));
    };
    let header = &bytes[..=end];
    if !header.ends_with(b"\r\n") {
        return refuse(format!(
            "PROXY v1 header must end in \\r\\n: {}",
            quote(header)
        ));
    }
    match v1::Header::try_from(header) {
        Ok(header) => Progress::Complete {
            client: match header.addresses {
                v1::Addresses::Tcp4(ip) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                v1::Addresses::Tcp6(ip) => {
                    Some(SocketAddr::from((ip.source_address, ip.source_port)))
                }
                v1::Addresses::Unknown => None,
            },
        },
        Err(err) => refuse(format!("bad PROXY v1 header {}: {err}", quote(header))),
    }
}

/// Whether `bytes` agree with `prefix` as far as either goes.
fn starts_like(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

fn refuse(detail: String) -> Progress {
    Progress::Invalid(Reject::new(Code::BadRequest, detail))
}

/// Logs whom a connection stands for once its header is read: the real
/// client, or its peer (the proxy) when the header names none.
pub fn log_client(client: Option<SocketAddr>, peer: Option<SocketAddr>) {
    match (client, peer) {
        (Some(client), Some(peer)) => tracing::debug!(%client, via = %peer, "PROXY header"),
        (Some(client), None) => tracing::debug!(%client, "PROXY header"),
        (None, Some(peer)) => tracing::debug!(client = %peer, "PROXY header without address"),
        (None, None) => tracing::debug!("PROXY header without address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy's `send-proxy-v2` header for an IPv4 client.
    fn v2_ipv4(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
        let header = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (client, server),
        )
        .build()
        .expect("a valid header");
        assert_eq!(header.len(), 28);
        header
    }

    /// Complete headers of both versions give the client they name.
    #[test]
    fn headers_name_the_client() {
        let client: SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let server: SocketAddr = "10.0.0.1:10000".parse().unwrap();
        assert_eq!(
            parse(&v2_ipv4(client, server)),
            Progress::Complete {
                client: Some(client)
            }
        );
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 10000\r\n";
        assert_eq!(
            parse(v1),
            Progress::Complete {
                client: Some(client)
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 10000\r\n";
        assert_eq!(
            parse(v6),
            Progress::Complete {
                client: Some("[2001:db8::7]:40000".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Progress::Complete { client: None }
        );
    }

    /// A health check's v2 LOCAL header names nobody and is accepted.
    #[test]
    fn local_header_is_accepted() {
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .expect("a valid header");
        assert_eq!(parse(&local), Progress::Complete { client: None });
    }

    /// Fed as `Partial` asks, a header is read to its last byte and never
    /// past it, the shortest included.
    #[test]
    fn partial_headers_ask_for_no_more_than_they_need() {
        let client: SocketAddr = "198.51.100.9:1234".parse().unwrap();
        let v2 = v2_ipv4(client, "127.0.0.1:1".parse().unwrap());
        let v1 = b"PROXY TCP4 198.51.100.9 127.0.0.1 1234 1\r\n".to_vec();
        let mut read = Vec::new();
        let unknown = b"PROXY UNKNOWN\r\n";
        while let Progress::Partial { more } = parse(&read) {
            assert!(read.len() + more <= unknown.len());
            read.extend_from_slice(&unknown[read.len()..read.len() + more]);
        }
        assert_eq!(parse(&read), Progress::Complete { client: None });
        for header in [v2, v1] {
            let mut read = Vec::new();
            loop {
                match parse(&read) {
                    Progress::Partial { more } => {
                        assert!(more >= 1 && read.len() + more <= header.len());
                        read.extend_from_slice(&header[read.len()..read.len() + more]);
                    }
                    Progress::Complete { client: got } => {
                        assert_eq!(got, Some(client));
                        assert_eq!(read.len(), header.len());
                        break;
                    }
                    Progress::Invalid(reject) => panic!("{reject}"),
                }
            }
        }
    }

    /// A connection that speaks without a header is refused at its first
    /// byte that cannot begin one, quoting what it sent; malformed headers
    /// are refused too.
    #[test]
    fn no_header_or_a_bad_one_is_refused() {
        for (bytes, quoted) in [
            (&b"ping\n"[..], "\"ping\\n\""),
            (b"25000", "\"25000\""),
            (b"PING\n", "\"PING\\n\""),
            (b"PROXY TCP\r\n", "too short"),
            (b"PROXY TCP4 1.2.3.4\r\n", "bad PROXY v1 header"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "must end in"),
            (
                b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n",
                "bad PROXY v1 header",
            ),
        ] {
            match parse(bytes) {
                Progress::Invalid(reject) => {
                    assert_eq!(reject.code, Code::BadRequest);
                    let line = reject.to_string();
                    assert!(line.starts_with("ERR bad-request "), "{line}");
                    assert!(line.contains(quoted), "{line} should contain {quoted}");
                }
                other => panic!("{bytes:?} gave {other:?}"),
            }
        }
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&huge), Progress::Invalid(_)));
        let long_v1 = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long_v1), Progress::Invalid(_)));
    }
}
