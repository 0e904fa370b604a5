//! Any bytes through sumserver's request parser: a request or one clean
//! `ERR bad-request` line, never a panic.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_request -- -max_total_time=60`
//! (from the repository root; `scripts/soak` does it).
//!
//! Beyond the proptests in `server/src/protocol.rs` (a defined reply, one
//! line), it checks what `tests/reliability/bad_input.rs` checks: no control
//! character at all in a reply; a request reads the same in any case, with
//! spaces around, with a final `\r`; a job's canonical form parses back to
//! it; the seed dialect accepts exactly the decimal numbers of u64.

#![no_main]

use libfuzzer_sys::fuzz_target;
use server::protocol::{parse_line, parse_seed, Code, Reject, Request, SEED_READ};

fuzz_target!(|data: &[u8]| {
    check_line(data);
    check_seed(data);
    check_seed(&data[..data.len().min(SEED_READ)]);
});

/// A rejection is `ERR bad-request …` on one line a terminal shows as is.
fn check_reject(reject: &Reject, input: &[u8]) {
    let reply = reject.to_string();
    assert_eq!(reject.code, Code::BadRequest, "{input:?}");
    assert!(
        reply.starts_with("ERR bad-request "),
        "{input:?}: {reply:?}"
    );
    assert!(!reply.chars().any(char::is_control), "{input:?}: {reply:?}");
}

fn check_line(line: &[u8]) {
    let parsed = parse_line(line);
    match &parsed {
        Err(reject) => check_reject(reject, line),
        Ok(request) => {
            for variant in [
                line.to_ascii_uppercase(),
                line.to_ascii_lowercase(),
                [b" ", line, b" "].concat(),
            ] {
                assert_eq!(parse_line(&variant), parsed, "{line:?} vs {variant:?}");
            }
            if let Request::Job(job) = request {
                assert_eq!(
                    parse_line(job.to_string().as_bytes()),
                    Ok(Request::Job(*job)),
                    "{line:?}"
                );
            }
        }
    }
    if !line.ends_with(b"\r") {
        assert_eq!(parse_line(&[line, b"\r"].concat()), parsed, "{line:?}");
    }
}

fn check_seed(bytes: &[u8]) {
    let expected = std::str::from_utf8(bytes.trim_ascii_end())
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok());
    match parse_seed(bytes) {
        Ok(offload::Job::Sumn(n)) => assert_eq!(Some(n), expected, "{bytes:?}"),
        Ok(job) => panic!("the seed dialect gave {job:?} for {bytes:?}"),
        Err(reject) => {
            assert_eq!(expected, None, "{bytes:?} refused");
            check_reject(&reject, bytes);
        }
    }
}
