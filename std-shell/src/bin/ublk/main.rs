//! `ublk`: create, list and delete ublk block devices from the command line.
//!
//! ```text
//! sudo modprobe ublk_drv
//! sudo ublk add -t loop -f disk.img     # prints: device 0: /dev/ublkb0 (...)
//! sudo ublk list
//! sudo ublk del -n 0
//! ```
//!
//! Every error is one line naming what was wrong; the exit code is 2 for bad usage and 1 for
//! anything else that failed.

mod add;
mod args;
mod daemon;
mod del;
#[cfg(test)]
mod fuzz_tests;
mod json;
mod list;
mod log;
mod quiesce;
mod recover;
mod resize;
mod state;
mod target;

use std::io::Write;
use std::process::ExitCode;

use args::{HELP, Opt, Usage};
use json::Value;

/// The largest device id the driver hands out (`UBLK_MAX_UBLKS - 1`: ids are minor numbers).
pub const MAX_DEVICE_ID: u64 = (1 << 20) - 1;

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or values (exit code 2).
    Usage(Usage),
    /// Device `id` does not exist (exit code 1).
    NoDevice(u32),
    /// Anything else (exit code 1).
    Runtime(String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> i32 {
        match self {
            Failure::Usage(_) => 2,
            Failure::NoDevice(_) | Failure::Runtime(_) => 1,
        }
    }

    /// The one-line message.
    pub fn message(&self) -> String {
        match self {
            Failure::Usage(u) => u.0.clone(),
            Failure::NoDevice(id) => format!("device {id} does not exist"),
            Failure::Runtime(m) => m.clone(),
        }
    }
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Failure {
        Failure::Usage(u)
    }
}

impl From<ublk::Error> for Failure {
    fn from(e: ublk::Error) -> Failure {
        match e {
            // Settings the library refused before asking the kernel: the user's to fix.
            ublk::Error::InvalidArgument { .. } => Failure::Usage(Usage(e.to_string())),
            e => Failure::Runtime(e.to_string()),
        }
    }
}

/// The commands, with their options and a line of help.
const COMMANDS: &[(&str, &[Opt], &str, &str)] = &[
    (
        "add",
        add::OPTS,
        "-t null|mem|loop [options]",
        "create a device and serve it (in a daemon unless --foreground); prints its id and /dev/ublkbN once it is live",
    ),
    (
        "del",
        del::OPTS,
        "-n ID | -a",
        "stop and delete a device, or all of them; bounded by --timeout",
    ),
    (
        "recover",
        recover::OPTS,
        "-n ID [--foreground]",
        "a new server for a device created with --recovery whose server died or was quiesced: the target from its record, the same /dev/ublkbN",
    ),
    (
        "quiesce",
        quiesce::OPTS,
        "-n ID",
        "hand a device to a future server (upgrade): I/O waits, its server exits, `ublk recover` takes over (kernels with QUIESCE)",
    ),
    (
        "resize",
        resize::OPTS,
        "-n ID --size SIZE",
        "change a live device's size, within what its target holds (kernels with UPDATE_SIZE)",
    ),
    (
        "list",
        list::OPTS,
        "[-n ID] [--json]",
        "show devices: state, size, block size, queues, flags, target, backing file, server",
    ),
    (
        "features",
        FEATURES_OPTS,
        "[--json]",
        "the running kernel's ublk features, by name, and which this build uses",
    ),
    (
        "help",
        &[],
        "[COMMAND]",
        "this text, or a command's options",
    ),
    (
        "version",
        &[],
        "",
        "print the version (also: ublk --version)",
    ),
];

const FEATURES_OPTS: &[Opt] = &[Opt {
    short: None,
    long: "json",
    value: None,
    help: "print JSON: {\"kernel\": bits, \"features\": [{name, bit, kernel, build}], \"unknown_bits\"}",
}];

fn version() -> String {
    format!("ublk {}\n", env!("CARGO_PKG_VERSION"))
}

