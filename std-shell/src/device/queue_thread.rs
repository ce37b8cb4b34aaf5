//! One thread per queue: set up, fetch every tag, say "ready", then serve until the driver
//! aborts the tags or the stop signal fires.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ublk_core::abi::UblksrvIoDesc;
use ublk_core::abi::uring::{
    IORING_SETUP_COOP_TASKRUN, IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER,
};
use ublk_core::{
    DataPath, Errno, Event, IoOp, OpEncoding, Queue, QueueConfig, QueueError, RingError, TagSlot,
};

use super::queues::{QueueHandle, QueueShared, Ready};
use crate::backend::{IoContext, QueueInfo, Reply, Request, Target, TargetQueue};
use crate::error::{Error, Result};
use crate::os::{self, EventFd};

/// How long a stopped queue waits for the driver's aborts of its fetches after the wake-up:
/// STOP_DEV has sent them by the time the device wakes its queues, so they come at once.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// What a queue thread needs to know.
#[derive(Clone, Debug)]
pub(crate) struct QueueSpec {
    pub dev_id: u32,
    pub q_id: u16,
    pub depth: u16,
    pub buf_bytes: u32,
    /// The device size in bytes: no request may reach past it.
    pub dev_bytes: u64,
    pub encoding: OpEncoding,
    pub need_get_data: bool,
    pub data_path: DataPath,
    /// A buffer per tag besides the copy path's (the target wants them).
    pub buffers: bool,
    /// Zero copy: make every request take the registration fallback (tests).
    pub force_buffer_fallback: bool,
    /// The queue's CPUs (GET_QUEUE_AFFINITY): the thread runs on the first it may use.
    pub cpus: Vec<usize>,
}

/// Starts queue `spec.q_id`'s thread. It reports to `ready` once its fetches are submitted
/// (or why it could not get there).
pub(crate) fn spawn<T: Target>(
    spec: QueueSpec,
    target: Arc<T>,
    char_dev: Arc<OwnedFd>,
    ready: Arc<Ready>,
) -> Result<QueueHandle> {
    let wake = EventFd::new()
        .map_err(|e| Error::io(format!("creating queue {}'s stop eventfd", spec.q_id), e))?;
    let wake_fd = wake.raw();
    let shared = Arc::new(QueueShared::default());
    let thread_shared = Arc::clone(&shared);
    let name = format!("ublk{}q{}", spec.dev_id, spec.q_id);
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || run(spec, &*target, char_dev, wake_fd, &thread_shared, &ready))
        .map_err(|e| Error::io(format!("spawning thread {name}"), e))?;
    Ok(QueueHandle {
        thread: Some(thread),
        wake,
        shared,
    })
}

