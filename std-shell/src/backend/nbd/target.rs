//! The NBD target: a device backed by an export of any NBD server (`nbd-server`, `qemu-nbd`,
//! `nbdkit`, ...), one connection per queue, its requests and replies on the queue's own
//! io_uring ([`super::queue`]).

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ublk_core::DataPath;

use super::connect::{Address, Stream, connect};
use super::handshake::Export;
use super::proto::TransmissionFlags;
use super::queue::{NbdQueue, QueueLink};
use crate::backend::{DiscardLimits, Properties, QueueInfo, Target};
use crate::error::{Error, Result};

pub use super::connect::Address as NbdAddress;

/// How long connecting and the handshake may take, per connection, by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest DISCARD or WRITE_ZEROES sent as one request (an NBD length is 32 bits).
const MAX_ZEROING: u64 = 1 << 30;

/// How to reach an export and what to do when a connection is lost.
#[derive(Clone, Debug)]
pub struct NbdOptions {
    address: Address,
    export: String,
    connections: u16,
    timeout: Duration,
    reconnect: Option<Duration>,
}

impl NbdOptions {
    /// Export `export` (empty: the server's default) of the server at `address`, over one
    /// connection, a 10 s limit to connect and negotiate, and no reconnection.
    pub fn new(address: NbdAddress, export: impl Into<String>) -> NbdOptions {
        NbdOptions {
            address,
            export: export.into(),
            connections: 1,
            timeout: DEFAULT_TIMEOUT,
            reconnect: None,
        }
    }

    /// Connections to open: one per queue of the device, so the device must have this many
    /// queues. More than one needs an export that allows it (`NBD_FLAG_CAN_MULTI_CONN`:
    /// flushes are visible on every connection).
    pub fn connections(mut self, n: u16) -> Self {
        self.connections = n;
        self
    }

    /// How long connecting and the handshake may take, per connection (default 10 s).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// What a lost connection does. `None` (the default): the queue's I/O fails with EIO from
    /// then on. `Some(limit)`: its I/O is held, and the queue connects again with growing
    /// pauses (0.1 s doubling to 5 s) for up to `limit`, then sends again what was in
    /// flight; when `limit` runs out the held I/O fails with EIO, and so does what follows.
    pub fn reconnect(mut self, limit: Option<Duration>) -> Self {
        self.reconnect = limit;
        self
    }

    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn export(&self) -> &str {
        &self.export
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn reconnect_limit(&self) -> Option<Duration> {
        self.reconnect
    }

    /// Connects every connection and negotiates the export; every problem (no server, an
    /// export it refuses, block sizes no ublk device can have) is an error here, before any
    /// device exists.
    pub fn open(self) -> Result<Nbd> {
        Nbd::open(self)
    }
}

/// A device backed by an NBD export: READ, WRITE (with FUA when the server takes it), FLUSH,
/// DISCARD (as TRIM) and WRITE_ZEROES (with NO_HOLE for NOUNMAP) where the export allows them,
/// many requests in flight on each connection, simple replies. Its size, block sizes,
/// read-only and rotational come from the export.
///
/// On the zero-copy path a WRITE's data is sent straight from the request's pages and a
/// READ's reply received straight into them (io_uring send and receive on the registered
/// buffer): no byte passes through this process.
#[derive(Debug)]
pub struct Nbd {
    options: NbdOptions,
    export: Export,
    /// The connections made by [`Nbd::open`], taken by the queues as they start.
    streams: Mutex<Vec<Option<Stream>>>,
    /// What each connection is doing, for [`Nbd::status`].
    links: Arc<Vec<QueueLink>>,
}

impl Nbd {
    /// Opens the export as `options` say; see [`NbdOptions::open`].
    pub fn open(options: NbdOptions) -> Result<Nbd> {
        if options.connections == 0 {
            return Err(Error::invalid(
                "NBD connections",
                "there must be at least one",
            ));
        }
        let server = options.address.to_string();
        let open = || {
            connect(&options.address, &options.export, options.timeout).map_err(|e| Error::Nbd {
                reason: e.to_string(),
            })
        };
        // The first connection says whether the export allows more, before any other is
        // made: a server that does not (qemu-nbd without -e) would keep them waiting.
        let (stream, export) = open()?;
        if options.connections > 1 && !export.flags.contains(TransmissionFlags::CAN_MULTI_CONN) {
            return Err(Error::invalid(
                "NBD connections",
                format!(
                    "export '{}' at {server} does not allow more than one (the server does not advertise CAN_MULTI_CONN, so a flush on one connection may not cover writes on another)",
                    export.name
                ),
            ));
        }
        let mut streams = vec![Some(stream)];
        for _ in 1..options.connections {
            let (stream, other) = open()?;
            if (other.size, other.flags) != (export.size, export.flags) {
                return Err(Error::Nbd {
                    reason: format!(
                        "the NBD server at {server} described export '{}' differently on two connections",
                        options.export
                    ),
                });
            }
            streams.push(Some(stream));
        }
        let page = ublk_core::sys::page_size() as u32;
        if let Some(b) = export.block_sizes
            && b.min > page
        {
            return Err(Error::Nbd {
                reason: format!(
                    "export '{}' at {server} needs requests of at least {} bytes, more than a ublk block (a page, {page} bytes)",
                    export.name, b.min
                ),
            });
        }
        let lbs = logical_block_size(&export);
        if export.size < u64::from(lbs) {
            return Err(Error::Nbd {
                reason: format!(
                    "export '{}' at {server} is {} bytes, less than one block",
                    export.name, export.size
                ),
            });
        }
        let links = (0..options.connections).map(|_| QueueLink::new()).collect();
        Ok(Nbd {
            options,
            export,
            streams: Mutex::new(streams),
            links: Arc::new(links),
        })
    }

