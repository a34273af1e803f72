//! Three `storgo node` processes on 127.0.0.1: `add` on one, `storgo fetch` on another, then
//! `storgo fetch` with no node running (a temporary node that bootstraps from the first).

use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

#[test]
fn add_on_one_fetch_on_another_and_through_a_temporary_node() {
    let tmp = tempfile::tempdir().unwrap();
    let n1 = NodeProc::start(&tmp.path().join("n1"), None);
    let n2 = NodeProc::start(&tmp.path().join("n2"), Some(n1.addr()));
    let n3 = NodeProc::start(&tmp.path().join("n3"), Some(n1.addr()));

    let path = tmp.path().join("lecture.pdf");
    let data = write_random(&path, 20 << 20, 7);
    let mut add = storgo(&n1.data_dir);
    add.arg("add").arg(&path);
    let id = last_line(&ok(add));

    // Through n2's running node.
    let out2 = tmp.path().join("out2.pdf");
    let mut fetch = storgo(&n2.data_dir);
    fetch.args(["fetch", &id, "-o"]).arg(&out2);
    ok(fetch);
    assert!(std::fs::read(&out2).unwrap() == data);
    let mut ls = storgo(&n2.data_dir);
    ls.arg("ls");
    assert!(ok(ls).contains(&id), "fetched content is pinned");

    // n3 asks who provides it: both n1 and n2 (which provides after fetching), as the DHT
    // sees it from the third process.
    let mut listed = String::new();
    wait_for(Duration::from_secs(30), "n3 to see both providers", || {
        let mut providers = storgo(&n3.data_dir);
        providers.args(["providers", &id]);
        listed = ok(providers);
        listed.contains(&n1.peer_id) && listed.contains(&n2.peer_id)
    });
    // And n2 says it provides the item; n1 served the bytes.
    let mut status = storgo(&n2.data_dir);
    status.args(["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&ok(status)).unwrap();
    assert!(s["node"]["records_provided"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["node"]["bytes_fetched"].as_u64().unwrap() >= data.len() as u64,
        "{s}"
    );

    // `cat` through a running node that lacks the item reads it from the network.
    let mut cat = storgo(&n3.data_dir);
    cat.args(["cat", &id]);
    assert!(run(cat).stdout == data, "cat through n3 fetched the bytes");
    let mut ls = storgo(&n3.data_dir);
    ls.arg("ls");
    assert!(!ok(ls).contains(&id), "a cat does not pin");

    // A data dir with no node: `fetch` runs a temporary node for the duration.
    let lone = tmp.path().join("lone");
    let out3 = tmp.path().join("out3.pdf");
    let mut fetch = storgo(&lone);
    fetch
        .args([
            "fetch",
            &id,
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            n1.addr(),
            "-o",
        ])
        .arg(&out3);
    ok(fetch);
    assert!(std::fs::read(&out3).unwrap() == data);
    assert!(
        !lone.join("api").exists(),
        "the temporary node leaves no API behind"
    );
    let mut cat = storgo(&lone);
    cat.args(["cat", &id]);
    assert!(run(cat).stdout == data);

    // status/peers/id answer through the API; nodes stop cleanly on SIGTERM.
    let mut status = storgo(&n1.data_dir);
    status.args(["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&ok(status)).unwrap();
    assert!(s["node"]["routing_table_size"].as_u64().unwrap() >= 1);
    assert!(s["node"]["bytes_served"].as_u64().unwrap() >= data.len() as u64);
    let mut peers = storgo(&n1.data_dir);
    peers.arg("peers");
    assert!(ok(peers).contains(&n2.peer_id));
    for n in [n1, n2, n3] {
        let dir = n.data_dir.clone();
        assert!(n.stop().success());
        assert!(!dir.join("api").exists());
        let mut verify = storgo(&dir);
        verify.arg("verify");
        ok(verify);
    }
}

#[test]
fn unreachable_bootstrap_and_unknown_ids_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nothing listens on, with a syntactically valid peer id: logged and retried, and
    // a fetch through it times out with one clear line instead of hanging.
    let dead = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWL8ATZijnXkwF5NQSf2q9oktSUbvoPKQ9EbCDTFzqBeLe";
    let id = storgo::content::ContentId::new(
        storgo::content::BlockAddress::of(b"nothing"),
        storgo::content::BlockKey::from_bytes([1; 32]),
    );
    let mut fetch = storgo(&tmp.path().join("d"));
    fetch.args([
        "fetch",
        &id.to_string(),
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--bootstrap",
        dead,
        "--timeout",
        "5",
    ]);
    // The unreachable bootstrap peer is logged as a warning; the error is the last line.
    let out = run(fetch);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    // Named by the start of the ID the user gave, not by a block address they never saw.
    assert!(
        last.starts_with("storgo: ")
            && last.contains(&format!("no peer provides {}", id.short()))
            && !last.contains("bafk"),
        "{err}"
    );
    assert!(err.contains("bootstrap peer unreachable"), "{err}");

    let mut bad = storgo(&tmp.path().join("d"));
    bad.args(["fetch", "sg1nope"]);
    assert!(fails(bad).contains("malformed content ID"));
}