fn run<T: Target>(
    spec: QueueSpec,
    target: &T,
    char_dev: Arc<OwnedFd>,
    wake_fd: libc::c_int,
    shared: &QueueShared,
    ready: &Ready,
) -> Result<()> {
    let fail = |reason: String| Error::Queue {
        dev_id: spec.dev_id,
        q_id: spec.q_id,
        reason,
    };
    // Declared before the queue, which borrows them.
    let slots: Vec<TagSlot> = (0..spec.depth).map(|_| TagSlot::NEW).collect();
    let mut files = vec![char_dev.as_raw_fd()];
    let setup = (|| {
        // Best effort, as ublksrv: without CAP_SYS_RESOURCE (many containers) the queue still
        // serves, and the device says once why it may stall under memory pressure.
        let warning = os::set_io_flusher().err().map(|e| {
            format!(
                "the queue threads are not I/O flushers (PR_SET_IO_FLUSHER: {e}; it needs CAP_SYS_RESOURCE): under memory pressure, writing dirty pages to this device may wait for the device itself"
            )
        });
        // A hint, not a need: a queue thread woken for each request still serves them all.
        let _ = os::set_batch_scheduling();
        let allowed =
            os::allowed_cpus().map_err(|e| fail(format!("reading the thread's CPU mask: {e}")))?;
        if let Some(cpu) = pinned_cpu(&spec.cpus, &allowed) {
            os::set_affinity(&[cpu]).map_err(|e| fail(format!("pinning to CPU {cpu}: {e}")))?;
        }
        files.extend(target.files());
        let mut queue =
            open_queue(&spec, &files, &slots).map_err(|e| fail(format!("setting up: {e}")))?;
        let info = QueueInfo {
            id: spec.q_id,
            depth: spec.depth,
            buffer_bytes: queue.buffer_len(),
            data_path: spec.data_path,
        };
        let target_queue = target
            .open_queue(&info)
            .map_err(|e| fail(format!("the target could not open the queue: {e}")))?;
        (|| {
            queue.arm_wake(wake_fd)?;
            queue.fetch_all()?;
            queue.submit()
        })()
        .map_err(|e| fail(format!("setting up: {e}")))?;
        Ok((queue, target_queue, warning))
    })();
    let (mut queue, mut target_queue) = match setup {
        Ok((queue, target_queue, warning)) => {
            ready.report(Ok(warning));
            (queue, target_queue)
        }
        Err(e) => {
            // The device learns why from `ready`; the join result need not say it twice.
            ready.report(Err(e));
            return Ok(());
        }
    };

    let result = serve(&mut queue, &mut target_queue, shared, &spec);
    let anomalies = queue.tags().invalid_transitions() + queue.unexpected_completions();
    shared.anomalies.store(anomalies, Ordering::Relaxed);
    shared
        .buffer_fallbacks
        .store(queue.buffer_fallbacks(), Ordering::Relaxed);
    shared
        .buffer_errors
        .store(queue.buffer_errors(), Ordering::Relaxed);
    // The queue (and its ring, which holds /dev/ublkcN too) goes before our reference to
    // the char device, so the last one closed lets DEL_DEV finish.
    drop(queue);
    drop(char_dev);
    result.map_err(fail)
}

/// The one CPU a queue thread runs on: the first of the queue's CPUs (those whose submissions
/// the driver sends to this queue) that the thread may use; `None` (stay unpinned) if it may
/// use none of them, as under a cgroup cpuset that excludes them.
///
/// One CPU, not the queue's whole set: a thread free to move follows its wake-ups onto the
/// submitting task's CPU, where the two then take turns instead of working in parallel.
fn pinned_cpu(queue_cpus: &[usize], allowed: &[usize]) -> Option<usize> {
    queue_cpus.iter().copied().find(|c| allowed.contains(c))
}

/// The queue's ring: task work deferred to our own waits (one batch per `io_uring_enter`),
/// falling back to a plain ring on kernels without DEFER_TASKRUN (before 6.1).
fn open_queue<'t>(
    spec: &QueueSpec,
    files: &[libc::c_int],
    slots: &'t [TagSlot],
) -> Result<Queue<'t>, QueueError> {
    let mut cfg = QueueConfig::new(spec.q_id, spec.depth, spec.buf_bytes, spec.encoding);
    cfg.need_get_data = spec.need_get_data;
    cfg.data_path = spec.data_path;
    cfg.buffers = spec.buffers;
    cfg.force_buffer_fallback = spec.force_buffer_fallback;
    cfg.ring_flags =
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    match Queue::new(cfg, files, slots) {
        Err(QueueError::Ring(RingError::Setup(Errno::EINVAL))) => {
            cfg.ring_flags = 0;
            Queue::new(cfg, files, slots)
        }
        other => other,
    }
}

