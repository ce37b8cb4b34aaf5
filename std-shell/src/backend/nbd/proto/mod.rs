//! The NBD protocol's numbers and fixed-size messages: the handshake's ([`options`]) and the
//! transmission phase's ([`transmission`]).
//!
//! From the protocol document (`doc/proto.md` of NetworkBlockDevice/nbd) and Linux's
//! `<linux/nbd.h>`, with their names, so the code and the documents read side by side. Every
//! integer on the wire is big-endian. The messages of the transmission phase have fixed sizes
//! and are encoded into and decoded from byte arrays of exactly that size; a decoder refuses
//! what the protocol does not allow (a wrong magic, an unknown command or error) with a
//! [`WireError`], never a panic, whatever the bytes.

use std::fmt;

/// Declares `pub(crate)` constants of one type, each documented by its description, and two
/// functions that name a value and describe it, so a number, its name and its meaning are
/// written once.
macro_rules! named_values {
    (
        $ty:ty, fn $name_fn:ident, fn $desc_fn:ident;
        $($name:ident = $value:expr => $desc:literal,)*
    ) => {
        $(
            #[doc = concat!("`", stringify!($name), "`: ", $desc, ".")]
            pub(crate) const $name: $ty = $value;
        )*

        /// The protocol's name of `value` (`"NBD_OPT_GO"`), or `None` for a value it does
        /// not define.
        pub(crate) fn $name_fn(value: $ty) -> Option<&'static str> {
            match value {
                $($name => Some(stringify!($name)),)*
                _ => None,
            }
        }

        /// What `value` means, in a few words, or `None` for a value the protocol does not
        /// define.
        pub(crate) fn $desc_fn(value: $ty) -> Option<&'static str> {
            match value {
                $($name => Some($desc),)*
                _ => None,
            }
        }
    };
}

/// Declares a `pub(crate)` enum of the values one field of the protocol may take, with the
/// protocol's name of each: decoding from the wire (`None` for a value the protocol does not
/// define), encoding, and the name, written once per value.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        enum $name:ident($int:ty) {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal => $wire_name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($int)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// Every value, in the protocol's order.
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value `value` on the wire stands for, or `None` for one the protocol does
            /// not define.
            pub(crate) fn from_wire(value: $int) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The value on the wire.
            pub(crate) fn wire(self) -> $int {
                self as $int
            }

            /// The protocol's name.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $wire_name,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

mod options;
mod transmission;

pub(crate) use options::*;
pub(crate) use transmission::*;

// --- Magic numbers ---------------------------------------------------------------------------

/// `INIT_PASSWD`: the first 8 bytes a server sends, ASCII `NBDMAGIC`.
pub(crate) const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// The next 8 bytes of a newstyle server, ASCII `IHAVEOPT`; also the start of every option a
/// client sends.
pub(crate) const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// `cliserv_magic`: what an oldstyle server sends where a newstyle one sends `IHAVEOPT`.
pub(crate) const NBD_CLISERV_MAGIC: u64 = 0x0000_4202_8186_1253;
/// The start of every option reply (fixed newstyle).
pub(crate) const NBD_OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// `NBD_REQUEST_MAGIC`: the start of every request of the transmission phase.
pub(crate) const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_SIMPLE_REPLY_MAGIC` (`NBD_REPLY_MAGIC` in `<linux/nbd.h>`): the start of a simple reply.
pub(crate) const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// `NBD_STRUCTURED_REPLY_MAGIC`: the start of a structured reply chunk, sent only to a client
/// that negotiated `NBD_OPT_STRUCTURED_REPLY`.
pub(crate) const NBD_STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Bytes `at..at + N` of a message. The caller knows `b` holds them: a fixed-size message's
/// fields are at constant offsets inside it, a variable one's length is checked first.
pub(crate) fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

/// A message that breaks the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The message does not start with its magic number.
    BadMagic {
        /// Which message (`"simple reply"`).
        message: &'static str,
        /// Its magic number.
        expected: u64,
        /// What came instead.
        found: u64,
    },
    /// A structured reply chunk came where only simple replies were negotiated.
    StructuredReply,
    /// A request with a command the protocol does not define.
    UnknownCommand(u16),
    /// A reply with an error value the protocol does not define. The protocol asks clients to
    /// take it as `NBD_EINVAL` for request `cookie`.
    UnknownError {
        /// The request answered.
        cookie: u64,
        /// The value.
        code: u32,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::BadMagic {
                message,
                expected,
                found,
            } => write!(
                f,
                "a {message} starts with {found:#x}, not its magic number {expected:#x}"
            ),
            WireError::StructuredReply => f.write_str(
                "a structured reply chunk came, but only simple replies were negotiated",
            ),
            WireError::UnknownCommand(c) => write!(f, "unknown command {c}"),
            WireError::UnknownError { cookie, code } => {
                write!(
                    f,
                    "the reply to request {cookie:#x} has unknown error {code}"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex to bytes, for vectors written as the protocol document spells them.
    pub(super) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn magics_spell_what_the_document_says() {
        assert_eq!(&NBDMAGIC.to_be_bytes(), b"NBDMAGIC");
        assert_eq!(&IHAVEOPT.to_be_bytes(), b"IHAVEOPT");
        assert_eq!(NBD_OPT_REPLY_MAGIC, 0x3e889045565a9);
        assert_eq!(NBD_CLISERV_MAGIC, 0x00420281861253);
    }
}
