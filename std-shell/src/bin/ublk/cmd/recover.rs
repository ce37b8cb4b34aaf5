//! `ublk recover`: a new server for a device whose server died (or was quiesced), serving the
//! target its `ublk add` record describes, so the same `/dev/ublkbN` (and whatever is mounted
//! on it) goes on.

use crate::add::{self, Served};
use crate::args::{self, Opt, Parsed, Usage};
use crate::{Failure, MAX_DEVICE_ID};

/// `ublk recover`'s options.
pub const OPTS: &[Opt] = &[
    Opt {
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help: "the device to take over (created with ublk add --recovery); required",
    },
    Opt {
        short: None,
        long: "foreground",
        value: None,
        help: "serve in this process until Ctrl-C, SIGTERM or `ublk del`, instead of a daemon",
    },
];

/// `ublk recover`.
pub fn run(p: &Parsed) -> Result<(), Failure> {
    let id = device_id(p)?;
    let foreground = p.flag("foreground");
    add::serve("recover", foreground, &|run_dir| {
        Served::recover(id, run_dir)
    })
}

/// `-n ID`, required.
pub fn device_id(p: &Parsed) -> Result<u32, Usage> {
    p.parsed("number", |v| {
        args::number(v, "device id", 0..=MAX_DEVICE_ID)
    })?
    .ok_or_else(|| Usage("which device? give -n ID".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_is_required() {
        let parse = |line: &[&str]| {
            let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
            device_id(&args::parse("recover", OPTS, &args)?)
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
