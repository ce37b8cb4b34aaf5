//! The three data paths (copy, user copy, zero copy) on every target: data integrity with fio
//! verify and ext4, what a null device's reads return on each, the zero-copy fallback when the
//! driver cannot register a request's pages, a synchronous backend on every path, and the
//! refusals of a path the target or the kernel cannot serve. A path the kernel lacks makes
//! its tests skipped, by the features' names.

use std::io;
use std::os::unix::fs::FileExt;

use ublk::backend::{NullQueue, QueueInfo};
use ublk::{DataPath, Device, DeviceBuilder, Features, Loop, Mem, Null, Properties, Target};

use crate::backends::{Scratch, ext4_round_trip, verify_whole};
use crate::cli::ublk;
use crate::fio::{self, aligned, io_err, open_direct};
use crate::harness::{NotPassed, Test, TestResult, skip};

const MIB: u64 = 1 << 20;

const COPY: Features = DataPath::Copy.flags();
const USER_COPY: Features = DataPath::UserCopy.flags();
const ZERO_COPY: Features = DataPath::ZeroCopy.flags();

macro_rules! tests {
    ($($name:literal needs $needs:expr => $run:expr,)*) => {
        &[$(Test { name: $name, needs: $needs, run: $run },)*]
    };
}

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = tests![
    "data_path::mem_copy_fio_verify_1_queue" needs COPY => || verify(Kind::Mem, DataPath::Copy, 1),
    "data_path::mem_copy_fio_verify_2_queues" needs COPY => || verify(Kind::Mem, DataPath::Copy, 2),
    "data_path::mem_user_copy_fio_verify_1_queue" needs USER_COPY => || verify(Kind::Mem, DataPath::UserCopy, 1),
    "data_path::mem_user_copy_fio_verify_2_queues" needs USER_COPY => || verify(Kind::Mem, DataPath::UserCopy, 2),
    "data_path::mem_zero_copy_fio_verify_1_queue" needs ZERO_COPY => || verify(Kind::Mem, DataPath::ZeroCopy, 1),
    "data_path::mem_zero_copy_fio_verify_2_queues" needs ZERO_COPY => || verify(Kind::Mem, DataPath::ZeroCopy, 2),
    "data_path::loop_copy_fio_verify_1_queue" needs COPY => || verify(Kind::Loop, DataPath::Copy, 1),
    "data_path::loop_copy_fio_verify_2_queues" needs COPY => || verify(Kind::Loop, DataPath::Copy, 2),
    "data_path::loop_user_copy_fio_verify_1_queue" needs USER_COPY => || verify(Kind::Loop, DataPath::UserCopy, 1),
    "data_path::loop_user_copy_fio_verify_2_queues" needs USER_COPY => || verify(Kind::Loop, DataPath::UserCopy, 2),
    "data_path::loop_zero_copy_fio_verify_1_queue" needs ZERO_COPY => || verify(Kind::Loop, DataPath::ZeroCopy, 1),
    "data_path::loop_zero_copy_fio_verify_2_queues" needs ZERO_COPY => || verify(Kind::Loop, DataPath::ZeroCopy, 2),
    "data_path::mem_copy_ext4" needs COPY => || ext4(Kind::Mem, DataPath::Copy),
    "data_path::mem_user_copy_ext4" needs USER_COPY => || ext4(Kind::Mem, DataPath::UserCopy),
    "data_path::mem_zero_copy_ext4" needs ZERO_COPY => || ext4(Kind::Mem, DataPath::ZeroCopy),
    "data_path::loop_copy_ext4" needs COPY => || ext4(Kind::Loop, DataPath::Copy),
    "data_path::loop_user_copy_ext4" needs USER_COPY => || ext4(Kind::Loop, DataPath::UserCopy),
    "data_path::loop_zero_copy_ext4" needs ZERO_COPY => || ext4(Kind::Loop, DataPath::ZeroCopy),
    "data_path::null_copy_reads_zeroes" needs COPY => || null_reads(DataPath::Copy),
    "data_path::null_user_copy_reads_touch_nothing" needs USER_COPY => || null_reads(DataPath::UserCopy),
    "data_path::null_zero_copy_reads_touch_nothing" needs ZERO_COPY => || null_reads(DataPath::ZeroCopy),
    "data_path::null_zero_copy_fio_qd64_without_errors" needs ZERO_COPY => null_zero_copy_fio,
    "data_path::loop_zero_copy_fallback_registers_by_hand" needs ZERO_COPY => || fallback(Kind::Loop),
    "data_path::mem_zero_copy_fallback_registers_by_hand" needs ZERO_COPY => || fallback(Kind::Mem),
    "data_path::backend_user_copy_round_trips_data" needs USER_COPY => || crate::io::backend_round_trips_data(Features::empty(), Some(DataPath::UserCopy)),
    "data_path::backend_zero_copy_round_trips_data" needs ZERO_COPY => || crate::io::backend_round_trips_data(Features::empty(), Some(DataPath::ZeroCopy)),
    "data_path::auto_picks_each_targets_best_path" needs COPY => auto_picks_each_targets_best_path,
    "data_path::paths_a_target_cannot_serve_are_refused" needs COPY => paths_a_target_cannot_serve_are_refused,
    "data_path::paths_the_kernel_lacks_are_refused_by_name" needs COPY => paths_the_kernel_lacks_are_refused_by_name,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Mem,
    Loop,
}