    /// Options for export `export` at `address`.
    pub fn options(address: NbdAddress, export: impl Into<String>) -> NbdOptions {
        NbdOptions::new(address, export)
    }

    /// Where the server is.
    pub fn address(&self) -> &NbdAddress {
        &self.options.address
    }

    /// The export's name, as the server gave it.
    pub fn export_name(&self) -> &str {
        &self.export.name
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.export.size
    }

    /// The export refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.export.flags.contains(TransmissionFlags::READ_ONLY)
    }

    /// The export's transmission flags by their protocol names, without `NBD_FLAG_`
    /// (`SEND_FLUSH`, `CAN_MULTI_CONN`, ...).
    pub fn flag_names(&self) -> Vec<&'static str> {
        self.export.flags.names().collect()
    }

    /// The export's block sizes (minimum, preferred, maximum), if the server gave them.
    pub fn block_sizes(&self) -> Option<(u32, u32, u32)> {
        self.export.block_sizes.map(|b| (b.min, b.preferred, b.max))
    }

    /// How many connections (and so queues) the device has.
    pub fn connections(&self) -> u16 {
        self.options.connections
    }

    /// What the connections are doing, one line: `"connected"`, or what went wrong and
    /// whether I/O is held for a reconnection or fails.
    pub fn status(&self) -> NbdStatus {
        NbdStatus::of(&self.links)
    }

    /// A handle that reads [`Nbd::status`] after the target was given to a device.
    pub fn status_handle(&self) -> NbdStatusHandle {
        NbdStatusHandle(Arc::clone(&self.links))
    }
}

/// The logical block size of a device on `export`: its minimum block size, at least 512.
fn logical_block_size(export: &Export) -> u32 {
    export.block_sizes.map_or(512, |b| b.min.max(512))
}

impl Target for Nbd {
    type Queue = NbdQueue;

    fn open_queue(&self, queue: &QueueInfo) -> io::Result<NbdQueue> {
        let stream = self
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(usize::from(queue.id))
            .and_then(Option::take)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "the NBD target has {} connection(s), one per queue; the device has more queues",
                    self.options.connections
                ))
            })?;
        NbdQueue::new(
            queue,
            stream,
            self.options.clone(),
            self.export.clone(),
            Arc::clone(&self.links),
        )
    }

    fn properties(&self) -> Properties {
        let flags = self.export.flags;
        let lbs = logical_block_size(&self.export);
        let writable = !self.is_read_only();
        let zeroing = |flag| writable && flags.contains(flag);
        let discard = (zeroing(TransmissionFlags::SEND_TRIM)
            || zeroing(TransmissionFlags::SEND_WRITE_ZEROES))
        .then(|| DiscardLimits {
            granularity: lbs,
            max_discard_bytes: if zeroing(TransmissionFlags::SEND_TRIM) {
                MAX_ZEROING
            } else {
                0
            },
            max_write_zeroes_bytes: if zeroing(TransmissionFlags::SEND_WRITE_ZEROES) {
                MAX_ZEROING
            } else {
                0
            },
        });
        let max_io = self
            .export
            .block_sizes
            .map(|b| b.max)
            .filter(|&m| m != u32::MAX);
        Properties {
            // Whole blocks: a tail shorter than one is not served.
            size: Some(self.export.size / u64::from(lbs) * u64::from(lbs)),
            logical_block_size: Some(lbs),
            min_logical_block_size: Some(lbs),
            physical_block_size: self
                .export
                .block_sizes
                .map(|b| b.preferred)
                .filter(|&p| p >= lbs && p <= 1 << 16),
            read_only: !writable,
            rotational: Some(flags.contains(TransmissionFlags::ROTATIONAL)),
            volatile_cache: Some(writable && flags.contains(TransmissionFlags::SEND_FLUSH)),
            fua: Some(writable && flags.contains(TransmissionFlags::SEND_FUA)),
            discard,
            dma_alignment: None,
            max_io_bytes: max_io,
        }
    }

    /// Zero copy first: the data goes between the socket and the request's pages. Then
    /// copy (the driver copies, in its task work), then user copy (the same copies and a
    /// system call more).
    fn data_paths(&self) -> &'static [DataPath] {
        &[DataPath::ZeroCopy, DataPath::Copy, DataPath::UserCopy]
    }

    fn wants_buffers(&self, path: DataPath) -> bool {
        path != DataPath::ZeroCopy
    }
}

/// What an NBD target's connections are doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdStatus {
    /// Every connection is up.
    pub connected: bool,
    /// What is wrong, per connection that is not up (`"connection 1: ..."`).
    pub problems: Vec<String>,
}

impl NbdStatus {
    fn of(links: &[QueueLink]) -> NbdStatus {
        let problems: Vec<String> = links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.problem().map(|p| format!("connection {i}: {p}")))
            .collect();
        NbdStatus {
            connected: problems.is_empty(),
            problems,
        }
    }
}

impl fmt::Display for NbdStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.connected {
            f.write_str("connected")
        } else {
            f.write_str(&self.problems.join("; "))
        }
    }
}

/// Reads an [`Nbd`] target's status from anywhere, once the device owns the target.
#[derive(Clone, Debug)]
pub struct NbdStatusHandle(Arc<Vec<QueueLink>>);

impl NbdStatusHandle {
    /// The status now.
    pub fn status(&self) -> NbdStatus {
        NbdStatus::of(&self.0)
    }
}
