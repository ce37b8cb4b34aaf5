//! One queue's connection to the NBD server, driven by the queue's own io_uring.
//!
//! - **Sending.** A request's header (and a WRITE's payload) go out as `IORING_OP_SEND`s. A
//!   stream must carry each message whole, so the sends of the requests waiting are linked
//!   into one chain (`IOSQE_IO_LINK`, each with `MSG_WAITALL`): the kernel sends them in
//!   order, each only once the one before it went out whole. One chain is out at a time; the
//!   requests that arrive meanwhile form the next.
//! - **Receiving.** One receive of a reply header (16 bytes) is always out. A READ's reply is
//!   followed by its data: a receive of exactly that length into the request (zero copy:
//!   straight into its pages), linked before the next header's receive.
//! - **Losing the connection** (the server hung up, sent something the protocol does not
//!   allow, or a reply for a request not in flight): the socket is shut down so that every
//!   operation on it ends, then the requests in flight fail with EIO, or, with a reconnection
//!   limit, are held while the queue connects again and are sent again on the new connection
//!   (or fail with EIO once the limit runs out, or the device is being stopped).
//!
//! The handle (cookie) of a request is its tag and a generation that grows with every
//! connection, so a reply from an earlier connection can never be taken for a new request.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ublk_core::abi::uring::{KernelTimespec, Sqe64};
use ublk_core::ring::{SocketBuf, SocketRecv, SocketSend};
use ublk_core::{DataPath, Errno, IoOp, RequestSocketIo};

use super::connect::{Stream, connect};
use super::handshake::Export;
use super::proto::{
    CmdFlags, Command, NbdErrno, REQUEST_LEN, Request as NbdRequest, SIMPLE_REPLY_LEN, SimpleReply,
    TransmissionFlags, WireError,
};
use super::staging::Staging;
use super::target::NbdOptions;
use crate::backend::{IoContext, IoFlags, QueueInfo, Reply, Request, TargetQueue};
use crate::os;

/// Bytes of replies received at once while only small requests are in flight.
const STAGING: usize = 64 << 10;

/// A READ larger than this has its data received straight into its request (with no copy
/// on the zero-copy path): while one is in flight, replies are received one header at a
/// time, so that no such data lands in the staging buffer.
const LARGE_READ: u32 = 16 << 10;

/// Requests whose sends one chain carries at most: a chain is one submission, and the ring
/// has room for a few of them besides the commits.
const CHAIN_REQUESTS: usize = 16;

/// What a target operation's cookie says it was.
const SEND_HEADER: u32 = 1;
const SEND_PAYLOAD: u32 = 2;
const RECV_STAGED: u32 = 3;
const RECV_PAYLOAD: u32 = 4;
const RECONNECT_TIMER: u32 = 5;

/// The first pause between two connection attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// True for a READ whose data is received straight into its request.
fn is_large_read(req: &InFlight) -> bool {
    req.command == Command::Read && req.len > LARGE_READ
}

/// What a connection is doing, shared with [`super::Nbd::status`]: `None` while it is up,
/// else what is wrong. Written on changes only, never per request.
#[derive(Debug, Default)]
pub(crate) struct QueueLink(Mutex<Option<String>>);

impl QueueLink {
    pub(crate) fn new() -> QueueLink {
        QueueLink::default()
    }

    pub(crate) fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, problem: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// A tag's request, while the server has it or is about to.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    command: Command,
    /// Bytes of a READ's reply data or of a WRITE's payload (0 for the others).
    len: u32,
    /// Its header went out on the current connection.
    sent: bool,
}

/// The connection's state.
#[derive(Debug)]
enum Link {
    /// Requests go out and replies come in.
    Up,
    /// Lost, for `why`: the socket is shut down and the operations on it are ending.
    Draining { why: String },
    /// Waiting to connect again: `attempt` attempts failed so far; requests are held.
    Reconnecting {
        why: String,
        since: Instant,
        attempt: u32,
    },
    /// Given up: every request fails with EIO.
    Failed,
}

