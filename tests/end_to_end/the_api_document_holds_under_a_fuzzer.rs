//! A third-party API fuzzer (schemathesis, pinned in `.ci/run`) drives every operation of the
//! node's own OpenAPI document against the real binary, with all its checks: no 5xx, every
//! status and body as documented, schema-valid requests accepted and invalid ones refused,
//! a deleted job gone, auth honoured. The exceptions it is allowed are in
//! `tests/api-fuzz/schemathesis.toml`, each with its reason.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use crate::http::Http;
use crate::procs::NodeProc;

/// Where `.ci/run` installs schemathesis, unless `STORGO_SCHEMATHESIS` names the `st` to run.
fn schemathesis() -> Option<PathBuf> {
    if let Some(st) = std::env::var_os("STORGO_SCHEMATHESIS") {
        return Some(PathBuf::from(st));
    }
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/st");
    st.exists().then_some(st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_document_holds_under_a_fuzzer() {
    let Some(st) = schemathesis() else {
        cannot_run("schemathesis is not installed (.ci/run installs it in target/schemathesis)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("a"), None);
    let api = Http::of(&node);
    // Something to list, stat and read, so that the stateful phase has an item and a job.
    let id = api
        .upload("notes.txt", b"what the fuzzer may read".to_vec())
        .await;
    let job = api.fetch(&id).await;
    assert_eq!(job["state"], "done", "{job}");

    let out = Command::new(&st)
        .arg("--config-file")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api-fuzz/schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", node.api))
        .args(["--checks", "all", "--no-color"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", api.token()))
        .current_dir(tmp.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Selected:") || l.contains("Tested:"))
        .collect();
    eprintln!("schemathesis: {}", summary.join(" · "));
    node.stop();
}
