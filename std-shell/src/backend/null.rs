//! The null target: writes are acknowledged and dropped; reads touch nothing, or return
//! zeroes on the copy path.

use std::io;

use ublk_core::{DataPath, IoOp};

use super::{IoContext, Properties, QueueInfo, Reply, Request, Target, TargetQueue};

/// A device that stores nothing: writes succeed and vanish, FLUSH, DISCARD and WRITE_ZEROES
/// succeed. For measuring the I/O path and testing.
///
/// What a read returns depends on the data path, as with the kernel's `null_blk`: on the
/// user-copy and zero-copy paths nothing is copied at all, so a read leaves the reader's pages
/// as they were (like `null_blk` without `memory_backed`); on the copy path the driver copies a
/// buffer of ours, which is kept zeroed, so reads return zeroes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Null {
    size: u64,
}

impl Null {
    /// A null device of `size` bytes.
    pub fn new(size: u64) -> Null {
        Null { size }
    }
}

impl Target for Null {
    type Queue = NullQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<NullQueue> {
        Ok(NullQueue {
            dirty: vec![0; usize::from(queue.depth)],
        })
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(self.size),
            ..Properties::default()
        }
    }

    /// Off the copy path a request costs no data movement. User copy first: the driver then
    /// does strictly less per request than on zero copy, where it registers and unregisters
    /// the request's pages for operations a null target never makes (measured in the test
    /// VM, 4 KiB random reads at QD64: user copy about 1.1 times zero copy).
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::UserCopy, DataPath::ZeroCopy, DataPath::Copy]
    }

    fn wants_buffers(&self, _path: DataPath) -> bool {
        false
    }
}

/// A queue of a [`Null`] device.
#[derive(Debug)]
pub struct NullQueue {
    /// Bytes at the start of each tag's buffer a WRITE may have filled: a READ must zero
    /// them. Buffers start zeroed (fresh anonymous memory), so a read-only workload never
    /// pays for zeroing.
    dirty: Vec<usize>,
}

impl TargetQueue for NullQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        let tag = usize::from(req.tag);
        if tag >= self.dirty.len() {
            return Reply::error(ublk_core::Errno::EIO);
        }
        match req.op {
            // Nothing to copy where the driver copies nothing.
            IoOp::Read | IoOp::Write if io.data_path() != DataPath::Copy => {
                Reply::Done(req.full_result())
            }
            IoOp::Read => {
                let dirty = &mut self.dirty[tag];
                if *dirty > 0 {
                    if let Some(buf) = io.buffer(req.tag) {
                        let n = (*dirty).min(buf.len());
                        buf[..n].fill(0);
                    }
                    *dirty = 0;
                }
                Reply::Done(req.full_result())
            }
            IoOp::Write => {
                let dirty = &mut self.dirty[tag];
                *dirty = (*dirty).max(req.len as usize);
                Reply::Done(req.full_result())
            }
            IoOp::Flush | IoOp::Discard | IoOp::WriteZeroes => Reply::Done(0),
            _ => Reply::Done(-libc::EOPNOTSUPP),
        }
    }
}
