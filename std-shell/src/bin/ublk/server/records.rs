//! What a `ublk add` server records about its device, so that other `ublk` processes can show
//! it and `ublk recover` can serve it again: `/run/ublk/<id>.json`, written when the device is
//! live and removed when the server stops it. The kernel knows the geometry and the server's
//! pid, but not the target or its backing file; this file does.
//!
//! A record is trusted only as far as it can be checked:
//! - it is tied to one device: the server's pid (which the kernel reports while that server
//!   lives) and a fingerprint of the device (its flags, queues, depth, largest I/O, and the
//!   inodes the kernel gave its sysfs directory and `/dev/ublkcN` when it was added, which
//!   differ between two devices of the same id). A record of a deleted device is never taken
//!   for a new device of the same id ([`Record::tied_to`]);
//! - the directory and the files are root's (the user running `ublk`) and writable by no one
//!   else, whatever the umask; a record is written whole under a name no one can guess,
//!   created exclusively and never through a symbolic link, then renamed into place, and read
//!   without following one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ublk::backend::NbdAddress;
use ublk::json::{self, Value};
use ublk::{DataPath, DeviceInfo};

use super::target::{Kind, NbdSpec, TargetSpec};

/// Where the records live (a tmpfs: they describe running servers, not configuration).
pub const RUN_DIR: &str = "/run/ublk";

/// The format of the file; bumped when a field changes meaning. Format 2 ties the record to
/// its device (`device`); records of format 1 cannot be tied, and are not read.
const FORMAT: u64 = 2;

/// The directory's mode: root's, readable by all (`ublk list` shows the targets).
const DIR_MODE: u32 = 0o755;

/// A record's mode.
const FILE_MODE: u32 = 0o644;

/// The most a record may hold: far more than one ever does.
const MAX_RECORD_BYTES: u64 = 64 << 10;

/// What ties a record to one device: what GET_DEV_INFO reports of it, and the inodes the
/// kernel gave it when it was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// `UBLK_F_*` flags, as the driver granted them.
    pub flags: u64,
    /// Hardware queues.
    pub queues: u16,
    /// Tags per queue.
    pub depth: u16,
    /// Largest request in bytes.
    pub max_io_bytes: u32,
    /// The inode of the device's sysfs directory (`/sys/class/ublk-char/ublkcN`): kernfs never
    /// gives one twice.
    pub sysfs_inode: Option<u64>,
    /// The inode of `/dev/ublkcN`, made anew for each device.
    pub node_inode: Option<u64>,
}

impl Fingerprint {
    /// The fingerprint of device `info` as it is now.
    pub fn of(info: &DeviceInfo) -> Fingerprint {
        let inode = |path: String| std::fs::metadata(path).ok().map(|m| m.ino());
        Fingerprint {
            flags: info.flags().bits(),
            queues: info.queues(),
            depth: info.queue_depth(),
            max_io_bytes: info.max_io_bytes(),
            sysfs_inode: inode(format!("/sys/class/ublk-char/ublkc{}", info.id())),
            node_inode: inode(info.char_dev_path().display().to_string()),
        }
    }

    /// Whether `now` (the device as it is) is the device this fingerprint was taken of: the
    /// same settings, and every inode both know the same (at least one).
    pub fn matches(&self, now: &Fingerprint) -> Result<(), String> {
        if (self.flags, self.queues, self.depth, self.max_io_bytes)
            != (now.flags, now.queues, now.depth, now.max_io_bytes)
        {
            return Err("the device's flags, queues, depth or largest I/O differ".into());
        }
        let mut compared = false;
        for (was, is, what) in [
            (self.sysfs_inode, now.sysfs_inode, "sysfs directory"),
            (self.node_inode, now.node_inode, "/dev node"),
        ] {
            if let (Some(was), Some(is)) = (was, is) {
                if was != is {
                    return Err(format!("the device's {what} is another one"));
                }
                compared = true;
            }
        }
        if compared {
            Ok(())
        } else {
            Err("neither its sysfs directory nor its /dev node can be compared".into())
        }
    }
}

