//! Command lines built from the real options, their spellings (`-n 3`, `-n3`, `--number 3`,
//! `--number=3`) and values that are valid, at an edge, huge, negative, empty, unicode or
//! junk. The parse must agree with the getopt rules ([`super::rules`]); each command's checks
//! are re-checked on what it accepts, and each refusal must name an option that is wrong.

use std::path::Path;

use ublk_core::testing::{Prng, fuzz};

use super::rules::{Model, Spec, model, number_rule, size_rule};
use crate::cmd::add::{self, AddOpt, AddOptions};
use crate::cmd::del::{self, DelOpt, DelOptions};
use crate::cmd::{features, list, quiesce, recover, resize};
use crate::server::target::Kind;
use crate::support::options::{self, Opt, Parsed, Usage};
use ublk::backend::NbdAddress;
use ublk::rules::MAX_DEVICE_ID;
use ublk::{DataPath, Recovery};

const MAX_ID: u64 = MAX_DEVICE_ID as u64;

/// Values for any option: valid ones, the edges of every range the commands check, and
/// things no option takes.
const VALUES: &[&str] = &[
    "reissue",
    "queue",
    "fail-io",
    "off",
    "null",
    "mem",
    "loop",
    "tape",
    "NULL",
    "Null ",
    "0",
    "1",
    "2",
    "3",
    "511",
    "512",
    "513",
    "1000",
    "1024",
    "1536",
    "2048",
    "4095",
    "4096",
    "4097",
    "8192",
    "65536",
    "1048575",
    "1048576",
    "3600",
    "3601",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "000000000000000000000000512",
    "4K",
    "4k",
    "4KiB",
    "4kib",
    "4Kb",
    "512K",
    "1M",
    "32M",
    "32MiB",
    "33M",
    "64M",
    "1G",
    "1g",
    "2T",
    "16777215T",
    "16777216T",
    "17179869184G",
    "1Q",
    "K",
    "1 G",
    " 1",
    "1 ",
    "+5",
    "-1",
    "-0",
    "0x10",
    "1.5G",
    "1e3",
    "",
    "=",
    "a=b",
    "--",
    "-",
    "-t",
    "--help",
    "disk.img",
    "/tmp/x",
    ".",
    "١٢",
    "５",
    "💾",
    "4Ｋ",
    "é",
];

/// Tokens that are no option of any command.
const JUNK: &[&str] = &[
    "",
    "-",
    "--",
    "---",
    "--=",
    "-=",
    "--type=",
    "—type",
    "-ü",
    "--ünïcode",
    "x",
    "\u{0}",
    "--Type",
    "--TYPE=null",
    "-T",
    "--number3",
];

/// A value: from the list, or a number at or near an edge, or a number with a suffix.
fn value(p: &mut Prng) -> String {
    match p.below(4) {
        0 => p.interesting_u64().to_string(),
        1 => {
            let edge = *p.pick(&[512, 4096, 1 << 20, 32 << 20, MAX_ID, 3600, 4096]);
            p.near(edge, 2).to_string()
        }
        2 => format!(
            "{}{}",
            p.interesting(24),
            p.pick(&["", "K", "k", "M", "G", "T", "KiB", "mib", "B", "X"])
        ),
        _ => p.pick(VALUES).to_string(),
    }
}

/// One spelling of option `o`, with a value if it takes one: the tokens it adds.
fn option_tokens(p: &mut Prng, o: &Spec) -> Vec<String> {
    let v = value(p);
    let short = o.short.filter(|_| p.bool());
    match (o.value, short) {
        (None, Some(c)) if p.chance(1, 8) => vec![format!("-{c}{v}")],
        (None, Some(c)) => vec![format!("-{c}")],
        (None, None) if p.chance(1, 8) => vec![format!("--{}={v}", o.long)],
        (None, None) => vec![format!("--{}", o.long)],
        // A value-taking option last on the line has no value: that is an error too.
        (Some(_), _) if p.chance(1, 16) => vec![format!("--{}", o.long)],
        (Some(_), Some(c)) if p.bool() => vec![format!("-{c}{v}")],
        (Some(_), Some(c)) => vec![format!("-{c}"), v],
        (Some(_), None) if p.bool() => vec![format!("--{}={v}", o.long)],
        (Some(_), None) => vec![format!("--{}", o.long), v],
    }
}

