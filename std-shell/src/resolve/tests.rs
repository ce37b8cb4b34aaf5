use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::dns::{Reply, is_label, query};
use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// Name servers that nobody may ask: a test that reaches them has failed.
fn no_servers() -> Resolvers {
    Resolvers {
        servers: Vec::new(),
        ..Resolvers::default()
    }
}

#[test]
fn addresses_are_taken_as_they_are_written() {
    let r = no_servers();
    let got = |host| resolve_with(host, 10809, "", &r, soon()).unwrap();
    assert_eq!(
        got("192.0.2.7"),
        vec![SocketAddr::new(ip("192.0.2.7"), 10809)]
    );
    assert_eq!(
        got("2001:db8::7"),
        vec![SocketAddr::new(ip("2001:db8::7"), 10809)]
    );
    assert_eq!(
        got("[2001:db8::7]"),
        vec![SocketAddr::new(ip("2001:db8::7"), 10809)]
    );
}

#[test]
fn what_is_not_a_name_is_refused_without_asking() {
    let r = no_servers();
    for host in ["", ".", "a..b", "bad name", "x/y", &"a".repeat(64), "-"] {
        let e = resolve_with(host, 1, "", &r, soon()).unwrap_err();
        if host != "-" {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{host:?}: {e}");
        }
    }
    assert!(is_label("storage-1") && is_label("_nbd") && !is_label("") && !is_label("a.b"));
}

#[test]
fn etc_hosts_is_read_before_any_name_server() {
    let hosts = "# comment\n127.0.0.1 localhost\n192.0.2.9  Storage storage.lan # the NAS\n\
                 2001:db8::9 storage\nnot-an-address storage\n";
    let r = no_servers();
    let got = resolve_with("STORAGE", 7, hosts, &r, soon()).unwrap();
    // IPv4 first, whatever the file's order.
    assert_eq!(
        got,
        vec![
            SocketAddr::new(ip("192.0.2.9"), 7),
            SocketAddr::new(ip("2001:db8::9"), 7)
        ]
    );
    assert_eq!(hosts::lookup(hosts, "storage.lan"), vec![ip("192.0.2.9")]);
    assert_eq!(
        hosts::lookup(hosts, "the"),
        Vec::<IpAddr>::new(),
        "comments are not names"
    );
}

#[test]
fn localhost_is_the_loopback_even_without_etc_hosts() {
    let r = no_servers();
    let got = resolve_with("db.localhost", 1, "", &r, soon()).unwrap();
    assert_eq!(
        got,
        vec![
            SocketAddr::new(ip("127.0.0.1"), 1),
            SocketAddr::new(ip("::1"), 1)
        ]
    );
}

#[test]
fn resolv_conf_is_read_as_the_c_library_reads_it() {
    let r = Resolvers::parse(
        "# generated\nnameserver 10.0.0.2\nnameserver 2001:db8::53\nnameserver bogus\n\
         nameserver 10.0.0.3\nnameserver 10.0.0.4\nsearch corp.example. example\n\
         options rotate ndots:2 timeout:3 attempts:9\nsortlist 10.0.0.0\n",
    );
    assert_eq!(
        r.servers,
        vec![
            SocketAddr::new(ip("10.0.0.2"), 53),
            SocketAddr::new(ip("2001:db8::53"), 53),
            SocketAddr::new(ip("10.0.0.3"), 53)
        ],
        "at most three, the bad one skipped"
    );
    assert_eq!(r.search, vec!["corp.example", "example"]);
    assert_eq!(
        (r.ndots, r.timeout, r.attempts),
        (2, Duration::from_secs(3), 5)
    );
    let empty = Resolvers::parse("");
    assert_eq!(empty.servers, vec![SocketAddr::new(ip("127.0.0.1"), 53)]);
    assert_eq!((empty.ndots, empty.attempts), (1, 2));
}

#[test]
fn the_search_list_goes_first_for_short_names() {
    let r = Resolvers {
        search: vec!["corp.example".into(), "example".into()],
        ..Resolvers::default()
    };
    assert_eq!(
        r.candidates("nas"),
        vec!["nas.corp.example", "nas.example", "nas"]
    );
    assert_eq!(
        r.candidates("nas.lab"),
        vec!["nas.lab", "nas.lab.corp.example", "nas.lab.example"]
    );
    assert_eq!(r.candidates("nas.lab."), vec!["nas.lab"]);
}

#[test]
fn a_query_is_laid_out_as_rfc_1035_says() {
    assert_eq!(
        query(0x1234, "nas.example", 28),
        [
            &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0][..],
            b"\x03nas\x07example\x00",
            &[0, 28, 0, 1]
        ]
        .concat()
    );
}

