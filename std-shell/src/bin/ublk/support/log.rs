//! Where a daemon's messages go once its stdio is /dev/null: the system log (`/dev/log`, as
//! syslog(3) does), or the kernel's log (`/dev/kmsg`, read with `dmesg`) where no syslog
//! daemon runs (an initramfs). Each line is tagged `ublk[PID]`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

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
    let to_syslog = UnixDatagram::unbound()
        .and_then(|s| s.send_to(line.as_bytes(), "/dev/log"))
        .is_ok();
    if !to_syslog && let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // The newline ends the record: without it the kernel keeps it open for a
        // continuation and readers do not see it until the next message arrives.
        let _ = kmsg.write_all(format!("{line}\n").as_bytes());
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
