//! The I/O path against the real driver: devices that serve I/O, from start to delete.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ublk::backend::{IoContext, Properties, QueueInfo, Reply, Request, Target, TargetQueue};
use ublk::sys::abi::uring::Sqe64;
use ublk::{Backend, Controller, DataPath, Device, DiscardLimits, Error, Features, Null};
use ublk_tests::{ublk_char_device_ids, wait_for_path};

use crate::fio::{
    self, BLKDISCARD, BLKZEROOUT, aligned, failed, io_err, open_direct, range_ioctl, run_example,
    wait_child,
};
use crate::harness::{NotPassed, Test, TestResult};

const MIB: u64 = 1 << 20;

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = &[
    Test {
        name: "io::null_device_appears_with_its_size",
        needs: Features::empty(),
        run: null_device_appears_with_its_size,
    },
    Test {
        name: "io::flush_discard_and_write_zeroes_complete",
        needs: Features::empty(),
        run: flush_discard_and_write_zeroes_complete,
    },
    Test {
        name: "io::fio_1_queue_depth_1",
        needs: Features::empty(),
        run: || fio_matrix(1, 1),
    },
    Test {
        name: "io::fio_1_queue_depth_64",
        needs: Features::empty(),
        run: || fio_matrix(1, 64),
    },
    Test {
        name: "io::fio_1_queue_depth_1024",
        needs: Features::empty(),
        run: || fio_matrix(1, 1024),
    },
    Test {
        name: "io::fio_2_queues_depth_1",
        needs: Features::empty(),
        run: || fio_matrix(2, 1),
    },
    Test {
        name: "io::fio_2_queues_depth_64",
        needs: Features::empty(),
        run: || fio_matrix(2, 64),
    },
    Test {
        name: "io::fio_2_queues_depth_1024",
        needs: Features::empty(),
        run: || fio_matrix(2, 1024),
    },
    Test {
        name: "io::backend_round_trips_data",
        needs: Features::empty(),
        run: || backend_round_trips_data(Features::empty(), None),
    },
    Test {
        name: "io::need_get_data_round_trips_data",
        needs: Features::NEED_GET_DATA,
        run: || backend_round_trips_data(Features::NEED_GET_DATA, None),
    },
    Test {
        name: "io::deferred_completions_through_the_ring",
        needs: Features::empty(),
        run: deferred_completions_through_the_ring,
    },
    Test {
        name: "io::several_devices_in_one_process",
        needs: Features::empty(),
        run: several_devices_in_one_process,
    },
    Test {
        name: "io::stop_while_fio_runs",
        needs: Features::empty(),
        run: stop_while_fio_runs,
    },
    Test {
        name: "io::delete_from_outside_while_fio_runs",
        needs: Features::empty(),
        run: delete_from_outside_while_fio_runs,
    },
    Test {
        name: "io::drop_stops_and_deletes",
        needs: Features::empty(),
        run: drop_stops_and_deletes,
    },
    Test {
        name: "io::bad_settings_add_no_device",
        needs: Features::empty(),
        run: bad_settings_add_no_device,
    },
    Test {
        name: "io::read_only_and_rotational_reach_sysfs",
        needs: Features::empty(),
        run: read_only_and_rotational_reach_sysfs,
    },
    Test {
        name: "io::null_example_serves_and_stops_on_sigterm",
        needs: Features::empty(),
        run: null_example_serves_and_stops_on_sigterm,
    },
    Test {
        name: "io::stop_is_bounded_when_a_backend_blocks",
        needs: Features::empty(),
        run: stop_is_bounded_when_a_backend_blocks,
    },
    Test {
        name: "io::hundred_cycles_leak_no_fd_or_thread",
        needs: Features::empty(),
        run: hundred_cycles_leak_no_fd_or_thread,
    },
];

fn sysfs_u64(dev: &Device, file: &str) -> Result<u64, NotPassed> {
    let path = format!("/sys/block/ublkb{}/{file}", dev.id());
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    text.trim()
        .parse()
        .map_err(|_| failed(format!("{path}: not a number: {text:?}")))
}

