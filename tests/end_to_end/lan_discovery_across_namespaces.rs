//! LAN discovery for real: two nodes in separate network namespaces joined by a bridge,
//! started with no bootstrap, find each other by mDNS and fetch.

use std::process::Command;

use crate::common::*;
use crate::procs::NodeProc;

/// Namespaces and links made for this test, removed on drop.
struct Lan {
    names: Vec<String>,
}

impl Lan {
    fn ip(args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn ns(ns: &str, args: &[&str]) -> bool {
        let mut full = vec!["netns", "exec", ns, "ip"];
        full.extend_from_slice(args);
        Self::ip(&full)
    }

    /// Two hosts `h1`, `h2` and a bridge namespace `br` with a bridge between them.
    fn create(tag: &str) -> Option<Lan> {
        let names: Vec<String> = ["br", "h1", "h2"]
            .iter()
            .map(|n| format!("sg{tag}{n}"))
            .collect();
        let lan = Lan {
            names: names.clone(),
        };
        let (br, h1, h2) = (&names[0], &names[1], &names[2]);
        for n in &names {
            if !Self::ip(&["netns", "add", n]) || !Self::ns(n, &["link", "set", "lo", "up"]) {
                return None;
            }
        }
        if !Self::ns(br, &["link", "add", "br0", "type", "bridge"])
            || !Self::ns(br, &["link", "set", "br0", "up"])
        {
            return None;
        }
        for (i, h) in [h1, h2].iter().enumerate() {
            let (outer, inner) = (format!("v{i}b"), format!("v{i}h"));
            let ok = Self::ns(
                br,
                &[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
            ) && Self::ns(br, &["link", "set", &inner, "netns", h])
                && Self::ns(br, &["link", "set", &outer, "master", "br0"])
                && Self::ns(br, &["link", "set", &outer, "up"])
                && Self::ns(
                    h,
                    &[
                        "addr",
                        "add",
                        &format!("10.213.7.{}/24", i + 1),
                        "dev",
                        &inner,
                    ],
                )
                && Self::ns(h, &["link", "set", &inner, "multicast", "on"])
                && Self::ns(h, &["link", "set", &inner, "up"]);
            if !ok {
                return None;
            }
        }
        Some(lan)
    }

    fn exec(&self, host: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[host]])
            .arg(crate::common::bin());
        c.env_remove("STORGO_CONVERGENCE_SECRET")
            .env_remove("RUST_LOG");
        c
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[test]
fn two_namespaces_find_each_other_by_mdns_and_fetch() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root (CI runs this test as root)");
        return;
    }
    if !Lan::ip(&["-V"]) {
        eprintln!("skipped: the `ip` command (iproute2) is not installed");
        return;
    }
    let tag = format!("{}", std::process::id() % 100_000);
    let Some(lan) = Lan::create(&tag) else {
        eprintln!("skipped: could not create network namespaces here");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("h1"), tmp.path().join("h2"));
    // No bootstrap, mDNS on: each listens on its namespace's LAN address only.
    let n1 = NodeProc::start_with(lan.exec(1), &d1, &["--listen", "/ip4/10.213.7.1/tcp/0"]);
    let n2 = NodeProc::start_with(lan.exec(2), &d2, &["--listen", "/ip4/10.213.7.2/tcp/0"]);

    let path = tmp.path().join("slides.pdf");
    let data = write_random(&path, 6 << 20, 9);
    // The CLI reaches each node's API on the loopback of its own namespace.
    let mut add = lan.exec(1);
    add.arg("--data-dir").arg(&d1).arg("add").arg(&path);
    let id = last_line(&ok(add));

    let out = tmp.path().join("got.pdf");
    let mut fetch = lan.exec(2);
    fetch
        .arg("--data-dir")
        .arg(&d2)
        .args(["fetch", &id, "--timeout", "30", "-o"])
        .arg(&out);
    ok(fetch);
    assert!(std::fs::read(&out).unwrap() == data);

    let mut peers = lan.exec(2);
    peers.arg("--data-dir").arg(&d2).arg("peers");
    assert!(ok(peers).contains(&n1.peer_id), "found by mDNS");
    assert!(n1.stop().success());
    assert!(n2.stop().success());
}
