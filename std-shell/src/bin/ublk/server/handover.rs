//! Handing a live device from its server to a future one, without unmounting what is on it:
//! QUIESCE_DEV where the kernel and the device have it, else a `kill -9` of the server, which a
//! device with recovery outlives (its I/O held, the dead server's requests sent again).

use std::time::{Duration, Instant};

use ublk::signal::process_alive;
use ublk::{Controller, DevState, Features, Recovery};

use crate::support::control;
use crate::support::failure::Failure;

/// QUIESCE_DEV of device `id`, then waits (up to `timeout`) until its server has exited and
/// the device is quiesced.
pub fn quiesce(ctl: &mut Controller, id: u32, timeout: Duration) -> Result<(), Failure> {
    ctl.require(Features::QUIESCE, "quiescing a device (QUIESCE_DEV)")?;
    let info = control::device_info(ctl, id)?;
    if !info.flags().contains(Features::QUIESCE) {
        return Err(Failure::Runtime(format!(
            "device {id} was created without QUIESCE: add it with --recovery to be able to quiesce it"
        )));
    }
    let server = info.server_pid();
    ctl.quiesce(id, timeout)?;
    wait_quiesced(ctl, id, server, timeout, "QUIESCE_DEV was accepted")
}

/// How [`take_over`] got the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakenOver {
    /// It waited for a new server already.
    Waiting,
    /// Quiesced (QUIESCE_DEV).
    Quiesced,
    /// Its server was killed (the kernel has no QUIESCE).
    Killed,
}

/// Makes device `id` wait for a new server: nothing to do if it does, else QUIESCE_DEV where
/// the kernel and the device have QUIESCE, else SIGKILL to its server (the device must have
/// recovery, so that it outlives its server). Returns once the device is quiesced and its old
/// server gone, bounded by `timeout`.
pub fn take_over(ctl: &mut Controller, id: u32, timeout: Duration) -> Result<TakenOver, Failure> {
    let info = control::device_info(ctl, id)?;
    if Recovery::of(info.flags()) == Recovery::Off {
        return Err(Failure::Runtime(format!(
            "device {id} was created without recovery: no server can take it over"
        )));
    }
    let server = info.server_pid().filter(|&pid| process_alive(pid));
    if info.state() == Ok(DevState::Quiesced) && server.is_none() {
        return Ok(TakenOver::Waiting);
    }
    let kernel = ctl.features()?;
    if kernel.contains(Features::QUIESCE) && info.flags().contains(Features::QUIESCE) {
        quiesce(ctl, id, timeout)?;
        return Ok(TakenOver::Quiesced);
    }
    let Some(pid) = server else {
        // No server and not quiesced yet: the driver is still noticing a death.
        wait_quiesced(ctl, id, None, timeout, "its server is gone")?;
        return Ok(TakenOver::Waiting);
    };
    ublk::os::kill(pid, libc::SIGKILL)
        .map_err(|e| Failure::Runtime(format!("device {id}: killing its server {pid}: {e}")))?;
    wait_quiesced(ctl, id, Some(pid), timeout, "its server was killed")?;
    Ok(TakenOver::Killed)
}

/// Waits until device `id` is quiesced and `server` (if known) has exited.
fn wait_quiesced(
    ctl: &mut Controller,
    id: u32,
    server: Option<i32>,
    timeout: Duration,
    what: &str,
) -> Result<(), Failure> {
    // The driver calls the device quiesced once the server has closed /dev/ublkcN.
    let deadline = Instant::now() + timeout;
    loop {
        let info = control::device_info(ctl, id)?;
        let exited = server.is_none_or(|pid| !process_alive(pid));
        if info.state() == Ok(DevState::Quiesced) && exited {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let state = info.state().map_or("unknown", |s| s.name());
            return Err(Failure::Runtime(format!(
                "device {id}: {what}, but after {} s the device is {state} and its server {} (a server must exit when its queues are aborted)",
                timeout.as_secs(),
                server.map_or("is unknown".into(), |pid| format!(
                    "(pid {pid}) is {}",
                    if exited { "gone" } else { "still running" }
                )),
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