/// A queue of an [`Nbd`](super::Nbd) device: its connection, and the requests on it.
pub struct NbdQueue {
    id: u16,
    options: NbdOptions,
    export: Export,
    links: Arc<Vec<QueueLink>>,
    stream: Option<Stream>,
    fd: RawFd,
    link: Link,
    generation: u16,
    /// Each tag's request header, as sent: the chain's sends point here.
    headers: Box<[[u8; REQUEST_LEN]]>,
    /// Replies received and not parsed yet.
    staged: Staging,
    /// In-flight READs larger than [`LARGE_READ`].
    large_reads: u32,
    /// Bytes of a READ's data being received straight into its request.
    payload_rest: u32,
    /// The pause before the next connection attempt, for the ring's timer.
    pause: Box<KernelTimespec>,
    requests: Box<[Option<InFlight>]>,
    /// Tags whose headers wait for the next chain, oldest first.
    waiting: VecDeque<u16>,
    /// Completions still to come from the send chain out (0: none out).
    chain: u32,
    /// Receives out (a header's, or a READ's data and the next header's).
    receiving: u32,
    timer_out: bool,
}

impl fmt::Debug for NbdQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NbdQueue")
            .field("id", &self.id)
            .field("fd", &self.fd)
            .field("link", &self.link)
            .field("waiting", &self.waiting.len())
            .finish()
    }
}

/// Queues one of this module's operations on memory of ours (a send, a receive, the timer);
/// false if the ring refused it.
fn push_op(io: &mut IoContext<'_, '_>, op: Sqe64, tag: u16, cookie: u32) -> bool {
    // SAFETY: every caller points `op` at memory the queue keeps until the operation's
    // completion: a header in `headers`, the reply in `reply`, or the tag's own buffer while
    // its request is unanswered (answered only after this operation completes). If the queue
    // is dropped with operations out, `Drop` leaves that memory allocated.
    unsafe { io.push(op, tag, cookie) }.is_ok()
}

impl NbdQueue {
    pub(crate) fn new(
        queue: &QueueInfo,
        stream: Stream,
        options: NbdOptions,
        export: Export,
        links: Arc<Vec<QueueLink>>,
    ) -> std::io::Result<NbdQueue> {
        let depth = usize::from(queue.depth);
        let fd = stream.as_raw_fd();
        Ok(NbdQueue {
            id: queue.id,
            options,
            export,
            links,
            stream: Some(stream),
            fd,
            link: Link::Up,
            generation: 1,
            headers: vec![[0; REQUEST_LEN]; depth].into_boxed_slice(),
            staged: Staging::new(STAGING),
            large_reads: 0,
            payload_rest: 0,
            pause: Box::new(KernelTimespec::default()),
            requests: vec![None; depth].into_boxed_slice(),
            waiting: VecDeque::with_capacity(depth),
            chain: 0,
            receiving: 0,
            timer_out: false,
        })
    }

    fn server(&self) -> String {
        self.options.address().to_string()
    }

    fn flags(&self) -> TransmissionFlags {
        self.export.flags
    }

    /// The command a request becomes, or the answer to give at once.
    fn command(&self, req: &Request) -> Result<(Command, CmdFlags), i32> {
        let has = |f| self.flags().contains(f);
        match req.op {
            IoOp::Read => Ok((Command::Read, CmdFlags::empty())),
            IoOp::Write => {
                let fua = req.flags.contains(IoFlags::FUA) && has(TransmissionFlags::SEND_FUA);
                let flags = if fua {
                    CmdFlags::FUA
                } else {
                    CmdFlags::empty()
                };
                Ok((Command::Write, flags))
            }
            // Without a write cache on the server there is nothing to flush.
            IoOp::Flush if !has(TransmissionFlags::SEND_FLUSH) => Err(0),
            IoOp::Flush => Ok((Command::Flush, CmdFlags::empty())),
            IoOp::Discard if has(TransmissionFlags::SEND_TRIM) => {
                Ok((Command::Trim, CmdFlags::empty()))
            }
            IoOp::WriteZeroes if has(TransmissionFlags::SEND_WRITE_ZEROES) => {
                let keep = req.flags.contains(IoFlags::NOUNMAP);
                let flags = if keep {
                    CmdFlags::NO_HOLE
                } else {
                    CmdFlags::empty()
                };
                Ok((Command::WriteZeroes, flags))
            }
            _ => Err(-libc::EOPNOTSUPP),
        }
    }

