//! `ublk features`: the running kernel's `UBLK_F_*` features, by name, and which this build
//! uses.

use ublk::json::Value;

use crate::support::control;
use crate::support::failure::Failure;
use crate::support::options::{self, Opt};
use crate::support::output::print;

/// `ublk features`' synopsis.
pub const SYNOPSIS: &str = "[--json]";
/// What `ublk features` does.
pub const ABOUT: &str = "the running kernel's ublk features, by name, and which this build uses";

/// `ublk features`' options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeaturesOpt {
    /// `--json`.
    Json,
}

/// `ublk features`' options.
pub const OPTS: &[Opt<FeaturesOpt>] = &[Opt {
    key: FeaturesOpt::Json,
    short: None,
    long: "json",
    value: None,
    help: "print JSON: {\"kernel\": bits, \"features\": [{name, bit, kernel, build}], \"unknown_bits\"}",
}];

/// `ublk features`' help.
pub fn help() -> String {
    options::help("features", SYNOPSIS, ABOUT, OPTS)
}

/// `ublk features ARGS`.
pub fn run(args: &[String]) -> Result<(), Failure> {
    let Some(p) = options::parse_command("features", OPTS, args, help)? else {
        return Ok(());
    };
    let kernel = control::open_control()?.features()?;
    let report = ublk::feature_report(kernel);
    if p.flag(FeaturesOpt::Json) {
        let v = Value::Object(vec![
            ("kernel".into(), Value::num(kernel.bits())),
            (
                "features".into(),
                Value::Array(
                    report
                        .iter()
                        .map(|f| {
                            Value::Object(vec![
                                ("name".into(), Value::str(f.name)),
                                ("bit".into(), Value::num(f.feature.bits())),
                                ("kernel".into(), Value::Bool(f.kernel)),
                                ("build".into(), Value::Bool(f.build)),
                            ])
                        })
                        .collect(),
                ),
            ),
            ("unknown_bits".into(), Value::num(kernel.unknown_bits())),
        ]);
        return print(&(v.pretty() + "\n"));
    }
    let yes_no = |b| if b { "yes" } else { "no" };
    let mut s = format!("{:<24} {:<7} this build\n", "feature", "kernel");
    for f in &report {
        s += &format!(
            "{:<24} {:<7} {}\n",
            f.name,
            yes_no(f.kernel),
            yes_no(f.build)
        );
    }
    if kernel.unknown_bits() != 0 {
        s += &format!(
            "bits this build cannot name: {:#x}\n",
            kernel.unknown_bits()
        );
    }
    print(&s)
}
