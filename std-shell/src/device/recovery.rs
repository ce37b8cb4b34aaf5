//! Recovery: what the driver does with a device whose server died, and how a new server takes
//! it over (START_USER_RECOVERY, every tag fetched again, END_USER_RECOVERY), keeping the same
//! `/dev/ublkbN` and whatever is mounted on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ublk_core::abi::{Attrs, ParamTypes, UblkParams};
use ublk_core::{DataPath, DevState, Errno, Features};

use super::params::Settings;
use super::{Device, DeviceBuilder};
use crate::backend::{Backend, Blocking, Target};
use crate::control::DeviceInfo;
use crate::error::{Error, Result};
use crate::rules;
use crate::signal::process_alive;

/// What the driver does with a device whose server exits without stopping it (a crash, a
/// `kill -9`, QUIESCE_DEV), until a new server takes it over with
/// [`DeviceBuilder::recover_target`].
///
/// Only the server dies: data a file-backed target wrote is in its file, so a new server
/// serves it on. A RAM disk's data lives in the server's memory and dies with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recovery {
    /// No recovery: the driver stops the device; I/O fails and it can only be deleted.
    #[default]
    Off,
    /// `USER_RECOVERY`: the device is quiesced. New I/O waits for the next server; requests
    /// the dead server had taken fail with EIO.
    Queue,
    /// `USER_RECOVERY | USER_RECOVERY_REISSUE`: the device is quiesced. New I/O waits, and the
    /// requests the dead server had taken are sent again to the next one: no I/O fails.
    Reissue,
    /// `USER_RECOVERY | USER_RECOVERY_FAIL_IO` (Linux 6.13): I/O fails at once with EIO until
    /// the next server takes over, so nothing waits on a server that may never come.
    FailIo,
}

impl Recovery {
    /// Every mode, in the order help lists them.
    pub const ALL: [Recovery; 4] = [
        Recovery::Off,
        Recovery::Queue,
        Recovery::Reissue,
        Recovery::FailIo,
    ];

    /// The `UBLK_F_*` flags of this mode.
    pub const fn flags(self) -> Features {
        match self {
            Recovery::Off => Features::empty(),
            Recovery::Queue => Features::USER_RECOVERY,
            Recovery::Reissue => Features::USER_RECOVERY.union(Features::USER_RECOVERY_REISSUE),
            Recovery::FailIo => Features::USER_RECOVERY.union(Features::USER_RECOVERY_FAIL_IO),
        }
    }

    /// The mode of a device with these flags (as GET_DEV_INFO reports them).
    pub fn of(flags: Features) -> Recovery {
        if !flags.contains(Features::USER_RECOVERY) {
            Recovery::Off
        } else if flags.contains(Features::USER_RECOVERY_FAIL_IO) {
            Recovery::FailIo
        } else if flags.contains(Features::USER_RECOVERY_REISSUE) {
            Recovery::Reissue
        } else {
            Recovery::Queue
        }
    }

