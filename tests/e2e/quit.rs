//! `quit` never destroys the replies already owed: every request read before
//! it is answered, then the server closes with a FIN (no reset), whatever
//! the client sent after `quit`.

use std::io::{Read, Write};

use crate::support::{both_io, Io, Server};

both_io!(quit_after_a_pipeline_keeps_every_reply);

/// `sumn 5` ×1000, `quit`, `ping` ×2000 in one write: exactly 1000 `15`
/// replies (quit has no reply of its own), then EOF, not a reset, under
/// inline and threads.
fn quit_after_a_pipeline_keeps_every_reply(io: Io) {
    let request = format!("{}quit\n{}", "sumn 5\n".repeat(1000), "ping\n".repeat(2000));
    for apply in ["inline", "threads"] {
        let server = Server::start(io, apply, &["--workers", "2"]);
        let mut stream = server.connect();
        stream.write_all(request.as_bytes()).expect("send");
        let mut replies = Vec::new();
        let read = stream.read_to_end(&mut replies);
        let text = String::from_utf8_lossy(&replies);
        let answers = text.lines().count();
        println!("figures: {io:?} × {apply}: {answers} replies before the close, {read:?}");
        assert!(
            read.is_ok(),
            "{apply}: the close was a reset: {read:?} after {answers} replies"
        );
        assert_eq!(text, "15\n".repeat(1000), "{apply}: {answers} replies");
    }
}
