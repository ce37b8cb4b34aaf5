//! `Errno`: a kernel error number, displayed by name.

use core::fmt;

/// A positive Linux error number (`EINVAL`, `ENODEV`, ...), as returned negated by syscalls and
/// in completion results.
///
/// Displayed by its symbolic name and a short description, e.g. `EEXIST (file exists)`, so that
/// messages read the same on every architecture (the numbers differ between some of them; the
/// names do not).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

/// Defines the name and description table once, so the names and the numbers cannot drift apart.
macro_rules! errno_table {
    ($($name:ident => $desc:literal,)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "`: ", $desc, ".")]
                pub const $name: Errno = Errno(libc::$name);
            )*

            /// The symbolic name (`"EINVAL"`), or `None` for a number this table does not know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// A short lower-case description (`"invalid argument"`), or `None` if unknown.
            pub fn description(self) -> Option<&'static str> {
                match self.0 {
                    $(libc::$name => Some($desc),)*
                    _ => None,
                }
            }
        }
    };
}

// One name per number: aliases such as EWOULDBLOCK (= EAGAIN) and ENOTSUP (= EOPNOTSUPP) are
// left out, because on Linux they share a value with the name listed.
errno_table! {
    EPERM => "operation not permitted",
    ENOENT => "no such file or directory",
    ESRCH => "no such process",
    EINTR => "interrupted system call",
    EIO => "input/output error",
    ENXIO => "no such device or address",
    E2BIG => "argument list too long",
    EBADF => "bad file descriptor",
    EAGAIN => "resource temporarily unavailable",
    ENOMEM => "cannot allocate memory",
    EACCES => "permission denied",
    EFAULT => "bad address",
    ENOTBLK => "block device required",
    EBUSY => "device or resource busy",
    EEXIST => "file exists",
    EXDEV => "invalid cross-device link",
    ENODEV => "no such device",
    ENOTDIR => "not a directory",
    EISDIR => "is a directory",
    EINVAL => "invalid argument",
    ENFILE => "too many open files in system",
    EMFILE => "too many open files",
    ENOTTY => "inappropriate ioctl for device",
    EFBIG => "file too large",
    ENOSPC => "no space left on device",
    ESPIPE => "illegal seek",
    EROFS => "read-only file system",
    EPIPE => "broken pipe",
    ERANGE => "numerical result out of range",
    EDEADLK => "resource deadlock avoided",
    ENAMETOOLONG => "file name too long",
    ENOSYS => "function not implemented",
    ENOTEMPTY => "directory not empty",
    ELOOP => "too many levels of symbolic links",
    ENODATA => "no data available",
    ETIME => "timer expired",
    EOVERFLOW => "value too large for defined data type",
    EBADFD => "file descriptor in bad state",
    EOPNOTSUPP => "operation not supported",
    ENOBUFS => "no buffer space available",
    ESHUTDOWN => "cannot send after transport endpoint shutdown",
    ETIMEDOUT => "connection timed out",
    EALREADY => "operation already in progress",
    EINPROGRESS => "operation now in progress",
    ECANCELED => "operation canceled",
    EREMOTEIO => "remote I/O error",
    EDQUOT => "disk quota exceeded",
    ENOMEDIUM => "no medium found",
    EMEDIUMTYPE => "wrong medium type",
    EOWNERDEAD => "owner died",
    ENOTRECOVERABLE => "state not recoverable",
}

impl Errno {
    /// Splits a raw syscall or completion result: negative values are errors (`-errno`),
    /// the rest is the non-negative result.
    pub fn from_result(res: i32) -> Result<u32, Errno> {
        if res < 0 {
            // `-i32::MIN` overflows; the kernel never returns it, but a forged value must not
            // panic, so it saturates to a number no table knows.
            Err(Errno(res.checked_neg().unwrap_or(i32::MAX)))
        } else {
            Ok(res.unsigned_abs())
        }
    }

    /// The calling thread's `errno` after a failed libc call.
    pub(crate) fn last() -> Errno {
        // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno on
        // every Linux libc (glibc, musl); reading it has no side effects.
        Errno(unsafe { *libc::__errno_location() })
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.description()) {
            (Some(name), Some(desc)) => write!(f, "{name} ({desc})"),
            _ => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn displays_by_name() {
        assert_eq!(format!("{}", Errno::EEXIST), "EEXIST (file exists)");
        assert_eq!(format!("{:?}", Errno(libc::ENODEV)), "ENODEV");
        assert_eq!(format!("{}", Errno(4000)), "errno 4000");
    }

    #[test]
    fn splits_results() {
        assert_eq!(Errno::from_result(7), Ok(7));
        assert_eq!(Errno::from_result(-libc::EINVAL), Err(Errno::EINVAL));
        assert_eq!(Errno::from_result(i32::MIN), Err(Errno(i32::MAX)));
    }
}
