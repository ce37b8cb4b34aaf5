//! `ublk quiesce`: QUIESCE_DEV, which hands a live device to a future server on purpose (to
//! upgrade the server without unmounting): the driver holds new I/O, its server's queues are
//! aborted and it exits, and the device waits, quiesced, for `ublk recover`.

use std::time::{Duration, Instant};

use ublk::signal::process_alive;
use ublk::{DevState, Features};

use crate::args::{self, Opt, Parsed, Usage};
use crate::recover::device_id;
use crate::{Failure, print};

/// `ublk quiesce`'s options.
pub const OPTS: &[Opt] = &[
    Opt {
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help: "the device (created with ublk add --recovery on a kernel with QUIESCE); required",
    },
    Opt {
        short: None,
        long: "timeout",
        value: Some("SECONDS"),
        help: "how long in-flight I/O and the server's exit may take (default 30)",
    },
];

/// The device and the timeout, checked.
pub fn options(p: &Parsed) -> Result<(u32, Duration), Usage> {
    let timeout = p
        .parsed("timeout", |v| args::number::<u64>(v, "timeout", 1..=3600))?
        .unwrap_or(30);
    Ok((device_id(p)?, Duration::from_secs(timeout)))
}

/// `ublk quiesce`.
pub fn run(p: &Parsed) -> Result<(), Failure> {
    let (id, timeout) = options(p)?;
    let mut ctl = crate::open_control()?;
    ctl.require(Features::QUIESCE, "quiescing a device (QUIESCE_DEV)")?;
    let info = crate::device_info(&mut ctl, id)?;
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
        let info = crate::device_info(&mut ctl, id)?;
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
    ));
    Ok(())
}