    /// Writes `tag`'s header for the current connection.
    fn encode(&mut self, tag: u16, command: Command, flags: CmdFlags, offset: u64, len: u32) {
        let (offset, length) = match command {
            Command::Flush => (0, 0),
            _ => (offset, len),
        };
        self.headers[usize::from(tag)] = NbdRequest {
            flags,
            command,
            cookie: self.cookie(tag),
            offset,
            length,
        }
        .encode();
    }

    fn cookie(&self, tag: u16) -> u64 {
        u64::from(self.generation) << 16 | u64::from(tag)
    }

    /// Answers `tag`'s request: it is no longer in flight.
    fn answer(&mut self, tag: u16, result: i32, io: &mut IoContext<'_, '_>) {
        if let Some(slot) = self.requests.get_mut(usize::from(tag))
            && let Some(req) = slot.take()
            && is_large_read(&req)
        {
            self.large_reads -= 1;
        }
        io.complete(tag, result);
    }

    // --- sending -----------------------------------------------------------------------------

    /// Sends the requests waiting, as one chain, unless one is out already or the connection
    /// is not up.
    fn send_waiting(&mut self, io: &mut IoContext<'_, '_>) {
        if self.chain > 0 || self.waiting.is_empty() || !matches!(self.link, Link::Up) {
            return;
        }
        let count = self.waiting.len().min(CHAIN_REQUESTS);
        // A header and a payload per request, and a buffer registered by hand for a payload
        // whose pages the driver could not register: all in one submission.
        if io.reserve(3 * count as u32).is_err() {
            self.lose("the ring has no room for the requests' sends".into(), io);
            return;
        }
        for i in 0..count {
            let Some(tag) = self.waiting.pop_front() else {
                break;
            };
            let last = i + 1 == count;
            let Some(req) = self.requests[usize::from(tag)] else {
                continue;
            };
            let payload = req.command == Command::Write && req.len > 0;
            let more = |more_follows: bool| {
                let more = if more_follows { libc::MSG_MORE } else { 0 };
                (libc::MSG_WAITALL | more) as u32
            };
            let header = Sqe64::send(
                SocketSend {
                    socket: ublk_core::Target::Fd(self.fd),
                    buf: SocketBuf::Memory(self.headers[usize::from(tag)].as_mut_ptr()),
                    len: REQUEST_LEN as u32,
                    msg_flags: more(payload || !last),
                },
                0,
            );
            let header = if payload || !last {
                header.with_flags(ublk_core::abi::uring::IOSQE_IO_LINK)
            } else {
                header
            };
            let mut ok = push_op(io, header, tag, SEND_HEADER);
            if ok {
                self.chain += 1;
            }
            if ok && payload {
                ok = self.send_payload(tag, req.len, more(!last), !last, io);
                if ok {
                    self.chain += 1;
                }
            }
            if let Some(r) = self.requests[usize::from(tag)].as_mut() {
                r.sent = true;
            }
            if !ok {
                self.lose("queueing a send failed".into(), io);
                return;
            }
        }
    }

    fn send_payload(
        &mut self,
        tag: u16,
        len: u32,
        msg_flags: u32,
        link: bool,
        io: &mut IoContext<'_, '_>,
    ) -> bool {
        if io.data_path() == DataPath::ZeroCopy {
            let op = RequestSocketIo {
                socket: ublk_core::Target::Fd(self.fd),
                request_offset: 0,
                len,
                msg_flags,
                link,
            };
            return io.send_from_request(tag, op, SEND_PAYLOAD).is_ok();
        }
        let Some(buf) = io.buffer_ptr(tag) else {
            return false;
        };
        let op = Sqe64::send(
            SocketSend {
                socket: ublk_core::Target::Fd(self.fd),
                buf: SocketBuf::Memory(buf),
                len,
                msg_flags,
            },
            0,
        );
        let op = if link {
            op.with_flags(ublk_core::abi::uring::IOSQE_IO_LINK)
        } else {
            op
        };
        push_op(io, op, tag, SEND_PAYLOAD)
    }

