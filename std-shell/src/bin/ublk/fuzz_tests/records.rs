//! The records under /run/ublk: every record survives a round trip through its JSON, and a
//! record's JSON is read back only when every field has the documented type and range.

use std::path::PathBuf;

use ublk_core::testing::{Prng, fuzz};

use super::json::{number_text, string_value, value};
use crate::server::records::{Fingerprint, Record};
use crate::server::target::{Kind, NbdSpec, TargetSpec};
use ublk::DataPath;
use ublk::backend::NbdAddress;
use ublk::json::{self, Value};

fn record(p: &mut Prng) -> Record {
    let kind = *p.pick(&Kind::ALL);
    Record {
        id: p.interesting_u32(),
        pid: p.interesting_u32() as i32,
        target: TargetSpec {
            kind,
            file: p
                .bool()
                .then(|| PathBuf::from(format!("/{}", string_value(p)))),
            data_path: p.bool().then(|| *p.pick(&DataPath::ALL)),
            size: p.bool().then(|| p.interesting_u64()),
            buffered: p.bool(),
            read_only: p.bool(),
            logical_block_size: p.bool().then(|| p.interesting_u32()),
            nbd: p.bool().then(|| NbdSpec {
                address: if p.bool() {
                    NbdAddress::Tcp {
                        host: string_value(p),
                        port: p.interesting_u32() as u16,
                    }
                } else {
                    NbdAddress::Unix(PathBuf::from(format!("/{}", string_value(p))))
                },
                export: string_value(p),
                connections: p.interesting_u32() as u16,
                reconnect_secs: p.bool().then(|| p.interesting_u64()),
            }),
        },
        direct_io: p.bool().then(|| p.bool()),
        capacity: p.bool().then(|| p.interesting_u64()),
        device: Fingerprint {
            flags: p.interesting_u64(),
            queues: p.interesting_u32() as u16,
            depth: p.interesting_u32() as u16,
            max_io_bytes: p.interesting_u32(),
            sysfs_inode: p.bool().then(|| p.interesting_u64()),
            node_inode: p.bool().then(|| p.interesting_u64()),
        },
        status: p.bool().then(|| string_value(p)),
    }
}

/// What a record's JSON must hold, written from the format: an object with `format` 2; a
/// known `target`; `id` a u32 and `pid` an i32, both plain integers; `buffered` and
/// `read_only` booleans; and, each either missing or null, `file` a string, `size` a u64,
/// `logical_block_size` a u32, `direct_io` a boolean, `capacity` a u64 and `data_path` one of
/// the path names; and `device`, an object with `flags` a u64, `queues` and `depth` u16s,
/// `max_io_size` a u32, and `sysfs_inode` and `node_inode` u64s or null (or missing); and,
/// missing or null, `status` a string and `nbd` an object with `export` a string,
/// `connections` a u16, `reconnect_secs` a u64 or null (or missing), and either `host` a
/// string and `port` a u16 (`socket` missing or null) or `socket` a string (`host` and `port`
/// missing or null). The first of repeated keys counts.
fn record_rule(v: &Value) -> Option<Record> {
    let Value::Object(members) = v else {
        return None;
    };
    let get = |key: &str| members.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let integer = |v: &Value| -> Option<i128> {
        let Value::Number(text) = v else { return None };
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: i128 = digits.parse().ok()?;
        Some(if text.starts_with('-') { -n } else { n })
    };
    // Unsigned fields take no sign at all, not even "-0".
    let unsigned = |v: &Value| match v {
        Value::Number(t) if !t.starts_with('-') => integer(v),
        _ => None,
    };
    let optional = |key: &str| match get(key) {
        None | Some(Value::Null) => Some(None),
        Some(v) => Some(Some(v)),
    };
    let boolean = |v: &Value| match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    };
    if unsigned(get("format")?)? != 2 {
        return None;
    }
    let kind = match get("target")? {
        Value::String(name) => Kind::ALL.into_iter().find(|k| k.name() == name)?,
        _ => return None,
    };
    let file = match optional("file")? {
        None => None,
        Some(Value::String(f)) => Some(PathBuf::from(f)),
        Some(_) => return None,
    };
    let size = match optional("size")? {
        None => None,
        Some(v) => Some(u64::try_from(unsigned(v)?).ok()?),
    };
    let logical_block_size = match optional("logical_block_size")? {
        None => None,
        Some(v) => Some(u32::try_from(unsigned(v)?).ok()?),
    };
    let direct_io = match optional("direct_io")? {
        None => None,
        Some(v) => Some(boolean(v)?),
    };
    let capacity = match optional("capacity")? {
        None => None,
        Some(v) => Some(u64::try_from(unsigned(v)?).ok()?),
    };
    let data_path = match optional("data_path")? {
        None => None,
        Some(Value::String(name)) => Some(
            ["zero-copy", "user-copy", "copy"]
                .iter()
                .position(|n| n == name)
                .map(|i| DataPath::ALL[i])?,
        ),
        Some(_) => return None,
    };
    let Value::Object(device) = get("device")? else {
        return None;
    };
    let status = match optional("status")? {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let nbd = match optional("nbd")? {
        None => None,
        Some(Value::Object(n)) => {
            let at = |key: &str| match n.iter().find(|(k, _)| k == key).map(|(_, v)| v) {
                None | Some(Value::Null) => Some(None),
                Some(v) => Some(Some(v)),
            };
            let text = |key: &str| match at(key)? {
                None => Some(None),
                Some(Value::String(s)) => Some(Some(s.clone())),
                Some(_) => None,
            };
            let port = match at("port")? {
                None => None,
                Some(v) => Some(u16::try_from(unsigned(v)?).ok()?),
            };
            let address = match (text("host")?, port, text("socket")?) {
                (Some(host), Some(port), None) => NbdAddress::Tcp { host, port },
                (None, None, Some(path)) => NbdAddress::Unix(PathBuf::from(path)),
                _ => return None,
            };
            Some(NbdSpec {
                address,
                export: text("export")??,
                connections: u16::try_from(unsigned(at("connections")??)?).ok()?,
                reconnect_secs: match at("reconnect_secs")? {
                    None => None,
                    Some(v) => Some(u64::try_from(unsigned(v)?).ok()?),
                },
            })
        }
        Some(_) => return None,
    };
    let dev = |key: &str| device.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let dev_optional = |key: &str| match dev(key) {
        None | Some(Value::Null) => Some(None),
        Some(v) => Some(Some(u64::try_from(unsigned(v)?).ok()?)),
    };
    let fingerprint = Fingerprint {
        flags: u64::try_from(unsigned(dev("flags")?)?).ok()?,
        queues: u16::try_from(unsigned(dev("queues")?)?).ok()?,
        depth: u16::try_from(unsigned(dev("depth")?)?).ok()?,
        max_io_bytes: u32::try_from(unsigned(dev("max_io_size")?)?).ok()?,
        sysfs_inode: dev_optional("sysfs_inode")?,
        node_inode: dev_optional("node_inode")?,
    };
    Some(Record {
        id: u32::try_from(unsigned(get("id")?)?).ok()?,
        pid: i32::try_from(integer(get("pid")?)?).ok()?,
        target: TargetSpec {
            kind,
            file,
            data_path,
            size,
            buffered: boolean(get("buffered")?)?,
            read_only: boolean(get("read_only")?)?,
            logical_block_size,
            nbd,
        },
        direct_io,
        capacity,
        device: fingerprint,
        status,
    })
}

