//! An io_uring instance from raw syscalls: setup, the three mappings, submission, completion.
//!
//! `Ring<S, C>` is generic over its entry sizes: [`Sqe128`](crate::abi::uring::Sqe128) +
//! [`Cqe32`](crate::abi::uring::Cqe32) for the control ring (a control command's 32-byte payload
//! only fits the 80-byte command area of a 128-byte SQE), and [`Sqe64`] + [`Cqe16`] for I/O
//! queues, whose 16-byte `ublksrv_io_cmd` fits a normal SQE: half the SQ memory and cache lines
//! per command on the hot path.
//!
//! # Memory ordering
//! The SQ tail and CQ head are ours, the SQ head and CQ tail the kernel's. We read the kernel's
//! indices with `Acquire` (so its writes of CQEs, and its reads of SQEs, happen before we look or
//! reuse) and publish ours with `Release` (so our SQE writes, and our CQE reads, are complete
//! before the kernel sees the new index).
//!
//! # Overflow
//! A full SQ makes [`Ring::push`] return [`RingError::SqFull`]; nothing is overwritten. When the
//! CQ is full the kernel (with `IORING_FEAT_NODROP`, required here) parks completions and sets
//! [`Ring::cq_backlogged`]; the next wait flushes them. Completions the kernel had to drop
//! altogether are counted and reported once as [`RingError::CompletionsLost`].

mod prep;
mod prep_net;
mod prep_timer;

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;

pub use prep::{Fallocate, FixedIo, Read, Target, Write};
pub use prep_net::{SocketBuf, SocketRecv, SocketSend};

#[cfg(doc)]
use crate::abi::uring::{Cqe16, Sqe64};
use crate::abi::uring::{
    CqeLayout, IORING_ENTER_GETEVENTS, IORING_FEAT_EXT_ARG, IORING_FEAT_NODROP,
    IORING_FEAT_SINGLE_MMAP, IORING_OFF_CQ_RING, IORING_OFF_SQ_RING, IORING_OFF_SQES,
    IORING_REGISTER_BUFFERS2, IORING_REGISTER_FILES, IORING_RSRC_REGISTER_SPARSE,
    IORING_SETUP_CLAMP, IORING_SETUP_COOP_TASKRUN, IORING_SETUP_CQSIZE, IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_SUBMIT_ALL, IORING_SETUP_TASKRUN_FLAG,
    IORING_SQ_CQ_OVERFLOW, IORING_UNREGISTER_FILES, IoUringParams, IoUringRsrcRegister, SqeLayout,
};
use crate::errno::Errno;
use crate::sys::{self, Fd, Mapping, RawFd};

/// Why a ring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `io_uring_setup` failed (`ENOMEM`: locked-memory limit; `EINVAL`: bad size or flags;
    /// `EPERM`: io_uring disabled by `kernel.io_uring_disabled`).
    Setup(Errno),
    /// Mapping the ring memory failed.
    Map(Errno),
    /// The kernel lacks an io_uring feature this crate needs.
    MissingFeature(&'static str),
    /// The kernel described a ring layout outside its own mapping.
    BadLayout(&'static str),
    /// The submission queue is full: submit (and reap) before pushing more.
    SqFull,
    /// `io_uring_enter` failed (`EINTR`: interrupted; `EBUSY`: reap completions first).
    Enter(Errno),
    /// `io_uring_register` failed.
    Register(Errno),
    /// The wait's deadline passed before enough completions arrived.
    TimedOut,
    /// The kernel dropped this many completions (CQ overflow it could not park).
    CompletionsLost(u32),
    /// These `IORING_SETUP_*` flags were asked for but are not ones this ring can be set up
    /// with: they change the layout of its entries or memory, or how it must be driven (see
    /// [`RingConfig::ALLOWED_FLAGS`]). Nothing was set up.
    UnsupportedFlags(u32),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Setup(e) => write!(f, "io_uring_setup failed: {e}"),
            RingError::Map(e) => write!(f, "mapping the io_uring failed: {e}"),
            RingError::MissingFeature(what) => write!(f, "the kernel's io_uring lacks {what}"),
            RingError::BadLayout(what) => {
                write!(f, "the kernel's io_uring layout is invalid: {what}")
            }
            RingError::SqFull => f.write_str("io_uring submission queue is full"),
            RingError::Enter(e) => write!(f, "io_uring_enter failed: {e}"),
            RingError::Register(e) => write!(f, "io_uring_register failed: {e}"),
            RingError::TimedOut => f.write_str("timed out waiting for io_uring completions"),
            RingError::CompletionsLost(n) => {
                write!(
                    f,
                    "io_uring completion queue overflowed: {n} completions lost"
                )
            }
            RingError::UnsupportedFlags(bits) => write!(
                f,
                "IORING_SETUP flags {bits:#x} are not supported: they change the ring's entry layout or how it is driven"
            ),
        }
    }
}

