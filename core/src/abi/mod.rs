//! The ublk kernel ABI (`linux/ublk_cmd.h`), one file per part of the header, plus the io_uring
//! ABI the rings need.
//!
//! Structs carry the kernel's names and layouts, checked at compile time (size, every field's
//! offset, no padding). Flag fields are typed ([`Features`], [`ParamTypes`], [`Attrs`],
//! [`IoFlags`]) and enumerations decode with `TryFrom` ([`DevState`], [`IoOp`], [`CtrlCmd`]), so
//! raw integers stop at this module.

pub mod ctrl;
pub mod features;
mod flags;
pub mod io;
pub mod params;
pub mod pod;
pub mod uring;

pub use ctrl::{CtrlCmd, DevState, UblksrvCtrlCmd, UblksrvCtrlDevInfo};
pub use features::Features;
pub use io::{IoCmd, IoFlags, IoOp, UblksrvIoCmd, UblksrvIoDesc};
pub use params::{
    Attrs, ParamTypes, UblkParamBasic, UblkParamDevt, UblkParamDiscard, UblkParamDmaAlign,
    UblkParamIntegrity, UblkParamSegment, UblkParamZoned, UblkParams,
};
pub use pod::Pod;

#[cfg(test)]
mod fuzz_tests;

/// How command opcodes are encoded in the SQE's `cmd_op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpEncoding {
    /// `_IOR`/`_IOWR('u', nr, payload)`: every kernel with `UBLK_F_CMD_IOCTL_ENCODE` (6.4+);
    /// the only encoding kernels built without `CONFIG_BLKDEV_UBLK_LEGACY_OPCODES` accept.
    Ioctl,
    /// The bare command number: kernels before 6.4.
    Legacy,
}

/// The ioctl type of every ublk command: `'u'`.
pub const UBLK_IOC_TYPE: u8 = b'u';

/// `_IOR('u', nr, T)`, with the architecture's ioctl encoding (libc knows where it differs).
pub(crate) const fn ioc_read<T>(nr: u8) -> u32 {
    libc::_IOR::<T>(UBLK_IOC_TYPE as u32, nr as u32) as u32
}

/// `_IOWR('u', nr, T)`.
pub(crate) const fn ioc_readwrite<T>(nr: u8) -> u32 {
    libc::_IOWR::<T>(UBLK_IOC_TYPE as u32, nr as u32) as u32
}

/// Opcodes checked against values a C program printed from the 7.3 kernel's `ublk_cmd.h`
/// (`printf("%#x", UBLK_U_CMD_ADD_DEV)` etc.). They hold for the generic ioctl layout (x86,
/// arm, riscv, s390, loongarch); powerpc, mips and sparc encode directions differently, which
/// `libc::_IOWR` handles and these literal values do not describe.
#[cfg(all(
    test,
    not(any(
        target_arch = "powerpc64",
        target_arch = "mips64",
        target_arch = "sparc64"
    ))
))]
mod encoding_tests {
    use super::*;

    #[test]
    fn control_opcodes_match_the_header() {
        let expected: [(CtrlCmd, u32); 18] = [
            (CtrlCmd::GetQueueAffinity, 0x8020_7501),
            (CtrlCmd::GetDevInfo, 0x8020_7502),
            (CtrlCmd::AddDev, 0xc020_7504),
            (CtrlCmd::DelDev, 0xc020_7505),
            (CtrlCmd::StartDev, 0xc020_7506),
            (CtrlCmd::StopDev, 0xc020_7507),
            (CtrlCmd::SetParams, 0xc020_7508),
            (CtrlCmd::GetParams, 0x8020_7509),
            (CtrlCmd::StartUserRecovery, 0xc020_7510),
            (CtrlCmd::EndUserRecovery, 0xc020_7511),
            (CtrlCmd::GetDevInfo2, 0x8020_7512),
            (CtrlCmd::GetFeatures, 0x8020_7513),
            (CtrlCmd::DelDevAsync, 0x8020_7514),
            (CtrlCmd::UpdateSize, 0xc020_7515),
            (CtrlCmd::QuiesceDev, 0xc020_7516),
            (CtrlCmd::TryStopDev, 0xc020_7517),
            (CtrlCmd::RegBuf, 0xc020_7518),
            (CtrlCmd::UnregBuf, 0xc020_7519),
        ];
        for (cmd, op) in expected {
            assert_eq!(cmd.ioctl_opcode(), op, "{cmd}");
            assert_eq!(cmd.opcode(OpEncoding::Ioctl), op, "{cmd}");
            assert_eq!(cmd.opcode(OpEncoding::Legacy), op & 0xff, "{cmd}");
            assert_eq!(CtrlCmd::try_from(op), Ok(cmd));
            assert_eq!(CtrlCmd::try_from(op & 0xff), Ok(cmd));
        }
        assert_eq!(
            CtrlCmd::ALL.map(|c| c.ioctl_opcode()),
            expected.map(|(_, op)| op)
        );
        assert_eq!(CtrlCmd::try_from(0xc020_7503), Err(0xc020_7503));
    }

