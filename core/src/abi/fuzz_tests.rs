//! Randomized tests of the ABI decoders: every number the kernel hands over (an op word, a
//! device state, feature bits, an opcode, a completion result, whole structs as bytes) either
//! decodes to what the header says it means or is rejected with the raw value, never a panic.
//!
//! The expectations are written from `linux/ublk_cmd.h` (values, names, bit positions and
//! offsets), not from the decoders.

extern crate std;

use std::format;
use std::vec::Vec;

use super::*;
use crate::errno::Errno;
use crate::testing::{Prng, fuzz};

/// `UBLK_IO_OP_*` from the header: value and name.
const IO_OPS: [(u8, &str); 13] = [
    (0, "READ"),
    (1, "WRITE"),
    (2, "FLUSH"),
    (3, "DISCARD"),
    (4, "WRITE_SAME"),
    (5, "WRITE_ZEROES"),
    (10, "ZONE_OPEN"),
    (11, "ZONE_CLOSE"),
    (12, "ZONE_FINISH"),
    (13, "ZONE_APPEND"),
    (14, "ZONE_RESET_ALL"),
    (15, "ZONE_RESET"),
    (18, "REPORT_ZONES"),
];

/// `UBLK_IO_F_*` bit positions from the header.
const IO_FLAG_BITS: [u32; 10] = [8, 9, 10, 11, 13, 15, 16, 17, 18, 19];

/// `UBLK_S_DEV_*` from the header, with their names for people.
const DEV_STATES: [(u16, &str); 4] = [(0, "dead"), (1, "live"), (2, "quiesced"), (3, "fail_io")];

/// `UBLK_F_*`: the header defines bits 0 to 20.
const FEATURE_BITS: u64 = (1 << 21) - 1;

/// A 32-bit op word: any bits, or a known op under random or edge flags.
fn op_flags(p: &mut Prng) -> u32 {
    let flags = match p.below(3) {
        0 => 0,
        1 => p.interesting_u32(),
        _ => p.next_u64() as u32,
    } & !0xff;
    let op = match p.below(3) {
        0 => p.interesting_u8(),
        _ => p.pick(&IO_OPS).0,
    };
    flags | u32::from(op)
}

/// Random bytes, 0..=max long (short slices too: a decoder must not read past them).
fn bytes(p: &mut Prng, max: usize) -> Vec<u8> {
    let mut b = std::vec![0; p.index(max + 1)];
    p.fill_bytes(&mut b);
    if p.chance(1, 8) {
        // All-ones and all-zero fields are the edges of every field at once.
        b.fill(if p.bool() { 0xff } else { 0 });
    }
    b
}

/// A native-endian integer at `offset` of `b`, as the kernel lays it out.
fn ne<const N: usize>(b: &[u8], offset: usize) -> [u8; N] {
    b[offset..offset + N].try_into().expect("N bytes")
}

/// Up to `max` random bytes viewed as a `T`: refused exactly when shorter than `T`, and
/// otherwise read as its first `size_of::<T>()` bytes, unchanged. The bytes and the value.
fn viewed<T: Pod>(p: &mut Prng, max: usize) -> (Vec<u8>, Option<T>) {
    let size = core::mem::size_of::<T>();
    let b = bytes(p, max);
    let v = T::read_from(&b);
    match &v {
        None => assert!(b.len() < size, "{} bytes refused", b.len()),
        Some(v) => {
            assert!(b.len() >= size, "read {} bytes as {size}", b.len());
            assert_eq!(v.as_bytes(), &b[..size]);
        }
    }
    (b, v)
}

