//! `cargo run -p hcr-demo` runs the self-driving demo;
//! `cargo run -p hcr-demo -- --interactive [--reset]` lets you edit the module yourself.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--interactive") {
        hcr_demo::run_interactive(args.iter().any(|a| a == "--reset"))
    } else {
        hcr_demo::run_demo()
    };
    if let Err(e) = result {
        eprintln!("hcr demo failed: {e}");
        std::process::exit(1);
    }
}
