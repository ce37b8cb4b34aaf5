//! Serves a file or a block device as `/dev/ublkbN`, like the kernel's loop driver, until
//! SIGINT (Ctrl-C), SIGTERM or SIGHUP, or a delete from outside. Every acknowledged FLUSH
//! has reached the file (fdatasync), so stopping loses nothing that was flushed.
//!
//! ```text
//! sudo modprobe ublk_drv
//! truncate -s 1G disk.img
//! sudo cargo run --example loop -- --file disk.img --queues 2
//! ```
//!
//! Options: `--file PATH` (required), `--buffered` (no O_DIRECT), `--ro` (read-only),
//! `--logical-block-size N` (default: the backing file's), `--size BYTES` (default: the
//! file's; suffix K, M, G or T), `--queues N` (default 1), `--depth N` (default 128),
//! `--id N` (default: the driver picks), `--recovery MODE` (`reissue`, `queue` or `fail-io`:
//! the device outlives this process if it dies), `--recover ID` (take over device ID, made
//! with `--recovery`, whose server died: the same `/dev/ublkbN` goes on).

mod common;

use std::process::ExitCode;

use ublk::{Loop, Recovery};

#[derive(Default)]
struct LoopArgs {
    file: Option<String>,
    buffered: bool,
    read_only: bool,
    logical_block_size: Option<u32>,
    recovery: Recovery,
    recover: Option<u32>,
}

fn run(o: common::Common, a: LoopArgs) -> ublk::Result<()> {
    let signals = common::block_signals()?;
    let file = a.file.unwrap_or_default();
    let mut opts = Loop::options(&file)
        .buffered(a.buffered)
        .read_only(a.read_only);
    if let Some(lbs) = a.logical_block_size {
        opts = opts.logical_block_size(lbs);
    }
    let target = opts.open()?;
    if let Some(why) = target.buffered_reason().filter(|_| !a.buffered) {
        eprintln!("loop: warning: buffered I/O: {why}");
    }
    let what = format!(
        "{file}, {} bytes, {} I/O{}",
        o.size.unwrap_or(target.size()),
        if target.is_direct() {
            "direct"
        } else {
            "buffered"
        },
        if a.read_only { ", read-only" } else { "" }
    );
    let builder = o.builder().recovery(a.recovery);
    let dev = match a.recover {
        Some(id) => builder.recover_target(id, target)?,
        None => builder.start_target(target)?,
    };
    common::serve(dev, &signals, &what)
}

fn main() -> ExitCode {
    let mut a = LoopArgs::default();
    let options = common::parse("loop", |flag, value| {
        match flag {
            "--file" => a.file = Some(value()?),
            "--buffered" => a.buffered = true,
            "--ro" => a.read_only = true,
            "--logical-block-size" => {
                let v = value()?;
                let n = v
                    .parse()
                    .map_err(|_| format!("{flag}: '{v}' is not a number"))?;
                a.logical_block_size = Some(n);
            }
            "--recovery" => {
                let v = value()?;
                a.recovery = Recovery::from_name(&v)
                    .ok_or_else(|| format!("{flag}: '{v}' is not reissue, queue or fail-io"))?;
            }
            "--recover" => {
                let v = value()?;
                let id = v
                    .parse()
                    .map_err(|_| format!("{flag}: '{v}' is not a device id"))?;
                a.recover = Some(id);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
    .and_then(|o| {
        if a.file.is_none() {
            return Err("--file PATH is required".to_string());
        }
        Ok(o)
    });
    common::exit("loop", options.map(|o| run(o, a)))
}