/// Checks a descriptor and turns it into a [`Request`]; `Err(errno)` answers it at once.
/// The block layer already keeps requests inside the device and the size limit; checking
/// again here means a backend can index its storage without a bounds panic.
pub(super) fn decode(
    tag: u16,
    desc: &UblksrvIoDesc,
    buf_len: usize,
    dev_bytes: u64,
) -> Result<Request, i32> {
    let op = desc.op().map_err(|_| -libc::EOPNOTSUPP)?;
    if op == IoOp::Flush {
        // A flush has no position: the block layer leaves its sector at -1.
        return Ok(Request {
            tag,
            op,
            flags: desc.flags(),
            offset: 0,
            len: 0,
        });
    }
    let offset = desc.start_sector.checked_mul(512).ok_or(-libc::EIO)?;
    let len = u64::from(desc.nr_sectors) * 512;
    if matches!(op, IoOp::Read | IoOp::Write) && len > buf_len as u64 {
        // The driver splits requests at max_sectors; a larger one would overrun the buffer.
        return Err(-libc::EIO);
    }
    if offset.checked_add(len).is_none_or(|end| end > dev_bytes) {
        return Err(-libc::EIO);
    }
    Ok(Request {
        tag,
        op,
        flags: desc.flags(),
        offset,
        len,
    })
}

/// What the loop does after an event.
enum Flow {
    /// Go on.
    Next,
    /// The stop signal fired.
    Woken,
}

/// The loop: one `io_uring_enter` sends the answers and waits; then every completion is
/// handled. Ends when every tag is aborted (the device stopped) or the stop signal fires
/// (after the driver's aborts, if STOP_DEV sent them: see [`drain`]).
fn serve<Q: TargetQueue>(
    queue: &mut Queue<'_>,
    target: &mut Q,
    shared: &QueueShared,
    spec: &QueueSpec,
) -> std::result::Result<(), String> {
    let mut failure: Option<QueueError> = None;
    let mut woken = false;
    loop {
        queue.wait().map_err(|e| format!("waiting for I/O: {e}"))?;
        while let Some(event) = queue.next_event() {
            if let Flow::Woken = handle(event, queue, target, shared, spec, &mut failure)? {
                woken = true;
            }
        }
        // Zero copy's counters, for anyone watching while the device runs.
        shared
            .buffer_fallbacks
            .store(queue.buffer_fallbacks(), Ordering::Relaxed);
        if queue.is_finished() {
            shared.ended_by_abort.store(true, Ordering::Release);
            return Ok(());
        }
        if woken {
            return drain(queue, target, shared, spec, &mut failure);
        }
    }
}

/// What the target may do with the queue while it handles one event.
fn context<'q, 't>(
    queue: &'q mut Queue<'t>,
    failure: &'q mut Option<QueueError>,
    shared: &'q QueueShared,
) -> IoContext<'q, 't> {
    IoContext::new(queue, failure, &shared.errors, &shared.device_stopping)
}