impl RingError {
    /// The kernel's errno, for the failures the kernel reported with one.
    pub fn errno(&self) -> Option<Errno> {
        match *self {
            RingError::Setup(e)
            | RingError::Map(e)
            | RingError::Enter(e)
            | RingError::Register(e) => Some(e),
            _ => None,
        }
    }
}

impl core::error::Error for RingError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            RingError::Setup(e)
            | RingError::Map(e)
            | RingError::Enter(e)
            | RingError::Register(e) => Some(e),
            _ => None,
        }
    }
}

/// How to set a ring up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (the kernel rounds up to a power of two; at most 32768).
    pub sq_entries: u32,
    /// Completion queue entries; `None` lets the kernel choose (twice `sq_entries`).
    pub cq_entries: Option<u32>,
    /// Extra `IORING_SETUP_*` flags, from [`RingConfig::ALLOWED_FLAGS`] (`SINGLE_ISSUER`,
    /// `COOP_TASKRUN`, ...); any other is refused with [`RingError::UnsupportedFlags`]. The
    /// entry-size flags come from the ring's type parameters and need not be given (giving the
    /// type's own is allowed); the CQ size comes from `cq_entries`.
    pub flags: u32,
}

impl RingConfig {
    /// The `IORING_SETUP_*` flags a ring may be set up with: those that keep the layout of its
    /// entries and memory (which the ring's type fixes: `SQE128`, `CQE32`, `NO_SQARRAY`,
    /// `NO_MMAP` would make it read and write entries the kernel lays out otherwise) and the
    /// way this ring drives the kernel (one `io_uring_enter` per batch from the owning thread,
    /// so not `SQPOLL`, `IOPOLL`, `R_DISABLED` or `ATTACH_WQ`).
    pub const ALLOWED_FLAGS: u32 = IORING_SETUP_CLAMP
        | IORING_SETUP_SUBMIT_ALL
        | IORING_SETUP_COOP_TASKRUN
        | IORING_SETUP_TASKRUN_FLAG
        | IORING_SETUP_SINGLE_ISSUER
        | IORING_SETUP_DEFER_TASKRUN;

    /// A ring of `sq_entries` with default completion queue size and no extra flags.
    pub const fn new(sq_entries: u32) -> RingConfig {
        RingConfig {
            sq_entries,
            cq_entries: None,
            flags: 0,
        }
    }
}

/// The kernel-shared words of one queue, found at offsets the kernel gives in the setup params.
struct SharedIndices {
    head: *const AtomicU32,
    tail: *const AtomicU32,
    mask: u32,
    entries: u32,
}

/// An io_uring instance owning its file descriptor and mappings.
///
/// `S` is the SQE type ([`Sqe64`] or [`Sqe128`](crate::abi::uring::Sqe128)), `C` the CQE type
/// ([`Cqe16`] or [`Cqe32`](crate::abi::uring::Cqe32)).
pub struct Ring<S: SqeLayout, C: CqeLayout> {
    sq: SharedIndices,
    sq_flags: *const AtomicU32,
    sqes: *mut S,
    /// Our SQ tail: entries pushed, published to the kernel at the next submit.
    sq_tail: u32,
    cq: SharedIndices,
    cq_overflow: *const AtomicU32,
    cqes: *const C,
    lost_reported: u32,
    features: u32,
    setup_flags: u32,
    // Mappings before the fd: fields drop in order, so the memory is unmapped before the ring
    // is closed (either order is sound; this one releases the ring at once on close).
    _sq_map: Mapping,
    _cq_map: Option<Mapping>,
    _sqe_map: Mapping,
    fd: Fd,
    _entries: PhantomData<(S, C)>,
}

