//! The bytes received from a connection and not parsed yet: a fixed buffer that receives
//! append to and replies are consumed from the front of.

/// A receive buffer of fixed capacity. Its memory never moves, so a receive can be pointed
/// at [`Staging::tail`] and complete later.
pub(crate) struct Staging {
    buf: Box<[u8]>,
    /// Parsed up to here.
    start: usize,
    /// Received up to here.
    end: usize,
}

impl Staging {
    pub(crate) fn new(capacity: usize) -> Staging {
        Staging {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes received and not consumed.
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// Room for the next receive, at [`Staging::tail`].
    pub(crate) fn room(&self) -> usize {
        self.buf.len() - self.end
    }

    /// Where the next receive writes.
    pub(crate) fn tail(&mut self) -> *mut u8 {
        // In bounds: end ≤ len (`grew` keeps it so).
        self.buf.as_mut_ptr().wrapping_add(self.end)
    }

    /// A receive into [`Staging::tail`] brought `n` bytes (at most the room it was given).
    pub(crate) fn grew(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The first `N` bytes not consumed, if that many are here.
    pub(crate) fn peek<const N: usize>(&self) -> Option<[u8; N]> {
        if self.len() < N {
            return None;
        }
        self.buf.get(self.start..self.start + N)?.try_into().ok()
    }

    /// `len` bytes from byte `from` of those not consumed (fewer if fewer are here).
    pub(crate) fn bytes(&self, from: usize, len: usize) -> &[u8] {
        let at = (self.start + from).min(self.end);
        &self.buf[at..(at + len).min(self.end)]
    }

    /// Drops the first `n` bytes not consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Moves what is not consumed to the front, for the most room at the tail. Only while no
    /// receive is out: it would write where the bytes were.
    pub(crate) fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Forgets everything (a new connection starts a new stream).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Leaves the memory allocated for ever: a receive may still write it after its queue is
    /// gone.
    pub(crate) fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.buf));
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(s: &mut Staging, data: &[u8]) {
        assert!(data.len() <= s.room());
        // SAFETY: `tail` points at `room()` writable bytes of the buffer.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), s.tail(), data.len()) };
        s.grew(data.len());
    }

    #[test]
    fn bytes_go_in_at_the_tail_and_out_at_the_front() {
        let mut s = Staging::new(16);
        assert_eq!((s.len(), s.room()), (0, 16));
        assert_eq!(s.peek::<4>(), None);
        receive(&mut s, b"abcdef");
        assert_eq!(s.peek::<4>(), Some(*b"abcd"));
        assert_eq!(s.bytes(2, 3), b"cde");
        assert_eq!(s.bytes(4, 10), b"ef", "only what is here");
        s.consume(4);
        assert_eq!((s.len(), s.room()), (2, 10));
        assert_eq!(s.peek::<2>(), Some(*b"ef"));
        s.compact();
        assert_eq!((s.len(), s.room()), (2, 14));
        receive(&mut s, b"gh");
        assert_eq!(s.peek::<4>(), Some(*b"efgh"));
        s.consume(100);
        assert_eq!(s.len(), 0, "never past what was received");
        s.clear();
        assert_eq!(s.room(), 16);
    }
}
