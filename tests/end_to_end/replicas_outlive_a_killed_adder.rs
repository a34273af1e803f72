//! Five `storgo node` processes on 127.0.0.1: `storgo add --wait-replicas` on one returns once
//! three peers hold the item whole; the adder is SIGKILLed; a fresh machine (a temporary node
//! bootstrapping from a survivor) fetches the item and gets the same bytes.

use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

fn routing_table(node: &NodeProc) -> u64 {
    let mut status = storgo(&node.data_dir);
    status.args(["status", "--json"]);
    let out = run(status);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|s| s["node"]["routing_table_size"].as_u64())
        .unwrap_or(0)
}

#[test]
fn add_waits_for_three_replicas_and_the_item_outlives_its_killed_adder() {
    let tmp = tempfile::tempdir().unwrap();
    let mut adder = NodeProc::start(&tmp.path().join("n0"), None);
    let others: Vec<NodeProc> = (1..5)
        .map(|i| NodeProc::start(&tmp.path().join(format!("n{i}")), Some(adder.addr())))
        .collect();
    wait_for(
        Duration::from_secs(30),
        "the adder to know its peers",
        || routing_table(&adder) >= 4,
    );

    let path = tmp.path().join("week3.pdf");
    let data = write_random(&path, 8 << 20, 33);
    let mut add = storgo(&adder.data_dir);
    add.arg("add")
        .arg(&path)
        .args(["--wait-replicas", "--wait-timeout", "60s"]);
    let out = run(add);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "add --wait-replicas failed: {err}");
    assert!(
        err.contains("3 of 3 replicas whole"),
        "progress on stderr: {err}"
    );
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let root = id
        .parse::<storgo::content::ContentId>()
        .unwrap()
        .root
        .to_string();
    let holders = others
        .iter()
        .filter(|n| {
            let mut ls = storgo(&n.data_dir);
            ls.args(["ls", "--replicas"]);
            ok(ls).contains(&root)
        })
        .count();
    assert_eq!(holders, 3, "three of the four other nodes hold a replica");

    adder.child.kill().expect("SIGKILL the adder");
    adder.child.wait().expect("reap");

    let fresh = tmp.path().join("fresh");
    let copy = tmp.path().join("copy.pdf");
    let mut fetch = storgo(&fresh);
    fetch
        .args([
            "fetch",
            &id,
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            others[0].addr(),
            "-o",
        ])
        .arg(&copy);
    ok(fetch);
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "fetched bytes differ"
    );
    let mut verify = storgo(&fresh);
    verify.arg("verify");
    ok(verify);
}
