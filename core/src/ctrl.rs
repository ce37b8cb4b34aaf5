//! Control commands over `/dev/ublk-control`: encoding, submission and bounded completion.
//!
//! Each command is one `URING_CMD` on a small ring of 128-byte SQEs. Every wait is bounded by a
//! timeout, because kernels exist where a command (ADD_DEV, or START_DEV without queues) never
//! completes; a timeout or a kernel errno becomes a [`CtrlError`] that names the command.
//!
//! Commands that take a buffer (device info, parameters, CPU masks) use a page owned by the
//! `Control`, never the caller's memory: a command that timed out may still be running in the
//! kernel and write its answer later. After a timeout that page is abandoned (left mapped and
//! never reused) and a fresh one takes its place, so a late write cannot land in memory that
//! means something else. Late completions are recognised by their `user_data` and discarded.

use core::fmt;
use core::time::Duration;

use crate::abi::ctrl::{UBLK_CTRL_NO_QUEUE, UBLK_DEV_ID_ANY};
use crate::abi::features::UBLK_FEATURES_LEN;
use crate::abi::io::{UBLK_MAX_NR_QUEUES, UBLK_MAX_QUEUE_DEPTH};
use crate::abi::uring::{Cqe32, Sqe128};
use crate::abi::{
    CtrlCmd, Features, OpEncoding, Pod, UblkParams, UblksrvCtrlCmd, UblksrvCtrlDevInfo,
};
use crate::errno::Errno;
use crate::ring::{Ring, RingError, Target};
use crate::sys::{self, Fd, Mapping};

/// How long a control command may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a timed-out command may take to end once cancelled.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Why a control command failed: which command, for which device, and what happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtrlError {
    /// The command.
    pub cmd: CtrlCmd,
    /// The device it addressed (`None` for GET_FEATURES and ADD_DEV with any id).
    pub dev_id: Option<u32>,
    /// What went wrong.
    pub kind: CtrlErrorKind,
}

/// What went wrong with a control command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtrlErrorKind {
    /// The kernel completed it with this error.
    Kernel(Errno),
    /// No completion within `waited`. The command was then cancelled; `cancelled` says whether
    /// it ended. If not, the kernel may still complete it later (its buffer is never reused).
    TimedOut {
        /// The timeout that passed.
        waited: Duration,
        /// The command ended after being cancelled.
        cancelled: bool,
    },
    /// The ring failed (setup, submission, or the command buffer could not be mapped).
    Ring(RingError),
    /// The command completed, but its answer is not one the ublk driver gives (another
    /// device's id, no queues): the descriptor is likely not `/dev/ublk-control`.
    BadAnswer(&'static str),
}

impl CtrlError {
    /// The kernel's errno, if the kernel answered with one.
    pub fn errno(&self) -> Option<Errno> {
        match self.kind {
            CtrlErrorKind::Kernel(e) => Some(e),
            _ => None,
        }
    }

    /// True if the command did not complete in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, CtrlErrorKind::TimedOut { .. })
    }

    /// What `errno` means for this particular command, when that says more than the errno's
    /// generic description.
    pub fn hint(&self) -> Option<&'static str> {
        let CtrlErrorKind::Kernel(e) = self.kind else {
            return None;
        };
        use CtrlCmd::*;
        Some(match (self.cmd, e) {
            (_, Errno::EPERM) => "needs CAP_SYS_ADMIN",
            (AddDev, Errno::EEXIST) => "device id in use",
            (AddDev, Errno::EINVAL) => {
                "the kernel rejected the device settings (queues, depth, id or flags)"
            }
            (UpdateSize | QuiesceDev | TryStopDev, Errno::ENODEV) => "device not started",
            (_, Errno::ENODEV) => "no such device",
            (SetParams, Errno::EINVAL) => "the kernel rejected the parameters",
            (SetParams, Errno::EACCES) => "parameters can only change before START_DEV",
            (StartDev, Errno::EINVAL) => "no basic parameters set, or bad server pid",
            (StartDev, Errno::EEXIST) => "device already started",
            (StartDev | EndUserRecovery, Errno::EINTR) => {
                "interrupted while waiting for the queues"
            }
            (StartUserRecovery | EndUserRecovery, Errno::EBUSY) => {
                "the old server still holds the device, or it is not recoverable now"
            }
            (TryStopDev, Errno::EBUSY) => "the block device is open",
            (QuiesceDev, Errno::EBUSY) => "I/O did not become idle in time",
            (QuiesceDev, Errno::EOPNOTSUPP) => "the device was created without QUIESCE",
            (GetQueueAffinity, Errno::EINVAL) => "no such queue",
            (_, Errno::EOPNOTSUPP) => "not supported by this kernel",
            _ => return None,
        })
    }
}

