//! Randomized test of the ring layout checks: `io_uring_setup` returns offsets into the
//! rings' mappings, and a ring uses them only after checking they lie inside.

use super::*;
use crate::abi::uring::Sqe64;
use crate::testing::fuzz;

#[test]
fn fuzz_ring_layout_offsets_are_used_only_inside_the_mapping() {
    fuzz(300, |p| {
        let len = p.range(1..=3 * 4096) as usize;
        let map = Mapping::anonymous(len).expect("an anonymous mapping");
        for _ in 0..32 {
            let offset = match p.below(3) {
                0 => p.interesting_u32(),
                1 => p.near(len as u64, 9) as u32,
                _ => p.below(len as u64 + 16) as u32,
            };
            let (off, fits4) = (offset as usize, offset as usize + 4 <= len);
            match field::<u32>(&map, offset, "a field") {
                Ok(ptr) => {
                    assert!(fits4 && off % 4 == 0, "u32 at {off} of {len} accepted");
                    assert_eq!(ptr as usize, map.as_ptr() as usize + off);
                }
                Err(e) => {
                    assert!(!fits4 || off % 4 != 0, "u32 at {off} of {len} refused");
                    assert_eq!(e, RingError::BadLayout("a field"));
                }
            }
            let count = match p.below(3) {
                0 => p.interesting_u32(),
                _ => p.below(len as u64 / 8 + 4) as u32,
            };
            // In u128, where the sum cannot wrap as it could in the checked code's usize.
            let end = u128::from(count) * core::mem::size_of::<Sqe64>() as u128 + off as u128;
            let fits = array_fits::<Sqe64>(&map, offset, count, "an array").is_ok();
            assert_eq!(fits, end <= len as u128, "{count} SQEs at {off} of {len}");
        }
    });
}
