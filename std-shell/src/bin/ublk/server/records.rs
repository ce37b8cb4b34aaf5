//! What a `ublk add` server records about its device, so that other `ublk` processes can show
//! it: `/run/ublk/<id>.json`, written when the device is live and removed when the server
//! stops it. The kernel knows the geometry and the server's pid, but not the target or its
//! backing file; this file does. It is written whole and renamed into place, so a reader
//! never sees half of one.

use std::path::{Path, PathBuf};

use ublk::DataPath;

use crate::json::{self, Value};
use crate::target::{Kind, TargetSpec};

/// Where the records live (a tmpfs: they describe running servers, not configuration).
pub const RUN_DIR: &str = "/run/ublk";

/// The format of the file; bumped if a field changes meaning.
const FORMAT: u64 = 1;

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
}

impl Record {
    /// The record as JSON (the file's content).
    pub fn to_json(&self) -> Value {
        let t = &self.target;
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
        ])
    }

    /// Reads a record back; every field is checked.
    pub fn from_json(v: &Value) -> Result<Record, String> {
        let field = |name: &str| v.get(name).ok_or(format!("no \"{name}\""));
        let bad = |name: &str| format!("\"{name}\" has the wrong type");
        let opt_u64 = |name: &str| -> Result<Option<u64>, String> {
            match v.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x.as_u64().map(Some).ok_or_else(|| bad(name)),
            }
        };
        let boolean = |name: &str| field(name)?.as_bool().ok_or_else(|| bad(name));
        let format = field("format")?.as_u64().ok_or_else(|| bad("format"))?;
        if format != FORMAT {
            return Err(format!("format {format}, this ublk reads {FORMAT}"));
        }
        let kind_name = field("target")?.as_str().ok_or_else(|| bad("target"))?;
        let kind = Kind::from_name(kind_name).ok_or(format!("unknown target {kind_name:?}"))?;
        let file = match v.get("file") {
            None | Some(Value::Null) => None,
            Some(f) => Some(PathBuf::from(f.as_str().ok_or_else(|| bad("file"))?)),
        };
        let lbs = opt_u64("logical_block_size")?
            .map(|n| u32::try_from(n).map_err(|_| bad("logical_block_size")))
            .transpose()?;
        // Absent from records of earlier builds, which served the copy path.
        let data_path = match v.get("data_path") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let name = p.as_str().ok_or_else(|| bad("data_path"))?;
                Some(DataPath::from_name(name).ok_or(format!("unknown data path {name:?}"))?)
            }
        };
        Ok(Record {
            id: field("id")?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad("id"))?,
            pid: field("pid")?
                .as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad("pid"))?,
            target: TargetSpec {
                kind,
                file,
                data_path,
                size: opt_u64("size")?,
                buffered: boolean("buffered")?,
                read_only: boolean("read_only")?,
                logical_block_size: lbs,
            },
            direct_io: match v.get("direct_io") {
                None | Some(Value::Null) => None,
                Some(b) => Some(b.as_bool().ok_or_else(|| bad("direct_io"))?),
            },
            // Absent from records of earlier builds.
            capacity: opt_u64("capacity")?,
        })
    }
}

/// The record's path for device `id` in `dir`.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id}.json"))
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
    std::fs::create_dir_all(dir).map_err(what)?;
    let tmp = dir.join(format!(".{}.json.{}", record.id, record.pid));
    std::fs::write(&tmp, record.to_json().pretty() + "\n").map_err(what)?;
    std::fs::rename(&tmp, path(dir, record.id)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        what(e)
    })
}

/// The record of device `id`, if there is one.
pub fn read(dir: &Path, id: u32) -> Result<Option<Record>, String> {
    let file = path(dir, id);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    json::parse(&text)
        .and_then(|v| Record::from_json(&v))
        .map(Some)
        .map_err(|e| format!("{}: {e}", file.display()))
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
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ublk-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
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
            },
            direct_io: Some(true),
            capacity: Some(2 << 30),
        }
    }

    #[test]
    fn written_records_read_back() {
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
            },
            direct_io: None,
            capacity: None,
            ..r
        };
        write(&dir, &none).expect("write");
        assert_eq!(read(&dir, 7), Ok(Some(none)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_records_are_errors_naming_the_file() {
        let dir = scratch("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let good = record().to_json().to_string();
        let cases = [
            ("{", "invalid JSON"),
            ("[]", "no \"format\""),
            (&good.replace("\"format\":1", "\"format\":2"), "format 2"),
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
        ];
        for (text, want) in cases {
            std::fs::write(path(&dir, 7), text).unwrap();
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
