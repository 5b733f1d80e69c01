//! A runtime that starts removes the private directories that runtimes of
//! processes that are gone left behind, and only those.
#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Child;

use hcr_runtime::{Config, Runtime};
use support::{Scratch, fixture, fn1, is_child, spawn_child};

/// Starts a host that loads the counter module with its private directory
/// under `parent`, and returns it with that directory, once it has loaded.
#[allow(clippy::zombie_processes, reason = "the child is returned to the caller, which waits for it")]
fn start_host(parent: &str, module: &str) -> (Child, PathBuf) {
    let mut child = spawn_child("child_host", &[("HCR_TEST_PARENT", parent), ("HCR_TEST_MODULE", module)]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
            panic!("the host ended ({:?}) before it loaded the module: {err}", child.wait());
        }
        // After libtest's "test child_host ... ".
        if let Some((_, dir)) = line.trim_end().split_once("loaded; private directory ") {
            // Keep reading what it prints, so that it never writes into a
            // closed pipe.
            let mut stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, PathBuf::from(dir));
        }
    }
}

#[test]
fn the_leftovers_of_a_killed_host_are_removed_and_a_live_hosts_directory_is_kept() {
    let s = Scratch::new("leftovers");
    let module = s.install(&fixture("counter", &[]), "counter");
    let parent = s.dir.join("private");
    std::fs::create_dir(&parent).unwrap();
    let (parent_str, module_str) = (parent.to_str().unwrap(), module.to_str().unwrap());

    let (mut killed, killed_dir) = start_host(parent_str, module_str);
    let (mut live, live_dir) = start_host(parent_str, module_str);
    assert!(killed_dir.starts_with(&parent) && live_dir.starts_with(&parent));
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(killed_dir.exists(), "a killed host leaves its directory behind");
    assert!(support::file_count(&killed_dir) >= 1, "with the module copy in it");

    // A planted link with a private directory's name is not followed.
    let elsewhere = s.dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join(".lock"), b"").unwrap();
    std::os::unix::fs::symlink(&elsewhere, parent.join("hcr-plantedlink1")).unwrap();

    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_private_dir_parent(&parent)).unwrap();
    assert!(!killed_dir.exists(), "the next runtime removed the leftovers");
    assert!(live_dir.exists(), "a live host's directory is untouched");
    assert_eq!(support::file_count(&live_dir), 1, "with its copy");
    assert!(elsewhere.join(".lock").exists() && parent.join("hcr-plantedlink1").symlink_metadata().is_ok());

    // The live host still works, and removes its directory when it ends.
    rt.load(&module).unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
    drop(live.stdin.take());
    let status = live.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!live_dir.exists(), "a host that ends removes its own directory");
}

#[test]
#[ignore = "run by the_leftovers_of_a_killed_host_are_removed_and_a_live_hosts_directory_is_kept"]
fn child_host() {
    if !is_child() {
        return;
    }
    let parent = std::env::var("HCR_TEST_PARENT").unwrap();
    let module = std::env::var("HCR_TEST_MODULE").unwrap();
    let rt = Runtime::with_config(Config::new().with_stub_base(0).with_private_dir_parent(&parent)).unwrap();
    rt.load(&module).unwrap();
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "loaded; private directory {}", rt.private_dir().display()).unwrap();
    stdout.flush().unwrap();
    // Runs until its stdin is closed (or it is killed).
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).unwrap() > 0 {}
}
