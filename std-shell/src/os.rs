//! The few system calls the shell makes outside the ublk protocol: an eventfd to wake a
//! queue, the queue thread's I/O-flusher flag and CPU affinity, a RAM disk's memfd.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd: writing to it wakes whoever reads it (a queue's stop signal).
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn raw(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    /// Adds 1 to the counter: the reader wakes. Needs no new descriptor, so it works when
    /// the process is out of them (which may be the error being cleaned up).
    pub(crate) fn signal(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local array to our own descriptor.
        let n = unsafe { libc::write(self.raw(), one.as_ptr().cast(), one.len()) };
        if n != one.len() as isize {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// `PR_SET_IO_FLUSHER` from `<linux/prctl.h>` (Linux 5.6); the `libc` crate does not name it.
const PR_SET_IO_FLUSHER: libc::c_int = 57;

/// Marks the calling thread as one that cleans dirty pages (`PR_SET_IO_FLUSHER`): its memory
/// allocations then never wait on I/O, which would deadlock when the I/O is its own device's.
pub(crate) fn set_io_flusher() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_IO_FLUSHER takes plain integers.
    let ret = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1 as libc::c_ulong, 0, 0, 0) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs the calling thread may run on (its affinity mask, as cgroups and the parent left
/// it).
pub(crate) fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is this thread.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index is below the set's capacity.
    Ok((0..capacity)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Pins the calling thread to `cpus` (ignored when none fits a `cpu_set_t`).
pub(crate) fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    let capacity = 8 * std::mem::size_of::<libc::cpu_set_t>();
    if !cpus.iter().any(|&c| c < capacity) {
        return Ok(());
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < capacity) {
        // SAFETY: `cpu` is below the set's capacity (filtered), so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let ret = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A new, empty memfd (anonymous shared memory behind a file descriptor), close-on-exec.
pub(crate) fn memfd(name: &str) -> io::Result<File> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string alive for the call; the flags are plain bits.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Punches a hole of `len` bytes at `offset` into file `fd`, keeping its size: the range reads
/// as zeroes, and whole blocks inside it are freed.
pub(crate) fn punch_hole(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate takes plain integers; `fd` is the caller's open descriptor.
    if unsafe { libc::fallocate(fd, mode, offset, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
