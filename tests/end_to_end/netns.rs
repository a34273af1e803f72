//! Test hosts in network namespaces made by the test (root only), removed on drop.
//!
//! A namespace `br` holds one bridge per segment; each host namespace `h1`, `h2`, … has a
//! veth into its segment's bridge with the address 10.213.7.N/24. With two segments, a veth
//! pair between their bridges (`trunk`) joins them into one LAN, and [`Lan::cut`] /
//! [`Lan::heal`] take it down and up: a network partition.

use std::process::Command;

pub struct Lan {
    /// `br` first, then the hosts in order.
    names: Vec<String>,
}

pub use crate::common::cannot_run;

impl Lan {
    pub fn ip(args: &[&str]) -> bool {
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

    /// Hosts on `segments.len()` bridges, `segments[i]` of them on bridge `i`; `None` when
    /// namespaces cannot be made here (not root, no iproute2).
    pub fn create(tag: &str, segments: &[usize]) -> Option<Lan> {
        if !crate::common::is_root() || !Self::ip(&["-V"]) {
            return None;
        }
        let hosts: usize = segments.iter().sum();
        let mut names = vec![format!("sg{tag}br")];
        names.extend((1..=hosts).map(|i| format!("sg{tag}h{i}")));
        let lan = Lan {
            names: names.clone(),
        };
        for n in &names {
            if !Self::ip(&["netns", "add", n]) || !Self::ns(n, &["link", "set", "lo", "up"]) {
                return None;
            }
        }
        let br = &names[0];
        for s in 0..segments.len() {
            let b = format!("br{s}");
            if !Self::ns(br, &["link", "add", &b, "type", "bridge"])
                || !Self::ns(br, &["link", "set", &b, "up"])
            {
                return None;
            }
        }
        let mut host = 0;
        for (s, count) in segments.iter().enumerate() {
            for _ in 0..*count {
                host += 1;
                let h = &names[host];
                let (outer, inner) = (format!("v{host}b"), format!("v{host}h"));
                let ok = Self::ns(
                    br,
                    &[
                        "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                    ],
                ) && Self::ns(br, &["link", "set", &inner, "netns", h])
                    && Self::ns(br, &["link", "set", &outer, "master", &format!("br{s}")])
                    && Self::ns(br, &["link", "set", &outer, "up"])
                    && Self::ns(
                        h,
                        &["addr", "add", &format!("10.213.7.{host}/24"), "dev", &inner],
                    )
                    && Self::ns(h, &["link", "set", &inner, "multicast", "on"])
                    && Self::ns(h, &["link", "set", &inner, "up"]);
                if !ok {
                    return None;
                }
            }
        }
        if segments.len() == 2 {
            let ok = Self::ns(
                br,
                &[
                    "link", "add", "trunk0", "type", "veth", "peer", "name", "trunk1",
                ],
            ) && Self::ns(br, &["link", "set", "trunk0", "master", "br0"])
                && Self::ns(br, &["link", "set", "trunk1", "master", "br1"])
                && Self::ns(br, &["link", "set", "trunk1", "up"])
                && lan.heal();
            if !ok {
                return None;
            }
        }
        Some(lan)
    }

    /// Host `n`'s address (hosts count from 1).
    pub fn addr(&self, n: usize) -> String {
        format!("10.213.7.{n}")
    }

    /// Cuts the link between the two segments.
    pub fn cut(&self) -> bool {
        Self::ns(&self.names[0], &["link", "set", "trunk0", "down"])
    }

    /// Restores it.
    pub fn heal(&self) -> bool {
        Self::ns(&self.names[0], &["link", "set", "trunk0", "up"])
    }

    /// The storgo binary, run in host `n`'s namespace.
    pub fn exec(&self, n: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[n]])
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
