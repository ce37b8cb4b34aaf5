//! `Controller`: the control device, opened, with typed and checked commands.

use std::fs::OpenOptions;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ublk_core::{Control, DevState, Fd, Features, UblkParams, UblksrvCtrlDevInfo};

use crate::error::{Error, Result};
use crate::rules;

/// What to ask ADD_DEV for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewDevice {
    /// The device id, or `None` to let the driver pick a free one.
    pub id: Option<u32>,
    /// Hardware queues, 1..=4096 (the driver grants at most one per CPU).
    pub queues: u16,
    /// Tags per queue, 1..=4096.
    pub queue_depth: u16,
    /// Largest I/O in bytes: a whole number of pages, from one page to 32 MiB
    /// ([`rules::max_io_bytes`]).
    pub max_io_bytes: u32,
    /// `UBLK_F_*` features to ask for.
    pub flags: Features,
}

impl Default for NewDevice {
    /// One queue of depth 128, 512 KiB I/O, any id, no optional features.
    fn default() -> NewDevice {
        NewDevice {
            id: None,
            queues: 1,
            queue_depth: 128,
            max_io_bytes: 512 << 10,
            flags: Features::empty(),
        }
    }
}

impl NewDevice {
    /// Refuses, with a message naming the field, what the driver would refuse with a bare
    /// `EINVAL`.
    pub fn validate(&self) -> Result<()> {
        rules::queues(self.queues.into())?;
        rules::queue_depth(self.queue_depth.into())?;
        rules::max_io_bytes(self.max_io_bytes.into())?;
        if let Some(id) = self.id {
            rules::device_id(id.into())?;
        }
        rules::recovery_flags(self.flags)
    }
}

/// A device's info as the driver reports it (ADD_DEV, GET_DEV_INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    raw: UblksrvCtrlDevInfo,
}

impl DeviceInfo {
    /// The device id: `/dev/ublkc<id>` and `/dev/ublkb<id>`.
    pub fn id(&self) -> u32 {
        self.raw.dev_id
    }

    /// Hardware queues granted.
    pub fn queues(&self) -> u16 {
        self.raw.nr_hw_queues
    }

    /// Tags per queue.
    pub fn queue_depth(&self) -> u16 {
        self.raw.queue_depth
    }

    /// Largest I/O in bytes (as rounded by the driver).
    pub fn max_io_bytes(&self) -> u32 {
        self.raw.max_io_buf_bytes
    }

    /// Features granted: those asked for that the driver supports, plus some it always sets.
    pub fn flags(&self) -> Features {
        self.raw.flags
    }

    /// The device state, or the raw number if this build does not know it.
    pub fn state(&self) -> std::result::Result<DevState, u16> {
        self.raw.dev_state()
    }

    /// The serving process, if any.
    pub fn server_pid(&self) -> Option<i32> {
        Some(self.raw.ublksrv_pid).filter(|&pid| pid > 0)
    }

    /// Owner user and group ids.
    pub fn owner(&self) -> (u32, u32) {
        (self.raw.owner_uid, self.raw.owner_gid)
    }

    /// Bytes per I/O descriptor: `sizeof(struct ublksrv_io_desc)` (24) unless `IO_DESC_SIZE`
    /// negotiated another size. Kernels before `IO_DESC_SIZE` report 0, meaning 24.
    pub fn io_desc_size(&self) -> u16 {
        match self.raw.io_desc_size {
            0 => std::mem::size_of::<ublk_core::abi::UblksrvIoDesc>() as u16,
            n => n,
        }
    }

    /// `/dev/ublkc<id>`.
    pub fn char_dev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/ublkc{}", self.id()))
    }

    /// `/dev/ublkb<id>` (present only while the device is started).
    pub fn block_dev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/ublkb{}", self.id()))
    }

    /// The raw `ublksrv_ctrl_dev_info`.
    pub fn raw(&self) -> &UblksrvCtrlDevInfo {
        &self.raw
    }
}