#[test]
fn fuzz_io_desc_op_and_flags_decode_as_the_header_says() {
    fuzz(2000, |p| {
        let desc = UblksrvIoDesc {
            op_flags: op_flags(p),
            nr_sectors: p.interesting_u32(),
            start_sector: p.interesting_u64(),
            addr: p.next_u64(),
        };
        let low = (desc.op_flags & 0xff) as u8;
        match (desc.op(), IO_OPS.iter().find(|(v, _)| *v == low)) {
            (Ok(op), Some((_, name))) => {
                assert_eq!(op as u8, low);
                assert_eq!(op.name(), *name);
                assert_eq!(IoOp::try_from(low), Ok(op));
                assert_eq!(format!("{op}"), *name);
            }
            (Err(raw), None) => assert_eq!(raw, low),
            (got, want) => panic!("op byte {low}: decoded {got:?}, the header says {want:?}"),
        }
        let flags = desc.flags();
        assert_eq!(flags.bits(), desc.op_flags & !0xff, "{:#x}", desc.op_flags);
        let known: u32 = IO_FLAG_BITS.iter().map(|b| 1 << b).sum();
        assert_eq!(flags.unknown_bits(), desc.op_flags & !0xff & !known);
        assert_eq!(flags.contains(IoFlags::FUA), desc.op_flags & (1 << 13) != 0);
        assert_eq!(desc.nr_zones(), desc.nr_sectors);
    });
}

#[test]
fn fuzz_io_op_every_byte_decodes_or_is_returned() {
    // 256 values: all of them, whatever the seed.
    for v in 0..=u8::MAX {
        let known = IO_OPS.iter().any(|(op, _)| *op == v);
        match IoOp::try_from(v) {
            Ok(op) => assert!(known && op as u8 == v, "{v}"),
            Err(raw) => assert!(!known && raw == v, "{v}"),
        }
    }
}

#[test]
fn fuzz_dev_state_from_any_u16_and_any_dev_info_bytes() {
    for v in 0..=u16::MAX {
        let want = DEV_STATES.iter().find(|(s, _)| *s == v);
        match (DevState::try_from(v), want) {
            (Ok(s), Some((_, name))) => assert!(s as u16 == v && s.name() == *name, "{v}"),
            (Err(raw), None) => assert_eq!(raw, v),
            (got, want) => panic!("state {v}: decoded {got:?}, the header says {want:?}"),
        }
    }
    fuzz(1000, |p| {
        let (b, Some(info)) = viewed::<UblksrvCtrlDevInfo>(p, 80) else {
            return;
        };
        let state = u16::from_ne_bytes(ne(&b, 4));
        match info.dev_state() {
            Ok(s) => assert!(s as u16 == state && state <= 3, "state {state}"),
            Err(raw) => assert!(raw == state && state > 3, "state {state}"),
        }
        let flags = u64::from_ne_bytes(ne(&b, 24));
        assert_eq!(info.flags.bits(), flags);
        assert_eq!(info.flags.unknown_bits(), flags & !FEATURE_BITS);
        assert_eq!(info.queue_depth, u16::from_ne_bytes(ne(&b, 2)));
        assert_eq!(info.max_io_buf_bytes, u32::from_ne_bytes(ne(&b, 8)));
        assert_eq!(info.ublksrv_pid, i32::from_ne_bytes(ne(&b, 16)));
    });
}

/// Checks a flag set's view of `bits`: the names it lists are exactly the known bits that
/// are set, the unknown ones are kept, and its text shows both.
macro_rules! check_flag_set {
    ($ty:ty, $bits:expr, $known:expr) => {{
        let bits = $bits;
        let set = <$ty>::from_bits_retain(bits);
        assert_eq!(set.bits(), bits);
        assert_eq!(set.unknown_bits(), bits & !$known, "{bits:#x}");
        let mut named = 0;
        let text = format!("{set}");
        for name in set.names() {
            let flag = <$ty>::from_name(name).expect("a listed name is a name");
            assert!(set.contains(flag), "{name} listed in {bits:#x}");
            assert!(text.contains(name), "{text}");
            named |= flag.bits();
        }
        assert_eq!(named, bits & $known, "names of {bits:#x}");
        assert_eq!(
            text.contains(&format!("{:#x}", set.unknown_bits())),
            set.unknown_bits() != 0,
            "{text}"
        );
        assert_eq!(text == "(empty)", bits == 0, "{text}");
    }};
}

