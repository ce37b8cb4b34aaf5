//! What the commands print: to stdout, with every write error reported (a full disk, a closed
//! descriptor) but a reader that went away (a broken pipe), which ends the command quietly;
//! and sizes for people.

use std::io::Write;

use super::failure::Failure;

/// Writes `text` to stdout. A write that fails is the command's failure: one line on stderr
/// (`cannot write to stdout: ...`), exit code 1; a broken pipe (`ublk list | head -1`) ends it
/// the same way, but without a word, since its reader left.
pub fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::Quiet),
        Err(e) => Err(Failure::Runtime(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes one line to stderr, if it can: a message about a failure has no one else to go to.
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(format!("{line}\n").as_bytes());
}

/// `1 GiB`, `1.5 MiB`, `4096 B`: sizes for people, with one decimal where the size is not a
/// whole number of the unit (rounded down, so a size never reads larger than it is).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let unit = (0..UNITS.len())
        .rev()
        .find(|&u| bytes >> (10 * u) != 0)
        .unwrap_or(0);
    let whole = bytes >> (10 * unit);
    let rest = bytes - (whole << (10 * unit));
    if rest == 0 {
        format!("{whole} {}", UNITS[unit])
    } else {
        // Tenths of the unit, in integers: (rest / 2^(10 unit)) * 10, without overflow.
        let tenths = (u128::from(rest) * 10) >> (10 * unit);
        format!("{whole}.{tenths} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(250 << 30), "250 GiB");
        assert_eq!(human_size(1536 << 20), "1.5 GiB");
        assert_eq!(human_size(3 << 40), "3 TiB");
        assert_eq!(human_size((1 << 30) - 1), "1023.9 MiB");
        assert_eq!(human_size(u64::MAX), "16777215.9 TiB");
    }
}
