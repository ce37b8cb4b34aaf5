//! `ublk add`: create a device and serve it, in the background (a daemon that outlives the
//! command) or in the foreground.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ublk::signal::{TerminationSignals, signal_name};
use ublk::sys::abi::io::{UBLK_IO_BUF_BITS, UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH};
use ublk::{DataPath, DevState, Device, DeviceBuilder, Recovery};

use crate::args::{self, Opt, Parsed, Usage};
use crate::state::{self, Record};
use crate::target::{Kind, Launch, Started, TargetSpec};
use crate::{Failure, MAX_DEVICE_ID, daemon, human_size};

/// `ublk add`'s options.
pub const OPTS: &[Opt] = &[
    Opt {
        short: Some('t'),
        long: "type",
        value: Some("TARGET"),
        help: "null (reads zeroes, drops writes), mem (a RAM disk) or loop (a file); required",
    },
    Opt {
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help: "the device id: /dev/ublkbID (default: the driver picks a free one)",
    },
    Opt {
        short: Some('q'),
        long: "queues",
        value: Some("N"),
        help: "hardware queues, one server thread each (default 1; at most one per CPU)",
    },
    Opt {
        short: Some('d'),
        long: "depth",
        value: Some("N"),
        help: "requests in flight per queue, 1..=4096 (default 128)",
    },
    Opt {
        short: Some('s'),
        long: "size",
        value: Some("SIZE"),
        help: "device size, a multiple of 512 (null: default 250G; mem: required; loop: default the file's)",
    },
    Opt {
        short: Some('f'),
        long: "file",
        value: Some("FILE"),
        help: "loop: the regular file or block device to serve (required for loop)",
    },
    Opt {
        short: None,
        long: "buffered",
        value: None,
        help: "loop: use the page cache instead of direct I/O",
    },
    Opt {
        short: None,
        long: "ro",
        value: None,
        help: "read-only device (loop opens its file read-only)",
    },
    Opt {
        short: None,
        long: "logical-block-size",
        value: Some("N"),
        help: "512, 1024, 2048 or 4096 (default: the file's for loop, else 512)",
    },
    Opt {
        short: None,
        long: "max-io-size",
        value: Some("SIZE"),
        help: "largest request, a multiple of the page size up to 32M (default 512K)",
    },
    Opt {
        short: None,
        long: "recovery",
        value: Some("[MODE]"),
        help: "if the server dies, the device waits for `ublk recover` instead of going away. MODE: \
               reissue (default: I/O waits, and the dead server's requests are sent again), \
               queue (I/O waits, the dead server's requests fail) or fail-io (I/O fails until \
               recovery; Linux 6.13+). Not for mem, whose data dies with its server",
    },
    Opt {
        short: None,
        long: "data-path",
        value: Some("PATH"),
        help: "how request data moves: auto (default: the best the kernel and the target allow), \
               zero-copy (the driver lends the request's pages to the target's own I/O; Linux \
               6.16+), user-copy (the target copies to and from /dev/ublkcN; Linux 6.5+) or \
               copy (through a buffer of the server; every kernel)",
    },
    Opt {
        short: None,
        long: "foreground",
        value: None,
        help: "serve in this process until Ctrl-C, SIGTERM or `ublk del`, instead of a daemon",
    },
];

/// `ublk add`'s command line, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddOptions {
    /// The target.
    pub target: TargetSpec,
    /// `-n`.
    pub id: Option<u32>,
    /// `-q`.
    pub queues: Option<u16>,
    /// `-d`.
    pub depth: Option<u16>,
    /// `--max-io-size`, in bytes.
    pub max_io_size: Option<u32>,
    /// `--recovery`.
    pub recovery: Recovery,
    /// `--foreground`.
    pub foreground: bool,
}

