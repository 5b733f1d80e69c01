//! Turns one run's measurements into the table of `benches/README.md`, checks
//! them against the targets, and draws reload latency against module size.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::estimate;
use hcr_benches::{machine, median, workspace_dir};

/// The `call_overhead` cases, in the order of the table.
pub const CALL_CASES: [&str; 11] = [
    "direct",
    "fn_pointer",
    "hcr_binding",
    "hcr_stub_pointer",
    "hcr_stub_pointer_far",
    "hcr_static",
    "hot_lib_reloader",
    "subsecond",
    "fn_pointer_rust_abi",
    "hcr_rust_abi",
    "hcr_rust_abi_stub",
];

const START: &str = "<!-- results:start -->";
const END: &str = "<!-- results:end -->";

struct Check {
    measure: &'static str,
    target: &'static str,
    result: String,
    ok: Option<bool>,
}

fn ns(group: &str, id: &str) -> Option<f64> {
    estimate(group, id).map(|e| e.0)
}

/// Calls per second from a `call_threads` benchmark (one iteration is one
/// call on each thread).
fn throughput(id: &str, threads: f64) -> Option<f64> {
    ns("call_threads", id).map(|t| threads / t * 1e9)
}

pub fn write(
    phases: &[(usize, [f64; 8])],
    game: &[f64; 8],
    game_size: u64,
    waits: &[super::Waits],
    edits: &[[f64; 4]],
    memory: &serde_json::Value,
) {
    let mut out = String::new();
    let command = "cargo bench -p hcr-benches";
    let _ = writeln!(out, "Command: `{command}`  ");
    let _ = writeln!(out, "Machine: {}  ", machine());
    let _ = writeln!(out, "Date: {}\n", date());

    // Call overhead.
    let _ = writeln!(
        out,
        "### `call_overhead`: one call of `u64 -> u64` (`*_rust_abi*`: of `add(&Counter, u64) -> u64`)\n"
    );
    let _ = writeln!(out, "| case | median | 95% interval |\n|---|---|---|");
    for id in CALL_CASES {
        if let Some((m, lo, hi)) = estimate("call_overhead", id) {
            let _ = writeln!(out, "| `{id}` | {m:.2} ns | {lo:.2} .. {hi:.2} ns |");
        }
    }
    let _ = writeln!(out, "\n### `call_threads`: calls per second\n");
    let _ = writeln!(out, "| case | 1 thread | 2 threads | scaling |\n|---|---|---|---|");
    for name in ["hcr_binding", "hot_lib_reloader"] {
        let one = throughput(&format!("{name}_1t"), 1.0);
        let two = throughput(&format!("{name}_2t"), 2.0);
        if let (Some(one), Some(two)) = (one, two) {
            let _ = writeln!(out, "| `{name}` | {:.1} M/s | {:.1} M/s | {:.2}x |", one / 1e6, two / 1e6, two / one);
        }
    }

    // Reload.
    let _ = writeln!(out, "\n### `reload`: `perform_reload` latency (modules with 100 globals, debug builds)\n");
    let _ = writeln!(
        out,
        "| procs | median | detect | copy | load | register | patch | handlers | unload |\n|---|---|---|---|---|---|---|---|---|"
    );
    let mut points = Vec::new();
    for (procs, p) in phases {
        if let Some(m) = ns("reload", &format!("procs_{procs}")) {
            points.push((*procs as f64, m / 1e6));
            let _ = writeln!(
                out,
                "| {procs} | {:.2} ms | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                m / 1e6,
                p[0],
                p[1],
                p[2],
                p[3],
                p[4],
                p[5],
                p[6]
            );
        }
    }
    let _ = writeln!(
        out,
        "\nPhases are means in milliseconds over every reload the benchmark made. Each new build is installed \
         whole, then reloaded at once, as a host does once `reload_needed()` says yes: the runtime's wait for \
         a file to settle (`Config::settle_time`) is off here, and counted in edit-to-live below.\n"
    );
    if let Some(t) = ns("reload", "reload_needed_50") {
        let _ = writeln!(out, "`reload_needed_50`: {:.1} µs with 50 unchanged modules  ", t / 1e3);
    }
    if let Some(t) = ns("reload", "reload_needed_50_watched") {
        let _ = writeln!(out, "`reload_needed_50_watched`: {t:.1} ns with the files watched (`HCR_WATCH=1`)  ");
    }
    if let Some(t) = ns("reload", "register_10000") {
        let _ =
            writeln!(out, "`register_10000`: {:.2} ms for 10,000 procs ({:.1} M procs/s)", t / 1e6, 10_000.0 / t * 1e3);
    }
    if let Some(t) = ns("reload", "debug_host_game") {
        let _ = writeln!(
            out,
            "\n`debug_host_game`: {:.2} ms per reload of the game example's debug module ({:.1} MB) in a debug host \
             built without the workspace's opt-level override (`benches/debug-host`, timed in that host): detect \
             {:.2}, copy {:.2}, load {:.2}, register {:.2}, patch {:.2}, handlers {:.2}, unload {:.2} ms (means).",
            t / 1e6,
            game_size as f64 / 1e6,
            game[0],
            game[1],
            game[2],
            game[3],
            game[4],
            game[5],
            game[6]
        );
    }

    // Reload with busy threads.
    let _ = writeln!(out, "\n### `reload_busy`: `perform_reload` of the 10-proc module while four threads call it\n");
    let _ = writeln!(
        out,
        "| other threads | median | replaced libraries freed after (mean) | longest |\n|---|---|---|---|"
    );
    for (case, mean, max) in waits {
        if let Some(t) = ns("reload_busy", case) {
            let who = match *case {
                "idle" => "none",
                "4_unregistered" => "4, unregistered, calling in tight loops",
                _ => "4, registered, a quiescent point every 64 calls",
            };
            let _ = writeln!(out, "| {who} | {:.2} ms | {mean:.2} ms | {max:.2} ms |", t / 1e6);
        }
    }
    let _ = writeln!(
        out,
        "\nUnregistered threads are observed by the runtime's collector thread, off the reloading thread: \
         a reload never waits for them. With four busy threads on a machine of two cores, the reloading \
         thread gets a smaller share of the CPU either way.\n"
    );

    // Edit-to-live.
    let column = |i: usize| median(&edits.iter().map(|e| e[i]).collect::<Vec<_>>());
    let (build, detect, reload, live) = (column(0), column(1), column(2), column(3));
    let _ = writeln!(out, "\n### Edit-to-live: the hello example, median of {} edits\n", edits.len());
    let _ = writeln!(
        out,
        "| build | detect | reload | source edit to new code running |\n|---|---|---|---|\n| {build:.0} ms | {detect:.2} ms | {reload:.1} ms | {live:.0} ms |"
    );
    let _ = writeln!(
        out,
        "\nDetect is the time from the end of the build until `reload_needed()` says yes: mostly the wait for \
         the new file to go {} ms unmodified (`Config::settle_time`), so that a library still being written is \
         never loaded.",
        hcr_runtime::DEFAULT_SETTLE_TIME.as_millis()
    );

    // Memory.
    let per = |k: &str| memory[k].as_f64().unwrap_or(f64::NAN);
    let _ = writeln!(out, "\n### Memory with {} stubs registered\n", memory["stubs"]);
    let _ = writeln!(
        out,
        "| per stub | measured as |\n|---|---|\n| {:.1} bytes | process RSS growth while loading the module (everything below) |\n| {:.1} bytes | resident pages of the stub table (code and slots) |\n| {:.1} bytes | heap growth (glibc's count of bytes in use) |\n| {:.1} bytes | the rest: the bookkeeping arrays, which live in mappings of their own once large, and the module's own pages |",
        per("rss_per_stub"),
        per("table_per_stub"),
        per("heap_per_stub"),
        per("rss_per_stub") - per("table_per_stub") - per("heap_per_stub")
    );

    // Targets.
    let call = |id| ns("call_overhead", id);
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let binding_vs_pointer = ratio(call("hcr_binding"), call("fn_pointer"));
    let rust_vs_pointer = ratio(call("hcr_rust_abi"), call("fn_pointer_rust_abi"));
    let stub_vs_pointer = ratio(call("hcr_stub_pointer"), call("fn_pointer"));
    let hlr_vs_stub = ratio(call("hot_lib_reloader"), call("hcr_binding"));
    let scaling = ratio(throughput("hcr_binding_2t", 2.0), throughput("hcr_binding_1t", 1.0));
    let static_vs_direct = estimate("call_overhead", "hcr_static").zip(estimate("call_overhead", "direct"));
    let reload_ms = |n| ns("reload", &format!("procs_{n}")).map(|t| t / 1e6);
    let checks = vec![
        Check {
            measure: "`hcr_binding`",
            target: "≤ 1.05 × `fn_pointer`",
            result: fmt_ratio(binding_vs_pointer),
            ok: binding_vs_pointer.map(|r| r <= 1.05),
        },
        Check {
            measure: "`hcr_stub_pointer`",
            target: "≤ 1.35 × `fn_pointer`",
            result: fmt_ratio(stub_vs_pointer),
            ok: stub_vs_pointer.map(|r| r <= 1.35),
        },
        Check {
            measure: "`hcr_rust_abi`",
            target: "≤ 1.05 × `fn_pointer_rust_abi`",
            result: fmt_ratio(rust_vs_pointer),
            ok: rust_vs_pointer.map(|r| r <= 1.05),
        },
        Check {
            measure: "`hot_lib_reloader`",
            target: "≥ 20 × `hcr_binding`",
            result: fmt_ratio(hlr_vs_stub),
            ok: hlr_vs_stub.map(|r| r >= 20.0),
        },
        Check {
            measure: "`hcr_binding` vs `subsecond`",
            target: "faster",
            result: fmt_ratio(ratio(call("subsecond"), call("hcr_binding"))).replace('×', "× faster"),
            ok: call("hcr_binding").zip(call("subsecond")).map(|(h, s)| h < s),
        },
        Check {
            measure: "`hcr_static`",
            target: "within noise of `direct`",
            result: static_vs_direct.map_or("-".into(), |(s, d)| format!("{:.2} vs {:.2} ns", s.0, d.0)),
            ok: static_vs_direct.map(|(s, d)| {
                // Within noise: the intervals overlap, or 5 % apart at most.
                (s.1 <= d.2 && d.1 <= s.2) || (s.0 - d.0).abs() <= 0.05 * d.0
            }),
        },
        Check {
            measure: "`hcr_binding_2t`",
            target: "≥ 1.8 × `hcr_binding_1t` throughput",
            result: fmt_ratio(scaling),
            ok: scaling.map(|r| r >= 1.8),
        },
        Check {
            measure: "`procs_1000`",
            target: "≤ 5 ms",
            result: fmt_ms(reload_ms(1000)),
            ok: reload_ms(1000).map(|t| t <= 5.0),
        },
        Check {
            measure: "`procs_10000`",
            target: "≤ 30 ms, roughly linear",
            result: match (reload_ms(1000), reload_ms(10_000)) {
                (Some(a), Some(b)) => format!("{b:.2} ms ({:.1}× `procs_1000` for 10× the procs)", b / a),
                _ => "-".into(),
            },
            ok: reload_ms(1000).zip(reload_ms(10_000)).map(|(a, b)| b <= 30.0 && b / a <= 15.0),
        },
        Check {
            measure: "`debug_host_game`",
            target: "≤ 10 ms, detection and copy included",
            result: ns("reload", "debug_host_game").map_or("-".into(), |t| format!("{:.2} ms", t / 1e6)),
            ok: ns("reload", "debug_host_game").map(|t| t <= 10e6),
        },
        Check {
            measure: "`reload_needed_50`",
            target: "≤ 100 µs",
            result: ns("reload", "reload_needed_50").map_or("-".into(), |t| format!("{:.1} µs", t / 1e3)),
            ok: ns("reload", "reload_needed_50").map(|t| t <= 100_000.0),
        },
        Check {
            measure: "memory",
            target: "≤ 32 bytes per stub",
            result: format!("{:.1} bytes", per("rss_per_stub")),
            ok: Some(per("rss_per_stub") <= 32.0),
        },
        Check {
            measure: "edit-to-live for hello",
            target: "≤ 400 ms, build included",
            result: format!("{live:.0} ms"),
            ok: Some(live <= 400.0),
        },
    ];
    let mut targets = String::from("### Targets\n\n| measure | target | result | met |\n|---|---|---|---|\n");
    for c in &checks {
        let met = match c.ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(targets, "| {} | {} | {} | {met} |", c.measure, c.target, c.result);
    }
    let body = format!("{targets}\n{out}\n![reload latency against module size](reload_latency.png)\n");
    println!("\n{body}");

    let dir = workspace_dir().join("benches");
    if let Err(e) = plot(&points, &dir.join("reload_latency.png")) {
        eprintln!("could not draw the plot: {e}");
    }
    let readme = dir.join("README.md");
    let text = std::fs::read_to_string(&readme).unwrap_or_default();
    let updated = match (text.find(START), text.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{START}\n{body}{}", &text[..a], &text[b..]),
        _ => format!("{text}\n{START}\n{body}{END}\n"),
    };
    std::fs::write(&readme, updated).expect("write benches/README.md");
    eprintln!("results written to {}", readme.display());
}

