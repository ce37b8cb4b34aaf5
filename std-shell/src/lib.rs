//! `ublk`: userspace block devices on Linux, served by Rust.
//!
//! Linux's ublk driver hands block I/O to a userspace server over io_uring. This crate is the
//! `std` side of the project: it opens the control device ([`Controller`]), starts devices
//! ([`Device::builder`]) whose queue threads serve I/O from a [`Backend`] or [`Target`], and
//! stops them. The kernel ABI, the io_uring and command encoding live in
//! the `no_std` crate [`ublk_core`], re-exported here as [`sys`].
//!
//! ```no_run
//! # fn main() -> ublk::Result<()> {
//! // A 1 GiB null device with two queues: /dev/ublkbN reads zeroes, takes any write.
//! let dev = ublk::Device::builder().queues(2).depth(64).start_target(ublk::Null::new(1 << 30))?;
//! println!("serving {}", dev.block_dev_path().display());
//! dev.stop()?; // or drop it
//!
//! // The control commands, one by one.
//! let mut ctl = ublk::Controller::open()?; // needs root and `modprobe ublk_drv`
//! for name in ctl.features()?.names() {
//!     println!("kernel supports {name}");
//! }
//! let dev = ctl.add(&ublk::NewDevice { queues: 2, queue_depth: 64, ..Default::default() })?;
//! println!("created {}", dev.char_dev_path().display());
//! ctl.delete(dev.id())?;
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
mod control;
mod device;
mod error;
mod features;
pub mod json;
pub mod os;
pub mod poll;
mod resolve;
pub mod rules;
pub mod signal;

pub use backend::{Backend, DiscardLimits, Loop, LoopOptions, Mem, Null, Properties, Target};
pub use control::{Controller, DeviceInfo, NewDevice};
pub use device::{Device, DeviceBuilder, Ended, Fate, Recovery, Served, Stats};
pub use error::{Error, Result};
pub use features::{BUILD_FEATURES, FeatureSupport, feature_report, features};
pub use ublk_core as sys;
pub use ublk_core::abi::{
    Attrs, DevState, Features, ParamTypes, UblkParamBasic, UblkParamDiscard, UblkParams,
};
pub use ublk_core::{DataPath, RequestIo};

// A `Controller` can be handed to another thread (commands go one at a time through `&mut`).
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Controller>();
};

// The README's Rust examples compile as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
