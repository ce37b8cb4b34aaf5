//! The loop target: a device backed by a regular file or a block device, whose I/O goes
//! through the queue's own io_uring, so a queue thread never blocks on the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ublk_core::abi::uring::Sqe64;
use ublk_core::{Errno, IoOp};

use super::{
    DiscardLimits, IoContext, IoFlags, Properties, QueueInfo, Reply, Request, Target, TargetQueue,
};
use crate::error::{Error, Result};

/// A short read or write is resubmitted for the rest; an operation the kernel answers with
/// EAGAIN or EINTR is retried this many times before the error is passed on.
const RETRIES: u8 = 8;

/// How to open a [`Loop`] target's backing file.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    path: PathBuf,
    buffered: bool,
    read_only: bool,
    logical_block_size: Option<u32>,
}

impl LoopOptions {
    /// Options for `path` (a regular file or a block device): direct I/O if possible,
    /// read-write, the backing file's block size.
    pub fn new(path: impl AsRef<Path>) -> LoopOptions {
        LoopOptions {
            path: path.as_ref().to_path_buf(),
            buffered: false,
            read_only: false,
            logical_block_size: None,
        }
    }

    /// Go through the page cache (no `O_DIRECT`), even where direct I/O would work.
    pub fn buffered(mut self, on: bool) -> Self {
        self.buffered = on;
        self
    }

    /// Open the file read-only; the device is then read-only too.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// The device's logical block size (default: the backing device's, or its direct-I/O
    /// alignment, else 512). One below the direct-I/O alignment means buffered I/O.
    pub fn logical_block_size(mut self, bytes: u32) -> Self {
        self.logical_block_size = Some(bytes);
        self
    }

    /// Opens the backing file and works out how to serve it. Every problem (a missing file,
    /// a directory, an empty file, a size that is not a whole number of blocks) is an error
    /// here, before any device exists.
    pub fn open(self) -> Result<Loop> {
        Loop::open_with(self)
    }
}

/// A device backed by a file or a block device (the kernel's `loop`, served in userspace).
///
/// - READ and WRITE go to the file as io_uring operations on the queue's ring, straight
///   into and out of the request's buffer; short transfers are resubmitted for the rest.
/// - Direct I/O (`O_DIRECT`) by default when the file system allows it and the device's
///   block size meets the file's alignment; else buffered, and [`Loop::buffered_reason`]
///   says why.
/// - The device has a volatile write cache: FLUSH is an `fdatasync`, and a FUA write is
///   written with `RWF_DSYNC`.
/// - DISCARD punches a hole (`fallocate`); WRITE_ZEROES zeroes the range, deallocating it
///   unless the request says NOUNMAP. Where the file system can do only one of the two
///   (tmpfs cannot zero a range), WRITE_ZEROES uses the other: either reads back as zeroes.
///   The file's errors reach the block layer as their errno.
#[derive(Debug)]
pub struct Loop {
    file: File,
    path: PathBuf,
    size: u64,
    block_device: bool,
    buffered_reason: Option<String>,
    read_only: bool,
    logical_block_size: u32,
    rotational: bool,
    discard: Option<DiscardLimits>,
}

impl Loop {
    /// Opens `path` with the default [`LoopOptions`].
    pub fn open(path: impl AsRef<Path>) -> Result<Loop> {
        LoopOptions::new(path).open()
    }

    /// Options for `path`, to open it differently.
    pub fn options(path: impl AsRef<Path>) -> LoopOptions {
        LoopOptions::new(path)
    }

    /// The backing file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backing file's size in bytes: the device's size unless the builder sets a
    /// smaller one.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True if I/O bypasses the page cache (`O_DIRECT`).
    pub fn is_direct(&self) -> bool {
        self.buffered_reason.is_none()
    }

    /// Why I/O goes through the page cache, if it does (asked for, or direct I/O is not
    /// possible: worth a warning, since buffered I/O caches every block twice).
    pub fn buffered_reason(&self) -> Option<&str> {
        self.buffered_reason.as_deref()
    }

    /// The device's logical block size.
    pub fn logical_block_size(&self) -> u32 {
        self.logical_block_size
    }

