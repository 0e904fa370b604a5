//! The examples of `docs/protocol.md`, run against the real `sumserver`, so
//! that the document and the server cannot drift apart unnoticed.
//!
//! Two forms are checked. A fenced block whose info string is `exchange`
//! (words after it are the server's flags) holds request lines, each
//! followed by the exact reply; a block whose first request starts with a
//! digit speaks the seed dialect, one connection per request, and the other
//! blocks the line dialect, one connection per block. And every
//! `` `request` → `reply` `` in the text (the table of requests) is one
//! line-dialect exchange. Durations in replies (`202.8ms`) are compared as
//! durations, not digits.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Server;

/// The longest any one reply may take here.
const REPLY_WAIT: Duration = Duration::from_secs(20);

/// One request and the reply the document promises.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exchange {
    /// Where in the document it is (line number), for messages.
    line: usize,
    /// The request, without its newline.
    request: String,
    /// The reply, without its newline.
    reply: String,
}

/// The examples of one session: the server flags and the exchanges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    /// Flags for the server, beyond the address.
    flags: Vec<String>,
    /// In order.
    exchanges: Vec<Exchange>,
}

/// Reads the `exchange` blocks and the `` `a` → `b` `` examples of `doc`.
fn examples(doc: &str) -> Vec<Session> {
    let mut sessions = Vec::new();
    let mut table = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        if let Some(info) = line.strip_prefix("```exchange") {
            let flags = info.split_whitespace().map(str::to_owned).collect();
            let mut body = Vec::new();
            for (number, text) in lines.by_ref() {
                if text.starts_with("```") {
                    break;
                }
                body.push((number + 1, text));
            }
            assert!(
                body.len() % 2 == 0 && !body.is_empty(),
                "docs/protocol.md:{}: an exchange block needs request and reply lines in pairs",
                index + 1
            );
            let exchanges = body
                .chunks(2)
                .map(|pair| Exchange {
                    line: pair[0].0,
                    request: pair[0].1.to_owned(),
                    reply: pair[1].1.to_owned(),
                })
                .collect();
            sessions.push(Session { flags, exchanges });
        } else if line.starts_with("```") {
            // Another block: skip to its end.
            for (_, text) in lines.by_ref() {
                if text.starts_with("```") {
                    break;
                }
            }
        } else {
            table.extend(arrows(line, index + 1));
        }
    }
    if !table.is_empty() {
        sessions.push(Session {
            flags: Vec::new(),
            exchanges: table,
        });
    }
    sessions
}

/// The `` `request` → `reply` `` examples on one line of text.
fn arrows(line: &str, number: usize) -> Vec<Exchange> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some((before, after)) = rest.split_once("` → `") {
        let request = before.rsplit_once('`').map_or(before, |(_, r)| r);
        let Some((reply, tail)) = after.split_once('`') else {
            break;
        };
        found.push(Exchange {
            line: number,
            request: request.to_owned(),
            reply: reply.to_owned(),
        });
        rest = tail;
    }
    found
}

/// A reply with each duration (`202.814898ms`, `3s`) replaced by a mark.
fn normalised(reply: &str) -> String {
    let words: Vec<String> = reply
        .split(' ')
        .map(|word| {
            let number_end = word
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(word.len());
            let unit = &word[number_end..];
            let is_duration = number_end > 0
                && ["ns", "µs", "us", "ms", "s"].contains(&unit.trim_end_matches([',', ';']));
            if is_duration {
                "<duration>".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// Sends a seed-dialect request on a new connection and reads to EOF.
fn seed_reply(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(REPLY_WAIT)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("read to EOF");
    String::from_utf8(reply).expect("UTF-8 reply")
}

/// Runs one session against `addr` and returns the mismatches.
fn check(addr: &str, session: &Session) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut compare = |exchange: &Exchange, got: &str| {
        if normalised(got) != normalised(&exchange.reply) {
            wrong.push(format!(
                "docs/protocol.md:{}: {:?} got {got:?}, the document says {:?}",
                exchange.line, exchange.request, exchange.reply
            ));
        }
    };
    let seed = session.exchanges[0]
        .request
        .starts_with(|c: char| c.is_ascii_digit());
    if seed {
        for exchange in &session.exchanges {
            compare(exchange, &seed_reply(addr, &exchange.request));
        }
        return wrong;
    }
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(REPLY_WAIT)).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    for exchange in &session.exchanges {
        writeln!(writer, "{}", exchange.request).expect("send");
        let mut reply = String::new();
        reader.read_line(&mut reply).expect("read a reply");
        compare(exchange, reply.trim_end_matches('\n'));
    }
    wrong
}

/// Every example of docs/protocol.md gets exactly the reply it shows.
#[test]
fn protocol_doc_examples_hold() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("read docs/protocol.md");
    let sessions = examples(&doc);
    let count: usize = sessions.iter().map(|s| s.exchanges.len()).sum();
    assert!(
        sessions.len() >= 4 && count >= 10,
        "too few examples found ({count} in {} sessions): has the format changed?",
        sessions.len()
    );
    let mut servers: BTreeMap<Vec<String>, Server> = BTreeMap::new();
    let mut wrong = Vec::new();
    for session in &sessions {
        let server = servers.entry(session.flags.clone()).or_insert_with(|| {
            let flags: Vec<&str> = session.flags.iter().map(String::as_str).collect();
            Server::start_with(&flags)
        });
        wrong.extend(check(&server.addr(), session));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The example format is read as documented: blocks with flags, pairs, the
/// table's arrows; durations compare as durations.
#[test]
fn example_format() {
    let doc = "x `sumn 1` → `1` and `ping` → `pong`\n\
               ```exchange --job-timeout 1s\nprime 7\ntrue\n```\n\
               ```text\n`a` → `b`\n```\n";
    let sessions = examples(doc);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0].flags, ["--job-timeout", "1s"]);
    assert_eq!(sessions[0].exchanges[0].request, "prime 7");
    assert_eq!(sessions[0].exchanges[0].line, 3);
    let table: Vec<(&str, &str)> = sessions[1]
        .exchanges
        .iter()
        .map(|e| (e.request.as_str(), e.reply.as_str()))
        .collect();
    assert_eq!(table, [("sumn 1", "1"), ("ping", "pong")]);
    assert_eq!(
        normalised("timed out after 202.814898ms"),
        normalised("timed out after 200.4ms")
    );
    assert_ne!(normalised("sumn 1"), normalised("sumn 2"));
}
