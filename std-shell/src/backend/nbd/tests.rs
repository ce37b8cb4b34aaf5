//! The handshake and `connect` against fake servers: a thread on the other end of a socket
//! plays a server, good or misbehaving, and checks what the client sends it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::connect::{Address, Stream, connect};
use super::error::{HandshakeError, Stage};
use super::handshake::{BlockSizes, Export, MAX_OPTION_REPLIES, Negotiated, handshake};
use super::proto::*;

const GIB: u64 = 1 << 30;

/// The server's end. Writes ignore errors: a client that gave up may have closed its end
/// already, and what a test checks is what the client does, not what the server managed.
struct Server<S>(S);

impl<S: Read + Write> Server<S> {
    fn send(&mut self, b: &[u8]) {
        let _ = self.0.write_all(b);
    }

    fn recv<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0; N];
        self.0.read_exact(&mut b).expect("the client sends it");
        b
    }

    fn greet(&mut self, flags: HandshakeFlags) {
        self.send(&NBDMAGIC.to_be_bytes());
        self.send(&IHAVEOPT.to_be_bytes());
        self.send(&flags.bits().to_be_bytes());
    }

    /// An option from the client: its number and data.
    fn option(&mut self) -> (u32, Vec<u8>) {
        let header: [u8; OPTION_LEN] = self.recv();
        assert_eq!(&header[..8], b"IHAVEOPT");
        let option = u32::from_be_bytes(header[8..12].try_into().unwrap());
        let len = u32::from_be_bytes(header[12..16].try_into().unwrap()) as usize;
        let mut data = vec![0; len];
        self.0.read_exact(&mut data).expect("the option's data");
        (option, data)
    }

    /// Greets, then checks the client flags and its `NBD_OPT_GO` (asking for block sizes
    /// only); returns the export name asked for.
    fn greet_and_take_go(&mut self, flags: HandshakeFlags) -> String {
        self.greet(flags);
        let want = if flags.contains(HandshakeFlags::NO_ZEROES) {
            3
        } else {
            1
        };
        assert_eq!(u32::from_be_bytes(self.recv()), want, "client flags");
        let (option, data) = self.option();
        assert_eq!(option, NBD_OPT_GO);
        let name_len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert_eq!(data.len(), 4 + name_len + 4, "one information request");
        assert_eq!(&data[4 + name_len..], &[0, 1, 0, 3], "NBD_INFO_BLOCK_SIZE");
        String::from_utf8(data[4..4 + name_len].to_vec()).unwrap()
    }

    /// The header of a reply to `NBD_OPT_GO` announcing `length` bytes of data.
    fn header(&mut self, reply: u32, length: u32) {
        let option = NBD_OPT_GO;
        self.send(
            &OptionReply {
                option,
                reply,
                length,
            }
            .encode(),
        );
    }

    fn reply(&mut self, reply: u32, data: &[u8]) {
        self.header(reply, data.len() as u32);
        self.send(data);
    }

    fn info(&mut self, kind: u16, payload: &[u8]) {
        self.reply(NBD_REP_INFO, &[&kind.to_be_bytes(), payload].concat());
    }

    fn info_export(&mut self, size: u64, flags: TransmissionFlags) {
        self.info(
            NBD_INFO_EXPORT,
            &[&size.to_be_bytes()[..], &flags.bits().to_be_bytes()].concat(),
        );
    }
}

const FIXED: HandshakeFlags = HandshakeFlags::FIXED_NEWSTYLE;
const BOTH: HandshakeFlags = FIXED.union(HandshakeFlags::NO_ZEROES);
const RW: TransmissionFlags = TransmissionFlags::HAS_FLAGS.union(TransmissionFlags::SEND_FLUSH);

/// Runs the handshake for `name` against `script` playing the server on a socket pair; the
/// server thread's checks must pass.
fn against(
    name: &str,
    script: impl FnOnce(&mut Server<UnixStream>) + Send + 'static,
) -> Result<Export, HandshakeError> {
    let (mut client, server) = UnixStream::pair().unwrap();
    // A broken test fails instead of hanging.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let t = thread::spawn(move || script(&mut Server(server)));
    let result = handshake(&mut client, name);
    drop(client);
    t.join().expect("the fake server's checks passed");
    result
}

