//! `ublk list`: every device the driver has, as the kernel and its server's record describe
//! it, for people or (`--json`) for scripts.

use std::path::Path;

use ublk::{Attrs, Controller, DataPath, DevState, DeviceInfo, ParamTypes, Recovery, UblkParams};

use ublk::signal::process_alive;

use crate::args::{self, Opt, Parsed};
use crate::json::Value;
use crate::state::{self, Record};
use crate::{Failure, MAX_DEVICE_ID, human_size};

/// `ublk list`'s options.
pub const OPTS: &[Opt] = &[
    Opt {
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help: "only this device (an error if it does not exist)",
    },
    Opt {
        short: None,
        long: "json",
        value: None,
        help: "print a JSON array of devices (see README: `ublk list --json`)",
    },
];

/// What `list` shows of one device.
pub struct Listed {
    info: DeviceInfo,
    params: Option<UblkParams>,
    record: Option<Record>,
    server_running: bool,
}

/// `ublk list`.
pub fn run(p: &Parsed) -> Result<(), Failure> {
    let only = p.parsed("number", |v| {
        args::number(v, "device id", 0..=MAX_DEVICE_ID)
    })?;
    let mut ctl = crate::open_control()?;
    let devices = match only {
        Some(id) => vec![describe(&mut ctl, id, Path::new(state::RUN_DIR))?],
        None => device_ids()
            .into_iter()
            // A device deleted between the listing and the question is simply not shown.
            .filter_map(
                |id| match describe(&mut ctl, id, Path::new(state::RUN_DIR)) {
                    Err(Failure::NoDevice(_)) => None,
                    other => Some(other),
                },
            )
            .collect::<Result<Vec<_>, _>>()?,
    };
    if p.flag("json") {
        let all = Value::Array(devices.iter().map(Listed::to_json).collect());
        crate::print(&(all.pretty() + "\n"));
    } else {
        for d in &devices {
            crate::print(&d.to_text());
        }
    }
    Ok(())
}

/// The ids of the devices that exist now, in order: the driver's character devices in sysfs
/// (or, without sysfs, in /dev).
pub fn device_ids() -> Vec<u32> {
    let from = |dir: &str| -> Option<Vec<u32>> {
        let entries = std::fs::read_dir(dir).ok()?;
        Some(
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("ublkc")?.parse().ok())
                .collect(),
        )
    };
    let mut ids = from("/sys/class/ublk-char")
        .or_else(|| from("/dev"))
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Asks the driver about device `id` and reads its record from `run_dir`.
pub fn describe(ctl: &mut Controller, id: u32, run_dir: &Path) -> Result<Listed, Failure> {
    let info = crate::device_info(ctl, id)?;
    // A device that was added but never given parameters has none to show.
    let params = ctl.params(id).ok();
    let kernel_pid = info.server_pid();
    // A record is this device's only if the kernel names the same server, or names none
    // (the server died); one from an earlier device of the same id is ignored. A broken
    // record is treated as none: `list` must still show the device.
    let record = state::read(run_dir, id)
        .ok()
        .flatten()
        .filter(|r| kernel_pid.is_none_or(|pid| pid == r.pid));
    let server_running = kernel_pid.is_some_and(process_alive);
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
                match r.direct_io {
                    Some(true) => t += " (direct I/O)",
                    Some(false) => t += " (buffered I/O)",
                    None => {}
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
