//! The floors of the side-by-side table: the least a server can do per
//! request, as a separate process that sumclient drives like a sumserver.
//!
//! - `bare`: a thread per connection that answers every line with `1` at
//!   once, the answer to `sumn 1`, without parsing it: what `inline` is held
//!   to.
//! - `relay`: the same, but each request first makes a round trip to an echo
//!   process of the connection's own, over a pair of pipes: the least that
//!   handing every request to another process costs, with no pool, no queue
//!   and no process shared between connections, so that each round trip is a
//!   direct hand-off between two sleeping tasks. What `procs` is held to.
//!
//! Both are this binary started again (`ysum-bench floor-server bare|relay`,
//! and `ysum-bench echo` for the echo), so that the run needs nothing but
//! itself. The echo is started with `Command`, which execs at once: this
//! server has threads, and a thread-safe way to start a process is all it
//! needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context;

/// The message a relay sends its echo per request, and gets back.
const PING: &[u8; 16] = b"sumn 1 ........\n";

/// If this process was started as a floor server or as an echo, runs it and
/// exits; returns otherwise. First thing in `main`.
pub(crate) fn run_if_requested() {
    let mut args = std::env::args().skip(1);
    let code = match (args.next().as_deref(), args.next().as_deref()) {
        (Some("echo"), None) => echo(),
        (Some("floor-server"), Some(mode @ ("bare" | "relay"))) => serve(mode == "relay"),
        _ => return,
    };
    std::process::exit(match code {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("ysum-bench: {err:#}");
            1
        }
    });
}

/// Echoes stdin to stdout until EOF.
fn echo() -> anyhow::Result<()> {
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut buf = [0u8; PING.len()];
    loop {
        match input.read_exact(&mut buf) {
            Ok(()) => {
                output.write_all(&buf)?;
                output.flush()?;
            }
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Listens on a free loopback port, says where on stdout as sumserver does,
/// and serves each connection on a thread of its own until killed.
fn serve(relay: bool) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(err) = connection(stream, relay) {
                eprintln!("floor server: {err:#}");
            }
        });
    }
    Ok(())
}

/// An echo process of one connection's own; stopped when dropped.
struct Echo {
    child: Child,
    to: ChildStdin,
    from: ChildStdout,
}

impl Echo {
    fn start() -> anyhow::Result<Echo> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("echo")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start an echo process")?;
        let to = child.stdin.take().context("no stdin")?;
        let from = child.stdout.take().context("no stdout")?;
        Ok(Echo { child, to, from })
    }

    fn round_trip(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; PING.len()];
        self.to.write_all(PING)?;
        self.from.read_exact(&mut buf)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connection(stream: TcpStream, relay: bool) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut echo = if relay { Some(Echo::start()?) } else { None };
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if let Some(echo) = &mut echo {
            echo.round_trip()?;
        }
        writer.write_all(b"1\n")?;
    }
}