/// A command line for a command taking `opts`, starting with `prefix`.
fn command_line<K>(p: &mut Prng, opts: &[Opt<K>], prefix: Vec<String>) -> Vec<String> {
    let opts = Spec::all(opts);
    let others: Vec<Spec> = [
        Spec::all(add::OPTS),
        Spec::all(del::OPTS),
        Spec::all(list::OPTS),
        Spec::all(features::OPTS),
        Spec::all(recover::OPTS),
        Spec::all(quiesce::OPTS),
        Spec::all(resize::OPTS),
    ]
    .concat()
    .into_iter()
    .filter(|o| !opts.iter().any(|m| m.long == o.long))
    .collect();
    let mut line = prefix;
    for _ in 0..p.below(7) {
        match p.below(20) {
            0 => line.push(p.pick(JUNK).to_string()),
            1 => line.push(value(p)),
            2 if !others.is_empty() => {
                let o = *p.pick(&others);
                line.extend(option_tokens(p, &o));
            }
            3 if p.chance(1, 4) => line.extend(option_tokens(p, &Spec::HELP)),
            4 => line.push("--".into()),
            _ => {
                let o = *p.pick(&opts);
                line.extend(option_tokens(p, &o));
            }
        }
    }
    line
}

/// Parses `line` and checks the result against the model; returns the parse if it is one
/// a command would go on with.
fn parse_checked<K: Copy + PartialEq + std::fmt::Debug>(
    command: &str,
    opts: &[Opt<K>],
    line: &[String],
) -> Option<Parsed<K>> {
    let want = model(&Spec::all(opts), line);
    let got = options::parse(command, opts, line);
    match (&want, got) {
        (Model::Refused, Err(Usage(msg))) => {
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            None
        }
        (Model::Help, Ok(p)) => {
            assert!(p.help, "{line:?}");
            None
        }
        (Model::Given(given), Ok(p)) => {
            for o in opts {
                let g = given.iter().find(|(long, _)| *long == o.long);
                assert_eq!(p.flag(o.key), g.is_some(), "--{} in {line:?}", o.long);
                assert_eq!(
                    p.value(o.key),
                    g.and_then(|(_, v)| v.as_deref()),
                    "--{} in {line:?}",
                    o.long
                );
            }
            assert!(!p.help);
            Some(p)
        }
        (want, got) => panic!("{line:?}: the getopt rules say {want:?}, parse gave {got:?}"),
    }
}

fn page() -> u64 {
    ublk::sys::sys::page_size() as u64
}

