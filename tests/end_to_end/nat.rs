//! An internet in network namespaces, made by the test (root only) and removed on drop.
//!
//! A namespace `w` holds the "WAN" bridge. Public hosts `p1`, `p2`, … sit on it at
//! 11.213.0.(10+i) (a routable-looking range that never leaves these namespaces: UPnP and
//! AutoNAT treat private ranges specially, so the WAN must not be one). Each home `i` is a
//! router `r{i}` (WAN 11.213.0.(100+i), LAN 192.168.i.1) doing what a home router does —
//! `iptables MASQUERADE` out of the WAN, new inbound connections dropped, replies let in —
//! and a host `h{i}` at 192.168.i.2 behind it. A [`Nat::Symmetric`] router picks a random
//! source port for every connection (`--random-fully`), which defeats hole punching.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub use crate::common::cannot_run;

/// The routers' firewall: iptables on the legacy (x_tables) backend, because Debian's
/// `miniupnpd-iptables` writes its port mappings through libiptc, which sees only those tables
/// (rules made with Debian's default `iptables-nft` are invisible to it, and its mappings fail
/// with UPnP error 501).
const IPTABLES: &str = "iptables-legacy";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Keeps the host's source port when it can (Linux's MASQUERADE): endpoint-independent
    /// mapping, the NAT most home routers are.
    PortPreserving,
    /// A new random port per connection: what carrier-grade and some corporate NATs do.
    Symmetric,
}

