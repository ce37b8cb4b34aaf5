//! One ublk queue: its descriptor array, its I/O buffers, its tags and its ring.
//!
//! A [`Queue`] lives on one thread (the driver wants every command of a queue from the task
//! that fetched it). The thread's loop is:
//!
//! 1. [`Queue::fetch_all`] once: a FETCH_REQ per tag, each with that tag's buffer;
//! 2. [`Queue::wait`]: one `io_uring_enter` submits everything queued (commits, a target's own
//!    operations) and sleeps until something completes;
//! 3. [`Queue::next_event`] until `None`: a [`Event::Request`] is served and answered with
//!    [`Queue::complete`], now or after a later event; [`Event::Aborted`] means the device is
//!    going away;
//! 4. back to 2 until [`Queue::is_finished`] or an [`Event::Wake`].
//!
//! Where a request's data is depends on the device's [`DataPath`]: in [`Queue::buffer`] (copy),
//! reached with [`Queue::copy_to_request`] and its kin (user copy), or in the ring's buffer
//! table at slot `tag`, for [`Queue::read_into_request`] and [`Queue::write_from_request`]
//! (zero copy; see `request_data.rs`).
//!
//! Nothing here allocates or locks: buffers come from one anonymous mapping made at setup, the
//! tag states from caller-provided [`TagSlot`]s.

mod data_path;
mod request_data;
mod tag_bits;
mod user_data;

use core::fmt;
use core::mem::ManuallyDrop;
use core::time::Duration;

use crate::abi::io::{UBLK_AUTO_BUF_REG_FALLBACK, UblkAutoBufReg};
use crate::abi::io::{UBLK_IO_RES_ABORT, UBLK_IO_RES_NEED_GET_DATA, UBLK_IO_RES_OK};
use crate::abi::io::{desc_area_stride, desc_mmap_offset};
use crate::abi::uring::{Cqe16, Sqe64};
use crate::abi::{IoCmd, IoFlags, OpEncoding, UblksrvIoCmd, UblksrvIoDesc};
use crate::errno::Errno;
use crate::ring::{RingConfig, RingError, Target};
use crate::sys::{Mapping, RawFd, page_size};
use crate::tag::{InvalidTransition, TagEvent, TagSlot, TagState, TagTable};
use crate::{QueueRing, abi};
pub use data_path::DataPath;
pub use request_data::{RequestIo, RequestSocketIo};
use tag_bits::TagBits;
use user_data::UserData;

/// The buffer-table slot a request's pages are registered at (zero copy): its tag.
fn buffer_slot(tag: u16) -> u16 {
    tag
}

/// How to set a queue up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's id (`0..nr_hw_queues`).
    pub q_id: u16,
    /// Tags, as the device was added with (`queue_depth`).
    pub depth: u16,
    /// Bytes of I/O buffer per tag: the device's `max_io_buf_bytes`. Rounded up to a page, so
    /// every buffer is page-aligned (what O_DIRECT wants).
    pub buf_bytes: u32,
    /// How request data moves: the device's path (its flags at ADD_DEV).
    pub data_path: DataPath,
    /// Map a buffer per tag even where the data path gives the kernel none (user copy and
    /// zero copy), for a target that needs the data in its own memory. The copy path always
    /// has them.
    pub buffers: bool,
    /// For tests of the zero-copy fallback: ask the driver to register each request's pages at
    /// a slot outside the buffer table, so that every request with data comes flagged
    /// `NEED_REG_BUF` and has its buffer registered by hand.
    pub force_buffer_fallback: bool,
    /// How the driver wants I/O opcodes ([`Control::encoding`](crate::Control::encoding)).
    pub encoding: OpEncoding,
    /// The device was added with `UBLK_F_NEED_GET_DATA`: a write's data is fetched with an
    /// extra NEED_GET_DATA command before the request is delivered.
    pub need_get_data: bool,
    /// Submission entries; 0 picks room for two operations per tag plus the stop signal.
    pub sq_entries: u32,
    /// Extra `IORING_SETUP_*` flags for the queue's ring, from
    /// [`RingConfig::ALLOWED_FLAGS`](crate::RingConfig::ALLOWED_FLAGS); others fail
    /// [`Queue::new`] with [`RingError::UnsupportedFlags`].
    pub ring_flags: u32,
}

