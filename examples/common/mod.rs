//! What the examples share: option parsing and serving until a signal.

use std::process::ExitCode;

use ublk::signal::{TerminationSignals, signal_name};
use ublk::{Device, DeviceBuilder, Ended, Fate};

/// `1G`, `512M`, `4096`: bytes, with a binary suffix.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 10),
        (i, 'M' | 'm') => (&s[..i], 20),
        (i, 'G' | 'g') => (&s[..i], 30),
        (i, 'T' | 't') => (&s[..i], 40),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The options every example takes.
#[derive(Default)]
pub struct Common {
    pub queues: Option<u16>,
    pub depth: Option<u16>,
    pub id: Option<u32>,
    pub size: Option<u64>,
}

/// Walks the command line: `--flag value` pairs for the common options, and for the rest
/// `own(flag, next_value)`, which returns false for a flag it does not know.
pub fn parse(
    example: &str,
    mut own: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<bool, String>,
) -> Result<Common, String> {
    let mut c = Common::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |v: &str| format!("{flag}: '{v}' is not a valid value");
        match flag.as_str() {
            "--size" => {
                let v = value()?;
                c.size = Some(parse_size(&v).ok_or_else(|| bad(&v))?);
            }
            "--queues" => {
                let v = value()?;
                c.queues = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--depth" => {
                let v = value()?;
                c.depth = Some(v.parse().map_err(|_| bad(&v))?);
            }
            "--id" => {
                let v = value()?;
                c.id = Some(v.parse().map_err(|_| bad(&v))?);
            }
            other => {
                if !own(other, &mut value)? {
                    return Err(format!(
                        "unknown option {flag} (see the top of examples/{example}.rs)"
                    ));
                }
            }
        }
    }
    Ok(c)
}

impl Common {
    /// A builder with these options applied.
    pub fn builder(&self) -> DeviceBuilder {
        let mut b = Device::builder();
        if let Some(q) = self.queues {
            b = b.queues(q);
        }
        if let Some(d) = self.depth {
            b = b.depth(d);
        }
        if let Some(id) = self.id {
            b = b.id(id);
        }
        if let Some(size) = self.size {
            b = b.size(size);
        }
        b
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP; call before starting a device, so that its queue
/// threads inherit the mask and the signals reach [`serve`].
pub fn block_signals() -> ublk::Result<TerminationSignals> {
    TerminationSignals::block().map_err(|e| ublk::Error::Io {
        op: "blocking SIGINT/SIGTERM".into(),
        source: e,
    })
}

/// Prints what is served and serves it until a signal, a stop from outside or a failed queue
/// ([`Device::serve_until`]); then prints why it ended and what was served.
pub fn serve(dev: Device, signals: &TerminationSignals, what: &str) -> ublk::Result<()> {
    let (id, info) = (dev.id(), *dev.info());
    println!(
        "serving {} ({what}, {} queue(s) of depth {}); Ctrl-C to stop",
        dev.block_dev_path().display(),
        info.queues(),
        info.queue_depth()
    );
    for w in dev.warnings() {
        eprintln!("warning: {w}");
    }
    let served = dev.serve_until(signals);
    match served.ended {
        Ended::Signal(sig) => println!("{}: stopping device {id}", signal_name(sig)),
        Ended::StoppedOutside => println!("device {id} was stopped from outside"),
        Ended::QueueFailed => println!("device {id}: a queue failed"),
    }
    if served.fate == Fate::WaitsForRecovery {
        println!("device {id} waits for a new server (recovery)");
    }
    if let Some(e) = served.error {
        return Err(e);
    }
    let stats = served.stats;
    println!(
        "stopped; served {} reads, {} writes, {} flushes, {} discards, {} write-zeroes, {} errors",
        stats.reads, stats.writes, stats.flushes, stats.discards, stats.write_zeroes, stats.errors
    );
    Ok(())
}

/// The exit code for an example's outcome: 2 for bad options, 1 for a failure.
pub fn exit(example: &str, outcome: Result<ublk::Result<()>, String>) -> ExitCode {
    match outcome {
        Err(usage) => {
            eprintln!("{example}: {usage}");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("{example}: {e}");
            ExitCode::FAILURE
        }
        Ok(Ok(())) => ExitCode::SUCCESS,
    }
}
