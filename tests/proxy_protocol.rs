//! The PROXY protocol end to end, over loopback sockets: headers from a trusted peer
//! (127.0.0.1) name the client that routing, limits and X-Forwarded-For use; headers from
//! anyone else are refused where the proxy reads first and pass untouched where it connects at
//! once; missing, silent, malformed, split and LOCAL headers; and `sendProxyProtocol` on TCP,
//! passthrough, HTTP, WebSocket and health-check connections to a backend that reads the
//! header it gets. Headers come from the crate's encoder and, in every group, also as text or
//! bytes written out by hand, so the proxy is checked against the protocol and not only against
//! its own encoder.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::http::*;
use common::pp::*;
use common::tls::{TestCa, client_config, client_hello, routes_config};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use smartproxy::config::ProxyProtocolVersion::{V1, V2};
use smartproxy::proxy_protocol::{Addresses, encode, encode_local};
use smartproxy::{CloseReason, Proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Not in `proxyProtocol.accept`.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const UNTRUSTED_TOO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A proxy on loopback that trusts 127.0.0.1 to send PROXY headers, with `routes`, merged
/// with `globals`.
async fn start_pp(routes: Vec<Value>, globals: Value) -> Proxy {
    let trusting = json!({"proxyProtocol": {"accept": ["127.0.0.1"]}});
    start_proxy(routes_config(routes, merged(trusting, globals))).await
}

/// A forward route on `port` to one target; no domains, so its port connects at once.
fn route(name: &str, port: u16, target: Value) -> Value {
    json!({"name": name, "match": {"ports": port},
           "action": {"type": "forward", "targets": [target]}})
}

fn target(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port})
}

/// A target that is sent a PROXY header of `version`.
fn sending(port: u16, version: &str) -> Value {
    json!({"host": "127.0.0.1", "port": port, "sendProxyProtocol": version})
}

fn matching(mut route: Value, key: &str, value: Value) -> Value {
    route["match"][key] = value;
    route
}

/// An HTTP route for `app.test`: its port reads the request head.
fn http_route(name: &str, port: u16, target: Value) -> Value {
    matching(route(name, port, target), "domains", json!("app.test"))
}

/// A passthrough route for `pp.test`: its port reads the ClientHello.
fn sni_route(name: &str, port: u16, target: Value) -> Value {
    let mut route = matching(route(name, port, target), "domains", json!("pp.test"));
    route["action"]["tls"] = json!({"mode": "passthrough"});
    route
}