impl QueueConfig {
    /// A configuration for the copy path, with automatic ring size and no extra ring flags.
    pub const fn new(q_id: u16, depth: u16, buf_bytes: u32, encoding: OpEncoding) -> Self {
        QueueConfig {
            q_id,
            depth,
            buf_bytes,
            data_path: DataPath::Copy,
            buffers: true,
            force_buffer_fallback: false,
            encoding,
            need_get_data: false,
            sq_entries: 0,
            ring_flags: 0,
        }
    }
}

/// Why a queue failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The configuration cannot work; the text says why.
    Config(&'static str),
    /// Setting up, registering with or entering the ring failed.
    Ring(RingError),
    /// Mapping `what` failed.
    Map {
        /// Which mapping.
        what: &'static str,
        /// Why.
        errno: Errno,
    },
    /// The server tried a tag transition its state does not allow (a server bug).
    Transition(InvalidTransition),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Config(why) => write!(f, "bad queue configuration: {why}"),
            QueueError::Ring(e) => write!(f, "queue ring: {e}"),
            QueueError::Map { what, errno } => write!(f, "mapping the {what}: {errno}"),
            QueueError::Transition(e) => write!(f, "{e}"),
        }
    }
}

impl QueueError {
    /// The kernel's errno, for the failures the kernel reported with one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            QueueError::Ring(e) => e.errno(),
            QueueError::Map { errno, .. } => Some(*errno),
            QueueError::Config(_) | QueueError::Transition(_) => None,
        }
    }
}

impl core::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            QueueError::Ring(e) => Some(e),
            QueueError::Map { errno, .. } => Some(errno),
            QueueError::Transition(e) => Some(e),
            QueueError::Config(_) => None,
        }
    }
}

impl From<RingError> for QueueError {
    fn from(e: RingError) -> Self {
        QueueError::Ring(e)
    }
}

/// Something that happened on a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A request for `tag`: serve it and answer with [`Queue::complete`]. Its data is where
    /// the queue's [`DataPath`] puts it (see the [module docs](self)).
    Request {
        /// The tag: the request's slot, its buffer's and, on the zero-copy path, its
        /// buffer-table slot.
        tag: u16,
        /// The request, copied out of the descriptor array.
        desc: UblksrvIoDesc,
    },
    /// An operation a target queued with [`Queue::push_target`] finished.
    TargetDone {
        /// The tag it was queued for.
        tag: u16,
        /// The target's cookie.
        cookie: u32,
        /// The operation's result (`-errno` on failure).
        result: i32,
        /// The CQE's flags.
        flags: u32,
    },
    /// The driver ended `tag` with `UBLK_IO_RES_ABORT`: the device is stopping or going away.
    Aborted {
        /// The tag.
        tag: u16,
    },
    /// The driver refused a command of `tag`; the tag is ended like an abort.
    Refused {
        /// The tag.
        tag: u16,
        /// Which command.
        cmd: IoCmd,
        /// The driver's answer.
        errno: Errno,
    },
    /// The stop signal armed with [`Queue::arm_wake`] fired.
    Wake,
    /// A completion this queue cannot place (an unknown `user_data`, or a tag in the wrong
    /// state); it is counted and otherwise ignored.
    Unexpected {
        /// The CQE's `user_data`.
        user_data: u64,
        /// Its result.
        result: i32,
    },
}

/// The I/O side of one ublk queue. See the [module docs](self) for the loop that drives it.
pub struct Queue<'t> {
    ring: QueueRing,
    tags: TagTable<'t>,
    /// The driver's descriptor array for this queue, read-only.
    descs: Mapping,
    /// `depth` buffers of `buf_stride` bytes, if the path or the target wants them. Unmapped on
    /// drop only when no operation that may write them is outstanding (see `Drop`).
    bufs: ManuallyDrop<Option<Mapping>>,
    buf_stride: usize,
    /// `/dev/ublkcN` (files[0]), for user copy; the caller keeps it open.
    char_dev: RawFd,
    cfg: QueueConfig,
    /// Tags aborted or refused: the queue is finished when all are.
    ended: u16,
    /// Target operations pushed and not yet completed.
    target_in_flight: u64,
    unexpected: u64,
    /// Zero copy: requests the driver could not register automatically (`NEED_REG_BUF`),
    /// whose buffer is registered by hand before the target's first operation on it.
    needs_registration: TagBits,
    /// Zero copy: requests whose buffer was registered by hand, to unregister before commit.
    registered_by_hand: TagBits,
    buffer_fallbacks: u64,
    buffer_errors: u64,
}

