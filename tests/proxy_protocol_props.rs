//! Properties of the PROXY protocol reader and writer: every header written reads back whole,
//! with the addresses as written; no prefix of one is mistaken for anything but a prefix;
//! however the bytes arrive, `read_header` takes the header and keeps what follows; and
//! arbitrary or damaged bytes never panic and are judged the same at any length.

use std::net::{IpAddr, SocketAddr};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use smartproxy::config::ProxyProtocolVersion;
use smartproxy::proxy_protocol::{
    Addresses, MAX_HEADER_LEN, Parse, Received, encode, encode_local, parse, read_header,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The addresses a header carries for `addresses`: both sides IPv4 when both are IPv4 or
/// IPv4-mapped IPv6, else both IPv6 with an IPv4 side mapped; ports kept, nothing else.
fn as_written(addresses: Addresses) -> Addresses {
    let (s, d) = (addresses.source, addresses.destination);
    let (si, di) = (s.ip().to_canonical(), d.ip().to_canonical());
    let six = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let (si, di) = match (si, di) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (si, di),
        _ => (six(si), six(di)),
    };
    Addresses {
        source: SocketAddr::new(si, s.port()),
        destination: SocketAddr::new(di, d.port()),
    }
}

fn version() -> impl Strategy<Value = ProxyProtocolVersion> {
    prop_oneof![
        Just(ProxyProtocolVersion::V1),
        Just(ProxyProtocolVersion::V2)
    ]
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        // IPv4-mapped IPv6, and the short forms `::a.b.c.d` / `::` that print unlike the rest.
        any::<[u8; 4]>().prop_map(|v4| IpAddr::V6(std::net::Ipv4Addr::from(v4).to_ipv6_mapped())),
        any::<u32>().prop_map(|low| IpAddr::V6(u128::from(low).into())),
    ]
}

fn addresses() -> impl Strategy<Value = Addresses> {
    (ip(), any::<u16>(), ip(), any::<u16>(), any::<u32>()).prop_map(|(s, sp, d, dp, scope)| {
        let mut source = SocketAddr::new(s, sp);
        if let SocketAddr::V6(v6) = &mut source {
            v6.set_scope_id(scope);
            v6.set_flowinfo(scope);
        }
        Addresses {
            source,
            destination: SocketAddr::new(d, dp),
        }
    })
}

/// A header, and the addresses it should read as (`None` for the "no client address" ones).
fn header() -> impl Strategy<Value = (Vec<u8>, Option<Addresses>)> {
    prop_oneof![
        6 => (version(), addresses()).prop_map(|(v, a)| (encode(v, a), Some(as_written(a)))),
        1 => version().prop_map(|v| (encode_local(v), None)),
    ]
}

fn kind(parse: &Parse) -> u8 {
    match parse {
        Parse::Complete { .. } => 0,
        Parse::Incomplete => 1,
        Parse::NotProxy => 2,
        Parse::Invalid(_) => 3,
    }
}

