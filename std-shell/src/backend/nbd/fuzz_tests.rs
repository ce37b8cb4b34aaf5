//! Randomized tests: whatever bytes a server sends, the decoders and the handshake answer
//! with a value or an error, never a panic, and what they accept is what the protocol allows.

use std::io::{self, Read, Write};

use ublk_core::testing::{Prng, fuzz};

use super::handshake::{BlockSizes, handshake};
use super::proto::*;

/// A server that says `script` whatever the client sends, then hangs up.
struct Replay {
    script: io::Cursor<Vec<u8>>,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.script.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a good server says to `NBD_OPT_GO`, with random values.
fn good_transcript(p: &mut Prng) -> Vec<u8> {
    let reply = |reply: u32, data: &[u8]| {
        let length = data.len() as u32;
        [
            &OptionReply {
                option: NBD_OPT_GO,
                reply,
                length,
            }
            .encode()[..],
            data,
        ]
        .concat()
    };
    let info =
        |kind: u16, payload: &[u8]| reply(NBD_REP_INFO, &[&kind.to_be_bytes(), payload].concat());
    let flags = TransmissionFlags::HAS_FLAGS.bits() | p.interesting_u16();
    let mut pieces = vec![
        [NBDMAGIC.to_be_bytes(), IHAVEOPT.to_be_bytes()].concat(),
        (p.interesting_u16() | 1).to_be_bytes().to_vec(),
        info(
            NBD_INFO_EXPORT,
            &[&p.interesting_u64().to_be_bytes()[..], &flags.to_be_bytes()].concat(),
        ),
    ];
    if p.bool() {
        let min = 1u32 << p.range(0..=16);
        let sizes = [min, min.max(512) << p.range(0..=4), p.interesting_u32()];
        pieces.push(info(
            NBD_INFO_BLOCK_SIZE,
            &sizes.map(u32::to_be_bytes).concat(),
        ));
    }
    if p.bool() {
        pieces.push(info(p.range(1..=2) as u16, &[b'x'; 7]));
    }
    pieces.push(match p.below(4) {
        0 => reply(NBD_REP_ERR_UNKNOWN, b"no"),
        1 => reply(NBD_REP_ERR_UNSUP, &[]),
        _ => reply(NBD_REP_ACK, &[]),
    });
    pieces.concat()
}

/// Spoils a transcript the ways servers go wrong: a flipped byte, a random number where a
/// length or magic is, a cut, junk inserted, or nothing but junk.
fn spoil(p: &mut Prng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..p.range(0..=3) {
        if bytes.is_empty() {
            break;
        }
        let at = p.index(bytes.len());
        match p.below(5) {
            0 => bytes[at] ^= 1 << p.below(8),
            1 => {
                let end = (at + 4).min(bytes.len());
                let value = p.interesting_u32().to_be_bytes();
                bytes[at..end].copy_from_slice(&value[..end - at]);
            }
            2 => bytes.truncate(at),
            3 => {
                let mut junk = vec![0; p.index(24)];
                p.fill_bytes(&mut junk);
                bytes.splice(at..at, junk);
            }
            _ => {
                bytes = vec![0; p.index(64)];
                p.fill_bytes(&mut bytes);
            }
        }
    }
    bytes
}

#[test]
fn fuzz_handshake_survives_any_server() {
    fuzz(2000, |p| {
        let good = good_transcript(p);
        let script = spoil(p, good);
        let mut server = Replay {
            script: io::Cursor::new(script),
        };
        if let Ok(export) = handshake(&mut server, "fuzz") {
            assert!(export.flags.contains(TransmissionFlags::HAS_FLAGS));
            if let Some(sizes) = export.block_sizes {
                assert_eq!(sizes.check(export.size), Ok(()));
            }
        }
    });
}

/// The block size rules, written from the protocol document rather than from `check`.
fn allowed(s: &BlockSizes, size: u64) -> bool {
    let pow2 = |v: u32| v != 0 && v & (v - 1) == 0;
    pow2(s.min)
        && s.min <= 65536
        && pow2(s.preferred)
        && s.preferred >= s.min.max(512)
        && (s.max == u32::MAX
            || (s.max.checked_rem(s.min) == Some(0)
                && u64::from(s.max) >= u64::from(s.preferred).min(size)))
}

#[test]
fn fuzz_block_sizes_are_checked_as_the_protocol_says() {
    fuzz(5000, |p| {
        let s = BlockSizes {
            min: p.interesting_u32(),
            preferred: p.interesting_u32(),
            max: p.interesting_u32(),
        };
        let size = p.interesting_u64();
        assert_eq!(
            s.check(size).is_ok(),
            allowed(&s, size),
            "{s:?} size {size}"
        );
    });
}

fn random<const N: usize>(p: &mut Prng) -> [u8; N] {
    let mut b = [0; N];
    p.fill_bytes(&mut b);
    // Often a real magic, so decoding goes past the first check.
    if p.bool() && N >= 4 {
        let magic = [
            NBD_REQUEST_MAGIC,
            NBD_SIMPLE_REPLY_MAGIC,
            NBD_STRUCTURED_REPLY_MAGIC,
        ];
        b[..4].copy_from_slice(&p.pick(&magic).to_be_bytes());
    }
    b
}

#[test]
fn fuzz_fixed_messages_decode_or_are_refused_and_round_trip() {
    fuzz(5000, |p| {
        let b = random::<REQUEST_LEN>(p);
        match Request::decode(&b) {
            Ok(req) => assert_eq!(req.encode(), b),
            Err(WireError::UnknownCommand(c)) => assert!(c > 7),
            Err(e) => assert!(matches!(e, WireError::BadMagic { .. }), "{e}"),
        }
        let b = random::<SIMPLE_REPLY_LEN>(p);
        match SimpleReply::decode(&b) {
            Ok(reply) => assert_eq!(reply.encode(), b),
            Err(WireError::UnknownError { code, cookie }) => {
                assert!(NbdErrno::from_wire(code).is_none() && code != 0);
                assert_eq!(cookie.to_be_bytes(), b[8..16]);
            }
            Err(e) => assert!(
                matches!(e, WireError::BadMagic { .. } | WireError::StructuredReply),
                "{e}"
            ),
        }
        let mut b = random::<OPTION_REPLY_LEN>(p);
        if p.bool() {
            b[..8].copy_from_slice(&NBD_OPT_REPLY_MAGIC.to_be_bytes());
        }
        match OptionReply::decode(&b) {
            Ok(reply) => {
                assert_eq!(reply.encode(), b);
                assert_eq!(reply.is_error(), b[12] & 0x80 != 0);
            }
            Err(e) => assert!(matches!(e, WireError::BadMagic { .. }), "{e}"),
        }
    });
}
