//! The memory target: a RAM disk in a memfd, whose data the kernel copies once, as `brd` does.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use ublk_core::sys::{Mapping, page_size};
use ublk_core::{DataPath, Errno, IoOp};

use super::file_ops::FileOps;
use super::{DiscardLimits, IoContext, Properties, QueueInfo, Reply, Request, Target, TargetQueue};
use crate::error::{Error, Result};
use crate::os;

/// A RAM disk: the device's bytes live in a memfd of this process (shared memory, as tmpfs
/// keeps it). Pages are allocated as they are first written and given back by DISCARD and
/// WRITE_ZEROES, so a disk costs the memory its data uses (like the kernel's `brd`). Its
/// contents go when the process ends.
///
/// Every byte is copied once, by the kernel, on the two paths that copy nothing themselves:
/// - zero copy (preferred): `READ_FIXED`/`WRITE_FIXED` of the memfd on the queue's ring,
///   straight from or into the request's pages. io_uring cannot do a memfd's I/O without
///   blocking, so each request takes a trip through one of its worker threads: a wake-up
///   more, but the copy then runs beside the queue thread instead of in it, which serves
///   large requests fastest (about twice user copy's 128 KiB reads in the test VM);
/// - user copy: `pwrite`/`pread` of `/dev/ublkcN` straight from or into the memfd's
///   mapping, in the queue thread;
/// - copy: `pread`/`pwrite` of the memfd into the tag's buffer, which the driver copies to
///   the request: the one path with two copies.
///
/// No byte is copied by Rust code, so two queues serving the same bytes at once cannot race
/// in Rust's memory model: the kernel orders the copies as it does for any shared file.
#[derive(Debug)]
pub struct Mem {
    store: Arc<Store>,
}

/// The RAM disk's memory, shared by its queues.
#[derive(Debug)]
struct Store {
    memfd: File,
    /// The memfd, mapped shared: the source and destination of user copies. Only ever reached
    /// through raw pointers handed to the kernel, never a Rust reference, since several queue
    /// threads copy into and out of it at once.
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
        let memfd = os::memfd(c"ublk-mem")
            .and_then(|f| f.set_len(size).map(|()| f))
            .map_err(|e| Error::io(format!("creating a {size}-byte memfd for the RAM disk"), e))?;
        let memory = Mapping::file_shared(memfd.as_raw_fd(), len).map_err(|e| {
            Error::io(
                format!("mapping the RAM disk's {size} bytes"),
                io::Error::from(e),
            )
        })?;
        Ok(Mem {
            store: Arc::new(Store { memfd, memory }),
        })
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.store.memory.len() as u64
    }

    /// Reads `buf.len()` bytes at `offset`, as a READ would.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.store.range(offset, buf.len())?;
        self.store.memfd.read_exact_at(buf, offset)
    }

    /// Writes `data` at `offset`, as a WRITE would.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.store.range(offset, data.len())?;
        self.store.memfd.write_all_at(data, offset)
    }

    /// Forgets `len` bytes at `offset`, as DISCARD and WRITE_ZEROES do: they read as zeroes,
    /// and their whole pages go back to the kernel.
    pub fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.store.zero(offset, len)
    }
}

impl Store {
    /// Checks that `offset..offset + len` lies on the disk; returns `offset` as an index.
    fn range(&self, offset: u64, len: usize) -> io::Result<usize> {
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        match start.checked_add(len) {
            Some(end) if end <= self.memory.len() => Ok(start),
            _ => Err(out_of_range()),
        }
    }

    /// Zeroes `offset..offset + len` by punching a hole: the memfd zeroes the partial pages
    /// at the ends and frees the whole ones.
    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        let n = usize::try_from(len).map_err(|_| out_of_range())?;
        self.range(offset, n)?;
        os::punch_hole(&self.memfd, offset, len)
    }
}

fn out_of_range() -> io::Error {
    io::Error::from(Errno::EIO)
}

/// `MemTotal` from /proc/meminfo, in bytes; `None` if it cannot be read.
fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Target for Mem {
    type Queue = MemQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<MemQueue> {
        Ok(MemQueue {
            store: Arc::clone(&self.store),
            memfd_ops: FileOps::new(queue.depth, 0),
        })
    }

    /// The memfd, for the zero-copy path's fixed-buffer reads and writes.
    fn files(&self) -> Vec<RawFd> {
        vec![self.store.memfd.as_raw_fd()]
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

    /// Zero copy first, then user copy: one copy each (see [`Mem`]).
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::ZeroCopy, DataPath::UserCopy, DataPath::Copy]
    }

    fn wants_buffers(&self, _path: DataPath) -> bool {
        false
    }
}

/// A queue of a [`Mem`] device.
#[derive(Debug)]
pub struct MemQueue {
    store: Arc<Store>,
    /// The zero-copy path: READ and WRITE as fixed-buffer I/O on the memfd.
    memfd_ops: FileOps,
}

