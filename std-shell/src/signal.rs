//! Waiting for SIGINT/SIGTERM without a signal handler, for servers that must shut their
//! devices down cleanly when asked to; and whether a process (a device's server) still runs.

use std::io;
use std::time::Duration;

use crate::os::{self, SignalSet};

/// SIGINT, SIGTERM and SIGHUP, blocked so they can be waited for.
///
/// Create it at the start of `main`, before any device (and so any queue thread) exists:
/// threads inherit the blocked set, so the signals then reach [`wait`](Self::wait) (or
/// [`Device::serve_until`](crate::Device::serve_until)) instead of killing the process with
/// its devices half served.
#[derive(Debug)]
pub struct TerminationSignals {
    set: SignalSet,
}

impl TerminationSignals {
    /// Blocks the three signals in the calling thread (and in threads it starts later).
    pub fn block() -> io::Result<TerminationSignals> {
        let set = SignalSet::of(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
        set.block()?;
        Ok(TerminationSignals { set })
    }

    /// Waits up to `timeout` for one of the signals; returns its number (`libc::SIGINT`, ...)
    /// or `None` when the time passed. A zero `timeout` takes one already pending, if any.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        self.set.wait(timeout)
    }
}

/// The signal's name, for messages (`SIGINT`).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// True if process `pid` exists and is not a zombie (a server that died but was not reaped
/// yet serves nothing).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        // kill(0) and kill(-1) would address process groups, not a process.
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No /proc: existence is all that can be checked.
        Err(_) => os::process_exists(pid),
    }
}
