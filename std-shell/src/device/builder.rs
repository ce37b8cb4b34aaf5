//! `DeviceBuilder`: a device's settings, checked, and the way from them to a started device
//! (ADD_DEV, SET_PARAMS, queue threads, START_DEV).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ublk_core::{DataPath, Features};

use super::params::Settings;
use super::{Device, Recovery};
use crate::backend::{Backend, Blocking, DiscardLimits, Target};
use crate::control::{Controller, NewDevice};
use crate::error::{Error, Result};
use crate::features::BUILD_FEATURES;

/// Builds and starts a [`Device`]. Every setting has a default but the size, which comes from
/// here or from the backend. Sizes are in bytes.
#[derive(Clone, Debug)]
pub struct DeviceBuilder {
    new: NewDevice,
    settings: Settings,
    recovery: Recovery,
    /// `None`: the best the target serves and the kernel has.
    data_path: Option<DataPath>,
    pub(super) force_buffer_fallback: bool,
    control_path: PathBuf,
    timeout: Option<Duration>,
}

impl Default for DeviceBuilder {
    fn default() -> Self {
        DeviceBuilder {
            new: NewDevice::default(),
            settings: Settings::default(),
            recovery: Recovery::Off,
            data_path: None,
            force_buffer_fallback: false,
            control_path: PathBuf::from(Controller::DEFAULT_PATH),
            timeout: None,
        }
    }
}

impl DeviceBuilder {
    /// The device id (`/dev/ublkb<id>`); default: the driver picks a free one.
    pub fn id(mut self, id: u32) -> Self {
        self.new.id = Some(id);
        self
    }

    /// Hardware queues, one thread each (default 1; the driver grants at most one per CPU).
    /// Each thread runs on the first CPU of its queue's affinity, as a `SCHED_BATCH` task.
    pub fn queues(mut self, queues: u16) -> Self {
        self.new.queues = queues;
        self
    }

    /// Requests in flight per queue, 1..=4096 (default 128).
    pub fn depth(mut self, depth: u16) -> Self {
        self.new.queue_depth = depth;
        self
    }

    /// Largest request in bytes: a whole number of pages, from one page to 32 MiB (default
    /// 512 KiB, or less if the backend takes less: [`Properties::max_io_bytes`](crate::Properties::max_io_bytes);
    /// [`rules::max_io_bytes`](crate::rules::max_io_bytes)). Each queue maps `depth`
    /// buffers of this size (address space only: pages are allocated as I/O touches them,
    /// and no swap is reserved).
    pub fn max_io_bytes(mut self, bytes: u32) -> Self {
        self.new.max_io_bytes = bytes;
        self
    }

    /// Logical block size: a power of two from 512 to the page size (default: the
    /// backend's, else 512).
    pub fn logical_block_size(mut self, bytes: u32) -> Self {
        self.settings.logical_block_size = Some(bytes);
        self
    }

    /// Physical block size: a power of two, at least the logical one (default: the
    /// backend's, else the logical).
    pub fn physical_block_size(mut self, bytes: u32) -> Self {
        self.settings.physical_block_size = Some(bytes);
        self
    }

    /// Device size in bytes, a multiple of the logical block size, at most what the backend
    /// holds (default: all the backend holds).
    pub fn size(mut self, bytes: u64) -> Self {
        self.settings.size = Some(bytes);
        self
    }

    /// The block layer refuses writes (default: only if the backend can only read).
    pub fn read_only(mut self, on: bool) -> Self {
        self.settings.read_only = Some(on);
        self
    }

    /// Tell the block layer the device is rotational (a disk, not flash; default: the
    /// backend's, else not).
    pub fn rotational(mut self, on: bool) -> Self {
        self.settings.rotational = Some(on);
        self
    }

    /// The backend has a volatile write cache: the block layer sends FLUSH (default: the
    /// backend's, else not).
    pub fn volatile_cache(mut self, on: bool) -> Self {
        self.settings.volatile_cache = Some(on);
        self
    }

    /// The backend honours FUA writes (needs [`volatile_cache`](Self::volatile_cache);
    /// default: the backend's, else not).
    pub fn fua(mut self, on: bool) -> Self {
        self.settings.fua = Some(on);
        self
    }

    /// The backend takes DISCARD (and WRITE_ZEROES) within these limits (default: the
    /// backend's, else none).
    pub fn discard(mut self, limits: DiscardLimits) -> Self {
        self.settings.discard = Some(limits);
        self
    }

