//! The memory and loop targets against the real driver: data integrity (fio verify, ext4),
//! the backing file's contents, holes, read-only devices and bad input.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ublk::sys::testing::Prng;
use ublk::{Device, Features, Loop, Mem};
use ublk_tests::{ublk_char_device_ids, wait_for_path};

use crate::fio::{
    self, BLKDISCARD, BLKZEROOUT, FioResult, aligned, failed, io_err, open_direct, range_ioctl,
    run_example, write_read_back,
};
use crate::harness::{NotPassed, Test, TestResult};

const MIB: u64 = 1 << 20;

macro_rules! tests {
    ($($name:literal => $run:expr,)*) => {
        &[$(Test { name: $name, needs: Features::empty(), run: $run },)*]
    };
}

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = tests![
    "backends::loop_buffered_fio_verify" => loop_buffered_fio_verify,
    "backends::loop_on_a_block_device_takes_its_block_size" => loop_on_a_block_device,
    "backends::loop_on_ext4_uses_direct_io" => loop_on_ext4_uses_direct_io,
    "backends::loop_ext4_files_survive_a_new_device" => loop_ext4_files_survive_a_new_device,
    "backends::loop_writes_reach_the_backing_file" => loop_writes_reach_the_backing_file,
    "backends::loop_discard_punches_holes" => loop_discard_punches_holes,
    "backends::mem_discard_gives_memory_back" => mem_discard_gives_memory_back,
    "backends::loop_reports_cache_fua_and_discard" => loop_reports_cache_fua_and_discard,
    "backends::read_only_devices_refuse_writes" => read_only_devices_refuse_writes,
    "backends::bad_backing_files_add_no_device" => bad_backing_files_add_no_device,
    "backends::ramdisk_and_loop_examples_serve_and_stop" => examples_serve_and_stop,
];

// --- helpers ---------------------------------------------------------------------------------

