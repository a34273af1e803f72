//! `/healthz` and `/readyz` answer without the API token (a container's health check has
//! none); a node given a bootstrap peer it has not reached is alive but not ready, and ready
//! once it has; `--log-format json` writes one JSON object a line, with the event's fields;
//! a log written to a file holds no colour codes.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;
use crate::procs::NodeProc;

/// The node's API address (host:port) from `DATA_DIR/api`.
fn api_addr(node: &NodeProc) -> String {
    let api = std::fs::read_to_string(node.data_dir.join("api")).expect("api file");
    let url = api.lines().next().expect("api url");
    url.trim_start_matches("http://").to_owned()
}

/// A plain HTTP/1.1 GET without a token: the status and the body.
fn get(node: &NodeProc, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(api_addr(node)).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("read the reply");
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

#[test]
fn health_and_readiness_need_no_token_and_readiness_waits_for_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start_args(&tmp.path().join("a"), None, &["--log-format", "json"]);
    let (status, body) = get(&a, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get(&a, "/readyz");
    assert_eq!(status, 200, "no bootstrap peer to wait for: {body}");
    let r: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(r["ready"], true, "{r}");
    // Everything else still needs the token.
    assert_eq!(get(&a, "/api/v1/status").0, 401);

    // A bootstrap address where nobody listens: alive, not ready.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("/ip4/127.0.0.1/tcp/{dead_port}/p2p/{}", a.peer_id);
    let lonely = NodeProc::start(&tmp.path().join("lonely"), Some(&nowhere));
    assert_eq!(get(&lonely, "/healthz").0, 200);
    let (status, body) = get(&lonely, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("a first peer"), "{body}");

    // One that reaches its bootstrap peer becomes ready.
    let joined = NodeProc::start(&tmp.path().join("joined"), Some(a.addr()));
    wait_for(
        Duration::from_secs(30),
        "the joined node to be ready",
        || get(&joined, "/readyz").0 == 200,
    );

    // --log-format json: every line is an object; fields sit beside level and message.
    let log = a.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "listening"
            && l["level"] == "INFO"
            && l["address"].as_str().is_some_and(|a| a.contains("/p2p/"))),
        "{log}"
    );
    // A first node alone is not warned about at every tick; and a log written to a file (as
    // `docker logs` and a service manager keep it) has no colour codes.
    assert!(!log.contains("Failed to trigger bootstrap"), "{log}");
    // An empty answer says so, on stderr (stdout stays empty for scripts).
    let mut peers = storgo(&lonely.data_dir);
    peers.arg("peers");
    let out = run(peers);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no peers connected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in [&lonely, &joined] {
        let text = node.log();
        assert!(text.contains("listening"), "{text}");
        assert!(
            !text.contains('\x1b'),
            "escape codes in a log file: {text:?}"
        );
    }
}
