//! `ublk recover`: a new server for a device whose server died (or was quiesced), serving the
//! target its `ublk add` record describes, so the same `/dev/ublkbN` (and whatever is mounted
//! on it) goes on.

use std::time::Duration;

use crate::server::handover::{self, TakenOver};
use crate::server::harden;
use crate::server::{self, Server};
use crate::support::control;
use crate::support::failure::Failure;
use crate::support::options::{self, Opt, Usage};
use crate::support::output::eprint_line;

/// `ublk recover`'s synopsis.
pub const SYNOPSIS: &str = "-n ID [--take-over [--timeout S]] [--foreground]";
/// What `ublk recover` does.
pub const ABOUT: &str = "a new server for a device created with --recovery whose server died or was quiesced: the target from its record, the same /dev/ublkbN";

/// `ublk recover`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverOpt {
    /// `-n, --number`.
    Number,
    /// `--take-over`.
    TakeOver,
    /// `--timeout`.
    Timeout,
    /// `--foreground`.
    Foreground,
}

/// `ublk recover`'s options.
pub const OPTS: &[Opt<RecoverOpt>] = &[
    options::device_opt(
        RecoverOpt::Number,
        "the device to take over (created with ublk add --recovery); required",
    ),
    Opt {
        key: RecoverOpt::TakeOver,
        short: None,
        long: "take-over",
        value: None,
        help: "first make the device's running server let go: QUIESCE_DEV where the kernel \
               has it, else kill -9 of the server; its I/O is held until this process serves \
               it. For a mounted root: this process locks its code in memory first, so \
               nothing it runs meanwhile needs the disk",
    },
    options::timeout_opt(
        RecoverOpt::Timeout,
        "with --take-over: how long the old server may take to let go (default 30)",
    ),
    Opt {
        key: RecoverOpt::Foreground,
        short: None,
        long: "foreground",
        value: None,
        help: "serve in this process until Ctrl-C, SIGTERM or `ublk del`, instead of a daemon",
    },
];

/// `ublk recover`'s help.
pub fn help() -> String {
    options::help("recover", SYNOPSIS, ABOUT, OPTS)
}

/// `ublk recover ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("recover", OPTS, args, help)? else {
        return Ok(());
    };
    let id = options::required_device(&p, RecoverOpt::Number)?;
    let timeout = p.parsed(RecoverOpt::Timeout, options::seconds)?;
    if timeout.is_some() && !p.flag(RecoverOpt::TakeOver) {
        return Err(Failure::Usage(Usage(
            "--timeout is how long --take-over waits: give it with --take-over".into(),
        )));
    }
    let timeout = timeout.unwrap_or(Duration::from_secs(30));
    if p.flag(RecoverOpt::TakeOver) {
        if let Err(e) = harden::lock_memory() {
            eprint_line(&format!(
                "ublk recover: warning: {e}: it may wait for the device it holds"
            ));
        }
        match handover::take_over(&mut control::open_control()?, id, timeout)? {
            TakenOver::Quiesced => eprint_line(&format!(
                "ublk recover: device {id} quiesced: its I/O waits for the new server"
            )),
            TakenOver::Killed => eprint_line(&format!(
                "ublk recover: device {id}: its server was killed (this kernel has no QUIESCE): its I/O waits for the new server"
            )),
            TakenOver::Waiting => {}
        }
    }
    server::run("recover", p.flag(RecoverOpt::Foreground), &|run_dir| {
        Server::recover(id, run_dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_goes_with_take_over() {
        let args: Vec<String> = ["-n", "1", "--timeout", "5"].map(String::from).into();
        let Err(Failure::Usage(Usage(text))) = run(&args) else {
            panic!("--timeout alone is a usage error");
        };
        assert!(text.contains("with --take-over"), "{text}");
    }

    #[test]
    fn the_device_is_required() {
        let parse = |line: &[&str]| {
            let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
            options::required_device(&options::parse("recover", OPTS, &args)?, RecoverOpt::Number)
        };
        assert_eq!(parse(&["-n", "4"]), Ok(4));
        assert_eq!(parse(&[]), Err(Usage("which device? give -n ID".into())));
        assert_eq!(
            parse(&["-n", "2000000"]),
            Err(Usage(
                "--number: device id must be 0..=1048575, got 2000000".into()
            ))
        );
    }
}
