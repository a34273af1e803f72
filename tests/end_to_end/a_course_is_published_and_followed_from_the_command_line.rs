//! Shared collections with the real binary: a teacher's node publishes a course, a student's
//! node follows it with auto-fetch, a teaching assistant's node publishes by delegation, and
//! the student searches and reads the verified history — all through `storgo` commands.

use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

fn show(dir: &std::path::Path, cid: &str) -> serde_json::Value {
    let mut c = storgo(dir);
    c.args(["collection", "show", cid, "--json"]);
    serde_json::from_str(&ok(c)).expect("show --json")
}

#[test]
fn a_teacher_publishes_a_ta_adds_and_a_student_follows_searches_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = NodeProc::start(&tmp.path().join("teacher"), None);
    let student = NodeProc::start(&tmp.path().join("student"), Some(teacher.addr()));
    let ta = NodeProc::start(&tmp.path().join("ta"), Some(teacher.addr()));

    let notes = tmp.path().join("lecture1.pdf");
    let data = write_random(&notes, 2 << 20, 11);
    let mut add = storgo(&teacher.data_dir);
    add.arg("add").arg(&notes);
    let item1 = last_line(&ok(add));

    let mut new = storgo(&teacher.data_dir);
    new.args(["collection", "new", "algo"]);
    let cid = last_line(&ok(new));
    assert!(cid.starts_with("sc1"), "{cid}");
    let mut add = storgo(&teacher.data_dir);
    add.args([
        "collection",
        "add",
        "algo",
        &item1,
        "--title",
        "Lecture 1 notes: sorting",
    ])
    .args(["--tags", "lecture,week1", "--note", "read before Monday"]);
    ok(add);
    let mut publish = storgo(&teacher.data_dir);
    publish.args(["collection", "publish", "algo"]);
    assert!(ok(publish).contains("published version 1 of algo (1 items)"));

    // The student follows with auto-fetch: version 1 at once, the item pinned.
    let mut follow = storgo(&student.data_dir);
    follow.args(["follow", &cid, "--auto-fetch"]);
    let shown = ok(follow);
    assert!(shown.contains("algo — version 1"), "{shown}");
    assert!(shown.contains("Lecture 1 notes: sorting"), "{shown}");
    wait_for(
        Duration::from_secs(60),
        "auto-fetch to pin the lecture",
        || {
            let mut ls = storgo(&student.data_dir);
            ls.arg("ls");
            ok(ls).contains(&item1)
        },
    );
    let mut cat = storgo(&student.data_dir);
    cat.args(["cat", &item1]);
    assert!(run(cat).stdout == data);

    // Delegation to the TA's node, by PeerId; the TA takes the course up and publishes.
    let mut delegate = storgo(&teacher.data_dir);
    delegate.args(["collection", "delegate", "algo", &ta.peer_id]);
    ok(delegate);
    let mut publish = storgo(&teacher.data_dir);
    publish.args(["collection", "publish", "algo"]);
    assert!(ok(publish).contains("published version 2"));
    let sheet = tmp.path().join("exercise1.pdf");
    write_random(&sheet, 300_000, 12);
    let mut add = storgo(&ta.data_dir);
    add.arg("add").arg(&sheet);
    let item2 = last_line(&ok(add));
    let mut take = storgo(&ta.data_dir);
    take.args(["collection", "new", "algo-ta", "--of", &cid]);
    ok(take);
    let mut add = storgo(&ta.data_dir);
    add.args([
        "collection",
        "add",
        "algo-ta",
        &item2,
        "--title",
        "Exercise sheet 1",
    ])
    .args(["--tags", "exercise,week1"]);
    ok(add);
    let mut publish = storgo(&ta.data_dir);
    publish.args(["collection", "publish", "algo-ta"]);
    assert!(ok(publish).contains("published version 3 of algo-ta (2 items)"));

    // The student's node takes version 3 (pushed) and pins the new item.
    wait_for(
        Duration::from_secs(30),
        "the student to see version 3",
        || show(&student.data_dir, &cid)["seq"] == 3,
    );
    wait_for(
        Duration::from_secs(60),
        "auto-fetch to pin the sheet",
        || {
            let mut ls = storgo(&student.data_dir);
            ls.arg("ls");
            ok(ls).contains(&item2)
        },
    );

    // Search by word and by tag names the collection and version.
    let mut search = storgo(&student.data_dir);
    search.args(["search", "exercise"]);
    let found = ok(search);
    assert!(
        found.contains("Exercise sheet 1 [exercise, week1]"),
        "{found}"
    );
    assert!(found.contains("in algo (version 3)"), "{found}");
    let mut search = storgo(&student.data_dir);
    search.args(["search", "--tag", "week1", "--json"]);
    let hits: Vec<serde_json::Value> = serde_json::from_str(&ok(search)).unwrap();
    assert_eq!(hits.len(), 2);

    // The verified history: three versions, the last by the delegate.
    let mut log = storgo(&student.data_dir);
    log.args(["collection", "log", &cid]);
    let history = ok(log);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(
        lines[0].starts_with("version 3") && lines[0].contains("delegate"),
        "{history}"
    );
    assert!(
        lines[2].starts_with("version 1") && lines[2].contains("owner"),
        "{history}"
    );

    // Bad input is one clear line.
    let mut bad = storgo(&student.data_dir);
    bad.args(["follow", "sc1notacollection"]);
    assert!(fails(bad).contains("malformed collection ID"));
    let mut bad = storgo(&student.data_dir);
    bad.args(["collection", "publish", "nosuch"]);
    assert!(fails(bad).contains("no collection named \"nosuch\""));
    let mut bad = storgo(&student.data_dir);
    bad.args(["collection", "new", "algo-copy", "--of", &cid]);
    ok(bad);
    let mut stranger = storgo(&student.data_dir);
    stranger.args(["collection", "publish", "algo-copy"]);
    assert!(fails(stranger).contains("may not publish"));
}
