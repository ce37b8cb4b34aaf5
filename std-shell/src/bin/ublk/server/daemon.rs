//! `ublk add` and `ublk recover` without `--foreground`: the server runs in a daemon (a forked
//! child in its own session, holding no descriptor of its caller's but the verdict pipe), and
//! the command returns only once the device is live, with the daemon's verdict. The two talk
//! over a pipe, one line per message:
//!
//! ```text
//! warning <text>      something the user should know; the device still starts
//! ready <summary>     the device is live and served (the daemon's stdio is /dev/null now)
//! error <code> <text> the device could not be started; nothing is left behind
//! ```
//!
//! A daemon that dies or hangs before it says `ready` or `error` is reported as such, so the
//! command never waits forever. Ctrl-C (SIGINT, SIGTERM, SIGHUP) while it waits is passed on:
//! the daemon stops and deletes the device it was starting, and the command says so. After
//! `ready`, the daemon's messages (why it stopped, what it served, errors) go to the system
//! log ([`crate::support::log`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use ublk::os::{self, Forked};
use ublk::poll::poll_until;
use ublk::signal::{TerminationSignals, signal_name};

use super::Start;
use super::records::RUN_DIR;
use crate::support::failure::Failure;
use crate::support::log::{Level, log};
use crate::support::options::Usage;
use crate::support::output::{eprint_line, print};

/// How long the command waits for the daemon's verdict. Starting a device is a handful of
/// control commands, each bounded by 30 s, so a healthy start is far quicker.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(150);

/// How long an interrupted command waits for the daemon to have stopped its device.
const INTERRUPTED_EXIT: Duration = Duration::from_secs(100);

/// Forks the daemon, which gets its device from `start`; waits for its verdict and reports it
/// (warnings prefixed with `ublk <command>`).
pub fn run(command: &str, start: Start<'_>) -> Result<(), Failure> {
    // Before the fork, so that the daemon starts with them blocked too: a Ctrl-C that reaches
    // both (before the daemon has a session of its own) is then handled, not fatal.
    let signals = TerminationSignals::block()
        .map_err(|e| Failure::Runtime(format!("blocking SIGINT/SIGTERM/SIGHUP: {e}")))?;
    let (verdict, report) =
        os::pipe().map_err(|e| Failure::Runtime(format!("cannot create a pipe: {e}")))?;
    // SAFETY: the command starts no thread before this point (the device and its queue
    // threads are created in the child), so this process has one thread.
    match unsafe { os::fork() } {
        Err(e) => Err(Failure::Runtime(format!(
            "cannot start the server (fork): {e}"
        ))),
        Ok(Forked::Child) => {
            drop(verdict);
            std::process::exit(daemon(start, report));
        }
        Ok(Forked::Parent(pid)) => {
            drop(report);
            wait_for_verdict(verdict, pid, command, &signals)
        }
    }
}

/// The daemon: starts the device, reports, serves. Returns its exit code.
fn daemon(start: Start<'_>, mut report: File) -> i32 {
    // Its own session: no controlling terminal, so closing the terminal or Ctrl-C in the
    // shell that ran `ublk add` does not reach the server. (A fresh child is no group
    // leader, so this does not fail.)
    let _ = os::new_session();
    // Not to keep the directory `ublk add` ran in busy (file paths are already absolute).
    let _ = std::env::set_current_dir("/");
    // Nothing of the caller's but stdio (until `ready`) and the pipe: a descriptor inherited
    // for the daemon's whole life (the write end of a `ublk add | ...` pipeline's other
    // pipe, a lock) would keep its other end waiting as long as the device is served.
    let _ = os::close_descriptors_except(&[report.as_raw_fd()]);
    let fail = |report: &mut File, f: Failure| {
        let one_line = f.message().replace('\n', " ");
        let code = exit_code(&f);
        let _ = writeln!(report, "error {code} {one_line}");
        code
    };
    let server = match start(Path::new(RUN_DIR)) {
        Ok(s) => s,
        Err(f) => return fail(&mut report, f),
    };
    if let Some(sig) = server.interrupted() {
        // The command was interrupted while the device started: it is not wanted.
        let stopped = server.stop();
        let message = match stopped {
            Ok(()) => format!(
                "interrupted ({}) while the device was starting: it was stopped and deleted",
                signal_name(sig)
            ),
            Err(f) => format!(
                "interrupted ({}) while the device was starting, and stopping it failed: {}",
                signal_name(sig),
                f.message()
            ),
        };
        return fail(&mut report, Failure::Runtime(message));
    }
    let hardened = super::harden::harden(true);
    for w in server.warnings.iter().chain(&hardened) {
        let _ = writeln!(report, "warning {}", w.replace('\n', " "));
    }
    // Before `ready`: a caller reading our stdout (`$(ublk add ...)`) must see it close when
    // the command exits, not when the daemon does.
    let _ = os::stdio_to_dev_null();
    let _ = writeln!(report, "ready {}", server.summary);
    drop(report);
    log(Level::Notice, &format!("serving {}", server.summary));
    match server.serve(&|line| log(Level::Notice, line)) {
        Ok(()) => 0,
        Err(f) => {
            log(Level::Error, &f.message());
            exit_code(&f)
        }
    }
}

