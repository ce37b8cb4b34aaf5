//! The handshake phase: handshake and client flags, options, option replies and the
//! information they carry, and the option messages.

use super::{IHAVEOPT, NBD_OPT_REPLY_MAGIC, WireError, field};

ublk_core::flag_set! {
    /// The 16 handshake flags a newstyle server sends after `IHAVEOPT`.
    pub struct HandshakeFlags(u16) {
        /// `NBD_FLAG_FIXED_NEWSTYLE`: the server speaks fixed newstyle (options get replies).
        const FIXED_NEWSTYLE = 1 << 0;
        /// `NBD_FLAG_NO_ZEROES`: the server can leave out the 124 zero bytes that end
        /// `NBD_OPT_EXPORT_NAME`'s answer.
        const NO_ZEROES = 1 << 1;
    }
}

ublk_core::flag_set! {
    /// The 32 client flags a client answers the handshake flags with.
    pub struct ClientFlags(u32) {
        /// `NBD_FLAG_C_FIXED_NEWSTYLE`: the client speaks fixed newstyle.
        const FIXED_NEWSTYLE = 1 << 0;
        /// `NBD_FLAG_C_NO_ZEROES`: leave out the 124 zero bytes (only if the server offered).
        const NO_ZEROES = 1 << 1;
    }
}

named_values! {
    u32, fn option_name, fn option_description;
    NBD_OPT_EXPORT_NAME = 1 => "choose an export and end the handshake (cannot report errors)",
    NBD_OPT_ABORT = 2 => "end the session",
    NBD_OPT_LIST = 3 => "list the exports",
    NBD_OPT_STARTTLS = 5 => "start TLS",
    NBD_OPT_INFO = 6 => "describe an export",
    NBD_OPT_GO = 7 => "describe an export and end the handshake",
    NBD_OPT_STRUCTURED_REPLY = 8 => "use structured replies",
}

/// Bit 31 of an option reply type: set on every error.
pub(crate) const NBD_REP_FLAG_ERROR: u32 = 1 << 31;

named_values! {
    u32, fn reply_name, fn reply_description;
    NBD_REP_ACK = 1 => "the option succeeded",
    NBD_REP_SERVER = 2 => "an export (NBD_OPT_LIST)",
    NBD_REP_INFO = 3 => "information about an export",
    NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR | 1 => "the server does not know this option",
    NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR | 2 => "the server's policy forbids it",
    NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR | 3 => "the server found the option invalid",
    NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR | 4 => "not supported on the server's platform",
    NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR | 5 => "the server requires TLS",
    NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR | 6 => "no such export",
    NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR | 7 => "the server is shutting down",
    NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR | 8 => "the server requires the client to ask for block sizes",
    NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR | 9 => "the request or its reply is too large",
}

named_values! {
    u16, fn info_name, fn info_description;
    NBD_INFO_EXPORT = 0 => "the export's size and transmission flags",
    NBD_INFO_NAME = 1 => "the export's canonical name",
    NBD_INFO_DESCRIPTION = 2 => "a description of the export for people",
    NBD_INFO_BLOCK_SIZE = 3 => "the export's minimum, preferred and maximum block sizes",
}

/// Bytes of an option header a client sends: `IHAVEOPT`, the option, the data's length.
pub(crate) const OPTION_LEN: usize = 16;

/// The header of an option a client sends, followed by `data_len` bytes of data.
pub(crate) fn encode_option(option: u32, data_len: u32) -> [u8; OPTION_LEN] {
    let mut b = [0; OPTION_LEN];
    b[0..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[8..12].copy_from_slice(&option.to_be_bytes());
    b[12..16].copy_from_slice(&data_len.to_be_bytes());
    b
}

/// Bytes of an option reply header: magic, option, reply type, length of the data.
pub(crate) const OPTION_REPLY_LEN: usize = 20;

/// The header of an option reply (fixed newstyle), followed by `length` bytes of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OptionReply {
    /// The option replied to (`NBD_OPT_*`).
    pub option: u32,
    /// The reply type (`NBD_REP_*`); errors have bit 31 set.
    pub reply: u32,
    /// Bytes of data that follow.
    pub length: u32,
}

impl OptionReply {
    /// Encodes the header (what a server sends).
    pub(crate) fn encode(&self) -> [u8; OPTION_REPLY_LEN] {
        let mut b = [0; OPTION_REPLY_LEN];
        b[0..8].copy_from_slice(&NBD_OPT_REPLY_MAGIC.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.reply.to_be_bytes());
        b[16..20].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header; a wrong magic is refused.
    pub(crate) fn decode(b: &[u8; OPTION_REPLY_LEN]) -> Result<OptionReply, WireError> {
        let magic = u64::from_be_bytes(field(b, 0));
        if magic != NBD_OPT_REPLY_MAGIC {
            return Err(WireError::BadMagic {
                message: "option reply",
                expected: NBD_OPT_REPLY_MAGIC,
                found: magic,
            });
        }
        Ok(OptionReply {
            option: u32::from_be_bytes(field(b, 8)),
            reply: u32::from_be_bytes(field(b, 12)),
            length: u32::from_be_bytes(field(b, 16)),
        })
    }

    /// True for an error reply.
    pub(crate) fn is_error(&self) -> bool {
        self.reply & NBD_REP_FLAG_ERROR != 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hex;
    use super::*;

    #[test]
    fn an_option_and_its_reply_encode_to_the_documented_bytes() {
        assert_eq!(
            encode_option(NBD_OPT_GO, 10).as_slice(),
            hex("49484156454f5054 00000007 0000000a").as_slice()
        );
        // qemu-nbd's answer to NBD_OPT_GO for an unknown export, as captured.
        let b = hex("0003e889045565a9 00000007 80000006 00000019");
        let reply = OptionReply::decode(b.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(
            reply,
            OptionReply {
                option: NBD_OPT_GO,
                reply: NBD_REP_ERR_UNKNOWN,
                length: 0x19
            }
        );
        assert!(reply.is_error());
        assert_eq!(reply.encode().as_slice(), b.as_slice());
    }

    #[test]
    fn names_and_descriptions_come_from_one_table() {
        assert_eq!(option_name(NBD_OPT_GO), Some("NBD_OPT_GO"));
        assert_eq!(reply_name(NBD_REP_ERR_UNKNOWN), Some("NBD_REP_ERR_UNKNOWN"));
        assert_eq!(
            reply_description(NBD_REP_ERR_UNKNOWN),
            Some("no such export")
        );
        assert_eq!(reply_name(0x8000_0000 | 10), None);
        assert_eq!(info_name(NBD_INFO_BLOCK_SIZE), Some("NBD_INFO_BLOCK_SIZE"));
        assert_eq!(option_description(4), None);
        assert_eq!(info_description(9), None);
    }
}
