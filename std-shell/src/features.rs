//! What the running kernel's ublk driver supports, and what this build makes use of.

use ublk_core::Features;

use crate::control::Controller;
use crate::error::Result;

/// The `UBLK_F_*` features this build of the library implements. A feature the kernel offers
/// but that is missing here is simply not asked for.
///
/// Commands are sent ioctl-encoded where the driver supports it, legacy-encoded otherwise.
/// These are also the flags [`DeviceBuilder::flags`](crate::DeviceBuilder::flags) accepts.
pub const BUILD_FEATURES: Features = Features::CMD_IOCTL_ENCODE
    .union(Features::NEED_GET_DATA)
    .union(Features::URING_CMD_COMP_IN_TASK)
    .union(Features::NO_AUTO_PART_SCAN)
    .union(Features::USER_RECOVERY)
    .union(Features::USER_RECOVERY_REISSUE)
    .union(Features::USER_RECOVERY_FAIL_IO)
    .union(Features::QUIESCE)
    .union(Features::UPDATE_SIZE)
    .union(Features::USER_COPY)
    .union(Features::AUTO_BUF_REG)
    .union(Features::SUPPORT_ZERO_COPY);

/// GET_FEATURES on `/dev/ublk-control`: the features the running kernel's ublk driver
/// supports. Each has a name ([`Features::names`]); bits too new for this build are kept in
/// [`Features::unknown_bits`].
pub fn features() -> Result<Features> {
    Controller::open()?.features()
}

/// One line of a feature report: a named feature, whether the kernel has it, whether this
/// build uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureSupport {
    /// The header's name without `UBLK_F_`.
    pub name: &'static str,
    /// The bit.
    pub feature: Features,
    /// The running driver supports it.
    pub kernel: bool,
    /// This build uses it.
    pub build: bool,
}

/// Every feature this build can name, with the kernel's and the build's support.
pub fn feature_report(kernel: Features) -> Vec<FeatureSupport> {
    Features::NAMED
        .iter()
        .map(|&(name, feature)| FeatureSupport {
            name,
            feature,
            kernel: kernel.contains(feature),
            build: BUILD_FEATURES.contains(feature),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_covers_every_named_bit() {
        let kernel = Features::USER_COPY | Features::CMD_IOCTL_ENCODE;
        let report = feature_report(kernel);
        assert_eq!(report.len(), Features::NAMED.len());
        let kernel_names: Vec<_> = report.iter().filter(|f| f.kernel).map(|f| f.name).collect();
        assert_eq!(kernel_names, ["CMD_IOCTL_ENCODE", "USER_COPY"]);
        assert!(
            report
                .iter()
                .any(|f| f.name == "CMD_IOCTL_ENCODE" && f.build)
        );
    }
}
