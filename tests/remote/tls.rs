//! A `rediss://` broker (`redis-server --tls-port`) with a CA and a
//! certificate the test makes: jobs are served with `--broker-ca-file`,
//! and a broker whose certificate the process cannot verify is never
//! talked to.

use std::path::Path;

use crate::engines::{sumworker, Redis, RedisOptions, TlsFiles, Worker};
use crate::security::{run_to_exit, scratch, server_on};
use crate::support::Io;

/// A CA, and a certificate it signed for 127.0.0.1, written in `dir`.
pub(crate) fn make_certificates(dir: &Path) -> TlsFiles {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ysum test CA");
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = server
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("redis.pem"),
        key: dir.join("redis.key"),
    };
    std::fs::write(&files.ca, ca_cert.pem()).expect("write the CA");
    std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
    std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
    files
}

/// Jobs go through a TLS broker whose certificate chains to the CA file;
/// without that file the server cannot verify it, and says so in its
/// `ERR unavailable`, and the worker never reads a job.
fn tls_broker_serves(io: Io) {
    let dir = scratch(&format!("tls-{}", io.name()));
    let files = make_certificates(&dir);
    let redis = Redis::start_with(RedisOptions {
        tls: Some(files.clone()),
        ..RedisOptions::default()
    });
    let ca = files.ca.to_str().unwrap();
    let _worker = Worker::launch(&redis.url(), "tls-w", &["--broker-ca-file", ca], &[], None);
    let server = server_on(io, &redis.url(), &["--broker-ca-file", ca]);
    let mut conn = server.line_conn();
    for n in [1u64, 100, 25_000] {
        assert_eq!(
            conn.request(&format!("sumn {n}")),
            (u128::from(n) * u128::from(n + 1) / 2).to_string()
        );
    }

    let unverified = server_on(io, &redis.url(), &[]);
    let reply = unverified.line_conn().request("sumn 1");
    assert!(reply.starts_with("ERR unavailable "), "{reply}");
    let _ = std::fs::remove_dir_all(dir);
}

crate::with_redis!(tls_broker_serves);

/// A CA file with a `redis://` URL (no TLS) is refused at start.
#[test]
#[cfg_attr(
    no_redis,
    ignore = "redis-server not installed: apt-get install -y redis-server"
)]
fn tls_needs_the_ca() {
    let dir = scratch("tls-ca");
    let files = make_certificates(&dir);
    let redis = Redis::start_with(RedisOptions {
        tls: Some(files.clone()),
        ..RedisOptions::default()
    });
    let plain = redis.url().replacen("rediss://", "redis://", 1);
    let (output, _) = run_to_exit(
        sumworker().to_str().unwrap(),
        &[
            "--broker",
            &plain,
            "--broker-ca-file",
            files.ca.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rediss://"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
