//! What a queue ring's `user_data` carries: which tag, and whose operation it was.
//!
//! One ring carries the driver's commands (FETCH, COMMIT_AND_FETCH, NEED_GET_DATA, and for
//! zero copy REGISTER_IO_BUF and UNREGISTER_IO_BUF), the
//! target's own operations (a loop target's file reads and writes) and the stop signal. The
//! completion must say which, with no lookup table: so the kind is in the top byte, the tag in
//! the low 16 bits and a target's own cookie in between.
//!
//! ```text
//!   63      56 55    48 47                       16 15          0
//!   [  kind  ] [  0   ] [     cookie (targets)    ] [    tag     ]
//! ```

use crate::abi::IoCmd;

const KIND_SHIFT: u32 = 56;
const COOKIE_SHIFT: u32 = 16;

const KIND_FETCH: u8 = 1;
const KIND_COMMIT: u8 = 2;
const KIND_GET_DATA: u8 = 3;
const KIND_REGISTER: u8 = 4;
const KIND_UNREGISTER: u8 = 5;
/// Commands a queue never issues (the batch ones) encode as this, which decodes to nothing.
const KIND_NONE: u8 = 0;
const KIND_WAKE: u8 = 0x40;
const KIND_TARGET: u8 = 0x80;

/// A decoded `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UserData {
    /// A ublk command of `tag`.
    Cmd { cmd: IoCmd, tag: u16 },
    /// An operation a target queued for `tag`, with its own `cookie`.
    Target { tag: u16, cookie: u32 },
    /// The stop signal's read finished.
    Wake,
}

impl UserData {
    pub(crate) const fn encode(self) -> u64 {
        let (kind, tag, cookie) = match self {
            UserData::Cmd { cmd, tag } => {
                let kind = match cmd {
                    IoCmd::FetchReq => KIND_FETCH,
                    IoCmd::CommitAndFetchReq => KIND_COMMIT,
                    IoCmd::NeedGetData => KIND_GET_DATA,
                    IoCmd::RegisterIoBuf => KIND_REGISTER,
                    IoCmd::UnregisterIoBuf => KIND_UNREGISTER,
                    IoCmd::PrepIoCmds | IoCmd::CommitIoCmds | IoCmd::FetchIoCmds => KIND_NONE,
                };
                (kind, tag, 0)
            }
            UserData::Target { tag, cookie } => (KIND_TARGET, tag, cookie),
            UserData::Wake => (KIND_WAKE, 0, 0),
        };
        ((kind as u64) << KIND_SHIFT) | ((cookie as u64) << COOKIE_SHIFT) | tag as u64
    }

    /// `None` for a value no queue encoded.
    pub(crate) fn decode(raw: u64) -> Option<UserData> {
        let tag = raw as u16;
        let cookie = (raw >> COOKIE_SHIFT) as u32;
        let middle = (raw >> 48) as u8;
        if middle != 0 {
            return None;
        }
        let cmd = |cmd| {
            if cookie == 0 {
                Some(UserData::Cmd { cmd, tag })
            } else {
                None
            }
        };
        match (raw >> KIND_SHIFT) as u8 {
            KIND_FETCH => cmd(IoCmd::FetchReq),
            KIND_COMMIT => cmd(IoCmd::CommitAndFetchReq),
            KIND_GET_DATA => cmd(IoCmd::NeedGetData),
            KIND_REGISTER => cmd(IoCmd::RegisterIoBuf),
            KIND_UNREGISTER => cmd(IoCmd::UnregisterIoBuf),
            KIND_TARGET => Some(UserData::Target { tag, cookie }),
            KIND_WAKE if raw == (KIND_WAKE as u64) << KIND_SHIFT => Some(UserData::Wake),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let cases = [
            UserData::Cmd {
                cmd: IoCmd::FetchReq,
                tag: 0,
            },
            UserData::Cmd {
                cmd: IoCmd::CommitAndFetchReq,
                tag: 4095,
            },
            UserData::Cmd {
                cmd: IoCmd::NeedGetData,
                tag: u16::MAX,
            },
            UserData::Cmd {
                cmd: IoCmd::RegisterIoBuf,
                tag: 3,
            },
            UserData::Cmd {
                cmd: IoCmd::UnregisterIoBuf,
                tag: 4095,
            },
            UserData::Target {
                tag: 17,
                cookie: u32::MAX,
            },
            UserData::Target { tag: 0, cookie: 0 },
            UserData::Wake,
        ];
        for c in cases {
            assert_eq!(UserData::decode(c.encode()), Some(c), "{c:?}");
        }
    }

    #[test]
    fn foreign_values_are_rejected() {
        for raw in [
            0,
            u64::MAX,
            1 << 50,
            (0x40 << 56) | 1,
            (1 << 56) | (5 << 16),
            9 << 56,
        ] {
            assert_eq!(UserData::decode(raw), None, "{raw:#x}");
        }
        // The batch commands are never issued: their encoding names nothing.
        let batch = UserData::Cmd {
            cmd: IoCmd::FetchIoCmds,
            tag: 1,
        };
        assert_eq!(UserData::decode(batch.encode()), None);
    }
}
