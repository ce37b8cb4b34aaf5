//! The transmission phase: transmission and command flags, commands, errors, and the request
//! and simple reply headers.

use std::fmt;

use ublk_core::Errno;

use super::{
    NBD_REQUEST_MAGIC, NBD_SIMPLE_REPLY_MAGIC, NBD_STRUCTURED_REPLY_MAGIC, WireError, field,
};

ublk_core::flag_set! {
    /// The 16 transmission flags a server sends with an export's size: what the export is
    /// and which commands and flags the client may send.
    pub struct TransmissionFlags(u16) {
        /// `NBD_FLAG_HAS_FLAGS`: always set (the other bits are meaningful).
        const HAS_FLAGS = 1 << 0;
        /// `NBD_FLAG_READ_ONLY`: the export refuses writes.
        const READ_ONLY = 1 << 1;
        /// `NBD_FLAG_SEND_FLUSH`: the server takes `NBD_CMD_FLUSH` (it has a write cache).
        const SEND_FLUSH = 1 << 2;
        /// `NBD_FLAG_SEND_FUA`: the server takes `NBD_CMD_FLAG_FUA`.
        const SEND_FUA = 1 << 3;
        /// `NBD_FLAG_ROTATIONAL`: the export behaves like a rotating disk.
        const ROTATIONAL = 1 << 4;
        /// `NBD_FLAG_SEND_TRIM`: the server takes `NBD_CMD_TRIM`.
        const SEND_TRIM = 1 << 5;
        /// `NBD_FLAG_SEND_WRITE_ZEROES`: the server takes `NBD_CMD_WRITE_ZEROES` and
        /// `NBD_CMD_FLAG_NO_HOLE`.
        const SEND_WRITE_ZEROES = 1 << 6;
        /// `NBD_FLAG_SEND_DF`: the server takes `NBD_CMD_FLAG_DF` (structured replies only).
        const SEND_DF = 1 << 7;
        /// `NBD_FLAG_CAN_MULTI_CONN`: flushes and FUA writes are visible on every connection
        /// to the export, so a client may spread its requests over several.
        const CAN_MULTI_CONN = 1 << 8;
        /// `NBD_FLAG_SEND_RESIZE`: the experimental `NBD_CMD_RESIZE`.
        const SEND_RESIZE = 1 << 9;
        /// `NBD_FLAG_SEND_CACHE`: the server takes `NBD_CMD_CACHE`.
        const SEND_CACHE = 1 << 10;
        /// `NBD_FLAG_SEND_FAST_ZERO`: the server takes `NBD_CMD_FLAG_FAST_ZERO`.
        const SEND_FAST_ZERO = 1 << 11;
    }
}

ublk_core::flag_set! {
    /// The 16 command flags of a request.
    pub struct CmdFlags(u16) {
        /// `NBD_CMD_FLAG_FUA`: the data is durable when the reply comes (if `SEND_FUA`).
        const FUA = 1 << 0;
        /// `NBD_CMD_FLAG_NO_HOLE`: `NBD_CMD_WRITE_ZEROES` must keep the range allocated.
        const NO_HOLE = 1 << 1;
        /// `NBD_CMD_FLAG_DF`: a read's structured reply must not be fragmented.
        const DF = 1 << 2;
        /// `NBD_CMD_FLAG_REQ_ONE`: one extent per `NBD_CMD_BLOCK_STATUS` reply.
        const REQ_ONE = 1 << 3;
        /// `NBD_CMD_FLAG_FAST_ZERO`: fail `NBD_CMD_WRITE_ZEROES` unless it is fast.
        const FAST_ZERO = 1 << 4;
    }
}

