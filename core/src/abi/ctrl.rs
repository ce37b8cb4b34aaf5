//! Control commands: opcodes, `struct ublksrv_ctrl_cmd`, `struct ublksrv_ctrl_dev_info`,
//! device states, and the shared-memory buffer registration payload.

use core::fmt;

use super::{Features, OpEncoding, ioc_read, ioc_readwrite};

/// `_IOR('u', nr, struct ublksrv_ctrl_cmd)`
const fn ctrl_r(nr: u8) -> u32 {
    ioc_read::<UblksrvCtrlCmd>(nr)
}

/// `_IOWR('u', nr, struct ublksrv_ctrl_cmd)`
const fn ctrl_rw(nr: u8) -> u32 {
    ioc_readwrite::<UblksrvCtrlCmd>(nr)
}

/// `UBLK_CMD_GET_QUEUE_AFFINITY` (legacy number).
pub const UBLK_CMD_GET_QUEUE_AFFINITY: u8 = 0x01;
/// `UBLK_CMD_GET_DEV_INFO` (legacy number).
pub const UBLK_CMD_GET_DEV_INFO: u8 = 0x02;
/// `UBLK_CMD_ADD_DEV` (legacy number).
pub const UBLK_CMD_ADD_DEV: u8 = 0x04;
/// `UBLK_CMD_DEL_DEV` (legacy number).
pub const UBLK_CMD_DEL_DEV: u8 = 0x05;
/// `UBLK_CMD_START_DEV` (legacy number).
pub const UBLK_CMD_START_DEV: u8 = 0x06;
/// `UBLK_CMD_STOP_DEV` (legacy number).
pub const UBLK_CMD_STOP_DEV: u8 = 0x07;
/// `UBLK_CMD_SET_PARAMS` (legacy number).
pub const UBLK_CMD_SET_PARAMS: u8 = 0x08;
/// `UBLK_CMD_GET_PARAMS` (legacy number).
pub const UBLK_CMD_GET_PARAMS: u8 = 0x09;
/// `UBLK_CMD_START_USER_RECOVERY` (legacy number).
pub const UBLK_CMD_START_USER_RECOVERY: u8 = 0x10;
/// `UBLK_CMD_END_USER_RECOVERY` (legacy number).
pub const UBLK_CMD_END_USER_RECOVERY: u8 = 0x11;
/// `UBLK_CMD_GET_DEV_INFO2` (legacy number).
pub const UBLK_CMD_GET_DEV_INFO2: u8 = 0x12;

