//! The one thing the `std` feature adds: errors of this crate as `std::io::Error`, so that
//! callers with std write `?` instead of converting by hand. An error the kernel reported
//! with an errno keeps it ([`std::io::Error::raw_os_error`]); the others keep their message
//! and become the `io::Error`'s source.

extern crate std;

use crate::ctrl::CtrlError;
use crate::errno::Errno;
use crate::queue::QueueError;
use crate::ring::RingError;

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> std::io::Error {
        std::io::Error::from_raw_os_error(e.0)
    }
}

impl From<RingError> for std::io::Error {
    fn from(e: RingError) -> std::io::Error {
        match e.errno() {
            Some(errno) => errno.into(),
            None => std::io::Error::other(e),
        }
    }
}

impl From<QueueError> for std::io::Error {
    fn from(e: QueueError) -> std::io::Error {
        match e.errno() {
            Some(errno) => errno.into(),
            None => std::io::Error::other(e),
        }
    }
}

impl From<CtrlError> for std::io::Error {
    fn from(e: CtrlError) -> std::io::Error {
        match e.errno() {
            Some(errno) => errno.into(),
            None => std::io::Error::other(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn an_errno_keeps_its_number() {
        let e = std::io::Error::from(Errno::ENOSPC);
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        let e = std::io::Error::from(QueueError::Ring(RingError::Enter(Errno::EBUSY)));
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
    }

    #[test]
    fn an_error_without_errno_keeps_its_message() {
        let e = std::io::Error::from(QueueError::Config("depth must be 1..=4096"));
        assert_eq!(e.raw_os_error(), None);
        assert_eq!(
            e.to_string(),
            "bad queue configuration: depth must be 1..=4096"
        );
        let e = std::io::Error::from(RingError::SqFull);
        assert_eq!(e.to_string(), "io_uring submission queue is full");
    }
}
