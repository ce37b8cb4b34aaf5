//! The null target: writes are acknowledged and dropped, reads return zeroes.

use std::io;

use ublk_core::IoOp;

use super::{IoContext, Properties, QueueInfo, Reply, Request, Target, TargetQueue};

/// A device that stores nothing: writes succeed and vanish, reads return zeroes, FLUSH,
/// DISCARD and WRITE_ZEROES succeed. For measuring the I/O path and testing.
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
