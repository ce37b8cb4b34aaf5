//! Every raw system call of this crate and of the `ublk` command, each behind a safe function
//! (as `ublk_core::sys` is for the core): the one file to audit for `libc` calls outside the
//! ublk protocol.
//!
//! Most are the library's own (an eventfd to wake a queue, the queue thread's I/O-flusher flag
//! and CPU affinity, a RAM disk's memfd, a backing file's block size and direct-I/O alignment,
//! blocking and waiting for signals). The public ones are what a server process needs around
//! its devices, and what the `ublk` command uses to run as a daemon: it may make no `libc`
//! call of its own. They are thin: each says which call it makes.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

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
/// Needs `CAP_SYS_RESOURCE` (EPERM without). Queue threads set it themselves; a server's
/// other threads (the one that waits for signals) call this.
pub fn set_io_flusher() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_IO_FLUSHER takes plain integers.
    let ret = unsafe { libc::prctl(PR_SET_IO_FLUSHER, 1 as libc::c_ulong, 0, 0, 0) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts the calling thread in the `SCHED_BATCH` policy (at its nice level, no privilege
/// needed): the scheduler then lets the task that woke it run on instead of switching to it
/// at once. A queue thread that shares a CPU with the program submitting to it (the driver
/// sends a CPU's requests to the queue whose thread is pinned there) would otherwise be woken
/// for each request and take them one at a time; as a batch task, it finds the submitter's
/// whole burst when it runs. Through `syscall(2)`: musl's `sched_setscheduler` is a stub.
pub fn set_batch_scheduling() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads one sched_param, which lives across the call; pid 0
    // is the calling thread.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            libc::SCHED_BATCH,
            &param as *const libc::sched_param,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Locks the process's memory in RAM: its code and read-only data (every private file mapping:
/// the binary, and shared libraries when it has any) whole and at once, every other page as it
/// is first touched, now and in later mappings (`mlockall(MCL_CURRENT | MCL_FUTURE |
/// MCL_ONFAULT)`). A server whose code could be dropped and read again from its binary, or
/// whose pages could be swapped out, would wait to run on a disk that may be the one it
/// serves; locking the rest only as it is touched keeps a RAM disk's large mapping, and each
/// thread's stack, from being allocated whole. Needs `CAP_IPC_LOCK` or a large enough
/// `RLIMIT_MEMLOCK`.
pub fn lock_memory() -> io::Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for (start, end) in maps.lines().filter_map(private_file_mapping) {
        // SAFETY: mlock reads in and pins pages of a mapping this process has (the kernel
        // checks the range); it changes no memory's contents.
        if unsafe { libc::mlock(start as *const libc::c_void, end - start) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: mlockall takes plain flags and changes no memory's contents.
    let ret = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The address range of a `/proc/self/maps` line that maps a file privately and readably
/// (`START-END r?xp OFFSET DEV INODE /PATH`); `None` for anything else: anonymous memory, a
/// shared mapping (a RAM disk's memfd), a guard gap (`---p`).
fn private_file_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let path = fields.nth(3)?;
    if perms.first() != Some(&b'r') || perms.get(3) != Some(&b'p') || !path.starts_with('/') {
        return None;
    }
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

/// Sets the process's command line as `/proc/PID/cmdline` shows it (`ps`, systemd) to
/// `args`, without changing its own arguments: `prctl(PR_SET_MM, PR_SET_MM_ARG_START /
/// ARG_END)` pointed at a copy that lives as long as the process. systemd leaves a process
/// whose `argv[0]` starts with `@` running at shutdown (a root storage daemon). Needs
/// `CAP_SYS_RESOURCE`.
pub fn set_command_line(args: &[&str]) -> io::Result<()> {
    let mut text = Vec::new();
    for arg in args {
        text.extend_from_slice(arg.as_bytes());
        text.push(0);
    }
    // For the process's life: the kernel reads it whenever /proc/PID/cmdline is read.
    let text: &'static [u8] = Box::leak(text.into_boxed_slice());
    let start = text.as_ptr() as libc::c_ulong;
    let end = start + text.len() as libc::c_ulong;
    let set = |what: libc::c_int, at: libc::c_ulong| {
        // SAFETY: prctl takes plain integers; the kernel only checks that `at` lies in this
        // process's address space (it does: `text`), and reads it on later /proc reads.
        let ret = unsafe { libc::prctl(libc::PR_SET_MM, what, at, 0, 0) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // The kernel keeps start ≤ end at every step, so the order depends on where the copy
    // lies against the current arguments: try one, then the other.
    set(libc::PR_SET_MM_ARG_START, start)
        .and_then(|()| set(libc::PR_SET_MM_ARG_END, end))
        .or_else(|_| {
            set(libc::PR_SET_MM_ARG_END, end).and_then(|()| set(libc::PR_SET_MM_ARG_START, start))
        })
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
pub(crate) fn memfd(name: &std::ffi::CStr) -> io::Result<File> {
    // SAFETY: `name` is a NUL-terminated string alive for the call; the flags are plain bits.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Punches a hole of `len` bytes at `offset` into `file`, keeping its size: the range reads
/// as zeroes, and whole blocks inside it are freed.
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(ublk_core::Errno::EINVAL.into());
    };
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: fallocate takes plain integers; `file` is open for the call.
    if unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Shuts a socket down both ways (`shutdown(SHUT_RDWR)`): every operation on it ends (a
/// receive with 0 bytes, a send with `EPIPE`), and the peer sees the connection closed.
pub(crate) fn shutdown_socket(socket: &impl AsRawFd) {
    // SAFETY: shutdown takes plain integers; the descriptor is the caller's, open.
    unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
}

/// `BLKSSZGET`: the logical block size of block device `file`.
pub(crate) fn logical_block_size(file: &File) -> io::Result<u32> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at `bytes`.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut bytes) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(bytes).map_err(|_| ublk_core::Errno::EINVAL.into())
}

/// `STATX_DIOALIGN` of open file `file`: `Ok(Some((offset, memory)))`, the alignments direct
/// I/O needs of file offsets and of memory (both 0 where the file system cannot do direct
/// I/O); `Ok(None)` where the kernel or file system does not say.
pub(crate) fn dio_alignment(file: &File) -> io::Result<Option<(u32, u32)>> {
    // SAFETY: all-zero bytes are a valid `statx` (integers only).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // The system call, not glibc's `statx`: std declares that symbol weak (it probes for it),
    // and a program linked statically with LTO then gets the weak reference for every user,
    // which pulls nothing from libc.a and calls address 0.
    // SAFETY: the path is an empty C string with AT_EMPTY_PATH, so the kernel stats the open
    // file; it writes only into `stx`, a valid, writable `statx`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_statx,
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx as *mut libc::statx,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stx.stx_mask & libc::STATX_DIOALIGN != 0)
        .then_some((stx.stx_dio_offset_align, stx.stx_dio_mem_align)))
}

/// Sets open file `file` up for I/O (`fcntl(F_SETFL)`): blocking (`O_NONBLOCK` off, which
/// io_uring would honour with EAGAIN), and with `O_DIRECT` if `direct`, so that its I/O
/// bypasses the page cache. Fails with `EINVAL` where the file system cannot do direct I/O.
pub(crate) fn set_file_flags(file: &File, direct: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags =
        (flags & !(libc::O_NONBLOCK | libc::O_DIRECT)) | if direct { libc::O_DIRECT } else { 0 };
    // SAFETY: F_SETFL takes the new status flags as an int.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A set of signals (`sigset_t`).
#[derive(Clone, Copy)]
pub(crate) struct SignalSet(libc::sigset_t);

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSet")
    }
}

impl SignalSet {
    /// The set of `signals`.
    pub(crate) fn of(signals: &[libc::c_int]) -> SignalSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; the signal numbers are the caller's constants.
        unsafe {
            libc::sigemptyset(&mut set);
            for &sig in signals {
                libc::sigaddset(&mut set, sig);
            }
        }
        SignalSet(set)
    }

    /// Blocks the set in the calling thread (and in threads it starts later).
    pub(crate) fn block(&self) -> io::Result<()> {
        // SAFETY: `self.0` is initialised; a null old-set pointer is allowed.
        let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if ret != 0 {
            return Err(io::Error::from_raw_os_error(ret));
        }
        Ok(())
    }

    /// Waits up to `timeout` for a signal of the set, which must be blocked; its number, or
    /// `None` when the time passed first (zero: only one already pending).
    pub(crate) fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `self.0` is initialised; a null siginfo pointer is allowed; `ts` is a valid
        // timespec.
        let sig = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// True if process `pid` exists (`kill(pid, 0)`), whoever owns it. `pid` must be positive:
/// 0 and negative numbers name process groups.
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; plain integers.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Sends signal `sig` (`libc::SIGTERM`, ...) to process `pid` (`kill`), which must be
/// positive: 0 and negative numbers name process groups and are refused with `EINVAL`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(ublk_core::Errno::EINVAL.into());
    }
    // SAFETY: kill takes plain integers; `pid` names one process.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Which side of a [`fork`] this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// The parent; the child has this pid.
    Parent(i32),
    /// The child.
    Child,
}

/// `fork()`: a copy of this process.
///
/// # Safety
/// The calling process must have one thread: the child holds only the thread that forked,
/// and any lock another thread held (the allocator's, stdout's) would stay locked in it
/// forever. Call it before any thread (a device's queue threads) exists.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: forwarded to the caller: a single-threaded process, so the child is a complete
    // copy that may go on using the Rust runtime.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// A pipe (`pipe2`, close-on-exec): the read end, then the write end.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is an array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two new descriptors that nothing else owns.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// `setsid()`: a new session and process group led by this process, with no controlling
/// terminal, so a terminal's signals (Ctrl-C, hang-up) no longer reach it. Fails (`EPERM`) in
/// a process group leader.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Points stdin, stdout and stderr at `/dev/null` (`dup2`).
pub fn stdio_to_dev_null() -> io::Result<()> {
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns; `null` stays
        // open for the call.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Closes every descriptor of this process from 3 up but those in `keep`: what a daemon
/// inherited (the write end of its caller's pipe, say) would otherwise stay open for its
/// whole life. Uses `close_range` (Linux 5.9), else the list in `/proc/self/fd`.
///
/// Descriptors that Rust values own (`File`, `OwnedFd`) must be among `keep`, or never be
/// used again: their owners would close whatever number they had later.
pub fn close_descriptors_except(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    keep.dedup();
    // The gaps between the kept descriptors: [3, k0), (k0, k1), ..., (kn, MAX].
    let mut first: u32 = 3;
    let mut gaps = Vec::new();
    for &fd in &keep {
        let fd = fd as u32;
        if fd > first {
            gaps.push((first, fd - 1));
        }
        first = fd + 1;
    }
    gaps.push((first, u32::MAX));
    for &(lo, hi) in &gaps {
        // SAFETY: close_range takes plain integers and closes only this process's descriptors
        // in the range; none of them is used again (the caller keeps what it needs).
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                libc::c_long::from(lo),
                libc::c_long::from(hi),
                0 as libc::c_long,
            )
        };
        if r != 0 {
            return close_listed_except(&keep);
        }
    }
    Ok(())
}

