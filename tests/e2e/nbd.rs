//! The NBD target against real NBD servers, run in the VM: nbd-server, qemu-nbd and nbdkit
//! (shipped by scripts/vm-test.sh). For each: the export as the server describes it, data
//! integrity (fio verify at QD1 and QD64 on one and two connections, ext4), what FLUSH, TRIM
//! and WRITE_ZEROES do to the server's file; then the faults: an unknown export, nothing
//! listening, a server that hangs up in the handshake, a read-only export, and a server lost
//! in the middle of fio, with and without reconnection.
//!
//! These need no ublk feature beyond the data paths some of them name. A server that is not
//! installed skips its tests, by name.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ublk::backend::{Nbd, NbdAddress, NbdOptions};
use ublk::signal::process_alive;
use ublk::{DataPath, Device, Features};

use crate::backends::{
    Scratch, ext4_round_trip, fio_verify_cmd, path_str, random_bytes, verify_whole,
};
use crate::cli::{Added, add, del, list_one, ublk, wait_until};
use crate::fio::{
    self, BLKDISCARD, BLKZEROOUT, failed, io_err, open_direct, range_ioctl, write_read_back,
};
use crate::harness::{NotPassed, Test, TestResult, skip};
use crate::recovery::{fio_result, kill_9, recover, wait_state};

const MIB: u64 = 1 << 20;

/// The export every server serves: 32 MiB.
const SIZE: u64 = 32 * MIB;

/// How long a server may take to start serving and a handshake to finish. Generous: under
/// TCG on a busy host nbd-server spends 2 to 8 s of emulated CPU starting, with its socket
/// already listening (connections wait in its backlog), and the handshake's time limit is
/// tested on the host (the library's unit tests), not here.
const START_LIMIT: Duration = Duration::from_secs(60);

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
    "nbd::exports_are_described_and_unknown_ones_refused" needs COPY => exports_are_described_and_unknown_ones_refused,
    "nbd::nothing_listening_fails_in_time" needs COPY => nothing_listening_fails_in_time,
    "nbd::a_server_hanging_up_in_the_handshake_is_named" needs COPY => a_server_hanging_up_in_the_handshake_is_named,
    "nbd::nbd_server_fio_verify_1_connection" needs COPY => || verify(Kind::NbdServer, 1, None),
    "nbd::nbd_server_fio_verify_2_connections" needs COPY => || verify(Kind::NbdServer, 2, None),
    "nbd::qemu_nbd_fio_verify_1_connection" needs COPY => || verify(Kind::QemuNbd, 1, None),
    "nbd::qemu_nbd_fio_verify_2_connections" needs COPY => || verify(Kind::QemuNbd, 2, None),
    "nbd::nbdkit_fio_verify_1_connection" needs COPY => || verify(Kind::Nbdkit, 1, None),
    "nbd::nbdkit_fio_verify_2_connections" needs COPY => || verify(Kind::Nbdkit, 2, None),
    "nbd::copy_path_fio_verify" needs COPY => || verify(Kind::QemuNbd, 2, Some(DataPath::Copy)),
    "nbd::user_copy_path_fio_verify" needs USER_COPY => || verify(Kind::QemuNbd, 2, Some(DataPath::UserCopy)),
    "nbd::zero_copy_path_fio_verify" needs ZERO_COPY => || verify(Kind::QemuNbd, 2, Some(DataPath::ZeroCopy)),
    "nbd::nbd_server_ext4" needs COPY => || ext4(Kind::NbdServer),
    "nbd::qemu_nbd_ext4" needs COPY => || ext4(Kind::QemuNbd),
    "nbd::nbdkit_ext4" needs COPY => || ext4(Kind::Nbdkit),
    "nbd::nbd_server_flush_trim_and_write_zeroes_reach_the_file" needs COPY => || reach_the_file(Kind::NbdServer),
    "nbd::qemu_nbd_flush_trim_and_write_zeroes_reach_the_file" needs COPY => || reach_the_file(Kind::QemuNbd),
    "nbd::a_read_only_export_refuses_writes" needs COPY => a_read_only_export_refuses_writes,
    "nbd::a_lost_server_fails_io_without_reconnection" needs COPY => a_lost_server_fails_io_without_reconnection,
    "nbd::a_restarted_server_gets_the_held_io" needs COPY => a_restarted_server_gets_the_held_io,
    "nbd::cli_add_list_and_del" needs COPY => cli_add_list_and_del,
    "nbd::cli_refusals_are_one_line_and_leave_no_device" needs COPY => cli_refusals_are_one_line_and_leave_no_device,
    "nbd::cli_list_says_why_io_is_held_or_fails" needs USER_RECOVERY_REISSUE => cli_list_says_why_io_is_held_or_fails,
    "nbd::cli_kill_9_and_recover_under_fio_verify" needs USER_RECOVERY_REISSUE => cli_kill_9_and_recover_under_fio_verify,
    "nbd::cli_del_fails_the_held_io_at_once" needs USER_RECOVERY_REISSUE => cli_del_fails_the_held_io_at_once,
];