wire_enum! {
    /// A request's command (`NBD_CMD_*`).
    enum Command(u16) {
        /// The reply carries `length` bytes.
        Read = 0 => "NBD_CMD_READ",
        /// `length` bytes follow the request.
        Write = 1 => "NBD_CMD_WRITE",
        /// The client disconnects; there is no reply.
        Disc = 2 => "NBD_CMD_DISC",
        /// Make every completed write durable (offset and length 0).
        Flush = 3 => "NBD_CMD_FLUSH",
        /// The range's data is no longer needed.
        Trim = 4 => "NBD_CMD_TRIM",
        /// The client will read the range soon.
        Cache = 5 => "NBD_CMD_CACHE",
        /// Zero the range, with no payload.
        WriteZeroes = 6 => "NBD_CMD_WRITE_ZEROES",
        /// Which parts of the range are allocated (structured replies only).
        BlockStatus = 7 => "NBD_CMD_BLOCK_STATUS",
    }
}

wire_enum! {
    /// An error a server answers a request with (`NBD_E*`): the protocol's own numbers,
    /// which are Linux's on x86 but not on every architecture, so each is mapped to the
    /// local errno by name ([`NbdErrno::errno`]). 0 is success, not an error.
    enum NbdErrno(u32) {
        /// Operation not permitted (e.g. a write to a read-only export).
        Perm = 1 => "NBD_EPERM",
        /// Input/output error.
        Io = 5 => "NBD_EIO",
        /// Cannot allocate memory.
        NoMem = 12 => "NBD_ENOMEM",
        /// Invalid argument (also what an unknown error means).
        Inval = 22 => "NBD_EINVAL",
        /// No space left (e.g. a write past the end).
        NoSpc = 28 => "NBD_ENOSPC",
        /// Value too large (a read too large to send unfragmented).
        Overflow = 75 => "NBD_EOVERFLOW",
        /// Not supported (an `NBD_CMD_FLAG_FAST_ZERO` that would be slow).
        NotSup = 95 => "NBD_ENOTSUP",
        /// The server is shutting down; the client must disconnect.
        Shutdown = 108 => "NBD_ESHUTDOWN",
    }
}

impl NbdErrno {
    /// The local errno of the same meaning.
    pub(crate) fn errno(self) -> Errno {
        Errno(match self {
            NbdErrno::Perm => libc::EPERM,
            NbdErrno::Io => libc::EIO,
            NbdErrno::NoMem => libc::ENOMEM,
            NbdErrno::Inval => libc::EINVAL,
            NbdErrno::NoSpc => libc::ENOSPC,
            NbdErrno::Overflow => libc::EOVERFLOW,
            NbdErrno::NotSup => libc::EOPNOTSUPP,
            NbdErrno::Shutdown => libc::ESHUTDOWN,
        })
    }
}

/// Bytes of a request header (`struct nbd_request`).
pub(crate) const REQUEST_LEN: usize = 28;

/// A request header: what the client asks. A WRITE's `length` bytes of data follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Command flags.
    pub flags: CmdFlags,
    /// The command.
    pub command: Command,
    /// Opaque to the server, which returns it in the reply: how the client tells its
    /// requests apart (`handle` in older documents).
    pub cookie: u64,
    /// Byte offset in the export.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl Request {
    /// Encodes the header: magic, flags, command, cookie, offset, length.
    pub(crate) fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0; REQUEST_LEN];
        b[0..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.bits().to_be_bytes());
        b[6..8].copy_from_slice(&self.command.wire().to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header (what a server reads); a wrong magic or an unknown command is
    /// refused. Unknown flags are kept.
    pub(crate) fn decode(b: &[u8; REQUEST_LEN]) -> Result<Request, WireError> {
        let magic = u32::from_be_bytes(field(b, 0));
        if magic != NBD_REQUEST_MAGIC {
            return Err(WireError::BadMagic {
                message: "request",
                expected: NBD_REQUEST_MAGIC.into(),
                found: magic.into(),
            });
        }
        let command = u16::from_be_bytes(field(b, 6));
        Ok(Request {
            flags: CmdFlags::from_bits_retain(u16::from_be_bytes(field(b, 4))),
            command: Command::from_wire(command).ok_or(WireError::UnknownCommand(command))?,
            cookie: u64::from_be_bytes(field(b, 8)),
            offset: u64::from_be_bytes(field(b, 16)),
            length: u32::from_be_bytes(field(b, 24)),
        })
    }
}

