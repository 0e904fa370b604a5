//! A connection's way out: replies kept in request order ([`Replies`]),
//! then the bytes waiting for the socket to take them ([`OutBuf`]).
//!
//! A reply may be known at once (`pong`, a bad request) or only when its job
//! completes, maybe after replies to later requests are known. Each request
//! takes a slot in order; a job's slot stays empty until it completes; only
//! the filled slots at the front move on to the byte buffer. So a fast
//! `ping` after a slow job is written after the job's reply, as in the
//! threaded mode.

use std::collections::VecDeque;
use std::io::{self, Write};

/// Bytes waiting to be written beyond which the connection counts as backed
/// up: it reads no more requests until the client has read its replies.
pub(super) const BACKED_UP: usize = 64 * 1024;

/// The output allocation an idle connection keeps between bursts.
const KEPT_CAPACITY: usize = 4 * 1024;

/// Identifies a reply slot taken for a job, to fill when it completes.
pub(super) type Seq = u64;

/// Reply slots in request order.
#[derive(Debug, Default)]
pub(super) struct Replies {
    /// The sequence number of `slots[0]`.
    front: Seq,
    /// `None` while the job is running.
    slots: VecDeque<Option<String>>,
}

impl Replies {
    /// Queues a reply that is known now.
    pub(super) fn push_ready(&mut self, reply: String) {
        self.slots.push_back(Some(reply));
    }

    /// Takes a slot for a reply that a job will give later.
    pub(super) fn reserve(&mut self) -> Seq {
        self.slots.push_back(None);
        self.front + self.slots.len() as Seq - 1
    }

    /// Fills the slot `seq` took; returns false for a slot it does not hold
    /// (already filled, or never taken), which is ignored.
    pub(super) fn fill(&mut self, seq: Seq, reply: String) -> bool {
        let Some(index) = seq.checked_sub(self.front) else {
            return false;
        };
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            Some(slot @ None) => {
                *slot = Some(reply);
                true
            }
            _ => false,
        }
    }

    /// Moves the replies at the front that are ready into `out`, stopping at
    /// the first slot still waiting for its job.
    pub(super) fn move_ready(&mut self, out: &mut OutBuf) {
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(reply)) = self.slots.pop_front() {
                out.push(reply.as_bytes());
            }
            self.front += 1;
        }
    }

    /// Whether no reply is waiting, ready or not.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Bytes for the socket, written as far as it takes them.
#[derive(Debug, Default)]
pub(super) struct OutBuf {
    bytes: Vec<u8>,
    /// How much of `bytes` is already written.
    written: usize,
}

impl OutBuf {
    /// Appends `bytes` to what is waiting.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Bytes not yet written.
    pub(super) fn len(&self) -> usize {
        self.bytes.len() - self.written
    }

    /// Whether everything is written.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether so much waits that the connection should stop reading.
    pub(super) fn is_backed_up(&self) -> bool {
        self.len() > BACKED_UP
    }

    /// Writes to `sink` until everything is written or it would block;
    /// returns how many bytes it took.
    ///
    /// # Errors
    ///
    /// Any error but `WouldBlock` and `Interrupted`: the connection is done.
    pub(super) fn write_to(&mut self, sink: &mut impl Write) -> io::Result<usize> {
        let before = self.written;
        while self.written < self.bytes.len() {
            match sink.write(&self.bytes[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        let took = self.written - before;
        if self.written == self.bytes.len() {
            // Reuse the allocation, which is small for most connections;
            // one that once backed up gives its large buffer back.
            self.bytes.clear();
            self.bytes.shrink_to(KEPT_CAPACITY);
            self.written = 0;
        } else if self.written > BACKED_UP {
            self.bytes.drain(..self.written);
            self.written = 0;
        }
        Ok(took)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    struct Socket {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room).min(3);
            self.taken.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn drained(replies: &mut Replies) -> String {
        let mut out = OutBuf::default();
        replies.move_ready(&mut out);
        String::from_utf8(out.bytes[out.written..].to_vec()).unwrap()
    }

    /// A reply ready early waits behind a job's slot until the job's reply
    /// fills it; then both leave in request order.
    #[test]
    fn replies_leave_in_request_order() {
        let mut replies = Replies::default();
        let slow = replies.reserve();
        replies.push_ready("pong\n".into());
        let fast = replies.reserve();
        assert_eq!(drained(&mut replies), "");
        assert!(replies.fill(fast, "2\n".into()));
        assert_eq!(drained(&mut replies), "", "the slow job is still first");
        assert!(replies.fill(slow, "ok\n".into()));
        assert_eq!(drained(&mut replies), "ok\npong\n2\n");
        assert!(replies.is_empty());
    }

    /// Filling a slot twice, or one never taken, changes nothing.
    #[test]
    fn unknown_or_repeated_fills_are_ignored() {
        let mut replies = Replies::default();
        let seq = replies.reserve();
        assert!(replies.fill(seq, "a\n".into()));
        assert!(!replies.fill(seq, "b\n".into()));
        assert!(!replies.fill(seq + 7, "c\n".into()));
        assert_eq!(drained(&mut replies), "a\n");
        assert!(!replies.fill(seq, "d\n".into()), "already gone");
        let next = replies.reserve();
        assert_eq!(next, seq + 1, "sequence numbers keep counting");
    }

    /// Bytes a socket does not take wait for the next write, in order, and
    /// the buffer reports itself backed up past the limit.
    #[test]
    fn partial_writes_resume() {
        let mut out = OutBuf::default();
        out.push(b"hello ");
        out.push(b"world\n");
        let mut socket = Socket {
            taken: Vec::new(),
            room: 5,
        };
        assert_eq!(out.write_to(&mut socket).unwrap(), 5);
        assert_eq!(out.len(), 7);
        socket.room = 100;
        assert_eq!(out.write_to(&mut socket).unwrap(), 7);
        assert!(out.is_empty());
        assert_eq!(socket.taken, b"hello world\n");

        out.push(&vec![b'x'; BACKED_UP + 1]);
        assert!(out.is_backed_up());
        socket.room = 10;
        out.write_to(&mut socket).unwrap();
        assert!(!out.is_backed_up());
    }

    /// A socket that fails ends the writing with its error.
    #[test]
    fn errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = OutBuf::default();
        out.push(b"x");
        assert!(out.write_to(&mut Broken).is_err());
    }
}