// SAFETY: the ring's shared memory is reachable only through this value (no other handle exists
// in the process), so moving it to another thread moves all access with it. The kernel ties a
// ring to a task only with IORING_SETUP_SINGLE_ISSUER, and then refuses the wrong task with
// EEXIST: a typed error, not unsoundness. Not `Sync`: `&Ring` methods read the shared indices,
// which is harmless, but every mutation needs `&mut`, so there is no reason to claim it.
unsafe impl<S: SqeLayout, C: CqeLayout> Send for Ring<S, C> {}

/// True if the flags the kernel reports (`echoed`) have the layout asked for: every bit outside
/// the allowed ones (entry sizes, the SQ array, who maps the memory, the CQ size) exactly as in
/// `asked`. The ring's code reads entries at the sizes and offsets those bits fix.
fn layout_echoed(asked: u32, echoed: u32) -> bool {
    (asked ^ echoed) & !RingConfig::ALLOWED_FLAGS == 0
}

/// A pointer to a `T` at byte `offset` of `map`, checked to lie inside it and be aligned.
fn field<T>(map: &Mapping, offset: u32, what: &'static str) -> Result<*mut T, RingError> {
    let offset = offset as usize;
    let end = offset
        .checked_add(core::mem::size_of::<T>())
        .ok_or(RingError::BadLayout(what))?;
    if end > map.len() || offset % core::mem::align_of::<T>() != 0 {
        return Err(RingError::BadLayout(what));
    }
    // SAFETY: `offset + size_of::<T>()` is within the mapping (checked above), so the resulting
    // pointer stays inside the same allocation.
    Ok(unsafe { map.as_ptr().add(offset) }.cast::<T>())
}

/// Checks that an array of `count` `T`s at `offset` fits in `map`.
fn array_fits<T>(
    map: &Mapping,
    offset: u32,
    count: u32,
    what: &'static str,
) -> Result<(), RingError> {
    let bytes = (count as usize).checked_mul(core::mem::size_of::<T>());
    match bytes.and_then(|b| b.checked_add(offset as usize)) {
        Some(end) if end <= map.len() => Ok(()),
        _ => Err(RingError::BadLayout(what)),
    }
}

impl<S: SqeLayout, C: CqeLayout> Ring<S, C> {
    /// A ring of `sq_entries` submission entries with default settings.
    pub fn new(sq_entries: u32) -> Result<Self, RingError> {
        Self::with_config(RingConfig::new(sq_entries))
    }

