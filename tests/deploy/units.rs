//! The shipped files of `deploy/systemd/`, the ways they are installed
//! together, and copies of them in a scratch folder that start the binaries
//! of this build.
//!
//! Why copies: `systemd-analyze verify` checks that `ExecStart=` names an
//! executable, and the shipped units name `/usr/local/bin/…`, where the
//! binaries are only once installed (docs/operations.md). So each file is
//! copied with its one `ExecStart=` line pointing at the binary cargo built
//! (after checking it names the installed path) and every other byte as
//! shipped; drop-ins go to `UNIT.d/` beside the unit, where verify finds them
//! (it adds the named file's folder to the unit search path).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where the shipped units start the binaries.
pub(crate) const INSTALLED_BIN: &str = "/usr/local/bin";

/// A shipped file of `deploy/systemd/`.
pub(crate) fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(file)
}

/// The text of a shipped file.
pub(crate) fn read_shipped(file: &str) -> String {
    let path = shipped(file);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// A binary of this build: `sumserver`, or `sumworker`, which
/// `cargo test --workspace` builds beside it.
pub(crate) fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_sumserver")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p ysum-worker` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// What a binary prints for `args`, which must succeed.
pub(crate) fn run(name: &str, args: &[&str]) -> String {
    let output = Command::new(binary(name))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("run {name}: {err}"));
    assert!(
        output.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// One way the docs install a unit: the unit and the drop-ins beside it.
#[derive(Debug)]
pub(crate) struct Setup {
    /// The unit file, in `deploy/systemd/`.
    pub(crate) unit: &'static str,
    /// The unit to verify: the file's own name, or an instance of a
    /// template (which also expands `%i`).
    pub(crate) verify: &'static str,
    /// The binary it starts.
    pub(crate) binary: &'static str,
    /// Drop-ins installed with it (paths in `deploy/systemd/`).
    pub(crate) drop_ins: &'static [&'static str],
}

/// Every way of installing the units that docs/operations.md describes.
pub(crate) const SETUPS: &[Setup] = &[
    Setup {
        unit: "sumserver.service",
        verify: "sumserver.service",
        binary: "sumserver",
        drop_ins: &[],
    },
    Setup {
        unit: "sumserver.service",
        verify: "sumserver.service",
        binary: "sumserver",
        drop_ins: &["sumserver.service.d/remote.conf", "signing.conf"],
    },
    Setup {
        unit: "sumworker@.service",
        verify: "sumworker@1.service",
        binary: "sumworker",
        drop_ins: &[],
    },
    Setup {
        unit: "sumworker@.service",
        verify: "sumworker@1.service",
        binary: "sumworker",
        drop_ins: &["signing.conf"],
    },
];

impl Setup {
    /// The shipped files of this setup: the unit, then its drop-ins.
    pub(crate) fn files(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.unit).chain(self.drop_ins.iter().copied())
    }

    /// Copies this setup into `dir` as systemd would find it, the unit
    /// starting this build's binary; `change` may alter a file's text on
    /// the way (it gets the shipped name). Returns the path to verify.
    pub(crate) fn install(&self, dir: &Path, change: &dyn Fn(&str, String) -> String) -> PathBuf {
        let unit = for_this_build(&read_shipped(self.unit), self.binary);
        write(&dir.join(self.unit), &change(self.unit, unit));
        let drop_in_dir = dir.join(format!("{}.d", self.unit));
        for drop_in in self.drop_ins {
            let name = Path::new(drop_in).file_name().expect("a file name");
            write(
                &drop_in_dir.join(name),
                &change(drop_in, read_shipped(drop_in)),
            );
        }
        dir.join(self.verify)
    }
}

/// `text` with its `ExecStart=` line, which must start `binary` where the
/// docs install it, starting the one cargo built instead.
fn for_this_build(text: &str, name: &str) -> String {
    let installed = format!("ExecStart={INSTALLED_BIN}/{name}");
    let built = format!("ExecStart={}", binary(name).display());
    let mut starts = 0;
    let mut copy = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("ExecStart=") {
            assert_eq!(line, installed, "the unit of {name} starts it elsewhere");
            starts += 1;
            copy.push_str(&built);
        } else {
            copy.push_str(line);
        }
        copy.push('\n');
    }
    assert_eq!(starts, 1, "the unit of {name} has one ExecStart=");
    copy
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("a folder")).expect("create the scratch folder");
    fs::write(path, text).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// A scratch folder of its own, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// A new, empty folder under the system's temporary folder.
    pub(crate) fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ysum-deploy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a scratch folder");
        Scratch(path)
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
