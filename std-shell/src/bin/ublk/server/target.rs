//! The targets `ublk add` serves, and how a description of one becomes a started device.

use std::path::PathBuf;
use std::time::Duration;

use ublk::backend::{Builtin, Nbd, NbdAddress, NbdStatusHandle};
use ublk::{DataPath, Device, DeviceBuilder, DiscardLimits, Loop, Mem, Null};

/// A null device's size when none is given: what ublksrv's `ublk add -t null` makes.
pub const NULL_DEFAULT_SIZE: u64 = 250 << 30;

/// Which target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Reads zeroes, drops writes.
    Null,
    /// A RAM disk.
    Mem,
    /// A file or block device.
    Loop,
    /// An export of an NBD server.
    Nbd,
}

impl Kind {
    /// Every target, in the order help lists them.
    pub const ALL: [Kind; 4] = [Kind::Null, Kind::Mem, Kind::Loop, Kind::Nbd];

    /// Its name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Mem => "mem",
            Kind::Loop => "loop",
            Kind::Nbd => "nbd",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A target as the user described it: everything needed to make it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// Which target.
    pub kind: Kind,
    /// The backing file (loop only), absolute.
    pub file: Option<PathBuf>,
    /// The data path asked for (`None`: the best the kernel and the target allow). A record
    /// holds the one the device ran on.
    pub data_path: Option<DataPath>,
    /// The device size in bytes (default: null 250 GiB, loop the file's; mem needs one).
    pub size: Option<u64>,
    /// Loop: buffered I/O instead of direct.
    pub buffered: bool,
    /// The device refuses writes.
    pub read_only: bool,
    /// The logical block size (default: the backing file's, else 512).
    pub logical_block_size: Option<u32>,
    /// The NBD export (nbd only).
    pub nbd: Option<NbdSpec>,
}

/// An NBD export as the user described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdSpec {
    /// Where the server listens.
    pub address: NbdAddress,
    /// The export's name (empty: the server's default export).
    pub export: String,
    /// Connections, one per queue.
    pub connections: u16,
    /// How long a lost connection may take to come back, I/O held meanwhile (`--recovery`);
    /// `None`: its I/O fails at once.
    pub reconnect_secs: Option<u64>,
}

impl NbdSpec {
    /// `export 'disk' at 127.0.0.1:10809, 2 connections` and the reconnection.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "export '{}' at {}, {} connection{}",
            self.export,
            self.address,
            self.connections,
            if self.connections == 1 { "" } else { "s" }
        );
        if let Some(secs) = self.reconnect_secs {
            text += &format!(", reconnecting for up to {secs} s");
        }
        text
    }
}

/// What to do with a target once it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Create a device on it.
    Add,
    /// Take over device `id`, whose server died, with it.
    Recover(u32),
}

impl Launch {
    /// One target type for all three: the device and queue code is built once.
    fn run(self, builder: DeviceBuilder, target: Builtin) -> ublk::Result<Device> {
        match self {
            Launch::Add => builder.start_target(target),
            Launch::Recover(id) => builder.recover_target(id, target),
        }
    }
}

/// A device started from a [`TargetSpec`].
pub struct Started {
    /// The device, served by its queue threads.
    pub device: Device,
    /// Loop: whether the file is served with direct I/O.
    pub direct_io: Option<bool>,
    /// What the user should know but does not stop the device (e.g. why direct I/O was not
    /// possible).
    pub warnings: Vec<String>,
    /// NBD: what its connections are doing, for the record and the log.
    pub nbd_status: Option<NbdStatusHandle>,
}

impl TargetSpec {
    /// Opens the target and starts a device on it with `builder`'s queue settings, or takes
    /// over a device whose server died.
    pub fn start(&self, mut builder: DeviceBuilder, launch: Launch) -> ublk::Result<Started> {
        if self.read_only {
            builder = builder.read_only(true);
        }
        if let Some(path) = self.data_path {
            builder = builder.data_path(path);
        }
        let mut warnings = Vec::new();
        let mut direct_io = None;
        let mut nbd_status = None;
        let target: Builtin = match self.kind {
            Kind::Null => {
                if let Some(lbs) = self.logical_block_size {
                    builder = builder.logical_block_size(lbs);
                }
                // FLUSH and DISCARD reach the server, so the device measures their path too.
                builder = builder.volatile_cache(true).discard(DiscardLimits {
                    granularity: 4096,
                    max_discard_bytes: 1 << 30,
                    max_write_zeroes_bytes: 1 << 30,
                });
                Null::new(self.size.unwrap_or(NULL_DEFAULT_SIZE)).into()
            }
            Kind::Mem => {
                if let Some(lbs) = self.logical_block_size {
                    builder = builder.logical_block_size(lbs);
                }
                if let Launch::Recover(_) = launch {
                    return Err(ublk::Error::InvalidArgument {
                        what: "target",
                        reason: "a mem device's data lived in its server's memory and died with it: nothing to recover"
                            .into(),
                    });
                }
                // Parsing made sure a mem target has a size.
                Mem::new(self.size.unwrap_or_default())?.into()
            }
            Kind::Loop => {
                let file = self.file.clone().unwrap_or_default();
                let mut options = Loop::options(&file)
                    .buffered(self.buffered)
                    .read_only(self.read_only);
                if let Some(lbs) = self.logical_block_size {
                    options = options.logical_block_size(lbs);
                }
                let target = options.open()?;
                if let Some(why) = target.buffered_reason().filter(|_| !self.buffered) {
                    warnings.push(format!("{}: buffered I/O: {why}", file.display()));
                }
                direct_io = Some(target.is_direct());
                if let Some(size) = self.size {
                    builder = builder.size(size);
                }
                target.into()
            }
            Kind::Nbd => {
                let Some(spec) = &self.nbd else {
                    return Err(ublk::Error::InvalidArgument {
                        what: "target",
                        reason: "an nbd target without its server".into(),
                    });
                };
                if let Some(lbs) = self.logical_block_size {
                    builder = builder.logical_block_size(lbs);
                }
                let nbd = Nbd::options(spec.address.clone(), spec.export.clone())
                    .connections(spec.connections)
                    .reconnect(spec.reconnect_secs.map(Duration::from_secs))
                    .open()?;
                nbd_status = Some(nbd.status_handle());
                builder = builder.queues(spec.connections);
                nbd.into()
            }
        };
        Ok(Started {
            device: launch.run(builder, target)?,
            direct_io,
            warnings,
            nbd_status,
        })
    }
}