const USER_RECOVERY_REISSUE: Features = Features::USER_RECOVERY_REISSUE;

// --- helpers ---------------------------------------------------------------------------------

/// The path of `program` in PATH, if installed.
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A running NBD server, stopped when dropped (pass or fail): SIGTERM to its process group
/// (a server's per-connection children too), SIGKILL if it is still there after 5 s, and
/// reaped when it is our child.
struct Server {
    name: &'static str,
    /// Its process group: the server's pid (each is started as a group leader).
    pgid: libc::pid_t,
    /// The process to reap, when the server runs in the foreground as our child.
    child: Option<Child>,
    /// Where its stdout and stderr go, shown when a check fails.
    log: PathBuf,
}

impl Server {
    /// Starts `program` with `args` in a process group of its own.
    fn spawn(name: &'static str, args: &[&str], scratch: &Scratch) -> Result<Server, NotPassed> {
        let log = scratch.dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(io_err("creating a server log"))?;
        let err = out.try_clone().map_err(io_err("creating a server log"))?;
        let child = Command::new(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io_err(name))?;
        Ok(Server {
            name,
            pgid: child.id() as libc::pid_t,
            child: Some(child),
            log,
        })
    }

    /// A server that daemonizes (nbd-server): the process started exits once the daemon
    /// runs, and the daemon, a session and group leader, writes its pid to `pid_file`: it is
    /// the one stopped.
    fn daemon(
        name: &'static str,
        args: &[&str],
        pid_file: &Path,
        scratch: &Scratch,
    ) -> Result<Server, NotPassed> {
        let mut server = Server::spawn(name, args, scratch)?;
        let read_pid = || {
            let text = std::fs::read_to_string(pid_file).ok()?;
            text.trim().parse::<libc::pid_t>().ok()
        };
        wait_until(START_LIMIT, || read_pid().is_some());
        let Some(pid) = read_pid() else {
            let why = format!("no pid in {} after {START_LIMIT:?}", pid_file.display());
            return Err(server.failure(&why));
        };
        if let Some(mut starter) = server.child.take() {
            let _ = starter.wait();
        }
        server.pgid = pid;
        Ok(server)
    }

    /// A failure that says `why`, with what the server printed.
    fn failure(&self, why: &str) -> NotPassed {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        failed(format!("{}: {why}\n{} said:\n{log}", self.name, self.name))
    }

    /// Opens export `name` once the server serves (refused connections are retried), all
    /// within [`START_LIMIT`].
    fn open(&self, options: NbdOptions) -> Result<Nbd, NotPassed> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            // The whole start limit for the handshake too: nbd-server listens before it
            // answers.
            let left = deadline.saturating_duration_since(Instant::now());
            match options
                .clone()
                .timeout(left.max(Duration::from_secs(1)))
                .open()
            {
                Ok(nbd) => {
                    println!(
                        "    {}: export '{}' at {}: {} bytes, flags {:?}, block sizes {:?}",
                        self.name,
                        nbd.export_name(),
                        nbd.address(),
                        nbd.size(),
                        nbd.flag_names(),
                        nbd.block_sizes()
                    );
                    return Ok(nbd);
                }
                Err(e)
                    if Instant::now() < deadline
                        && (e.to_string().contains("Connection refused")
                            || e.to_string().contains("No such file")) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(self.failure(&format!("opening the export: {e}"))),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers; a negative pid addresses the server's group,
        // which only the server and what it forked are in.
        unsafe { libc::kill(-self.pgid, libc::SIGTERM) };
        let gone = wait_until(Duration::from_secs(5), || match &mut self.child {
            Some(child) => child.try_wait().is_ok_and(|s| s.is_some()),
            None => !process_alive(self.pgid),
        });
        if !gone {
            eprintln!(
                "{} (pid {}) did not stop on SIGTERM: SIGKILL",
                self.name, self.pgid
            );
            // SAFETY: as above.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        }
        if let Some(child) = &mut self.child {
            let _ = child.wait();
        }
    }
}

/// Skips the test unless every program is installed.
fn require(programs: &[&str]) -> TestResult {
    match programs.iter().find(|p| find_program(p).is_none()) {
        Some(missing) => skip(format!(
            "{missing} is not installed (scripts/vm-test.sh ships it)"
        )),
        None => Ok(()),
    }
}

/// `127.0.0.1:port` (the VM's loopback interface is up: scripts/vm/init).
fn loopback(port: u16) -> NbdAddress {
    NbdAddress::Tcp {
        host: "127.0.0.1".into(),
        port,
    }
}

/// The three servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// nbd-server (the reference server), over TCP, exporting a file ("disk") and a
    /// read-only one ("ro").
    NbdServer,
    /// qemu-nbd on a raw file, over a Unix socket, two connections allowed.
    QemuNbd,
    /// nbdkit's memory plugin over TCP, strict about its export name.
    Nbdkit,
}

