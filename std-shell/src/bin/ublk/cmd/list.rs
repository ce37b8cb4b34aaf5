//! `ublk list`: every device the driver has, as the kernel and its server's record describe
//! it, for people or (`--json`) for scripts.

use std::path::Path;

use ublk::json::Value;
use ublk::signal::process_alive;
use ublk::{Attrs, Controller, DataPath, DevState, DeviceInfo, ParamTypes, Recovery, UblkParams};

use crate::server::records::{self, Record};
use crate::support::control::{self, device_ids};
use crate::support::failure::Failure;
use crate::support::options::{self, Opt};
use crate::support::output::{human_size, print};

/// `ublk list`'s synopsis.
pub const SYNOPSIS: &str = "[-n ID] [--json]";
/// What `ublk list` does.
pub const ABOUT: &str =
    "show devices: state, size, block size, queues, flags, target, backing file, server";

/// `ublk list`'s options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListOpt {
    /// `-n, --number`.
    Number,
    /// `--json`.
    Json,
}

/// `ublk list`'s options.
pub const OPTS: &[Opt<ListOpt>] = &[
    options::device_opt(
        ListOpt::Number,
        "only this device (an error if it does not exist)",
    ),
    Opt {
        key: ListOpt::Json,
        short: None,
        long: "json",
        value: None,
        help: "print a JSON array of devices (see README: `ublk list --json`)",
    },
];

/// `ublk list`'s help.
pub fn help() -> String {
    options::help("list", SYNOPSIS, ABOUT, OPTS)
}

/// What `list` shows of one device.
pub struct Listed {
    info: DeviceInfo,
    params: Option<UblkParams>,
    record: Option<Record>,
    server_running: bool,
}

