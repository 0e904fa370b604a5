//! A worker's own reply socket, and how its pool end gets to the pool.
//!
//! The jobs whose sender does not wait on a mailbox (`submit`'s, and those
//! that waited in the queue) are answered here. It is a plain
//! `SOCK_SEQPACKET` socket pair rather than an ipc-channel: the pool's end
//! must be a descriptor that the collector's epoll, and through it an event
//! loop's own poll, can wait on, and ipc-channel does not expose its
//! descriptors. `SOCK_SEQPACKET` keeps each reply one message and reports
//! the worker's death as EOF, as the channel did.
//!
//! The fork server makes the pair before it forks, so only the worker holds
//! the sending end, and passes the pool's end over the socket that is its
//! standard input (`SCM_RIGHTS`), tagged with the worker's pid, just before
//! it reports the worker on its event channel.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::worker::FromWorker;

/// The longest reply read; a worker cuts a panic message well short of it.
pub(super) const MAX_REPLY: usize = 8 * 1024;

/// A new pair of connected `SOCK_SEQPACKET` sockets, close-on-exec.
pub(super) fn pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// The worker's end.
#[derive(Debug)]
pub(crate) struct ReplySender(OwnedFd);

impl ReplySender {
    pub(super) fn new(fd: OwnedFd) -> Self {
        ReplySender(fd)
    }

    /// Sends one reply, blocking while the socket is full; fails once the
    /// pool's end is closed.
    pub(crate) fn send(&self, reply: &FromWorker) -> Result<(), Errno> {
        let bytes = postcard::to_stdvec(reply).map_err(|_| Errno::EINVAL)?;
        loop {
            // MSG_NOSIGNAL: a pool gone is an error here, not a SIGPIPE.
            match send(self.0.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(err),
                Ok(_) => return Ok(()),
            }
        }
    }
}

/// What a look at the pool's end found.
#[derive(Debug)]
pub(super) enum Received {
    Reply(FromWorker),
    /// A message that is no reply: the worker cannot be trusted.
    Garbled(String),
    /// Nothing to read now.
    Empty,
    /// EOF: the worker has exited or died.
    Closed,
    /// The socket itself failed.
    Failed(Errno),
}

/// The pool's end, read without blocking.
#[derive(Debug)]
pub(super) struct ReplyReceiver(OwnedFd);

impl ReplyReceiver {
    /// The next reply, if one is there.
    pub(super) fn try_recv(&self, buf: &mut [u8; MAX_REPLY]) -> Received {
        // MSG_TRUNC makes a longer message report its whole length.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
        let len = loop {
            match recv(self.0.as_raw_fd(), buf, flags) {
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Received::Empty,
                Err(err) => return Received::Failed(err),
                Ok(0) => return Received::Closed,
                Ok(len) => break len,
            }
        };
        if len > MAX_REPLY {
            return Received::Garbled(format!("a reply of {len} bytes"));
        }
        match postcard::from_bytes(&buf[..len]) {
            Ok(reply) => Received::Reply(reply),
            Err(err) => Received::Garbled(err.to_string()),
        }
    }
}

