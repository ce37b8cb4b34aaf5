//! End-to-end tests: they need the ublk driver (`/dev/ublk-control`) and root.
//!
//! `scripts/vm-test.sh` builds this binary statically and runs it in a VM whose kernel has
//! `ublk_drv`; `scripts/vm-test.sh --host` runs it here if this machine has the driver. Under a
//! plain `cargo test` on a machine without the driver every test is reported as ignored.

mod backends;
mod cli;
mod control;
mod data_path;
mod fio;
mod harness;
mod io;
mod nbd;
mod recovery;
// What `ublk list --json` prints is read with the JSON the `ublk` command itself uses.
use ublk::json;

fn main() -> std::process::ExitCode {
    let tests: Vec<harness::Test> = [
        control::TESTS,
        io::TESTS,
        backends::TESTS,
        data_path::TESTS,
        cli::TESTS,
        recovery::TESTS,
        nbd::TESTS,
    ]
    .concat();
    harness::run(&tests)
}
