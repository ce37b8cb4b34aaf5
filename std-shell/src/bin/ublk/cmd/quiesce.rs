//! `ublk quiesce`: QUIESCE_DEV, which hands a live device to a future server on purpose (to
//! upgrade the server without unmounting): the driver holds new I/O, its server's queues are
//! aborted and it exits, and the device waits, quiesced, for `ublk recover`.

use std::time::Duration;

use crate::server::handover;
use crate::support::control;
use crate::support::failure::Failure;
use crate::support::options::{self, Opt, Parsed, Usage};
use crate::support::output::print;

/// `ublk quiesce`'s synopsis.
pub const SYNOPSIS: &str = "-n ID";
/// What `ublk quiesce` does.
pub const ABOUT: &str = "hand a device to a future server (upgrade): I/O waits, its server exits, `ublk recover` takes over (kernels with QUIESCE)";

/// `ublk quiesce`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuiesceOpt {
    /// `-n, --number`.
    Number,
    /// `--timeout`.
    Timeout,
}

/// `ublk quiesce`'s options.
pub const OPTS: &[Opt<QuiesceOpt>] = &[
    options::device_opt(
        QuiesceOpt::Number,
        "the device (created with ublk add --recovery on a kernel with QUIESCE); required",
    ),
    options::timeout_opt(
        QuiesceOpt::Timeout,
        "how long in-flight I/O and the server's exit may take (default 30)",
    ),
];

/// `ublk quiesce`'s help.
pub fn help() -> String {
    options::help("quiesce", SYNOPSIS, ABOUT, OPTS)
}

/// The device and the timeout, checked.
pub fn options(p: &Parsed<QuiesceOpt>) -> Result<(u32, Duration), Usage> {
    let timeout = p
        .parsed(QuiesceOpt::Timeout, options::seconds)?
        .unwrap_or(Duration::from_secs(30));
    let id = options::required_device(p, QuiesceOpt::Number)?;
    Ok((id, timeout))
}

/// `ublk quiesce ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("quiesce", OPTS, args, help)? else {
        return Ok(());
    };
    let (id, timeout) = options(&p)?;
    handover::quiesce(&mut control::open_control()?, id, timeout)?;
    print(&format!(
        "device {id}: quiesced; I/O waits until `ublk recover -n {id}` gives it a new server\n"
    ))
}