fn main_help() -> String {
    let mut s = format!(
        "ublk {}: userspace block devices with the Linux ublk driver\n\nUsage: ublk <command> [options]\n\nCommands:\n",
        env!("CARGO_PKG_VERSION")
    );
    for (name, _, _, about) in COMMANDS {
        s += &format!("  {name:<10}{about}\n");
    }
    s += "\nRun `ublk <command> --help` for a command's options. Needs root and the driver\n\
          (`modprobe ublk_drv`). Servers started by `ublk add` record their target in\n\
          /run/ublk/<id>.json. Exit codes: 0 success, 1 failure, 2 bad usage.\n";
    s
}

fn command_help(name: &str) -> Option<String> {
    let (name, opts, synopsis, about) = COMMANDS.iter().find(|c| c.0 == name)?;
    let mut s = format!("Usage: ublk {name} {synopsis}\n\n{about}.\n");
    if !opts.is_empty() {
        s += "\nOptions:\n";
    }
    for o in opts.iter().chain([&HELP]) {
        s += &format!("  {:<30}{}\n", o.synopsis(), o.help);
    }
    if *name == "add" {
        s += "\nSIZE: bytes, or a number with K, M, G or T (binary: 1G = 1073741824).\n";
    }
    Some(s)
}

/// Writes to stdout. A closed pipe (`ublk list | head -1`) is not an error worth a panic:
/// what was asked for is done, only the reader left.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The control device: `/dev/ublk-control`, or `$UBLK_CONTROL` (a driver's node elsewhere,
/// e.g. in a container).
pub fn control_path() -> std::path::PathBuf {
    std::env::var_os("UBLK_CONTROL")
        .unwrap_or_else(|| ublk::Controller::DEFAULT_PATH.into())
        .into()
}

/// The control device opened, or the error that says what to do (load the driver, be root).
pub fn open_control() -> Result<ublk::Controller, Failure> {
    Ok(ublk::Controller::open_path(control_path())?)
}

/// GET_DEV_INFO for device `id`; a device that does not exist is [`Failure::NoDevice`].
pub fn device_info(ctl: &mut ublk::Controller, id: u32) -> Result<ublk::DeviceInfo, Failure> {
    ctl.info(id).map_err(|e| match e.errno() {
        Some(ublk::sys::Errno::ENODEV) => Failure::NoDevice(id),
        _ => e.into(),
    })
}

/// `1 GiB`, `1.5 MiB`, `4096 B`: sizes for people.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 || bytes % (1u64 << (10 * unit)) == 0 {
        format!("{} {}", bytes >> (10 * unit), UNITS[unit])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

