//! `ublk del`: stop and delete a device (or all of them), whoever serves it.
//!
//! The command talks to the driver, not to the server: STOP_DEV (the block device goes away
//! once in-flight I/O is answered, and the server's queues are aborted), then DEL_DEV, which
//! completes when the server has closed `/dev/ublkcN`. So it works the same for a `ublk add`
//! daemon, for any other ublk server, and for a device whose server died. Each command is
//! bounded by `--timeout`; then the server gets a few seconds to exit and its record goes.

use std::path::Path;
use std::time::{Duration, Instant};

use ublk::os;
use ublk::poll::poll_until;
use ublk::signal::process_alive;
use ublk::sys::Errno;

use crate::server::records;
use crate::server::target::Kind;
use crate::support::control::{self, device_ids};
use crate::support::failure::Failure;
use crate::support::options::{self, Opt, Parsed, Usage};
use crate::support::output::eprint_line;

/// `ublk del`'s synopsis.
pub const SYNOPSIS: &str = "-n ID | -a";
/// What `ublk del` does.
pub const ABOUT: &str = "stop and delete a device, or all of them; bounded by --timeout";

/// `ublk del`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelOpt {
    /// `-n, --number`.
    Number,
    /// `-a, --all`.
    All,
    /// `--timeout`.
    Timeout,
}

/// `ublk del`'s options.
pub const OPTS: &[Opt<DelOpt>] = &[
    options::device_opt(DelOpt::Number, "the device to delete"),
    Opt {
        key: DelOpt::All,
        short: Some('a'),
        long: "all",
        value: None,
        help: "delete every ublk device",
    },
    options::timeout_opt(
        DelOpt::Timeout,
        "how long each control command may take before it is an error (default 30)",
    ),
];

/// `ublk del`'s help.
pub fn help() -> String {
    options::help("del", SYNOPSIS, ABOUT, OPTS)
}

/// How long the server may take to exit after its device was deleted.
const SERVER_EXIT: Duration = Duration::from_secs(10);

/// Which devices, and how long to wait.
#[derive(Debug, PartialEq, Eq)]
pub struct DelOptions {
    /// `Some(id)` for `-n`, `None` for `-a`.
    pub id: Option<u32>,
    /// `--timeout`.
    pub timeout: Duration,
}

impl DelOptions {
    /// Checks the command line: exactly one of `-n` and `-a`.
    pub fn from_args(p: &Parsed<DelOpt>) -> Result<DelOptions, Usage> {
        let id = p.parsed(DelOpt::Number, options::device_id)?;
        let timeout = p
            .parsed(DelOpt::Timeout, options::seconds)?
            .unwrap_or(Duration::from_secs(30));
        match (id, p.flag(DelOpt::All)) {
            (Some(_), true) => Err(Usage("give -n ID or -a, not both".into())),
            (None, false) => Err(Usage(
                "which device? give -n ID, or -a for all (see ublk del --help)".into(),
            )),
            (id, _) => Ok(DelOptions { id, timeout }),
        }
    }
}

/// `ublk del ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("del", OPTS, args, help)? else {
        return Ok(());
    };
    let options = DelOptions::from_args(&p)?;
    let mut ctl = control::open_control()?;
    ctl.set_timeout(options.timeout);
    let run_dir = Path::new(records::RUN_DIR);
    let Some(id) = options.id else {
        // Every device, each on its own: one failure does not keep the others alive.
        let mut failed = 0;
        for id in device_ids() {
            match delete(&mut ctl, id, run_dir) {
                Ok(()) | Err(Failure::NoDevice(_)) => {}
                Err(f) => {
                    eprint_line(&format!("ublk del: {}", f.message()));
                    failed += 1;
                }
            }
        }
        return match failed {
            0 => Ok(()),
            n => Err(Failure::Runtime(format!(
                "{n} device(s) could not be deleted"
            ))),
        };
    };
    delete(&mut ctl, id, run_dir)
}

