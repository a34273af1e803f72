//! Nodes behind home routers (network namespaces, iptables MASQUERADE, new inbound dropped)
//! serve, fetch and hold replicas: punched where the NATs allow it, relayed where they do not
//! (`protocols/reachability-v1.md`). Real binaries, one per namespace.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::nat::{cannot_run, Internet, Nat};
use crate::procs::NodeProc;

/// One node in one namespace.
pub struct Site {
    pub ns: String,
    pub dir: PathBuf,
    pub node: NodeProc,
    _log: LogOnPanic,
}

/// How long a home node may take to learn it is private and hold a relay reservation.
const REACH_TIMEOUT: Duration = Duration::from_secs(90);

impl Site {
    /// `storgo node` in `ns`, listening on `ip` (TCP and QUIC, free ports), no mDNS.
    pub fn start(net: &Internet, ns: String, dir: PathBuf, ip: &str, extra: &[&str]) -> Site {
        let tcp = format!("/ip4/{ip}/tcp/0");
        let quic = format!("/ip4/{ip}/udp/0/quic-v1");
        let mut args = vec!["--no-mdns", "--listen", &tcp];
        // A private network runs TCP alone (QUIC has no place for the swarm key).
        if !extra.contains(&"--swarm-key") {
            args.extend(["--listen", &quic]);
        }
        args.extend_from_slice(extra);
        let node = NodeProc::start_with(net.storgo(&ns), &dir, &args);
        let _log = LogOnPanic(
            format!("{ns} ({})", node.peer_id),
            dir.with_extension("log"),
        );
        Site {
            ns,
            dir,
            node,
            _log,
        }
    }

    /// The public host `i`, a DHT server from the start, that takes no replicas.
    pub fn public(net: &Internet, tmp: &Path, i: usize, extra: &[&str]) -> Site {
        let mut args = vec![
            "--reachability",
            "public",
            "--intake-per-peer-per-hour",
            "1",
        ];
        args.extend_from_slice(extra);
        Site::start(
            net,
            net.public_ns(i),
            tmp.join(format!("p{i}")),
            &net.public_addr(i),
            &args,
        )
    }

    /// The host of home `i`, joining through `boot`.
    pub fn home(net: &Internet, tmp: &Path, i: usize, boot: &str, extra: &[&str]) -> Site {
        let mut args = vec!["--bootstrap", boot];
        args.extend_from_slice(extra);
        Site::start(
            net,
            net.host_ns(i),
            tmp.join(format!("h{i}")),
            &net.host_addr(i),
            &args,
        )
    }

    /// Its TCP address, with `/p2p/…`.
    pub fn tcp_addr(&self) -> String {
        self.node
            .addrs
            .iter()
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP listen address")
            .clone()
    }

    pub fn cli(&self, net: &Internet, args: &[&str]) -> std::process::Command {
        net.cli(&self.ns, &self.dir, args)
    }

    pub fn status(&self, net: &Internet) -> serde_json::Value {
        let out = ok(self.cli(net, &["status", "--json"]));
        serde_json::from_str(&out).expect("status JSON")
    }

    pub fn reachability(&self, net: &Internet) -> serde_json::Value {
        self.status(net)["node"]["reachability"].clone()
    }

    /// An API path of this node, fetched from inside its namespace (the API is on its
    /// loopback) with its token (`DATA_DIR/api`, second line).
    pub fn get(&self, path: &str) -> String {
        let url = format!("{}{path}", self.node.api);
        let file = std::fs::read_to_string(self.dir.join("api")).expect("the API file");
        let token = file.lines().nth(1).expect("a token line").trim().to_owned();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c"])
            .arg("import sys, urllib.request as u; r = u.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]}); sys.stdout.write(u.urlopen(r, timeout=10).read().decode())")
            .arg(&url)
            .arg(&token)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "GET {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A counter or gauge from `/metrics` (the sum over its labels matching `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        self.get("/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until this node holds a relay reservation (its relayed addresses are confirmed).
    pub fn wait_relayed(&self, net: &Internet) -> serde_json::Value {
        poll(REACH_TIMEOUT, "a relay reservation", || {
            let r = self.reachability(net);
            (r["relayed_addresses"]
                .as_array()
                .is_some_and(|a| !a.is_empty()))
            .then_some(r)
        })
    }

    /// How this node is connected to `peer` now (`direct` or `relayed`).
    pub fn via(&self, net: &Internet, peer: &str) -> Option<String> {
        let peers: serde_json::Value =
            serde_json::from_str(&ok(self.cli(net, &["peers", "--json"]))).expect("peers JSON");
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == peer)
            .map(|p| p["via"].as_str().unwrap_or_default().to_owned())
    }
}

