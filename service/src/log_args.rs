//! [`LogArgs`]: `--log-level` and `--log-format`, the same on `sumserver`
//! and `sumworker` (each binary flattens them into its own `cli.rs`), both
//! checked when the command line is read, so that a bad one is a usage
//! error (exit 2) rather than a silent log.

use crate::logging::{parse_filter, LogFormat};

/// The logging options.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter: a level (off, error, warn, info, debug, trace) or
    /// target=level, comma-separated; RUST_LOG overrides it. Logs go to
    /// stderr, coloured only on a terminal and never when NO_COLOR is set.
    #[arg(long, env = "YSUM_LOG_LEVEL", default_value = "info", value_parser = check_filter)]
    pub log_level: String,

    /// How log lines are written: `text` (for people; coloured only on a
    /// terminal) or `json` (one JSON object per line, for log collectors).
    #[arg(long, env = "YSUM_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
}

/// The values of `--log-format`; mapped at once onto [`LogFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

impl LogArgs {
    /// The format, known even when the rest of the command line is bad, so
    /// that its error is written in that format.
    pub fn format(&self) -> LogFormat {
        self.log_format.into()
    }
}

/// Checks a log filter now, so that a bad one is a usage error.
fn check_filter(text: &str) -> Result<String, String> {
    parse_filter(text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    /// Bad filters are usage errors quoting the bad part; good ones and the
    /// formats parse.
    #[test]
    fn filters_are_checked() {
        for bad in ["verbose", "warn=x", "info,"] {
            let err = Cli::try_parse_from(["t", "--log-level", bad]).expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{err}");
        }
        let cli = Cli::try_parse_from(["t", "--log-level", "debug", "--log-format", "json"])
            .expect("valid");
        assert_eq!(cli.log.format(), LogFormat::Json);
        assert_eq!(cli.log.log_level, "debug");
    }
}
