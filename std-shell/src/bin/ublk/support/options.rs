//! The command line, parsed the way getopt_long does (so scripts written for ublksrv's `ublk`
//! and for rublk carry over): `-n 3`, `-n3`, `--number 3`, `--number=3`, `--` ends the
//! options. Every error names the option and the value, and is a usage error (exit code 2).
//!
//! Each command names its options with an enum of its own (`K`): a command asks for
//! `DelOpt::All`, never for the text `"all"`, so a misspelt option does not compile, instead
//! of quietly reading as never given. Values come back parsed by the functions below (and
//! the library's [`ublk::rules`]), typed.

use std::fmt;

/// A usage error: bad flags or values. Printed as one line; exit code 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One option a command takes, named by the command's key `K`.
#[derive(Clone, Copy, Debug)]
pub struct Opt<K> {
    /// The command's name for it.
    pub key: K,
    /// `-x`, if it has a short form.
    pub short: Option<char>,
    /// `--long`.
    pub long: &'static str,
    /// The value's name in help (`SIZE`), or `None` for a flag without a value. A name in
    /// brackets (`[MODE]`) makes the value optional: `--opt`, `--opt=v` or `--opt v` (the
    /// next argument is taken unless it is an option: no command has positional arguments).
    pub value: Option<&'static str>,
    /// One line for `--help`.
    pub help: &'static str,
}

impl<K> Opt<K> {
    /// `-n, --number ID` as help shows it.
    pub fn synopsis(&self) -> String {
        synopsis(self.short, self.long, self.value)
    }
}

fn synopsis(short: Option<char>, long: &str, value: Option<&str>) -> String {
    let short = short.map(|c| format!("-{c}, ")).unwrap_or_default();
    let value = value.map(|v| format!(" {v}")).unwrap_or_default();
    format!("{short}--{long}{value}")
}

/// `-h, --help`, which every command takes: (short, long, help).
pub const HELP: (char, &str, &str) = ('h', "help", "print this help");

/// The `-n, --number ID` option, which most commands take, with the command's `help`.
pub const fn device_opt<K>(key: K, help: &'static str) -> Opt<K> {
    Opt {
        key,
        short: Some('n'),
        long: "number",
        value: Some("ID"),
        help,
    }
}

/// The `--timeout SECONDS` option, with the command's `help`.
pub const fn timeout_opt<K>(key: K, help: &'static str) -> Opt<K> {
    Opt {
        key,
        short: None,
        long: "timeout",
        value: Some("SECONDS"),
        help,
    }
}

/// What the command line held, checked against the command's options.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<K> {
    /// Each option given: its key, its long name (for messages) and its value.
    given: Vec<(K, &'static str, Option<String>)>,
    /// `-h`/`--help` was given (and wins over everything else on the line).
    pub help: bool,
}

impl<K> Default for Parsed<K> {
    fn default() -> Self {
        Parsed {
            given: Vec::new(),
            help: false,
        }
    }
}

impl<K: Copy + PartialEq> Parsed<K> {
    /// The option was given (with or without a value).
    pub fn flag(&self, key: K) -> bool {
        self.given.iter().any(|(k, _, _)| *k == key)
    }

    /// The option's value, if it was given with one.
    pub fn value(&self, key: K) -> Option<&str> {
        self.given
            .iter()
            .find(|(k, _, _)| *k == key)
            .and_then(|(_, _, v)| v.as_deref())
    }

