//! What development tools rely on: watching module files, and the reload
//! report file.

mod support;

use std::time::{Duration, Instant};

use hcr_runtime::{Config, Runtime};
use support::{Scratch, fixture, fn1, wait_for_reload_needed};

fn watching_runtime() -> Runtime {
    Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(4096).with_watch_files(true)).unwrap()
}

#[test]
fn a_watching_runtime_sees_a_new_build_and_ignores_a_touch() {
    let s = Scratch::new("watch");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = watching_runtime();
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");
    assert!(!rt.reload_needed());
    assert!(!rt.reload_needed(), "asked again, with no event since");

    // Rewritten with the same bytes: an event and a new `stat`, but the
    // same build: a reload finds nothing to do, and then nothing is
    // reported until the file changes again.
    s.install(&fixture("counter", &[]), "counter");
    assert!(rt.perform_reload().unwrap().is_empty());
    assert!(!rt.reload_needed());

    s.install(&fixture("counter", &["v2"]), "counter");
    assert!(wait_for_reload_needed(&rt), "the new build is seen");
    assert!(rt.reload_needed(), "and stays seen until reloaded");
    rt.perform_reload().unwrap();
    assert_eq!(answer(40), 42);
    assert!(!rt.reload_needed());

    // Back to v1: still watched after the reload.
    s.install(&fixture("counter", &[]), "counter");
    assert!(wait_for_reload_needed(&rt));
    rt.perform_reload().unwrap();
    assert_eq!(answer(40), 41);
}

#[test]
fn a_file_still_being_written_is_waited_for() {
    let settle = Duration::from_millis(500);
    let s = Scratch::new("settle");
    let path = s.install(&fixture("counter", &[]), "counter");
    let config = Config::new().with_stub_base(0).with_stub_capacity(4096).with_settle_time(settle);
    for watch in [false, true] {
        let rt = Runtime::with_config(config.clone().with_watch_files(watch)).unwrap();
        rt.load(&path).unwrap();
        let answer = fn1(&rt, "counter", "answer");

        // A host asking at every frame is not held up while the file is
        // young, and is told once it has settled, with no further event.
        let written = Instant::now();
        s.install(&fixture("counter", &["v2"]), "counter");
        assert!(!rt.reload_needed(), "a file modified just now is not loaded yet (watch: {watch})");
        assert!(rt.has_module_changed("counter").unwrap());
        assert!(wait_for_reload_needed(&rt));
        // The file's time comes from a coarser clock: allow for it.
        assert!(written.elapsed() + Duration::from_millis(20) >= settle, "{:?}", written.elapsed());
        assert_eq!(rt.perform_reload().unwrap().reloaded, ["counter"]);
        assert_eq!(answer(40), 42);

        // Asked to reload at once, the runtime waits for the file to settle.
        let written = Instant::now();
        s.install(&fixture("counter", &[]), "counter");
        let report = rt.perform_reload().unwrap();
        assert_eq!(report.reloaded, ["counter"]);
        assert!(written.elapsed() + Duration::from_millis(20) >= settle, "{:?}", written.elapsed());
        assert!(report.timings.detect + Duration::from_millis(20) >= settle / 2, "{report}");
        assert_eq!(answer(40), 41);
    }
}

#[test]
fn a_module_loaded_later_from_another_directory_is_watched_too() {
    let (a, b) = (Scratch::new("watch-a"), Scratch::new("watch-b"));
    let rt = watching_runtime();
    rt.load(a.install(&fixture("counter", &[]), "counter")).unwrap();
    rt.load(b.install(&fixture("state", &[]), "state")).unwrap();
    assert!(!rt.reload_needed());
    b.install(&fixture("state", &["gain"]), "state");
    assert!(wait_for_reload_needed(&rt));
    assert_eq!(rt.perform_reload().unwrap().reloaded, ["state"]);
}

#[test]
fn every_reload_that_did_something_appends_a_line_to_the_report_file() {
    let s = Scratch::new("report");
    let report = s.module_path("report").with_extension("log");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(4096).with_report_file(&report))
        .unwrap();
    rt.load(&path).unwrap();
    assert!(rt.perform_reload().unwrap().is_empty());
    assert!(!report.exists(), "nothing to report");

    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    s.install_bytes(b"not a library", "counter");
    rt.perform_reload().unwrap_err();

    let text = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!((lines[0][0], lines[0][1], lines[0][3]), ("reloaded", "1", "counter"), "{text}");
    assert!(lines[0][2].parse::<f64>().unwrap() > 0.0);
    assert_eq!(lines[1][0], "failed", "{text}");
    assert!(lines[1][1].parse::<f64>().unwrap() > 0.0);
    assert!(lines[1][2].contains("counter"), "the error names the module: {text}");
    assert_eq!(lines[1].len(), 3, "one line, three fields: {text}");
}