/// `UBLK_U_CMD_GET_QUEUE_AFFINITY`
pub const UBLK_U_CMD_GET_QUEUE_AFFINITY: u32 = ctrl_r(UBLK_CMD_GET_QUEUE_AFFINITY);
/// `UBLK_U_CMD_GET_DEV_INFO`
pub const UBLK_U_CMD_GET_DEV_INFO: u32 = ctrl_r(UBLK_CMD_GET_DEV_INFO);
/// `UBLK_U_CMD_ADD_DEV`
pub const UBLK_U_CMD_ADD_DEV: u32 = ctrl_rw(UBLK_CMD_ADD_DEV);
/// `UBLK_U_CMD_DEL_DEV`
pub const UBLK_U_CMD_DEL_DEV: u32 = ctrl_rw(UBLK_CMD_DEL_DEV);
/// `UBLK_U_CMD_START_DEV`
pub const UBLK_U_CMD_START_DEV: u32 = ctrl_rw(UBLK_CMD_START_DEV);
/// `UBLK_U_CMD_STOP_DEV`
pub const UBLK_U_CMD_STOP_DEV: u32 = ctrl_rw(UBLK_CMD_STOP_DEV);
/// `UBLK_U_CMD_SET_PARAMS`
pub const UBLK_U_CMD_SET_PARAMS: u32 = ctrl_rw(UBLK_CMD_SET_PARAMS);
/// `UBLK_U_CMD_GET_PARAMS`
pub const UBLK_U_CMD_GET_PARAMS: u32 = ctrl_r(UBLK_CMD_GET_PARAMS);
/// `UBLK_U_CMD_START_USER_RECOVERY`
pub const UBLK_U_CMD_START_USER_RECOVERY: u32 = ctrl_rw(UBLK_CMD_START_USER_RECOVERY);
/// `UBLK_U_CMD_END_USER_RECOVERY`
pub const UBLK_U_CMD_END_USER_RECOVERY: u32 = ctrl_rw(UBLK_CMD_END_USER_RECOVERY);
/// `UBLK_U_CMD_GET_DEV_INFO2`
pub const UBLK_U_CMD_GET_DEV_INFO2: u32 = ctrl_r(UBLK_CMD_GET_DEV_INFO2);
/// `UBLK_U_CMD_GET_FEATURES`
pub const UBLK_U_CMD_GET_FEATURES: u32 = ctrl_r(0x13);
/// `UBLK_U_CMD_DEL_DEV_ASYNC` (`_IOR` in the header, although it changes state).
pub const UBLK_U_CMD_DEL_DEV_ASYNC: u32 = ctrl_r(0x14);
/// `UBLK_U_CMD_UPDATE_SIZE`
pub const UBLK_U_CMD_UPDATE_SIZE: u32 = ctrl_rw(0x15);
/// `UBLK_U_CMD_QUIESCE_DEV`
pub const UBLK_U_CMD_QUIESCE_DEV: u32 = ctrl_rw(0x16);
/// `UBLK_U_CMD_TRY_STOP_DEV`
pub const UBLK_U_CMD_TRY_STOP_DEV: u32 = ctrl_rw(0x17);
/// `UBLK_U_CMD_REG_BUF`
pub const UBLK_U_CMD_REG_BUF: u32 = ctrl_rw(0x18);
/// `UBLK_U_CMD_UNREG_BUF`
pub const UBLK_U_CMD_UNREG_BUF: u32 = ctrl_rw(0x19);

/// `UBLK_SHMEM_BUF_READ_ONLY`: pin the shared buffer without write access.
pub const UBLK_SHMEM_BUF_READ_ONLY: u32 = 1 << 0;

/// A control command, as sent to `/dev/ublk-control`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtrlCmd {
    /// GET_QUEUE_AFFINITY: the CPUs whose I/O a queue serves.
    GetQueueAffinity,
    /// GET_DEV_INFO: the device's `ublksrv_ctrl_dev_info`.
    GetDevInfo,
    /// ADD_DEV: creates `/dev/ublkcN`.
    AddDev,
    /// DEL_DEV: removes the device and waits until its id is free.
    DelDev,
    /// START_DEV: creates `/dev/ublkbN`; waits for every queue's FETCH_REQs.
    StartDev,
    /// STOP_DEV: removes `/dev/ublkbN`; the server's commands complete with ABORT.
    StopDev,
    /// SET_PARAMS: block-device limits, before START_DEV.
    SetParams,
    /// GET_PARAMS: the current parameters (and the device numbers).
    GetParams,
    /// START_USER_RECOVERY: a new server begins re-attaching.
    StartUserRecovery,
    /// END_USER_RECOVERY: the new server is attached; the device is live again.
    EndUserRecovery,
    /// GET_DEV_INFO2: as GET_DEV_INFO, with the char device path for permission checks.
    GetDevInfo2,
    /// GET_FEATURES: the driver's supported `UBLK_F_*` bits.
    GetFeatures,
    /// DEL_DEV_ASYNC: removes the device without waiting.
    DelDevAsync,
    /// UPDATE_SIZE: resizes a live device (sectors in `data[0]`).
    UpdateSize,
    /// QUIESCE_DEV: quiesces a live device for a server upgrade.
    QuiesceDev,
    /// TRY_STOP_DEV: STOP_DEV, unless the block device is open.
    TryStopDev,
    /// REG_BUF: registers shared memory for zero copy.
    RegBuf,
    /// UNREG_BUF: unregisters a REG_BUF buffer.
    UnregBuf,
}

