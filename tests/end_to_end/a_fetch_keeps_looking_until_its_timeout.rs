//! A fetch started before anyone holds the item does not give up when the first DHT search
//! ends empty: it keeps asking (the DHT again, connected and LAN peers) until its timeout, and
//! completes once a peer has the item.

use std::time::Duration;

use crate::common::*;
use crate::http::Http;
use crate::procs::NodeProc;

fn with_shared_secret(dir: &std::path::Path, bootstrap: Option<&str>) -> NodeProc {
    let mut cmd = storgo(dir);
    cmd.env("STORGO_CONVERGENCE_SECRET", SHARED_SECRET);
    let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    NodeProc::start_with(cmd, dir, &args)
}

/// Completed provider searches, from the node's libp2p metrics.
async fn provider_searches_done(api: &Http) -> f64 {
    let text = api
        .req(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("libp2p_kad_query_result_get_providers_ok_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_started_before_the_item_exists_completes_when_it_appears() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_random(&tmp.path().join("notes.pdf"), 400_000, 21);
    // The ID, made offline with the secret the adder will use (from stdin, as an upload
    // is: no mode or mtime recorded).
    let mut offline = storgo(&tmp.path().join("offline"));
    offline
        .env("STORGO_CONVERGENCE_SECRET", SHARED_SECRET)
        .args(["add", "-", "--name", "notes.pdf"])
        .stdin(std::fs::File::open(tmp.path().join("notes.pdf")).unwrap());
    let id = last_line(&ok(offline));

    let a = with_shared_secret(&tmp.path().join("a"), None);
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let (api_a, api_b) = (Http::of(&a), Http::of(&b));
    let (status, job) = api_b
        .post(&format!("/api/v1/fetch/{id}?timeout_secs=60"))
        .await;
    assert_eq!(status, 202, "{job}");
    let n = job["job"].as_u64().unwrap();

    // The first search has ended, empty, and the job still runs.
    let searched = async {
        while provider_searches_done(&api_b).await < 1.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), searched)
        .await
        .expect("a first provider search ends");
    let (_, j) = api_b.get(&format!("/api/v1/jobs/{n}")).await;
    assert_eq!(j["state"], "running", "still looking: {j}");

    // Now A adds it; B's fetch finds it.
    assert_eq!(api_a.upload("notes.pdf", data.clone()).await, id);
    let resp = api_b
        .req(reqwest::Method::GET, &format!("/api/v1/jobs/{n}/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(
        resp.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(last["state"], "done", "{last}");
    let got = api_b
        .req(reqwest::Method::GET, &format!("/api/v1/cat/{id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == data);
}