    /// A ring set up as `config` says. Flags outside [`RingConfig::ALLOWED_FLAGS`] (but the
    /// type's own entry sizes) are refused with [`RingError::UnsupportedFlags`]; a kernel that
    /// reports a ring set up with other layout flags than asked is refused with
    /// [`RingError::BadLayout`].
    pub fn with_config(config: RingConfig) -> Result<Self, RingError> {
        let own = S::SETUP_FLAGS | C::SETUP_FLAGS;
        let unsupported = config.flags & !(RingConfig::ALLOWED_FLAGS | own);
        if unsupported != 0 {
            return Err(RingError::UnsupportedFlags(unsupported));
        }
        let mut p = IoUringParams {
            flags: config.flags | own,
            ..Default::default()
        };
        if let Some(cq) = config.cq_entries {
            p.flags |= IORING_SETUP_CQSIZE;
            p.cq_entries = cq;
        }
        let asked = p.flags;
        let fd = sys::io_uring_setup(config.sq_entries, &mut p).map_err(RingError::Setup)?;
        if !layout_echoed(asked, p.flags) {
            return Err(RingError::BadLayout(
                "the kernel set the ring up with other layout flags than asked",
            ));
        }
        if p.features & IORING_FEAT_NODROP == 0 {
            return Err(RingError::MissingFeature("IORING_FEAT_NODROP (Linux 5.5)"));
        }
        if p.features & IORING_FEAT_EXT_ARG == 0 {
            return Err(RingError::MissingFeature(
                "IORING_FEAT_EXT_ARG (Linux 5.11)",
            ));
        }

        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * core::mem::size_of::<u32>();
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * core::mem::size_of::<C>();
        let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
        let sq_map_len = if single { sq_len.max(cq_len) } else { sq_len };
        let sq_map = Mapping::shared(fd.raw(), sq_map_len, IORING_OFF_SQ_RING, prot)
            .map_err(RingError::Map)?;
        let cq_map = if single {
            None
        } else {
            Some(
                Mapping::shared(fd.raw(), cq_len, IORING_OFF_CQ_RING, prot)
                    .map_err(RingError::Map)?,
            )
        };
        let sqe_len = p.sq_entries as usize * core::mem::size_of::<S>();
        let sqe_map =
            Mapping::shared(fd.raw(), sqe_len, IORING_OFF_SQES, prot).map_err(RingError::Map)?;

        let cq_mem = cq_map.as_ref().unwrap_or(&sq_map);
        let sq_head = field::<AtomicU32>(&sq_map, p.sq_off.head, "sq head")?;
        let sq_tail = field::<AtomicU32>(&sq_map, p.sq_off.tail, "sq tail")?;
        let sq_mask = field::<u32>(&sq_map, p.sq_off.ring_mask, "sq mask")?;
        let sq_flags = field::<AtomicU32>(&sq_map, p.sq_off.flags, "sq flags")?;
        let sq_array = field::<u32>(&sq_map, p.sq_off.array, "sq array")?;
        array_fits::<u32>(&sq_map, p.sq_off.array, p.sq_entries, "sq array")?;
        let cq_head = field::<AtomicU32>(cq_mem, p.cq_off.head, "cq head")?;
        let cq_tail = field::<AtomicU32>(cq_mem, p.cq_off.tail, "cq tail")?;
        let cq_mask = field::<u32>(cq_mem, p.cq_off.ring_mask, "cq mask")?;
        let cq_overflow = field::<AtomicU32>(cq_mem, p.cq_off.overflow, "cq overflow")?;
        let cqes = field::<C>(cq_mem, p.cq_off.cqes, "cqes")?;
        array_fits::<C>(cq_mem, p.cq_off.cqes, p.cq_entries, "cqes")?;

        // SAFETY: both mask words lie inside their mappings (checked by `field`); the kernel
        // wrote them during setup and never changes them.
        let (sq_mask, cq_mask) = unsafe { (sq_mask.read(), cq_mask.read()) };
        if sq_mask.checked_add(1) != Some(p.sq_entries)
            || cq_mask.checked_add(1) != Some(p.cq_entries)
        {
            return Err(RingError::BadLayout("ring mask does not match entries"));
        }
        // The SQ index array maps ring slots to SQE indices. We always fill SQE `tail & mask`
        // for slot `tail & mask`, so the identity mapping, written once, serves forever.
        for i in 0..p.sq_entries {
            // SAFETY: `array` holds `sq_entries` u32s inside the mapping (checked above) and
            // the kernel reads it only for slots published by a later tail store (Release).
            unsafe { sq_array.add(i as usize).write(i) };
        }

        Ok(Ring {
            sq: SharedIndices {
                head: sq_head,
                tail: sq_tail,
                mask: sq_mask,
                entries: p.sq_entries,
            },
            sq_flags,
            sqes: sqe_map.as_ptr().cast::<S>(),
            // SAFETY: `sq_tail` points at the kernel's SQ tail word inside the mapping.
            sq_tail: unsafe { (*sq_tail).load(Ordering::Relaxed) },
            cq: SharedIndices {
                head: cq_head,
                tail: cq_tail,
                mask: cq_mask,
                entries: p.cq_entries,
            },
            cq_overflow,
            cqes,
            lost_reported: 0,
            features: p.features,
            setup_flags: p.flags,
            _sq_map: sq_map,
            _cq_map: cq_map,
            _sqe_map: sqe_map,
            fd,
            _entries: PhantomData,
        })
    }

