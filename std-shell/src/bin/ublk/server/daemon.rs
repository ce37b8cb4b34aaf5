//! `ublk add` and `ublk recover` without `--foreground`: the server runs in a daemon (a forked
//! child in its own session), and the command returns only once the device is live, with the
//! daemon's verdict. The two talk over a pipe, one line per message:
//!
//! ```text
//! warning <text>      something the user should know; the device still starts
//! ready <summary>     the device is live and served (the daemon's stdio is /dev/null now)
//! error <code> <text> the device could not be started; nothing is left behind
//! ```
//!
//! A daemon that dies or hangs before it says `ready` or `error` is reported as such, so
//! the command never waits forever. After `ready`, the daemon's messages (why it stopped,
//! what it served, errors) go to the system log ([`crate::log`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Failure;
use crate::add::Served;
use crate::log::{Level, log};
use crate::state;

/// How long the command waits for the daemon's verdict. Starting a device is a handful of
/// control commands, each bounded by 30 s, so a healthy start is far quicker.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(150);

/// How the daemon gets its device: started, or recovered. Given the directory of records.
pub type Start<'a> = &'a dyn Fn(&Path) -> Result<Served, Failure>;

/// Forks the daemon, which gets its device from `start`; waits for its verdict and reports it
/// (warnings prefixed with `ublk <command>`).
pub fn run(command: &str, start: Start<'_>) -> Result<(), Failure> {
    let (verdict, report) = pipe()?;
    // SAFETY: the CLI starts no thread before this point (the device and its queue threads
    // are created in the child), so the child is a complete copy of a single-threaded
    // process and may go on using the Rust runtime.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::Runtime(format!(
            "cannot start the server (fork): {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(verdict);
        std::process::exit(daemon(start, report));
    }
    drop(report);
    wait_for_verdict(verdict, pid, command)
}

fn pipe() -> Result<(File, File), Failure> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is an array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Failure::Runtime(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// The daemon: starts the device, reports, serves. Returns its exit code.
fn daemon(start: Start<'_>, mut report: File) -> i32 {
    // Its own session: no controlling terminal, so closing the terminal or Ctrl-C in the
    // shell that ran `ublk add` does not reach the server.
    // SAFETY: setsid takes no arguments; in a fresh child it cannot fail (not a group leader).
    unsafe { libc::setsid() };
    // Not to keep the directory `ublk add` ran in busy (file paths are already absolute).
    let _ = std::env::set_current_dir("/");
    let served = match start(Path::new(state::RUN_DIR)) {
        Ok(s) => s,
        Err(f) => {
            let one_line = f.message().replace('\n', " ");
            let _ = writeln!(report, "error {} {one_line}", f.code());
            return f.code();
        }
    };
    for w in &served.warnings {
        let _ = writeln!(report, "warning {}", w.replace('\n', " "));
    }
    // Before `ready`: a caller reading our stdout (`$(ublk add ...)`) must see it close when
    // the command exits, not when the daemon does.
    detach_stdio();
    let _ = writeln!(report, "ready {}", served.summary);
    drop(report);
    log(Level::Notice, &format!("serving {}", served.summary));
    match served.serve(&|line| log(Level::Notice, line)) {
        Ok(()) => 0,
        Err(f) => {
            log(Level::Error, &f.message());
            f.code()
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null.
fn detach_stdio() {
    let Ok(null) = File::options().read(true).write(true).open("/dev/null") else {
        return;
    };
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns; `null` stays
        // open for the call.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}

fn wait_for_verdict(mut verdict: File, pid: libc::pid_t, command: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + VERDICT_TIMEOUT;
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: verdict.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Failure::Runtime(format!("waiting for the server: {e}")));
        }
        if n == 0 {
            // SAFETY: kill takes plain integers; `pid` is our child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            return Err(Failure::Runtime(format!(
                "the server (pid {pid}) did not report within {} s; sent it SIGTERM",
                VERDICT_TIMEOUT.as_secs()
            )));
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
            eprintln!("ublk {command}: warning: {w}");
        } else if let Some(summary) = line.strip_prefix("ready ") {
            crate::print(&format!("{summary}\n"));
            return Ok(());
        } else if let Some(err) = line.strip_prefix("error ") {
            let (code, message) = err.split_once(' ').unwrap_or(("1", err));
            reap(pid);
            return Err(match code {
                "2" => Failure::Usage(crate::args::Usage(message.to_string())),
                _ => Failure::Runtime(message.to_string()),
            });
        }
    }
    Err(Failure::Runtime(format!(
        "the server (pid {pid}) exited before the device was live ({})",
        reap(pid)
    )))
}

/// Waits (briefly) for the child to end; its exit status as text.
fn reap(pid: libc::pid_t) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exit code {}", libc::WEXITSTATUS(status))
            };
        }
        if r < 0 || Instant::now() >= deadline {
            return "status unknown".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