/// Handles one event of the queue's loop.
#[inline]
fn handle<Q: TargetQueue>(
    event: Event,
    queue: &mut Queue<'_>,
    target: &mut Q,
    shared: &QueueShared,
    spec: &QueueSpec,
    failure: &mut Option<QueueError>,
) -> std::result::Result<Flow, String> {
    match event {
        Event::Request { tag, desc } => {
            let reply = match decode(tag, &desc, spec.buf_bytes as usize, spec.dev_bytes) {
                Ok(req) => {
                    shared.count(req.op);
                    target.serve(&req, &mut context(queue, failure, shared))
                }
                Err(errno) => {
                    if let Ok(op) = desc.op() {
                        shared.count(op);
                    }
                    Reply::Done(errno)
                }
            };
            if let Reply::Done(result) = reply {
                if result < 0 {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = queue.complete(tag, result) {
                    failure.get_or_insert(e);
                }
            }
        }
        Event::TargetDone {
            tag,
            cookie,
            result,
            ..
        } => target.op_done(tag, cookie, result, &mut context(queue, failure, shared)),
        Event::Refused { tag, cmd, errno } => {
            // The driver may still hold the tag's request; ending the queue closes the ring,
            // which makes the driver fail it instead of leaving it hanging.
            return Err(format!("the driver refused {cmd} for tag {tag}: {errno}"));
        }
        Event::Wake => return Ok(Flow::Woken),
        Event::Aborted { .. } | Event::Unexpected { .. } => {}
    }
    match failure.take() {
        Some(e) => Err(format!("serving I/O: {e}")),
        None => Ok(Flow::Next),
    }
}

/// After the stop signal, when the device sent STOP_DEV: takes the driver's aborts of the
/// fetches still out (and what the target's own operations still complete), for at most
/// [`DRAIN_TIMEOUT`], so that the queue ends with nothing outstanding and frees its buffers
/// (a queue that ends with commands out must leave them mapped: the kernel may still write
/// them).
fn drain<Q: TargetQueue>(
    queue: &mut Queue<'_>,
    target: &mut Q,
    shared: &QueueShared,
    spec: &QueueSpec,
    failure: &mut Option<QueueError>,
) -> std::result::Result<(), String> {
    if !shared.drain_on_wake.load(Ordering::Acquire) {
        return Ok(());
    }
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while queue.outstanding() > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || !queue
                .wait_timeout(left)
                .map_err(|e| format!("waiting for the driver's aborts: {e}"))?
        {
            break;
        }
        while let Some(event) = queue.next_event() {
            handle(event, queue, target, shared, spec, failure)?;
        }
    }
    if queue.is_finished() {
        shared.ended_by_abort.store(true, Ordering::Release);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ublk_core::abi::IoFlags;

    fn desc(op: u8, flags: u32, start: u64, sectors: u32) -> UblksrvIoDesc {
        UblksrvIoDesc {
            op_flags: u32::from(op) | flags,
            nr_sectors: sectors,
            start_sector: start,
            addr: 0,
        }
    }

    #[test]
    fn requests_decode_in_bytes() {
        let r = decode(3, &desc(1, 1 << 13, 8, 8), 4096, 1 << 40).unwrap();
        assert_eq!((r.tag, r.op, r.offset, r.len), (3, IoOp::Write, 4096, 4096));
        assert!(r.flags.contains(IoFlags::FUA));
        // A discard may be far larger than the buffer.
        let r = decode(0, &desc(3, 0, 0, u32::MAX), 4096, 1 << 42).unwrap();
        assert_eq!(r.len, u64::from(u32::MAX) * 512);
    }

    #[test]
    fn bad_descriptors_get_an_errno_not_a_panic() {
        assert_eq!(decode(0, &desc(0, 0, 0, 9), 4096, 1 << 40), Err(-libc::EIO));
        assert_eq!(
            decode(0, &desc(99, 0, 0, 1), 4096, 1 << 40),
            Err(-libc::EOPNOTSUPP)
        );
        assert_eq!(
            decode(0, &desc(0, 0, u64::MAX, 1), 4096, 1 << 40),
            Err(-libc::EIO)
        );
        // Past the end of a 1 MiB device: the last sector is fine, one more is not.
        assert!(decode(0, &desc(0, 0, 2047, 1), 4096, 1 << 20).is_ok());
        assert_eq!(
            decode(0, &desc(0, 0, 2047, 2), 4096, 1 << 20),
            Err(-libc::EIO)
        );
        assert_eq!(
            decode(0, &desc(3, 0, 2048, 1), 4096, 1 << 20),
            Err(-libc::EIO)
        );
    }

    #[test]
    fn a_queue_thread_is_pinned_to_its_first_allowed_cpu() {
        assert_eq!(pinned_cpu(&[0, 1, 2, 3], &[0, 1, 2, 3]), Some(0));
        assert_eq!(pinned_cpu(&[2, 3], &[0, 1, 2, 3]), Some(2));
        // A cpuset that leaves out the queue's first CPUs.
        assert_eq!(pinned_cpu(&[0, 1, 2, 3], &[2, 3]), Some(2));
        assert_eq!(pinned_cpu(&[0, 1], &[2, 3]), None);
        assert_eq!(pinned_cpu(&[], &[0, 1]), None);
    }

    #[test]
    fn a_flush_has_no_position() {
        let r = decode(1, &desc(2, 0, u64::MAX, 0), 4096, 1 << 40).unwrap();
        assert_eq!((r.op, r.offset, r.len), (IoOp::Flush, 0, 0));
    }
}
