//! A device's life: build (`builder.rs`), start (ADD_DEV, SET_PARAMS, queue threads,
//! START_DEV), serve until told to stop (`serve.rs`), and end (STOP_DEV, join the queues,
//! DEL_DEV), or be left to a future server (recovery). Where a device is in that life is one
//! [`Lifecycle`] value, changed only here. `queue_thread.rs` is a queue's loop, `queues.rs`
//! what the device holds of each queue thread.

mod builder;
#[cfg(test)]
mod fuzz_tests;
mod params;
mod queue_thread;
mod queues;
mod recovery;
mod serve;

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ublk_core::{DataPath, Errno, Features};

use crate::backend::Target;
use crate::control::{Controller, DeviceInfo};
use crate::error::{Error, Result};
use crate::poll::poll_until;
pub use builder::DeviceBuilder;
use params::Geometry;
use queue_thread::QueueSpec;
use queues::{QueueHandle, Ready, Unjoined};
pub use recovery::Recovery;
pub use serve::{Ended, Fate, Served};

/// How long a device node may take to appear after the driver created it (devtmpfs or udev).
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of a running device, summed over its queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// READ requests served.
    pub reads: u64,
    /// WRITE requests.
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// DISCARD requests.
    pub discards: u64,
    /// WRITE_ZEROES requests.
    pub write_zeroes: u64,
    /// Requests of other operations (answered EOPNOTSUPP by most targets).
    pub other: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Tag transitions refused and completions no tag could place: always 0 unless the
    /// server or the driver misbehaved. Updated when a queue ends.
    pub anomalies: u64,
    /// Zero copy: requests whose pages the driver could not register automatically, whose
    /// buffer the library registered by hand (see
    /// [`DeviceBuilder::force_buffer_fallback`]).
    pub buffer_fallbacks: u64,
    /// Zero copy: registrations by hand the driver refused (those requests failed). Updated
    /// when a queue ends.
    pub buffer_errors: u64,
}

/// Where a device is in its life, as its server sees it: what ending it must undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    /// Added (ADD_DEV), not started: ending it deletes it.
    Added,
    /// START_USER_RECOVERY sent, END_USER_RECOVERY not: ending it leaves it to another
    /// server, with its I/O and data.
    Recovering,
    /// Served (START_DEV or END_USER_RECOVERY done): ending it stops and deletes it.
    Live,
    /// Ended, or left to a future server: nothing more to do.
    Released,
}

/// How the queue threads ended.
struct QueuesEnded {
    /// The first error a queue ended with (or that it did not end in time).
    error: Option<Error>,
    /// A queue thread did not end within the bound and was left running: it still holds
    /// `/dev/ublkcN`, so DEL_DEV would wait for it.
    left_running: bool,
}

/// A started ublk device, serving `/dev/ublkb<id>` from its queue threads. Stops and deletes
/// the device when dropped (use [`Device::stop`] to see errors).
#[derive(Debug)]
pub struct Device {
    info: DeviceInfo,
    ctrl: Controller,
    queues: Vec<QueueHandle>,
    /// Bytes: the most the backend holds, so the most the device may be resized to.
    size_limit: u64,
    force_buffer_fallback: bool,
    lifecycle: Lifecycle,
    warnings: Vec<String>,
}

impl Device {
    /// A builder with the defaults.
    pub fn builder() -> DeviceBuilder {
        DeviceBuilder::default()
    }

    /// A device ADD_DEV just created: ending it deletes it.
    fn added(info: DeviceInfo, ctrl: Controller, size_limit: u64) -> Device {
        Device {
            info,
            ctrl,
            queues: Vec::new(),
            size_limit,
            force_buffer_fallback: false,
            lifecycle: Lifecycle::Added,
            warnings: Vec::new(),
        }
    }

    /// A device whose recovery just began (START_USER_RECOVERY): ending it before it is live
    /// leaves it waiting for another server.
    fn recovering(info: DeviceInfo, ctrl: Controller, size_limit: u64) -> Device {
        let mut device = Device::added(info, ctrl, size_limit);
        device.lifecycle = Lifecycle::Recovering;
        device
    }

    /// How request data moves on this device (from the flags the driver granted).
    pub fn data_path(&self) -> DataPath {
        DataPath::of(self.info.flags())
    }

    /// The device id.
    pub fn id(&self) -> u32 {
        self.info.id()
    }

    /// What the driver granted at ADD_DEV (queues, depth, I/O size, flags).
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// `/dev/ublkb<id>`.
    pub fn block_dev_path(&self) -> PathBuf {
        self.info.block_dev_path()
    }

    /// `/dev/ublkc<id>`.
    pub fn char_dev_path(&self) -> PathBuf {
        self.info.char_dev_path()
    }

