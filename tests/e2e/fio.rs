//! Running fio against a device, and the small I/O helpers the tests share.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ublk_tests::wait_for_path;

use crate::harness::{NotPassed, TestResult};

/// A fio job on `dev`: 4 KiB, direct, io_uring, time-based for `secs` seconds.
pub fn job(dev: &Path, rw: &str, iodepth: u32, secs: u32) -> Command {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=e2e",
        "--ioengine=io_uring",
        "--direct=1",
        "--bs=4k",
        "--time_based",
        "--output-format=terse",
        "--terse-version=3",
    ])
    .arg(format!("--filename={}", dev.display()))
    .arg(format!("--rw={rw}"))
    .arg(format!("--iodepth={iodepth}"))
    .arg(format!("--runtime={secs}"))
    .stdin(Stdio::null());
    cmd
}

/// Runs a fio job to its end; fails unless fio exits 0 and reports no error and some I/O.
pub fn run(mut cmd: Command) -> Result<FioResult, NotPassed> {
    let out = cmd
        .output()
        .map_err(|e| NotPassed::Failed(format!("running fio: {e}")))?;
    let result = FioResult::parse(&out).map_err(NotPassed::Failed)?;
    if !out.status.success() || result.error != 0 {
        return Err(NotPassed::Failed(format!(
            "fio failed ({}, error {}): {}",
            out.status,
            result.error,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    if result.read_ios + result.write_ios == 0 {
        return Err(NotPassed::Failed("fio did no I/O".into()));
    }
    Ok(result)
}

/// Starts a fio job in the background.
pub fn spawn(mut cmd: Command) -> Result<Child, NotPassed> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NotPassed::Failed(format!("starting fio: {e}")))
}

/// What a fio run reported (terse format, version 3).
#[derive(Debug)]
pub struct FioResult {
    /// fio's error field: 0, or the errno of the first error.
    pub error: i32,
    /// Read I/Os completed (for the 4 KiB jobs of [`job`]).
    pub read_ios: u64,
    /// Write I/Os completed (for the 4 KiB jobs of [`job`]).
    pub write_ios: u64,
    /// KiB read.
    pub read_kib: u64,
    /// KiB written.
    pub write_kib: u64,
}

impl FioResult {
    /// Reads fio's terse output (and names its exit status and stderr if there is none).
    pub fn parse(out: &Output) -> Result<FioResult, String> {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("3;"))
            .ok_or_else(|| {
                format!(
                    "no terse result from fio ({}): {}{}",
                    out.status,
                    stdout,
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let f: Vec<&str> = line.split(';').collect();
        // Terse v3: 5 error; read: 6 KiB, 7 bandwidth, 8 IOPS ...; write block starts at 47.
        // The I/O counts are KiB / 4 (the jobs use 4 KiB blocks).
        let num = |i: usize| -> Result<u64, String> {
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("fio terse field {i} missing or not a number: {line}"))
        };
        let (read_kib, write_kib) = (num(5)?, num(46)?);
        Ok(FioResult {
            error: num(4)? as i32,
            read_ios: read_kib / 4,
            write_ios: write_kib / 4,
            read_kib,
            write_kib,
        })
    }
}

/// Opens a block device for direct I/O.
pub fn open_direct(dev: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
}

/// A page-aligned buffer of `len` bytes inside `storage` (direct I/O needs aligned memory).
pub fn aligned(storage: &mut Vec<u8>, len: usize) -> &mut [u8] {
    storage.clear();
    storage.resize(len + 4096, 0);
    let off = storage.as_ptr().align_offset(4096);
    &mut storage[off..off + len]
}

/// Writes `pattern` at `offset` through the device with direct I/O, syncs, reads it back
/// and checks it.
pub fn write_read_back(dev: &Path, offset: u64, pattern: &[u8]) -> TestResult {
    let f = open_direct(dev).map_err(io_err("opening the device"))?;
    let mut storage = Vec::new();
    let buf = aligned(&mut storage, pattern.len());
    buf.copy_from_slice(pattern);
    f.write_all_at(buf, offset).map_err(io_err("writing"))?;
    f.sync_all().map_err(io_err("fsync"))?;
    buf.fill(0);
    f.read_exact_at(buf, offset).map_err(io_err("reading"))?;
    assert!(
        buf == pattern,
        "{}: data read back as written",
        dev.display()
    );
    Ok(())
}

/// `BLKDISCARD`: `_IO(0x12, 119)`, discards a `[offset, length]` range of a block device.
pub const BLKDISCARD: libc::c_ulong = 0x1277;
/// `BLKZEROOUT`: `_IO(0x12, 127)`, zeroes a `[offset, length]` range of a block device.
pub const BLKZEROOUT: libc::c_ulong = 0x127f;

/// A failure with this message.
pub fn failed(why: impl Into<String>) -> NotPassed {
    NotPassed::Failed(why.into())
}

/// Maps an I/O error to a failure that says what was being done.
pub fn io_err(what: &str) -> impl Fn(io::Error) -> NotPassed + '_ {
    move |e| failed(format!("{what}: {e}"))
}

/// Runs a block-device ioctl that takes a `[offset, length]` range.
pub fn range_ioctl(
    file: &std::fs::File,
    request: libc::c_ulong,
    range: [u64; 2],
) -> io::Result<()> {
    // SAFETY: both ioctls read a `u64[2]` (offset, length) from the pointer, which lives
    // across the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), request as _, range.as_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits up to `limit` for `child` to exit, killing it after that; its exit code.
pub fn wait_child(child: &mut std::process::Child, limit: Duration) -> Result<i32, NotPassed> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_err("waiting for a child process"))?
        {
            return Ok(status.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed(format!(
                "child process {} still running after {limit:?}; killed",
                child.id()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts an example, finds its device in its first line, runs `check` on it, stops it
/// with SIGTERM and checks it exits 0 and removes the device.
pub fn run_example(
    program: &str,
    args: &[&str],
    check: impl FnOnce(&Path) -> TestResult,
) -> TestResult {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(program))?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .map_err(io_err("reading its output"))?;
    let Some(dev) = first
        .split_whitespace()
        .find(|w| w.starts_with("/dev/ublkb"))
        .map(PathBuf::from)
    else {
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(format!(
            "{program}: no device in {first:?}; stderr: {err}"
        )));
    };
    let checked = check(&dev);
    // SAFETY: kill takes plain integers; the pid is our own live child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let code = wait_child(&mut child, Duration::from_secs(30))?;
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .map_err(io_err("reading its output"))?;
    checked?;
    assert_eq!(code, 0, "{program} exit code; output: {first}{rest}");
    assert!(rest.contains("SIGTERM: stopping device"), "{rest}");
    assert!(rest.contains("stopped; served"), "{rest}");
    assert!(
        wait_for_path(&dev, false, Duration::from_secs(5)),
        "{} gone",
        dev.display()
    );
    Ok(())
}
