use std::net::SocketAddr;

use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn pair(source: &str, destination: &str) -> Addresses {
    Addresses {
        source: addr(source),
        destination: addr(destination),
    }
}

fn complete(len: usize, addresses: Option<Addresses>) -> Parse {
    Parse::Complete { len, addresses }
}

fn is_invalid(parse: &Parse) -> bool {
    matches!(parse, Parse::Invalid(_))
}

/// A v2 header: signature, then the version/command and family/protocol bytes, the length
/// field and the payload.
fn v2_header(version_command: u8, family: u8, length: u16, payload: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend([version_command, family]);
    header.extend(length.to_be_bytes());
    header.extend(payload);
    header
}

const IPV4_PAYLOAD: [u8; 12] = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb];

#[test]
fn interop_v1_line() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    let expected = pair("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(line), complete(line.len(), Some(expected)));
}

#[test]
fn interop_v2_bytes() {
    let mut bytes = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    bytes.extend([0x21, 0x11, 0x00, 0x0c]);
    bytes.extend(IPV4_PAYLOAD);
    let expected = pair("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(&bytes), complete(28, Some(expected)));
    assert_eq!(encode(ProxyProtocolVersion::V2, expected), bytes);
}

#[test]
fn interop_v2_ipv6() {
    let mut payload = vec![0x20, 0x01, 0x0d, 0xb8];
    payload.extend([0; 11]);
    payload.push(1);
    payload.extend([0; 15]);
    payload.push(2);
    payload.extend([0x30, 0x39, 0x01, 0xbb]);
    let bytes = v2_header(0x21, 0x21, 36, &payload);
    let expected = pair("[2001:db8::1]:12345", "[::2]:443");
    assert_eq!(parse(&bytes), complete(52, Some(expected)));
}

#[test]
fn not_proxy() {
    let client_hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    assert_eq!(parse(&client_hello), Parse::NotProxy);
    assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Parse::NotProxy);
    assert_eq!(parse(b"PROPFIND / HTTP/1.1\r\n"), Parse::NotProxy);
    assert_eq!(parse(b"PROP"), Parse::NotProxy);
    assert_eq!(parse(b"PROXYPROXY \r\n"), Parse::NotProxy);
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX\n"), Parse::NotProxy);
    assert_eq!(parse(b"\r\n\r\nGET"), Parse::NotProxy);
}

#[test]
fn signature_prefixes_are_incomplete() {
    for bytes in [
        &b""[..],
        b"P",
        b"PR",
        b"PRO",
        b"PROX",
        b"PROXY",
        b"\r",
        b"\r\n\r\n\0\r\nQUIT",
    ] {
        assert_eq!(parse(bytes), Parse::Incomplete, "{}", bytes.escape_ascii());
    }
}

#[test]
fn signatures() {
    assert!(starts_with_signature(b"PROXY "));
    assert!(starts_with_signature(b"PROXY garbage"));
    assert!(starts_with_signature(V2_SIGNATURE));
    assert!(starts_with_signature(&v2_header(
        0x21,
        0x11,
        12,
        &IPV4_PAYLOAD
    )));
    assert!(!starts_with_signature(b"PROXY"));
    assert!(!starts_with_signature(b"PROXYX"));
    assert!(!starts_with_signature(b"\r\n\r\n\0\r\nQUIT"));
    assert!(!starts_with_signature(b""));
    assert!(!starts_with_signature(b"PROPFIND /"));
}

#[test]
fn v1_unknown_ignores_the_rest_of_its_line() {
    assert_eq!(parse(b"PROXY UNKNOWN\r\nGET"), complete(15, None));
    let line = b"PROXY UNKNOWN 10.0.0.1 10.0.0.2 1 2\r\n";
    assert_eq!(parse(line), complete(line.len(), None));
    // More words than a TCP line has: ppp alone would wait for more bytes forever.
    let line = b"PROXY UNKNOWN a b c d e f g\r\n";
    assert_eq!(parse(line), complete(line.len(), None));
    assert!(is_invalid(&parse(b"PROXY UNKNOWNX\r\n")));
}

