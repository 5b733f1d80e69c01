//! The host of the `reload/debug_host_game` benchmark.
//!
//! The benchmark builds it in debug *without* the workspace's
//! `[profile.dev.package."*"] opt-level = 1` (it passes
//! `--config 'profile.dev.package."*".opt-level=0'`), so that the runtime and
//! everything it uses run unoptimised, as in the debug build of a host that
//! depends on hcr without such an override.
//!
//! Usage: `hcr-bench-debug-host <module path> <build a> <build b>`. It
//! installs build `a` at the module path and loads it, prints `ready`, then
//! answers each line `reload <n>` on stdin by installing the other build
//! (untimed, as a linker would: a new file renamed over the old one) and
//! reloading, `n` times, and printing the sums of the reloads' timings in
//! nanoseconds: `total detect copy load register patch handlers unload`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hcr_runtime::{Config, Runtime};

fn install(from: &Path, to: &Path) {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial).expect("copy the build");
    std::fs::rename(&partial, to).expect("rename the build into place");
}

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [path, a, b] = args.as_slice() else {
        eprintln!("usage: hcr-bench-debug-host <module path> <build a> <build b>");
        std::process::exit(2);
    };
    let builds = [a, b];
    install(builds[0], path);
    // The wait for a file to settle is a host's choice, not reload work.
    let config = Config::new().with_stub_base(0).with_settle_time(Duration::ZERO);
    let rt = Runtime::with_config(config).expect("create the runtime");
    rt.load(path).expect("load the module");
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").and_then(|()| out.flush()).expect("write to stdout");
    let mut next = 1;
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        let Some(n) = line.strip_prefix("reload ").and_then(|n| n.trim().parse::<u64>().ok()) else {
            eprintln!("unknown command {line:?}");
            std::process::exit(2);
        };
        let mut sums = [Duration::ZERO; 8];
        for _ in 0..n {
            install(builds[next], path);
            next = 1 - next;
            let report = rt.perform_reload().expect("reload");
            assert_eq!(report.reloaded.len(), 1, "the new build was reloaded");
            let t = report.timings;
            for (sum, d) in
                sums.iter_mut().zip([t.total, t.detect, t.copy, t.load, t.register, t.patch, t.handlers, t.unload])
            {
                *sum += d;
            }
        }
        let fields: Vec<String> = sums.iter().map(|d| d.as_nanos().to_string()).collect();
        writeln!(out, "{}", fields.join(" ")).and_then(|()| out.flush()).expect("write to stdout");
    }
}