fn null_device_appears_with_its_size() -> TestResult {
    let dev = Device::builder()
        .size(256 * MIB)
        .queues(1)
        .depth(64)
        .logical_block_size(4096)
        .start_target(Null::new(256 * MIB))?;
    let path = dev.block_dev_path();
    assert!(
        path.exists(),
        "{} exists once start returns",
        path.display()
    );
    assert_eq!(sysfs_u64(&dev, "size")?, 256 * MIB / 512, "size in sectors");
    assert_eq!(sysfs_u64(&dev, "queue/logical_block_size")?, 4096);
    assert_eq!(sysfs_u64(&dev, "ro")?, 0);
    let id = dev.id();
    dev.stop()?;
    assert!(
        wait_for_path(&path, false, Duration::from_secs(5)),
        "{} is gone after stop",
        path.display()
    );
    assert!(!ublk_char_device_ids().contains(&id), "device {id} deleted");
    Ok(())
}

fn flush_discard_and_write_zeroes_complete() -> TestResult {
    let dev = Device::builder()
        .depth(16)
        .volatile_cache(true)
        .fua(true)
        .discard(DiscardLimits {
            granularity: 4096,
            max_discard_bytes: 64 * MIB,
            max_write_zeroes_bytes: 64 * MIB,
        })
        .start_target(Null::new(64 * MIB))?;
    assert_eq!(
        std::fs::read_to_string(format!("/sys/block/ublkb{}/queue/write_cache", dev.id()))
            .map_err(io_err("write_cache"))?
            .trim(),
        "write back"
    );
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    file.write_all_at(aligned(&mut storage, 4096), 0)
        .map_err(io_err("writing"))?;
    file.sync_all()
        .map_err(|e| failed(format!("fsync (FLUSH): {e}; {:?}", dev.stats())))?;
    range_ioctl(&file, BLKDISCARD, [MIB, 8 * MIB]).map_err(io_err("BLKDISCARD"))?;
    range_ioctl(&file, BLKZEROOUT, [16 * MIB, MIB]).map_err(io_err("BLKZEROOUT"))?;
    let s = dev.stats();
    assert!(s.flushes >= 1, "FLUSH reached the server: {s:?}");
    assert!(s.discards >= 1, "DISCARD reached the server: {s:?}");
    assert!(
        s.write_zeroes >= 1,
        "WRITE_ZEROES reached the server: {s:?}"
    );
    assert_eq!(s.errors, 0);
    drop(file);
    dev.stop()?;
    Ok(())
}

/// fio 4k randread and randwrite at QD1 and QD64 on a null device of `queues` x `depth`.
fn fio_matrix(queues: u16, depth: u16) -> TestResult {
    let dev = Device::builder()
        .queues(queues)
        .depth(depth)
        .start_target(Null::new(1 << 30))?;
    assert_eq!(dev.info().queues(), queues, "the VM has 2 CPUs");
    let path = dev.block_dev_path();
    for rw in ["randread", "randwrite"] {
        for qd in [1, 64] {
            let before = dev.stats();
            let r = fio::run(fio::job(&path, rw, qd, 1))?;
            let after = dev.stats();
            let (fio_ios, served) = if rw == "randread" {
                (r.read_ios, after.reads - before.reads)
            } else {
                (r.write_ios, after.writes - before.writes)
            };
            assert!(
                served >= fio_ios,
                "{rw} QD{qd}: fio did {fio_ios} I/Os, the server saw {served}"
            );
            println!("  {rw} QD{qd}: {fio_ios} I/Os, 0 errors");
        }
    }
    assert!(dev.is_running());
    let s = dev.stats();
    assert_eq!((s.errors, s.anomalies), (0, 0), "{s:?}");
    dev.stop()?;
    Ok(())
}

/// A RAM disk behind the simple `Backend` trait, to check that data makes the round trip.
struct VecDisk(Mutex<Vec<u8>>);

