//! Where things live in Redis. Every key starts with `ysum:`, so a broker
//! can be shared with other applications.

/// The stream every server adds its jobs to and every worker reads from.
pub const JOBS: &str = "ysum:jobs";

/// The consumer group of the workers on [`JOBS`]; each worker is one
/// consumer in it, named by `--name`.
pub const GROUP: &str = "ysum:workers";

/// A counter that workers raise by the number of jobs they take over from
/// a worker that stopped renewing its lease (the `stats` redeliveries).
pub const REDELIVERIES: &str = "ysum:redeliveries";

/// A hash of worker name → Unix time in ms when that worker's lease thread
/// last ran: when each worker was last alive, for `stats`.
pub const SEEN: &str = "ysum:seen";

/// The list a server's replies are pushed on; its dispatcher pops them.
pub fn reply_list(server: &str) -> String {
    format!("ysum:reply:{server}")
}

/// How long a reply list lives after its last push: long enough for a live
/// server to pop it, short enough that a dead server's replies go away.
pub const REPLY_TTL_S: u64 = 60;
