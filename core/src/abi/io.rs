//! I/O commands and descriptors: what a queue exchanges with the driver on `/dev/ublkcN`.

use core::fmt;

use super::{OpEncoding, ioc_readwrite};

/// `UBLK_IO_FETCH_REQ` (legacy number).
pub const UBLK_IO_FETCH_REQ: u8 = 0x20;
/// `UBLK_IO_COMMIT_AND_FETCH_REQ` (legacy number).
pub const UBLK_IO_COMMIT_AND_FETCH_REQ: u8 = 0x21;
/// `UBLK_IO_NEED_GET_DATA` (legacy number).
pub const UBLK_IO_NEED_GET_DATA: u8 = 0x22;
/// Number of `UBLK_U_IO_REGISTER_IO_BUF`.
pub const UBLK_IO_REGISTER_IO_BUF: u8 = 0x23;
/// Number of `UBLK_U_IO_UNREGISTER_IO_BUF`.
pub const UBLK_IO_UNREGISTER_IO_BUF: u8 = 0x24;

/// `UBLK_U_IO_FETCH_REQ`
pub const UBLK_U_IO_FETCH_REQ: u32 = ioc_readwrite::<UblksrvIoCmd>(UBLK_IO_FETCH_REQ);
/// `UBLK_U_IO_COMMIT_AND_FETCH_REQ`
pub const UBLK_U_IO_COMMIT_AND_FETCH_REQ: u32 =
    ioc_readwrite::<UblksrvIoCmd>(UBLK_IO_COMMIT_AND_FETCH_REQ);
/// `UBLK_U_IO_NEED_GET_DATA`
pub const UBLK_U_IO_NEED_GET_DATA: u32 = ioc_readwrite::<UblksrvIoCmd>(UBLK_IO_NEED_GET_DATA);
/// `UBLK_U_IO_REGISTER_IO_BUF`
pub const UBLK_U_IO_REGISTER_IO_BUF: u32 = ioc_readwrite::<UblksrvIoCmd>(UBLK_IO_REGISTER_IO_BUF);
/// `UBLK_U_IO_UNREGISTER_IO_BUF`
pub const UBLK_U_IO_UNREGISTER_IO_BUF: u32 =
    ioc_readwrite::<UblksrvIoCmd>(UBLK_IO_UNREGISTER_IO_BUF);
/// `UBLK_U_IO_PREP_IO_CMDS`
pub const UBLK_U_IO_PREP_IO_CMDS: u32 = ioc_readwrite::<UblkBatchIo>(0x25);
/// `UBLK_U_IO_COMMIT_IO_CMDS`
pub const UBLK_U_IO_COMMIT_IO_CMDS: u32 = ioc_readwrite::<UblkBatchIo>(0x26);
/// `UBLK_U_IO_FETCH_IO_CMDS`
pub const UBLK_U_IO_FETCH_IO_CMDS: u32 = ioc_readwrite::<UblkBatchIo>(0x27);

/// An I/O command, as sent on `/dev/ublkcN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoCmd {
    /// FETCH_REQ: hand a tag to the driver, to be completed with the next request for it.
    FetchReq,
    /// COMMIT_AND_FETCH_REQ: complete a request and fetch the next one for the same tag.
    CommitAndFetchReq,
    /// NEED_GET_DATA: supply the buffer of a write (NEED_GET_DATA mode).
    NeedGetData,
    /// REGISTER_IO_BUF: register a request's buffer in the ring's buffer table (zero copy).
    RegisterIoBuf,
    /// UNREGISTER_IO_BUF: unregister it.
    UnregisterIoBuf,
    /// PREP_IO_CMDS: batch mode, prepare tags.
    PrepIoCmds,
    /// COMMIT_IO_CMDS: batch mode, commit results.
    CommitIoCmds,
    /// FETCH_IO_CMDS: batch mode, multishot fetch.
    FetchIoCmds,
}

impl IoCmd {
    /// Every I/O command, in opcode order.
    pub const ALL: [IoCmd; 8] = [
        IoCmd::FetchReq,
        IoCmd::CommitAndFetchReq,
        IoCmd::NeedGetData,
        IoCmd::RegisterIoBuf,
        IoCmd::UnregisterIoBuf,
        IoCmd::PrepIoCmds,
        IoCmd::CommitIoCmds,
        IoCmd::FetchIoCmds,
    ];