impl Backend for VecDisk {
    fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.0.lock().unwrap();
        let at = offset as usize;
        buf.copy_from_slice(&data[at..at + buf.len()]);
        Ok(())
    }

    fn write(&self, offset: u64, src: &[u8], _fua: bool) -> io::Result<()> {
        let mut data = self.0.lock().unwrap();
        let at = offset as usize;
        data[at..at + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(self.0.lock().unwrap().len() as u64),
            ..Properties::default()
        }
    }
}

/// A `Backend`'s data round trip with extra device `flags`, on `path` (default: auto).
pub(crate) fn backend_round_trips_data(flags: Features, path: Option<DataPath>) -> TestResult {
    let mut builder = Device::builder().queues(2).depth(8).flags(flags);
    if let Some(path) = path {
        builder = builder.data_path(path);
    }
    let dev = builder.start(VecDisk(Mutex::new(vec![0; 16 * MIB as usize])))?;
    assert!(dev.info().flags().contains(flags));
    // A backend prefers the copy path: the others cost it a system call more.
    assert_eq!(dev.data_path(), path.unwrap_or(DataPath::Copy));
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let mut check = Vec::new();
    // Sizes from one sector to past the 512 KiB request limit (split by the block layer).
    for (i, (offset, len)) in [
        (0u64, 512usize),
        (4096, 8192),
        (MIB, 1 << 20),
        (15 * MIB, 4096),
    ]
    .into_iter()
    .enumerate()
    {
        let buf = aligned(&mut storage, len);
        for (j, b) in buf.iter_mut().enumerate() {
            *b = (j as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        file.write_all_at(buf, offset).map_err(io_err("writing"))?;
        let written = buf.to_vec();
        let back = aligned(&mut check, len);
        file.read_exact_at(back, offset)
            .map_err(io_err("reading"))?;
        assert!(
            back == written.as_slice(),
            "{len} bytes at {offset} read back intact"
        );
    }
    drop(file);
    dev.stop()?;
    Ok(())
}

/// A target that answers every request later: it queues a NOP on the queue's ring and answers
/// when the NOP completes, the way a file-backed target answers after its own read.
struct Deferred;

struct DeferredQueue {
    deferred: u64,
}

impl Target for Deferred {
    type Queue = DeferredQueue;

    fn open_queue(&self, _queue: &QueueInfo) -> io::Result<DeferredQueue> {
        Ok(DeferredQueue { deferred: 0 })
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(64 * MIB),
            ..Properties::default()
        }
    }
}

impl TargetQueue for DeferredQueue {
    fn serve(&mut self, req: &Request, io: &mut IoContext<'_, '_>) -> Reply {
        if let Some(buf) = io.buffer(req.tag) {
            // Reads return the tag's low byte, so the test sees the buffer made the trip.
            if req.op == ublk::sys::IoOp::Read {
                buf[..req.len as usize].fill(0x42);
            }
        }
        let cookie = req.full_result() as u32;
        // SAFETY: a NOP points at no memory.
        match unsafe { io.push(Sqe64::nop(0), req.tag, cookie) } {
            Ok(()) => {
                self.deferred += 1;
                Reply::Later
            }
            Err(_) => Reply::Done(-libc::EIO),
        }
    }

    fn op_done(&mut self, tag: u16, cookie: u32, result: i32, io: &mut IoContext<'_, '_>) {
        io.complete(tag, if result < 0 { result } else { cookie as i32 });
    }
}

fn deferred_completions_through_the_ring() -> TestResult {
    let dev = Device::builder()
        .queues(2)
        .depth(32)
        .start_target(Deferred)?;
    let path = dev.block_dev_path();
    let file = open_direct(&path).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let buf = aligned(&mut storage, 8192);
    file.read_exact_at(buf, 4096).map_err(io_err("reading"))?;
    assert!(
        buf.iter().all(|&b| b == 0x42),
        "the deferred read's data arrived"
    );
    drop(file);
    fio::run(fio::job(&path, "randrw", 32, 1))?;
    let s = dev.stats();
    assert_eq!((s.errors, s.anomalies), (0, 0), "{s:?}");
    dev.stop()?;
    Ok(())
}

fn several_devices_in_one_process() -> TestResult {
    let devs = (0..3)
        .map(|_| {
            Device::builder()
                .depth(16)
                .start_target(Null::new(32 * MIB))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids: Vec<u32> = devs.iter().map(|d| d.id()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct devices: {ids:?}");
    let mut storage = Vec::new();
    for d in &devs {
        let file = open_direct(&d.block_dev_path()).map_err(io_err("opening"))?;
        file.read_exact_at(aligned(&mut storage, 4096), 0)
            .map_err(io_err("reading"))?;
    }
    for d in devs {
        assert!(d.stats().reads >= 1);
        d.stop()?;
    }
    Ok(())
}

fn start_busy_device() -> Result<(Device, std::process::Child), NotPassed> {
    let dev = Device::builder()
        .queues(2)
        .depth(64)
        .start_target(Null::new(1 << 30))?;
    let fio = fio::spawn(fio::job(&dev.block_dev_path(), "randrw", 64, 60))?;
    // Let fio get going: the server is then answering I/O when the device goes away.
    let t0 = Instant::now();
    while dev.stats().reads < 1000 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dev.stats().reads >= 1000,
        "fio is running: {:?}",
        dev.stats()
    );
    Ok((dev, fio))
}

fn stop_while_fio_runs() -> TestResult {
    let (dev, mut fio) = start_busy_device()?;
    let t0 = Instant::now();
    dev.stop()?;
    let stop_took = t0.elapsed();
    let code = wait_child(&mut fio, Duration::from_secs(30))?;
    assert_ne!(code, 0, "fio saw errors once the device was gone");
    assert!(
        stop_took < Duration::from_secs(30),
        "stop took {stop_took:?}"
    );
    println!("  stop took {stop_took:?}; fio exited with {code}");
    Ok(())
}

fn delete_from_outside_while_fio_runs() -> TestResult {
    let (dev, mut fio) = start_busy_device()?;
    let id = dev.id();
    let t0 = Instant::now();
    // Another handle, as `ublk del` in another process would: DEL_DEV completes only once the
    // server noticed and closed the device.
    Controller::open()?.delete(id)?;
    let del_took = t0.elapsed();
    let t1 = Instant::now();
    while dev.is_running() && t1.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!dev.is_running(), "the server noticed the deletion");
    // Someone else creates a device right away and gets the freed id: stopping the old
    // handle must leave that device alone.
    let mut ctl = Controller::open()?;
    let other = ctl.add(&ublk::NewDevice {
        id: Some(id),
        ..Default::default()
    })?;
    dev.stop()?; // the device is gone already: not an error
    assert!(
        ublk_char_device_ids().contains(&other.id()),
        "the new device {id} survived the old handle's stop"
    );
    ctl.delete(other.id())?;
    let code = wait_child(&mut fio, Duration::from_secs(30))?;
    assert_ne!(code, 0, "fio saw errors once the device was gone");
    assert!(!ublk_char_device_ids().contains(&id));
    println!("  DEL_DEV took {del_took:?}; fio exited with {code}");
    Ok(())
}

fn drop_stops_and_deletes() -> TestResult {
    let dev = Device::builder().start_target(Null::new(16 * MIB))?;
    let (id, path) = (dev.id(), dev.block_dev_path());
    drop(dev);
    assert!(
        !ublk_char_device_ids().contains(&id),
        "device {id} deleted on drop"
    );
    assert!(wait_for_path(&path, false, Duration::from_secs(5)));
    Ok(())
}

fn bad_settings_add_no_device() -> TestResult {
    let before = ublk_char_device_ids();
    let cases: [(ublk::DeviceBuilder, &str); 5] = [
        (Device::builder().size(1000), "device size"),
        (Device::builder().depth(0), "queue depth"),
        (
            Device::builder().logical_block_size(1024).size(4096 + 512),
            "device size",
        ),
        (Device::builder().flags(Features::USER_COPY), "flags"),
        (Device::builder().fua(true), "FUA"),
    ];
    for (builder, what) in cases {
        let err = builder.start_target(Null::new(MIB)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument { .. }) && err.to_string().contains(what),
            "expected an invalid {what}, got: {err}"
        );
    }
    // Missing size: a backend without one and no size set.
    let err = Device::builder()
        .start(VecDisk(Mutex::new(Vec::new())))
        .unwrap_err();
    assert!(err.to_string().contains("device size"), "{err}");
    let err = Device::builder()
        .control_path("/nonexistent/ublk-control")
        .start_target(Null::new(MIB))
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/ublk-control"),
        "{err}"
    );
    assert_eq!(ublk_char_device_ids(), before, "no device added");
    Ok(())
}

