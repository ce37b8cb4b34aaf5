//! Serves a RAM disk: `/dev/ublkbN` keeps its data in this process's memory (allocated as it
//! is written, given back on DISCARD) until the device is stopped: SIGINT (Ctrl-C), SIGTERM
//! or SIGHUP, or a delete from outside. The data is gone then.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo cargo run --example ramdisk -- --size 1G --queues 2
//! ```
//!
//! Options: `--size BYTES` (suffix K, M, G or T; default 256M), `--queues N` (default 1),
//! `--depth N` (default 128), `--id N` (default: the driver picks).

mod common;

use std::process::ExitCode;

use ublk::Mem;

fn run(o: common::Common) -> ublk::Result<()> {
    let signals = common::block_signals()?;
    let size = o.size.unwrap_or(256 << 20);
    let dev = o.builder().start_target(Mem::new(size)?)?;
    common::serve(dev, &signals, &format!("a {size}-byte RAM disk"))
}

fn main() -> ExitCode {
    let options = common::parse("ramdisk", |_, _| Ok(false));
    common::exit("ramdisk", options.map(run))
}