/// A reply to query `q`: its question, then `answers` (each already encoded), response code
/// `rcode`.
fn reply(q: &[u8], rcode: u8, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut m = q.to_vec();
    m[2] = 0x81; // QR, RD
    m[3] = 0x80 | rcode; // RA
    m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for a in answers {
        m.extend_from_slice(a);
    }
    m
}

/// A resource record named by pointer `name_at`, of type `rtype`, with `data`.
fn record(name_at: u16, rtype: u16, data: &[u8]) -> Vec<u8> {
    let mut r = (0xc000 | name_at).to_be_bytes().to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

#[test]
fn replies_are_parsed_through_cnames_and_pointers() {
    let q = query(7, "nas.example", 1);
    // nas.example CNAME real.example (the name after the pointer to "example" at 16);
    // real.example A 192.0.2.7; a record of another type is passed over.
    let cname = [&b"\x04real"[..], &[0xc0, 16]].concat();
    let cname_at = (q.len() + 12) as u16;
    let m = reply(
        &q,
        0,
        &[
            record(12, 5, &cname),
            record(cname_at, 1, &[192, 0, 2, 7]),
            record(cname_at, 16, b"\x05hello"),
        ],
    );
    let r = Reply::parse(&m, 7, "NAS.example", 1).unwrap();
    assert_eq!((r.rcode, r.truncated), (0, false));
    assert_eq!(r.addresses, vec![ip("192.0.2.7")]);
    // Not the reply to this query: another id, another question, a query.
    assert!(Reply::parse(&m, 8, "nas.example", 1).is_err());
    assert!(Reply::parse(&m, 7, "other.example", 1).is_err());
    assert!(Reply::parse(&m, 7, "nas.example", 28).is_err());
    assert!(Reply::parse(&q, 7, "nas.example", 1).is_err());
    // Every cut of it, and every byte changed, is an error or a reply, never a panic.
    for n in 0..m.len() {
        let _ = Reply::parse(&m[..n], 7, "nas.example", 1);
        let mut bent = m.clone();
        bent[n] ^= 0xff;
        let _ = Reply::parse(&bent, 7, "nas.example", 1);
    }
    // A pointer to itself ends.
    let mut looped = q.clone();
    looped.truncate(12);
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(Reply::parse(&reply(&looped, 0, &[]), 7, "nas.example", 1).is_err());
}

/// A name server on 127.0.0.1 that knows `nas.example` (A 192.0.2.7, AAAA 2001:db8::7) and
/// `v4.example` (A only), says NXDOMAIN for other names, and never answers `slow.example`.
fn fake_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let q = &buf[..n];
            let mut at = 12;
            let mut labels = Vec::new();
            while q[at] != 0 {
                let len = usize::from(q[at]);
                labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).to_lowercase());
                at += 1 + len;
            }
            let qtype = u16::from_be_bytes([q[at + 1], q[at + 2]]);
            let answer = match (labels.join(".").as_str(), qtype) {
                ("slow.example", _) => continue,
                ("nas.example" | "v4.example", 1) => reply(q, 0, &[record(12, 1, &[192, 0, 2, 7])]),
                ("nas.example", 28) => reply(q, 0, &[record(12, 28, &ip6_bytes("2001:db8::7"))]),
                ("v4.example", _) => reply(q, 0, &[]),
                _ => reply(q, 3, &[]),
            };
            let _ = socket.send_to(&answer, from);
        }
    });
    address
}

fn ip6_bytes(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

#[test]
fn name_servers_are_asked_for_both_families() {
    let r = Resolvers {
        servers: vec![fake_server()],
        search: vec!["example".into()],
        timeout: Duration::from_millis(300),
        attempts: 1,
        ..Resolvers::default()
    };
    let got = |host| resolve_with(host, 10809, "", &r, soon());
    assert_eq!(
        got("nas.example").unwrap(),
        vec![
            SocketAddr::new(ip("192.0.2.7"), 10809),
            SocketAddr::new(ip("2001:db8::7"), 10809)
        ]
    );
    // Through the search list; a name with no AAAA record.
    assert_eq!(got("nas").unwrap().len(), 2);
    assert_eq!(
        got("v4").unwrap(),
        vec![SocketAddr::new(ip("192.0.2.7"), 10809)]
    );
    let e = got("missing.example").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("no such host"), "{e}");
    // A server that does not answer: bounded by the timeout, and named.
    let t0 = Instant::now();
    let e = got("slow.example").unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("no answer in time"), "{e}");
    // And by the caller's deadline.
    let t0 = Instant::now();
    let short = Instant::now() + Duration::from_millis(100);
    assert!(resolve_with("slow.example", 1, "", &r, short).is_err());
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}