    /// The ioctl-encoded opcode (`UBLK_U_IO_*`).
    pub const fn ioctl_opcode(self) -> u32 {
        match self {
            IoCmd::FetchReq => UBLK_U_IO_FETCH_REQ,
            IoCmd::CommitAndFetchReq => UBLK_U_IO_COMMIT_AND_FETCH_REQ,
            IoCmd::NeedGetData => UBLK_U_IO_NEED_GET_DATA,
            IoCmd::RegisterIoBuf => UBLK_U_IO_REGISTER_IO_BUF,
            IoCmd::UnregisterIoBuf => UBLK_U_IO_UNREGISTER_IO_BUF,
            IoCmd::PrepIoCmds => UBLK_U_IO_PREP_IO_CMDS,
            IoCmd::CommitIoCmds => UBLK_U_IO_COMMIT_IO_CMDS,
            IoCmd::FetchIoCmds => UBLK_U_IO_FETCH_IO_CMDS,
        }
    }

    /// The opcode for `encoding` (legacy: the bare command number).
    pub const fn opcode(self, encoding: OpEncoding) -> u32 {
        match encoding {
            OpEncoding::Ioctl => self.ioctl_opcode(),
            OpEncoding::Legacy => self.ioctl_opcode() & 0xff,
        }
    }

    /// The header's name without the `UBLK_U_IO_` prefix.
    pub const fn name(self) -> &'static str {
        match self {
            IoCmd::FetchReq => "FETCH_REQ",
            IoCmd::CommitAndFetchReq => "COMMIT_AND_FETCH_REQ",
            IoCmd::NeedGetData => "NEED_GET_DATA",
            IoCmd::RegisterIoBuf => "REGISTER_IO_BUF",
            IoCmd::UnregisterIoBuf => "UNREGISTER_IO_BUF",
            IoCmd::PrepIoCmds => "PREP_IO_CMDS",
            IoCmd::CommitIoCmds => "COMMIT_IO_CMDS",
            IoCmd::FetchIoCmds => "FETCH_IO_CMDS",
        }
    }
}

impl fmt::Display for IoCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `UBLK_IO_RES_OK`: the I/O command completed with a request to serve.
pub const UBLK_IO_RES_OK: i32 = 0;
/// `UBLK_IO_RES_NEED_GET_DATA`: a write needs NEED_GET_DATA before its data is available.
pub const UBLK_IO_RES_NEED_GET_DATA: i32 = 1;
/// `UBLK_IO_RES_ABORT` (`-ENODEV`): the device is going away; do not fetch this tag again.
pub const UBLK_IO_RES_ABORT: i32 = -libc::ENODEV;

