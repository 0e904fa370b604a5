//! K sumservers behind one [`Balancer`]: a [`Fleet`].

use std::net::SocketAddr;

use crate::balancer::Balancer;
use crate::support::{Io, Server};

/// Servers `s1`, `s2`, … behind one HAProxy, each SIGKILLed on drop.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// The servers, in the order of their names.
    pub(crate) servers: Vec<Server>,
    /// HAProxy in front of them.
    pub(crate) balancer: Balancer,
    /// What each server was started with, to start it again the same.
    ios: Vec<Io>,
    apply: String,
    args: Vec<String>,
}

impl Fleet {
    /// One server per entry of `ios` (its `--io`), every one with `--apply
    /// apply` and `args`, and HAProxy in front of them (with the PROXY
    /// protocol when `send_proxy`, then the servers need `--accept-proxy`
    /// among `args`); returns once every server is UP.
    pub(crate) fn start(ios: &[Io], apply: &str, args: &[&str], send_proxy: bool) -> Fleet {
        let servers: Vec<Server> = ios
            .iter()
            .map(|io| Server::start(*io, apply, args))
            .collect();
        let addrs: Vec<SocketAddr> = servers.iter().map(Server::addr).collect();
        let balancer = Balancer::start(&addrs, send_proxy);
        Fleet {
            servers,
            balancer,
            ios: ios.to_vec(),
            apply: apply.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// HAProxy's name for server `index` (from 0): `s1`, `s2`, …
    pub(crate) fn name(index: usize) -> String {
        format!("s{}", index + 1)
    }

    /// Starts server `index` again on its old port (it must have exited).
    pub(crate) fn restart(&mut self, index: usize) {
        let addr = self.servers[index].addr().to_string();
        let mut args: Vec<&str> = vec!["--addr", &addr];
        args.extend(self.args.iter().map(String::as_str));
        self.servers[index] = Server::start(self.ios[index], &self.apply, &args);
    }
}