#[test]
fn fuzz_flag_sets_name_known_bits_and_keep_unknown_ones() {
    fuzz(2000, |p| {
        check_flag_set!(Features, p.interesting_u64(), FEATURE_BITS);
        check_flag_set!(
            IoFlags,
            op_flags(p) & !0xff,
            IO_FLAG_BITS.iter().map(|b| 1u32 << b).sum::<u32>()
        );
        // UBLK_PARAM_TYPE_* bits 0-6, UBLK_ATTR_* bits 0-3.
        check_flag_set!(ParamTypes, p.interesting_u32(), 0x7f);
        check_flag_set!(Attrs, p.interesting_u32(), 0xf);
    });
}

#[test]
fn fuzz_ctrl_opcodes_decode_only_the_commands_they_name() {
    // Each command's opcodes name it alone, so decoding cannot pick the wrong one.
    for a in CtrlCmd::ALL {
        for b in CtrlCmd::ALL.iter().filter(|b| **b != a) {
            assert_ne!(a.ioctl_opcode(), b.ioctl_opcode(), "{a} {b}");
            assert_ne!(a.number(), b.number(), "{a} {b}");
        }
    }
    fuzz(2000, |p| {
        let op = match p.below(4) {
            0 => p.interesting_u32(),
            1 => p.below(0x40) as u32,
            // A real opcode with one bit flipped: the near misses.
            2 => p.pick(&CtrlCmd::ALL).ioctl_opcode() ^ (1 << p.below(32)),
            _ => p
                .pick(&CtrlCmd::ALL)
                .opcode(*p.pick(&[OpEncoding::Ioctl, OpEncoding::Legacy])),
        };
        let want = CtrlCmd::ALL
            .into_iter()
            .find(|c| c.ioctl_opcode() == op || u32::from(c.number()) == op);
        assert_eq!(CtrlCmd::try_from(op).ok(), want, "opcode {op:#x}");
        if let Err(raw) = CtrlCmd::try_from(op) {
            assert_eq!(raw, op);
        }
    });
}

#[test]
fn fuzz_completion_results_split_into_counts_and_errnos() {
    fuzz(2000, |p| {
        let res = p.interesting_u32() as i32;
        match Errno::from_result(res) {
            Ok(n) => assert!(res >= 0 && i64::from(n) == i64::from(res), "{res}"),
            Err(e) => {
                assert!(res < 0, "{res}");
                // -i32::MIN does not fit: it saturates rather than wrapping to itself.
                let want = if res == i32::MIN { i32::MAX } else { -res };
                assert_eq!(e, Errno(want));
                assert!(e.0 > 0, "an errno is positive: {res}");
                let text = format!("{e}");
                assert_eq!(e.name().is_some(), e.description().is_some(), "{e:?}");
                match e.name() {
                    Some(name) => assert!(text.starts_with(name), "{text}"),
                    None => assert_eq!(text, format!("errno {}", e.0)),
                }
            }
        }
    });
}