// SAFETY: the queue's raw memory (descriptor and buffer mappings) is owned and freed by it and
// is not bound to a thread. The driver, though, wants every command of a queue from the task
// that issued FETCH_REQ: moving a queue after `fetch_all` makes its commits fail with EINVAL
// (reported as `Event::Refused`), which is an error, not unsoundness.
unsafe impl Send for Queue<'_> {}

impl<'t> Queue<'t> {
    /// Sets up queue `cfg.q_id` of the device whose `/dev/ublkcN` is `files[0]`: maps its
    /// descriptor array, maps `depth` I/O buffers, creates its ring and registers `files` there
    /// (fixed file 0 is the char device; a target's files follow, see [`Queue::file`]).
    /// `tags` must hold `depth` fresh slots.
    pub fn new(cfg: QueueConfig, files: &[RawFd], tags: &'t [TagSlot]) -> Result<Self, QueueError> {
        if cfg.depth == 0 || cfg.depth > abi::io::UBLK_MAX_QUEUE_DEPTH {
            return Err(QueueError::Config("depth must be 1..=4096"));
        }
        if tags.len() != usize::from(cfg.depth) {
            return Err(QueueError::Config("one tag slot per tag is needed"));
        }
        if files.is_empty() {
            return Err(QueueError::Config(
                "files[0] must be the device's /dev/ublkcN",
            ));
        }
        if cfg.buf_bytes == 0 {
            return Err(QueueError::Config("the I/O buffer size must not be 0"));
        }
        if cfg.need_get_data && cfg.data_path != DataPath::Copy {
            return Err(QueueError::Config(
                "NEED_GET_DATA belongs to the copy path (the driver drops it otherwise)",
            ));
        }
        let page = page_size();
        let table = TagTable::new(tags);
        if table.count(TagState::Idle) != tags.len() {
            return Err(QueueError::Config("tag slots must be fresh (idle)"));
        }

        let depth = usize::from(cfg.depth);
        let desc_len = (depth * core::mem::size_of::<UblksrvIoDesc>()).next_multiple_of(page);
        debug_assert!(desc_len <= desc_area_stride(page));
        let descs = Mapping::shared(
            files[0],
            desc_len,
            desc_mmap_offset(cfg.q_id, page),
            libc::PROT_READ,
        )
        .map_err(|errno| QueueError::Map {
            what: "descriptor array",
            errno,
        })?;

        let buf_stride = (cfg.buf_bytes as usize).next_multiple_of(page);
        let bufs = if cfg.buffers || cfg.data_path == DataPath::Copy {
            let bufs_len = buf_stride
                .checked_mul(depth)
                .ok_or(QueueError::Config("I/O buffers exceed the address space"))?;
            Some(
                Mapping::anonymous(bufs_len).map_err(|errno| QueueError::Map {
                    what: "I/O buffers",
                    errno,
                })?,
            )
        } else {
            None
        };

        let sq_entries = match cfg.sq_entries {
            0 => (2 * depth as u32 + 2).next_power_of_two().min(32768),
            n => n,
        };
        let mut ring = QueueRing::with_config(RingConfig {
            sq_entries,
            cq_entries: None,
            flags: cfg.ring_flags,
        })?;
        ring.register_files(files)?;
        if cfg.data_path == DataPath::ZeroCopy {
            // The slots the driver fills with each request's pages: one per tag.
            ring.register_buffers_sparse(u32::from(cfg.depth))?;
        }
        Ok(Queue {
            ring,
            tags: table,
            descs,
            bufs: ManuallyDrop::new(bufs),
            buf_stride,
            char_dev: files[0],
            cfg,
            ended: 0,
            target_in_flight: 0,
            unexpected: 0,
            needs_registration: TagBits::EMPTY,
            registered_by_hand: TagBits::EMPTY,
            buffer_fallbacks: 0,
            buffer_errors: 0,
        })
    }

    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    /// The tag states.
    pub fn tags(&self) -> &TagTable<'t> {
        &self.tags
    }

    /// The registered file at `index` (0 is `/dev/ublkcN`; a target's files follow in the
    /// order given to [`Queue::new`]).
    pub fn file(&self, index: u32) -> Target {
        Target::Fixed(index)
    }

    /// Completions no queue state could place, so far.
    pub fn unexpected_completions(&self) -> u64 {
        self.unexpected
    }

    /// Zero copy: requests whose pages the driver could not register (`NEED_REG_BUF`), so
    /// far. Each was registered by hand when its target first used them.
    pub fn buffer_fallbacks(&self) -> u64 {
        self.buffer_fallbacks
    }

    /// Zero copy: registrations or unregistrations by hand that the driver refused, so far
    /// (the request's operations then fail, and the target answers with an error).
    pub fn buffer_errors(&self) -> u64 {
        self.buffer_errors
    }

    /// Every tag was aborted or refused: nothing more will come.
    pub fn is_finished(&self) -> bool {
        self.ended == self.cfg.depth
    }

    /// `tag`'s buffer, if the queue has buffers and the tag exists.
    fn buf_addr(&self, tag: u16) -> Option<*mut u8> {
        let bufs = self.bufs.as_ref()?;
        // In bounds: tag < depth and the mapping holds depth strides (checked in `new`).
        (tag < self.cfg.depth).then(|| {
            bufs.as_ptr()
                .wrapping_add(usize::from(tag) * self.buf_stride)
        })
    }

    /// A command for the driver about `tag`. What its addresses carry depends on the command
    /// and the data path: the tag's buffer for a fetch on the copy path (the only pointer any
    /// command carries), the buffer-table slot for a fetch on the zero-copy path and for
    /// (un)registering by hand, nothing for user copy.
    fn io_cmd(&self, cmd: IoCmd, tag: u16, result: i32) -> Sqe64 {
        let fetches = matches!(
            cmd,
            IoCmd::FetchReq | IoCmd::CommitAndFetchReq | IoCmd::NeedGetData
        );
        let addr = match (cmd, self.cfg.data_path) {
            (IoCmd::RegisterIoBuf | IoCmd::UnregisterIoBuf, _) => u64::from(buffer_slot(tag)),
            (_, DataPath::Copy) if fetches => self.buf_addr(tag).map_or(0, |p| p as u64),
            _ => 0,
        };
        let payload = UblksrvIoCmd {
            q_id: self.cfg.q_id,
            tag,
            result,
            addr,
        };
        let user_data = UserData::Cmd { cmd, tag }.encode();
        let mut sqe = Sqe64::uring_cmd(
            Target::Fixed(0),
            cmd.opcode(self.cfg.encoding),
            &payload,
            user_data,
        );
        if self.cfg.data_path == DataPath::ZeroCopy && fetches {
            // AUTO_BUF_REG: where the driver registers the next request's pages, carried in
            // the SQE's own `addr`. With FALLBACK a failed registration still delivers the
            // request, flagged NEED_REG_BUF, instead of failing it unseen.
            let index = if self.cfg.force_buffer_fallback {
                u16::MAX
            } else {
                buffer_slot(tag)
            };
            sqe.addr = UblkAutoBufReg {
                index,
                flags: UBLK_AUTO_BUF_REG_FALLBACK,
                ..Default::default()
            }
            .to_sqe_addr();
        }
        sqe
    }

    /// Pushes a driver command, built by [`Queue::io_cmd`].
    fn push_cmd(&mut self, sqe: Sqe64) -> Result<(), QueueError> {
        // SAFETY: the only pointer a command carries is a copy-path fetch's buffer, this
        // tag's inside `self.bufs` (`io_cmd`). While the command is out the tag is not Owned,
        // so safe code cannot reach the buffer, and `Drop` leaves `bufs` mapped if the queue
        // ends with it still out. Slot numbers and user-copy commands point at nothing.
        unsafe { self.push(&sqe) }
    }

    /// # Safety
    /// As [`Ring::push`](crate::Ring::push).
    unsafe fn push(&mut self, sqe: &Sqe64) -> Result<(), QueueError> {
        // SAFETY: forwarded to the caller.
        match unsafe { self.ring.push(sqe) } {
            Err(RingError::SqFull) => {
                // Hand the queued entries to the kernel to make room, then try once more.
                self.ring.submit()?;
                // SAFETY: as above.
                unsafe { self.ring.push(sqe) }.map_err(QueueError::Ring)
            }
            other => other.map_err(QueueError::Ring),
        }
    }

    /// Queues a FETCH_REQ for every tag. Call once, from the thread that will serve the queue;
    /// the next [`Queue::submit`] or [`Queue::wait`] sends them.
    pub fn fetch_all(&mut self) -> Result<(), QueueError> {
        for tag in 0..self.cfg.depth {
            if self.tags.state(tag) != Some(TagState::Idle) {
                return Err(QueueError::Config("fetch_all called twice"));
            }
            let sqe = self.io_cmd(IoCmd::FetchReq, tag, 0);
            self.push_cmd(sqe)?;
            self.tags
                .apply(tag, TagEvent::Fetch)
                .map_err(QueueError::Transition)?;
        }
        Ok(())
    }

    /// Arms the stop signal: a poll for `eventfd` to become readable. Writing to that
    /// eventfd from any thread makes this queue's next events include [`Event::Wake`], so a
    /// queue can be stopped even if the driver never aborts its tags. Arm it once; `eventfd`
    /// must stay open while the queue lives.
    pub fn arm_wake(&mut self, eventfd: RawFd) -> Result<(), QueueError> {
        let sqe = Sqe64::poll_add(
            Target::Fd(eventfd),
            libc::POLLIN as u16,
            UserData::Wake.encode(),
        );
        // SAFETY: a poll points at no memory.
        unsafe { self.push(&sqe) }
    }

    /// Sends what is queued without waiting.
    pub fn submit(&mut self) -> Result<u32, QueueError> {
        Ok(self.ring.submit()?)
    }

    /// Sends what is queued and sleeps until at least one completion is ready (one syscall).
    /// A signal ends the wait early without an error.
    pub fn wait(&mut self) -> Result<(), QueueError> {
        match self.ring.submit_and_wait(1) {
            // EINTR: a signal; EBUSY: the CQ is backlogged, which reaping resolves.
            Ok(_) | Err(RingError::Enter(Errno::EINTR | Errno::EBUSY)) => Ok(()),
            Err(e) => Err(QueueError::Ring(e)),
        }
    }

    /// As [`Queue::wait`], but for at most `timeout`: false if nothing completed in that
    /// time. For the end of a queue's life (taking the driver's aborts), not its hot loop:
    /// it may take two system calls.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, QueueError> {
        match self.ring.submit_and_wait_timeout(1, timeout) {
            Ok(_) | Err(RingError::Enter(Errno::EINTR | Errno::EBUSY)) => Ok(true),
            Err(RingError::TimedOut) => Ok(false),
            Err(e) => Err(QueueError::Ring(e)),
        }
    }

    /// The next completion, decoded; `None` when none is ready.
    ///
    /// A `UBLK_IO_RES_NEED_GET_DATA` answer is handled here (a NEED_GET_DATA command is
    /// queued) and produces no event.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let cqe: Cqe16 = self.ring.pop()?;
            if let Some(event) = self.decode(cqe) {
                return Some(event);
            }
        }
    }

    fn unexpected(&mut self, cqe: &Cqe16) -> Option<Event> {
        self.unexpected += 1;
        Some(Event::Unexpected {
            user_data: cqe.user_data,
            result: cqe.res,
        })
    }

    fn decode(&mut self, cqe: Cqe16) -> Option<Event> {
        let (cmd, tag) = match UserData::decode(cqe.user_data) {
            Some(UserData::Cmd {
                cmd: cmd @ (IoCmd::RegisterIoBuf | IoCmd::UnregisterIoBuf),
                tag,
            }) if tag < self.cfg.depth => {
                // Not a tag transition: the request stays the server's meanwhile.
                if cqe.res < 0 {
                    self.buffer_errors += 1;
                    if cmd == IoCmd::RegisterIoBuf {
                        // Nothing to unregister; the linked operation was cancelled.
                        self.registered_by_hand.take(tag);
                    }
                }
                return None;
            }
            Some(UserData::Cmd { cmd, tag }) if tag < self.cfg.depth => (cmd, tag),
            Some(UserData::Target { tag, cookie }) if tag < self.cfg.depth => {
                self.target_in_flight = self.target_in_flight.saturating_sub(1);
                return Some(Event::TargetDone {
                    tag,
                    cookie,
                    result: cqe.res,
                    flags: cqe.flags,
                });
            }
            Some(UserData::Wake) => return Some(Event::Wake),
            _ => return self.unexpected(&cqe),
        };
        match cqe.res {
            UBLK_IO_RES_OK => {
                if self.tags.apply_completion(tag, TagEvent::Request).is_err() {
                    return self.unexpected(&cqe);
                }
                let desc = self.desc(tag);
                if self.cfg.data_path == DataPath::ZeroCopy
                    && desc.flags().contains(IoFlags::NEED_REG_BUF)
                {
                    self.buffer_fallbacks += 1;
                    self.needs_registration.insert(tag);
                }
                Some(Event::Request { tag, desc })
            }
            UBLK_IO_RES_NEED_GET_DATA if self.cfg.need_get_data => {
                if self.tags.apply_completion(tag, TagEvent::NeedData).is_err() {
                    return self.unexpected(&cqe);
                }
                let sqe = self.io_cmd(IoCmd::NeedGetData, tag, 0);
                match self.push_cmd(sqe) {
                    Ok(()) => None,
                    Err(e) => {
                        let errno = match e {
                            QueueError::Ring(RingError::Enter(errno)) => errno,
                            _ => Errno::EIO,
                        };
                        self.end_tag(tag, Some((IoCmd::NeedGetData, errno)))
                    }
                }
            }
            UBLK_IO_RES_ABORT => self.end_tag(tag, None),
            res => {
                let errno = Errno(res.checked_neg().filter(|e| *e > 0).unwrap_or(libc::EPROTO));
                self.end_tag(tag, Some((cmd, errno)))
            }
        }
    }

    /// The driver ended `tag` (an abort, or a refusal of `refused`'s command).
    fn end_tag(&mut self, tag: u16, refused: Option<(IoCmd, Errno)>) -> Option<Event> {
        if self.tags.apply_completion(tag, TagEvent::Abort).is_err() {
            self.unexpected += 1;
            return Some(Event::Unexpected {
                user_data: UserData::Cmd {
                    cmd: refused.map_or(IoCmd::FetchReq, |r| r.0),
                    tag,
                }
                .encode(),
                result: refused.map_or(UBLK_IO_RES_ABORT, |r| -r.1.0),
            });
        }
        self.ended += 1;
        Some(match refused {
            None => Event::Aborted { tag },
            Some((cmd, errno)) => Event::Refused { tag, cmd, errno },
        })
    }

    /// Tag `tag`'s descriptor, as the driver wrote it before completing the fetch.
    fn desc(&self, tag: u16) -> UblksrvIoDesc {
        let p = self.descs.as_ptr().cast::<UblksrvIoDesc>();
        // SAFETY: tag < depth and the mapping holds `depth` descriptors (`new`); it is
        // page-aligned, so each 24-byte descriptor is 8-aligned. Volatile: the driver writes
        // this memory; the Acquire load of the CQ tail in `pop` ordered its write before us.
        unsafe { p.add(usize::from(tag)).read_volatile() }
    }

    /// The buffer of `tag` while the server owns it (between [`Event::Request`] and
    /// [`Queue::complete`]); `None` otherwise, or if the queue has no buffers. It holds
    /// `buf_bytes` rounded up to a page. On the copy path a write's data is at the start and a
    /// read's data goes there; on the others it is the target's own (see
    /// [`Queue::copy_buffer_to_request`]).
    pub fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        if self.tags.state(tag) != Some(TagState::Owned) {
            return None;
        }
        let addr = self.buf_addr(tag)?;
        // SAFETY: the buffer lies inside `self.bufs` (`buf_addr`); while the tag is Owned the
        // driver has no command of it outstanding, so nothing else writes this memory, and
        // the `&mut self` borrow keeps any other safe access out until the slice is gone.
        Some(unsafe { core::slice::from_raw_parts_mut(addr, self.buf_stride) })
    }

    /// The address of `tag`'s buffer, for a target's own operations (a read from a backing
    /// file straight into it); `None` if the queue has no buffers. The buffer is the target's
    /// only while the tag is Owned.
    pub fn buffer_ptr(&self, tag: u16) -> Option<*mut u8> {
        self.buf_addr(tag)
    }

    /// Bytes in each tag's buffer (0 if the queue has none).
    pub fn buffer_len(&self) -> usize {
        if self.bufs.is_some() {
            self.buf_stride
        } else {
            0
        }
    }

    /// Answers `tag`'s request with `result` (bytes done, or `-errno`) and fetches the tag's
    /// next request in the same command (COMMIT_AND_FETCH_REQ), sent with the next
    /// [`Queue::wait`].
    pub fn complete(&mut self, tag: u16, result: i32) -> Result<(), QueueError> {
        if self.tags.state(tag) != Some(TagState::Owned) {
            return self
                .tags
                .apply(tag, TagEvent::Complete)
                .map(|_| ())
                .map_err(QueueError::Transition);
        }
        self.needs_registration.take(tag);
        if self.registered_by_hand.take(tag) {
            // The driver completes the request only once its pages are out of every table;
            // in the same batch and before the commit, so the next request's automatic
            // registration finds the slot free.
            let sqe = self.io_cmd(IoCmd::UnregisterIoBuf, tag, 0);
            self.push_cmd(sqe)?;
        }
        let sqe = self.io_cmd(IoCmd::CommitAndFetchReq, tag, result);
        self.push_cmd(sqe)?;
        self.tags
            .apply(tag, TagEvent::Complete)
            .map(|_| ())
            .map_err(QueueError::Transition)
    }

    /// Queues a target's own operation for `tag`, to come back as [`Event::TargetDone`]
    /// carrying `cookie`. The SQE's `user_data` is overwritten.
    ///
    /// # Safety
    /// Whatever the SQE points at stays valid, and untouched by anything else, until its
    /// completion is reaped; if the queue is dropped before that, for ever (the queue itself
    /// then leaves its buffers mapped). Pointing at [`Queue::buffer_ptr`] of an Owned tag
    /// meets this for the buffer.
    pub unsafe fn push_target(
        &mut self,
        mut sqe: Sqe64,
        tag: u16,
        cookie: u32,
    ) -> Result<(), QueueError> {
        sqe.user_data = UserData::Target { tag, cookie }.encode();
        // SAFETY: forwarded to the caller.
        unsafe { self.push(&sqe) }?;
        self.target_in_flight += 1;
        Ok(())
    }

    /// Operations that may still write this queue's buffers: driver commands out and target
    /// operations not yet completed.
    pub fn outstanding(&self) -> u64 {
        self.tags.with_kernel() as u64 + self.target_in_flight
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        // Closing the ring (after this) cancels what is outstanding only later, in a kernel
        // worker, and until then the driver or a target's read may still write the buffers.
        // Unmapping them could let that write land in whatever is mapped there next, so a
        // queue that ends with work outstanding (stopped without the driver aborting its
        // tags) leaves them mapped: a bounded leak instead of a use after free.
        if self.outstanding() == 0 {
            // SAFETY: `bufs` is dropped once, here, and nothing outstanding refers to it.
            unsafe { ManuallyDrop::drop(&mut self.bufs) };
        }
    }
}

