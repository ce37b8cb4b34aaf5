//! A crashed or quiesced server, through the `ublk` command: `kill -9` during fio verify and
//! on a mounted ext4, then `ublk recover`, with no data lost; FAIL_IO failing fast; deleting
//! under heavy I/O; QUIESCE_DEV and UPDATE_SIZE; and what `recover` refuses.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use ublk::backend::{IoContext, NullQueue, QueueInfo, Reply, Request, TargetQueue};
use ublk::signal::TerminationSignals;
use ublk::signal::process_alive;
use ublk::sys::IoOp;
use ublk::sys::testing::Prng;
use ublk::{Controller, DataPath, Device, Error, Features, Loop, Properties, Target};
use ublk::{Ended, Fate, Null, Recovery};
use ublk_tests::ublk_char_device_ids;

use crate::backends::{
    Mounted, Scratch, check_tree, fio_verify_cmd, path_str, random_bytes, sh, write_tree,
};
use crate::cli::{Added, add, del, list_one, record, sysfs, ublk, wait_until};
use crate::fio::{self, FioResult, failed, io_err, open_direct, wait_child, write_read_back};
use crate::harness::{NotPassed, Test, TestResult, skip};
use crate::json::Value;

const MIB: u64 = 1 << 20;

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = &[
    Test {
        name: "recovery::zero_copy_fio_verify_survives_kill_9_five_times",
        needs: Features::USER_RECOVERY_REISSUE.union(DataPath::ZeroCopy.flags()),
        run: || fio_verify_survives_kill_9(DataPath::ZeroCopy, 5),
    },
    Test {
        name: "recovery::user_copy_fio_verify_survives_kill_9_twice",
        needs: Features::USER_RECOVERY_REISSUE.union(DataPath::UserCopy.flags()),
        run: || fio_verify_survives_kill_9(DataPath::UserCopy, 2),
    },
    Test {
        name: "recovery::copy_fio_verify_survives_kill_9_twice",
        needs: Features::USER_RECOVERY_REISSUE,
        run: || fio_verify_survives_kill_9(DataPath::Copy, 2),
    },
    Test {
        name: "recovery::ext4_fsynced_files_survive_kill_9",
        needs: Features::USER_RECOVERY_REISSUE,
        run: ext4_fsynced_files_survive_kill_9,
    },
    Test {
        name: "recovery::queue_mode_holds_io_until_recovered",
        needs: Features::USER_RECOVERY,
        run: queue_mode_holds_io_until_recovered,
    },
    Test {
        name: "recovery::fail_io_fails_fast_until_recovered",
        needs: Features::USER_RECOVERY_FAIL_IO,
        run: fail_io_fails_fast_until_recovered,
    },
    Test {
        name: "recovery::delete_during_heavy_io_20_times",
        needs: Features::USER_RECOVERY_REISSUE,
        run: delete_during_heavy_io_20_times,
    },
    Test {
        name: "recovery::quiesce_hands_the_device_to_a_new_server",
        needs: Features::QUIESCE,
        run: quiesce_hands_the_device_to_a_new_server,
    },
    Test {
        name: "recovery::take_over_in_one_command_during_fio_verify",
        needs: Features::USER_RECOVERY_REISSUE,
        run: take_over_in_one_command_during_fio_verify,
    },
    Test {
        name: "recovery::the_server_hardens_itself",
        needs: Features::empty(),
        run: the_server_hardens_itself,
    },
    Test {
        name: "recovery::resize_within_the_target",
        needs: Features::UPDATE_SIZE,
        run: resize_within_the_target,
    },
    Test {
        name: "recovery::library_takes_over_a_killed_server",
        needs: Features::USER_RECOVERY_REISSUE,
        run: library_takes_over_a_killed_server,
    },
    Test {
        name: "recovery::a_failed_recovery_leaves_the_device_waiting",
        needs: Features::USER_RECOVERY_REISSUE,
        run: a_failed_recovery_leaves_the_device_waiting,
    },
    Test {
        name: "recovery::a_failed_queue_leaves_a_recoverable_device_waiting",
        needs: Features::USER_RECOVERY_REISSUE,
        run: a_failed_queue_leaves_a_recoverable_device_waiting,
    },
    Test {
        name: "recovery::recover_refuses_a_stale_record",
        needs: Features::USER_RECOVERY_REISSUE,
        run: recover_refuses_a_stale_record,
    },
    Test {
        name: "recovery::recover_refuses_what_it_cannot_take_over",
        needs: Features::USER_RECOVERY,
        run: recover_refuses_what_it_cannot_take_over,
    },
    Test {
        name: "recovery::missing_kernel_features_are_named",
        needs: Features::empty(),
        run: missing_kernel_features_are_named,
    },
];

// --- helpers ---------------------------------------------------------------------------------

/// How long the driver may take to notice a dead server: at once on 7.x, within its 5 s
/// monitor period on 6.12.
const NOTICE: Duration = Duration::from_secs(20);

