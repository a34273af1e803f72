//! `docker/` for real: the base image made from Debian's packages (`docker/make-base.sh`),
//! the image built from `docker/Dockerfile` with this build's binary, the three-node cluster
//! of `docker/compose.yaml` up; add through node1's API, fetch through node2's; stop node1
//! (the bootstrap node) and fetch on node3; cut node3 off the network and reconnect it, and
//! fetch again; `compose down` at the end whatever happens. Runs where `docker info` works
//! (and needs root for debootstrap); says so and passes elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::http::Http;

const PROJECT_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn docker_works() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command, failing the test with its output if it fails; its stdout.
fn must(mut c: Command) -> String {
    let what = format!("{c:?}");
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The compose project of this test, taken down when dropped.
struct Cluster {
    project: String,
    subnet: String,
}

impl Cluster {
    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(Path::new(PROJECT_DIR).join("docker"))
            .args(["-p", &self.project, "-f", "compose.yaml"])
            .env("STORGO_IMAGE", format!("{}:latest", self.project))
            .env("STORGO_SUBNET", &self.subnet)
            .env("STORGO_PORT1", "127.0.0.1:")
            .env("STORGO_PORT2", "127.0.0.1:")
            .env("STORGO_PORT3", "127.0.0.1:");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let mut c = self.compose();
        c.args(args);
        must(c)
    }

    /// The node's API on the host, with its token (read inside the container).
    fn api(&self, node: &str) -> Http {
        let port = self.run(&["port", node, "4816"]);
        let base = format!("http://{}", port.trim());
        let file = self.run(&["exec", "-T", node, "cat", "/data/api"]);
        let token = file.lines().nth(1).expect("a token").trim().to_owned();
        Http::with_token(&base, &token)
    }

    fn container(&self, node: &str) -> String {
        self.run(&["ps", "-q", node]).trim().to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = self.compose();
        c.args(["down", "-v", "--timeout", "10"]);
        let _ = c.output();
        let _ = Command::new("docker")
            .args(["image", "rm", "-f", &format!("{}:latest", self.project)])
            .output();
    }
}

/// Waits until `node` answers `/readyz` 200.
async fn ready(api: &Http) {
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.client.get(format!("{}/readyz", api.base)).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{} ready within 60 s",
            api.base
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A build context with the sources and this build's binary, stripped as `just docker-image`
/// strips it, as `prebuilt/storgo`.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("context");
    std::fs::create_dir_all(ctx.join("prebuilt")).unwrap();
    for f in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(Path::new(PROJECT_DIR).join(f), ctx.join(f)).unwrap();
    }
    must({
        let mut c = Command::new("strip");
        c.arg("-o").arg(ctx.join("prebuilt/storgo")).arg(bin());
        c
    });
    ctx
}