    /// Extra `UBLK_F_*` flags, from those this build implements ([`BUILD_FEATURES`]:
    /// NEED_GET_DATA, NO_AUTO_PART_SCAN, ...); others, and those the running kernel lacks
    /// ([`Error::Unsupported`]), are refused before ADD_DEV, and so are the data path's
    /// (`USER_COPY`, `AUTO_BUF_REG`, `SUPPORT_ZERO_COPY`: [`data_path`](Self::data_path) sets
    /// them).
    pub fn flags(mut self, flags: Features) -> Self {
        self.new.flags = flags;
        self
    }

    /// What happens to the device if its server dies (default [`Recovery::Off`]: it is
    /// stopped). With recovery, a new server takes it over with
    /// [`recover_target`](Self::recover_target); where the kernel has `QUIESCE`, the device
    /// gets it too, so that QUIESCE_DEV can hand it to a new server on purpose (an upgrade).
    /// A mode the kernel lacks (`fail-io` before 6.13) is refused before the device is added.
    pub fn recovery(mut self, mode: Recovery) -> Self {
        self.recovery = mode;
        self
    }

    /// How request data moves between the block layer and the target ([`DataPath`]). The
    /// default (auto) is the first of the target's [`data_paths`](Target::data_paths) that
    /// the running kernel has: zero copy or user copy where the target benefits, else copy.
    /// A path the target does not serve, or the kernel lacks ([`Error::Unsupported`]), is
    /// refused before the device is added.
    pub fn data_path(mut self, path: DataPath) -> Self {
        self.data_path = Some(path);
        self
    }

    /// For testing a server's zero-copy fallback: the driver is asked to register each
    /// request's pages where it cannot, so that every request with data arrives flagged
    /// `NEED_REG_BUF` and the library registers its buffer by hand (REGISTER_IO_BUF before
    /// the target's first operation on it, UNREGISTER_IO_BUF before the answer), as it does
    /// for any request whose automatic registration fails. Slower; only for tests. Counted in
    /// [`Stats::buffer_fallbacks`](super::Stats::buffer_fallbacks).
    pub fn force_buffer_fallback(mut self, on: bool) -> Self {
        self.force_buffer_fallback = on;
        self
    }

    /// The control device (default `/dev/ublk-control`).
    pub fn control_path(mut self, path: impl AsRef<Path>) -> Self {
        self.control_path = path.as_ref().to_path_buf();
        self
    }

    /// How long each control command may take (default 30 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Starts a device served by a synchronous [`Backend`].
    pub fn start<B: Backend>(self, backend: B) -> Result<Device> {
        self.start_target(Blocking(Arc::new(backend)))
    }

    /// Starts a device served by `target`. Returns once START_DEV has completed (the disk is
    /// added and served) and `/dev/ublkb<id>` exists, waiting up to 10 s for the node to
    /// appear (devtmpfs or udev creates it). On any error, what was done is undone: no device
    /// or thread is left behind.
    pub fn start_target<T: Target>(self, target: T) -> Result<Device> {
        let properties = target.properties();
        let geometry = self.settings.resolve(&properties)?;
        let mut new = self.new;
        new.flags |= self.recovery.flags();
        if let Some(most) = properties.max_io_bytes {
            // The backend's limit, in whole pages (a smaller one is refused by `validate`).
            let page = ublk_core::sys::page_size() as u32;
            new.max_io_bytes = new.max_io_bytes.min(most / page * page);
        }
        let unsupported = new.flags - BUILD_FEATURES;
        if !unsupported.is_empty() {
            return Err(Error::invalid(
                "flags",
                format!("{unsupported} not supported by this library yet"),
            ));
        }
        let path_flags = new.flags
            & DataPath::ALL
                .iter()
                .fold(Features::empty(), |f, p| f | p.flags());
        if !path_flags.is_empty() {
            return Err(Error::invalid(
                "flags",
                format!(
                    "{path_flags} belong to the data path: choose it with DeviceBuilder::data_path"
                ),
            ));
        }
        new.validate()?;
        // Checked with the requested I/O size now, so a bad geometry adds no device.
        geometry.params(new.max_io_bytes)?;
        let size = geometry.checked_size()?;

        let mut ctrl = self.open_control()?;
        let kernel = ctrl.control().driver_features();
        // NEED_GET_DATA is the copy path's: asked for, it settles what auto picks.
        let asked = match self.data_path {
            None if new.flags.contains(Features::NEED_GET_DATA) => Some(DataPath::Copy),
            asked => asked,
        };
        let path = choose_data_path(asked, target.data_paths(), kernel)?;
        if path != DataPath::Copy && new.flags.contains(Features::NEED_GET_DATA) {
            return Err(Error::invalid(
                "flags",
                format!("NEED_GET_DATA belongs to the copy path, not {path}"),
            ));
        }
        new.flags |= path.flags();
        // An older driver ignores flags it does not know: the device would come up without
        // what was asked for (a FAIL_IO device that queues I/O instead), so ask first.
        if let Some(kernel) = kernel {
            if self.recovery != Recovery::Off && kernel.contains(Features::QUIESCE) {
                new.flags |= Features::QUIESCE;
            }
            let missing = new.flags - kernel;
            if !missing.is_empty() {
                return Err(Error::Unsupported {
                    what: format!("device flags {}", new.flags),
                    missing,
                });
            }
        }
        let info = ctrl.add(&new)?;
        let mut device = Device::added(info, ctrl, properties.size.unwrap_or(size));
        device.force_buffer_fallback = self.force_buffer_fallback;
        let granted = info.flags();
        if !granted.contains(path.flags()) {
            // A driver too old to say what it supports dropped what it did not know.
            let _ = device.shut_down();
            return Err(Error::Unsupported {
                what: format!("data path {path}"),
                missing: path.flags() - granted,
            });
        }
        match device.bring_up(&geometry, Arc::new(target)) {
            Ok(()) => Ok(device),
            Err(e) => {
                // Undo what was done: the error that stopped us is the one to report.
                let _ = device.shut_down();
                Err(e)
            }
        }
    }

