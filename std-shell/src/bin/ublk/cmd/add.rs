//! `ublk add`: create a device and serve it, in the background (a daemon that outlives the
//! command) or in the foreground.

use std::path::{Path, PathBuf};

use ublk::backend::NbdAddress;
use ublk::{DataPath, Device, DeviceBuilder, Recovery, rules};

use crate::server::target::{Kind, NbdSpec, TargetSpec};
use crate::server::{self, Server};
use crate::support::control::control_path;
use crate::support::failure::Failure;
use crate::support::options::{self, Opt, Parsed, Usage};

/// `ublk add`'s synopsis and what it does, for help.
pub const SYNOPSIS: &str = "-t null|mem|loop|nbd [options]";
/// What `ublk add` does.
pub const ABOUT: &str = "create a device and serve it (in a daemon unless --foreground); prints its id and /dev/ublkbN once it is live";

/// `ublk add`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOpt {
    /// `-t, --type`.
    Type,
    /// `-n, --number`.
    Number,
    /// `-q, --queues`.
    Queues,
    /// `-d, --depth`.
    Depth,
    /// `-s, --size`.
    Size,
    /// `-f, --file`.
    File,
    /// `--buffered`.
    Buffered,
    /// `--ro`.
    ReadOnly,
    /// `--logical-block-size`.
    LogicalBlockSize,
    /// `--max-io-size`.
    MaxIoSize,
    /// `--recovery`.
    Recovery,
    /// `--data-path`.
    DataPath,
    /// `--host`.
    Host,
    /// `--port`.
    Port,
    /// `--socket`.
    Socket,
    /// `--export`.
    Export,
    /// `--connections`.
    Connections,
    /// `--reconnect-limit`.
    ReconnectLimit,
    /// `--foreground`.
    Foreground,
}

/// How long a lost NBD connection may take to come back with `--recovery`, by default.
const DEFAULT_RECONNECT_SECS: u64 = 60;

/// `ublk add`'s options.
pub const OPTS: &[Opt<AddOpt>] = &[
    Opt {
        key: AddOpt::Type,
        short: Some('t'),
        long: "type",
        value: Some("TARGET"),
        help: "null (drops writes), mem (a RAM disk), loop (a file) or nbd (an NBD server's export); required",
    },
    options::device_opt(
        AddOpt::Number,
        "the device id: /dev/ublkbID (default: the driver picks a free one)",
    ),
    Opt {
        key: AddOpt::Queues,
        short: Some('q'),
        long: "queues",
        value: Some("N"),
        help: "hardware queues, one server thread each (default 1; at most one per CPU)",
    },
    Opt {
        key: AddOpt::Depth,
        short: Some('d'),
        long: "depth",
        value: Some("N"),
        help: "requests in flight per queue, 1..=4096 (default 128)",
    },
    Opt {
        key: AddOpt::Size,
        short: Some('s'),
        long: "size",
        value: Some("SIZE"),
        help: "device size, a multiple of 512 (null: default 250G; mem: required; loop: default the file's)",
    },
    Opt {
        key: AddOpt::File,
        short: Some('f'),
        long: "file",
        value: Some("FILE"),
        help: "loop: the regular file or block device to serve (required for loop)",
    },
    Opt {
        key: AddOpt::Buffered,
        short: None,
        long: "buffered",
        value: None,
        help: "loop: use the page cache instead of direct I/O",
    },
    Opt {
        key: AddOpt::ReadOnly,
        short: None,
        long: "ro",
        value: None,
        help: "read-only device (loop opens its file read-only)",
    },
    Opt {
        key: AddOpt::LogicalBlockSize,
        short: None,
        long: "logical-block-size",
        value: Some("N"),
        help: "512, 1024, 2048 or 4096 (default: the file's for loop, else 512)",
    },
    Opt {
        key: AddOpt::MaxIoSize,
        short: None,
        long: "max-io-size",
        value: Some("SIZE"),
        help: "largest request, a multiple of the page size up to 32M (default 512K)",
    },
    Opt {
        key: AddOpt::Recovery,
        short: None,
        long: "recovery",
        value: Some("[MODE]"),
        help: "if the server dies, the device waits for `ublk recover` instead of going away. MODE: \
               reissue (default: I/O waits, and the dead server's requests are sent again), \
               queue (I/O waits, the dead server's requests fail) or fail-io (I/O fails until \
               recovery; Linux 6.13+). Not for mem, whose data dies with its server",
    },
    Opt {
        key: AddOpt::DataPath,
        short: None,
        long: "data-path",
        value: Some("PATH"),
        help: "how request data moves: auto (default: the best the kernel and the target allow), \
               zero-copy (the driver lends the request's pages to the target's own I/O; Linux \
               6.16+), user-copy (the target copies to and from /dev/ublkcN; Linux 6.5+) or \
               copy (through a buffer of the server; every kernel)",
    },
    Opt {
        key: AddOpt::Host,
        short: None,
        long: "host",
        value: Some("HOST"),
        help: "nbd: the NBD server's host name or address (or --socket)",
    },
    Opt {
        key: AddOpt::Port,
        short: None,
        long: "port",
        value: Some("PORT"),
        help: "nbd: the server's TCP port (default 10809)",
    },
    Opt {
        key: AddOpt::Socket,
        short: None,
        long: "socket",
        value: Some("PATH"),
        help: "nbd: the NBD server's Unix socket (instead of --host)",
    },
    Opt {
        key: AddOpt::Export,
        short: None,
        long: "export",
        value: Some("NAME"),
        help: "nbd: the export to serve (default: the server's default export)",
    },
    Opt {
        key: AddOpt::Connections,
        short: None,
        long: "connections",
        value: Some("N"),
        help: "nbd: connections to the server, one per queue (default: -q, else 1); more than one needs an export that allows it (CAN_MULTI_CONN)",
    },
    Opt {
        key: AddOpt::ReconnectLimit,
        short: None,
        long: "reconnect-limit",
        value: Some("SECONDS"),
        help: "nbd with --recovery: how long a lost connection may take to come back, its I/O held meanwhile (default 60); without --recovery a lost connection fails its I/O at once",
    },
    Opt {
        key: AddOpt::Foreground,
        short: None,
        long: "foreground",
        value: None,
        help: "serve in this process until Ctrl-C, SIGTERM or `ublk del`, instead of a daemon",
    },
];