/// Runs `args` inside `node`'s container and gives its standard output.
fn exec(cluster: &Cluster, node: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", "-T", node];
    all.extend_from_slice(args);
    cluster.run(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_fetch_lose_the_bootstrap_node_cut_one_off_and_fetch_again() {
    if !docker_works() {
        eprintln!("skipped: `docker info` does not answer here (no Docker Engine)");
        return;
    }
    if !is_root() {
        cannot_run("making the base image with debootstrap needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = must({
        let mut c = Command::new(Path::new(PROJECT_DIR).join("docker/make-base.sh"));
        c.env("BASE_TAG", "storgo-base:bookworm");
        c
    });
    let pid = std::process::id();
    let cluster = Cluster {
        project: format!("storgotest{pid}"),
        subnet: format!("172.30.{}", pid % 200 + 20),
    };
    must({
        let mut c = Command::new("docker");
        c.env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-f"])
            .arg(Path::new(PROJECT_DIR).join("docker/Dockerfile"))
            .args(["-t", &format!("{}:latest", cluster.project)])
            .args(["--build-arg", &format!("BASE={}", base.trim())])
            .args(["--build-arg", &format!("BUILDER={}", base.trim())])
            .arg(context(tmp.path()));
        c
    });
    // The build stage leaves no dangling image behind (`just docker-image` prunes it the same
    // way), and the image is small: a stripped binary on a trimmed Debian minbase.
    must({
        let mut c = Command::new("docker");
        c.args([
            "image",
            "prune",
            "-f",
            "--filter",
            "label=storgo.stage=build",
        ]);
        c
    });
    let left = must({
        let mut c = Command::new("docker");
        c.args(["images", "-q", "--filter", "label=storgo.stage=build"]);
        c
    });
    assert!(left.trim().is_empty(), "build stages left: {left}");
    let size: u64 = must({
        let mut c = Command::new("docker");
        c.args(["image", "inspect", "--format", "{{.Size}}"])
            .arg(format!("{}:latest", cluster.project));
        c
    })
    .trim()
    .parse()
    .expect("an image size");
    eprintln!("image: {} MB", size / 1_000_000);
    assert!(size < 120_000_000, "the image is {size} bytes");
    cluster.run(&["up", "-d", "--no-build"]);
    let (n1, n2, n3) = (
        cluster.api("node1"),
        cluster.api("node2"),
        cluster.api("node3"),
    );
    for n in [&n1, &n2, &n3] {
        ready(n).await;
    }
    // The image's HEALTHCHECK reports healthy.
    let c1 = cluster.container("node1");
    wait_for(Duration::from_secs(60), "node1 healthy", || {
        must({
            let mut c = Command::new("docker");
            c.args(["inspect", "--format", "{{.State.Health.Status}}", &c1]);
            c
        })
        .trim()
            == "healthy"
    });
    // Without the token, refused: the API listens beyond loopback.
    let anon = Http::anonymous(&n1.base);
    assert_eq!(anon.get("/api/v1/status").await.0, 401);

    // Add through node1, fetch through node2.
    let first = random_bytes(3 << 20, 31);
    let id = n1.upload("week1.pdf", first.clone()).await;
    let job = n2.fetch(&id).await;
    assert_eq!(job["state"], "done", "{job}");

    // Inside the containers, the commands that name paths work (they reach the node through
    // its loopback companion listener): add a file on node1, get it back out, fetch it to a
    // file on node2.
    exec(
        &cluster,
        "node1",
        &[
            "sh",
            "-c",
            "head -c 1500000 /dev/urandom > /tmp/lecture.bin",
        ],
    );
    let added = exec(&cluster, "node1", &["storgo", "add", "/tmp/lecture.bin"]);
    let lecture = added
        .lines()
        .last()
        .expect("add prints the ID")
        .trim()
        .to_owned();
    assert!(lecture.starts_with("sg1"), "{added}");
    exec(
        &cluster,
        "node1",
        &["storgo", "get", &lecture, "-o", "/tmp/got.bin"],
    );
    exec(
        &cluster,
        "node2",
        &[
            "storgo",
            "fetch",
            &lecture,
            "-o",
            "/tmp/fetched.bin",
            "--timeout",
            "60s",
        ],
    );
    let sum = |node: &str, path: &str| {
        exec(&cluster, node, &["sha256sum", path])
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let original = sum("node1", "/tmp/lecture.bin");
    assert_eq!(
        sum("node1", "/tmp/got.bin"),
        original,
        "get gives the same bytes"
    );
    assert_eq!(sum("node2", "/tmp/fetched.bin"), original, "fetch -o too");

    // node1, the bootstrap node, stops: node3 still fetches (from node2).
    cluster.run(&["stop", "--timeout", "10", "node1"]);
    let job = n3.fetch(&id).await;
    assert_eq!(job["state"], "done", "{job}");
    let got = n3
        .req(reqwest::Method::GET, &format!("/c/{id}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got == first, "node3 serves the same bytes");

    // node3 cut off: a fetch of something new fails; reconnected, it succeeds.
    let network = format!("{}_storgo", cluster.project);
    let c3 = cluster.container("node3");
    must({
        let mut c = Command::new("docker");
        c.args(["network", "disconnect", &network, &c3]);
        c
    });
    // Added after the cut: node2 cannot place a replica on node3.
    let second = random_bytes(1 << 20, 32);
    let id2 = n2.upload("week2.pdf", second.clone()).await;
    // (Cut off, node3's published port is gone too: ask it from inside its container.)
    let mut cut_off = cluster.compose();
    cut_off.args([
        "exec",
        "-T",
        "node3",
        "storgo",
        "fetch",
        &id2,
        "--timeout",
        "3s",
    ]);
    let out = cut_off.output().unwrap();
    assert!(!out.status.success(), "nobody is reachable from node3");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no peer provides"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    must({
        let mut c = Command::new("docker");
        c.args([
            "network",
            "connect",
            "--ip",
            &format!("{}.13", cluster.subnet),
            &network,
            &c3,
        ]);
        c
    });
    cluster.run(&[
        "exec",
        "-T",
        "node3",
        "storgo",
        "fetch",
        &id2,
        "--timeout",
        "60s",
    ]);
    let stat = cluster.run(&["exec", "-T", "node3", "storgo", "stat", &id2, "--json"]);
    let stat: serde_json::Value = serde_json::from_str(stat.trim()).expect("stat --json");
    assert_eq!(stat["size"], second.len(), "{stat}");
    assert_eq!(
        stat["chunks_local"], stat["chunks"],
        "node3 holds all of it: {stat}"
    );
}