#[test]
fn fuzz_add_accepts_only_what_its_rules_allow() {
    let cwd = Path::new("/srv/work");
    fuzz(1500, |p| {
        // Mostly a line that names a target (and what it needs), so the value checks after
        // it are reached; sometimes none.
        let mut prefix = Vec::new();
        if p.chance(7, 8) {
            let kind = *p.pick(&["null", "mem", "loop", "nbd"]);
            prefix.extend(["-t".to_string(), kind.to_string()]);
            if kind == "mem" && p.chance(3, 4) {
                prefix.extend(["--size".to_string(), value(p)]);
            }
            if kind == "loop" && p.chance(3, 4) {
                prefix.extend(["-f".to_string(), value(p)]);
            }
            if kind == "nbd" && p.chance(3, 4) {
                let how = if p.bool() { "--host" } else { "--socket" };
                prefix.extend([how.to_string(), value(p)]);
            }
        }
        let line = command_line(p, add::OPTS, prefix);
        let Some(parsed) = parse_checked("add", add::OPTS, &line) else {
            return;
        };
        let v = |key| parsed.value(key);
        let page = page();
        let mut faults = Vec::new();
        let kind = v(AddOpt::Type).and_then(Kind::from_name);
        if kind.is_none() {
            faults.push("type");
        }
        let size = v(AddOpt::Size).map(size_rule);
        if size.is_some_and(|s| !s.is_some_and(|s| s > 0 && s % 512 == 0)) {
            faults.push("size");
        }
        let lbs = v(AddOpt::LogicalBlockSize).map(size_rule);
        if lbs.is_some_and(|n| !n.is_some_and(|n| n.is_power_of_two() && (512..=page).contains(&n)))
        {
            faults.push("logical-block-size");
        }
        if let (Some(Some(s)), Some(Some(b))) = (size, lbs)
            && b != 0
            && s % b != 0
        {
            faults.push("size");
        }
        let file = v(AddOpt::File);
        if file == Some("") {
            faults.push("file");
        }
        match kind {
            Some(Kind::Loop) if file.is_none() => faults.push("file"),
            Some(Kind::Null | Kind::Mem | Kind::Nbd) if file.is_some() => faults.push("file"),
            _ => {}
        }
        if kind.is_some_and(|k| k != Kind::Loop) && parsed.flag(AddOpt::Buffered) {
            faults.push("buffered");
        }
        if kind == Some(Kind::Mem) && size.is_none() {
            faults.push("size");
        }
        let numbers = [
            (AddOpt::Number, "number", 0..=MAX_ID),
            (AddOpt::Queues, "queues", 1..=4096),
            (AddOpt::Depth, "depth", 1..=4096),
        ];
        for (key, long, range) in numbers {
            if v(key).is_some_and(|t| number_rule(t, range).is_none()) {
                faults.push(long);
            }
        }
        let recovery = match (parsed.flag(AddOpt::Recovery), v(AddOpt::Recovery)) {
            (false, _) => Some(Recovery::Off),
            (true, None) => Some(Recovery::Reissue),
            (true, Some("reissue")) => Some(Recovery::Reissue),
            (true, Some("queue")) => Some(Recovery::Queue),
            (true, Some("fail-io")) => Some(Recovery::FailIo),
            (true, Some(_)) => None,
        };
        if recovery.is_none()
            || (kind == Some(Kind::Mem) && recovery.is_some_and(|r| r != Recovery::Off))
        {
            faults.push("recovery");
        }
        // "auto" is the default spelt out; the paths by their names.
        let data_path = v(AddOpt::DataPath).map(|t| match t {
            "auto" => Some(None),
            t => DataPath::from_name(t).map(Some),
        });
        if data_path.is_some_and(|d| d.is_none()) {
            faults.push("data-path");
        }
        // NBD: its options only with -t nbd; a server (--host or --socket, not both, neither
        // empty; --port only with --host); as many connections as queues; a reconnection
        // limit only with --recovery; no --size.
        let nbd_opts = [
            (AddOpt::Host, "host"),
            (AddOpt::Port, "port"),
            (AddOpt::Socket, "socket"),
            (AddOpt::Export, "export"),
            (AddOpt::Connections, "connections"),
            (AddOpt::ReconnectLimit, "reconnect-limit"),
        ];
        let (host, socket) = (v(AddOpt::Host), v(AddOpt::Socket));
        let port = v(AddOpt::Port).map(|t| number_rule(t, 1..=65535));
        let connections = v(AddOpt::Connections).map(|t| number_rule(t, 1..=4096));
        let queues = v(AddOpt::Queues).and_then(|t| number_rule(t, 1..=4096));
        let limit = v(AddOpt::ReconnectLimit).map(|t| number_rule(t, 1..=86_400));
        if kind.is_some_and(|k| k != Kind::Nbd) {
            for (key, long) in nbd_opts {
                if v(key).is_some() {
                    faults.push(long);
                }
            }
        }
        if kind == Some(Kind::Nbd) {
            match (host, socket) {
                (Some(_), Some(_)) | (None, None) => faults.extend(["host", "socket"]),
                (Some("" | "[]"), None) => faults.push("host"),
                (None, Some("")) => faults.push("socket"),
                _ => {}
            }
            if port.is_some_and(|p| p.is_none()) || (socket.is_some() && port.is_some()) {
                faults.push("port");
            }
            match connections {
                Some(None) => faults.push("connections"),
                Some(Some(c)) if queues.is_some_and(|q| q != c) => faults.push("connections"),
                _ => {}
            }
            if limit.is_some_and(|l| l.is_none())
                || (limit.is_some() && recovery == Some(Recovery::Off))
            {
                faults.push("reconnect-limit");
            }
            if size.is_some() {
                faults.push("size");
            }
        }
        let max_io = v(AddOpt::MaxIoSize).map(size_rule);
        if max_io
            .is_some_and(|n| !n.is_some_and(|n| n % page == 0 && (page..=32 << 20).contains(&n)))
        {
            faults.push("max-io-size");
        }

        match AddOptions::from_args(&parsed, cwd) {
            Ok(o) => {
                assert!(faults.is_empty(), "{line:?} accepted despite {faults:?}");
                let t = &o.target;
                assert_eq!(Some(t.kind), kind);
                assert_eq!(t.file, file.map(|f| cwd.join(f)));
                assert!(t.file.as_ref().is_none_or(|f| f.is_absolute()));
                assert_eq!(t.size, size.flatten());
                assert_eq!(t.logical_block_size.map(u64::from), lbs.flatten());
                assert_eq!(
                    (t.buffered, t.read_only),
                    (parsed.flag(AddOpt::Buffered), parsed.flag(AddOpt::ReadOnly))
                );
                assert_eq!(
                    o.id.map(u64::from),
                    v(AddOpt::Number).and_then(|t| number_rule(t, 0..=MAX_ID))
                );
                let nbd_connections = connections.flatten().or(queues).unwrap_or(1);
                let want_queues = match kind {
                    Some(Kind::Nbd) => Some(nbd_connections),
                    _ => queues,
                };
                assert_eq!(o.queues.map(u64::from), want_queues);
                match &t.nbd {
                    None => assert_ne!(kind, Some(Kind::Nbd)),
                    Some(n) => {
                        assert_eq!(u64::from(n.connections), nbd_connections);
                        assert_eq!(n.export, v(AddOpt::Export).unwrap_or_default());
                        let reconnect = match recovery {
                            Some(Recovery::Off) => None,
                            _ => Some(limit.flatten().unwrap_or(60)),
                        };
                        assert_eq!(n.reconnect_secs, reconnect);
                        match &n.address {
                            NbdAddress::Tcp { port: got, .. } => {
                                assert!(host.is_some());
                                assert_eq!(u64::from(*got), port.flatten().unwrap_or(10809));
                            }
                            NbdAddress::Unix(path) => {
                                assert_eq!(Some(path.clone()), socket.map(|s| cwd.join(s)));
                            }
                        }
                    }
                }
                assert_eq!(
                    o.depth.map(u64::from),
                    v(AddOpt::Depth).and_then(|t| number_rule(t, 1..=4096))
                );
                assert_eq!(o.max_io_size.map(u64::from), max_io.flatten());
                assert_eq!(o.foreground, parsed.flag(AddOpt::Foreground));
                assert_eq!(Some(o.recovery), recovery);
                assert_eq!(t.data_path, data_path.flatten().flatten());
            }
            Err(Usage(msg)) => {
                assert!(!faults.is_empty(), "{line:?} refused: {msg}");
                // The message names an option that is wrong.
                assert!(
                    faults.iter().any(|f| msg.contains(f)),
                    "{msg:?} names none of {faults:?}"
                );
                assert!(!msg.contains('\n'), "{msg:?}");
            }
        }
    });
}

