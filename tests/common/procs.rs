//! Real `storgo node` processes on 127.0.0.1 (port 0, no mDNS unless asked).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct NodeProc {
    pub child: Child,
    pub data_dir: PathBuf,
    pub peer_id: String,
    pub addrs: Vec<String>,
    /// `http://HOST:PORT` of the API and web page.
    pub api: String,
    /// `http://HOST:PORT` of the gateway listener, when `--gateway` was given.
    pub gateway: Option<String>,
    /// The one-time login URL the node printed.
    pub login_url: String,
}

impl NodeProc {
    /// Starts `storgo node` with `args` (after the subcommand) and waits for its API line.
    pub fn start_with(mut cmd: Command, data_dir: &Path, args: &[&str]) -> NodeProc {
        cmd.arg("--data-dir").arg(data_dir).arg("node").args(args);
        // A free port for the API: tests run side by side (a flag in `args` still wins).
        cmd.env("STORGO_API", "127.0.0.1:0");
        // The node's log goes next to its data dir, for reading when a test fails.
        let log = std::fs::File::create(data_dir.with_extension("log")).expect("node log file");
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn storgo node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer_id = String::new();
        let mut addrs = vec![];
        let (mut gateway, mut login_url) = (None, String::new());
        let api;
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("node prints its addresses");
            if let Some(p) = line.strip_prefix("peer id: ") {
                peer_id = p.to_owned();
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addrs.push(a.to_owned());
            } else if let Some(g) = line.strip_prefix("gateway: ") {
                gateway = Some(g.trim_end_matches("/c/ID").to_owned());
            } else if let Some(w) = line.strip_prefix("web: ") {
                login_url = w.to_owned();
            } else if let Some(a) = line.strip_prefix("api: ") {
                api = a.to_owned();
                break;
            }
        }
        NodeProc {
            child,
            data_dir: data_dir.to_owned(),
            peer_id,
            addrs,
            api,
            gateway,
            login_url,
        }
    }

    pub fn start(data_dir: &Path, bootstrap: Option<&str>) -> NodeProc {
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
        if let Some(b) = bootstrap {
            args.extend(["--bootstrap", b]);
        }
        Self::start_with(Command::new(crate::common::bin()), data_dir, &args)
    }

    pub fn addr(&self) -> &str {
        &self.addrs[0]
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait for node")
    }
}

impl Drop for NodeProc {
    /// SIGTERM first, so that a node a test is done with exits as a user's would (and, under
    /// `just coverage`, writes its profile: a SIGKILLed process records nothing); SIGKILL if
    /// it has not gone within 10 s.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) on our own child's PID, which has not been reaped.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let start = std::time::Instant::now();
            while matches!(self.child.try_wait(), Ok(None))
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::park_timeout(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProc {
    /// [`start`](Self::start) with more arguments after the usual ones.
    pub fn start_args(data_dir: &Path, bootstrap: Option<&str>, extra: &[&str]) -> NodeProc {
        let mut args = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
        if let Some(b) = bootstrap {
            args.extend(["--bootstrap", b]);
        }
        args.extend(extra);
        Self::start_with(Command::new(crate::common::bin()), data_dir, &args)
    }

    /// SIGKILL, and reap: a power cut as far as the data dir can tell.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the node");
        self.child.wait().expect("reap the node");
    }

    /// One of the node's counters from `storgo status --json` (0 while it cannot answer).
    pub fn counter(&self, name: &str) -> u64 {
        self.status_number("node", name)
    }

    /// Bytes of blocks stored and indexed (what a kill would not lose).
    pub fn stored_bytes(&self) -> u64 {
        self.status_number("store", "bytes")
    }

    pub fn status_number(&self, part: &str, name: &str) -> u64 {
        let mut status = crate::common::storgo(&self.data_dir);
        status.args(["status", "--json"]);
        let out = crate::common::run(status);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|s| s[part][name].as_u64())
            .unwrap_or(0)
    }

    /// The node's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

/// `storgo ls --json` (pins) or `ls --replicas --json` of a data dir, through its node when
/// one runs.
pub fn listed(data_dir: &Path, replicas: bool) -> Vec<serde_json::Value> {
    let mut ls = crate::common::storgo(data_dir);
    ls.args(["ls", "--json"]);
    if replicas {
        ls.arg("--replicas");
    }
    serde_json::from_str(crate::common::ok(ls).trim()).unwrap_or_default()
}