fn delete(ctl: &mut ublk::Controller, id: u32, run_dir: &Path) -> Result<(), Failure> {
    let gone = |e: &ublk::Error| e.errno() == Some(Errno::ENODEV);
    let info = control::device_info(ctl, id)?;
    // Only a record tied to this device says who serves it: one of an earlier device of the
    // same id names a process that has nothing to do with it.
    let seen = records::read(run_dir, id).ok().flatten();
    let record = seen.clone().filter(|r| r.tied_to(&info).is_ok());
    let server = info.server_pid().or(record.as_ref().map(|r| r.pid));
    let nbd_server = record
        .as_ref()
        .filter(|r| r.target.kind == Kind::Nbd && Some(r.pid) == server)
        .map(|r| r.pid)
        .filter(|&pid| process_alive(pid));
    if let Some(pid) = nbd_server {
        // An NBD server holds I/O while it reconnects, and STOP_DEV would wait for that I/O
        // as long as the server holds it. Asked to stop by SIGTERM, the server fails what it
        // holds, then stops and deletes the device itself.
        stopped_by_server(ctl, id, pid)?;
    } else {
        match ctl.stop(id) {
            Err(e) if gone(&e) => return Err(Failure::NoDevice(id)),
            Err(e) => return Err(held_by(e, server)),
            Ok(()) => {}
        }
        match ctl.delete(id) {
            // Someone else deleted it in between: what was asked for is done.
            Err(e) if gone(&e) => {}
            Err(e) => return Err(held_by(e, server)),
            Ok(()) => {}
        }
    }
    // A `ublk add` server removes its record and exits once its device is gone; give it
    // that time, then clean up after one that died without doing so. Other servers (a
    // program using the library) may well live on without the device: not waited for.
    if let Some(pid) = record
        .as_ref()
        .map(|r| r.pid)
        .filter(|&p| Some(p) == server)
    {
        let deadline = Instant::now() + SERVER_EXIT;
        let exited = || (!process_alive(pid)).then_some(());
        if poll_until(deadline, Duration::from_millis(20), exited).is_none() {
            eprint_line(&format!(
                "ublk del: warning: device {id} is deleted, but its server (pid {pid}) is still running after {} s",
                SERVER_EXIT.as_secs()
            ));
            return Ok(());
        }
    }
    // The record goes with the device: its own, or one an earlier device of the same id left
    // (but not one a newer server wrote since: `remove` checks the pid).
    if let Some(r) = seen {
        records::remove(run_dir, id, r.pid);
    }
    Ok(())
}

/// Asks the device's server `pid` to stop and delete it (SIGTERM), and waits, as long as a
/// control command may take, until the device is gone.
fn stopped_by_server(ctl: &mut ublk::Controller, id: u32, pid: i32) -> Result<(), Failure> {
    os::kill(pid, libc::SIGTERM).map_err(|e| {
        Failure::Runtime(format!(
            "device {id}: asking its server (pid {pid}) to stop it: {e}"
        ))
    })?;
    let limit = ctl.timeout();
    let gone = || match ctl.info(id) {
        Err(e) if e.errno() == Some(Errno::ENODEV) => Some(()),
        _ => None,
    };
    poll_until(Instant::now() + limit, Duration::from_millis(20), gone).ok_or_else(|| {
        Failure::Runtime(format!(
            "device {id}: its server (pid {pid}) was asked to stop it (SIGTERM), but the device is still there after {} s",
            limit.as_secs()
        ))
    })
}

/// A failed STOP_DEV or DEL_DEV, with who is likely holding the device.
fn held_by(e: ublk::Error, server: Option<i32>) -> Failure {
    match server.filter(|&pid| process_alive(pid)) {
        Some(pid) => Failure::Runtime(format!(
            "{e}; its server (pid {pid}) still holds the device"
        )),
        None => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Result<DelOptions, Usage> {
        let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
        DelOptions::from_args(&options::parse("del", OPTS, &args)?)
    }

    #[test]
    fn every_flag_and_error() {
        let thirty = Duration::from_secs(30);
        assert_eq!(
            parse(&["-n", "3"]),
            Ok(DelOptions {
                id: Some(3),
                timeout: thirty
            })
        );
        assert_eq!(
            parse(&["-a", "--timeout", "5"]),
            Ok(DelOptions {
                id: None,
                timeout: Duration::from_secs(5)
            })
        );
        let cases: &[(&[&str], &str)] = &[
            (
                &[],
                "which device? give -n ID, or -a for all (see ublk del --help)",
            ),
            (&["-n", "1", "-a"], "give -n ID or -a, not both"),
            (
                &["-n", "one"],
                "--number: 'one' is not a device id (a whole number)",
            ),
            (
                &["-a", "--timeout", "0"],
                "--timeout: timeout must be 1..=3600, got 0",
            ),
            (
                &["-a", "--timeout"],
                "--timeout SECONDS needs a value (SECONDS)",
            ),
            (&["-x"], "unknown option -x (see ublk del --help)"),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Err(Usage(want.to_string())), "{line:?}");
        }
    }
}
