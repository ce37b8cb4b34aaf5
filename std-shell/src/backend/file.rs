//! The loop target: a device backed by a regular file or a block device, whose I/O goes
//! through the queue's own io_uring, so a queue thread never blocks on the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ublk_core::DataPath;

use super::file_ops::FileOps;
use super::{DiscardLimits, IoContext, Properties, QueueInfo, Reply, Request, Target, TargetQueue};
use crate::error::{Error, Result};
use crate::os;

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
/// - READ and WRITE go to the file as io_uring operations on the queue's ring; on the
///   zero-copy path straight between the file and the request's pages (`READ_FIXED`,
///   `WRITE_FIXED`), so that with direct I/O the only data movement is the one the kernel's
///   own loop makes; on the others through a buffer of the server. Short transfers are
///   resubmitted for the rest.
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
    /// With direct I/O: the alignment it needs of memory, in bytes.
    dio_mem_align: Option<u32>,
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
        // One open, and every check below on what it opened: a path checked and then opened
        // (or opened twice) may name another file by the second look. O_NONBLOCK so that a
        // FIFO (refused below) cannot hold the open up waiting for a writer; it is cleared
        // with the direct-I/O flag, before any I/O.
        let file = OpenOptions::new()
            .read(true)
            .write(!opts.read_only)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EISDIR) {
                    return Error::invalid("backing file", format!("{shown} is a directory"));
                }
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
        let meta = file
            .metadata()
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
        let size = if block_device {
            (&file)
                .seek(SeekFrom::End(0))
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
                Some(os::logical_block_size(&file).map_err(|e| {
                    Error::io(format!("reading the logical block size of {shown}"), e)
                })?)
            } else {
                None
            };
        let dio_align = direct_io_alignment(&file, &meta, device_block);
        let page = ublk_core::sys::page_size() as u32;
        // ublk's blocks are at most a page: a backing file that wants larger ones (a disk of
        // 64 KiB sectors) is served with page-sized blocks and buffered I/O.
        let natural = device_block
            .or(dio_align.map(|a| a.offset))
            .unwrap_or(512)
            .clamp(512, page);
        let logical_block_size = opts.logical_block_size.unwrap_or(natural);
        crate::rules::logical_block_size(logical_block_size)?;
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
            Some(align) if align.offset > logical_block_size => Some(format!(
                "the logical block size ({logical_block_size} bytes) is below the direct-I/O alignment of {shown} ({} bytes)",
                align.offset
            )),
            Some(_) => None,
        };
        match os::set_file_flags(&file, buffered_reason.is_none()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && buffered_reason.is_none() => {
                buffered_reason = Some(format!(
                    "the file system of {shown} refuses direct I/O (O_DIRECT)"
                ));
                os::set_file_flags(&file, false)
                    .map_err(|e| Error::io(format!("setting up I/O on {shown}"), e))?;
            }
            Err(e) => {
                return Err(Error::io(format!("setting up I/O on {shown}"), e));
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

        let dio_mem_align = dio_align
            .filter(|_| buffered_reason.is_none())
            .map(|a| a.memory);
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
            dio_mem_align,
        })
    }
}

/// What direct I/O on a file needs aligned, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DioAlign {
    /// File offsets and lengths.
    offset: u32,
    /// Memory addresses (and segment lengths) of the buffers.
    memory: u32,
}

/// What direct I/O on `file` needs aligned, or `None` if the file system cannot do direct
/// I/O. As the kernel's loop driver: the file system's word (`STATX_DIOALIGN`) if it gives
/// one, else the logical block size of the disk under it (for memory too, to be safe), else
/// 512.
fn direct_io_alignment(
    file: &File,
    meta: &std::fs::Metadata,
    device_block: Option<u32>,
) -> Option<DioAlign> {
    if let Ok(Some((offset, memory))) = os::dio_alignment(file) {
        // A file system that cannot do direct I/O reports zero alignments.
        return (memory != 0).then_some(DioAlign {
            offset: offset.max(512),
            memory,
        });
    }
    let block = device_block.unwrap_or_else(|| {
        queue_attr(meta.dev(), "logical_block_size")
            .and_then(|b| u32::try_from(b).ok())
            .unwrap_or(512)
    });
    Some(DioAlign {
        offset: block,
        memory: block,
    })
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
        Ok(LoopQueue(FileOps::new(queue.depth, 0)))
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
            // Zero copy hands the request's own pages to O_DIRECT, which wants them aligned.
            dma_alignment: self.dio_mem_align,
            max_io_bytes: None,
        }
    }

    /// Zero copy first: the file's data moves straight between it and the request's pages,
    /// as with the kernel's loop. Then copy, which the driver does in its own task work; user
    /// copy costs a loop target a system call more per request for the same two copies.
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::ZeroCopy, DataPath::Copy, DataPath::UserCopy]
    }

    /// Off the zero-copy path the file's data is staged in a buffer of ours.
    fn wants_buffers(&self, path: DataPath) -> bool {
        path != DataPath::ZeroCopy
    }
}

/// A queue of a [`Loop`] device: its operations on the backing file, one per tag at most, on
/// the queue's ring.
#[derive(Debug)]
pub struct LoopQueue(FileOps);

impl TargetQueue for LoopQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        self.0.serve(req, io)
    }

    fn op_done(&mut self, tag: u16, _cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        self.0.op_done(tag, result, io);
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

    /// Defect 6 of issue 18: the backing file was checked by its path and then opened, twice,
    /// so a path that names another file by the next look (here: two files of different
    /// sizes renamed in turn over it) could be checked as one file and served as another.
    /// What is served must be what was checked: the size a `Loop` reports is the size of the
    /// descriptor it serves.
    #[test]
    fn what_is_served_is_what_was_checked() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};

        let dir = Scratch::new("swap");
        let (a, b) = (dir.file("a.img", 1 << 20), dir.file("b.img", 2 << 20));
        let path = dir.0.join("disk.img");
        std::fs::hard_link(&a, &path).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, tmp, path) = (Arc::clone(&stop), dir.0.join("tmp.img"), path.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for src in [&a, &b] {
                        let _ = std::fs::remove_file(&tmp);
                        std::fs::hard_link(src, &tmp).unwrap();
                        std::fs::rename(&tmp, &path).unwrap();
                    }
                }
            })
        };
        let (mut opened, mut mismatches) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let Ok(target) = Loop::open(&path) else {
                continue;
            };
            opened += 1;
            let fd = target.files()[0];
            let served = std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .len();
            if served != target.size() {
                mismatches += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(opened > 100, "only {opened} opens");
        assert_eq!(mismatches, 0, "of {opened} opens");
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