/// A device of `kind` and `size` bytes on `path`, which it must get, with `queues` queues of
/// depth 64; `scratch` holds a loop target's file.
fn device(
    kind: Kind,
    path: DataPath,
    queues: u16,
    size: u64,
    scratch: &Scratch,
    builder: DeviceBuilder,
) -> Result<Device, NotPassed> {
    let builder = builder.queues(queues).depth(64).data_path(path);
    let dev = match kind {
        Kind::Mem => builder.start_target(Mem::new(size)?)?,
        Kind::Loop => {
            let target = Loop::open(scratch.file("disk.img", size)?)?;
            println!(
                "  loop on tmpfs: {}",
                target.buffered_reason().unwrap_or("direct I/O")
            );
            builder.start_target(target)?
        }
    };
    assert_eq!(
        dev.data_path(),
        path,
        "the device runs on the path asked for"
    );
    assert!(
        dev.info().flags().contains(path.flags()),
        "{}",
        dev.info().flags()
    );
    assert_eq!(dev.info().queues(), queues, "the VM has 2 CPUs");
    Ok(dev)
}

/// The counters of a device that served without a fault and, unless `fallback`, without the
/// zero-copy fallback.
fn assert_clean(dev: &Device, fallback: bool) {
    let s = dev.stats();
    assert_eq!((s.errors, s.anomalies, s.buffer_errors), (0, 0, 0), "{s:?}");
    if !fallback {
        assert_eq!(
            s.buffer_fallbacks, 0,
            "every buffer registered by the driver: {s:?}"
        );
    }
}

fn verify(kind: Kind, path: DataPath, queues: u16) -> TestResult {
    let size = 48 * MIB;
    let scratch = Scratch::new("data-path-verify")?;
    let dev = device(kind, path, queues, size, &scratch, Device::builder())?;
    verify_whole(&dev.block_dev_path(), size)?;
    assert_clean(&dev, false);
    dev.stop()?;
    Ok(())
}

fn ext4(kind: Kind, path: DataPath) -> TestResult {
    let scratch = Scratch::new("data-path-ext4")?;
    let dev = device(kind, path, 2, 128 * MIB, &scratch, Device::builder())?;
    ext4_round_trip(&dev.block_dev_path(), &scratch.dir().join("mnt"))?;
    assert_clean(&dev, false);
    dev.stop()?;
    Ok(())
}

/// The zero-copy fallback: every request's automatic registration is made to fail, so each
/// arrives flagged NEED_REG_BUF and is registered by hand. Data must still verify.
fn fallback(kind: Kind) -> TestResult {
    let size = 32 * MIB;
    let scratch = Scratch::new("data-path-fallback")?;
    let builder = Device::builder().force_buffer_fallback(true);
    let dev = device(kind, DataPath::ZeroCopy, 2, size, &scratch, builder)?;
    verify_whole(&dev.block_dev_path(), size)?;
    assert_clean(&dev, true);
    let s = dev.stats();
    // Every READ and WRITE took the fallback (the counters of the last batches may lag).
    assert!(
        s.buffer_fallbacks > 0 && s.buffer_fallbacks + 256 >= s.reads + s.writes,
        "{s:?}"
    );
    println!(
        "  {} of {} requests registered by hand",
        s.buffer_fallbacks,
        s.reads + s.writes
    );
    dev.stop()?;
    Ok(())
}

/// What a null device's reads return: zeroes where the driver copies our (zeroed) buffer,
/// the reader's own bytes, untouched, where nothing is copied (like null_blk).
fn null_reads(path: DataPath) -> TestResult {
    let dev = Device::builder()
        .depth(16)
        .data_path(path)
        .start_target(Null::new(64 * MIB))?;
    assert_eq!(dev.data_path(), path);
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    for (offset, len) in [(0u64, 4096usize), (MIB, 64 << 10), (63 * MIB, 512 << 10)] {
        let buf = aligned(&mut storage, len);
        buf.fill(0xa5);
        file.write_all_at(buf, offset).map_err(io_err("writing"))?;
        buf.fill(0x5a);
        file.read_exact_at(buf, offset).map_err(io_err("reading"))?;
        let want = if path == DataPath::Copy { 0 } else { 0x5a };
        assert!(
            buf.iter().all(|&b| b == want),
            "{path}: a read of {len} bytes at {offset} returns {want:#x} everywhere"
        );
    }
    let s = dev.stats();
    assert!(s.writes >= 3 && s.reads >= 3, "requests counted: {s:?}");
    assert_clean(&dev, false);
    drop(file);
    dev.stop()?;
    Ok(())
}

