//! What every command needs and nothing more: option parsing ([`options`]), output and
//! sizes for people ([`output`]), how a command fails and with which exit code
//! ([`failure`]), the control device ([`control`]) and the daemon's log ([`log`]).

pub mod control;
pub mod failure;
pub mod log;
pub mod options;
pub mod output;