#[test]
fn fuzz_params_viewed_from_any_bytes() {
    fuzz(1000, |p| {
        let (b, Some(params)) = viewed::<UblkParams>(p, 200) else {
            return;
        };
        assert_eq!(UblkParams::read_from(params.as_bytes()), Some(params));
        // Offsets from the header's `struct ublk_params` and its parts.
        let u32_at = |o| u32::from_ne_bytes(ne(&b, o));
        let u16_at = |o| u16::from_ne_bytes(ne(&b, o));
        let u64_at = |o| u64::from_ne_bytes(ne(&b, o));
        assert_eq!(params.len, u32_at(0));
        assert_eq!(params.types.bits(), u32_at(4));
        let basic = &params.basic;
        assert_eq!(basic.attrs.bits(), u32_at(8));
        assert_eq!(
            [
                basic.logical_bs_shift,
                basic.physical_bs_shift,
                basic.io_opt_shift,
                basic.io_min_shift
            ],
            b[12..16]
        );
        assert_eq!(basic.max_sectors, u32_at(16));
        assert_eq!(basic.chunk_sectors, u32_at(20));
        assert_eq!(basic.dev_sectors, u64_at(24));
        assert_eq!(basic.virt_boundary_mask, u64_at(32));
        assert_eq!(params.discard.discard_granularity, u32_at(44));
        assert_eq!(params.discard.max_discard_segments, u16_at(56));
        assert_eq!(params.devt.char_major, u32_at(60));
        assert_eq!(params.devt.disk_minor, u32_at(72));
        assert_eq!(params.zoned.max_zone_append_sectors, u32_at(84));
        assert_eq!(params.zoned.reserved, b[88..108]);
        assert_eq!(params.dma.alignment, u32_at(108));
        assert_eq!(params.pad_dma_seg, b[116..120]);
        assert_eq!(params.seg.seg_boundary_mask, u64_at(120));
        assert_eq!(params.seg.max_segment_size, u32_at(128));
        assert_eq!(params.seg.max_segments, u16_at(132));
        assert_eq!(params.integrity.flags, u32_at(136));
        assert_eq!(params.integrity.max_integrity_segments, u16_at(140));
        assert_eq!(params.integrity.tag_size, b[146]);
        assert_eq!(params.integrity.pad, b[147..152]);

        // Writing through the byte view leaves a value whose bytes are what was written.
        let mut written = UblkParams::new();
        let mut fresh = [0u8; 152];
        p.fill_bytes(&mut fresh);
        written.as_bytes_mut().copy_from_slice(&fresh);
        assert_eq!(written.as_bytes(), fresh);
    });
}

#[test]
fn fuzz_io_descriptor_from_any_bytes() {
    fuzz(1000, |p| {
        let (b, Some(d)) = viewed::<UblksrvIoDesc>(p, 40) else {
            return;
        };
        assert_eq!(d.op_flags, u32::from_ne_bytes(ne(&b, 0)));
        assert_eq!(d.nr_sectors, u32::from_ne_bytes(ne(&b, 4)));
        assert_eq!(d.start_sector, u64::from_ne_bytes(ne(&b, 8)));
        assert_eq!(d.addr, u64::from_ne_bytes(ne(&b, 16)));
        let op_byte = d.op().map_or_else(|raw| raw, |op| op as u8);
        assert_eq!(u32::from(op_byte), d.op_flags & 0xff);
    });
}

#[test]
fn fuzz_io_address_encodings_round_trip() {
    use io::*;
    fuzz(2000, |p| {
        let (q, tag, offset) = (
            p.interesting_u16(),
            p.interesting_u16(),
            p.interesting_u32(),
        );
        // UBLKSRV_IO_BUF_OFFSET + (q << 41 | tag << 25 | offset), with q < 4096 and
        // offset < 32 MiB so that no field spills into another.
        let fits = q < 4096 && offset < (1 << 25);
        match user_copy_pos(q, tag, offset) {
            Some(pos) => {
                assert!(fits, "q {q} offset {offset} accepted");
                let want = 0x8000_0000u128
                    + ((u128::from(q) << 41) | (u128::from(tag) << 25) | u128::from(offset));
                assert_eq!(u128::from(pos), want);
                let rel = pos - UBLKSRV_IO_BUF_OFFSET;
                assert_eq!(
                    (rel >> 41, (rel >> 25) & 0xffff, rel & ((1 << 25) - 1)),
                    (u64::from(q), u64::from(tag), u64::from(offset))
                );
            }
            None => assert!(!fits, "q {q} tag {tag} offset {offset} refused"),
        }

        let addr = p.interesting_u64();
        let reg = UblkAutoBufReg::from_sqe_addr(addr);
        assert_eq!(reg.to_sqe_addr(), addr);
        assert_eq!(u64::from(reg.index), addr & 0xffff);
        assert_eq!(u64::from(reg.flags), (addr >> 16) & 0xff);
        assert_eq!(u64::from(shmem_zc_index(addr)), (addr >> 32) & 0xffff);
        assert_eq!(u64::from(shmem_zc_offset(addr)), addr & 0xffff_ffff);
        let (index, off) = (p.interesting_u16(), p.interesting_u32());
        let zc = shmem_zc_addr(index, off);
        assert_eq!((shmem_zc_index(zc), shmem_zc_offset(zc)), (index, off));
    });
}