    fn sent(&mut self, tag: u16, kind: u32, result: i32, io: &mut IoContext<'_, '_>) {
        self.chain = self.chain.saturating_sub(1);
        let want = match kind {
            SEND_HEADER => REQUEST_LEN as i32,
            _ => self.requests[usize::from(tag)].map_or(0, |r| r.len as i32),
        };
        if result != want {
            let why = match result {
                e if e < 0 => format!("sending to the server failed: {}", Errno(-e)),
                n => format!("the connection broke after {n} of {want} bytes of a request"),
            };
            self.lose(why, io);
        }
        if self.chain == 0 {
            self.drained(io);
            self.send_waiting(io);
        }
    }

    // --- receiving ---------------------------------------------------------------------------

    /// Queues the next receive into the staging buffer: everything the socket has, up to
    /// the room left, while only small requests are in flight; else exactly one reply
    /// header, so that a large READ's data can go straight into its request.
    fn receive(&mut self, io: &mut IoContext<'_, '_>) -> bool {
        self.staged.compact();
        let (len, flags) = if self.large_reads == 0 {
            (self.staged.room(), 0)
        } else {
            (SIMPLE_REPLY_LEN, libc::MSG_WAITALL)
        };
        let op = Sqe64::recv(
            SocketRecv {
                socket: ublk_core::Target::Fd(self.fd),
                buf: SocketBuf::Memory(self.staged.tail()),
                len: len as u32,
                msg_flags: flags as u32,
            },
            0,
        );
        let ok = push_op(io, op, 0, RECV_STAGED);
        if ok {
            self.receiving += 1;
        }
        ok
    }

    fn received(&mut self, result: i32, io: &mut IoContext<'_, '_>) {
        self.receiving = self.receiving.saturating_sub(1);
        if !matches!(self.link, Link::Up) {
            self.drained(io);
            return;
        }
        match result {
            n if n > 0 => self.staged.grew(n as usize),
            0 => return self.lose("the server closed the connection".into(), io),
            e => {
                let why = format!("receiving from the server failed: {}", Errno(-e));
                return self.lose(why, io);
            }
        }
        // Every whole reply received is answered; a READ's data not all here yet is
        // received straight into its request, and the receiving goes on after it.
        while let Some(header) = self.staged.peek::<SIMPLE_REPLY_LEN>() {
            let Some((tag, request, error)) = self.reply_for(&header, io) else {
                return;
            };
            let data = self.staged.len() - SIMPLE_REPLY_LEN;
            match error {
                Some(errno) => {
                    self.staged.consume(SIMPLE_REPLY_LEN);
                    self.answer(tag, -errno.0, io);
                    if errno.0 == libc::ESHUTDOWN {
                        return self.lose("the server is shutting down (ESHUTDOWN)".into(), io);
                    }
                }
                None if request.command == Command::Read && request.len > 0 => {
                    let len = request.len as usize;
                    let here = data.min(len);
                    let copied = self.deliver(tag, SIMPLE_REPLY_LEN, here, here == len, io);
                    self.staged.consume(SIMPLE_REPLY_LEN + here);
                    if !copied {
                        self.answer(tag, -libc::EIO, io);
                    } else if here == len {
                        self.answer(tag, len as i32, io);
                    } else {
                        return self.receive_rest(tag, here as u32, request.len, io);
                    }
                }
                None => {
                    self.staged.consume(SIMPLE_REPLY_LEN);
                    let done = if request.command == Command::Write {
                        request.len as i32
                    } else {
                        0
                    };
                    self.answer(tag, done, io);
                }
            }
        }
        if !self.receive(io) {
            self.lose("queueing a receive failed".into(), io);
        }
    }

    /// The request a reply header answers, and its error; `None` (the connection lost) for a
    /// reply that is malformed or for a handle not in flight.
    fn reply_for(
        &mut self,
        header: &[u8; SIMPLE_REPLY_LEN],
        io: &mut IoContext<'_, '_>,
    ) -> Option<(u16, InFlight, Option<Errno>)> {
        let (cookie, error) = match SimpleReply::decode(header) {
            Ok(r) => (r.cookie, r.error.map(NbdErrno::errno)),
            // Not an error the protocol defines: fail that request, keep the connection.
            Err(WireError::UnknownError { cookie, .. }) => (cookie, Some(Errno::EIO)),
            Err(e) => {
                self.lose(format!("the server sent a malformed reply: {e}"), io);
                return None;
            }
        };
        let tag = (cookie & 0xffff) as u16;
        let current = cookie >> 16 == u64::from(self.generation);
        let request = self
            .requests
            .get(usize::from(tag))
            .copied()
            .flatten()
            .filter(|r| current && r.sent);
        match request {
            Some(request) => Some((tag, request, error)),
            None => {
                let why = format!(
                    "the server sent a reply for handle {cookie:#x}, which is not in flight"
                );
                self.lose(why, io);
                None
            }
        }
    }

