//! What a server does, once its device is live, so that it can serve the file system it runs
//! on (the root) without ever waiting for its own device:
//!
//! - its memory is locked (`mlockall`, each page as it is first touched): a server whose
//!   pages could be swapped out, or whose code could be dropped from the page cache and read
//!   again from the binary, would wait for a disk to run on, which may be the one it serves;
//! - it never looks up a path again: its binary is static and already mapped, and its log's
//!   sockets are opened once, before it serves ([`crate::support::log::open`]);
//! - every one of its threads is an I/O flusher (`PR_SET_IO_FLUSHER`, the queue threads set
//!   their own): their allocations never wait on writeback, which may be to their device;
//! - the OOM killer spares it (`oom_score_adj` -1000): killing it holds every I/O of the
//!   device, a root included, until `ublk recover`, which then may not be able to run;
//! - its command line starts with `@` (`@ublk`), systemd's mark of a root storage daemon,
//!   which systemd leaves running at shutdown until the root is unmounted.
//!
//! Each step is best effort (a container may deny them): what failed is one warning.

use crate::support::log;

/// `CAP_IPC_LOCK`, the capability that lifts `RLIMIT_MEMLOCK`.
const CAP_IPC_LOCK: u32 = 14;

/// Hardens this process (see the module docs); what could not be done, as one warning.
pub fn harden(daemon: bool) -> Option<String> {
    let mut failed = Vec::new();
    // It fails for the reason the queue threads' did, which their warning already says.
    let _ = ublk::os::set_io_flusher();
    if let Err(e) = lock_memory() {
        failed.push(e);
    }
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-1000") {
        failed.push(format!("oom_score_adj: {e}"));
    }
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| !a.starts_with('@')) {
        let mut line = vec!["@ublk"];
        line.extend(args.iter().skip(1).map(String::as_str));
        if let Err(e) = ublk::os::set_command_line(&line) {
            failed.push(format!("naming itself @ublk: {e}"));
        }
    }
    if daemon {
        log::open();
    }
    (!failed.is_empty()).then(|| {
        format!(
            "the server could not make itself safe to serve the file system it runs on: {}",
            failed.join("; ")
        )
    })
}

/// Locks this process's memory ([`ublk::os::lock_memory`]): its code whole, the rest as it is
/// touched. A process that is to hold a device's I/O (`ublk recover --take-over`) calls it
/// first, so that nothing it runs meanwhile waits for that device. Locks are not inherited
/// across `fork`: a daemon calls it again.
pub fn lock_memory() -> Result<(), String> {
    // Without CAP_IPC_LOCK the lock would count against RLIMIT_MEMLOCK, and with MCL_FUTURE
    // later allocations past it would fail: better not locked than not served.
    if !has_capability(CAP_IPC_LOCK) {
        return Err("its memory is not locked (no CAP_IPC_LOCK)".into());
    }
    ublk::os::lock_memory().map_err(|e| format!("locking its memory: {e}"))
}

/// True if this process has capability `cap` in its effective set (`CapEff` of
/// `/proc/self/status`).
fn has_capability(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << cap) != 0)
}