#[test]
fn go_with_block_sizes_describes_the_export_and_starts_transmission() {
    let (mut client, server) = UnixStream::pair().unwrap();
    let t = thread::spawn(move || {
        let mut s = Server(server);
        assert_eq!(s.greet_and_take_go(BOTH), "disk");
        s.info_export(GIB, RW | TransmissionFlags::SEND_TRIM);
        let sizes = [512u32, 4096, 32 << 20].map(u32::to_be_bytes).concat();
        s.info(NBD_INFO_BLOCK_SIZE, &sizes);
        s.info(NBD_INFO_DESCRIPTION, b"a test disk");
        s.info(99, b"an information type from the future: skipped");
        s.reply(NBD_REP_ACK, &[]);
        // The stream is where transmission starts: the next bytes are a request.
        let req = Request::decode(&s.recv()).expect("a request");
        assert_eq!(
            (req.command, req.cookie, req.length),
            (Command::Read, 7, 512)
        );
    });
    let export = handshake(&mut client, "disk").unwrap();
    assert_eq!(
        export,
        Export {
            name: "disk".into(),
            size: GIB,
            flags: RW | TransmissionFlags::SEND_TRIM,
            block_sizes: Some(BlockSizes {
                min: 512,
                preferred: 4096,
                max: 32 << 20
            }),
            description: Some("a test disk".into()),
            negotiated: Negotiated::Go,
        }
    );
    let req = Request {
        flags: CmdFlags::empty(),
        command: Command::Read,
        cookie: 7,
        offset: 0,
        length: 512,
    };
    client.write_all(&req.encode()).unwrap();
    t.join().unwrap();
}

#[test]
fn a_read_only_export_says_so_and_no_zeroes_is_not_asked_unless_offered() {
    let export = against("", |s| {
        assert_eq!(s.greet_and_take_go(FIXED), "", "the default export");
        s.info_export(
            512,
            TransmissionFlags::HAS_FLAGS | TransmissionFlags::READ_ONLY,
        );
        s.info(NBD_INFO_NAME, b"canonical");
        s.reply(NBD_REP_ACK, &[]);
    })
    .unwrap();
    assert!(export.flags.contains(TransmissionFlags::READ_ONLY));
    assert_eq!(
        (export.name.as_str(), export.size, export.block_sizes),
        ("canonical", 512, None)
    );
}