/// A directory under /tmp (tmpfs in the VM), removed with what is in it on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Result<Scratch, NotPassed> {
        let dir = std::env::temp_dir().join(format!("ublk-e2e-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err("creating a scratch directory"))?;
        Ok(Scratch(dir))
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.0
    }

    /// A sparse file of `len` bytes.
    pub(crate) fn file(&self, name: &str, len: u64) -> Result<PathBuf, NotPassed> {
        let path = self.0.join(name);
        File::create(&path)
            .and_then(|f| f.set_len(len))
            .map_err(io_err("creating a backing file"))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a program; its output, or a failure with it.
pub(crate) fn sh(program: &str, args: &[&str]) -> Result<String, NotPassed> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(io_err(program))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(failed(format!(
            "{program} {} failed ({}): {text}",
            args.join(" "),
            out.status
        )));
    }
    Ok(text)
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A file system mounted for the life of this value.
pub(crate) struct Mounted(PathBuf);

impl Mounted {
    pub(crate) fn new(dev: &Path, dir: &Path) -> Result<Mounted, NotPassed> {
        std::fs::create_dir_all(dir).map_err(io_err("creating a mount point"))?;
        sh("mount", &["-t", "ext4", path_str(dev), path_str(dir)])?;
        Ok(Mounted(dir.to_path_buf()))
    }

    pub(crate) fn unmount(self) -> Result<(), NotPassed> {
        let dir = self.0.clone();
        std::mem::forget(self);
        sh("umount", &[path_str(&dir)]).map(|_| ())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A memory-backed null_blk disk made through configfs (a block device to put things on,
/// with the block size asked for), removed on drop.
struct NullBlk {
    config: PathBuf,
    dev: PathBuf,
}

impl NullBlk {
    fn new(name: &str, size_mib: u64, block_size: u32) -> Result<NullBlk, NotPassed> {
        let config = PathBuf::from("/sys/kernel/config/nullb").join(name);
        if !config.parent().is_some_and(|p| p.exists()) {
            return Err(failed(
                "no /sys/kernel/config/nullb (null_blk and configfs are loaded by the VM)",
            ));
        }
        std::fs::create_dir(&config).map_err(io_err("creating a null_blk device"))?;
        let mut disk = NullBlk {
            config,
            dev: PathBuf::new(),
        };
        for (attr, value) in [
            ("size", size_mib.to_string()),
            ("blocksize", block_size.to_string()),
            ("memory_backed", "1".into()),
            ("power", "1".into()),
        ] {
            std::fs::write(disk.config.join(attr), value)
                .map_err(io_err("configuring null_blk"))?;
        }
        // Newer kernels name the disk after the configfs directory, older ones by index.
        let index = std::fs::read_to_string(disk.config.join("index")).unwrap_or_default();
        disk.dev = [
            PathBuf::from("/dev").join(name),
            PathBuf::from(format!("/dev/nullb{}", index.trim())),
        ]
        .into_iter()
        .find(|p| wait_for_path(p, true, Duration::from_secs(2)))
        .ok_or_else(|| failed(format!("null_blk {name}: no /dev node appeared")))?;
        Ok(disk)
    }
}

impl Drop for NullBlk {
    fn drop(&mut self) {
        let _ = std::fs::write(self.config.join("power"), "0");
        let _ = std::fs::remove_dir(&self.config);
    }
}

/// `len` bytes of the seeded stream `seed`, so that data can be made again to check it.
pub(crate) fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    Prng::new(seed).fill_bytes(&mut v);
    v
}

/// A tree of files with contents made from their index: written, then checked byte by byte.
const TREE_FILES: u64 = 40;

fn tree_file(root: &Path, i: u64) -> (PathBuf, Vec<u8>) {
    let mut rng = Prng::new(i);
    // Mostly small files, some across many blocks, one of several MiB.
    let len = match i {
        0 => 0,
        7 => 3 * MIB as usize + 123,
        _ => (rng.next_u64() % (300 << 10)) as usize,
    };
    let path = root.join(format!("d{}/s{}/f{i}.bin", i % 4, i % 3));
    (path, random_bytes(rng.next_u64(), len))
}

pub(crate) fn write_tree(root: &Path) -> Result<(), NotPassed> {
    for i in 0..TREE_FILES {
        let (path, data) = tree_file(root, i);
        std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io_err("mkdir"))?;
        let f = File::create(&path).map_err(io_err("creating a file"))?;
        f.write_all_at(&data, 0).map_err(io_err("writing a file"))?;
        f.sync_all().map_err(io_err("fsync of a file"))?;
    }
    Ok(())
}

pub(crate) fn check_tree(root: &Path) -> Result<(), NotPassed> {
    for i in 0..TREE_FILES {
        let (path, want) = tree_file(root, i);
        let got = std::fs::read(&path).map_err(io_err(path_str(&path)))?;
        if got != want {
            return Err(failed(format!(
                "{}: {} bytes read back differ from the {} written",
                path.display(),
                got.len(),
                want.len()
            )));
        }
    }
    Ok(())
}

/// mkfs.ext4, mount, write the tree, unmount, e2fsck -fn, mount again and check the tree.
pub(crate) fn ext4_round_trip(dev: &Path, mnt: &Path) -> Result<(), NotPassed> {
    sh("mkfs.ext4", &["-q", "-F", path_str(dev)])?;
    let m = Mounted::new(dev, mnt)?;
    write_tree(mnt)?;
    m.unmount()?;
    sh("e2fsck", &["-fn", path_str(dev)])?;
    let m = Mounted::new(dev, mnt)?;
    check_tree(mnt)?;
    m.unmount()
}

/// fio writes `size` bytes at random offsets in mixed block sizes (4 KiB to 1 MiB), each
/// block with a crc32c header, then reads every block back and checks it.
fn fio_verify_run(dev: &Path, iodepth: u32, size: u64) -> Result<FioResult, NotPassed> {
    fio::run(fio_verify_cmd(dev, iodepth, size)).map_err(|e| match e {
        NotPassed::Failed(why) => failed(format!("verify at QD{iodepth}: {why}")),
        other => other,
    })
}

/// The fio command of [`fio_verify_run`].
pub(crate) fn fio_verify_cmd(dev: &Path, iodepth: u32, size: u64) -> Command {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=verify",
        "--ioengine=io_uring",
        "--direct=1",
        "--rw=randwrite",
        "--bssplit=4k/40:16k/20:64k/20:256k/10:1m/10",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--output-format=terse",
        "--terse-version=3",
    ])
    .arg(format!("--filename={}", dev.display()))
    .arg(format!("--iodepth={iodepth}"))
    .arg(format!("--size={size}"))
    .stdin(std::process::Stdio::null());
    cmd
}

