//! The host: calls the module twice a second, and reloads it when it was
//! rebuilt. Run it with `cargo hcr run`.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use hcr::{Hcr, {{module_crate}}};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hcr = Hcr::start()?;
    loop {
        match hcr.update() {
            Some(Ok(reload)) => println!("reloaded: {reload}"),
            Some(Err(e)) => eprintln!("reload refused, the old code keeps running: {e}"),
            None => {}
        }
        println!("tick {}", {{module_crate}}::tick());
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
