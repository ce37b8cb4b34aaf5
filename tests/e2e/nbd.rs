//! The NBD client's handshake against real NBD servers, run in the VM: nbd-server, qemu-nbd
//! and nbdkit (shipped by scripts/vm-test.sh). For each: the export's size and flags as the
//! server describes them, a READ (and a WRITE) on the stream the handshake leaves, and an
//! unknown export refused by name; and with nothing listening, connecting fails at once.
//!
//! These need no ublk feature. A server that is not installed skips its test, by name.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ublk::Features;
use ublk::signal::process_alive;

use crate::backends::{Scratch, path_str, random_bytes};
use crate::cli::wait_until;
use crate::fio::{failed, io_err};
use crate::harness::{NotPassed, Test, TestResult, skip};
use crate::nbd_client::connect::{Address, Stream, connect};
use crate::nbd_client::error::HandshakeError;
use crate::nbd_client::handshake::Export;
use crate::nbd_client::proto::{
    CmdFlags, Command as NbdCommand, NBD_REP_ERR_UNKNOWN, Request, SIMPLE_REPLY_LEN, SimpleReply,
    TransmissionFlags,
};

const MIB: u64 = 1 << 20;

/// The export every server serves: 64 MiB.
const SIZE: u64 = 64 * MIB;

/// How long a server may take to start serving and a handshake to finish. Generous: under
/// TCG on a busy host nbd-server spends 2 to 8 s of emulated CPU starting, with its socket
/// already listening (connections wait in its backlog), and the handshake's time limit is
/// tested on the host (the library's unit tests), not here.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long a request's reply may take.
const REPLY_LIMIT: Duration = Duration::from_secs(30);

macro_rules! tests {
    ($($name:literal => $run:expr,)*) => {
        &[$(Test { name: $name, needs: Features::empty(), run: $run },)*]
    };
}

