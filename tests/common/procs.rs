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
}

impl NodeProc {
    /// Starts `storgo node` with `args` (after the subcommand) and waits for its API line.
    pub fn start_with(mut cmd: Command, data_dir: &Path, args: &[&str]) -> NodeProc {
        cmd.arg("--data-dir").arg(data_dir).arg("node").args(args);
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
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("node prints its addresses");
            if let Some(p) = line.strip_prefix("peer id: ") {
                peer_id = p.to_owned();
            } else if let Some(a) = line.strip_prefix("listening on ") {
                addrs.push(a.to_owned());
            } else if line.starts_with("api: ") {
                break;
            }
        }
        NodeProc {
            child,
            data_dir: data_dir.to_owned(),
            peer_id,
            addrs,
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
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