fn count_entries(dir: &str) -> Result<usize, NotPassed> {
    Ok(std::fs::read_dir(dir).map_err(io_err(dir))?.count())
}

/// The process's mapped address space in KiB (`VmSize` in /proc/self/status). Mapping
/// lines cannot be counted instead: adjacent anonymous mappings merge into one.
fn vm_size_kib() -> Result<u64, NotPassed> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(io_err("/proc/self/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| failed("no VmSize in /proc/self/status"))
}

fn hundred_cycles_leak_no_fd_or_thread() -> TestResult {
    // One cycle first, so lazily created process state (none expected) is not counted.
    Device::builder()
        .queues(2)
        .depth(16)
        .start_target(Null::new(16 * MIB))?
        .stop()?;
    let fds = count_entries("/proc/self/fd")?;
    let threads = count_entries("/proc/self/task")?;
    let vm = vm_size_kib()?;
    let t0 = Instant::now();
    for i in 0..100 {
        let dev = Device::builder()
            .queues(2)
            .depth(16)
            .start_target(Null::new(16 * MIB))
            .map_err(|e| failed(format!("cycle {i}: {e}")))?;
        if i % 10 == 0 {
            let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening"))?;
            let mut storage = Vec::new();
            file.read_exact_at(aligned(&mut storage, 4096), 0)
                .map_err(io_err("reading"))?;
        }
        dev.stop().map_err(|e| failed(format!("cycle {i}: {e}")))?;
    }
    assert_eq!(
        count_entries("/proc/self/fd")?,
        fds,
        "open fds after 100 cycles"
    );
    // A joined thread's task can stay listed for a moment: the kernel wakes the joiner
    // (clearing the thread id) before it removes the task. A leaked thread stays for good.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut threads_after = count_entries("/proc/self/task")?;
    while threads_after != threads && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        threads_after = count_entries("/proc/self/task")?;
    }
    assert_eq!(threads_after, threads, "threads after 100 cycles");
    // A queue that leaked its buffers would leave 8 MiB (16 tags x 512 KiB) mapped per
    // queue per cycle: 1.6 GiB over 100 cycles. The allocator may keep a little more.
    let vm_after = vm_size_kib()?;
    assert!(
        vm_after <= vm + 32 * 1024,
        "address space: {vm} KiB before, {vm_after} KiB after"
    );
    println!("  address space: {vm} KiB before, {vm_after} KiB after");
    assert!(ublk_char_device_ids().is_empty());
    println!("  100 cycles in {:?}", t0.elapsed());
    Ok(())
}