/// A server serving export "disk" of [`SIZE`] bytes.
struct Running {
    server: Server,
    address: NbdAddress,
    /// The export's file, for servers that export one.
    file: Option<PathBuf>,
}

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Kind::NbdServer => "nbd-server",
            Kind::QemuNbd => "qemu-nbd",
            Kind::Nbdkit => "nbdkit",
        }
    }

    /// Starts the server (a new export file in `scratch`, unless `file` names one).
    fn start(self, scratch: &Scratch, file: Option<&Path>) -> Result<Running, NotPassed> {
        require(&[self.program()])?;
        let disk = match file {
            Some(f) => f.to_path_buf(),
            None => scratch.file("disk.img", SIZE)?,
        };
        match self {
            Kind::NbdServer => {
                let ro = scratch.file("ro.img", SIZE)?;
                let config = scratch.dir().join("config");
                let pid_file = scratch.dir().join("pid");
                let _ = std::fs::remove_file(&pid_file);
                // No user/group: it stays root, the only user the VM has.
                let text = format!(
                    "[generic]\nlistenaddr = 127.0.0.1\nport = 10809\n\
                     [disk]\nexportname = {}\nflush = true\nfua = true\ntrim = true\n\
                     [ro]\nexportname = {}\nreadonly = true\n",
                    path_str(&disk),
                    path_str(&ro)
                );
                std::fs::write(&config, text).map_err(io_err("writing nbd-server's config"))?;
                let server = Server::daemon(
                    "nbd-server",
                    &["-C", path_str(&config), "-p", path_str(&pid_file)],
                    &pid_file,
                    scratch,
                )?;
                Ok(Running {
                    server,
                    address: loopback(10809),
                    file: Some(disk),
                })
            }
            Kind::QemuNbd => {
                let socket = scratch.dir().join("qemu-nbd.sock");
                let _ = std::fs::remove_file(&socket);
                let server = Server::spawn(
                    "qemu-nbd",
                    &[
                        "-f",
                        "raw",
                        "--persistent",
                        // Two clients: and so CAN_MULTI_CONN.
                        "-e",
                        "2",
                        "--discard=unmap",
                        "-k",
                        path_str(&socket),
                        "-x",
                        "disk",
                        path_str(&disk),
                    ],
                    scratch,
                )?;
                Ok(Running {
                    server,
                    address: NbdAddress::Unix(socket),
                    file: Some(disk),
                })
            }
            Kind::Nbdkit => {
                let server = Server::spawn(
                    "nbdkit",
                    &[
                        "-f",
                        "--exit-with-parent",
                        "-i",
                        "127.0.0.1",
                        "-p",
                        "10811",
                        "--filter=exportname",
                        "memory",
                        "32M",
                        "exportname=disk",
                        "exportname-strict=true",
                    ],
                    scratch,
                )?;
                Ok(Running {
                    server,
                    address: loopback(10811),
                    file: None,
                })
            }
        }
    }
}

impl Running {
    /// Opens export `name` with `connections` connections.
    fn open(&self, name: &str, connections: u16) -> Result<Nbd, NotPassed> {
        self.server
            .open(NbdOptions::new(self.address.clone(), name).connections(connections))
    }
}

/// The counters of a device that served without a fault.
fn assert_clean(dev: &Device) {
    let s = dev.stats();
    assert_eq!((s.errors, s.anomalies), (0, 0), "{s:?}");
}

// --- tests -----------------------------------------------------------------------------------

