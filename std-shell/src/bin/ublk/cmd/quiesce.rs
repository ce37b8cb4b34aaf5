//! `ublk quiesce`: QUIESCE_DEV, which hands a live device to a future server on purpose (to
//! upgrade the server without unmounting): the driver holds new I/O, its server's queues are
//! aborted and it exits, and the device waits, quiesced, for `ublk recover`.

use std::time::{Duration, Instant};

use ublk::signal::process_alive;
use ublk::{DevState, Features};

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
    let mut ctl = control::open_control()?;
    ctl.require(Features::QUIESCE, "quiescing a device (QUIESCE_DEV)")?;
    let info = control::device_info(&mut ctl, id)?;
    if !info.flags().contains(Features::QUIESCE) {
        return Err(Failure::Runtime(format!(
            "device {id} was created without QUIESCE: add it with --recovery to be able to quiesce it"
        )));
    }
    let server = info.server_pid();
    ctl.quiesce(id, timeout)?;
    // The driver calls the device quiesced once the server has closed /dev/ublkcN.
    let deadline = Instant::now() + timeout;
    loop {
        let info = control::device_info(&mut ctl, id)?;
        let exited = server.is_none_or(|pid| !process_alive(pid));
        if info.state() == Ok(DevState::Quiesced) && exited {
            break;
        }
        if Instant::now() >= deadline {
            let state = info.state().map_or("unknown", |s| s.name());
            return Err(Failure::Runtime(format!(
                "device {id}: QUIESCE_DEV was accepted, but after {} s the device is {state} and its server {} (a server must exit when its queues are aborted)",
                timeout.as_secs(),
                server.map_or("is unknown".into(), |pid| format!(
                    "(pid {pid}) is {}",
                    if exited { "gone" } else { "still running" }
                )),
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    print(&format!(
        "device {id}: quiesced; I/O waits until `ublk recover -n {id}` gives it a new server\n"
    ))
}