/// Both fio verify runs (QD1, QD64) over the whole of block device `dev`, of `size` bytes.
pub(crate) fn verify_whole(dev: &Path, size: u64) -> TestResult {
    for qd in [1, 64] {
        let v = fio_verify_run(dev, qd, size)?;
        assert_eq!(
            v.write_kib,
            size >> 10,
            "{}, QD{qd}: fio wrote the whole device",
            dev.display()
        );
        assert_eq!(
            v.read_kib,
            size >> 10,
            "{}, QD{qd}: fio read it all back to verify",
            dev.display()
        );
        println!("  QD{qd}: {} KiB written and verified", v.write_kib);
    }
    Ok(())
}

/// [`verify_whole`] on a device of this process, which must then count no error.
fn verify_device(dev: &Device, size: u64) -> TestResult {
    verify_whole(&dev.block_dev_path(), size)?;
    let s = dev.stats();
    assert_eq!((s.errors, s.anomalies), (0, 0), "{s:?}");
    Ok(())
}

// --- the tests -------------------------------------------------------------------------------

/// Buffered I/O (the page cache) on each data path the device gets by default; the data
/// paths themselves, with direct I/O, are data_path.rs's.
fn loop_buffered_fio_verify() -> TestResult {
    let size = 48 * MIB;
    let scratch = Scratch::new("verify")?;
    let target = Loop::options(scratch.file("disk.img", size)?)
        .buffered(true)
        .open()?;
    let dev = Device::builder().queues(2).depth(64).start_target(target)?;
    println!("  data path {}", dev.data_path());
    verify_device(&dev, size)?;
    dev.stop()?;
    Ok(())
}

fn loop_on_a_block_device() -> TestResult {
    let disk = NullBlk::new("ublke2e4k", 64, 4096)?;
    let target = Loop::open(&disk.dev)?;
    assert!(target.is_block_device());
    assert_eq!(target.size(), 64 * MIB);
    assert_eq!(target.logical_block_size(), 4096, "the backing disk's");
    assert!(target.is_direct(), "{:?}", target.buffered_reason());
    let dev = Device::builder().queues(2).start_target(target)?;
    let lbs = std::fs::read_to_string(format!(
        "/sys/block/ublkb{}/queue/logical_block_size",
        dev.id()
    ))
    .map_err(io_err("logical_block_size"))?;
    assert_eq!(lbs.trim(), "4096");
    verify_device(&dev, 64 * MIB)?;
    dev.stop()?;
    Ok(())
}

fn loop_on_ext4_uses_direct_io() -> TestResult {
    // A real file system under the backing file: ext4 on a 4 KiB-sector disk.
    let disk = NullBlk::new("ublke2eext4", 160, 4096)?;
    sh("mkfs.ext4", &["-q", "-F", path_str(&disk.dev)])?;
    let scratch = Scratch::new("ext4-host")?;
    let host = Mounted::new(&disk.dev, &scratch.0.join("mnt"))?;
    let image = host.0.join("disk.img");
    File::create(&image)
        .and_then(|f| f.set_len(64 * MIB))
        .map_err(io_err("creating the image"))?;
    let target = Loop::open(&image)?;
    assert!(
        target.is_direct(),
        "ext4 does direct I/O: {:?}",
        target.buffered_reason()
    );
    assert_eq!(
        target.logical_block_size(),
        4096,
        "ext4's direct-I/O alignment"
    );
    // A smaller block size cannot be served with direct I/O: buffered, and it says why.
    let small = Loop::options(&image).logical_block_size(512).open()?;
    let why = small.buffered_reason().unwrap_or_default();
    assert!(why.contains("direct-I/O alignment"), "{why:?}");
    drop(small);
    let dev = Device::builder().queues(2).start_target(target)?;
    verify_device(&dev, 64 * MIB)?;
    dev.stop()?;
    host.unmount()
}

