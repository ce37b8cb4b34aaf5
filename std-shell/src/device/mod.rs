//! A device's life: build, start (ADD_DEV, SET_PARAMS, queue threads, START_DEV), serve,
//! stop (STOP_DEV, join the queues, DEL_DEV).

#[cfg(test)]
mod fuzz_tests;
mod params;
mod queue_thread;
mod recovery;

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ublk_core::{DataPath, Errno, Features};

use crate::backend::{Backend, Blocking, Target};
use crate::control::{Controller, DeviceInfo, NewDevice};
use crate::error::{Error, Result};
use crate::features::BUILD_FEATURES;
pub use params::DiscardLimits;
use params::{Geometry, Settings};
use queue_thread::{QueueHandle, QueueSpec};
pub use recovery::Recovery;

/// How long a device node may take to appear after the driver created it (devtmpfs or udev).
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds and starts a [`Device`]. Every setting has a default but the size, which comes from
/// here or from the backend. Sizes are in bytes.
#[derive(Clone, Debug)]
pub struct DeviceBuilder {
    new: NewDevice,
    settings: Settings,
    recovery: Recovery,
    /// `None`: the best the target serves and the kernel has.
    data_path: Option<DataPath>,
    force_buffer_fallback: bool,
    control_path: PathBuf,
    timeout: Option<Duration>,
}

impl Default for DeviceBuilder {
    fn default() -> Self {
        DeviceBuilder {
            new: NewDevice::default(),
            settings: Settings::default(),
            recovery: Recovery::Off,
            data_path: None,
            force_buffer_fallback: false,
            control_path: PathBuf::from(Controller::DEFAULT_PATH),
            timeout: None,
        }
    }
}

impl DeviceBuilder {
    /// The device id (`/dev/ublkb<id>`); default: the driver picks a free one.
    pub fn id(mut self, id: u32) -> Self {
        self.new.id = Some(id);
        self
    }

    /// Hardware queues, one thread each (default 1; the driver grants at most one per CPU).
    pub fn queues(mut self, queues: u16) -> Self {
        self.new.queues = queues;
        self
    }

    /// Requests in flight per queue, 1..=4096 (default 128).
    pub fn depth(mut self, depth: u16) -> Self {
        self.new.queue_depth = depth;
        self
    }

    /// Largest request in bytes, a page to 32 MiB (default 512 KiB, or less if the backend
    /// takes less: [`Properties::max_io_bytes`](crate::Properties::max_io_bytes)). Each queue maps `depth`
    /// buffers of this size (address space only: pages are allocated as I/O touches them,
    /// and no swap is reserved).
    pub fn max_io_bytes(mut self, bytes: u32) -> Self {
        self.new.max_io_bytes = bytes;
        self
    }

    /// Logical block size: a power of two from 512 to the page size (default: the
    /// backend's, else 512).
    pub fn logical_block_size(mut self, bytes: u32) -> Self {
        self.settings.logical_block_size = Some(bytes);
        self
    }

    /// Physical block size: a power of two, at least the logical one (default: the
    /// backend's, else the logical).
    pub fn physical_block_size(mut self, bytes: u32) -> Self {
        self.settings.physical_block_size = Some(bytes);
        self
    }

    /// Device size in bytes, a multiple of the logical block size, at most what the backend
    /// holds (default: all the backend holds).
    pub fn size(mut self, bytes: u64) -> Self {
        self.settings.size = Some(bytes);
        self
    }

    /// The block layer refuses writes (default: only if the backend can only read).
    pub fn read_only(mut self, on: bool) -> Self {
        self.settings.read_only = Some(on);
        self
    }

    /// Tell the block layer the device is rotational (a disk, not flash; default: the
    /// backend's, else not).
    pub fn rotational(mut self, on: bool) -> Self {
        self.settings.rotational = Some(on);
        self
    }

    /// The backend has a volatile write cache: the block layer sends FLUSH (default: the
    /// backend's, else not).
    pub fn volatile_cache(mut self, on: bool) -> Self {
        self.settings.volatile_cache = Some(on);
        self
    }

    /// The backend honours FUA writes (needs [`volatile_cache`](Self::volatile_cache);
    /// default: the backend's, else not).
    pub fn fua(mut self, on: bool) -> Self {
        self.settings.fua = Some(on);
        self
    }

    /// The backend takes DISCARD (and WRITE_ZEROES) within these limits (default: the
    /// backend's, else none).
    pub fn discard(mut self, limits: DiscardLimits) -> Self {
        self.settings.discard = Some(limits);
        self
    }

