//! Waiting for SIGINT/SIGTERM without a signal handler, for servers that must shut their
//! devices down cleanly when asked to; and whether a process (a device's server) still runs.

use std::io;
use std::time::Duration;

/// SIGINT, SIGTERM and SIGHUP, blocked so they can be waited for.
///
/// Create it at the start of `main`, before any device (and so any queue thread) exists:
/// threads inherit the blocked set, so the signals then reach [`wait`](Self::wait) instead of
/// killing the process with its devices half served.
#[derive(Debug)]
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks the three signals in the calling thread (and in threads it starts later).
    pub fn block() -> io::Result<TerminationSignals> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are valid.
        unsafe {
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed.
        let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(TerminationSignals { set })
    }

    /// Waits up to `timeout` for one of the signals; returns its number (`libc::SIGINT`, ...)
    /// or `None` when the time passed.
    pub fn wait(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `set` was initialised in `block`; a null siginfo pointer is allowed; `ts`
        // is a valid timespec.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
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
        Err(_) => {
            // No /proc: signal 0 checks existence only.
            // SAFETY: kill with signal 0 sends nothing; plain integers.
            let r = unsafe { libc::kill(pid, 0) };
            r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        }
    }
}
