//! The client side of the fixed newstyle handshake, ending with `NBD_OPT_GO`.
//!
//! ```text
//! S: NBDMAGIC, IHAVEOPT, handshake flags (FIXED_NEWSTYLE, NO_ZEROES)
//! C: client flags
//! C: IHAVEOPT, NBD_OPT_GO, name, one information request: NBD_INFO_BLOCK_SIZE
//! S: NBD_REP_INFO (NBD_INFO_EXPORT: size and transmission flags; NBD_INFO_BLOCK_SIZE, ...)...
//! S: NBD_REP_ACK                     → transmission; or an error reply → refused
//! ```
//!
//! A server that does not know `NBD_OPT_GO` (it answers `NBD_REP_ERR_UNSUP`; the protocol
//! names this fallback, and servers before nbd 3.10 need it) gets `NBD_OPT_EXPORT_NAME`
//! instead, which cannot report errors: such a server hangs up on an export it does not have.
//!
//! Asking for `NBD_INFO_BLOCK_SIZE` commits the client to the block sizes the server sends
//! back; [`Export::block_sizes`] carries them to whoever sends requests.
//!
//! Everything a server sends is checked, and every length it sends is bounded before anything
//! is allocated for it: a misbehaving server gets one [`HandshakeError`] naming what it did.

use std::io::{self, Read, Write};

use super::error::{HandshakeError, Stage, bad_magic, option_label, printable, protocol};
use super::proto::{
    ClientFlags, HandshakeFlags, IHAVEOPT, NBD_CLISERV_MAGIC, NBD_INFO_BLOCK_SIZE,
    NBD_INFO_DESCRIPTION, NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME,
    NBD_OPT_GO, NBD_REP_ACK, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBDMAGIC, OPTION_REPLY_LEN,
    OptionReply, TransmissionFlags, WireError, encode_option, field, reply_name,
};

/// The longest string the protocol allows (export names, messages, descriptions), in bytes.
pub(crate) const MAX_STRING: usize = 4096;

/// The most data one option reply may carry: the longest string and its type or length
/// fields, with room to spare. A server announcing more is refused before anything is read.
pub(crate) const MAX_OPTION_REPLY: u32 = 16 << 10;

/// The most replies one option may get (each information type is sent once; unknown ones are
/// skipped): a bound on what a server can make the client read.
pub(crate) const MAX_OPTION_REPLIES: usize = 64;

/// The zero bytes that end `NBD_OPT_EXPORT_NAME`'s answer unless both sides agreed to omit
/// them.
const EXPORT_NAME_PADDING: usize = 124;

/// The block size constraints of an export (`NBD_INFO_BLOCK_SIZE`), in bytes. Requests must
/// be aligned to `min` and no longer than `max`; `preferred` avoids read-modify-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockSizes {
    /// The smallest length and alignment: a power of two, at most 64 KiB.
    pub min: u32,
    /// The efficient size: a power of two, at least `min` and 512.
    pub preferred: u32,
    /// The longest request: a multiple of `min`, or `u32::MAX` for no limit of its own.
    pub max: u32,
}

impl BlockSizes {
    /// Checks the protocol's rules for an export of `size` bytes; why not, if not.
    pub(crate) fn check(&self, size: u64) -> Result<(), String> {
        let BlockSizes {
            min,
            preferred,
            max,
        } = *self;
        if !min.is_power_of_two() || min > 1 << 16 {
            return Err(format!(
                "minimum block size {min} is not a power of two up to 65536"
            ));
        }
        if !preferred.is_power_of_two() || preferred < min.max(512) {
            return Err(format!(
                "preferred block size {preferred} is not a power of two of at least {}",
                min.max(512)
            ));
        }
        if max != u32::MAX && (max % min != 0 || u64::from(max) < u64::from(preferred).min(size)) {
            return Err(format!(
                "maximum block size {max} is not a multiple of {min} of at least {}",
                u64::from(preferred).min(size)
            ));
        }
        Ok(())
    }
}

