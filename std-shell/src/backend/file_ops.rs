//! A queue's operations on one file, as io_uring operations on the queue's ring: the engine
//! under the loop target (its backing file) and the RAM disk's zero-copy path (its memfd).
//!
//! READ and WRITE move data between the file and the request on whichever data path the
//! device has: through the tag's buffer (copy), through the tag's buffer and a user copy
//! (user copy), or straight between the file and the request's pages (zero copy). Short
//! transfers are resubmitted for the rest; EAGAIN and EINTR are retried a few times; FLUSH is
//! an `fdatasync`, DISCARD and WRITE_ZEROES are `fallocate`s.

use std::io;

use ublk_core::abi::uring::Sqe64;
use ublk_core::ring::{Fallocate, Read, Write};
use ublk_core::{DataPath, Errno, IoOp, RequestIo};

use super::{IoContext, IoFlags, Reply, Request};

/// A short read or write is resubmitted for the rest; an operation the kernel answers with
/// EAGAIN or EINTR is retried this many times before the error is passed on.
const RETRIES: u8 = 8;

const KEEP_SIZE_PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const KEEP_SIZE_ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;

/// What a tag's file operation is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Read,
    Write,
    Sync,
    Fallocate(i32),
}

/// A tag's operation on the file, while it is out.
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

/// One queue's operations on one file: at most one per tag.
#[derive(Debug)]
pub(crate) struct FileOps {
    ops: Vec<FileOp>,
    /// The file, as the target's file index ([`IoContext::file`]).
    file: u32,
    /// The file system refused to zero a range (tmpfs cannot): zero by punching instead.
    cannot_zero: bool,
    /// The file system refused to punch a hole: zero WRITE_ZEROES ranges instead.
    cannot_punch: bool,
}

impl FileOps {
    /// Operations for a queue of `depth` tags on target file `file`.
    pub(crate) fn new(depth: u16, file: u32) -> FileOps {
        FileOps {
            ops: vec![FileOp::default(); usize::from(depth)],
            file,
            cannot_zero: false,
            cannot_punch: false,
        }
    }

    /// Starts `req` (READ, WRITE, FLUSH, DISCARD or WRITE_ZEROES) on the file; its answer
    /// comes from [`FileOps::op_done`].
    pub(crate) fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
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
            IoOp::Write => {
                if io.data_path() == DataPath::UserCopy {
                    // The data comes from the request into our buffer first, then to the file.
                    if let Err(e) = io.copy_request_to_buffer(req.tag, req.len as usize) {
                        return Reply::from_result(Err(e), 0);
                    }
                }
                Kind::Write
            }
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
            _ => return Reply::error(Errno::EOPNOTSUPP),
        };
        self.ops[usize::from(req.tag)] = FileOp { kind, ..op };
        match self.submit(req.tag, io) {
            Ok(()) => Reply::Later,
            Err(_) => Reply::error(Errno::EIO),
        }
    }

    /// Sends `tag`'s operation (the rest of it, for a transfer already partly done).
    fn submit(&mut self, tag: u16, io: &mut IoContext<'_, '_>) -> io::Result<()> {
        let op = self.ops[usize::from(tag)];
        let file = io.file(self.file);
        match op.kind {
            Kind::Read | Kind::Write => {
                // done < len ≤ the largest I/O, 32 MiB (checked when the request was decoded).
                let (at, len) = (op.done as u32, (op.len - op.done) as u32);
                let rw_flags = if op.kind == Kind::Write && op.fua {
                    libc::RWF_DSYNC as u32
                } else {
                    0
                };
                if io.data_path() == DataPath::ZeroCopy {
                    let rio = RequestIo {
                        file,
                        file_offset: op.offset + op.done,
                        request_offset: at,
                        len,
                        rw_flags,
                    };
                    return if op.kind == Kind::Read {
                        io.read_into_request(tag, rio, 0)
                    } else {
                        io.write_from_request(tag, rio, 0)
                    };
                }
                let base = io
                    .buffer_ptr(tag)
                    .ok_or_else(|| io::Error::from(Errno::EIO))?;
                let at = base.wrapping_add(at as usize);
                let offset = op.offset + op.done;
                let sqe = if op.kind == Kind::Read {
                    Sqe64::read(
                        Read {
                            file,
                            buf: at,
                            len,
                            file_offset: offset,
                            rw_flags,
                        },
                        0,
                    )
                } else {
                    Sqe64::write(
                        Write {
                            file,
                            buf: at,
                            len,
                            file_offset: offset,
                            rw_flags,
                        },
                        0,
                    )
                };
                // SAFETY: the operation points at `tag`'s buffer, from `done` to the request's
                // length, inside the buffer. The tag stays Owned (its buffer ours alone) until
                // `op_done` answers the request, which is after this operation completes.
                unsafe { io.push(sqe, tag, 0) }
            }
            Kind::Sync => {
                let sqe = Sqe64::fsync(file, true, 0);
                // SAFETY: an fsync points at no memory.
                unsafe { io.push(sqe, tag, 0) }
            }
            Kind::Fallocate(mode) => {
                let sqe = Sqe64::fallocate(
                    Fallocate {
                        file,
                        mode,
                        offset: op.offset,
                        len: op.len,
                    },
                    0,
                );
                // SAFETY: a fallocate points at no memory.
                unsafe { io.push(sqe, tag, 0) }
            }
        }
    }

    /// `tag`'s file operation finished with `result`: answer its request, or send the rest.
    pub(crate) fn op_done(&mut self, tag: u16, result: i32, io: &mut IoContext<'_, '_>) {
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
        if let Some(mut result) = answer {
            let op = self.ops[usize::from(tag)];
            if result > 0 && op.kind == Kind::Read && io.data_path() == DataPath::UserCopy {
                // The file's data is in our buffer: into the request with it.
                if io.copy_buffer_to_request(tag, op.len as usize).is_err() {
                    result = -libc::EIO;
                }
            }
            io.complete(tag, result);
        }
    }
}