    /// The option's value parsed by `parse`, whose error is prefixed with the option.
    pub fn parsed<T>(
        &self,
        key: K,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Usage> {
        let Some((_, long, Some(v))) = self.given.iter().find(|(k, _, _)| *k == key) else {
            return Ok(None);
        };
        parse(v)
            .map(Some)
            .map_err(|why| Usage(format!("--{long}: {why}")))
    }
}

/// Parses `args` (after the command's name) against `opts`. `-h`/`--help` is always known:
/// it sets [`Parsed::help`], whatever else is on the line.
pub fn parse<K: Copy + PartialEq>(
    command: &str,
    opts: &[Opt<K>],
    args: &[String],
) -> Result<Parsed<K>, Usage> {
    // The parser proper knows options by their index only, so that it exists once, not once
    // per command's option type.
    let specs: Vec<Spec> = opts.iter().map(Opt::spec).collect();
    let (given, help) = parse_specs(command, &specs, args)?;
    Ok(Parsed {
        given: given
            .into_iter()
            .map(|(i, v)| (opts[i].key, opts[i].long, v))
            .collect(),
        help,
    })
}

/// A command's command line: parsed against its options, or, when it asks for `--help`, the
/// command's help printed (`None`: nothing more to do).
pub fn parse_command<K: Copy + PartialEq>(
    command: &str,
    opts: &[Opt<K>],
    args: &[String],
    help: fn() -> String,
) -> Result<Option<Parsed<K>>, super::failure::Failure> {
    let parsed = parse(command, opts, args)?;
    if parsed.help {
        super::output::print(&help())?;
        return Ok(None);
    }
    Ok(Some(parsed))
}

/// An option without its key: how it is spelt and whether it takes a value.
#[derive(Clone, Copy, Debug)]
struct Spec {
    short: Option<char>,
    long: &'static str,
    value: Option<&'static str>,
}

impl<K> Opt<K> {
    fn spec(&self) -> Spec {
        Spec {
            short: self.short,
            long: self.long,
            value: self.value,
        }
    }
}

impl Spec {
    fn value_optional(&self) -> bool {
        self.value.is_some_and(|v| v.starts_with('['))
    }
}

/// [`parse`] on the options' spellings: the options given (by index into `opts`, with their
/// values), and whether help was asked for.
#[allow(clippy::type_complexity)]
fn parse_specs(
    command: &str,
    opts: &[Spec],
    args: &[String],
) -> Result<(Vec<(usize, Option<String>)>, bool), Usage> {
    let help = Spec {
        short: Some(HELP.0),
        long: HELP.1,
        value: None,
    };
    let find = |f: &dyn Fn(&Spec) -> bool| -> Option<(Option<usize>, Spec)> {
        match opts.iter().position(f) {
            Some(i) => Some((Some(i), opts[i])),
            None => f(&help).then_some((None, help)),
        }
    };
    let mut given: Vec<(usize, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let ((index, opt), inline) = if arg == "--" {
            if let Some(extra) = args.get(i) {
                return Err(Usage(format!(
                    "unexpected argument '{extra}' (see ublk {command} --help)"
                )));
            }
            break;
        } else if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let found = find(&|o| o.long == name).ok_or_else(|| {
                Usage(format!(
                    "unknown option --{name} (see ublk {command} --help)"
                ))
            })?;
            if found.1.value.is_none() && inline.is_some() {
                return Err(Usage(format!("--{name} takes no value")));
            }
            (found, inline)
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or_default();
            let rest = chars.as_str();
            let found = find(&|o| o.short == Some(c))
                .ok_or_else(|| Usage(format!("unknown option -{c} (see ublk {command} --help)")))?;
            match (found.1.value, rest.is_empty()) {
                (Some(_), false) => (found, Some(rest.to_string())),
                (None, false) => {
                    return Err(Usage(format!(
                        "unknown option {arg} (-{c} takes no value; see ublk {command} --help)"
                    )));
                }
                (_, true) => (found, None),
            }
        } else {
            return Err(Usage(format!(
                "unexpected argument '{arg}' (see ublk {command} --help)"
            )));
        };
        let Some(index) = index else {
            // Help wins over every other problem on the line.
            return Ok((Vec::new(), true));
        };
        let shown = || synopsis(opt.short, opt.long, opt.value);
        let value = match (opt.value, inline) {
            (None, _) => None,
            (Some(_), Some(v)) => Some(v),
            (Some(_), None) if opt.value_optional() => {
                let next = args.get(i).filter(|v| !v.starts_with('-'));
                i += usize::from(next.is_some());
                next.cloned()
            }
            (Some(name), None) => {
                let v = args
                    .get(i)
                    .ok_or_else(|| Usage(format!("{} needs a value ({name})", shown())))?;
                i += 1;
                Some(v.clone())
            }
        };
        if given.iter().any(|(g, _)| *g == index) {
            return Err(Usage(format!("{} given twice", shown())));
        }
        given.push((index, value));
    }
    Ok((given, false))
}

/// A command's help: its synopsis, what it does, and every option.
pub fn help<K>(name: &str, synopsis: &str, about: &str, opts: &[Opt<K>]) -> String {
    let lines: Vec<(String, &str)> = opts.iter().map(|o| (o.synopsis(), o.help)).collect();
    help_text(name, synopsis, about, &lines)
}

