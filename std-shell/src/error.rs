//! `ublk::Error`: one error type whose messages name the operation and the object.

use std::fmt;
use std::io;
use std::path::PathBuf;

use ublk_core::{CtrlError, Features, RingError};

/// Everything that can go wrong in this crate, with messages written for a human at a terminal.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Opening the control device failed (driver not loaded, no permission, ...).
    OpenControl {
        /// The path tried.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A control command failed or timed out; the message names the command and device.
    Command(CtrlError),
    /// An io_uring operation failed.
    Ring(RingError),
    /// A system call outside the ublk protocol failed (opening `/dev/ublkcN`, spawning a
    /// thread, ...).
    Io {
        /// What was being done, naming the object (`"opening /dev/ublkc3"`).
        op: String,
        /// Why.
        source: io::Error,
    },
    /// A queue of a device failed to start or while serving.
    Queue {
        /// The device.
        dev_id: u32,
        /// The queue.
        q_id: u16,
        /// What failed, with the cause (`"setting up its ring: ..."`, `"panicked"`).
        reason: String,
    },
    /// An argument was refused before anything was sent to the kernel.
    InvalidArgument {
        /// What was wrong (`"queue depth"`).
        what: &'static str,
        /// Why, with the value given (`"must be 1..=4096, got 0"`).
        reason: String,
    },
    /// The running kernel's ublk driver lacks features that were asked for.
    Unsupported {
        /// What needed them (`"recovery mode fail-io"`, `"UPDATE_SIZE"`).
        what: String,
        /// The missing `UBLK_F_*` features.
        missing: Features,
    },
    /// An NBD server could not be reached, refused the export, or sent what the protocol does
    /// not allow; the message names the server and what it did.
    Nbd {
        /// What happened (`"cannot connect to the NBD server at 10.0.0.1:10809: ..."`).
        reason: String,
    },
    /// A device is not in a state that allows what was asked (recovering a device that has
    /// a live server, resizing one that is stopped, ...).
    DeviceState {
        /// The device.
        dev_id: u32,
        /// Why, naming the state (`"it is live, served by pid 42"`).
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kernel's errno, when the kernel answered with one.
    pub fn errno(&self) -> Option<ublk_core::Errno> {
        match self {
            Error::Command(e) => e.errno(),
            Error::OpenControl { source, .. } | Error::Io { source, .. } => {
                source.raw_os_error().map(ublk_core::Errno)
            }
            Error::Ring(e) => e.errno(),
            _ => None,
        }
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            op: op.into(),
            source,
        }
    }

    pub(crate) fn state(dev_id: u32, reason: impl Into<String>) -> Error {
        Error::DeviceState {
            dev_id,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OpenControl { path, source } => {
                let path = path.display();
                match source.kind() {
                    io::ErrorKind::NotFound => write!(
                        f,
                        "cannot open {path}: it does not exist; the ublk driver is not loaded (try: modprobe ublk_drv)"
                    ),
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        "cannot open {path}: permission denied (run as root: ublk devices need CAP_SYS_ADMIN, since this build makes no UNPRIVILEGED_DEV devices)"
                    ),
                    // Opened, but not the driver's node (see Controller::open_path).
                    io::ErrorKind::InvalidInput => write!(f, "{path} {source}"),
                    _ => write!(f, "cannot open {path}: {source}"),
                }
            }
            Error::Command(e) => write!(f, "{e}"),
            Error::Ring(e) => write!(f, "{e}"),
            Error::Io { op, source } => write!(f, "{op}: {source}"),
            Error::Queue {
                dev_id,
                q_id,
                reason,
            } => write!(f, "device {dev_id}, queue {q_id}: {reason}"),
            Error::InvalidArgument { what, reason } => write!(f, "invalid {what}: {reason}"),
            Error::Unsupported { what, missing } => write!(
                f,
                "{what}: the running kernel's ublk driver lacks {missing} (see `ublk features`)"
            ),
            Error::DeviceState { dev_id, reason } => write!(f, "device {dev_id}: {reason}"),
            Error::Nbd { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::OpenControl { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Command(e) => Some(e),
            Error::Ring(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CtrlError> for Error {
    fn from(e: CtrlError) -> Error {
        Error::Command(e)
    }
}

impl From<RingError> for Error {
    fn from(e: RingError) -> Error {
        Error::Ring(e)
    }
}