impl fmt::Debug for Queue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("q_id", &self.cfg.q_id)
            .field("depth", &self.cfg.depth)
            .field("data_path", &self.cfg.data_path)
            .field("buf_stride", &self.buf_stride)
            .field("ended", &self.ended)
            .field("ring", &self.ring)
            .finish()
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn config(depth: u16) -> QueueConfig {
        QueueConfig::new(0, depth, 4096, OpEncoding::Ioctl)
    }

    #[test]
    fn bad_configurations_are_refused_before_any_mapping() {
        let slots = [TagSlot::NEW, TagSlot::NEW];
        let cases: [(QueueConfig, &[RawFd], &[TagSlot], &str); 5] = [
            (config(0), &[0], &slots[..0], "depth"),
            (config(4097), &[0], &slots, "depth"),
            (config(1), &[0], &slots, "one tag slot per tag"),
            (config(2), &[], &slots, "files[0]"),
            (
                QueueConfig {
                    buf_bytes: 0,
                    ..config(2)
                },
                &[0],
                &slots,
                "buffer size",
            ),
        ];
        for (cfg, files, tags, want) in cases {
            match Queue::new(cfg, files, tags) {
                Err(QueueError::Config(why)) => assert!(why.contains(want), "{why}"),
                other => panic!("expected a config error about {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn used_tag_slots_are_refused() {
        let slots = [TagSlot::NEW];
        TagTable::new(&slots).apply(0, TagEvent::Fetch).unwrap();
        assert_eq!(
            Queue::new(config(1), &[0], &slots).unwrap_err(),
            QueueError::Config("tag slots must be fresh (idle)")
        );
    }
}
