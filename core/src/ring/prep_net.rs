//! Building socket SQEs: `IORING_OP_SEND` and `IORING_OP_RECV`, on memory of this process or on
//! a registered buffer (a request's pages, for zero copy).

use super::prep::Target;
use crate::abi::uring::{
    IORING_OP_RECV, IORING_OP_SEND, IORING_RECVSEND_FIXED_BUF, Sqe, SqeLayout,
};

/// Where a socket operation's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketBuf {
    /// Memory of this process: `len` bytes at this address.
    Memory(*mut u8),
    /// Registered buffer `index`, from byte `offset` (the offset from its start for a buffer the
    /// kernel installed, whose base address is 0).
    Fixed {
        /// The slot of the ring's buffer table.
        index: u16,
        /// Where in it the bytes start.
        offset: u64,
    },
}

/// A send on a socket (`IORING_OP_SEND`). Named fields: a length and flags side by side are
/// too easy to swap. io_uring adds `MSG_NOSIGNAL` to every send, so a peer that hung up is an
/// `EPIPE`, never a `SIGPIPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketSend {
    /// The socket.
    pub socket: Target,
    /// The bytes to send.
    pub buf: SocketBuf,
    /// How many.
    pub len: u32,
    /// `MSG_*` flags (`MSG_WAITALL`: the kernel retries a short send until all is sent or it
    /// fails; `MSG_MORE`: more follows at once).
    pub msg_flags: u32,
}

/// A receive from a socket (`IORING_OP_RECV`); see [`SocketSend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketRecv {
    /// The socket.
    pub socket: Target,
    /// Where the bytes go.
    pub buf: SocketBuf,
    /// How many, at most.
    pub len: u32,
    /// `MSG_*` flags (`MSG_WAITALL`: complete only with `len` bytes, or at end of stream or
    /// on an error, with what came).
    pub msg_flags: u32,
}

impl<const CMD: usize> Sqe<CMD>
where
    Sqe<CMD>: SqeLayout,
{
    fn socket_op(
        opcode: u8,
        socket: Target,
        buf: SocketBuf,
        len: u32,
        msg_flags: u32,
        user_data: u64,
    ) -> Self {
        let mut sqe = Self::base(opcode, Some(socket), user_data);
        sqe.len = len;
        sqe.op_flags = msg_flags;
        match buf {
            SocketBuf::Memory(addr) => sqe.addr = addr as u64,
            SocketBuf::Fixed { index, offset } => {
                sqe.ioprio = IORING_RECVSEND_FIXED_BUF;
                sqe.buf_index = index;
                sqe.addr = offset;
            }
        }
        sqe
    }

    /// `IORING_OP_SEND`: sends `op.len` bytes of `op.buf` on `op.socket`.
    pub fn send(op: SocketSend, user_data: u64) -> Self {
        Self::socket_op(
            IORING_OP_SEND,
            op.socket,
            op.buf,
            op.len,
            op.msg_flags,
            user_data,
        )
    }

    /// `IORING_OP_RECV`: receives up to `op.len` bytes from `op.socket` into `op.buf`.
    pub fn recv(op: SocketRecv, user_data: u64) -> Self {
        Self::socket_op(
            IORING_OP_RECV,
            op.socket,
            op.buf,
            op.len,
            op.msg_flags,
            user_data,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::uring::{IOSQE_FIXED_FILE, Sqe64};

    #[test]
    fn socket_ops_put_each_field_where_the_kernel_reads_it() {
        let op = SocketSend {
            socket: Target::Fd(5),
            buf: SocketBuf::Fixed {
                index: 9,
                offset: 512,
            },
            len: 4096,
            msg_flags: libc::MSG_WAITALL as u32,
        };
        let sqe = Sqe64::send(op, 7);
        assert_eq!(
            (sqe.opcode, sqe.fd, sqe.flags & IOSQE_FIXED_FILE),
            (IORING_OP_SEND, 5, 0)
        );
        assert_eq!(
            (sqe.ioprio, sqe.buf_index, sqe.addr),
            (IORING_RECVSEND_FIXED_BUF, 9, 512)
        );
        assert_eq!(
            (sqe.len, sqe.op_flags, sqe.user_data),
            (4096, libc::MSG_WAITALL as u32, 7)
        );
        let mut byte = 0u8;
        let recv = SocketRecv {
            socket: Target::Fixed(1),
            buf: SocketBuf::Memory(&mut byte),
            len: 1,
            msg_flags: 0,
        };
        let sqe = Sqe64::recv(recv, 8);
        assert_eq!(
            (sqe.opcode, sqe.ioprio, sqe.buf_index),
            (IORING_OP_RECV, 0, 0)
        );
        assert_eq!(sqe.addr, &byte as *const u8 as u64);
        assert_eq!(sqe.flags & IOSQE_FIXED_FILE, IOSQE_FIXED_FILE);
    }
}