    /// The ring's file descriptor (owned by the ring).
    pub fn fd(&self) -> RawFd {
        self.fd.raw()
    }

    /// `IORING_FEAT_*` bits the kernel reported.
    pub fn features(&self) -> u32 {
        self.features
    }

    /// `IORING_SETUP_*` flags the ring was created with.
    pub fn setup_flags(&self) -> u32 {
        self.setup_flags
    }

    /// Submission queue size.
    pub fn sq_entries(&self) -> u32 {
        self.sq.entries
    }

    /// Completion queue size.
    pub fn cq_entries(&self) -> u32 {
        self.cq.entries
    }

    fn sq_head(&self) -> u32 {
        // SAFETY: `sq.head` points at the kernel's SQ head word inside our mapping, alive as
        // long as `self`. Acquire: the kernel finished reading the SQEs before it moved head.
        unsafe { (*self.sq.head).load(Ordering::Acquire) }
    }

    /// SQEs pushed and not yet consumed by the kernel.
    pub fn sq_pending(&self) -> u32 {
        self.sq_tail.wrapping_sub(self.sq_head())
    }

    /// Free submission slots.
    pub fn sq_space(&self) -> u32 {
        self.sq.entries - self.sq_pending().min(self.sq.entries)
    }

    /// Queues one SQE for the next submit. Returns [`RingError::SqFull`] when every slot is
    /// taken; the entry is then not queued and nothing is overwritten.
    ///
    /// # Safety
    /// Every buffer the SQE points at (`addr`, and for URING_CMD whatever its payload points at)
    /// must stay valid, and not be accessed in a way that conflicts with the operation, until
    /// the entry's completion has been reaped, or for as long as the kernel may still use it if
    /// the ring is dropped first.
    pub unsafe fn push(&mut self, sqe: &S) -> Result<(), RingError> {
        if self.sq_pending() >= self.sq.entries {
            return Err(RingError::SqFull);
        }
        let slot = (self.sq_tail & self.sq.mask) as usize;
        // SAFETY: `slot < sq_entries`, so the write stays in the SQE mapping; the slot is free
        // (pending < entries, and the Acquire load of head means the kernel is done with it).
        unsafe { self.sqes.add(slot).write(*sqe) };
        self.sq_tail = self.sq_tail.wrapping_add(1);
        Ok(())
    }