/// The exit code a failure is reported with through the pipe (2 for usage, else 1).
fn exit_code(f: &Failure) -> i32 {
    match f {
        Failure::Usage(_) => 2,
        _ => 1,
    }
}

/// Reads the daemon's verdict, up to [`VERDICT_TIMEOUT`]; on a signal, passes SIGTERM on to
/// the daemon and then waits for it to have let its device go.
fn wait_for_verdict(
    mut verdict: File,
    pid: i32,
    command: &str,
    signals: &TerminationSignals,
) -> Result<(), Failure> {
    let deadline = Instant::now() + VERDICT_TIMEOUT;
    let mut text = Vec::new();
    let mut interrupted = None;
    loop {
        if let Some(sig) = signals.wait(Duration::ZERO) {
            let _ = os::kill(pid, libc::SIGTERM);
            interrupted = Some(sig);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = os::kill(pid, libc::SIGTERM);
            return Err(Failure::Runtime(format!(
                "the server (pid {pid}) did not report within {} s; sent it SIGTERM",
                VERDICT_TIMEOUT.as_secs()
            )));
        }
        match os::wait_readable(&verdict, left.min(Duration::from_millis(100))) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => return Err(Failure::Runtime(format!("waiting for the server: {e}"))),
        }
        let mut buf = [0u8; 4096];
        match verdict.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => text.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Runtime(format!("waiting for the server: {e}"))),
        }
    }
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        if let Some(w) = line.strip_prefix("warning ") {
            eprint_line(&format!("ublk {command}: warning: {w}"));
        } else if let Some(summary) = line.strip_prefix("ready ") {
            if let Some(sig) = interrupted {
                // Live before our SIGTERM reached it: the daemon stops the device as soon as
                // it serves. Wait for that, so that nothing is left when we return.
                let ended = reap(pid, INTERRUPTED_EXIT);
                return Err(Failure::Runtime(format!(
                    "interrupted ({}): the server (pid {pid}) stopped and deleted the device it had started ({ended})",
                    signal_name(sig)
                )));
            }
            return print(&format!("{summary}\n"));
        } else if let Some(err) = line.strip_prefix("error ") {
            let (code, message) = err.split_once(' ').unwrap_or(("1", err));
            reap(pid, Duration::from_secs(5));
            return Err(match code {
                "2" => Failure::Usage(Usage(message.to_string())),
                _ => Failure::Runtime(message.to_string()),
            });
        }
    }
    Err(Failure::Runtime(format!(
        "the server (pid {pid}) exited before the device was live ({})",
        reap(pid, Duration::from_secs(5))
    )))
}

/// Waits (up to `limit`) for the child to end; its exit status as text.
fn reap(pid: i32, limit: Duration) -> String {
    // A failed wait is an answer too: the status cannot be known.
    let ended = || match os::try_reap(pid) {
        Ok(Some(exit)) => Some(exit.to_string()),
        Ok(None) => None,
        Err(_) => Some("status unknown".into()),
    };
    poll_until(Instant::now() + limit, Duration::from_millis(10), ended)
        .unwrap_or_else(|| "status unknown".into())
}
