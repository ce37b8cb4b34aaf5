//! The control device, as every command opens it: `/dev/ublk-control` or `$UBLK_CONTROL`.

use std::path::PathBuf;

use ublk::sys::Errno;
use ublk::{Controller, DeviceInfo};

use super::failure::Failure;

/// The control device: `/dev/ublk-control`, or `$UBLK_CONTROL` (a driver's node elsewhere,
/// e.g. in a container).
pub fn control_path() -> PathBuf {
    std::env::var_os("UBLK_CONTROL")
        .unwrap_or_else(|| Controller::DEFAULT_PATH.into())
        .into()
}

/// The control device opened, or the error that says what to do (load the driver, be root).
pub fn open_control() -> Result<Controller, Failure> {
    Ok(Controller::open_path(control_path())?)
}

/// GET_DEV_INFO for device `id`; a device that does not exist is [`Failure::NoDevice`].
pub fn device_info(ctl: &mut Controller, id: u32) -> Result<DeviceInfo, Failure> {
    ctl.info(id).map_err(|e| match e.errno() {
        Some(Errno::ENODEV) => Failure::NoDevice(id),
        _ => e.into(),
    })
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