impl CtrlCmd {
    /// Every control command, in opcode order.
    pub const ALL: [CtrlCmd; 18] = [
        CtrlCmd::GetQueueAffinity,
        CtrlCmd::GetDevInfo,
        CtrlCmd::AddDev,
        CtrlCmd::DelDev,
        CtrlCmd::StartDev,
        CtrlCmd::StopDev,
        CtrlCmd::SetParams,
        CtrlCmd::GetParams,
        CtrlCmd::StartUserRecovery,
        CtrlCmd::EndUserRecovery,
        CtrlCmd::GetDevInfo2,
        CtrlCmd::GetFeatures,
        CtrlCmd::DelDevAsync,
        CtrlCmd::UpdateSize,
        CtrlCmd::QuiesceDev,
        CtrlCmd::TryStopDev,
        CtrlCmd::RegBuf,
        CtrlCmd::UnregBuf,
    ];

    /// The ioctl-encoded opcode (`UBLK_U_CMD_*`).
    pub const fn ioctl_opcode(self) -> u32 {
        match self {
            CtrlCmd::GetQueueAffinity => UBLK_U_CMD_GET_QUEUE_AFFINITY,
            CtrlCmd::GetDevInfo => UBLK_U_CMD_GET_DEV_INFO,
            CtrlCmd::AddDev => UBLK_U_CMD_ADD_DEV,
            CtrlCmd::DelDev => UBLK_U_CMD_DEL_DEV,
            CtrlCmd::StartDev => UBLK_U_CMD_START_DEV,
            CtrlCmd::StopDev => UBLK_U_CMD_STOP_DEV,
            CtrlCmd::SetParams => UBLK_U_CMD_SET_PARAMS,
            CtrlCmd::GetParams => UBLK_U_CMD_GET_PARAMS,
            CtrlCmd::StartUserRecovery => UBLK_U_CMD_START_USER_RECOVERY,
            CtrlCmd::EndUserRecovery => UBLK_U_CMD_END_USER_RECOVERY,
            CtrlCmd::GetDevInfo2 => UBLK_U_CMD_GET_DEV_INFO2,
            CtrlCmd::GetFeatures => UBLK_U_CMD_GET_FEATURES,
            CtrlCmd::DelDevAsync => UBLK_U_CMD_DEL_DEV_ASYNC,
            CtrlCmd::UpdateSize => UBLK_U_CMD_UPDATE_SIZE,
            CtrlCmd::QuiesceDev => UBLK_U_CMD_QUIESCE_DEV,
            CtrlCmd::TryStopDev => UBLK_U_CMD_TRY_STOP_DEV,
            CtrlCmd::RegBuf => UBLK_U_CMD_REG_BUF,
            CtrlCmd::UnregBuf => UBLK_U_CMD_UNREG_BUF,
        }
    }

    /// The command number (`_IOC_NR`), which is also the whole legacy opcode.
    pub const fn number(self) -> u8 {
        (self.ioctl_opcode() & 0xff) as u8
    }

    /// The opcode to put in the SQE for `encoding`. Legacy encoding is the bare number; kernels
    /// that only know legacy opcodes predate the commands above 0x12, which then fail with
    /// `EOPNOTSUPP` from the kernel rather than being refused here.
    pub const fn opcode(self, encoding: OpEncoding) -> u32 {
        match encoding {
            OpEncoding::Ioctl => self.ioctl_opcode(),
            OpEncoding::Legacy => self.number() as u32,
        }
    }