#[test]
fn v1_longest_lines() {
    let tcp6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n";
    let expected = pair(
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
    );
    assert_eq!(parse(tcp6.as_bytes()), complete(104, Some(expected)));
    let unknown = format!("PROXY UNKNOWN {}\r\n", &tcp6[11..tcp6.len() - 2]);
    assert_eq!(unknown.len(), 107);
    assert_eq!(parse(unknown.as_bytes()), complete(107, None));
    let too_long = format!("PROXY UNKNOWN {}1\r\n", &tcp6[11..tcp6.len() - 2]);
    assert!(is_invalid(&parse(too_long.as_bytes())));
}

#[test]
fn v1_without_crlf_in_107_bytes_is_invalid() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(105, b'a');
    assert_eq!(parse(&line), Parse::Incomplete);
    line.push(b'a');
    assert!(is_invalid(&parse(&line)));
    line.resize(300, b'a');
    assert!(is_invalid(&parse(&line)));
}

#[test]
fn v1_malformed() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
        b"PROXY TCP4 ::1 ::2 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
        b"PROXY tcp4 1.2.3.4 1.2.3.5 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\rX",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n",
        b"PROXY TCP4 1.2.3.4\t1.2.3.5 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 1.2.3.5 1 \xff",
        b"PROXY UNKNOWN \xc3\xa9\r\n",
    ];
    for bytes in bad {
        assert!(is_invalid(&parse(bytes)), "{}", bytes.escape_ascii());
    }
}

#[test]
fn v1_invalid_says_what_and_where() {
    let Parse::Invalid(text) = parse(b"PROXY TCP4 1.2.3.4 1.2.3.5 70000 2\r\n") else {
        panic!("expected Invalid");
    };
    assert!(text.contains("port"), "{text}");
    assert!(text.contains("70000"), "{text}");
    assert!(text.contains("\\r\\n"), "{text}");
}

