//! Adds a ublk device, sets its parameters, reads everything back, and deletes it: the control
//! commands end to end, without serving I/O.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo cargo run --example control
//! ```

use std::process::ExitCode;

use ublk::{Attrs, Controller, NewDevice, UblkParamBasic, UblkParamDiscard, UblkParams};

fn run() -> ublk::Result<()> {
    let mut ctl = Controller::open()?;

    let dev = ctl.add(&NewDevice {
        queues: 2,
        queue_depth: 64,
        ..Default::default()
    })?;
    let id = dev.id();
    println!("added device {id}: {}", dev.char_dev_path().display());
    println!(
        "  state {}, {} queue(s) of depth {}, max I/O {} KiB",
        dev.state().map(|s| s.name()).unwrap_or("unknown"),
        dev.queues(),
        dev.queue_depth(),
        dev.max_io_bytes() / 1024
    );
    println!("  features granted: {}", dev.flags());

    // 1 GiB, 512-byte logical and 4 KiB physical blocks, a write cache, discard in 4 KiB units.
    let params = UblkParams::new()
        .with_basic(UblkParamBasic {
            attrs: Attrs::VOLATILE_CACHE | Attrs::FUA,
            logical_bs_shift: 9,
            physical_bs_shift: 12,
            io_opt_shift: 12,
            io_min_shift: 9,
            max_sectors: dev.max_io_bytes() >> 9,
            dev_sectors: (1 << 30) >> 9,
            ..Default::default()
        })
        .with_discard(UblkParamDiscard {
            discard_granularity: 4096,
            max_discard_sectors: u32::MAX >> 9,
            max_write_zeroes_sectors: u32::MAX >> 9,
            max_discard_segments: 1,
            ..Default::default()
        });
    ctl.set_params(id, &params)?;
    let back = ctl.params(id)?;
    println!(
        "  params: {} sectors ({} MiB), blocks {}/{} bytes, parts {}",
        back.basic.dev_sectors,
        back.basic.dev_sectors >> 11,
        1u32 << back.basic.logical_bs_shift,
        1u32 << back.basic.physical_bs_shift,
        back.types
    );
    println!(
        "  char device {}:{}",
        back.devt.char_major, back.devt.char_minor
    );
    for q in 0..dev.queues() {
        println!("  queue {q} serves CPUs {:?}", ctl.queue_affinity(id, q)?);
    }

    ctl.delete(id)?;
    match ctl.info(id) {
        Err(e) => println!("deleted device {id}; asking for it again: {e}"),
        Ok(_) => println!("device {id} still exists after DEL_DEV"),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control: {e}");
            ExitCode::FAILURE
        }
    }
}
