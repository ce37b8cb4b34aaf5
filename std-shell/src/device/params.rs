//! A device's geometry and block-layer attributes, checked and turned into SET_PARAMS.

use ublk_core::abi::{Attrs, UblkParamBasic, UblkParamDiscard, UblkParamDmaAlign, UblkParams};

use crate::backend::{DiscardLimits, Properties};
use crate::error::{Error, Result};
use crate::rules;

/// What the device looks like to the block layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Bytes; `None` until the builder or the backend says.
    pub size: Option<u64>,
    pub logical_block_size: u32,
    /// `None`: the logical block size.
    pub physical_block_size: Option<u32>,
    pub read_only: bool,
    pub rotational: bool,
    pub volatile_cache: bool,
    pub fua: bool,
    pub discard: Option<DiscardLimits>,
    /// Bytes the request's memory must be aligned to (`None` or 1: any).
    pub dma_alignment: Option<u32>,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            size: None,
            logical_block_size: 512,
            physical_block_size: None,
            read_only: false,
            rotational: false,
            volatile_cache: false,
            fua: false,
            discard: None,
            dma_alignment: None,
        }
    }
}

/// What the builder was told; `None` where it was not (the backend's properties or the
/// default then decide).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub size: Option<u64>,
    pub logical_block_size: Option<u32>,
    pub physical_block_size: Option<u32>,
    pub read_only: Option<bool>,
    pub rotational: Option<bool>,
    pub volatile_cache: Option<bool>,
    pub fua: Option<bool>,
    pub discard: Option<DiscardLimits>,
}

impl Settings {
    /// The geometry: each setting from the builder, else from the backend, else the default;
    /// a builder setting the backend cannot serve is refused by name.
    pub fn resolve(&self, backend: &Properties) -> Result<Geometry> {
        let default = Geometry::default();
        if let (Some(size), Some(most)) = (self.size, backend.size)
            && size > most
        {
            return Err(Error::invalid(
                "device size",
                format!("{size} bytes is more than the backend holds ({most} bytes)"),
            ));
        }
        let logical_block_size = self
            .logical_block_size
            .or(backend.logical_block_size)
            .unwrap_or(default.logical_block_size);
        if let Some(min) = backend.min_logical_block_size
            && logical_block_size < min
        {
            return Err(Error::invalid(
                "logical block size",
                format!(
                    "{logical_block_size} bytes is smaller than the backend can serve ({min} bytes, e.g. its direct-I/O alignment)"
                ),
            ));
        }
        if backend.read_only && self.read_only == Some(false) {
            return Err(Error::invalid(
                "read-only",
                "the backend can only read (it was opened read-only), so the device must be read-only",
            ));
        }
        let volatile_cache = self
            .volatile_cache
            .or(backend.volatile_cache)
            .unwrap_or(default.volatile_cache);
        // A backend's FUA only means something with its cache; one set here is checked later.
        let fua = self
            .fua
            .or(backend.fua.filter(|_| volatile_cache))
            .unwrap_or(default.fua);
        Ok(Geometry {
            size: self.size.or(backend.size),
            logical_block_size,
            physical_block_size: self.physical_block_size.or(backend
                .physical_block_size
                .filter(|&p| p >= logical_block_size)),
            read_only: self.read_only.unwrap_or(default.read_only) || backend.read_only,
            rotational: self
                .rotational
                .or(backend.rotational)
                .unwrap_or(default.rotational),
            volatile_cache,
            fua,
            discard: self.discard.or(backend.discard),
            dma_alignment: backend.dma_alignment,
        })
    }
}

fn sectors_u32(bytes: u64) -> u32 {
    u32::try_from(bytes >> 9).unwrap_or(u32::MAX)
}

impl Geometry {
    /// The size, checked: set, non-zero and a whole number of logical blocks.
    pub fn checked_size(&self) -> Result<u64> {
        let size = self.size.ok_or_else(|| {
            Error::invalid(
                "device size",
                "not set, and the backend has no size of its own",
            )
        })?;
        rules::device_size(size, self.logical_block_size)
    }

