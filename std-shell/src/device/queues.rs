//! What a device holds of each queue thread: the counters and flags the two share, the
//! reports that the queues are ready, and the handle that wakes and (boundedly) joins one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ublk_core::IoOp;

use crate::error::{Error, Result};
use crate::os::EventFd;
use crate::poll::poll_until;

/// What a queue thread and its device share: counters anyone may read, and how it ended.
#[derive(Debug, Default)]
pub(crate) struct QueueShared {
    /// Requests by operation: read, write, flush, discard, write-zeroes, other.
    pub ops: [AtomicU64; 6],
    /// Requests answered with an error.
    pub errors: AtomicU64,
    /// Refused tag transitions and completions the queue could not place.
    pub anomalies: AtomicU64,
    /// Zero copy: requests whose pages the driver could not register, registered by hand.
    pub buffer_fallbacks: AtomicU64,
    /// Zero copy: registrations by hand the driver refused.
    pub buffer_errors: AtomicU64,
    /// The queue ended because the driver aborted every tag (the device was stopped).
    pub ended_by_abort: AtomicBool,
    /// Set before the wake-up when STOP_DEV was sent: the driver's aborts are on their way,
    /// and the queue takes them before it ends, so nothing is left writing its buffers.
    pub drain_on_wake: AtomicBool,
    /// Set before STOP_DEV, which waits for every request in flight: a target holding
    /// requests (an NBD queue waiting to reconnect) answers them instead
    /// ([`IoContext::device_stopping`](crate::backend::IoContext::device_stopping)).
    pub device_stopping: AtomicBool,
}

impl QueueShared {
    pub(crate) fn count(&self, op: IoOp) {
        let i = match op {
            IoOp::Read => 0,
            IoOp::Write => 1,
            IoOp::Flush => 2,
            IoOp::Discard => 3,
            IoOp::WriteZeroes => 4,
            _ => 5,
        };
        self.ops[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue threads' reports that they fetch every tag (or why they could not), for the
/// device that waits for all of them before START_DEV.
#[derive(Debug, Default)]
pub(crate) struct Ready {
    state: Mutex<ReadyState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ReadyState {
    /// Queues that reported, either way.
    reported: usize,
    /// The first queue's error.
    error: Option<Error>,
    /// What the queues want their user to know (each once).
    warnings: Vec<String>,
}

impl Ready {
    pub(crate) fn report(&self, result: Result<Option<String>>) {
        // A poisoned lock only means another queue thread panicked while reporting: the
        // counts it protects are still whole.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.reported += 1;
        match result {
            Ok(Some(w)) if !s.warnings.contains(&w) => s.warnings.push(w),
            Ok(_) => {}
            Err(e) => {
                s.error.get_or_insert(e);
            }
        }
        self.changed.notify_all();
    }

    /// Waits until `queues` queues reported, or one failed (its error), or `deadline`
    /// (`Err(None)`). The queues' warnings on success.
    pub(crate) fn wait(
        &self,
        queues: usize,
        deadline: Instant,
    ) -> std::result::Result<Vec<String>, Option<Error>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = s.error.take() {
                return Err(Some(e));
            }
            if s.reported >= queues {
                return Ok(std::mem::take(&mut s.warnings));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(None);
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Why a queue thread could not be joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unjoined {
    /// It panicked.
    Panicked,
    /// It was still running at the deadline.
    StillRunning,
}

/// A running queue thread, as the device sees it.
#[derive(Debug)]
pub(crate) struct QueueHandle {
    pub(crate) thread: Option<JoinHandle<Result<()>>>,
    pub(crate) wake: EventFd,
    pub(crate) shared: Arc<QueueShared>,
}

impl QueueHandle {
    /// The thread has ended (or was joined).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// The thread ended because the driver aborted every tag.
    pub(crate) fn ended_by_abort(&self) -> bool {
        self.shared.ended_by_abort.load(Ordering::Acquire)
    }

    /// Tells the thread's target that the device is being stopped (before STOP_DEV).
    pub(crate) fn stopping(&self) {
        self.shared.device_stopping.store(true, Ordering::Release);
    }

    /// Tells the thread to end; with `aborted`, after taking the driver's aborts.
    pub(crate) fn wake(&self, aborted: bool) {
        self.shared.drain_on_wake.store(aborted, Ordering::Release);
        let _ = self.wake.signal();
    }

    /// Joins the thread if it ends by `deadline`: its result, `None` if it was joined
    /// before. A thread still running at the deadline is detached, to end on its own.
    pub(crate) fn join_until(
        &mut self,
        deadline: Instant,
    ) -> Option<std::result::Result<Result<()>, Unjoined>> {
        let thread = self.thread.take()?;
        let finished = || thread.is_finished().then_some(());
        if poll_until(deadline, Duration::from_millis(5), finished).is_none() {
            return Some(Err(Unjoined::StillRunning));
        }
        Some(thread.join().map_err(|_| Unjoined::Panicked))
    }
}