/// `ublk list ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("list", OPTS, args, help)? else {
        return Ok(());
    };
    let only = p.parsed(ListOpt::Number, options::device_id)?;
    let mut ctl = control::open_control()?;
    let run_dir = Path::new(records::RUN_DIR);
    let devices = match only {
        Some(id) => vec![describe(&mut ctl, id, run_dir)?],
        None => device_ids()
            .into_iter()
            // A device deleted between the listing and the question is simply not shown.
            .filter_map(|id| match describe(&mut ctl, id, run_dir) {
                Err(Failure::NoDevice(_)) => None,
                other => Some(other),
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if p.flag(ListOpt::Json) {
        let all = Value::Array(devices.iter().map(Listed::to_json).collect());
        print(&(all.pretty() + "\n"))
    } else {
        let text: String = devices.iter().map(Listed::to_text).collect();
        print(&text)
    }
}

/// Asks the driver about device `id` and reads its record from `run_dir`.
pub fn describe(ctl: &mut Controller, id: u32, run_dir: &Path) -> Result<Listed, Failure> {
    let info = control::device_info(ctl, id)?;
    // A device that was added but never given parameters has none to show.
    let params = ctl.params(id).ok();
    // A record is this device's only if it is tied to it (its server, its fingerprint); one
    // an earlier device of the same id left is ignored, and so is one that cannot be read:
    // `list` must still show the device.
    let record = records::read_tied(run_dir, &info);
    let server_running = info.server_pid().is_some_and(process_alive);
    Ok(Listed {
        info,
        params,
        record,
        server_running,
    })
}

impl Listed {
    fn state(&self) -> String {
        match self.info.state() {
            Ok(s) => s.name().to_string(),
            Err(raw) => format!("unknown ({raw})"),
        }
    }

    fn basic(&self) -> Option<&ublk::UblkParamBasic> {
        self.params
            .as_ref()
            .filter(|p| p.types.contains(ParamTypes::BASIC))
            .map(|p| &p.basic)
    }

    fn size(&self) -> Option<u64> {
        self.basic().map(|b| b.dev_sectors.saturating_mul(512))
    }

    fn server_pid(&self) -> Option<i32> {
        self.info
            .server_pid()
            .or_else(|| self.record.as_ref().map(|r| r.pid))
    }

    /// The stable JSON form, documented in README.
    pub fn to_json(&self) -> Value {
        let basic = self.basic();
        let record = self.record.as_ref();
        let target = record.map(|r| &r.target);
        let shift = |s: u8| Value::num(1u64.checked_shl(u32::from(s)).unwrap_or(0));
        Value::Object(vec![
            ("id".into(), Value::num(self.info.id())),
            ("state".into(), Value::str(self.state())),
            (
                "block_device".into(),
                Value::str(self.info.block_dev_path().to_string_lossy()),
            ),
            (
                "char_device".into(),
                Value::str(self.info.char_dev_path().to_string_lossy()),
            ),
            ("queues".into(), Value::num(self.info.queues())),
            ("depth".into(), Value::num(self.info.queue_depth())),
            ("size".into(), Value::opt(self.size().map(Value::num))),
            (
                "logical_block_size".into(),
                Value::opt(basic.map(|b| shift(b.logical_bs_shift))),
            ),
            (
                "physical_block_size".into(),
                Value::opt(basic.map(|b| shift(b.physical_bs_shift))),
            ),
            ("max_io_size".into(), Value::num(self.info.max_io_bytes())),
            (
                "read_only".into(),
                Value::opt(basic.map(|b| Value::Bool(b.attrs.contains(Attrs::READ_ONLY)))),
            ),
            (
                "flags".into(),
                Value::Array(self.info.flags().names().map(Value::str).collect()),
            ),
            (
                "target".into(),
                Value::opt(target.map(|t| Value::str(t.kind.name()))),
            ),
            (
                "file".into(),
                Value::opt(
                    target
                        .and_then(|t| t.file.as_ref())
                        .map(|f| Value::str(f.to_string_lossy())),
                ),
            ),
            (
                "direct_io".into(),
                Value::opt(record.and_then(|r| r.direct_io).map(Value::Bool)),
            ),
            (
                "server_pid".into(),
                Value::opt(self.server_pid().map(|p| Value::int(i64::from(p)))),
            ),
            ("server_running".into(), Value::Bool(self.server_running)),
            (
                "recovery".into(),
                Value::str(Recovery::of(self.info.flags()).name()),
            ),
            (
                "data_path".into(),
                Value::str(DataPath::of(self.info.flags()).name()),
            ),
            (
                "nbd".into(),
                Value::opt(target.and_then(|t| t.nbd.as_ref()).map(|n| {
                    Value::Object(vec![
                        ("server".into(), Value::str(n.address.to_string())),
                        ("export".into(), Value::str(&n.export)),
                        ("connections".into(), Value::num(n.connections)),
                        (
                            "reconnect_secs".into(),
                            Value::opt(n.reconnect_secs.map(Value::num)),
                        ),
                    ])
                })),
            ),
            (
                "status".into(),
                Value::opt(record.and_then(|r| r.status.as_deref()).map(Value::str)),
            ),
        ])
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let info = &self.info;
        let basic = self.basic();
        let mut head = format!(
            "dev {}: {}, {}",
            info.id(),
            self.state(),
            info.block_dev_path().display()
        );
        if let Some(size) = self.size() {
            head += &format!(", {}", human_size(size));
        }
        if let Some(b) = basic {
            head += &format!(", {}-byte blocks", 1u64 << b.logical_bs_shift.min(63));
            if b.attrs.contains(Attrs::READ_ONLY) {
                head += ", read-only";
            }
        }
        head += &format!(
            ", {} queue{} of depth {}, max I/O {}",
            info.queues(),
            if info.queues() == 1 { "" } else { "s" },
            info.queue_depth(),
            human_size(u64::from(info.max_io_bytes()))
        );
        let target = match &self.record {
            Some(r) => {
                let mut t = r.target.kind.name().to_string();
                if let Some(f) = &r.target.file {
                    t += &format!(" {}", f.display());
                }
                if let Some(n) = &r.target.nbd {
                    t += &format!(" {}", n.describe());
                }
                match r.direct_io {
                    Some(true) => t += " (direct I/O)",
                    Some(false) => t += " (buffered I/O)",
                    None => {}
                }
                if let Some(status) = &r.status {
                    t += &format!("\n    status: {status}");
                }
                t
            }
            None => "unknown (not started by ublk add)".into(),
        };
        let mut server = match (self.server_pid(), self.server_running) {
            (Some(pid), true) => format!("pid {pid}, running"),
            (Some(pid), false) => format!("pid {pid}, gone"),
            (None, _) => "none".into(),
        };
        if matches!(info.state(), Ok(DevState::Quiesced | DevState::FailIo)) {
            server += &format!("; waiting for `ublk recover -n {}`", info.id());
        }
        format!(
            "{head}\n    target: {target}\n    server: {server}\n    data path: {}\n    recovery: {}\n    flags: {}\n",
            DataPath::of(info.flags()),
            Recovery::of(info.flags()).name(),
            info.flags()
        )
    }
}
