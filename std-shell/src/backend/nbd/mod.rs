//! The foundation of an NBD client: the protocol's numbers and fixed-size messages
//! ([`proto`]), and the connection to an export ([`connect`], [`handshake`], and why it
//! failed: [`error`]).
//!
//! The NBD target (a device backed by any NBD server) is built on these: each queue will
//! send its requests and receive the replies on its own io_uring. What is here is
//! synchronous, for the handshake that comes before a queue starts.
//!
//! The end-to-end tests compile this directory into their own binary (by path) to run the
//! handshake against real servers, so it uses only `std`, `libc` and `ublk_core`, and
//! nothing else of this crate.

pub(crate) mod connect;
pub(crate) mod error;
pub(crate) mod handshake;
pub(crate) mod proto;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