    /// The header's name without the `UBLK_U_CMD_` prefix, e.g. `"ADD_DEV"`.
    pub const fn name(self) -> &'static str {
        match self {
            CtrlCmd::GetQueueAffinity => "GET_QUEUE_AFFINITY",
            CtrlCmd::GetDevInfo => "GET_DEV_INFO",
            CtrlCmd::AddDev => "ADD_DEV",
            CtrlCmd::DelDev => "DEL_DEV",
            CtrlCmd::StartDev => "START_DEV",
            CtrlCmd::StopDev => "STOP_DEV",
            CtrlCmd::SetParams => "SET_PARAMS",
            CtrlCmd::GetParams => "GET_PARAMS",
            CtrlCmd::StartUserRecovery => "START_USER_RECOVERY",
            CtrlCmd::EndUserRecovery => "END_USER_RECOVERY",
            CtrlCmd::GetDevInfo2 => "GET_DEV_INFO2",
            CtrlCmd::GetFeatures => "GET_FEATURES",
            CtrlCmd::DelDevAsync => "DEL_DEV_ASYNC",
            CtrlCmd::UpdateSize => "UPDATE_SIZE",
            CtrlCmd::QuiesceDev => "QUIESCE_DEV",
            CtrlCmd::TryStopDev => "TRY_STOP_DEV",
            CtrlCmd::RegBuf => "REG_BUF",
            CtrlCmd::UnregBuf => "UNREG_BUF",
        }
    }

    /// True for commands that address one device (all but ADD_DEV's "any id" and GET_FEATURES).
    pub const fn targets_device(self) -> bool {
        !matches!(self, CtrlCmd::GetFeatures)
    }
}

impl fmt::Display for CtrlCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u32> for CtrlCmd {
    type Error = u32;

    /// Decodes an opcode in either encoding; the unknown opcode is returned as the error.
    fn try_from(op: u32) -> Result<CtrlCmd, u32> {
        CtrlCmd::ALL
            .into_iter()
            .find(|cmd| cmd.ioctl_opcode() == op || cmd.number() as u32 == op)
            .ok_or(op)
    }
}

/// `queue_id` for commands that are not about one queue.
pub const UBLK_CTRL_NO_QUEUE: u16 = u16::MAX;

/// ADD_DEV's `dev_id` asking the driver to choose a free id.
pub const UBLK_DEV_ID_ANY: u32 = u32::MAX;

crate::abi_struct! {
    /// `struct ublksrv_ctrl_cmd`: a control command's payload, carried in the SQE's command
    /// area (which is why the control ring needs 128-byte SQEs).
    pub struct UblksrvCtrlCmd (size 32) {
        /// The device addressed (or [`UBLK_DEV_ID_ANY`] for ADD_DEV).
        pub dev_id: u32 = 0,
        /// The queue addressed, or [`UBLK_CTRL_NO_QUEUE`].
        pub queue_id: u16 = 4,
        /// Length in bytes of the buffer at `addr`.
        pub len: u16 = 6,
        /// Address of the command's in/out buffer.
        pub addr: u64 = 8,
        /// Inline data: the server pid for START_DEV, sectors for UPDATE_SIZE, ...
        pub data: [u64; 1] = 16,
        /// Length of the char device path that prefixes the buffer (GET_DEV_INFO2 and
        /// unprivileged devices), including its NUL.
        pub dev_path_len: u16 = 24,
        /// Padding.
        pub pad: u16 = 26,
        /// Reserved, zero.
        pub reserved: u32 = 28,
    }
}