fn exports_are_described_and_unknown_ones_refused() -> TestResult {
    for kind in [Kind::NbdServer, Kind::QemuNbd, Kind::Nbdkit] {
        let scratch = Scratch::new(kind.program())?;
        let running = kind.start(&scratch, None)?;
        let nbd = running.open("disk", 1)?;
        assert_eq!(nbd.size(), SIZE, "{kind:?}");
        assert!(!nbd.is_read_only(), "{kind:?}");
        let flags = nbd.flag_names();
        for want in [
            "SEND_FLUSH",
            "SEND_TRIM",
            "SEND_WRITE_ZEROES",
            "CAN_MULTI_CONN",
        ] {
            assert!(flags.contains(&want), "{kind:?}: {flags:?} lacks {want}");
        }
        if kind == Kind::QemuNbd {
            let (min, preferred, max) = nbd.block_sizes().expect("qemu-nbd gives block sizes");
            assert!(min <= 512 && preferred >= 512 && max >= MIB as u32);
        }
        drop(nbd);
        let err = NbdOptions::new(running.address.clone(), "nope")
            .open()
            .map(|n| n.size())
            .expect_err("an unknown export");
        let want = "the NBD server refused export 'nope': NBD_REP_ERR_UNKNOWN (no such export)";
        assert!(err.to_string().starts_with(want), "{kind:?}: {err}");
        println!("    {}: {err}", kind.program());
    }
    Ok(())
}

/// Nothing listening: a refused TCP connection and a missing socket fail at once, by name.
fn nothing_listening_fails_in_time() -> TestResult {
    let limit = Duration::from_secs(3);
    let cases = [
        loopback(1),
        NbdAddress::Unix(PathBuf::from("/tmp/no-nbd-server-here.sock")),
    ];
    for address in cases {
        let start = Instant::now();
        let err = NbdOptions::new(address.clone(), "disk")
            .timeout(limit)
            .open()
            .map(|n| n.size())
            .expect_err("nothing listens");
        assert!(start.elapsed() < limit, "{address}: {:?}", start.elapsed());
        let want = format!("cannot connect to the NBD server at {address}: ");
        assert!(err.to_string().starts_with(&want), "{err}");
        println!("    {err}");
    }
    Ok(())
}

/// A listener that takes each connection and closes it at once, as a server that crashes
/// would: the handshake fails naming what the server did, and nothing hangs.
fn a_server_hanging_up_in_the_handshake_is_named() -> TestResult {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:10812").map_err(io_err("listening on 10812"))?;
    let hang_up = std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            drop(stream);
        }
    });
    let err = NbdOptions::new(loopback(10812), "disk")
        .timeout(Duration::from_secs(10))
        .open()
        .map(|n| n.size())
        .expect_err("the server hung up");
    let _ = hang_up.join();
    assert_eq!(
        err.to_string(),
        "the NBD server closed the connection during its greeting"
    );
    Ok(())
}

/// fio verify (QD1 and QD64, 4k to 1M) over the whole export with `connections` connections
/// (and queues), on data path `path` (default: the best).
fn verify(kind: Kind, connections: u16, path: Option<DataPath>) -> TestResult {
    let scratch = Scratch::new(kind.program())?;
    let running = kind.start(&scratch, None)?;
    let nbd = running.open("disk", connections)?;
    let mut builder = Device::builder().queues(connections).depth(64);
    if let Some(path) = path {
        builder = builder.data_path(path);
    }
    let dev = builder.start_target(nbd)?;
    println!("    data path {}", dev.data_path());
    assert_eq!(dev.info().queues(), connections);
    assert_eq!(dev.data_path(), path.unwrap_or(dev.data_path()));
    verify_whole(&dev.block_dev_path(), SIZE)?;
    assert_clean(&dev);
    dev.stop()?;
    Ok(())
}

fn ext4(kind: Kind) -> TestResult {
    let scratch = Scratch::new(kind.program())?;
    let running = kind.start(&scratch, None)?;
    let dev = Device::builder()
        .queues(2)
        .start_target(running.open("disk", 2)?)?;
    ext4_round_trip(&dev.block_dev_path(), &scratch.dir().join("mnt"))?;
    assert_clean(&dev);
    dev.stop()?;
    Ok(())
}