/// How the handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Negotiated {
    /// With `NBD_OPT_GO`.
    Go,
    /// With `NBD_OPT_EXPORT_NAME`, because the server did not know `NBD_OPT_GO`.
    ExportName,
}

/// An export, as its server described it at the end of the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Export {
    /// The name asked for, or the canonical name the server gave (`NBD_INFO_NAME`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// What the export is and which commands it takes (`HAS_FLAGS` always set).
    pub flags: TransmissionFlags,
    /// Its block size constraints, if the server gave them (checked).
    pub block_sizes: Option<BlockSizes>,
    /// A description for people, if the server gave one (`NBD_INFO_DESCRIPTION`).
    pub description: Option<String>,
    /// Which option ended the handshake.
    pub negotiated: Negotiated,
}

/// Runs the client side of the handshake on `stream` for export `name` (empty: the server's
/// default export). On success the stream is at the start of the transmission phase.
///
/// Reads and writes are whatever `stream` does: bound them (socket timeouts) to bound the
/// handshake, as [`connect`](super::connect::connect) does.
pub(crate) fn handshake<S: Read + Write>(
    stream: &mut S,
    name: &str,
) -> Result<Export, HandshakeError> {
    check_name(name)?;
    let mut s = Conversation { stream };

    let magic = s.u64(Stage::Greeting)?;
    if magic != NBDMAGIC {
        return Err(bad_magic(Stage::Greeting, "NBDMAGIC", magic));
    }
    match s.u64(Stage::Greeting)? {
        IHAVEOPT => {}
        NBD_CLISERV_MAGIC => return Err(HandshakeError::Oldstyle),
        other => return Err(bad_magic(Stage::Greeting, "IHAVEOPT", other)),
    }
    let server = HandshakeFlags::from_bits_retain(u16::from_be_bytes(s.array(Stage::Greeting)?));
    if !server.contains(HandshakeFlags::FIXED_NEWSTYLE) {
        return Err(HandshakeError::NotFixedNewstyle { flags: server });
    }
    // Without the zeroes only if the server offered to leave them out (the protocol forbids
    // asking otherwise); they matter only for the NBD_OPT_EXPORT_NAME fallback.
    let no_zeroes = server.contains(HandshakeFlags::NO_ZEROES);
    let mut client = ClientFlags::FIXED_NEWSTYLE;
    client.set(ClientFlags::NO_ZEROES, no_zeroes);

    // The client flags and NBD_OPT_GO in one write: name length, name, one information
    // request. The name is at most MAX_STRING bytes (checked), so the lengths fit.
    let mut out = client.bits().to_be_bytes().to_vec();
    let data_len = 4 + name.len() + 2 + 2;
    out.extend_from_slice(&encode_option(NBD_OPT_GO, data_len as u32));
    out.extend_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
    s.send(&out)?;

    match go_replies(&mut s, name)? {
        Some(export) => Ok(export),
        None => export_name(&mut s, name, no_zeroes),
    }
}

/// The export names the protocol allows: at most [`MAX_STRING`] bytes, no NUL.
fn check_name(name: &str) -> Result<(), HandshakeError> {
    if name.len() > MAX_STRING {
        return Err(HandshakeError::InvalidName {
            reason: format!(
                "it is {} bytes long; NBD allows at most {MAX_STRING}",
                name.len()
            ),
        });
    }
    if name.contains('\0') {
        return Err(HandshakeError::InvalidName {
            reason: "it contains a NUL byte".to_string(),
        });
    }
    Ok(())
}

/// What the `NBD_REP_INFO` replies said so far.
#[derive(Default)]
struct Infos {
    export: Option<(u64, TransmissionFlags)>,
    block_sizes: Option<BlockSizes>,
    name: Option<String>,
    description: Option<String>,
}

