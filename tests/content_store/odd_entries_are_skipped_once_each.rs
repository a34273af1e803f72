//! A folder with entries storgo does not store (a name that is not UTF-8, a named pipe) is
//! added without them: each is reported once, with why, and a count; the rest of the folder
//! round-trips (a symbolic link among it, as a link).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::common::*;

#[test]
fn odd_entries_are_reported_once_each_and_the_rest_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("course");
    std::fs::create_dir_all(src.join("week1")).unwrap();
    let notes = write_random(&src.join("notes.txt"), 5000, 1);
    let inner = write_random(&src.join("week1").join("slides.pdf"), 70_000, 2);
    std::fs::write(src.join(OsStr::from_bytes(b"caf\xe9.txt")), b"latin-1 name").unwrap();
    std::os::unix::fs::symlink("notes.txt", src.join("latest")).unwrap();
    let fifo = std::ffi::CString::new(src.join("pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

    let d = tmp.path().join("data");
    let mut add = storgo(&d);
    add.args(["add", "-r"]).arg(&src);
    let out = run(add);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    for (entry, why) in [("caf", "not valid UTF-8"), ("pipe", "named pipe")] {
        let said: Vec<_> = lines.iter().filter(|l| l.contains(why)).collect();
        assert_eq!(said.len(), 1, "{why} said once: {err}");
        assert!(said[0].contains(entry), "{err}");
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("2 entries skipped")),
        "{err}"
    );
    assert_eq!(lines.len(), 3, "nothing else on stderr: {err}");

    let id = last_line(&String::from_utf8_lossy(&out.stdout));
    let back = tmp.path().join("back");
    let mut get = storgo(&d);
    get.args(["get", &id, "-o"]).arg(&back);
    ok(get);
    assert_eq!(std::fs::read(back.join("notes.txt")).unwrap(), notes);
    assert_eq!(std::fs::read(back.join("week1/slides.pdf")).unwrap(), inner);
    let mut names: Vec<_> = std::fs::read_dir(&back)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["latest", "notes.txt", "week1"]);
    assert_eq!(
        std::fs::read_link(back.join("latest")).unwrap(),
        std::path::Path::new("notes.txt")
    );
}