/// A loop device made by `ublk add --recovery=MODE` (with `extra` options) over a fresh file
/// of `size` bytes in a scratch directory named `name`.
fn recoverable_loop(
    name: &str,
    size: u64,
    mode: &str,
    extra: &[&str],
) -> Result<(Scratch, Added), NotPassed> {
    let scratch = Scratch::new(name)?;
    let image = scratch.file("disk.img", size)?;
    let recovery = format!("--recovery={mode}");
    let mut args = vec!["-t", "loop", "-f", path_str(&image), &recovery];
    args.extend_from_slice(extra);
    let added = add(&args)?;
    Ok((scratch, added))
}

/// `examples/loop --file FILE --recovery reissue EXTRA...`, started: the process and its
/// device's id, from the line it prints once the device is served.
fn recoverable_loop_example(file: &Path, extra: &[&str]) -> Result<(Child, u32), NotPassed> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("loop")
        .args(["--file", path_str(file), "--recovery", "reissue"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io_err("starting examples/loop"))?;
    let mut first = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut first)
            .map_err(io_err("reading examples/loop's output"))?;
    }
    let id = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("/dev/ublkb")?.parse().ok())
        .ok_or_else(|| failed(format!("examples/loop: no device in {first:?}")))?;
    Ok((child, id))
}

/// SIGKILL to `pid`, and waits until it is gone.
pub(crate) fn kill_9(pid: i32) -> TestResult {
    // SAFETY: kill takes plain integers; `pid` is a server this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if !wait_until(Duration::from_secs(10), || !process_alive(pid)) {
        return Err(failed(format!(
            "server {pid} still runs 10 s after SIGKILL"
        )));
    }
    Ok(())
}

/// The device's state as `ublk list --json` shows it.
fn state(id: u32) -> Result<String, NotPassed> {
    Ok(list_one(id)?
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("(none)")
        .to_string())
}

