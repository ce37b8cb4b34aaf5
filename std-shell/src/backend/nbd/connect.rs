//! Connecting to an NBD server, over TCP or a Unix socket, and running the handshake within
//! a time limit.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::HandshakeError;
use super::handshake::{Export, handshake};

/// Where an NBD server listens (`ublk::backend::NbdAddress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A host name or IP address, and a port.
    Tcp {
        /// Name or address (IPv6 without brackets).
        host: String,
        /// Port ([`Address::DEFAULT_PORT`] usually).
        port: u16,
    },
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl Address {
    /// The port IANA reserved for NBD, 10809.
    pub const DEFAULT_PORT: u16 = 10809;
}

/// `host:port` (`[v6]:port`), or `unix:PATH`.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connection to an NBD server: a blocking stream socket.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Over TCP (with `TCP_NODELAY`: requests are small and must not wait for more).
    Tcp(TcpStream),
    /// Over a Unix socket.
    Unix(UnixStream),
}

impl Stream {
    /// Bounds every read (`SO_RCVTIMEO`; `None`: no bound): one that waits longer fails with
    /// `WouldBlock`.
    pub(crate) fn set_read_timeout(&self, limit: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(limit),
            Stream::Unix(s) => s.set_read_timeout(limit),
        }
    }

    /// Bounds every write (`SO_SNDTIMEO`; `None`: no bound).
    pub(crate) fn set_write_timeout(&self, limit: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(limit),
            Stream::Unix(s) => s.set_write_timeout(limit),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl From<Stream> for OwnedFd {
    fn from(s: Stream) -> OwnedFd {
        match s {
            Stream::Tcp(s) => s.into(),
            Stream::Unix(s) => s.into(),
        }
    }
}

/// Connects to `address` and runs the handshake for export `name`, all within `limit`:
/// connecting (each resolved address in turn, with the time left) and every read and write
/// of the handshake. Resolving a host name is the system's (`getaddrinfo`), which has its
/// own timeouts; connecting to a Unix socket does not wait on a network.
///
/// Returns the stream in blocking mode with no timeouts, at the start of the transmission
/// phase, and the export as the server described it.
pub(crate) fn connect(
    address: &Address,
    name: &str,
    limit: Duration,
) -> Result<(Stream, Export), HandshakeError> {
    let deadline = Instant::now() + limit;
    let stream = open(address, deadline)?;
    let export = handshake(
        &mut Deadlined {
            stream: &stream,
            deadline,
        },
        name,
    )
    .map_err(|e| match e {
        HandshakeError::Io { stage, source } if is_timeout(&source) => {
            HandshakeError::TimedOut { stage, limit }
        }
        other => other,
    })?;
    let cleared = stream
        .set_read_timeout(None)
        .and(stream.set_write_timeout(None));
    cleared.map_err(|source| HandshakeError::Connect {
        address: address.to_string(),
        source,
    })?;
    Ok((stream, export))
}

/// What a socket timeout looks like: `EAGAIN` from a read or write with `SO_RCVTIMEO` or
/// `SO_SNDTIMEO`, or the deadline passed before the call.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn timed_out() -> io::Error {
    io::Error::from(io::ErrorKind::TimedOut)
}

/// The connected socket, before the handshake.
fn open(address: &Address, deadline: Instant) -> Result<Stream, HandshakeError> {
    let failed = |source| HandshakeError::Connect {
        address: address.to_string(),
        source,
    };
    match address {
        Address::Unix(path) => UnixStream::connect(path).map(Stream::Unix).map_err(failed),
        Address::Tcp { host, port } => {
            let addrs = crate::resolve::resolve(host, *port, deadline).map_err(|source| {
                HandshakeError::Resolve {
                    address: address.to_string(),
                    source,
                }
            })?;
            let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
            for addr in addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(failed(timed_out()));
                }
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(s) => {
                        s.set_nodelay(true).map_err(failed)?;
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = e,
                }
            }
            Err(failed(last))
        }
    }
}

/// The stream with every read and write bounded by what is left until `deadline`, so that
/// the whole handshake, not each call, has the time limit: a server dripping a byte at a
/// time cannot stretch it.
struct Deadlined<'s> {
    stream: &'s Stream,
    deadline: Instant,
}

impl Deadlined<'_> {
    /// What is left until the deadline; an error once it has passed (a zero timeout would
    /// mean "none" to the socket).
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        Ok(left)
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
