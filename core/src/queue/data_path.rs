//! How a request's data travels between the block layer's pages and the target.

use core::fmt;

use crate::abi::Features;

/// How a queue moves request data. Chosen per device, before ADD_DEV, from the flags it is
/// added with; a queue serves the path its device was added with.
///
/// | path | device flags | a READ's data reaches the request's pages |
/// |---|---|---|
/// | [`Copy`](DataPath::Copy) | none | the target fills a buffer of ours; the driver copies it |
/// | [`UserCopy`](DataPath::UserCopy) | `USER_COPY` | the target writes it to `/dev/ublkcN` at the request's position (`pwrite`): the kernel copies from wherever it is |
/// | [`ZeroCopy`](DataPath::ZeroCopy) | `AUTO_BUF_REG`, `SUPPORT_ZERO_COPY`, `USER_COPY` | the driver registers the pages in the queue's ring as fixed buffer `tag`; the target's own operations (a file's `READ_FIXED`) fill them, with no copy through this process |
///
/// A zero-copy device also has `USER_COPY`, so that a target can still reach the data with
/// `pread`/`pwrite` where it must (one that needs the bytes in its own memory), and
/// `SUPPORT_ZERO_COPY`, so that a request whose automatic registration failed can have its
/// buffer registered by hand (`UBLK_IO_F_NEED_REG_BUF`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DataPath {
    /// A buffer per tag in this process, filled or emptied by the driver's copy (every kernel).
    #[default]
    Copy,
    /// No buffer of ours is given to the kernel: data moves by `pread`/`pwrite` of
    /// `/dev/ublkcN` at the request's position (`UBLK_F_USER_COPY`, Linux 6.5).
    UserCopy,
    /// The request's pages are registered in the queue's ring before the request arrives
    /// (`UBLK_F_AUTO_BUF_REG`, Linux 6.16), for the target's fixed-buffer operations.
    ZeroCopy,
}

impl DataPath {
    /// Every path, in the order help lists them.
    pub const ALL: [DataPath; 3] = [DataPath::ZeroCopy, DataPath::UserCopy, DataPath::Copy];

    /// The `UBLK_F_*` flags a device needs for this path.
    pub const fn flags(self) -> Features {
        match self {
            DataPath::Copy => Features::empty(),
            DataPath::UserCopy => Features::USER_COPY,
            DataPath::ZeroCopy => Features::AUTO_BUF_REG
                .union(Features::SUPPORT_ZERO_COPY)
                .union(Features::USER_COPY),
        }
    }

    /// The path of a device with these flags (as ADD_DEV granted them, or GET_DEV_INFO
    /// reports them). A device of another server with `SUPPORT_ZERO_COPY` alone (buffers
    /// registered by hand for each request) is zero copy too, though not with all the flags
    /// [`ZeroCopy`](DataPath::ZeroCopy) asks for.
    pub const fn of(flags: Features) -> DataPath {
        if flags.contains(Features::AUTO_BUF_REG) || flags.contains(Features::SUPPORT_ZERO_COPY) {
            DataPath::ZeroCopy
        } else if flags.contains(Features::USER_COPY) {
            DataPath::UserCopy
        } else {
            DataPath::Copy
        }
    }

    /// True if requests reach the target through `pread`/`pwrite` of `/dev/ublkcN`.
    pub const fn has_user_copy(self) -> bool {
        !matches!(self, DataPath::Copy)
    }

    /// Its name on the command line and in JSON: `copy`, `user-copy`, `zero-copy`.
    pub const fn name(self) -> &'static str {
        match self {
            DataPath::Copy => "copy",
            DataPath::UserCopy => "user-copy",
            DataPath::ZeroCopy => "zero-copy",
        }
    }

    /// The path called `name`.
    pub fn from_name(name: &str) -> Option<DataPath> {
        DataPath::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for DataPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_names_and_flags_round_trip() {
        for path in DataPath::ALL {
            assert_eq!(DataPath::of(path.flags()), path);
            assert_eq!(DataPath::from_name(path.name()), Some(path));
            // Flags that do not choose a path leave it alone.
            let other = Features::USER_RECOVERY | Features::QUIESCE | Features::NEED_GET_DATA;
            assert_eq!(DataPath::of(path.flags() | other), path);
        }
        assert_eq!(DataPath::from_name("zerocopy"), None);
        // Another server's zero copy by hand (REGISTER_IO_BUF per request), as kublk -z.
        assert_eq!(
            DataPath::of(Features::SUPPORT_ZERO_COPY),
            DataPath::ZeroCopy
        );
        assert_eq!(DataPath::of(Features::USER_COPY), DataPath::UserCopy);
    }
}
