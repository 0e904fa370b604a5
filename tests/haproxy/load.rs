//! Load through the balancer with the real `sumclient`, which checks every
//! answer itself; its `--json` report read back as a [`Report`].

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::Reaped;

/// The `sumclient` binary, beside this test's own: `target/debug/deps/<test>`
/// → `target/debug/sumclient`.
///
/// Cargo builds another package's binary only when asked: `cargo test
/// --workspace` does, and so does `cargo build -p ysum-client`; when it is
/// missing the test fails saying so.
pub(crate) fn sumclient_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join("sumclient");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p ysum-client`, \
         or run `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A `sumclient` run under way.
#[derive(Debug)]
pub(crate) struct Load {
    child: Reaped,
    out: PathBuf,
    err: PathBuf,
    /// How long it is allowed to run in all.
    within: Duration,
}

impl Load {
    /// Starts `sumclient <args…> --addr <addr> --json`; `within` bounds its
    /// whole run.
    pub(crate) fn start(addr: SocketAddr, args: &[&str], within: Duration) -> Load {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "ysum-haproxy-load-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let (out, err) = (base.with_extension("json"), base.with_extension("err"));
        let child = Command::new(sumclient_path())
            .args(args)
            .args(["--addr", &addr.to_string(), "--json"])
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("create the report file"))
            .stderr(File::create(&err).expect("create the error file"))
            .spawn()
            .expect("spawn sumclient");
        Load {
            child: Reaped(child),
            out,
            err,
            within,
        }
    }

    /// Waits for the run to end and reads its report.
    ///
    /// # Panics
    ///
    /// If it runs past its time or prints no report.
    pub(crate) fn finish(mut self) -> Report {
        let status = self.child.wait(self.within);
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "sumclient ({status}) printed no JSON report ({e}); its stderr:\n{}",
                fs::read_to_string(&self.err).unwrap_or_default()
            )
        });
        let count = |key: &str| json["overall"]["counts"][key].as_u64().unwrap_or(0);
        Report {
            sent: count("sent"),
            ok: count("ok"),
            wrong: count("wrong"),
            errors: count("errors"),
            retries: json["retries"]["total"].as_u64(),
            success: status.success(),
            json,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
    }
}

/// What a `sumclient` run reported.
#[derive(Debug)]
pub(crate) struct Report {
    /// Requests sent (measured part).
    pub(crate) sent: u64,
    /// Answered right.
    pub(crate) ok: u64,
    /// Answered wrong.
    pub(crate) wrong: u64,
    /// Failed: no answer, or an `ERR` reply.
    pub(crate) errors: u64,
    /// Requests sent again on a new connection (`--retries`), when the
    /// report has the figure.
    pub(crate) retries: Option<u64>,
    /// Exit status 0: every answer right.
    pub(crate) success: bool,
    /// The whole report, for messages.
    pub(crate) json: serde_json::Value,
}

impl Report {
    /// Asserts that nothing failed and every answer was right.
    pub(crate) fn assert_all_right(&self, what: &str) {
        assert!(
            self.success
                && self.wrong == 0
                && self.errors == 0
                && self.ok == self.sent
                && self.sent > 0,
            "{what}: sent {}, ok {}, wrong {}, errors {}: {}",
            self.sent,
            self.ok,
            self.wrong,
            self.errors,
            self.json["overall"]["errors"]
        );
        assert_eq!(self.json["all_right"], true, "{what}: warmup included");
    }
}