/// Bytes of a simple reply header (`struct nbd_reply`).
pub(crate) const SIMPLE_REPLY_LEN: usize = 16;

/// A simple reply header: how a request ended. A successful READ's data follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SimpleReply {
    /// `None` for success.
    pub error: Option<NbdErrno>,
    /// The cookie of the request answered.
    pub cookie: u64,
}

impl SimpleReply {
    /// Encodes the header (what a server sends).
    pub(crate) fn encode(&self) -> [u8; SIMPLE_REPLY_LEN] {
        let mut b = [0; SIMPLE_REPLY_LEN];
        b[0..4].copy_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.error.map_or(0, NbdErrno::wire).to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b
    }

    /// Decodes a header. Refused: a wrong magic, a structured reply chunk (this client never
    /// negotiates them), and an error value the protocol does not define
    /// ([`WireError::UnknownError`], which keeps the cookie so the request can still be
    /// failed).
    pub(crate) fn decode(b: &[u8; SIMPLE_REPLY_LEN]) -> Result<SimpleReply, WireError> {
        let magic = u32::from_be_bytes(field(b, 0));
        if magic == NBD_STRUCTURED_REPLY_MAGIC {
            return Err(WireError::StructuredReply);
        }
        if magic != NBD_SIMPLE_REPLY_MAGIC {
            return Err(WireError::BadMagic {
                message: "simple reply",
                expected: NBD_SIMPLE_REPLY_MAGIC.into(),
                found: magic.into(),
            });
        }
        let code = u32::from_be_bytes(field(b, 4));
        let cookie = u64::from_be_bytes(field(b, 8));
        let error = match code {
            0 => None,
            _ => Some(NbdErrno::from_wire(code).ok_or(WireError::UnknownError { cookie, code })?),
        };
        Ok(SimpleReply { error, cookie })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hex;
    use super::*;

    /// The values of `<linux/nbd.h>` (7.3), where it has them.
    #[test]
    fn transmission_numbers_match_linux_nbd_h() {
        assert_eq!(NBD_REQUEST_MAGIC, 0x25609513);
        assert_eq!(NBD_SIMPLE_REPLY_MAGIC, 0x67446698);
        let commands = [(Command::Read, 0), (Command::Write, 1), (Command::Disc, 2)];
        let more = [
            (Command::Flush, 3),
            (Command::Trim, 4),
            (Command::WriteZeroes, 6),
        ];
        for (c, v) in commands.into_iter().chain(more) {
            assert_eq!(c.wire(), v);
            assert_eq!(Command::from_wire(v), Some(c));
        }
        let flags = [
            (TransmissionFlags::HAS_FLAGS, 1 << 0),
            (TransmissionFlags::READ_ONLY, 1 << 1),
            (TransmissionFlags::SEND_FLUSH, 1 << 2),
            (TransmissionFlags::SEND_FUA, 1 << 3),
            (TransmissionFlags::ROTATIONAL, 1 << 4),
            (TransmissionFlags::SEND_TRIM, 1 << 5),
            (TransmissionFlags::SEND_WRITE_ZEROES, 1 << 6),
            (TransmissionFlags::CAN_MULTI_CONN, 1 << 8),
        ];
        for (flag, bits) in flags {
            assert_eq!(flag.bits(), bits, "{flag}");
        }
        // The header puts command flags in the upper half of a 32-bit type: FUA is 1 << 16.
        let req = Request {
            flags: CmdFlags::FUA | CmdFlags::NO_HOLE,
            command: Command::WriteZeroes,
            cookie: 0,
            offset: 0,
            length: 0,
        };
        let type_field = u32::from_be_bytes(field(&req.encode(), 4));
        assert_eq!(type_field, (1 << 16) | (1 << 17) | 6);
    }

    #[test]
    fn a_request_encodes_to_the_documented_bytes_and_back() {
        let req = Request {
            flags: CmdFlags::FUA,
            command: Command::Write,
            cookie: 0x0102_0304_0506_0708,
            offset: 0x1000,
            length: 0x200,
        };
        // magic, flags, type, handle, offset, length: 4 + 2 + 2 + 8 + 8 + 4 bytes.
        let want = hex("25609513 0001 0001 0102030405060708 0000000000001000 00000200");
        assert_eq!(req.encode().as_slice(), want.as_slice());
        assert_eq!(Request::decode(&req.encode()), Ok(req));
    }

    #[test]
    fn request_decoding_refuses_bad_magic_and_unknown_commands() {
        let mut b = Request {
            flags: CmdFlags::empty(),
            command: Command::Read,
            cookie: 1,
            offset: 0,
            length: 512,
        }
        .encode();
        b[7] = 9;
        assert_eq!(Request::decode(&b), Err(WireError::UnknownCommand(9)));
        b[0] = 0;
        assert!(matches!(
            Request::decode(&b),
            Err(WireError::BadMagic {
                found: 0x00609513,
                ..
            })
        ));
    }

    #[test]
    fn a_simple_reply_decodes_from_the_documented_bytes() {
        let ok = hex("67446698 00000000 00000000deadbeef");
        let reply = SimpleReply::decode(ok.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(
            reply,
            SimpleReply {
                error: None,
                cookie: 0xdead_beef
            }
        );
        assert_eq!(reply.encode().as_slice(), ok.as_slice());
        let enospc = hex("67446698 0000001c 0000000000000007");
        let reply = SimpleReply::decode(enospc.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(reply.error, Some(NbdErrno::NoSpc));
        assert_eq!(reply.error.unwrap().errno(), Errno::ENOSPC);
    }

    #[test]
    fn simple_reply_decoding_refuses_what_the_protocol_does_not_allow() {
        let structured = hex("668e33ef 00010000 0000000000000001");
        let b: &[u8; 16] = structured.as_slice().try_into().unwrap();
        assert_eq!(SimpleReply::decode(b), Err(WireError::StructuredReply));
        let unknown = hex("67446698 00000004 0000000000000009");
        let b: &[u8; 16] = unknown.as_slice().try_into().unwrap();
        assert_eq!(
            SimpleReply::decode(b),
            Err(WireError::UnknownError { cookie: 9, code: 4 })
        );
        let junk = [0xff; 16];
        assert!(matches!(
            SimpleReply::decode(&junk),
            Err(WireError::BadMagic { .. })
        ));
    }

    #[test]
    fn every_nbd_error_maps_to_the_local_errno_of_its_name() {
        let want = [
            (1, libc::EPERM, "NBD_EPERM"),
            (5, libc::EIO, "NBD_EIO"),
            (12, libc::ENOMEM, "NBD_ENOMEM"),
            (22, libc::EINVAL, "NBD_EINVAL"),
            (28, libc::ENOSPC, "NBD_ENOSPC"),
            (75, libc::EOVERFLOW, "NBD_EOVERFLOW"),
            (95, libc::EOPNOTSUPP, "NBD_ENOTSUP"),
            (108, libc::ESHUTDOWN, "NBD_ESHUTDOWN"),
        ];
        for (wire, local, name) in want {
            let e = NbdErrno::from_wire(wire).expect("defined");
            assert_eq!((e.wire(), e.errno(), e.name()), (wire, Errno(local), name));
        }
        assert_eq!(NbdErrno::from_wire(0), None);
        assert_eq!(NbdErrno::from_wire(2), None);
    }

    #[test]
    fn flags_are_displayed_by_name() {
        assert_eq!(
            format!("{}", TransmissionFlags::from_bits_retain(0x16d)),
            "HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES | CAN_MULTI_CONN"
        );
    }

    #[test]
    fn every_command_and_error_round_trips_by_value_and_name() {
        for &c in Command::ALL {
            assert_eq!(Command::from_wire(c.wire()), Some(c));
            assert_eq!(c.to_string(), c.name());
            assert!(c.name().starts_with("NBD_CMD_"), "{c}");
        }
        assert_eq!(Command::from_wire(8), None);
        for &e in NbdErrno::ALL {
            assert_eq!(NbdErrno::from_wire(e.wire()), Some(e));
            assert!(e.name().starts_with("NBD_E"), "{e}");
        }
    }
}
