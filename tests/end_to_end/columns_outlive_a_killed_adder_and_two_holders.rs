//! Twenty `storgo node` processes on 127.0.0.1 with `--durability ec:4+2` on the adder:
//! `storgo add --wait-replicas` returns once six peers hold a column each; `stat --health` shows
//! every stripe with six shards alive; the adder and two column holders are SIGKILLed at once;
//! a fresh machine (a temporary node bootstrapping from a survivor) fetches the item and gets
//! the same bytes, rebuilt from the four columns left.

use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

fn routing_table(node: &NodeProc) -> u64 {
    node.status_number("node", "routing_table_size")
}

/// The column `node` holds of `root`, from `ls --replicas --json`.
fn column(node: &NodeProc, root: &str) -> Option<u64> {
    let mut ls = storgo(&node.data_dir);
    ls.args(["ls", "--replicas", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(ok(ls).trim()).ok()?;
    rows.as_array()?
        .iter()
        .find(|r| r["root"] == root && r["complete"] == true)
        .and_then(|r| r["shard"]["column"].as_u64())
}

#[test]
fn columns_outlive_a_killed_adder_and_two_holders() {
    let tmp = tempfile::tempdir().unwrap();
    let mut adder = NodeProc::start_args(&tmp.path().join("n0"), None, &["--durability", "ec:4+2"]);
    let others: Vec<NodeProc> = (1..20)
        .map(|i| NodeProc::start(&tmp.path().join(format!("n{i}")), Some(adder.addr())))
        .collect();
    wait_for(
        Duration::from_secs(60),
        "the adder to know its peers",
        || routing_table(&adder) >= 12,
    );

    let path = tmp.path().join("lecture.mp4");
    let data = write_random(&path, 12 << 20, 44);
    let mut add = storgo(&adder.data_dir);
    add.arg("add")
        .arg(&path)
        .args(["--wait-replicas", "--wait-timeout", "120s"]);
    let out = run(add);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "add --wait-replicas failed: {err}");
    assert!(err.contains("6 of 6 replicas whole"), "progress: {err}");
    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let root = id
        .parse::<storgo::content::ContentId>()
        .unwrap()
        .root
        .to_string();

    let mut health = storgo(&adder.data_dir);
    health.args(["stat", &id, "--health", "--json"]);
    let h: serde_json::Value = serde_json::from_str(ok(health).trim()).expect("health JSON");
    assert_eq!(h["durability"], "ec:4+2", "{h}");
    let alive = h["stripes_alive"].as_array().expect("stripes");
    assert!(alive.len() >= 3, "{h}");
    assert!(
        alive.iter().all(|a| a.as_u64() >= Some(5)),
        "every stripe whole (the short last one has fewer shards): {h}"
    );
    assert!(h["margin"].as_i64() >= Some(2), "{h}");

    let held: Vec<(usize, u64)> = others
        .iter()
        .enumerate()
        .filter_map(|(i, n)| column(n, &root).map(|c| (i, c)))
        .collect();
    let mut columns: Vec<u64> = held.iter().map(|(_, c)| *c).collect();
    columns.sort_unstable();
    assert_eq!(columns, vec![0, 1, 2, 3, 4, 5], "one column each: {held:?}");

    // The adder and the holders of data columns 0 and 2 go at once.
    let victims: Vec<usize> = held
        .iter()
        .filter(|(_, c)| *c == 0 || *c == 2)
        .map(|(i, _)| *i)
        .collect();
    adder.child.kill().expect("SIGKILL the adder");
    adder.child.wait().expect("reap");
    let mut others: Vec<Option<NodeProc>> = others.into_iter().map(Some).collect();
    for i in &victims {
        others[*i].take().unwrap().kill();
    }
    let survivor = others
        .iter()
        .flatten()
        .next()
        .expect("a survivor")
        .addr()
        .to_string();

    let fresh = tmp.path().join("fresh");
    let copy = tmp.path().join("copy.mp4");
    let mut fetch = storgo(&fresh);
    fetch
        .args([
            "fetch",
            &id,
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &survivor,
            "-o",
        ])
        .arg(&copy);
    ok(fetch);
    assert!(
        std::fs::read(&copy).unwrap() == data,
        "fetched bytes differ"
    );
    for n in others.into_iter().flatten() {
        assert!(n.stop().success());
    }
}
