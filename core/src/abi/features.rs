//! `UBLK_F_*`: device feature bits, reported by GET_FEATURES and negotiated by ADD_DEV.

/// `UBLK_FEATURES_LEN`: GET_FEATURES returns exactly this many bytes (one `u64`).
pub const UBLK_FEATURES_LEN: u16 = 8;

/// `UBLK_F_SUPPORT_ZERO_COPY`
pub const UBLK_F_SUPPORT_ZERO_COPY: u64 = 1 << 0;
/// `UBLK_F_URING_CMD_COMP_IN_TASK`
pub const UBLK_F_URING_CMD_COMP_IN_TASK: u64 = 1 << 1;
/// `UBLK_F_NEED_GET_DATA`
pub const UBLK_F_NEED_GET_DATA: u64 = 1 << 2;
/// `UBLK_F_USER_RECOVERY`
pub const UBLK_F_USER_RECOVERY: u64 = 1 << 3;
/// `UBLK_F_USER_RECOVERY_REISSUE`
pub const UBLK_F_USER_RECOVERY_REISSUE: u64 = 1 << 4;
/// `UBLK_F_UNPRIVILEGED_DEV`
pub const UBLK_F_UNPRIVILEGED_DEV: u64 = 1 << 5;
/// `UBLK_F_CMD_IOCTL_ENCODE`
pub const UBLK_F_CMD_IOCTL_ENCODE: u64 = 1 << 6;
/// `UBLK_F_USER_COPY`
pub const UBLK_F_USER_COPY: u64 = 1 << 7;
/// `UBLK_F_ZONED`
pub const UBLK_F_ZONED: u64 = 1 << 8;
/// `UBLK_F_USER_RECOVERY_FAIL_IO`
pub const UBLK_F_USER_RECOVERY_FAIL_IO: u64 = 1 << 9;
/// `UBLK_F_UPDATE_SIZE`
pub const UBLK_F_UPDATE_SIZE: u64 = 1 << 10;
/// `UBLK_F_AUTO_BUF_REG`
pub const UBLK_F_AUTO_BUF_REG: u64 = 1 << 11;
/// `UBLK_F_QUIESCE`
pub const UBLK_F_QUIESCE: u64 = 1 << 12;
/// `UBLK_F_PER_IO_DAEMON`
pub const UBLK_F_PER_IO_DAEMON: u64 = 1 << 13;
/// `UBLK_F_BUF_REG_OFF_DAEMON`
pub const UBLK_F_BUF_REG_OFF_DAEMON: u64 = 1 << 14;
/// `UBLK_F_BATCH_IO`
pub const UBLK_F_BATCH_IO: u64 = 1 << 15;
/// `UBLK_F_INTEGRITY`
pub const UBLK_F_INTEGRITY: u64 = 1 << 16;
/// `UBLK_F_SAFE_STOP_DEV`
pub const UBLK_F_SAFE_STOP_DEV: u64 = 1 << 17;
/// `UBLK_F_NO_AUTO_PART_SCAN`
pub const UBLK_F_NO_AUTO_PART_SCAN: u64 = 1 << 18;
/// `UBLK_F_SHMEM_ZC`
pub const UBLK_F_SHMEM_ZC: u64 = 1 << 19;
/// `UBLK_F_IO_DESC_SIZE`
pub const UBLK_F_IO_DESC_SIZE: u64 = 1 << 20;

