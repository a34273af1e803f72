//! The `/api/v1` routes through real HTTP against the real binary: status codes and JSON
//! errors, uploads (raw and multipart), `Range`, fetch jobs followed as server-sent events,
//! access from beyond loopback, the OpenAPI document against the router, and `/metrics`
//! parsed by a Prometheus text parser.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::*;
use crate::http::{error_code, Http};
use crate::procs::NodeProc;

/// A well-formed content ID that no node holds.
fn unknown_id() -> String {
    storgo::content::ContentId::new(
        storgo::content::BlockAddress::from_digest([7; 32]),
        storgo::content::BlockKey::from_bytes([9; 32]),
    )
    .to_string()
}

/// Announces a JSON body of `len` bytes to `/api/v1/add` and reads the answer before sending
/// more than its start.
fn oversized_json(base: &str, token: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/v1/add HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{{\"path\":\""
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// A `multipart/form-data` body with one file part, as a browser's form sends it.
fn multipart(filename: &str, data: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----storgo-test-boundary-7d3f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot a file\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_its_status_and_a_json_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), None);
    let api = Http::of(&a);
    let anon = Http::anonymous(&a.api);
    assert_eq!(
        error_code(&anon.get("/api/v1/status").await, 401),
        "unauthorized"
    );
    assert_eq!(
        error_code(&api.get("/api/v1/nothing/here").await, 404),
        "no_such_route"
    );

    // Uploads: the raw body, then a browser's form (the name is the part's file name).
    let data = random_bytes(3 << 20, 1);
    let id = api.upload("notes.txt", data.clone()).await;
    let other = random_bytes(200_000, 2);
    let (ct, body) = multipart("lecture 3.pdf", &other);
    let (status, v) = api
        .send_json(
            api.req(Method::POST, "/api/v1/upload")
                .header("content-type", ct)
                .body(body),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "lecture 3.pdf");
    assert_eq!(v["size"], other.len());
    let (ct, _) = multipart("x", b"");
    let no_file = api.req(Method::POST, "/api/v1/upload").header("content-type", ct).body(
        "------storgo-test-boundary-7d3f\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n------storgo-test-boundary-7d3f--\r\n",
    );
    assert_eq!(
        error_code(&api.send_json(no_file).await, 400),
        "bad_request"
    );

    // Reading: whole, a range, a range past the end.
    let whole = api
        .req(Method::GET, &format!("/api/v1/cat/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert!(
        whole.bytes().await.unwrap() == data,
        "cat returns the bytes added"
    );
    let part = api
        .req(Method::GET, &format!("/api/v1/cat/{id}"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000-1999/{}", data.len())
    );
    assert!(part.bytes().await.unwrap() == data[1000..2000]);
    let past = api
        .req(Method::GET, &format!("/api/v1/cat/{id}"))
        .header("range", format!("bytes={}-", data.len()));
    let past = api.send_json(past).await;
    assert_eq!(error_code(&past, 416), "unsatisfiable_range");

    // Bad and unknown IDs.
    for path in [
        "/api/v1/stat/nope",
        "/api/v1/cat/nope",
        "/api/v1/entries/nope",
    ] {
        assert_eq!(error_code(&api.get(path).await, 400), "bad_id", "{path}");
    }
    assert_eq!(
        error_code(&api.post("/api/v1/pin/nope").await, 400),
        "bad_id"
    );
    let unknown = unknown_id();
    assert_eq!(
        error_code(&api.get(&format!("/api/v1/stat/{unknown}")).await, 404),
        "not_held"
    );
    assert_eq!(
        error_code(&api.post(&format!("/api/v1/unpin/{unknown}")).await, 404),
        "not_pinned"
    );

    // A folder, added from this machine's disk: not a file to cat, but it has entries.
    let folder = tmp.path().join("course");
    std::fs::create_dir_all(folder.join("week3")).unwrap();
    std::fs::write(folder.join("week3/notes.txt"), b"eigenvalues\n").unwrap();
    let add = api
        .req(Method::POST, "/api/v1/add")
        .json(&serde_json::json!({"path": folder, "recursive": true}));
    let (status, added) = api.send_json(add).await;
    assert_eq!(status, 200, "{added}");
    let dir_id = added["id"].as_str().unwrap();
    assert_eq!(
        error_code(&api.get(&format!("/api/v1/cat/{dir_id}")).await, 409),
        "conflict"
    );
    let (status, entries) = api.get(&format!("/api/v1/entries/{dir_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(entries[0]["name"], "week3");
    assert_eq!(
        error_code(&api.get(&format!("/api/v1/entries/{id}")).await, 409),
        "conflict"
    );
    let missing = api
        .req(Method::POST, "/api/v1/add")
        .json(&serde_json::json!({"path": tmp.path().join("no-such-file")}));
    assert_eq!(error_code(&api.send_json(missing).await, 404), "not_found");
    let garbled = api
        .req(Method::POST, "/api/v1/add")
        .header("content-type", "application/json")
        .body("{\"path\":");
    assert_eq!(
        error_code(&api.send_json(garbled).await, 400),
        "bad_request"
    );
    // (Raw: the node answers 413 as soon as it sees the length, and closes; a client still
    // writing the body would see a broken pipe instead of the answer.)
    let huge = oversized_json(&a.api, api.token(), 3 << 20);
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("\"error\":\"too_large\""), "{huge}");

    // Pins come and go; the list follows.
    let (status, _) = api.post(&format!("/api/v1/unpin/{id}")).await;
    assert_eq!(status, 200);
    let (_, ls) = api.get("/api/v1/ls").await;
    assert!(!ls
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id.as_str()));
    let (status, rec) = api.post(&format!("/api/v1/pin/{id}")).await;
    assert_eq!(
        (status.as_u16(), rec["id"].as_str()),
        (200, Some(id.as_str()))
    );

    // A fetch of something nobody has: a job at once, which fails naming why.
    let (status, job) = api
        .post(&format!("/api/v1/fetch/{unknown}?timeout_secs=1"))
        .await;
    assert_eq!(status, 202, "{job}");
    let last = api.fetch(&format!("{unknown}?timeout_secs=1")).await;
    assert_eq!(last["state"], "failed", "{last}");
    assert_eq!(last["error"]["error"], "not_found", "{last}");
    let (status, jobs) = api.get("/api/v1/jobs").await;
    assert_eq!(status, 200);
    assert!(jobs.as_array().unwrap().len() >= 2);
    assert_eq!(
        error_code(&api.get("/api/v1/jobs/999999").await, 404),
        "not_found"
    );

    // The rest answer.
    for path in [
        "/api/v1/id",
        "/api/v1/status",
        "/api/v1/peers",
        "/api/v1/peers/banned",
        "/api/v1/routing",
        "/api/v1/replicas",
        &format!("/api/v1/stat/{id}"),
        &format!("/api/v1/providers/{id}?timeout_secs=1"),
    ] {
        assert_eq!(api.get(path).await.0, 200, "{path}");
    }
    for path in ["/api/v1/gc", "/api/v1/verify", "/api/v1/repair"] {
        assert_eq!(api.post(path).await.0, 200, "{path}");
    }
    let (_, providers) = api
        .get(&format!("/api/v1/providers/{id}?timeout_secs=1"))
        .await;
    assert_eq!(providers[0], a.peer_id.as_str(), "this node holds it");

    // The event stream starts at once with the node's status.
    let events = api.req(Method::GET, "/api/v1/events").send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.bytes_stream();
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("an event within 10 s")
    .expect("a chunk")
    .unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("event: status"),
        "{first:?}"
    );

    // A login link is good once; a second visit gets a page saying so, not the API's JSON.
    let browser = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = browser.get(&a.login_url).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let again = browser.get(&a.login_url).send().await.unwrap();
    assert_eq!(again.status(), 401);
    assert!(again.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // A deleted job is gone; a job number that is not one is the JSON error.
    let job = api.fetch(&unknown_id()).await;
    let n = job["job"].as_u64().unwrap();
    let (status, _) = api
        .send_json(api.req(Method::DELETE, &format!("/api/v1/jobs/{n}")))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        error_code(&api.get(&format!("/api/v1/jobs/{n}")).await, 404),
        "not_found"
    );
    assert_eq!(
        error_code(&api.get("/api/v1/jobs/-1").await, 400),
        "bad_request"
    );
    // Limits the document states are the ones enforced.
    for bad in [
        format!("/api/v1/fetch/{}?timeout_secs=1796460047", unknown_id()),
        "/api/v1/upload?name=x&replicas=17".to_string(),
    ] {
        let (status, body) = api.post(&bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("is not in"),
            "{body}"
        );
    }
    assert_eq!(
        error_code(
            &api.get("/api/v1/collections/search?q=x&limit=0").await,
            400
        ),
        "bad_request"
    );

    // A node with a storage limit refuses an upload that would pass it.
    let small = NodeProc::start_args(&tmp.path().join("small"), None, &["--max-storage", "1MB"]);
    let small_api = Http::of(&small);
    let too_big = small_api
        .req(Method::POST, "/api/v1/upload?name=big.bin")
        .body(random_bytes(3 << 20, 3));
    assert_eq!(
        error_code(&small_api.send_json(too_big).await, 507),
        "quota"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_beyond_loopback_needs_the_token_and_refuses_routes_naming_this_disk() {
    let tmp = tempfile::tempdir().unwrap();
    // A wildcard listener is reached from other machines: treated as not loopback (this
    // test only connects to it through 127.0.0.1).
    let a = NodeProc::start_args(&tmp.path().join("a"), None, &["--api", "0.0.0.0:0"]);
    let port = a.api.rsplit(':').next().unwrap().to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let mut api = Http::of(&a);
    api.base = base.clone();
    let anon = Http::anonymous(&base);
    for path in ["/api/v1/status", "/api/v1/ls", "/c/whatever"] {
        assert_eq!(
            error_code(&anon.get(path).await, 401),
            "unauthorized",
            "{path}"
        );
    }
    let wrong = anon
        .req(Method::GET, "/api/v1/status")
        .bearer_auth("0123456789abcdef0123456789abcdef");
    assert_eq!(
        error_code(&anon.send_json(wrong).await, 401),
        "unauthorized"
    );
    assert_eq!(anon.get("/healthz").await.0, 200);

    let file = tmp.path().join("secret.txt");
    std::fs::write(&file, b"not for remote eyes").unwrap();
    let add = api
        .req(Method::POST, "/api/v1/add")
        .json(&serde_json::json!({"path": file}));
    assert_eq!(error_code(&api.send_json(add).await, 403), "local_only");
    let id = api.upload("shared.txt", b"for everyone".to_vec()).await;
    let get = api
        .req(Method::POST, "/api/v1/get")
        .json(&serde_json::json!({"id": id, "output": tmp.path().join("out")}));
    assert_eq!(error_code(&api.send_json(get).await, 403), "local_only");
    let to_disk = api
        .post(&format!(
            "/api/v1/fetch/{id}?output=/tmp/storgo-should-not-exist"
        ))
        .await;
    assert_eq!(error_code(&to_disk, 403), "local_only");
    assert!(!std::path::Path::new("/tmp/storgo-should-not-exist").exists());
    let (status, _) = api.get(&format!("/api/v1/stat/{id}")).await;
    assert_eq!(status, 200, "the token opens everything else");

    // Commands run on this machine (or by `docker exec` in a container) reach the node
    // through the loopback companion DATA_DIR/api names, where routes naming paths work.
    let named = std::fs::read_to_string(a.data_dir.join("api")).unwrap();
    let local = named.lines().next().unwrap().trim().to_owned();
    assert!(
        local.starts_with("http://127.0.0.1:") && local != base,
        "{local}"
    );
    let mut local_api = Http::of(&a);
    local_api.base = local;
    let add = local_api
        .req(Method::POST, "/api/v1/add")
        .json(&serde_json::json!({"path": file}));
    let (status, added) = local_api.send_json(add).await;
    assert_eq!(status, 200, "{added}");
    // Its login links open the page on the public listener, not on the companion.
    let (status, link) = local_api.post("/api/v1/login-links").await;
    assert_eq!(status, 200, "{link}");
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{base}/login?code=")),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_the_router_has() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), None);
    let api = Http::of(&a);
    // Public: the description says nothing about the node.
    let (status, doc) = Http::anonymous(&a.api).get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "storgo node API", "{}", doc["info"]);
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 25, "{} paths", paths.len());
    // Tools can trust it: a path parameter is in its path, every operation documents 401 and
    // every response has a description; no two types share a name.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: {name} is no path parameter"
                    );
                }
            }
            let answers = op["responses"].as_object().unwrap();
            assert!(answers.contains_key("401"), "{method} {path}");
            for (code, r) in answers {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {code}"
                );
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("FolderEntry") && schemas.contains_key("CollectionEntry"));

    // Every documented route is routed: with placeholder parameters each answers something
    // other than "no such route" (a bad ID is 400, an unknown job 404 `not_found`…).
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "delete", "put", "patch"] {
            if item.get(method).is_none() {
                continue;
            }
            let url = path
                .replace("{id}", "not-an-id")
                .replace("{job}", "999999")
                .replace("{peer}", "not-a-peer");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = api.req(m, &url).send().await.unwrap();
            let status = r.status();
            let streaming = r
                .headers()
                .get("content-type")
                .is_some_and(|c| c == "text/event-stream");
            let body: Value = if streaming {
                Value::Null
            } else {
                r.json().await.unwrap_or(Value::Null)
            };
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(body["error"], "no_such_route", "{method} {path}: {body}");
            checked += 1;
        }
    }
    assert!(checked >= paths.len());
    // Every route the router has is documented: the router is built only from the
    // documented handlers (`storgo::api::v1`'s unit test checks that no route is added
    // around them), so this checks the document the node serves is that one.
    assert_eq!(
        doc,
        serde_json::to_value(storgo::api::v1::openapi()).unwrap()
    );
}