/// `UBLKSRV_CMD_BUF_OFFSET`: mmap offset of queue 0's descriptor array on `/dev/ublkcN`.
pub const UBLKSRV_CMD_BUF_OFFSET: u64 = 0;
/// `UBLKSRV_IO_BUF_OFFSET`: base of the user-copy positions on `/dev/ublkcN`.
pub const UBLKSRV_IO_BUF_OFFSET: u64 = 0x8000_0000;
/// `UBLK_MAX_QUEUE_DEPTH`: most tags per queue.
pub const UBLK_MAX_QUEUE_DEPTH: u16 = 4096;
/// `UBLK_IO_BUF_OFF`
pub const UBLK_IO_BUF_OFF: u32 = 0;
/// `UBLK_IO_BUF_BITS`: bits of the byte offset within one request (32 MiB).
pub const UBLK_IO_BUF_BITS: u32 = 25;
/// `UBLK_IO_BUF_BITS_MASK`
pub const UBLK_IO_BUF_BITS_MASK: u64 = (1 << UBLK_IO_BUF_BITS) - 1;
/// `UBLK_TAG_OFF`
pub const UBLK_TAG_OFF: u32 = UBLK_IO_BUF_BITS;
/// `UBLK_TAG_BITS`
pub const UBLK_TAG_BITS: u32 = 16;
/// `UBLK_TAG_BITS_MASK`
pub const UBLK_TAG_BITS_MASK: u64 = (1 << UBLK_TAG_BITS) - 1;
/// `UBLK_QID_OFF`
pub const UBLK_QID_OFF: u32 = UBLK_TAG_OFF + UBLK_TAG_BITS;
/// `UBLK_QID_BITS`
pub const UBLK_QID_BITS: u32 = 12;
/// `UBLK_QID_BITS_MASK`
pub const UBLK_QID_BITS_MASK: u64 = (1 << UBLK_QID_BITS) - 1;
/// `UBLK_MAX_NR_QUEUES`
pub const UBLK_MAX_NR_QUEUES: u32 = 1 << UBLK_QID_BITS;
/// `UBLKSRV_IO_BUF_TOTAL_BITS`
pub const UBLKSRV_IO_BUF_TOTAL_BITS: u32 = UBLK_QID_OFF + UBLK_QID_BITS;
/// `UBLKSRV_IO_BUF_TOTAL_SIZE`
pub const UBLKSRV_IO_BUF_TOTAL_SIZE: u64 = 1 << UBLKSRV_IO_BUF_TOTAL_BITS;
/// `UBLK_INTEGRITY_FLAG_OFF`
pub const UBLK_INTEGRITY_FLAG_OFF: u32 = 62;
/// `UBLKSRV_IO_INTEGRITY_FLAG`: user-copy position bit selecting the integrity buffer.
pub const UBLKSRV_IO_INTEGRITY_FLAG: u64 = 1 << UBLK_INTEGRITY_FLAG_OFF;

/// The `pread`/`pwrite` position on `/dev/ublkcN` of byte `offset` of request (`q_id`, `tag`)
/// in user-copy mode: `UBLKSRV_IO_BUF_OFFSET + (q_id << 41 | tag << 25 | offset)`.
///
/// `None` when an argument exceeds its field (queue ≥ 4096, offset ≥ 32 MiB): such a position
/// would silently name another request.
pub const fn user_copy_pos(q_id: u16, tag: u16, offset: u32) -> Option<u64> {
    if q_id as u32 >= UBLK_MAX_NR_QUEUES || offset as u64 > UBLK_IO_BUF_BITS_MASK {
        return None;
    }
    Some(
        UBLKSRV_IO_BUF_OFFSET
            + (((q_id as u64) << UBLK_QID_OFF) | ((tag as u64) << UBLK_TAG_OFF) | offset as u64),
    )
}

/// Bytes reserved per queue for its descriptor array in the `/dev/ublkcN` mmap space:
/// `round_up(UBLK_MAX_QUEUE_DEPTH * sizeof(ublksrv_io_desc), page_size)`. `page_size` must be a
/// power of two.
pub const fn desc_area_stride(page_size: usize) -> usize {
    let bytes = UBLK_MAX_QUEUE_DEPTH as usize * core::mem::size_of::<UblksrvIoDesc>();
    (bytes + page_size - 1) & !(page_size - 1)
}

/// The mmap offset of queue `q_id`'s descriptor array on `/dev/ublkcN`.
pub const fn desc_mmap_offset(q_id: u16, page_size: usize) -> u64 {
    UBLKSRV_CMD_BUF_OFFSET + q_id as u64 * desc_area_stride(page_size) as u64
}

