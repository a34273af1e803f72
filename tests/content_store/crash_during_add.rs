//! A SIGKILL at any moment during `add` leaves a store that opens, verifies, and completes
//! the same add with the same ID when it is run again.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

#[test]
fn kill_during_add_then_reopen_verify_and_re_add() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("big");
    let data = write_random(&path, 160 << 20, 11);

    // The ID a clean add gives, with the secret every run below shares.
    let clean = tmp.path().join("clean");
    let mut add = storgo(&clean);
    add.env("STORGO_CONVERGENCE_SECRET", SHARED_SECRET)
        .arg("add")
        .arg(&path);
    let expected = last_line(&ok(add));

    // Kill points: before anything is written, during the first batch, after a few batches
    // have been indexed, and late in the run.
    for (n, blocks_before_kill) in [0usize, 1, 40, 120].into_iter().enumerate() {
        let d = tmp.path().join(format!("crash{n}"));
        let mut add = storgo(&d);
        add.env("STORGO_CONVERGENCE_SECRET", SHARED_SECRET)
            .arg("add")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = add.spawn().unwrap();
        if blocks_before_kill > 0 {
            wait_for(Duration::from_secs(120), "blocks to appear", || {
                let tmp_files = std::fs::read_dir(d.join("tmp"))
                    .map(|r| r.count())
                    .unwrap_or(0);
                block_files(&d).len() + tmp_files >= blocks_before_kill
                    || matches!(child.try_wait(), Ok(Some(_)))
            });
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let mut verify = storgo(&d);
        verify.arg("verify");
        ok(verify);
        let mut again = storgo(&d);
        again
            .env("STORGO_CONVERGENCE_SECRET", SHARED_SECRET)
            .arg("add")
            .arg(&path);
        assert_eq!(last_line(&ok(again)), expected, "kill point {n}");
        let mut verify = storgo(&d);
        verify.arg("verify");
        ok(verify);
        let mut cat = storgo(&d);
        cat.args(["cat", &expected]);
        assert!(run(cat).stdout == data, "kill point {n}: content differs");
    }
}

#[test]
fn a_kill_while_a_new_data_dir_is_being_created_leaves_one_that_opens() {
    let tmp = tempfile::tempdir().unwrap();
    // Killed at whatever point of creating the data dir the process has reached: lock,
    // secret, block dirs, index. Each must reopen and verify.
    for n in 0..40 {
        let d = tmp.path().join(format!("d{n}"));
        let mut ls = storgo(&d);
        ls.arg("ls").stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = ls.spawn().unwrap();
        // Spin (no sleeping) until the file of this round appears, then kill at once: the
        // creation windows are a few microseconds wide.
        let target = ["", "lock", "convergence-secret", "index.redb"][n % 4];
        if !target.is_empty() {
            let start = std::time::Instant::now();
            let p = d.join(target);
            while !p.exists() && start.elapsed() < Duration::from_secs(10) {
                std::hint::spin_loop();
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let mut verify = storgo(&d);
        verify.arg("verify");
        ok(verify);
    }
}
