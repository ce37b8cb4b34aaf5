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
//! # Data paths
//! A device moves request data one of three ways ([`DataPath`], chosen when it is built):
//!
//! - **copy**: each tag has a buffer in the server; the driver copies a WRITE's data into it
//!   before the request arrives and a READ's data out of it after the answer
//!   ([`IoContext::buffer`]). Every kernel, every target.
//! - **user copy** (`USER_COPY`, Linux 6.5): the driver copies nothing; the target copies
//!   between the request and its own memory with [`IoContext::copy_to_request`] and
//!   [`IoContext::copy_from_request`] (`pwrite`/`pread` of `/dev/ublkcN`), so a target whose
//!   data already sits in memory (a RAM disk) copies once, and one that needs none (null)
//!   copies nothing.
//! - **zero copy** (`AUTO_BUF_REG`, Linux 6.16): the driver registers the request's pages in
//!   the queue's ring; the target's own operations read a file straight into them or write
//!   them straight out ([`IoContext::read_into_request`], [`IoContext::write_from_request`]),
//!   and no byte passes through the server. User copy works here too.
//!
//! A target says which it serves, best first ([`Target::data_paths`]); the builder takes the
//! first the running kernel has, unless told otherwise. A [`Backend`] works on every path:
//! it reads and writes a buffer of ours, which the library fills from the request (copy:
//! the driver's copy; user copy and zero copy: a `pread`/`pwrite` of `/dev/ublkcN`, one
//! syscall more per request), so it prefers the copy path; zero copy gains it nothing.
//!
//! Several devices, each with its own backend, can run in one process.

mod builtin;
mod file;
mod file_ops;
mod mem;
mod nbd;
mod null;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ublk_core::abi::uring::Sqe64;
use ublk_core::{DataPath, Errno, IoOp, Queue, QueueError, RawFd, RequestIo, RequestSocketIo};

pub use builtin::{Builtin, BuiltinQueue};
pub use file::{Loop, LoopOptions, LoopQueue};
pub use mem::{Mem, MemQueue};
pub use nbd::{Nbd, NbdAddress, NbdOptions, NbdQueue, NbdStatus, NbdStatusHandle};
pub use null::{Null, NullQueue};
pub use ublk_core::abi::IoFlags;

/// DISCARD and WRITE_ZEROES limits. Sizes are in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscardLimits {
    /// Discards are in units of this many bytes (a multiple of the logical block size).
    pub granularity: u32,
    /// Largest DISCARD in bytes (0: no DISCARD).
    pub max_discard_bytes: u64,
    /// Largest WRITE_ZEROES in bytes (0: the kernel writes zeroes with plain writes).
    pub max_write_zeroes_bytes: u64,
}

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
    /// The alignment, in bytes (a power of two up to a page), it needs of the memory of
    /// requests it hands to the kernel as they are: a backing file's direct-I/O memory
    /// alignment on the zero-copy path. The block layer then bounces or refuses I/O from
    /// buffers less aligned.
    pub dma_alignment: Option<u32>,
    /// The largest READ or WRITE it takes, in bytes (e.g. an NBD server's maximum block
    /// size): the device's largest I/O is at most this, rounded down to a page.
    pub max_io_bytes: Option<u32>,
}

/// What a [`Target`] is told about a queue it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's id.
    pub id: u16,
    /// Its tags: requests are numbered `0..depth`.
    pub depth: u16,
    /// Bytes in each tag's buffer: the largest READ or WRITE, rounded up to a page; 0 if the
    /// queue has none (see [`Target::wants_buffers`]).
    pub buffer_bytes: usize,
    /// How request data moves on this device.
    pub data_path: DataPath,
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
        Err(Errno::EOPNOTSUPP.into())
    }

    /// Zeroes `len` bytes at `offset`; `may_unmap` allows deallocating them. The default
    /// refuses (EOPNOTSUPP).
    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        let _ = (offset, len, may_unmap);
        Err(Errno::EOPNOTSUPP.into())
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

    /// The data paths this target serves, best first: the builder takes the first the running
    /// kernel has, and refuses by name one asked for that is not in the list. The default is
    /// the copy path alone, where [`IoContext::buffer`] holds the data; a target that reaches
    /// the data otherwise lists the paths it handles.
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::Copy]
    }

    /// Whether the queues need a buffer per tag (of the largest I/O) on `path`, besides the
    /// copy path, which always has them: e.g. to stage data between a file and the request
    /// on the user-copy path. The default is yes.
    fn wants_buffers(&self, path: DataPath) -> bool {
        let _ = path;
        true
    }
}

