//! Helpers shared by the integration tests: data generation and the real `storgo` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

/// A fixed convergence secret, so that two data dirs produce the same IDs.
pub const SHARED_SECRET: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub fn write_random(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let data = random_bytes(len, seed);
    std::fs::write(path, &data).expect("write test file");
    data
}

/// The binary under test: this build's, or `STORGO_BIN` (to run a test against another
/// build, e.g. to show that a regression test fails on the code before a fix).
pub fn bin() -> std::ffi::OsString {
    std::env::var_os("STORGO_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_storgo").into())
}

/// The real binary, with a data dir and no inherited storgo settings.
pub fn storgo(data_dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("STORGO_CONVERGENCE_SECRET")
        .env_remove("STORGO_MAX_STORAGE")
        .env_remove("RUST_LOG")
        .env_remove("STORGO_CONFIG")
        // No config file of the person running the tests: the default one is looked for here.
        .env("XDG_CONFIG_HOME", data_dir.with_extension("config-home"))
        .env("STORGO_DATA_DIR", data_dir)
        .stdin(Stdio::null());
    c
}

pub fn run(mut c: Command) -> Output {
    c.output().expect("run storgo")
}

/// Runs and expects success; returns stdout.
pub fn ok(c: Command) -> String {
    let dbg = format!("{c:?}");
    let out = run(c);
    assert!(
        out.status.success(),
        "{dbg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and expects failure with exactly one line on stderr; returns that line.
pub fn fails(c: Command) -> String {
    let dbg = format!("{c:?}");
    let out = run(c);
    assert!(!out.status.success(), "{dbg} should have failed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{dbg}: expected one error line, got {err:?}"
    );
    assert!(!err.contains("panicked"), "{dbg} panicked: {err}");
    lines[0].to_owned()
}

pub fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_owned()
}

/// Polls `cond` until it holds or `timeout` passes: waiting on an observable event, not a
/// guessed delay.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// Every block file under a data dir, and every pack file (which holds the small blocks).
pub fn block_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(shards) = std::fs::read_dir(data_dir.join("blocks")) {
        for s in shards.flatten() {
            if let Ok(files) = std::fs::read_dir(s.path()) {
                out.extend(files.flatten().map(|f| f.path()));
            }
        }
    }
    if let Ok(packs) = std::fs::read_dir(data_dir.join("packs")) {
        out.extend(packs.flatten().map(|f| f.path()));
    }
    out.sort();
    out
}

/// Why a test cannot run here. Under CI, which runs as root, that is a failure — a test that
/// silently returned would count as passed — so it panics; elsewhere it prints the reason.
pub fn cannot_run(why: &str) {
    if is_root() && std::env::var_os("CI").is_some() {
        panic!("{why} (CI runs as root: this test must run)");
    }
    eprintln!("skipped: {why}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs of a fixed size mounted for one test (root only), unmounted when dropped: a disk
/// that really fills.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with the reason given to [`cannot_run`]) where it cannot be mounted.
    pub fn mount(size: &str) -> Option<SmallDisk> {
        if !is_root() {
            cannot_run("mounting a small tmpfs to fill needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            cannot_run("could not mount a tmpfs here");
            return None;
        }
        Some(SmallDisk { path, _dir: dir })
    }

    /// Makes the mount read-only (as a disk remounted read-only after an error is).
    pub fn make_read_only(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.path)
            .status()
            .expect("remount");
        assert!(st.success(), "remounting {} read-only", self.path.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
