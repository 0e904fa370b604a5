//! Taking replies without losing one to a broken connection.
//!
//! A pop (`BLMPOP`) removes a reply from the broker before its answer has
//! crossed the network: if the connection breaks then, or if a pop sent
//! just before a partition reaches the broker after the server has given
//! that connection up, the reply is gone and its job waits for its
//! deadline (finding F1 of the fault schedule, docs/reliability.md).
//!
//! So replies are moved, not popped: `BLMOVE` waits for the first onto
//! this server's taken list, and a script in the same round trip moves the
//! rest waiting, forgets the replies the last round handled and returns
//! everything on the taken list. A reply stays there until a round that
//! follows its handling removes it (by value: a round sent on a connection
//! long given up cannot remove another's), so a lost answer only means it
//! is read again, and dropped as late if its job was answered.

use std::time::Duration;

use redis::{Connection, RedisResult};

use crate::broker::REPLY_TTL_S;

/// Most replies moved in one round trip.
pub(super) const DRAIN: usize = 256;

/// KEYS: the reply list, the taken list. ARGV: the most to move, how long
/// the taken list lives (ms), then the replies handled last round.
///
/// Forgets the handled replies (one occurrence each: two equal replies are
/// two answers of one job, both handled or the second late), moves up to
/// ARGV[1] replies in their order, and returns the whole taken list.
const TAKE: &str = r"
for i = 3, #ARGV do
  redis.call('LREM', KEYS[2], 1, ARGV[i])
end
local moved = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #moved > 0 then
  redis.call('LTRIM', KEYS[1], #moved, -1)
  redis.call('RPUSH', KEYS[2], unpack(moved))
end
local taken = redis.call('LRANGE', KEYS[2], 0, -1)
if #taken > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return taken
";

/// Takes this server's replies, round after round, on one connection.
#[derive(Debug)]
pub(super) struct Taker {
    script: redis::Script,
    reply_list: String,
    taken_list: String,
    /// The replies handed out by the last round, to be forgotten by the
    /// next; cleared with each new connection (another broker after a
    /// failover holds other lists; the same one hands them out again).
    handled: Vec<String>,
}

impl Taker {
    pub(super) fn new(reply_list: &str, taken_list: &str) -> Taker {
        Taker {
            script: redis::Script::new(TAKE),
            reply_list: reply_list.to_owned(),
            taken_list: taken_list.to_owned(),
            handled: Vec::new(),
        }
    }

    /// Starts over on a new connection: loads the script (a broker that
    /// restarted or took over has none) and forgets what was handled.
    pub(super) fn connected(&mut self, conn: &mut Connection) -> RedisResult<()> {
        self.handled.clear();
        self.script.load(conn).map(drop)
    }

    /// Waits up to `block` for a reply and returns every reply on the
    /// taken list: the new ones, and any that a round whose answer was
    /// lost moved there. Each is to be handled before the next call.
    pub(super) fn take(
        &mut self,
        conn: &mut Connection,
        block: Duration,
    ) -> RedisResult<&[String]> {
        let mut pipe = redis::pipe();
        pipe.cmd("BLMOVE")
            .arg(&self.reply_list)
            .arg(&self.taken_list)
            .arg("LEFT")
            .arg("RIGHT")
            .arg(block.as_secs_f64())
            .ignore();
        pipe.cmd("EVALSHA")
            .arg(self.script.get_hash())
            .arg(2)
            .arg(&self.reply_list)
            .arg(&self.taken_list)
            .arg(DRAIN - 1)
            .arg(REPLY_TTL_S * 1000)
            .arg(&self.handled);
        match pipe.query::<(Vec<String>,)>(conn) {
            Ok((taken,)) => {
                self.handled = taken;
                Ok(&self.handled)
            }
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // Its script cache was flushed: load it again; what the
                // `BLMOVE` moved waits on the taken list for the next round.
                self.script.load(conn)?;
                self.handled.clear();
                Ok(&self.handled)
            }
            Err(err) => Err(err),
        }
    }
}
