//! Device parameters: `struct ublk_params` and its parts (SET_PARAMS / GET_PARAMS).

crate::flag_set! {
    /// Which parts of [`UblkParams`] are present (`UBLK_PARAM_TYPE_*`).
    pub struct ParamTypes(u32) {
        /// `UBLK_PARAM_TYPE_BASIC`: required by START_DEV.
        const BASIC = 1 << 0;
        /// `UBLK_PARAM_TYPE_DISCARD`
        const DISCARD = 1 << 1;
        /// `UBLK_PARAM_TYPE_DEVT`: read-only, filled in by GET_PARAMS.
        const DEVT = 1 << 2;
        /// `UBLK_PARAM_TYPE_ZONED`
        const ZONED = 1 << 3;
        /// `UBLK_PARAM_TYPE_DMA_ALIGN`
        const DMA_ALIGN = 1 << 4;
        /// `UBLK_PARAM_TYPE_SEGMENT`
        const SEGMENT = 1 << 5;
        /// `UBLK_PARAM_TYPE_INTEGRITY`: needs `UBLK_F_INTEGRITY`.
        const INTEGRITY = 1 << 6;
    }
}

crate::flag_set! {
    /// Block device attributes in [`UblkParamBasic::attrs`] (`UBLK_ATTR_*`).
    pub struct Attrs(u32) {
        /// `UBLK_ATTR_READ_ONLY`
        const READ_ONLY = 1 << 0;
        /// `UBLK_ATTR_ROTATIONAL`
        const ROTATIONAL = 1 << 1;
        /// `UBLK_ATTR_VOLATILE_CACHE`: the device has a write cache; FLUSH is sent.
        const VOLATILE_CACHE = 1 << 2;
        /// `UBLK_ATTR_FUA`: FUA writes are sent (needs VOLATILE_CACHE).
        const FUA = 1 << 3;
    }
}

crate::abi_struct! {
    /// `struct ublk_param_basic`: size, block sizes and I/O limits. Shifts are log2 of bytes.
    pub struct UblkParamBasic (size 32) {
        /// [`Attrs`].
        pub attrs: Attrs = 0,
        /// log2 of the logical block size, 9 (512 B) ..= page shift.
        pub logical_bs_shift: u8 = 4,
        /// log2 of the physical block size, ≥ `logical_bs_shift`.
        pub physical_bs_shift: u8 = 5,
        /// log2 of the optimal I/O size.
        pub io_opt_shift: u8 = 6,
        /// log2 of the minimum I/O size.
        pub io_min_shift: u8 = 7,
        /// Largest request in 512-byte sectors: ≥ one page, ≤ `max_io_buf_bytes / 512`.
        pub max_sectors: u32 = 8,
        /// Requests do not cross multiples of this many sectors (0: no limit).
        pub chunk_sectors: u32 = 12,
        /// Device size in 512-byte sectors.
        pub dev_sectors: u64 = 16,
        /// Segment boundary mask for scatter-gather (0: none).
        pub virt_boundary_mask: u64 = 24,
    }
}

crate::abi_struct! {
    /// `struct ublk_param_discard`: DISCARD and WRITE_ZEROES limits.
    pub struct UblkParamDiscard (size 20) {
        /// Discard alignment offset in bytes.
        pub discard_alignment: u32 = 0,
        /// Discard granularity in bytes (must not be 0).
        pub discard_granularity: u32 = 4,
        /// Largest discard in sectors (0: no discard).
        pub max_discard_sectors: u32 = 8,
        /// Largest WRITE_ZEROES in sectors (0: none).
        pub max_write_zeroes_sectors: u32 = 12,
        /// Must be 1 when `max_discard_sectors` is set.
        pub max_discard_segments: u16 = 16,
        /// Reserved.
        pub reserved0: u16 = 18,
    }
}

crate::abi_struct! {
    /// `struct ublk_param_devt`: device numbers; read-only, filled in by GET_PARAMS (the disk
    /// numbers only once the device is started).
    pub struct UblkParamDevt (size 16) {
        /// `/dev/ublkcN` major.
        pub char_major: u32 = 0,
        /// `/dev/ublkcN` minor.
        pub char_minor: u32 = 4,
        /// `/dev/ublkbN` major (0 before START_DEV).
        pub disk_major: u32 = 8,
        /// `/dev/ublkbN` minor.
        pub disk_minor: u32 = 12,
    }
}

crate::abi_struct! {
    /// `struct ublk_param_zoned`: zoned device limits.
    pub struct UblkParamZoned (size 32) {
        /// Most open zones (0: no limit).
        pub max_open_zones: u32 = 0,
        /// Most active zones (0: no limit).
        pub max_active_zones: u32 = 4,
        /// Largest zone append in sectors.
        pub max_zone_append_sectors: u32 = 8,
        /// Reserved.
        pub reserved: [u8; 20] = 12,
    }
}

