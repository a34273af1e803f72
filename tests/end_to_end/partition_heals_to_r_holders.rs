//! A partition, for real: six `storgo node` processes in network namespaces on two bridges
//! joined by one link (root only). An item is added on each side with R = 2. The link is cut:
//! each side keeps serving what it holds. It heals: after repair rounds every item has R
//! whole replica holders again and no copies beyond R plus its adder's pin.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use crate::netns::{cannot_run, Lan};
use crate::procs::NodeProc;

const R: usize = 2;

struct Host<'a> {
    lan: &'a Lan,
    n: usize,
    dir: PathBuf,
}

impl Host<'_> {
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.lan.exec(self.n);
        c.arg("--data-dir").arg(&self.dir).args(args);
        c
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&run(self.cmd(&["status", "--json"])).stdout).unwrap_or_default()
    }

    /// Whether this host holds `root` whole as a replica, and whether it pins `id`.
    fn holds(&self, id: &str, root: &str) -> (bool, bool) {
        let replicas = ok(self.cmd(&["ls", "--replicas"]));
        let replica = replicas
            .lines()
            .any(|l| l.starts_with(root) && l.contains("\twhole"));
        (replica, ok(self.cmd(&["ls"])).contains(id))
    }
}

fn start(lan: &Lan, n: usize, dir: &Path, bootstrap: Option<&str>) -> NodeProc {
    let listen = format!("/ip4/{}/tcp/0", lan.addr(n));
    // One LAN with no NAT: its addresses are reachable as they are (README, "Behind a NAT").
    // This test is about a partition, not about AutoNAT (lan_discovery and the NAT tests are).
    let mut args = vec![
        "--no-mdns",
        "--listen",
        &listen,
        "--repair-interval",
        "0s",
        "--reachability",
        "public",
    ];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    NodeProc::start_with(lan.exec(n), dir, &args)
}

#[test]
fn a_partition_keeps_each_side_serving_and_heals_to_r_holders() {
    let tag = format!("p{}", std::process::id() % 100_000);
    let Some(lan) = Lan::create(&tag, &[3, 3]) else {
        cannot_run("network namespaces need root and iproute2");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let hosts: Vec<Host> = (1..=6)
        .map(|n| Host {
            lan: &lan,
            n,
            dir: tmp.path().join(format!("h{n}")),
        })
        .collect();
    let first = start(&lan, 1, &hosts[0].dir, None);
    let mut procs = vec![];
    for h in &hosts[1..] {
        procs.push(start(&lan, h.n, &h.dir, Some(first.addr())));
    }
    procs.insert(0, first);
    for h in &hosts {
        wait_for(Duration::from_secs(60), "routing tables", || {
            h.status()["node"]["routing_table_size"]
                .as_u64()
                .unwrap_or(0)
                >= 4
        });
    }

    // One item added on each side, replicated to R = 2 peers.
    let mut items = vec![];
    for (adder, seed) in [(0usize, 41u64), (3, 42)] {
        let path = tmp.path().join(format!("item-{seed}"));
        let data = write_random(&path, 3 << 20, seed);
        let out = run(hosts[adder].cmd(&[
            "add",
            path.to_str().unwrap(),
            "--replicas",
            "2",
            "--wait-replicas",
            "--wait-timeout",
            "90s",
        ]));
        assert!(
            out.status.success(),
            "add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = last_line(&String::from_utf8_lossy(&out.stdout));
        let root = id
            .parse::<storgo::content::ContentId>()
            .unwrap()
            .root
            .to_string();
        items.push((id, root, data, adder));
    }

    assert!(lan.cut(), "cut the link");
    for side in [0..3, 3..6] {
        for (id, root, data, _) in &items {
            let holders: Vec<usize> = side
                .clone()
                .filter(|&i| {
                    let (r, p) = hosts[i].holds(id, root);
                    r || p
                })
                .collect();
            let Some(reader) = side.clone().find(|i| !holders.contains(i)) else {
                continue;
            };
            if holders.is_empty() {
                continue;
            }
            let out = run(hosts[reader].cmd(&["cat", id]));
            assert!(
                out.status.success() && out.stdout == *data,
                "host {} could not read {id} from its own side: {}",
                reader + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    for h in &hosts {
        ok(h.cmd(&["repair"]));
    }

    assert!(lan.heal(), "heal the link");
    let settled = |items: &[(String, String, Vec<u8>, usize)]| {
        items.iter().all(|(id, root, _, adder)| {
            let mut replicas = 0;
            for (i, h) in hosts.iter().enumerate() {
                let (r, p) = h.holds(id, root);
                replicas += r as usize;
                if p && i != *adder {
                    return false;
                }
            }
            replicas == R
        })
    };
    let show = || {
        for (id, root, _, _) in &items {
            let state: Vec<String> = hosts
                .iter()
                .map(|h| {
                    let (r, p) = h.holds(id, root);
                    let rt = h.status()["node"]["routing_table_size"]
                        .as_u64()
                        .unwrap_or(0);
                    format!(
                        "h{}:{}{}/rt{rt}",
                        h.n,
                        if r { "R" } else { "-" },
                        if p { "P" } else { "-" }
                    )
                })
                .collect();
            eprintln!("{}: {}", &root[..16], state.join(" "));
        }
    };
    // Hinted handoff takes two rounds at least (push, then drop once the new copies are
    // whole), and requests on connections from before the cut may time out for a while.
    let healed = std::time::Instant::now();
    let mut rounds = 0;
    while !settled(&items) {
        show();
        assert!(
            rounds < 10 && healed.elapsed() < Duration::from_secs(180),
            "not back to exactly {R} replicas after {rounds} rounds"
        );
        for h in &hosts {
            ok(h.cmd(&["repair"]));
        }
        for h in &hosts {
            wait_for(Duration::from_secs(60), "intakes to finish", || {
                h.status()["replication"]["replicas_arriving"].as_u64() == Some(0)
            });
        }
        rounds += 1;
    }
    eprintln!(
        "healed to {R} replicas per item in {rounds} repair rounds, {:?} after the link came back",
        healed.elapsed()
    );
    for p in procs {
        assert!(p.stop().success());
    }
}