impl AsFd for ReplyReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// The fork server's side: passes the pool's end of worker `pid`'s reply
/// socket over `to_pool`.
pub(super) fn pass(to_pool: BorrowedFd<'_>, pid: u32, end: &OwnedFd) -> nix::Result<()> {
    let tag = pid.to_le_bytes();
    let fds = [end.as_raw_fd()];
    loop {
        let sent = sendmsg::<UnixAddr>(
            to_pool.as_raw_fd(),
            &[IoSlice::new(&tag)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        );
        match sent {
            Err(Errno::EINTR) => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// The pool's side: the reply socket passed for worker `pid`. The fork
/// server passes it before it reports the worker, so it is there already;
/// this never waits.
pub(super) fn take_passed(
    from_fork_server: BorrowedFd<'_>,
    pid: u32,
) -> Result<ReplyReceiver, String> {
    let mut tag = [0u8; 4];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut tag)];
        let msg = loop {
            match recvmsg::<UnixAddr>(
                from_fork_server.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Err(Errno::EINTR) => continue,
                Err(err) => return Err(format!("no reply socket came for it: {err}")),
                Ok(msg) => break msg,
            }
        };
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    fds.extend(received);
                }
            }
        }
        (msg.bytes, fds)
    };
    // SAFETY: the kernel has just installed these descriptors in this
    // process for this message; nothing else owns them.
    let mut owned: Vec<OwnedFd> = fds
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    let tagged = u32::from_le_bytes(tag);
    if len != tag.len() || owned.len() != 1 {
        return Err(format!(
            "a malformed message came with it ({len} bytes, {} descriptors)",
            owned.len()
        ));
    }
    if tagged != pid {
        return Err(format!("the reply socket came tagged for worker {tagged}"));
    }
    Ok(ReplyReceiver(owned.remove(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Answer;

    #[test]
    fn replies_cross_and_eof_follows_the_sender() {
        let (worker_end, pool_end) = pair().unwrap();
        let sender = ReplySender::new(worker_end);
        let receiver = ReplyReceiver(pool_end);
        let mut buf = [0u8; MAX_REPLY];
        assert!(matches!(receiver.try_recv(&mut buf), Received::Empty));
        for seq in 1..=3 {
            let reply = FromWorker {
                seq,
                reply: Ok(Answer::Sum(u128::from(seq) * 10)),
            };
            sender.send(&reply).unwrap();
        }
        for seq in 1..=3 {
            match receiver.try_recv(&mut buf) {
                Received::Reply(reply) => {
                    assert_eq!(reply.seq, seq);
                    assert_eq!(reply.reply, Ok(Answer::Sum(u128::from(seq) * 10)));
                }
                other => panic!("expected reply {seq}, got {other:?}"),
            }
        }
        drop(sender);
        assert!(matches!(receiver.try_recv(&mut buf), Received::Closed));
    }

    #[test]
    fn garbage_and_oversized_messages_are_told_apart() {
        let (worker_end, pool_end) = pair().unwrap();
        let receiver = ReplyReceiver(pool_end);
        let mut buf = [0u8; MAX_REPLY];
        send(worker_end.as_raw_fd(), &[0xff; 3], MsgFlags::empty()).unwrap();
        assert!(matches!(receiver.try_recv(&mut buf), Received::Garbled(_)));
        send(
            worker_end.as_raw_fd(),
            &vec![0u8; MAX_REPLY + 1],
            MsgFlags::empty(),
        )
        .unwrap();
        match receiver.try_recv(&mut buf) {
            Received::Garbled(why) => assert!(why.contains(&(MAX_REPLY + 1).to_string()), "{why}"),
            other => panic!("expected an oversized message, got {other:?}"),
        }
    }

    #[test]
    fn a_passed_socket_arrives_with_its_tag() {
        let (fork_server, pool) = pair().unwrap();
        let (worker_end, pool_end) = pair().unwrap();
        pass(fork_server.as_fd(), 4242, &pool_end).unwrap();
        drop(pool_end);
        let receiver = take_passed(pool.as_fd(), 4242).unwrap();
        ReplySender::new(worker_end)
            .send(&FromWorker {
                seq: 9,
                reply: Ok(Answer::Prime(true)),
            })
            .unwrap();
        let mut buf = [0u8; MAX_REPLY];
        assert!(matches!(receiver.try_recv(&mut buf), Received::Reply(r) if r.seq == 9));
        // Nothing more passed: the pool hears so at once, not after a wait.
        let err = take_passed(pool.as_fd(), 4243).unwrap_err();
        assert!(err.contains("no reply socket"), "{err}");
        // A socket passed for another worker is refused.
        pass(fork_server.as_fd(), 7, &fork_server).unwrap();
        let err = take_passed(pool.as_fd(), 8).unwrap_err();
        assert!(err.contains("tagged for worker 7"), "{err}");
    }
}
