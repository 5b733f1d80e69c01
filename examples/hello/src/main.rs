//! The hello example's host: calls `hello_module::greet` twice a second,
//! reloading the module whenever it is rebuilt.
//!
//! ```sh
//! cargo run -p cargo-hcr -- run -p hello   # hot: edit module/src/lib.rs and save
//! cargo run -p hello     # hot: edit module/src/lib.rs, then cargo build -p hello-module
//! cargo run -p hello --no-default-features --features static   # the same code, linked in, no runtime
//! ```
//!
//! `--frames N` stops after N frames.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use std::time::Duration;

use hcr::{Hcr, hello_module};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = std::env::args().skip_while(|a| a != "--frames").nth(1).map(|n| n.parse::<u64>()).transpose()?;
    let interval = Duration::from_millis(if frames.is_some() { 10 } else { 500 });
    let hcr = Hcr::start()?;
    if hcr.is_hot() && std::env::var_os("HCR_REPORT_FILE").is_some() {
        // Run by cargo-hcr, which rebuilds the module on every save and
        // follows the reloads.
        println!("hot reloading is on: edit examples/hello/module/src/lib.rs and save");
    } else if hcr.is_hot() {
        println!("hot reloading is on: edit examples/hello/module/src/lib.rs, then run `cargo build -p hello-module`");
    } else {
        println!("static build: the module is linked in");
    }
    let mut frame = 0;
    while frames.is_none_or(|n| frame < n) {
        match hcr.update() {
            Some(Ok(reload)) => println!("reloaded: {reload}"),
            Some(Err(e)) => eprintln!("reload failed, still running the old code: {e}"),
            None => {}
        }
        frame += 1;
        hello_module::greet(frame);
        std::thread::sleep(interval);
    }
    println!("{} greetings", hello_module::greetings());
    Ok(())
}
