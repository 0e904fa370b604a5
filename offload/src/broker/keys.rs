//! [`Keys`]: where things live in Redis. Every key starts with one prefix
//! (`--broker-prefix`, `ysum:` by default), so that several deployments and
//! other applications can share a broker without touching each other's
//! keys, and so that an ACL can confine each user to them
//! (`deploy/redis/users.acl`).

/// The part of a reply list's name after the prefix, before the server's
/// name.
const REPLY: &str = "reply:";

/// The part of a taken list's name after the prefix, before the server's
/// name. Not under [`REPLY`]: workers may push to reply lists only.
const TAKEN: &str = "taken:";

/// The names of every key one deployment uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    jobs: String,
    group: String,
    seen: String,
    redeliveries: String,
    replies: String,
    taken: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            jobs: format!("{prefix}jobs"),
            group: format!("{prefix}workers"),
            seen: format!("{prefix}seen"),
            redeliveries: format!("{prefix}redeliveries"),
            replies: format!("{prefix}{REPLY}"),
            taken: format!("{prefix}{TAKEN}"),
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stream every server adds its jobs to and every worker reads from.
    pub fn jobs(&self) -> &str {
        &self.jobs
    }

    /// The consumer group of the workers on [`Keys::jobs`]; each worker is
    /// one consumer in it, named by `--name`.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// A hash of worker name → its last heartbeat: when each worker was
    /// last alive, for `stats`.
    pub fn seen(&self) -> &str {
        &self.seen
    }

    /// A counter that workers raise by the number of jobs they take over
    /// from a worker that stopped renewing its lease.
    pub fn redeliveries(&self) -> &str {
        &self.redeliveries
    }

    /// The list a server's replies are pushed on; its dispatcher pops them.
    pub fn reply_list(&self, server: &str) -> String {
        format!("{}{server}", self.replies)
    }

    /// The list a server's dispatcher moves its replies to, atomically, as
    /// it takes them, and removes them from once it has handled them: a
    /// reply whose answer is lost with a broken connection stays there for
    /// the next round instead of vanishing, as a pop's would.
    pub fn taken_list(&self, server: &str) -> String {
        format!("{}{server}", self.taken)
    }

    /// Whether `key` is a reply list of this deployment: the only keys a
    /// worker pushes to, whatever a job entry names.
    pub fn is_reply_list(&self, key: &str) -> bool {
        key.strip_prefix(self.replies.as_str())
            .is_some_and(|server| !server.is_empty())
    }
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(super::DEFAULT_PREFIX)
    }
}

/// How long a reply list lives after its last push: long enough for a live
/// server to pop it, short enough that a dead server's replies go away.
pub const REPLY_TTL_S: u64 = 60;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key is under the prefix; only reply lists pass the check a
    /// worker makes before it pushes.
    #[test]
    fn keys_are_under_the_prefix() {
        let keys = Keys::new("blue:");
        for key in [keys.jobs(), keys.group(), keys.seen(), keys.redeliveries()] {
            assert!(key.starts_with("blue:"), "{key}");
        }
        assert_eq!(keys.reply_list("h-1-2"), "blue:reply:h-1-2");
        assert!(keys.is_reply_list("blue:reply:h-1-2"));
        assert_eq!(keys.taken_list("h-1-2"), "blue:taken:h-1-2");
        assert!(!keys.is_reply_list(&keys.taken_list("h-1-2")));
        for other in [
            "blue:jobs",
            "blue:reply:",
            "ysum:reply:h-1-2",
            "session:42",
            "blue:seen",
        ] {
            assert!(!keys.is_reply_list(other), "{other}");
        }
        assert_eq!(Keys::default().jobs(), "ysum:jobs");
    }
}