    /// Copies the first `len` bytes of a READ's data, at byte `from` of the staging buffer,
    /// to `tag`'s request (`whole`: that is all of it) or to where the rest will join them;
    /// false if that failed.
    fn deliver(
        &mut self,
        tag: u16,
        from: usize,
        len: usize,
        whole: bool,
        io: &mut IoContext<'_, '_>,
    ) -> bool {
        if len == 0 {
            return true;
        }
        let bytes = self.staged.bytes(from, len);
        // The copy path answers from the tag's buffer; so does user copy when the rest is
        // received there ([`NbdQueue::received_payload`] copies the buffer to the request).
        let buffered = match io.data_path() {
            DataPath::Copy => true,
            DataPath::UserCopy => !whole,
            DataPath::ZeroCopy => false,
        };
        if buffered {
            return match io.buffer(tag) {
                Some(buf) if len <= buf.len() => {
                    buf[..len].copy_from_slice(bytes);
                    true
                }
                _ => false,
            };
        }
        io.copy_to_request(tag, 0, bytes).is_ok()
    }

    /// Receives the rest of a READ's data, from byte `from` of `len`, straight into the
    /// request (zero copy) or its buffer, and the next receive linked after it.
    fn receive_rest(&mut self, tag: u16, from: u32, len: u32, io: &mut IoContext<'_, '_>) {
        if io.reserve(3).is_err() {
            return self.lose("the ring has no room for a receive".into(), io);
        }
        let rest = len - from;
        let flags = libc::MSG_WAITALL as u32;
        let ok = if io.data_path() == DataPath::ZeroCopy {
            let op = RequestSocketIo {
                socket: ublk_core::Target::Fd(self.fd),
                request_offset: from,
                len: rest,
                msg_flags: flags,
                link: true,
            };
            io.recv_into_request(tag, op, RECV_PAYLOAD).is_ok()
        } else {
            match io.buffer_ptr(tag) {
                Some(buf) => {
                    let op = Sqe64::recv(
                        SocketRecv {
                            socket: ublk_core::Target::Fd(self.fd),
                            buf: SocketBuf::Memory(buf.wrapping_add(from as usize)),
                            len: rest,
                            msg_flags: flags,
                        },
                        0,
                    )
                    .with_flags(ublk_core::abi::uring::IOSQE_IO_LINK);
                    push_op(io, op, tag, RECV_PAYLOAD)
                }
                None => false,
            }
        };
        if !ok {
            return self.lose("queueing a receive failed".into(), io);
        }
        self.receiving += 1;
        self.payload_rest = rest;
        if !self.receive(io) {
            self.lose("queueing a receive failed".into(), io);
        }
    }

    fn received_payload(&mut self, tag: u16, result: i32, io: &mut IoContext<'_, '_>) {
        self.receiving = self.receiving.saturating_sub(1);
        if !matches!(self.link, Link::Up) {
            self.drained(io);
            return;
        }
        let rest = self.payload_rest;
        if result != rest as i32 {
            let why = match result {
                0 => "the server closed the connection in the middle of a read's data".into(),
                e if e < 0 => format!("receiving a read's data failed: {}", Errno(-e)),
                n => format!("the server sent {n} of the last {rest} bytes of a read's data"),
            };
            self.lose(why, io);
            return;
        }
        let len = self.requests[usize::from(tag)].map_or(0, |r| r.len);
        let mut result = len as i32;
        if io.data_path() == DataPath::UserCopy
            && io.copy_buffer_to_request(tag, len as usize).is_err()
        {
            result = -libc::EIO;
        }
        self.answer(tag, result, io);
    }

