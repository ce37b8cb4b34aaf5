//! Helpers shared by the host and end-to-end tests.

use std::path::Path;
use std::time::{Duration, Instant};

/// Ids of the ublk devices that exist now, from `/sys/class/ublk-char/ublkc<id>`.
pub fn ublk_char_device_ids() -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir("/sys/class/ublk-char")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("ublkc")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Waits until `path` exists (`present`) or is gone (`!present`); true if it happened within
/// `timeout`. Device nodes appear and vanish asynchronously (devtmpfs).
pub fn wait_for_path(path: impl AsRef<Path>, present: bool, timeout: Duration) -> bool {
    let path = path.as_ref();
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() == present {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `(major, minor)` from a sysfs `dev` file such as `/sys/class/ublk-char/ublkc0/dev`.
pub fn sysfs_dev_numbers(path: impl AsRef<Path>) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The running kernel's `(major, minor)` version, from `uname -r` (e.g. `7.3.4+deb13-cloud-amd64`).
pub fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// CPUs the kernel could ever bring online (`/sys/devices/system/cpu/possible`, e.g. `0-1`).
pub fn possible_cpus() -> Vec<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    parse_cpu_list(text.trim())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`; malformed parts are skipped.
pub fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list("0"), [0]);
        assert_eq!(parse_cpu_list("x,2"), [2]);
    }
}