impl MemQueue {
    /// A READ or WRITE, copied by the kernel in this thread (the copy and user-copy paths).
    fn transfer(&self, req: &Request, io: &mut IoContext<'_, '_>) -> io::Result<()> {
        let len = req.len as usize;
        let start = self.store.range(req.offset, len)?;
        let memory = self.store.memory.as_ptr().wrapping_add(start);
        match (io.data_path(), req.op) {
            (DataPath::Copy, op) => {
                let buf = io.buffer(req.tag).ok_or_else(out_of_range)?;
                let buf = &mut buf[..len];
                if op == IoOp::Read {
                    self.store.memfd.read_exact_at(buf, req.offset)
                } else {
                    self.store.memfd.write_all_at(buf, req.offset)
                }
            }
            // SAFETY: `memory..memory + len` lies inside the mapping (`range`), which the
            // `Arc<Store>` keeps mapped; it is only ever reached through raw pointers like
            // this one, so no Rust reference into it exists (see `Store::memory`).
            (_, IoOp::Read) => unsafe { io.copy_to_request_raw(req.tag, 0, memory, len) },
            // SAFETY: as above; the kernel writes the request's data into the mapping.
            (_, _) => unsafe { io.copy_from_request_raw(req.tag, 0, memory, len) },
        }
    }
}

impl TargetQueue for MemQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        match req.op {
            IoOp::Read | IoOp::Write if io.data_path() == DataPath::ZeroCopy => {
                if self.store.range(req.offset, req.len as usize).is_err() {
                    return Reply::error(Errno::EIO);
                }
                self.memfd_ops.serve(req, io)
            }
            IoOp::Read | IoOp::Write => {
                Reply::from_result(self.transfer(req, io), req.full_result())
            }
            IoOp::Flush => Reply::Done(0),
            // WRITE_ZEROES with NOUNMAP asks to keep the range allocated; a RAM disk has no
            // reason to, and a hole reads as zeroes just the same.
            IoOp::Discard | IoOp::WriteZeroes => {
                Reply::from_result(self.store.zero(req.offset, req.len), 0)
            }
            _ => Reply::error(Errno::EOPNOTSUPP),
        }
    }

    fn op_done(&mut self, tag: u16, _cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        self.memfd_ops.op_done(tag, result, io);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn resident_shmem_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssShmem:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn data_round_trips_and_starts_as_zeroes() {
        let mem = Mem::new(MIB).unwrap();
        let mut buf = vec![0xffu8; 8192];
        mem.read_at(4096, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        mem.write_at(MIB - 8192, &data).unwrap();
        mem.read_at(MIB - 8192, &mut buf).unwrap();
        assert_eq!(buf, data);
    }

    #[test]
    fn requests_past_the_end_are_refused_not_a_panic() {
        let mem = Mem::new(MIB).unwrap();
        let mut buf = vec![0u8; 1024];
        for offset in [MIB - 512, MIB, u64::MAX - 100] {
            let e = mem.read_at(offset, &mut buf).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "read at {offset}");
            assert!(mem.write_at(offset, &buf).is_err(), "write at {offset}");
        }
        assert!(mem.discard(MIB - 512, 1024).is_err());
        assert!(mem.discard(0, u64::MAX).is_err());
    }

    #[test]
    fn discard_zeroes_exactly_its_range() {
        let mem = Mem::new(4 * MIB).unwrap();
        let ones = vec![1u8; (4 * MIB) as usize];
        for (offset, len) in [(512, 3 * 4096), (100_000, 70_000)] {
            mem.write_at(0, &ones).unwrap();
            mem.discard(offset, len).unwrap();
            let mut all = vec![9u8; ones.len()];
            mem.read_at(0, &mut all).unwrap();
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
        let before = resident_shmem_kib();
        // Through the mapping, as user copy fills it: the pages count as this process's.
        mem.write_at(0, &vec![7u8; size as usize]).unwrap();
        // SAFETY: reading one byte of each page through the mapping, which is inside it; no
        // other thread uses this test's disk.
        let touched: u64 = (0..size as usize)
            .step_by(4096)
            .map(|i| u64::from(unsafe { mem.store.memory.as_ptr().add(i).read_volatile() }))
            .sum();
        assert_eq!(touched, 7 * size / 4096);
        let filled = resident_shmem_kib();
        assert!(filled >= before + 40 * 1024, "{before} -> {filled} KiB");
        mem.discard(0, size).unwrap();
        let after = resident_shmem_kib();
        assert!(after + 40 * 1024 <= filled, "{filled} -> {after} KiB");
    }

    #[test]
    fn bad_sizes_are_refused_by_name() {
        for size in [0, 1000, u64::MAX / 512 * 512] {
            let msg = Mem::new(size).unwrap_err().to_string();
            assert!(msg.starts_with("invalid RAM disk size"), "{msg}");
        }
    }

    #[test]
    fn every_path_is_served_and_only_copy_has_buffers() {
        let mem = Mem::new(MIB).unwrap();
        assert_eq!(mem.data_paths()[0], DataPath::ZeroCopy);
        assert_eq!(mem.data_paths().len(), 3);
        assert!(DataPath::ALL.iter().all(|&p| !mem.wants_buffers(p)));
        assert_eq!(mem.files(), vec![mem.store.memfd.as_raw_fd()]);
    }
}
