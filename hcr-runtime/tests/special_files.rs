//! Only regular files are loaded: FIFOs, devices, sockets and directories
//! (or links to them) are refused without anything blocking on them; files
//! over the size limit, endless or growing ones included, are refused; a
//! sparse file is never written out in full; a FIFO as the report file never
//! blocks a reload.
#![cfg(unix)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hcr_runtime::{Config, Error, Runtime};
use support::{Scratch, fixture, fn0, fn1, sole_failure, wait_for_reload_needed};

/// Nothing in these tests may take long: a blocked open would hang forever.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `f` on another thread and fails the test if it does not return in
/// time (the thread is then left behind, blocked).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("{what} did not return within {DEADLINE:?}: it blocked"))
}

fn runtime_with(config: Config) -> Arc<Runtime> {
    Arc::new(Runtime::with_config(config.with_stub_base(0).with_stub_capacity(4096)).unwrap())
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

/// Whether some process has `fifo` open for reading: opening it for writing
/// without blocking succeeds only then.
fn fifo_has_reader(fifo: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo).is_ok()
}

fn load_error(rt: &Arc<Runtime>, path: &Path) -> Error {
    let (rt, path) = (rt.clone(), path.to_owned());
    sole_failure(within("load", move || rt.load(&path)).expect_err("must be refused"))
}

fn assert_not_regular(err: &Error, expected: &str) {
    match err {
        Error::NotRegularFile { kind, .. } => assert_eq!(*kind, expected, "{err}"),
        other => panic!("expected NotRegularFile ({expected}), got: {other}"),
    }
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn special_files_and_links_to_them_are_refused_at_load() {
    let s = Scratch::new("special-load");
    let rt = runtime_with(Config::new());
    let fifo = s.module_path("fifo");
    mkfifo(&fifo);
    let zero_link = s.module_path("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    // A socket's path must fit in `sockaddr_un` (108 bytes): in a short
    // directory of its own, not under the (possibly deep) target directory.
    let socket_dir = tempfile::Builder::new().prefix("hcr-").tempdir_in("/tmp").unwrap();
    let socket_path = socket_dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).unwrap();
    let fifo_link = s.module_path("fifolink");
    std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
    let cases: [(&Path, &str); 6] = [
        (&fifo, "FIFO"),
        (&fifo_link, "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (&zero_link, "character device"),
        (&socket_path, "socket"),
        (&s.dir, "directory"),
    ];
    for (path, kind) in cases {
        let err = load_error(&rt, path);
        assert_not_regular(&err, kind);
        assert!(!fifo_has_reader(&fifo), "nobody opened the FIFO for reading");
    }
    assert_eq!(rt.stats().modules, 0);
    assert_eq!(support::file_count(&rt.private_dir()), 0, "nothing was copied");
}

#[test]
fn a_fifo_in_place_of_a_loaded_module_is_a_failed_build_and_blocks_nothing() {
    let s = Scratch::new("special-reload");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime_with(Config::new());
    rt.load(&path).unwrap();
    let bump = fn0(&rt, "counter", "bump");
    let answer = fn1(&rt, "counter", "answer");
    for _ in 0..3 {
        bump();
    }
    // The build puts a FIFO where the library was.
    let fifo = s.dir.join("fifo.tmp");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &path).unwrap();

    // Other threads keep using the runtime while it looks at the file.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let (rt, stop, calls) = (rt.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if i == 0 {
                        rt.get_proc("counter", "answer").unwrap();
                    } else {
                        assert_eq!(rt.stats().modules, 1);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let rt2 = rt.clone();
    assert!(within("reload_needed", move || wait_for_reload_needed(&rt2)));
    let rt2 = rt.clone();
    let err = within("perform_reload", move || rt2.perform_reload()).expect_err("a FIFO is no library");
    assert_not_regular(err.failures()[0], "FIFO");
    let rt2 = rt.clone();
    assert!(!within("reload_needed", move || rt2.reload_needed()), "a failed file is not retried until it changes");
    let rt2 = rt.clone();
    let again = within("perform_reload", move || rt2.perform_reload()).unwrap();
    assert!(again.is_empty());
    assert!(!fifo_has_reader(&path), "nobody opened the FIFO for reading");

    let before = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < before + 100 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(answer(1), 2, "the old code keeps running");
    assert_eq!(bump(), 4, "and keeps its state");

    // A real build after it reloads.
    std::fs::remove_file(&path).unwrap();
    s.install(&fixture("counter", &["v2"]), "counter");
    assert!(wait_for_reload_needed(&rt));
    rt.perform_reload().unwrap();
    assert_eq!(answer(1), 3);
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let s = Scratch::new("too-large");
    let module = std::fs::read(fixture("counter", &[])).unwrap();
    let path = s.install_bytes(&module, "counter");
    let limit = module.len() as u64 - 1;
    let rt = runtime_with(Config::new().with_max_module_size(limit));
    match sole_failure(rt.load(&path).unwrap_err()) {
        Error::ModuleTooLarge { size, limit: l, .. } => assert_eq!((size, l), (module.len() as u64, limit)),
        other => panic!("{other}"),
    }
    assert_eq!(support::file_count(&rt.private_dir()), 0);
    let rt = runtime_with(Config::new().with_max_module_size(module.len() as u64));
    rt.load(&path).unwrap();
}

#[test]
fn a_file_that_keeps_growing_is_refused() {
    let s = Scratch::new("growing");
    let module = std::fs::read(fixture("counter", &[])).unwrap();
    let path = s.install_bytes(&module, "counter");
    let limit = module.len() as u64 + (4 << 20);
    let rt = runtime_with(Config::new().with_max_module_size(limit));
    // Something keeps appending to the file while the runtime looks at it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            let chunk = vec![0x5a; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                file.write_all(&chunk).unwrap();
                if file.metadata().unwrap().len() > 1 << 30 {
                    break;
                }
            }
        })
    };
    while std::fs::metadata(&path).unwrap().len() <= limit {
        std::thread::yield_now();
    }
    let err = load_error(&rt, &path);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(matches!(err, Error::ModuleTooLarge { .. }), "{err}");
    assert_eq!(support::file_count(&rt.private_dir()), 0, "the partial copy is gone");
}

