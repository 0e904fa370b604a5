//! The `YSUM_…` variables the shipped files name, against the ones each
//! binary reads (its `--help` names each as `[env: YSUM_…]`), so that a
//! renamed or removed option cannot leave a dead line behind; the shipped
//! examples stay valid environment-file lines; the stop timeouts stay above
//! the default grace.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::units::{read_shipped, run};

/// Which binary reads the variables each shipped file names.
const READERS: &[(&str, &[&str])] = &[
    ("sumserver.env", &["sumserver"]),
    ("sumserver.service", &["sumserver"]),
    ("sumserver.service.d/remote.conf", &["sumserver"]),
    ("signing.conf", &["sumserver", "sumworker"]),
    ("sumworker.env", &["sumworker"]),
    ("sumworker@.service", &["sumworker"]),
];

/// Variables a file may name before its binary reads them: (file, binary,
/// variable). Each must still be unknown to the binary, so that the day it
/// arrives this test asks for the entry, and the file's "not yet" note, to
/// go.
const NOT_YET: &[(&str, &str, &str)] = &[];

/// The variables a binary reads, from the `[env: NAME=…]` of its `--help`.
fn known(binary: &str) -> BTreeSet<String> {
    let help = run(binary, &["--help"]);
    let known: BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap_or_default().to_owned())
        .collect();
    assert!(
        known.contains("YSUM_LOG_LEVEL"),
        "{binary} --help names no [env: …] as expected:\n{help}"
    );
    known
}

/// Every `YSUM_…` word in `text`, comments included: a comment that names
/// a variable nobody reads misleads as much as a setting does.
fn named(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|word| word.starts_with("YSUM_") && word.len() > "YSUM_".len())
        .map(str::to_owned)
        .collect()
}

/// Each shipped file names only variables its binaries read (or one of
/// `NOT_YET`, which the binary must still not read).
#[test]
fn files_name_only_variables_the_binaries_read() {
    for (file, binaries) in READERS {
        let names = named(&read_shipped(file));
        assert!(!names.is_empty(), "{file} names no YSUM_ variable");
        for binary in *binaries {
            let known = known(binary);
            let not_yet: BTreeSet<String> = NOT_YET
                .iter()
                .filter(|(f, b, _)| f == file && b == binary)
                .map(|(_, _, variable)| (*variable).to_owned())
                .collect();
            for variable in &not_yet {
                assert!(
                    !known.contains(variable),
                    "{binary} now reads {variable}: remove it from NOT_YET in \
                     tests/deploy/variables.rs, and the note that it is not in this \
                     build yet from deploy/systemd/{file}"
                );
                assert!(
                    names.contains(variable),
                    "{file} no longer names {variable}: remove it from NOT_YET"
                );
            }
            let unknown: Vec<&String> = names
                .iter()
                .filter(|name| !known.contains(*name) && !not_yet.contains(*name))
                .collect();
            assert!(
                unknown.is_empty(),
                "deploy/systemd/{file} names {unknown:?}, which {binary} does not read \
                 (its --help lists {known:?})"
            );
        }
    }
}

/// Every line of the environment files is blank or a comment (the defaults
/// apply as shipped), and every commented example, once uncommented, is a
/// `NAME=value` line that systemd reads as meant: no spaces, no quotes.
#[test]
fn environment_examples_are_plain_assignments() {
    for file in ["sumserver.env", "sumworker.env"] {
        let text = read_shipped(file);
        let mut examples = 0;
        for (number, line) in text.lines().enumerate() {
            let at = format!("deploy/systemd/{file}:{}", number + 1);
            assert!(
                line.is_empty() || line.starts_with('#'),
                "{at}: not a comment, so it is set as shipped: {line}"
            );
            let Some(example) = line.strip_prefix("#YSUM_") else {
                continue;
            };
            let (name, value) = example
                .split_once('=')
                .unwrap_or_else(|| panic!("{at}: no `=`: {line}"));
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{at}: not a variable name: {line}"
            );
            assert!(
                !value.is_empty()
                    && !value.contains(char::is_whitespace)
                    && !value.contains(['"', '\'', '\\', '$']),
                "{at}: give a plain value: {line}"
            );
            examples += 1;
        }
        assert!(examples >= 5, "{file} shows only {examples} examples");
    }
}

/// The room a unit's `TimeoutStopSec=` leaves after `--grace` for what
/// follows it: stopping procs workers (up to 2 s) and writing the last log
/// lines (up to 2 s), with a second to spare.
const ROOM_AFTER_GRACE: Duration = Duration::from_secs(5);

/// Each unit's `TimeoutStopSec=` outlasts its binary's default `--grace` by
/// `ROOM_AFTER_GRACE`, so a stop that drains is never cut by SIGKILL.
#[test]
fn stop_timeout_outlasts_the_default_grace() {
    for (unit, binary) in [
        ("sumserver.service", "sumserver"),
        ("sumworker@.service", "sumworker"),
    ] {
        let text = read_shipped(unit);
        let timeout = text
            .lines()
            .find_map(|line| line.strip_prefix("TimeoutStopSec="))
            .unwrap_or_else(|| panic!("{unit} sets no TimeoutStopSec="));
        let timeout = humantime::parse_duration(timeout)
            .unwrap_or_else(|err| panic!("{unit}: TimeoutStopSec={timeout}: {err}"));
        let grace = default_of(&run(binary, &["--help"]), "--grace <GRACE>");
        assert!(
            timeout >= grace + ROOM_AFTER_GRACE,
            "{unit}: TimeoutStopSec={timeout:?} leaves less than {ROOM_AFTER_GRACE:?} \
             after {binary}'s default --grace {grace:?}"
        );
    }
}

/// The `[default: …]` duration that `--help` gives for `option`.
fn default_of(help: &str, option: &str) -> Duration {
    let after = help
        .split_once(option)
        .unwrap_or_else(|| panic!("--help has no {option}:\n{help}"))
        .1;
    let value = after
        .split_once("[default: ")
        .and_then(|(_, rest)| rest.split_once(']'))
        .unwrap_or_else(|| panic!("--help gives {option} no default"))
        .0;
    humantime::parse_duration(value)
        .unwrap_or_else(|err| panic!("{option}'s default {value:?}: {err}"))
}