/// One device's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The device id.
    pub id: u32,
    /// The serving process.
    pub pid: i32,
    /// The target as `ublk add` was asked for it (the file path made absolute).
    pub target: TargetSpec,
    /// For loop: whether the file is served with direct I/O.
    pub direct_io: Option<bool>,
    /// The most bytes the device may be resized to (what the target holds), if known.
    pub capacity: Option<u64>,
    /// The device the record describes.
    pub device: Fingerprint,
    /// What the target is doing, where it can say (an NBD target's connections), as the
    /// server last wrote it.
    pub status: Option<String>,
}

impl Record {
    /// Whether this record describes device `info` (as the kernel reports it now): its
    /// server is the record's (while the kernel names one) and its fingerprint matches.
    /// The reason if not.
    pub fn tied_to(&self, info: &DeviceInfo) -> Result<(), String> {
        if let Some(pid) = info.server_pid()
            && pid != self.pid
        {
            return Err(format!(
                "it names server pid {}, but the device is served by pid {pid}",
                self.pid
            ));
        }
        self.device.matches(&Fingerprint::of(info))
    }

    /// The record as JSON (the file's content).
    pub fn to_json(&self) -> Value {
        let t = &self.target;
        let d = &self.device;
        Value::Object(vec![
            ("format".into(), Value::num(FORMAT)),
            ("id".into(), Value::num(self.id)),
            ("pid".into(), Value::int(i64::from(self.pid))),
            ("target".into(), Value::str(t.kind.name())),
            (
                "file".into(),
                Value::opt(t.file.as_ref().map(|f| Value::str(f.to_string_lossy()))),
            ),
            ("size".into(), Value::opt(t.size.map(Value::num))),
            ("buffered".into(), Value::Bool(t.buffered)),
            ("read_only".into(), Value::Bool(t.read_only)),
            (
                "logical_block_size".into(),
                Value::opt(t.logical_block_size.map(Value::num)),
            ),
            (
                "direct_io".into(),
                Value::opt(self.direct_io.map(Value::Bool)),
            ),
            ("capacity".into(), Value::opt(self.capacity.map(Value::num))),
            (
                "data_path".into(),
                Value::opt(t.data_path.map(|p| Value::str(p.name()))),
            ),
            ("nbd".into(), Value::opt(t.nbd.as_ref().map(nbd_json))),
            (
                "status".into(),
                Value::opt(self.status.as_deref().map(Value::str)),
            ),
            (
                "device".into(),
                Value::Object(vec![
                    ("flags".into(), Value::num(d.flags)),
                    ("queues".into(), Value::num(d.queues)),
                    ("depth".into(), Value::num(d.depth)),
                    ("max_io_size".into(), Value::num(d.max_io_bytes)),
                    (
                        "sysfs_inode".into(),
                        Value::opt(d.sysfs_inode.map(Value::num)),
                    ),
                    (
                        "node_inode".into(),
                        Value::opt(d.node_inode.map(Value::num)),
                    ),
                ]),
            ),
        ])
    }

