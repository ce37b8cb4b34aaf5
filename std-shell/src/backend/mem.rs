//! The memory target: a RAM disk on anonymous memory.

use std::io;

use ublk_core::sys::{Mapping, page_size};

use super::{Backend, DiscardLimits, Properties};
use crate::error::{Error, Result};

/// A RAM disk: the device's bytes live in one anonymous mapping of this process. Pages are
/// allocated as they are first written and given back by DISCARD and WRITE_ZEROES, so a
/// disk costs the memory its data uses (like the kernel's `brd`). Its contents go when the
/// process ends.
#[derive(Debug)]
pub struct Mem {
    // Only ever reached through raw pointers (never a Rust reference), so that two queue
    // threads may copy in and out of it at once.
    memory: Mapping,
}

impl Mem {
    /// A RAM disk of `size` bytes, a non-zero multiple of 512 and at most the machine's
    /// memory (a larger one could only end with the process killed for lack of memory).
    pub fn new(size: u64) -> Result<Mem> {
        if size == 0 || size % 512 != 0 {
            return Err(Error::invalid(
                "RAM disk size",
                format!("must be a non-zero multiple of 512 bytes, got {size}"),
            ));
        }
        if let Some(total) = memory_total()
            && size > total
        {
            return Err(Error::invalid(
                "RAM disk size",
                format!("{size} bytes is more than this machine's memory ({total} bytes)"),
            ));
        }
        let len = usize::try_from(size)
            .map_err(|_| Error::invalid("RAM disk size", format!("{size} bytes is too large")))?;
        let memory = Mapping::anonymous(len).map_err(|e| {
            Error::io(
                format!("mapping {size} bytes for the RAM disk"),
                io::Error::from_raw_os_error(e.0),
            )
        })?;
        Ok(Mem { memory })
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.memory.len() as u64
    }

    /// `offset..offset + len` as a range of the mapping, if it lies inside.
    fn range(&self, offset: u64, len: usize) -> io::Result<usize> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        match start.checked_add(len) {
            Some(end) if end <= self.memory.len() => Ok(start),
            _ => Err(out_of_range()),
        }
    }

    /// Zeroes `offset..offset + len`; with `release`, the whole pages inside go back to the
    /// kernel (they read as zeroes), and only the partial pages at the ends are written.
    fn zero(&self, offset: u64, len: u64, release: bool) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        let start = self.range(offset, len)?;
        let end = start + len;
        let page = page_size();
        let (first_page, last_page) = (start.next_multiple_of(page), end / page * page);
        let (fill, pages) = if release && first_page < last_page {
            ([start..first_page, last_page..end], first_page..last_page)
        } else {
            ([start..end, end..end], 0..0)
        };
        for r in fill.into_iter().filter(|r| !r.is_empty()) {
            // SAFETY: `r` lies inside the mapping (checked by `range`), which `self` keeps
            // mapped; no reference into the mapping exists (see the field's comment).
            unsafe { self.memory.as_ptr().add(r.start).write_bytes(0, r.len()) };
        }
        if !pages.is_empty() {
            // SAFETY: no Rust reference into the mapping exists (see the field's comment).
            unsafe { self.memory.release_pages(pages.start, pages.len()) }
                .map_err(|e| io::Error::from_raw_os_error(e.0))?;
        }
        Ok(())
    }
}

fn out_of_range() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

/// `MemTotal` from /proc/meminfo, in bytes; `None` if it cannot be read.
fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Backend for Mem {
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = self.range(offset, buf.len())?;
        // SAFETY: the source lies inside the mapping (checked by `range`), which `self` keeps
        // mapped; `buf` is the request's buffer, a different mapping, so they do not overlap.
        // Overlapping requests on two queues at once race on the same bytes, which the block
        // layer leaves unordered too: the result is one or the other.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.memory.as_ptr().add(start),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8], _fua: bool) -> io::Result<()> {
        let start = self.range(offset, data.len())?;
        // SAFETY: as in `read`, with source and destination swapped.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.memory.as_ptr().add(start),
                data.len(),
            )
        };
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        // Discarded blocks read as zeroes, like brd's.
        self.zero(offset, len, true)
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.zero(offset, len, may_unmap)
    }

    fn properties(&self) -> Properties {
        let size = self.size();
        Properties {
            size: Some(size),
            discard: Some(DiscardLimits {
                granularity: page_size() as u32,
                max_discard_bytes: size,
                max_write_zeroes_bytes: size,
            }),
            ..Properties::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn data_round_trips_and_starts_as_zeroes() {
        let mem = Mem::new(MIB).unwrap();
        let mut buf = vec![0xffu8; 8192];
        mem.read(4096, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        mem.write(MIB - 8192, &data, false).unwrap();
        mem.read(MIB - 8192, &mut buf).unwrap();
        assert_eq!(buf, data);
    }

    #[test]
    fn requests_past_the_end_are_refused_not_a_panic() {
        let mem = Mem::new(MIB).unwrap();
        let mut buf = vec![0u8; 1024];
        for offset in [MIB - 512, MIB, u64::MAX - 100] {
            let e = mem.read(offset, &mut buf).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "read at {offset}");
            assert!(mem.write(offset, &buf, false).is_err(), "write at {offset}");
        }
        assert!(mem.discard(MIB - 512, 1024).is_err());
        assert!(mem.write_zeroes(0, u64::MAX, true).is_err());
    }

    #[test]
    fn discard_and_write_zeroes_zero_exactly_their_range() {
        let mem = Mem::new(4 * MIB).unwrap();
        let ones = vec![1u8; (4 * MIB) as usize];
        for (offset, len, unmap) in [(512, 3 * 4096, true), (100_000, 70_000, false)] {
            mem.write(0, &ones, false).unwrap();
            if unmap {
                mem.discard(offset, len).unwrap();
            } else {
                mem.write_zeroes(offset, len, false).unwrap();
            }
            let mut all = vec![9u8; ones.len()];
            mem.read(0, &mut all).unwrap();
            for (i, &b) in all.iter().enumerate() {
                let inside = (offset..offset + len).contains(&(i as u64));
                assert_eq!(
                    b,
                    u8::from(!inside),
                    "byte {i} after zeroing {offset}+{len}"
                );
            }
        }
    }

    #[test]
    fn discard_gives_memory_back() {
        let size = 64 * MIB;
        let mem = Mem::new(size).unwrap();
        let before = resident_kib();
        mem.write(0, &vec![7u8; size as usize], false).unwrap();
        let filled = resident_kib();
        assert!(filled >= before + 40 * 1024, "{before} -> {filled} KiB");
        mem.discard(0, size).unwrap();
        let after = resident_kib();
        assert!(after + 40 * 1024 <= filled, "{filled} -> {after} KiB");
    }

    #[test]
    fn bad_sizes_are_refused_by_name() {
        for size in [0, 1000, u64::MAX / 512 * 512] {
            let msg = Mem::new(size).unwrap_err().to_string();
            assert!(msg.starts_with("invalid RAM disk size"), "{msg}");
        }
    }
}
