//! Admission end to end (docs/SECURITY.md): the global and per-route address lists and
//! connection limits on every path (plain TCP, TLS passthrough, terminated TLS, HTTP/1.1,
//! HTTP/2, WebSocket), what a refused client sees and that its backend never does, the HTTP
//! request limits (`rateLimit`) and `basicAuth`, and that refusals leak nothing.
//!
//! Clients bind loopback source addresses (127.0.0.2, 127.0.0.3, ...) to be different clients.

mod common;

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::http::*;
use common::tls::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use serde_json::{Value, json};
use smartproxy::{CloseReason, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, Message};

/// The TLS alert description a refused client hears after its ClientHello.
const ACCESS_DENIED: u8 = 49;

/// Clients, told apart by their source address.
const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

/// An echo backend that counts the connections it accepts.
async fn counting_echo_backend_tcp() -> (u16, Arc<AtomicUsize>) {
    counting_backend(echo_connection).await
}

/// A TLS echo server with `leaf` that counts the TCP connections it accepts.
async fn counting_tls_echo_backend(leaf: &Leaf) -> (u16, Arc<AtomicUsize>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
    counting_backend(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                echo_until_close(tls).await;
            }
        }
    })
    .await
}

/// A WebSocket backend that echoes data messages and counts the connections it accepts.
async fn counting_ws_backend() -> (u16, Arc<AtomicUsize>) {
    counting_backend(|stream| async move {
        if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() || ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Plain TCP and TLS clients
// ---------------------------------------------------------------------------------------------

/// Writes a few bytes and reads them back.
async fn assert_echoes<S>(stream: &mut S, what: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let message = format!("through: {what}");
    assert_eq!(
        echo_roundtrip(stream, message.as_bytes()).await,
        message.as_bytes(),
        "{what}"
    );
}

/// A client from `from` that the proxy admits on `port`: its bytes come back.
async fn admitted(from: Ipv4Addr, port: u16, what: &str) -> TcpStream {
    let mut client = connect_from(from, port).await;
    assert_echoes(&mut client, what).await;
    client
}

/// A client from `from` that writes `first` on `port` and is closed without a byte.
async fn refused(from: Ipv4Addr, port: u16, first: &[u8], what: &str) {
    let mut client = connect_from(from, port).await;
    // Bytes the client sends are never relayed anywhere.
    let _ = client.write_all(first).await;
    assert_closed_unanswered(&mut client, what).await;
}

/// A TLS client from `from` through the proxy's `port`, asking for `sni`.
async fn tls_from(
    from: Ipv4Addr,
    port: u16,
    sni: &str,
    ca: &TestCa,
) -> io::Result<client::TlsStream<TcpStream>> {
    tls_handshake(connect_from(from, port).await, sni, client_config(ca)).await
}

/// A TLS client from `from` that the proxy admits: its handshake succeeds, its bytes come back.
async fn tls_admitted(
    from: Ipv4Addr,
    port: u16,
    sni: &str,
    ca: &TestCa,
    what: &str,
) -> client::TlsStream<TcpStream> {
    let mut stream = tls_from(from, port, sni, ca)
        .await
        .unwrap_or_else(|e| panic!("{what}: the handshake failed: {e}"));
    assert_echoes(&mut stream, what).await;
    stream
}

/// Closes a TLS client cleanly and waits for the proxy's end of it.
async fn tls_close(mut stream: client::TlsStream<TcpStream>) {
    stream.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time");
}

/// One admitted TLS session from `from`, closed cleanly.
async fn tls_session(from: Ipv4Addr, port: u16, sni: &str, ca: &TestCa, what: &str) {
    tls_close(tls_admitted(from, port, sni, ca, what).await).await;
}

/// Sends a ClientHello for `sni` from `from` and expects an access_denied alert, then FIN.
async fn assert_hello_denied(from: Ipv4Addr, port: u16, sni: &str, ca: &TestCa) {
    let mut client = connect_from(from, port).await;
    client
        .write_all(&client_hello(Some(sni), client_config(ca)))
        .await
        .expect("write ClientHello");
    expect_alert(&mut client, ACCESS_DENIED).await;
}

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket clients
// ---------------------------------------------------------------------------------------------

/// `GET /` with `Host: host` from `from` on a new connection, read until the proxy closes it:
/// the one response it holds (a refusal that ends the connection), checked to have `status`,
/// to say `Connection: close` and to be all the proxy sent before its FIN.
async fn refused_h1(from: Ipv4Addr, port: u16, host: &str, status: u16) -> RawResponse {
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let (response, ending) = raw_until_close_from(from, port, request.as_bytes()).await;
    assert_eq!(ending, Ending::Fin, "the refusal ends the connection");
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "{}",
        response.text()
    );
    response
}

/// Checks that `Retry-After` (the header's value) is whole seconds within the minute's window.
fn assert_retry_after(value: Option<&str>) {
    let value = value.expect("a Retry-After header");
    let seconds: u64 = value.parse().expect("Retry-After in whole seconds");
    assert!((1..=61).contains(&seconds), "Retry-After: {seconds}");
}

/// The status of one `GET /` of app.test over `client`.
async fn status_of(client: &mut H1) -> u16 {
    send(client, "app.test", "/", &[]).await.status
}

/// `times` GETs of app.test over `client`, each answered 200.
async fn assert_ok(client: &mut H1, times: usize) {
    for n in 0..times {
        assert_eq!(status_of(client).await, 200, "request {n} of {times}");
    }
}

/// The status of one GET of app.test over a new HTTP/1.1 connection from `from`.
async fn status_from(from: Ipv4Addr, port: u16) -> u16 {
    status_of(&mut h1_client_from(from, port).await).await
}

/// One HTTP/2 GET of `http://{host}:{port}{path}` over `client`, once it is ready.
async fn h2_send(client: &mut H2, host: &str, port: u16, path: &str) -> Got {
    client.ready().await.expect("h2 connection ready");
    h2_get(client, &format!("http://{host}:{port}{path}")).await
}

/// One HTTP/2 GET of `host` over `client`, answered `status`.
async fn assert_h2_status(client: &mut H2, host: &str, port: u16, status: u16) {
    let got = h2_send(client, host, port, "/").await;
    assert_eq!(got.status, status, "{host}: {}", got.text());
}

fn ws_url(port: u16) -> String {
    format!("ws://ws.test:{port}/")
}

/// A WebSocket to ws.test from `from` through `port`, its upgrade answered 101.
async fn ws_from(from: Ipv4Addr, port: u16, what: &str) -> WebSocketStream<TcpStream> {
    let stream = connect_from(from, port).await;
    let (ws, response) = tokio_tungstenite::client_async(ws_url(port), stream)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(response.status(), 101, "{what}");
    ws
}

/// Sends `text` and checks that it comes back.
async fn ws_echo(ws: &mut WebSocketStream<TcpStream>, text: &str) {
    ws.send(Message::text(text.to_string()))
        .await
        .expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("message"),
        Message::text(text.to_string())
    );
}

/// Closes `ws` and reads until its end; returns how sending the close frame went.
async fn ws_close(mut ws: WebSocketStream<TcpStream>) -> Result<(), tungstenite::Error> {
    let sent = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    sent
}

/// An upgrade to ws.test from `from` that the proxy refuses with `status`.
async fn assert_upgrade_refused(from: Ipv4Addr, port: u16, status: u16) {
    let stream = connect_from(from, port).await;
    match tokio_tungstenite::client_async(ws_url(port), stream).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), status),
        Err(e) => panic!("expected a {status}, got the error {e}"),
        Ok(_) => panic!("an upgrade from {from} was accepted, not refused with {status}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Configs and the proxy under test
// ---------------------------------------------------------------------------------------------

/// A plain TCP route to 127.0.0.1:`backend` on `port` with `security`.
fn tcp_route(name: &str, port: u16, backend: u16, security: Value) -> Value {
    json!({
        "name": name,
        "match": {"ports": port},
        "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]},
        "security": security,
    })
}

/// An HTTP route for `domain` (plain port) to 127.0.0.1:`backend` with `security`.
fn http_route(name: &str, port: u16, domain: &str, backend: u16, security: Value) -> Value {
    let mut route = tcp_route(name, port, backend, security);
    route["match"]["domains"] = json!(domain);
    route
}

/// A passthrough route for `domain` with `security`.
fn passthrough_route(name: &str, port: u16, domain: &str, backend: u16, security: Value) -> Value {
    let mut route = tls_route(
        name,
        port,
        json!(domain),
        backend,
        json!({"mode": "passthrough"}),
    );
    route["security"] = security;
    route
}

/// A terminating route for `domain` whose plaintext is relayed as TCP, with `security`.
fn terminate_route(
    name: &str,
    port: u16,
    domain: &str,
    leaf: &Leaf,
    backend: u16,
    security: Value,
) -> Value {
    let mut route = tls_route(
        name,
        port,
        json!(domain),
        backend,
        json!({"mode": "terminate", "certificate": {"cert": leaf.cert_pem, "key": leaf.key_pem}}),
    );
    route["action"]["protocol"] = json!("tcp");
    route["security"] = security;
    route
}

/// A proxy under test, the port its routes share, and how many connections (on HTTP:
/// requests) reached the backend that counts.
struct Admission {
    proxy: Proxy,
    port: u16,
    reached: Arc<AtomicUsize>,
}

impl Admission {
    /// A proxy with `routes(port)` on a free port, merged with `globals`.
    async fn start(
        routes: impl FnOnce(u16) -> Vec<Value>,
        globals: Value,
        reached: Arc<AtomicUsize>,
    ) -> Admission {
        let port = free_port();
        let proxy = start_proxy(routes_config(routes(port), globals)).await;
        Admission {
            proxy,
            port,
            reached,
        }
    }

    /// One plain TCP route with `security` to an echo backend that counts connections.
    async fn tcp(globals: Value, security: Value) -> Admission {
        let (backend, reached) = counting_echo_backend_tcp().await;
        let routes = |port| vec![tcp_route("tcp", port, backend, security)];
        Admission::start(routes, globals, reached).await
    }

    /// One HTTP route for app.test with `security` to an echo backend that counts requests.
    async fn app(security: Value) -> Admission {
        let (backend, reached) = echo_http_backend("app").await;
        let routes = |port| vec![http_route("app", port, "app.test", backend, security)];
        Admission::start(routes, json!({}), reached).await
    }

    /// One HTTP route for ws.test with `security` to a WebSocket backend that counts
    /// connections.
    async fn ws(security: Value) -> Admission {
        let (backend, reached) = counting_ws_backend().await;
        let routes = |port| vec![http_route("ws", port, "ws.test", backend, security)];
        Admission::start(routes, json!({}), reached).await
    }

    /// One route terminating TLS for term.test with `leaf`, with `security`, relayed to an
    /// echo backend that counts connections.
    async fn terminate(leaf: &Leaf, security: Value) -> Admission {
        let (backend, reached) = counting_echo_backend_tcp().await;
        let routes = |port| {
            vec![terminate_route(
                "term",
                port,
                "term.test",
                leaf,
                backend,
                security,
            )]
        };
        Admission::start(routes, json!({}), reached).await
    }

    fn reached(&self) -> usize {
        self.reached.load(Ordering::SeqCst)
    }

    async fn wait_reached(&self, count: usize, what: &str) {
        eventually(what, || self.reached() == count).await;
    }

    async fn wait_live(&self, count: usize, what: &str) {
        eventually(what, || self.proxy.live_connections() == count).await;
    }

    /// Waits until no connection is live, then checks that `reached` reached the backend and
    /// how many connections were closed for each reason in `closed`.
    async fn assert_settled(&self, reached: usize, closed: &[(CloseReason, u64)], why: &str) {
        wait_no_live(&self.proxy).await;
        assert_eq!(self.reached(), reached, "reached the backend; {why}");
        for &(reason, count) in closed {
            assert_eq!(
                self.proxy.closed_with(reason),
                count,
                "closed with {reason}; {why}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Global address lists
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn global_lists_close_refused_clients_before_any_backend_and_block_beats_allow() {
    let tcp = Admission::tcp(
        json!({
            "ipAllowList": ["127.0.0.0/29", "127.0.1.*", "127.0.2.0/24"],
            "ipBlockList": ["127.0.0.3", "127.0.2.*"],
        }),
        json!({}),
    )
    .await;

    // Allowed by the CIDR, and by the glob.
    for from in [A, Ipv4Addr::new(127, 0, 1, 5)] {
        admitted(from, tcp.port, &format!("{from} allowed")).await;
    }
    // In the allow CIDR but blocked by address; in the allow CIDR but blocked by a glob; in
    // no allow pattern at all.
    for from in [
        B,
        Ipv4Addr::new(127, 0, 2, 7),
        Ipv4Addr::new(127, 0, 0, 9),
        Ipv4Addr::new(127, 0, 3, 1),
    ] {
        refused(from, tcp.port, b"let me in", &format!("{from} refused")).await;
    }
    tcp.assert_settled(
        2,
        &[(CloseReason::Blocked, 4)],
        "only the admitted clients reached the backend",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Route address lists, on every path
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn route_lists_close_refused_tcp_clients() {
    let tcp = Admission::tcp(
        json!({}),
        json!({"ipAllowList": ["127.0.0.0/24"], "ipBlockList": ["127.0.0.3"]}),
    )
    .await;
    let allowed = admitted(A, tcp.port, "allowed").await;
    for from in [B, Ipv4Addr::new(127, 0, 1, 2)] {
        refused(from, tcp.port, b"", &format!("{from}")).await;
    }
    drop(allowed);
    tcp.assert_settled(1, &[(CloseReason::Blocked, 2)], "one allowed client")
        .await;
}

#[tokio::test]
async fn route_lists_on_passthrough_answer_access_denied_and_never_reach_the_backend() {
    let ca = TestCa::new("admission passthrough CA");
    let (backend, reached) = counting_tls_echo_backend(&ca.leaf(&["pass.test"])).await;
    let security = json!({"ipBlockList": ["127.0.0.3"]});
    let routes = |port| {
        vec![passthrough_route(
            "pass",
            port,
            "pass.test",
            backend,
            security,
        )]
    };
    let pass = Admission::start(routes, json!({}), reached).await;
    tls_session(A, pass.port, "pass.test", &ca, "passthrough").await;

    assert_hello_denied(B, pass.port, "pass.test", &ca).await;
    // A real TLS client sees the alert as the handshake's failure.
    let refused = tls_from(B, pass.port, "pass.test", &ca).await;
    let error = refused.expect_err("a blocked client's handshake fails");
    assert!(
        error.to_string().contains("AccessDenied"),
        "the client is told access is denied: {error}"
    );
    pass.assert_settled(1, &[(CloseReason::Blocked, 2)], "one allowed client")
        .await;
}

#[tokio::test]
async fn route_lists_on_terminate_refuse_before_the_handshake() {
    let ca = TestCa::new("admission terminate CA");
    let leaf = ca.leaf(&["term.test"]);
    let term = Admission::terminate(&leaf, json!({"ipAllowList": ["127.0.0.2"]})).await;
    let allowed = tls_admitted(A, term.port, "term.test", &ca, "terminated").await;
    assert_eq!(presented_leaf(&allowed), leaf.der);
    tls_close(allowed).await;

    // The alert is all the client gets: no ServerHello, no certificate.
    for from in [B, C] {
        assert_hello_denied(from, term.port, "term.test", &ca).await;
    }
    term.assert_settled(1, &[(CloseReason::Blocked, 2)], "one allowed client")
        .await;
}

#[tokio::test]
async fn route_lists_on_http1_answer_403_and_close() {
    let app = Admission::app(json!({"ipBlockList": ["127.0.0.3"]})).await;
    // An allowed client keeps its connection across requests.
    let mut allowed = h1_client_from(A, app.port).await;
    assert_ok(&mut allowed, 3).await;
    drop(allowed);

    let refused = refused_h1(B, app.port, "app.test", 403).await;
    assert!(!refused.body.is_empty(), "a short body says why");
    app.assert_settled(3, &[(CloseReason::Blocked, 1)], "the allowed requests")
        .await;
}

#[tokio::test]
async fn route_lists_on_http2_refuse_only_that_stream() {
    let (backend, requests) = echo_http_backend("app").await;
    let staff_only = json!({"ipAllowList": ["127.0.0.2"]});
    let routes = |port| {
        vec![
            http_route("staff", port, "staff.test", backend, staff_only),
            http_route("open", port, "open.test", backend, json!({})),
        ]
    };
    let app = Admission::start(routes, json!({}), requests).await;
    let mut refused = h2_client_from(B, app.port).await;
    for _ in 0..2 {
        assert_h2_status(&mut refused, "staff.test", app.port, 403).await;
        // The same connection goes on to a route that admits it.
        assert_h2_status(&mut refused, "open.test", app.port, 200).await;
    }
    let mut allowed = h2_client_from(A, app.port).await;
    assert_h2_status(&mut allowed, "staff.test", app.port, 200).await;
    drop((refused, allowed));
    app.assert_settled(
        3,
        &[(CloseReason::Blocked, 0)],
        "an HTTP/2 connection is not closed for one refused stream",
    )
    .await;
}

#[tokio::test]
async fn route_lists_refuse_websocket_upgrades_with_403() {
    let chat = Admission::ws(json!({"ipBlockList": ["127.0.0.3"]})).await;
    let mut ws = ws_from(A, chat.port, "an allowed client's upgrade").await;
    ws_echo(&mut ws, "hi").await;
    ws_close(ws).await.expect("close");

    assert_upgrade_refused(B, chat.port, 403).await;
    chat.assert_settled(1, &[(CloseReason::Blocked, 1)], "one allowed client")
        .await;
}

// ---------------------------------------------------------------------------------------------
// Connection limits on TCP and TLS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn route_max_connections_on_tcp_refuses_past_the_cap_until_one_closes() {
    let tcp = Admission::tcp(json!({}), json!({"maxConnections": 2})).await;
    let first = admitted(A, tcp.port, "first").await;
    let second = admitted(B, tcp.port, "second").await;
    refused(C, tcp.port, b"", "third while two are held").await;
    wait_closed_with(&tcp.proxy, CloseReason::Limit, 1).await;
    assert_eq!(tcp.reached(), 2);

    // Once one ends, a new one gets in.
    drop(first);
    tcp.wait_live(1, "the first connection ended").await;
    let fourth = admitted(C, tcp.port, "after one closed").await;
    drop((second, fourth));
    tcp.assert_settled(3, &[(CloseReason::Limit, 1)], "three admitted")
        .await;
}

#[tokio::test]
async fn global_max_connections_per_ip_counts_each_source_apart() {
    let tcp = Admission::tcp(json!({"maxConnectionsPerIP": 2}), json!({})).await;
    let mut held = Vec::new();
    for n in 0..2 {
        held.push(admitted(A, tcp.port, &format!("A #{n}")).await);
    }
    refused(A, tcp.port, b"", "A's third").await;
    // Another client is counted apart.
    let other = admitted(B, tcp.port, "B while A is at its limit").await;
    // One of A's ends: A gets in again.
    drop(held.pop());
    tcp.wait_live(2, "one of A's connections ended").await;
    let again = admitted(A, tcp.port, "A after one closed").await;
    drop((held, other, again));
    tcp.assert_settled(4, &[(CloseReason::Limit, 1)], "four admitted")
        .await;
    assert_eq!(
        tcp.proxy.admission_entries(),
        0,
        "without a rate limit, entries go with their last connection"
    );
}

/// N connections of one client within the minute pass, the next is refused; another client
/// is not affected.
async fn check_connection_rate_on_tcp(globals: Value, security: Value, limit: usize) {
    let tcp = Admission::tcp(globals, security).await;
    for n in 0..limit {
        admitted(A, tcp.port, &format!("connection {n}")).await;
    }
    for n in 0..2 {
        refused(A, tcp.port, b"", &format!("over the rate #{n}")).await;
    }
    admitted(B, tcp.port, "another client").await;
    tcp.assert_settled(limit + 1, &[(CloseReason::Limit, 2)], "within the rate")
        .await;
    // The window keeps the entries of both clients.
    assert!(tcp.proxy.admission_entries() >= 2);
}

#[tokio::test]
async fn global_connection_rate_limit_admits_n_per_minute() {
    check_connection_rate_on_tcp(json!({"connectionRateLimitPerMinute": 3}), json!({}), 3).await;
}

#[tokio::test]
async fn route_connection_rate_limit_admits_n_per_minute() {
    check_connection_rate_on_tcp(json!({}), json!({"connectionRateLimitPerMinute": 4}), 4).await;
}

#[tokio::test]
async fn passthrough_route_limits_answer_access_denied() {
    let ca = TestCa::new("admission passthrough limits CA");
    let (backend, reached) = counting_tls_echo_backend(&ca.leaf(&["pass.test"])).await;
    let (rate_backend, rate_reached) = counting_tls_echo_backend(&ca.leaf(&["rate.test"])).await;
    let routes = |port| {
        vec![
            passthrough_route(
                "pass",
                port,
                "pass.test",
                backend,
                json!({"maxConnections": 1}),
            ),
            passthrough_route(
                "rate",
                port,
                "rate.test",
                rate_backend,
                json!({"connectionRateLimitPerMinute": 2}),
            ),
        ]
    };
    let pass = Admission::start(routes, json!({}), reached).await;
    let held = tls_admitted(A, pass.port, "pass.test", &ca, "held").await;
    assert_hello_denied(B, pass.port, "pass.test", &ca).await;
    tls_close(held).await;
    pass.wait_live(0, "the held connection ended").await;
    tls_session(
        B,
        pass.port,
        "pass.test",
        &ca,
        "next, once the slot is free",
    )
    .await;

    for n in 0..2 {
        tls_session(A, pass.port, "rate.test", &ca, &format!("rate #{n}")).await;
    }
    assert_hello_denied(A, pass.port, "rate.test", &ca).await;
    pass.assert_settled(2, &[(CloseReason::Limit, 2)], "pass.test")
        .await;
    assert_eq!(rate_reached.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn terminate_route_limits_close_after_the_handshake_without_a_backend() {
    let ca = TestCa::new("admission terminate limits CA");
    let leaf = ca.leaf(&["term.test"]);
    let term = Admission::terminate(&leaf, json!({"maxConnections": 1})).await;
    let held = tls_admitted(A, term.port, "term.test", &ca, "held").await;
    // The limit counts what holds a backend, so it is checked once the route's plaintext
    // would be relayed, after the handshake: the refused client's TLS session just ends.
    let mut refused = tls_from(B, term.port, "term.test", &ca)
        .await
        .expect("the handshake comes before the route limits");
    let mut data = Vec::new();
    let read = tokio::time::timeout(PATIENCE, refused.read_to_end(&mut data))
        .await
        .expect("closed in time");
    assert!(read.is_ok(), "a clean TLS close: {read:?}");
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    wait_closed_with(&term.proxy, CloseReason::Limit, 1).await;
    assert_eq!(term.reached(), 1);

    tls_close(held).await;
    term.wait_live(0, "the held connection ended").await;
    tls_session(B, term.port, "term.test", &ca, "once the slot is free").await;
    term.assert_settled(2, &[(CloseReason::Limit, 1)], "two admitted")
        .await;
}

// ---------------------------------------------------------------------------------------------
// Connection limits on HTTP
// ---------------------------------------------------------------------------------------------

/// How long a slow request stays in flight at the backend: long enough that the requests
/// made meanwhile surely see it held, on a busy machine too.
const SLOW: &str = "/slow?delay=3000";

/// Starts `slow` (a request the backend holds for a while), waits until the backend has it
/// as its `nth` request, runs `meanwhile`, checks that the slow one was still in flight all
/// that time, and returns what it got.
async fn while_in_flight<T: Send + 'static>(
    app: &Admission,
    nth: usize,
    slow: impl Future<Output = T> + Send + 'static,
    meanwhile: impl Future<Output = ()>,
) -> T {
    let slow = tokio::spawn(slow);
    app.wait_reached(nth, "the slow request reached the backend")
        .await;
    meanwhile.await;
    assert!(!slow.is_finished(), "the slow request was still in flight");
    slow.await.expect("slow request")
}

#[tokio::test]
async fn http_route_max_connections_counts_requests_in_flight() {
    let app = Admission::app(json!({"maxConnections": 1})).await;
    let mut holder = h1_client_from(A, app.port).await;
    let slow = async move {
        let got = send(&mut holder, "app.test", SLOW, &[]).await;
        (got, holder)
    };
    let meanwhile = async {
        refused_h1(B, app.port, "app.test", 503).await;
        assert_eq!(app.reached(), 1, "the 503 never reached it");
    };
    let (got, mut holder) = while_in_flight(&app, 1, slow, meanwhile).await;
    assert_eq!(got.status, 200);
    // Its response has ended: the slot is free for the same connection and for others.
    assert_ok(&mut holder, 1).await;
    let mut other = h1_client_from(B, app.port).await;
    assert_ok(&mut other, 2).await;
    drop((holder, other));
    app.assert_settled(4, &[(CloseReason::Limit, 1)], "the admitted requests")
        .await;
}

#[tokio::test]
async fn http_route_max_connections_per_ip_answers_429() {
    let app = Admission::app(json!({"maxConnectionsPerIP": 1})).await;
    let port = app.port;
    let mut holder = h1_client_from(A, port).await;
    let slow = async move { send(&mut holder, "app.test", SLOW, &[]).await };
    let meanwhile = async {
        refused_h1(A, port, "app.test", 429).await;
        // Another address is counted apart.
        assert_eq!(status_from(B, port).await, 200);
    };
    assert_eq!(while_in_flight(&app, 1, slow, meanwhile).await.status, 200);
    assert_eq!(status_from(A, port).await, 200);

    // On HTTP/2 each stream in flight counts: a second stream beside a slow one is refused,
    // the connection goes on.
    let mut h2 = h2_client_from(C, port).await;
    let mut beside = h2.clone();
    let slow = async move { h2_send(&mut beside, "app.test", port, SLOW).await };
    let meanwhile = assert_h2_status(&mut h2, "app.test", port, 429);
    assert_eq!(while_in_flight(&app, 4, slow, meanwhile).await.status, 200);
    assert_h2_status(&mut h2, "app.test", port, 200).await;
    drop(h2);
    app.assert_settled(
        5,
        &[(CloseReason::Limit, 1)],
        "only the HTTP/1.1 refusal closed its connection",
    )
    .await;
    assert_eq!(app.proxy.admission_entries(), 0);
}

#[tokio::test]
async fn http_route_connection_rate_counts_connections_not_requests() {
    let app = Admission::app(json!({"connectionRateLimitPerMinute": 2})).await;
    let mut first = h1_client_from(A, app.port).await;
    assert_ok(&mut first, 6).await;
    let mut second = h1_client_from(A, app.port).await;
    assert_ok(&mut second, 1).await;
    let refused = refused_h1(A, app.port, "app.test", 429).await;
    assert_retry_after(refused.header("retry-after"));
    // The connections already counted go on; another address has its own count.
    assert_ok(&mut first, 1).await;
    assert_ok(&mut second, 1).await;
    assert_eq!(status_from(B, app.port).await, 200);
    drop((first, second));
    app.assert_settled(10, &[(CloseReason::Limit, 1)], "the admitted requests")
        .await;
}

#[tokio::test]
async fn http2_connection_refused_by_the_rate_stays_refused() {
    let app = Admission::app(json!({"connectionRateLimitPerMinute": 1})).await;
    let mut counted = h2_client_from(A, app.port).await;
    assert_h2_status(&mut counted, "app.test", app.port, 200).await;
    // A second connection within the minute is over the rate, for every one of its streams:
    // a refused first request must not make the next ones look like a counted connection.
    let mut over = h2_client_from(A, app.port).await;
    for n in 0..3 {
        let got = h2_send(&mut over, "app.test", app.port, "/").await;
        assert_eq!(got.status, 429, "stream {n} of a connection over the rate");
        assert_retry_after(got.header("retry-after"));
    }
    assert_h2_status(&mut counted, "app.test", app.port, 200).await;
    drop((counted, over));
    app.assert_settled(2, &[], "the counted connection's requests")
        .await;
}

#[tokio::test]
async fn a_websocket_holds_its_routes_slot_for_its_whole_life() {
    let chat = Admission::ws(json!({"maxConnections": 1})).await;
    let mut ws = ws_from(A, chat.port, "the first upgrade").await;
    ws_echo(&mut ws, "one").await;
    // While it is open, the route is full: for a plain request and for another upgrade.
    for _ in 0..2 {
        refused_h1(B, chat.port, "ws.test", 503).await;
    }
    assert_upgrade_refused(B, chat.port, 503).await;
    // Still open and working.
    ws_echo(&mut ws, "two").await;
    ws_close(ws).await.expect("close");
    wait_no_live(&chat.proxy).await;

    let mut ws = ws_from(B, chat.port, "an upgrade once the first WebSocket closed").await;
    ws_echo(&mut ws, "three").await;
    ws_close(ws).await.expect("close");
    chat.assert_settled(2, &[(CloseReason::Limit, 3)], "one at a time")
        .await;
}

// ---------------------------------------------------------------------------------------------
// rateLimit
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_and_the_configured_message() {
    let app = Admission::app(json!({"rateLimit": {"maxRequests": 3, "window": "60s",
                                                  "errorMessage": "slow down, please"}}))
    .await;
    let mut client = h1_client_from(A, app.port).await;
    assert_ok(&mut client, 3).await;
    // Over the limit, on the same connection, which stays open (keep-alive).
    for n in 0..2 {
        let got = send(&mut client, "app.test", "/", &[]).await;
        assert_eq!(got.status, 429, "request {}", n + 3);
        assert_retry_after(got.header("retry-after"));
        assert_eq!(got.text(), "429 Too Many Requests\nslow down, please\n");
        assert!(got.headers.get("connection").is_none(), "keep-alive");
    }
    // Keyed by address: another client has its own count.
    assert_eq!(status_from(B, app.port).await, 200);
    drop(client);
    app.assert_settled(
        4,
        &[(CloseReason::Limit, 0)],
        "a rateLimit answer does not end the connection",
    )
    .await;
}

#[tokio::test]
async fn rate_limit_keyed_by_header_counts_each_value_and_falls_back_to_the_address() {
    let app = Admission::app(json!({"rateLimit": {"maxRequests": 2, "window": "1m",
                                                  "keyBy": "header", "headerName": "X-Api-Key"}}))
    .await;
    let mut a = h1_client_from(A, app.port).await;
    let mut b = h1_client_from(B, app.port).await;
    for key in ["alice", "bob"] {
        for _ in 0..2 {
            let got = send(&mut a, "app.test", "/", &[("x-api-key", key)]).await;
            assert_eq!(got.status, 200, "{key} within its limit");
        }
        let got = send(&mut a, "app.test", "/", &[("x-api-key", key)]).await;
        assert_eq!(got.status, 429, "{key} over its limit");
        assert_retry_after(got.header("retry-after"));
    }
    // The key is the header's value, whoever sends it.
    let got = send(&mut b, "app.test", "/", &[("x-api-key", "alice")]).await;
    assert_eq!(got.status, 429, "alice from another address");
    // Without the header, requests are counted by address, apart from the header values.
    assert_ok(&mut a, 2).await;
    assert_eq!(status_of(&mut a).await, 429);
    assert_ok(&mut b, 1).await;
    drop((a, b));
    app.assert_settled(7, &[], "the admitted requests").await;
}

// ---------------------------------------------------------------------------------------------
// basicAuth
// ---------------------------------------------------------------------------------------------

const REALM: &str = "Staff area";

/// The users of `basic_auth_proxy`, as `name:password`.
const USERS: [&str; 3] = ["pat:plain secret", "bea:bcrypt secret", "ari:argon2 secret"];

/// `pat` (plain text), `bea` (bcrypt, cost 4) and `ari` (argon2id) on `app.test`.
async fn basic_auth_proxy() -> Admission {
    use argon2::password_hash::PasswordHasher;
    let bcrypt_hash = bcrypt::hash("bcrypt secret", 4).expect("bcrypt hash");
    let argon2_hash = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(1024, 1, 1, None).expect("argon2 params"),
    )
    .hash_password_with_salt(b"argon2 secret", b"a-salt-for-tests")
    .expect("argon2 hash")
    .to_string();
    assert!(argon2_hash.starts_with("$argon2id$"), "{argon2_hash}");
    Admission::app(json!({"basicAuth": {
        "realm": REALM,
        "users": [
            {"username": "pat", "password": "plain secret"},
            {"username": "bea", "password": bcrypt_hash},
            {"username": "ari", "password": argon2_hash},
        ],
        "excludePaths": ["/health", "/public/*"],
    }}))
    .await
}

/// The challenge a 401 carries.
fn challenge() -> String {
    format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"")
}

fn basic(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[tokio::test]
async fn basic_auth_admits_each_kind_of_user_and_challenges_everyone_else() {
    let app = basic_auth_proxy().await;
    let challenge = challenge();
    // One connection throughout: a 401 keeps it open, as a browser expects.
    let mut client = h1_client_from(A, app.port).await;
    let mut passed = 0;
    let refused: [Option<&str>; 8] = [
        None,
        Some("pat:wrong"),
        Some("pat:"),
        Some("bea:wrong"),
        Some("ari:wrong"),
        Some("nobody:plain secret"),
        Some("bea:plain secret"),
        Some("Pat:plain secret"),
    ];
    for credentials in refused {
        let authorization = credentials.map(basic);
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let got = send(&mut client, "app.test", "/private", &headers).await;
        assert_eq!(got.status, 401, "{credentials:?}");
        assert_eq!(
            got.headers["www-authenticate"],
            challenge.as_str(),
            "{credentials:?}"
        );
        assert!(got.headers.get("connection").is_none(), "keep-alive");
    }
    // A Bearer token is not Basic credentials.
    let got = send(
        &mut client,
        "app.test",
        "/private",
        &[("authorization", "Bearer cGF0OnBsYWluIHNlY3JldA==")],
    )
    .await;
    assert_eq!(got.status, 401);
    for credentials in USERS {
        let authorization = basic(credentials);
        for _ in 0..2 {
            let got = send(
                &mut client,
                "app.test",
                "/private",
                &[("authorization", &authorization)],
            )
            .await;
            assert_eq!(got.status, 200, "{credentials}: {}", got.text());
            passed += 1;
            // The proxy checks the credentials and passes them on: it does not strip
            // Authorization (neither SPEC nor SECURITY.md ask it to; Traefik's BasicAuth
            // forwards it by default too).
            assert_eq!(
                got.json()["headers"]["authorization"],
                authorization.as_str(),
                "{credentials}"
            );
        }
    }
    // excludePaths need no credentials; their globs are exact.
    let paths = [
        ("/health", 200),
        ("/public/logo.png", 200),
        ("/health?verbose=1", 200),
        ("/healthz", 401),
        ("/public", 401),
        ("/Health", 401),
    ];
    for (path, status) in paths {
        let got = send(&mut client, "app.test", path, &[]).await;
        assert_eq!(got.status, status, "{path}");
        if status == 200 {
            passed += 1;
        }
    }
    drop(client);
    app.assert_settled(
        passed,
        &[(CloseReason::Blocked, 0), (CloseReason::Limit, 0)],
        "the admitted requests",
    )
    .await;
}

#[tokio::test]
async fn basic_auth_works_with_curl() {
    let app = basic_auth_proxy().await;
    let url = format!("http://app.test:{}/from-curl", app.port);
    let resolve = format!("app.test:{}:127.0.0.1", app.port);
    let Some(without) = curl(&["--resolve", &resolve, &url]).await else {
        return;
    };
    assert_eq!(without.status, 401);
    assert_eq!(
        without.header("www-authenticate"),
        Some(challenge().as_str())
    );
    for credentials in USERS {
        let run = curl(&["--resolve", &resolve, "-u", credentials, &url])
            .await
            .expect("curl ran before");
        assert_eq!(run.status, 200, "{credentials}: {}", run.body);
        assert!(run.body.contains("/from-curl"), "{}", run.body);
    }
    let wrong = curl(&["--resolve", &resolve, "-u", "pat:nope", &url])
        .await
        .expect("curl ran before");
    assert_eq!(wrong.status, 401);
    app.assert_settled(3, &[], "the admitted requests").await;
}

// ---------------------------------------------------------------------------------------------
// Nothing leaks
// ---------------------------------------------------------------------------------------------

/// Kinds of connection in the churn below (see `churn_connection`).
const CHURN_KINDS: usize = 12;

struct ChurnPorts {
    tcp: u16,
    tls: u16,
    http: u16,
}

/// The `i`-th connection of the churn: admitted (A) or refused (B by the route lists, C by
/// the global block list) on each path, by turns.
async fn churn_connection(i: usize, ports: Arc<ChurnPorts>, ca: Arc<TestCa>) {
    let (kind, round) = (i % CHURN_KINDS, i / CHURN_KINDS);
    match kind {
        0 => drop(admitted(A, ports.tcp, "tcp").await),
        1 => refused(B, ports.tcp, b"", "tcp refused").await,
        2 => tls_session(A, ports.tls, "pass.test", &ca, "passthrough").await,
        3 => assert_hello_denied(B, ports.tls, "pass.test", &ca).await,
        4 => tls_session(A, ports.tls, "term.test", &ca, "terminated").await,
        5 => assert_hello_denied(B, ports.tls, "term.test", &ca).await,
        6 => assert_ok(&mut h1_client_from(A, ports.http).await, 2).await,
        7 => drop(refused_h1(B, ports.http, "app.test", 403).await),
        8 => {
            // Admitted on one stream, refused on another, same connection.
            let mut client = h2_client_from(B, ports.http).await;
            assert_h2_status(&mut client, "app.test", ports.http, 403).await;
            assert_h2_status(&mut client, "open.test", ports.http, 200).await;
        }
        9 => {
            let mut ws = ws_from(A, ports.http, "upgrade").await;
            ws_echo(&mut ws, "x").await;
            let _ = ws_close(ws).await;
        }
        10 => assert_upgrade_refused(B, ports.http, 403).await,
        _ => {
            // Blocked globally, whichever port it tries.
            let port = [ports.tcp, ports.tls, ports.http][round % 3];
            let request = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";
            refused(C, port, request, "globally blocked").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_of_admitted_and_refused_connections_on_every_path_leaves_nothing() {
    let ca = Arc::new(TestCa::new("admission churn CA"));
    let (tcp_backend, _) = counting_echo_backend_tcp().await;
    let (pass_backend, _) = counting_tls_echo_backend(&ca.leaf(&["pass.test"])).await;
    let (http_backend, _) = echo_http_backend("app").await;
    let (ws_backend, _) = counting_ws_backend().await;
    let leaf = ca.leaf(&["term.test"]);
    let ports = Arc::new(ChurnPorts {
        tcp: free_port(),
        tls: free_port(),
        http: free_port(),
    });
    let lists = json!({"ipBlockList": ["127.0.0.3"]});
    let proxy = start_proxy(routes_config(
        vec![
            tcp_route("tcp", ports.tcp, tcp_backend, lists.clone()),
            passthrough_route("pass", ports.tls, "pass.test", pass_backend, lists.clone()),
            terminate_route(
                "term",
                ports.tls,
                "term.test",
                &leaf,
                tcp_backend,
                lists.clone(),
            ),
            http_route("app", ports.http, "app.test", http_backend, lists.clone()),
            http_route("ws", ports.http, "ws.test", ws_backend, lists),
            http_route("open", ports.http, "open.test", http_backend, json!({})),
        ],
        json!({"ipBlockList": ["127.0.0.4"], "initialDataTimeout": "2s"}),
    ))
    .await;
    const CONNECTIONS: usize = 50 * CHURN_KINDS;
    let pooled = || 2 * proxy.idle_backend_connections();
    churn_leaves_only(&proxy, CONNECTIONS, 2 * CHURN_KINDS, pooled, |i| {
        churn_connection(i, Arc::clone(&ports), Arc::clone(&ca))
    })
    .await;
    // Kinds 1, 3, 5, 7, 10 and 11 are refused and closed; 8 only has a stream refused.
    assert_eq!(
        proxy.closed_with(CloseReason::Blocked),
        (6 * CONNECTIONS / CHURN_KINDS) as u64
    );
    assert_eq!(proxy.closed_with(CloseReason::Limit), 0);
    assert_eq!(proxy.admission_entries(), 0);
}