impl AddOptions {
    /// Checks the command line; relative file paths are made absolute against `cwd`, since
    /// the daemon serves from `/`.
    pub fn from_args(p: &Parsed, cwd: &Path) -> Result<AddOptions, Usage> {
        let kind = match p.value("type") {
            None => {
                return Err(Usage(
                    "-t, --type is required: null, mem or loop (see ublk add --help)".into(),
                ));
            }
            Some(t) => Kind::from_name(t).ok_or_else(|| {
                Usage(format!("--type: '{t}' is not a target (null, mem or loop)"))
            })?,
        };
        let page = ublk::sys::sys::page_size() as u64;
        let file = p.value("file").map(|f| {
            if f.is_empty() {
                Err(Usage("--file: the path is empty".into()))
            } else {
                Ok(cwd.join(f))
            }
        });
        let file = file.transpose()?;
        let target = TargetSpec {
            kind,
            file,
            data_path: p
                .parsed("data-path", |v| match v {
                    "auto" => Ok(None),
                    v => DataPath::from_name(v).map(Some).ok_or_else(|| {
                        format!("'{v}' is not a data path (auto, zero-copy, user-copy or copy)")
                    }),
                })?
                .flatten(),
            size: p.parsed("size", args::sectors)?,
            buffered: p.flag("buffered"),
            read_only: p.flag("ro"),
            logical_block_size: p.parsed("logical-block-size", |v| {
                let n = args::size(v)?;
                if !n.is_power_of_two() || !(512..=page).contains(&n) {
                    return Err(format!(
                        "must be a power of two from 512 to {page} (the page size), got {n}"
                    ));
                }
                Ok(n as u32)
            })?,
        };
        match (kind, &target.file) {
            (Kind::Loop, None) => {
                return Err(Usage("-t loop needs -f, --file FILE".into()));
            }
            (Kind::Null | Kind::Mem, Some(_)) => {
                return Err(Usage(format!(
                    "--file is for -t loop, not -t {}",
                    kind.name()
                )));
            }
            _ => {}
        }
        if kind != Kind::Loop && target.buffered {
            return Err(Usage(format!(
                "--buffered is for -t loop, not -t {}",
                kind.name()
            )));
        }
        if kind == Kind::Mem && target.size.is_none() {
            return Err(Usage("-t mem needs --size (how much RAM to serve)".into()));
        }
        if let (Some(size), Some(lbs)) = (target.size, target.logical_block_size)
            && size % u64::from(lbs) != 0
        {
            return Err(Usage(format!(
                "--size: {size} bytes is not a multiple of the logical block size {lbs}"
            )));
        }
        let recovery = match (p.flag("recovery"), p.value("recovery")) {
            (false, _) => Recovery::Off,
            (true, None) => Recovery::Reissue,
            (true, Some(mode)) => Recovery::from_name(mode)
                .filter(|&m| m != Recovery::Off)
                .ok_or_else(|| {
                    Usage(format!(
                        "--recovery: '{mode}' is not a mode (reissue, queue or fail-io)"
                    ))
                })?,
        };
        if kind == Kind::Mem && recovery != Recovery::Off {
            return Err(Usage(
                "--recovery is not for -t mem: its data lives in the server and dies with it (for a RAM disk that survives its server, use -t loop -f on a file in /dev/shm)".into(),
            ));
        }
        let max_io = 1u64 << UBLK_IO_BUF_BITS;
        Ok(AddOptions {
            target,
            id: p.parsed("number", |v| args::number(v, "device id", 0..=MAX_DEVICE_ID))?,
            queues: p.parsed("queues", |v| {
                args::number(v, "queue count", 1..=u64::from(UBLK_MAX_NR_QUEUES))
            })?,
            depth: p.parsed("depth", |v| {
                args::number(v, "queue depth", 1..=u64::from(UBLK_MAX_QUEUE_DEPTH))
            })?,
            max_io_size: p.parsed("max-io-size", |v| {
                let n = args::size(v)?;
                if n % page != 0 || !(page..=max_io).contains(&n) {
                    return Err(format!(
                        "must be a multiple of the page size ({page}) from {page} to {max_io}, got {n}"
                    ));
                }
                Ok(n as u32)
            })?,
            recovery,
            foreground: p.flag("foreground"),
        })
    }

    fn builder(&self) -> DeviceBuilder {
        let mut b = Device::builder()
            .control_path(crate::control_path())
            .recovery(self.recovery);
        if let Some(id) = self.id {
            b = b.id(id);
        }
        if let Some(q) = self.queues {
            b = b.queues(q);
        }
        if let Some(d) = self.depth {
            b = b.depth(d);
        }
        if let Some(m) = self.max_io_size {
            b = b.max_io_bytes(m);
        }
        b
    }
}