fn loop_ext4_files_survive_a_new_device() -> TestResult {
    let scratch = Scratch::new("loop-ext4")?;
    let image = scratch.file("disk.img", 128 * MIB)?;
    let mnt = scratch.0.join("mnt");
    let dev = Device::builder()
        .queues(2)
        .start_target(Loop::open(&image)?)?;
    ext4_round_trip(&dev.block_dev_path(), &mnt)?;
    let s = dev.stats();
    assert!(
        s.write_zeroes + s.discards > 0,
        "mkfs zeroes or discards: {s:?}"
    );
    assert_eq!(s.errors, 0, "{s:?}");
    dev.stop()?;

    // A new device on the same file finds every file as it was written.
    let dev = Device::builder().start_target(Loop::open(&image)?)?;
    sh("e2fsck", &["-fn", path_str(&dev.block_dev_path())])?;
    let m = Mounted::new(&dev.block_dev_path(), &mnt)?;
    check_tree(&mnt)?;
    m.unmount()?;
    dev.stop()?;
    Ok(())
}

fn loop_writes_reach_the_backing_file() -> TestResult {
    let scratch = Scratch::new("loop-cmp")?;
    let size = 16 * MIB;
    let image = scratch.file("disk.img", size)?;
    let dev = Device::builder()
        .queues(2)
        .start_target(Loop::open(&image)?)?;
    let mut expected = vec![0u8; size as usize];
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let mut rng = Prng::new(42);
    // Writes of 512 bytes to 1 MiB at sector-aligned offsets, some overlapping.
    for _ in 0..200 {
        let len = ((rng.next_u64() % 2048) as usize + 1) * 512;
        let offset = (rng.next_u64() % ((size - len as u64) / 512)) * 512;
        let data = random_bytes(rng.next_u64(), len);
        let buf = aligned(&mut storage, len);
        buf.copy_from_slice(&data);
        file.write_all_at(buf, offset).map_err(io_err("writing"))?;
        expected[offset as usize..offset as usize + len].copy_from_slice(&data);
    }
    file.sync_all().map_err(io_err("fsync (FLUSH)"))?;
    let reference = scratch.0.join("expected.img");
    std::fs::write(&reference, &expected).map_err(io_err("writing the reference"))?;
    // Compared while the device still runs: FLUSH alone must have put the data there.
    sh("cmp", &[path_str(&reference), path_str(&image)])?;
    drop(file);
    assert_eq!(dev.stats().errors, 0);
    dev.stop()?;
    Ok(())
}

fn loop_discard_punches_holes() -> TestResult {
    let scratch = Scratch::new("loop-holes")?;
    let size = 32 * MIB;
    let image = scratch.file("disk.img", size)?;
    let dev = Device::builder().start_target(Loop::open(&image)?)?;
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let ones = aligned(&mut storage, MIB as usize);
    ones.fill(0x5a);
    for i in 0..16 {
        file.write_all_at(ones, i * MIB)
            .map_err(io_err("writing"))?;
    }
    file.sync_all().map_err(io_err("fsync"))?;
    let allocated = |what: &str| -> Result<u64, NotPassed> {
        let blocks = std::fs::metadata(&image).map_err(io_err(what))?.blocks();
        Ok(blocks * 512)
    };
    let full = allocated("stat after writing")?;
    assert!(full >= 16 * MIB, "16 MiB written, {full} bytes allocated");

    range_ioctl(&file, BLKDISCARD, [0, 8 * MIB]).map_err(io_err("BLKDISCARD"))?;
    let after_discard = allocated("stat after discard")?;
    assert!(
        after_discard + 8 * MIB <= full,
        "a discard of 8 MiB frees it: {full} -> {after_discard} bytes allocated"
    );
    // Zeroing (with unmapping allowed) also reads back as zeroes.
    range_ioctl(&file, BLKZEROOUT, [8 * MIB, 4 * MIB]).map_err(io_err("BLKZEROOUT"))?;
    let buf = aligned(&mut storage, 16 * MIB as usize);
    file.read_exact_at(buf, 0).map_err(io_err("reading back"))?;
    let zero_end = 12 * MIB as usize;
    assert!(
        buf[..zero_end].iter().all(|&b| b == 0),
        "discarded and zeroed ranges read zeroes"
    );
    assert!(
        buf[zero_end..].iter().all(|&b| b == 0x5a),
        "the rest is untouched"
    );
    let s = dev.stats();
    assert!(s.discards >= 1 && s.write_zeroes >= 1, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    drop(file);
    dev.stop()?;
    Ok(())
}

/// The machine's shared memory in KiB (`Shmem` in /proc/meminfo): a RAM disk's memfd pages,
/// whether the server touched them through its mapping (user copy) or only the kernel wrote
/// them (zero copy, where they are in no process's resident set).
fn shmem_kib() -> Result<u64, NotPassed> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(io_err("meminfo"))?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| failed("no Shmem in /proc/meminfo"))
}