#[test]
fn fuzz_del_accepts_one_device_or_all_with_a_bounded_timeout() {
    fuzz(1500, |p| {
        let line = command_line(p, del::OPTS, Vec::new());
        let Some(parsed) = parse_checked("del", del::OPTS, &line) else {
            return;
        };
        let id = parsed
            .value(DelOpt::Number)
            .map(|t| number_rule(t, 0..=MAX_ID));
        let timeout = parsed
            .value(DelOpt::Timeout)
            .map(|t| number_rule(t, 1..=3600));
        let valid = id.is_none_or(|i| i.is_some())
            && timeout.is_none_or(|t| t.is_some())
            && (id.is_some() != parsed.flag(DelOpt::All));
        match DelOptions::from_args(&parsed) {
            Ok(o) => {
                assert!(valid, "{line:?} accepted");
                assert_eq!(o.id.map(u64::from), id.flatten());
                assert_eq!(o.timeout.as_secs(), timeout.flatten().unwrap_or(30));
            }
            Err(Usage(msg)) => {
                assert!(!valid, "{line:?} refused: {msg}");
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
            }
        }
    });
}

#[test]
fn fuzz_recover_quiesce_and_resize_need_a_device_and_valid_values() {
    fuzz(1500, |p| {
        let id = |text: Option<&str>| text.and_then(|t| number_rule(t, 0..=MAX_ID));
        let line = command_line(p, recover::OPTS, Vec::new());
        if let Some(parsed) = parse_checked("recover", recover::OPTS, &line) {
            let got = options::required_device(&parsed, recover::RecoverOpt::Number)
                .ok()
                .map(u64::from);
            let want = id(parsed.value(recover::RecoverOpt::Number));
            assert_eq!(got, want, "recover {line:?}");
        }
        let line = command_line(p, quiesce::OPTS, Vec::new());
        if let Some(parsed) = parse_checked("quiesce", quiesce::OPTS, &line) {
            let timeout = parsed
                .value(quiesce::QuiesceOpt::Timeout)
                .map(|t| number_rule(t, 1..=3600));
            let want = match (id(parsed.value(quiesce::QuiesceOpt::Number)), timeout) {
                (Some(id), None) => Some((id, 30)),
                (Some(id), Some(Some(t))) => Some((id, t)),
                _ => None,
            };
            let got = quiesce::options(&parsed)
                .ok()
                .map(|(id, t)| (u64::from(id), t.as_secs()));
            assert_eq!(got, want, "quiesce {line:?}");
        }
        let line = command_line(p, resize::OPTS, Vec::new());
        if let Some(parsed) = parse_checked("resize", resize::OPTS, &line) {
            let size = parsed
                .value(resize::ResizeOpt::Size)
                .and_then(size_rule)
                .filter(|&s| s > 0 && s % 512 == 0);
            let want = id(parsed.value(resize::ResizeOpt::Number)).zip(size);
            let got = resize::options(&parsed)
                .ok()
                .map(|(id, s)| (u64::from(id), s));
            assert_eq!(got, want, "resize {line:?}");
        }
    });
}

