//! How option values are read, the same in `sumserver`, `sumclient` and
//! `sumworker` (each binary's `cli.rs` includes this file, as it does
//! `generate.rs`).
//!
//! Two rules hold for every option of every binary, present or future,
//! because [`command`] applies them to the whole parsed command instead of
//! leaving them to each definition:
//!
//! - A boolean flag (`--keep-alive`, `--json`, `--accept-proxy`) is true on
//!   the command line by being there; from its environment variable it
//!   takes the usual spellings ([`parse_bool`]), and a value that is none
//!   of them is refused with the variable's name, not the flag's.
//! - A duration option takes a value that starts with `-` as its value, so
//!   that `--queue-wait -1s` is refused by [`parse_duration`] as negative
//!   instead of read as an unknown flag `-1`.

use std::any::TypeId;
use std::ffi::OsStr;
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::error::ErrorKind;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

/// `A`'s command with the two rules of this module applied to every
/// argument; what [`parse`] parses and `--generate` describes.
pub(crate) fn command<A: CommandFactory>() -> Command {
    A::command().mut_args(|arg| {
        if is_duration(&arg) {
            arg.allow_hyphen_values(true)
        } else if matches!(arg.get_action(), ArgAction::SetTrue) && arg.get_env().is_some() {
            arg.value_parser(EnvBool)
        } else {
            arg
        }
    })
}

/// Parses the process's arguments and environment into `A`, exiting with
/// clap's message (status 2) when they are bad, as `A::parse()` would.
pub(crate) fn parse<A: CommandFactory + FromArgMatches>() -> A {
    let mut matches = command::<A>().get_matches();
    A::from_arg_matches_mut(&mut matches).unwrap_or_else(|err| err.exit())
}

/// [`parse`] of the given arguments, for tests.
#[cfg(test)]
pub(crate) fn try_parse_from<A: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<A, clap::Error> {
    let mut matches = command::<A>().try_get_matches_from(args)?;
    A::from_arg_matches_mut(&mut matches)
}

/// Whether `arg`'s values are durations.
fn is_duration(arg: &Arg) -> bool {
    arg.get_value_parser().type_id() == TypeId::of::<Duration>()
}

/// Parses a duration as people write it, with humantime: `100us` (or
/// `100µs`), `200ms`, `1.5s`, `30s`, `2m`, `1m 30s`; a bare `0` is zero.
/// A negative one is refused as such.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "{text:?} is not a duration: a duration is never negative; \
             write it like 200ms, 30s, 2m or 1h, or 0"
        ));
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("{text:?} is not a duration ({err}); write it like 200ms, 30s, 2m or 1h")
    })
}

/// The spellings of yes and no [`parse_bool`] takes, for messages.
const SPELLINGS: &str = "true/false, yes/no, on/off, 1/0";

/// Reads a yes or no as people write it in the environment: `true`,
/// `yes`, `on`, `1` and `false`, `no`, `off`, `0`, in any case; an empty
/// value is no, as if the variable were unset. `None` for anything else.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

/// The value parser [`command`] gives every boolean flag that has an
/// environment variable. clap hands it `true` when the flag is on the
/// command line, `false` when it is absent, and the variable's value when
/// only the variable is set; so a value it refuses came from the variable,
/// which the message names.
#[derive(Debug, Clone, Copy)]
struct EnvBool;

impl clap::builder::TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy();
        parse_bool(&text).ok_or_else(|| {
            let source = arg.map_or_else(String::new, |arg| match arg.get_env() {
                Some(variable) => variable.to_string_lossy().into_owned(),
                None => arg.to_string(),
            });
            let message = format!("{source}={text:?} is not a yes or no (write {SPELLINGS})\n");
            clap::Error::raw(ErrorKind::InvalidValue, message).with_cmd(cmd)
        })
    }

    /// Every spelling taken (which also tells a test that a flag has this
    /// parser: clap's own lists only `true` and `false`).
    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let spellings = ["true", "false", "yes", "no", "on", "off", "1", "0"];
        Some(Box::new(spellings.into_iter().map(PossibleValue::new)))
    }
}

