//! `systemd-analyze verify` on the shipped units, installed as the docs say
//! (see `units`).
//!
//! verify exits 0 even when it complains: an unknown directive or a value
//! it cannot parse is reported and then ignored, and the unit would run
//! without it. So the tests read what it prints: a clean setup gets not one
//! line. `--man=no`: the `Documentation=man:…` pages exist only once
//! installed, so verify's own look-up would fail here; instead
//! `documentation_names_the_generated_man_pages` checks that they are the
//! pages the binaries generate.

use std::path::Path;
use std::process::Command;

use crate::units::{read_shipped, run, Scratch, SETUPS};

/// The systemd-analyze `server/build.rs` found.
///
/// # Panics
///
/// When it found none: only then do the tests run without it, because
/// `YSUM_REQUIRE_ENGINES=1` made them mandatory.
fn systemd_analyze() -> &'static str {
    option_env!("YSUM_SYSTEMD_ANALYZE").unwrap_or_else(|| {
        panic!(
            "systemd-analyze is not installed (apt-get install -y systemd), and \
             YSUM_REQUIRE_ENGINES=1 makes the systemd tests mandatory"
        )
    })
}

/// What `systemd-analyze verify` made of a unit.
#[derive(Debug)]
struct Verdict {
    /// Its exit status was 0.
    success: bool,
    /// Everything it printed, stdout then stderr.
    said: String,
}

/// Runs `systemd-analyze verify --man=no UNIT`, with the host's unit search
/// path (the units depend on its targets) and its default log level.
fn verify(unit: &Path) -> Verdict {
    let output = Command::new(systemd_analyze())
        .arg("verify")
        .arg("--man=no")
        .arg(unit)
        .env_remove("SYSTEMD_UNIT_PATH")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze");
    Verdict {
        success: output.status.success(),
        said: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Each unit, alone and with each set of its drop-ins, passes
/// `systemd-analyze verify` without a single complaint.
#[test]
#[cfg_attr(
    no_systemd_analyze,
    ignore = "systemd-analyze not installed: apt-get install -y systemd"
)]
fn shipped_units_verify_without_a_complaint() {
    for setup in SETUPS {
        let scratch = Scratch::new();
        let unit = setup.install(scratch.path(), &|_, text| text);
        let verdict = verify(&unit);
        assert!(
            verdict.success && verdict.said.is_empty(),
            "systemd-analyze verify {} with {:?} (exit 0: {}):\n{}",
            setup.verify,
            setup.drop_ins,
            verdict.success,
            verdict.said
        );
    }
}

/// A misspelt directive in any file of any setup, the unit or a drop-in,
/// is reported, naming the file and the key: the silence above means the
/// files were read, drop-ins included, and found right.
#[test]
#[cfg_attr(
    no_systemd_analyze,
    ignore = "systemd-analyze not installed: apt-get install -y systemd"
)]
fn a_misspelt_directive_is_reported() {
    for setup in SETUPS {
        for file in setup.files() {
            let (_, key) = misspell(&read_shipped(file));
            let scratch = Scratch::new();
            let unit = setup.install(scratch.path(), &|name, text| {
                if name == file {
                    misspell(&text).0
                } else {
                    text
                }
            });
            let verdict = verify(&unit);
            let file_name = Path::new(file).file_name().unwrap().to_string_lossy();
            assert!(
                verdict
                    .said
                    .lines()
                    .any(|line| line.contains(&*file_name) && line.contains(&key)),
                "systemd-analyze verify {} with {:?} did not report {key} in {file}:\n{}",
                setup.verify,
                setup.drop_ins,
                verdict.said
            );
        }
    }
}

/// `text` with the first directive of its `[Service]` section misspelt (its
/// last letter doubled), and the misspelt key.
fn misspell(text: &str) -> (String, String) {
    let mut in_service = false;
    let mut key = None;
    let mut copy = String::with_capacity(text.len() + 1);
    for line in text.lines() {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        }
        match line.split_once('=') {
            Some((name, value))
                if in_service
                    && key.is_none()
                    && !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                let last = name.chars().last().unwrap();
                let wrong = format!("{name}{last}");
                copy.push_str(&format!("{wrong}={value}"));
                key = Some(wrong);
            }
            _ => copy.push_str(line),
        }
        copy.push('\n');
    }
    (copy, key.expect("a directive in [Service]"))
}

/// Each unit's `Documentation=man:NAME(SECTION)` is the page its binary's
/// `--generate man` writes (docs/operations.md installs it).
#[test]
fn documentation_names_the_generated_man_pages() {
    for setup in SETUPS {
        let unit = read_shipped(setup.unit);
        let page = unit
            .lines()
            .find_map(|line| line.strip_prefix("Documentation=man:"))
            .unwrap_or_else(|| panic!("{} names no man page", setup.unit));
        let (name, section) = page
            .strip_suffix(')')
            .and_then(|page| page.split_once('('))
            .unwrap_or_else(|| panic!("{}: not NAME(SECTION): {page}", setup.unit));
        let generated = run(setup.binary, &["--generate", "man"]);
        let title = format!(".TH {name} {section} ");
        assert!(
            generated.lines().any(|line| line.starts_with(&title)),
            "{}: `{} --generate man` has no `{title}` line",
            setup.unit,
            setup.binary
        );
    }
}
