//! `--remote W`: the servers' jobs go through the script's Redis to its W
//! sumworkers, which stop with the rest.

use std::collections::{BTreeMap, BTreeSet};

use super::Script;
use crate::one_at_a_time;
use crate::support::{eventually, IO_TIMEOUT};

/// The jobs sent through the front, with their answers: both kinds, on two
/// connections (leastconn gives each server one).
const JOBS: [(&str, &str); 4] = [
    ("sumn 25000", "312512500"),
    ("prime 1000003", "true"),
    ("sumn 100", "5050"),
    // 101 × 9901.
    ("prime 1000001", "false"),
];

/// One field of an `XINFO …` reply (a flat list of names and values).
fn xinfo_field(reply: &[redis::Value], name: &str) -> redis::Value {
    reply
        .chunks(2)
        .find_map(|pair| match pair {
            [key, value] if redis::from_redis_value_ref::<String>(key).is_ok_and(|k| k == name) => {
                Some(value.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
}

fn xinfo_int(reply: &[redis::Value], name: &str) -> i64 {
    redis::from_redis_value(xinfo_field(reply, name)).expect("an integer")
}

/// `--remote 2`: right answers through HAProxy, every job through the
/// script's Redis and taken and settled by its workers; SIGTERM stops all
/// six processes (servers, HAProxy, workers, Redis).
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
#[cfg_attr(
    all(no_redis, not(no_haproxy)),
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn remote_runs_the_jobs_on_its_workers() {
    let _serial = one_at_a_time();
    let script = Script::start_remote();
    // Start also asked `sumn 25000` once through the front.
    let mut sent = 1;
    let mut conns = [script.balancer_conn(), script.balancer_conn()];
    for conn in &mut conns {
        for (job, answer) in JOBS {
            assert_eq!(conn.request(job), answer, "{job}");
            sent += 1;
        }
    }
    drop(conns);

    // The broker's side: every job was added to the stream, and workers
    // settled each one (a settled entry is acknowledged and deleted in the
    // worker's MULTI); both workers are consumers of the group.
    let broker = format!("redis://{}", script.addr("redis on "));
    let mut redis = redis::Client::open(broker.as_str())
        .and_then(|c| c.get_connection_with_timeout(IO_TIMEOUT))
        .expect("connect to the cluster's redis");
    let stream: Vec<redis::Value> = redis::cmd("XINFO")
        .arg(&["STREAM", "ysum:jobs"])
        .query(&mut redis)
        .expect("XINFO STREAM");
    assert_eq!(xinfo_int(&stream, "entries-added"), sent, "{stream:?}");
    assert_eq!(xinfo_int(&stream, "length"), 0, "{stream:?}");
    let groups: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg(&["GROUPS", "ysum:jobs"])
        .query(&mut redis)
        .expect("XINFO GROUPS");
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(xinfo_int(&groups[0], "pending"), 0, "{groups:?}");
    // A worker joins the group as a consumer at its first read, moments
    // after its `reading` line.
    let both = BTreeSet::from(["w1".to_owned(), "w2".to_owned()]);
    let mut names = BTreeSet::new();
    let joined = eventually(IO_TIMEOUT, || {
        let consumers: Vec<Vec<redis::Value>> = redis::cmd("XINFO")
            .arg(&["CONSUMERS", "ysum:jobs", "ysum:workers"])
            .query(&mut redis)
            .expect("XINFO CONSUMERS");
        names = consumers
            .iter()
            .map(|c| redis::from_redis_value(xinfo_field(c, "name")).expect("a name"))
            .collect();
        names == both
    });
    assert!(joined, "the group's consumers: {names:?}");

    // The servers' side: both run `remote` on that broker, see both
    // workers (read every half second), and together answered every job.
    let mut answered = 0;
    for index in 1..=2 {
        let mut conn = script.server_conn(index);
        let mut stats = serde_json::Value::Null;
        let seen = eventually(IO_TIMEOUT, || {
            stats = serde_json::from_str(&conn.request("stats")).expect("stats is JSON");
            let workers: BTreeSet<&str> = stats["remote"]["workers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["name"].as_str())
                .collect();
            workers == BTreeSet::from(["w1", "w2"])
        });
        assert!(seen, "server {index} does not list both workers: {stats}");
        assert_eq!(stats["strategy"], "remote", "{stats}");
        assert_eq!(stats["remote"]["broker"], broker.as_str(), "{stats}");
        let jobs: BTreeMap<&str, i64> = ["sumn", "prime"]
            .into_iter()
            .map(|kind| (kind, stats["jobs"][kind]["ok"].as_i64().expect("ok")))
            .collect();
        answered += jobs.values().sum::<i64>();
    }
    assert_eq!(answered, sent);

    script.sigterm_and_check_all_gone();
}