    /// Extra `UBLK_F_*` flags, from those this build implements ([`BUILD_FEATURES`]:
    /// NEED_GET_DATA, NO_AUTO_PART_SCAN, ...); others, and those the running kernel lacks
    /// ([`Error::Unsupported`]), are refused before ADD_DEV.
    pub fn flags(mut self, flags: Features) -> Self {
        self.new.flags = flags;
        self
    }

    /// What happens to the device if its server dies (default [`Recovery::Off`]: it is
    /// stopped). With recovery, a new server takes it over with
    /// [`recover_target`](Self::recover_target); where the kernel has `QUIESCE`, the device
    /// gets it too, so that QUIESCE_DEV can hand it to a new server on purpose (an upgrade).
    /// A mode the kernel lacks (`fail-io` before 6.13) is refused before the device is added.
    pub fn recovery(mut self, mode: Recovery) -> Self {
        self.recovery = mode;
        self
    }

    /// How request data moves between the block layer and the target ([`DataPath`]). The
    /// default (auto) is the first of the target's [`data_paths`](Target::data_paths) that
    /// the running kernel has: zero copy or user copy where the target benefits, else copy.
    /// A path the target does not serve, or the kernel lacks ([`Error::Unsupported`]), is
    /// refused before the device is added.
    pub fn data_path(mut self, path: DataPath) -> Self {
        self.data_path = Some(path);
        self
    }

    /// For testing a server's zero-copy fallback: the driver is asked to register each
    /// request's pages where it cannot, so that every request with data arrives flagged
    /// `NEED_REG_BUF` and the library registers its buffer by hand (REGISTER_IO_BUF before
    /// the target's first operation on it, UNREGISTER_IO_BUF before the answer), as it does
    /// for any request whose automatic registration fails. Slower; only for tests. Counted in
    /// [`Stats::buffer_fallbacks`].
    pub fn force_buffer_fallback(mut self, on: bool) -> Self {
        self.force_buffer_fallback = on;
        self
    }

    /// The control device (default `/dev/ublk-control`).
    pub fn control_path(mut self, path: impl AsRef<Path>) -> Self {
        self.control_path = path.as_ref().to_path_buf();
        self
    }

    /// How long each control command may take (default 30 s).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Starts a device served by a synchronous [`Backend`].
    pub fn start<B: Backend>(self, backend: B) -> Result<Device> {
        self.start_target(Blocking(Arc::new(backend)))
    }

    /// Starts a device served by `target`. Returns once START_DEV has completed (the disk is
    /// added and served) and `/dev/ublkb<id>` exists, waiting up to 10 s for the node to
    /// appear (devtmpfs or udev creates it). On any error, what was done is undone: no device
    /// or thread is left behind.
    pub fn start_target<T: Target>(self, target: T) -> Result<Device> {
        let properties = target.properties();
        let geometry = self.settings.resolve(&properties)?;
        let mut new = self.new;
        new.flags |= self.recovery.flags();
        if let Some(most) = properties.max_io_bytes {
            // The backend's limit, in whole pages (a smaller one is refused by `validate`).
            let page = ublk_core::sys::page_size() as u32;
            new.max_io_bytes = new.max_io_bytes.min(most / page * page);
        }
        let unsupported = new.flags - BUILD_FEATURES;
        if !unsupported.is_empty() {
            return Err(Error::invalid(
                "flags",
                format!("{unsupported} not supported by this library yet"),
            ));
        }
        if new.flags.contains(Features::QUIESCE) && !new.flags.contains(Features::USER_RECOVERY) {
            return Err(Error::invalid(
                "flags",
                "QUIESCE needs recovery (a quiesced device waits for a new server)",
            ));
        }
        new.validate()?;
        // Checked with the requested I/O size now, so a bad geometry adds no device.
        geometry.params(new.max_io_bytes)?;
        let size = geometry.checked_size()?;

        let mut ctrl = self.open_control()?;
        let kernel = ctrl.control().driver_features();
        // NEED_GET_DATA is the copy path's: asked for, it settles what auto picks.
        let asked = match self.data_path {
            None if new.flags.contains(Features::NEED_GET_DATA) => Some(DataPath::Copy),
            asked => asked,
        };
        let path = choose_data_path(asked, target.data_paths(), kernel)?;
        if path != DataPath::Copy && new.flags.contains(Features::NEED_GET_DATA) {
            return Err(Error::invalid(
                "flags",
                format!("NEED_GET_DATA belongs to the copy path, not {path}"),
            ));
        }
        new.flags |= path.flags();
        // An older driver ignores flags it does not know: the device would come up without
        // what was asked for (a FAIL_IO device that queues I/O instead), so ask first.
        if let Some(kernel) = kernel {
            if self.recovery != Recovery::Off && kernel.contains(Features::QUIESCE) {
                new.flags |= Features::QUIESCE;
            }
            let missing = new.flags - kernel;
            if !missing.is_empty() {
                return Err(Error::Unsupported {
                    what: format!("device flags {}", new.flags),
                    missing,
                });
            }
        }
        let info = ctrl.add(&new)?;
        let mut device = Device::new(info, ctrl, properties.size.unwrap_or(size));
        device.force_buffer_fallback = self.force_buffer_fallback;
        let granted = info.flags();
        if !granted.contains(path.flags()) {
            // A driver too old to say what it supports dropped what it did not know.
            let _ = device.shut_down();
            return Err(Error::Unsupported {
                what: format!("data path {path}"),
                missing: path.flags() - granted,
            });
        }
        match device.bring_up(&geometry, Arc::new(target)) {
            Ok(()) => Ok(device),
            Err(e) => {
                // Undo what was done: the error that stopped us is the one to report.
                let _ = device.shut_down();
                Err(e)
            }
        }
    }

