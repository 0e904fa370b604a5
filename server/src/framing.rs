//! Cutting the line dialect's byte stream into request lines, under the line
//! limit. Both I/O models use it on their read buffers, so that a line is a
//! line, and too long is too long, the same way in each.

/// What the front of a read buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete request line, without its `\n` (a final `\r` is left for
    /// [`crate::protocol::parse_line`] to drop), and how many bytes of the
    /// buffer it used, `\n` included.
    Line {
        /// The line's bytes.
        line: &'a [u8],
        /// Bytes to remove from the front of the buffer.
        consumed: usize,
    },
    /// No `\n` yet, and what is there is still within the limit: read more.
    Partial,
    /// A line over `max_line` bytes (terminator excluded), complete or not:
    /// the connection gets `ERR too-long` and is closed.
    TooLong,
}

/// The first request in `buffer`, for a server whose lines may be at most
/// `max_line` bytes long without their terminator (`\n` or `\r\n`).
pub fn next_line(buffer: &[u8], max_line: usize) -> Frame<'_> {
    match buffer.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &buffer[..end];
            if line.strip_suffix(b"\r").unwrap_or(line).len() > max_line {
                Frame::TooLong
            } else {
                Frame::Line {
                    line,
                    consumed: end + 1,
                }
            }
        }
        // A read may end between a line's `\r` and its `\n`; that `\r`
        // does not count against the limit yet either.
        None if buffer.strip_suffix(b"\r").unwrap_or(buffer).len() > max_line => Frame::TooLong,
        None => Frame::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line of exactly the limit, cut by a read between its `\r` and its
    /// `\n`, is still a partial line, not too long.
    #[test]
    fn a_final_carriage_return_waits_for_its_newline() {
        assert_eq!(next_line(b"sumn 12\r", 7), Frame::Partial);
        assert_eq!(next_line(b"sumn 123\r", 7), Frame::TooLong);
        assert_eq!(
            next_line(b"sumn 12\r\n", 7),
            Frame::Line {
                line: b"sumn 12\r",
                consumed: 9
            }
        );
    }

    /// Lines come out one at a time with their lengths; a `\r` stays on the
    /// line but does not count against the limit.
    #[test]
    fn lines_and_partials() {
        let buffer = b"ping\r\nsumn 3\nsle";
        assert_eq!(
            next_line(buffer, 6),
            Frame::Line {
                line: b"ping\r",
                consumed: 6
            }
        );
        assert_eq!(
            next_line(&buffer[6..], 6),
            Frame::Line {
                line: b"sumn 3",
                consumed: 7
            }
        );
        assert_eq!(next_line(&buffer[13..], 6), Frame::Partial);
        assert_eq!(next_line(b"", 6), Frame::Partial);
        assert_eq!(
            next_line(b"123456\r\n", 6),
            Frame::Line {
                line: b"123456\r",
                consumed: 8
            }
        );
    }

    /// Over the limit is too long, whether the line is complete or not.
    #[test]
    fn too_long() {
        assert_eq!(next_line(b"1234567\n", 6), Frame::TooLong);
        assert_eq!(next_line(b"1234567", 6), Frame::TooLong);
        assert_eq!(next_line(b"123456", 6), Frame::Partial);
    }
}