    /// Makes pushed SQEs visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: `sq.tail` points at the kernel's SQ tail word in our mapping. Release: the
        // SQE writes above happen before the kernel can observe the new tail.
        unsafe { (*self.sq.tail).store(self.sq_tail, Ordering::Release) };
    }

    /// True while the kernel holds completions that did not fit in the CQ; the next wait
    /// (any `submit_and_wait*`) moves them in as space allows.
    pub fn cq_backlogged(&self) -> bool {
        // SAFETY: `sq_flags` points at the kernel's SQ flags word in our mapping.
        unsafe { (*self.sq_flags).load(Ordering::Acquire) & IORING_SQ_CQ_OVERFLOW != 0 }
    }

    /// Total completions the kernel had to drop since the ring was created.
    pub fn lost_completions(&self) -> u32 {
        // SAFETY: `cq_overflow` points at the kernel's overflow counter in our mapping.
        unsafe { (*self.cq_overflow).load(Ordering::Acquire) }
    }

    /// Reports newly lost completions once.
    fn check_lost(&mut self) -> Result<(), RingError> {
        let lost = self.lost_completions();
        if lost != self.lost_reported {
            let new = lost.wrapping_sub(self.lost_reported);
            self.lost_reported = lost;
            return Err(RingError::CompletionsLost(new));
        }
        Ok(())
    }

    fn enter(
        &mut self,
        min_complete: u32,
        flags: u32,
        timeout: Option<Duration>,
    ) -> Result<u32, RingError> {
        self.publish();
        let to_submit = self.sq_pending();
        let result = sys::io_uring_enter(self.fd.raw(), to_submit, min_complete, flags, timeout);
        let submitted = result.map_err(|e| match e {
            Errno::ETIME => RingError::TimedOut,
            e => RingError::Enter(e),
        })?;
        self.check_lost()?;
        Ok(submitted)
    }

    /// Submits pushed SQEs without waiting. Returns how many the kernel consumed.
    pub fn submit(&mut self) -> Result<u32, RingError> {
        if self.sq_pending() == 0 && !self.cq_backlogged() {
            return Ok(0);
        }
        let flags = if self.cq_backlogged() {
            IORING_ENTER_GETEVENTS
        } else {
            0
        };
        self.enter(0, flags, None)
    }

    /// Submits pushed SQEs and waits until at least `want` completions are ready, in one
    /// syscall. Returns how many SQEs the kernel consumed. `EINTR` is returned, not retried.
    pub fn submit_and_wait(&mut self, want: u32) -> Result<u32, RingError> {
        self.enter(want, IORING_ENTER_GETEVENTS, None)
    }

    /// Submits pushed SQEs, then waits until at least `want` completions are ready or `timeout`
    /// has passed ([`RingError::TimedOut`]). Signals do not cut the wait short.
    ///
    /// Two syscalls when there is something to submit: the kernel reports a timeout only on an
    /// enter that submitted nothing.
    pub fn submit_and_wait_timeout(
        &mut self,
        want: u32,
        timeout: Duration,
    ) -> Result<u32, RingError> {
        let deadline = sys::monotonic_now().saturating_add(timeout);
        let submitted = self.submit()?;
        loop {
            if self.cq_ready() >= want {
                return Ok(submitted);
            }
            let left = deadline.saturating_sub(sys::monotonic_now());
            if left.is_zero() {
                return Err(RingError::TimedOut);
            }
            match self.enter(want, IORING_ENTER_GETEVENTS, Some(left)) {
                Ok(_) | Err(RingError::Enter(Errno::EINTR)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn cq_tail(&self) -> u32 {
        // SAFETY: `cq.tail` points at the kernel's CQ tail word in our mapping. Acquire: the
        // kernel's CQE writes happen before we read the entries up to this tail.
        unsafe { (*self.cq.tail).load(Ordering::Acquire) }
    }

    fn cq_head(&self) -> u32 {
        // SAFETY: `cq.head` points at the CQ head word, which only we write.
        unsafe { (*self.cq.head).load(Ordering::Relaxed) }
    }

    /// Completions ready to be reaped.
    pub fn cq_ready(&self) -> u32 {
        self.cq_tail().wrapping_sub(self.cq_head())
    }

    /// Takes the oldest ready completion, if any.
    pub fn pop(&mut self) -> Option<C> {
        let mut all = self.completions();
        let first = all.next();
        // Dropping the iterator publishes the head past the one entry taken.
        drop(all);
        first
    }

    /// An iterator over the ready completions; the slots are released to the kernel as the
    /// iterator is dropped (one shared-memory store per batch, not per entry).
    pub fn completions(&mut self) -> Completions<'_, S, C> {
        let head = self.cq_head();
        let tail = self.cq_tail();
        Completions {
            ring: self,
            head,
            tail,
        }
    }

    /// Registers `fds` as the ring's fixed files (indices 0..), replacing none: fails with
    /// `EBUSY` if files are already registered.
    pub fn register_files(&mut self, fds: &[RawFd]) -> Result<(), RingError> {
        let n = u32::try_from(fds.len()).map_err(|_| RingError::Register(Errno::EINVAL))?;
        // SAFETY: IORING_REGISTER_FILES takes an array of `n` ints, which `fds` is, valid for
        // the call; the kernel takes its own references to the files.
        unsafe {
            sys::io_uring_register(self.fd.raw(), IORING_REGISTER_FILES, fds.as_ptr().cast(), n)
        }
        .map(drop)
        .map_err(RingError::Register)
    }

    /// Registers a buffer table of `slots` empty slots (`IORING_RSRC_REGISTER_SPARSE`), for
    /// buffers that others install: the ublk driver puts a request's pages there for zero
    /// copy. Ours never register memory of this process in it, so every fixed-buffer
    /// operation on this ring reaches kernel pages only. Fails with `EBUSY` if buffers are
    /// already registered.
    pub fn register_buffers_sparse(&mut self, slots: u32) -> Result<(), RingError> {
        let table = IoUringRsrcRegister {
            nr: slots,
            flags: IORING_RSRC_REGISTER_SPARSE,
            ..Default::default()
        };
        // SAFETY: IORING_REGISTER_BUFFERS2 reads one `struct io_uring_rsrc_register` (layout
        // asserted in abi::uring), `table`, alive for the call; sparse, so `data` and `tags`
        // point at nothing.
        unsafe {
            sys::io_uring_register(
                self.fd.raw(),
                IORING_REGISTER_BUFFERS2,
                (&table as *const IoUringRsrcRegister).cast(),
                core::mem::size_of::<IoUringRsrcRegister>() as u32,
            )
        }
        .map(drop)
        .map_err(RingError::Register)
    }

    /// Unregisters the fixed files.
    pub fn unregister_files(&mut self) -> Result<(), RingError> {
        // SAFETY: IORING_UNREGISTER_FILES takes no argument.
        unsafe {
            sys::io_uring_register(self.fd.raw(), IORING_UNREGISTER_FILES, core::ptr::null(), 0)
        }
        .map(drop)
        .map_err(RingError::Register)
    }
}

impl<S: SqeLayout, C: CqeLayout> fmt::Debug for Ring<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("fd", &self.fd.raw())
            .field("sq_entries", &self.sq.entries)
            .field("cq_entries", &self.cq.entries)
            .field("sqe_bytes", &core::mem::size_of::<S>())
            .field("cqe_bytes", &core::mem::size_of::<C>())
            .finish()
    }
}

