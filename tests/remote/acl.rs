//! The shipped ACL users (`deploy/redis/users.acl`) on a real Redis: a
//! server and a worker each with its own user serve every job; the
//! server's user cannot take jobs, the worker's cannot add them, neither
//! touches a key outside the prefix, and the default user is off.

use crate::engines::{sumworker, Redis, RedisOptions, Worker};
use crate::security::{run_to_exit, scratch, server_on};
use crate::support::Io;

const SERVER_PASSWORD: &str = "server-Pa55-1f2e";
const WORKER_PASSWORD: &str = "worker-Pa55-3d4c";
const ADMIN_PASSWORD: &str = "admin-Pa55-5b6a";

/// A Redis with the shipped users, each given a password as the docs say
/// (appended to its line), and an administrator for the test's own
/// commands.
fn redis_with_shipped_users(name: &str) -> Redis {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/redis/users.acl"),
    )
    .expect("read deploy/redis/users.acl");
    let mut acl = String::new();
    for line in shipped.lines() {
        acl.push_str(line);
        if line.starts_with("user ysum-server ") {
            acl.push_str(&format!(" >{SERVER_PASSWORD}"));
        } else if line.starts_with("user ysum-worker ") {
            acl.push_str(&format!(" >{WORKER_PASSWORD}"));
        }
        acl.push('\n');
    }
    acl.push_str(&format!("user admin on >{ADMIN_PASSWORD} ~* &* +@all\n"));
    let path = scratch(name).join("users.acl");
    std::fs::write(&path, acl).expect("write the ACL file");
    Redis::start_with(RedisOptions {
        args: vec!["--aclfile".into(), path.to_str().unwrap().into()],
        admin: Some(format!("admin:{ADMIN_PASSWORD}")),
        ..RedisOptions::default()
    })
}

/// The error code of a command run as `user`.
fn code_as(redis: &Redis, user_info: &str, command: &redis::Cmd) -> Option<String> {
    let url = if user_info.is_empty() {
        redis.url()
    } else {
        redis.url_as(user_info)
    };
    let client = redis::Client::open(url).expect("client");
    let mut conn = match client.get_connection() {
        Ok(conn) => conn,
        Err(err) => return Some(err.code().unwrap_or("AUTH").to_owned()),
    };
    command
        .query::<redis::Value>(&mut conn)
        .err()
        .map(|err| err.code().unwrap_or("other").to_owned())
}

/// Each role with its own user serves every job, under both `--io`.
fn shipped_users_serve(io: Io) {
    let redis = redis_with_shipped_users(&format!("acl-{}", io.name()));
    let worker_url = redis.url_as(&format!("ysum-worker:{WORKER_PASSWORD}"));
    let server_url = redis.url_as(&format!("ysum-server:{SERVER_PASSWORD}"));
    // A short lease, so that renewals (a script) run during the sleep.
    let _worker = Worker::launch(&worker_url, "acl-w", &["--lease", "400ms"], &[], None);
    let server = server_on(io, &server_url, &[]);
    let mut conn = server.line_conn();
    assert_eq!(conn.request("sumn 100"), "5050");
    assert_eq!(conn.request("prime 1000003"), "true");
    assert_eq!(conn.request("sleep 600"), "ok");
    let stats = server.stats();
    assert_eq!(stats["remote"]["connected"], true, "{stats}");
    assert_eq!(stats["jobs"]["sleep"]["ok"], 1, "{stats}");
}

crate::with_redis!(shipped_users_serve);

/// What each user may not do is refused with `NOPERM`; the default user
/// cannot log in; a process given the other role's user stops at start.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn users_are_confined() {
    let redis = redis_with_shipped_users("acl-confined");
    let server_user = format!("ysum-server:{SERVER_PASSWORD}");
    let worker_user = format!("ysum-worker:{WORKER_PASSWORD}");
    let mut take = redis::cmd("XREADGROUP");
    take.arg(&[
        "GROUP",
        "ysum:workers",
        "thief",
        "COUNT",
        "1",
        "STREAMS",
        "ysum:jobs",
        ">",
    ]);
    let mut ack = redis::cmd("XACK");
    ack.arg(&["ysum:jobs", "ysum:workers", "1-0"]);
    let mut add = redis::cmd("XADD");
    add.arg(&["ysum:jobs", "*", "id", "1", "job", "sumn 1"]);
    let mut set_other = redis::cmd("SET");
    set_other.arg(&["session:42", "x"]);
    let mut get_other = redis::cmd("GET");
    get_other.arg("session:42");
    let mut push_other = redis::cmd("RPUSH");
    push_other.arg(&["session:list", "x"]);
    let mut flush = redis::cmd("FLUSHALL");
    flush.arg("SYNC");
    for (user, command, what) in [
        (&server_user, &take, "the server's user takes a job"),
        (&server_user, &ack, "the server's user acknowledges a job"),
        (&worker_user, &add, "the worker's user adds a job"),
        (
            &server_user,
            &set_other,
            "the server's user writes another key",
        ),
        (
            &server_user,
            &get_other,
            "the server's user reads another key",
        ),
        (
            &worker_user,
            &push_other,
            "the worker's user pushes to another key",
        ),
        (
            &worker_user,
            &get_other,
            "the worker's user reads another key",
        ),
        (&worker_user, &flush, "the worker's user flushes everything"),
    ] {
        assert_eq!(
            code_as(&redis, user, command).as_deref(),
            Some("NOPERM"),
            "{what}"
        );
    }
    let mut ping = redis::cmd("PING");
    ping.arg("x");
    assert_eq!(
        code_as(&redis, "", &ping).as_deref(),
        Some("NOAUTH"),
        "the default user is on"
    );

    // Each role with the other's user: refused at start, exit 1.
    let worker_as_server = run_to_exit(
        sumworker().to_str().unwrap(),
        &["--broker", &redis.url_as(&server_user)],
        &[],
    )
    .0;
    let stderr = String::from_utf8_lossy(&worker_as_server.stderr);
    assert_eq!(worker_as_server.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ACL user lacks the right"), "{stderr}");
    let server_as_worker = run_to_exit(
        env!("CARGO_BIN_EXE_sumserver"),
        &[
            "--addr",
            "127.0.0.1:0",
            "--apply",
            "remote",
            "--broker",
            &redis.url_as(&worker_user),
        ],
        &[],
    )
    .0;
    let stderr = String::from_utf8_lossy(&server_as_worker.stderr);
    assert_eq!(server_as_worker.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ACL user lacks the right"), "{stderr}");
}
