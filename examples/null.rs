//! Serves a null device: `/dev/ublkbN` reads zeroes and accepts (and drops) every write.
//! Runs until SIGINT (Ctrl-C) or SIGTERM, or until the device is deleted from outside, then
//! stops and deletes the device.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo cargo run --example null -- --size 1G --queues 2 --depth 64
//! ```
//!
//! Options: `--size BYTES` (suffix K, M, G or T; default 1G), `--queues N` (default 1),
//! `--depth N` (default 128), `--id N` (default: the driver picks).

use std::process::ExitCode;
use std::time::Duration;

use ublk::signal::{TerminationSignals, signal_name};
use ublk::{Device, DiscardLimits, Null};

struct Options {
    size: u64,
    queues: u16,
    depth: u16,
    id: Option<u32>,
}

/// `1G`, `512M`, `4096`: bytes, with a binary suffix.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 10),
        (i, 'M' | 'm') => (&s[..i], 20),
        (i, 'G' | 'g') => (&s[..i], 30),
        (i, 'T' | 't') => (&s[..i], 40),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        size: 1 << 30,
        queues: 1,
        depth: 128,
        id: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |v: &str| format!("{flag}: '{v}' is not a valid value");
        match flag.as_str() {
            "--size" => {
                let v = value()?;
                o.size = parse_size(&v).ok_or_else(|| bad(&v))?;
            }
            "--queues" => {
                let v = value()?;
                o.queues = v.parse().map_err(|_| bad(&v))?;
            }
            "--depth" => {
                let v = value()?;
                o.depth = v.parse().map_err(|_| bad(&v))?;
            }
            "--id" => {
                let v = value()?;
                o.id = Some(v.parse().map_err(|_| bad(&v))?);
            }
            _ => {
                return Err(format!(
                    "unknown option {flag} (see the top of examples/null.rs)"
                ));
            }
        }
    }
    Ok(o)
}

fn run(o: Options) -> ublk::Result<()> {
    // Before any queue thread exists, so that they inherit the blocked signals.
    let signals = TerminationSignals::block().map_err(|e| ublk::Error::Io {
        op: "blocking SIGINT/SIGTERM".into(),
        source: e,
    })?;
    let mut builder = Device::builder()
        .size(o.size)
        .queues(o.queues)
        .depth(o.depth)
        .volatile_cache(true)
        .discard(DiscardLimits {
            granularity: 4096,
            max_discard_bytes: 1 << 30,
            max_write_zeroes_bytes: 1 << 30,
        });
    if let Some(id) = o.id {
        builder = builder.id(id);
    }
    let dev = builder.start_target(Null::new(o.size))?;
    let info = dev.info();
    println!(
        "serving {} ({} bytes, {} queue(s) of depth {}); Ctrl-C to stop",
        dev.block_dev_path().display(),
        o.size,
        info.queues(),
        info.queue_depth()
    );
    loop {
        if let Some(sig) = signals.wait(Duration::from_millis(200)) {
            println!("{}: stopping device {}", signal_name(sig), dev.id());
            break;
        }
        if !dev.is_running() {
            println!("device {} was stopped from outside", dev.id());
            break;
        }
    }
    let stats = dev.stats();
    dev.stop()?;
    println!(
        "stopped; served {} reads, {} writes, {} flushes, {} discards, {} write-zeroes",
        stats.reads, stats.writes, stats.flushes, stats.discards, stats.write_zeroes
    );
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("null: {e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("null: {e}");
            ExitCode::FAILURE
        }
    }
}
