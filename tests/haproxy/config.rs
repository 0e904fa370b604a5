//! The shipped config is valid HAProxy, as shipped and as rendered.

use std::process::Command;

use crate::balancer::{haproxy, render, workspace};

/// `haproxy -c` accepts `deploy/haproxy/sumserver.cfg` as shipped, with and
/// without the PROXY protocol variant, and as `scripts/cluster` renders it.
#[test]
#[cfg_attr(
    no_haproxy,
    ignore = "haproxy not installed: apt-get install -y haproxy"
)]
fn shipped_config_is_valid() {
    let dir = std::env::temp_dir().join(format!("ysum-haproxy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rendered = dir.join("rendered.cfg");
    let servers = [
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:7002".parse().unwrap(),
    ];
    std::fs::write(&rendered, render(&servers, 7000, &dir, true)).unwrap();
    let shipped = workspace().join("deploy/haproxy/sumserver.cfg");
    for (config, send_proxy) in [(&shipped, false), (&shipped, true), (&rendered, true)] {
        let mut check = Command::new(haproxy());
        check
            .arg("-c")
            .arg("-f")
            .arg(config)
            .env("SUMSERVER_RUN_DIR", &dir)
            .env_remove("SUMSERVER_SEND_PROXY");
        if send_proxy {
            check.env("SUMSERVER_SEND_PROXY", "1");
        }
        let output = check.output().expect("run haproxy -c");
        assert!(
            output.status.success(),
            "haproxy -c -f {} (send-proxy {send_proxy}): {}{}",
            config.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(text.contains("server s2 127.0.0.1:7002"), "{text}");
    assert!(
        !text.contains("127.0.0.1:10003"),
        "the example servers stay: {text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