/// Checks what holds for any input: no panic, a `Complete` length within the input that reads
/// the same alone, and a decision on a prefix that the whole input keeps.
fn check_any(bytes: &[u8]) -> Result<(), TestCaseError> {
    let whole = parse(bytes);
    if let Parse::Complete { len, .. } = whole {
        prop_assert!(len <= bytes.len() && len <= MAX_HEADER_LEN);
        prop_assert_eq!(&parse(&bytes[..len]), &whole);
    }
    for cut in 0..bytes.len().min(120) {
        let early = parse(&bytes[..cut]);
        match early {
            Parse::Incomplete => {}
            Parse::Complete { .. } => prop_assert_eq!(&early, &whole),
            _ => prop_assert_eq!(kind(&early), kind(&whole), "at {}: {:?}", cut, early),
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Remove(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip(at, mask) => {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        Mutation::Insert(at, byte) => bytes.insert(at.index(bytes.len() + 1), *byte),
        Mutation::Remove(at) => {
            bytes.remove(at.index(bytes.len()));
        }
    }
}

/// Sends `bytes` through an in-memory pipe of `capacity` bytes in writes of `sizes` (cycled),
/// and reads the header at the other end; returns what it found, the bytes left in the buffer
/// and those still in the pipe.
fn read_through_pipe(
    bytes: Vec<u8>,
    sizes: Vec<usize>,
    capacity: usize,
) -> (Received, Vec<u8>, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (mut client, mut server) = tokio::io::duplex(capacity);
        let writer = tokio::spawn(async move {
            let mut rest = &bytes[..];
            for &size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                client.write_all(chunk).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
                rest = tail;
            }
        });
        let mut buf = Vec::new();
        let received = read_header(&mut server, &mut buf).await.unwrap();
        let mut unread = Vec::new();
        server.read_to_end(&mut unread).await.unwrap();
        writer.await.unwrap();
        (received, buf, unread)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_headers_read_back_whole(version in version(), addresses in addresses()) {
        let header = encode(version, addresses);
        prop_assert_eq!(
            parse(&header),
            Parse::Complete { len: header.len(), addresses: Some(as_written(addresses)) }
        );
        if version == ProxyProtocolVersion::V1 {
            prop_assert!(header.len() <= 107);
        }
    }

    #[test]
    fn strict_prefixes_are_incomplete_and_what_follows_is_not_read(
        (header, expected) in header(),
        after in vec(any::<u8>(), 0..64),
    ) {
        for cut in 0..header.len() {
            prop_assert_eq!(parse(&header[..cut]), Parse::Incomplete, "cut at {}", cut);
        }
        let whole = Parse::Complete { len: header.len(), addresses: expected };
        prop_assert_eq!(parse(&[&header[..], &after].concat()), whole);
    }

    #[test]
    fn read_header_takes_the_header_however_it_arrives(
        (header, expected) in header(),
        after in vec(any::<u8>(), 0..300),
        sizes in vec(1..40usize, 1..8),
        capacity in prop_oneof![Just(1usize), 1..64usize, Just(8192usize)],
    ) {
        let bytes = [&header[..], &after].concat();
        let (received, buf, unread) = read_through_pipe(bytes, sizes, capacity);
        prop_assert!(matches!(received, Received::Header(a) if a == expected), "{:?}", received);
        prop_assert_eq!([buf, unread].concat(), after);
    }

    #[test]
    fn read_header_one_byte_at_a_time((header, expected) in header(), after in vec(any::<u8>(), 0..8)) {
        let bytes = [&header[..], &after].concat();
        let (received, buf, unread) = read_through_pipe(bytes, vec![1], 1);
        prop_assert!(matches!(received, Received::Header(a) if a == expected), "{:?}", received);
        prop_assert_eq!([buf, unread].concat(), after);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        check_any(&bytes)?;
    }

    #[test]
    fn arbitrary_lines_after_the_v1_signature(
        body in vec(prop_oneof![
            4 => prop::sample::select(&b"0123456789abcdef.: TCP46UNKOW"[..]),
            1 => any::<u8>(),
        ], 0..120),
        end in prop_oneof![Just(&b"\r\n"[..]), Just(&b""[..]), Just(&b"\r"[..])],
    ) {
        check_any(&[&b"PROXY "[..], &body, end].concat())?;
    }

    #[test]
    fn arbitrary_bytes_after_the_v2_signature(rest in vec(any::<u8>(), 0..128)) {
        check_any(&[&b"\r\n\r\n\0\r\nQUIT\n"[..], &rest].concat())?;
    }

    #[test]
    fn damaged_headers_never_panic(
        (header, _) in header(),
        after in vec(any::<u8>(), 0..8),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = [&header[..], &after].concat();
        for m in &mutations {
            mutate(&mut bytes, m);
        }
        check_any(&bytes)?;
    }
}

#[test]
fn not_proxy_first_bytes_stay_in_the_buffer() {
    let client_hello = [0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03];
    for bytes in [
        &client_hello[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"PROPFIND / HTTP/1.1\r\n\r\n",
    ] {
        for size in [1, 3, 100] {
            let (received, buf, unread) = read_through_pipe(bytes.to_vec(), vec![size], 64);
            assert!(matches!(received, Received::NoHeader), "{received:?}");
            assert_eq!([buf, unread].concat(), bytes);
        }
    }
    assert_eq!(parse(b"PRO"), Parse::Incomplete);
    assert_eq!(parse(b"PROP"), Parse::NotProxy);
}
