//! What serves a device's I/O: the [`Backend`] trait for the simple case, the [`Target`] trait
//! for targets that answer later.
//!
//! - [`Backend`]: a handful of synchronous methods (read, write, flush, discard,
//!   write-zeroes) on `&self`, called on the queue threads. Right for anything whose operations
//!   do not block for long (memory, a null sink, a computation).
//! - [`Target`]: one [`TargetQueue`] per queue, running on that queue's thread, that may answer
//!   a request at once or later, after its own io_uring operations on the queue's ring have
//!   completed (a file-backed target submits its reads and writes there), so the queue thread
//!   never blocks on them. Every `Backend` is served as a `Target` by [`Blocking`].
//!
//! Several devices, each with its own backend, can run in one process.

mod file;
mod mem;
// The NBD client's protocol and handshake, for the NBD target to come (issue #17): nothing
// uses them yet but their tests.
#[allow(dead_code)]
mod nbd;
mod null;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ublk_core::abi::uring::Sqe64;
use ublk_core::{Errno, IoOp, Queue, QueueError, RawFd};

pub use crate::device::DiscardLimits;
pub use file::{Loop, LoopOptions, LoopQueue};
pub use mem::Mem;
pub use null::{Null, NullQueue};
pub use ublk_core::abi::IoFlags;

/// What a backend knows of the device it serves: the builder uses these where it was not told
/// otherwise, and refuses settings the backend cannot serve. Sizes are in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// The most the backend can hold: the device size by default, and its upper bound.
    pub size: Option<u64>,
    /// The logical block size the backend prefers (e.g. the backing disk's).
    pub logical_block_size: Option<u32>,
    /// The smallest logical block size it can serve (e.g. the direct-I/O alignment of a
    /// backing file); a smaller one set on the builder is refused.
    pub min_logical_block_size: Option<u32>,
    /// The physical block size it prefers.
    pub physical_block_size: Option<u32>,
    /// It can only read (e.g. its file was opened read-only): the device must be read-only.
    pub read_only: bool,
    /// It is a rotating disk.
    pub rotational: Option<bool>,
    /// It has a volatile write cache, so FLUSH matters.
    pub volatile_cache: Option<bool>,
    /// It honours FUA writes.
    pub fua: Option<bool>,
    /// It takes DISCARD and WRITE_ZEROES within these limits.
    pub discard: Option<DiscardLimits>,
}

/// What a [`Target`] is told about a queue it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's id.
    pub id: u16,
    /// Its tags: requests are numbered `0..depth`.
    pub depth: u16,
    /// Bytes in each tag's buffer: the largest READ or WRITE, rounded up to a page.
    pub buffer_bytes: usize,
}

/// One request, decoded and checked. Offsets and lengths are in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The tag: the request's slot in its queue, and the key of its buffer.
    pub tag: u16,
    /// The operation.
    pub op: IoOp,
    /// Flags such as [`IoFlags::FUA`] (write through) and [`IoFlags::NOUNMAP`].
    pub flags: IoFlags,
    /// Byte offset on the device.
    pub offset: u64,
    /// Length in bytes. For READ and WRITE it fits in the tag's buffer (checked).
    pub len: u64,
}

impl Request {
    /// What a READ or WRITE done in full answers: its length in bytes.
    pub fn full_result(&self) -> i32 {
        // len ≤ the buffer size ≤ 32 MiB for these (checked when the request was decoded).
        i32::try_from(self.len).unwrap_or(i32::MAX)
    }
}

/// How a target answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer now: bytes done for READ/WRITE (0 for the others), or `-errno`.
    Done(i32),
    /// The target answers later, with [`IoContext::complete`].
    Later,
}

impl Reply {
    /// An error answer.
    pub fn error(errno: Errno) -> Reply {
        Reply::Done(-errno.0)
    }

    /// The answer for an `io::Result`: `ok` on success, the error's errno (EIO if it has
    /// none) on failure.
    pub fn from_result(result: io::Result<()>, ok: i32) -> Reply {
        match result {
            Ok(()) => Reply::Done(ok),
            Err(e) => Reply::Done(-e.raw_os_error().filter(|&n| n > 0).unwrap_or(libc::EIO)),
        }
    }
}

/// A synchronous backend: the simple way to serve a device. Methods are called on the queue
/// threads, concurrently when the device has several queues. Errors become the request's
/// errno (EIO for an error that has none).
pub trait Backend: Send + Sync + 'static {
    /// Fills `buf` with the `buf.len()` bytes at `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Stores `data` at `offset`. With `fua`, the data must be durable when this returns.
    fn write(&self, offset: u64, data: &[u8], fua: bool) -> io::Result<()>;

    /// Makes every completed write durable. The default does nothing (no volatile cache).
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    /// Forgets `len` bytes at `offset`. The default refuses (EOPNOTSUPP).
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    /// Zeroes `len` bytes at `offset`; `may_unmap` allows deallocating them. The default
    /// refuses (EOPNOTSUPP).
    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        let _ = (offset, len, may_unmap);
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    /// What the backend knows of the device (its size, block size, ...). The default knows
    /// nothing: the builder must then be given the size.
    fn properties(&self) -> Properties {
        Properties::default()
    }
}