crate::abi_struct! {
    /// `struct ublk_param_dma_align`: buffer alignment mask.
    pub struct UblkParamDmaAlign (size 8) {
        /// Alignment mask: 2^n - 1, below the page size.
        pub alignment: u32 = 0,
        /// Padding.
        pub pad: [u8; 4] = 4,
    }
}

/// `UBLK_MIN_SEGMENT_SIZE`
pub const UBLK_MIN_SEGMENT_SIZE: u32 = 4096;

crate::abi_struct! {
    /// `struct ublk_param_segment`: scatter-gather segment limits (all three must be set).
    pub struct UblkParamSegment (size 16) {
        /// Segment boundary mask; mask + 1 is a power of two ≥ 4096.
        pub seg_boundary_mask: u64 = 0,
        /// Largest segment in bytes, ≥ 4096.
        pub max_segment_size: u32 = 8,
        /// Most segments per request.
        pub max_segments: u16 = 12,
        /// Padding.
        pub pad: [u8; 2] = 14,
    }
}

crate::abi_struct! {
    /// `struct ublk_param_integrity`: integrity metadata format.
    pub struct UblkParamIntegrity (size 16) {
        /// `LBMD_PI_CAP_*` flags.
        pub flags: u32 = 0,
        /// Most integrity segments (0: no limit).
        pub max_integrity_segments: u16 = 4,
        /// log2 of the protection interval.
        pub interval_exp: u8 = 6,
        /// Metadata bytes per interval (must not be 0).
        pub metadata_size: u8 = 7,
        /// Offset of the PI tuple in the metadata.
        pub pi_offset: u8 = 8,
        /// `LBMD_PI_CSUM_*`.
        pub csum_type: u8 = 9,
        /// Tag size.
        pub tag_size: u8 = 10,
        /// Padding.
        pub pad: [u8; 5] = 11,
    }
}

crate::abi_struct! {
    /// `struct ublk_params`: every parameter part, with `len` and `types` saying which are valid.
    ///
    /// The C struct has 4 bytes of implicit padding between `dma` and `seg` (the segment part is
    /// 8-byte aligned); here they are the explicit field `pad_dma_seg`, so that the struct has no
    /// uninitialized bytes. Every kernel field keeps the kernel's offset.
    pub struct UblkParams (size 152) {
        /// Total length of the parameters: set it (to 152) for SET_PARAMS and GET_PARAMS.
        pub len: u32 = 0,
        /// Which parts are present.
        pub types: ParamTypes = 4,
        /// Basic parameters (required).
        pub basic: UblkParamBasic = 8,
        /// Discard limits.
        pub discard: UblkParamDiscard = 40,
        /// Device numbers (read-only).
        pub devt: UblkParamDevt = 60,
        /// Zoned limits.
        pub zoned: UblkParamZoned = 76,
        /// DMA alignment.
        pub dma: UblkParamDmaAlign = 108,
        /// Implicit padding of the C struct, made explicit. Always zero.
        pub pad_dma_seg: [u8; 4] = 116,
        /// Segment limits.
        pub seg: UblkParamSegment = 120,
        /// Integrity format.
        pub integrity: UblkParamIntegrity = 136,
    }
}

impl UblkParams {
    /// `sizeof(struct ublk_params)`, the value `len` must carry.
    pub const SIZE: u32 = core::mem::size_of::<UblkParams>() as u32;

    /// Empty parameters with `len` set: add parts with the `with_*` methods.
    pub fn new() -> UblkParams {
        UblkParams {
            len: Self::SIZE,
            ..Default::default()
        }
    }

    /// With the basic part set (and marked present).
    pub fn with_basic(mut self, basic: UblkParamBasic) -> UblkParams {
        self.basic = basic;
        self.types |= ParamTypes::BASIC;
        self
    }

    /// With the discard part set (and marked present).
    pub fn with_discard(mut self, discard: UblkParamDiscard) -> UblkParams {
        self.discard = discard;
        self.types |= ParamTypes::DISCARD;
        self
    }

    /// With the DMA alignment part set (and marked present).
    pub fn with_dma_align(mut self, dma: UblkParamDmaAlign) -> UblkParams {
        self.dma = dma;
        self.types |= ParamTypes::DMA_ALIGN;
        self
    }

    /// With the segment part set (and marked present).
    pub fn with_segment(mut self, seg: UblkParamSegment) -> UblkParams {
        self.seg = seg;
        self.types |= ParamTypes::SEGMENT;
        self
    }

    /// With the zoned part set (and marked present).
    pub fn with_zoned(mut self, zoned: UblkParamZoned) -> UblkParams {
        self.zoned = zoned;
        self.types |= ParamTypes::ZONED;
        self
    }

    /// With the integrity part set (and marked present).
    pub fn with_integrity(mut self, integrity: UblkParamIntegrity) -> UblkParams {
        self.integrity = integrity;
        self.types |= ParamTypes::INTEGRITY;
        self
    }
}