    /// What did not stop the device but its user should know, once each (e.g. that its queue
    /// threads could not be made I/O flushers).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// True while every queue thread runs. False once the device was stopped or deleted from
    /// outside (`ublk del`, another process's DEL_DEV), or a queue failed: then call
    /// [`Device::stop`] to collect the queues' results.
    pub fn is_running(&self) -> bool {
        !self.queues.is_empty() && self.queues.iter().all(|q| !q.is_finished())
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for q in &self.queues {
            let st = &q.shared;
            let n = |i: usize| st.ops[i].load(Ordering::Relaxed);
            s.reads += n(0);
            s.writes += n(1);
            s.flushes += n(2);
            s.discards += n(3);
            s.write_zeroes += n(4);
            s.other += n(5);
            s.errors += st.errors.load(Ordering::Relaxed);
            s.anomalies += st.anomalies.load(Ordering::Relaxed);
            s.buffer_fallbacks += st.buffer_fallbacks.load(Ordering::Relaxed);
            s.buffer_errors += st.buffer_errors.load(Ordering::Relaxed);
        }
        s
    }

    /// The most bytes the device may be resized to: what the backend holds.
    pub fn size_limit(&self) -> u64 {
        self.size_limit
    }

    /// Resizes the device (UPDATE_SIZE, Linux 6.16) to `bytes`: a non-zero multiple of the
    /// logical block size, at most what the backend holds. A file system on it is not
    /// resized; the kernel tells its users with a uevent.
    pub fn resize(&mut self, bytes: u64) -> Result<()> {
        if bytes > self.size_limit {
            return Err(Error::invalid(
                "device size",
                format!(
                    "{bytes} bytes is more than the backend holds ({} bytes)",
                    self.size_limit
                ),
            ));
        }
        self.ctrl.resize(self.id(), bytes)?;
        Ok(())
    }