/// The samples of a scrape, by name (labels joined in).
async fn scrape(api: &Http) -> prometheus_parse::Scrape {
    let text = api
        .req(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format")
}

fn value(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_after_an_add_and_a_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start(&tmp.path().join("a"), None);
    let b = NodeProc::start(&tmp.path().join("b"), Some(a.addr()));
    let (api_a, api_b) = (Http::of(&a), Http::of(&b));
    let before_a = scrape(&api_a).await;
    let before_b = scrape(&api_b).await;
    for name in [
        "storgo_added_bytes_total",
        "storgo_served_bytes_total",
        "storgo_fetched_bytes_total",
        "storgo_fetch_duration_seconds_count",
        "storgo_blocks_stored",
        "storgo_stored_bytes",
        "storgo_provider_records_published_total",
        "storgo_replicas_held",
        "storgo_items_under_replicated",
        "storgo_repairs_total",
        // (libp2p's connection counters have labels, so no sample exists before the first
        // connection, which B may not have made yet: they are checked after the fetch.)
    ] {
        assert!(
            before_a.samples.iter().any(|s| s.metric == name),
            "{name} is exported"
        );
    }
    let data = random_bytes(2 << 20, 5);
    let id = api_a.upload("slides.bin", data.clone()).await;
    let job = api_b.fetch(&id).await;
    assert_eq!(job["state"], "done", "{job}");

    let after_a = scrape(&api_a).await;
    let after_b = scrape(&api_b).await;
    let moved = |b: &prometheus_parse::Scrape, a: &prometheus_parse::Scrape, name: &str| {
        value(a, name) - value(b, name)
    };
    assert!(moved(&before_a, &after_a, "storgo_added_bytes_total") >= data.len() as f64);
    assert!(moved(&before_a, &after_a, "storgo_served_bytes_total") >= data.len() as f64);
    assert!(
        moved(
            &before_a,
            &after_a,
            "storgo_provider_records_published_total"
        ) >= 1.0
    );
    assert!(value(&after_a, "storgo_stored_bytes") >= data.len() as f64);
    assert!(value(&after_a, "storgo_blocks_stored") >= 1.0);
    assert!(moved(&before_b, &after_b, "storgo_fetched_bytes_total") >= data.len() as f64);
    assert_eq!(
        moved(&before_b, &after_b, "storgo_fetch_duration_seconds_count"),
        1.0
    );
    assert!(
        after_a
            .samples
            .iter()
            .any(|s| s.metric == "storgo_inbound_requests_total"
                && s.labels.get("outcome") == Some("block")),
        "inbound requests are counted by outcome"
    );
    assert!(value(&after_b, "libp2p_swarm_connections_established_total") >= 1.0);
    assert!(value(&after_a, "libp2p_swarm_connections_established_total") >= 1.0);
}
