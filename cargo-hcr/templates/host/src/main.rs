//! The host: owns the state, calls the module twice a second, and reloads
//! the module when it was rebuilt. Run it with `cargo hcr run`.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use hcr::Hcr;
use {{module_crate}}::State;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hcr = Hcr::start()?;
    let mut state = State::default();
    loop {
        match hcr.update() {
            Some(Ok(reload)) => println!("reloaded: {reload}"),
            Some(Err(e)) => eprintln!("reload refused, the old code keeps running: {e}"),
            None => {}
        }
        // `try_tick` returns a panic of the module's code as an error
        // (`tick` would raise it again here).
        match hcr::{{module_crate}}::try_tick(&mut state) {
            Ok(line) => println!("{line}"),
            Err(panic) => eprintln!("{panic}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