    /// Stops the device (STOP_DEV: the block device goes away once in-flight I/O is
    /// answered), ends the queue threads and deletes it (DEL_DEV).
    ///
    /// Bounded: each control command by the command timeout
    /// ([`DeviceBuilder::command_timeout`], 30 s by default), and the queue threads' end by
    /// the same again. A queue thread still busy then (its target blocks, and will not
    /// answer) is left running and reported as an error; the device is then deleted with
    /// DEL_DEV_ASYNC, which completes once that thread lets go of `/dev/ublkcN`.
    ///
    /// A device that was stopped or deleted from outside (all its queues ended because the
    /// driver aborted them) is not an error, and is left to whoever did it: its id may
    /// already belong to a new device, which must not be deleted in its place.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
    }

    /// Ends the queue threads without STOP_DEV or DEL_DEV, after a queue failed: the driver
    /// then treats the device as one whose server died, and it waits for a new server with
    /// its I/O and data. Returns the failed queue's error.
    pub(super) fn leave_for_recovery(&mut self) -> Option<Error> {
        self.lifecycle = Lifecycle::Released;
        self.end_queues(false).error
    }

    /// What the builder did, the lifecycle: "STOP_DEV, queues end, DEL_DEV" undoes it.
    fn bring_up<T: Target>(&mut self, geometry: &Geometry, target: Arc<T>) -> Result<()> {
        let id = self.id();
        let params = geometry.params(self.info.max_io_bytes())?;
        self.ctrl.set_params(id, &params)?;
        self.serve_queues(target)?;
        // Every tag has a FETCH_REQ outstanding and each queue thread is (about to be) waiting
        // for requests: START_DEV can add the disk, whose partition scan they serve.
        self.ctrl.start(id, ublk_core::sys::getpid())?;
        self.lifecycle = Lifecycle::Live;
        // The node appears asynchronously; a caller may open it right after we return.
        wait_for_path(&self.block_dev_path(), NODE_TIMEOUT);
        Ok(())
    }

    /// The recovery that began with [`Device::recovering`] is done (END_USER_RECOVERY): the
    /// device is live again, served by this process.
    fn recovered(&mut self) {
        self.info = self.ctrl.info(self.id()).unwrap_or(self.info);
        self.lifecycle = Lifecycle::Live;
        wait_for_path(&self.block_dev_path(), NODE_TIMEOUT);
    }

    /// Opens `/dev/ublkcN`, starts one thread per queue and waits until each has a FETCH_REQ
    /// outstanding for every tag.
    fn serve_queues<T: Target>(&mut self, target: Arc<T>) -> Result<()> {
        let id = self.id();
        let char_path = self.char_dev_path();
        if !wait_for_path(&char_path, NODE_TIMEOUT) {
            return Err(Error::io(
                format!("waiting for {}", char_path.display()),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let char_dev: Arc<OwnedFd> = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&char_path)
                .map_err(|e| Error::io(format!("opening {}", char_path.display()), e))?
                .into(),
        );

        let ready = Arc::new(Ready::default());
        let encoding = self.ctrl.control().encoding();
        let data_path = self.data_path();
        let buffers = target.wants_buffers(data_path);
        for q_id in 0..self.info.queues() {
            let spec = QueueSpec {
                dev_id: id,
                q_id,
                depth: self.info.queue_depth(),
                buf_bytes: self.info.max_io_bytes(),
                dev_bytes: self.size_limit,
                encoding,
                need_get_data: self.info.flags().contains(Features::NEED_GET_DATA),
                data_path,
                buffers,
                force_buffer_fallback: self.force_buffer_fallback,
                cpus: self.ctrl.queue_affinity(id, q_id)?,
            };
            let handle = queue_thread::spawn(
                spec,
                Arc::clone(&target),
                Arc::clone(&char_dev),
                Arc::clone(&ready),
            )?;
            self.queues.push(handle);
        }
        // Only the queue threads keep the char device open from here: when they end (the
        // device was deleted from outside), it closes and the deleter's DEL_DEV completes.
        drop(char_dev);

        let deadline = Instant::now() + self.ctrl.timeout();
        let warnings = ready.wait(self.queues.len(), deadline).map_err(|e| {
            e.unwrap_or_else(|| {
                Error::io(
                    format!("device {id}: waiting for the queues to fetch"),
                    std::io::ErrorKind::TimedOut.into(),
                )
            })
        })?;
        for w in warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        Ok(())
    }

    /// True if the device was started and the driver ended every queue (a STOP_DEV, DEL_DEV
    /// or QUIESCE_DEV from outside).
    fn stopped_outside(&self) -> bool {
        !self.queues.is_empty()
            && self
                .queues
                .iter()
                .all(|q| q.is_finished() && q.ended_by_abort())
    }

    /// Ends the device as its [`Lifecycle`] calls for: STOP_DEV (if live and not stopped from
    /// outside), end the queues, DEL_DEV (unless it was stopped from outside, or is being
    /// recovered: a recovery that failed leaves the device to another server). Runs once;
    /// reports the first error but does every step.
    fn shut_down(&mut self) -> Result<()> {
        let lifecycle = std::mem::replace(&mut self.lifecycle, Lifecycle::Released);
        let id = self.id();
        let gone = |e: &Error| e.errno() == Some(Errno::ENODEV);
        let mut first: Option<Error> = None;
        let stopped_outside = self.stopped_outside();
        let stopping = lifecycle == Lifecycle::Live && !stopped_outside;
        if stopping {
            // Waits for in-flight I/O to be answered by the queues, then aborts their fetches:
            // a target that holds requests until something comes back must answer them now.
            for q in &self.queues {
                q.stopping();
            }
            if let Err(e) = self.ctrl.stop(id)
                && !gone(&e)
            {
                first.get_or_insert(e);
            }
        }
        let ended = match lifecycle {
            Lifecycle::Released => return Ok(()),
            _ => self.end_queues(stopping),
        };
        if let Some(e) = ended.error {
            // A queue left running explains what else failed (STOP_DEV waits for its I/O).
            if ended.left_running {
                first = Some(e);
            } else {
                first.get_or_insert(e);
            }
        }
        if matches!(lifecycle, Lifecycle::Added | Lifecycle::Live) && !stopped_outside {
            // A queue thread left running holds /dev/ublkcN: DEL_DEV would wait for it.
            let deleted = if ended.left_running {
                self.ctrl.delete_async(id)
            } else {
                self.ctrl.delete(id)
            };
            if let Err(e) = deleted
                && !gone(&e)
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Wakes every queue thread and joins them, waiting at most the command timeout for all:
    /// a thread still running then (its target blocks) is left to end on its own. With
    /// `aborted` (STOP_DEV was sent), each first takes the driver's aborts of its fetches, so
    /// it frees its buffers.
    fn end_queues(&mut self, aborted: bool) -> QueuesEnded {
        let id = self.id();
        let mut ended = QueuesEnded {
            error: None,
            left_running: false,
        };
        // Normally the queues end on their own (all tags aborted); the signal covers a device
        // that never started, or a driver that left tags outstanding.
        for q in &self.queues {
            q.wake(aborted);
        }
        let bound = self.ctrl.timeout();
        let deadline = Instant::now() + bound;
        for (q_id, q) in self.queues.iter_mut().enumerate() {
            let q_id = q_id as u16;
            let fail = |reason: String| Error::Queue {
                dev_id: id,
                q_id,
                reason,
            };
            match q.join_until(deadline) {
                None => {}
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    ended.error.get_or_insert(e);
                }
                Some(Err(Unjoined::Panicked)) => {
                    ended
                        .error
                        .get_or_insert(fail("the queue thread panicked".into()));
                }
                Some(Err(Unjoined::StillRunning)) => {
                    ended.left_running = true;
                    ended.error.get_or_insert(fail(format!(
                        "the queue thread did not end within {} s (its target blocks?); it was left running",
                        bound.as_secs()
                    )));
                }
            }
        }
        ended
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let exists = || path.exists().then_some(());
    poll_until(Instant::now() + timeout, Duration::from_millis(5), exists).is_some()
}