/// The tests of this file, in the order they run.
pub const TESTS: &[Test] = tests![
    "nbd::handshake_with_nbd_server" => handshake_with_nbd_server,
    "nbd::handshake_with_qemu_nbd" => handshake_with_qemu_nbd,
    "nbd::handshake_with_nbdkit_memory" => handshake_with_nbdkit_memory,
    "nbd::nothing_listening_fails_in_time" => nothing_listening_fails_in_time,
];

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

    /// Connects for export `name` once the server listens (refused connections are retried)
    /// and serves, all within [`START_LIMIT`].
    fn connect(&self, address: &Address, name: &str) -> Result<(Stream, Export), HandshakeError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match connect(address, name, left.max(Duration::from_millis(1))) {
                Err(HandshakeError::Connect { source, .. })
                    if Instant::now() < deadline
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                        ) =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    /// Connects to export `name`, which must be served.
    fn open(&self, address: &Address, name: &str) -> Result<(Stream, Export), NotPassed> {
        let (stream, export) = self
            .connect(address, name)
            .map_err(|e| self.failure(&format!("export '{name}' at {address}: {e}")))?;
        // A server that stops answering fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(REPLY_LIMIT))
            .map_err(io_err("setting a timeout"))?;
        println!(
            "    {}: export '{}' at {address}: {} bytes, flags {}, block sizes {:?}",
            self.name, export.name, export.size, export.flags, export.block_sizes
        );
        Ok((stream, export))
    }

    /// Checks that export `name` is refused, by name, with `NBD_REP_ERR_UNKNOWN`.
    fn refuses(&self, address: &Address, name: &str) -> TestResult {
        match self.connect(address, name) {
            Ok((_, export)) => {
                Err(self.failure(&format!("export '{name}' was accepted: {export:?}")))
            }
            Err(e @ HandshakeError::Refused { reply, .. }) if reply == NBD_REP_ERR_UNKNOWN => {
                let want = format!(
                    "the NBD server refused export '{name}': NBD_REP_ERR_UNKNOWN (no such export)"
                );
                assert!(e.to_string().starts_with(&want), "{e}");
                println!("    {}: {e}", self.name);
                Ok(())
            }
            Err(e) => Err(self.failure(&format!("export '{name}': not refused by name: {e}"))),
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

/// Sends `request` (and `data` for a WRITE) and reads its simple reply, which must be a
/// success for this request; returns the data of a READ.
fn transact(stream: &mut Stream, request: Request, data: &[u8]) -> Result<Vec<u8>, NotPassed> {
    stream
        .write_all(&request.encode())
        .map_err(io_err("sending a request"))?;
    stream
        .write_all(data)
        .map_err(io_err("sending a WRITE's data"))?;
    let mut header = [0; SIMPLE_REPLY_LEN];
    stream
        .read_exact(&mut header)
        .map_err(io_err("reading a reply"))?;
    let reply =
        SimpleReply::decode(&header).map_err(|e| failed(format!("{}: {e}", request.command)))?;
    if reply.cookie != request.cookie || reply.error.is_some() {
        return Err(failed(format!("{} answered {reply:?}", request.command)));
    }
    let len = match request.command {
        NbdCommand::Read => request.length as usize,
        _ => 0,
    };
    let mut got = vec![0; len];
    stream
        .read_exact(&mut got)
        .map_err(io_err("reading a READ's data"))?;
    Ok(got)
}

fn request(command: NbdCommand, cookie: u64, offset: u64, length: u32) -> Request {
    Request {
        flags: CmdFlags::empty(),
        command,
        cookie,
        offset,
        length,
    }
}

/// The transmission phase starts where the handshake ended: READ `want.len()` bytes at
/// `offset` (after writing them there first if `write`), compare, and disconnect.
fn read_back(mut stream: Stream, offset: u64, want: &[u8], write: bool) -> TestResult {
    let len = want.len() as u32;
    if write {
        transact(
            &mut stream,
            request(NbdCommand::Write, 1, offset, len),
            want,
        )?;
    }
    let got = transact(&mut stream, request(NbdCommand::Read, 2, offset, len), &[])?;
    assert!(
        got == want,
        "READ at {offset} returned other bytes than were written there"
    );
    stream
        .write_all(&request(NbdCommand::Disc, 3, 0, 0).encode())
        .map_err(io_err("sending NBD_CMD_DISC"))?;
    Ok(())
}

/// A file of `SIZE` bytes holding `pattern` at `offset`, for servers that export files.
fn backing_file(
    scratch: &Scratch,
    name: &str,
    offset: u64,
    pattern: &[u8],
) -> Result<PathBuf, NotPassed> {
    use std::os::unix::fs::FileExt;
    let path = scratch.file(name, SIZE)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_err("opening a backing file"))?;
    file.write_all_at(pattern, offset)
        .map_err(io_err("writing a backing file"))?;
    Ok(path)
}

/// `127.0.0.1:port` (the VM's loopback interface is up: scripts/vm/init).
fn loopback(port: u16) -> Address {
    Address::Tcp {
        host: "127.0.0.1".into(),
        port,
    }
}

fn has(export: &Export, flags: TransmissionFlags) {
    assert!(
        export.flags.contains(flags),
        "{}: flags {}, want {flags}",
        export.name,
        export.flags
    );
}

// --- tests -----------------------------------------------------------------------------------

/// nbd-server (the reference server) over TCP, with a writable and a read-only export.
fn handshake_with_nbd_server() -> TestResult {
    require(&["nbd-server"])?;
    let scratch = Scratch::new("nbd-server")?;
    let pattern = random_bytes(1, 4096);
    let disk = backing_file(&scratch, "disk.img", 8192, &pattern)?;
    let ro = scratch.file("ro.img", SIZE)?;
    let config = scratch.dir().join("config");
    let pid_file = scratch.dir().join("pid");
    // No user/group: it stays root, the only user the VM has. No allowlist: NBD_OPT_LIST is
    // refused, which nothing here uses.
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
        &scratch,
    )?;
    let address = loopback(10809);

    let (stream, export) = server.open(&address, "disk")?;
    assert_eq!(export.size, SIZE);
    has(
        &export,
        TransmissionFlags::SEND_FLUSH | TransmissionFlags::SEND_FUA | TransmissionFlags::SEND_TRIM,
    );
    assert!(
        !export.flags.contains(TransmissionFlags::READ_ONLY),
        "{}",
        export.flags
    );
    read_back(stream, 8192, &pattern, false)?;

    let (stream, export) = server.open(&address, "ro")?;
    has(&export, TransmissionFlags::READ_ONLY);
    read_back(stream, 0, &[0; 512], false)?;

    server.refuses(&address, "nope")
}

