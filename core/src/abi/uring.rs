//! The io_uring kernel ABI (`linux/io_uring.h`): the parts this crate uses, with layouts checked.

use core::mem::{offset_of, size_of};

use static_assertions::const_assert_eq;

use super::Pod;

/// `IORING_OP_NOP`
pub const IORING_OP_NOP: u8 = 0;
/// `IORING_OP_FSYNC`
pub const IORING_OP_FSYNC: u8 = 3;
/// `IORING_OP_READ_FIXED`
pub const IORING_OP_READ_FIXED: u8 = 4;
/// `IORING_OP_WRITE_FIXED`
pub const IORING_OP_WRITE_FIXED: u8 = 5;
/// `IORING_OP_POLL_ADD`: completes when the file becomes ready (`poll32_events` in
/// `op_flags`).
pub const IORING_OP_POLL_ADD: u8 = 6;
/// `IORING_OP_ASYNC_CANCEL`: cancel the request whose `user_data` is in `addr`.
pub const IORING_OP_ASYNC_CANCEL: u8 = 14;
/// `IORING_OP_TIMEOUT`
pub const IORING_OP_TIMEOUT: u8 = 11;
/// `IORING_OP_FALLOCATE`
pub const IORING_OP_FALLOCATE: u8 = 17;
/// `IORING_OP_READ`
pub const IORING_OP_READ: u8 = 22;
/// `IORING_OP_WRITE`
pub const IORING_OP_WRITE: u8 = 23;
/// `IORING_OP_SEND`
pub const IORING_OP_SEND: u8 = 26;
/// `IORING_OP_RECV`
pub const IORING_OP_RECV: u8 = 27;
/// `IORING_OP_URING_CMD` (46; an early port used 27 and got nothing back).
pub const IORING_OP_URING_CMD: u8 = 46;

/// `IOSQE_FIXED_FILE`: `fd` is an index into the registered files.
pub const IOSQE_FIXED_FILE: u8 = 1 << 0;
/// `IOSQE_IO_DRAIN`
pub const IOSQE_IO_DRAIN: u8 = 1 << 1;
/// `IOSQE_IO_LINK`
pub const IOSQE_IO_LINK: u8 = 1 << 2;
/// `IOSQE_IO_HARDLINK`
pub const IOSQE_IO_HARDLINK: u8 = 1 << 3;
/// `IOSQE_ASYNC`
pub const IOSQE_ASYNC: u8 = 1 << 4;
/// `IOSQE_BUFFER_SELECT`
pub const IOSQE_BUFFER_SELECT: u8 = 1 << 5;
/// `IOSQE_CQE_SKIP_SUCCESS`
pub const IOSQE_CQE_SKIP_SUCCESS: u8 = 1 << 6;

/// `IORING_RECVSEND_FIXED_BUF` (in the SQE's `ioprio`): a send or receive on a registered
/// buffer, `buf_index`.
pub const IORING_RECVSEND_FIXED_BUF: u16 = 1 << 2;
/// `IORING_FSYNC_DATASYNC`
pub const IORING_FSYNC_DATASYNC: u32 = 1 << 0;

/// `IORING_SETUP_IOPOLL`
pub const IORING_SETUP_IOPOLL: u32 = 1 << 0;
/// `IORING_SETUP_SQPOLL`
pub const IORING_SETUP_SQPOLL: u32 = 1 << 1;
/// `IORING_SETUP_CQSIZE`: `cq_entries` in the params is the CQ size.
pub const IORING_SETUP_CQSIZE: u32 = 1 << 3;
/// `IORING_SETUP_CLAMP`
pub const IORING_SETUP_CLAMP: u32 = 1 << 4;
/// `IORING_SETUP_SUBMIT_ALL`
pub const IORING_SETUP_SUBMIT_ALL: u32 = 1 << 7;
/// `IORING_SETUP_COOP_TASKRUN`
pub const IORING_SETUP_COOP_TASKRUN: u32 = 1 << 8;
/// `IORING_SETUP_TASKRUN_FLAG`
pub const IORING_SETUP_TASKRUN_FLAG: u32 = 1 << 9;
/// `IORING_SETUP_SQE128`: 128-byte SQEs (80 bytes of command data).
pub const IORING_SETUP_SQE128: u32 = 1 << 10;
/// `IORING_SETUP_CQE32`: 32-byte CQEs.
pub const IORING_SETUP_CQE32: u32 = 1 << 11;
/// `IORING_SETUP_SINGLE_ISSUER`
pub const IORING_SETUP_SINGLE_ISSUER: u32 = 1 << 12;
/// `IORING_SETUP_DEFER_TASKRUN`
pub const IORING_SETUP_DEFER_TASKRUN: u32 = 1 << 13;
/// `IORING_SETUP_NO_MMAP`: the application provides the ring memory.
pub const IORING_SETUP_NO_MMAP: u32 = 1 << 14;
/// `IORING_SETUP_REGISTERED_FD_ONLY`: the ring is reachable through a registered index only.
pub const IORING_SETUP_REGISTERED_FD_ONLY: u32 = 1 << 15;
/// `IORING_SETUP_NO_SQARRAY`: no SQ index array; SQ slots are SQE indices.
pub const IORING_SETUP_NO_SQARRAY: u32 = 1 << 16;