#[test]
fn an_unknown_export_is_refused_by_name_and_the_session_aborted() {
    let err = against("foo", |s| {
        s.greet_and_take_go(BOTH);
        s.reply(NBD_REP_ERR_UNKNOWN, b"export 'foo' not present");
        assert_eq!(s.option(), (NBD_OPT_ABORT, vec![]), "a soft disconnect");
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the NBD server refused export 'foo': NBD_REP_ERR_UNKNOWN (no such export); it said \"export 'foo' not present\""
    );
}

#[test]
fn a_server_message_cannot_reach_the_terminal_raw() {
    let err = against("x", |s| {
        s.greet_and_take_go(BOTH);
        s.reply(NBD_REP_ERR_UNKNOWN | 0x40, b"\x1b[2J\xff");
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the NBD server refused export 'x': error reply 0x80000046; it said \"\\u{1b}[2J\u{fffd}\""
    );
}

#[test]
fn a_server_that_hangs_up_mid_handshake_is_named_with_the_stage() {
    let err = against("d", |s| s.send(&NBDMAGIC.to_be_bytes())).unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::Closed {
                stage: Stage::Greeting
            }
        ),
        "{err}"
    );
    let err = against("d", |s| {
        s.greet_and_take_go(BOTH);
        s.header(NBD_REP_INFO, 12);
        s.send(&[0, 0, 0, 0]);
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the NBD server closed the connection during the replies to NBD_OPT_GO"
    );
}

#[test]
fn what_is_not_an_nbd_server_is_refused_by_its_magic() {
    let err = against("d", |s| s.send(b"HTTP/1.1 400 Bad Request\r\n")).unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::BadMagic {
                stage: Stage::Greeting,
                expected: "NBDMAGIC",
                found: 0x4854_5450_2f31_2e31
            }
        ),
        "{err}"
    );
    let err = against("d", |s| {
        s.greet_and_take_go(BOTH);
        s.send(&[0xee; 20]);
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::BadMagic {
                stage: Stage::GoReplies,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oldstyle_and_plain_newstyle_servers_are_refused_by_name() {
    let err = against("d", |s| {
        s.send(&NBDMAGIC.to_be_bytes());
        s.send(&NBD_CLISERV_MAGIC.to_be_bytes());
    })
    .unwrap_err();
    assert!(matches!(err, HandshakeError::Oldstyle), "{err}");
    let err = against("d", |s| s.greet(HandshakeFlags::NO_ZEROES)).unwrap_err();
    assert!(
        matches!(err, HandshakeError::NotFixedNewstyle { .. }),
        "{err}"
    );
}

#[test]
fn a_huge_option_reply_is_refused_before_it_is_read() {
    let err = against("d", |s| {
        s.greet_and_take_go(BOTH);
        s.header(NBD_REP_INFO, u32::MAX);
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::ReplyTooLong {
                length: u32::MAX,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn endless_replies_are_cut_off() {
    let err = against("d", |s| {
        s.greet_and_take_go(BOTH);
        for _ in 0..=MAX_OPTION_REPLIES {
            s.info(99, b"more");
        }
    })
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::TooManyReplies { option: NBD_OPT_GO }),
        "{err}"
    );
}

#[test]
fn replies_that_break_the_protocol_are_refused() {
    type Script = fn(&mut Server<UnixStream>);
    let cases: [(&str, Script); 5] = [
        ("without sending NBD_INFO_EXPORT", |s| {
            s.reply(NBD_REP_ACK, &[])
        }),
        ("a reply to NBD_OPT_LIST came instead", |s| {
            s.send(
                &OptionReply {
                    option: NBD_OPT_LIST,
                    reply: NBD_REP_ACK,
                    length: 0,
                }
                .encode(),
            )
        }),
        ("an NBD_INFO_EXPORT of 6 bytes", |s| {
            s.info(NBD_INFO_EXPORT, &[0; 4])
        }),
        ("lack HAS_FLAGS", |s| {
            s.info_export(GIB, TransmissionFlags::READ_ONLY);
            s.reply(NBD_REP_ACK, &[]);
        }),
        ("minimum block size 3", |s| {
            s.info_export(GIB, RW);
            s.info(
                NBD_INFO_BLOCK_SIZE,
                &[3u32, 4096, 4096].map(u32::to_be_bytes).concat(),
            );
            s.reply(NBD_REP_ACK, &[]);
        }),
    ];
    for (want, script) in cases {
        let err = against("d", move |s| {
            s.greet_and_take_go(BOTH);
            script(s);
        })
        .unwrap_err();
        assert!(
            matches!(err, HandshakeError::Protocol { .. }),
            "{want}: {err}"
        );
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

#[test]
fn a_server_without_go_gets_export_name_with_or_without_zeroes() {
    for flags in [FIXED, BOTH] {
        let export = against("old", move |s| {
            s.greet_and_take_go(flags);
            s.reply(NBD_REP_ERR_UNSUP, &[]);
            assert_eq!(s.option(), (NBD_OPT_EXPORT_NAME, b"old".to_vec()));
            s.send(&GIB.to_be_bytes());
            s.send(&RW.bits().to_be_bytes());
            if !flags.contains(HandshakeFlags::NO_ZEROES) {
                s.send(&[0; 124]);
            }
        })
        .unwrap();
        assert_eq!(
            (export.size, export.flags, export.negotiated),
            (GIB, RW, Negotiated::ExportName)
        );
    }
    let err = against("gone", |s| {
        s.greet_and_take_go(BOTH);
        s.reply(NBD_REP_ERR_UNSUP, &[]);
        s.option();
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the NBD server refused export 'gone': it closed"),
        "{err}"
    );
}

#[test]
fn names_nbd_cannot_carry_are_refused_before_anything_is_sent() {
    for name in ["a".repeat(4097), "a\0b".to_string()] {
        let err = against(&name, |_| {}).unwrap_err();
        assert!(matches!(err, HandshakeError::InvalidName { .. }), "{err}");
    }
}

/// A socket path of this test process.
fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ublk-nbd-test-{}-{name}.sock", std::process::id()))
}

#[test]
fn connect_bounds_the_whole_handshake_even_for_a_dripping_server() {
    let path = socket_path("drip");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let t = thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut s = Server(conn);
        // A byte every 50 ms: each read is quick, the handshake never ends.
        for b in NBDMAGIC.to_be_bytes().iter().cycle().take(12) {
            s.send(&[*b]);
            thread::sleep(Duration::from_millis(50));
        }
    });
    let start = Instant::now();
    let err = connect(
        &Address::Unix(path.clone()),
        "d",
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err,
            HandshakeError::TimedOut {
                stage: Stage::Greeting,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("within 300ms (stuck in its greeting)"),
        "{err}"
    );
    t.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn nothing_listening_is_a_connect_error_naming_the_address() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = Address::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let err = connect(&address, "d", Duration::from_secs(2)).unwrap_err();
    assert!(
        matches!(&err, HandshakeError::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to the NBD server at 127.0.0.1:{port}: "
        )),
        "{err}"
    );
    let err = connect(
        &Address::Unix(socket_path("none")),
        "d",
        Duration::from_secs(2),
    )
    .unwrap_err();
    assert!(matches!(err, HandshakeError::Connect { .. }), "{err}");
}

#[test]
fn connect_over_tcp_returns_a_blocking_stream_without_timeouts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let mut s = Server(listener.accept().unwrap().0);
        s.greet_and_take_go(BOTH);
        s.info_export(GIB, RW);
        s.reply(NBD_REP_ACK, &[]);
    });
    let address = Address::Tcp {
        host: "localhost".into(),
        port,
    };
    let (stream, export) = connect(&address, "t", Duration::from_secs(5)).unwrap();
    assert_eq!(export.size, GIB);
    let Stream::Tcp(tcp) = &stream else {
        panic!("a TCP stream")
    };
    assert_eq!(
        (tcp.read_timeout().unwrap(), tcp.write_timeout().unwrap()),
        (None, None)
    );
    assert!(tcp.nodelay().unwrap());
    t.join().unwrap();
    assert_eq!(
        Address::Tcp {
            host: "::1".into(),
            port: 1
        }
        .to_string(),
        "[::1]:1"
    );
}
