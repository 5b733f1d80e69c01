//! Runs the callbacks example: every second, calls each entry of a table of
//! stub pointers taken at start-up. Run it with `cargo hcr run -p callbacks`,
//! edit `math/src/lib.rs` (`double`: `x * 2` to `x * 10`) or
//! `ops/src/lib.rs` and save (without cargo-hcr, rebuild that module with
//! `cargo build -p callbacks-math`): the same pointers run the new code.
//! `--frames N` stops after N rounds.

use std::time::Duration;

use callbacks::hcr::{Hcr, ops};
use callbacks::{callback_table, run_table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = std::env::args().skip_while(|a| a != "--frames").nth(1).map(|n| n.parse::<u64>()).transpose()?;
    let hcr = Hcr::start()?;
    let table = callback_table();
    println!("callback table (stub addresses, valid across reloads):");
    for (name, f) in &table {
        println!("  {name:<24} {:#x}", *f as usize);
    }
    if hcr.is_hot() {
        let rebuild = if std::env::var_os("HCR_REPORT_FILE").is_some() {
            "and save"
        } else {
            "then: cargo build -p callbacks-math"
        };
        println!("edit examples/callbacks/math/src/lib.rs (double: `x * 2` to `x * 10`) {rebuild}");
        println!("the same pointers then run the new code, and `ops` calls it through its stubs");
    }
    let mut round = 0;
    while frames.is_none_or(|n| round < n) {
        if let Some(result) = hcr.update() {
            match result {
                Ok(reload) => println!("reloaded: {reload}"),
                Err(e) => eprintln!("reload failed, old code kept: {e}"),
            }
        }
        round += 1;
        let results: Vec<String> = run_table(&table, 3).into_iter().map(|(n, v)| format!("{n}(3) = {v}")).collect();
        println!("round {round}: {}  [ops called {} times]", results.join(", "), ops::ops_calls());
        std::thread::sleep(Duration::from_millis(if frames.is_some() { 10 } else { 1000 }));
    }
    Ok(())
}