    // --- losing and regaining the connection -------------------------------------------------

    /// The connection is lost: shut it down, so that every operation on it ends; what
    /// happens next waits until they have ([`NbdQueue::drained`]).
    fn lose(&mut self, why: String, io: &mut IoContext<'_, '_>) {
        if !matches!(self.link, Link::Up) {
            return;
        }
        if let Some(stream) = &self.stream {
            os::shutdown_socket(stream);
        }
        self.links[usize::from(self.id)].set(Some(format!(
            "lost ({why}) on the connection to {}; finishing what was under way",
            self.server()
        )));
        self.link = Link::Draining { why };
        self.drained(io);
    }

    /// Once nothing is out on a lost connection: reconnect, or fail everything.
    fn drained(&mut self, io: &mut IoContext<'_, '_>) {
        let Link::Draining { why } = &self.link else {
            return;
        };
        if self.chain > 0 || self.receiving > 0 {
            return;
        }
        let why = why.clone();
        self.stream = None;
        self.fd = -1;
        if self.options.reconnect_limit().is_some() {
            self.link = Link::Reconnecting {
                why,
                since: Instant::now(),
                attempt: 0,
            };
            self.reconnect(io);
        } else {
            self.give_up(why, io);
        }
    }

    /// One connection attempt; on failure, the next after a pause, or giving up when the
    /// limit has run out or the device is being stopped (checked before each attempt, so a
    /// stop waits at most one pause and one attempt for the held requests to fail).
    fn reconnect(&mut self, io: &mut IoContext<'_, '_>) {
        let Link::Reconnecting {
            why,
            since,
            attempt,
            ..
        } = &self.link
        else {
            return;
        };
        let (why, since, attempt) = (why.clone(), *since, *attempt + 1);
        // The stop waits for the held requests: holding them longer only delays it.
        if io.device_stopping() {
            return self.give_up(format!("{why}; the device is being stopped"), io);
        }
        let limit = self.options.reconnect_limit().unwrap_or_default();
        let left = limit.saturating_sub(since.elapsed());
        let timeout = self.options.handshake_timeout().min(left.max(FIRST_PAUSE));
        let last = match connect(self.options.address(), self.options.export(), timeout) {
            Ok((stream, export)) if export.size == self.export.size => {
                self.up_again(stream, io);
                return;
            }
            Ok((_, export)) => {
                let why = format!(
                    "{why}; the export is {} bytes on the new connection, not {}",
                    export.size, self.export.size
                );
                return self.give_up(why, io);
            }
            Err(e) => e.to_string(),
        };
        if since.elapsed() >= limit {
            let why = format!("{why}; reconnecting for {limit:?} failed: {last}");
            return self.give_up(why, io);
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << (attempt - 1).min(10))
            .min(MAX_PAUSE)
            .min(limit.saturating_sub(since.elapsed()))
            .max(Duration::from_millis(1));
        self.links[usize::from(self.id)].set(Some(format!(
            "lost ({why}); reconnecting to {} for {:.0?} of {limit:?} (attempt {attempt}: {last}); I/O is held",
            self.server(),
            since.elapsed()
        )));
        self.link = Link::Reconnecting {
            why,
            since,
            attempt,
        };
        *self.pause = KernelTimespec {
            tv_sec: pause.as_secs() as i64,
            tv_nsec: i64::from(pause.subsec_nanos()),
        };
        let timer = Sqe64::timeout(&*self.pause, 0);
        if push_op(io, timer, 0, RECONNECT_TIMER) {
            self.timer_out = true;
        } else {
            let why = "the ring has no room for the reconnection's timer".to_string();
            self.give_up(why, io);
        }
    }

    /// Connected again: every request in flight goes out again, under a new generation.
    fn up_again(&mut self, stream: Stream, io: &mut IoContext<'_, '_>) {
        self.fd = stream.as_raw_fd();
        self.stream = Some(stream);
        self.generation = self.generation.wrapping_add(1).max(1);
        self.link = Link::Up;
        self.links[usize::from(self.id)].set(None);
        self.waiting.clear();
        for tag in 0..self.requests.len() as u16 {
            if let Some(mut req) = self.requests[usize::from(tag)] {
                // The header carries the new cookie; flags, offset and length are as sent.
                let cookie = self.cookie(tag).to_be_bytes();
                self.headers[usize::from(tag)][8..16].copy_from_slice(&cookie);
                req.sent = false;
                self.requests[usize::from(tag)] = Some(req);
                self.waiting.push_back(tag);
            }
        }
        self.staged.clear();
        if !self.receive(io) {
            return self.lose("queueing a receive failed".into(), io);
        }
        self.send_waiting(io);
    }

