//! The NBD target ([`Nbd`]): a device backed by an export of any NBD server.
//!
//! Below it: the protocol's numbers and fixed-size messages ([`proto`]), the connection to an
//! export ([`connect`], [`handshake`], and why it failed: [`error`]), synchronous, for the
//! handshake that comes before a queue starts; and each queue's transmission on its own
//! io_uring ([`queue`]).

pub(crate) mod connect;
pub(crate) mod error;
pub(crate) mod handshake;
// The protocol's tables and messages are whole, both sides: the client uses its side, the
// tests' fake servers the other (a server encodes replies and decodes requests).
#[allow(dead_code)]
pub(crate) mod proto;
mod queue;
mod staging;
mod target;

pub use queue::NbdQueue;
pub use target::{Nbd, NbdAddress, NbdOptions, NbdStatus, NbdStatusHandle};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
