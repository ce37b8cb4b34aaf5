//! Randomized test of the `user_data` decoding: every completion's `user_data` comes back
//! from the kernel, and a queue must place it or reject it, never misplace it.

use super::user_data::UserData;
use crate::abi::IoCmd;
use crate::testing::{Prng, fuzz};

/// The kinds in the top byte, as the layout in `user_data.rs` documents them.
const FETCH: u64 = 1;
const COMMIT: u64 = 2;
const GET_DATA: u64 = 3;
const REGISTER: u64 = 4;
const UNREGISTER: u64 = 5;
const WAKE: u64 = 0x40;
const TARGET: u64 = 0x80;

/// What the layout says `raw` is, written from the documented layout
/// (`[kind:8][0:8][cookie:32][tag:16]`), independently of the decoder.
fn model(raw: u64) -> Option<UserData> {
    let kind = raw >> 56;
    let reserved = (raw >> 48) & 0xff;
    let cookie = ((raw >> 16) & 0xffff_ffff) as u32;
    let tag = (raw & 0xffff) as u16;
    let cmd = |cmd| (cookie == 0).then_some(UserData::Cmd { cmd, tag });
    if reserved != 0 {
        return None;
    }
    match kind {
        FETCH => cmd(IoCmd::FetchReq),
        COMMIT => cmd(IoCmd::CommitAndFetchReq),
        GET_DATA => cmd(IoCmd::NeedGetData),
        REGISTER => cmd(IoCmd::RegisterIoBuf),
        UNREGISTER => cmd(IoCmd::UnregisterIoBuf),
        TARGET => Some(UserData::Target { tag, cookie }),
        // The stop signal carries nothing else.
        WAKE => (raw & ((1 << 56) - 1) == 0).then_some(UserData::Wake),
        _ => None,
    }
}

/// A `user_data` value: any bits, or built from the layout with each field random or edge
/// (so the accepted kinds are hit often, not once in 2^56 draws).
fn raw_value(p: &mut Prng) -> u64 {
    if p.chance(1, 4) {
        return p.interesting_u64();
    }
    let kind = match p.below(3) {
        0 => p.interesting(8),
        _ => *p.pick(&[FETCH, COMMIT, GET_DATA, REGISTER, UNREGISTER, WAKE, TARGET]),
    };
    let field = |p: &mut Prng, bits| match p.below(3) {
        0 => 0,
        1 => p.interesting(bits),
        _ => p.next_u64() & (u64::MAX >> (64 - bits)),
    };
    // The reserved byte is mostly 0, as every encoded value has it.
    let reserved = if p.chance(1, 4) { field(p, 8) } else { 0 };
    (kind << 56) | (reserved << 48) | (field(p, 32) << 16) | field(p, 16)
}

/// A value a queue encodes: one of the five commands a queue issues, a target's operation
/// or the stop signal.
fn encodable(p: &mut Prng) -> UserData {
    let tag = p.interesting_u16();
    match p.below(3) {
        0 => UserData::Cmd {
            cmd: *p.pick(&[
                IoCmd::FetchReq,
                IoCmd::CommitAndFetchReq,
                IoCmd::NeedGetData,
                IoCmd::RegisterIoBuf,
                IoCmd::UnregisterIoBuf,
            ]),
            tag,
        },
        1 => UserData::Target {
            tag,
            cookie: p.interesting_u32(),
        },
        _ => UserData::Wake,
    }
}

#[test]
fn fuzz_user_data_decodes_exactly_what_the_layout_says() {
    fuzz(3000, |p| {
        let raw = raw_value(p);
        let decoded = UserData::decode(raw);
        assert_eq!(decoded, model(raw), "user_data {raw:#018x}");
        // An accepted value is the encoding of what it decoded to: no two values decode
        // alike, so a completion is never taken for another's.
        if let Some(d) = decoded {
            assert_eq!(d.encode(), raw, "{d:?} from {raw:#018x}");
        }
    });
}

#[test]
fn fuzz_user_data_every_encodable_value_round_trips() {
    fuzz(3000, |p| {
        let value = encodable(p);
        let raw = value.encode();
        assert_eq!(UserData::decode(raw), Some(value), "{raw:#018x}");
        // And the encoder writes what the documented layout says.
        assert_eq!(model(raw), Some(value), "{raw:#018x}");
    });
}