/// Waits until device `id` is in `want` (`ublk list`'s name), bounded by [`NOTICE`].
pub(crate) fn wait_state(id: u32, want: &str) -> TestResult {
    let deadline = Instant::now() + NOTICE;
    loop {
        let now = state(id)?;
        if now == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "device {id} is {now}, not {want}, {NOTICE:?} after its server died"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ublk recover -n ID`, which must succeed: the new server.
pub(crate) fn recover(old: &Added) -> Result<Added, NotPassed> {
    let out = ublk(&["recover", "-n", &old.id.to_string()])?.ok()?;
    let new = Added::parse(&out)?;
    assert_eq!(new.id, old.id, "the same device");
    assert_ne!(new.pid, old.pid, "a new server");
    assert!(process_alive(new.pid), "the new server runs");
    assert_eq!(state(new.id)?, "live");
    Ok(new)
}

/// Waits (bounded) for a fio started with [`fio::spawn`] and reads its result.
pub(crate) fn fio_result(mut child: Child, limit: Duration) -> Result<(i32, FioResult), NotPassed> {
    let code = wait_child(&mut child, limit)?;
    let out = child
        .wait_with_output()
        .map_err(io_err("reading fio's output"))?;
    Ok((code, FioResult::parse(&out).map_err(failed)?))
}

/// Runs `f` on a thread; its result arrives on the channel returned. I/O on a device with no
/// server blocks in the kernel, so the test waits on the channel, bounded, instead.
fn in_background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Reads `len` bytes at `offset` of `dev` with direct I/O.
fn read_direct(dev: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let file = open_direct(dev)?;
    let mut storage = Vec::new();
    let buf = fio::aligned(&mut storage, len);
    file.read_exact_at(buf, offset)?;
    Ok(buf.to_vec())
}

fn drop_caches() -> TestResult {
    std::fs::write("/proc/sys/vm/drop_caches", "3").map_err(io_err("dropping the page cache"))
}

// --- tests -----------------------------------------------------------------------------------

/// fio verify (crc32c, QD32, 2 queues) on a recoverable loop device; the server is killed
/// mid-run at a random moment and recovered, 5 times in a row, and every block verifies.
/// fio verify on a recoverable loop device on data path `path`, whose server is `kill -9`ed at
/// a random moment and recovered, `rounds` times: every block verifies.
fn fio_verify_survives_kill_9(path: DataPath, rounds: u32) -> TestResult {
    // Large enough that fio still runs when the server is killed, up to 2.5 s in: with the
    // release profile's LTO, 64 MiB verified on zero copy in about 2 s.
    let size = 128 * MIB;
    let (_scratch, mut added) = recoverable_loop(
        "recover-verify",
        size,
        "reissue",
        &["-q", "2", "--data-path", path.name()],
    )?;
    let v = list_one(added.id)?;
    assert_eq!(v.get("recovery").and_then(Value::as_str), Some("reissue"));
    assert_eq!(v.get("queues").and_then(Value::as_u64), Some(2));
    assert_eq!(
        v.get("data_path").and_then(Value::as_str),
        Some(path.name())
    );
    let mut rng = Prng::new(0x5eed);
    for round in 1..=rounds {
        let mut child = fio::spawn(fio_verify_cmd(&added.block_dev(), 32, size))?;
        let delay = Duration::from_millis(200 + rng.next_u64() % 2300);
        std::thread::sleep(delay);
        let running = child
            .try_wait()
            .map_err(io_err("checking on fio"))?
            .is_none();
        assert!(
            running,
            "round {round}: fio still runs when its server is killed {delay:?} in"
        );
        kill_9(added.pid)?;
        wait_state(added.id, "quiesced")?;
        added = recover(&added)?;
        let (code, result) = fio_result(child, Duration::from_secs(240))?;
        assert_eq!(
            (code, result.error),
            (0, 0),
            "round {round}: fio verify passed"
        );
        assert_eq!(
            (result.write_kib, result.read_kib),
            (size >> 10, size >> 10),
            "round {round}: the whole device written and verified"
        );
        println!(
            "  round {round}: killed {delay:?} in, recovered by pid {}, {} KiB verified",
            added.pid, result.read_kib
        );
    }
    // The new servers kept the device's path.
    let v = list_one(added.id)?;
    assert_eq!(
        v.get("data_path").and_then(Value::as_str),
        Some(path.name())
    );
    del(&added)
}

/// ext4 on a recoverable loop device: files written with fsync survive a `kill -9` of the
/// server; an fsync issued while no server runs waits and completes after `ublk recover`;
/// everything reads back from the device (page cache dropped), and e2fsck finds nothing.
fn ext4_fsynced_files_survive_kill_9() -> TestResult {
    let (scratch, mut added) = recoverable_loop("recover-ext4", 128 * MIB, "reissue", &[])?;
    let mnt = scratch.dir().join("mnt");
    std::fs::create_dir_all(&mnt).map_err(io_err("mkdir"))?;
    let dev = added.block_dev();
    sh("mkfs.ext4", &["-q", "-F", path_str(&dev)])?;
    let m = Mounted::new(&dev, &mnt)?;
    write_tree(&mnt)?;

    kill_9(added.pid)?;
    wait_state(added.id, "quiesced")?;
    let late_path = mnt.join("late.bin");
    let late_data = random_bytes(99, 1 << 20);
    let (path, data) = (late_path.clone(), late_data.clone());
    let rx = in_background(move || {
        File::create(&path).and_then(|f| f.write_all_at(&data, 0).and_then(|()| f.sync_all()))
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "an fsync waits while the device has no server"
    );
    added = recover(&added)?;
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| failed("the waiting fsync did not complete within 60 s of recovery"))?
        .map_err(io_err("write and fsync while the server was dead"))?;

    drop_caches()?;
    check_tree(&mnt)?;
    let late = std::fs::read(&late_path).map_err(io_err("reading late.bin"))?;
    assert!(late == late_data, "late.bin reads back as written");
    m.unmount()?;
    sh("e2fsck", &["-fn", path_str(&dev)])?;
    del(&added)
}

/// `--recovery queue`: I/O issued while no server runs waits, and is served by the next one.
fn queue_mode_holds_io_until_recovered() -> TestResult {
    let (_scratch, mut added) = recoverable_loop("recover-queue", 16 * MIB, "queue", &[])?;
    let dev = added.block_dev();
    let pattern = random_bytes(3, 256 << 10);
    write_read_back(&dev, MIB, &pattern)?;
    kill_9(added.pid)?;
    wait_state(added.id, "quiesced")?;
    assert_eq!(
        list_one(added.id)?.get("recovery").and_then(Value::as_str),
        Some("queue")
    );
    let reader_dev = dev.clone();
    let len = pattern.len();
    let rx = in_background(move || read_direct(&reader_dev, MIB, len));
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "a read waits while the device has no server"
    );
    added = recover(&added)?;
    let got = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| failed("the waiting read did not complete within 60 s of recovery"))?
        .map_err(io_err("the read that waited"))?;
    assert!(got == pattern, "the read that waited returns the data");
    del(&added)
}

/// `--recovery fail-io`: after the kill, I/O fails at once (no hang); after `ublk recover`
/// the data is there.
fn fail_io_fails_fast_until_recovered() -> TestResult {
    let (_scratch, mut added) = recoverable_loop("recover-failio", 16 * MIB, "fail-io", &[])?;
    let dev = added.block_dev();
    let pattern = random_bytes(4, 256 << 10);
    write_read_back(&dev, 0, &pattern)?;
    kill_9(added.pid)?;
    wait_state(added.id, "fail_io")?;
    let text = ublk(&["list", "-n", &added.id.to_string()])?.ok()?.stdout;
    assert!(
        text.contains(&format!("waiting for `ublk recover -n {}`", added.id)),
        "{text}"
    );
    for attempt in 0..3 {
        let started = Instant::now();
        let reader_dev = dev.clone();
        let result = in_background(move || read_direct(&reader_dev, 0, 4096))
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| failed(format!("read {attempt} hangs (10 s) in FAIL_IO")))?;
        let err = result.expect_err("a read fails while no server runs");
        // The block layer reports the driver's failure as EIO or, as a target error, EREMOTEIO.
        assert!(
            matches!(err.raw_os_error(), Some(libc::EIO | libc::EREMOTEIO)),
            "an I/O error: {err}"
        );
        println!(
            "  read {attempt} failed after {:?}: {err}",
            started.elapsed()
        );
    }
    added = recover(&added)?;
    let got = read_direct(&dev, 0, pattern.len()).map_err(io_err("reading after recovery"))?;
    assert!(got == pattern, "the data is there after recovery");
    del(&added)
}

/// `ublk del` while fio drives the device hard, 20 times over: plain and recoverable devices,
/// with a running server or one killed just before. Each delete completes, fio ends, and no
/// device, server or record is left.
fn delete_during_heavy_io_20_times() -> TestResult {
    let scratch = Scratch::new("recover-del")?;
    let image = scratch.file("disk.img", 32 * MIB)?;
    let image = path_str(&image).to_string();
    let mut rng = Prng::new(0xde1);
    for round in 0..20 {
        let (args, kill): (Vec<&str>, bool) = match round % 4 {
            0 => (vec!["-t", "null", "-q", "2"], false),
            1 => (vec!["-t", "loop", "-f", &image], false),
            2 => (
                vec!["-t", "loop", "-f", &image, "-q", "2", "--recovery"],
                false,
            ),
            _ => (vec!["-t", "loop", "-f", &image, "--recovery"], true),
        };
        let added = add(&args)?;
        let child = fio::spawn(fio::job(&added.block_dev(), "randrw", 32, 60))?;
        std::thread::sleep(Duration::from_millis(100 + rng.next_u64() % 500));
        if kill {
            kill_9(added.pid)?;
            wait_state(added.id, "quiesced")?;
        }
        let started = Instant::now();
        del(&added)?;
        let took = started.elapsed();
        let code = match fio_result(child, Duration::from_secs(30)) {
            Ok((code, _)) => code,
            // fio may print no result when its device vanished; it ended, which is the point.
            Err(NotPassed::Failed(why)) if why.contains("no terse result") => -1,
            Err(other) => return Err(other),
        };
        assert!(
            !ublk_char_device_ids().contains(&added.id),
            "round {round}: no device left"
        );
        println!(
            "  round {round} ({}{}): deleted in {took:?}; fio exited {code}",
            args.join(" ").replace(&image, "FILE"),
            if kill { ", server killed first" } else { "" }
        );
    }
    Ok(())
}

/// `ublk quiesce` during fio verify: the server exits, its record stays, the device waits;
/// `ublk recover` takes over and fio verifies everything. A device made without recovery
/// cannot be quiesced.
fn quiesce_hands_the_device_to_a_new_server() -> TestResult {
    let size = 48 * MIB;
    let (_scratch, added) = recoverable_loop("recover-quiesce", size, "reissue", &["-q", "2"])?;
    let flags = Controller::open()?.info(added.id)?.flags();
    assert!(
        flags.contains(Features::QUIESCE),
        "--recovery asks for QUIESCE where the kernel has it: {flags}"
    );
    let child = fio::spawn(fio_verify_cmd(&added.block_dev(), 32, size))?;
    std::thread::sleep(Duration::from_millis(500));
    let out = ublk(&["quiesce", "-n", &added.id.to_string()])?.ok()?;
    assert!(out.stdout.contains("quiesced"), "{}", out.stdout);
    assert!(!process_alive(added.pid), "the quiesced server exited");
    assert_eq!(state(added.id)?, "quiesced");
    assert!(
        record(added.id).exists(),
        "the record stays for ublk recover"
    );
    let new = recover(&added)?;
    let (code, result) = fio_result(child, Duration::from_secs(240))?;
    assert_eq!((code, result.error), (0, 0), "fio verify passed");
    assert_eq!(result.read_kib, size >> 10, "everything verified");
    del(&new)?;

    // A device made without recovery has no QUIESCE: refused by name, left live.
    let plain = add(&["-t", "null"])?;
    ublk(&["quiesce", "-n", &plain.id.to_string()])?.fails(1, "was created without QUIESCE");
    assert_eq!(state(plain.id)?, "live");
    del(&plain)
}

/// `ublk recover --take-over` during fio verify: one command makes the running server let go
/// (QUIESCE_DEV where the kernel has it, else `kill -9`) and serves the device itself; fio
/// verifies every block. A device without recovery is refused and left live.
fn take_over_in_one_command_during_fio_verify() -> TestResult {
    let size = 48 * MIB;
    let (_scratch, added) = recoverable_loop("recover-take-over", size, "reissue", &["-q", "2"])?;
    let quiesce = Controller::open()?.features()?.contains(Features::QUIESCE);
    let child = fio::spawn(fio_verify_cmd(&added.block_dev(), 32, size))?;
    std::thread::sleep(Duration::from_millis(500));
    let id = added.id.to_string();
    let out = ublk(&["recover", "-n", &id, "--take-over", "--timeout", "60"])?.ok()?;
    let how = if quiesce { "quiesced" } else { "was killed" };
    assert!(out.stderr.contains(how), "says how: {}", out.stderr);
    let new = Added::parse(&out)?;
    assert_eq!(new.id, added.id, "the same device");
    assert!(!process_alive(added.pid), "the old server is gone");
    assert!(process_alive(new.pid), "the new server runs");
    assert_eq!(state(added.id)?, "live");
    let (code, result) = fio_result(child, Duration::from_secs(240))?;
    assert_eq!((code, result.error), (0, 0), "fio verify passed");
    assert_eq!(result.read_kib, size >> 10, "everything verified");
    println!(
        "  server {} handed over to {} ({})",
        added.pid,
        new.pid,
        if quiesce {
            "QUIESCE_DEV"
        } else {
            "kill -9: this kernel has no QUIESCE"
        }
    );
    // Taking over a device that already waits is plain recovery.
    kill_9(new.pid)?;
    wait_state(added.id, "quiesced")?;
    let newer = Added::parse(&ublk(&["recover", "-n", &id, "--take-over"])?.ok()?)?;
    assert!(
        process_alive(newer.pid) && newer.pid != new.pid,
        "a third server"
    );
    del(&newer)?;

    let plain = add(&["-t", "null"])?;
    ublk(&["recover", "-n", &plain.id.to_string(), "--take-over"])?
        .fails(1, "was created without recovery");
    assert_eq!(state(plain.id)?, "live", "the refusal changes nothing");
    assert!(process_alive(plain.pid), "its server still runs");
    del(&plain)
}

/// A server makes itself fit to serve the file system it runs on: the OOM killer spares it,
/// its code is resident and locked (the rest locked only as it is touched), and its command
/// line starts with `@`, which systemd leaves running at shutdown.
fn the_server_hardens_itself() -> TestResult {
    let added = add(&["-t", "mem", "-s", "64M"])?;
    let proc = |file: &str| {
        std::fs::read(format!("/proc/{}/{file}", added.pid))
            .map_err(io_err("reading the server's /proc files"))
    };
    let adj = String::from_utf8_lossy(&proc("oom_score_adj")?)
        .trim()
        .to_string();
    assert_eq!(adj, "-1000", "oom_score_adj");
    let cmdline = proc("cmdline")?;
    assert!(
        cmdline.starts_with(b"@ublk\0add\0"),
        "command line {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    let status = String::from_utf8_lossy(&proc("status")?).into_owned();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Every mapping is under the lock (VmLck counts mappings, not pages: the RAM disk's 64 MiB
    // included), but only what was touched is in memory: the RAM disk is not allocated whole.
    assert!(kib("VmLck:") >= 64 * 1024, "VmLck {} kB", kib("VmLck:"));
    assert!(kib("VmRSS:") < 32 * 1024, "VmRSS {} kB", kib("VmRSS:"));
    // Its code is in memory whole, and locked.
    let exe = std::fs::read_link(format!("/proc/{}/exe", added.pid))
        .map_err(io_err("reading the server's /proc/PID/exe"))?;
    let smaps = String::from_utf8_lossy(&proc("smaps")?).into_owned();
    let code = code_mapping(&smaps, &exe.to_string_lossy())
        .ok_or_else(|| failed(format!("no r-xp mapping of {} in smaps", exe.display())))?;
    assert_eq!(code.rss_kib, code.size_kib, "all of the code is resident");
    assert!(code.locked, "the code's mapping is locked");
    println!(
        "  pid {}: oom_score_adj {adj}; code {} kB resident and locked; VmRSS {} kB of VmLck {} kB",
        added.pid,
        code.rss_kib,
        kib("VmRSS:"),
        kib("VmLck:")
    );
    del(&added)
}

/// A mapping as `/proc/PID/smaps` describes it.
struct Mapping {
    size_kib: u64,
    rss_kib: u64,
    locked: bool,
}

/// The executable mapping of `path` in `smaps`.
fn code_mapping(smaps: &str, path: &str) -> Option<Mapping> {
    let mut lines = smaps.lines();
    lines.find(|l| {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        f.len() >= 6 && f[1] == "r-xp" && f[5..].join(" ") == path
    })?;
    let mut m = Mapping {
        size_kib: 0,
        rss_kib: 0,
        locked: false,
    };
    for line in lines {
        let kib = |v: &str| v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        if let Some(v) = line.strip_prefix("Size:") {
            m.size_kib = kib(v);
        } else if let Some(v) = line.strip_prefix("Rss:") {
            m.rss_kib = kib(v);
        } else if let Some(v) = line.strip_prefix("VmFlags:") {
            // VmFlags ends a mapping's entry.
            m.locked = v.split_ascii_whitespace().any(|f| f == "lo");
            return Some(m);
        }
    }
    None
}

/// `ublk resize` grows and shrinks a live device within what its file holds, and refuses
/// more than that and sizes that are not whole blocks.
fn resize_within_the_target() -> TestResult {
    let scratch = Scratch::new("recover-resize")?;
    let image = scratch.file("disk.img", 64 * MIB)?;
    // Data past the device's first 32 MiB, written to the file directly.
    let pattern = random_bytes(5, 64 << 10);
    File::options()
        .write(true)
        .open(&image)
        .and_then(|f| f.write_all_at(&pattern, 48 * MIB))
        .map_err(io_err("writing the backing file"))?;
    let added = add(&[
        "-t",
        "loop",
        "-f",
        path_str(&image),
        "--size",
        "32M",
        "--logical-block-size",
        "4096",
    ])?;
    let id = added.id.to_string();
    assert_eq!(sysfs(added.id, "size")?, 32 * MIB / 512);
    let out = ublk(&["resize", "-n", &id, "--size", "64M"])?.ok()?;
    assert_eq!(out.stdout, format!("device {id}: 64 MiB\n"));
    assert_eq!(sysfs(added.id, "size")?, 64 * MIB / 512);
    let got = read_direct(&added.block_dev(), 48 * MIB, pattern.len())
        .map_err(io_err("reading past the old end"))?;
    assert!(got == pattern, "the grown part serves the file's data");
    ublk(&["resize", "-n", &id, "--size", "16M"])?.ok()?;
    assert_eq!(sysfs(added.id, "size")?, 16 * MIB / 512);
    ublk(&["resize", "-n", &id, "--size", "128M"])?.fails(
        2,
        &format!("134217728 bytes is more than device {id}'s target holds (67108864 bytes)"),
    );
    ublk(&["resize", "-n", &id, "--size", "4608"])?.fails(
        2,
        "must be a non-zero multiple of the logical block size (4096 bytes)",
    );
    ublk(&["resize", "-n", "77", "--size", "1M"])?.fails(1, "device 77 does not exist");
    assert_eq!(
        sysfs(added.id, "size")?,
        16 * MIB / 512,
        "refusals change nothing"
    );
    del(&added)
}

/// A target whose queues cannot open: a new server that fails half way through recovery.
struct Unopenable(u64);

impl Target for Unopenable {
    type Queue = NullQueue;

    fn open_queue(&self, _: &QueueInfo) -> std::io::Result<NullQueue> {
        Err(std::io::Error::other("refused on purpose"))
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(self.0),
            ..Properties::default()
        }
    }

    /// Any path: the device's is taken, and the queues fail after START_USER_RECOVERY.
    fn data_paths(&self) -> &'static [DataPath] {
        &DataPath::ALL
    }
}

/// The library without the CLI: `examples/loop --recovery reissue` is killed with SIGKILL and
/// this process takes its device over with `DeviceBuilder::recover_target`; a backend too
/// small for the device is refused first and leaves the device waiting. `Device::resize`
/// works within the file, or names UPDATE_SIZE where the kernel lacks it.
fn library_takes_over_a_killed_server() -> TestResult {
    let scratch = Scratch::new("recover-lib")?;
    let image = scratch.file("disk.img", 16 * MIB)?;
    let small = scratch.file("small.img", 8 * MIB)?;
    let (mut child, id) = recoverable_loop_example(&image, &[])?;
    let dev_path = Path::new("/dev").join(format!("ublkb{id}"));
    let pattern = random_bytes(6, 128 << 10);
    write_read_back(&dev_path, 4 * MIB, &pattern)?;
    kill_9(child.id() as i32)?;
    let _ = child.wait();
    wait_state(id, "quiesced")?;

    let err = Device::builder()
        .recover_target(id, Loop::options(&small).open()?)
        .expect_err("a backend smaller than the device is refused");
    assert!(
        err.to_string()
            .contains("16777216 bytes is more than the backend holds (8388608 bytes)"),
        "{err}"
    );
    assert_eq!(
        state(id)?,
        "quiesced",
        "a refused recovery leaves it waiting"
    );

    let mut dev = Device::builder().recover_target(id, Loop::options(&image).open()?)?;
    assert_eq!((dev.id(), state(id)?.as_str()), (id, "live"));
    let got = read_direct(&dev_path, 4 * MIB, pattern.len()).map_err(io_err("reading it back"))?;
    assert!(got == pattern, "the data written through the killed server");
    if Controller::open()?
        .features()?
        .contains(Features::UPDATE_SIZE)
    {
        dev.resize(8 * MIB)?;
        assert_eq!(sysfs(id, "size")?, 8 * MIB / 512);
        let err = dev.resize(32 * MIB).expect_err("more than the file");
        assert!(
            err.to_string().contains("more than the backend holds"),
            "{err}"
        );
    } else {
        let err = dev.resize(8 * MIB).expect_err("no UPDATE_SIZE");
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("lacks UPDATE_SIZE"), "{err}");
    }
    dev.stop()?;
    assert!(!ublk_char_device_ids().contains(&id), "deleted");
    Ok(())
}

/// A new server that fails half way (after START_USER_RECOVERY: its queues cannot open)
/// leaves the device waiting, with its data, for `ublk recover`. Kernels like 6.12 refuse a
/// second START_USER_RECOVERY after a failed one (EINVAL); there the test checks that the
/// device can still be deleted and reports itself skipped with that reason.
fn a_failed_recovery_leaves_the_device_waiting() -> TestResult {
    let (_scratch, added) = recoverable_loop("recover-fail", 16 * MIB, "reissue", &[])?;
    let pattern = random_bytes(8, 128 << 10);
    write_read_back(&added.block_dev(), MIB, &pattern)?;
    kill_9(added.pid)?;
    wait_state(added.id, "quiesced")?;
    let err = Device::builder()
        .recover_target(added.id, Unopenable(16 * MIB))
        .expect_err("a target whose queues cannot open");
    assert!(err.to_string().contains("refused on purpose"), "{err}");
    wait_state(added.id, "quiesced")?;
    let out = ublk(&["recover", "-n", &added.id.to_string()])?;
    if out.code != 0 && out.stderr.contains("EINVAL") {
        assert!(
            out.stderr.contains("cannot be retried"),
            "the refusal is explained: {}",
            out.stderr
        );
        del(&added)?;
        return skip(
            "this kernel refuses START_USER_RECOVERY after a failed recovery (EINVAL); the device was deleted",
        );
    }
    let new = Added::parse(&out.ok()?)?;
    let got = read_direct(&new.block_dev(), MIB, pattern.len())
        .map_err(io_err("reading after recovery"))?;
    assert!(got == pattern, "the data is there after the second attempt");
    del(&new)
}

/// `ublk recover` refuses, by name, a device that does not exist, has a running server, was
/// created without recovery, or has no record; each leaves the device as it was.
fn recover_refuses_what_it_cannot_take_over() -> TestResult {
    ublk(&["recover", "-n", "77"])?.fails(1, "device 77 does not exist");
    ublk(&["add", "-t", "mem", "-s", "1M", "--recovery"])?.fails(2, "--recovery is not for -t mem");
    assert!(ublk_char_device_ids().is_empty(), "nothing added");

    let live = add(&["-t", "null", "--recovery"])?;
    let id = live.id.to_string();
    ublk(&["recover", "-n", &id])?.fails(
        1,
        &format!(
            "it is live, served by pid {}: stop that server first",
            live.pid
        ),
    );
    assert!(process_alive(live.pid), "the running server is untouched");
    // Without its record the target is unknown.
    let saved = std::fs::read(record(live.id)).map_err(io_err("reading the record"))?;
    kill_9(live.pid)?;
    wait_state(live.id, "quiesced")?;
    std::fs::remove_file(record(live.id)).map_err(io_err("removing the record"))?;
    ublk(&["recover", "-n", &id])?.fails(1, "has no record in /run/ublk");
    std::fs::write(record(live.id), saved).map_err(io_err("restoring the record"))?;
    let back = recover(&live)?;
    del(&back)?;

    let plain = add(&["-t", "null"])?;
    kill_9(plain.pid)?;
    wait_state(plain.id, "dead")?;
    ublk(&["recover", "-n", &plain.id.to_string()])?.fails(
        1,
        "it was created without recovery, so no new server can take it over",
    );
    del(&plain)
}

/// On a kernel without QUIESCE, UPDATE_SIZE or USER_RECOVERY_FAIL_IO, the command that needs
/// it fails with the feature's name and changes nothing. Skipped where the kernel has all.
fn missing_kernel_features_are_named() -> TestResult {
    let kernel = Controller::open()?.features()?;
    let mut checked = Vec::new();
    if !kernel.contains(Features::QUIESCE) {
        let added = add(&["-t", "null", "--recovery"])?;
        ublk(&["quiesce", "-n", &added.id.to_string()])?.fails(1, "lacks QUIESCE");
        assert_eq!(state(added.id)?, "live");
        del(&added)?;
        checked.push("QUIESCE");
    }
    if !kernel.contains(Features::UPDATE_SIZE) {
        let added = add(&["-t", "mem", "-s", "8M"])?;
        ublk(&["resize", "-n", &added.id.to_string(), "--size", "4M"])?
            .fails(1, "lacks UPDATE_SIZE");
        assert_eq!(sysfs(added.id, "size")?, 8 * MIB / 512);
        del(&added)?;
        checked.push("UPDATE_SIZE");
    }
    if !kernel.contains(Features::USER_RECOVERY_FAIL_IO) {
        ublk(&["add", "-t", "null", "--recovery", "fail-io"])?
            .fails(1, "lacks USER_RECOVERY_FAIL_IO");
        assert!(ublk_char_device_ids().is_empty(), "nothing added");
        checked.push("USER_RECOVERY_FAIL_IO");
    }
    if checked.is_empty() {
        return skip("the kernel has QUIESCE, UPDATE_SIZE and USER_RECOVERY_FAIL_IO");
    }
    println!("  named: {}", checked.join(", "));
    Ok(())
}

/// A target that serves reads and breaks at its first write: its queue thread panics, as a
/// target with a bug would.
struct BreaksOnWrite(u64);

/// A queue of [`BreaksOnWrite`].
struct BreaksOnWriteQueue;

impl Target for BreaksOnWrite {
    type Queue = BreaksOnWriteQueue;

    fn open_queue(&self, _: &QueueInfo) -> std::io::Result<BreaksOnWriteQueue> {
        Ok(BreaksOnWriteQueue)
    }

    fn properties(&self) -> Properties {
        Properties {
            size: Some(self.0),
            ..Properties::default()
        }
    }
}

impl TargetQueue for BreaksOnWriteQueue {
    fn serve(&mut self, req: &Request, _io: &mut IoContext<'_, '_>) -> Reply {
        match req.op {
            IoOp::Write => panic!("a target that breaks on purpose at its first write"),
            IoOp::Read => Reply::Done(req.full_result()),
            _ => Reply::Done(0),
        }
    }
}

/// Defect 7 of issue 18: a queue that failed on a `--recovery` device made its server stop
/// and delete the device, with what was mounted on it. Now `Device::serve_until` leaves it
/// to a new server, as if this one had died: it waits, quiesced, and the write the broken
/// queue held is served by the next server (REISSUE).
fn a_failed_queue_leaves_a_recoverable_device_waiting() -> TestResult {
    let size = 16 * MIB;
    let dev = Device::builder()
        .recovery(Recovery::Reissue)
        .start_target(BreaksOnWrite(size))?;
    let (id, path) = (dev.id(), dev.block_dev_path());
    let served = in_background(move || {
        let signals = TerminationSignals::block().expect("blocking signals in this thread");
        dev.serve_until(&signals)
    });
    let write_path = path.clone();
    let written = in_background(move || -> std::io::Result<()> {
        let f = open_direct(&write_path)?;
        let mut storage = Vec::new();
        let buf = crate::fio::aligned(&mut storage, 64 << 10);
        buf.fill(0x5a);
        f.write_all_at(buf, MIB)?;
        f.sync_all()
    });
    let served = served
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| failed("serve_until did not return after the queue broke"))?;
    assert_eq!(served.ended, Ended::QueueFailed);
    assert_eq!(served.fate, Fate::WaitsForRecovery);
    let error = served.error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("panicked"),
        "the failed queue's error: {error:?}"
    );
    wait_state(id, "quiesced")?;
    assert!(
        ublk_char_device_ids().contains(&id),
        "the device is kept for a new server"
    );
    // The next server takes over, and the write that waited completes.
    let dev = Device::builder().recover_target(id, Null::new(size))?;
    written
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| failed("the held write did not complete after recovery"))?
        .map_err(io_err("the held write"))?;
    assert_eq!(state(id)?, "live");
    dev.stop()?;
    Ok(())
}

/// Defect 4 of issue 18: `ublk recover` took any record of the id. Here a `ublk add` device is
/// deleted behind ublk's back (its record stays), another program makes a recoverable device
/// of the same id on another file and dies: `ublk recover` must refuse the record (it would
/// have served the first device's file as the second's) and leave the device waiting.
fn recover_refuses_a_stale_record() -> TestResult {
    let (scratch, first) = recoverable_loop("stale", 16 * MIB, "reissue", &[])?;
    let id = first.id.to_string();
    kill_9(first.pid)?;
    wait_state(first.id, "quiesced")?;
    let mut ctl = Controller::open()?;
    let _ = ctl.stop(first.id);
    ctl.delete(first.id)?;
    assert!(
        record(first.id).exists(),
        "the deleted device's record stays"
    );

    let other = scratch.file("other.img", 16 * MIB)?;
    let (mut child, new_id) = recoverable_loop_example(&other, &["--id", &id])?;
    assert_eq!(new_id, first.id, "the same id");
    let pattern = random_bytes(11, 128 << 10);
    write_read_back(&first.block_dev(), 2 * MIB, &pattern)?;
    kill_9(child.id() as i32)?;
    let _ = child.wait();
    wait_state(first.id, "quiesced")?;

    ublk(&["recover", "-n", &id])?.fails(1, "is not this device's");
    assert_eq!(state(first.id)?, "quiesced", "the refusal changes nothing");
    // `list` does not show the stale record's target either.
    assert_eq!(list_one(first.id)?.get("target"), Some(&Value::Null));

    // Its own server's program takes it over, with its data.
    let dev = Device::builder().recover_target(first.id, Loop::open(&other)?)?;
    let got = read_direct(&first.block_dev(), 2 * MIB, pattern.len())
        .map_err(io_err("reading it back"))?;
    assert!(
        got == pattern,
        "the second device's data, from its own file"
    );
    dev.stop()?;
    // The stale record goes with a `ublk del` of its id; here the device is gone already.
    std::fs::remove_file(record(first.id)).map_err(io_err("removing the stale record"))?;
    Ok(())
}