/// `UBLK_IO_OP_READ`
pub const UBLK_IO_OP_READ: u8 = 0;
/// `UBLK_IO_OP_WRITE`
pub const UBLK_IO_OP_WRITE: u8 = 1;
/// `UBLK_IO_OP_FLUSH`
pub const UBLK_IO_OP_FLUSH: u8 = 2;
/// `UBLK_IO_OP_DISCARD`
pub const UBLK_IO_OP_DISCARD: u8 = 3;
/// `UBLK_IO_OP_WRITE_SAME`
pub const UBLK_IO_OP_WRITE_SAME: u8 = 4;
/// `UBLK_IO_OP_WRITE_ZEROES`
pub const UBLK_IO_OP_WRITE_ZEROES: u8 = 5;
/// `UBLK_IO_OP_ZONE_OPEN`
pub const UBLK_IO_OP_ZONE_OPEN: u8 = 10;
/// `UBLK_IO_OP_ZONE_CLOSE`
pub const UBLK_IO_OP_ZONE_CLOSE: u8 = 11;
/// `UBLK_IO_OP_ZONE_FINISH`
pub const UBLK_IO_OP_ZONE_FINISH: u8 = 12;
/// `UBLK_IO_OP_ZONE_APPEND`
pub const UBLK_IO_OP_ZONE_APPEND: u8 = 13;
/// `UBLK_IO_OP_ZONE_RESET_ALL`
pub const UBLK_IO_OP_ZONE_RESET_ALL: u8 = 14;
/// `UBLK_IO_OP_ZONE_RESET`
pub const UBLK_IO_OP_ZONE_RESET: u8 = 15;
/// `UBLK_IO_OP_REPORT_ZONES`
pub const UBLK_IO_OP_REPORT_ZONES: u8 = 18;

/// The operation of a request (`op_flags` bits 0-7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum IoOp {
    /// Read `nr_sectors` from `start_sector` into the buffer.
    Read = UBLK_IO_OP_READ,
    /// Write the buffer to `start_sector`.
    Write = UBLK_IO_OP_WRITE,
    /// Make completed writes durable.
    Flush = UBLK_IO_OP_FLUSH,
    /// The range's data is no longer needed.
    Discard = UBLK_IO_OP_DISCARD,
    /// Write one block's data repeatedly (unused by current kernels).
    WriteSame = UBLK_IO_OP_WRITE_SAME,
    /// Make the range read as zeroes.
    WriteZeroes = UBLK_IO_OP_WRITE_ZEROES,
    /// Open a zone.
    ZoneOpen = UBLK_IO_OP_ZONE_OPEN,
    /// Close a zone.
    ZoneClose = UBLK_IO_OP_ZONE_CLOSE,
    /// Finish a zone.
    ZoneFinish = UBLK_IO_OP_ZONE_FINISH,
    /// Append to a zone; the written LBA is returned.
    ZoneAppend = UBLK_IO_OP_ZONE_APPEND,
    /// Reset every zone.
    ZoneResetAll = UBLK_IO_OP_ZONE_RESET_ALL,
    /// Reset a zone.
    ZoneReset = UBLK_IO_OP_ZONE_RESET,
    /// Report zones into the buffer.
    ReportZones = UBLK_IO_OP_REPORT_ZONES,
}

impl IoOp {
    /// The header's name without `UBLK_IO_OP_`.
    pub const fn name(self) -> &'static str {
        match self {
            IoOp::Read => "READ",
            IoOp::Write => "WRITE",
            IoOp::Flush => "FLUSH",
            IoOp::Discard => "DISCARD",
            IoOp::WriteSame => "WRITE_SAME",
            IoOp::WriteZeroes => "WRITE_ZEROES",
            IoOp::ZoneOpen => "ZONE_OPEN",
            IoOp::ZoneClose => "ZONE_CLOSE",
            IoOp::ZoneFinish => "ZONE_FINISH",
            IoOp::ZoneAppend => "ZONE_APPEND",
            IoOp::ZoneResetAll => "ZONE_RESET_ALL",
            IoOp::ZoneReset => "ZONE_RESET",
            IoOp::ReportZones => "REPORT_ZONES",
        }
    }
}

impl TryFrom<u8> for IoOp {
    type Error = u8;