impl fmt::Display for CtrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dev_id {
            Some(id) => write!(f, "{} for device {id}: ", self.cmd)?,
            None => write!(f, "{}: ", self.cmd)?,
        }
        match self.kind {
            CtrlErrorKind::Kernel(e) => match (self.hint(), e.name()) {
                (Some(hint), Some(name)) => write!(f, "{name} ({hint})"),
                _ => write!(f, "{e}"),
            },
            CtrlErrorKind::TimedOut { waited, cancelled } => {
                write!(
                    f,
                    "no answer within {}.{:03}s ",
                    waited.as_secs(),
                    waited.subsec_millis()
                )?;
                f.write_str(if cancelled {
                    "(cancelled)"
                } else {
                    "(cancelling failed: the kernel may still complete it)"
                })
            }
            CtrlErrorKind::Ring(e) => write!(f, "{e}"),
            CtrlErrorKind::BadAnswer(why) => {
                write!(f, "the answer is not the ublk driver's ({why})")
            }
        }
    }
}

impl core::error::Error for CtrlError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match &self.kind {
            CtrlErrorKind::Kernel(e) => Some(e),
            CtrlErrorKind::Ring(e) => Some(e),
            CtrlErrorKind::TimedOut { .. } | CtrlErrorKind::BadAnswer(_) => None,
        }
    }
}

/// The CPUs whose I/O a queue serves (GET_QUEUE_AFFINITY): a kernel cpumask of up to
/// [`CpuMask::MAX_CPUS`] CPUs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CpuMask {
    words: [u64; CpuMask::WORDS],
}

impl CpuMask {
    const WORDS: usize = 128;
    /// The most CPUs a mask can describe (Linux's largest `NR_CPUS`).
    pub const MAX_CPUS: usize = Self::WORDS * 64;

    /// True if `cpu` is in the mask.
    pub fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / 64)
            .is_some_and(|w| w & (1 << (cpu % 64)) != 0)
    }

    /// The CPUs in the mask, ascending.
    pub fn cpus(&self) -> impl Iterator<Item = usize> + '_ {
        (0..Self::MAX_CPUS).filter(move |&cpu| self.contains(cpu))
    }

    /// How many CPUs are in the mask.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.cpus()).finish()
    }
}

/// `/dev/ublkc<id>` with its NUL, built without allocating: GET_DEV_INFO2 wants it.
struct CharDevPath {
    bytes: [u8; 24],
    len: usize,
}

