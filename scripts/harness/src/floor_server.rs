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
//!   direct hand-off between two sleeping tasks.
//! - `shared`: the relay, but with one echo process per core shared by every
//!   connection, as `procs` shares its workers: a request takes a free echo,
//!   or waits for one behind a mutex. The least a pool of that many
//!   processes costs, with no queue wait, timeout or isolation to keep:
//!   what `procs` is held to.
//!
//! All are this binary started again (`ysum-bench floor-server MODE`,
//! and `ysum-bench echo` for the echo), so that the run needs nothing but
//! itself. The echo is started with `Command`, which execs at once: this
//! server has threads, and a thread-safe way to start a process is all it
//! needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::Context;

/// The message a relay sends its echo per request, and gets back.
const PING: &[u8; 16] = b"sumn 1 ........\n";

/// If this process was started as a floor server or as an echo, runs it and
/// exits; returns otherwise. First thing in `main`.
pub(crate) fn run_if_requested() {
    let mut args = std::env::args().skip(1);
    let code = match (args.next().as_deref(), args.next().as_deref()) {
        (Some("echo"), None) => echo(),
        (Some("floor-server"), Some("bare")) => serve(Mode::Bare),
        (Some("floor-server"), Some("relay")) => serve(Mode::Relay),
        (Some("floor-server"), Some("shared")) => shared_echoes().and_then(serve),
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

/// What a floor server does per request besides answering.
#[derive(Clone)]
enum Mode {
    /// Nothing.
    Bare,
    /// A round trip to the connection's own echo.
    Relay,
    /// A round trip to one of these echoes, shared by every connection.
    Shared(Arc<Vec<Mutex<Echo>>>),
}

/// One echo per core, for `shared`.
fn shared_echoes() -> anyhow::Result<Mode> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let echoes = (0..cores)
        .map(|_| Echo::start().map(Mutex::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Mode::Shared(Arc::new(echoes)))
}

/// Listens on a free loopback port, says where on stdout as sumserver does,
/// and serves each connection on a thread of its own until killed.
fn serve(mode: Mode) -> anyhow::Result<()> {
    // It stops when its stdin closes: the echoes it shares are stopped and
    // reaped first (those of relay connections went with their connections).
    let shared = mode.clone();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        if let Mode::Shared(echoes) = shared {
            for echo in echoes.iter() {
                let echo = echo.lock().unwrap_or_else(|p| p.into_inner());
                echo.stop();
            }
        }
        std::process::exit(0);
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for (index, stream) in listener.incoming().enumerate() {
        let (stream, mode) = (stream?, mode.clone());
        std::thread::spawn(move || {
            if let Err(err) = connection(stream, mode, index) {
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

impl Echo {
    /// Kills and reaps the echo (it is this process's child).
    fn stop(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves one connection; `index` spreads the connections' first choice of
/// a shared echo.
fn connection(stream: TcpStream, mode: Mode, index: usize) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut own = match mode {
        Mode::Relay => Some(Echo::start()?),
        Mode::Bare | Mode::Shared(_) => None,
    };
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut next = index;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if let Some(echo) = &mut own {
            echo.round_trip()?;
        }
        if let Mode::Shared(echoes) = &mode {
            // A free echo if there is one, else wait for one, in turn.
            let free =
                (0..echoes.len()).find_map(|i| echoes[(next + i) % echoes.len()].try_lock().ok());
            let mut echo = match free {
                Some(echo) => echo,
                None => echoes[next % echoes.len()]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            };
            next += 1;
            echo.round_trip()?;
        }
        writer.write_all(b"1\n")?;
    }
}