    /// True if the backing file is a block device.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// True if the file was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn open_with(opts: LoopOptions) -> Result<Loop> {
        let path = opts.path;
        let shown = path.display();
        let meta = std::fs::metadata(&path)
            .map_err(|e| Error::io(format!("cannot open backing file {shown}"), e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(Error::invalid(
                "backing file",
                format!("{shown} is a directory"),
            ));
        }
        let block_device = kind.is_block_device();
        if !kind.is_file() && !block_device {
            return Err(Error::invalid(
                "backing file",
                format!("{shown} is neither a regular file nor a block device"),
            ));
        }
        let open = |direct: bool| {
            OpenOptions::new()
                .read(true)
                .write(!opts.read_only)
                .custom_flags(libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 })
                .open(&path)
        };
        let mut file = open(false).map_err(|e| {
            let hint = if !opts.read_only
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EACCES | libc::EROFS | libc::EPERM)
                ) {
                " (read-only? then open it read-only)"
            } else {
                ""
            };
            Error::io(format!("cannot open backing file {shown}{hint}"), e)
        })?;
        let size = if block_device {
            file.seek(SeekFrom::End(0))
                .map_err(|e| Error::io(format!("finding the size of {shown}"), e))?
        } else {
            meta.len()
        };
        if size == 0 {
            return Err(Error::invalid(
                "backing file",
                format!("{shown} is empty (0 bytes)"),
            ));
        }

        let device_block =
            if block_device {
                Some(logical_block_size_of(&file).map_err(|e| {
                    Error::io(format!("reading the logical block size of {shown}"), e)
                })?)
            } else {
                None
            };
        let dio_align = direct_io_alignment(&file, &meta, device_block);
        let page = ublk_core::sys::page_size() as u32;
        // ublk's blocks are at most a page: a backing file that wants larger ones (a disk of
        // 64 KiB sectors) is served with page-sized blocks and buffered I/O.
        let natural = device_block.or(dio_align).unwrap_or(512).clamp(512, page);
        let logical_block_size = opts.logical_block_size.unwrap_or(natural);
        if !logical_block_size.is_power_of_two() || !(512..=page).contains(&logical_block_size) {
            return Err(Error::invalid(
                "logical block size",
                format!("must be a power of two in 512..={page} bytes, got {logical_block_size}"),
            ));
        }
        if size % u64::from(logical_block_size) != 0 {
            return Err(Error::invalid(
                "backing file",
                format!(
                    "{shown} is {size} bytes, not a whole number of {logical_block_size}-byte blocks"
                ),
            ));
        }

        let mut buffered_reason = match dio_align {
            _ if opts.buffered => Some("buffered I/O was asked for".to_string()),
            None => Some(format!(
                "the file system of {shown} does not support direct I/O"
            )),
            Some(align) if align > logical_block_size => Some(format!(
                "the logical block size ({logical_block_size} bytes) is below the direct-I/O alignment of {shown} ({align} bytes)"
            )),
            Some(_) => None,
        };
        if buffered_reason.is_none() {
            match open(true) {
                Ok(direct) => file = direct,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    buffered_reason = Some(format!(
                        "the file system of {shown} refuses direct I/O (O_DIRECT)"
                    ));
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("cannot open backing file {shown} for direct I/O"),
                        e,
                    ));
                }
            }
        }

        let queue_dev = if block_device {
            meta.rdev()
        } else {
            meta.dev()
        };
        let rotational = queue_attr(queue_dev, "rotational").is_some_and(|v| v == 1);
        let discard = if opts.read_only {
            None
        } else if block_device {
            // fallocate on a block device zeroes the range: offer what it can zero.
            queue_attr(queue_dev, "write_zeroes_max_bytes")
                .filter(|&max| max > 0)
                .map(|max| DiscardLimits {
                    granularity: queue_attr(queue_dev, "discard_granularity")
                        .and_then(|g| u32::try_from(g).ok())
                        .unwrap_or(0)
                        .max(logical_block_size),
                    max_discard_bytes: max,
                    max_write_zeroes_bytes: max,
                })
        } else {
            // Holes are punched in file-system blocks.
            Some(DiscardLimits {
                granularity: u32::try_from(meta.blksize())
                    .unwrap_or(0)
                    .max(logical_block_size),
                max_discard_bytes: u64::from(u32::MAX) * 512,
                max_write_zeroes_bytes: u64::from(u32::MAX) * 512,
            })
        };

        Ok(Loop {
            file,
            path,
            size,
            block_device,
            buffered_reason,
            read_only: opts.read_only,
            logical_block_size,
            rotational,
            discard,
        })
    }
}

