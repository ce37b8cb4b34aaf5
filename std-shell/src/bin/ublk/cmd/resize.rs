//! `ublk resize`: UPDATE_SIZE, a new size for a live device, within what its server's target
//! holds (a loop file's size, a RAM disk's memory). A file system on it is not resized.

use std::path::Path;

use ublk::signal::process_alive;

use crate::server::records;
use crate::support::control;
use crate::support::failure::Failure;
use crate::support::options::{self, Opt, Parsed, Usage};
use crate::support::output::{human_size, print};

/// `ublk resize`'s synopsis.
pub const SYNOPSIS: &str = "-n ID --size SIZE";
/// What `ublk resize` does.
pub const ABOUT: &str =
    "change a live device's size, within what its target holds (kernels with UPDATE_SIZE)";

/// `ublk resize`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeOpt {
    /// `-n, --number`.
    Number,
    /// `-s, --size`.
    Size,
}

/// `ublk resize`'s options.
pub const OPTS: &[Opt<ResizeOpt>] = &[
    options::device_opt(ResizeOpt::Number, "the device; required"),
    Opt {
        key: ResizeOpt::Size,
        short: Some('s'),
        long: "size",
        value: Some("SIZE"),
        help: "the new size: a multiple of the logical block size, at most what the target holds; required",
    },
];

/// `ublk resize`'s help.
pub fn help() -> String {
    options::help("resize", SYNOPSIS, ABOUT, OPTS)
}

/// The device and the new size in bytes, checked.
pub fn options(p: &Parsed<ResizeOpt>) -> Result<(u32, u64), Usage> {
    let size = p
        .parsed(ResizeOpt::Size, options::sectors)?
        .ok_or_else(|| Usage("the new size? give --size SIZE".into()))?;
    let id = options::required_device(p, ResizeOpt::Number)?;
    Ok((id, size))
}

/// `ublk resize ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("resize", OPTS, args, help)? else {
        return Ok(());
    };
    let (id, size) = options(&p)?;
    let mut ctl = control::open_control()?;
    let info = control::device_info(&mut ctl, id)?;
    // The record says what the target holds if `ublk add` serves it; another server knows
    // its own limit, and answers I/O past it with errors, which loses nothing.
    let record = records::read_tied(Path::new(records::RUN_DIR), &info)
        .filter(|r| info.server_pid() == Some(r.pid) && process_alive(r.pid));
    if let Some(most) = record.and_then(|r| r.capacity)
        && size > most
    {
        return Err(Failure::Usage(Usage(format!(
            "--size: {size} bytes is more than device {id}'s target holds ({most} bytes)"
        ))));
    }
    ctl.resize(id, size)?;
    print(&format!("device {id}: {}\n", human_size(size)))
}