    /// Reads a record back; every field is checked.
    pub fn from_json(v: &Value) -> Result<Record, String> {
        let format = field(v, "format")?.as_u64().ok_or_else(|| bad("format"))?;
        if format != FORMAT {
            return Err(format!("format {format}, this ublk reads {FORMAT}"));
        }
        let kind_name = field(v, "target")?.as_str().ok_or_else(|| bad("target"))?;
        let kind = Kind::from_name(kind_name).ok_or(format!("unknown target {kind_name:?}"))?;
        let file = match v.get("file") {
            None | Some(Value::Null) => None,
            Some(f) => Some(PathBuf::from(f.as_str().ok_or_else(|| bad("file"))?)),
        };
        let data_path = match v.get("data_path") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let name = p.as_str().ok_or_else(|| bad("data_path"))?;
                Some(DataPath::from_name(name).ok_or(format!("unknown data path {name:?}"))?)
            }
        };
        let d = field(v, "device")?;
        if !matches!(d, Value::Object(_)) {
            return Err(bad("device"));
        }
        let nbd = match v.get("nbd") {
            None | Some(Value::Null) => None,
            Some(n) => Some(nbd_from_json(n)?),
        };
        let status = match v.get("status") {
            None | Some(Value::Null) => None,
            Some(s) => Some(s.as_str().ok_or_else(|| bad("status"))?.to_string()),
        };
        Ok(Record {
            id: int(v, "id")?,
            pid: field(v, "pid")?
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("pid"))?,
            target: TargetSpec {
                kind,
                file,
                data_path,
                size: opt_int(v, "size")?,
                buffered: boolean(v, "buffered")?,
                read_only: boolean(v, "read_only")?,
                logical_block_size: opt_int(v, "logical_block_size")?,
                nbd,
            },
            direct_io: match v.get("direct_io") {
                None | Some(Value::Null) => None,
                Some(b) => Some(b.as_bool().ok_or_else(|| bad("direct_io"))?),
            },
            capacity: opt_int(v, "capacity")?,
            device: Fingerprint {
                flags: int(d, "flags")?,
                queues: int(d, "queues")?,
                depth: int(d, "depth")?,
                max_io_bytes: int(d, "max_io_size")?,
                sysfs_inode: opt_int(d, "sysfs_inode")?,
                node_inode: opt_int(d, "node_inode")?,
            },
            status,
        })
    }
}

/// An NBD export in a record: `{"host", "port"}` or `{"socket"}`, with `export`,
/// `connections` and `reconnect_secs` (null: none).
fn nbd_json(n: &NbdSpec) -> Value {
    let (host, port, socket) = match &n.address {
        NbdAddress::Tcp { host, port } => (Some(Value::str(host)), Some(Value::num(*port)), None),
        NbdAddress::Unix(path) => (None, None, Some(Value::str(path.to_string_lossy()))),
    };
    Value::Object(vec![
        ("host".into(), Value::opt(host)),
        ("port".into(), Value::opt(port)),
        ("socket".into(), Value::opt(socket)),
        ("export".into(), Value::str(&n.export)),
        ("connections".into(), Value::num(n.connections)),
        (
            "reconnect_secs".into(),
            Value::opt(n.reconnect_secs.map(Value::num)),
        ),
    ])
}

fn nbd_from_json(v: &Value) -> Result<NbdSpec, String> {
    if !matches!(v, Value::Object(_)) {
        return Err(bad("nbd"));
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(s) => Ok(Some(s.as_str().ok_or_else(|| bad(name))?.to_string())),
        }
    };
    let address = match (text("host")?, opt_int::<u16>(v, "port")?, text("socket")?) {
        (Some(host), Some(port), None) => NbdAddress::Tcp { host, port },
        (None, None, Some(path)) => NbdAddress::Unix(PathBuf::from(path)),
        _ => return Err("\"nbd\" needs host and port, or socket".into()),
    };
    Ok(NbdSpec {
        address,
        export: text("export")?.ok_or_else(|| bad("export"))?,
        connections: int(v, "connections")?,
        reconnect_secs: opt_int(v, "reconnect_secs")?,
    })
}

fn field<'v>(v: &'v Value, name: &str) -> Result<&'v Value, String> {
    v.get(name).ok_or(format!("no \"{name}\""))
}

fn bad(name: &str) -> String {
    format!("\"{name}\" has the wrong type")
}

/// A required unsigned integer that fits `T`.
fn int<T: TryFrom<u64>>(v: &Value, name: &str) -> Result<T, String> {
    field(v, name)?
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| bad(name))
}

/// An unsigned integer that fits `T`, or nothing (missing or null).
fn opt_int<T: TryFrom<u64>>(v: &Value, name: &str) -> Result<Option<T>, String> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => int(v, name).map(Some),
    }
}