fn read_only_and_rotational_reach_sysfs() -> TestResult {
    let dev = Device::builder()
        .read_only(true)
        .rotational(true)
        .physical_block_size(4096)
        .start_target(Null::new(16 * MIB))?;
    assert_eq!(sysfs_u64(&dev, "ro")?, 1);
    assert_eq!(sysfs_u64(&dev, "queue/rotational")?, 1);
    assert_eq!(sysfs_u64(&dev, "queue/physical_block_size")?, 4096);
    assert_eq!(sysfs_u64(&dev, "queue/logical_block_size")?, 512);
    // Refused at open or at the write, depending on the kernel; never reaching the server.
    let mut storage = Vec::new();
    let write = open_direct(&dev.block_dev_path())
        .and_then(|f| f.write_all_at(aligned(&mut storage, 4096), 0));
    assert!(write.is_err(), "a write to a read-only device fails");
    assert_eq!(dev.stats().writes, 0, "no write reached the server");
    dev.stop()?;
    Ok(())
}

/// The example binary (`examples/null.rs`, in the guest's PATH) as a user runs it: it serves
/// until SIGTERM, then stops and deletes its device and exits 0.
fn null_example_serves_and_stops_on_sigterm() -> TestResult {
    run_example(
        "null",
        &["--size", "64M", "--queues", "2", "--depth", "32"],
        |dev| fio::run(fio::job(dev, "randread", 16, 1)).map(|_| ()),
    )
}