/// A queue's part of a [`Target`]: called on the queue's thread, never concurrently.
pub trait TargetQueue {
    /// Serves `req`: answer with [`Reply::Done`], or with [`Reply::Later`] and then, once the
    /// work is done, [`IoContext::complete`]. On the copy path the request's data (WRITE) is
    /// in, or goes to (READ), [`IoContext::buffer`]`(req.tag)` until it is answered; on the
    /// others see the [module docs](self). A request answered later must not wait on
    /// something that may never come once [`IoContext::device_stopping`] says so: stopping
    /// the device waits for it.
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
    stopping: &'q AtomicBool,
}

impl<'q, 't> IoContext<'q, 't> {
    pub(crate) fn new(
        queue: &'q mut Queue<'t>,
        failure: &'q mut Option<QueueError>,
        errors: &'q AtomicU64,
        stopping: &'q AtomicBool,
    ) -> Self {
        IoContext {
            queue,
            failure,
            errors,
            stopping,
        }
    }

    /// The device is being stopped: STOP_DEV is on its way, and it waits until every request
    /// in flight is answered. A target that holds requests until something comes back (a
    /// connection) should answer them now, with an error if it must.
    pub fn device_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The queue's id.
    pub fn queue_id(&self) -> u16 {
        self.queue.config().q_id
    }

    /// How request data moves on this device.
    pub fn data_path(&self) -> DataPath {
        self.queue.config().data_path
    }

    /// `tag`'s buffer while its request is unanswered (`None` otherwise, or if the queue has
    /// no buffers). Its length is the device's largest I/O, rounded up to a page. On the copy
    /// path the request's data is at the start; on the others it is the target's own memory.
    pub fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        self.queue.buffer(tag)
    }

    /// The address of `tag`'s buffer (page-aligned), for the target's own operations.
    pub fn buffer_ptr(&self, tag: u16) -> Option<*mut u8> {
        self.queue.buffer_ptr(tag)
    }

    /// Zero copy: reads `io.file` straight into the pages of `tag`'s request, as an operation
    /// on the queue's ring that comes back to [`TargetQueue::op_done`] with `cookie`. No byte
    /// passes through this process. Fails unless the device is on the zero-copy path and
    /// `tag`'s request is unanswered.
    pub fn read_into_request(&mut self, tag: u16, io: RequestIo, cookie: u32) -> io::Result<()> {
        self.queue
            .read_into_request(tag, io, cookie)
            .map_err(io::Error::from)
    }

    /// Zero copy: writes the pages of `tag`'s request straight to `io.file`; see
    /// [`IoContext::read_into_request`].
    pub fn write_from_request(&mut self, tag: u16, io: RequestIo, cookie: u32) -> io::Result<()> {
        self.queue
            .write_from_request(tag, io, cookie)
            .map_err(io::Error::from)
    }

    /// Zero copy: sends the pages of `tag`'s request on `io.socket` (a WRITE's payload), as
    /// an operation on the queue's ring that comes back to [`TargetQueue::op_done`] with
    /// `cookie`. With `io.link` the next operation pushed starts only after this one
    /// succeeded (reserve room for the whole chain first: [`IoContext::reserve`]).
    pub fn send_from_request(
        &mut self,
        tag: u16,
        io: RequestSocketIo,
        cookie: u32,
    ) -> io::Result<()> {
        self.queue
            .send_from_request(tag, io, cookie)
            .map_err(io::Error::from)
    }

    /// Zero copy: receives from `io.socket` straight into the pages of `tag`'s request (a
    /// READ's reply); see [`IoContext::send_from_request`].
    pub fn recv_into_request(
        &mut self,
        tag: u16,
        io: RequestSocketIo,
        cookie: u32,
    ) -> io::Result<()> {
        self.queue
            .recv_into_request(tag, io, cookie)
            .map_err(io::Error::from)
    }

    /// Makes room for `entries` operations in one submission, so that a chain of linked
    /// operations reaches the kernel whole (a link cannot span two submissions). One more
    /// per zero-copy operation whose request may need its pages registered by hand.
    pub fn reserve(&mut self, entries: u32) -> io::Result<()> {
        self.queue.reserve(entries).map_err(io::Error::from)
    }

    /// User copy (also on the zero-copy path): copies `data` into `tag`'s request from byte
    /// `offset` on, all of it or an error (EIO past the request's end).
    pub fn copy_to_request(&self, tag: u16, offset: u32, data: &[u8]) -> io::Result<()> {
        whole(self.queue.copy_to_request(tag, offset, data), data.len())
    }

    /// User copy: fills `buf` from `tag`'s request, from byte `offset` on; see
    /// [`IoContext::copy_to_request`].
    pub fn copy_from_request(&self, tag: u16, offset: u32, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        whole(self.queue.copy_from_request(tag, offset, buf), len)
    }

    /// User copy: the first `len` bytes of `tag`'s own [`buffer`](IoContext::buffer) into its
    /// request.
    pub fn copy_buffer_to_request(&self, tag: u16, len: usize) -> io::Result<()> {
        whole(self.queue.copy_buffer_to_request(tag, len), len)
    }

    /// User copy: the first `len` bytes of `tag`'s request into its own
    /// [`buffer`](IoContext::buffer).
    pub fn copy_request_to_buffer(&self, tag: u16, len: usize) -> io::Result<()> {
        whole(self.queue.copy_request_to_buffer(tag, len), len)
    }

    /// User copy from memory no Rust reference may cover (a mapping several queues use at
    /// once): `len` bytes at `src` into `tag`'s request at `offset`.
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call, and no `&mut` reference
    /// into that memory may be alive.
    pub unsafe fn copy_to_request_raw(
        &self,
        tag: u16,
        offset: u32,
        src: *const u8,
        len: usize,
    ) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        whole(
            unsafe { self.queue.copy_to_request_raw(tag, offset, src, len) },
            len,
        )
    }

    /// User copy into memory no Rust reference may cover: `len` bytes of `tag`'s request from
    /// `offset` to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes during the call, and no Rust reference
    /// into that memory may be alive.
    pub unsafe fn copy_from_request_raw(
        &self,
        tag: u16,
        offset: u32,
        dst: *mut u8,
        len: usize,
    ) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        whole(
            unsafe { self.queue.copy_from_request_raw(tag, offset, dst, len) },
            len,
        )
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
        unsafe { self.queue.push_target(sqe, tag, cookie) }.map_err(io::Error::from)
    }
}