/// `BLKSSZGET`: a block device's logical block size.
fn logical_block_size_of(file: &File) -> io::Result<u32> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at `bytes`.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut bytes) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// The file offset alignment direct I/O needs, or `None` if the file system cannot do
/// direct I/O. As the kernel's loop driver: the file system's word (`STATX_DIOALIGN`) if it
/// gives one, else the logical block size of the disk under it, else 512.
fn direct_io_alignment(
    file: &File,
    meta: &std::fs::Metadata,
    device_block: Option<u32>,
) -> Option<u32> {
    // SAFETY: all-zero bytes are a valid `statx` (integers only).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the path is an empty C string with AT_EMPTY_PATH, so the kernel stats the open
    // file; it writes only into `stx`, a valid, writable `statx`.
    let ret = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    if ret == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0 {
        // A file system that cannot do direct I/O reports zero alignments.
        return (stx.stx_dio_mem_align != 0).then_some(stx.stx_dio_offset_align.max(512));
    }
    if device_block.is_some() {
        return device_block;
    }
    let under = queue_attr(meta.dev(), "logical_block_size");
    Some(under.and_then(|b| u32::try_from(b).ok()).unwrap_or(512))
}

/// A number from the block queue attributes (`/sys/dev/block/MAJ:MIN/queue/NAME`) of the
/// disk with device number `dev`, or of the disk a partition `dev` is on.
fn queue_attr(dev: u64, name: &str) -> Option<u64> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let base = format!("/sys/dev/block/{major}:{minor}");
    [
        format!("{base}/queue/{name}"),
        format!("{base}/../queue/{name}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|text| text.trim().parse().ok())
}

impl Target for Loop {
    type Queue = LoopQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<LoopQueue> {
        Ok(LoopQueue {
            ops: vec![FileOp::default(); usize::from(queue.depth)],
            cannot_zero: false,
            cannot_punch: false,
        })
    }

    fn files(&self) -> Vec<std::os::fd::RawFd> {
        vec![self.file.as_raw_fd()]
    }

    fn properties(&self) -> Properties {
        let writable = !self.read_only;
        Properties {
            size: Some(self.size),
            logical_block_size: Some(self.logical_block_size),
            min_logical_block_size: self.is_direct().then_some(self.logical_block_size),
            physical_block_size: None,
            read_only: self.read_only,
            rotational: Some(self.rotational),
            volatile_cache: Some(writable),
            fua: Some(writable),
            discard: self.discard,
        }
    }
}

/// What a tag's file operation is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Read,
    Write,
    Sync,
    Fallocate(i32),
}

/// A tag's operation on the backing file, while it is out.
#[derive(Clone, Copy, Debug, Default)]
struct FileOp {
    kind: Kind,
    offset: u64,
    /// READ/WRITE: bytes asked for, and done so far. Fallocate: the range's length.
    len: u64,
    done: u64,
    fua: bool,
    /// A WRITE_ZEROES, which may fall back from punching a hole to zeroing the range.
    write_zeroes: bool,
    retries: u8,
}

/// A queue of a [`Loop`] device: one file operation per tag at most, on the queue's ring.
#[derive(Debug)]
pub struct LoopQueue {
    ops: Vec<FileOp>,
    /// The file system refused to zero a range (tmpfs cannot): zero by punching instead.
    cannot_zero: bool,
    /// The file system refused to punch a hole: zero WRITE_ZEROES ranges instead.
    cannot_punch: bool,
}

const KEEP_SIZE_PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const KEEP_SIZE_ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

