//! `ublk`: create, list and delete ublk block devices from the command line.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo ublk add -t loop -f disk.img     # prints: device 0: /dev/ublkb0 (...)
//! sudo ublk list
//! sudo ublk del -n 0
//! ```
//!
//! This file is the dispatch: the command word becomes a [`Command`], which runs its module
//! in `cmd/` (one per command, none using another), and its failure becomes one line on
//! stderr and an exit code. Serving a device is `server/`; what every command needs
//! (options, output, the control device) is `support/`.

mod cmd;
#[cfg(test)]
mod fuzz_tests;
mod server;
mod support;

use std::process::ExitCode;

use cmd::help::Entry;
use support::failure::Failure;
use support::options::Usage;
use support::output::eprint_line;

/// The commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    Add,
    Del,
    Recover,
    Quiesce,
    Resize,
    List,
    Features,
    Help,
    Version,
}

impl Command {
    /// Every command, in the order help lists them.
    const ALL: [Command; 9] = [
        Command::Add,
        Command::Del,
        Command::Recover,
        Command::Quiesce,
        Command::Resize,
        Command::List,
        Command::Features,
        Command::Help,
        Command::Version,
    ];

    /// The command a word names: its name, or for help and version their options.
    fn from_word(word: &str) -> Option<Command> {
        match word {
            "-h" | "--help" => Some(Command::Help),
            "-V" | "--version" => Some(Command::Version),
            word => Command::ALL.into_iter().find(|c| c.entry().name == word),
        }
    }

    /// Its name, what it does and its help.
    fn entry(self) -> Entry {
        let (name, about, help): (_, _, fn() -> String) = match self {
            Command::Add => ("add", cmd::add::ABOUT, cmd::add::help),
            Command::Del => ("del", cmd::del::ABOUT, cmd::del::help),
            Command::Recover => ("recover", cmd::recover::ABOUT, cmd::recover::help),
            Command::Quiesce => ("quiesce", cmd::quiesce::ABOUT, cmd::quiesce::help),
            Command::Resize => ("resize", cmd::resize::ABOUT, cmd::resize::help),
            Command::List => ("list", cmd::list::ABOUT, cmd::list::help),
            Command::Features => ("features", cmd::features::ABOUT, cmd::features::help),
            Command::Help => ("help", cmd::help::ABOUT, cmd::help::help),
            Command::Version => ("version", cmd::help::VERSION_ABOUT, cmd::help::version_help),
        };
        Entry { name, about, help }
    }

    /// Runs the command with the words after its name.
    fn run(self, args: &[String]) -> Result<(), Failure> {
        match self {
            Command::Add => cmd::add::run(args),
            Command::Del => cmd::del::run(args),
            Command::Recover => cmd::recover::run(args),
            Command::Quiesce => cmd::quiesce::run(args),
            Command::Resize => cmd::resize::run(args),
            Command::List => cmd::list::run(args),
            Command::Features => cmd::features::run(args),
            Command::Help => cmd::help::run(args, &Command::ALL.map(Command::entry)),
            Command::Version => cmd::help::run_version(args),
        }
    }
}

/// The exit code of a failure: 2 for bad usage, 1 for anything else.
fn exit_code(f: &Failure) -> u8 {
    match f {
        Failure::Usage(_) => 2,
        Failure::NoDevice(_) | Failure::Runtime(_) | Failure::Quiet => 1,
    }
}

/// Runs the command line (without the program name); the failure with the prefix its message
/// takes (`ublk add`, or `ublk` when no command was recognised).
fn run(args: &[String]) -> Result<(), (String, Failure)> {
    let Some((word, rest)) = args.split_first() else {
        return Command::Help.run(&[]).map_err(|f| ("ublk".into(), f));
    };
    let Some(command) = Command::from_word(word) else {
        let names: Vec<_> = Command::ALL.map(|c| c.entry().name).to_vec();
        return Err((
            "ublk".into(),
            Failure::Usage(Usage(format!(
                "unknown command '{word}' (commands: {})",
                names.join(", ")
            ))),
        ));
    };
    command.run(rest).map_err(|f| (format!("ublk {word}"), f))
}

fn main() -> ExitCode {
    // Arguments that are not UTF-8 are refused by position rather than panicking in
    // `std::env::args`.
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(raw) => {
                eprint_line(&format!(
                    "ublk: argument {i} ({}) is not valid UTF-8",
                    raw.to_string_lossy()
                ));
                return ExitCode::from(2);
            }
        }
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((prefix, f)) => {
            if !matches!(f, Failure::Quiet) {
                eprint_line(&format!("{prefix}: {}", f.message()));
            }
            ExitCode::from(exit_code(&f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_command_is_named_and_helped() {
        let overview = cmd::help::overview(&Command::ALL.map(Command::entry));
        for c in Command::ALL {
            let e = c.entry();
            assert_eq!(Command::from_word(e.name), Some(c));
            assert!(overview.contains(e.about), "{}", e.name);
            let help = (e.help)();
            assert!(
                help.starts_with(&format!("Usage: ublk {}", e.name)),
                "{help}"
            );
            assert!(help.contains("-h, --help"), "{help}");
        }
        assert_eq!(Command::from_word("--help"), Some(Command::Help));
        assert_eq!(Command::from_word("-V"), Some(Command::Version));
        assert_eq!(Command::from_word("Add"), None);
    }

    #[test]
    fn help_for_every_command_lists_every_option() {
        fn check<K>(help: String, opts: &[support::options::Opt<K>]) {
            for o in opts {
                assert!(help.contains(&o.synopsis()), "{}", o.synopsis());
            }
        }
        check(cmd::add::help(), cmd::add::OPTS);
        check(cmd::del::help(), cmd::del::OPTS);
        check(cmd::recover::help(), cmd::recover::OPTS);
        check(cmd::quiesce::help(), cmd::quiesce::OPTS);
        check(cmd::resize::help(), cmd::resize::OPTS);
        check(cmd::list::help(), cmd::list::OPTS);
        check(cmd::features::help(), cmd::features::OPTS);
    }

    #[test]
    fn usage_errors_before_any_device_work() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["frobnicate"], "ublk", "unknown command 'frobnicate'"),
            (
                &["help", "frobnicate"],
                "ublk help",
                "no command 'frobnicate'",
            ),
            (
                &["help", "add", "x"],
                "ublk help",
                "unexpected argument 'x'",
            ),
            (
                &["--version", "x"],
                "ublk --version",
                "unexpected argument 'x'",
            ),
            (&["list", "--bogus"], "ublk list", "unknown option --bogus"),
            (&["list", "-n", "x"], "ublk list", "'x' is not a device id"),
            (
                &["features", "-n", "1"],
                "ublk features",
                "unknown option -n",
            ),
            (&["add"], "ublk add", "-t, --type is required"),
            (&["del"], "ublk del", "which device?"),
        ];
        for (line, prefix, want) in cases {
            match run(&strings(line)) {
                Err((p, Failure::Usage(u))) => {
                    assert_eq!(p, *prefix, "{line:?}");
                    assert!(u.0.contains(want), "{line:?}: {}", u.0);
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
