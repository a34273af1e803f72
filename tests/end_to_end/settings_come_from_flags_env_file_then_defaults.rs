//! Configuration: a TOML file, `STORGO_*` variables and flags, strongest last; `config show`
//! says where each setting came from; `config init` writes a file that works; a bad file or
//! value stops the node with one line naming the file, the key and the value.

use crate::common::*;
use crate::procs::NodeProc;

fn shown(c: std::process::Command) -> serde_json::Value {
    let out = ok(c);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("config show --json");
    serde_json::Value::Object(
        list.into_iter()
            .map(|s| (s["key"].as_str().unwrap().to_owned(), s))
            .collect(),
    )
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let file = tmp.path().join("storgo.toml");
    std::fs::write(
        &file,
        "replication = 5\nrepair-interval = \"10m\"\nscrub-rate = \"1MiB\"\nno-mdns = true\n\
         bootstrap = [\"/ip4/127.0.0.1/tcp/9/p2p/12D3KooWPsHdV8q9SXBiNFGxiBAwCEyp5TCNQqx1r7QrBXBjAog7\"]\n",
    )
    .unwrap();
    let mut show = storgo(&dir);
    show.args(["--config"])
        .arg(&file)
        .args(["config", "show", "--json"]);
    show.env("STORGO_REPAIR_INTERVAL", "5m");
    let s = shown(show);
    assert_eq!(s["replication"]["value"], "5");
    assert!(
        s["replication"]["source"]
            .as_str()
            .unwrap()
            .starts_with("file "),
        "{s}"
    );
    assert_eq!(
        s["repair-interval"]["value"], "5m",
        "the environment beats the file"
    );
    assert_eq!(s["repair-interval"]["source"], "env");
    assert_eq!(s["republish-interval"]["source"], "default");
    assert_eq!(
        s["data-dir"]["source"], "env",
        "the test sets STORGO_DATA_DIR"
    );
    assert!(s["bootstrap"]["value"]
        .as_str()
        .unwrap()
        .contains("/tcp/9/"));

    // The node reads the same: the file alone, the environment over it, a flag over both.
    let replication = |node: &NodeProc| node.status_number("replication", "replication");
    let start = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = storgo(&dir);
        cmd.arg("--config").arg(&file);
        if let Some(v) = env {
            cmd.env("STORGO_REPLICATION", v);
        }
        // Bootstrap from the file points nowhere: give none, so the node runs alone.
        cmd.env("STORGO_BOOTSTRAP", "");
        let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
        if let Some(f) = flag {
            args.extend(["--replication", f]);
        }
        NodeProc::start_with(cmd, &dir, &args)
    };
    for (env, flag, want) in [
        (None, None, 5),
        (Some("6"), None, 6),
        (Some("6"), Some("7"), 7),
    ] {
        let node = start(env, flag);
        assert_eq!(replication(&node), want, "env {env:?}, flag {flag:?}");
        assert!(node.stop().success());
    }
}

#[test]
fn a_bad_file_or_value_is_one_line_naming_file_key_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let cases = [
        (
            "replication = 300\n",
            "replication = 300: 300 is not in 1..=16",
        ),
        (
            "replicaton = 3\n",
            "unknown key \"replicaton\" (known keys: data-dir",
        ),
        (
            "api = \"nope\"\n",
            "api = \"nope\": invalid socket address syntax",
        ),
        (
            "scrub-rate = \"fast\"\n",
            "scrub-rate = \"fast\": \"fast\" is not a size",
        ),
        ("repair-interval = \"soon\"\n", "repair-interval = \"soon\""),
        ("log-format = \"xml\"\n", "log-format = \"xml\""),
        ("[node]\nreplication = 3\n", "unknown key \"node\""),
        ("replication = \n", "not TOML"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let mut node = storgo(&dir);
        node.arg("--config").arg(&file).args(["node", "--no-mdns"]);
        let line = fails(node);
        assert!(
            line.starts_with(&format!("storgo: config {}: ", file.display())),
            "{text:?}: {line}"
        );
        assert!(line.contains(want), "{text:?}: {line}");
    }
    let mut missing = storgo(&dir);
    missing
        .arg("--config")
        .arg(tmp.path().join("nope.toml"))
        .args(["node"]);
    assert!(fails(missing).contains("nope.toml: No such file"));
}

#[test]
fn config_init_writes_a_commented_file_that_changes_nothing_until_edited() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let file = tmp.path().join("conf/storgo.toml");
    let mut init = storgo(&dir);
    init.arg("--config").arg(&file).args(["config", "init"]);
    assert_eq!(ok(init).trim(), file.display().to_string());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("# replication = 3"), "{text}");
    assert!(text.contains("# max-connections = 512"), "{text}");
    let mut show = storgo(&dir);
    show.arg("--config")
        .arg(&file)
        .args(["config", "show", "--json"]);
    let s = shown(show);
    assert_eq!(s["replication"]["source"], "default", "all commented out");

    // Uncommented, a line takes effect.
    std::fs::write(&file, text.replace("# replication = 3", "replication = 2")).unwrap();
    let mut show = storgo(&dir);
    show.arg("--config")
        .arg(&file)
        .args(["config", "show", "--json"]);
    assert_eq!(shown(show)["replication"]["value"], "2");

    let mut again = storgo(&dir);
    again.arg("--config").arg(&file).args(["config", "init"]);
    assert!(fails(again).contains("already exists"));
    // The default place: the platform's config dir.
    let mut default = storgo(&dir);
    default.args(["config", "init"]);
    let made = std::path::PathBuf::from(ok(default).trim());
    assert!(
        made.starts_with(dir.with_extension("config-home")),
        "{}",
        made.display()
    );
    let mut show = storgo(&dir);
    show.args(["config", "show"]);
    assert!(ok(show).contains(&format!("# config file: {}", made.display())));
}