/// Reads the replies to `NBD_OPT_GO` up to the last: the export on `NBD_REP_ACK`, `None` if
/// the server does not know the option (fall back to `NBD_OPT_EXPORT_NAME`), the refusal on
/// any other error.
fn go_replies<S: Read + Write>(
    s: &mut Conversation<'_, S>,
    name: &str,
) -> Result<Option<Export>, HandshakeError> {
    let stage = Stage::GoReplies;
    let mut infos = Infos::default();
    for _ in 0..MAX_OPTION_REPLIES {
        let header =
            OptionReply::decode(&s.array::<OPTION_REPLY_LEN>(stage)?).map_err(|e| match e {
                WireError::BadMagic { found, .. } => {
                    bad_magic(stage, "the option reply magic", found)
                }
                other => protocol(stage, other.to_string()),
            })?;
        if header.option != NBD_OPT_GO {
            return Err(protocol(
                stage,
                format!("a reply to {} came instead", option_label(header.option)),
            ));
        }
        if header.length > MAX_OPTION_REPLY {
            return Err(HandshakeError::ReplyTooLong {
                option: header.option,
                length: header.length,
            });
        }
        let data = s.bytes(header.length as usize, stage)?;
        match header.reply {
            NBD_REP_INFO => info(&data, &mut infos)?,
            NBD_REP_ACK => return finish_go(infos, name).map(Some),
            NBD_REP_ERR_UNSUP => return Ok(None),
            reply if header.is_error() => {
                // A soft disconnect, as the protocol asks of a client that gives up; the
                // server need not answer and the reply is not awaited.
                let _ = s.send(&encode_option(NBD_OPT_ABORT, 0));
                return Err(HandshakeError::Refused {
                    export: name.to_string(),
                    option: NBD_OPT_GO,
                    reply,
                    message: printable(&data),
                });
            }
            reply => {
                let label = reply_name(reply).map_or_else(|| format!("{reply:#x}"), str::to_string);
                return Err(protocol(stage, format!("unexpected reply type {label}")));
            }
        }
    }
    Err(HandshakeError::TooManyReplies { option: NBD_OPT_GO })
}

/// Takes in one `NBD_REP_INFO`: its type, then what that type holds. Types this client does
/// not know are skipped, as the protocol asks.
fn info(data: &[u8], infos: &mut Infos) -> Result<(), HandshakeError> {
    let stage = Stage::GoReplies;
    let Some((kind, rest)) = data.split_first_chunk::<2>() else {
        return Err(protocol(
            stage,
            format!("an NBD_REP_INFO of {} bytes, with no type", data.len()),
        ));
    };
    let sized = |want: usize, what: &str| {
        if rest.len() == want {
            Ok(())
        } else {
            Err(protocol(
                stage,
                format!("{what} of {} bytes; it has {}", data.len(), want + 2),
            ))
        }
    };
    // Only once `sized` has checked the length.
    let be32 = |at: usize| u32::from_be_bytes(field(rest, at));
    match u16::from_be_bytes(*kind) {
        NBD_INFO_EXPORT => {
            sized(10, "an NBD_INFO_EXPORT")?;
            let size = u64::from_be_bytes(field(rest, 0));
            let flags = u16::from_be_bytes(field(rest, 8));
            infos.export = Some((size, TransmissionFlags::from_bits_retain(flags)));
        }
        NBD_INFO_BLOCK_SIZE => {
            sized(12, "an NBD_INFO_BLOCK_SIZE")?;
            infos.block_sizes = Some(BlockSizes {
                min: be32(0),
                preferred: be32(4),
                max: be32(8),
            });
        }
        NBD_INFO_NAME => infos.name = Some(printable(rest)),
        NBD_INFO_DESCRIPTION => infos.description = Some(printable(rest)),
        _ => {}
    }
    Ok(())
}

