//! Randomized tests of everything the `ublk` command reads from outside: its command lines
//! ([`command_line`]), JSON ([`json`]) and the records other `ublk` processes wrote
//! ([`records`]). Whatever the input, no panic; what is accepted meets the documented rules,
//! re-checked by predicates written from those rules rather than from the parsers
//! ([`rules`], [`rfc8259`]).

mod command_line;
mod json;
mod records;
mod rfc8259;
mod rules;