crate::flag_set! {
    /// A set of `UBLK_F_*` feature bits: what the driver supports (GET_FEATURES), what a server
    /// asks for (ADD_DEV's `flags`), and what the driver granted (the `flags` ADD_DEV returns).
    ///
    /// Names are the header's without the `UBLK_F_` prefix; [`Features::unknown_bits`] keeps
    /// bits of a newer kernel that this build cannot name.
    pub struct Features(u64) {
        /// Zero copy: request buffers registered in io_uring's buffer table.
        const SUPPORT_ZERO_COPY = UBLK_F_SUPPORT_ZERO_COPY;
        /// Complete I/O commands from task work (for comparisons; always set by the driver).
        const URING_CMD_COMP_IN_TASK = UBLK_F_URING_CMD_COMP_IN_TASK;
        /// Writes need a second command (NEED_GET_DATA) to supply the buffer.
        const NEED_GET_DATA = UBLK_F_NEED_GET_DATA;
        /// The device survives its server's death; outstanding I/O fails.
        const USER_RECOVERY = UBLK_F_USER_RECOVERY;
        /// As USER_RECOVERY, but outstanding I/O is reissued to the new server.
        const USER_RECOVERY_REISSUE = UBLK_F_USER_RECOVERY_REISSUE;
        /// Devices may be created and served by unprivileged users.
        const UNPRIVILEGED_DEV = UBLK_F_UNPRIVILEGED_DEV;
        /// Commands are ioctl-encoded (`_IOWR('u', ...)`).
        const CMD_IOCTL_ENCODE = UBLK_F_CMD_IOCTL_ENCODE;
        /// Data moves by pread/pwrite on `/dev/ublkcN` instead of a buffer address.
        const USER_COPY = UBLK_F_USER_COPY;
        /// Zoned block device support.
        const ZONED = UBLK_F_ZONED;
        /// As USER_RECOVERY, but I/O fails while no server is attached.
        const USER_RECOVERY_FAIL_IO = UBLK_F_USER_RECOVERY_FAIL_IO;
        /// UPDATE_SIZE resizes a live device.
        const UPDATE_SIZE = UBLK_F_UPDATE_SIZE;
        /// Request buffers are registered automatically for zero copy.
        const AUTO_BUF_REG = UBLK_F_AUTO_BUF_REG;
        /// QUIESCE_DEV quiesces a live device (needs USER_RECOVERY).
        const QUIESCE = UBLK_F_QUIESCE;
        /// Each (queue, tag) may be served by its own task.
        const PER_IO_DAEMON = UBLK_F_PER_IO_DAEMON;
        /// Zero-copy buffers may be (un)registered from any task.
        const BUF_REG_OFF_DAEMON = UBLK_F_BUF_REG_OFF_DAEMON;
        /// Batched I/O commands (PREP/COMMIT/FETCH_IO_CMDS).
        const BATCH_IO = UBLK_F_BATCH_IO;
        /// Requests may carry integrity metadata (needs USER_COPY).
        const INTEGRITY = UBLK_F_INTEGRITY;
        /// TRY_STOP_DEV stops the device only when nobody has it open.
        const SAFE_STOP_DEV = UBLK_F_SAFE_STOP_DEV;
        /// No partition scan when the device starts.
        const NO_AUTO_PART_SCAN = UBLK_F_NO_AUTO_PART_SCAN;
        /// Zero copy through registered shared memory (REG_BUF).
        const SHMEM_ZC = UBLK_F_SHMEM_ZC;
        /// The I/O descriptor size is given by `io_desc_size` in the device info.
        const IO_DESC_SIZE = UBLK_F_IO_DESC_SIZE;
    }
}

impl Features {
    /// The recovery bits; ADD_DEV accepts only the combinations
    /// none, USER_RECOVERY, USER_RECOVERY|REISSUE and USER_RECOVERY|FAIL_IO.
    pub const ALL_RECOVERY: Features = Features::USER_RECOVERY
        .union(Features::USER_RECOVERY_REISSUE)
        .union(Features::USER_RECOVERY_FAIL_IO);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_named_once_in_order() {
        // 21 bits, 0..=20, each named exactly once and listed in bit order.
        assert_eq!(Features::NAMED.len(), 21);
        for (i, (_, flag)) in Features::NAMED.iter().enumerate() {
            assert_eq!(flag.bits(), 1 << i);
        }
        assert_eq!(Features::ALL_KNOWN.bits(), (1 << 21) - 1);
        assert_eq!(
            Features::from_name("cmd_ioctl_encode"),
            Some(Features::CMD_IOCTL_ENCODE)
        );
    }

    #[test]
    fn bit_two_is_need_get_data_not_ioctl_encode() {
        // A port once labelled 0x02 "IOCTL_ENCODE"; the header says otherwise.
        assert_eq!(Features::URING_CMD_COMP_IN_TASK.bits(), 0x02);
        assert_eq!(Features::CMD_IOCTL_ENCODE.bits(), 0x40);
        assert_eq!(Features::NEED_GET_DATA.bits(), 0x04);
    }
}
