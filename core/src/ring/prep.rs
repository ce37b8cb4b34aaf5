//! Building SQEs: one constructor per operation this crate issues.
//!
//! Constructors are safe: they only describe an operation. Handing one to the kernel is
//! [`Ring::push`](super::Ring::push), which is where the buffer-lifetime contract lives.

use crate::abi::Pod;
use crate::abi::uring::{
    IORING_FSYNC_DATASYNC, IORING_OP_ASYNC_CANCEL, IORING_OP_FALLOCATE, IORING_OP_FSYNC,
    IORING_OP_NOP, IORING_OP_POLL_ADD, IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_URING_CMD,
    IORING_OP_WRITE, IORING_OP_WRITE_FIXED, IOSQE_FIXED_FILE, Sqe, SqeLayout,
};
use crate::sys::RawFd;

/// The file an operation targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A plain file descriptor.
    Fd(RawFd),
    /// An index into the ring's registered files ([`Ring::register_files`](super::Ring::register_files)).
    Fixed(u32),
}

/// A read or write between a file and a registered buffer (`IORING_OP_READ_FIXED`,
/// `IORING_OP_WRITE_FIXED`). Named fields: four integers side by side are too easy to swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedIo {
    /// The file (a regular file, a block device, a socket, ...).
    pub file: Target,
    /// The slot of the ring's buffer table.
    pub buf_index: u16,
    /// Where in that buffer the transfer starts: the address for a buffer of this process's
    /// memory, the byte offset for one the kernel installed (its base address is 0).
    pub buf_addr: u64,
    /// Bytes to transfer.
    pub len: u32,
    /// Position in the file.
    pub file_offset: u64,
    /// `RWF_*` flags (e.g. `RWF_DSYNC` for a write through).
    pub rw_flags: u32,
}

/// A read into memory of this process (`IORING_OP_READ`). Named fields, as [`FixedIo`]: a
/// length, a position and flags are too easy to swap when they are arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    /// The file.
    pub file: Target,
    /// Where the data goes: `len` writable bytes.
    pub buf: *mut u8,
    /// Bytes to read.
    pub len: u32,
    /// Position in the file.
    pub file_offset: u64,
    /// `RWF_*` flags.
    pub rw_flags: u32,
}

/// A write from memory of this process (`IORING_OP_WRITE`); see [`Read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    /// The file.
    pub file: Target,
    /// Where the data comes from: `len` readable bytes.
    pub buf: *const u8,
    /// Bytes to write.
    pub len: u32,
    /// Position in the file.
    pub file_offset: u64,
    /// `RWF_*` flags (e.g. `RWF_DSYNC` for a write through).
    pub rw_flags: u32,
}

/// An `fallocate(2)` (`IORING_OP_FALLOCATE`): named fields, since its mode, offset and length
/// are three integers the kernel lays out in an unexpected order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fallocate {
    /// The file.
    pub file: Target,
    /// `FALLOC_FL_*` flags (0 allocates).
    pub mode: i32,
    /// Start of the range, in bytes.
    pub offset: u64,
    /// Length of the range, in bytes.
    pub len: u64,
}

/// `cmd_op` lives in the first four bytes of the SQE's `off` field (a union in C); building
/// the u64 from bytes puts it there whatever the byte order.
fn cmd_op_in_off(cmd_op: u32) -> u64 {
    let b = cmd_op.to_ne_bytes();
    u64::from_ne_bytes([b[0], b[1], b[2], b[3], 0, 0, 0, 0])
}