#[test]
fn v1_lines_are_judged_at_their_crlf() {
    // ppp alone calls the first malformed (the space before a port not yet received) and the
    // second incomplete (it ends in `PROXY`).
    let cases: &[(&[u8], bool)] = &[
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 ", true),
        (b"PROXY TCP5 PROXY", false),
        (b"PROXY TC", false),
        (b"PROXY UNKNOWN a b c d e f g", true),
        (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 65536", false),
    ];
    for &(prefix, valid) in cases {
        assert_eq!(
            parse(prefix),
            Parse::Incomplete,
            "{}",
            prefix.escape_ascii()
        );
        let mut line = prefix.to_vec();
        line.extend(b"2\r");
        assert_eq!(parse(&line), Parse::Incomplete, "{}", line.escape_ascii());
        line.push(b'\n');
        assert_eq!(
            matches!(parse(&line), Parse::Complete { .. }),
            valid,
            "{}",
            line.escape_ascii()
        );
    }
    // A byte no header holds need not wait.
    assert!(is_invalid(&parse(b"PROXY \x16\x03\x01")));
    assert!(is_invalid(&parse(b"PROXY TCP4\0")));
}

#[test]
fn v2_malformed() {
    let bad = [
        v2_header(0x11, 0x11, 12, &IPV4_PAYLOAD),
        v2_header(0x31, 0x11, 12, &IPV4_PAYLOAD),
        v2_header(0x22, 0x11, 12, &IPV4_PAYLOAD),
        v2_header(0x2f, 0x11, 12, &IPV4_PAYLOAD),
        v2_header(0x21, 0x41, 12, &IPV4_PAYLOAD),
        v2_header(0x21, 0x13, 12, &IPV4_PAYLOAD),
        v2_header(0x21, 0x11, 11, &IPV4_PAYLOAD),
        v2_header(0x21, 0x21, 12, &IPV4_PAYLOAD),
        v2_header(0x21, 0x31, 36, &[0; 36]),
    ];
    for bytes in &bad {
        assert!(is_invalid(&parse(bytes)), "{}", bytes.escape_ascii());
    }
    // The version/command byte is judged once the 16 fixed bytes are in.
    assert_eq!(parse(&v2_header(0x11, 0x11, 12, &[])), parse(&bad[0]));
}

#[test]
fn v2_without_client_addresses() {
    let ipv4 = pair("192.168.0.1:56324", "192.168.0.11:443");
    // LOCAL, with and without addresses.
    assert_eq!(parse(&v2_header(0x20, 0x00, 0, &[])), complete(16, None));
    assert_eq!(
        parse(&v2_header(0x20, 0x11, 12, &IPV4_PAYLOAD)),
        complete(28, None)
    );
    // UDP over IPv4, unspecified, and stream with an unspecified family.
    assert_eq!(
        parse(&v2_header(0x21, 0x12, 12, &IPV4_PAYLOAD)),
        complete(28, None)
    );
    assert_eq!(
        parse(&v2_header(0x21, 0x10, 12, &IPV4_PAYLOAD)),
        complete(28, None)
    );
    assert_eq!(
        parse(&v2_header(0x21, 0x00, 12, &IPV4_PAYLOAD)),
        complete(28, None)
    );
    assert_eq!(parse(&v2_header(0x21, 0x01, 3, b"abc")), complete(19, None));
    // Unix stream sockets.
    assert_eq!(
        parse(&v2_header(0x21, 0x31, 216, &[b'/'; 216])),
        complete(232, None)
    );
    // And the stream over IPv4 that does name the client.
    assert_eq!(
        parse(&v2_header(0x21, 0x11, 12, &IPV4_PAYLOAD)),
        complete(28, Some(ipv4))
    );
}

#[test]
fn v2_tlvs_are_ignored() {
    let mut payload = IPV4_PAYLOAD.to_vec();
    payload.extend([0x02, 0x00, 0x0b]);
    payload.extend(b"example.com");
    payload.extend([0x04, 0x00, 0x00]);
    // Even a TLV whose length runs past the header.
    payload.extend([0x20, 0xff, 0xff, 0x01]);
    let length = u16::try_from(payload.len()).unwrap();
    let mut bytes = v2_header(0x21, 0x11, length, &payload);
    let len = bytes.len();
    bytes.extend(b"GET / HTTP/1.1\r\n");
    let expected = pair("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(&bytes), complete(len, Some(expected)));
}

#[test]
fn v2_longest_header() {
    let mut bytes = v2_header(0x21, 0x11, u16::MAX, &IPV4_PAYLOAD);
    bytes.resize(MAX_HEADER_LEN - 1, 0);
    assert_eq!(parse(&bytes), Parse::Incomplete);
    bytes.push(0);
    let expected = pair("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(parse(&bytes), complete(MAX_HEADER_LEN, Some(expected)));
}

#[test]
fn encode_v1() {
    let v4 = pair("192.168.0.1:56324", "192.168.0.11:443");
    assert_eq!(
        encode(ProxyProtocolVersion::V1, v4),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    );
    let v6 = pair("[2001:db8::1]:1", "[::1]:2");
    assert_eq!(
        encode(ProxyProtocolVersion::V1, v6),
        b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    );
}

#[test]
fn encode_maps_a_mixed_pair_into_ipv6() {
    let mixed = pair("10.0.0.1:1000", "[2001:db8::1]:443");
    let on_wire = pair("[::ffff:10.0.0.1]:1000", "[2001:db8::1]:443");
    assert_eq!(
        encode(ProxyProtocolVersion::V1, mixed),
        b"PROXY TCP6 ::ffff:10.0.0.1 2001:db8::1 1000 443\r\n"
    );
    for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
        let header = encode(version, mixed);
        assert_eq!(parse(&header), complete(header.len(), Some(on_wire)));
    }
}

#[test]
fn encode_writes_ipv4_mapped_pairs_as_ipv4() {
    let mapped = pair("[::ffff:10.0.0.1]:1000", "[::ffff:10.0.0.2]:443");
    let half = pair("[::ffff:10.0.0.1]:1000", "10.0.0.2:443");
    let on_wire = pair("10.0.0.1:1000", "10.0.0.2:443");
    assert_eq!(
        encode(ProxyProtocolVersion::V1, mapped),
        b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 443\r\n"
    );
    for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
        for addresses in [mapped, half] {
            let header = encode(version, addresses);
            assert_eq!(parse(&header), complete(header.len(), Some(on_wire)));
        }
    }
    assert_eq!(
        encode(ProxyProtocolVersion::V2, mapped),
        v2_header(
            0x21,
            0x11,
            12,
            &[10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0x01, 0xbb]
        )
    );
}

#[test]
fn encode_local_headers() {
    assert_eq!(encode_local(ProxyProtocolVersion::V1), b"PROXY UNKNOWN\r\n");
    assert_eq!(
        encode_local(ProxyProtocolVersion::V2),
        v2_header(0x20, 0x00, 0, &[])
    );
    for version in [ProxyProtocolVersion::V1, ProxyProtocolVersion::V2] {
        let header = encode_local(version);
        assert_eq!(parse(&header), complete(header.len(), None));
    }
}

/// A reader that fails if it is read at all.
struct NoReads;

impl AsyncRead for NoReads {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Err(std::io::Error::other("read")))
    }
}

