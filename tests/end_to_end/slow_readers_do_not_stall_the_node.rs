//! Thirty-two gateway readers that ask for a large file and never read the answer do not
//! stall the node: each response held a blocking thread (the node has sixteen), so every
//! store call of the node waited behind them. A fetch from another node and the API still
//! answer in time.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::procs::NodeProc;

#[test]
fn thirty_two_readers_that_never_read_do_not_stall_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start_args(&tmp.path().join("a"), None, &["--gateway", "127.0.0.1:0"]);
    let big = tmp.path().join("lecture.mp4");
    write_random(&big, 48 << 20, 31);
    let mut add = storgo(&a.data_dir);
    add.arg("add").arg(&big);
    let big_id = last_line(&ok(add));
    let small = tmp.path().join("notes.txt");
    let small_data = write_random(&small, 1 << 20, 32);
    let mut add = storgo(&a.data_dir);
    add.arg("add").arg(&small);
    let small_id = last_line(&ok(add));

    let gw = a.gateway.clone().expect("gateway");
    let host = gw.trim_start_matches("http://").to_owned();
    let mut readers = Vec::new();
    for _ in 0..32 {
        let mut s = TcpStream::connect(&host).expect("connect to the gateway");
        write!(
            s,
            "GET /c/{big_id} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
        )
        .unwrap();
        readers.push(s); // never read
    }
    // Let the node fill their sockets: the API answering is the event waited for.
    let mut status = storgo(&a.data_dir);
    status.args(["status", "--json"]);
    let started = Instant::now();
    ok(status);
    eprintln!("status with 32 stalled readers: {:?}", started.elapsed());

    // Another node fetches from it, and its API still answers, in time.
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let out = tmp.path().join("out.txt");
    let started = Instant::now();
    let mut fetch = storgo(&b.data_dir);
    fetch
        .args(["fetch", &small_id, "--timeout", "60s", "-o"])
        .arg(&out);
    ok(fetch);
    let took = started.elapsed();
    assert!(std::fs::read(&out).unwrap() == small_data);
    eprintln!("fetch beside 32 stalled readers: {took:?}");
    let started = Instant::now();
    let mut ls = storgo(&a.data_dir);
    ls.arg("ls");
    assert!(ok(ls).contains(&big_id));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the node's API took {:?} beside stalled readers",
        started.elapsed()
    );
    drop(readers);
}
