//! HTTP/1.0 to a metrics endpoint (`/metrics`, `/healthz`, `/readyz`), by
//! hand: one request, the status, the `Content-Type` and the body. Shared by
//! the end-to-end suites (through `server.rs`) and sumclient's metrics test.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest wait for a connection or an answer.
const WAIT: Duration = Duration::from_secs(10);

/// Sends `request` (a whole HTTP/1.0 request) to `addr`: the status, the
/// `Content-Type` and the body of the answer.
///
/// # Panics
///
/// When the endpoint does not answer in time, or not in HTTP.
pub(crate) fn exchange(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
    stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|err| panic!("send to {addr}: {err}"));
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .unwrap_or_else(|err| panic!("read from {addr}: {err}"));
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// `GET path`, with an `Accept` header when given.
pub(crate) fn http_get(
    addr: SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let accept = accept
        .map(|value| format!("Accept: {value}\r\n"))
        .unwrap_or_default();
    exchange(addr, &format!("GET {path} HTTP/1.0\r\n{accept}\r\n"))
}

/// `GET /metrics` at `addr`: the body of a 200 answer.
///
/// # Panics
///
/// On another status.
pub(crate) fn scrape(addr: SocketAddr) -> String {
    let (status, _, body) = http_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body
}