/// The blocks a file occupies on disk.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn copies(rt: &Runtime) -> Vec<PathBuf> {
    std::fs::read_dir(rt.private_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[test]
fn a_huge_sparse_file_is_never_written_out_in_full() {
    const HUGE: u64 = 512 << 20;
    let s = Scratch::new("sparse");
    // A real module followed by a 500 MiB hole: loadable, and copied as
    // sparse as it is.
    let module = std::fs::read(fixture("counter", &[])).unwrap();
    let path = s.install_bytes(&module, "counter");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(HUGE).unwrap();
    if allocated(&path) > 64 << 20 {
        eprintln!("this file system does not keep holes; nothing to check");
        return;
    }
    let rt = runtime_with(Config::new());
    let rt2 = rt.clone();
    let p = path.clone();
    within("load", move || rt2.load(&p)).unwrap();
    let copy = copies(&rt).pop().unwrap();
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), HUGE);
    assert!(allocated(&copy) < 64 << 20, "the copy occupies {} bytes", allocated(&copy));
    assert_eq!(fn1(&rt, "counter", "answer")(1), 2);

    // Over a lower limit it is refused before anything is copied.
    let rt = runtime_with(Config::new().with_max_module_size(256 << 20));
    match sole_failure(rt.load(&path).unwrap_err()) {
        Error::ModuleTooLarge { size, .. } => assert_eq!(size, HUGE),
        other => panic!("{other}"),
    }

    // A sparse file of nothing: refused once its (empty) header is read.
    let empty = s.module_path("empty");
    std::fs::File::create(&empty).unwrap().set_len(HUGE).unwrap();
    let rt = runtime_with(Config::new());
    let rt2 = rt.clone();
    let err = sole_failure(within("load", move || rt2.load(&empty)).unwrap_err());
    assert!(matches!(err, Error::NotLoadable { .. }), "{err}");
}

#[test]
fn a_fifo_as_the_report_file_never_blocks_a_reload() {
    let s = Scratch::new("report-fifo");
    let path = s.install(&fixture("counter", &[]), "counter");
    let report = s.dir.join("report");
    mkfifo(&report);
    let rt = runtime_with(Config::new().with_report_file(&report).with_settle_time(Duration::ZERO));
    rt.load(&path).unwrap();
    let answer = fn1(&rt, "counter", "answer");

    // No reader: opening for writing fails at once.
    s.install(&fixture("counter", &["v2"]), "counter");
    let rt2 = rt.clone();
    within("perform_reload", move || rt2.perform_reload()).unwrap();
    assert_eq!(answer(1), 3);

    // A reader: the FIFO opens, is seen to be no regular file, and nothing
    // is written to it.
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&report).unwrap();
    s.install(&fixture("counter", &["v3"]), "counter");
    let rt2 = rt.clone();
    within("perform_reload", move || rt2.perform_reload()).unwrap();
    assert_eq!(answer(1), 4);
    let mut buf = [0u8; 64];
    match reader.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "nothing was written to the FIFO"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }

    // A regular report file works as before.
    let regular = s.dir.join("report.txt");
    let rt = runtime_with(Config::new().with_report_file(&regular).with_settle_time(Duration::ZERO));
    rt.load(&path).unwrap();
    s.install(&fixture("counter", &["v2"]), "counter");
    rt.perform_reload().unwrap();
    let text = std::fs::read_to_string(&regular).unwrap();
    assert!(text.starts_with("reloaded\t1\t"), "{text}");
}

#[test]
fn the_size_limit_comes_from_the_environment() {
    let out = support::run_child("child_with_a_size_limit", &[("HCR_MAX_MODULE_SIZE", "1M")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused over 1048576 bytes"));
    let out = support::run_child("child_with_a_size_limit", &[("HCR_MAX_MODULE_SIZE", "12Q")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid HCR_MAX_MODULE_SIZE"));
}

#[test]
#[ignore = "run by the_size_limit_comes_from_the_environment in a child process"]
fn child_with_a_size_limit() {
    if !support::is_child() {
        return;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(Error::InvalidConfig { name, .. }) => {
            println!("invalid {name}");
            return;
        }
        Err(other) => panic!("{other}"),
    };
    let s = Scratch::new("size-env");
    let path = s.install(&fixture("counter", &[]), "counter");
    let rt = runtime_with(config);
    match sole_failure(rt.load(&path).unwrap_err()) {
        Error::ModuleTooLarge { limit, .. } => println!("refused over {limit} bytes"),
        other => panic!("{other}"),
    }
}