impl From<UblksrvCtrlDevInfo> for DeviceInfo {
    fn from(raw: UblksrvCtrlDevInfo) -> DeviceInfo {
        DeviceInfo { raw }
    }
}

/// The ublk driver's control device, opened: sends control commands, each bounded by a
/// timeout ([`Controller::set_timeout`], default 30 s).
///
/// `Send` (it may move to another thread) but used through `&mut self`, one command at a time.
#[derive(Debug)]
pub struct Controller {
    control: Control,
    path: PathBuf,
}

impl Controller {
    /// Where the driver's control device lives.
    pub const DEFAULT_PATH: &'static str = "/dev/ublk-control";

    /// Opens [`DEFAULT_PATH`](Self::DEFAULT_PATH).
    pub fn open() -> Result<Controller> {
        Self::open_path(Self::DEFAULT_PATH)
    }

    /// Opens the control device at `path`, which must be the ublk driver's: a character
    /// device with the numbers sysfs gives `ublk-control` (or, without sysfs, a misc device).
    /// Anything else (`/dev/null`, a file) is refused before any command is sent.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Controller> {
        let path = path.as_ref().to_path_buf();
        let fail = |source| Error::OpenControl {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        let sysfs = std::fs::read_to_string(CONTROL_SYSFS_DEV).ok();
        check_control_node(&meta, sysfs.as_deref())
            .map_err(|why| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, why)))?;
        // SAFETY: `into_raw_fd` hands over sole ownership of an open descriptor.
        let fd = unsafe { Fd::from_raw(file.into_raw_fd()) };
        let control = Control::new(fd)?;
        Ok(Controller { control, path })
    }

    /// The path this controller opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The time each command may take.
    pub fn timeout(&self) -> Duration {
        self.control.timeout()
    }

    /// Sets the time each command may take before it fails with a timeout error.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.control.set_timeout(timeout);
    }

    /// GET_FEATURES: the `UBLK_F_*` features the running driver supports.
    pub fn features(&mut self) -> Result<Features> {
        Ok(self.control.get_features()?)
    }

    /// ADD_DEV: creates `/dev/ublkc<id>` after checking `spec`; returns what the driver granted.
    pub fn add(&mut self, spec: &NewDevice) -> Result<DeviceInfo> {
        spec.validate()?;
        let info = UblksrvCtrlDevInfo {
            nr_hw_queues: spec.queues,
            queue_depth: spec.queue_depth,
            max_io_buf_bytes: spec.max_io_bytes,
            flags: spec.flags,
            ..Default::default()
        };
        Ok(self.control.add_dev(spec.id, &info)?.into())
    }

    /// DEL_DEV: removes the device and waits until its id is free.
    pub fn delete(&mut self, id: u32) -> Result<()> {
        Ok(self.control.del_dev(id)?)
    }

    /// DEL_DEV_ASYNC: removes the device without waiting for its id to be released.
    pub fn delete_async(&mut self, id: u32) -> Result<()> {
        Ok(self.control.del_dev_async(id)?)
    }

    /// START_DEV for server process `server_pid`. Completes only once every queue has fetched
    /// every tag; the device lifecycle (queues on their own threads) is built on this.
    pub fn start(&mut self, id: u32, server_pid: i32) -> Result<()> {
        Ok(self.control.start_dev(id, server_pid)?)
    }

    /// STOP_DEV.
    pub fn stop(&mut self, id: u32) -> Result<()> {
        Ok(self.control.stop_dev(id)?)
    }

    /// TRY_STOP_DEV: STOP_DEV unless the block device is open.
    pub fn try_stop(&mut self, id: u32) -> Result<()> {
        Ok(self.control.try_stop_dev(id)?)
    }

    /// SET_PARAMS (before START_DEV).
    pub fn set_params(&mut self, id: u32, params: &UblkParams) -> Result<()> {
        Ok(self.control.set_params(id, params)?)
    }

    /// GET_PARAMS, with the device numbers filled in.
    pub fn params(&mut self, id: u32) -> Result<UblkParams> {
        Ok(self.control.get_params(id)?)
    }

    /// GET_DEV_INFO.
    pub fn info(&mut self, id: u32) -> Result<DeviceInfo> {
        Ok(self.control.get_dev_info(id)?.into())
    }

    /// GET_DEV_INFO2 (checks access to `/dev/ublkc<id>`, which must exist).
    pub fn info2(&mut self, id: u32) -> Result<DeviceInfo> {
        Ok(self.control.get_dev_info2(id)?.into())
    }

    /// GET_QUEUE_AFFINITY: the CPUs whose I/O queue `queue` serves, ascending.
    pub fn queue_affinity(&mut self, id: u32, queue: u16) -> Result<Vec<usize>> {
        Ok(self.control.get_queue_affinity(id, queue)?.cpus().collect())
    }

    /// START_USER_RECOVERY.
    pub fn start_user_recovery(&mut self, id: u32) -> Result<()> {
        Ok(self.control.start_user_recovery(id)?)
    }

    /// END_USER_RECOVERY for the new server process `server_pid`.
    pub fn end_user_recovery(&mut self, id: u32, server_pid: i32) -> Result<()> {
        Ok(self.control.end_user_recovery(id, server_pid)?)
    }

    /// UPDATE_SIZE: resizes a started device to `sectors` 512-byte sectors.
    pub fn update_size(&mut self, id: u32, sectors: u64) -> Result<()> {
        Ok(self.control.update_size(id, sectors)?)
    }

    /// Resizes started device `id` to `bytes` with UPDATE_SIZE, after checking that the
    /// driver has it and that `bytes` is a non-zero multiple of the device's logical block
    /// size. Whether the server can serve the new size is the caller's to know
    /// ([`Device::resize`](crate::Device::resize) checks it).
    pub fn resize(&mut self, id: u32, bytes: u64) -> Result<()> {
        self.require(Features::UPDATE_SIZE, "UPDATE_SIZE (resizing a device)")?;
        let params = self.params(id)?;
        let lbs = 1u32 << params.basic.logical_bs_shift.min(31);
        rules::device_size(bytes, lbs)?;
        self.update_size(id, bytes / 512)
    }

    /// Fails with [`Error::Unsupported`] unless the driver has every feature of `needed`.
    /// Kernels without GET_FEATURES have none of the features worth checking.
    pub fn require(&mut self, needed: Features, what: &str) -> Result<()> {
        let kernel = self.control.driver_features().unwrap_or(Features::empty());
        let missing = needed - kernel;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::Unsupported {
                what: what.to_string(),
                missing,
            })
        }
    }

    /// QUIESCE_DEV, letting the kernel wait up to `kernel_wait` for in-flight I/O.
    pub fn quiesce(&mut self, id: u32, kernel_wait: Duration) -> Result<()> {
        Ok(self.control.quiesce_dev(id, kernel_wait)?)
    }

    /// The core control handle, for commands without a wrapper here.
    pub fn control(&mut self) -> &mut Control {
        &mut self.control
    }
}