/// `ublk add`'s help.
pub fn help() -> String {
    options::help("add", SYNOPSIS, ABOUT, OPTS)
        + "\nSIZE: bytes, or a number with K, M, G or T (binary: 1G = 1073741824).\n"
}

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

/// The reason a library rule gives, for a message that names the option itself.
fn reason(e: ublk::Error) -> String {
    match e {
        ublk::Error::InvalidArgument { reason, .. } => reason,
        e => e.to_string(),
    }
}

impl AddOptions {
    /// Checks the command line; relative file paths are made absolute against `cwd`, since
    /// the daemon serves from `/`.
    pub fn from_args(p: &Parsed<AddOpt>, cwd: &Path) -> Result<AddOptions, Usage> {
        let kind = match p.value(AddOpt::Type) {
            None => {
                return Err(Usage(
                    "-t, --type is required: null, mem or loop (see ublk add --help)".into(),
                ));
            }
            Some(t) => Kind::from_name(t).ok_or_else(|| {
                Usage(format!("--type: '{t}' is not a target (null, mem or loop)"))
            })?,
        };
        let file = p.value(AddOpt::File).map(|f| {
            if f.is_empty() {
                Err(Usage("--file: the path is empty".into()))
            } else {
                Ok(cwd.join(f))
            }
        });
        let file = file.transpose()?;
        let queues = p.parsed(AddOpt::Queues, |v| {
            options::by_rule(v, "queue count", rules::queues)
        })?;
        let recovery = match (p.flag(AddOpt::Recovery), p.value(AddOpt::Recovery)) {
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
        let nbd = nbd_spec(p, kind, queues, recovery, cwd)?;
        let target = TargetSpec {
            kind,
            file,
            data_path: p
                .parsed(AddOpt::DataPath, |v| match v {
                    "auto" => Ok(None),
                    v => DataPath::from_name(v).map(Some).ok_or_else(|| {
                        format!("'{v}' is not a data path (auto, zero-copy, user-copy or copy)")
                    }),
                })?
                .flatten(),
            size: p.parsed(AddOpt::Size, options::sectors)?,
            buffered: p.flag(AddOpt::Buffered),
            read_only: p.flag(AddOpt::ReadOnly),
            logical_block_size: p.parsed(AddOpt::LogicalBlockSize, |v| {
                let n = options::size(v)?;
                let n = u32::try_from(n).map_err(|_| format!("'{v}' is too large"))?;
                rules::logical_block_size(n).map_err(reason)
            })?,
            nbd,
        };
        match (kind, &target.file) {
            (Kind::Loop, None) => {
                return Err(Usage("-t loop needs -f, --file FILE".into()));
            }
            (Kind::Null | Kind::Mem | Kind::Nbd, Some(_)) => {
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
        if kind == Kind::Nbd && target.size.is_some() {
            return Err(Usage(
                "--size is not for -t nbd: the device is the export's size".into(),
            ));
        }
        if let (Some(size), Some(lbs)) = (target.size, target.logical_block_size)
            && rules::device_size(size, lbs).is_err()
        {
            return Err(Usage(format!(
                "--size: {size} bytes is not a multiple of the logical block size {lbs}"
            )));
        }
        if kind == Kind::Mem && recovery != Recovery::Off {
            return Err(Usage(
                "--recovery is not for -t mem: its data lives in the server and dies with it (for a RAM disk that survives its server, use -t loop -f on a file in /dev/shm)".into(),
            ));
        }
        // NBD: as many queues as connections.
        let queues = target.nbd.as_ref().map(|n| n.connections).or(queues);
        Ok(AddOptions {
            target,
            id: p.parsed(AddOpt::Number, options::device_id)?,
            queues,
            depth: p.parsed(AddOpt::Depth, |v| {
                options::by_rule(v, "queue depth", rules::queue_depth)
            })?,
            max_io_size: p.parsed(AddOpt::MaxIoSize, |v| {
                rules::max_io_bytes(options::size(v)?).map_err(reason)
            })?,
            recovery,
            foreground: p.flag(AddOpt::Foreground),
        })
    }

    fn builder(&self) -> DeviceBuilder {
        let mut b = Device::builder()
            .control_path(control_path())
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

/// The NBD export `-t nbd` names, checked; `None` for another target, whose line must name
/// none of the NBD options.
fn nbd_spec(
    p: &Parsed<AddOpt>,
    kind: Kind,
    queues: Option<u16>,
    recovery: Recovery,
    cwd: &Path,
) -> Result<Option<NbdSpec>, Usage> {
    let nbd_opts = [
        (AddOpt::Host, "--host"),
        (AddOpt::Port, "--port"),
        (AddOpt::Socket, "--socket"),
        (AddOpt::Export, "--export"),
        (AddOpt::Connections, "--connections"),
        (AddOpt::ReconnectLimit, "--reconnect-limit"),
    ];
    if kind != Kind::Nbd {
        return match nbd_opts.iter().find(|(o, _)| p.value(*o).is_some()) {
            Some((_, name)) => Err(Usage(format!(
                "{name} is for -t nbd, not -t {}",
                kind.name()
            ))),
            None => Ok(None),
        };
    }
    let port = p.parsed(AddOpt::Port, |v| {
        options::number::<u16>(v, "port", 1..=u64::from(u16::MAX))
    })?;
    let address = match (p.value(AddOpt::Host), p.value(AddOpt::Socket)) {
        (Some(_), Some(_)) => return Err(Usage("--host and --socket exclude each other".into())),
        (None, None) => {
            return Err(Usage(
                "-t nbd needs --host HOST (and --port) or --socket PATH".into(),
            ));
        }
        (Some(host), None) => {
            // An IPv6 address may come in brackets, as in URLs.
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(Usage("--host: the name is empty".into()));
            }
            NbdAddress::Tcp {
                host: host.to_string(),
                port: port.unwrap_or(NbdAddress::DEFAULT_PORT),
            }
        }
        (None, Some(_)) if port.is_some() => {
            return Err(Usage("--port is for --host, not --socket".into()));
        }
        (None, Some("")) => return Err(Usage("--socket: the path is empty".into())),
        (None, Some(path)) => NbdAddress::Unix(cwd.join(PathBuf::from(path))),
    };
    let connections = p.parsed(AddOpt::Connections, |v| {
        options::by_rule(v, "connection count", rules::queues)
    })?;
    let connections = match (connections, queues) {
        (Some(c), Some(q)) if c != q => {
            return Err(Usage(format!(
                "--connections {c} and -q {q} differ: each queue has a connection of its own"
            )));
        }
        (c, q) => c.or(q).unwrap_or(1),
    };
    let limit = p.parsed(AddOpt::ReconnectLimit, |v| {
        options::number::<u64>(v, "reconnect limit in seconds", 1..=86_400)
    })?;
    let reconnect_secs = match (recovery, limit) {
        (Recovery::Off, Some(_)) => {
            return Err(Usage(
                "--reconnect-limit needs --recovery: without it a lost connection fails its I/O at once".into(),
            ));
        }
        (Recovery::Off, None) => None,
        (_, limit) => Some(limit.unwrap_or(DEFAULT_RECONNECT_SECS)),
    };
    Ok(Some(NbdSpec {
        address,
        export: p.value(AddOpt::Export).unwrap_or_default().to_string(),
        connections,
        reconnect_secs,
    }))
}

/// `ublk add ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("add", OPTS, args, help)? else {
        return Ok(());
    };
    let cwd = std::env::current_dir()
        .map_err(|e| Failure::Runtime(format!("cannot read the current directory: {e}")))?;
    let options = AddOptions::from_args(&p, &cwd)?;
    server::run("add", options.foreground, &|run_dir| {
        Server::start(&options.target, options.builder(), run_dir)
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn parse(line: &[&str]) -> Result<AddOptions, Usage> {
        let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
        let p = options::parse("add", OPTS, &args)?;
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
                    nbd: None,
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
    fn nbd_targets() {
        let o = parse(&[
            "-t", "nbd", "--host", "10.0.0.1", "--export", "disk", "-q", "2",
        ])
        .expect("valid");
        assert_eq!(
            o.target.nbd,
            Some(NbdSpec {
                address: NbdAddress::Tcp {
                    host: "10.0.0.1".into(),
                    port: 10809
                },
                export: "disk".into(),
                connections: 2,
                reconnect_secs: None,
            })
        );
        assert_eq!(o.queues, Some(2));
        let o = parse(&[
            "-t",
            "nbd",
            "--socket",
            "nbd.sock",
            "--connections",
            "3",
            "--recovery",
            "--reconnect-limit",
            "5",
        ])
        .expect("valid");
        let nbd = o.target.nbd.expect("nbd");
        assert_eq!(
            nbd.address,
            NbdAddress::Unix(PathBuf::from("/work/nbd.sock"))
        );
        assert_eq!((nbd.connections, nbd.reconnect_secs), (3, Some(5)));
        assert_eq!(o.queues, Some(3), "a queue per connection");
        let o = parse(&[
            "-t",
            "nbd",
            "--host",
            "[::1]",
            "--port",
            "1234",
            "--recovery",
        ])
        .expect("valid");
        let nbd = o.target.nbd.expect("nbd");
        assert_eq!(
            nbd.address,
            NbdAddress::Tcp {
                host: "::1".into(),
                port: 1234
            }
        );
        assert_eq!(
            nbd.reconnect_secs,
            Some(60),
            "the default limit with --recovery"
        );
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
                "--logical-block-size: must be a power of two in 512..=4096 bytes, got 1000",
            ),
            (
                &["-t", "null", "--logical-block-size", "256"],
                "--logical-block-size: must be a power of two in 512..=4096 bytes, got 256",
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
                &["-t", "nbd"],
                "-t nbd needs --host HOST (and --port) or --socket PATH",
            ),
            (
                &["-t", "nbd", "--host", "h", "--socket", "/s"],
                "--host and --socket exclude each other",
            ),
            (
                &["-t", "nbd", "--socket", "/s", "--port", "1"],
                "--port is for --host, not --socket",
            ),
            (
                &["-t", "nbd", "--host", "h", "--port", "0"],
                "--port: port must be 1..=65535, got 0",
            ),
            (
                &["-t", "nbd", "--host", "h", "-q", "2", "--connections", "3"],
                "--connections 3 and -q 2 differ: each queue has a connection of its own",
            ),
            (
                &["-t", "nbd", "--host", "h", "--reconnect-limit", "5"],
                "--reconnect-limit needs --recovery: without it a lost connection fails its I/O at once",
            ),
            (
                &["-t", "nbd", "--host", "h", "--size", "1M"],
                "--size is not for -t nbd: the device is the export's size",
            ),
            (
                &["-t", "loop", "-f", "x", "--export", "disk"],
                "--export is for -t nbd, not -t loop",
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