/// `IORING_OFF_SQ_RING`: mmap offset of the SQ ring.
pub const IORING_OFF_SQ_RING: u64 = 0;
/// `IORING_OFF_CQ_RING`: mmap offset of the CQ ring.
pub const IORING_OFF_CQ_RING: u64 = 0x800_0000;
/// `IORING_OFF_SQES`: mmap offset of the SQE array.
pub const IORING_OFF_SQES: u64 = 0x1000_0000;

/// `IORING_SQ_NEED_WAKEUP`
pub const IORING_SQ_NEED_WAKEUP: u32 = 1 << 0;
/// `IORING_SQ_CQ_OVERFLOW`: completions are waiting in the kernel because the CQ was full.
pub const IORING_SQ_CQ_OVERFLOW: u32 = 1 << 1;
/// `IORING_SQ_TASKRUN`
pub const IORING_SQ_TASKRUN: u32 = 1 << 2;

/// `IORING_ENTER_GETEVENTS`
pub const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
/// `IORING_ENTER_SQ_WAKEUP`
pub const IORING_ENTER_SQ_WAKEUP: u32 = 1 << 1;
/// `IORING_ENTER_SQ_WAIT`
pub const IORING_ENTER_SQ_WAIT: u32 = 1 << 2;
/// `IORING_ENTER_EXT_ARG`: the last argument is a `struct io_uring_getevents_arg`.
pub const IORING_ENTER_EXT_ARG: u32 = 1 << 3;

/// `IORING_FEAT_SINGLE_MMAP`: SQ and CQ rings share one mapping.
pub const IORING_FEAT_SINGLE_MMAP: u32 = 1 << 0;
/// `IORING_FEAT_NODROP`: the kernel keeps completions that do not fit in the CQ.
pub const IORING_FEAT_NODROP: u32 = 1 << 1;
/// `IORING_FEAT_SUBMIT_STABLE`
pub const IORING_FEAT_SUBMIT_STABLE: u32 = 1 << 2;
/// `IORING_FEAT_EXT_ARG`: `io_uring_enter` takes a timeout.
pub const IORING_FEAT_EXT_ARG: u32 = 1 << 8;

/// `IORING_REGISTER_BUFFERS`
pub const IORING_REGISTER_BUFFERS: u32 = 0;
/// `IORING_UNREGISTER_BUFFERS`
pub const IORING_UNREGISTER_BUFFERS: u32 = 1;
/// `IORING_REGISTER_FILES`
pub const IORING_REGISTER_FILES: u32 = 2;
/// `IORING_UNREGISTER_FILES`
pub const IORING_UNREGISTER_FILES: u32 = 3;
/// `IORING_REGISTER_BUFFERS2`: buffers described by an [`IoUringRsrcRegister`].
pub const IORING_REGISTER_BUFFERS2: u32 = 15;

/// `IORING_RSRC_REGISTER_SPARSE`: a table of empty slots, filled later (zero copy: by the
/// ublk driver, with each request's pages).
pub const IORING_RSRC_REGISTER_SPARSE: u32 = 1 << 0;

crate::abi_struct! {
    /// `struct io_uring_rsrc_register`: the argument of `IORING_REGISTER_BUFFERS2`.
    pub struct IoUringRsrcRegister (size 32) {
        /// Table slots.
        pub nr: u32 = 0,
        /// `IORING_RSRC_REGISTER_*`.
        pub flags: u32 = 4,
        /// Reserved, zero.
        pub resv2: u64 = 8,
        /// Pointer to `nr` `struct iovec`s (0 for a sparse table).
        pub data: u64 = 16,
        /// Pointer to `nr` tags (0: none).
        pub tags: u64 = 24,
    }
}

crate::abi_struct! {
    /// `struct io_sqring_offsets`: where the SQ ring's fields are in its mapping.
    pub struct IoSqringOffsets (size 40) {
        /// Offset of the head index (advanced by the kernel).
        pub head: u32 = 0,
        /// Offset of the tail index (advanced by us).
        pub tail: u32 = 4,
        /// Offset of the ring mask.
        pub ring_mask: u32 = 8,
        /// Offset of the entry count.
        pub ring_entries: u32 = 12,
        /// Offset of the `IORING_SQ_*` flags.
        pub flags: u32 = 16,
        /// Offset of the dropped-entry counter.
        pub dropped: u32 = 20,
        /// Offset of the index array.
        pub array: u32 = 24,
        /// Reserved.
        pub resv1: u32 = 28,
        /// With `IORING_SETUP_NO_MMAP`: the user's ring memory.
        pub user_addr: u64 = 32,
    }
}