/// A target: makes one [`TargetQueue`] per queue of the device.
pub trait Target: Send + Sync + 'static {
    /// The per-queue part, which lives on the queue's thread.
    type Queue: TargetQueue;

    /// Makes the part serving `queue`; called on that queue's thread before it fetches.
    fn open_queue(&self, queue: &QueueInfo) -> io::Result<Self::Queue>;

    /// Files every queue's ring registers after `/dev/ublkcN`, for the target's own
    /// operations: file `i` of this list is [`IoContext::file`]`(i)`. The default is none.
    fn files(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// What the target knows of the device (its size, block size, ...). The default knows
    /// nothing: the builder must then be given the size.
    fn properties(&self) -> Properties {
        Properties::default()
    }
}

/// A queue's part of a [`Target`]: called on the queue's thread, never concurrently.
pub trait TargetQueue {
    /// Serves `req`: answer with [`Reply::Done`], or with [`Reply::Later`] and then, once the
    /// work is done, [`IoContext::complete`]. The request's data (WRITE) is in, or goes to
    /// (READ), [`IoContext::buffer`]`(req.tag)` until it is answered.
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply;

    /// An operation this target queued with [`IoContext::push`] finished with `result`.
    /// The default ignores it.
    fn op_done(&mut self, tag: u16, cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        let _ = (tag, cookie, result, io);
    }
}

/// What a [`TargetQueue`] can do with its queue: reach a request's buffer, queue its own
/// io_uring operations, answer requests.
pub struct IoContext<'q, 't> {
    queue: &'q mut Queue<'t>,
    failure: &'q mut Option<QueueError>,
    errors: &'q AtomicU64,
}

impl<'q, 't> IoContext<'q, 't> {
    pub(crate) fn new(
        queue: &'q mut Queue<'t>,
        failure: &'q mut Option<QueueError>,
        errors: &'q AtomicU64,
    ) -> Self {
        IoContext {
            queue,
            failure,
            errors,
        }
    }

    /// The queue's id.
    pub fn queue_id(&self) -> u16 {
        self.queue.config().q_id
    }

    /// `tag`'s buffer while its request is unanswered (`None` otherwise). Its length is the
    /// device's largest I/O, rounded up to a page; the request's data is at the start.
    pub fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        self.queue.buffer(tag)
    }

    /// The address of `tag`'s buffer (page-aligned), for the target's own operations.
    pub fn buffer_ptr(&self, tag: u16) -> Option<*mut u8> {
        self.queue.buffer_ptr(tag)
    }

    /// Target file `index` (from [`Target::files`]) as a registered file of this ring.
    pub fn file(&self, index: u32) -> ublk_core::Target {
        self.queue.file(index.saturating_add(1))
    }

    /// Answers `tag`'s request with `result` (bytes done, or `-errno`). A failure stops the
    /// queue (it is reported when the device stops).
    pub fn complete(&mut self, tag: u16, result: i32) {
        if result < 0 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = self.queue.complete(tag, result) {
            self.failure.get_or_insert(e);
        }
    }

    /// Queues the target's own operation for `tag`, sent with the queue's next submission;
    /// its completion comes back to [`TargetQueue::op_done`] with `cookie`.
    ///
    /// # Safety
    /// Whatever `sqe` points at (usually [`IoContext::buffer_ptr`] of an unanswered request)
    /// must stay valid, and untouched by anything else, until `op_done` is called for it.
    pub unsafe fn push(&mut self, sqe: Sqe64, tag: u16, cookie: u32) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { self.queue.push_target(sqe, tag, cookie) }
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Serves a [`Backend`] as a [`Target`]: every request is answered on the spot.
#[derive(Debug)]
pub struct Blocking<B>(pub Arc<B>);

impl<B: Backend> Target for Blocking<B> {
    type Queue = BlockingQueue<B>;

    fn open_queue(&self, _queue: &QueueInfo) -> io::Result<Self::Queue> {
        Ok(BlockingQueue(Arc::clone(&self.0)))
    }

    fn properties(&self) -> Properties {
        self.0.properties()
    }
}

/// A queue's handle on a [`Blocking`] backend.
#[derive(Debug)]
pub struct BlockingQueue<B>(Arc<B>);

impl<B: Backend> TargetQueue for BlockingQueue<B> {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        let b = &*self.0;
        match req.op {
            IoOp::Read | IoOp::Write => {
                let Some(buf) = io.buffer(req.tag) else {
                    return Reply::error(Errno::EIO);
                };
                // len ≤ buffer length: checked when the request was decoded.
                let buf = &mut buf[..req.len as usize];
                let result = if req.op == IoOp::Read {
                    b.read(req.offset, buf)
                } else {
                    b.write(req.offset, buf, req.flags.contains(IoFlags::FUA))
                };
                Reply::from_result(result, req.full_result())
            }
            IoOp::Flush => Reply::from_result(b.flush(), 0),
            IoOp::Discard => Reply::from_result(b.discard(req.offset, req.len), 0),
            IoOp::WriteZeroes => Reply::from_result(
                b.write_zeroes(req.offset, req.len, !req.flags.contains(IoFlags::NOUNMAP)),
                0,
            ),
            _ => Reply::error(Errno(libc::EOPNOTSUPP)),
        }
    }
}