/// The export once `NBD_OPT_GO` is acknowledged: it must have been described, sensibly.
fn finish_go(infos: Infos, name: &str) -> Result<Export, HandshakeError> {
    let stage = Stage::GoReplies;
    let Some((size, flags)) = infos.export else {
        return Err(protocol(
            stage,
            "it acknowledged NBD_OPT_GO without sending NBD_INFO_EXPORT",
        ));
    };
    check_flags(flags, stage)?;
    if let Some(sizes) = infos.block_sizes {
        sizes
            .check(size)
            .map_err(|why| protocol(stage, format!("NBD_INFO_BLOCK_SIZE: {why}")))?;
    }
    Ok(Export {
        name: infos.name.unwrap_or_else(|| name.to_string()),
        size,
        flags,
        block_sizes: infos.block_sizes,
        description: infos.description,
        negotiated: Negotiated::Go,
    })
}

/// The protocol says `HAS_FLAGS` is always set: without it the other bits mean nothing.
fn check_flags(flags: TransmissionFlags, stage: Stage) -> Result<(), HandshakeError> {
    if flags.contains(TransmissionFlags::HAS_FLAGS) {
        Ok(())
    } else {
        Err(protocol(
            stage,
            format!("transmission flags {flags} lack HAS_FLAGS"),
        ))
    }
}

/// The fallback for servers that do not know `NBD_OPT_GO`: `NBD_OPT_EXPORT_NAME`, answered
/// with the size, the flags and (unless left out) 124 zero bytes, or by hanging up.
fn export_name<S: Read + Write>(
    s: &mut Conversation<'_, S>,
    name: &str,
    no_zeroes: bool,
) -> Result<Export, HandshakeError> {
    let stage = Stage::ExportNameAnswer;
    let mut out = encode_option(NBD_OPT_EXPORT_NAME, name.len() as u32).to_vec();
    out.extend_from_slice(name.as_bytes());
    s.send(&out)?;
    let closed = |e: HandshakeError| match e {
        HandshakeError::Closed { .. } => HandshakeError::ExportNameClosed {
            export: name.to_string(),
        },
        other => other,
    };
    let size = s.u64(stage).map_err(closed)?;
    let flags = TransmissionFlags::from_bits_retain(u16::from_be_bytes(s.array(stage)?));
    if !no_zeroes {
        s.array::<EXPORT_NAME_PADDING>(stage)?;
    }
    check_flags(flags, stage)?;
    Ok(Export {
        name: name.to_string(),
        size,
        flags,
        block_sizes: None,
        description: None,
        negotiated: Negotiated::ExportName,
    })
}

/// The stream, with reads and writes that fail as [`HandshakeError`]s naming the stage.
struct Conversation<'s, S> {
    stream: &'s mut S,
}

impl<S: Read + Write> Conversation<'_, S> {
    fn fill(&mut self, buf: &mut [u8], stage: Stage) -> Result<(), HandshakeError> {
        self.stream.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed { stage },
            _ => HandshakeError::Io { stage, source: e },
        })
    }

    fn array<const N: usize>(&mut self, stage: Stage) -> Result<[u8; N], HandshakeError> {
        let mut b = [0; N];
        self.fill(&mut b, stage)?;
        Ok(b)
    }

    fn u64(&mut self, stage: Stage) -> Result<u64, HandshakeError> {
        self.array(stage).map(u64::from_be_bytes)
    }

    /// `len` bytes; the caller has bounded `len`.
    fn bytes(&mut self, len: usize, stage: Stage) -> Result<Vec<u8>, HandshakeError> {
        let mut b = vec![0; len];
        self.fill(&mut b, stage)?;
        Ok(b)
    }

    fn send(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        let stage = Stage::SendOption;
        self.stream
            .write_all(data)
            .and_then(|()| self.stream.flush())
            .map_err(|e| match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                    HandshakeError::Closed { stage }
                }
                _ => HandshakeError::Io { stage, source: e },
            })
    }
}