/// qemu-nbd on a raw file, over a Unix socket: it gives block sizes.
fn handshake_with_qemu_nbd() -> TestResult {
    require(&["qemu-nbd"])?;
    let scratch = Scratch::new("qemu-nbd")?;
    let pattern = random_bytes(2, 4096);
    let disk = backing_file(&scratch, "disk.img", MIB, &pattern)?;
    let socket = scratch.dir().join("qemu-nbd.sock");
    let server = Server::spawn(
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
    let address = Address::Unix(socket);

    let (stream, export) = server.open(&address, "disk")?;
    assert_eq!(export.size, SIZE);
    has(
        &export,
        TransmissionFlags::SEND_FLUSH
            | TransmissionFlags::SEND_FUA
            | TransmissionFlags::SEND_TRIM
            | TransmissionFlags::SEND_WRITE_ZEROES,
    );
    let sizes = export
        .block_sizes
        .ok_or_else(|| server.failure("no NBD_INFO_BLOCK_SIZE"))?;
    assert!(
        sizes.min <= 512 && sizes.preferred >= 512 && sizes.max >= MIB as u32,
        "{sizes:?}"
    );
    read_back(stream, MIB, &pattern, false)?;

    server.refuses(&address, "nope")
}

/// nbdkit's memory plugin over TCP, strict about its export name (the exportname filter:
/// the plugin alone takes any name).
fn handshake_with_nbdkit_memory() -> TestResult {
    require(&["nbdkit"])?;
    let scratch = Scratch::new("nbdkit")?;
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
            "64M",
            "exportname=disk",
            "exportname-strict=true",
        ],
        &scratch,
    )?;
    let address = loopback(10811);

    let (stream, export) = server.open(&address, "disk")?;
    assert_eq!(export.size, SIZE);
    has(
        &export,
        TransmissionFlags::SEND_FLUSH
            | TransmissionFlags::SEND_TRIM
            | TransmissionFlags::SEND_WRITE_ZEROES
            | TransmissionFlags::CAN_MULTI_CONN,
    );
    read_back(stream, 3 * MIB, &random_bytes(3, 8192), true)?;

    server.refuses(&address, "nope")
}

/// Nothing listening: a refused TCP connection and a missing socket fail at once, by name.
fn nothing_listening_fails_in_time() -> TestResult {
    let limit = Duration::from_secs(3);
    let cases = [
        loopback(1),
        Address::Unix(PathBuf::from("/tmp/no-nbd-server-here.sock")),
    ];
    for address in cases {
        let start = Instant::now();
        let err = match connect(&address, "disk", limit) {
            Ok((_, export)) => return Err(failed(format!("{address}: connected: {export:?}"))),
            Err(e) => e,
        };
        assert!(start.elapsed() < limit, "{address}: {:?}", start.elapsed());
        assert!(
            matches!(err, HandshakeError::Connect { .. }),
            "{address}: {err}"
        );
        let want = format!("cannot connect to the NBD server at {address}: ");
        assert!(err.to_string().starts_with(&want), "{err}");
        println!("    {err}");
    }
    Ok(())
}