impl CharDevPath {
    fn new(id: u32) -> CharDevPath {
        const PREFIX: &[u8] = b"/dev/ublkc";
        let mut bytes = [0u8; 24];
        bytes[..PREFIX.len()].copy_from_slice(PREFIX);
        let mut digits = [0u8; 10];
        let mut n = id;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..count {
            bytes[PREFIX.len() + i] = digits[count - 1 - i];
        }
        // The array is zeroed, so the NUL is already in place; count it.
        CharDevPath {
            bytes,
            len: PREFIX.len() + count + 1,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Checks a device's info as the driver answered it (ADD_DEV, GET_DEV_INFO): the device asked
/// about (`id`, if one was named), and queues and depth the driver can have, no more than were
/// asked for (`asked`, for ADD_DEV). A descriptor that is not `/dev/ublk-control` (one that
/// completes every command with 0, as `/dev/null` does) answers with zeroes, which fail here.
fn check_info(
    info: &UblksrvCtrlDevInfo,
    id: Option<u32>,
    asked: Option<&UblksrvCtrlDevInfo>,
) -> Result<(), &'static str> {
    if info.dev_id == UBLK_DEV_ID_ANY || id.is_some_and(|id| id != info.dev_id) {
        return Err("another device's id");
    }
    if info.nr_hw_queues == 0 || u32::from(info.nr_hw_queues) > UBLK_MAX_NR_QUEUES {
        return Err("a queue count outside 1..=4096");
    }
    if info.queue_depth == 0 || info.queue_depth > UBLK_MAX_QUEUE_DEPTH {
        return Err("a queue depth outside 1..=4096");
    }
    if let Some(asked) = asked
        && (info.nr_hw_queues > asked.nr_hw_queues || info.queue_depth > asked.queue_depth)
    {
        return Err("more queues or tags than asked for");
    }
    Ok(())
}

/// A connection to the ublk driver's control device.
///
/// Owns the `/dev/ublk-control` descriptor (opening it is the caller's job), a small ring of
/// 128-byte SQEs, and one page for command buffers. Commands take `&mut self`: one at a time.
#[derive(Debug)]
pub struct Control {
    ring: Ring<Sqe128, Cqe32>,
    scratch: Mapping,
    ctrl: Fd,
    encoding: OpEncoding,
    driver_features: Option<Features>,
    next_user_data: u64,
    timeout: Duration,
}

/// Where a command's buffer goes in the scratch page, and how it comes back.
enum Buffer<'a> {
    /// No buffer.
    None,
    /// Send these bytes; the kernel may write back over them.
    InOut(&'a mut [u8]),
    /// `prefix` (a device path) then `out`, which the kernel fills.
    PathThen { prefix: &'a [u8], out: &'a mut [u8] },
}

impl Control {
    /// Takes over an open `/dev/ublk-control` descriptor and asks the driver which features it
    /// has, to choose the command encoding (ioctl-encoded where supported, legacy otherwise).
    pub fn new(ctrl: Fd) -> Result<Control, CtrlError> {
        let setup_err = |e| CtrlError {
            cmd: CtrlCmd::GetFeatures,
            dev_id: None,
            kind: CtrlErrorKind::Ring(e),
        };
        let ring = Ring::new(4).map_err(setup_err)?;
        let scratch =
            Mapping::anonymous(sys::page_size()).map_err(|e| setup_err(RingError::Map(e)))?;
        let mut control = Control {
            ring,
            scratch,
            ctrl,
            encoding: OpEncoding::Ioctl,
            driver_features: None,
            next_user_data: 1,
            timeout: DEFAULT_TIMEOUT,
        };
        match control.get_features() {
            Ok(features) => {
                control.driver_features = Some(features);
                if !features.contains(Features::CMD_IOCTL_ENCODE) {
                    control.encoding = OpEncoding::Legacy;
                }
            }
            // Kernels before GET_FEATURES (6.5) refuse the command itself; they speak legacy.
            Err(e) if matches!(e.errno(), Some(Errno::EOPNOTSUPP | Errno::EINVAL)) => {
                control.encoding = OpEncoding::Legacy;
            }
            Err(e) => return Err(e),
        }
        Ok(control)
    }

    /// The encoding commands are sent with.
    pub fn encoding(&self) -> OpEncoding {
        self.encoding
    }

    /// Overrides the encoding chosen from GET_FEATURES: to reach a kernel through its legacy
    /// opcodes, or to test them. A kernel built without `CONFIG_BLKDEV_UBLK_LEGACY_OPCODES`
    /// refuses legacy commands with `EOPNOTSUPP`.
    pub fn set_encoding(&mut self, encoding: OpEncoding) {
        self.encoding = encoding;
    }

    /// The driver's features as read when this `Control` was created (`None` on kernels
    /// without GET_FEATURES).
    pub fn driver_features(&self) -> Option<Features> {
        self.driver_features
    }

    /// The time each command may take before it fails with [`CtrlErrorKind::TimedOut`].
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets the per-command timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Leaves the current scratch page to a command that may still write it, and maps a new
    /// one. If mapping fails the old page stays (the next buffer command then reports it).
    fn abandon_scratch(&mut self) -> Result<(), RingError> {
        let fresh = Mapping::anonymous(sys::page_size()).map_err(RingError::Map)?;
        let old = core::mem::replace(&mut self.scratch, fresh);
        // Deliberately leaked: the kernel may still write this page.
        core::mem::forget(old);
        Ok(())
    }

    /// Copies `parts` one after another to the start of the scratch page; returns their total
    /// length, which must fit the page and the command's 16-bit `len`.
    fn scratch_fill(&mut self, parts: &[&[u8]]) -> Result<u16, Errno> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.scratch.len() {
            return Err(Errno::E2BIG);
        }
        let len = u16::try_from(total).map_err(|_| Errno::E2BIG)?;
        let mut at = 0;
        for part in parts {
            // SAFETY: `at + part.len() <= total <= scratch.len()`, so the copy stays inside the
            // page, which is mapped and owned by `self`. No command still uses it: each command
            // either completed, or ended when cancelled, or left this page behind (abandoned)
            // and a fresh one took its place. `part` is caller memory and cannot overlap it.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.scratch.as_ptr().add(at),
                    part.len(),
                )
            };
            at += part.len();
        }
        Ok(len)
    }

    /// Copies what the kernel wrote at `offset` of the scratch page into `dst`.
    fn scratch_read(&self, offset: usize, dst: &mut [u8]) {
        // Only reached with offsets and lengths that `scratch_fill` accepted for this command.
        if offset + dst.len() > self.scratch.len() {
            return;
        }
        // SAFETY: in bounds (checked above) of the live page owned by `self`; the command that
        // wrote it has completed (its CQE was reaped with Acquire ordering), so nothing writes
        // the page concurrently; `dst` is caller memory, disjoint from the mapping.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.scratch.as_ptr().add(offset),
                dst.as_mut_ptr(),
                dst.len(),
            )
        };
    }

    /// Sends one command and waits for its completion, at most `timeout`.
    fn execute(
        &mut self,
        cmd: CtrlCmd,
        dev_id: Option<u32>,
        mut header: UblksrvCtrlCmd,
        buffer: Buffer<'_>,
        timeout: Duration,
    ) -> Result<i32, CtrlError> {
        let fail = |kind| CtrlError { cmd, dev_id, kind };
        header.dev_id = dev_id.unwrap_or(UBLK_DEV_ID_ANY);

        // (offset in the scratch page, destination) of what the kernel writes back.
        let mut out: Option<(usize, &mut [u8])> = None;
        match buffer {
            Buffer::None => {}
            Buffer::InOut(bytes) => {
                header.len = self
                    .scratch_fill(&[bytes])
                    .map_err(|e| fail(CtrlErrorKind::Kernel(e)))?;
                header.addr = self.scratch.as_ptr() as u64;
                out = Some((0, bytes));
            }
            Buffer::PathThen { prefix, out: bytes } => {
                bytes.fill(0);
                header.len = self
                    .scratch_fill(&[prefix, bytes])
                    .map_err(|e| fail(CtrlErrorKind::Kernel(e)))?;
                header.addr = self.scratch.as_ptr() as u64;
                header.dev_path_len = prefix.len() as u16;
                out = Some((prefix.len(), bytes));
            }
        }

        let user_data = self.next_user_data;
        self.next_user_data = self.next_user_data.wrapping_add(1);
        let sqe = Sqe128::uring_cmd(
            Target::Fd(self.ctrl.raw()),
            cmd.opcode(self.encoding),
            &header,
            user_data,
        );
        // SAFETY: the only memory the command points at is the scratch page (`header.addr`).
        // It is neither unmapped nor reused until the command's completion is reaped (below,
        // or after a cancel); if that never happens it is leaked (`abandon_scratch`).
        unsafe { self.ring.push(&sqe) }.map_err(|e| fail(CtrlErrorKind::Ring(e)))?;

        let deadline = sys::monotonic_now().saturating_add(timeout);
        let res = match self.wait_for(user_data, deadline) {
            Ok(res) => res,
            Err(e) => {
                let cancelled = self.cancel(user_data);
                if !cancelled {
                    // The command may still be in the kernel, with our page: leave it that page.
                    let _ = self.abandon_scratch();
                }
                return Err(fail(match e {
                    RingError::TimedOut => CtrlErrorKind::TimedOut {
                        waited: timeout,
                        cancelled,
                    },
                    e => CtrlErrorKind::Ring(e),
                }));
            }
        };
        if let Some((offset, dst)) = out {
            self.scratch_read(offset, dst);
        }
        Errno::from_result(res)
            .map(|_| res)
            .map_err(|e| fail(CtrlErrorKind::Kernel(e)))
    }

    /// Waits until the completion of the command sent with `user_data` arrives, returning its
    /// result, or until `deadline`. Completions of earlier commands that were given up on carry
    /// other `user_data` and are dropped.
    fn wait_for(&mut self, user_data: u64, deadline: Duration) -> Result<i32, RingError> {
        loop {
            if let Some(cqe) = self.ring.completions().find(|c| c.user_data == user_data) {
                return Ok(cqe.res);
            }
            let left = deadline.saturating_sub(sys::monotonic_now());
            if left.is_zero() {
                return Err(RingError::TimedOut);
            }
            match self.ring.submit_and_wait_timeout(1, left) {
                Ok(_) | Err(RingError::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Cancels a command that did not complete in time and waits briefly for it to end, so it
    /// drops the references it holds in the kernel (a START_DEV left waiting for queues pins its
    /// device: DEL_DEV would wait for it). The io-wq worker running the command is signalled,
    /// which ends the driver's interruptible waits. True if the command has ended.
    fn cancel(&mut self, user_data: u64) -> bool {
        let cancel = Sqe128::cancel(user_data, self.next_user_data);
        self.next_user_data = self.next_user_data.wrapping_add(1);
        // SAFETY: a cancel request points at no memory.
        if unsafe { self.ring.push(&cancel) }.is_err() {
            return false;
        }
        let deadline = sys::monotonic_now().saturating_add(CANCEL_GRACE);
        self.wait_for(user_data, deadline).is_ok()
    }

    fn simple(&mut self, cmd: CtrlCmd, dev_id: u32, data: u64) -> Result<i32, CtrlError> {
        let header = UblksrvCtrlCmd {
            queue_id: UBLK_CTRL_NO_QUEUE,
            data: [data],
            ..Default::default()
        };
        self.execute(cmd, Some(dev_id), header, Buffer::None, self.timeout)
    }

    fn with_buffer<T: Pod>(
        &mut self,
        cmd: CtrlCmd,
        dev_id: Option<u32>,
        value: &mut T,
    ) -> Result<i32, CtrlError> {
        let header = UblksrvCtrlCmd {
            queue_id: UBLK_CTRL_NO_QUEUE,
            ..Default::default()
        };
        self.execute(
            cmd,
            dev_id,
            header,
            Buffer::InOut(value.as_bytes_mut()),
            self.timeout,
        )
    }

    /// GET_FEATURES: the `UBLK_F_*` bits the driver supports.
    pub fn get_features(&mut self) -> Result<Features, CtrlError> {
        let mut bits = 0u64;
        const _: () = assert!(core::mem::size_of::<u64>() == UBLK_FEATURES_LEN as usize);
        self.with_buffer(CtrlCmd::GetFeatures, None, &mut bits)?;
        Ok(Features::from_bits_retain(bits))
    }

    /// ADD_DEV: creates `/dev/ublkc<id>` (`id`: `None` lets the driver choose). `info` says
    /// what the server asks for (`nr_hw_queues`, `queue_depth`, `max_io_buf_bytes`, `flags`,
    /// `ublksrv_flags`); the result is what the driver granted, with the device's id.
    pub fn add_dev(
        &mut self,
        id: Option<u32>,
        info: &UblksrvCtrlDevInfo,
    ) -> Result<UblksrvCtrlDevInfo, CtrlError> {
        let mut granted = *info;
        // The driver insists that the info's id matches the header's.
        granted.dev_id = id.unwrap_or(UBLK_DEV_ID_ANY);
        self.with_buffer(CtrlCmd::AddDev, id, &mut granted)?;
        check_info(&granted, id, Some(info)).map_err(|why| CtrlError {
            cmd: CtrlCmd::AddDev,
            dev_id: id,
            kind: CtrlErrorKind::BadAnswer(why),
        })?;
        Ok(granted)
    }

    /// DEL_DEV: removes the device and waits until its id is free again. Close the device's
    /// `/dev/ublkcN` descriptors first, or this waits for them (and times out).
    pub fn del_dev(&mut self, id: u32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::DelDev, id, 0).map(drop)
    }

    /// DEL_DEV_ASYNC: removes the device without waiting for its id to be released.
    pub fn del_dev_async(&mut self, id: u32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::DelDevAsync, id, 0).map(drop)
    }

    /// START_DEV: creates `/dev/ublkb<id>`, served by process `server_pid`. The driver waits
    /// until every queue has fetched every tag, so queues must run (on other threads) first.
    pub fn start_dev(&mut self, id: u32, server_pid: i32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::StartDev, id, server_pid as u64)
            .map(drop)
    }

    /// STOP_DEV: removes `/dev/ublkb<id>`; the queues' commands complete with ABORT.
    pub fn stop_dev(&mut self, id: u32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::StopDev, id, 0).map(drop)
    }

    /// TRY_STOP_DEV: as STOP_DEV, but fails with `EBUSY` while the block device is open.
    pub fn try_stop_dev(&mut self, id: u32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::TryStopDev, id, 0).map(drop)
    }

    /// SET_PARAMS: sets the device's parameters (before START_DEV). `params.len` is set here.
    pub fn set_params(&mut self, id: u32, params: &UblkParams) -> Result<(), CtrlError> {
        let mut params = *params;
        params.len = UblkParams::SIZE;
        self.with_buffer(CtrlCmd::SetParams, Some(id), &mut params)
            .map(drop)
    }

    /// GET_PARAMS: the device's parameters, with its device numbers (`devt`) filled in.
    pub fn get_params(&mut self, id: u32) -> Result<UblkParams, CtrlError> {
        let mut params = UblkParams::new();
        self.with_buffer(CtrlCmd::GetParams, Some(id), &mut params)?;
        Ok(params)
    }

    /// GET_DEV_INFO: the device's info and state.
    pub fn get_dev_info(&mut self, id: u32) -> Result<UblksrvCtrlDevInfo, CtrlError> {
        let mut info = UblksrvCtrlDevInfo::default();
        self.with_buffer(CtrlCmd::GetDevInfo, Some(id), &mut info)?;
        self.checked_info(CtrlCmd::GetDevInfo, id, info)
    }

    /// GET_DEV_INFO2: as GET_DEV_INFO, passing the char device path `/dev/ublkc<id>` the driver
    /// checks permissions against (it must exist there).
    pub fn get_dev_info2(&mut self, id: u32) -> Result<UblksrvCtrlDevInfo, CtrlError> {
        let path = CharDevPath::new(id);
        let mut info = UblksrvCtrlDevInfo::default();
        let header = UblksrvCtrlCmd {
            queue_id: UBLK_CTRL_NO_QUEUE,
            ..Default::default()
        };
        let buffer = Buffer::PathThen {
            prefix: path.as_bytes(),
            out: info.as_bytes_mut(),
        };
        self.execute(CtrlCmd::GetDevInfo2, Some(id), header, buffer, self.timeout)?;
        self.checked_info(CtrlCmd::GetDevInfo2, id, info)
    }

    fn checked_info(
        &self,
        cmd: CtrlCmd,
        id: u32,
        info: UblksrvCtrlDevInfo,
    ) -> Result<UblksrvCtrlDevInfo, CtrlError> {
        check_info(&info, Some(id), None).map_err(|why| CtrlError {
            cmd,
            dev_id: Some(id),
            kind: CtrlErrorKind::BadAnswer(why),
        })?;
        Ok(info)
    }

    /// GET_QUEUE_AFFINITY: the CPUs whose I/O queue `queue` serves.
    pub fn get_queue_affinity(&mut self, id: u32, queue: u16) -> Result<CpuMask, CtrlError> {
        let mut mask = CpuMask {
            words: [0; CpuMask::WORDS],
        };
        let header = UblksrvCtrlCmd {
            queue_id: UBLK_CTRL_NO_QUEUE,
            data: [u64::from(queue)],
            ..Default::default()
        };
        self.execute(
            CtrlCmd::GetQueueAffinity,
            Some(id),
            header,
            Buffer::InOut(mask.words.as_bytes_mut()),
            self.timeout,
        )?;
        Ok(mask)
    }

    /// START_USER_RECOVERY: a new server starts re-attaching to a quiesced (or FAIL_IO) device.
    pub fn start_user_recovery(&mut self, id: u32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::StartUserRecovery, id, 0).map(drop)
    }

    /// END_USER_RECOVERY: the new server `server_pid` has fetched every tag; the device goes
    /// live again.
    pub fn end_user_recovery(&mut self, id: u32, server_pid: i32) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::EndUserRecovery, id, server_pid as u64)
            .map(drop)
    }

    /// UPDATE_SIZE: resizes a started device to `sectors` 512-byte sectors.
    pub fn update_size(&mut self, id: u32, sectors: u64) -> Result<(), CtrlError> {
        self.simple(CtrlCmd::UpdateSize, id, sectors).map(drop)
    }

    /// QUIESCE_DEV: quiesces a live device created with `QUIESCE`, waiting in the kernel up to
    /// `kernel_wait` for in-flight I/O (zero would mean forever, so it is refused here with
    /// `EINVAL`: every wait stays bounded). Our own wait is that plus the usual timeout.
    pub fn quiesce_dev(&mut self, id: u32, kernel_wait: Duration) -> Result<(), CtrlError> {
        let ms = u64::try_from(kernel_wait.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return Err(CtrlError {
                cmd: CtrlCmd::QuiesceDev,
                dev_id: Some(id),
                kind: CtrlErrorKind::Kernel(Errno::EINVAL),
            });
        }
        let header = UblksrvCtrlCmd {
            queue_id: UBLK_CTRL_NO_QUEUE,
            data: [ms],
            ..Default::default()
        };
        let timeout = self.timeout.saturating_add(kernel_wait);
        self.execute(CtrlCmd::QuiesceDev, Some(id), header, Buffer::None, timeout)
            .map(drop)
    }
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn char_dev_path_has_digits_and_nul() {
        assert_eq!(CharDevPath::new(0).as_bytes(), b"/dev/ublkc0\0");
        assert_eq!(CharDevPath::new(1048575).as_bytes(), b"/dev/ublkc1048575\0");
        assert_eq!(
            CharDevPath::new(u32::MAX).as_bytes(),
            b"/dev/ublkc4294967295\0"
        );
    }

    #[test]
    fn errors_name_command_device_and_cause() {
        let e = CtrlError {
            cmd: CtrlCmd::AddDev,
            dev_id: Some(3),
            kind: CtrlErrorKind::Kernel(Errno::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            "ADD_DEV for device 3: EEXIST (device id in use)"
        );
        let e = CtrlError {
            cmd: CtrlCmd::GetFeatures,
            dev_id: None,
            kind: CtrlErrorKind::Kernel(Errno::EFAULT),
        };
        assert_eq!(e.to_string(), "GET_FEATURES: EFAULT (bad address)");
        let e = CtrlError {
            cmd: CtrlCmd::StartDev,
            dev_id: Some(0),
            kind: CtrlErrorKind::TimedOut {
                waited: Duration::from_millis(2500),
                cancelled: true,
            },
        };
        assert_eq!(
            e.to_string(),
            "START_DEV for device 0: no answer within 2.500s (cancelled)"
        );
        assert!(e.is_timeout());
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn answers_the_driver_cannot_give_are_refused() {
        let good = UblksrvCtrlDevInfo {
            dev_id: 3,
            nr_hw_queues: 2,
            queue_depth: 64,
            ..Default::default()
        };
        assert_eq!(check_info(&good, Some(3), None), Ok(()));
        assert_eq!(check_info(&good, None, Some(&good)), Ok(()));
        let bad = [
            (
                UblksrvCtrlDevInfo { dev_id: 4, ..good },
                "another device's id",
            ),
            (
                UblksrvCtrlDevInfo {
                    dev_id: UBLK_DEV_ID_ANY,
                    ..good
                },
                "another device's id",
            ),
            // What a descriptor that completes every command with 0 leaves: zeroes.
            (
                UblksrvCtrlDevInfo {
                    dev_id: 3,
                    ..Default::default()
                },
                "a queue count",
            ),
            (
                UblksrvCtrlDevInfo {
                    queue_depth: 4097,
                    ..good
                },
                "a queue depth",
            ),
        ];
        for (info, want) in bad {
            let why = check_info(&info, Some(3), None).unwrap_err();
            assert!(why.starts_with(want), "{why}");
        }
        let asked = UblksrvCtrlDevInfo {
            nr_hw_queues: 1,
            ..good
        };
        assert_eq!(
            check_info(&good, Some(3), Some(&asked)),
            Err("more queues or tags than asked for")
        );
        let e = CtrlError {
            cmd: CtrlCmd::GetDevInfo,
            dev_id: Some(0),
            kind: CtrlErrorKind::BadAnswer("a queue count outside 1..=4096"),
        };
        assert_eq!(
            e.to_string(),
            "GET_DEV_INFO for device 0: the answer is not the ublk driver's (a queue count outside 1..=4096)"
        );
    }

    #[test]
    fn cpumask_reads_kernel_bit_order() {
        let mut mask = CpuMask {
            words: [0; CpuMask::WORDS],
        };
        mask.words[0] = 0b1010;
        mask.words[1] = 1;
        assert!(mask.contains(1) && mask.contains(3) && mask.contains(64));
        assert!(!mask.contains(0) && !mask.contains(CpuMask::MAX_CPUS));
        assert_eq!(mask.count(), 3);
        assert_eq!(mask.cpus().collect::<std::vec::Vec<_>>(), [1, 3, 64]);
    }
}
