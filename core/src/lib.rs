//! `ublk-core`: the `no_std`, allocation-free core of a userspace block device server for
//! Linux's ublk driver.
//!
//! The driver (`ublk_drv`) exposes `/dev/ublk-control` for control commands and, per device,
//! `/dev/ublkcN` for I/O commands; both travel as io_uring `URING_CMD`s. A server:
//!
//! 1. opens `/dev/ublk-control` and creates a [`Control`] over it;
//! 2. ADD_DEV ([`Control::add_dev`]) creates `/dev/ublkcN`; SET_PARAMS
//!    ([`Control::set_params`]) gives it a size and limits;
//! 3. on one thread per queue, maps the queue's descriptors from `/dev/ublkcN` and issues a
//!    FETCH_REQ per tag on a [`Ring`] of 64-byte SQEs ([`abi::io`]);
//! 4. START_DEV ([`Control::start_dev`]) from the control thread: `/dev/ublkbN` appears once every
//!    queue is waiting;
//! 5. serves each request and answers with COMMIT_AND_FETCH_REQ; STOP_DEV and DEL_DEV end it.
//!
//! This crate holds the parts that need no operating-system services beyond raw syscalls: the
//! kernel ABI ([`abi`], layouts checked at compile time), the io_uring ([`ring`]), control
//! command encoding and bounded completion ([`ctrl`]), and the I/O queue ([`queue`]) with its
//! per-tag state machine ([`tag`]). Threads, files and device lifecycle live
//! in the `ublk` crate.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod abi;
pub mod ctrl;
pub mod errno;
pub mod queue;
pub mod ring;
#[cfg(feature = "std")]
mod std_io;
pub mod sys;
pub mod tag;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use abi::{CtrlCmd, DevState, Features, IoOp, OpEncoding, UblkParams, UblksrvCtrlDevInfo};
pub use ctrl::{Control, CpuMask, CtrlError, CtrlErrorKind};
pub use errno::Errno;
pub use queue::{DataPath, Event, Queue, QueueConfig, QueueError, RequestIo, RequestSocketIo};
pub use ring::{FixedIo, Ring, RingConfig, RingError, Target};
pub use sys::{Fd, Mapping, RawFd};
pub use tag::{TagSlot, TagState, TagTable};

/// The control ring: 128-byte SQEs (a control command's payload needs the larger command
/// area) and 32-byte CQEs.
pub type CtrlRing = Ring<abi::uring::Sqe128, abi::uring::Cqe32>;

/// An I/O queue's ring: `ublksrv_io_cmd` fits a 64-byte SQE, and 16-byte CQEs suffice.
pub type QueueRing = Ring<abi::uring::Sqe64, abi::uring::Cqe16>;

// A control handle may move between threads (one command at a time, through `&mut`); a ring
// may move with its owner but is not shared. Checked here so a change cannot silently flip it.
static_assertions::assert_impl_all!(Control: Send);
static_assertions::assert_impl_all!(QueueRing: Send);
static_assertions::assert_not_impl_any!(QueueRing: Sync);
static_assertions::assert_not_impl_any!(CtrlRing: Sync);
static_assertions::assert_impl_all!(Queue<'static>: Send);
static_assertions::assert_not_impl_any!(Queue<'static>: Sync);

// Every error type of the core is a `core::error::Error`, so callers can box it, chain it
// (`source`) and, with the `std` feature, turn it into an `io::Error` with `?`.
static_assertions::assert_impl_all!(
    Errno: core::error::Error, Send, Sync, Copy
);
static_assertions::assert_impl_all!(RingError: core::error::Error, Send, Sync);
static_assertions::assert_impl_all!(CtrlError: core::error::Error, Send, Sync);
static_assertions::assert_impl_all!(QueueError: core::error::Error, Send, Sync);
static_assertions::assert_impl_all!(tag::InvalidTransition: core::error::Error, Send, Sync);
