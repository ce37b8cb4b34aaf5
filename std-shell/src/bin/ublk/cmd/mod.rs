//! The commands, one file each; none uses another (`scripts/check-policy.sh` checks): what
//! they share is in `server/` (serving a device) and `support/` (options, output, the control
//! device). Each has `run(args)`, `help()`, its `SYNOPSIS` and `ABOUT`, and its options as an
//! enum.

pub mod add;
pub mod del;
pub mod features;
pub mod help;
pub mod list;
pub mod quiesce;
pub mod recover;
pub mod resize;