/// A user copy that must move `want` bytes: a short one is EIO (the request is shorter).
fn whole(copied: Result<usize, Errno>, want: usize) -> io::Result<()> {
    match copied {
        Ok(n) if n == want => Ok(()),
        Ok(_) => Err(io::Error::from(Errno::EIO)),
        Err(errno) => Err(std::io::Error::from(errno)),
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

    /// Every path; copy first, which costs a backend the least (see the module docs).
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::Copy, DataPath::UserCopy, DataPath::ZeroCopy]
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
                // len ≤ buffer length: checked when the request was decoded.
                let len = req.len as usize;
                // Off the copy path the data crosses between the request and our buffer here.
                let staged = io.data_path() != DataPath::Copy;
                if staged && req.op == IoOp::Write {
                    if let Err(e) = io.copy_request_to_buffer(req.tag, len) {
                        return Reply::from_result(Err(e), 0);
                    }
                }
                let Some(buf) = io.buffer(req.tag) else {
                    return Reply::error(Errno::EIO);
                };
                let buf = &mut buf[..len];
                let mut result = if req.op == IoOp::Read {
                    b.read(req.offset, buf)
                } else {
                    b.write(req.offset, buf, req.flags.contains(IoFlags::FUA))
                };
                if staged && req.op == IoOp::Read && result.is_ok() {
                    result = io.copy_buffer_to_request(req.tag, len);
                }
                Reply::from_result(result, req.full_result())
            }
            IoOp::Flush => Reply::from_result(b.flush(), 0),
            IoOp::Discard => Reply::from_result(b.discard(req.offset, req.len), 0),
            IoOp::WriteZeroes => Reply::from_result(
                b.write_zeroes(req.offset, req.len, !req.flags.contains(IoFlags::NOUNMAP)),
                0,
            ),
            _ => Reply::error(Errno::EOPNOTSUPP),
        }
    }
}