    #[test]
    fn io_opcodes_match_the_header() {
        let expected: [(IoCmd, u32); 8] = [
            (IoCmd::FetchReq, 0xc010_7520),
            (IoCmd::CommitAndFetchReq, 0xc010_7521),
            (IoCmd::NeedGetData, 0xc010_7522),
            (IoCmd::RegisterIoBuf, 0xc010_7523),
            (IoCmd::UnregisterIoBuf, 0xc010_7524),
            (IoCmd::PrepIoCmds, 0xc010_7525),
            (IoCmd::CommitIoCmds, 0xc010_7526),
            (IoCmd::FetchIoCmds, 0xc010_7527),
        ];
        for (cmd, op) in expected {
            assert_eq!(cmd.ioctl_opcode(), op, "{cmd}");
            assert_eq!(cmd.opcode(OpEncoding::Legacy), op & 0xff, "{cmd}");
        }
        assert_eq!(
            IoCmd::ALL.map(|c| c.ioctl_opcode()),
            expected.map(|(_, op)| op)
        );
    }

    #[test]
    fn offsets_and_masks_match_the_header() {
        use io::*;
        assert_eq!(UBLKSRV_IO_BUF_TOTAL_SIZE, 0x20_0000_0000_0000);
        assert_eq!(UBLKSRV_IO_INTEGRITY_FLAG, 0x4000_0000_0000_0000);
        // q 1, tag 2, byte 3: 0x8000_0000 + (1 << 41 | 2 << 25 | 3)
        assert_eq!(
            user_copy_pos(1, 2, 3),
            Some(0x8000_0000 + (1u64 << 41) + (2 << 25) + 3)
        );
        assert_eq!(
            user_copy_pos(4095, u16::MAX, (1 << 25) - 1),
            Some(0x8000_0000 + (1u64 << 53) - 1)
        );
        assert_eq!(user_copy_pos(4096, 0, 0), None);
        assert_eq!(user_copy_pos(0, 0, 1 << 25), None);
        // 4096 descriptors of 24 bytes = 96 KiB, a multiple of 4 KiB and 64 KiB pages alike.
        assert_eq!(desc_area_stride(4096), 98_304);
        assert_eq!(desc_mmap_offset(3, 4096), 3 * 98_304);
        assert_eq!(desc_area_stride(65_536), 131_072);
        assert_eq!(UBLK_IO_RES_ABORT, -19);
    }

    #[test]
    fn descriptor_decodes_op_and_flags() {
        let d = UblksrvIoDesc {
            op_flags: 1 | (1 << 13),
            nr_sectors: 8,
            start_sector: 16,
            addr: 0,
        };
        assert_eq!(d.op(), Ok(IoOp::Write));
        assert!(d.flags().contains(IoFlags::FUA));
        let bad = UblksrvIoDesc {
            op_flags: 0xff,
            ..d
        };
        assert_eq!(bad.op(), Err(0xff));
        let reg = io::UblkAutoBufReg {
            index: 0x1234,
            flags: 1,
            reserved0: 0,
            reserved1: 7,
        };
        assert_eq!(reg.to_sqe_addr(), 0x7_0001_1234);
        assert_eq!(io::UblkAutoBufReg::from_sqe_addr(reg.to_sqe_addr()), reg);
        assert_eq!(io::shmem_zc_addr(3, 0x10), 0x3_0000_0010);
        assert_eq!(
            (
                io::shmem_zc_index(0x3_0000_0010),
                io::shmem_zc_offset(0x3_0000_0010)
            ),
            (3, 0x10)
        );
    }
}
