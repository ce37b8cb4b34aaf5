//! `/etc/hosts`: one address a line, then its names; `#` starts a comment.

use std::net::IpAddr;

/// The addresses `/etc/hosts` (its text, `hosts`) gives `name`, in the file's order; names
/// compare without regard to case, as DNS names do.
pub fn lookup(hosts: &str, name: &str) -> Vec<IpAddr> {
    hosts
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_ascii_whitespace();
            let ip = fields.next()?.parse::<IpAddr>().ok()?;
            fields.any(|n| n.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect()
}
