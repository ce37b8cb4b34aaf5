//! Serves an export of an NBD server (nbd-server, qemu-nbd, nbdkit, ...) as `/dev/ublkbN`,
//! one connection per queue, until SIGINT (Ctrl-C), SIGTERM or SIGHUP, or a delete from
//! outside.
//!
//! ```text
//! sudo modprobe ublk_drv
//! qemu-nbd -f raw --persistent -e 2 -k /tmp/nbd.sock -x disk disk.img &
//! sudo cargo run --example nbd -- --socket /tmp/nbd.sock --export disk --queues 2
//! ```
//!
//! Options: `--host HOST` and `--port PORT` (default 10809), or `--socket PATH`; `--export
//! NAME` (default: the server's default export); `--queues N` (default 1: one connection
//! each); `--reconnect SECONDS` (hold I/O and reconnect for that long when a connection is
//! lost; default: fail the I/O); `--depth N`, `--id N`.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ublk::backend::{Nbd, NbdAddress};

#[derive(Default)]
struct NbdArgs {
    host: Option<String>,
    port: Option<u16>,
    socket: Option<PathBuf>,
    export: String,
    reconnect: Option<Duration>,
}

fn run(o: common::Common, address: NbdAddress, a: NbdArgs) -> ublk::Result<()> {
    let signals = common::block_signals()?;
    let connections = o.queues.unwrap_or(1);
    let nbd = Nbd::options(address, a.export)
        .connections(connections)
        .reconnect(a.reconnect)
        .open()?;
    let what = format!(
        "export '{}' at {}, {} bytes, {} connection(s)",
        nbd.export_name(),
        nbd.address(),
        nbd.size(),
        connections
    );
    let dev = o.builder().queues(connections).start_target(nbd)?;
    common::serve(dev, &signals, &what)
}

fn main() -> ExitCode {
    let mut a = NbdArgs::default();
    let options = common::parse("nbd", |flag, value| {
        match flag {
            "--host" => a.host = Some(value()?),
            "--port" => {
                let v = value()?;
                a.port = Some(
                    v.parse()
                        .map_err(|_| format!("{flag}: '{v}' is not a port"))?,
                );
            }
            "--socket" => a.socket = Some(PathBuf::from(value()?)),
            "--export" => a.export = value()?,
            "--reconnect" => {
                let v = value()?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("{flag}: '{v}' is not a number of seconds"))?;
                a.reconnect = Some(Duration::from_secs(secs));
            }
            _ => return Ok(false),
        }
        Ok(true)
    })
    .and_then(|o| {
        let address = match (a.host.take(), a.socket.take()) {
            (Some(host), None) => NbdAddress::Tcp {
                host,
                port: a.port.unwrap_or(NbdAddress::DEFAULT_PORT),
            },
            (None, Some(path)) => NbdAddress::Unix(path),
            (None, None) => return Err("--host HOST or --socket PATH is required".to_string()),
            (Some(_), Some(_)) => return Err("--host and --socket exclude each other".to_string()),
        };
        Ok((o, address))
    });
    common::exit("nbd", options.map(|(o, address)| run(o, address, a)))
}