/// `ublk add`.
pub fn run(p: &Parsed) -> Result<(), Failure> {
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Runtime(format!("cannot read the current directory: {e}")))?;
    let options = AddOptions::from_args(p, &cwd)?;
    serve("add", options.foreground, &|run_dir| {
        Served::start(&options, run_dir)
    })
}

/// Gets a device from `start` and serves it: in this process until a signal or `ublk del`
/// (`foreground`), else in a daemon once this process has reported that it is live.
pub fn serve(command: &str, foreground: bool, start: daemon::Start<'_>) -> Result<(), Failure> {
    if !foreground {
        return daemon::run(command, start);
    }
    let served = start(Path::new(state::RUN_DIR))?;
    for w in &served.warnings {
        eprintln!("ublk {command}: warning: {w}");
    }
    crate::print(&format!("{}\n", served.summary));
    crate::print("serving; Ctrl-C (or SIGTERM, or ublk del) stops it\n");
    served.serve(&|line| crate::print(&format!("{line}\n")))
}

/// A device being served by this process, and what it needs to stop cleanly.
pub struct Served {
    device: Device,
    signals: TerminationSignals,
    record: Record,
    run_dir: PathBuf,
    /// One line: `device 3: /dev/ublkb3 (loop /srv/disk.img, 1 GiB, ...)`.
    pub summary: String,
    /// Things the user should know (printed by whoever talks to the user).
    pub warnings: Vec<String>,
}

impl Served {
    /// Starts the device and records it in `run_dir`.
    pub fn start(options: &AddOptions, run_dir: &Path) -> Result<Served, Failure> {
        Served::launch(&options.target, options.builder(), Launch::Add, run_dir)
    }

    /// Takes over device `id`, whose server died, with the target its record in `run_dir`
    /// describes, and records the new server there.
    pub fn recover(id: u32, run_dir: &Path) -> Result<Served, Failure> {
        crate::device_info(&mut crate::open_control()?, id)?;
        let record = state::read(run_dir, id)
            .map_err(|e| Failure::Runtime(format!("cannot read device {id}'s record: {e}")))?
            .ok_or_else(|| {
                Failure::Runtime(format!(
                    "device {id} has no record in {}: it was not started by `ublk add`, so its target is unknown (recover it with the program that served it)",
                    run_dir.display()
                ))
            })?;
        let builder = Device::builder().control_path(crate::control_path());
        Served::launch(&record.target, builder, Launch::Recover(id), run_dir)
    }

    fn launch(
        target: &TargetSpec,
        builder: DeviceBuilder,
        launch: Launch,
        run_dir: &Path,
    ) -> Result<Served, Failure> {
        // Before any queue thread exists, so that they inherit the mask and the signals
        // reach `serve` instead of killing the server with its device half served.
        let signals = TerminationSignals::block()
            .map_err(|e| Failure::Runtime(format!("blocking SIGINT/SIGTERM/SIGHUP: {e}")))?;
        let Started {
            device,
            direct_io,
            mut warnings,
        } = target.start(builder, launch)?;
        let record = Record {
            id: device.id(),
            pid: std::process::id() as i32,
            // The path the device runs on, for `ublk recover` and `list`.
            target: TargetSpec {
                data_path: Some(device.data_path()),
                ..target.clone()
            },
            direct_io,
            capacity: Some(device.size_limit()),
        };
        if let Err(e) = state::write(run_dir, &record) {
            warnings.push(format!("{e}; ublk list will not show its target"));
        }
        let summary = summary(&device, &record);
        Ok(Served {
            device,
            signals,
            record,
            run_dir: run_dir.to_path_buf(),
            summary,
            warnings,
        })
    }