crate::abi_struct! {
    /// `struct io_cqring_offsets`: where the CQ ring's fields are in its mapping.
    pub struct IoCqringOffsets (size 40) {
        /// Offset of the head index (advanced by us).
        pub head: u32 = 0,
        /// Offset of the tail index (advanced by the kernel).
        pub tail: u32 = 4,
        /// Offset of the ring mask.
        pub ring_mask: u32 = 8,
        /// Offset of the entry count.
        pub ring_entries: u32 = 12,
        /// Offset of the counter of completions lost to overflow.
        pub overflow: u32 = 16,
        /// Offset of the CQE array.
        pub cqes: u32 = 20,
        /// Offset of the `IORING_CQ_*` flags.
        pub flags: u32 = 24,
        /// Reserved.
        pub resv1: u32 = 28,
        /// With `IORING_SETUP_NO_MMAP`: the user's ring memory.
        pub user_addr: u64 = 32,
    }
}

crate::abi_struct! {
    /// `struct io_uring_params`: in and out argument of `io_uring_setup`.
    pub struct IoUringParams (size 120) {
        /// Out: SQ entries granted.
        pub sq_entries: u32 = 0,
        /// In with `IORING_SETUP_CQSIZE`, out: CQ entries.
        pub cq_entries: u32 = 4,
        /// `IORING_SETUP_*`.
        pub flags: u32 = 8,
        /// SQPOLL thread CPU.
        pub sq_thread_cpu: u32 = 12,
        /// SQPOLL idle time in ms.
        pub sq_thread_idle: u32 = 16,
        /// Out: `IORING_FEAT_*`.
        pub features: u32 = 20,
        /// Ring to share the async backend with (`IORING_SETUP_ATTACH_WQ`).
        pub wq_fd: u32 = 24,
        /// Reserved.
        pub resv: [u32; 3] = 28,
        /// Out: SQ ring layout.
        pub sq_off: IoSqringOffsets = 40,
        /// Out: CQ ring layout.
        pub cq_off: IoCqringOffsets = 80,
    }
}

crate::abi_struct! {
    /// `struct __kernel_timespec`
    pub struct KernelTimespec (size 16) {
        /// Seconds.
        pub tv_sec: i64 = 0,
        /// Nanoseconds.
        pub tv_nsec: i64 = 8,
    }
}

crate::abi_struct! {
    /// `struct io_uring_getevents_arg`: `io_uring_enter`'s extended argument.
    pub struct IoUringGeteventsArg (size 24) {
        /// Signal mask pointer (0: none).
        pub sigmask: u64 = 0,
        /// Its size.
        pub sigmask_sz: u32 = 8,
        /// Minimum wait in microseconds (0: none).
        pub min_wait_usec: u32 = 12,
        /// Pointer to a [`KernelTimespec`].
        pub ts: u64 = 16,
    }
}

/// `struct io_uring_sqe`, generic over the size of its trailing command area: [`Sqe64`] (the
/// normal 64-byte SQE, 16 bytes of command data) or [`Sqe128`] (`IORING_SETUP_SQE128`, 80 bytes).
///
/// Fields are named as in the header; where the header has a union, the field carries the name
/// of its first member and the methods of [`crate::ring`] fill in the others (e.g. `cmd_op` is
/// the low half of `off`).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sqe<const CMD: usize> {
    /// `IORING_OP_*`.
    pub opcode: u8,
    /// `IOSQE_*`.
    pub flags: u8,
    /// I/O priority.
    pub ioprio: u16,
    /// File descriptor, or registered file index with `IOSQE_FIXED_FILE`.
    pub fd: i32,
    /// File offset; for URING_CMD, `cmd_op` in the first four bytes.
    pub off: u64,
    /// Buffer address.
    pub addr: u64,
    /// Buffer length.
    pub len: u32,
    /// Per-op flags (`rw_flags`, `fsync_flags`, `uring_cmd_flags`, ...).
    pub op_flags: u32,
    /// Returned unchanged in the completion.
    pub user_data: u64,
    /// Registered buffer index.
    pub buf_index: u16,
    /// Personality.
    pub personality: u16,
    /// `splice_fd_in` / `file_index`.
    pub file_index: u32,
    /// `addr3` and `__pad2` in a 64-byte SQE; the command data (`cmd`) of URING_CMD.
    pub cmd: [u8; CMD],
}