    fn open_control(&self) -> Result<Controller> {
        let mut ctrl = Controller::open_path(&self.control_path)?;
        if let Some(t) = self.timeout {
            ctrl.set_timeout(t);
        }
        Ok(ctrl)
    }
}

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
    started: bool,
    finished: bool,
}

impl Device {
    /// A builder with the defaults.
    pub fn builder() -> DeviceBuilder {
        DeviceBuilder::default()
    }

    fn new(info: DeviceInfo, ctrl: Controller, size_limit: u64) -> Device {
        Device {
            info,
            ctrl,
            queues: Vec::new(),
            size_limit,
            force_buffer_fallback: false,
            started: false,
            finished: false,
        }
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

    /// True while every queue thread runs. False once the device was stopped or deleted from
    /// outside (`ublk del`, another process's DEL_DEV), or a queue failed: then call
    /// [`Device::stop`] to collect the queues' results.
    pub fn is_running(&self) -> bool {
        !self.queues.is_empty()
            && self
                .queues
                .iter()
                .all(|q| q.thread.as_ref().is_some_and(|t| !t.is_finished()))
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for q in &self.queues {
            let st = &q.stats;
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
    /// A device that was stopped or deleted from outside (all its queues ended because the
    /// driver aborted them) is not an error, and is left to whoever did it: its id may
    /// already belong to a new device, which must not be deleted in its place.
    pub fn stop(mut self) -> Result<()> {
        self.shut_down()
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
        self.started = true;
        // The node appears asynchronously; a caller may open it right after we return.
        wait_for_path(&self.block_dev_path(), NODE_TIMEOUT);
        Ok(())
    }

    /// Opens `/dev/ublkcN`, starts one thread per queue and waits until each has a FETCH_REQ
    /// outstanding for every tag.
    fn serve_queues<T: Target>(&mut self, target: Arc<T>) -> Result<()> {
        let id = self.id();
        let char_path = self.char_dev_path();
        if !wait_for_path(&char_path, NODE_TIMEOUT) {
            return Err(Error::io(
                format!("waiting for {}", char_path.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
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

        let (ready_tx, ready_rx) = mpsc::channel();
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
                ready_tx.clone(),
            )?;
            self.queues.push(handle);
        }
        drop(ready_tx);
        // Only the queue threads keep the char device open from here: when they end (the
        // device was deleted from outside), it closes and the deleter's DEL_DEV completes.
        drop(char_dev);

        let deadline = Instant::now() + self.ctrl.timeout();
        for _ in 0..self.queues.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(left) {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(e))) => return Err(e),
                Err(_) => {
                    return Err(Error::io(
                        format!("device {id}: waiting for the queues to fetch"),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ));
                }
            }
        }
        Ok(())
    }

    /// STOP_DEV (if started), wake and join the queues, DEL_DEV. Runs once; reports the first
    /// error but does every step.
    fn shut_down(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let id = self.id();
        let gone = |e: &Error| e.errno() == Some(Errno::ENODEV);
        let mut first: Option<Error> = None;
        let stopped_outside = self.started
            && self.queues.iter().all(|q| {
                q.thread.as_ref().is_none_or(|t| t.is_finished())
                    && q.stats.ended_by_abort.load(Ordering::Acquire)
            });
        if self.started && !stopped_outside {
            // Waits for in-flight I/O to be answered by the queues, then aborts their fetches.
            if let Err(e) = self.ctrl.stop(id) {
                if !gone(&e) {
                    first.get_or_insert(e);
                }
            }
        }
        if let Err(e) = self.end_queues() {
            first.get_or_insert(e);
        }
        if !stopped_outside
            && let Err(e) = self.ctrl.delete(id)
            && !gone(&e)
        {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

impl Device {
    /// Wakes and joins every queue thread; the first error any of them ended with.
    fn end_queues(&mut self) -> Result<()> {
        let id = self.id();
        let mut first = None;
        // Normally the queues end on their own (all tags aborted); the signal covers a device
        // that never started, or a driver that left tags outstanding.
        for q in &self.queues {
            let _ = q.wake.signal();
        }
        for (q_id, q) in self.queues.iter_mut().enumerate() {
            let Some(thread) = q.thread.take() else {
                continue;
            };
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first.get_or_insert(e);
                }
                Err(_) => {
                    first.get_or_insert(Error::Queue {
                        dev_id: id,
                        q_id: q_id as u16,
                        reason: "the queue thread panicked".into(),
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// The data path to add a device with: the one asked for, if the target serves it and the
/// kernel has it, else (auto) the first of the target's list the kernel has. `kernel` is
/// `None` where the driver cannot say (no GET_FEATURES): only copy is certain then.
fn choose_data_path(
    asked: Option<DataPath>,
    served: &[DataPath],
    kernel: Option<Features>,
) -> Result<DataPath> {
    let kernel = kernel.unwrap_or(Features::empty());
    let names = || {
        served
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match asked {
        Some(path) if !served.contains(&path) => Err(Error::invalid(
            "data path",
            format!("the target cannot serve {path}; it serves {}", names()),
        )),
        Some(path) => match path.flags() - kernel {
            missing if missing.is_empty() => Ok(path),
            missing => Err(Error::Unsupported {
                what: format!("data path {path}"),
                missing,
            }),
        },
        None => served
            .iter()
            .copied()
            .find(|p| kernel.contains(p.flags()))
            .ok_or_else(|| Error::Unsupported {
                what: format!("every data path the target serves ({})", names()),
                missing: served
                    .iter()
                    .fold(Features::empty(), |m, p| m | (p.flags() - kernel)),
            }),
    }
}

fn wait_for_path(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_PATHS: &[DataPath] = &[DataPath::ZeroCopy, DataPath::UserCopy, DataPath::Copy];

    #[test]
    fn auto_takes_the_targets_first_path_the_kernel_has() {
        let k612 = Some(Features::USER_COPY | Features::USER_RECOVERY);
        let k7 = Some(Features::USER_COPY | Features::AUTO_BUF_REG | Features::SUPPORT_ZERO_COPY);
        let pick = |served, kernel| choose_data_path(None, served, kernel).unwrap();
        assert_eq!(pick(ALL_PATHS, k7), DataPath::ZeroCopy);
        assert_eq!(pick(ALL_PATHS, k612), DataPath::UserCopy);
        // Without GET_FEATURES only copy is certain.
        assert_eq!(pick(ALL_PATHS, None), DataPath::Copy);
        assert_eq!(pick(&[DataPath::Copy], k7), DataPath::Copy);
        // AUTO_BUF_REG alone is not enough: the fallback needs SUPPORT_ZERO_COPY.
        let partial = Some(Features::AUTO_BUF_REG | Features::USER_COPY);
        assert_eq!(pick(ALL_PATHS, partial), DataPath::UserCopy);
    }

    #[test]
    fn a_path_the_target_or_kernel_lacks_is_refused_by_name() {
        let k612 = Some(Features::USER_COPY);
        let e = choose_data_path(Some(DataPath::ZeroCopy), ALL_PATHS, k612).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("data path zero-copy"), "{msg}");
        assert!(msg.contains("AUTO_BUF_REG"), "{msg}");
        let e = choose_data_path(Some(DataPath::UserCopy), &[DataPath::Copy], k612).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid data path: the target cannot serve user-copy; it serves copy"
        );
        // A target with no path the kernel has (a zero-copy-only one on 6.12).
        let e = choose_data_path(None, &[DataPath::ZeroCopy], k612).unwrap_err();
        assert!(e.to_string().contains("AUTO_BUF_REG"), "{e}");
        assert_eq!(
            choose_data_path(Some(DataPath::Copy), ALL_PATHS, None).unwrap(),
            DataPath::Copy
        );
    }
}
