//! Serves a null device: `/dev/ublkbN` reads zeroes and accepts (and drops) every write.
//! Runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP, or until the device is deleted from
//! outside, then stops and deletes the device.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo cargo run --example null -- --size 1G --queues 2 --depth 64
//! ```
//!
//! Options: `--size BYTES` (suffix K, M, G or T; default 1G), `--queues N` (default 1),
//! `--depth N` (default 128), `--id N` (default: the driver picks).

mod common;

use std::process::ExitCode;

use ublk::{DiscardLimits, Null};

fn run(o: common::Common) -> ublk::Result<()> {
    // Before any queue thread exists, so that they inherit the blocked signals.
    let signals = common::block_signals()?;
    let size = o.size.unwrap_or(1 << 30);
    let dev = o
        .builder()
        .volatile_cache(true)
        .discard(DiscardLimits {
            granularity: 4096,
            max_discard_bytes: 1 << 30,
            max_write_zeroes_bytes: 1 << 30,
        })
        .start_target(Null::new(size))?;
    common::serve(dev, &signals, &format!("{size} bytes of nothing"))
}

fn main() -> ExitCode {
    let options = common::parse("null", |_, _| Ok(false));
    common::exit("null", options.map(run))
}
