//! Randomized tests of everything the `ublk` command reads from outside: its command lines
//! ([`command_line`]) and the JSON records other `ublk` processes wrote ([`json`]). Whatever
//! the input, no panic; what is accepted meets the documented rules, re-checked here by
//! predicates written from those rules rather than from the parsers.

mod command_line;
mod json;
