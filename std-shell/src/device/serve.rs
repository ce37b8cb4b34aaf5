//! A server's life after start: serving until a signal, a stop from outside or a failed
//! queue, then letting the device go as that calls for, and saying what became of it.

use std::time::{Duration, Instant};

use ublk_core::{DevState, Errno, Features};

use super::{Device, Recovery, Stats};
use crate::control::DeviceInfo;
use crate::error::{Error, Result};
use crate::poll::poll_until;
use crate::signal::TerminationSignals;

/// How often [`Device::serve_until`] looks at the queues between signals.
const SERVE_POLL: Duration = Duration::from_millis(200);

/// How long a device stopped or quiesced from outside may take to be said so by the driver
/// once its server has let it go (its files are released by a kernel worker).
const FATE_SETTLES: Duration = Duration::from_secs(2);

/// Why [`Device::serve_until`] stopped serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// This signal arrived (`libc::SIGINT`, `SIGTERM` or `SIGHUP`).
    Signal(i32),
    /// The driver ended every queue: the device was stopped or deleted from outside (`ublk
    /// del`, another process's STOP_DEV or DEL_DEV), or quiesced (QUIESCE_DEV).
    StoppedOutside,
    /// A queue failed (its error is the one [`Served::fate`] reports).
    QueueFailed,
}

/// What became of a device once its server let go of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Stopped and deleted: its id is free (or is freed as its last queue ends).
    Deleted,
    /// Stopped, not deleted (it was stopped from outside): it serves nothing, and waits only
    /// to be deleted by whoever stopped it.
    Stopped,
    /// It waits for a new server ([`DeviceBuilder::recover_target`](super::DeviceBuilder::recover_target)): it was quiesced from
    /// outside, or it has recovery and a queue failed, so it was left as if its server had
    /// died rather than deleted with the data it serves.
    WaitsForRecovery,
    /// The driver could not be asked (a transient error such as EMFILE or a timeout), so what
    /// became of it is not known: assume it may still need its server's state.
    Unknown,
}

/// What [`Device::serve_until`] reports once it is done.
#[derive(Debug)]
pub struct Served {
    /// Why serving ended.
    pub ended: Ended,
    /// What was served (read before the device was let go).
    pub stats: Stats,
    /// What became of the device.
    pub fate: Fate,
    /// The first error serving or letting the device go: a failed queue's, a control
    /// command's, a queue thread's that did not end in time.
    pub error: Option<Error>,
}

impl Device {
    /// Serves until one of `signals` arrives (SIGINT, SIGTERM, SIGHUP), the driver ends the
    /// queues (the device was stopped, deleted or quiesced from outside) or a queue fails;
    /// then lets the device go as that calls for, and says why, what was served and what
    /// became of the device:
    ///
    /// - on a signal, it is stopped and deleted ([`Device::stop`]);
    /// - stopped or quiesced from outside, it is left to whoever did it (a quiesced device
    ///   then waits for a new server, [`Fate::WaitsForRecovery`]);
    /// - when a queue failed, a device with recovery is left to a new server, as if this one
    ///   had died: deleting it would throw away what it serves (mounted file systems, held
    ///   I/O). Without recovery it is stopped and deleted.
    ///
    /// Block the signals ([`TerminationSignals::block`]) before the device is started, so its
    /// queue threads inherit the mask.
    pub fn serve_until(self, signals: &TerminationSignals) -> Served {
        self.serve_until_watching(signals, &mut || {})
    }

    /// [`Device::serve_until`], calling `watch` between waits (five times a second): for a
    /// server that reports what its target is doing (an NBD target's connections) as it
    /// changes.
    pub fn serve_until_watching(
        mut self,
        signals: &TerminationSignals,
        watch: &mut dyn FnMut(),
    ) -> Served {
        let ended = loop {
            if let Some(sig) = signals.wait(SERVE_POLL) {
                break Ended::Signal(sig);
            }
            watch();
            if !self.is_running() {
                break if self.queues.iter().all(|q| q.ended_by_abort()) {
                    Ended::StoppedOutside
                } else {
                    Ended::QueueFailed
                };
            }
        };
        let stats = self.stats();
        let recoverable = Recovery::of(self.info.flags()) != Recovery::Off;
        let (fate, error) = if ended == Ended::QueueFailed && recoverable {
            (Fate::WaitsForRecovery, self.leave_for_recovery())
        } else {
            match self.shut_down() {
                Ok(()) if ended != Ended::StoppedOutside => (Fate::Deleted, None),
                Ok(()) => (self.fate_from_driver(), None),
                Err(e) => (self.fate_from_driver(), Some(e)),
            }
        };
        Served {
            ended,
            stats,
            fate,
            error,
        }
    }