fn null_zero_copy_fio() -> TestResult {
    let dev = Device::builder()
        .queues(2)
        .data_path(DataPath::ZeroCopy)
        .start_target(Null::new(1 << 30))?;
    for rw in ["randread", "randwrite"] {
        let mut job = fio::job(&dev.block_dev_path(), rw, 64, 2);
        job.arg("--bs=128k");
        let r = fio::run(job)?;
        println!("  {rw} 128k QD64: {} KiB", r.read_kib + r.write_kib);
    }
    assert_clean(&dev, false);
    dev.stop()?;
    Ok(())
}

/// The kernel's features, as GET_FEATURES reports them.
fn kernel_features() -> Result<Features, NotPassed> {
    Ok(ublk::Controller::open()?.features()?)
}

fn auto_picks_each_targets_best_path() -> TestResult {
    let kernel = kernel_features()?;
    let best = |paths: &[DataPath]| {
        paths
            .iter()
            .copied()
            .find(|p| kernel.contains(p.flags()))
            .unwrap_or(DataPath::Copy)
    };
    let scratch = Scratch::new("data-path-auto")?;
    let null = Device::builder().start_target(Null::new(MIB))?;
    let mem = Device::builder().start_target(Mem::new(MIB)?)?;
    let lo = Device::builder().start_target(Loop::open(scratch.file("disk.img", MIB)?)?)?;
    for (name, dev, paths) in [
        ("null", &null, Null::new(MIB).data_paths()),
        ("mem", &mem, Mem::new(MIB)?.data_paths()),
        (
            "loop",
            &lo,
            [DataPath::ZeroCopy, DataPath::Copy, DataPath::UserCopy].as_slice(),
        ),
    ] {
        println!("  {name}: {}", dev.data_path());
        assert_eq!(
            dev.data_path(),
            best(paths),
            "{name} on a kernel with {kernel}"
        );
    }
    if kernel.contains(ZERO_COPY) {
        assert_eq!(
            lo.data_path(),
            DataPath::ZeroCopy,
            "loop zero-copies where it can"
        );
    }
    for dev in [null, mem, lo] {
        dev.stop()?;
    }
    Ok(())
}

/// A target that knows only the copy path (the default of `Target::data_paths`).
struct CopyOnly(Null);

impl Target for CopyOnly {
    type Queue = NullQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<NullQueue> {
        self.0.open_queue(queue)
    }

    fn properties(&self) -> Properties {
        self.0.properties()
    }
}

fn paths_a_target_cannot_serve_are_refused() -> TestResult {
    for path in [DataPath::UserCopy, DataPath::ZeroCopy] {
        let err = Device::builder()
            .data_path(path)
            .start_target(CopyOnly(Null::new(MIB)))
            .map(|d| d.id())
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("invalid data path: the target cannot serve {path}; it serves copy")
        );
    }
    // A copy-only target gets the copy path whatever the kernel has.
    let dev = Device::builder().start_target(CopyOnly(Null::new(MIB)))?;
    assert_eq!(dev.data_path(), DataPath::Copy);
    dev.stop()?;
    // The command line: an unknown path is bad usage, and names the option.
    ublk(&["add", "-t", "null", "--data-path", "fast"])?
        .fails(2, "--data-path: 'fast' is not a data path");
    Ok(())
}

fn paths_the_kernel_lacks_are_refused_by_name() -> TestResult {
    let kernel = kernel_features()?;
    let Some(path) = [DataPath::ZeroCopy, DataPath::UserCopy]
        .into_iter()
        .find(|p| !kernel.contains(p.flags()))
    else {
        return skip("the kernel has every data path, so none can be refused");
    };
    let missing = path.flags() - kernel;
    let err = Device::builder()
        .data_path(path)
        .start_target(Null::new(MIB))
        .map(|d| d.id())
        .expect_err("refused");
    assert!(
        matches!(&err, ublk::Error::Unsupported { missing: m, .. } if *m == missing),
        "{err}"
    );
    let name = missing.names().next().unwrap_or_default();
    assert!(err.to_string().contains(name), "{err}");
    ublk(&["add", "-t", "null", "--data-path", path.name()])?.fails(1, name);
    // Nothing was added (the harness would also fail a test that leaves a device).
    assert!(ublk_tests::ublk_char_device_ids().is_empty());
    Ok(())
}
