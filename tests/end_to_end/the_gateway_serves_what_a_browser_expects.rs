//! The gateway (`/c/ID[/path]`) as a browser and a download manager use it, on a listener of
//! its own without a token: headers, folders, paths, ranges, 304, HEAD, fetching what the
//! node does not hold; and a 1 GiB upload and download with the node's memory bounded.

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::http::{error_code, Http};
use crate::procs::NodeProc;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_folders_come_with_the_headers_a_browser_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start_args(&tmp.path().join("a"), None, &["--gateway", "127.0.0.1:0"]);
    let b = NodeProc::start_args(
        &tmp.path().join("b"),
        Some(a.addr()),
        &["--gateway", "127.0.0.1:0"],
    );
    let api_a = Http::of(&a);
    let course = tmp.path().join("linear algebra");
    std::fs::create_dir_all(course.join("week3")).unwrap();
    let pdf = write_random(&course.join("week3/notes.pdf"), 300_000, 1);
    std::fs::write(course.join("readme.txt"), "Read week 3 first.\n").unwrap();
    std::fs::write(
        course.join("quiz.html"),
        "<script>fetch('/api/v1/ls')</script>",
    )
    .unwrap();
    std::os::unix::fs::symlink("week3/notes.pdf", course.join("latest.pdf")).unwrap();
    let add = api_a
        .req(Method::POST, "/api/v1/add")
        .json(&serde_json::json!({"path": course, "recursive": true}));
    let (_, added) = api_a.send_json(add).await;
    let dir = added["id"].as_str().expect("the folder's ID").to_owned();

    // B fetches it (a job), then its gateway serves it to anyone.
    let job = Http::of(&b).fetch(&dir).await;
    assert_eq!(job["state"], "done", "{job}");
    let gw = b.gateway.clone().expect("B's gateway");
    let web = no_redirects();

    // A folder: with the slash, an index page linking its entries.
    let r = web.get(format!("{gw}/c/{dir}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers()["location"], format!("/c/{dir}/"));
    let r = web.get(format!("{gw}/c/{dir}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    for link in [
        "href=\"week3/\"",
        "href=\"readme.txt\"",
        "href=\"quiz.html?download\"",
    ] {
        assert!(page.contains(link), "{link} in {page}");
    }
    assert!(
        page.contains("linear algebra"),
        "the folder's name titles the page"
    );

    // A file by its path: type, length, tag, disposition, bytes.
    let url = format!("{gw}/c/{dir}/week3/notes.pdf");
    let r = web.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["content-length"], pdf.len().to_string().as_str());
    assert_eq!(h["etag"], format!("\"{dir}/week3/notes.pdf\"").as_str());
    assert_eq!(h["content-disposition"], "inline; filename=\"notes.pdf\"");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(r.bytes().await.unwrap() == pdf);

    let again = web
        .get(&url)
        .header("if-none-match", h["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(again.bytes().await.unwrap().is_empty());

    let tail = web
        .get(&url)
        .header("range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        tail.headers()["content-range"],
        format!("bytes {}-{}/{}", pdf.len() - 100, pdf.len() - 1, pdf.len()).as_str()
    );
    assert!(tail.bytes().await.unwrap() == pdf[pdf.len() - 100..]);

    let head = web.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        pdf.len().to_string().as_str()
    );
    assert!(head.bytes().await.unwrap().is_empty());

    let dl = web.get(format!("{url}?download")).send().await.unwrap();
    assert_eq!(
        dl.headers()["content-disposition"],
        "attachment; filename=\"notes.pdf\""
    );
    let text = web
        .get(format!("{gw}/c/{dir}/readme.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(text.headers()["content-type"], "text/plain; charset=utf-8");
    // An item's HTML runs sandboxed: it cannot act as the person viewing it.
    let html = web
        .get(format!("{gw}/c/{dir}/quiz.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(html.headers()["content-security-policy"], "sandbox");

    // What the gateway refuses, and what it does not offer.
    let anon = Http::anonymous(&gw);
    assert_eq!(
        error_code(&anon.get(&format!("/c/{dir}/week9/none.pdf")).await, 404),
        "not_found"
    );
    assert_eq!(error_code(&anon.get("/c/not-an-id").await, 400), "bad_id");
    // (Sent raw: an HTTP client would resolve the dots itself.)
    let raw = raw_get(&gw, &format!("/c/{dir}/week3/../readme.txt"));
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert_eq!(
        error_code(&anon.get("/api/v1/ls").await, 404),
        "no_such_route"
    );
    let post = web.post(format!("{gw}/c/{dir}/")).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);

    // An item B does not hold is fetched for the reader, and not kept pinned.
    let only_on_a = random_bytes(500_000, 2);
    let id = api_a.upload("poster.png", only_on_a.clone()).await;
    let r = web.get(format!("{gw}/c/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().await.unwrap() == only_on_a);
    let (_, pins) = Http::of(&b).get("/api/v1/ls").await;
    assert!(
        !pins
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.as_str()),
        "read through the gateway, not pinned: {pins}"
    );
}

/// A GET sent as written, without a client's URL normalisation; the whole reply.
fn raw_get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// Deterministic bytes, fast to make and to make again (xorshift64*).
struct Bytes(u64);

impl Bytes {
    fn chunk(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            v.extend_from_slice(&self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v
    }
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_goes_up_and_down_through_http_in_bounded_memory() {
    const SIZE: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let a = NodeProc::start_args(&tmp.path().join("a"), None, &["--gateway", "127.0.0.1:0"]);
    let api = Http::of(&a);

    let mut made = Bytes(0x5eed);
    let mut sent = Sha256::new();
    // Made lazily: the test does not hold the GiB either.
    let body = futures::stream::iter(0..SIZE / CHUNK).map(move |_| {
        let c = made.chunk(CHUNK);
        Ok::<_, std::io::Error>(c)
    });
    let r = api
        .req(Method::POST, "/api/v1/upload?name=disk.img")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let added: serde_json::Value = r.json().await.unwrap();
    assert_eq!(added["size"], SIZE);
    let id = added["id"].as_str().unwrap().to_owned();

    let mut again = Bytes(0x5eed);
    for _ in 0..SIZE / CHUNK {
        sent.update(again.chunk(CHUNK));
    }
    let gw = a.gateway.clone().unwrap();
    let r = reqwest::get(format!("{gw}/c/{id}")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], SIZE.to_string().as_str());
    let mut got = Sha256::new();
    let mut n = 0usize;
    let mut stream = r.bytes_stream();
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        n += c.len();
        got.update(&c);
    }
    assert_eq!(n, SIZE);
    assert_eq!(got.finalize(), sent.finalize(), "the same GiB came back");
    let peak = peak_rss(a.child.id());
    eprintln!(
        "node peak RSS over a 1 GiB upload and download: {} MiB",
        peak >> 20
    );
    assert!(peak < 100 << 20, "peak RSS {} MiB", peak >> 20);
}
