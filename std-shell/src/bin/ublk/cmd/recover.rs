//! `ublk recover`: a new server for a device whose server died (or was quiesced), serving the
//! target its `ublk add` record describes, so the same `/dev/ublkbN` (and whatever is mounted
//! on it) goes on.

use crate::server::{self, Server};
use crate::support::failure::Failure;
use crate::support::options::{self, Opt};

/// `ublk recover`'s synopsis.
pub const SYNOPSIS: &str = "-n ID [--foreground]";
/// What `ublk recover` does.
pub const ABOUT: &str = "a new server for a device created with --recovery whose server died or was quiesced: the target from its record, the same /dev/ublkbN";

/// `ublk recover`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoverOpt {
    /// `-n, --number`.
    Number,
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
    server::run("recover", p.flag(RecoverOpt::Foreground), &|run_dir| {
        Server::recover(id, run_dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::options::Usage;

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