impl LoopQueue {
    /// Sends `tag`'s operation (the rest of it, for a transfer already partly done).
    fn submit(&mut self, tag: u16, io: &mut IoContext<'_, '_>) -> io::Result<()> {
        let op = self.ops[usize::from(tag)];
        let file = io.file(0);
        let sqe = match op.kind {
            Kind::Read | Kind::Write => {
                let base = io
                    .buffer_ptr(tag)
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
                // done < len ≤ the buffer's length (checked when the request was decoded).
                let at = base.wrapping_add(op.done as usize);
                let len = (op.len - op.done) as u32;
                let offset = op.offset + op.done;
                if op.kind == Kind::Read {
                    Sqe64::read(file, at, len, offset, 0)
                } else {
                    let mut sqe = Sqe64::write(file, at, len, offset, 0);
                    if op.fua {
                        sqe.op_flags = libc::RWF_DSYNC as u32;
                    }
                    sqe
                }
            }
            Kind::Sync => Sqe64::fsync(file, true, 0),
            Kind::Fallocate(mode) => Sqe64::fallocate(file, mode, op.offset, op.len, 0),
        };
        // SAFETY: a read or write points at `tag`'s buffer, from `done` to the request's
        // length, inside the buffer. The tag stays Owned (its buffer ours alone) until
        // `op_done` answers the request, which is after this operation completes.
        unsafe { io.push(sqe, tag, 0) }
    }

    fn start(&mut self, tag: u16, op: FileOp, io: &mut IoContext<'_, '_>) -> Reply {
        self.ops[usize::from(tag)] = op;
        match self.submit(tag, io) {
            Ok(()) => Reply::Later,
            Err(_) => Reply::error(Errno::EIO),
        }
    }
}

