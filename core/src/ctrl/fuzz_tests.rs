//! Randomized tests of what the control side reads from the kernel (a queue's CPU mask) and
//! builds from numbers (a device's path, an error's message).

extern crate std;

use std::format;
use std::vec::Vec;

use super::*;
use crate::testing::{Prng, fuzz};

/// A mask as GET_QUEUE_AFFINITY fills it: the kernel writes its bitmap of `unsigned long`s
/// into the buffer. Sparse, dense, empty, full or random, since real masks are mostly sparse.
fn kernel_mask(p: &mut Prng) -> (CpuMask, Vec<u8>) {
    let mut bytes = std::vec![0u8; CpuMask::MAX_CPUS / 8];
    match p.below(4) {
        0 => {
            for _ in 0..p.below(8) {
                let cpu = p.index(CpuMask::MAX_CPUS);
                let word = cpu / 64 * 8;
                let bits = u64::from_ne_bytes(bytes[word..word + 8].try_into().unwrap());
                let bits = bits | 1 << (cpu % 64);
                bytes[word..word + 8].copy_from_slice(&bits.to_ne_bytes());
            }
        }
        1 => bytes.fill(if p.bool() { 0xff } else { 0 }),
        _ => p.fill_bytes(&mut bytes),
    }
    let mut mask = CpuMask {
        words: [0; CpuMask::WORDS],
    };
    mask.words.as_bytes_mut().copy_from_slice(&bytes);
    (mask, bytes)
}

/// Whether the kernel's bitmap has `cpu`: bit `cpu % 64` of `unsigned long` `cpu / 64`.
fn bitmap_has(bytes: &[u8], cpu: usize) -> bool {
    let word = cpu / 64 * 8;
    match bytes.get(word..word + 8) {
        Some(w) => u64::from_ne_bytes(w.try_into().unwrap()) >> (cpu % 64) & 1 == 1,
        None => false,
    }
}

#[test]
fn fuzz_cpu_mask_reads_the_kernel_bitmap() {
    fuzz(60, |p| {
        let (mask, bytes) = kernel_mask(p);
        let listed: Vec<usize> = mask.cpus().collect();
        let want: Vec<usize> = (0..CpuMask::MAX_CPUS)
            .filter(|&c| bitmap_has(&bytes, c))
            .collect();
        assert_eq!(listed, want);
        assert_eq!(mask.count(), want.len());
        for _ in 0..64 {
            // Any CPU number, those past the mask's end included.
            let cpu = match p.below(3) {
                0 => p.interesting_u64() as usize,
                1 => p.near(CpuMask::MAX_CPUS as u64, 2) as usize,
                _ => p.index(CpuMask::MAX_CPUS),
            };
            assert_eq!(mask.contains(cpu), bitmap_has(&bytes, cpu), "cpu {cpu}");
        }
        let _ = format!("{mask:?}");
    });
}

#[test]
fn fuzz_char_dev_path_spells_any_id() {
    fuzz(2000, |p| {
        let id = p.interesting_u32();
        let path = CharDevPath::new(id);
        assert_eq!(path.as_bytes(), format!("/dev/ublkc{id}\0").as_bytes());
    });
}

#[test]
fn fuzz_ctrl_errors_name_the_command_and_device_for_any_values() {
    fuzz(2000, |p| {
        let cmd = *p.pick(&CtrlCmd::ALL);
        let dev_id = p.bool().then(|| p.interesting_u32());
        let kind = match p.below(3) {
            0 => CtrlErrorKind::Kernel(Errno(p.interesting_u32() as i32)),
            1 => CtrlErrorKind::TimedOut {
                waited: Duration::new(p.interesting_u64(), p.below(1_000_000_000) as u32),
                cancelled: p.bool(),
            },
            _ => CtrlErrorKind::Ring(RingError::Enter(Errno(p.interesting_u32() as i32))),
        };
        let e = CtrlError { cmd, dev_id, kind };
        let text = format!("{e}");
        let prefix = match dev_id {
            Some(id) => format!("{cmd} for device {id}: "),
            None => format!("{cmd}: "),
        };
        assert!(text.starts_with(&prefix), "{text}");
        assert_eq!(
            e.errno().is_some(),
            matches!(kind, CtrlErrorKind::Kernel(_))
        );
        if let (CtrlErrorKind::Kernel(errno), Some(hint)) = (kind, e.hint()) {
            // A hint explains a known errno, named next to it.
            if let Some(name) = errno.name() {
                assert!(text.contains(name) && text.contains(hint), "{text}");
            }
        }
    });
}
