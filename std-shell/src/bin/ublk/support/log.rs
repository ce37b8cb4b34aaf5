//! Where a daemon's messages go once its stdio is /dev/null: the system log (`/dev/log`, as
//! syslog(3) does), or the kernel's log (`/dev/kmsg`, read with `dmesg`) where no syslog
//! daemon runs (an initramfs). Each line is tagged `ublk[PID]`.
//!
//! A daemon opens both once, before it serves ([`open`]), and then writes to what it opened:
//! a server may serve the very file system `/dev` is looked up on (the root), or run after
//! `switch_root` has emptied the directory it started in.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

/// The system log's socket (connected) and the kernel log, as [`open`] found them.
struct Sinks {
    syslog: Option<UnixDatagram>,
    kmsg: Option<File>,
}

static SINKS: OnceLock<Sinks> = OnceLock::new();

/// Opens the system log and the kernel log for the rest of the process's life; from then on
/// [`log`] looks up no path. Best effort, as logging is.
pub fn open() {
    let _ = SINKS.get_or_init(|| Sinks {
        syslog: UnixDatagram::unbound()
            .and_then(|s| s.connect("/dev/log").map(|()| s))
            .ok(),
        kmsg: std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/kmsg")
            .ok(),
    });
}

/// How much a message matters (syslog's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something failed (`LOG_ERR`).
    Error = 3,
    /// Worth knowing, nothing failed (`LOG_NOTICE`).
    Notice = 5,
}

/// `LOG_DAEMON`, as facility of every message.
const FACILITY_DAEMON: u8 = 3 << 3;

/// The line as syslog and /dev/kmsg take it: `<PRI>ublk[PID]: text`.
pub fn format(level: Level, pid: u32, text: &str) -> String {
    let pri = FACILITY_DAEMON | level as u8;
    let one_line = text.replace('\n', " ");
    format!("<{pri}>ublk[{pid}]: {one_line}")
}

/// Sends `text` to the system log, or failing that to the kernel log. Best effort: a daemon
/// with nowhere to log still serves its device.
pub fn log(level: Level, text: &str) {
    let line = format(level, std::process::id(), text);
    // The newline ends a kmsg record: without it the kernel keeps it open for a
    // continuation and readers do not see it until the next message arrives.
    let kmsg_line = format!("{line}\n");
    if let Some(sinks) = SINKS.get() {
        let to_syslog = sinks
            .syslog
            .as_ref()
            .is_some_and(|s| s.send(line.as_bytes()).is_ok());
        if !to_syslog && let Some(mut kmsg) = sinks.kmsg.as_ref() {
            let _ = kmsg.write_all(kmsg_line.as_bytes());
        }
        return;
    }
    let to_syslog = UnixDatagram::unbound()
        .and_then(|s| s.send_to(line.as_bytes(), "/dev/log"))
        .is_ok();
    if !to_syslog && let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = kmsg.write_all(kmsg_line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_facility_level_and_pid() {
        assert_eq!(
            format(Level::Notice, 42, "device 3: stopped\nagain"),
            "<29>ublk[42]: device 3: stopped again"
        );
        assert_eq!(format(Level::Error, 1, "x"), "<27>ublk[1]: x");
    }
}
