//! The rolling rotation of docs/distributed.md ("Security"), under load:
//! the broker's password and the signing key both replaced while two
//! servers and two workers serve, one process restarted at a time, and not
//! one request fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::engines::{sumworker, Redis, RedisOptions, Worker};
use crate::load::{Connections, Load};
use crate::security::{run_to_exit, scratch, server_on};
use crate::support::{Io, Server, IO_TIMEOUT};

const ADMIN: &str = "admin:admin-Pa55-9f8e";

/// The files every process reads at start: the password and the keys.
struct Secrets {
    password: PathBuf,
    keys: PathBuf,
}

impl Secrets {
    fn write(&self, password: &str, keys: &str) {
        std::fs::write(&self.password, format!("{password}\n")).unwrap();
        std::fs::write(&self.keys, keys).unwrap();
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--broker-password-file".into(),
            path(&self.password),
            "--broker-secret-file".into(),
            path(&self.keys),
        ]
    }
}

fn path(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn acl(redis: &Redis, rule: &str) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("ysum")
        .arg(rule)
        .query(&mut redis.conn())
        .expect("ACL SETUSER");
}

/// Password and key rotated in three rolling steps under load: (1) the
/// new password added to the user, every process restarted with it and
/// with the keys "old, new" (old signs); (2) keys "new, old"; (3) the old
/// password removed, keys "new". Not one request fails, and afterwards the
/// old password is refused.
fn rotation_under_load(io: Io) {
    let dir = scratch(&format!("rotation-{}", io.name()));
    let users = dir.join("users.acl");
    std::fs::write(
        &users,
        format!(
            "user default off\nuser {} on >{} ~* &* +@all\nuser ysum on >old-Pa55-0a1b ~ysum:* &* +@all\n",
            ADMIN.split(':').next().unwrap(),
            ADMIN.split(':').nth(1).unwrap()
        ),
    )
    .unwrap();
    let redis = Redis::start_with(RedisOptions {
        args: vec!["--aclfile".into(), path(&users)],
        admin: Some(ADMIN.into()),
        ..RedisOptions::default()
    });
    let url = redis.url_as("ysum");
    let secrets = Secrets {
        password: dir.join("password"),
        keys: dir.join("keys"),
    };
    const OLD_KEY: &str = "old-key-0123456789abcdef";
    const NEW_KEY: &str = "new-key-fedcba9876543210";
    secrets.write("old-Pa55-0a1b", &format!("{OLD_KEY}\n"));
    let args = secrets.args();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();

    let start_worker = |name: &str| Worker::launch(&url, name, &arg_refs, &[], None);
    let start_server = || server_on(io, &url, &arg_refs);
    let mut workers = [start_worker("rot-1"), start_worker("rot-2")];
    let mut servers: Vec<Server> = vec![start_server(), start_server()];
    let load = Load::start(
        servers.iter().map(Server::addr).collect(),
        Connections::PerRequest,
    );
    std::thread::sleep(Duration::from_millis(300));

    let steps: [(&str, &str, Option<&str>); 3] = [
        ("new-Pa55-2c3d", "old+new", Some(">new-Pa55-2c3d")),
        ("new-Pa55-2c3d", "new+old", None),
        ("new-Pa55-2c3d", "new", Some("<old-Pa55-0a1b")),
    ];
    for (step, (password, keys, rule)) in steps.into_iter().enumerate() {
        let keys = match keys {
            "old+new" => format!("{OLD_KEY}\n{NEW_KEY}\n"),
            "new+old" => format!("{NEW_KEY}\n{OLD_KEY}\n"),
            _ => format!("{NEW_KEY}\n"),
        };
        // The password is added before anyone uses it, and removed only
        // once nobody does.
        if step == 0 {
            acl(&redis, rule.unwrap());
        }
        secrets.write(password, &keys);
        for (index, worker) in workers.iter_mut().enumerate() {
            worker.signal(Signal::SIGTERM);
            worker.wait_exit(IO_TIMEOUT);
            *worker = start_worker(&format!("rot-{}-{step}", index + 1));
        }
        for server in &mut servers {
            load.retire(server.addr());
            server.signal(Signal::SIGTERM);
            server.wait_exit(IO_TIMEOUT);
            *server = start_server();
            load.admit(server.addr());
        }
        if step == 2 {
            acl(&redis, rule.unwrap());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let seen = load.finish();
    let (ok, failures) = (seen.ok, seen.failures());
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        ok + failures.len() as u64
    );
    assert!(ok > 100, "only {ok} requests");

    // The old password is gone.
    std::fs::write(&secrets.password, "old-Pa55-0a1b\n").unwrap();
    let (output, _) = run_to_exit(
        sumworker().to_str().unwrap(),
        &[
            "--broker",
            &url,
            "--broker-password-file",
            &path(&secrets.password),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let _ = std::fs::remove_dir_all(dir);
}

crate::with_redis!(rotation_under_load);