/// A failing test shows the end of each node's log: what it learnt of its reachability.
pub struct LogOnPanic(String, PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.1).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(60)..].join("\n");
            eprintln!("--- {}\n{tail}", self.0);
        }
    }
}

/// Polls `f` every 250 ms until it answers, or panics naming `what` after `timeout`: each poll
/// runs a process, so it is not a spin.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::park_timeout(Duration::from_millis(250));
    }
}

/// The first `after_ms=N` of a "hole punched" line in a node's log.
fn punch_ms(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("hole punched"))
        .find_map(|l| {
            l.split("after_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// Adds `len` random bytes on `from` and fetches them on `to`; returns the output path and
/// how long the fetch took.
fn add_and_fetch(
    net: &Internet,
    tmp: &Path,
    from: &Site,
    to: &Site,
    len: usize,
) -> (String, Duration) {
    let src = tmp.join("lecture.mp4");
    let data = write_random(&src, len, 23);
    let id = last_line(&ok(from.cli(net, &["add", src.to_str().unwrap()])));
    let out = tmp.join("got.mp4");
    let started = Instant::now();
    ok(to.cli(
        net,
        &[
            "fetch",
            &id,
            "--timeout",
            "120",
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    let took = started.elapsed();
    assert!(
        std::fs::read(&out).unwrap() == data,
        "the fetched bytes are the added ones"
    );
    (id, took)
}

/// The namespaces of one test: `tag` must be this file's own for each test (they run at once
/// in one process, and the process ID is the rest of the name).
fn internet(tag: &str, homes: &[Nat]) -> Option<Internet> {
    let tag = format!("{tag}{}", std::process::id() % 10_000);
    Internet::create(&tag, 1, homes)
}

#[test]
fn hosts_behind_port_preserving_nats_punch_a_hole_and_fetch_directly() {
    let Some(net) = internet("np", &[Nat::PortPreserving, Nat::PortPreserving]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = Site::public(&net, tmp.path(), 1, &[]);
    let boot = p.tcp_addr();
    let no_replicas = ["--intake-per-peer-per-hour", "1", "--no-upnp"];
    let h1 = Site::home(&net, tmp.path(), 1, &boot, &no_replicas);
    let h2 = Site::home(&net, tmp.path(), 2, &boot, &no_replicas);
    for h in [&h1, &h2] {
        let r = h.wait_relayed(&net);
        assert_eq!(r["status"], "private", "{r}");
        assert!(
            r["addresses"].as_array().unwrap().is_empty(),
            "nothing confirmed directly: {r}"
        );
        assert!(
            r["relayed_addresses"][0]
                .as_str()
                .unwrap()
                .contains(&p.node.peer_id),
            "reserved on the public node: {r}"
        );
    }
    let (_, took) = add_and_fetch(&net, tmp.path(), &h1, &h2, 32 << 20);
    if std::env::var_os("STORGO_TEST_LOGS").is_some() {
        eprintln!(
            "--- h1\n{}\n--- h2\n{}\n--- p\n{}",
            h1.node.log(),
            h2.node.log(),
            p.node.log()
        );
    }
    assert_eq!(
        h2.via(&net, &h1.node.peer_id).as_deref(),
        Some("direct"),
        "the hole was punched"
    );
    let punched = h1.metric("storgo_hole_punches_total", "direct")
        + h2.metric("storgo_hole_punches_total", "direct");
    assert!(punched >= 1.0, "a punch is counted");
    let ms = punch_ms(&h1.node.log()).or_else(|| punch_ms(&h2.node.log()));
    eprintln!(
        "port-preserving x port-preserving: 32 MiB in {took:?}; relayed to direct in {} ms",
        ms.map(|m| m.to_string()).unwrap_or("?".into())
    );
    assert!(ms.is_some(), "the punch's time is logged");
    // The public node relayed, and held nothing of the item.
    assert_eq!(p.status(&net)["store"]["pins"], 0);
    assert!(p.node.stop().success());
    assert!(h1.node.stop().success());
    assert!(h2.node.stop().success());
}

#[test]
fn hosts_behind_symmetric_nats_fetch_through_the_relay() {
    let Some(net) = internet("ns", &[Nat::Symmetric, Nat::Symmetric]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = Site::public(&net, tmp.path(), 1, &[]);
    let boot = p.tcp_addr();
    let no_replicas = ["--intake-per-peer-per-hour", "1", "--no-upnp"];
    let h1 = Site::home(&net, tmp.path(), 1, &boot, &no_replicas);
    let h2 = Site::home(&net, tmp.path(), 2, &boot, &no_replicas);
    h1.wait_relayed(&net);
    h2.wait_relayed(&net);
    let (_, took) = add_and_fetch(&net, tmp.path(), &h1, &h2, 32 << 20);
    let via = h2.via(&net, &h1.node.peer_id);
    eprintln!("symmetric x symmetric: 32 MiB in {took:?}, via {via:?}");
    assert!(
        p.metric("storgo_circuits_relayed_total", "") >= 1.0,
        "the public node relayed"
    );
    assert!(p.node.stop().success());
    assert!(h1.node.stop().success());
    assert!(h2.node.stop().success());
}

/// A private network (swarm key) across NATs: QUIC is off there, the relay's circuits run
/// inside its pnet-protected TCP connections, and the fetch completes through them.
#[test]
fn a_private_network_behind_symmetric_nats_fetches_through_the_relay() {
    let Some(net) = internet("nv", &[Nat::Symmetric, Nat::Symmetric]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("swarm.key");
    let hex: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
    std::fs::write(&key, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).unwrap();
    // A key others can read is refused, as a user's would be.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key_arg = key.to_str().unwrap();
    let p = Site::public(&net, tmp.path(), 1, &["--swarm-key", key_arg]);
    let boot = p.tcp_addr();
    let args = [
        "--swarm-key",
        key_arg,
        "--intake-per-peer-per-hour",
        "1",
        "--no-upnp",
    ];
    let h1 = Site::home(&net, tmp.path(), 1, &boot, &args);
    let h2 = Site::home(&net, tmp.path(), 2, &boot, &args);
    h1.wait_relayed(&net);
    h2.wait_relayed(&net);
    let (_, took) = add_and_fetch(&net, tmp.path(), &h1, &h2, 4 << 20);
    eprintln!("private network, symmetric x symmetric: 4 MiB in {took:?}");
    assert!(
        p.metric("storgo_circuits_relayed_total", "") >= 1.0,
        "the public node relayed inside the private network"
    );
    assert!(p.node.stop().success());
    assert!(h1.node.stop().success());
    assert!(h2.node.stop().success());
}

#[test]
fn a_host_is_a_dht_server_only_once_reachable_and_upnp_makes_it_one() {
    let Some(mut net) = internet("nu", &[Nat::PortPreserving]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // No relay: a host behind the NAT has no way to be reached until its port is mapped.
    let p = Site::public(&net, tmp.path(), 1, &["--no-relay-service"]);
    let boot = p.tcp_addr();
    let h1 = Site::home(&net, tmp.path(), 1, &boot, &["--no-upnp"]);
    poll(REACH_TIMEOUT, "a failed reachability probe", || {
        (h1.reachability(&net)["status"] == "private").then_some(())
    });
    assert_eq!(h1.status(&net)["node"]["dht_mode"], "client");
    let routing = p.get("/api/v1/routing");
    assert!(
        !routing.contains(&h1.node.peer_id),
        "an unreachable host is in no routing table: {routing}"
    );
    // Nothing private was advertised: the public node knows no 192.168 address of it.
    assert!(!routing.contains("192.168."), "{routing}");
    assert!(h1.node.stop().success());

    // The same host with a real UPnP daemon on its router.
    if !net.start_upnp(1, tmp.path()) {
        cannot_run("miniupnpd (Debian's miniupnpd-iptables) is not installed");
        return;
    }
    let h1 = Site::start(
        &net,
        net.host_ns(1),
        tmp.path().join("h1"),
        &net.host_addr(1),
        &["--bootstrap", &boot],
    );
    let r = poll(REACH_TIMEOUT, "the mapped port confirmed", || {
        let r = h1.reachability(&net);
        (r["status"] == "public").then_some(r)
    });
    let mapped = r["addresses"][0].as_str().unwrap().to_owned();
    assert!(
        mapped.contains(&net.router_wan(1)),
        "the router's address, mapped: {r}"
    );
    assert_eq!(h1.status(&net)["node"]["dht_mode"], "server");
    poll(
        Duration::from_secs(30),
        "the host in the public node's routing table",
        || {
            p.get("/api/v1/routing")
                .contains(&h1.node.peer_id)
                .then_some(())
        },
    );
    // Another host dials the mapped address directly.
    let h2_dir = tmp.path().join("p-dialer");
    let dialer = Site::start(
        &net,
        net.public_ns(1),
        h2_dir,
        &net.public_addr(1),
        &["--reachability", "public"],
    );
    ok(dialer.cli(
        &net,
        &["connect", &format!("{mapped}/p2p/{}", h1.node.peer_id)],
    ));
    assert_eq!(
        dialer.via(&net, &h1.node.peer_id).as_deref(),
        Some("direct")
    );
    assert!(dialer.node.stop().success());
    assert!(h1.node.stop().success());
    assert!(p.node.stop().success());
}

/// Homes behind one router come and go (new identities each time, as laptops do); the routing
/// tables keep the departed ones' circuit addresses. Redialling them through the relay on every
/// DHT walk would spend its per-IP circuit budget (refusals count) until it refused the circuit
/// between two homes that are there (bench-nat's fifth pair hung for minutes). The pair that
/// comes last fetches at once, and the relay refuses few circuits.
#[test]
fn departed_homes_do_not_use_up_the_relay_for_those_still_there() {
    let Some(net) = internet("nd", &[Nat::PortPreserving, Nat::PortPreserving]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = Site::public(&net, tmp.path(), 1, &[]);
    let boot = p.tcp_addr();
    let args = [
        "--bootstrap",
        boot.as_str(),
        "--no-upnp",
        "--intake-per-peer-per-hour",
        "1",
        "--reachability",
        "private",
    ];
    let start = |home: usize, name: String| {
        let dir = tmp.path().join(name);
        Site::start(&net, net.host_ns(home), dir, &net.host_addr(home), &args)
    };
    let src = tmp.path().join("notes.bin");
    let data = write_random(&src, 1 << 20, 41);
    for n in 0..6 {
        let h1 = start(1, format!("gone-a{n}"));
        let h2 = start(2, format!("gone-b{n}"));
        h1.wait_relayed(&net);
        h2.wait_relayed(&net);
        // Each pair meets through the relay (as the bench's do), then leaves unannounced.
        let circuit = format!("{boot}/p2p-circuit/p2p/{}", h1.node.peer_id);
        ok(h2.cli(&net, &["connect", &circuit]));
        h1.node.kill();
        h2.node.kill();
    }
    let h1 = start(1, "a".into());
    let h2 = start(2, "b".into());
    h1.wait_relayed(&net);
    h2.wait_relayed(&net);
    let id = last_line(&ok(h1.cli(&net, &["add", src.to_str().unwrap()])));
    let out = tmp.path().join("got.bin");
    let started = Instant::now();
    ok(h2.cli(
        &net,
        &["fetch", &id, "--timeout", "60", "-o", out.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let refused = p.node.log().matches("circuit refused").count();
    eprintln!(
        "after six departed pairs: fetched in {:?}; the relay refused {refused} circuits",
        started.elapsed()
    );
    assert!(
        refused < 30,
        "departed peers are not redialled through the relay ({refused} refusals)"
    );
    assert!(p.node.stop().success());
}

#[test]
fn a_relay_holds_to_its_limits() {
    let Some(net) = internet("nl", &[Nat::Symmetric, Nat::Symmetric]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = Site::public(
        &net,
        tmp.path(),
        1,
        &[
            "--relay-max-reservations",
            "1",
            "--relay-circuit-bytes",
            "1MiB",
        ],
    );
    let boot = p.tcp_addr();
    let no_replicas = ["--intake-per-peer-per-hour", "1", "--no-upnp"];
    let h1 = Site::home(&net, tmp.path(), 1, &boot, &no_replicas);
    h1.wait_relayed(&net);
    let h2 = Site::home(&net, tmp.path(), 2, &boot, &no_replicas);
    poll(REACH_TIMEOUT, "the second reservation refused", || {
        p.node
            .log()
            .contains("relay reservation refused")
            .then_some(())
    });
    assert!(
        h2.reachability(&net)["relayed_addresses"]
            .as_array()
            .unwrap()
            .is_empty(),
        "one reservation in all: the second host holds none"
    );
    assert_eq!(p.reachability(&net)["relay_reservations_served"], 1);
    // A circuit stops at its byte limit: a 4 MiB item cannot cross a 1 MiB circuit, and the
    // fetch says why rather than hanging.
    let src = tmp.path().join("big.bin");
    write_random(&src, 4 << 20, 5);
    let id = last_line(&ok(h1.cli(&net, &["add", src.to_str().unwrap()])));
    let out = tmp.path().join("big.out");
    let err = fails(h2.cli(
        &net,
        &["fetch", &id, "--timeout", "30", "-o", out.to_str().unwrap()],
    ));
    eprintln!("fetch over a 1 MiB circuit: {err}");
    assert!(
        err.contains("only through a relay") && err.contains("closed the circuit"),
        "the fetch names the relay's limit as what stopped it: {err}"
    );
    assert!(!out.exists(), "no partial output is left as if complete");
    assert!(p.node.stop().success());
    assert!(h1.node.stop().success());
    assert!(h2.node.stop().success());
}

/// Whether the node at `site` holds a replica of `root` whole.
fn holds(net: &Internet, site: &Site, root: &str) -> bool {
    ok(site.cli(net, &["ls", "--replicas"])).contains(root)
}

#[test]
fn an_item_added_behind_a_nat_outlives_its_adder_on_holders_behind_nats() {
    use Nat::{PortPreserving as Pp, Symmetric as Sy};
    // h1 adds; h2..h5 may hold; h6 arrives later to fetch. The public node takes nothing.
    let Some(net) = internet("nh", &[Pp, Sy, Pp, Sy, Pp, Sy]) else {
        cannot_run("NAT namespaces need root, iproute2 and iptables");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let p = Site::public(&net, tmp.path(), 1, &[]);
    let boot = p.tcp_addr();
    let holder_args = [
        "--no-upnp",
        "--replication",
        "3",
        "--repair-interval",
        "10s",
    ];
    let mut homes: Vec<Option<Site>> = (1..=5)
        .map(|i| Some(Site::home(&net, tmp.path(), i, &boot, &holder_args)))
        .collect();
    for h in homes.iter().flatten() {
        h.wait_relayed(&net);
    }
    let adder = homes[0].as_ref().unwrap();
    poll(
        REACH_TIMEOUT,
        "the adder to know the other homes as DHT servers",
        || {
            let table = adder.get("/api/v1/routing");
            homes[1..]
                .iter()
                .flatten()
                .all(|h| table.contains(&h.node.peer_id))
                .then_some(())
        },
    );
    let src = tmp.path().join("thesis.pdf");
    let data = write_random(&src, 8 << 20, 41);
    let out = run(adder.cli(
        &net,
        &[
            "add",
            src.to_str().unwrap(),
            "--wait-replicas",
            "--wait-timeout",
            "90s",
        ],
    ));
    assert!(
        out.status.success(),
        "add --wait-replicas: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let root = id
        .parse::<storgo::content::ContentId>()
        .unwrap()
        .root
        .to_string();
    let holders: Vec<usize> = (1..5)
        .filter(|i| holds(&net, homes[*i].as_ref().unwrap(), &root))
        .collect();
    assert_eq!(
        holders.len(),
        3,
        "three homes behind NATs hold it: {holders:?}"
    );
    assert_eq!(p.status(&net)["store"]["pins"], 0);

    // The adder's machine is gone.
    homes[0].take().unwrap().node.kill();
    // A fresh host behind another NAT fetches it from the holders.
    let h6 = Site::home(
        &net,
        tmp.path(),
        6,
        &boot,
        &["--no-upnp", "--intake-per-peer-per-hour", "1"],
    );
    h6.wait_relayed(&net);
    let got = tmp.path().join("thesis.out");
    ok(h6.cli(
        &net,
        &[
            "fetch",
            &id,
            "--timeout",
            "120",
            "-o",
            got.to_str().unwrap(),
        ],
    ));
    assert!(
        std::fs::read(&got).unwrap() == data,
        "the same bytes, from holders behind NATs"
    );

    // A holder dies: repair by the others places the copy on the spare home, reached through
    // its relay or a punched hole.
    let spare = (1..5)
        .find(|i| !holders.contains(i))
        .expect("one home holds nothing");
    homes[holders[0]].take().unwrap().node.kill();
    let spare_site = homes[spare].as_ref().unwrap();
    poll(
        Duration::from_secs(120),
        "the spare home to be given a replica",
        || holds(&net, spare_site, &root).then_some(()),
    );
    for h in homes.into_iter().flatten() {
        assert!(h.node.stop().success());
    }
    assert!(h6.node.stop().success());
    assert!(p.node.stop().success());
}

/// `just bench-nat`: for each NAT pairing, `STORGO_BENCH_PAIRS` fresh pairs of nodes (new
/// identities) behind two home routers, with 20 ms of delay on every WAN link. Per pair: did
/// it connect, was the hole punched, how long from the relayed connection to the direct one,
/// and how fast a 64 MiB fetch ran. Run in release (`cargo test --release`), as root.
#[test]
#[ignore = "a benchmark: just bench-nat"]
fn bench_nat() {
    let pairs: usize = std::env::var("STORGO_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mib: usize = std::env::var("STORGO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    // One pairing alone: STORGO_BENCH_ONLY="pp x sym".
    let only = std::env::var("STORGO_BENCH_ONLY").ok();
    use Nat::{PortPreserving as Pp, Symmetric as Sy};
    for (name, homes) in [
        ("pp x pp", [Pp, Pp]),
        ("pp x sym", [Pp, Sy]),
        ("sym x sym", [Sy, Sy]),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let tag = format!("nb{}", std::process::id() % 10_000);
        let Some(mut net) = Internet::create(&tag, 2, &homes) else {
            cannot_run("NAT namespaces need root, iproute2 and iptables");
            return;
        };
        // netem is a kernel module some kernels lack (this VM's): the run says what it used.
        let (delay_ms, how) = match net.delay(20) {
            Some(how) => (20, how),
            None => (0, "none"),
        };
        let tmp = tempfile::tempdir().unwrap();
        let p = Site::public(&net, tmp.path(), 1, &[]);
        let boot = p.tcp_addr();
        // The same bytes as one plain TCP stream over the same delayed WAN, from the public
        // host to home 1: what the path itself carries (the delayer is a userspace queue).
        let tcp = plain_tcp_mbs(&net, mib);
        println!("bench-nat {name}: plain TCP {mib} MiB, public host to home 1: {tcp:.0} MB/s");
        let src = tmp.path().join("data.bin");
        let data = write_random(&src, mib << 20, 77);
        let (mut connected, mut punched) = (0, 0);
        let (mut to_direct, mut direct_mbs, mut relayed_mbs) = (vec![], vec![], vec![]);
        for n in 0..pairs {
            // Declared private: the homes take their reservations at once instead of after
            // AutoNAT's 10 s grace, which is not what is measured here (300 pairs, 50 minutes).
            let args = [
                "--no-upnp",
                "--intake-per-peer-per-hour",
                "1",
                "--reachability",
                "private",
            ];
            let d1 = tmp.path().join(format!("a{n}"));
            let d2 = tmp.path().join(format!("b{n}"));
            let mut a1 = vec!["--bootstrap", boot.as_str()];
            a1.extend_from_slice(&args);
            let h1 = Site::start(&net, net.host_ns(1), d1, &net.host_addr(1), &a1);
            let h2 = Site::start(&net, net.host_ns(2), d2, &net.host_addr(2), &a1);
            h1.wait_relayed(&net);
            h2.wait_relayed(&net);
            let id = last_line(&ok(h1.cli(&net, &["add", src.to_str().unwrap()])));
            let out = tmp.path().join(format!("out{n}"));
            let started = Instant::now();
            let fetched = run(h2.cli(
                &net,
                &[
                    "fetch",
                    &id,
                    "--timeout",
                    "300",
                    "-o",
                    out.to_str().unwrap(),
                ],
            ));
            let secs = started.elapsed().as_secs_f64();
            if fetched.status.success() && std::fs::read(&out).map(|b| b == data).unwrap_or(false) {
                connected += 1;
                let rate = mib as f64 * 1.048_576 / secs;
                match h2.via(&net, &h1.node.peer_id).as_deref() {
                    Some("direct") => {
                        punched += 1;
                        direct_mbs.push(rate);
                    }
                    _ => {
                        relayed_mbs.push(rate);
                        if homes == [Pp, Pp] {
                            keep_logs(&format!("pp-{n}"), &[&h1, &h2, &p]);
                        }
                    }
                }
                if let Some(ms) = punch_ms(&h1.node.log()).or_else(|| punch_ms(&h2.node.log())) {
                    to_direct.push(ms);
                }
            }
            let _ = std::fs::remove_file(&out);
            h1.node.kill();
            h2.node.kill();
        }
        to_direct.sort_unstable();
        let pct = |v: &[u64], q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        // Median and range: one slow pair (a lookup retried) shows as spread, not as a mean.
        let spread = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            match (v.first(), v.get(v.len() / 2), v.last()) {
                (Some(lo), Some(mid), Some(hi)) => {
                    format!("median {mid:.0} MB/s, {lo:.0}–{hi:.0} ({} runs)", v.len())
                }
                _ => "no runs".to_string(),
            }
        };
        println!(
            "bench-nat {name} (WAN delay {delay_ms} ms by {how}): {connected}/{pairs} connected, {punched}/{pairs} punched; to direct median {:?} ms p95 {:?} ms; {mib} MiB fetch direct {}; relayed {}",
            pct(&to_direct, 0.5),
            pct(&to_direct, 0.95),
            spread(&mut direct_mbs),
            spread(&mut relayed_mbs),
        );
        if name == "sym x sym" {
            relay_keeps_its_own_speed(&net, tmp.path(), &p, &src, mib);
        }
        assert!(p.node.stop().success());
    }
}

/// Copies the logs of a pair worth looking into to `target/bench-nat-logs/` (the run's
/// temporary directory goes when it ends).
fn keep_logs(tag: &str, sites: &[&Site]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-nat-logs");
    let _ = std::fs::create_dir_all(&dir);
    for (i, s) in sites.iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("{tag}-{i}.log")), s.node.log());
    }
    println!("bench-nat: logs of {tag} kept in {}", dir.display());
}

/// MB/s of `mib` MiB sent as one TCP stream from public host 1 to home host 1 (Python's
/// sockets on both ends; the server listens on a port the kernel picks).
fn plain_tcp_mbs(net: &Internet, mib: usize) -> f64 {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let ip = net.public_addr(1);
    let server = format!(
        "import socket\ns=socket.create_server(('{ip}',0))\nprint(s.getsockname()[1],flush=True)\n\
         c,_=s.accept()\nb=bytes(1<<20)\nfor _ in range({mib}): c.sendall(b)\nc.close()"
    );
    let mut srv = Command::new("ip")
        .args(["netns", "exec", &net.public_ns(1), "python3", "-c", &server])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the public namespace");
    let mut port = String::new();
    BufReader::new(srv.stdout.take().expect("piped"))
        .read_line(&mut port)
        .expect("the server's port");
    let client = format!(
        "import socket,time\nc=socket.create_connection(('{ip}',{}))\nt=time.time()\nn=0\n\
         while True:\n  d=c.recv(1<<20)\n  if not d: break\n  n+=len(d)\n\
         print(n, time.time()-t)",
        port.trim()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &net.host_ns(1), "python3", "-c", &client])
        .output()
        .expect("python3 in home 1");
    let _ = srv.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let bytes: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let secs: f64 = it
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::INFINITY);
    assert_eq!(
        bytes as usize,
        mib << 20,
        "the plain TCP stream arrived whole"
    );
    bytes / 1e6 / secs
}

/// The relay's own fetches while it carries a relayed transfer: P fetches `mib` MiB from a
/// second public host Q alone, then while two symmetric-NAT homes fetch from each other
/// through it; three runs each, alternating. Prints P's MB/s both ways and their ratio.
fn relay_keeps_its_own_speed(net: &Internet, tmp: &Path, p: &Site, src: &Path, mib: usize) {
    let boot = p.tcp_addr();
    let q = Site::public(net, tmp, 2, &["--bootstrap", boot.as_str()]);
    let own_id = last_line(&ok(q.cli(net, &["add", src.to_str().unwrap()])));
    let args = [
        "--bootstrap",
        boot.as_str(),
        "--no-upnp",
        "--intake-per-peer-per-hour",
        "1",
        "--reachability",
        "private",
    ];
    let h1 = Site::start(
        net,
        net.host_ns(1),
        tmp.join("ra"),
        &net.host_addr(1),
        &args,
    );
    let h2 = Site::start(
        net,
        net.host_ns(2),
        tmp.join("rb"),
        &net.host_addr(2),
        &args,
    );
    h1.wait_relayed(net);
    h2.wait_relayed(net);
    let other = tmp.join("other.bin");
    write_random(&other, mib << 20, 78);
    let relayed_id = last_line(&ok(h1.cli(net, &["add", other.to_str().unwrap()])));
    let fetch_on_p = |n: usize| {
        // A fresh copy each time: what P holds is dropped before the next run.
        let out = tmp.join(format!("own{n}"));
        let started = Instant::now();
        ok(p.cli(
            net,
            &[
                "fetch",
                &own_id,
                "--timeout",
                "300",
                "-o",
                out.to_str().unwrap(),
            ],
        ));
        let secs = started.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&out);
        ok(p.cli(net, &["unpin", &own_id]));
        ok(p.cli(net, &["gc"]));
        mib as f64 * 1.048_576 / secs
    };
    let (mut alone, mut loaded) = (vec![], vec![]);
    for n in 0..3 {
        alone.push(fetch_on_p(2 * n));
        let out = tmp.join(format!("relayed{n}"));
        let relayed = std::thread::scope(|s| {
            let h = s.spawn(|| {
                run(h2.cli(
                    net,
                    &[
                        "fetch",
                        &relayed_id,
                        "--timeout",
                        "300",
                        "-o",
                        out.to_str().unwrap(),
                    ],
                ))
            });
            loaded.push(fetch_on_p(2 * n + 1));
            h.join().expect("the relayed fetch's thread")
        });
        assert!(relayed.status.success(), "the relayed fetch completes");
        let _ = std::fs::remove_file(&out);
        ok(h2.cli(net, &["unpin", &relayed_id]));
        ok(h2.cli(net, &["gc"]));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "bench-nat relay's own {mib} MiB fetch: alone {alone:.0?} MB/s, while relaying {loaded:.0?} MB/s; ratio {:.2}",
        mean(&loaded) / mean(&alone)
    );
    h1.node.kill();
    h2.node.kill();
    q.node.kill();
}
