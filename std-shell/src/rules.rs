//! What a device's settings must be, each rule written once: the builder, the targets and the
//! control commands check with these functions, and so does the `ublk` command for its
//! options, instead of restating them. Every refusal is an [`Error::InvalidArgument`] naming
//! the setting and the value. Sizes are in bytes.

use ublk_core::Features;
use ublk_core::abi::io::{UBLK_IO_BUF_BITS, UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH};

use crate::error::{Error, Result};

/// The largest device id the driver hands out (`UBLK_MAX_UBLKS - 1`: ids are minor numbers).
pub const MAX_DEVICE_ID: u32 = (1 << 20) - 1;

/// The largest request the driver takes: 32 MiB (`1 << UBLK_IO_BUF_BITS`).
pub const MAX_IO_BYTES: u32 = 1 << UBLK_IO_BUF_BITS;

/// The largest physical block size the block layer accepts.
const MAX_PHYSICAL_BLOCK: u32 = 256 << 20;

fn page() -> u32 {
    ublk_core::sys::page_size() as u32
}

/// A device id: at most [`MAX_DEVICE_ID`].
pub fn device_id(id: u64) -> Result<u32> {
    u32::try_from(id)
        .ok()
        .filter(|&id| id <= MAX_DEVICE_ID)
        .ok_or_else(|| {
            Error::invalid(
                "device id",
                format!("must be 0..={MAX_DEVICE_ID}, got {id}"),
            )
        })
}

/// Hardware queues: 1..=4096 (the driver then grants at most one per CPU).
pub fn queues(n: u64) -> Result<u16> {
    in_range("queue count", n, UBLK_MAX_NR_QUEUES.into())
}

/// Tags per queue: 1..=4096.
pub fn queue_depth(n: u64) -> Result<u16> {
    in_range("queue depth", n, UBLK_MAX_QUEUE_DEPTH.into())
}

fn in_range(what: &'static str, n: u64, max: u64) -> Result<u16> {
    if n == 0 || n > max {
        return Err(Error::invalid(what, format!("must be 1..={max}, got {n}")));
    }
    u16::try_from(n).map_err(|_| Error::invalid(what, format!("{n} is too large")))
}

/// The largest request: a whole number of pages, from one page to [`MAX_IO_BYTES`] (each
/// queue maps one buffer of it per tag, in whole pages).
pub fn max_io_bytes(bytes: u64) -> Result<u32> {
    let (page, max) = (u64::from(page()), u64::from(MAX_IO_BYTES));
    if bytes % page != 0 || !(page..=max).contains(&bytes) {
        return Err(Error::invalid(
            "max I/O size",
            format!(
                "must be a multiple of the page size ({page}) from {page} to {max}, got {bytes}"
            ),
        ));
    }
    Ok(bytes as u32)
}

/// The logical block size: a power of two from 512 to the page size.
pub fn logical_block_size(bytes: u32) -> Result<u32> {
    block_size("logical block size", bytes, 512, page())
}

/// The physical block size: a power of two from the logical block size to 256 MiB.
pub fn physical_block_size(bytes: u32, logical: u32) -> Result<u32> {
    block_size("physical block size", bytes, logical, MAX_PHYSICAL_BLOCK)
}

fn block_size(what: &'static str, bytes: u32, min: u32, max: u32) -> Result<u32> {
    if !bytes.is_power_of_two() || bytes < min || bytes > max {
        return Err(Error::invalid(
            what,
            format!("must be a power of two in {min}..={max} bytes, got {bytes}"),
        ));
    }
    Ok(bytes)
}

/// A device size: a non-zero multiple of the logical block size (which is at least 512, so
/// a whole number of the kernel's 512-byte sectors too). A zero block size is refused here,
/// not divided by.
pub fn device_size(bytes: u64, logical_block_size: u32) -> Result<u64> {
    let lbs = u64::from(logical_block_size);
    if bytes == 0 || bytes.checked_rem(lbs) != Some(0) || bytes % 512 != 0 {
        return Err(Error::invalid(
            "device size",
            format!(
                "must be a non-zero multiple of the logical block size ({lbs} bytes), got {bytes}"
            ),
        ));
    }
    Ok(bytes)
}