    /// What the driver says became of the device once this server let it go. Its last
    /// references to `/dev/ublkcN` (the queue rings' registered files) are dropped by the
    /// kernel's io_uring teardown, which runs after the queue threads have ended, and only
    /// then does a quiesced device become QUIESCED: so a device still said to be live is
    /// asked again, for up to [`FATE_SETTLES`].
    fn fate_from_driver(&mut self) -> Fate {
        let known = || {
            let fate = fate_of(self.ctrl.info(self.id()), self.info.flags());
            (fate != Fate::Unknown).then_some(fate)
        };
        let deadline = Instant::now() + FATE_SETTLES;
        poll_until(deadline, Duration::from_millis(20), known).unwrap_or(Fate::Unknown)
    }
}

/// What became of a device, from the driver's answer about it (`info`, GET_DEV_INFO) once its
/// server let it go; `flags` are the device's own, to tell a new device of the same id.
fn fate_of(info: Result<DeviceInfo>, flags: Features) -> Fate {
    match info {
        Err(e) if e.errno() == Some(Errno::ENODEV) => Fate::Deleted,
        // EMFILE, a timeout: nothing is known, and nothing must be concluded.
        Err(_) => Fate::Unknown,
        // A new device of the same id is not this one's business.
        Ok(info) if info.flags() != flags => Fate::Deleted,
        Ok(info) => match info.state() {
            Ok(DevState::Dead) => Fate::Stopped,
            Ok(DevState::Quiesced | DevState::FailIo) => Fate::WaitsForRecovery,
            _ => Fate::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ublk_core::UblksrvCtrlDevInfo;

    /// Defect 7 of issue 18: a transient error asking the driver about a quiesced device
    /// (EMFILE, a timeout) must not pass for "it is gone".
    #[test]
    fn only_the_drivers_word_says_a_device_is_gone() {
        let flags = Features::USER_RECOVERY | Features::QUIESCE;
        let info = |state: DevState, flags| {
            Ok(DeviceInfo::from(UblksrvCtrlDevInfo {
                dev_id: 3,
                nr_hw_queues: 1,
                queue_depth: 1,
                state: state as u16,
                flags,
                ..Default::default()
            }))
        };
        let err = |errno: Errno| {
            Err(Error::Command(ublk_core::CtrlError {
                cmd: ublk_core::CtrlCmd::GetDevInfo,
                dev_id: Some(3),
                kind: ublk_core::CtrlErrorKind::Kernel(errno),
            }))
        };
        assert_eq!(fate_of(err(Errno::ENODEV), flags), Fate::Deleted);
        assert_eq!(fate_of(err(Errno::EMFILE), flags), Fate::Unknown);
        let timeout = Err(Error::Command(ublk_core::CtrlError {
            cmd: ublk_core::CtrlCmd::GetDevInfo,
            dev_id: Some(3),
            kind: ublk_core::CtrlErrorKind::TimedOut {
                waited: Duration::from_secs(30),
                cancelled: true,
            },
        }));
        assert_eq!(fate_of(timeout, flags), Fate::Unknown);
        let open_failed = Err(Error::OpenControl {
            path: "/dev/ublk-control".into(),
            source: Errno::EMFILE.into(),
        });
        assert_eq!(fate_of(open_failed, flags), Fate::Unknown);
        assert_eq!(
            fate_of(info(DevState::Quiesced, flags), flags),
            Fate::WaitsForRecovery
        );
        assert_eq!(
            fate_of(info(DevState::FailIo, flags), flags),
            Fate::WaitsForRecovery
        );
        assert_eq!(fate_of(info(DevState::Dead, flags), flags), Fate::Stopped);
        assert_eq!(fate_of(info(DevState::Live, flags), flags), Fate::Unknown);
        // Another device by now, with the same id.
        assert_eq!(
            fate_of(info(DevState::Live, Features::empty()), flags),
            Fate::Deleted
        );
    }
}
