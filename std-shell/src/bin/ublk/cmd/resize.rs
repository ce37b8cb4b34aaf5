//! `ublk resize`: UPDATE_SIZE, a new size for a live device, within what its server's target
//! holds (a loop file's size, a RAM disk's memory). A file system on it is not resized.

use std::path::Path;

use crate::args::{self, Opt, Parsed, Usage};
use crate::recover::device_id;
use crate::state;
use crate::{Failure, human_size, print};
use ublk::signal::process_alive;

/// `ublk resize`'s options.
pub const OPTS: &[Opt] = &[
    Opt {
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help: "the device; required",
    },
    Opt {
        short: Some('s'),
        long: "size",
        value: Some("SIZE"),
        help: "the new size: a multiple of the logical block size, at most what the target holds; required",
    },
];

/// The device and the new size in bytes, checked.
pub fn options(p: &Parsed) -> Result<(u32, u64), Usage> {
    let size = p
        .parsed("size", args::sectors)?
        .ok_or_else(|| Usage("the new size? give --size SIZE".into()))?;
    Ok((device_id(p)?, size))
}

/// `ublk resize`.
pub fn run(p: &Parsed) -> Result<(), Failure> {
    let (id, size) = options(p)?;
    let mut ctl = crate::open_control()?;
    let info = crate::device_info(&mut ctl, id)?;
    // The record says what the target holds if `ublk add` serves it; another server knows
    // its own limit, and answers I/O past it with errors, which loses nothing.
    let record = state::read(Path::new(state::RUN_DIR), id)
        .ok()
        .flatten()
        .filter(|r| info.server_pid() == Some(r.pid) && process_alive(r.pid));
    if let Some(most) = record.and_then(|r| r.capacity)
        && size > most
    {
        return Err(Failure::Usage(Usage(format!(
            "--size: {size} bytes is more than device {id}'s target holds ({most} bytes)"
        ))));
    }
    ctl.resize(id, size)?;
    print(&format!("device {id}: {}\n", human_size(size)));
    Ok(())
}