/// Ready completions of a [`Ring`]; see [`Ring::completions`].
pub struct Completions<'a, S: SqeLayout, C: CqeLayout> {
    ring: &'a mut Ring<S, C>,
    head: u32,
    tail: u32,
}

impl<S: SqeLayout, C: CqeLayout> Iterator for Completions<'_, S, C> {
    type Item = C;

    fn next(&mut self) -> Option<C> {
        if self.head == self.tail {
            return None;
        }
        let slot = (self.head & self.ring.cq.mask) as usize;
        // SAFETY: `slot < cq_entries`, inside the CQE array (checked at setup); the entry was
        // published by the kernel before the tail we loaded with Acquire, and the kernel will
        // not reuse it until we move the head past it (on drop).
        let cqe = unsafe { self.ring.cqes.add(slot).read() };
        self.head = self.head.wrapping_add(1);
        Some(cqe)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.tail.wrapping_sub(self.head) as usize;
        (n, Some(n))
    }
}

impl<S: SqeLayout, C: CqeLayout> Drop for Completions<'_, S, C> {
    fn drop(&mut self) {
        // SAFETY: `cq.head` points at the CQ head word in the ring's mapping. Release: our reads
        // of the entries happen before the kernel may overwrite them.
        unsafe { (*self.ring.cq.head).store(self.head, Ordering::Release) };
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::uring::{IORING_SETUP_CQE32, IORING_SETUP_NO_SQARRAY, IORING_SETUP_SQE128};

    #[test]
    fn only_the_layout_asked_for_is_accepted_back() {
        let asked = IORING_SETUP_SQE128 | IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
        assert!(layout_echoed(asked, asked));
        // The kernel may add or drop flags that do not touch the layout.
        assert!(layout_echoed(asked, asked | IORING_SETUP_TASKRUN_FLAG));
        assert!(layout_echoed(asked, asked & !IORING_SETUP_COOP_TASKRUN));
        // Not entry sizes, the SQ array or the CQ size it was not asked for.
        assert!(!layout_echoed(asked, asked | IORING_SETUP_CQE32));
        assert!(!layout_echoed(asked, asked & !IORING_SETUP_SQE128));
        assert!(!layout_echoed(asked, asked | IORING_SETUP_NO_SQARRAY));
        assert!(!layout_echoed(asked, asked & !IORING_SETUP_CQSIZE));
        assert!(!layout_echoed(asked, asked | 1 << 31));
    }
}