#[tokio::test]
async fn read_header_uses_what_buf_already_holds() {
    let mut buf = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nHELLO".to_vec();
    let received = read_header(&mut NoReads, &mut buf).await.unwrap();
    let expected = pair("1.2.3.4:1", "5.6.7.8:2");
    assert!(matches!(received, Received::Header(Some(a)) if a == expected));
    assert_eq!(buf, b"HELLO");

    let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
    let received = read_header(&mut NoReads, &mut buf).await.unwrap();
    assert!(matches!(received, Received::NoHeader));
    assert_eq!(buf, b"GET / HTTP/1.1\r\n");

    let mut buf = b"PROXY".to_vec();
    let error = read_header(&mut NoReads, &mut buf).await.unwrap_err();
    assert!(matches!(error, ReadError::Io(_)), "{error}");
}

#[tokio::test]
async fn read_header_closed_and_invalid() {
    let mut buf = Vec::new();
    let error = read_header(&mut tokio::io::empty(), &mut buf)
        .await
        .unwrap_err();
    assert!(matches!(error, ReadError::Closed), "{error}");

    let mut stream: &[u8] = b"PROXY TCP4 1.2.3.4";
    let mut buf = Vec::new();
    let error = read_header(&mut stream, &mut buf).await.unwrap_err();
    assert!(matches!(error, ReadError::Closed), "{error}");

    let mut stream: &[u8] = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nrest";
    let mut buf = Vec::new();
    let error = read_header(&mut stream, &mut buf).await.unwrap_err();
    assert!(matches!(error, ReadError::Invalid(_)), "{error}");

    let mut stream: &[u8] = b"PROPFIND / HTTP/1.1\r\n";
    let mut buf = Vec::new();
    let received = read_header(&mut stream, &mut buf).await.unwrap();
    assert!(matches!(received, Received::NoHeader));
    assert_eq!(buf, b"PROPFIND / HTTP/1.1\r\n");
}

#[tokio::test]
async fn read_header_reads_no_more_than_a_chunk_past_the_header() {
    let mut bytes = v2_header(0x21, 0x11, u16::MAX, &IPV4_PAYLOAD);
    bytes.resize(MAX_HEADER_LEN + 3 * READ_CHUNK, 7);
    let mut stream: &[u8] = &bytes;
    let mut buf = Vec::new();
    let received = read_header(&mut stream, &mut buf).await.unwrap();
    assert!(matches!(received, Received::Header(Some(_))));
    assert!(buf.len() < READ_CHUNK, "{}", buf.len());
    assert!(buf.iter().all(|&b| b == 7));
    assert_eq!(buf.len() + stream.len(), 3 * READ_CHUNK);
}

#[test]
fn fuzz_seeds_are_whole_headers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/proxy_header");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            matches!(parse(&bytes), Parse::Complete { .. }),
            "{}",
            path.display()
        );
    }
}

#[test]
fn partial_signatures_need_more_bytes() {
    for partial in [&b"P"[..], b"PROXY", b"\r", b"\r\n\r\n\0\r\nQUIT"] {
        assert!(is_partial_signature(partial), "{}", partial.escape_ascii());
    }
    let whole_v2 = V2_SIGNATURE;
    for decided in [
        &b""[..],
        b"PROXY ",
        b"PO",
        b"GET",
        b"\r\nGET",
        whole_v2,
        b"\x16\x03\x01",
    ] {
        assert!(!is_partial_signature(decided), "{}", decided.escape_ascii());
    }
}
