//! Serving a device, which `ublk add` and `ublk recover` both do: a device started (or taken
//! over) from a target description ([`target`]), recorded under `/run/ublk` ([`records`]) and
//! served until a signal or a stop from outside, in this process (`--foreground`) or in a
//! daemon ([`daemon`]).

pub mod daemon;
pub mod handover;
pub mod harden;
pub mod records;
pub mod target;

use std::path::{Path, PathBuf};

use ublk::backend::NbdStatusHandle;
use ublk::signal::{TerminationSignals, signal_name};
use ublk::{Device, DeviceBuilder, Ended, Fate};

use crate::support::control::{self, control_path};
use crate::support::failure::Failure;
use crate::support::output::{eprint_line, human_size, print};
use records::{Fingerprint, Record};
use target::{Launch, Started, TargetSpec};

/// How a server gets its device: started, or taken over. Given the directory of records.
pub type Start<'a> = &'a dyn Fn(&Path) -> Result<Server, Failure>;

/// Gets a device from `start` and serves it: in this process until a signal or `ublk del`
/// (`foreground`), else in a daemon once this process has reported that it is live.
/// Messages are prefixed with `ublk <command>`.
pub fn run(command: &str, foreground: bool, start: Start<'_>) -> Result<(), Failure> {
    if !foreground {
        return daemon::run(command, start);
    }
    let server = start(Path::new(records::RUN_DIR))?;
    let hardened = harden::harden(false);
    for w in server.warnings.iter().chain(&hardened) {
        eprint_line(&format!("ublk {command}: warning: {w}"));
    }
    print(&format!("{}\n", server.summary))?;
    print("serving; Ctrl-C (or SIGTERM, or ublk del) stops it\n")?;
    // Stdout may go away while the device is served: the server goes on regardless.
    server.serve(&|line| {
        let _ = print(&format!("{line}\n"));
    })
}

/// A device served by this process, and what it needs to stop cleanly.
pub struct Server {
    device: Device,
    signals: TerminationSignals,
    record: Record,
    run_dir: PathBuf,
    /// NBD: what the connections are doing, reported as it changes.
    nbd_status: Option<NbdStatusHandle>,
    /// One line: `device 3: /dev/ublkb3 (loop /srv/disk.img, 1 GiB, ...)`.
    pub summary: String,
    /// Things the user should know (printed by whoever talks to the user).
    pub warnings: Vec<String>,
}

impl Server {
    /// Starts a device on `target` with `builder`'s settings, and records it in `run_dir`.
    pub fn start(
        target: &TargetSpec,
        builder: DeviceBuilder,
        run_dir: &Path,
    ) -> Result<Server, Failure> {
        Server::launch(target, builder, Launch::Add, run_dir)
    }

    /// Takes over device `id`, whose server died or was quiesced, with the target its record
    /// in `run_dir` describes, and records the new server there. A record that is not the
    /// device's (left by an earlier device of the same id) is refused.
    pub fn recover(id: u32, run_dir: &Path) -> Result<Server, Failure> {
        let info = control::device_info(&mut control::open_control()?, id)?;
        let record = records::read(run_dir, id)
            .map_err(|e| Failure::Runtime(format!("cannot read device {id}'s record: {e}")))?
            .ok_or_else(|| {
                Failure::Runtime(format!(
                    "device {id} has no record in {}: it was not started by `ublk add`, so its target is unknown (recover it with the program that served it)",
                    run_dir.display()
                ))
            })?;
        record.tied_to(&info).map_err(|why| {
            Failure::Runtime(format!(
                "device {id}'s record in {} is not this device's ({why}): it was left by an earlier device of the same id, so its target is unknown (recover it with the program that served it)",
                run_dir.display()
            ))
        })?;
        let builder = Device::builder().control_path(control_path());
        Server::launch(&record.target, builder, Launch::Recover(id), run_dir)
    }

