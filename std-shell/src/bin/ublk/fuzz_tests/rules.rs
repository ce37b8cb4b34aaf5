//! The command line's documented rules, written from the documentation rather than from the
//! parsers: getopt_long's treatment of each word (`options::parse`), and the syntax of sizes
//! (`options::size`) and whole numbers (`options::number`).

use crate::support::options::{HELP, Opt};

/// An option as the getopt rules see it: its spellings and whether it takes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Spec {
    pub short: Option<char>,
    pub long: &'static str,
    pub value: Option<&'static str>,
}

impl Spec {
    /// `-h, --help`.
    pub const HELP: Spec = Spec {
        short: Some(HELP.0),
        long: HELP.1,
        value: None,
    };

    /// Every option of a command, as specs.
    pub fn all<K>(opts: &[Opt<K>]) -> Vec<Spec> {
        opts.iter()
            .map(|o| Spec {
                short: o.short,
                long: o.long,
                value: o.value,
            })
            .collect()
    }
}

/// What getopt_long makes of a command line, as `args::parse` documents it.
#[derive(Debug, PartialEq)]
pub(super) enum Model {
    /// `-h`/`--help` came before anything wrong.
    Help,
    /// Refused: an unknown option, a flag with a value, a missing value, an option given
    /// twice, or a word that is no option.
    Refused,
    /// The options given, with their values.
    Given(Vec<(&'static str, Option<String>)>),
}

pub(super) fn model(opts: &[Spec], line: &[String]) -> Model {
    let all: Vec<&Spec> = opts.iter().chain([&Spec::HELP]).collect();
    let mut given: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut words = line.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            // The end of the options; this tool takes no operands after it.
            return match words.next() {
                None => Model::Given(given),
                Some(_) => Model::Refused,
            };
        }
        let (opt, attached) = if let Some(body) = word.strip_prefix("--") {
            let (name, attached) = match body.find('=') {
                Some(at) => (&body[..at], Some(body[at + 1..].to_string())),
                None => (body, None),
            };
            match all.iter().find(|o| o.long == name) {
                // A flag takes no `=value`.
                Some(o) if o.value.is_some() || attached.is_none() => (*o, attached),
                _ => return Model::Refused,
            }
        } else if word.len() > 1 && word.starts_with('-') {
            let mut chars = word[1..].chars();
            let c = chars.next().expect("one char after '-'");
            let rest = chars.as_str();
            match all.iter().find(|o| o.short == Some(c)) {
                Some(o) if rest.is_empty() => (*o, None),
                // `-n3`: the rest of the word is the value; a flag takes none.
                Some(o) if o.value.is_some() => (*o, Some(rest.to_string())),
                _ => return Model::Refused,
            }
        } else {
            return Model::Refused;
        };
        if *opt == Spec::HELP {
            return Model::Help;
        }
        let value = match (opt.value, attached) {
            (None, _) => None,
            (Some(_), Some(v)) => Some(v),
            // An optional value (`[MODE]`) is the next word unless that is an option.
            (Some(name), None) if name.starts_with('[') => {
                match words.as_slice().first().filter(|w| !w.starts_with('-')) {
                    Some(v) => {
                        words.next();
                        Some(v.clone())
                    }
                    None => None,
                }
            }
            // The next word, whatever it is, even `--help`.
            (Some(_), None) => match words.next() {
                Some(v) => Some(v.clone()),
                None => return Model::Refused,
            },
        };
        if given.iter().any(|(long, _)| *long == opt.long) {
            return Model::Refused;
        }
        given.push((opt.long, value));
    }
    Model::Given(given)
}

/// A size as `options::size` documents it: decimal digits, then nothing or one of K, M, G, T
/// (or KiB..TiB, any case) multiplying by 2^10..2^40; `None` if not one or over u64.
pub(super) fn size_rule(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = text.split_at(digits);
    let units = [
        ("", 0),
        ("k", 10),
        ("kib", 10),
        ("m", 20),
        ("mib", 20),
        ("g", 30),
        ("gib", 30),
        ("t", 40),
        ("tib", 40),
    ];
    let shift = units
        .iter()
        .find(|(unit, _)| unit.eq_ignore_ascii_case(suffix))?
        .1;
    let n = decimal(number)?;
    u64::try_from(n.checked_mul(1 << shift)?).ok()
}

/// Decimal digits (leading zeros allowed) as a number, saturating far above any range.
fn decimal(digits: &str) -> Option<u128> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 30 {
        return Some(u128::MAX >> 8);
    }
    Some(significant.parse().unwrap_or(0))
}

/// A whole number as `options::number` takes it (Rust's integer syntax: digits, an optional
/// leading `+`) if it lies in `range`.
pub(super) fn number_rule(text: &str, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    let n = decimal(text.strip_prefix('+').unwrap_or(text))?;
    u64::try_from(n).ok().filter(|n| range.contains(n))
}