impl TargetQueue for LoopQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        if usize::from(req.tag) >= self.ops.len() {
            return Reply::error(Errno::EIO);
        }
        let op = FileOp {
            offset: req.offset,
            len: req.len,
            fua: req.flags.contains(IoFlags::FUA),
            write_zeroes: req.op == IoOp::WriteZeroes,
            ..FileOp::default()
        };
        let kind = match req.op {
            IoOp::Read | IoOp::Write if req.len == 0 => return Reply::Done(0),
            IoOp::Read => Kind::Read,
            IoOp::Write => Kind::Write,
            IoOp::Flush => Kind::Sync,
            IoOp::Discard => Kind::Fallocate(KEEP_SIZE_PUNCH),
            IoOp::WriteZeroes => {
                let keep_allocated = req.flags.contains(IoFlags::NOUNMAP);
                if (keep_allocated && !self.cannot_zero) || self.cannot_punch {
                    Kind::Fallocate(KEEP_SIZE_ZERO)
                } else {
                    Kind::Fallocate(KEEP_SIZE_PUNCH)
                }
            }
            _ => return Reply::error(Errno(libc::EOPNOTSUPP)),
        };
        self.start(req.tag, FileOp { kind, ..op }, io)
    }

    fn op_done(&mut self, tag: u16, _cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        let Some(op) = self.ops.get_mut(usize::from(tag)) else {
            return;
        };
        let answer = match (op.kind, result) {
            (Kind::Read | Kind::Write, n) if n > 0 => {
                op.done += n as u64;
                if op.done >= op.len {
                    Some(op.len as i32)
                } else {
                    op.retries = 0;
                    None
                }
            }
            // End of file before the request's end: the file shrank under the device.
            (Kind::Read | Kind::Write, 0) => Some(-libc::EIO),
            (_, e) if (e == -libc::EAGAIN || e == -libc::EINTR) && op.retries < RETRIES => {
                op.retries += 1;
                None
            }
            // WRITE_ZEROES either way: punched or zeroed, the range reads as zeroes (NOUNMAP
            // only asks to keep it allocated). Remembered, so the next one goes straight to
            // what works.
            (Kind::Fallocate(mode), e)
                if e == -libc::EOPNOTSUPP && op.write_zeroes && op.retries == 0 =>
            {
                op.retries = 1;
                if mode == KEEP_SIZE_PUNCH {
                    self.cannot_punch = true;
                    op.kind = Kind::Fallocate(KEEP_SIZE_ZERO);
                } else {
                    self.cannot_zero = true;
                    op.kind = Kind::Fallocate(KEEP_SIZE_PUNCH);
                }
                None
            }
            (_, e) => Some(e.min(0)),
        };
        let answer = answer.or_else(|| self.submit(tag, io).err().map(|_| -libc::EIO));
        if let Some(result) = answer {
            io.complete(tag, result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("ublk-loop-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn file(&self, name: &str, len: u64) -> PathBuf {
            let path = self.0.join(name);
            File::create(&path).unwrap().set_len(len).unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn error_of(opts: LoopOptions) -> String {
        opts.open().unwrap_err().to_string()
    }

    #[test]
    fn bad_backing_files_are_refused_by_name() {
        let dir = Scratch::new("bad");
        let missing = dir.0.join("missing.img");
        let cases = [
            (
                LoopOptions::new(&missing),
                format!("cannot open backing file {}: ", missing.display()),
            ),
            (
                LoopOptions::new(&dir.0),
                format!("invalid backing file: {} is a directory", dir.0.display()),
            ),
            (
                LoopOptions::new(dir.file("empty.img", 0)),
                "is empty (0 bytes)".to_string(),
            ),
            (
                LoopOptions::new(dir.file("odd.img", 1000)),
                "is 1000 bytes, not a whole number of 512-byte blocks".to_string(),
            ),
            (
                LoopOptions::new(dir.file("page.img", 6144)).logical_block_size(4096),
                "not a whole number of 4096-byte blocks".to_string(),
            ),
            (
                LoopOptions::new("/dev/null"),
                "/dev/null is neither a regular file nor a block device".to_string(),
            ),
            (
                LoopOptions::new(dir.file("lbs.img", 1 << 20)).logical_block_size(1000),
                "invalid logical block size: must be a power of two".to_string(),
            ),
        ];
        for (opts, want) in cases {
            let msg = error_of(opts);
            assert!(msg.contains(&want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn a_writable_file_offers_its_size_cache_and_discard() {
        let dir = Scratch::new("rw");
        let target = Loop::open(dir.file("disk.img", 8 << 20)).unwrap();
        assert_eq!(target.size(), 8 << 20);
        assert!(!target.is_block_device());
        let p = target.properties();
        assert_eq!(p.size, Some(8 << 20));
        assert_eq!(p.logical_block_size, Some(target.logical_block_size()));
        assert_eq!(
            (p.volatile_cache, p.fua, p.read_only),
            (Some(true), Some(true), false)
        );
        let d = p.discard.expect("files punch holes");
        assert!(d.granularity >= target.logical_block_size());
        assert_eq!(d.granularity % target.logical_block_size(), 0);
        // Direct I/O pins the block size from below; buffered I/O does not.
        assert_eq!(
            p.min_logical_block_size,
            target.is_direct().then_some(target.logical_block_size())
        );
        assert_eq!(target.files(), vec![target.file.as_raw_fd()]);
    }

    #[test]
    fn buffered_is_chosen_or_explained() {
        let dir = Scratch::new("buf");
        let path = dir.file("disk.img", 1 << 20);
        let target = Loop::options(&path).buffered(true).open().unwrap();
        assert!(!target.is_direct());
        assert_eq!(target.buffered_reason(), Some("buffered I/O was asked for"));
        assert_eq!(target.properties().min_logical_block_size, None);
        let target = Loop::open(&path).unwrap();
        if let Some(why) = target.buffered_reason() {
            assert!(why.contains("direct I/O"), "{why}");
        }
    }

    #[test]
    fn read_only_files_make_read_only_devices() {
        let dir = Scratch::new("ro");
        let target = Loop::options(dir.file("disk.img", 1 << 20))
            .read_only(true)
            .open()
            .unwrap();
        assert!(target.is_read_only());
        let p = target.properties();
        assert!(p.read_only);
        assert_eq!(
            (p.volatile_cache, p.fua, p.discard),
            (Some(false), Some(false), None)
        );
    }
}