/// A replacement for a field: every type, and numbers at the edges of each field's range.
fn field_value(p: &mut Prng) -> Value {
    let numbers = [
        "0",
        "1",
        "-0",
        "-1",
        "2",
        "1.0",
        "1e3",
        "4294967295",
        "4294967296",
        "2147483647",
        "2147483648",
        "-2147483648",
        "-2147483649",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551615",
    ];
    match p.below(5) {
        0 => Value::Number(p.pick(&numbers).to_string()),
        1 => Value::Number(number_text(p)),
        2 => Value::String(
            p.pick(&["null", "mem", "loop", "tape", "", "/x"])
                .to_string(),
        ),
        _ => value(p, 1),
    }
}

#[test]
fn fuzz_records_round_trip_and_bad_fields_are_refused() {
    let keys = [
        "format",
        "id",
        "pid",
        "target",
        "file",
        "size",
        "buffered",
        "read_only",
        "logical_block_size",
        "direct_io",
        "capacity",
        "device",
        "nbd",
        "status",
    ];
    fuzz(1000, |p| {
        let r = record(p);
        let good = r.to_json();
        for t in [good.pretty(), good.to_string()] {
            let v = json::parse(&t).expect("a record is JSON");
            assert_eq!(Record::from_json(&v).as_ref(), Ok(&r), "{t}");
        }
        // The same record with fields removed, replaced, repeated or added.
        let Value::Object(mut members) = good else {
            panic!("a record is an object");
        };
        for _ in 0..p.range(1..=3) {
            let key = p.pick(&keys).to_string();
            let at = members.iter().position(|(k, _)| *k == key);
            match (p.below(4), at) {
                (0, Some(i)) => {
                    members.remove(i);
                }
                (1, Some(i)) => members[i].1 = field_value(p),
                (2, _) => members.insert(0, (key, field_value(p))),
                _ => members.push((string_value(p), field_value(p))),
            }
        }
        let v = if p.chance(1, 16) {
            Value::Array(vec![Value::Object(members)])
        } else {
            Value::Object(members)
        };
        match (Record::from_json(&v), record_rule(&v)) {
            (Ok(got), Some(want)) => assert_eq!(got, want),
            (Err(e), None) => assert!(!e.is_empty() && !e.contains('\n'), "{e:?}"),
            (got, want) => panic!("{v}: the format says {want:?}, from_json gave {got:?}"),
        }
    });
}