crate::abi_struct! {
    /// `struct ublksrv_ctrl_dev_info`: sent with ADD_DEV (what the server asks for) and returned
    /// by ADD_DEV, GET_DEV_INFO and GET_DEV_INFO2 (what the driver granted and its state).
    pub struct UblksrvCtrlDevInfo (size 64) {
        /// Number of hardware queues (the driver clamps it to the number of CPUs).
        pub nr_hw_queues: u16 = 0,
        /// Tags per queue, 1..=[`UBLK_MAX_QUEUE_DEPTH`](crate::abi::io::UBLK_MAX_QUEUE_DEPTH).
        pub queue_depth: u16 = 2,
        /// A `UBLK_S_DEV_*` state; see [`UblksrvCtrlDevInfo::dev_state`].
        pub state: u16 = 4,
        /// Size of one I/O descriptor (24 unless `IO_DESC_SIZE` was negotiated).
        pub io_desc_size: u16 = 6,
        /// Largest I/O in bytes (the driver rounds it down to a page).
        pub max_io_buf_bytes: u32 = 8,
        /// The device id.
        pub dev_id: u32 = 12,
        /// The serving process, or -1.
        pub ublksrv_pid: i32 = 16,
        /// Padding.
        pub pad1: u32 = 20,
        /// `UBLK_F_*` bits asked for / granted.
        pub flags: Features = 24,
        /// Opaque to the driver: for the server's own use.
        pub ublksrv_flags: u64 = 32,
        /// Owner user id, stored by the kernel.
        pub owner_uid: u32 = 40,
        /// Owner group id, stored by the kernel.
        pub owner_gid: u32 = 44,
        /// Reserved.
        pub reserved1: u64 = 48,
        /// Reserved.
        pub reserved2: u64 = 56,
    }
}

impl UblksrvCtrlDevInfo {
    /// The device state, or the raw value if this build does not know it.
    pub fn dev_state(&self) -> Result<DevState, u16> {
        DevState::try_from(self.state)
    }
}

/// `UBLK_S_DEV_DEAD`
pub const UBLK_S_DEV_DEAD: u16 = 0;
/// `UBLK_S_DEV_LIVE`
pub const UBLK_S_DEV_LIVE: u16 = 1;
/// `UBLK_S_DEV_QUIESCED`
pub const UBLK_S_DEV_QUIESCED: u16 = 2;
/// `UBLK_S_DEV_FAIL_IO`
pub const UBLK_S_DEV_FAIL_IO: u16 = 3;

/// A device's state (`UBLK_S_DEV_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum DevState {
    /// Added but not started, or stopped: no block device.
    Dead = UBLK_S_DEV_DEAD,
    /// Started: `/dev/ublkbN` serves I/O.
    Live = UBLK_S_DEV_LIVE,
    /// The server is gone and I/O waits for a new one (recovery).
    Quiesced = UBLK_S_DEV_QUIESCED,
    /// The server is gone and I/O fails until a new one attaches (recovery with FAIL_IO).
    FailIo = UBLK_S_DEV_FAIL_IO,
}

impl DevState {
    /// Lower-case name for humans and JSON: `dead`, `live`, `quiesced`, `fail_io`.
    pub const fn name(self) -> &'static str {
        match self {
            DevState::Dead => "dead",
            DevState::Live => "live",
            DevState::Quiesced => "quiesced",
            DevState::FailIo => "fail_io",
        }
    }
}

impl TryFrom<u16> for DevState {
    type Error = u16;

    fn try_from(v: u16) -> Result<DevState, u16> {
        match v {
            UBLK_S_DEV_DEAD => Ok(DevState::Dead),
            UBLK_S_DEV_LIVE => Ok(DevState::Live),
            UBLK_S_DEV_QUIESCED => Ok(DevState::Quiesced),
            UBLK_S_DEV_FAIL_IO => Ok(DevState::FailIo),
            other => Err(other),
        }
    }
}

impl fmt::Display for DevState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

crate::abi_struct! {
    /// `struct ublk_shmem_buf_reg`: REG_BUF's argument, pointed to by the command's `addr`.
    pub struct UblkShmemBufReg (size 24) {
        /// Virtual address of the shared memory.
        pub addr: u64 = 0,
        /// Its size in bytes, page aligned.
        pub len: u64 = 8,
        /// `UBLK_SHMEM_BUF_*` flags.
        pub flags: u32 = 16,
        /// Reserved, zero.
        pub reserved: u32 = 20,
    }
}