fn features(p: &args::Parsed) -> Result<(), Failure> {
    let kernel = open_control()?.features()?;
    let report = ublk::feature_report(kernel);
    if p.flag("json") {
        let v = Value::Object(vec![
            ("kernel".into(), Value::num(kernel.bits())),
            (
                "features".into(),
                Value::Array(
                    report
                        .iter()
                        .map(|f| {
                            Value::Object(vec![
                                ("name".into(), Value::str(f.name)),
                                ("bit".into(), Value::num(f.feature.bits())),
                                ("kernel".into(), Value::Bool(f.kernel)),
                                ("build".into(), Value::Bool(f.build)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("unknown_bits".into(), Value::num(kernel.unknown_bits())),
        ]);
        print(&(v.pretty() + "\n"));
        return Ok(());
    }
    let yes_no = |b| if b { "yes" } else { "no" };
    let mut s = format!("{:<24} {:<7} this build\n", "feature", "kernel");
    for f in &report {
        s += &format!(
            "{:<24} {:<7} {}\n",
            f.name,
            yes_no(f.kernel),
            yes_no(f.build)
        );
    }
    if kernel.unknown_bits() != 0 {
        s += &format!(
            "bits this build cannot name: {:#x}\n",
            kernel.unknown_bits()
        );
    }
    print(&s);
    Ok(())
}

/// Runs the command line (without the program name). `Ok(())` printed what was asked.
fn run(args: &[String]) -> Result<(), (String, Failure)> {
    let Some((command, rest)) = args.split_first() else {
        print(&main_help());
        return Ok(());
    };
    let command = command.as_str();
    let fail = |f: Failure| (command.to_string(), f);
    match command {
        "-h" | "--help" | "help" => {
            let text = match rest {
                [] => main_help(),
                [name] => command_help(name).ok_or_else(|| {
                    fail(Failure::Usage(Usage(format!(
                        "no command '{name}' (see ublk help)"
                    ))))
                })?,
                [_, extra, ..] => {
                    return Err(fail(Failure::Usage(Usage(format!(
                        "unexpected argument '{extra}'"
                    )))));
                }
            };
            print(&text);
            return Ok(());
        }
        "-V" | "--version" | "version" => {
            if let Some(extra) = rest.first() {
                return Err(fail(Failure::Usage(Usage(format!(
                    "unexpected argument '{extra}'"
                )))));
            }
            print(&version());
            return Ok(());
        }
        _ => {}
    }
    let Some((_, opts, _, _)) = COMMANDS.iter().find(|c| c.0 == command) else {
        return Err((
            "ublk".into(),
            Failure::Usage(Usage(format!(
                "unknown command '{command}' (commands: {})",
                COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            ))),
        ));
    };
    let parsed = args::parse(command, opts, rest).map_err(|u| fail(u.into()))?;
    if parsed.flag("help") {
        print(&command_help(command).unwrap_or_default());
        return Ok(());
    }
    match command {
        "add" => add::run(&parsed),
        "del" => del::run(&parsed),
        "recover" => recover::run(&parsed),
        "quiesce" => quiesce::run(&parsed),
        "resize" => resize::run(&parsed),
        "list" => list::run(&parsed),
        "features" => features(&parsed),
        _ => unreachable!("every command in COMMANDS is dispatched"),
    }
    .map_err(fail)
}

fn main() -> ExitCode {
    // Arguments that are not UTF-8 are refused by position rather than panicking in
    // `std::env::args`.
    let mut args = Vec::new();
    for (i, a) in std::env::args_os().enumerate().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(raw) => {
                eprintln!(
                    "ublk: argument {i} ({}) is not valid UTF-8",
                    raw.to_string_lossy()
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((command, f)) => {
            let prefix = if command == "ublk" {
                "ublk".to_string()
            } else {
                format!("ublk {command}")
            };
            eprintln!("{prefix}: {}", f.message());
            ExitCode::from(f.code() as u8)
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
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(250 << 30), "250 GiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size(3 << 40), "3 TiB");
        assert_eq!(human_size(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn help_for_every_command_lists_every_option() {
        assert!(main_help().contains("add"));
        for (name, opts, _, _) in COMMANDS {
            let help = command_help(name).expect("help");
            for o in opts.iter() {
                assert!(help.contains(&o.synopsis()), "{name}: {}", o.synopsis());
            }
            assert!(help.contains("--help"));
        }
    }

    #[test]
    fn usage_errors_before_any_device_work() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["frobnicate"], "ublk", "unknown command 'frobnicate'"),
            (&["help", "frobnicate"], "help", "no command 'frobnicate'"),
            (&["help", "add", "x"], "help", "unexpected argument 'x'"),
            (&["--version", "x"], "--version", "unexpected argument 'x'"),
            (&["list", "--bogus"], "list", "unknown option --bogus"),
            (&["list", "-n", "x"], "list", "'x' is not a device id"),
            (&["features", "-n", "1"], "features", "unknown option -n"),
            (&["add"], "add", "-t, --type is required"),
            (&["del"], "del", "which device?"),
        ];
        for (line, command, want) in cases {
            match run(&strings(line)) {
                Err((c, Failure::Usage(u))) => {
                    assert_eq!(c, *command, "{line:?}");
                    assert!(u.0.contains(want), "{line:?}: {}", u.0);
                }
                other => panic!("{line:?}: {other:?}"),
            }
        }
    }
}