fn mem_discard_gives_memory_back() -> TestResult {
    let dev = Device::builder().start_target(Mem::new(128 * MIB)?)?;
    let file = open_direct(&dev.block_dev_path()).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let chunk = aligned(&mut storage, MIB as usize);
    chunk.fill(0xa5);
    let before = shmem_kib()?;
    for i in 0..64 {
        file.write_all_at(chunk, i * MIB)
            .map_err(io_err("writing"))?;
    }
    let filled = shmem_kib()?;
    assert!(
        filled >= before + 56 * 1024,
        "64 MiB written: {before} -> {filled} KiB"
    );
    range_ioctl(&file, BLKDISCARD, [0, 64 * MIB]).map_err(io_err("BLKDISCARD"))?;
    let after = shmem_kib()?;
    assert!(
        after + 56 * 1024 <= filled,
        "discarded: {filled} -> {after} KiB"
    );
    let buf = aligned(&mut storage, MIB as usize);
    file.read_exact_at(buf, 5 * MIB)
        .map_err(io_err("reading back"))?;
    assert!(buf.iter().all(|&b| b == 0), "discarded blocks read zeroes");
    drop(file);
    dev.stop()?;
    Ok(())
}

fn loop_reports_cache_fua_and_discard() -> TestResult {
    let scratch = Scratch::new("loop-sysfs")?;
    let dev = Device::builder().start_target(Loop::open(scratch.file("disk.img", 8 * MIB)?)?)?;
    let attr = |name: &str| {
        std::fs::read_to_string(format!("/sys/block/ublkb{}/{name}", dev.id()))
            .map(|s| s.trim().to_string())
            .map_err(io_err(name))
    };
    assert_eq!(
        attr("size")?,
        (8 * MIB / 512).to_string(),
        "the file's size"
    );
    assert_eq!(attr("queue/write_cache")?, "write back");
    assert_eq!(attr("queue/fua")?, "1");
    assert_ne!(attr("queue/discard_granularity")?, "0");
    assert_ne!(attr("queue/discard_max_bytes")?, "0");
    assert_ne!(attr("queue/write_zeroes_max_bytes")?, "0");
    // A FUA write (O_DSYNC on the device) and a flush go through.
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC | libc::O_DIRECT)
        .open(dev.block_dev_path())
        .map_err(io_err("opening O_DSYNC"))?;
    let mut storage = Vec::new();
    f.write_all_at(aligned(&mut storage, 4096), 0)
        .map_err(io_err("O_DSYNC write"))?;
    drop(f);
    let s = dev.stats();
    assert!(s.flushes >= 1 || s.writes >= 1, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    dev.stop()?;
    Ok(())
}

/// A write to `dev` fails with EPERM or EROFS (the block layer refuses it), or the open
/// for writing does.
fn write_is_refused(dev: &Device) -> TestResult {
    let mut storage = Vec::new();
    let result = open_direct(&dev.block_dev_path())
        .and_then(|f| f.write_all_at(aligned(&mut storage, 4096), 0));
    match result.as_ref().map_err(io::Error::raw_os_error) {
        Err(Some(libc::EPERM | libc::EROFS | libc::EACCES)) => {}
        other => return Err(failed(format!("a write to a read-only device: {other:?}"))),
    }
    assert_eq!(dev.stats().writes, 0, "no write reached the server");
    Ok(())
}

