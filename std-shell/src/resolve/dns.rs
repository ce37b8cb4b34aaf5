//! Asking name servers for a name's addresses (RFC 1035): one A and one AAAA query over UDP,
//! recursion desired, to the servers `/etc/resolv.conf` lists, with its search list.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

/// Record types asked for.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// Header flags: a response; its answer was cut to fit UDP; recursion desired.
const FLAG_QR: u16 = 0x8000;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
/// Response codes: the name does not exist.
const RCODE_NXDOMAIN: u16 = 3;
/// Without EDNS a UDP answer is at most 512 bytes; more room costs nothing.
const MAX_MESSAGE: usize = 1500;

/// The name servers and how to ask them, as `/etc/resolv.conf` says (`nameserver`, `search`
/// or `domain`, `options ndots: timeout: attempts:`), with its defaults where it is silent or
/// missing: the server on this machine, one dot, 5 s, 2 attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolvers {
    /// At most three, in order.
    pub servers: Vec<SocketAddr>,
    /// Domains tried after (or before, for a name with fewer than `ndots` dots) the name.
    pub search: Vec<String>,
    /// A name with at least this many dots is asked as it is first.
    pub ndots: usize,
    /// How long one server is waited for, per attempt.
    pub timeout: Duration,
    /// Rounds over all the servers.
    pub attempts: u32,
}

impl Default for Resolvers {
    fn default() -> Self {
        Resolvers {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl Resolvers {
    /// `/etc/resolv.conf`'s settings (the defaults if it cannot be read).
    pub fn from_file(path: &Path) -> Resolvers {
        Resolvers::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    /// The settings of a `resolv.conf` text; lines it does not know are ignored, as the C
    /// library does.
    pub fn parse(text: &str) -> Resolvers {
        let mut r = Resolvers::default();
        for line in text.lines() {
            let mut words = line.split_ascii_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A link-local address's zone (fe80::1%eth0) is not supported.
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok())
                        && r.servers.len() < 3
                    {
                        r.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("search" | "domain") => {
                    r.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                }
                Some("options") => {
                    for option in words {
                        let number = |key: &str| option.strip_prefix(key)?.parse::<u32>().ok();
                        if let Some(n) = number("ndots:") {
                            r.ndots = n.min(15) as usize;
                        } else if let Some(n) = number("timeout:") {
                            r.timeout = Duration::from_secs(u64::from(n.clamp(1, 30)));
                        } else if let Some(n) = number("attempts:") {
                            r.attempts = n.clamp(1, 5);
                        }
                    }
                }
                _ => {}
            }
        }
        if r.servers.is_empty() {
            r.servers.push(SocketAddr::from((Ipv4Addr::LOCALHOST, 53)));
        }
        r
    }

    /// The names to ask for `host`, in order: as it is when it ends with a dot or has at
    /// least `ndots` dots, then with each search domain; a shorter name the other way round.
    pub fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(absolute) = host.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let searched = self.search.iter().map(|d| format!("{host}.{d}"));
        if host.matches('.').count() >= self.ndots {
            std::iter::once(host.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(host.to_string())).collect()
        }
    }

    /// The addresses the name servers give `host` (A and AAAA records; the first candidate
    /// name that has any), asked before `deadline`.
    pub fn lookup(&self, host: &str, deadline: Instant) -> io::Result<Vec<IpAddr>> {
        for name in self.candidates(host) {
            match self.ask(&name, deadline)? {
                Some(ips) if !ips.is_empty() => return Ok(ips),
                _ => {}
            }
        }
        let servers: Vec<String> = self.servers.iter().map(SocketAddr::to_string).collect();
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no such host: /etc/hosts does not list it and the name servers ({}) have no address for {}",
                servers.join(", "),
                self.candidates(host).join(", ")
            ),
        ))
    }

    /// One name, of every server in turn until one answers: its addresses (perhaps none), or
    /// `None` if it does not exist; an error if no server answered.
    fn ask(&self, name: &str, deadline: Instant) -> io::Result<Option<Vec<IpAddr>>> {
        let mut last = None;
        for _ in 0..self.attempts {
            for &server in &self.servers {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(last.unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::TimedOut, "no time left to ask a name server")
                    }));
                }
                match exchange(server, name, self.timeout.min(left)) {
                    Ok(answer) => return Ok(answer),
                    Err(e) => {
                        last = Some(io::Error::new(
                            e.kind(),
                            format!("name server {server}, asked for {name}: {e}"),
                        ));
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no name server to ask")))
    }
}