/// The recovery and quiesce flags of a device: REISSUE and FAIL_IO each need USER_RECOVERY and
/// exclude each other; QUIESCE needs USER_RECOVERY (a quiesced device waits for a new server).
pub fn recovery_flags(flags: Features) -> Result<()> {
    let recovery = flags & Features::ALL_RECOVERY;
    let valid = [
        Features::empty(),
        Features::USER_RECOVERY,
        Features::USER_RECOVERY | Features::USER_RECOVERY_REISSUE,
        Features::USER_RECOVERY | Features::USER_RECOVERY_FAIL_IO,
    ];
    if !valid.contains(&recovery) {
        return Err(Error::invalid(
            "recovery flags",
            format!(
                "{recovery} is not a valid combination (REISSUE and FAIL_IO each need USER_RECOVERY, and exclude each other)"
            ),
        ));
    }
    if flags.contains(Features::QUIESCE) && !flags.contains(Features::USER_RECOVERY) {
        return Err(Error::invalid(
            "flags",
            "QUIESCE needs recovery (a quiesced device waits for a new server)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn each_rule_accepts_its_range_and_names_what_it_refuses() {
        assert_eq!(device_id(0).unwrap(), 0);
        assert_eq!(device_id(1_048_575).unwrap(), 1_048_575);
        assert_eq!(
            reason(device_id(1 << 20)),
            "invalid device id: must be 0..=1048575, got 1048576"
        );
        assert!(reason(device_id(u64::MAX)).ends_with("got 18446744073709551615"));
        assert_eq!(queues(4096).unwrap(), 4096);
        assert_eq!(
            reason(queues(0)),
            "invalid queue count: must be 1..=4096, got 0"
        );
        assert_eq!(
            reason(queue_depth(70000)),
            "invalid queue depth: must be 1..=4096, got 70000"
        );
        let page = u64::from(page());
        assert_eq!(max_io_bytes(page).unwrap(), page as u32);
        assert_eq!(max_io_bytes(32 << 20).unwrap(), 32 << 20);
        for bad in [0, 512, page + 512, (32 << 20) + page, u64::MAX] {
            assert!(
                reason(max_io_bytes(bad)).starts_with("invalid max I/O size: must be a multiple"),
                "{bad}"
            );
        }
        assert_eq!(logical_block_size(512).unwrap(), 512);
        for bad in [0, 256, 768, 2 * page as u32] {
            assert!(
                reason(logical_block_size(bad))
                    .starts_with("invalid logical block size: must be a power of two"),
                "{bad}"
            );
        }
        assert!(physical_block_size(512, 4096).is_err());
        assert_eq!(physical_block_size(1 << 20, 4096).unwrap(), 1 << 20);
        assert_eq!(device_size(4096, 4096).unwrap(), 4096);
        for (bytes, lbs) in [(0, 512), (1000, 512), (6144, 4096), (1 << 20, 0)] {
            assert!(
                reason(device_size(bytes, lbs))
                    .starts_with("invalid device size: must be a non-zero multiple"),
                "{bytes} {lbs}"
            );
        }
    }

    #[test]
    fn recovery_flags_combine_as_the_driver_allows() {
        let r = Features::USER_RECOVERY;
        for ok in [
            Features::empty(),
            r,
            r | Features::USER_RECOVERY_REISSUE,
            r | Features::USER_RECOVERY_FAIL_IO | Features::QUIESCE,
        ] {
            recovery_flags(ok).unwrap();
        }
        assert!(
            reason(recovery_flags(Features::USER_RECOVERY_REISSUE))
                .starts_with("invalid recovery flags: USER_RECOVERY_REISSUE is not")
        );
        let both = r | Features::USER_RECOVERY_REISSUE | Features::USER_RECOVERY_FAIL_IO;
        assert!(reason(recovery_flags(both)).starts_with("invalid recovery flags"));
        assert_eq!(
            reason(recovery_flags(Features::QUIESCE)),
            "invalid flags: QUIESCE needs recovery (a quiesced device waits for a new server)"
        );
    }
}