/// What the device's FLUSH, DISCARD (TRIM) and WRITE_ZEROES do reaches the server's file:
/// written data is in it after an fsync, and a discarded or zeroed range reads as zeroes there.
fn reach_the_file(kind: Kind) -> TestResult {
    let scratch = Scratch::new(kind.program())?;
    let running = kind.start(&scratch, None)?;
    let file = running.file.clone().expect("a file-backed server");
    let dev = Device::builder().start_target(running.open("disk", 1)?)?;
    let path = dev.block_dev_path();
    let pattern = random_bytes(7, 4 * MIB as usize);
    write_read_back(&path, 0, &pattern)?;
    let disk = open_direct(&path).map_err(io_err("opening the device"))?;
    disk.sync_all().map_err(io_err("fsync (FLUSH)"))?;
    let in_file = |offset: u64, len: usize| -> Result<Vec<u8>, NotPassed> {
        let mut back = vec![0u8; len];
        std::fs::File::open(&file)
            .and_then(|f| f.read_exact_at(&mut back, offset))
            .map_err(io_err("reading the server's file"))?;
        Ok(back)
    };
    assert!(
        in_file(0, pattern.len())? == pattern,
        "the data is in the file after FLUSH"
    );
    range_ioctl(&disk, BLKDISCARD, [MIB, MIB]).map_err(io_err("BLKDISCARD"))?;
    range_ioctl(&disk, BLKZEROOUT, [3 * MIB, 512 * 1024]).map_err(io_err("BLKZEROOUT"))?;
    disk.sync_all().map_err(io_err("fsync (FLUSH)"))?;
    let back = in_file(0, pattern.len())?;
    let zeroed = |i: usize| {
        (MIB as usize..2 * MIB as usize).contains(&i)
            || (3 * MIB as usize..3 * MIB as usize + 512 * 1024).contains(&i)
    };
    for (i, (&got, &was)) in back.iter().zip(&pattern).enumerate() {
        let want = if zeroed(i) { 0 } else { was };
        assert_eq!(got, want, "byte {i} of the server's file");
    }
    let s = dev.stats();
    assert!(
        s.flushes > 0 && s.discards > 0 && s.write_zeroes > 0,
        "{s:?}"
    );
    assert_clean(&dev);
    drop(disk);
    dev.stop()?;
    Ok(())
}

fn a_read_only_export_refuses_writes() -> TestResult {
    let scratch = Scratch::new("nbd-ro")?;
    let running = Kind::NbdServer.start(&scratch, None)?;
    let nbd = running.open("ro", 1)?;
    assert!(nbd.is_read_only());
    let dev = Device::builder().start_target(nbd)?;
    let ro = std::fs::read_to_string(format!("/sys/block/ublkb{}/ro", dev.id()))
        .map_err(io_err("reading ro"))?;
    assert_eq!(ro.trim(), "1", "the device is read-only");
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(dev.block_dev_path())
        .and_then(|mut f| f.write_all(&[1; 512]))
        .expect_err("a write to a read-only device");
    // The block layer's answer to a write to a read-only disk.
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    dev.stop()?;
    Ok(())
}

/// Without reconnection, a server that goes away fails the I/O in flight and what follows
/// with EIO; nothing hangs, the status says why, and the device can be stopped.
fn a_lost_server_fails_io_without_reconnection() -> TestResult {
    let scratch = Scratch::new("nbd-lost")?;
    let running = Kind::QemuNbd.start(&scratch, None)?;
    let nbd = running.open("disk", 1)?;
    let status = nbd.status_handle();
    let dev = Device::builder().start_target(nbd)?;
    let mut job = fio::job(&dev.block_dev_path(), "randrw", 32, 60);
    job.arg("--bs=64k");
    let child = fio::spawn(job)?;
    std::thread::sleep(Duration::from_secs(1));
    let Running { server, .. } = running;
    drop(server);
    let out = wait_fio(child, Duration::from_secs(60))?;
    assert!(!out.status.success(), "fio failed: its I/O failed");
    let status = status.status();
    assert!(!status.connected);
    let text = status.to_string();
    // Which end noticed first varies: a send failed (EPIPE, ECONNRESET) or came up short,
    // or a receive found the stream closed or reset. Each names the loss and its cause.
    const LOSSES: [&str; 5] = [
        "the server closed the connection",
        "the connection broke after",
        "sending to the server failed: E",
        "receiving from the server failed: E",
        "receiving a read's data failed: E",
    ];
    assert!(
        text.contains("lost (")
            && text.contains("I/O fails with EIO")
            && LOSSES.iter().any(|loss| text.contains(loss)),
        "{text}"
    );
    println!("    status: {text}");
    let mut buf = vec![0u8; 4096];
    let err = open_direct(&dev.block_dev_path())
        .and_then(|f| f.read_exact_at(crate::fio::aligned(&mut buf, 4096), 0))
        .expect_err("a read after the loss");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    dev.stop()?;
    Ok(())
}

