//! The only place raw syscalls live: io_uring setup/enter/register, mmap/munmap, pread/pwrite,
//! close and the monotonic clock. Everything above this module is written against these few safe-ish
//! wrappers, so the unsafe surface can be audited in one file (plus the ring's shared memory).

use core::ffi::{c_long, c_void};
use core::ptr::NonNull;
use core::time::Duration;

use crate::abi::uring::{IoUringGeteventsArg, IoUringParams, KernelTimespec};
use crate::errno::Errno;

/// A raw file descriptor number (`c_int`), as the kernel and libc use it.
pub type RawFd = libc::c_int;

/// An owned file descriptor, closed on drop. The `no_std` counterpart of `std::os::fd::OwnedFd`.
#[derive(Debug)]
pub struct Fd(RawFd);

impl Fd {
    /// Takes ownership of `fd`.
    ///
    /// # Safety
    /// `fd` must be an open file descriptor that nothing else closes: the returned `Fd` closes
    /// it when dropped.
    pub unsafe fn from_raw(fd: RawFd) -> Fd {
        Fd(fd)
    }

    /// The descriptor number, still owned by `self`.
    pub fn raw(&self) -> RawFd {
        self.0
    }

    /// Gives up ownership without closing.
    pub fn into_raw(self) -> RawFd {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: `self.0` is owned by this `Fd` (contract of `from_raw`) and closed only here.
        // EINTR from close still releases the descriptor on Linux, so there is nothing to retry.
        unsafe { libc::close(self.0) };
    }
}

/// Converts a `syscall(2)` return value into a result, reading `errno` on failure.
fn check(ret: c_long) -> Result<c_long, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// `io_uring_setup(2)`: creates a ring; the kernel fills in `params` (sizes, offsets, features).
pub(crate) fn io_uring_setup(entries: u32, params: &mut IoUringParams) -> Result<Fd, Errno> {
    // SAFETY: `params` is a valid, writable `struct io_uring_params` (layout asserted in
    // abi::uring) for the duration of the call.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            c_long::from(entries),
            params as *mut IoUringParams,
        )
    })?;
    // SAFETY: a successful io_uring_setup returns a new descriptor that we now own.
    Ok(unsafe { Fd::from_raw(ret as RawFd) })
}

/// `io_uring_enter(2)`: submits `to_submit` entries and, with `IORING_ENTER_GETEVENTS`, waits
/// for `min_complete` completions, for at most `timeout` if one is given (the kernel then
/// returns `ETIME`; the timeout travels in an `IORING_ENTER_EXT_ARG` argument). Returns the
/// number of entries submitted.
pub(crate) fn io_uring_enter(
    fd: RawFd,
    to_submit: u32,
    min_complete: u32,
    flags: u32,
    timeout: Option<Duration>,
) -> Result<u32, Errno> {
    let ts = timeout.map(|t| KernelTimespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    let arg = ts.as_ref().map(|ts| IoUringGeteventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec: 0,
        ts: ts as *const KernelTimespec as u64,
    });
    let (flags, argp, argsz) = match &arg {
        None => (flags, core::ptr::null(), 0),
        Some(arg) => (
            flags | crate::abi::uring::IORING_ENTER_EXT_ARG,
            arg as *const IoUringGeteventsArg as *const c_void,
            core::mem::size_of::<IoUringGeteventsArg>(),
        ),
    };
    // SAFETY: `argp` is NULL (size 0) or points to `arg`, a `struct io_uring_getevents_arg`
    // (layout asserted in abi::uring) whose timespec `ts` lives, like `arg`, until the call
    // returns.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            c_long::from(fd),
            c_long::from(to_submit),
            c_long::from(min_complete),
            c_long::from(flags),
            argp,
            argsz,
        )
    })?;
    Ok(ret as u32)
}

/// `io_uring_register(2)`.
///
/// # Safety
/// `arg` must point to what `opcode` expects (e.g. an array of `nr_args` file descriptors for
/// `IORING_REGISTER_FILES`), valid for the duration of the call.
pub(crate) unsafe fn io_uring_register(
    fd: RawFd,
    opcode: u32,
    arg: *const c_void,
    nr_args: u32,
) -> Result<u32, Errno> {
    // SAFETY: the caller guarantees `arg` matches `opcode` and `nr_args`.
    let ret = check(unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            c_long::from(fd),
            c_long::from(opcode),
            arg,
            c_long::from(nr_args),
        )
    })?;
    Ok(ret as u32)
}

/// `pread(2)` into `buf` from `fd` at `pos`: the bytes read (fewer at end of file, or when
/// the source has fewer).
pub fn pread(fd: RawFd, buf: &mut [u8], pos: u64) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes, and exclusively ours for
    // the call (`&mut`).
    unsafe { pread_raw(fd, buf.as_mut_ptr(), buf.len(), pos) }
}

