//! [`HandshakeError`]: why a connection to an export could not be made, in words that name
//! what the server did.

use std::fmt;
use std::io;
use std::time::Duration;

use super::handshake::{MAX_OPTION_REPLIES, MAX_OPTION_REPLY};
use super::proto::{HandshakeFlags, NBD_OPT_GO, option_name, reply_description, reply_name};

/// The parts of the handshake, to say where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, the handshake flags.
    Greeting,
    /// Sending the client flags and an option.
    SendOption,
    /// The replies to `NBD_OPT_GO`.
    GoReplies,
    /// The answer to `NBD_OPT_EXPORT_NAME`.
    ExportNameAnswer,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Greeting => "its greeting",
            Stage::SendOption => "the client's flags and option",
            Stage::GoReplies => "the replies to NBD_OPT_GO",
            Stage::ExportNameAnswer => "the answer to NBD_OPT_EXPORT_NAME",
        })
    }
}

/// Why a connection to an export could not be made. The message names what the server did
/// (or what the system said), for a person at a terminal.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The export name cannot be sent (too long, or with a NUL byte).
    InvalidName {
        /// Why.
        reason: String,
    },
    /// The server's host name did not resolve.
    Resolve {
        /// The address given.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// No connection could be made (refused, unreachable, timed out), or its socket could not
    /// be set up.
    Connect {
        /// The address given.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// Reading from or writing to the server failed.
    Io {
        /// Where in the handshake.
        stage: Stage,
        /// Why.
        source: io::Error,
    },
    /// The server did not finish the handshake in time.
    TimedOut {
        /// Where in the handshake it stopped.
        stage: Stage,
        /// The time allowed for the whole handshake.
        limit: Duration,
    },
    /// The server closed the connection in the middle of the handshake.
    Closed {
        /// Where.
        stage: Stage,
    },
    /// After `NBD_OPT_EXPORT_NAME` the server closed the connection: that old option cannot
    /// report errors, so this is how such a server refuses an export.
    ExportNameClosed {
        /// The export asked for.
        export: String,
    },
    /// The server sent something other than a magic number the protocol puts there.
    BadMagic {
        /// Where.
        stage: Stage,
        /// The magic's name (`"NBDMAGIC"`).
        expected: &'static str,
        /// What came instead.
        found: u64,
    },
    /// The server speaks the oldstyle handshake (no export names, no options).
    Oldstyle,
    /// The server does not offer fixed newstyle negotiation.
    NotFixedNewstyle {
        /// Its handshake flags.
        flags: HandshakeFlags,
    },
    /// The server refused the export with an error reply.
    Refused {
        /// The export asked for.
        export: String,
        /// The option refused (`NBD_OPT_GO`).
        option: u32,
        /// The error reply type (`NBD_REP_ERR_*`).
        reply: u32,
        /// The server's message, if it sent one.
        message: String,
    },
    /// An option reply announced more data than a reply may carry.
    ReplyTooLong {
        /// The option replied to.
        option: u32,
        /// Bytes announced.
        length: u32,
    },
    /// The server sent more replies to one option than it has things to say.
    TooManyReplies {
        /// The option.
        option: u32,
    },
    /// The server broke the protocol some other way.
    Protocol {
        /// Where.
        stage: Stage,
        /// What it did.
        what: String,
    },
}

/// `NBD_OPT_GO` (7) as `NBD_OPT_GO`, an unknown option as its number.
pub(crate) fn option_label(option: u32) -> String {
    option_name(option).map_or_else(|| format!("option {option}"), str::to_string)
}

/// Text from a server, made safe to print: invalid UTF-8 replaced, control characters escaped
/// (a server must not be able to send escape sequences to the user's terminal).
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::InvalidName { reason } => write!(f, "invalid NBD export name: {reason}"),
            HandshakeError::Resolve { address, source } => {
                write!(f, "cannot resolve NBD server address {address}: {source}")
            }
            HandshakeError::Connect { address, source } => {
                write!(f, "cannot connect to the NBD server at {address}: {source}")
            }
            HandshakeError::Io { stage, source } => {
                write!(f, "talking to the NBD server ({stage}): {source}")
            }
            HandshakeError::TimedOut { stage, limit } => write!(
                f,
                "the NBD server did not finish the handshake within {limit:?} (stuck in {stage})"
            ),
            HandshakeError::Closed { stage } => {
                write!(f, "the NBD server closed the connection during {stage}")
            }
            HandshakeError::ExportNameClosed { export } => write!(
                f,
                "the NBD server refused export '{}': it closed the connection after NBD_OPT_EXPORT_NAME (it does not know NBD_OPT_GO, which would say why)",
                printable(export.as_bytes())
            ),
            HandshakeError::BadMagic {
                stage,
                expected,
                found,
            } => write!(
                f,
                "the peer sent {found:#018x} where {expected} belongs, in {stage}: not an NBD server, or a broken one"
            ),
            HandshakeError::Oldstyle => f.write_str(
                "the NBD server speaks the oldstyle handshake, which has no export names: only fixed newstyle servers are supported",
            ),
            HandshakeError::NotFixedNewstyle { flags } => write!(
                f,
                "the NBD server does not offer fixed newstyle negotiation (its handshake flags: {flags})"
            ),
            HandshakeError::Refused {
                export,
                option,
                reply,
                message,
            } => {
                write!(f, "the NBD server refused export '{}'", printable(export.as_bytes()))?;
                if *option != NBD_OPT_GO {
                    write!(f, " ({})", option_label(*option))?;
                }
                match (reply_name(*reply), reply_description(*reply)) {
                    (Some(name), Some(desc)) => write!(f, ": {name} ({desc})")?,
                    _ => write!(f, ": error reply {reply:#x}")?,
                }
                if !message.is_empty() {
                    write!(f, "; it said \"{message}\"")?;
                }
                Ok(())
            }
            HandshakeError::ReplyTooLong { option, length } => write!(
                f,
                "the NBD server announced a reply to {} of {length} bytes (a reply may have at most {MAX_OPTION_REPLY})",
                option_label(*option)
            ),
            HandshakeError::TooManyReplies { option } => write!(
                f,
                "the NBD server sent more than {MAX_OPTION_REPLIES} replies to {}",
                option_label(*option)
            ),
            HandshakeError::Protocol { stage, what } => {
                write!(f, "the NBD server broke the protocol in {stage}: {what}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Resolve { source, .. }
            | HandshakeError::Connect { source, .. }
            | HandshakeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// [`HandshakeError::BadMagic`]: `found` where the magic called `expected` belongs.
pub(crate) fn bad_magic(stage: Stage, expected: &'static str, found: u64) -> HandshakeError {
    HandshakeError::BadMagic {
        stage,
        expected,
        found,
    }
}

/// [`HandshakeError::Protocol`]: the server did `what`.
pub(crate) fn protocol(stage: Stage, what: impl Into<String>) -> HandshakeError {
    HandshakeError::Protocol {
        stage,
        what: what.into(),
    }
}