    /// Its name on the command line and in JSON: `off`, `queue`, `reissue`, `fail-io`.
    pub const fn name(self) -> &'static str {
        match self {
            Recovery::Off => "off",
            Recovery::Queue => "queue",
            Recovery::Reissue => "reissue",
            Recovery::FailIo => "fail-io",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Recovery> {
        Recovery::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What a device's parameters (GET_PARAMS) bind a new server to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Served {
    /// Bytes.
    pub size: u64,
    pub logical_block_size: u32,
    pub read_only: bool,
}

/// Reads the geometry a new server must serve from the kernel's parameters; anything that
/// no server of ours could have set (no basic part, a block size outside 512..=page, a size
/// of 0, past u64 bytes, or not whole blocks) is refused with the reason.
pub(crate) fn served_geometry(params: &UblkParams) -> std::result::Result<Served, String> {
    if !params.types.contains(ParamTypes::BASIC) {
        return Err("they have no basic part (size and block sizes)".into());
    }
    let basic = &params.basic;
    let shift = u32::from(basic.logical_bs_shift);
    let logical_block_size = 1u32
        .checked_shl(shift)
        .filter(|&bytes| rules::logical_block_size(bytes).is_ok())
        .ok_or_else(|| {
            format!("logical block size 2^{shift} is outside 512 bytes..=the page size")
        })?;
    let size = basic.dev_sectors.checked_mul(512).ok_or_else(|| {
        format!(
            "{} sectors is more bytes than fit 64 bits",
            basic.dev_sectors
        )
    })?;
    if rules::device_size(size, logical_block_size).is_err() {
        return Err(format!(
            "size {size} bytes is not a non-zero multiple of the logical block size {logical_block_size}"
        ));
    }
    Ok(Served {
        size,
        logical_block_size,
        read_only: basic.attrs.contains(Attrs::READ_ONLY),
    })
}

/// How long a device may stay live with a server before recovering it is refused: a server
/// just killed is still listed while it exits.
const LIVE_SERVER_GRACE: Duration = Duration::from_secs(3);

impl DeviceBuilder {
    /// Takes over device `id`, whose server died, with a synchronous [`Backend`]; see
    /// [`recover_target`](Self::recover_target).
    pub fn recover<B: Backend>(self, id: u32, backend: B) -> Result<Device> {
        self.recover_target(id, Blocking(Arc::new(backend)))
    }

    /// Takes over device `id`, created with [`recovery`](Self::recovery) and whose server
    /// died (or was quiesced), serving it from `target`: START_USER_RECOVERY, one thread per
    /// queue fetching every tag, END_USER_RECOVERY. Returns once the device is live again,
    /// with the same `/dev/ublkb<id>`; I/O that waited is then served.
    ///
    /// The queues, depth, I/O size, parameters and data path are the device's, as the kernel
    /// kept them: of this builder only the control path, the command timeout and the
    /// buffer-registration fallback for tests apply. `target` must
    /// hold the device's size and serve its logical block size, and must be writable unless
    /// the device is read-only: it should be the same storage the dead server had.
    ///
    /// Waits (up to the command timeout) for a server that is still exiting. A device that
    /// has a running server, was stopped, or was created without recovery is refused, and so
    /// is a `target` that cannot serve it; neither changes the device. If the new server fails
    /// before the device is live again, the device stays waiting for another one; but kernels
    /// like 6.12 then refuse a second START_USER_RECOVERY (EINVAL), and the device can only be
    /// deleted.
    pub fn recover_target<T: Target>(self, id: u32, target: T) -> Result<Device> {
        let mut ctrl = self.open_control()?;
        let info = ctrl.info(id)?;
        if Recovery::of(info.flags()) == Recovery::Off {
            return Err(Error::state(
                id,
                "it was created without recovery, so no new server can take it over",
            ));
        }
        // The data path is the device's, as it was added: the target must serve it.
        let path = DataPath::of(info.flags());
        if !info.flags().contains(path.flags()) {
            return Err(Error::state(
                id,
                format!(
                    "its data path is {path} with buffers registered by hand ({}), which this library does not serve",
                    info.flags() & path.flags()
                ),
            ));
        }
        if !target.data_paths().contains(&path) {
            return Err(Error::state(
                id,
                format!("it is served on the {path} data path, which the target cannot serve"),
            ));
        }
        let params = ctrl.params(id)?;
        let served = served_geometry(&params)
            .map_err(|why| Error::state(id, format!("its parameters cannot be served: {why}")))?;
        // The device's geometry, as settings: the builder's own checks then refuse, by name, a
        // backend that cannot serve it (too small, a larger block size, read-only).
        let properties = target.properties();
        Settings {
            size: Some(served.size),
            logical_block_size: Some(served.logical_block_size),
            read_only: Some(served.read_only),
            ..Settings::default()
        }
        .resolve(&properties)?;

        start_recovery(&mut ctrl, id, info)?;
        let size_limit = properties.size.unwrap_or(served.size);
        let mut device = Device::recovering(info, ctrl, size_limit);
        device.force_buffer_fallback = self.force_buffer_fallback;
        let attached = device
            .serve_queues(Arc::new(target))
            .and_then(|()| device.ctrl.end_user_recovery(id, ublk_core::sys::getpid()));
        if let Err(e) = attached {
            // Not deleted: ending a recovering device leaves it waiting for another server,
            // with its I/O and data.
            let _ = device.shut_down();
            return Err(e);
        }
        device.recovered();
        Ok(device)
    }
}

/// START_USER_RECOVERY once the old server is gone: the driver refuses it (EBUSY) until the
/// dead server's `/dev/ublkcN` is released and the device quiesced, which takes a moment
/// after the process died.
fn start_recovery(ctrl: &mut crate::Controller, id: u32, mut info: DeviceInfo) -> Result<()> {
    let deadline = Instant::now() + ctrl.timeout();
    let mut live_since: Option<Instant> = None;
    loop {
        match info.state() {
            Ok(DevState::Dead) => {
                return Err(Error::state(
                    id,
                    "it is stopped (dead), so there is nothing to recover: delete it",
                ));
            }
            Ok(DevState::Live) => {
                let since = *live_since.get_or_insert_with(Instant::now);
                // Some kernels (6.12) keep a dead server's pid until their monitor notices.
                if let Some(pid) = info.server_pid().filter(|&p| process_alive(p))
                    && since.elapsed() >= LIVE_SERVER_GRACE
                {
                    return Err(Error::state(
                        id,
                        format!("it is live, served by pid {pid}: stop that server first"),
                    ));
                }
            }
            _ => match ctrl.start_user_recovery(id) {
                Ok(()) => return Ok(()),
                Err(e) if e.errno() == Some(Errno::EBUSY) => {}
                Err(e) if e.errno() == Some(Errno::EINVAL) => {
                    return Err(Error::state(
                        id,
                        format!(
                            "{e}: kernels like 6.12 refuse a new recovery once one failed half way, so it cannot be retried; delete the device"
                        ),
                    ));
                }
                Err(e) => return Err(e),
            },
        }
        if Instant::now() >= deadline {
            let state = info
                .state()
                .map_or_else(|n| format!("state {n}"), |s| s.name().into());
            return Err(Error::state(
                id,
                format!(
                    "it is still {state} after {} s: its old server has not let go of {}",
                    ctrl.timeout().as_secs(),
                    info.char_dev_path().display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
        info = ctrl.info(id)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ublk_core::abi::UblkParamBasic;

    #[test]
    fn modes_and_flags_round_trip() {
        for mode in Recovery::ALL {
            assert_eq!(Recovery::of(mode.flags()), mode);
            assert_eq!(Recovery::from_name(mode.name()), Some(mode));
            // Other flags do not change the mode.
            assert_eq!(
                Recovery::of(mode.flags() | Features::QUIESCE | Features::NEED_GET_DATA),
                mode
            );
        }
        assert_eq!(Recovery::from_name("Reissue"), None);
        // REISSUE or FAIL_IO without USER_RECOVERY means nothing to the driver.
        assert_eq!(Recovery::of(Features::USER_RECOVERY_FAIL_IO), Recovery::Off);
    }

    fn params(shift: u8, sectors: u64, attrs: Attrs) -> UblkParams {
        UblkParams::new().with_basic(UblkParamBasic {
            attrs,
            logical_bs_shift: shift,
            physical_bs_shift: shift,
            dev_sectors: sectors,
            ..Default::default()
        })
    }

    #[test]
    fn served_geometry_reads_and_checks_the_parameters() {
        assert_eq!(
            served_geometry(&params(12, 2048, Attrs::READ_ONLY)),
            Ok(Served {
                size: 1 << 20,
                logical_block_size: 4096,
                read_only: true
            })
        );
        assert_eq!(
            served_geometry(&params(9, 1, Attrs::empty())).map(|s| (s.size, s.read_only)),
            Ok((512, false))
        );
        let bad = [
            (UblkParams::new(), "no basic part"),
            (params(8, 8, Attrs::empty()), "logical block size 2^8"),
            (params(31, 8, Attrs::empty()), "logical block size 2^31"),
            (params(9, 0, Attrs::empty()), "size 0 bytes"),
            (params(12, 9, Attrs::empty()), "size 4608 bytes"),
            (params(9, u64::MAX, Attrs::empty()), "more bytes than fit"),
        ];
        for (p, want) in bad {
            let err = served_geometry(&p).expect_err(want);
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