/// With reconnection, a server that goes away during fio verify and comes back gets the
/// held I/O: fio verifies every block.
fn a_restarted_server_gets_the_held_io() -> TestResult {
    let scratch = Scratch::new("nbd-restart")?;
    let running = Kind::QemuNbd.start(&scratch, None)?;
    let file = running.file.clone().expect("qemu-nbd exports a file");
    let nbd = running.server.open(
        NbdOptions::new(running.address.clone(), "disk").reconnect(Some(Duration::from_secs(60))),
    )?;
    let status = nbd.status_handle();
    let dev = Device::builder().start_target(nbd)?;
    let mut child = fio::spawn(crate::backends::fio_verify_cmd(
        &dev.block_dev_path(),
        32,
        SIZE,
    ))?;
    // The server goes away once fio has written its first MiB, so that most of the writes
    // and all of the verifying reads are held: a fixed pause can outlast the whole of fio.
    wait_fio_writing(&mut child, &dev.block_dev_path(), 1 << 20)?;
    let Running { server, .. } = running;
    drop(server);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        child.try_wait().is_ok_and(|s| s.is_none()),
        "fio waits while the server is away"
    );
    let text = status.status().to_string();
    assert!(
        text.contains("reconnecting") && text.contains("I/O is held"),
        "{text}"
    );
    println!("    while it is away: {text}");
    let again = Kind::QemuNbd.start(&scratch, Some(&file))?;
    let out = wait_fio(child, Duration::from_secs(240))?;
    let result = fio::FioResult::parse(&out).map_err(failed)?;
    assert!(
        out.status.success() && result.error == 0,
        "fio verify passed: {out:?}"
    );
    assert_eq!(
        (result.write_kib, result.read_kib),
        (SIZE >> 10, SIZE >> 10)
    );
    assert!(status.status().connected, "{}", status.status());
    assert_clean(&dev);
    dev.stop()?;
    drop(again);
    Ok(())
}

/// Waits for a fio started with [`fio::spawn`], bounded.
fn wait_fio(mut child: Child, limit: Duration) -> Result<std::process::Output, NotPassed> {
    let done = wait_until(limit, || child.try_wait().is_ok_and(|s| s.is_some()));
    if !done {
        let _ = child.kill();
        let _ = child.wait();
        return Err(failed(format!("fio still ran after {limit:?}")));
    }
    child
        .wait_with_output()
        .map_err(io_err("reading fio's output"))
}