    fn launch(
        target: &TargetSpec,
        builder: DeviceBuilder,
        launch: Launch,
        run_dir: &Path,
    ) -> Result<Server, Failure> {
        // Before any queue thread exists, so that they inherit the mask and the signals
        // reach `serve` instead of killing the server with its device half served.
        let signals = TerminationSignals::block()
            .map_err(|e| Failure::Runtime(format!("blocking SIGINT/SIGTERM/SIGHUP: {e}")))?;
        let Started {
            device,
            direct_io,
            mut warnings,
            nbd_status,
        } = target.start(builder, launch)?;
        warnings.extend(device.warnings().iter().cloned());
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
            device: Fingerprint::of(device.info()),
            status: nbd_status.as_ref().map(|s| s.status().to_string()),
        };
        if let Err(e) = records::write(run_dir, &record) {
            warnings.push(format!("{e}; ublk list will not show its target"));
        }
        let summary = summary(&device, &record);
        Ok(Server {
            device,
            signals,
            record,
            run_dir: run_dir.to_path_buf(),
            nbd_status,
            summary,
            warnings,
        })
    }

    /// A signal (SIGINT, SIGTERM, SIGHUP) that arrived while the device was being started,
    /// if any: the caller (Ctrl-C on `ublk add`) gave up on it.
    pub fn interrupted(&self) -> Option<i32> {
        self.signals.wait(std::time::Duration::ZERO)
    }

    /// Stops and deletes the device at once (whoever started it gave up on it) and removes
    /// its record.
    pub fn stop(self) -> Result<(), Failure> {
        let stopped = self.device.stop();
        records::remove(&self.run_dir, self.record.id, self.record.pid);
        Ok(stopped?)
    }

    /// Serves until SIGINT, SIGTERM or SIGHUP, a stop from outside (`ublk del`, QUIESCE_DEV)
    /// or a failed queue ([`Device::serve_until`]); then keeps the record if the device
    /// waits for a new server (or what became of it is unknown), and removes it otherwise.
    /// `say` is told why it stopped and what it served; an error is returned.
    pub fn serve(mut self, say: &dyn Fn(&str)) -> Result<(), Failure> {
        let id = self.device.id();
        // An NBD target's connections, as they change: in the log, and in the record for
        // `ublk list`.
        let mut record = self.record.clone();
        let run_dir = self.run_dir.clone();
        let nbd = self.nbd_status.take();
        let mut watch = || {
            let Some(now) = nbd.as_ref().map(|n| n.status().to_string()) else {
                return;
            };
            if record.status.as_deref() != Some(now.as_str()) {
                say(&format!("device {id}: NBD: {now}"));
                record.status = Some(now);
                if let Err(e) = records::write(&run_dir, &record) {
                    say(&format!("device {id}: {e}"));
                }
            }
        };
        let served = self.device.serve_until_watching(&self.signals, &mut watch);
        match served.ended {
            Ended::Signal(sig) => say(&format!("{}: stopping device {id}", signal_name(sig))),
            Ended::StoppedOutside => say(&format!("device {id} was stopped from outside")),
            Ended::QueueFailed => say(&format!("device {id}: a queue failed")),
        }
        match served.fate {
            Fate::Deleted | Fate::Stopped => {
                records::remove(&self.run_dir, self.record.id, self.record.pid);
            }
            Fate::WaitsForRecovery => say(&format!(
                "device {id} waits for a new server: ublk recover -n {id}"
            )),
            // Kept: `ublk del` removes the record of a device that is gone.
            Fate::Unknown => {}
        }
        if let Some(e) = served.error {
            return Err(e.into());
        }
        let s = served.stats;
        say(&format!(
            "device {id} stopped; served {} reads, {} writes, {} flushes, {} discards, {} write-zeroes; {} errors",
            s.reads, s.writes, s.flushes, s.discards, s.write_zeroes, s.errors
        ));
        Ok(())
    }
}

/// `device 3: /dev/ublkb3 (loop /srv/disk.img, direct I/O, 1 GiB, 2 queues of depth 64,
/// zero-copy, server pid 42)`.
fn summary(device: &Device, record: &Record) -> String {
    let info = device.info();
    let t = &record.target;
    let mut what = t.kind.name().to_string();
    if let Some(f) = &t.file {
        what += &format!(" {}", f.display());
    }
    if let Some(n) = &t.nbd {
        what += &format!(" {}", n.describe());
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