/// Checks the rules of this module on `A`'s command, for each binary's
/// tests, and returns the long names of its duration options and of its
/// boolean flags with a variable, for the caller to compare with the ones
/// it knows of (so that the check cannot pass by finding none): each
/// duration option, given `-1s` after `args` (the rest of a valid command
/// line), is refused as negative with the value quoted; each such flag
/// takes every spelling.
#[cfg(test)]
pub(crate) fn check_rules<A: CommandFactory + FromArgMatches + std::fmt::Debug>(
    args: &[&str],
) -> (Vec<String>, Vec<String>) {
    let command = command::<A>();
    let long = |arg: &Arg| format!("--{}", arg.get_long().unwrap_or_default());
    let mut durations = Vec::new();
    let mut flags = Vec::new();
    for arg in command.get_arguments() {
        if is_duration(arg) {
            let option = long(arg);
            let argv = args.iter().copied().chain([option.as_str(), "-1s"]);
            let err = try_parse_from::<A>(argv).expect_err(&option);
            assert_eq!(err.exit_code(), 2, "{option}: {err}");
            let message = err.to_string();
            assert!(
                message.contains("\"-1s\" is not a duration"),
                "{option}: {message}"
            );
            assert!(message.contains("never negative"), "{option}: {message}");
            durations.push(option);
        } else if matches!(arg.get_action(), ArgAction::SetTrue) && arg.get_env().is_some() {
            let taken: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|value| value.get_name().to_owned())
                .collect();
            for spelling in ["yes", "no", "on", "off", "1", "0"] {
                assert!(
                    taken.iter().any(|t| t == spelling),
                    "{}: {taken:?}",
                    long(arg)
                );
            }
            flags.push(long(arg));
        }
    }
    (durations, flags)
}

#[cfg(test)]
mod values_tests {
    use super::*;

    /// Every spelling of yes and no is read, in any case; others are not.
    #[test]
    fn yes_and_no_spellings() {
        for yes in ["true", "yes", "on", "1", "TRUE", "Yes", "oN", " 1 "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes:?}");
        }
        for no in ["false", "no", "off", "0", "False", "NO", "OFF", ""] {
            assert_eq!(parse_bool(no), Some(false), "{no:?}");
        }
        for neither in ["maybe", "y", "2", "-1", "truth", "nope"] {
            assert_eq!(parse_bool(neither), None, "{neither:?}");
        }
    }

    /// A value in a flag's variable that is neither yes nor no is refused
    /// with the variable's name (clap gives the parser the variable's
    /// value only: `true` and `false` stand for the flag's presence).
    #[test]
    fn a_bad_variable_is_named() {
        use clap::builder::TypedValueParser as _;
        let arg = Arg::new("keep_alive")
            .long("keep-alive")
            .env("YSUM_KEEP_ALIVE")
            .action(ArgAction::SetTrue);
        let cmd = Command::new("sumclient").arg(arg.clone());
        let err = EnvBool
            .parse_ref(&cmd, Some(&arg), OsStr::new("maybe"))
            .expect_err("maybe");
        assert_eq!(err.exit_code(), 2, "{err}");
        let message = err.to_string();
        assert!(
            message.contains(
                "YSUM_KEEP_ALIVE=\"maybe\" is not a yes or no \
                 (write true/false, yes/no, on/off, 1/0)"
            ),
            "{message}"
        );
        assert!(!message.contains("--keep-alive"), "{message}");
        let yes = EnvBool.parse_ref(&cmd, Some(&arg), OsStr::new("On"));
        assert!(yes.expect("On"));
    }

    /// A negative duration is refused as negative, with the value quoted.
    #[test]
    fn negative_durations_refused() {
        for negative in ["-1s", "-0", " -200ms", "-1"] {
            let err = parse_duration(negative).expect_err(negative);
            assert!(err.contains(&format!("{negative:?}")), "{err}");
            assert!(err.contains("never negative"), "{err}");
        }
    }
}
