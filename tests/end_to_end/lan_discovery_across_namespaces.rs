//! LAN discovery for real: two nodes in separate network namespaces joined by a bridge,
//! started with no bootstrap, find each other by mDNS and fetch.

use crate::common::*;
use crate::netns::{cannot_run, Lan};
use crate::procs::NodeProc;

#[test]
fn two_namespaces_find_each_other_by_mdns_and_fetch() {
    let tag = format!("l{}", std::process::id() % 100_000);
    let Some(lan) = Lan::create(&tag, &[2]) else {
        cannot_run("network namespaces need root and iproute2");
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
