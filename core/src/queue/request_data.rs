//! Reaching a request's data where it lives, on the two paths that give the kernel no buffer
//! of ours:
//!
//! - zero copy: the driver registered the request's pages in the ring's buffer table at slot
//!   `tag` (or it could not, and they are registered by hand here first); a target's file or
//!   socket operation names that slot ([`Queue::read_into_request`],
//!   [`Queue::write_from_request`]), and the data moves between the file and the pages with no
//!   copy through this process;
//! - user copy (and zero copy, whose devices have `USER_COPY` too): `pread`/`pwrite` of
//!   `/dev/ublkcN` at the request's position copy between the request's pages and memory of
//!   this process ([`Queue::copy_to_request`] and its kin).
//!
//! Both are safe to call: a fixed-buffer operation can only reach kernel pages (the table is
//! registered sparse, only the driver fills it, and the kernel checks every range against the
//! pages), and a copy goes through the kernel's checked user copy.

use super::{DataPath, Queue, QueueError, UserData, buffer_slot};
use crate::abi::IoCmd;
use crate::abi::io::user_copy_pos;
use crate::abi::uring::{IOSQE_IO_LINK, Sqe64};
use crate::errno::Errno;
use crate::ring::{FixedIo, SocketBuf, SocketRecv, SocketSend, Target};
use crate::sys;
use crate::tag::TagState;

/// A transfer between a file (or socket) and a request's pages, on the zero-copy path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestIo {
    /// The file: a registered file of the queue's ring, or a descriptor.
    pub file: Target,
    /// Position in the file.
    pub file_offset: u64,
    /// Where in the request's data the transfer starts, in bytes.
    pub request_offset: u32,
    /// Bytes to transfer.
    pub len: u32,
    /// `RWF_*` flags (`RWF_DSYNC` for a write through).
    pub rw_flags: u32,
}

/// A transfer between a socket and a request's pages, on the zero-copy path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSocketIo {
    /// The socket: a registered file of the queue's ring, or a descriptor.
    pub socket: Target,
    /// Where in the request's data the transfer starts, in bytes.
    pub request_offset: u32,
    /// Bytes to transfer.
    pub len: u32,
    /// `MSG_*` flags (`MSG_WAITALL` to move all `len` bytes in one operation).
    pub msg_flags: u32,
    /// Link the operation to the next one pushed (`IOSQE_IO_LINK`): that one starts only when
    /// this one succeeded, and is cancelled otherwise. What keeps one message's parts
    /// together on a stream.
    pub link: bool,
}