fn boolean(v: &Value, name: &str) -> Result<bool, String> {
    field(v, name)?.as_bool().ok_or_else(|| bad(name))
}

/// The record's path for device `id` in `dir`.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Checks that `meta` (of the records' directory or a record) belongs to the user running
/// `ublk` and that no one else may write it.
fn owned_and_private(meta: &std::fs::Metadata, what: &Path) -> Result<(), String> {
    let uid = ublk::os::effective_uid();
    if meta.uid() != uid {
        return Err(format!(
            "{} belongs to uid {}, not to uid {uid} running ublk: refused",
            what.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by others (mode {:o}): refused",
            what.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Checks the records' directory: a directory (not a link to one), owned and private.
fn check_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.file_type().is_dir() {
        return Err(format!("{} is not a directory: refused", dir.display()));
    }
    owned_and_private(&meta, dir)
}

/// Writes `record` to `dir/<id>.json`, atomically (a temporary file renamed over it).
pub fn write(dir: &Path, record: &Record) -> Result<(), String> {
    let what = |e: std::io::Error| {
        format!(
            "cannot record device {} in {}: {e}",
            record.id,
            dir.display()
        )
    };
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        // The mode asked for is masked by the umask: set it whole.
        Ok(()) => {
            std::fs::set_permissions(dir, PermissionsExt::from_mode(DIR_MODE)).map_err(what)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(what(e)),
    }
    check_dir(dir).map_err(|why| format!("cannot record device {}: {why}", record.id))?;
    let random = ublk::os::random_u64().map_err(what)?;
    let tmp = dir.join(format!(".{}.json.{random:016x}", record.id));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.set_permissions(PermissionsExt::from_mode(FILE_MODE))?;
        file.write_all((record.to_json().pretty() + "\n").as_bytes())?;
        // rename() replaces whatever is at the record's name, a link included, and never
        // writes through one.
        std::fs::rename(&tmp, path(dir, record.id))
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        what(e)
    })
}

/// The record of device `id`, if there is one. A record that is not a regular file owned by
/// the user running `ublk` and writable by no one else is an error, and so is a symbolic link.
pub fn read(dir: &Path, id: u32) -> Result<Option<Record>, String> {
    let file = path(dir, id);
    let shown = || file.display();
    if !dir.exists() {
        return Ok(None);
    }
    check_dir(dir)?;
    let mut f = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("{} is a symbolic link: refused", shown()));
        }
        Err(e) => return Err(format!("{}: {e}", shown())),
    };
    let meta = f.metadata().map_err(|e| format!("{}: {e}", shown()))?;
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file: refused", shown()));
    }
    owned_and_private(&meta, &file)?;
    let mut text = String::new();
    (&mut f)
        .take(MAX_RECORD_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", shown()))?;
    json::parse(&text)
        .and_then(|v| Record::from_json(&v))
        .map(Some)
        .map_err(|e| format!("{}: {e}", shown()))
}

/// Device `id`'s record in `dir`, if it describes the device `info` reports: `None` when
/// there is none, or it is another device's (left by a server of an earlier device of the
/// same id), or it cannot be read. For showing, not for acting on: `recover` wants the reason.
pub fn read_tied(dir: &Path, info: &DeviceInfo) -> Option<Record> {
    read(dir, info.id())
        .ok()
        .flatten()
        .filter(|r| r.tied_to(info).is_ok())
}

