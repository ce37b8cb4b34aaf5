//! The one thing the `std` feature adds: errors of this crate as `std::io::Error`, so that
//! callers with std write `?` instead of converting by hand.

extern crate std;

use crate::errno::Errno;

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_errno_keeps_its_number() {
        let e = std::io::Error::from(Errno::ENOSPC);
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
    }
}