    /// Decodes an op; the unknown value is returned as the error.
    fn try_from(v: u8) -> Result<IoOp, u8> {
        Ok(match v {
            UBLK_IO_OP_READ => IoOp::Read,
            UBLK_IO_OP_WRITE => IoOp::Write,
            UBLK_IO_OP_FLUSH => IoOp::Flush,
            UBLK_IO_OP_DISCARD => IoOp::Discard,
            UBLK_IO_OP_WRITE_SAME => IoOp::WriteSame,
            UBLK_IO_OP_WRITE_ZEROES => IoOp::WriteZeroes,
            UBLK_IO_OP_ZONE_OPEN => IoOp::ZoneOpen,
            UBLK_IO_OP_ZONE_CLOSE => IoOp::ZoneClose,
            UBLK_IO_OP_ZONE_FINISH => IoOp::ZoneFinish,
            UBLK_IO_OP_ZONE_APPEND => IoOp::ZoneAppend,
            UBLK_IO_OP_ZONE_RESET_ALL => IoOp::ZoneResetAll,
            UBLK_IO_OP_ZONE_RESET => IoOp::ZoneReset,
            UBLK_IO_OP_REPORT_ZONES => IoOp::ReportZones,
            other => return Err(other),
        })
    }
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

crate::flag_set! {
    /// Request flags (`op_flags` bits 8-31, kept in place: `UBLK_IO_F_FUA` is `1 << 13` here as
    /// in the header).
    pub struct IoFlags(u32) {
        /// `UBLK_IO_F_FAILFAST_DEV`
        const FAILFAST_DEV = 1 << 8;
        /// `UBLK_IO_F_FAILFAST_TRANSPORT`
        const FAILFAST_TRANSPORT = 1 << 9;
        /// `UBLK_IO_F_FAILFAST_DRIVER`
        const FAILFAST_DRIVER = 1 << 10;
        /// `UBLK_IO_F_META`
        const META = 1 << 11;
        /// `UBLK_IO_F_FUA`: the write must be durable when it completes.
        const FUA = 1 << 13;
        /// `UBLK_IO_F_NOUNMAP`: WRITE_ZEROES must keep the range allocated.
        const NOUNMAP = 1 << 15;
        /// `UBLK_IO_F_SWAP`
        const SWAP = 1 << 16;
        /// `UBLK_IO_F_NEED_REG_BUF`: auto buffer registration failed; register by hand.
        const NEED_REG_BUF = 1 << 17;
        /// `UBLK_IO_F_INTEGRITY`: the request has an integrity buffer.
        const INTEGRITY = 1 << 18;
        /// `UBLK_IO_F_SHMEM_ZC`: `addr` encodes a shared-memory buffer index and offset.
        const SHMEM_ZC = 1 << 19;
    }
}

crate::abi_struct! {
    /// `struct ublksrv_io_desc`: one request, written by the driver into the queue's read-only
    /// descriptor array at index `tag`.
    pub struct UblksrvIoDesc (size 24) {
        /// Op in bits 0-7, flags in bits 8-31; see [`UblksrvIoDesc::op`] and
        /// [`UblksrvIoDesc::flags`].
        pub op_flags: u32 = 0,
        /// Length in 512-byte sectors (`nr_zones` for REPORT_ZONES).
        pub nr_sectors: u32 = 4,
        /// First 512-byte sector.
        pub start_sector: u64 = 8,
        /// The buffer address given with the FETCH (or a shared-memory index/offset).
        pub addr: u64 = 16,
    }
}

impl UblksrvIoDesc {
    /// The operation, or its raw value if unknown (`ublksrv_get_op`).
    pub fn op(&self) -> Result<IoOp, u8> {
        IoOp::try_from((self.op_flags & 0xff) as u8)
    }

    /// The flags (`ublksrv_get_flags`, kept at their header bit positions).
    pub fn flags(&self) -> IoFlags {
        IoFlags::from_bits_retain(self.op_flags & !0xff)
    }