fn read_only_devices_refuse_writes() -> TestResult {
    let dev = Device::builder()
        .read_only(true)
        .start_target(Mem::new(8 * MIB)?)?;
    write_is_refused(&dev)?;
    dev.stop()?;

    let scratch = Scratch::new("loop-ro")?;
    let image = scratch.file("disk.img", 8 * MIB)?;
    std::fs::write(&image, vec![0x77u8; 8 * MIB as usize]).map_err(io_err("filling"))?;
    let target = Loop::options(&image).read_only(true).open()?;
    let dev = Device::builder().start_target(target)?;
    let ro = std::fs::read_to_string(format!("/sys/block/ublkb{}/ro", dev.id()))
        .map_err(io_err("ro"))?;
    assert_eq!(ro.trim(), "1", "a read-only file makes a read-only device");
    write_is_refused(&dev)?;
    // Reads still work, and see the file.
    let mut storage = Vec::new();
    let buf = aligned(&mut storage, 4096);
    open_direct_read(&dev.block_dev_path())?
        .read_exact_at(buf, 4096)
        .map_err(io_err("reading"))?;
    assert!(buf.iter().all(|&b| b == 0x77));
    dev.stop()?;
    // Asking for a writable device on a read-only file is refused by name.
    let target = Loop::options(&image).read_only(true).open()?;
    let err = Device::builder()
        .read_only(false)
        .start_target(target)
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    Ok(())
}

fn open_direct_read(dev: &Path) -> Result<File, NotPassed> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(io_err("opening for reading"))
}

fn bad_backing_files_add_no_device() -> TestResult {
    let before = ublk_char_device_ids();
    let scratch = Scratch::new("bad")?;
    let missing = scratch.0.join("missing.img");
    let cases: [(PathBuf, &str); 4] = [
        (missing, "No such file"),
        (scratch.0.clone(), "is a directory"),
        (scratch.file("empty.img", 0)?, "is empty (0 bytes)"),
        (
            scratch.file("odd.img", MIB + 100)?,
            "not a whole number of 512-byte blocks",
        ),
    ];
    for (path, want) in cases {
        let err = Loop::open(&path).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{}: {err:?} should say {want:?}",
            path.display()
        );
        assert!(err.contains(path_str(&path)), "{err:?} names the file");
    }
    // A device larger than its file, or a RAM disk of no size: refused before ADD_DEV too.
    let small = Loop::open(scratch.file("small.img", MIB)?)?;
    let err = Device::builder()
        .size(2 * MIB)
        .start_target(small)
        .unwrap_err();
    assert!(
        err.to_string().contains("more than the backend holds"),
        "{err}"
    );
    let err = Mem::new(0).unwrap_err();
    assert!(err.to_string().contains("RAM disk size"), "{err}");
    assert_eq!(ublk_char_device_ids(), before, "no device added");
    Ok(())
}

fn examples_serve_and_stop() -> TestResult {
    let pattern = random_bytes(7, 64 << 10);
    let write_and_read = |dev: &Path| write_read_back(dev, MIB, &pattern);
    run_example(
        "ramdisk",
        &["--size", "16M", "--queues", "2"],
        write_and_read,
    )?;

    let scratch = Scratch::new("example-loop")?;
    let image = scratch.file("disk.img", 16 * MIB)?;
    run_example(
        "loop",
        &["--file", path_str(&image), "--depth", "32"],
        write_and_read,
    )?;
    // The loop example's writes are in the file after it stopped.
    let f = File::open(&image).map_err(io_err("opening the image"))?;
    let mut back = vec![0u8; pattern.len()];
    f.read_exact_at(&mut back, MIB)
        .map_err(io_err("reading the image"))?;
    assert!(
        back == pattern,
        "the file holds what was written through the device"
    );
    // Bad input: exit code 2 for usage, 1 for a file that cannot serve.
    for (args, want) in [
        (vec!["--bogus"], 2),
        (vec![], 2),
        (vec!["--file", "/nonexistent/disk.img"], 1),
    ] {
        let out = Command::new("loop")
            .args(&args)
            .output()
            .map_err(io_err("loop"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "loop {args:?}: {err}");
        assert!(
            err.starts_with("loop: "),
            "one line naming the problem: {err:?}"
        );
    }
    Ok(())
}