/// A backend whose reads block, once armed, until released: a target that hangs.
struct Blocks(std::sync::Arc<Gate>);

/// When [`Blocks`] blocks, and what lets it go.
struct Gate {
    armed: std::sync::atomic::AtomicBool,
    entered: std::sync::mpsc::SyncSender<()>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Backend for Blocks {
    fn read(&self, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
        // Not before it is armed: START_DEV waits for the partition table's read.
        if !self.0.armed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let _ = self.0.entered.try_send(());
        // Bounded, so a broken test cannot hang the suite: far longer than stop may take.
        let release = self.0.release.lock().unwrap_or_else(|p| p.into_inner());
        let _ = release.recv_timeout(Duration::from_secs(120));
        Ok(())
    }

    fn write(&self, _offset: u64, _data: &[u8], _fua: bool) -> io::Result<()> {
        Ok(())
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(64 * MIB),
            ..Properties::default()
        }
    }
}

/// Defect 9 of issue 18: `Device::stop` joined the queue threads without a bound, so a
/// backend that blocks hung `stop`, `Drop` and a server's SIGTERM. Now each control command
/// is bounded by the command timeout and the queue threads' end by the same again: a queue
/// still blocked is left running (and said so), and the device is deleted once it lets go.
fn stop_is_bounded_when_a_backend_blocks() -> TestResult {
    let timeout = Duration::from_secs(3);
    let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
    let (release, release_rx) = std::sync::mpsc::channel();
    let gate = std::sync::Arc::new(Gate {
        armed: false.into(),
        entered: entered_tx,
        release: Mutex::new(release_rx),
    });
    let dev = Device::builder()
        .command_timeout(timeout)
        .start(Blocks(std::sync::Arc::clone(&gate)))?;
    gate.armed.store(true, std::sync::atomic::Ordering::Release);
    let id = dev.id();
    let path = dev.block_dev_path();
    // A read the backend never answers, from another thread.
    let reader = std::thread::spawn(move || -> io::Result<()> {
        let f = open_direct(&path)?;
        let mut storage = Vec::new();
        f.read_exact_at(aligned(&mut storage, 4096), 0)
    });
    entered
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| failed("the read never reached the backend"))?;
    let started = Instant::now();
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(dev.stop());
    });
    // STOP_DEV, the queues' end and DEL_DEV, each bounded by the timeout, and some slack.
    let bound = timeout * 3 + Duration::from_secs(10);
    let stopped = done.recv_timeout(bound);
    // Whatever happened, let the backend go (this read and any the kernel sends after it),
    // so the device can end.
    gate.armed
        .store(false, std::sync::atomic::Ordering::Release);
    let _ = release.send(());
    let stopped = stopped.map_err(|_| {
        failed(format!(
            "stop did not return within {bound:?} while a backend blocks"
        ))
    })?;
    let took = started.elapsed();
    let err = stopped.expect_err("a queue that does not end is an error");
    assert!(
        err.to_string()
            .contains("queue 0: the queue thread did not end within 3 s"),
        "stop says which queue did not end: {err}"
    );
    assert!(took < bound, "stop took {took:?}");
    let _ = reader.join();
    // Once the backend let go, the queue ends and the device is deleted (DEL_DEV_ASYNC), or
    // at least stopped; clean up what is left.
    let gone = wait_for(Duration::from_secs(30), || {
        !ublk_char_device_ids().contains(&id)
    });
    if !gone {
        let mut ctl = Controller::open()?;
        let _ = ctl.stop(id);
        ctl.delete(id)?;
    }
    Ok(())
}

/// Waits up to `limit` for `done`.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}