/// The control device's numbers, as the kernel's misc class lists them (`MAJOR:MINOR`).
const CONTROL_SYSFS_DEV: &str = "/sys/class/misc/ublk-control/dev";

/// The misc devices' major number, `/dev/ublk-control`'s.
const MISC_MAJOR: u32 = 10;

/// Checks that `meta` (of the opened node) is the ublk control device: a character device
/// whose numbers are `sysfs`'s (the contents of [`CONTROL_SYSFS_DEV`]), or, where sysfs cannot
/// say, a misc device.
fn check_control_node(meta: &std::fs::Metadata, sysfs: Option<&str>) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !meta.file_type().is_char_device() {
        return Err("is not the ublk control device (not a character device)".into());
    }
    let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
    let control = sysfs.and_then(|text| {
        let (a, b) = text.trim().split_once(':')?;
        Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?))
    });
    match control {
        Some(numbers) if numbers == (major, minor) => Ok(()),
        Some((a, b)) => Err(format!(
            "is not the ublk control device (character device {major}:{minor}; ublk-control is {a}:{b})"
        )),
        None if major == MISC_MAJOR => Ok(()),
        None => Err(format!(
            "is not the ublk control device (character device {major}:{minor}, not a misc device)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_control_device_is_taken_for_it() {
        let null = std::fs::metadata("/dev/null").unwrap();
        let file = std::fs::metadata("/proc/self/status").unwrap();
        // /dev/null is 1:3; as if sysfs listed ublk-control as 10:120, or there were no sysfs.
        for sysfs in [Some("10:120\n"), None] {
            let why = check_control_node(&null, sysfs).unwrap_err();
            assert!(
                why.starts_with("is not the ublk control device (character device 1:3"),
                "{why}"
            );
            let why = check_control_node(&file, sysfs).unwrap_err();
            assert!(why.contains("not a character device"), "{why}");
        }
        // A node with the numbers sysfs gives is taken.
        assert_eq!(check_control_node(&null, Some("1:3\n")), Ok(()));
    }

    fn invalid(spec: NewDevice) -> String {
        spec.validate().unwrap_err().to_string()
    }

    #[test]
    fn default_spec_is_valid() {
        NewDevice::default().validate().unwrap();
    }

    #[test]
    fn bad_specs_name_the_field_and_value() {
        let d = NewDevice::default();
        assert_eq!(
            invalid(NewDevice { queues: 0, ..d }),
            "invalid queue count: must be 1..=4096, got 0"
        );
        assert_eq!(
            invalid(NewDevice {
                queue_depth: 4097,
                ..d
            }),
            "invalid queue depth: must be 1..=4096, got 4097"
        );
        assert!(
            invalid(NewDevice {
                max_io_bytes: 100,
                ..d
            })
            .starts_with("invalid max I/O size: must be ")
        );
        assert!(
            invalid(NewDevice {
                max_io_bytes: (32 << 20) + 1,
                ..d
            })
            .ends_with("got 33554433")
        );
        assert!(
            invalid(NewDevice {
                id: Some(u32::MAX),
                ..d
            })
            .starts_with("invalid device id")
        );
        assert!(
            invalid(NewDevice {
                max_io_bytes: 4096 + 512,
                ..d
            })
            .starts_with("invalid max I/O size: must be a multiple of the page size")
        );
        let reissue_alone = NewDevice {
            flags: Features::USER_RECOVERY_REISSUE,
            ..d
        };
        assert!(
            invalid(reissue_alone)
                .starts_with("invalid recovery flags: USER_RECOVERY_REISSUE is not")
        );
        let both = Features::USER_RECOVERY
            | Features::USER_RECOVERY_REISSUE
            | Features::USER_RECOVERY_FAIL_IO;
        assert!(invalid(NewDevice { flags: both, ..d }).starts_with("invalid recovery flags"));
        assert_eq!(
            invalid(NewDevice {
                flags: Features::QUIESCE,
                ..d
            }),
            "invalid flags: QUIESCE needs recovery (a quiesced device waits for a new server)"
        );
        NewDevice {
            flags: Features::USER_RECOVERY | Features::QUIESCE,
            ..d
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn missing_control_device_says_how_to_fix_it() {
        let err = Controller::open_path("/nonexistent/ublk-control").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot open /nonexistent/ublk-control: it does not exist; the ublk driver is not loaded (try: modprobe ublk_drv)"
        );
        assert_eq!(err.errno(), Some(ublk_core::Errno::ENOENT));
    }
}
