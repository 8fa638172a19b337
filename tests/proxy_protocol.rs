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
use std::net::Ipv4Addr;
use std::time::Duration;

use common::http::*;
use common::pp::*;
use common::tls::{TestCa, client_config, client_hello};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use smartproxy::CloseReason;
use smartproxy::config::ProxyProtocolVersion::{V1, V2};
use smartproxy::proxy_protocol::{Addresses, encode, encode_local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

/// Not in `proxyProtocol.accept`.
const UNTRUSTED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const UNTRUSTED_TOO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A loopback config that trusts 127.0.0.1 to send PROXY headers, merged with `globals`.
fn pp_config(routes: Vec<Value>, globals: Value) -> Value {
    let mut config = json!({
        "bindAddress": "127.0.0.1",
        "proxyProtocol": {"accept": ["127.0.0.1"]},
        "routes": routes,
    });
    if let (Some(base), Value::Object(extra)) = (config.as_object_mut(), globals) {
        base.extend(extra);
    }
    config
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

/// Writes `message` and reads as many bytes back.
async fn echo_once(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.expect("write");
    let mut got = vec![0; message.len()];
    timeout(PATIENCE, stream.read_exact(&mut got))
        .await
        .expect("echo in time")
        .expect("echo");
    got
}

/// The reply to `ping` after `header` from 127.0.0.1, as text.
async fn reply_after(port: u16, header: &[u8]) -> (String, Ending) {
    let mut client = connect_with_header(port, header).await;
    let (got, ending) = send_and_finish(&mut client, b"ping").await;
    (String::from_utf8_lossy(&got).into_owned(), ending)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_headers_source_is_the_client_tcp_routes_match() {
    let proxied = tag_echo_backend("proxied:").await;
    let six = tag_echo_backend("six:").await;
    let other = tag_echo_backend("other:").await;
    let port = free_port();
    let proxy = start_proxy(pp_config(
        vec![
            matching(
                route("proxied", port, target(proxied)),
                "clientIp",
                json!("10.9.8.7"),
            ),
            matching(
                route("six", port, target(six)),
                "clientIp",
                json!("2001:db8::/32"),
            ),
            route("other", port, target(other)),
        ],
        json!({}),
    ))
    .await;
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
    let mut direct = connect_from(UNTRUSTED, port).await;
    let (got, ending) = send_and_finish(&mut direct, b"ping").await;
    assert_eq!(
        (text(&got), ending),
        ("other:ping".to_string(), Ending::Fin)
    );
    drop(direct);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_headers_source_is_the_client_an_http_backend_is_told_of() {
    let (backend, requests) = echo_http_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(pp_config(
        vec![http_route("app", port, target(backend))],
        json!({}),
    ))
    .await;
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
    let proxy = start_proxy(pp_config(
        vec![route("echo", port, target(echo))],
        json!({"maxConnectionsPerIP": 1}),
    ))
    .await;
    let here = format!("127.0.0.1:{port}");
    let mut first = connect_with_header(port, &encode(V2, addresses("10.9.8.7:1001", &here))).await;
    assert_eq!(echo_once(&mut first, b"first").await, b"first");
    // The same client again, through the same peer: over its limit.
    let line = format!("PROXY TCP4 10.9.8.7 127.0.0.1 1002 {port}\r\n");
    let mut second = connect_with_header(port, line.as_bytes()).await;
    let (got, ending) = read_to_end(&mut second).await;
    drop(second);
    assert_eq!((text(&got), ending), (String::new(), Ending::Fin));
    wait_closed_with(&proxy, CloseReason::Limit, 1).await;
    // Another client through the same peer (whose socket address is the same) still gets in.
    let mut third = connect_with_header(port, &v2_tcp4(v4("10.9.8.8:1003"), v4(&here))).await;
    assert_eq!(echo_once(&mut third, b"third").await, b"third");
    // The first is still up and the refusal was the only one.
    assert_eq!(echo_once(&mut first, b"again").await, b"again");
    assert_eq!(proxy.closed_with(CloseReason::Limit), 1);
    drop((first, third));
    wait_no_live(&proxy).await;
    // Once its connection has gone, the client may come back.
    let mut fourth =
        connect_with_header(port, &encode(V1, addresses("10.9.8.7:1004", &here))).await;
    assert_eq!(echo_once(&mut fourth, b"fourth").await, b"fourth");
    assert_eq!(proxy.closed_with(CloseReason::Limit), 1);
    drop(fourth);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_blocked_where_the_proxy_reads_first() {
    let (http_backend, http_state) = counting_echo_backend("app").await;
    let tls_backend = Recorder::start().await;
    let (http_port, sni_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            http_route("app", http_port, target(http_backend)),
            sni_route("tls", sni_port, target(tls_backend.port)),
        ],
        json!({}),
    ))
    .await;
    let hello = client_hello(Some("pp.test"), client_config(&TestCa::new("pp CA")));
    let request = b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n".to_vec();
    let to_http = format!("127.0.0.1:{http_port}");
    let to_sni = format!("127.0.0.1:{sni_port}");
    let cases = [
        (
            "v1 as text, HTTP port",
            http_port,
            [
                format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {http_port}\r\n").into_bytes(),
                request.clone(),
            ]
            .concat(),
        ),
        (
            "v2 as bytes, HTTP port",
            http_port,
            [v2_tcp4(v4("10.9.8.7:4242"), v4(&to_http)), request.clone()].concat(),
        ),
        (
            "v1 encoded, SNI port",
            sni_port,
            [
                encode(V1, addresses("10.9.8.7:4242", &to_sni)),
                hello.clone(),
            ]
            .concat(),
        ),
        (
            "v2 as bytes, SNI port",
            sni_port,
            [v2_tcp4(v4("10.9.8.7:4242"), v4(&to_sni)), hello.clone()].concat(),
        ),
    ];
    for (i, (what, port, bytes)) in cases.into_iter().enumerate() {
        let mut client = connect_from(UNTRUSTED, port).await;
        client.write_all(&bytes).await.expect("write");
        let (got, ending) = read_to_end(&mut client).await;
        drop(client);
        assert_eq!((text(&got), ending), (String::new(), Ending::Fin), "{what}");
        wait_closed_with(&proxy, CloseReason::Blocked, i as u64 + 1).await;
    }
    assert_eq!(proxy.closed_with(CloseReason::Blocked), 4);
    assert_eq!(http_state.accepts(), 0, "the HTTP backend saw a connection");
    assert_eq!(tls_backend.accepts(), 0, "the TLS backend saw a connection");
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_is_blocked_also_when_it_arrives_in_pieces() {
    let (http_backend, http_state) = counting_echo_backend("app").await;
    let tls_backend = Recorder::start().await;
    let (http_port, sni_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            http_route("app", http_port, target(http_backend)),
            sni_route("tls", sni_port, target(tls_backend.port)),
        ],
        json!({}),
    ))
    .await;
    let headers = [
        b"PROXY TCP4 10.9.8.7 127.0.0.1 4242 80\r\n".to_vec(),
        v2_tcp4(v4("10.9.8.7:4242"), v4("127.0.0.1:80")),
    ];
    let mut blocked = 0;
    for port in [http_port, sni_port] {
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
            wait_closed_with(&proxy, CloseReason::Blocked, blocked).await;
        }
    }
    assert_eq!(proxy.closed_with(CloseReason::Blocked), 4);
    assert_eq!(proxy.closed_with(CloseReason::NotTls), 0);
    assert_eq!(http_state.accepts(), 0, "the HTTP backend saw a connection");
    assert_eq!(tls_backend.accepts(), 0, "the TLS backend saw a connection");
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn an_untrusted_peers_header_passes_untouched_where_the_proxy_connects_at_once() {
    let mut recorder = Recorder::start().await;
    let port = free_port();
    let proxy = start_proxy(pp_config(
        vec![route("tcp", port, target(recorder.port))],
        json!({}),
    ))
    .await;
    let here = format!("127.0.0.1:{port}");
    let cases = [
        (
            "v1 as text",
            format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {port}\r\nhello").into_bytes(),
        ),
        (
            "v2 as bytes",
            [&v2_tcp4(v4("10.9.8.7:4242"), v4(&here))[..], b"hello"].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut client = connect_from(UNTRUSTED, port).await;
        let (_, ending) = send_and_finish(&mut client, &bytes).await;
        assert_eq!(ending, Ending::Fin, "{what}");
        assert_eq!(recorder.next().await, bytes, "{what}");
    }
    assert_eq!(proxy.closed_with(CloseReason::Blocked), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_trusted_peer_without_a_header_is_refused_while_required() {
    let recorder = Recorder::start().await;
    let (http_backend, http_state) = counting_echo_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("tcp", tcp_port, target(recorder.port)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({}),
    ))
    .await;
    let cases: [(&str, u16, &[u8]); 2] = [
        ("TCP port", tcp_port, b"hello, no header\r\n"),
        (
            "HTTP port",
            http_port,
            b"GET / HTTP/1.1\r\nhost: app.test\r\n\r\n",
        ),
    ];
    for (i, (what, port, bytes)) in cases.into_iter().enumerate() {
        let mut client = connect_from(Ipv4Addr::LOCALHOST, port).await;
        client.write_all(bytes).await.expect("write");
        let (got, ending) = read_to_end(&mut client).await;
        drop(client);
        assert_eq!((text(&got), ending), (String::new(), Ending::Fin), "{what}");
        wait_closed_with(&proxy, CloseReason::Blocked, i as u64 + 1).await;
    }
    assert_eq!(proxy.closed_with(CloseReason::Blocked), 2);
    assert_eq!(recorder.accepts(), 0);
    assert_eq!(http_state.accepts(), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn with_required_false_a_trusted_peer_may_leave_the_header_out() {
    let mut recorder = Recorder::start().await;
    let (http_backend, _) = echo_http_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("tcp", tcp_port, target(recorder.port)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({"proxyProtocol": {"accept": "127.0.0.1", "required": false}}),
    ))
    .await;
    let payload = pattern(20_000);
    let mut client = connect_from(Ipv4Addr::LOCALHOST, tcp_port).await;
    let (_, ending) = send_and_finish(&mut client, &payload).await;
    assert_eq!(ending, Ending::Fin);
    assert!(
        recorder.next().await == payload,
        "the bytes arrived changed"
    );
    // A header is still read when there is one.
    let here = format!("127.0.0.1:{tcp_port}");
    let mut client = connect_with_header(tcp_port, &v2_tcp4(v4("10.9.8.7:4242"), v4(&here))).await;
    let (_, ending) = send_and_finish(&mut client, b"after a header").await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(text(&recorder.next().await), "after a header");
    // On HTTP, the client is then the peer itself.
    let mut http = h1_client_from(Ipv4Addr::LOCALHOST, http_port).await;
    let got = send(&mut http, "app.test", "/", &[]).await;
    assert_eq!(got.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(proxy.closed_with(CloseReason::Blocked), 0);
    drop(http);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_silent_trusted_peer_is_closed_after_initial_data_timeout() {
    let recorder = Recorder::start().await;
    let (http_backend, http_state) = counting_echo_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("tcp", tcp_port, target(recorder.port)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({"initialDataTimeout": "300ms"}),
    ))
    .await;
    let limit = Duration::from_millis(300);
    let half_v2 = v2_tcp4(v4("10.9.8.7:4242"), v4("127.0.0.1:80"));
    let cases: [(&str, u16, &[u8]); 4] = [
        ("nothing, TCP port", tcp_port, b""),
        ("half a v1 header, TCP port", tcp_port, b"PROXY TCP4 10.9"),
        ("nothing, HTTP port", http_port, b""),
        ("half a v2 header, HTTP port", http_port, &half_v2[..20]),
    ];
    for (i, (what, port, bytes)) in cases.into_iter().enumerate() {
        let start = Instant::now();
        let mut client = connect_from(Ipv4Addr::LOCALHOST, port).await;
        client.write_all(bytes).await.expect("write");
        let (got, ending) = read_to_end(&mut client).await;
        drop(client);
        let took = start.elapsed();
        assert_eq!((text(&got), ending), (String::new(), Ending::Fin), "{what}");
        assert!(
            took >= limit && took < limit + Duration::from_secs(2),
            "{what}: closed after {took:?}"
        );
        wait_closed_with(&proxy, CloseReason::InitialDataTimeout, i as u64 + 1).await;
    }
    assert_eq!(proxy.closed_with(CloseReason::InitialDataTimeout), 4);
    assert_eq!(recorder.accepts(), 0);
    assert_eq!(http_state.accepts(), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_malformed_header_is_a_bad_request() {
    let recorder = Recorder::start().await;
    let (http_backend, http_state) = counting_echo_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("tcp", tcp_port, target(recorder.port)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({}),
    ))
    .await;
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
            http_port,
            b"PROXY TCP4 2001:db8::7 127.0.0.1 4242 80\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ];
    for (i, (what, port, bytes)) in cases.into_iter().enumerate() {
        let mut client = connect_from(Ipv4Addr::LOCALHOST, port).await;
        client.write_all(&bytes).await.expect("write");
        let (got, ending) = read_to_end(&mut client).await;
        drop(client);
        assert_eq!((text(&got), ending), (String::new(), Ending::Fin), "{what}");
        wait_closed_with(&proxy, CloseReason::BadRequest, i as u64 + 1).await;
    }
    assert_eq!(proxy.closed_with(CloseReason::BadRequest), 9);
    assert_eq!(recorder.accepts(), 0);
    assert_eq!(http_state.accepts(), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_header_split_byte_by_byte_is_still_read() {
    let proxied = tag_echo_backend("proxied:").await;
    let other = tag_echo_backend("other:").await;
    let (http_backend, _) = echo_http_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            matching(
                route("proxied", tcp_port, target(proxied)),
                "clientIp",
                json!("10.9.8.7"),
            ),
            route("other", tcp_port, target(other)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({}),
    ))
    .await;
    let here = format!("127.0.0.1:{tcp_port}");
    let headers = [
        format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {tcp_port}\r\n").into_bytes(),
        v2_tcp4(v4("10.9.8.7:4243"), v4(&here)),
    ];
    for header in headers {
        let mut client = connect_from(Ipv4Addr::LOCALHOST, tcp_port).await;
        write_byte_by_byte(&mut client, &header).await;
        let (got, ending) = send_and_finish(&mut client, b"ping").await;
        assert_eq!(
            (text(&got), ending),
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
    let mut http = h1_over(client).await;
    let got = send(&mut http, "app.test", "/", &[]).await;
    assert_eq!(got.json()["headers"]["x-forwarded-for"], "10.9.8.7");
    drop(http);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn bytes_right_behind_the_header_in_the_same_write_reach_the_backend() {
    let mut tcp_backend = Recorder::start().await;
    let mut tls_backend = Recorder::start().await;
    let (http_backend, _) = echo_http_backend("app").await;
    let (tcp_port, http_port, sni_port) = (free_port(), free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("tcp", tcp_port, target(tcp_backend.port)),
            http_route("app", http_port, target(http_backend)),
            sni_route("tls", sni_port, target(tls_backend.port)),
        ],
        json!({}),
    ))
    .await;
    // TCP: a large payload in the header's write.
    let payload = pattern(100_000);
    let headers = [
        format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {tcp_port}\r\n").into_bytes(),
        encode(
            V2,
            addresses("10.9.8.7:4242", &format!("127.0.0.1:{tcp_port}")),
        ),
    ];
    for header in headers {
        let mut client = connect_from(Ipv4Addr::LOCALHOST, tcp_port).await;
        let (_, ending) = send_and_finish(&mut client, &[header, payload.clone()].concat()).await;
        assert_eq!(ending, Ending::Fin);
        let got = tcp_backend.next().await;
        assert!(
            got == payload,
            "{} bytes arrived, not the payload",
            got.len()
        );
    }
    // HTTP: the whole request in the header's write.
    let mut client = connect_from(Ipv4Addr::LOCALHOST, http_port).await;
    let header = v2_tcp4(v4("10.9.8.7:4242"), v4(&format!("127.0.0.1:{http_port}")));
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
    let header = format!("PROXY TCP4 10.9.8.7 127.0.0.1 4242 {sni_port}\r\n");
    let mut client = connect_from(Ipv4Addr::LOCALHOST, sni_port).await;
    let (_, ending) = send_and_finish(&mut client, &[header.as_bytes(), &hello].concat()).await;
    assert_eq!(ending, Ending::Fin);
    assert!(
        tls_backend.next().await == hello,
        "the ClientHello arrived changed"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn v2_local_and_v1_unknown_leave_the_socket_address_in_use() {
    let socket = tag_echo_backend("socket:").await;
    let other = tag_echo_backend("other:").await;
    let (http_backend, _) = echo_http_backend("app").await;
    let (tcp_port, http_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            matching(
                route("socket", tcp_port, target(socket)),
                "clientIp",
                json!("127.0.0.1"),
            ),
            route("other", tcp_port, target(other)),
            http_route("app", http_port, target(http_backend)),
        ],
        json!({}),
    ))
    .await;
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
    let mut http = h1_over(connect_with_header(http_port, &v2_local()).await).await;
    let got = send(&mut http, "app.test", "/", &[]).await;
    assert_eq!(got.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    drop(http);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_tcp_target_is_sent_the_real_client() {
    let mut v1_backend = Recorder::start().await;
    let mut v2_backend = Recorder::start().await;
    let (v1_port, v2_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            route("v1", v1_port, sending(v1_backend.port, "v1")),
            route("v2", v2_port, sending(v2_backend.port, "v2")),
        ],
        json!({}),
    ))
    .await;

    // A direct client, v1: the line compared as text.
    let mut client = connect_from(UNTRUSTED, v1_port).await;
    let source = client.local_addr().expect("addr");
    let (_, ending) = send_and_finish(&mut client, b"direct").await;
    assert_eq!(ending, Ending::Fin);
    let expected = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {} {v1_port}\r\ndirect",
        source.port()
    );
    assert_eq!(text(&v1_backend.next().await), expected);

    // A direct client, v2: the fixed part compared as bytes, the addresses parsed.
    let mut client = connect_from(UNTRUSTED_TOO, v2_port).await;
    let source = client.local_addr().expect("addr");
    let (_, ending) = send_and_finish(&mut client, b"direct").await;
    assert_eq!(ending, Ending::Fin);
    let got = v2_backend.next().await;
    let (sent, header, rest) = split_header(&got);
    assert_eq!(
        header[..16],
        [&V2_SIGNATURE[..], &[0x21, 0x11, 0, 12]].concat()
    );
    assert_eq!(
        sent,
        Some(Addresses {
            source,
            destination: addr(v2_port)
        })
    );
    assert_eq!(rest, b"direct");

    // Through a trusted peer's header: its source and destination pass on.
    let mut client =
        connect_with_header(v1_port, &v2_tcp4(v4("10.9.8.7:4242"), v4("10.0.0.1:8443"))).await;
    let (_, ending) = send_and_finish(&mut client, b"proxied").await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(
        text(&v1_backend.next().await),
        "PROXY TCP4 10.9.8.7 10.0.0.1 4242 8443\r\nproxied"
    );
    let mut client =
        connect_with_header(v2_port, b"PROXY TCP4 10.9.8.7 10.0.0.1 4242 8443\r\n").await;
    let (_, ending) = send_and_finish(&mut client, b"proxied").await;
    assert_eq!(ending, Ending::Fin);
    let got = v2_backend.next().await;
    let (sent, _, rest) = split_header(&got);
    assert_eq!(sent, Some(addresses("10.9.8.7:4242", "10.0.0.1:8443")));
    assert_eq!(rest, b"proxied");
    // IPv6 passes on as IPv6.
    let incoming = v2_tcp6(v6("[2001:db8::7]:4242"), v6("[2001:db8::1]:443"));
    let mut client = connect_with_header(v1_port, &incoming).await;
    let (_, ending) = send_and_finish(&mut client, b"six").await;
    assert_eq!(ending, Ending::Fin);
    assert_eq!(
        text(&v1_backend.next().await),
        "PROXY TCP6 2001:db8::7 2001:db8::1 4242 443\r\nsix"
    );
    wait_no_live(&proxy).await;
}

/// Sends `hello` on `client` and checks that the backend got a header naming `expected`, then
/// exactly `hello`.
async fn hello_after_header(
    mut client: TcpStream,
    hello: &[u8],
    backend: &mut Recorder,
    expected: Addresses,
) {
    let (_, ending) = send_and_finish(&mut client, hello).await;
    assert_eq!(ending, Ending::Fin);
    let got = backend.next().await;
    let (sent, _, rest) = split_header(&got);
    assert_eq!(sent, Some(expected));
    assert!(rest == hello, "the ClientHello arrived changed");
}

#[tokio::test]
async fn a_passthrough_target_is_sent_the_header_then_the_exact_client_hello() {
    let mut v1_backend = Recorder::start().await;
    let mut v2_backend = Recorder::start().await;
    let (v1_port, v2_port) = (free_port(), free_port());
    let proxy = start_proxy(pp_config(
        vec![
            sni_route("v1", v1_port, sending(v1_backend.port, "v1")),
            sni_route("v2", v2_port, sending(v2_backend.port, "v2")),
        ],
        json!({}),
    ))
    .await;
    let hello = client_hello(Some("pp.test"), client_config(&TestCa::new("pp CA")));

    // Direct, v1: the line as text, then the ClientHello byte for byte.
    let mut client = connect_from(UNTRUSTED, v1_port).await;
    let source = client.local_addr().expect("addr");
    let (_, ending) = send_and_finish(&mut client, &hello).await;
    assert_eq!(ending, Ending::Fin);
    let line = format!(
        "PROXY TCP4 127.0.0.2 127.0.0.1 {} {v1_port}\r\n",
        source.port()
    );
    let got = v1_backend.next().await;
    assert!(
        got == [line.as_bytes(), &hello].concat(),
        "{}",
        got[..got.len().min(120)].escape_ascii()
    );

    // Direct, v2.
    let client = connect_from(UNTRUSTED, v2_port).await;
    let source = client.local_addr().expect("addr");
    let expected = Addresses {
        source,
        destination: addr(v2_port),
    };
    hello_after_header(client, &hello, &mut v2_backend, expected).await;

    // Through a trusted peer's header, both versions.
    let incoming = addresses("10.9.8.7:4242", "10.0.0.1:443");
    let client = connect_with_header(v1_port, &encode(V2, incoming)).await;
    hello_after_header(client, &hello, &mut v1_backend, incoming).await;
    let client = connect_with_header(v2_port, b"PROXY TCP4 10.9.8.7 10.0.0.1 4242 443\r\n").await;
    hello_after_header(client, &hello, &mut v2_backend, incoming).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn http_requests_to_a_target_sent_a_header_each_get_a_connection_of_their_own() {
    for version in ["v1", "v2"] {
        let (backend, state) = pp_http_backend().await;
        let port = free_port();
        let proxy = start_proxy(pp_config(
            vec![http_route("app", port, sending(backend, version))],
            json!({}),
        ))
        .await;
        let here = format!("127.0.0.1:{port}");

        let a = connect_from(UNTRUSTED, port).await;
        let a_source = a.local_addr().expect("addr").to_string();
        let mut a = h1_over(a).await;
        let b = connect_from(UNTRUSTED_TOO, port).await;
        let b_source = b.local_addr().expect("addr").to_string();
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
        let expect = [
            (&a_source, &here, "127.0.0.2"),
            (&b_source, &here, "127.0.0.3"),
            (
                &"10.9.8.7:4242".to_string(),
                &"10.0.0.1:8080".to_string(),
                "10.9.8.7",
            ),
            (&a_source, &here, "127.0.0.2"),
        ];
        for (json, (source, destination, xff)) in seen.iter().zip(expect) {
            assert_eq!(json["source"], **source, "{version}: {json}");
            assert_eq!(json["destination"], **destination, "{version}: {json}");
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
    let (v1_port, v2_port) = (free_port(), free_port());
    let ws_route = |name: &str, port: u16, version: &str| {
        matching(
            route(name, port, sending(backend, version)),
            "domains",
            json!("ws.test"),
        )
    };
    let proxy = start_proxy(pp_config(
        vec![ws_route("v1", v1_port, "v1"), ws_route("v2", v2_port, "v2")],
        json!({}),
    ))
    .await;
    for port in [v1_port, v2_port] {
        let stream = connect_from(UNTRUSTED, port).await;
        let source = stream.local_addr().expect("addr");
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
    let (v1_port, v2_port) = (free_port(), free_port());
    let checked = |name: &str, port: u16, target: Value| {
        let mut route = route(name, port, target);
        route["action"]["loadBalancing"] =
            json!({"healthCheck": {"path": "/health", "interval": "100ms", "timeout": "100ms"}});
        route
    };
    let proxy = start_proxy(pp_config(
        vec![
            checked("v1", v1_port, sending(v1_backend, "v1")),
            checked("v2", v2_port, sending(v2_backend, "v2")),
        ],
        json!({}),
    ))
    .await;
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
        let stream = connect_from(UNTRUSTED, port).await;
        let source = stream.local_addr().expect("addr");
        let mut client = h1_over(stream).await;
        let got = send(&mut client, "app.test", "/", &[]).await;
        assert_eq!(got.json()["source"], source.to_string());
        assert!(state.bad().is_empty(), "{:?}", state.bad());
    }
    wait_no_live(&proxy).await;
}