    /// Serves until SIGINT, SIGTERM or SIGHUP, or until the device is stopped from outside
    /// (`ublk del`); then stops it and removes its record. `say` is told why it stopped and
    /// what it served; an error stopping is returned.
    pub fn serve(self, say: &dyn Fn(&str)) -> Result<(), Failure> {
        let id = self.device.id();
        loop {
            if let Some(sig) = self.signals.wait(Duration::from_millis(200)) {
                say(&format!("{}: stopping device {id}", signal_name(sig)));
                break;
            }
            if !self.device.is_running() {
                say(&format!("device {id} was stopped from outside"));
                break;
            }
        }
        let s = self.device.stats();
        let stopped = self.device.stop();
        if waits_for_recovery(id) {
            // Quiesced (QUIESCE_DEV): the record tells `ublk recover` what to serve.
            say(&format!(
                "device {id} waits for a new server: ublk recover -n {id}"
            ));
        } else {
            state::remove(&self.run_dir, self.record.id, self.record.pid);
        }
        stopped?;
        say(&format!(
            "device {id} stopped; served {} reads, {} writes, {} flushes, {} discards, {} write-zeroes; {} errors",
            s.reads, s.writes, s.flushes, s.discards, s.write_zeroes, s.errors
        ));
        Ok(())
    }
}

/// True if device `id` still exists, can be recovered, and was not stopped: its server left
/// it (QUIESCE_DEV) for another to take over.
fn waits_for_recovery(id: u32) -> bool {
    let Ok(info) = crate::open_control().and_then(|mut c| Ok(c.info(id)?)) else {
        return false;
    };
    Recovery::of(info.flags()) != Recovery::Off && info.state() != Ok(DevState::Dead)
}