impl<const CMD: usize> Sqe<CMD>
where
    Sqe<CMD>: SqeLayout,
{
    pub(super) fn base(opcode: u8, target: Option<Target>, user_data: u64) -> Self {
        let mut sqe = <Self as Pod>::zeroed();
        sqe.opcode = opcode;
        sqe.user_data = user_data;
        match target {
            Some(Target::Fd(fd)) => sqe.fd = fd,
            Some(Target::Fixed(index)) => {
                sqe.fd = index as i32;
                sqe.flags |= IOSQE_FIXED_FILE;
            }
            None => sqe.fd = -1,
        }
        sqe
    }

    /// `IORING_OP_NOP`: completes with result 0.
    pub fn nop(user_data: u64) -> Self {
        Self::base(IORING_OP_NOP, None, user_data)
    }

    /// `IORING_OP_POLL_ADD`: completes once `target` has any of the `poll(2)` `events`
    /// (`libc::POLLIN`, ...); the result is the events that fired. Points at no memory.
    pub fn poll_add(target: Target, events: u16, user_data: u64) -> Self {
        let mut sqe = Self::base(IORING_OP_POLL_ADD, Some(target), user_data);
        // The kernel reads `poll32_events` with its 16-bit halves swapped on big-endian
        // machines (liburing's io_uring_prep_poll_add does the same).
        let events = u32::from(events);
        sqe.op_flags = if cfg!(target_endian = "big") {
            events.rotate_left(16)
        } else {
            events
        };
        sqe
    }

    /// A read or write of `len` bytes at file `offset`, from or into `addr`.
    fn rw(opcode: u8, file: Target, addr: u64, len: u32, offset: u64, user_data: u64) -> Self {
        let mut sqe = Self::base(opcode, Some(file), user_data);
        sqe.addr = addr;
        sqe.len = len;
        sqe.off = offset;
        sqe
    }

    /// `IORING_OP_READ`: reads `op.len` bytes at `op.file_offset` of `op.file` into `op.buf`.
    pub fn read(op: Read, user_data: u64) -> Self {
        let mut sqe = Self::rw(
            IORING_OP_READ,
            op.file,
            op.buf as u64,
            op.len,
            op.file_offset,
            user_data,
        );
        sqe.op_flags = op.rw_flags;
        sqe
    }

    /// `IORING_OP_WRITE`: writes `op.len` bytes from `op.buf` at `op.file_offset` of
    /// `op.file`.
    pub fn write(op: Write, user_data: u64) -> Self {
        let mut sqe = Self::rw(
            IORING_OP_WRITE,
            op.file,
            op.buf as u64,
            op.len,
            op.file_offset,
            user_data,
        );
        sqe.op_flags = op.rw_flags;
        sqe
    }

    /// `IORING_OP_READ_FIXED`: reads from `io.file` into registered buffer `io.buf_index`.
    pub fn read_fixed(io: FixedIo, user_data: u64) -> Self {
        Self::fixed(IORING_OP_READ_FIXED, io, user_data)
    }

    /// `IORING_OP_WRITE_FIXED`: writes registered buffer `io.buf_index` to `io.file`.
    pub fn write_fixed(io: FixedIo, user_data: u64) -> Self {
        Self::fixed(IORING_OP_WRITE_FIXED, io, user_data)
    }

    fn fixed(opcode: u8, io: FixedIo, user_data: u64) -> Self {
        let mut sqe = Self::rw(
            opcode,
            io.file,
            io.buf_addr,
            io.len,
            io.file_offset,
            user_data,
        );
        sqe.buf_index = io.buf_index;
        sqe.op_flags = io.rw_flags;
        sqe
    }

    /// `IORING_OP_ASYNC_CANCEL`: cancels the request submitted with `target_user_data`.
    /// Completes with 0 (cancelled), `-ENOENT` (not found: already completed) or `-EALREADY`
    /// (running; the worker was signalled to stop).
    pub fn cancel(target_user_data: u64, user_data: u64) -> Self {
        let mut sqe = Self::base(IORING_OP_ASYNC_CANCEL, None, user_data);
        sqe.addr = target_user_data;
        sqe
    }

    /// `IORING_OP_FSYNC`: `fsync`, or `fdatasync` when `datasync`.
    pub fn fsync(target: Target, datasync: bool, user_data: u64) -> Self {
        let mut sqe = Self::base(IORING_OP_FSYNC, Some(target), user_data);
        if datasync {
            sqe.op_flags = IORING_FSYNC_DATASYNC;
        }
        sqe
    }

    /// `IORING_OP_FALLOCATE`: `fallocate(op.file, op.mode, op.offset, op.len)`.
    pub fn fallocate(op: Fallocate, user_data: u64) -> Self {
        let mut sqe = Self::base(IORING_OP_FALLOCATE, Some(op.file), user_data);
        // The kernel's layout for fallocate: length in `addr`, mode in `len`.
        sqe.addr = op.len;
        sqe.len = op.mode as u32;
        sqe.off = op.offset;
        sqe
    }

    /// `IORING_OP_URING_CMD`: the driver command `cmd_op` with `payload` in the command area.
    /// A payload larger than the area does not compile.
    pub fn uring_cmd<T: Pod>(target: Target, cmd_op: u32, payload: &T, user_data: u64) -> Self {
        const {
            assert!(
                core::mem::size_of::<T>() <= CMD,
                "payload does not fit the SQE's command area"
            )
        };
        let mut sqe = Self::base(IORING_OP_URING_CMD, Some(target), user_data);
        sqe.off = cmd_op_in_off(cmd_op);
        let bytes = payload.as_bytes();
        sqe.cmd[..bytes.len()].copy_from_slice(bytes);
        sqe
    }

    /// The URING_CMD opcode this SQE carries.
    pub fn cmd_op(&self) -> u32 {
        let b = self.off.to_ne_bytes();
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The URING_CMD payload, read back as `T`.
    pub fn cmd_payload<T: Pod>(&self) -> Option<T> {
        T::read_from(&self.cmd)
    }

    /// With `IOSQE_*` flags added.
    pub fn with_flags(mut self, flags: u8) -> Self {
        self.flags |= flags;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::ctrl::{UBLK_U_CMD_ADD_DEV, UblksrvCtrlCmd};
    use crate::abi::io::{UBLK_U_IO_FETCH_REQ, UblksrvIoCmd};
    use crate::abi::uring::{Sqe64, Sqe128};

    #[test]
    fn uring_cmd_puts_op_and_payload_where_the_kernel_reads_them() {
        let hdr = UblksrvCtrlCmd {
            dev_id: 3,
            queue_id: u16::MAX,
            len: 64,
            addr: 0x1000,
            ..Default::default()
        };
        let sqe = Sqe128::uring_cmd(Target::Fd(7), UBLK_U_CMD_ADD_DEV, &hdr, 42);
        assert_eq!(sqe.opcode, IORING_OP_URING_CMD);
        assert_eq!(sqe.fd, 7);
        assert_eq!(sqe.user_data, 42);
        assert_eq!(sqe.cmd_op(), UBLK_U_CMD_ADD_DEV);
        // Byte 8 of the SQE is where the kernel's `cmd_op` starts.
        assert_eq!(&sqe.as_bytes()[8..12], &UBLK_U_CMD_ADD_DEV.to_ne_bytes());
        // The payload starts at byte 48: the header's `sqe->cmd`.
        assert_eq!(&sqe.as_bytes()[48..80], hdr.as_bytes());
        assert_eq!(sqe.cmd_payload::<UblksrvCtrlCmd>(), Some(hdr));
    }

    #[test]
    fn io_cmd_fits_a_64_byte_sqe() {
        let cmd = UblksrvIoCmd {
            q_id: 1,
            tag: 9,
            result: 0,
            addr: 0xdead_0000,
        };
        let sqe = Sqe64::uring_cmd(Target::Fixed(0), UBLK_U_IO_FETCH_REQ, &cmd, 9);
        assert_eq!(sqe.flags & IOSQE_FIXED_FILE, IOSQE_FIXED_FILE);
        assert_eq!(sqe.fd, 0);
        assert_eq!(&sqe.as_bytes()[48..64], cmd.as_bytes());
    }

    #[test]
    fn fixed_io_puts_each_field_where_the_kernel_reads_it() {
        let io = FixedIo {
            file: Target::Fixed(1),
            buf_index: 7,
            buf_addr: 4096,
            len: 8192,
            file_offset: 1 << 40,
            rw_flags: 2,
        };
        let sqe = Sqe64::read_fixed(io, 9);
        assert_eq!(sqe.opcode, IORING_OP_READ_FIXED);
        assert_eq!(
            (sqe.fd, sqe.flags & IOSQE_FIXED_FILE),
            (1, IOSQE_FIXED_FILE)
        );
        assert_eq!((sqe.buf_index, sqe.addr, sqe.len), (7, 4096, 8192));
        assert_eq!((sqe.off, sqe.op_flags, sqe.user_data), (1 << 40, 2, 9));
        assert_eq!(Sqe64::write_fixed(io, 9).opcode, IORING_OP_WRITE_FIXED);
    }

    #[test]
    fn fallocate_uses_the_kernels_field_layout() {
        let op = Fallocate {
            file: Target::Fd(3),
            mode: 0x03,
            offset: 4096,
            len: 8192,
        };
        let sqe = Sqe64::fallocate(op, 1);
        assert_eq!(sqe.opcode, IORING_OP_FALLOCATE);
        assert_eq!((sqe.off, sqe.addr, sqe.len), (4096, 8192, 3));
    }

    #[test]
    fn read_and_write_put_each_field_where_the_kernel_reads_it() {
        let mut buf = [0u8; 16];
        let read = Read {
            file: Target::Fixed(2),
            buf: buf.as_mut_ptr(),
            len: 16,
            file_offset: 1 << 33,
            rw_flags: 4,
        };
        let sqe = Sqe64::read(read, 7);
        assert_eq!(sqe.opcode, IORING_OP_READ);
        assert_eq!(
            (sqe.fd, sqe.flags & IOSQE_FIXED_FILE),
            (2, IOSQE_FIXED_FILE)
        );
        assert_eq!((sqe.addr, sqe.len), (buf.as_ptr() as u64, 16));
        assert_eq!((sqe.off, sqe.op_flags, sqe.user_data), (1 << 33, 4, 7));
        let write = Write {
            file: Target::Fd(5),
            buf: buf.as_ptr(),
            len: 8,
            file_offset: 512,
            rw_flags: 2,
        };
        let sqe = Sqe64::write(write, 8);
        assert_eq!(sqe.opcode, IORING_OP_WRITE);
        assert_eq!((sqe.fd, sqe.flags & IOSQE_FIXED_FILE), (5, 0));
        assert_eq!((sqe.addr, sqe.len, sqe.off), (buf.as_ptr() as u64, 8, 512));
        assert_eq!((sqe.op_flags, sqe.user_data), (2, 8));
    }
}