#[test]
fn fuzz_list_and_features_lines_parse_by_the_getopt_rules() {
    fuzz(1500, |p| {
        let line = command_line(p, list::OPTS, Vec::new());
        if let Some(parsed) = parse_checked("list", list::OPTS, &line)
            && let Some(text) = parsed.value(list::ListOpt::Number)
        {
            // What `ublk list -n` checks before asking the driver.
            let got = options::device_id(text);
            let want = number_rule(text, 0..=MAX_ID);
            assert_eq!(got.ok().map(u64::from), want, "{text:?}");
        }
        let line = command_line(p, features::OPTS, Vec::new());
        parse_checked("features", features::OPTS, &line);
    });
}

#[test]
fn fuzz_size_and_number_parsers_follow_their_documented_syntax() {
    fuzz(3000, |p| {
        let text = match p.below(3) {
            0 => value(p),
            1 => p.pick(JUNK).to_string(),
            _ => {
                // Digits with a run of zeros and a suffix in any case.
                let zeros = "0".repeat(p.index(25));
                let suffix = *p.pick(&["", "k", "KIB", "Mib", "g", "T", "tB", "P", "ki"]);
                format!("{zeros}{}{suffix}", p.interesting_u64())
            }
        };
        let size = options::size(&text);
        assert_eq!(size.clone().ok(), size_rule(&text), "size {text:?}");
        let sectors = options::sectors(&text).ok();
        let want = size_rule(&text).filter(|&n| n > 0 && n % 512 == 0);
        assert_eq!(sectors, want, "sectors {text:?}");
        let range = p.range(0..=5000)..=p.range(5000..=u64::MAX);
        let got = options::number::<u64>(&text, "n", range.clone()).ok();
        assert_eq!(got, number_rule(&text, range), "number {text:?}");
        if let Err(e) = size {
            assert!(e.contains(&format!("'{text}'")), "names the text: {e:?}");
        }
    });
}

#[test]
fn fuzz_human_sizes_round_to_what_they_say() {
    fuzz(3000, |p| {
        let bytes = match p.below(3) {
            0 => p.interesting_u64(),
            1 => p.interesting(20) << (10 * p.below(5)),
            _ => p.next_u64() >> p.below(64),
        };
        let text = crate::support::output::human_size(bytes);
        let (number, unit) = text.split_once(' ').expect("number and unit");
        let shift = match unit {
            "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            "TiB" => 40,
            other => panic!("unit {other:?} in {text:?}"),
        };
        let bytes = u128::from(bytes);
        match number.split_once('.') {
            // A whole number: exact.
            None => {
                let n: u128 = number.parse().expect("digits");
                assert_eq!(n << shift, bytes, "{text}");
            }
            // One decimal, rounded down: the size lies in [shown, shown + a tenth).
            Some((whole, tenth)) => {
                assert_eq!(tenth.len(), 1, "{text}");
                let tenths: u128 = format!("{whole}{tenth}").parse().expect("digits");
                assert!(shift > 0, "{bytes} shown as {text}");
                assert!(
                    tenths << shift <= bytes * 10 && bytes * 10 < (tenths + 1) << shift,
                    "{bytes} shown as {text}"
                );
                assert_ne!(bytes % (1 << shift), 0, "{bytes} shown as {text}");
            }
        }
    });
}