    /// No more connection: every request in flight, and every one to come, fails with EIO.
    fn give_up(&mut self, why: String, io: &mut IoContext<'_, '_>) {
        self.links[usize::from(self.id)].set(Some(format!(
            "lost ({why}) on the connection to {}: I/O fails with EIO",
            self.server()
        )));
        self.link = Link::Failed;
        self.waiting.clear();
        for tag in 0..self.requests.len() as u16 {
            if self.requests[usize::from(tag)].is_some() {
                self.answer(tag, -libc::EIO, io);
            }
        }
    }
}

impl TargetQueue for NbdQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        if usize::from(req.tag) >= self.requests.len() {
            return Reply::error(Errno::EIO);
        }
        if matches!(self.link, Link::Failed) {
            return Reply::error(Errno::EIO);
        }
        // The first request: the receive of replies starts with it (it cannot before the
        // queue has a context to push on).
        if self.receiving == 0 && matches!(self.link, Link::Up) && !self.receive(io) {
            return Reply::error(Errno::EIO);
        }
        let (command, flags) = match self.command(req) {
            Ok(c) => c,
            Err(answer) => return Reply::Done(answer),
        };
        // len ≤ the largest I/O (checked when the request was decoded); DISCARD and
        // WRITE_ZEROES ≤ 1 GiB (the limits the device has).
        let len = u32::try_from(req.len).unwrap_or(u32::MAX);
        let payload = matches!(command, Command::Read | Command::Write);
        if command == Command::Write && io.data_path() == DataPath::UserCopy {
            // The data comes from the request into our buffer, then goes out from there.
            if let Err(e) = io.copy_request_to_buffer(req.tag, req.len as usize) {
                return Reply::from_result(Err(e), 0);
            }
        }
        self.encode(req.tag, command, flags, req.offset, len);
        let request = InFlight {
            command,
            len: if payload { len } else { 0 },
            sent: false,
        };
        if is_large_read(&request) {
            self.large_reads += 1;
        }
        self.requests[usize::from(req.tag)] = Some(request);
        self.waiting.push_back(req.tag);
        self.send_waiting(io);
        Reply::Later
    }

    fn op_done(&mut self, tag: u16, cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        match cookie {
            SEND_HEADER | SEND_PAYLOAD => self.sent(tag, cookie, result, io),
            RECV_STAGED => self.received(result, io),
            RECV_PAYLOAD => self.received_payload(tag, result, io),
            RECONNECT_TIMER => {
                self.timer_out = false;
                self.reconnect(io);
            }
            _ => {}
        }
    }
}

impl Drop for NbdQueue {
    fn drop(&mut self) {
        // A soft disconnect, as the protocol asks of a client that leaves, when nothing is
        // waiting for an answer (the receive of the next header is always out).
        if let (Link::Up, Some(stream)) = (&self.link, &self.stream)
            && self.requests.iter().all(Option::is_none)
        {
            let disc = NbdRequest {
                flags: CmdFlags::empty(),
                command: Command::Disc,
                cookie: 0,
                offset: 0,
                length: 0,
            }
            .encode();
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let mut s = stream;
            let _ = s.write_all(&disc);
        }
        if let Some(stream) = &self.stream {
            os::shutdown_socket(stream);
        }
        if self.chain > 0 || self.receiving > 0 || self.timer_out {
            // The ring is gone, but the kernel may still complete an operation into this
            // memory until it has cancelled them: leave it allocated (a few KiB per queue).
            std::mem::forget(std::mem::take(&mut self.headers));
            self.staged.leak();
            std::mem::forget(std::mem::replace(
                &mut self.pause,
                Box::new(KernelTimespec::default()),
            ));
        }
    }
}