impl Queue<'_> {
    /// Zero copy: queues a read of `io.file` straight into `tag`'s request pages, to come back
    /// as [`Event::TargetDone`](super::Event::TargetDone) with `cookie` (its result: bytes
    /// read, or `-errno`). `tag` must be Owned (its request unanswered) on a zero-copy queue.
    pub fn read_into_request(
        &mut self,
        tag: u16,
        io: RequestIo,
        cookie: u32,
    ) -> Result<(), QueueError> {
        let sqe = Sqe64::read_fixed(self.fixed_io(tag, io)?, 0);
        self.push_request_io(tag, sqe, cookie)
    }

    /// Zero copy: queues a write of `tag`'s request pages straight to `io.file`; see
    /// [`Queue::read_into_request`].
    pub fn write_from_request(
        &mut self,
        tag: u16,
        io: RequestIo,
        cookie: u32,
    ) -> Result<(), QueueError> {
        let sqe = Sqe64::write_fixed(self.fixed_io(tag, io)?, 0);
        self.push_request_io(tag, sqe, cookie)
    }

    /// Zero copy: queues a send of `tag`'s request pages on `io.socket` (a WRITE's payload),
    /// to come back as [`Event::TargetDone`](super::Event::TargetDone) with `cookie`.
    pub fn send_from_request(
        &mut self,
        tag: u16,
        io: RequestSocketIo,
        cookie: u32,
    ) -> Result<(), QueueError> {
        let op = SocketSend {
            socket: io.socket,
            buf: self.request_socket_buf(tag, &io)?,
            len: io.len,
            msg_flags: io.msg_flags,
        };
        let sqe = Sqe64::send(op, 0);
        self.push_request_io(tag, linked(sqe, io.link), cookie)
    }

    /// Zero copy: queues a receive from `io.socket` straight into `tag`'s request pages (a
    /// READ's reply); see [`Queue::send_from_request`].
    pub fn recv_into_request(
        &mut self,
        tag: u16,
        io: RequestSocketIo,
        cookie: u32,
    ) -> Result<(), QueueError> {
        let op = SocketRecv {
            socket: io.socket,
            buf: self.request_socket_buf(tag, &io)?,
            len: io.len,
            msg_flags: io.msg_flags,
        };
        let sqe = Sqe64::recv(op, 0);
        self.push_request_io(tag, linked(sqe, io.link), cookie)
    }

    /// `tag`'s request pages from `io.request_offset` on, as a socket operation's buffer; the
    /// request must have them registered.
    fn request_socket_buf(&self, tag: u16, io: &RequestSocketIo) -> Result<SocketBuf, QueueError> {
        self.require_registered(tag)?;
        Ok(SocketBuf::Fixed {
            index: buffer_slot(tag),
            offset: u64::from(io.request_offset),
        })
    }

    /// Makes room for `entries` submissions at once (submitting what is queued if need be),
    /// so that a chain of linked operations goes to the kernel whole: a link cannot span two
    /// submissions. Fails if the ring is smaller than that.
    pub fn reserve(&mut self, entries: u32) -> Result<(), QueueError> {
        if entries > self.ring.sq_entries() {
            return Err(QueueError::Config(
                "more linked operations than the submission queue holds",
            ));
        }
        if self.ring.sq_space() < entries {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Checks that `tag`'s request pages are in the ring's buffer table to operate on: the
    /// zero-copy path, and a request being served.
    fn require_registered(&self, tag: u16) -> Result<(), QueueError> {
        if self.cfg.data_path != DataPath::ZeroCopy {
            return Err(QueueError::Config(
                "the request's pages are registered only on the zero-copy path",
            ));
        }
        self.require_owned(tag)
    }

    fn fixed_io(&self, tag: u16, io: RequestIo) -> Result<FixedIo, QueueError> {
        self.require_registered(tag)?;
        Ok(FixedIo {
            file: io.file,
            buf_index: buffer_slot(tag),
            // A buffer the kernel installed starts at address 0: this is an offset into it.
            buf_addr: u64::from(io.request_offset),
            len: io.len,
            file_offset: io.file_offset,
            rw_flags: io.rw_flags,
        })
    }

    pub(super) fn require_owned(&self, tag: u16) -> Result<(), QueueError> {
        if self.tags.state(tag) == Some(TagState::Owned) {
            Ok(())
        } else {
            Err(QueueError::Config(
                "the tag has no request being served (answered already, or never given)",
            ))
        }
    }

    /// Pushes a fixed-buffer operation on `tag`'s pages, registering them by hand first if the
    /// driver could not (linked, so that the operation runs only once they are registered, and
    /// is cancelled if they cannot be).
    fn push_request_io(&mut self, tag: u16, mut sqe: Sqe64, cookie: u32) -> Result<(), QueueError> {
        if self.needs_registration.take(tag) {
            if self.ring.sq_space() < 2 {
                // A link cannot span two submissions: make room for both entries.
                self.ring.submit()?;
            }
            let register = self
                .io_cmd(IoCmd::RegisterIoBuf, tag, 0)
                .with_flags(IOSQE_IO_LINK);
            self.push_cmd(register)?;
            self.registered_by_hand.insert(tag);
        }
        sqe.user_data = UserData::Target { tag, cookie }.encode();
        // SAFETY: the operation's buffer is slot `tag` of the ring's buffer table, which was
        // registered sparse (`Queue::new`) and is filled only by the driver, with a request's
        // pages; its address is an offset into them, which the kernel checks against their
        // length. No memory of this process is named, so nothing here can be overwritten or
        // freed under it.
        unsafe { self.push(&sqe) }?;
        self.target_in_flight += 1;
        Ok(())
    }

    /// `/dev/ublkcN`'s position of byte `offset` of `tag`'s request, for user copy, once the
    /// checks every copy needs have passed.
    fn user_copy_at(&self, tag: u16, offset: u32) -> Result<u64, Errno> {
        if !self.cfg.data_path.has_user_copy() {
            return Err(Errno::EOPNOTSUPP);
        }
        self.require_owned(tag).map_err(|_| Errno::EINVAL)?;
        user_copy_pos(self.cfg.q_id, tag, offset).ok_or(Errno::EINVAL)
    }

    /// User copy: copies `data` into `tag`'s request at byte `offset` (serving a READ).
    /// Returns the bytes copied: fewer than `data.len()` only past the request's end.
    pub fn copy_to_request(&self, tag: u16, offset: u32, data: &[u8]) -> Result<usize, Errno> {
        let pos = self.user_copy_at(tag, offset)?;
        sys::pwrite(self.char_dev, data, pos)
    }

    /// User copy: copies `tag`'s request from byte `offset` into `buf` (serving a WRITE).
    /// Returns the bytes copied: fewer than `buf.len()` only past the request's end.
    pub fn copy_from_request(&self, tag: u16, offset: u32, buf: &mut [u8]) -> Result<usize, Errno> {
        let pos = self.user_copy_at(tag, offset)?;
        sys::pread(self.char_dev, buf, pos)
    }

    /// User copy from raw memory: as [`Queue::copy_to_request`], for memory no Rust reference
    /// may cover (a RAM disk's mapping that several queues read and write at once).
    ///
    /// # Safety
    /// `src` must be valid for reads of `len` bytes during the call, and no `&mut` reference
    /// into that memory may be alive.
    pub unsafe fn copy_to_request_raw(
        &self,
        tag: u16,
        offset: u32,
        src: *const u8,
        len: usize,
    ) -> Result<usize, Errno> {
        let pos = self.user_copy_at(tag, offset)?;
        // SAFETY: forwarded to the caller.
        unsafe { sys::pwrite_raw(self.char_dev, src, len, pos) }
    }

    /// User copy into raw memory: as [`Queue::copy_from_request`]; see
    /// [`Queue::copy_to_request_raw`].
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes during the call, and no Rust reference
    /// into that memory may be alive.
    pub unsafe fn copy_from_request_raw(
        &self,
        tag: u16,
        offset: u32,
        dst: *mut u8,
        len: usize,
    ) -> Result<usize, Errno> {
        let pos = self.user_copy_at(tag, offset)?;
        // SAFETY: forwarded to the caller.
        unsafe { sys::pread_raw(self.char_dev, dst, len, pos) }
    }

    /// User copy through the tag's own buffer (the queue must have buffers): the first `len`
    /// bytes of [`Queue::buffer`] into the request (serving a READ).
    pub fn copy_buffer_to_request(&self, tag: u16, len: usize) -> Result<usize, Errno> {
        let addr = self.own_buffer(tag, len)?;
        // SAFETY: `addr..addr + len` lies in the tag's buffer (`own_buffer`); the tag is Owned
        // (checked by the copy), so no command of the driver writes it, and `&self` keeps
        // `buffer`'s `&mut` slice out for the call.
        unsafe { self.copy_to_request_raw(tag, 0, addr, len) }
    }

    /// The request's first `len` bytes into the tag's own buffer (serving a WRITE); see
    /// [`Queue::copy_buffer_to_request`].
    pub fn copy_request_to_buffer(&self, tag: u16, len: usize) -> Result<usize, Errno> {
        let addr = self.own_buffer(tag, len)?;
        // SAFETY: as in `copy_buffer_to_request`: the tag's own buffer, no other reference.
        unsafe { self.copy_from_request_raw(tag, 0, addr, len) }
    }

    fn own_buffer(&self, tag: u16, len: usize) -> Result<*mut u8, Errno> {
        match self.buf_addr(tag) {
            Some(addr) if len <= self.buf_stride => Ok(addr),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// `sqe`, linked to the next entry if `link`.
fn linked(sqe: Sqe64, link: bool) -> Sqe64 {
    if link {
        sqe.with_flags(IOSQE_IO_LINK)
    } else {
        sqe
    }
}