/// Waits (up to a minute) until fio, `child`, has written `bytes` to block device `dev`
/// (its sysfs `stat`); an error if fio ends first.
fn wait_fio_writing(child: &mut Child, dev: &Path, bytes: u64) -> TestResult {
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stat = format!("/sys/block/{name}/stat");
    // Field 7: sectors written.
    let written = || {
        std::fs::read_to_string(&stat)
            .ok()
            .and_then(|s| s.split_ascii_whitespace().nth(6)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 512
    };
    let mut ended = false;
    wait_until(Duration::from_secs(60), || {
        ended = child.try_wait().is_ok_and(|s| s.is_some());
        ended || written() >= bytes
    });
    if ended {
        return Err(failed(format!(
            "fio ended after writing {} bytes, before {bytes}",
            written()
        )));
    }
    Ok(())
}

/// The `ublk add` options for `running`'s export "disk".
fn cli_server_args(running: &Running) -> Vec<String> {
    let mut args = vec!["-t".to_string(), "nbd".to_string()];
    match &running.address {
        NbdAddress::Tcp { host, port } => args.extend([
            "--host".into(),
            host.clone(),
            "--port".into(),
            port.to_string(),
        ]),
        NbdAddress::Unix(path) => args.extend(["--socket".into(), path_str(path).to_string()]),
    }
    args.extend(["--export".into(), "disk".into()]);
    args
}

/// What `ublk list` says a device's target is doing (its `status`; empty if none).
fn list_status(id: u32) -> Result<String, NotPassed> {
    Ok(list_one(id)?
        .get("status")
        .and_then(crate::json::Value::as_str)
        .unwrap_or_default()
        .to_string())
}

/// `ublk add ARGS` for `running`'s export, once the server serves (its start is slow).
fn cli_add(running: &Running, extra: &[&str]) -> Result<Added, NotPassed> {
    running.open("disk", 1)?; // waits until it serves
    let mut args = cli_server_args(running);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    add(&args)
}

/// `ublk add -t nbd` on each server: the device serves the export (data checked against the
/// server's file), `list --json` shows the NBD settings, `del` leaves nothing.
fn cli_add_list_and_del() -> TestResult {
    for kind in [Kind::NbdServer, Kind::QemuNbd] {
        let scratch = Scratch::new(kind.program())?;
        let running = kind.start(&scratch, None)?;
        let added = cli_add(&running, &["-q", "2"])?;
        let v = list_one(added.id)?;
        assert_eq!(
            v.get("target").and_then(crate::json::Value::as_str),
            Some("nbd")
        );
        let nbd = v
            .get("nbd")
            .ok_or_else(|| failed("no \"nbd\" in list --json"))?;
        assert_eq!(
            nbd.get("server").and_then(crate::json::Value::as_str),
            Some(running.address.to_string().as_str())
        );
        assert_eq!(
            nbd.get("export").and_then(crate::json::Value::as_str),
            Some("disk")
        );
        assert_eq!(
            nbd.get("connections").and_then(crate::json::Value::as_u64),
            Some(2)
        );
        assert_eq!(
            v.get("queues").and_then(crate::json::Value::as_u64),
            Some(2)
        );
        assert_eq!(
            v.get("status").and_then(crate::json::Value::as_str),
            Some("connected")
        );
        let pattern = random_bytes(11, 256 << 10);
        write_read_back(&added.block_dev(), 5 * MIB, &pattern)?;
        open_direct(&added.block_dev())
            .and_then(|f| f.sync_all())
            .map_err(io_err("fsync"))?;
        let mut back = vec![0u8; pattern.len()];
        std::fs::File::open(running.file.as_ref().expect("a file"))
            .and_then(|f| f.read_exact_at(&mut back, 5 * MIB))
            .map_err(io_err("reading the server's file"))?;
        assert!(
            back == pattern,
            "{kind:?}: the data is in the server's file"
        );
        del(&added)?;
    }
    Ok(())
}

/// A wrong export, nothing listening, a server that hangs up in the handshake: each one line
/// naming the server and what it did, exit 1, and no device.
fn cli_refusals_are_one_line_and_leave_no_device() -> TestResult {
    let scratch = Scratch::new("nbd-cli-refusals")?;
    let running = Kind::Nbdkit.start(&scratch, None)?;
    running.open("disk", 1)?;
    // By name: `localhost` is the loopback without /etc/hosts (the VM has none).
    ublk(&[
        "add",
        "-t",
        "nbd",
        "--host",
        "localhost",
        "--port",
        "10811",
        "--export",
        "nope",
    ])?
    .fails(
        1,
        "the NBD server refused export 'nope': NBD_REP_ERR_UNKNOWN (no such export)",
    );
    // A name no one knows: the VM has no name server either.
    ublk(&["add", "-t", "nbd", "--host", "no-such-host.invalid"])?.fails(
        1,
        "cannot resolve NBD server address no-such-host.invalid:10809: name server 127.0.0.1:53",
    );
    ublk(&["add", "-t", "nbd", "--host", "127.0.0.1", "--port", "1"])?.fails(
        1,
        "cannot connect to the NBD server at 127.0.0.1:1: Connection refused",
    );
    let listener =
        std::net::TcpListener::bind("127.0.0.1:10813").map_err(io_err("listening on 10813"))?;
    let hang_up = std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            drop(stream);
        }
    });
    ublk(&["add", "-t", "nbd", "--host", "127.0.0.1", "--port", "10813"])?.fails(
        1,
        "the NBD server closed the connection during its greeting",
    );
    let _ = hang_up.join();
    // More connections than the export allows is refused by name too (nbd-server and nbdkit
    // allow several; a qemu-nbd without -e does not).
    let socket = scratch.dir().join("single.sock");
    let disk = scratch.file("single.img", SIZE)?;
    let single = Server::spawn(
        "qemu-nbd",
        &[
            "-f",
            "raw",
            "--persistent",
            "-k",
            path_str(&socket),
            "-x",
            "disk",
            path_str(&disk),
        ],
        &scratch,
    )?;
    single.open(NbdOptions::new(NbdAddress::Unix(socket.clone()), "disk"))?;
    ublk(&[
        "add",
        "-t",
        "nbd",
        "--socket",
        path_str(&socket),
        "--export",
        "disk",
        "-q",
        "2",
    ])?
    .fails(2, "does not allow more than one");
    assert!(
        ublk_tests::ublk_char_device_ids().is_empty(),
        "no device left"
    );
    Ok(())
}