/// True if `label` may be one dot-separated part of a host name: 1 to 63 letters, digits,
/// hyphens or underscores.
pub fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Asks `server` for the A and AAAA records of `name` at once and waits up to `timeout` for
/// both answers: the addresses, or `None` if the name does not exist.
fn exchange(server: SocketAddr, name: &str, timeout: Duration) -> io::Result<Option<Vec<IpAddr>>> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Connected: the kernel drops datagrams from anyone but the server.
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    // Random ids (and the kernel's random source port): a forged answer must guess both.
    let id = crate::os::random_u64()? as u16;
    let queries = [(id, TYPE_A), (id.wrapping_add(1), TYPE_AAAA)];
    for (id, qtype) in queries {
        socket.send(&query(id, name, qtype))?;
    }
    let deadline = Instant::now() + timeout;
    let mut answered = [None, None];
    let mut buf = [0u8; MAX_MESSAGE];
    while answered.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        for (slot, &(id, qtype)) in answered.iter_mut().zip(&queries) {
            if let Ok(reply) = Reply::parse(&buf[..n], id, name, qtype) {
                *slot = Some(reply.into_result()?);
            }
        }
        // Anything else (a late answer to an earlier query, a forgery) is ignored.
    }
    let [a, aaaa] = answered.map(Option::unwrap_or_default);
    Ok(match (a, aaaa) {
        (None, None) => None,
        (a, aaaa) => Some(a.into_iter().chain(aaaa).flatten().collect()),
    })
}

/// A DNS query for `name`'s records of type `qtype`, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    for word in [id, FLAG_RD, 1, 0, 0, 0] {
        q.extend_from_slice(&word.to_be_bytes());
    }
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

/// What a server answered to one query.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    /// The response code (0: no error).
    pub rcode: u16,
    /// The answer did not fit (TC).
    pub truncated: bool,
    /// The records of the asked type in the answer section (a CNAME's target's included).
    pub addresses: Vec<IpAddr>,
}

impl Reply {
    /// Parses `msg` as the reply to query `id` for `name`'s `qtype` records: an error if it is
    /// not one (another id, not a response, another question) or is malformed.
    pub fn parse(msg: &[u8], id: u16, name: &str, qtype: u16) -> Result<Reply, &'static str> {
        let word = |at: usize| -> Result<u16, &'static str> {
            msg.get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or("cut short")
        };
        let flags = word(2)?;
        if word(0)? != id || flags & FLAG_QR == 0 || word(4)? != 1 {
            return Err("not the reply to this query");
        }
        let (qname, mut at) = read_name(msg, 12)?;
        if !qname.eq_ignore_ascii_case(name) || word(at)? != qtype || word(at + 2)? != CLASS_IN {
            return Err("the reply to another question");
        }
        at += 4;
        let mut addresses = Vec::new();
        for _ in 0..word(6)? {
            let (_, next) = read_name(msg, at)?;
            let (rtype, class, len) = (word(next)?, word(next + 2)?, usize::from(word(next + 8)?));
            let data = msg.get(next + 10..next + 10 + len).ok_or("cut short")?;
            match (rtype, class, data.len()) {
                (TYPE_A, CLASS_IN, 4) if qtype == TYPE_A => {
                    addresses.push(IpAddr::from(<[u8; 4]>::try_from(data).unwrap_or_default()));
                }
                (TYPE_AAAA, CLASS_IN, 16) if qtype == TYPE_AAAA => {
                    addresses.push(IpAddr::from(<[u8; 16]>::try_from(data).unwrap_or_default()));
                }
                _ => {}
            }
            at = next + 10 + len;
        }
        Ok(Reply {
            rcode: flags & 0xf,
            truncated: flags & FLAG_TC != 0,
            addresses,
        })
    }

    /// The addresses, `None` for a name that does not exist, or the error the server gave.
    fn into_result(self) -> io::Result<Option<Vec<IpAddr>>> {
        match self.rcode {
            0 if self.truncated && self.addresses.is_empty() => Err(io::Error::other(
                "the answer did not fit in a datagram (asking over TCP is not supported)",
            )),
            0 => Ok(Some(self.addresses)),
            RCODE_NXDOMAIN => Ok(None),
            2 => Err(io::Error::other("server failure (SERVFAIL)")),
            5 => Err(io::Error::other("refused (REFUSED)")),
            code => Err(io::Error::other(format!("error code {code}"))),
        }
    }
}

/// The name at `at` in `msg`, following compression pointers (RFC 1035 4.1.4), and where the
/// data after it starts.
fn read_name(msg: &[u8], mut at: usize) -> Result<(String, usize), &'static str> {
    let mut name = String::new();
    let mut after = None;
    // Each pointer must go back, so a loop of pointers ends; bounded anyway.
    for _ in 0..128 {
        let len = *msg.get(at).ok_or("cut short")?;
        match len {
            0 => return Ok((name, after.unwrap_or(at + 1))),
            1..=63 => {
                let label = msg
                    .get(at + 1..at + 1 + usize::from(len))
                    .ok_or("cut short")?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                if name.len() > 255 {
                    return Err("name too long");
                }
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let low = *msg.get(at + 1).ok_or("cut short")?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                if target >= at {
                    return Err("a name pointer that does not go back");
                }
                after.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err("a label type that does not exist"),
        }
    }
    Err("too many name pointers")
}