/// Prints the `call_overhead` medians of this run, each against the plain
/// pointer call it compares with, and the targets.
pub fn print_calls() {
    let call = |id| ns("call_overhead", id);
    println!("\ncall_overhead (medians, 95% interval of the median):\n");
    println!("| case | median | 95% interval | against |\n|---|---|---|---|");
    for id in CALL_CASES {
        if let Some((m, lo, hi)) = estimate("call_overhead", id) {
            let base = if id.ends_with("rust_abi") || id.ends_with("rust_abi_stub") {
                "fn_pointer_rust_abi"
            } else {
                "fn_pointer"
            };
            let against = call(base).map_or("-".into(), |p| format!("{:.2}× `{base}`", m / p));
            println!("| `{id}` | {m:.2} ns | {lo:.2} .. {hi:.2} ns | {against} |");
        }
    }
    let targets = [
        ("hcr_binding", "fn_pointer", 1.05),
        ("hcr_stub_pointer", "fn_pointer", 1.35),
        ("hcr_rust_abi", "fn_pointer_rust_abi", 1.05),
    ];
    println!();
    for (case, base, limit) in targets {
        if let (Some(a), Some(b)) = (call(case), call(base)) {
            let met = if a / b <= limit { "met" } else { "NOT met" };
            println!("{case}: {:.3}× {base} (target ≤ {limit}×): {met}", a / b);
        }
    }
}

/// Prints the `game/frame` median of this run.
pub fn print_game() {
    if let Some((m, lo, hi)) = estimate("game", "frame") {
        println!("\ngame/frame: median {:.2} µs ({:.2} .. {:.2} µs)", m / 1e3, lo / 1e3, hi / 1e3);
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}×"))
}

fn fmt_ms(t: Option<f64>) -> String {
    t.map_or("-".into(), |t| format!("{t:.2} ms"))
}

fn date() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Reload latency against the number of procs, log-scaled.
fn plot(points: &[(f64, f64)], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(font.into_boxed_slice()))
        .map_err(|_| "cannot register the font")?;
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("perform_reload latency against module size", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((5f64..20_000f64).log_scale(), 0f64..max_ms)?;
    chart
        .configure_mesh()
        .x_desc("procs in the module (each module also has 100 globals)")
        .y_desc("median latency (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&(x, y)| Circle::new((x, y), 5, BLUE.filled())))?;
    chart.draw_series(
        points
            .iter()
            .map(|&(x, y)| Text::new(format!("{y:.2} ms"), (x, y + max_ms * 0.04), ("sans-serif", 14).into_font())),
    )?;
    root.present()?;
    Ok(())
}
