//! [`Heartbeat`]: what a worker writes in the `seen` hash every quarter
//! lease, and servers read for `stats`: when it was last alive (on the
//! broker's clock), how far its own clock is from the broker's, and what it
//! is (its version, the job format it speaks, its slots, its lease).
//!
//! One line of `key=value` words: `at=1764626400123 offset=-20012
//! version=0.2.0 format=2 slots=2 lease=2000`. A worker of an earlier build
//! wrote the time alone, on its own clock (`1764626400123`); that still
//! reads, with the rest unknown.

use std::fmt;

/// One worker's last word.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// When it was written, Unix ms on the broker's clock (on the worker's
    /// own clock for an earlier build).
    pub at_ms: u64,
    /// The broker's clock minus the worker's, in ms.
    pub offset_ms: Option<i64>,
    /// The worker's version (its crate's).
    pub version: Option<String>,
    /// The newest job format it speaks.
    pub format: Option<u32>,
    /// Jobs it runs at once.
    pub slots: Option<u64>,
    /// Its `--lease`, in ms.
    pub lease_ms: Option<u64>,
}

impl Heartbeat {
    /// Reads a value of the `seen` hash; `None` if it is neither form.
    pub fn parse(text: &str) -> Option<Heartbeat> {
        if let Ok(at_ms) = text.parse() {
            return Some(Heartbeat {
                at_ms,
                ..Heartbeat::default()
            });
        }
        let mut beat = Heartbeat::default();
        let mut at = None;
        for word in text.split_whitespace() {
            let (key, value) = word.split_once('=')?;
            match key {
                "at" => at = value.parse().ok(),
                "offset" => beat.offset_ms = value.parse().ok(),
                "version" => beat.version = Some(value.chars().take(32).collect()),
                "format" => beat.format = value.parse().ok(),
                "slots" => beat.slots = value.parse().ok(),
                "lease" => beat.lease_ms = value.parse().ok(),
                // Words a later build may add.
                _ => {}
            }
        }
        beat.at_ms = at?;
        Some(beat)
    }
}

impl fmt::Display for Heartbeat {
    /// The value written in the `seen` hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at={}", self.at_ms)?;
        if let Some(offset) = self.offset_ms {
            write!(f, " offset={offset}")?;
        }
        if let Some(version) = &self.version {
            write!(f, " version={version}")?;
        }
        if let Some(format) = self.format {
            write!(f, " format={format}")?;
        }
        if let Some(slots) = self.slots {
            write!(f, " slots={slots}")?;
        }
        if let Some(lease) = self.lease_ms {
            write!(f, " lease={lease}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat reads back from what it writes; an earlier build's bare
    /// time still reads; garbage does not.
    #[test]
    fn heartbeats_round_trip() {
        let beat = Heartbeat {
            at_ms: 1_764_626_400_123,
            offset_ms: Some(-20_012),
            version: Some("0.2.0".into()),
            format: Some(2),
            slots: Some(4),
            lease_ms: Some(2_000),
        };
        assert_eq!(
            beat.to_string(),
            "at=1764626400123 offset=-20012 version=0.2.0 format=2 slots=4 lease=2000"
        );
        assert_eq!(Heartbeat::parse(&beat.to_string()), Some(beat));
        assert_eq!(
            Heartbeat::parse("1764626400123"),
            Some(Heartbeat {
                at_ms: 1_764_626_400_123,
                ..Heartbeat::default()
            })
        );
        assert_eq!(Heartbeat::parse("at=5 later=yes").map(|b| b.at_ms), Some(5));
        for bad in ["", "offset=3", "at=x", "hello"] {
            assert_eq!(Heartbeat::parse(bad), None, "{bad}");
        }
    }
}
