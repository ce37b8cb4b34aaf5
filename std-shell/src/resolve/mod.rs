//! Host names to addresses, without the C library's resolver.
//!
//! `getaddrinfo` in a static glibc binary loads its name-service modules (`libnss_*.so`) at run
//! time, which an initramfs does not have, and links a third of our binary's own size of
//! resolver code besides. What a block device's client needs is smaller: an address as it is
//! written, a name from `/etc/hosts`, or a name asked of the name servers `/etc/resolv.conf`
//! lists, over UDP. That is all this module does; it reads no other configuration
//! (`nsswitch.conf`, mDNS, NIS).

mod dns;
mod hosts;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Instant;

pub use dns::Resolvers;

/// The addresses of `host` on `port`, IPv4 before IPv6, found by the first of these that knows
/// the name: `host` is an address (`192.0.2.7`, `2001:db8::7`, or in brackets); `/etc/hosts`;
/// `localhost` and names under it (RFC 6761); the name servers of `/etc/resolv.conf`, asked
/// for A and AAAA records before `deadline`.
pub fn resolve(host: &str, port: u16, deadline: Instant) -> io::Result<Vec<SocketAddr>> {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let conf = Resolvers::from_file(Path::new("/etc/resolv.conf"));
    resolve_with(host, port, &hosts, &conf, deadline)
}

/// [`resolve`] with the contents of `/etc/hosts` and the name servers given.
pub fn resolve_with(
    host: &str,
    port: u16,
    hosts: &str,
    resolvers: &Resolvers,
    deadline: Instant,
) -> io::Result<Vec<SocketAddr>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 || !name.split('.').all(dns::is_label) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{host}' is neither an address nor a host name"),
        ));
    }
    let mut ips = hosts::lookup(hosts, name);
    if ips.is_empty() && is_localhost(name) {
        ips = vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    }
    if ips.is_empty() {
        ips = resolvers.lookup(host, deadline)?;
    }
    // IPv4 first: where both exist, an IPv6 route that drops packets would spend the whole
    // connection deadline before IPv4 is tried.
    ips.sort_by_key(IpAddr::is_ipv6);
    ips.dedup();
    Ok(ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// `localhost` and the names under it, which RFC 6761 reserves for the loopback address.
fn is_localhost(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

#[cfg(test)]
mod tests;
