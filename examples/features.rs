//! Prints which ublk features the running kernel supports, and which this build uses.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo cargo run --example features
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let kernel = match ublk::features() {
        Ok(features) => features,
        Err(e) => {
            eprintln!("features: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{:<24} {:<7} this build", "feature", "kernel");
    for line in ublk::feature_report(kernel) {
        let yes_no = |b| if b { "yes" } else { "no" };
        println!(
            "{:<24} {:<7} {}",
            line.name,
            yes_no(line.kernel),
            yes_no(line.build)
        );
    }
    if kernel.unknown_bits() != 0 {
        println!("bits this build cannot name: {:#x}", kernel.unknown_bits());
    }
    ExitCode::SUCCESS
}
