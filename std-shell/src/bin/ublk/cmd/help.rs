//! `ublk help [COMMAND]` and `ublk version`: what `ublk` is, its commands, and a command's
//! options (given by the dispatcher, which knows every command).

use crate::support::failure::Failure;
use crate::support::options::Usage;
use crate::support::output::print;

/// One command, as help lists it: its name, what it does, and its own help.
pub struct Entry {
    /// The command's name.
    pub name: &'static str,
    /// One line.
    pub about: &'static str,
    /// Its help, with every option.
    pub help: fn() -> String,
}

/// `ublk help`'s synopsis.
pub const SYNOPSIS: &str = "[COMMAND]";
/// What `ublk help` does.
pub const ABOUT: &str = "this text, or a command's options";
/// What `ublk version` does.
pub const VERSION_ABOUT: &str = "print the version (also: ublk --version)";

/// `ublk help help`.
pub fn help() -> String {
    crate::support::options::help::<()>("help", SYNOPSIS, ABOUT, &[])
}

/// `ublk help version`.
pub fn version_help() -> String {
    crate::support::options::help::<()>("version", "", VERSION_ABOUT, &[])
}

/// `ublk version`'s text.
pub fn version() -> String {
    format!("ublk {}\n", env!("CARGO_PKG_VERSION"))
}

/// `ublk help`'s text: every command of `commands`.
pub fn overview(commands: &[Entry]) -> String {
    let mut s = format!(
        "ublk {}: userspace block devices with the Linux ublk driver\n\nUsage: ublk <command> [options]\n\nCommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in commands {
        s += &format!("  {:<10}{}\n", c.name, c.about);
    }
    s += "\nRun `ublk <command> --help` for a command's options. Needs root and the driver\n\
          (`modprobe ublk_drv`). Servers started by `ublk add` record their target in\n\
          /run/ublk/<id>.json. Exit codes: 0 success, 1 failure, 2 bad usage.\n";
    s
}

/// `ublk help [COMMAND]`: the overview, or one command's help.
pub fn run(args: &[String], commands: &[Entry]) -> Result<(), Failure> {
    let text = match args {
        [] => overview(commands),
        [name] => {
            let c = commands.iter().find(|c| c.name == name).ok_or_else(|| {
                Failure::Usage(Usage(format!("no command '{name}' (see ublk help)")))
            })?;
            (c.help)()
        }
        [_, extra, ..] => {
            return Err(Failure::Usage(Usage(format!(
                "unexpected argument '{extra}'"
            ))));
        }
    };
    print(&text)
}

/// `ublk version`: takes no argument.
pub fn run_version(args: &[String]) -> Result<(), Failure> {
    if let Some(extra) = args.first() {
        return Err(Failure::Usage(Usage(format!(
            "unexpected argument '{extra}'"
        ))));
    }
    print(&version())
}