/// A normal 64-byte SQE.
pub type Sqe64 = Sqe<16>;
/// A 128-byte SQE (`IORING_SETUP_SQE128`), as control commands need.
pub type Sqe128 = Sqe<80>;

macro_rules! assert_sqe_layout {
    ($t:ty, $size:literal) => {
        const_assert_eq!(size_of::<$t>(), $size);
        const_assert_eq!(offset_of!($t, opcode), 0);
        const_assert_eq!(offset_of!($t, flags), 1);
        const_assert_eq!(offset_of!($t, ioprio), 2);
        const_assert_eq!(offset_of!($t, fd), 4);
        const_assert_eq!(offset_of!($t, off), 8);
        const_assert_eq!(offset_of!($t, addr), 16);
        const_assert_eq!(offset_of!($t, len), 24);
        const_assert_eq!(offset_of!($t, op_flags), 28);
        const_assert_eq!(offset_of!($t, user_data), 32);
        const_assert_eq!(offset_of!($t, buf_index), 40);
        const_assert_eq!(offset_of!($t, personality), 42);
        const_assert_eq!(offset_of!($t, file_index), 44);
        const_assert_eq!(offset_of!($t, cmd), 48);
        // SAFETY: `#[repr(C)]` with integer fields only; the offsets above leave no gap between
        // fields (each starts where the previous one ends) and `cmd` runs to the struct's end
        // (size = 48 + CMD), so there is no padding and every bit pattern is valid.
        unsafe impl Pod for $t {}
    };
}
assert_sqe_layout!(Sqe64, 64);
assert_sqe_layout!(Sqe128, 128);

/// `struct io_uring_cqe`, generic over its trailing `big_cqe` words: [`Cqe16`] or [`Cqe32`]
/// (`IORING_SETUP_CQE32`).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cqe<const EXTRA: usize> {
    /// The submission's `user_data`.
    pub user_data: u64,
    /// Result: non-negative on success, `-errno` on failure.
    pub res: i32,
    /// `IORING_CQE_F_*`.
    pub flags: u32,
    /// Extra data of a 32-byte CQE.
    pub big_cqe: [u64; EXTRA],
}

/// A normal 16-byte CQE.
pub type Cqe16 = Cqe<0>;
/// A 32-byte CQE (`IORING_SETUP_CQE32`).
pub type Cqe32 = Cqe<2>;

macro_rules! assert_cqe_layout {
    ($t:ty, $size:literal) => {
        const_assert_eq!(size_of::<$t>(), $size);
        const_assert_eq!(offset_of!($t, user_data), 0);
        const_assert_eq!(offset_of!($t, res), 8);
        const_assert_eq!(offset_of!($t, flags), 12);
        const_assert_eq!(offset_of!($t, big_cqe), 16);
        // SAFETY: `#[repr(C)]`, integer fields only, sizes 8+4+4+8*EXTRA with no padding.
        unsafe impl Pod for $t {}
    };
}
assert_cqe_layout!(Cqe16, 16);
assert_cqe_layout!(Cqe32, 32);

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Sqe64 {}
    impl Sealed for super::Sqe128 {}
    impl Sealed for super::Cqe16 {}
    impl Sealed for super::Cqe32 {}
}

/// An SQE size a ring can be set up with: [`Sqe64`] or [`Sqe128`].
pub trait SqeLayout: Pod + sealed::Sealed {
    /// The `IORING_SETUP_*` flag this size needs.
    const SETUP_FLAGS: u32;
    /// Bytes of URING_CMD command data this SQE carries.
    const CMD_BYTES: usize;
}

impl SqeLayout for Sqe64 {
    const SETUP_FLAGS: u32 = 0;
    const CMD_BYTES: usize = 16;
}

impl SqeLayout for Sqe128 {
    const SETUP_FLAGS: u32 = IORING_SETUP_SQE128;
    const CMD_BYTES: usize = 80;
}

/// A CQE size a ring can be set up with: [`Cqe16`] or [`Cqe32`].
pub trait CqeLayout: Pod + sealed::Sealed {
    /// The `IORING_SETUP_*` flag this size needs.
    const SETUP_FLAGS: u32;
    /// The submission's `user_data`.
    fn user_data(&self) -> u64;
    /// The raw result.
    fn res(&self) -> i32;
}

impl<const EXTRA: usize> CqeLayout for Cqe<EXTRA>
where
    Cqe<EXTRA>: Pod + sealed::Sealed,
{
    const SETUP_FLAGS: u32 = if EXTRA == 0 { 0 } else { IORING_SETUP_CQE32 };

    fn user_data(&self) -> u64 {
        self.user_data
    }

    fn res(&self) -> i32 {
        self.res
    }
}