    /// SET_PARAMS for this geometry, given the largest I/O the driver granted.
    pub fn params(&self, max_io_bytes: u32) -> Result<UblkParams> {
        let page = ublk_core::sys::page_size() as u32;
        let lbs_shift = rules::logical_block_size(self.logical_block_size)?.trailing_zeros() as u8;
        let pbs = self.physical_block_size.unwrap_or(self.logical_block_size);
        let pbs_shift =
            rules::physical_block_size(pbs, self.logical_block_size)?.trailing_zeros() as u8;
        let size = self.checked_size()?;
        if self.fua && !self.volatile_cache {
            return Err(Error::invalid(
                "FUA",
                "needs a volatile write cache (without one every write is durable already)",
            ));
        }
        if max_io_bytes < page {
            return Err(Error::invalid(
                "max I/O size",
                format!("the driver granted {max_io_bytes} bytes, less than a page"),
            ));
        }
        let mut attrs = Attrs::empty();
        for (on, attr) in [
            (self.read_only, Attrs::READ_ONLY),
            (self.rotational, Attrs::ROTATIONAL),
            (self.volatile_cache, Attrs::VOLATILE_CACHE),
            (self.fua, Attrs::FUA),
        ] {
            if on {
                attrs |= attr;
            }
        }
        let mut params = UblkParams::new().with_basic(UblkParamBasic {
            attrs,
            logical_bs_shift: lbs_shift,
            physical_bs_shift: pbs_shift,
            io_opt_shift: pbs_shift,
            io_min_shift: pbs_shift,
            max_sectors: max_io_bytes >> 9,
            chunk_sectors: 0,
            dev_sectors: size >> 9,
            virt_boundary_mask: 0,
        });
        if let Some(align) = self.dma_alignment.filter(|&a| a > 1) {
            if !align.is_power_of_two() || align > page {
                return Err(Error::invalid(
                    "DMA alignment",
                    format!("must be a power of two up to the page size ({page}), got {align}"),
                ));
            }
            // The kernel takes a mask.
            params = params.with_dma_align(UblkParamDmaAlign {
                alignment: align - 1,
                ..Default::default()
            });
        }
        if let Some(d) = self.discard {
            if d.granularity == 0 || d.granularity % self.logical_block_size != 0 {
                return Err(Error::invalid(
                    "discard granularity",
                    format!(
                        "must be a non-zero multiple of the logical block size ({}), got {}",
                        self.logical_block_size, d.granularity
                    ),
                ));
            }
            params = params.with_discard(UblkParamDiscard {
                discard_alignment: 0,
                discard_granularity: d.granularity,
                max_discard_sectors: sectors_u32(d.max_discard_bytes),
                max_write_zeroes_sectors: sectors_u32(d.max_write_zeroes_bytes),
                max_discard_segments: 1,
                reserved0: 0,
            });
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ublk_core::abi::ParamTypes;

    fn geometry(size: u64) -> Geometry {
        Geometry {
            size: Some(size),
            ..Geometry::default()
        }
    }

    #[test]
    fn params_carry_the_geometry() {
        let g = Geometry {
            logical_block_size: 4096,
            volatile_cache: true,
            fua: true,
            read_only: true,
            discard: Some(DiscardLimits {
                granularity: 4096,
                max_discard_bytes: 1 << 45,
                max_write_zeroes_bytes: 1 << 20,
            }),
            ..geometry(1 << 30)
        };
        let p = g.params(512 << 10).unwrap();
        assert_eq!(p.types, ParamTypes::BASIC | ParamTypes::DISCARD);
        assert_eq!(p.basic.dev_sectors, (1 << 30) >> 9);
        assert_eq!(p.basic.logical_bs_shift, 12);
        assert_eq!(p.basic.physical_bs_shift, 12);
        assert_eq!(p.basic.max_sectors, 1024);
        assert_eq!(
            p.basic.attrs,
            Attrs::READ_ONLY | Attrs::VOLATILE_CACHE | Attrs::FUA
        );
        assert_eq!(p.discard.max_discard_sectors, u32::MAX, "clamped");
        assert_eq!(p.discard.max_write_zeroes_sectors, 2048);
        assert_eq!(p.discard.max_discard_segments, 1);
    }

    #[test]
    fn bad_geometry_is_refused_by_name() {
        let cases: [(Geometry, &str); 7] = [
            (Geometry::default(), "device size: not set"),
            (geometry(0), "device size: must be a non-zero multiple"),
            (geometry(1000), "device size: must be a non-zero multiple"),
            (
                Geometry {
                    logical_block_size: 768,
                    ..geometry(1 << 20)
                },
                "logical block size: must be a power of two",
            ),
            (
                Geometry {
                    logical_block_size: 4096,
                    physical_block_size: Some(512),
                    ..geometry(1 << 20)
                },
                "physical block size",
            ),
            (
                Geometry {
                    fua: true,
                    ..geometry(1 << 20)
                },
                "FUA: needs a volatile write cache",
            ),
            (
                Geometry {
                    discard: Some(DiscardLimits {
                        granularity: 100,
                        max_discard_bytes: 1 << 20,
                        max_write_zeroes_bytes: 0,
                    }),
                    ..geometry(1 << 20)
                },
                "discard granularity",
            ),
        ];
        for (g, want) in cases {
            let msg = g.params(512 << 10).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    /// Found by the randomized geometry test (seed 0xb5cd49763cecaa62): the size check
    /// divided by the block size before anything had refused a zero one.
    #[test]
    fn a_zero_block_size_is_refused_not_divided_by() {
        let g = Geometry {
            logical_block_size: 0,
            ..geometry(1 << 20)
        };
        let msg = g.checked_size().unwrap_err().to_string();
        assert!(
            msg.contains("device size: must be a non-zero multiple"),
            "{msg}"
        );
        let msg = g.params(512 << 10).unwrap_err().to_string();
        assert!(msg.contains("logical block size"), "{msg}");
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn backend() -> Properties {
        Properties {
            size: Some(1 << 30),
            logical_block_size: Some(4096),
            min_logical_block_size: Some(4096),
            volatile_cache: Some(true),
            fua: Some(true),
            rotational: Some(true),
            ..Properties::default()
        }
    }

    #[test]
    fn the_backend_fills_in_what_the_builder_left_open() {
        let g = Settings::default().resolve(&backend()).unwrap();
        assert_eq!(g.size, Some(1 << 30));
        assert_eq!(g.logical_block_size, 4096);
        assert!(g.volatile_cache && g.fua && g.rotational && !g.read_only);
        let g = Settings::default().resolve(&Properties::default()).unwrap();
        assert_eq!((g.size, g.logical_block_size), (None, 512));
        assert!(!g.volatile_cache && !g.fua && !g.rotational);
    }

    #[test]
    fn the_builder_wins_within_what_the_backend_can_serve() {
        let s = Settings {
            size: Some(1 << 20),
            logical_block_size: Some(8192),
            volatile_cache: Some(false),
            rotational: Some(false),
            ..Settings::default()
        };
        let g = s.resolve(&backend()).unwrap();
        assert_eq!((g.size, g.logical_block_size), (Some(1 << 20), 8192));
        // No cache: the backend's FUA means nothing then.
        assert!(!g.volatile_cache && !g.fua && !g.rotational);
    }

    #[test]
    fn settings_the_backend_cannot_serve_are_refused_by_name() {
        let read_only = Properties {
            read_only: true,
            ..backend()
        };
        let cases = [
            (
                Settings {
                    size: Some(2 << 30),
                    ..Settings::default()
                },
                backend(),
                "device size: 2147483648 bytes is more than the backend holds",
            ),
            (
                Settings {
                    logical_block_size: Some(512),
                    ..Settings::default()
                },
                backend(),
                "logical block size: 512 bytes is smaller than the backend can serve (4096",
            ),
            (
                Settings {
                    read_only: Some(false),
                    ..Settings::default()
                },
                read_only,
                "read-only: the backend can only read",
            ),
        ];
        for (s, p, want) in cases {
            let msg = s.resolve(&p).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
        let g = Settings::default().resolve(&read_only).unwrap();
        assert!(g.read_only, "a read-only backend makes a read-only device");
    }
}