/// `pwrite(2)` of `data` to `fd` at `pos`: the bytes written.
pub fn pwrite(fd: RawFd, data: &[u8], pos: u64) -> Result<usize, Errno> {
    // SAFETY: `data` is valid for reads of `data.len()` bytes for the call.
    unsafe { pwrite_raw(fd, data.as_ptr(), data.len(), pos) }
}

/// `pread(2)` into raw memory, for memory no Rust reference may cover (a mapping other
/// threads write too).
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes for the duration of the call, and no Rust
/// reference into that memory may be alive during it.
pub unsafe fn pread_raw(fd: RawFd, dst: *mut u8, len: usize, pos: u64) -> Result<usize, Errno> {
    let pos = libc::off_t::try_from(pos).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the caller guarantees `dst` is writable for `len` bytes and unaliased.
    let ret = unsafe { libc::pread(fd, dst.cast(), len, pos) };
    usize::try_from(ret).map_err(|_| Errno::last())
}

/// `pwrite(2)` from raw memory; see [`pread_raw`].
///
/// # Safety
/// `src` must be valid for reads of `len` bytes for the duration of the call, and no
/// mutable Rust reference into that memory may be alive during it.
pub unsafe fn pwrite_raw(fd: RawFd, src: *const u8, len: usize, pos: u64) -> Result<usize, Errno> {
    let pos = libc::off_t::try_from(pos).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the caller guarantees `src` is readable for `len` bytes.
    let ret = unsafe { libc::pwrite(fd, src.cast(), len, pos) };
    usize::try_from(ret).map_err(|_| Errno::last())
}

/// A memory mapping owned by this process, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` owns its pages exclusively and has no thread affinity: the kernel does
// not care which thread touches or unmaps them. Through `&Mapping` only the address and length
// can be read; writing through the address needs `unsafe` and its own justification.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: shared references expose nothing but two integers.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, shared with the kernel (`MAP_SHARED | MAP_POPULATE`).
    pub(crate) fn shared(
        fd: RawFd,
        len: usize,
        offset: u64,
        prot: libc::c_int,
    ) -> Result<Mapping, Errno> {
        let offset = libc::off_t::try_from(offset).map_err(|_| Errno::EOVERFLOW)?;
        Self::map(fd, len, offset, prot, libc::MAP_SHARED | libc::MAP_POPULATE)
    }

    /// Maps `len` bytes of file `fd` from its start, readable and writable, shared with every
    /// other mapping and reader of the file (a `memfd`'s pages, say). Pages are faulted in as
    /// they are touched, not up front: a large file costs only what is used.
    pub fn file_shared(fd: RawFd, len: usize) -> Result<Mapping, Errno> {
        Self::map(
            fd,
            len,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }

    /// Maps `len` bytes of zeroed, private anonymous memory, readable and writable. Pages
    /// are allocated as they are first touched, and no swap is reserved up front
    /// (`MAP_NORESERVE`), so large, sparsely used areas (I/O buffers) cost only what is used.
    pub fn anonymous(len: usize) -> Result<Mapping, Errno> {
        Self::map(
            -1,
            len,
            0,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )
    }

    fn map(
        fd: RawFd,
        len: usize,
        offset: libc::off_t,
        prot: libc::c_int,
        flags: libc::c_int,
    ) -> Result<Mapping, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (NULL hint) cannot alias any
        // memory Rust already owns; all arguments are plain values.
        let ptr = unsafe { libc::mmap(core::ptr::null_mut(), len, prot, flags, fd, offset) };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::EFAULT)?;
        Ok(Mapping { ptr, len })
    }

    /// The start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings cannot be created.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives the pages of `offset..offset + len` back to the kernel (`MADV_DONTNEED`): they
    /// read as zeroes from then on, and cost no memory until written again. The range must
    /// be page-aligned and inside the mapping (else `EINVAL`). Meant for private anonymous
    /// mappings; a file mapping would re-read the file instead.
    ///
    /// # Safety
    /// No Rust reference into the range may exist: its contents change underneath.
    pub unsafe fn release_pages(&self, offset: usize, len: usize) -> Result<(), Errno> {
        let page = page_size();
        let inside = offset.checked_add(len).is_some_and(|end| end <= self.len);
        if offset % page != 0 || len % page != 0 || !inside {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the range lies inside this mapping (checked above), so no other memory is
        // affected; the caller guarantees no reference observes the contents changing.
        let ret = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                libc::MADV_DONTNEED,
            )
        };
        if ret != 0 {
            return Err(Errno::last());
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping created by `Mapping::map` and owned by `self`;
        // nothing borrows it past `self`'s lifetime (borrows are tied to `&self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The system page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

/// Time since an arbitrary fixed point (`CLOCK_MONOTONIC`), for deadlines.
pub(crate) fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The calling process's id, as START_DEV and END_USER_RECOVERY want it.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}