    pub(super) fn open_control(&self) -> Result<Controller> {
        let mut ctrl = Controller::open_path(&self.control_path)?;
        if let Some(t) = self.timeout {
            ctrl.set_timeout(t);
        }
        Ok(ctrl)
    }
}

/// The data path to add a device with: the one asked for, if the target serves it and the
/// kernel has it, else (auto) the first of the target's list the kernel has. `kernel` is
/// `None` where the driver cannot say (no GET_FEATURES): only copy is certain then.
fn choose_data_path(
    asked: Option<DataPath>,
    served: &[DataPath],
    kernel: Option<Features>,
) -> Result<DataPath> {
    let kernel = kernel.unwrap_or(Features::empty());
    let names = || {
        served
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match asked {
        Some(path) if !served.contains(&path) => Err(Error::invalid(
            "data path",
            format!("the target cannot serve {path}; it serves {}", names()),
        )),
        Some(path) => match path.flags() - kernel {
            missing if missing.is_empty() => Ok(path),
            missing => Err(Error::Unsupported {
                what: format!("data path {path}"),
                missing,
            }),
        },
        None => served
            .iter()
            .copied()
            .find(|p| kernel.contains(p.flags()))
            .ok_or_else(|| Error::Unsupported {
                what: format!("every data path the target serves ({})", names()),
                missing: served
                    .iter()
                    .fold(Features::empty(), |m, p| m | (p.flags() - kernel)),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_PATHS: &[DataPath] = &[DataPath::ZeroCopy, DataPath::UserCopy, DataPath::Copy];

    #[test]
    fn auto_takes_the_targets_first_path_the_kernel_has() {
        let k612 = Some(Features::USER_COPY | Features::USER_RECOVERY);
        let k7 = Some(Features::USER_COPY | Features::AUTO_BUF_REG | Features::SUPPORT_ZERO_COPY);
        let pick = |served, kernel| choose_data_path(None, served, kernel).unwrap();
        assert_eq!(pick(ALL_PATHS, k7), DataPath::ZeroCopy);
        assert_eq!(pick(ALL_PATHS, k612), DataPath::UserCopy);
        // Without GET_FEATURES only copy is certain.
        assert_eq!(pick(ALL_PATHS, None), DataPath::Copy);
        assert_eq!(pick(&[DataPath::Copy], k7), DataPath::Copy);
        // AUTO_BUF_REG alone is not enough: the fallback needs SUPPORT_ZERO_COPY.
        let partial = Some(Features::AUTO_BUF_REG | Features::USER_COPY);
        assert_eq!(pick(ALL_PATHS, partial), DataPath::UserCopy);
    }

    #[test]
    fn a_path_the_target_or_kernel_lacks_is_refused_by_name() {
        let k612 = Some(Features::USER_COPY);
        let e = choose_data_path(Some(DataPath::ZeroCopy), ALL_PATHS, k612).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("data path zero-copy"), "{msg}");
        assert!(msg.contains("AUTO_BUF_REG"), "{msg}");
        let e = choose_data_path(Some(DataPath::UserCopy), &[DataPath::Copy], k612).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid data path: the target cannot serve user-copy; it serves copy"
        );
        // A target with no path the kernel has (a zero-copy-only one on 6.12).
        let e = choose_data_path(None, &[DataPath::ZeroCopy], k612).unwrap_err();
        assert!(e.to_string().contains("AUTO_BUF_REG"), "{e}");
        assert_eq!(
            choose_data_path(Some(DataPath::Copy), ALL_PATHS, None).unwrap(),
            DataPath::Copy
        );
    }
}