fn summary(device: &Device, record: &Record) -> String {
    let info = device.info();
    let t = &record.target;
    let mut what = t.kind.name().to_string();
    if let Some(f) = &t.file {
        what += &format!(" {}", f.display());
    }
    if let Some(direct) = record.direct_io {
        what += if direct {
            ", direct I/O"
        } else {
            ", buffered I/O"
        };
    }
    if t.read_only {
        what += ", read-only";
    }
    let size = std::fs::read_to_string(format!("/sys/block/ublkb{}/size", device.id()))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|sectors| format!(", {}", human_size(sectors * 512)))
        .unwrap_or_default();
    format!(
        "device {}: {} ({what}{size}, {} queue{} of depth {}, {}, server pid {})",
        device.id(),
        device.block_dev_path().display(),
        info.queues(),
        if info.queues() == 1 { "" } else { "s" },
        info.queue_depth(),
        device.data_path(),
        record.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Result<AddOptions, Usage> {
        let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
        let p = args::parse("add", OPTS, &args)?;
        AddOptions::from_args(&p, Path::new("/work"))
    }

    #[test]
    fn every_flag() {
        let o = parse(&[
            "-t",
            "loop",
            "-n",
            "7",
            "-q",
            "2",
            "-d",
            "64",
            "--size",
            "1G",
            "-f",
            "disk.img",
            "--buffered",
            "--ro",
            "--logical-block-size",
            "4096",
            "--max-io-size",
            "1M",
            "--recovery",
            "queue",
            "--data-path",
            "user-copy",
            "--foreground",
        ])
        .expect("valid");
        assert_eq!(
            o,
            AddOptions {
                target: TargetSpec {
                    kind: Kind::Loop,
                    file: Some(PathBuf::from("/work/disk.img")),
                    data_path: Some(DataPath::UserCopy),
                    size: Some(1 << 30),
                    buffered: true,
                    read_only: true,
                    logical_block_size: Some(4096),
                },
                id: Some(7),
                queues: Some(2),
                depth: Some(64),
                max_io_size: Some(1 << 20),
                recovery: Recovery::Queue,
                foreground: true,
            }
        );
        let o = parse(&["--type=null"]).expect("valid");
        assert_eq!(o.target.kind, Kind::Null);
        assert_eq!(
            (o.id, o.queues, o.depth, o.max_io_size),
            (None, None, None, None)
        );
        assert!(!o.foreground && !o.target.read_only);
        let o = parse(&["-t", "mem", "-s", "64M", "--logical-block-size=4K"]).expect("valid");
        assert_eq!(o.target.size, Some(64 << 20));
        assert_eq!(o.target.logical_block_size, Some(4096));
        let o = parse(&["-t", "loop", "-f", "/abs/x"]).expect("valid");
        assert_eq!(o.target.file, Some(PathBuf::from("/abs/x")));
        assert_eq!(o.recovery, Recovery::Off);
        for (line, want) in [
            (&["-t", "null", "--recovery"][..], Recovery::Reissue),
            (&["--recovery", "-t", "null"], Recovery::Reissue),
            (&["-t", "null", "--recovery", "reissue"], Recovery::Reissue),
            (&["-t", "null", "--recovery=fail-io"], Recovery::FailIo),
            (&["--recovery", "queue", "-t", "null"], Recovery::Queue),
        ] {
            assert_eq!(parse(line).expect("valid").recovery, want, "{line:?}");
        }
    }

    #[test]
    fn every_error() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[],
                "-t, --type is required: null, mem or loop (see ublk add --help)",
            ),
            (
                &["-t", "tape"],
                "--type: 'tape' is not a target (null, mem or loop)",
            ),
            (&["-t", "loop"], "-t loop needs -f, --file FILE"),
            (&["-t", "loop", "-f", ""], "--file: the path is empty"),
            (
                &["-t", "null", "-f", "x"],
                "--file is for -t loop, not -t null",
            ),
            (
                &["-t", "mem", "-s", "1M", "-f", "x"],
                "--file is for -t loop, not -t mem",
            ),
            (
                &["-t", "null", "--buffered"],
                "--buffered is for -t loop, not -t null",
            ),
            (
                &["-t", "mem"],
                "-t mem needs --size (how much RAM to serve)",
            ),
            (
                &["-t", "null", "--size", "1000"],
                "--size: 1000 bytes is not a multiple of 512 (the kernel counts 512-byte sectors)",
            ),
            (&["-t", "null", "--size", "0"], "--size: must not be 0"),
            (
                &["-t", "null", "--size", "1x"],
                "--size: '1x' is not a size (bytes, or a number with K, M, G or T)",
            ),
            (
                &[
                    "-t",
                    "null",
                    "--size",
                    "1536",
                    "--logical-block-size",
                    "1024",
                ],
                "--size: 1536 bytes is not a multiple of the logical block size 1024",
            ),
            (
                &["-t", "null", "--logical-block-size", "1000"],
                "--logical-block-size: must be a power of two from 512 to 4096 (the page size), got 1000",
            ),
            (
                &["-t", "null", "--logical-block-size", "256"],
                "--logical-block-size: must be a power of two from 512 to 4096 (the page size), got 256",
            ),
            (
                &["-t", "null", "--max-io-size", "5000"],
                "--max-io-size: must be a multiple of the page size (4096) from 4096 to 33554432, got 5000",
            ),
            (
                &["-t", "null", "--max-io-size", "64M"],
                "--max-io-size: must be a multiple of the page size (4096) from 4096 to 33554432, got 67108864",
            ),
            (
                &["-t", "null", "-n", "x"],
                "--number: 'x' is not a device id (a whole number)",
            ),
            (
                &["-t", "null", "-n", "1048576"],
                "--number: device id must be 0..=1048575, got 1048576",
            ),
            (
                &["-t", "null", "-q", "0"],
                "--queues: queue count must be 1..=4096, got 0",
            ),
            (
                &["-t", "null", "-q", "4097"],
                "--queues: queue count must be 1..=4096, got 4097",
            ),
            (
                &["-t", "null", "-d", "0"],
                "--depth: queue depth must be 1..=4096, got 0",
            ),
            (
                &["-t", "null", "-d", "70000"],
                "--depth: queue depth must be 1..=4096, got 70000",
            ),
            (&["-t", "null", "-d"], "-d, --depth N needs a value (N)"),
            (&["-t", "null", "--ro=1"], "--ro takes no value"),
            (
                &["-t", "null", "--recovery", "off"],
                "--recovery: 'off' is not a mode (reissue, queue or fail-io)",
            ),
            (
                &["-t", "null", "--recovery="],
                "--recovery: '' is not a mode (reissue, queue or fail-io)",
            ),
            (
                &["-t", "mem", "-s", "1M", "--recovery"],
                "--recovery is not for -t mem: its data lives in the server and dies with it (for a RAM disk that survives its server, use -t loop -f on a file in /dev/shm)",
            ),
            (
                &["-t", "null", "--bogus"],
                "unknown option --bogus (see ublk add --help)",
            ),
            (
                &["-t", "null", "extra"],
                "unexpected argument 'extra' (see ublk add --help)",
            ),
        ];
        if ublk::sys::sys::page_size() != 4096 {
            return; // the messages above name a 4 KiB page
        }
        for (line, want) in cases {
            assert_eq!(parse(line), Err(Usage(want.to_string())), "{line:?}");
        }
    }
}