/// Removes device `id`'s record if it is the one server `pid` wrote: a record a newer server
/// of the same id wrote stays.
pub fn remove(dir: &Path, id: u32, pid: i32) {
    if let Ok(Some(r)) = read(dir, id)
        && r.pid == pid
    {
        let _ = std::fs::remove_file(path(dir, id));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The umask is the process's: tests that change it run one at a time.
    static UMASK: Mutex<()> = Mutex::new(());

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ublk-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    pub(crate) fn fingerprint() -> Fingerprint {
        Fingerprint {
            flags: 0x1fe,
            queues: 2,
            depth: 64,
            max_io_bytes: 512 << 10,
            sysfs_inode: Some(4711),
            node_inode: Some(12),
        }
    }

    fn record() -> Record {
        Record {
            id: 7,
            pid: 4242,
            target: TargetSpec {
                kind: Kind::Loop,
                file: Some(PathBuf::from("/srv/disk \"a\".img")),
                data_path: Some(ublk::DataPath::ZeroCopy),
                size: Some(1 << 30),
                buffered: false,
                read_only: true,
                logical_block_size: Some(4096),
                nbd: None,
            },
            direct_io: Some(true),
            capacity: Some(2 << 30),
            device: fingerprint(),
            status: None,
        }
    }

    #[test]
    fn written_records_read_back() {
        let _umask = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = scratch("rw");
        let r = record();
        write(&dir, &r).expect("write");
        assert_eq!(read(&dir, 7), Ok(Some(r.clone())));
        assert_eq!(read(&dir, 8), Ok(None));
        // Only the server that wrote it removes it.
        remove(&dir, 7, 1);
        assert!(path(&dir, 7).exists());
        remove(&dir, 7, 4242);
        assert!(!path(&dir, 7).exists());
        let none = Record {
            target: TargetSpec {
                kind: Kind::Null,
                file: None,
                data_path: None,
                size: None,
                buffered: false,
                read_only: false,
                logical_block_size: None,
                nbd: None,
            },
            direct_io: None,
            capacity: None,
            device: Fingerprint {
                sysfs_inode: None,
                ..fingerprint()
            },
            ..r
        };
        write(&dir, &none).expect("write");
        assert_eq!(read(&dir, 7), Ok(Some(none.clone())));
        for address in [
            NbdAddress::Tcp {
                host: "::1".into(),
                port: 10809,
            },
            NbdAddress::Unix(PathBuf::from("/run/nbd.sock")),
        ] {
            let nbd = Record {
                target: TargetSpec {
                    kind: Kind::Nbd,
                    nbd: Some(NbdSpec {
                        address,
                        export: "disk \"x\"".into(),
                        connections: 2,
                        reconnect_secs: Some(60),
                    }),
                    ..none.target.clone()
                },
                status: Some("connection 1: lost (...); I/O is held".into()),
                ..none.clone()
            };
            write(&dir, &nbd).expect("write");
            assert_eq!(read(&dir, 7), Ok(Some(nbd)));
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Defect 5 of issue 18: modes came from the umask, the temporary name was predictable,
    /// symbolic links were followed and readers checked no owner.
    #[test]
    fn records_are_private_whatever_the_umask_and_links_are_refused() {
        let _umask = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        for mask in [0o077, 0o000] {
            let dir = scratch(&format!("mode{mask:o}"));
            let old = ublk::os::set_umask(mask);
            let written = write(&dir, &record());
            ublk::os::set_umask(old);
            written.expect("write");
            let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
            assert_eq!(mode(&dir), DIR_MODE, "umask {mask:o}");
            assert_eq!(mode(&path(&dir, 7)), FILE_MODE, "umask {mask:o}");
            let _ = std::fs::remove_dir_all(&dir);
        }

        let dir = scratch("links");
        write(&dir, &record()).unwrap();
        let elsewhere = dir.join("elsewhere.json");
        std::fs::rename(path(&dir, 7), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, path(&dir, 7)).unwrap();
        let err = read(&dir, 7).unwrap_err();
        assert!(err.ends_with("is a symbolic link: refused"), "{err}");
        // A writer replaces the link, and writes nothing through it.
        let before = std::fs::read(&elsewhere).unwrap();
        let newer = Record {
            pid: 99,
            ..record()
        };
        write(&dir, &newer).unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), before);
        assert!(
            !std::fs::symlink_metadata(path(&dir, 7))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(read(&dir, 7).unwrap().map(|r| r.pid), Some(99));

        // Writable by others: refused.
        std::fs::set_permissions(path(&dir, 7), PermissionsExt::from_mode(0o666)).unwrap();
        let err = read(&dir, 7).unwrap_err();
        assert!(
            err.contains("is writable by others (mode 666): refused"),
            "{err}"
        );
        std::fs::set_permissions(path(&dir, 7), PermissionsExt::from_mode(0o644)).unwrap();
        // A directory writable by others: neither read nor written.
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o777)).unwrap();
        assert!(read(&dir, 7).unwrap_err().contains("writable by others"));
        assert!(
            write(&dir, &record())
                .unwrap_err()
                .contains("writable by others")
        );
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        // A directory that is a link: refused.
        let link = scratch("dirlink");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(
            read(&link, 7)
                .unwrap_err()
                .ends_with("is not a directory: refused")
        );
        assert!(write(&link, &record()).is_err());
        let _ = std::fs::remove_file(&link);
        // Owned by someone else (checked where this test may give files away: as root).
        if ublk::os::effective_uid() == 0 {
            std::os::unix::fs::chown(path(&dir, 7), Some(65534), None).unwrap();
            let err = read(&dir, 7).unwrap_err();
            assert!(err.contains("belongs to uid 65534, not to uid 0"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Defect 4 of issue 18: a record must describe the device it is read for.
    #[test]
    fn a_fingerprint_matches_only_its_own_device() {
        let f = fingerprint();
        assert_eq!(f.matches(&f), Ok(()));
        let only_node = Fingerprint {
            sysfs_inode: None,
            ..f
        };
        assert_eq!(f.matches(&only_node), Ok(()));
        let cases = [
            (
                Fingerprint {
                    node_inode: Some(13),
                    ..f
                },
                "/dev node is another one",
            ),
            (
                Fingerprint {
                    sysfs_inode: Some(1),
                    ..f
                },
                "sysfs directory is another one",
            ),
            (Fingerprint { depth: 128, ..f }, "flags, queues, depth"),
            (Fingerprint { flags: 0x1fc, ..f }, "flags, queues, depth"),
            (
                Fingerprint {
                    sysfs_inode: None,
                    node_inode: None,
                    ..f
                },
                "can be compared",
            ),
        ];
        for (now, want) in cases {
            let why = f.matches(&now).unwrap_err();
            assert!(why.contains(want), "{why}");
        }
    }

    #[test]
    fn bad_records_are_errors_naming_the_file() {
        let _umask = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        let dir = scratch("bad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        let good = record().to_json().to_string();
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "no \"format\""),
            (&good.replace("\"format\":2", "\"format\":1"), "format 1"),
            (&good.replace("\"loop\"", "\"tape\""), "unknown target"),
            (
                &good.replace("\"id\":7", "\"id\":-7"),
                "\"id\" has the wrong type",
            ),
            (
                &good.replace("\"pid\":4242", "\"pid\":\"x\""),
                "\"pid\" has",
            ),
            (
                &good.replace("\"read_only\":true", "\"read_only\":1"),
                "\"read_only\" has",
            ),
            (
                &good.replace("\"size\":1073741824", "\"size\":-1"),
                "\"size\" has",
            ),
            (
                &good.replace("\"capacity\":2147483648", "\"capacity\":true"),
                "\"capacity\" has",
            ),
            (
                &good.replace("\"queues\":2", "\"queues\":70000"),
                "\"queues\" has",
            ),
            (
                &good.replace(",\"device\":{", ",\"dev\":{"),
                "no \"device\"",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(path(&dir, 7), text).unwrap();
            std::fs::set_permissions(path(&dir, 7), PermissionsExt::from_mode(0o644)).unwrap();
            let err = read(&dir, 7).expect_err(text);
            assert!(
                err.starts_with(&path(&dir, 7).display().to_string()),
                "{err}"
            );
            assert!(err.contains(want), "{text}: {err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