pub struct Internet {
    tag: String,
    publics: usize,
    homes: Vec<Nat>,
    /// Every namespace made, removed on drop.
    names: Vec<String>,
    daemons: Vec<Child>,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `program args` in namespace `ns`.
fn in_ns(ns: &str, program: &str, args: &[&str]) -> bool {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    ip(&full)
}

impl Internet {
    /// `publics` public hosts and one home per entry of `homes`; `None` when namespaces or
    /// iptables are not available here.
    pub fn create(tag: &str, publics: usize, homes: &[Nat]) -> Option<Internet> {
        if !crate::common::is_root() || !ip(&["-V"]) || !in_ns_ok(IPTABLES, &["-V"]) {
            return None;
        }
        let mut net = Internet {
            tag: tag.to_owned(),
            publics,
            homes: homes.to_vec(),
            names: Vec::new(),
            daemons: Vec::new(),
        };
        let w = net.add_ns("w")?;
        let ok = in_ns(&w, "ip", &["link", "add", "wbr", "type", "bridge"])
            && in_ns(&w, "ip", &["link", "set", "wbr", "up"]);
        if !ok {
            return None;
        }
        for i in 1..=publics {
            let p = net.add_ns(&format!("p{i}"))?;
            let outer = format!("p{i}");
            let ok = net.veth(&w, &outer, &p, "e0")
                && in_ns(&w, "ip", &["link", "set", &outer, "master", "wbr"])
                && in_ns(&w, "ip", &["link", "set", &outer, "up"])
                && in_ns(
                    &p,
                    "ip",
                    &[
                        "addr",
                        "add",
                        &format!("{}/24", net.public_addr(i)),
                        "dev",
                        "e0",
                    ],
                )
                && in_ns(&p, "ip", &["link", "set", "e0", "up"]);
            if !ok {
                return None;
            }
        }
        for (n, nat) in homes.iter().enumerate() {
            let i = n + 1;
            let r = net.add_ns(&format!("r{i}"))?;
            let h = net.add_ns(&format!("h{i}"))?;
            let outer = format!("r{i}");
            let wan = net.router_wan(i);
            let ok = net.veth(&w, &outer, &r, "wan0")
                && in_ns(&w, "ip", &["link", "set", &outer, "master", "wbr"])
                && in_ns(&w, "ip", &["link", "set", &outer, "up"])
                && in_ns(
                    &r,
                    "ip",
                    &["addr", "add", &format!("{wan}/24"), "dev", "wan0"],
                )
                && in_ns(&r, "ip", &["link", "set", "wan0", "up"])
                && net.veth(&r, "lan0", &h, "e0")
                && in_ns(
                    &r,
                    "ip",
                    &["addr", "add", &format!("192.168.{i}.1/24"), "dev", "lan0"],
                )
                && in_ns(&r, "ip", &["link", "set", "lan0", "up"])
                && in_ns(
                    &h,
                    "ip",
                    &[
                        "addr",
                        "add",
                        &format!("{}/24", net.host_addr(i)),
                        "dev",
                        "e0",
                    ],
                )
                && in_ns(&h, "ip", &["link", "set", "e0", "up"])
                && in_ns(
                    &h,
                    "ip",
                    &["route", "add", "default", "via", &format!("192.168.{i}.1")],
                )
                && in_ns(&r, "sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])
                && net.masquerade(&r, *nat);
            if !ok {
                return None;
            }
        }
        Some(net)
    }

    fn add_ns(&mut self, short: &str) -> Option<String> {
        let name = format!("sg{}{short}", self.tag);
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        self.names.push(name.clone());
        in_ns(&name, "ip", &["link", "set", "lo", "up"]).then_some(name)
    }

    /// A veth pair: `a` stays in `ns_a`, `b` goes to `ns_b`.
    fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> bool {
        in_ns(
            ns_a,
            "ip",
            &["link", "add", a, "type", "veth", "peer", "name", b],
        ) && in_ns(ns_a, "ip", &["link", "set", b, "netns", ns_b])
    }

    /// The home router's rules: out through the WAN masqueraded; from the WAN only replies.
    fn masquerade(&self, r: &str, nat: Nat) -> bool {
        let mut nat_rule = vec![
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "wan0",
            "-j",
            "MASQUERADE",
        ];
        if nat == Nat::Symmetric {
            nat_rule.push("--random-fully");
        }
        in_ns(r, IPTABLES, &nat_rule)
            && in_ns(r, IPTABLES, &["-N", "HOME-IN"])
            && in_ns(
                r,
                IPTABLES,
                &["-A", "FORWARD", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            )
            // Port forwards and UPnP mappings go here, before the drop.
            && in_ns(r, IPTABLES, &["-A", "FORWARD", "-i", "wan0", "-j", "HOME-IN"])
            && in_ns(r, IPTABLES, &["-A", "FORWARD", "-i", "wan0", "-j", "DROP"])
            // Nor does the router itself answer from the WAN: without this its kernel resets
            // a connection to a port nothing maps, which no home router does (and which kills
            // a hole punch whose first packet arrives before the mapping exists).
            && in_ns(
                r,
                IPTABLES,
                &["-A", "INPUT", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
            )
            && in_ns(r, IPTABLES, &["-A", "INPUT", "-i", "wan0", "-j", "DROP"])
    }

    /// Public host `i`'s address (from 1).
    pub fn public_addr(&self, i: usize) -> String {
        format!("11.213.0.{}", 10 + i)
    }

    /// Home `i`'s router, as the WAN sees it.
    pub fn router_wan(&self, i: usize) -> String {
        format!("11.213.0.{}", 100 + i)
    }

    /// Home `i`'s host, on its LAN.
    pub fn host_addr(&self, i: usize) -> String {
        format!("192.168.{i}.2")
    }

    pub fn public_ns(&self, i: usize) -> String {
        format!("sg{}p{i}", self.tag)
    }

    pub fn host_ns(&self, i: usize) -> String {
        format!("sg{}h{i}", self.tag)
    }

    pub fn router_ns(&self, i: usize) -> String {
        format!("sg{}r{i}", self.tag)
    }

    /// The storgo binary in namespace `ns`.
    pub fn storgo(&self, ns: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(crate::common::bin());
        c.env_remove("STORGO_CONVERGENCE_SECRET")
            .env_remove("RUST_LOG");
        // A filter for the nodes' logs when a test is being looked into.
        if let Some(f) = std::env::var_os("STORGO_TEST_RUST_LOG") {
            c.env("RUST_LOG", f);
        }
        c
    }

    /// The storgo CLI of the node whose data dir is `dir`, in namespace `ns`.
    pub fn cli(&self, ns: &str, dir: &Path, args: &[&str]) -> Command {
        let mut c = self.storgo(ns);
        c.arg("--data-dir").arg(dir).args(args);
        c
    }

    /// Forwards `port` (TCP and UDP) on home `i`'s router to its host: a port forward set by
    /// hand.
    pub fn forward(&self, i: usize, port: u16) -> bool {
        let r = self.router_ns(i);
        let to = format!("{}:{port}", self.host_addr(i));
        let p = port.to_string();
        ["tcp", "udp"].iter().all(|proto| {
            in_ns(
                &r,
                IPTABLES,
                &[
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-i",
                    "wan0",
                    "-p",
                    proto,
                    "--dport",
                    &p,
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &to,
                ],
            ) && in_ns(
                &r,
                IPTABLES,
                &[
                    "-A",
                    "HOME-IN",
                    "-p",
                    proto,
                    "-d",
                    &self.host_addr(i),
                    "--dport",
                    &p,
                    "-j",
                    "ACCEPT",
                ],
            )
        })
    }

    /// `ms` of delay on every WAN link, into each site: `tc netem` on the bridge's ports, or,
    /// on a kernel without netem (this project's VM), `wan_delay.py` holding the packets each
    /// site's WAN interface receives in an NFQUEUE. Says which it used; `None` when neither.
    pub fn delay(&mut self, ms: u32) -> Option<&'static str> {
        let w = format!("sg{}w", self.tag);
        let d = format!("{ms}ms");
        let ports: Vec<String> = (1..=self.publics)
            .map(|i| format!("p{i}"))
            .chain((1..=self.homes.len()).map(|i| format!("r{i}")))
            .collect();
        let netem = ports.iter().all(|p| {
            in_ns(
                &w,
                "tc",
                &["qdisc", "replace", "dev", p, "root", "netem", "delay", &d],
            )
        });
        if netem {
            return Some("netem");
        }
        let sites: Vec<(String, &str)> = (1..=self.publics)
            .map(|i| (self.public_ns(i), "e0"))
            .chain((1..=self.homes.len()).map(|i| (self.router_ns(i), "wan0")))
            .collect();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/end_to_end/wan_delay.py");
        for (ns, wan) in sites {
            let mut child = match Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "python3",
                    script,
                    "0",
                    &ms.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
            {
                Ok(c) => c,
                Err(_) => return None,
            };
            // Ready once it says so: the queue is bound before packets are sent to it.
            let mut line = String::new();
            let ready = child.stdout.take().is_some_and(|out| {
                std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)
                    .is_ok_and(|n| n > 0)
            });
            self.daemons.push(child);
            let queued = ready
                && in_ns(
                    &ns,
                    IPTABLES,
                    &[
                        "-t",
                        "mangle",
                        "-A",
                        "PREROUTING",
                        "-i",
                        wan,
                        "-j",
                        "NFQUEUE",
                        "--queue-num",
                        "0",
                    ],
                );
            if !queued {
                return None;
            }
        }
        Some("nfqueue")
    }

    /// Starts a real UPnP IGD daemon (`miniupnpd`) on home `i`'s router; `false` when it is not
    /// installed or does not start.
    pub fn start_upnp(&mut self, i: usize, dir: &Path) -> bool {
        // `ip netns exec` starts even when the daemon is missing: look for it first.
        if !in_ns_ok("sh", &["-c", "command -v miniupnpd"]) {
            return false;
        }
        let r = self.router_ns(i);
        let conf = dir.join(format!("miniupnpd-{i}.conf"));
        let text = format!(
            "ext_ifname=wan0\nlistening_ip=lan0\nenable_natpmp=no\nenable_upnp=yes\nsecure_mode=yes\n\
             system_uptime=yes\nupnp_forward_chain=HOME-IN\nupnp_nat_chain=MINIUPNPD\n\
             upnp_nat_postrouting_chain=MINIUPNPD-POSTROUTING\n\
             uuid=3b1d4f2a-0000-4000-8000-00000000000{i}\nallow 1024-65535 192.168.{i}.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
        );
        if std::fs::write(&conf, text).is_err() {
            return false;
        }
        // miniupnpd's NAT chain, jumped to from PREROUTING (its forward chain is HOME-IN).
        let chains = in_ns(&r, IPTABLES, &["-t", "nat", "-N", "MINIUPNPD"])
            && in_ns(
                &r,
                IPTABLES,
                &[
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-i",
                    "wan0",
                    "-j",
                    "MINIUPNPD",
                ],
            )
            && in_ns(&r, IPTABLES, &["-t", "nat", "-N", "MINIUPNPD-POSTROUTING"])
            && in_ns(
                &r,
                IPTABLES,
                &[
                    "-t",
                    "nat",
                    "-I",
                    "POSTROUTING",
                    "-o",
                    "wan0",
                    "-j",
                    "MINIUPNPD-POSTROUTING",
                ],
            );
        if !chains {
            return false;
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &r, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join(format!("miniupnpd-{i}.log"))).expect("log file"),
            ))
            .spawn();
        match child {
            Ok(c) => {
                self.daemons.push(c);
                true
            }
            Err(_) => false,
        }
    }
}

fn in_ns_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Drop for Internet {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}