/// [`close_descriptors_except`] for kernels without close_range: every descriptor listed in
/// /proc/self/fd (listed first, closed after, as the listing's own descriptor is among them).
fn close_listed_except(keep: &[RawFd]) -> io::Result<()> {
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| *fd >= 3 && !keep.contains(fd)) {
        // SAFETY: close of a descriptor number of this process that no one uses again (the
        // listing's own, already closed, fails harmlessly with EBADF).
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Waits up to `timeout` for `fd` to be readable (or closed at the other end): true if it is.
/// A signal ends the wait early with `false`.
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, for the duration of the call.
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        n if n > 0 => Ok(true),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// How a child process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildExit::Code(c) => write!(f, "exit code {c}"),
            ChildExit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Reaps child `pid` if it has ended (`waitpid` with `WNOHANG`): `None` while it runs.
pub fn try_reap(pid: i32) -> io::Result<Option<ChildExit>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int; WNOHANG makes the call return at once.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        ChildExit::Signal(libc::WTERMSIG(status))
    } else {
        ChildExit::Code(libc::WEXITSTATUS(status))
    }))
}

/// The effective user id of this process (`geteuid`).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets the file-mode creation mask (`umask`) of this process; returns the previous one.
/// What creates files with fixed modes sets them explicitly, whatever the mask.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask takes a plain mode and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// 64 random bits from the kernel (`getrandom`), e.g. for a file name no one can guess.
pub fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the live local array.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_pipe_carries_bytes_and_reports_readable() {
        let (mut r, mut w) = pipe().unwrap();
        assert!(!wait_readable(&r, Duration::from_millis(1)).unwrap());
        w.write_all(b"x").unwrap();
        assert!(wait_readable(&r, Duration::from_secs(1)).unwrap());
        let mut b = [0u8; 1];
        r.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn batch_scheduling_is_the_calling_threads_own() {
        // In a thread of its own: the policy is per thread, and the test runner's stays.
        let policies = std::thread::spawn(|| {
            // SAFETY: sched_getscheduler takes a pid (0: this thread) and touches no memory.
            let before = unsafe { libc::sched_getscheduler(0) };
            set_batch_scheduling().unwrap();
            // SAFETY: as above.
            (before, unsafe { libc::sched_getscheduler(0) })
        })
        .join()
        .unwrap();
        assert_eq!(policies, (libc::SCHED_OTHER, libc::SCHED_BATCH));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
    }

    #[test]
    fn processes_and_signals_are_checked() {
        assert!(process_exists(std::process::id() as i32));
        assert!(!process_exists(0) && !process_exists(-1));
        assert_eq!(kill(0, 0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_eq!(kill(-1, 0).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert_ne!(random_u64().unwrap(), random_u64().unwrap());
    }

    #[test]
    fn only_private_readable_file_mappings_are_locked_whole() {
        let line = |s| private_file_mapping(s);
        assert_eq!(
            line("00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/ublk"),
            Some((0x400000, 0x452000))
        );
        assert_eq!(
            line("7f00-8f00 r--p 00001000 08:02 17 /usr/lib/libc.so.6 (deleted)"),
            Some((0x7f00, 0x8f00))
        );
        // A RAM disk's memfd (shared), anonymous memory, a guard gap, the stack.
        assert_eq!(
            line("7f00-8f00 rw-s 00000000 00:01 5 /memfd:ublk (deleted)"),
            None
        );
        assert_eq!(line("7f00-8f00 rw-p 00000000 00:00 0"), None);
        assert_eq!(
            line("7f00-8f00 ---p 00000000 08:02 17 /usr/lib/libc.so.6"),
            None
        );
        assert_eq!(line("7ffd-7ffe rw-p 00000000 00:00 0 [stack]"), None);
        assert_eq!(line("garbage"), None);
        assert_eq!(line("8f00-7f00 r-xp 00000000 08:02 17 /bin/x"), None);
    }

    #[test]
    fn the_command_line_can_be_renamed_where_permitted() {
        // The test binary's own command line is put back afterwards.
        let before = std::fs::read("/proc/self/cmdline").unwrap();
        match set_command_line(&["@ublk-test", "arg"]) {
            Ok(()) => {
                assert_eq!(
                    std::fs::read("/proc/self/cmdline").unwrap(),
                    b"@ublk-test\0arg\0"
                );
                let args: Vec<&str> = before
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| std::str::from_utf8(a).unwrap())
                    .collect();
                set_command_line(&args).unwrap();
                assert_eq!(std::fs::read("/proc/self/cmdline").unwrap(), before);
            }
            // Without CAP_SYS_RESOURCE.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
}