    /// `nr_zones`, the union alias of `nr_sectors` for REPORT_ZONES.
    pub fn nr_zones(&self) -> u32 {
        self.nr_sectors
    }
}

crate::abi_struct! {
    /// `struct ublksrv_io_cmd`: an I/O command's payload (16 bytes: fits a 64-byte SQE).
    pub struct UblksrvIoCmd (size 16) {
        /// Queue id.
        pub q_id: u16 = 0,
        /// Tag within the queue.
        pub tag: u16 = 2,
        /// The request's result (bytes done, or `-errno`), for COMMIT commands.
        pub result: i32 = 4,
        /// The I/O buffer for FETCH commands; the zone-append LBA for a committed ZONE_APPEND.
        pub addr: u64 = 8,
    }
}

/// `UBLK_AUTO_BUF_REG_FALLBACK`
pub const UBLK_AUTO_BUF_REG_FALLBACK: u8 = 1 << 0;
/// `UBLK_AUTO_BUF_REG_F_MASK`
pub const UBLK_AUTO_BUF_REG_F_MASK: u8 = UBLK_AUTO_BUF_REG_FALLBACK;

crate::abi_struct! {
    /// `struct ublk_auto_buf_reg`: where AUTO_BUF_REG installs a request's buffer, carried in
    /// the SQE's `addr` (see [`UblkAutoBufReg::to_sqe_addr`]).
    pub struct UblkAutoBufReg (size 8) {
        /// Buffer table index.
        pub index: u16 = 0,
        /// `UBLK_AUTO_BUF_REG_*` flags.
        pub flags: u8 = 2,
        /// Reserved, zero.
        pub reserved0: u8 = 3,
        /// Reserved, zero.
        pub reserved1: u32 = 4,
    }
}

impl UblkAutoBufReg {
    /// `ublk_auto_buf_reg_to_sqe_addr`: the value for the SQE's `addr` field.
    pub const fn to_sqe_addr(&self) -> u64 {
        self.index as u64
            | (self.flags as u64) << 16
            | (self.reserved0 as u64) << 24
            | (self.reserved1 as u64) << 32
    }

    /// `ublk_sqe_addr_to_auto_buf_reg`
    pub const fn from_sqe_addr(addr: u64) -> UblkAutoBufReg {
        UblkAutoBufReg {
            index: addr as u16,
            flags: (addr >> 16) as u8,
            reserved0: (addr >> 24) as u8,
            reserved1: (addr >> 32) as u32,
        }
    }
}

crate::abi_struct! {
    /// `struct ublk_elem_header`: one element of a batch command buffer.
    pub struct UblkElemHeader (size 8) {
        /// Tag.
        pub tag: u16 = 0,
        /// Buffer index (AUTO_BUF_REG).
        pub buf_index: u16 = 2,
        /// Result (commit only).
        pub result: i32 = 4,
    }
}

/// `UBLK_BATCH_F_HAS_ZONE_LBA`
pub const UBLK_BATCH_F_HAS_ZONE_LBA: u16 = 1 << 0;
/// `UBLK_BATCH_F_HAS_BUF_ADDR`
pub const UBLK_BATCH_F_HAS_BUF_ADDR: u16 = 1 << 1;
/// `UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK`
pub const UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK: u16 = 1 << 2;

crate::abi_struct! {
    /// `struct ublk_batch_io`: the payload of the batch I/O commands.
    pub struct UblkBatchIo (size 16) {
        /// Queue id.
        pub q_id: u16 = 0,
        /// `UBLK_BATCH_F_*`.
        pub flags: u16 = 2,
        /// Number of elements in the buffer.
        pub nr_elem: u16 = 4,
        /// Bytes per element (8, 16 or 24).
        pub elem_bytes: u8 = 6,
        /// Reserved.
        pub reserved: u8 = 7,
        /// Reserved.
        pub reserved2: u64 = 8,
    }
}

/// `UBLK_SHMEM_ZC_OFF_MASK`
pub const UBLK_SHMEM_ZC_OFF_MASK: u64 = 0xffff_ffff;
/// `UBLK_SHMEM_ZC_IDX_OFF`
pub const UBLK_SHMEM_ZC_IDX_OFF: u32 = 32;
/// `UBLK_SHMEM_ZC_IDX_MASK`
pub const UBLK_SHMEM_ZC_IDX_MASK: u64 = 0xffff;

/// `ublk_shmem_zc_addr`: descriptor `addr` for byte `offset` of shared buffer `index`.
pub const fn shmem_zc_addr(index: u16, offset: u32) -> u64 {
    (index as u64) << UBLK_SHMEM_ZC_IDX_OFF | offset as u64
}

/// `ublk_shmem_zc_index`
pub const fn shmem_zc_index(addr: u64) -> u16 {
    ((addr >> UBLK_SHMEM_ZC_IDX_OFF) & UBLK_SHMEM_ZC_IDX_MASK) as u16
}

/// `ublk_shmem_zc_offset`
pub const fn shmem_zc_offset(addr: u64) -> u32 {
    (addr & UBLK_SHMEM_ZC_OFF_MASK) as u32
}