fn addresses(source: &str, destination: &str) -> Addresses {
    Addresses {
        source: sa(source),
        destination: sa(destination),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A proxy with a port of each kind: `tcp` connects at once (to `tcp_backend`), `http` reads
/// the request head (app.test, to `http_backend`) and `sni` reads the ClientHello (pp.test,
/// passed through to `tls_backend`).
struct Ports {
    proxy: Proxy,
    tcp: u16,
    http: u16,
    sni: u16,
    tcp_backend: Recorder,
    http_backend: Arc<EchoState>,
    tls_backend: Recorder,
}

impl Ports {
    async fn start(globals: Value) -> Ports {
        let tcp_backend = Recorder::start().await;
        let tls_backend = Recorder::start().await;
        let (http_target, http_backend) = counting_echo_backend("app").await;
        let (tcp, http, sni) = (free_port(), free_port(), free_port());
        let routes = vec![
            route("tcp", tcp, target(tcp_backend.port)),
            http_route("app", http, target(http_target)),
            sni_route("tls", sni, target(tls_backend.port)),
        ];
        Ports {
            proxy: start_pp(routes, globals).await,
            tcp,
            http,
            sni,
            tcp_backend,
            http_backend,
            tls_backend,
        }
    }

    /// Checks that no backend saw a connection, then waits until none is live.
    async fn assert_no_backend_reached(&self) {
        let tcp = self.tcp_backend.accepts();
        assert_eq!(tcp, 0, "the TCP backend saw a connection");
        let http = self.http_backend.accepts();
        assert_eq!(http, 0, "the HTTP backend saw a connection");
        let tls = self.tls_backend.accepts();
        assert_eq!(tls, 0, "the TLS backend saw a connection");
        wait_no_live(&self.proxy).await;
    }
}

/// A proxy with routes on a TCP port by client address, each to a backend that answers with
/// its tag first: one per `(tag, clientIp)`, then `other:` for every other client; and an
/// HTTP port for app.test. Returns the proxy, the TCP port and the HTTP port.
async fn tagged_proxy(by_client: &[(&'static str, &str)]) -> (Proxy, u16, u16) {
    let (tcp_port, http_port) = (free_port(), free_port());
    let mut routes = Vec::new();
    for &(tag, client_ip) in by_client {
        let backend = route(
            tag.trim_end_matches(':'),
            tcp_port,
            target(tag_echo_backend(tag).await),
        );
        routes.push(matching(backend, "clientIp", json!(client_ip)));
    }
    routes.push(route(
        "other",
        tcp_port,
        target(tag_echo_backend("other:").await),
    ));
    let (http_backend, _) = echo_http_backend("app").await;
    routes.push(http_route("app", http_port, target(http_backend)));
    (start_pp(routes, json!({})).await, tcp_port, http_port)
}

/// A proxy with one route per header version, each on a port of its own and made by
/// `shape(name, port, target)`, to the one of `targets` that is sent that version. Returns the
/// proxy and the ports, v1's first.
async fn per_version(
    targets: [u16; 2],
    shape: impl Fn(&str, u16, Value) -> Value,
) -> (Proxy, [u16; 2]) {
    let ports = [free_port(), free_port()];
    let routes = [("v1", ports[0], targets[0]), ("v2", ports[1], targets[1])]
        .into_iter()
        .map(|(version, port, backend)| shape(version, port, sending(backend, version)))
        .collect();
    (start_pp(routes, json!({})).await, ports)
}

/// A connection from `source` that sends no header, and its socket address.
async fn direct(source: Ipv4Addr, port: u16) -> (TcpStream, SocketAddr) {
    let stream = connect_from(source, port).await;
    let address = stream.local_addr().expect("addr");
    (stream, address)
}

/// The reply to `ping` (then FIN) on `client`, as text, and how the proxy ended it.
async fn ping(mut client: TcpStream) -> (String, Ending) {
    let (got, ending) = send_and_finish(&mut client, b"ping").await;
    (text(&got), ending)
}

/// The reply to `ping` after `header` from 127.0.0.1, as text.
async fn reply_after(port: u16, header: &[u8]) -> (String, Ending) {
    ping(connect_with_header(port, header).await).await
}

/// The X-Forwarded-For an HTTP backend is sent for one `GET /` of app.test over `stream`.
async fn forwarded_for(stream: TcpStream) -> Value {
    let mut client = h1_over(stream).await;
    let got = send(&mut client, "app.test", "/", &[]).await;
    got.json()["headers"]["x-forwarded-for"].clone()
}

/// Writes `bytes` and FIN on `client`, checks that the proxy ends it with a FIN too, and
/// returns all that `backend` received on that connection.
async fn relayed(mut client: TcpStream, bytes: &[u8], backend: &mut Recorder) -> Vec<u8> {
    let (_, ending) = send_and_finish(&mut client, bytes).await;
    assert_eq!(ending, Ending::Fin);
    backend.next().await
}

/// Sends `bytes` on `client` and checks that `backend` got a PROXY header naming `expected`,
/// then exactly `bytes`. Returns the header.
async fn assert_sent_header(
    client: TcpStream,
    bytes: &[u8],
    backend: &mut Recorder,
    expected: Addresses,
) -> Vec<u8> {
    let got = relayed(client, bytes, backend).await;
    let (sent, header, rest) = split_header(&got);
    assert_eq!(sent, Some(expected));
    assert!(
        rest == bytes,
        "{} bytes arrived after the header, not the {} sent: {}",
        rest.len(),
        bytes.len(),
        rest[..rest.len().min(120)].escape_ascii()
    );
    header.to_vec()
}

/// Sends each case's bytes from `source` to its port and checks that the proxy closes the
/// connection with a FIN and not a byte, each counted under `reason`. Returns how long each
/// connection took to be closed.
async fn assert_each_closed(
    proxy: &Proxy,
    source: Ipv4Addr,
    reason: CloseReason,
    cases: &[(&str, u16, Vec<u8>)],
) -> Vec<Duration> {
    let mut took = Vec::new();
    for (i, (what, port, bytes)) in cases.iter().enumerate() {
        let start = Instant::now();
        let mut client = connect_from(source, *port).await;
        client.write_all(bytes).await.expect("write");
        assert_closed_unanswered(&mut client, what).await;
        drop(client);
        took.push(start.elapsed());
        wait_closed_with(proxy, reason, i as u64 + 1).await;
    }
    assert_eq!(proxy.closed_with(reason), cases.len() as u64);
    took
}

#[tokio::test]
async fn a_headers_source_is_the_client_tcp_routes_match() {
    let routes = [("proxied:", "10.9.8.7"), ("six:", "2001:db8::/32")];
    let (proxy, port, _) = tagged_proxy(&routes).await;
    let here = format!("127.0.0.1:{port}");
    // PP2_TYPE_AUTHORITY "app.test" and a PP2_TYPE_NOOP: TLVs are ignored.
    let tlvs = [
        &[0x02, 0x00, 0x08][..],
        b"app.test",
        &[0x04, 0x00, 0x02, 0, 0],
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "v1 as text",
            format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {port}\r\n").into_bytes(),
            "proxied:",
        ),
        (
            "v2 as bytes",
            v2_tcp4(v4("10.9.8.7:4243"), v4(&here)),
            "proxied:",
        ),
        (
            "v2 as bytes, with TLVs",
            v2_tcp4_with_tlvs(v4("10.9.8.7:4244"), v4(&here), &tlvs),
            "proxied:",
        ),
        (
            "v1 encoded",
            encode(V1, addresses("10.9.8.7:4245", &here)),
            "proxied:",
        ),
        (
            "v2 encoded",
            encode(V2, addresses("10.9.8.7:4246", &here)),
            "proxied:",
        ),
        (
            "v1 TCP6 as text",
            format!("PROXY TCP6 2001:db8::7 ::1 4242 {port}\r\n").into_bytes(),
            "six:",
        ),
        (
            "v2 TCP6 as bytes",
            v2_tcp6(v6("[2001:db8::8]:4242"), v6(&format!("[::1]:{port}"))),
            "six:",
        ),
        (
            "v2 encoded, another client",
            encode(V2, addresses("10.1.1.1:4242", &here)),
            "other:",
        ),
        (
            "v1 as text, another client",
            format!("PROXY TCP4 10.9.8.70 127.0.0.1 4242 {port}\r\n").into_bytes(),
            "other:",
        ),
    ];
    for (what, header, tag) in cases {
        let got = reply_after(port, &header).await;
        assert_eq!(got, (format!("{tag}ping"), Ending::Fin), "{what}");
    }
    // A client without a header (from a peer that may not send one) is its socket's address.
    let got = ping(connect_from(UNTRUSTED, port).await).await;
    assert_eq!(got, ("other:ping".to_string(), Ending::Fin));
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_headers_source_is_the_client_an_http_backend_is_told_of() {
    let (backend, requests) = echo_http_backend("app").await;
    let port = free_port();
    let proxy = start_pp(vec![http_route("app", port, target(backend))], json!({})).await;
    let here = format!("127.0.0.1:{port}");
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "v1 as text",
            format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {port}\r\n").into_bytes(),
            None,
            "10.9.8.7",
        ),
        (
            "v2 as bytes",
            v2_tcp4(v4("10.9.8.6:4242"), v4(&here)),
            None,
            "10.9.8.6",
        ),
        (
            "v2 encoded, IPv6",
            encode(
                V2,
                addresses("[2001:db8::9]:4242", &format!("[::1]:{port}")),
            ),
            None,
            "2001:db8::9",
        ),
        // The sending peer is trusted: the incoming chain is kept and the client appended.
        (
            "v1 encoded, with a chain",
            encode(V1, addresses("10.9.8.5:4242", &here)),
            Some("10.1.2.3"),
            "10.1.2.3, 10.9.8.5",
        ),
    ];
    for (what, header, chain, expected) in cases {
        let mut client = h1_over(connect_with_header(port, &header).await).await;
        let extra: Vec<(&str, &str)> = chain.map(|c| ("x-forwarded-for", c)).into_iter().collect();
        for path in ["/first", "/second"] {
            let got = send(&mut client, "app.test", path, &extra).await;
            assert_eq!(got.status, 200, "{what}: {}", got.text());
            assert_eq!(
                got.json()["headers"]["x-forwarded-for"],
                expected,
                "{what} {path}"
            );
        }
    }
    // A peer that may not send headers: its own address, and its chain is replaced.
    let mut direct = h1_client_from(UNTRUSTED, port).await;
    let got = send(
        &mut direct,
        "app.test",
        "/",
        &[("x-forwarded-for", "10.1.2.3")],
    )
    .await;
    assert_eq!(got.json()["headers"]["x-forwarded-for"], "127.0.0.2");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 9);
    drop(direct);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn per_ip_limits_count_the_client_a_header_names() {
    let echo = echo_backend().await;
    let port = free_port();
    let proxy = start_pp(
        vec![route("echo", port, target(echo))],
        json!({"maxConnectionsPerIP": 1}),
    )
    .await;
    let here = format!("127.0.0.1:{port}");
    let mut first = connect_with_header(port, &encode(V2, addresses("10.9.8.7:1001", &here))).await;
    assert_eq!(echo_roundtrip(&mut first, b"first").await, b"first");
    // The same client again, through the same peer: over its limit.
    let line = format!("PROXY TCP4 10.9.8.7 127.0.0.1 1002 {port}\r\n");
    let mut second = connect_with_header(port, line.as_bytes()).await;
    assert_closed_unanswered(&mut second, "the same client again").await;
    drop(second);
    wait_closed_with(&proxy, CloseReason::Limit, 1).await;
    // Another client through the same peer (whose socket address is the same) still gets in.
    let mut third = connect_with_header(port, &v2_tcp4(v4("10.9.8.8:1003"), v4(&here))).await;
    assert_eq!(echo_roundtrip(&mut third, b"third").await, b"third");
    // The first is still up and the refusal was the only one.
    assert_eq!(echo_roundtrip(&mut first, b"again").await, b"again");
    assert_eq!(proxy.closed_with(CloseReason::Limit), 1);
    drop((first, third));
    wait_no_live(&proxy).await;
    // Once its connection has gone, the client may come back.
    let mut fourth =
        connect_with_header(port, &encode(V1, addresses("10.9.8.7:1004", &here))).await;
    assert_eq!(echo_roundtrip(&mut fourth, b"fourth").await, b"fourth");
    assert_eq!(proxy.closed_with(CloseReason::Limit), 1);
    drop(fourth);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_blocked_where_the_proxy_reads_first() {
    let ports = Ports::start(json!({})).await;
    let hello = client_hello(Some("pp.test"), client_config(&TestCa::new("pp CA")));
    let request = b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n".to_vec();
    let to_http = format!("127.0.0.1:{}", ports.http);
    let to_sni = format!("127.0.0.1:{}", ports.sni);
    let cases = [
        (
            "v1 as text, HTTP port",
            ports.http,
            [
                format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {}\r\n", ports.http).into_bytes(),
                request.clone(),
            ]
            .concat(),
        ),
        (
            "v2 as bytes, HTTP port",
            ports.http,
            [v2_tcp4(v4("10.9.8.7:4242"), v4(&to_http)), request.clone()].concat(),
        ),
        (
            "v1 encoded, SNI port",
            ports.sni,
            [
                encode(V1, addresses("10.9.8.7:4242", &to_sni)),
                hello.clone(),
            ]
            .concat(),
        ),
        (
            "v2 as bytes, SNI port",
            ports.sni,
            [v2_tcp4(v4("10.9.8.7:4242"), v4(&to_sni)), hello.clone()].concat(),
        ),
    ];
    assert_each_closed(&ports.proxy, UNTRUSTED, CloseReason::Blocked, &cases).await;
    ports.assert_no_backend_reached().await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_blocked_also_when_it_arrives_in_pieces() {
    let ports = Ports::start(json!({})).await;
    let headers = [
        b"PROXY TCP4 10.9.8.7 127.0.0.1 4242 80\r\n".to_vec(),
        v2_tcp4(v4("10.9.8.7:4242"), v4("127.0.0.1:80")),
    ];
    let mut blocked = 0;
    for port in [ports.http, ports.sni] {
        for header in &headers {
            let mut client = connect_from(UNTRUSTED, port).await;
            write_byte_by_byte(&mut client, header).await;
            // The proxy may already have closed; the close is what is checked.
            let _ = client
                .write_all(b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n")
                .await;
            let (got, _) = read_to_end(&mut client).await;
            drop(client);
            assert_eq!(text(&got), "", "{}", header.escape_ascii());
            blocked += 1;
            wait_closed_with(&ports.proxy, CloseReason::Blocked, blocked).await;
        }
    }
    assert_eq!(ports.proxy.closed_with(CloseReason::Blocked), 4);
    assert_eq!(ports.proxy.closed_with(CloseReason::NotTls), 0);
    ports.assert_no_backend_reached().await;
}

#[tokio::test]
async fn an_untrusted_peers_header_passes_untouched_where_the_proxy_connects_at_once() {
    let mut ports = Ports::start(json!({})).await;
    let here = format!("127.0.0.1:{}", ports.tcp);
    let cases = [
        (
            "v1 as text",
            format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {}\r\nhello", ports.tcp).into_bytes(),
        ),
        (
            "v2 as bytes",
            [&v2_tcp4(v4("10.9.8.7:4242"), v4(&here))[..], b"hello"].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let client = connect_from(UNTRUSTED, ports.tcp).await;
        let got = relayed(client, &bytes, &mut ports.tcp_backend).await;
        assert_eq!(got, bytes, "{what}");
    }
    assert_eq!(ports.proxy.closed_with(CloseReason::Blocked), 0);
    wait_no_live(&ports.proxy).await;
}

#[tokio::test]
async fn a_trusted_peer_without_a_header_is_refused_while_required() {
    let ports = Ports::start(json!({})).await;
    let cases = [
        ("TCP port", ports.tcp, b"hello, no header\r\n".to_vec()),
        (
            "HTTP port",
            ports.http,
            b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n".to_vec(),
        ),
    ];
    let localhost = Ipv4Addr::LOCALHOST;
    assert_each_closed(&ports.proxy, localhost, CloseReason::Blocked, &cases).await;
    ports.assert_no_backend_reached().await;
}

#[tokio::test]
async fn with_required_false_a_trusted_peer_may_leave_the_header_out() {
    let optional = json!({"proxyProtocol": {"accept": "127.0.0.1", "required": false}});
    let mut ports = Ports::start(optional).await;
    let payload = pattern(20_000);
    let client = connect_from(Ipv4Addr::LOCALHOST, ports.tcp).await;
    assert!(
        relayed(client, &payload, &mut ports.tcp_backend).await == payload,
        "the bytes arrived changed"
    );
    // A header is still read when there is one.
    let here = format!("127.0.0.1:{}", ports.tcp);
    let client = connect_with_header(ports.tcp, &v2_tcp4(v4("10.9.8.7:4242"), v4(&here))).await;
    let got = relayed(client, b"after a header", &mut ports.tcp_backend).await;
    assert_eq!(text(&got), "after a header");
    // On HTTP, the client is then the peer itself.
    let http = connect_from(Ipv4Addr::LOCALHOST, ports.http).await;
    assert_eq!(forwarded_for(http).await, "127.0.0.1");
    assert_eq!(ports.proxy.closed_with(CloseReason::Blocked), 0);
    wait_no_live(&ports.proxy).await;
}

#[tokio::test]
async fn a_silent_trusted_peer_is_closed_after_initial_data_timeout() {
    let ports = Ports::start(json!({"initialDataTimeout": "300ms"})).await;
    let limit = Duration::from_millis(300);
    let half_v2 = v2_tcp4(v4("10.9.8.7:4242"), v4("127.0.0.1:80"));
    let cases = [
        ("nothing, TCP port", ports.tcp, Vec::new()),
        (
            "half a v1 header, TCP port",
            ports.tcp,
            b"PROXY TCP4 10.9".to_vec(),
        ),
        ("nothing, HTTP port", ports.http, Vec::new()),
        (
            "half a v2 header, HTTP port",
            ports.http,
            half_v2[..20].to_vec(),
        ),
    ];
    let reason = CloseReason::InitialDataTimeout;
    let took = assert_each_closed(&ports.proxy, Ipv4Addr::LOCALHOST, reason, &cases).await;
    for ((what, ..), took) in cases.iter().zip(took) {
        assert!(
            took >= limit && took < limit + Duration::from_secs(2),
            "{what}: closed after {took:?}"
        );
    }
    ports.assert_no_backend_reached().await;
}

#[tokio::test]
async fn a_malformed_header_is_a_bad_request() {
    let ports = Ports::start(json!({})).await;
    let tcp_port = ports.tcp;
    let good_v2 = v2_tcp4(v4("10.9.8.7:4242"), v4("127.0.0.1:80"));
    let with = |at: usize, byte: u8| {
        let mut header = good_v2.clone();
        header[at] = byte;
        header
    };
    let mut short_addresses = good_v2[..16].to_vec();
    short_addresses[15] = 4; // AF_INET needs 12 address bytes
    short_addresses.extend_from_slice(&[10, 9, 8, 7]);
    let cases: Vec<(&str, u16, Vec<u8>)> = vec![
        (
            "v1 port out of range",
            tcp_port,
            b"PROXY TCP4 10.9.8.7 127.0.0.1 99999 80\r\n".to_vec(),
        ),
        (
            "v1 unknown protocol",
            tcp_port,
            b"PROXY TCP9 10.9.8.7 127.0.0.1 4242 80\r\n".to_vec(),
        ),
        (
            "v1 missing fields",
            tcp_port,
            b"PROXY TCP4 10.9.8.7\r\n".to_vec(),
        ),
        (
            "v1 LF without CR",
            tcp_port,
            b"PROXY TCP4 10.9.8.7 127.0.0.1 4242 80\nhello".to_vec(),
        ),
        (
            "v1 without CRLF in 107 bytes",
            tcp_port,
            [&b"PROXY TCP4 "[..], &[b'1'; 110]].concat(),
        ),
        ("v2 version 1", tcp_port, with(12, 0x11)),
        ("v2 unknown command", tcp_port, with(12, 0x2f)),
        ("v2 addresses too short", tcp_port, short_addresses),
        (
            "v1 IPv6 address in TCP4, HTTP port",
            ports.http,
            b"PROXY TCP4 2001:db8::7 127.0.0.1 4242 80\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ];
    let reason = CloseReason::BadRequest;
    assert_each_closed(&ports.proxy, Ipv4Addr::LOCALHOST, reason, &cases).await;
    ports.assert_no_backend_reached().await;
}

#[tokio::test]
async fn a_header_split_byte_by_byte_is_still_read() {
    let (proxy, tcp_port, http_port) = tagged_proxy(&[("proxied:", "10.9.8.7")]).await;
    let here = format!("127.0.0.1:{tcp_port}");
    let headers = [
        format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {tcp_port}\r\n").into_bytes(),
        v2_tcp4(v4("10.9.8.7:4243"), v4(&here)),
    ];
    for header in headers {
        let mut client = connect_from(Ipv4Addr::LOCALHOST, tcp_port).await;
        write_byte_by_byte(&mut client, &header).await;
        assert_eq!(
            ping(client).await,
            ("proxied:ping".to_string(), Ending::Fin),
            "{}",
            text(&header)
        );
    }
    let mut client = connect_from(Ipv4Addr::LOCALHOST, http_port).await;
    let header = encode(
        V2,
        addresses("10.9.8.7:4244", &format!("127.0.0.1:{http_port}")),
    );
    write_byte_by_byte(&mut client, &header).await;
    assert_eq!(forwarded_for(client).await, "10.9.8.7");
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn bytes_right_behind_the_header_in_the_same_write_reach_the_backend() {
    let mut ports = Ports::start(json!({})).await;
    // TCP: a large payload in the header's write.
    let payload = pattern(100_000);
    let headers = [
        format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {}\r\n", ports.tcp).into_bytes(),
        encode(
            V2,
            addresses("10.9.8.7:4242", &format!("127.0.0.1:{}", ports.tcp)),
        ),
    ];
    for header in headers {
        let client = connect_from(Ipv4Addr::LOCALHOST, ports.tcp).await;
        let bytes = [header, payload.clone()].concat();
        let got = relayed(client, &bytes, &mut ports.tcp_backend).await;
        assert!(
            got == payload,
            "{} bytes arrived, not the payload",
            got.len()
        );
    }
    // HTTP: the whole request in the header's write.
    let mut client = connect_from(Ipv4Addr::LOCALHOST, ports.http).await;
    let header = v2_tcp4(
        v4("10.9.8.7:4242"),
        v4(&format!("127.0.0.1:{}", ports.http)),
    );
    let request = b"GET /same-write HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n";
    client
        .write_all(&[&header[..], request].concat())
        .await
        .expect("write");
    let (data, _) = read_to_end(&mut client).await;
    let (response, _) = parse_response(&data, true).expect("a whole response");
    assert_eq!(response.status, 200, "{}", response.text());
    let seen: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(seen["uri"], "/same-write");
    assert_eq!(seen["headers"]["x-forwarded-for"], "10.9.8.7");
    // Passthrough: the ClientHello in the header's write reaches the backend exactly.
    let hello = client_hello(Some("pp.test"), client_config(&TestCa::new("pp CA")));
    let header = format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {}\r\n", ports.sni);
    let client = connect_from(Ipv4Addr::LOCALHOST, ports.sni).await;
    let bytes = [header.as_bytes(), &hello].concat();
    assert!(
        relayed(client, &bytes, &mut ports.tls_backend).await == hello,
        "the ClientHello arrived changed"
    );
    wait_no_live(&ports.proxy).await;
}

#[tokio::test]
async fn v2_local_and_v1_unknown_leave_the_socket_address_in_use() {
    let (proxy, tcp_port, http_port) = tagged_proxy(&[("socket:", "127.0.0.1")]).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("v2 LOCAL as bytes", v2_local()),
        ("v2 LOCAL encoded", encode_local(V2)),
        ("v1 UNKNOWN as text", b"PROXY UNKNOWN\r\n".to_vec()),
        (
            "v1 UNKNOWN with addresses",
            b"PROXY UNKNOWN 10.9.8.7 127.0.0.1 4242 80\r\n".to_vec(),
        ),
        ("v1 UNKNOWN encoded", encode_local(V1)),
    ];
    for (what, header) in cases {
        let got = reply_after(tcp_port, &header).await;
        assert_eq!(got, ("socket:ping".to_string(), Ending::Fin), "{what}");
    }
    let http = connect_with_header(http_port, &v2_local()).await;
    assert_eq!(forwarded_for(http).await, "127.0.0.1");
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_tcp_target_is_sent_the_real_client() {
    let mut v1_backend = Recorder::start().await;
    let mut v2_backend = Recorder::start().await;
    let (proxy, [v1_port, v2_port]) = per_version([v1_backend.port, v2_backend.port], route).await;

    // A direct client, v1: the line compared as text.
    let (client, source) = direct(UNTRUSTED, v1_port).await;
    let expected = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {} {v1_port}\r\ndirect",
        source.port()
    );
    assert_eq!(
        text(&relayed(client, b"direct", &mut v1_backend).await),
        expected
    );

    // A direct client, v2: the fixed part compared as bytes, the addresses parsed.
    let (client, source) = direct(UNTRUSTED_TOO, v2_port).await;
    let expected = Addresses {
        source,
        destination: addr(v2_port),
    };
    let header = assert_sent_header(client, b"direct", &mut v2_backend, expected).await;
    assert_eq!(
        header[..16],
        [&V2_SIGNATURE[..], &[0x21, 0x11, 0, 12]].concat()
    );

    // Through a trusted peer's header: its source and destination pass on.
    let client =
        connect_with_header(v1_port, &v2_tcp4(v4("10.9.8.7:4242"), v4("10.0.0.1:8443"))).await;
    assert_eq!(
        text(&relayed(client, b"proxied", &mut v1_backend).await),
        "PROXY TCP4 10.9.8.7 10.0.0.1 4242 8443\r\nproxied"
    );
    let client = connect_with_header(v2_port, b"PROXY TCP4 10.9.8.7 10.0.0.1 4242 8443\r\n").await;
    let expected = addresses("10.9.8.7:4242", "10.0.0.1:8443");
    assert_sent_header(client, b"proxied", &mut v2_backend, expected).await;
    // IPv6 passes on as IPv6.
    let incoming = v2_tcp6(v6("[2001:db8::7]:4242"), v6("[2001:db8::1]:443"));
    let client = connect_with_header(v1_port, &incoming).await;
    assert_eq!(
        text(&relayed(client, b"six", &mut v1_backend).await),
        "PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\nsix"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_passthrough_target_is_sent_the_header_then_the_exact_client_hello() {
    let mut v1_backend = Recorder::start().await;
    let mut v2_backend = Recorder::start().await;
    let backends = [v1_backend.port, v2_backend.port];
    let (proxy, [v1_port, v2_port]) = per_version(backends, sni_route).await;
    let hello = client_hello(Some("pp.test"), client_config(&TestCa::new("pp CA")));

    // Direct, v1: the line as text, then the ClientHello byte for byte.
    let (client, source) = direct(UNTRUSTED, v1_port).await;
    let line = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {} {v1_port}\r\n",
        source.port()
    );
    let got = relayed(client, &hello, &mut v1_backend).await;
    assert!(
        got == [line.as_bytes(), &hello].concat(),
        "{}",
        got[..got.len().min(120)].escape_ascii()
    );

    // Direct, v2.
    let (client, source) = direct(UNTRUSTED, v2_port).await;
    let expected = Addresses {
        source,
        destination: addr(v2_port),
    };
    assert_sent_header(client, &hello, &mut v2_backend, expected).await;

    // Through a trusted peer's header, both versions.
    let incoming = addresses("10.9.8.7:4242", "10.0.0.1:443");
    let client = connect_with_header(v1_port, &encode(V2, incoming)).await;
    assert_sent_header(client, &hello, &mut v1_backend, incoming).await;
    let client = connect_with_header(v2_port, b"PROXY TCP4 10.9.8.7 10.0.0.1 4242 443\r\n").await;
    assert_sent_header(client, &hello, &mut v2_backend, incoming).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn http_requests_to_a_target_sent_a_header_each_get_a_connection_of_their_own() {
    for version in ["v1", "v2"] {
        let (backend, state) = pp_http_backend().await;
        let port = free_port();
        let routes = vec![http_route("app", port, sending(backend, version))];
        let proxy = start_pp(routes, json!({})).await;
        let here = format!("127.0.0.1:{port}");

        let (a, a_source) = direct(UNTRUSTED, port).await;
        let mut a = h1_over(a).await;
        let (b, b_source) = direct(UNTRUSTED_TOO, port).await;
        let mut b = h1_over(b).await;
        let header = v2_tcp4(v4("10.9.8.7:4242"), v4("10.0.0.1:8080"));
        let mut c = h1_over(connect_with_header(port, &header).await).await;

        // One after the other, so a pooled connection would be free for the next request.
        let mut seen = Vec::new();
        for (which, path) in [(0, "/a1"), (1, "/b"), (2, "/c"), (0, "/a2")] {
            let client = match which {
                0 => &mut a,
                1 => &mut b,
                _ => &mut c,
            };
            let got = send(client, "app.test", path, &[]).await;
            assert_eq!(got.status, 200, "{version} {path}: {}", got.text());
            let json = got.json();
            assert_eq!(json["path"], path, "{version}");
            seen.push(json);
        }
        let (a_source, b_source) = (a_source.to_string(), b_source.to_string());
        let expect = [
            (a_source.as_str(), here.as_str(), "127.0.0.2"),
            (b_source.as_str(), here.as_str(), "127.0.0.3"),
            ("10.9.8.7:4242", "10.0.0.1:8080", "10.9.8.7"),
            (a_source.as_str(), here.as_str(), "127.0.0.2"),
        ];
        for (json, (source, destination, xff)) in seen.iter().zip(expect) {
            assert_eq!(json["source"], source, "{version}: {json}");
            assert_eq!(json["destination"], destination, "{version}: {json}");
            assert_eq!(json["xff"], xff, "{version}: {json}");
        }
        // Each request had a backend connection of its own (a connection that carried a
        // header names one client; docs/SECURITY.md): none was pooled or shared.
        let conns: HashSet<u64> = seen.iter().filter_map(|j| j["conn"].as_u64()).collect();
        assert_eq!(conns.len(), 4, "{version}: {seen:?}");
        assert_eq!(state.accepts.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(proxy.idle_backend_connections(), 0, "{version}");
        assert!(state.bad().is_empty(), "{version}: {:?}", state.bad());
        drop((a, b, c));
        wait_no_live(&proxy).await;
    }
}

/// The next text message, skipping control frames.
async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    for _ in 0..10 {
        match timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    panic!("no text message among 10 frames");
}

/// A WebSocket over `stream` to ws.test: checks the backend's first message (what its header
/// said), one echo, then closes.
async fn websocket_through(stream: TcpStream, port: u16, expected_hello: &str) {
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://ws.test:{port}/chat"), stream)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(next_text(&mut ws).await, expected_hello);
    ws.send(Message::text("echo me")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "echo me");
    ws.close(None).await.expect("close");
    for _ in 0..10 {
        match timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
}

#[tokio::test]
async fn a_websocket_target_is_sent_the_real_client() {
    let backend = pp_ws_backend().await;
    let ws_route = |name: &str, port: u16, target: Value| {
        matching(route(name, port, target), "domains", json!("ws.test"))
    };
    let (proxy, ports) = per_version([backend, backend], ws_route).await;
    for port in ports {
        let (stream, source) = direct(UNTRUSTED, port).await;
        websocket_through(stream, port, &format!("{source} 127.0.0.1:{port}")).await;
        let stream = connect_with_header(port, b"PROXY TCP4 10.9.8.7 10.0.0.1 4242 8080\r\n").await;
        websocket_through(stream, port, "10.9.8.7:4242 10.0.0.1:8080").await;
    }
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn health_checks_send_a_local_header_before_their_get() {
    let (v1_backend, v1_state) = pp_http_backend().await;
    let (v2_backend, v2_state) = pp_http_backend().await;
    let checked = |name: &str, port: u16, target: Value| {
        let mut route = route(name, port, target);
        route["action"]["loadBalancing"] =
            json!({"healthCheck": {"path": "/health", "interval": "100ms", "timeout": "100ms"}});
        route
    };
    let (proxy, [v1_port, v2_port]) = per_version([v1_backend, v2_backend], checked).await;
    eventually("two health checks on each backend", || {
        v1_state.health().len() >= 2 && v2_state.health().len() >= 2
    })
    .await;
    for header in v1_state.health() {
        assert_eq!(text(&header), "PROXY UNKNOWN\r\n");
    }
    for header in v2_state.health() {
        assert_eq!(header, v2_local(), "{}", header.escape_ascii());
    }
    // Client connections to the same targets still name their client.
    for (port, state) in [(v1_port, &v1_state), (v2_port, &v2_state)] {
        let (stream, source) = direct(UNTRUSTED, port).await;
        let mut client = h1_over(stream).await;
        let got = send(&mut client, "app.test", "/", &[]).await;
        assert_eq!(got.json()["source"], source.to_string());
        assert!(state.bad().is_empty(), "{:?}", state.bad());
    }
    wait_no_live(&proxy).await;
}