/// What `ublk list` says of a device whose NBD server went away: with `--recovery`, that its
/// I/O is held while it reconnects (and then that it is connected again); without, that its
/// I/O fails.
fn cli_list_says_why_io_is_held_or_fails() -> TestResult {
    let scratch = Scratch::new("nbd-cli-status")?;
    let running = Kind::QemuNbd.start(&scratch, None)?;
    let file = running.file.clone().expect("a file");
    let held = cli_add(&running, &["--recovery", "--reconnect-limit", "60"])?;
    let failing = cli_add(&running, &[])?;
    let Running { server, .. } = running;
    drop(server);
    // A request on each makes the loss known (an idle connection may not notice at once).
    let _ = std::thread::spawn({
        let dev = failing.block_dev();
        move || open_direct(&dev).and_then(|f| f.read_exact_at(&mut vec![0; 4096], 0))
    });
    let waited = wait_until(Duration::from_secs(20), || {
        list_status(held.id).is_ok_and(|s| s.contains("I/O is held"))
            && list_status(failing.id).is_ok_and(|s| s.contains("I/O fails with EIO"))
    });
    println!("    held: {}", list_status(held.id)?);
    println!("    failing: {}", list_status(failing.id)?);
    assert!(waited, "list says why");
    let text = ublk(&["list", "-n", &held.id.to_string()])?.ok()?.stdout;
    assert!(
        text.contains("status: ") && text.contains("reconnecting"),
        "{text}"
    );
    let again = Kind::QemuNbd.start(&scratch, Some(&file))?;
    assert!(
        wait_until(Duration::from_secs(30), || list_status(held.id)
            .is_ok_and(|s| s == "connected")),
        "connected again: {}",
        list_status(held.id)?
    );
    del(&failing)?;
    del(&held)?;
    drop(again);
    Ok(())
}

/// `ublk del` of a device whose NBD server went away while the device holds I/O for the
/// reconnection (limit 120 s): the stop waits for every request in flight, so the held read
/// must fail with EIO at once, not when the limit runs out, and the device, its server and
/// its record are gone.
fn cli_del_fails_the_held_io_at_once() -> TestResult {
    let scratch = Scratch::new("nbd-cli-del-held")?;
    let running = Kind::QemuNbd.start(&scratch, None)?;
    let added = cli_add(&running, &["--recovery", "--reconnect-limit", "120"])?;
    drop(running);
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn({
        let dev = added.block_dev();
        move || {
            let read = open_direct(&dev).and_then(|f| f.read_exact_at(&mut vec![0; 4096], 0));
            let _ = done.send(read);
        }
    });
    let status = || list_status(added.id).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(20), || status().contains("I/O is held")),
        "the read is held: {}",
        status()
    );
    let start = Instant::now();
    del(&added)?;
    let took = start.elapsed();
    println!("    del took {took:?}");
    assert!(
        took < Duration::from_secs(60),
        "del returned before the reconnection limit ({took:?})"
    );
    let read = result
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| failed("the held read never returned"))?;
    let errno = read.err().and_then(|e| e.raw_os_error());
    assert_eq!(errno, Some(libc::EIO), "the held read fails with EIO");
    Ok(())
}

/// `kill -9` of the `ublk add -t nbd --recovery` server during fio verify, then `ublk
/// recover`: the new server connects to the export again (the record says where) and fio
/// verifies every block.
fn cli_kill_9_and_recover_under_fio_verify() -> TestResult {
    let scratch = Scratch::new("nbd-cli-recover")?;
    let running = Kind::NbdServer.start(&scratch, None)?;
    let added = cli_add(&running, &["-q", "2", "--recovery"])?;
    let child = fio::spawn(fio_verify_cmd(&added.block_dev(), 32, SIZE))?;
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(added.pid)?;
    wait_state(added.id, "quiesced")?;
    let added = recover(&added)?;
    let (code, result) = fio_result(child, Duration::from_secs(240))?;
    assert_eq!((code, result.error), (0, 0), "fio verify passed");
    assert_eq!(
        (result.write_kib, result.read_kib),
        (SIZE >> 10, SIZE >> 10)
    );
    let v = list_one(added.id)?;
    assert_eq!(
        v.get("target").and_then(crate::json::Value::as_str),
        Some("nbd")
    );
    del(&added)
}
