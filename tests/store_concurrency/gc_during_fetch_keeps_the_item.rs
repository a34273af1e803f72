//! The second reproduction: `storgo fetch` on node B of an item held by node A, with
//! `storgo gc` called again and again on B meanwhile. Before sessions, half the fetches
//! reported success for an item B then could not read (GC took its manifests between their
//! write and the partial pin).

use std::process::Stdio;

use crate::common::*;
use crate::procs::NodeProc;

#[test]
fn gc_during_fetch_through_the_node_keeps_every_item() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), None);
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let mut fetched = Vec::new();
    let mut overlapping_gcs = 0;
    for round in 0..6u64 {
        let path = tmp.path().join(format!("file-{round}"));
        let data = write_random(&path, 48 << 20, 200 + round);
        let mut add = storgo(&a.data_dir);
        add.arg("add").arg(&path);
        let id = last_line(&ok(add));

        let mut fetch = storgo(&b.data_dir);
        fetch.args(["fetch", &id]).stdout(Stdio::null());
        let mut fetch = fetch.spawn().expect("spawn fetch");
        while fetch.try_wait().expect("poll fetch").is_none() {
            let mut gc = storgo(&b.data_dir);
            gc.arg("gc");
            ok(gc);
            overlapping_gcs += 1;
        }
        assert!(
            fetch.wait().expect("fetch").success(),
            "fetch {round} failed"
        );
        fetched.push((id, data));
    }
    assert!(
        overlapping_gcs >= 6,
        "gc ran only {overlapping_gcs} times during the fetches"
    );

    // Without A, whatever B serves comes from B's own store.
    drop(a);
    let mut verify = storgo(&b.data_dir);
    verify.arg("verify");
    ok(verify);
    for (id, data) in &fetched {
        let mut stat = storgo(&b.data_dir);
        stat.args(["stat", id, "--json"]);
        let st: serde_json::Value = serde_json::from_str(&ok(stat)).expect("stat json");
        assert_eq!(
            st["chunks_local"], st["chunks"],
            "{id} is not whole on B: {st}"
        );
        let mut cat = storgo(&b.data_dir);
        cat.args(["cat", id]);
        let out = run(cat);
        assert!(
            out.status.success(),
            "cat {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == *data, "cat {id} returned other bytes");
    }
}