/// [`help`] on the options' synopses and help lines.
fn help_text(name: &str, synopsis: &str, about: &str, opts: &[(String, &str)]) -> String {
    let mut s = format!("Usage: ublk {name} {synopsis}\n\n{about}.\n");
    if !opts.is_empty() {
        s += "\nOptions:\n";
    }
    for (synopsis, help) in opts {
        s += &format!("  {synopsis:<30}{help}\n");
    }
    s += &format!(
        "  {:<30}{}\n",
        self::synopsis(Some(HELP.0), HELP.1, None),
        HELP.2
    );
    s
}

/// A size in bytes: digits with an optional binary suffix, `K`, `M`, `G` or `T` (also
/// `KiB`..`TiB`, any case): `4096`, `512K`, `1G`.
pub fn size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => {
            return Err(format!(
                "'{text}' is not a size (bytes, or a number with K, M, G or T)"
            ));
        }
    };
    if digits.is_empty() {
        return Err(format!("'{text}' is not a size (it needs digits)"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// A size that is a whole number of 512-byte sectors, as the kernel counts, and not 0.
pub fn sectors(text: &str) -> Result<u64, String> {
    let bytes = size(text)?;
    if bytes == 0 {
        return Err("must not be 0".into());
    }
    if bytes % 512 != 0 {
        return Err(format!(
            "{bytes} bytes is not a multiple of 512 (the kernel counts 512-byte sectors)"
        ));
    }
    Ok(bytes)
}

/// A decimal integer, named `what` in the error.
pub fn whole(text: &str, what: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a {what} (a whole number)"))
}

/// A decimal integer in `range`, named `what` in the error.
pub fn number<T>(text: &str, what: &str, range: std::ops::RangeInclusive<u64>) -> Result<T, String>
where
    T: TryFrom<u64>,
{
    let n = whole(text, what)?;
    if !range.contains(&n) {
        return Err(format!(
            "{what} must be {}..={}, got {n}",
            range.start(),
            range.end()
        ));
    }
    T::try_from(n).map_err(|_| format!("{what} {n} is too large"))
}

/// A value checked by one of the library's rules ([`ublk::rules`]): `what` is the word the
/// value must be (`"device id"`), and the rule's reason is the message.
pub fn by_rule<T>(
    text: &str,
    what: &str,
    rule: impl Fn(u64) -> ublk::Result<T>,
) -> Result<T, String> {
    let n = whole(text, what)?;
    rule(n).map_err(|e| match e {
        ublk::Error::InvalidArgument { what, reason } => format!("{what} {reason}"),
        e => e.to_string(),
    })
}

/// `-n ID`: a device id ([`ublk::rules::device_id`]).
pub fn device_id(text: &str) -> Result<u32, String> {
    by_rule(text, "device id", ublk::rules::device_id)
}

/// The device `-n ID` names, which the command needs.
pub fn required_device<K: Copy + PartialEq>(p: &Parsed<K>, key: K) -> Result<u32, Usage> {
    p.parsed(key, device_id)?
        .ok_or_else(|| Usage("which device? give -n ID".into()))
}

/// `--timeout SECONDS`: 1 to 3600 seconds.
pub fn seconds(text: &str) -> Result<std::time::Duration, String> {
    number::<u64>(text, "timeout", 1..=3600).map(std::time::Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum K {
        Number,
        All,
        Size,
        Mode,
    }

    const OPTS: &[Opt<K>] = &[
        device_opt(K::Number, ""),
        Opt {
            key: K::All,
            short: Some('a'),
            long: "all",
            value: None,
            help: "",
        },
        Opt {
            key: K::Size,
            short: None,
            long: "size",
            value: Some("SIZE"),
            help: "",
        },
        Opt {
            key: K::Mode,
            short: None,
            long: "mode",
            value: Some("[MODE]"),
            help: "",
        },
    ];

    fn run(args: &[&str]) -> Result<Parsed<K>, Usage> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse("cmd", OPTS, &args)
    }

    #[test]
    fn every_spelling_of_a_value() {
        for line in [
            &["-n", "3"][..],
            &["-n3"],
            &["--number", "3"],
            &["--number=3"],
            &["--number=3", "--"],
        ] {
            let p = run(line).expect("valid");
            assert_eq!(p.value(K::Number), Some("3"), "{line:?}");
            assert!(!p.flag(K::All));
        }
        // A value may start with '-' (getopt takes the next word whatever it is).
        assert_eq!(run(&["-n", "-1"]).unwrap().value(K::Number), Some("-1"));
        assert_eq!(run(&["--size="]).unwrap().value(K::Size), Some(""));
        let p = run(&["-a", "--size", "1G"]).unwrap();
        assert!(p.flag(K::All));
        assert_eq!(p.value(K::Size), Some("1G"));
        assert_eq!(run(&[]).unwrap(), Parsed::default());
    }

    #[test]
    fn an_optional_value_may_be_left_out() {
        for (line, want) in [
            (&["--mode"][..], None),
            (&["--mode", "-a"], None),
            (&["--mode", "x"], Some("x")),
            (&["--mode=x", "-a"], Some("x")),
            (&["--mode="], Some("")),
        ] {
            let p = run(line).expect("valid");
            assert!(p.flag(K::Mode), "{line:?}");
            assert_eq!(p.value(K::Mode), want, "{line:?}");
        }
        assert!(run(&["--mode", "-a"]).unwrap().flag(K::All));
        assert_eq!(
            run(&["--mode", "x", "y"]),
            Err(Usage(
                "unexpected argument 'y' (see ublk cmd --help)".into()
            ))
        );
    }

    #[test]
    fn every_error_names_the_problem() {
        let cases: &[(&[&str], &str)] = &[
            (&["--bogus"], "unknown option --bogus (see ublk cmd --help)"),
            (&["-x"], "unknown option -x (see ublk cmd --help)"),
            (
                &["-ax"],
                "unknown option -ax (-a takes no value; see ublk cmd --help)",
            ),
            (&["--all=yes"], "--all takes no value"),
            (&["-n"], "-n, --number ID needs a value (ID)"),
            (&["--size"], "--size SIZE needs a value (SIZE)"),
            (&["-n", "1", "-n2"], "-n, --number ID given twice"),
            (&["-a", "--all"], "-a, --all given twice"),
            (
                &["stray"],
                "unexpected argument 'stray' (see ublk cmd --help)",
            ),
            (&["-"], "unexpected argument '-' (see ublk cmd --help)"),
            (
                &["--", "x"],
                "unexpected argument 'x' (see ublk cmd --help)",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(run(line), Err(Usage(want.to_string())), "{line:?}");
        }
    }

    #[test]
    fn help_wins() {
        for line in [&["--help"][..], &["-h"], &["-n", "1", "--help", "--bogus"]] {
            assert!(run(line).unwrap().help, "{line:?}");
        }
    }

    #[test]
    fn values_are_parsed_with_the_option_named() {
        let p = run(&["-n", "12", "--size", "x"]).unwrap();
        assert_eq!(p.parsed(K::Number, device_id), Ok(Some(12)));
        assert_eq!(
            p.parsed(K::Size, size),
            Err(Usage(
                "--size: 'x' is not a size (bytes, or a number with K, M, G or T)".into()
            ))
        );
        assert_eq!(p.parsed(K::Mode, size), Ok(None));
        let p = run(&["-n", "1048576"]).unwrap();
        assert_eq!(
            p.parsed(K::Number, device_id),
            Err(Usage(
                "--number: device id must be 0..=1048575, got 1048576".into()
            ))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("512K"), Ok(512 << 10));
        assert_eq!(size("3m"), Ok(3 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("2T"), Ok(2 << 40));
        assert_eq!(size("0"), Ok(0));
        for bad in ["", "G", "1.5G", "1GB", "-1", "1 G", "0x10", "1Q"] {
            assert!(size(bad).is_err(), "{bad}");
        }
        assert_eq!(size("16777216T"), Err("'16777216T' is too large".into()));
        assert_eq!(
            size("99999999999999999999"),
            Err("'99999999999999999999' is too large".into())
        );
        assert_eq!(sectors("1M"), Ok(1 << 20));
        assert_eq!(sectors("0"), Err("must not be 0".into()));
        assert_eq!(
            sectors("1000"),
            Err("1000 bytes is not a multiple of 512 (the kernel counts 512-byte sectors)".into())
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number::<u16>("64", "depth", 1..=4096), Ok(64));
        assert_eq!(
            number::<u16>("0", "depth", 1..=4096),
            Err("depth must be 1..=4096, got 0".into())
        );
        assert_eq!(
            number::<u16>("x", "depth", 1..=4096),
            Err("'x' is not a depth (a whole number)".into())
        );
        assert_eq!(
            number::<u16>("-1", "depth", 1..=4096),
            Err("'-1' is not a depth (a whole number)".into())
        );
        assert_eq!(
            number::<u8>("300", "n", 0..=1000),
            Err("n 300 is too large".into())
        );
        assert_eq!(
            by_rule("0", "queue count", ublk::rules::queues),
            Err("queue count must be 1..=4096, got 0".into())
        );
    }
}
