//! The HTTP engine toward its backends: either protocol version on either side, pooled backend
//! connections, TLS again toward the backend with ALPN, and the answers the proxy writes when a
//! backend cannot be reached or does not answer in time.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::http::*;
use common::tls::*;
use common::*;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::time::Instant;

/// One forward route for `app.test` to 127.0.0.1:`backend`, speaking `protocol` to it.
fn app_config(port: u16, backend: u16, protocol: &str, globals: Value) -> Value {
    routes_config(
        vec![json!({
            "name": "app",
            "match": {"ports": port, "domains": "app.test"},
            "action": {"type": "forward",
                "targets": [{"host": "127.0.0.1", "port": backend, "protocol": protocol}]}
        })],
        globals,
    )
}

/// A client connection of either version, sending requests for `host`.
enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    async fn plain(h2: bool, port: u16) -> Client {
        match h2 {
            true => Client::H2(h2_client(port).await),
            false => Client::H1(h1_client(port).await),
        }
    }

    async fn send(&mut self, method: &str, host: &str, path: &str, body: Bytes) -> Got {
        let response = match self {
            Client::H1(sender) => {
                let req = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", host)
                    .body(Full::new(body))
                    .expect("request");
                sender.send_request(req).await
            }
            Client::H2(sender) => {
                let req = Request::builder()
                    .method(method)
                    .uri(format!("http://{host}{path}"))
                    .body(Full::new(body))
                    .expect("request");
                sender.send_request(req).await
            }
        };
        read(response.expect("response")).await
    }
}

/// A GET and a large POST through the proxy, client speaking `client_h2`, backend `protocol`;
/// checks what the backend saw and that the body made it there and back unchanged.
async fn crossing(client_h2: bool, protocol: &str) {
    let (backend, state) = counting_echo_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(app_config(port, backend, protocol, json!({}))).await;
    let mut client = Client::plain(client_h2, port).await;
    let backend_version = match protocol {
        "h2" => "HTTP/2.0",
        _ => "HTTP/1.1",
    };

    let got = client.send("GET", "app.test", "/p?q=1", Bytes::new()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = got.json();
    assert_eq!(seen["backend"], "app");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["version"], backend_version);
    if protocol == "h2" {
        // The client's Host is the backend's :authority, which hyper puts in the URI.
        assert_eq!(seen["uri"], "http://app.test/p?q=1");
    } else {
        assert_eq!(seen["uri"], "/p?q=1");
        assert_eq!(seen["headers"]["host"], "app.test");
    }
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-host"], "app.test");

    let sent = Bytes::from(pattern(300_000));
    let got = client.send("POST", "app.test", "/echo", sent.clone()).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.headers["x-version"], backend_version);
    assert_eq!(got.body.len(), sent.len());
    assert!(got.body == sent, "the body comes back byte for byte");
    assert_eq!(state.requests(), 2);

    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn http2_client_to_http11_backend() {
    crossing(true, "h1").await;
}

#[tokio::test]
async fn http11_client_to_h2_backend_with_host_as_authority() {
    crossing(false, "h2").await;
}

#[tokio::test]
async fn http2_client_to_h2_backend() {
    crossing(true, "h2").await;
}

#[tokio::test]
async fn sequential_requests_reuse_one_backend_connection() {
    let (backend, state) = counting_echo_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(app_config(port, backend, "h1", json!({}))).await;
    for h2 in [false, true] {
        let mut client = Client::plain(h2, port).await;
        for i in 0..10 {
            let path = format!("/r{i}");
            let got = client.send("GET", "app.test", &path, Bytes::new()).await;
            assert_eq!(got.status, 200);
            assert_eq!(got.json()["uri"], path);
        }
    }
    assert_eq!(state.requests(), 20);
    assert_eq!(
        state.accepts(),
        1,
        "one backend connection served both clients' requests"
    );
    wait_no_live(&proxy).await;
    assert_eq!(proxy.idle_backend_connections(), 1);
}

#[tokio::test]
async fn an_h2_backend_gets_one_connection_for_concurrent_requests() {
    let (backend, state) = counting_echo_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(app_config(port, backend, "h2", json!({}))).await;
    let started = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = Client::plain(i % 2 == 0, port).await;
                let path = format!("/c{i}?delay=500");
                let got = client.send("GET", "app.test", &path, Bytes::new()).await;
                assert_eq!(got.status, 200);
                assert_eq!(got.json()["version"], "HTTP/2.0");
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the requests ran side by side: {:?}",
        started.elapsed()
    );
    assert_eq!(state.requests(), 20);
    assert_eq!(
        state.accepts(),
        1,
        "twenty concurrent requests share one HTTP/2 connection"
    );
    wait_no_live(&proxy).await;
}

fn with_alpn(ca: &TestCa, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::clone(&client_config(ca));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A terminate-and-reencrypt route for a.test and b.test to a TLS backend offering
/// `backend_alpn`, then requests over a TLS client connection with SNI a.test that speaks
/// HTTP/2 when `client_h2`: the backend sees `expect_version` and each request's host as SNI.
async fn reencrypt(backend_alpn: &[&[u8]], client_h2: bool, expect_version: &str) {
    let ca = TestCa::new("reencrypt");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let front = ca.leaf(&["a.test", "b.test"]);
    let back = ca.leaf(&["a.test", "b.test"]);
    let (backend, state, snis) = tls_echo_http_backend("tls-app", &back, backend_alpn).await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![tls_route(
            "app",
            port,
            json!(["a.test", "b.test"]),
            backend,
            json!({"mode": "terminate-and-reencrypt",
                "certificate": {"cert": front.cert_pem, "key": front.key_pem},
                "caFile": ca_file}),
        )],
        json!({}),
    ))
    .await;
    let alpn: &[&[u8]] = match client_h2 {
        true => &[b"h2"],
        false => &[b"http/1.1"],
    };
    let stream = tls_connect(port, "a.test", with_alpn(&ca, alpn))
        .await
        .expect("handshake with the proxy");
    let mut client = match client_h2 {
        true => {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            Client::H2(sender)
        }
        false => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("h1");
            tokio::spawn(conn);
            Client::H1(sender)
        }
    };
    // Each request's host, not the client's SNI, is what the backend is asked for.
    for host in ["b.test", "a.test", "b.test"] {
        let got = client.send("GET", host, "/who", Bytes::new()).await;
        assert_eq!(got.status, 200, "{}", got.text());
        let seen = got.json();
        assert_eq!(seen["backend"], "tls-app");
        assert_eq!(seen["version"], expect_version);
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
        assert_eq!(
            got.headers["x-sni"], host,
            "the backend connection was opened for the request's host"
        );
    }
    let sent = Bytes::from(pattern(100_000));
    let got = client.send("POST", "b.test", "/echo", sent.clone()).await;
    assert_eq!(got.headers["x-version"], expect_version);
    assert_eq!(got.headers["x-sni"], "b.test");
    assert!(got.body == sent, "the body comes back byte for byte");
    let mut names = snis.lock().expect("lock").clone();
    names.sort();
    assert_eq!(
        names,
        [Some("a.test".to_string()), Some("b.test".to_string())],
        "one pooled backend connection per name"
    );
    assert_eq!(state.accepts(), 2);
    assert_eq!(state.requests(), 4);
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn reencrypt_to_a_backend_offering_h2_speaks_http2() {
    reencrypt(&[b"h2", b"http/1.1"], false, "HTTP/2.0").await;
}

#[tokio::test]
async fn reencrypt_to_a_backend_offering_only_http11_speaks_http11() {
    reencrypt(&[b"http/1.1"], true, "HTTP/1.1").await;
}

/// A short plain-text answer from the proxy itself.
fn assert_proxy_answer(got: &Got, status: u16) {
    assert_eq!(got.status, status, "{}", got.text());
    let text = got.text();
    assert!(
        !text.is_empty() && text.len() < 200,
        "a short body: {text:?}"
    );
    let content_type = got.headers["content-type"].to_str().expect("text");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[tokio::test]
async fn a_refused_connect_is_502() {
    let port = free_port();
    let proxy = start_proxy(app_config(port, free_port(), "h1", json!({}))).await;
    for h2 in [false, true] {
        let mut client = Client::plain(h2, port).await;
        let got = client.send("GET", "app.test", "/", Bytes::new()).await;
        assert_proxy_answer(&got, 502);
        // The client connection stays usable.
        let got = client.send("GET", "app.test", "/", Bytes::new()).await;
        assert_eq!(got.status, 502);
    }
    wait_no_live(&proxy).await;
}

/// A listener whose accept queue is full, so that a new connect to it never completes: Linux
/// drops SYNs to a listener whose queue is full. Keep what it returns alive while it is used.
fn unanswering_listener() -> (u16, Vec<socket2::Socket>) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener
        .bind(&addr(0).into())
        .expect("bind the full listener");
    listener.listen(0).expect("listen");
    let target = listener.local_addr().expect("addr");
    let port = target.as_socket().expect("inet").port();
    let mut held = vec![listener];
    for _ in 0..16 {
        let filler = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        match filler.connect_timeout(&target, Duration::from_millis(300)) {
            Ok(()) => held.push(filler),
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return (port, held);
            }
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled: connects to it still complete");
}

#[tokio::test]
async fn a_connect_that_never_completes_is_504_after_connection_timeout() {
    let (target, _held) = tokio::task::spawn_blocking(unanswering_listener)
        .await
        .expect("fill");
    let port = free_port();
    let proxy = start_proxy(app_config(
        port,
        target,
        "h1",
        json!({"connectionTimeout": "300ms"}),
    ))
    .await;
    for h2 in [false, true] {
        let mut client = Client::plain(h2, port).await;
        let started = Instant::now();
        let got = client.send("GET", "app.test", "/", Bytes::new()).await;
        let took = started.elapsed();
        assert_proxy_answer(&got, 504);
        assert!(
            took >= Duration::from_millis(250),
            "not before the timeout: {took:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "soon after the timeout: {took:?}"
        );
    }
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_response_head_later_than_http_response_timeout_is_504() {
    let (backend, state) = counting_echo_backend("slow").await;
    let port = free_port();
    let proxy = start_proxy(app_config(
        port,
        backend,
        "h1",
        json!({"httpResponseTimeout": "300ms"}),
    ))
    .await;
    for h2 in [false, true] {
        let mut client = Client::plain(h2, port).await;
        let started = Instant::now();
        let got = client
            .send("GET", "app.test", "/slow?delay=2000", Bytes::new())
            .await;
        let took = started.elapsed();
        assert_proxy_answer(&got, 504);
        assert!(
            took >= Duration::from_millis(250),
            "not before the timeout: {took:?}"
        );
        assert!(
            took < Duration::from_millis(1900),
            "before the backend answered: {took:?}"
        );
        // A fast answer on the same client connection is still served.
        let got = client.send("GET", "app.test", "/fast", Bytes::new()).await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    assert_eq!(state.requests(), 4);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn failover_to_the_second_target_when_the_first_refuses() {
    let (b, state) = counting_echo_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![json!({
            "name": "app",
            "match": {"ports": port, "domains": "app.test"},
            "action": {"type": "forward", "targets": [
                {"host": "127.0.0.1", "port": free_port()},
                {"host": "127.0.0.1", "port": b}]}
        })],
        json!({}),
    ))
    .await;
    let mut keep_alive = h1_client(port).await;
    for i in 0..10 {
        let got = match i % 2 {
            0 => get(port, "app.test", "/new").await,
            _ => {
                read(
                    keep_alive
                        .send_request(request("GET", "app.test", "/kept", b""))
                        .await
                        .expect("response"),
                )
                .await
            }
        };
        assert_eq!(got.status, 200, "request {i}: {}", got.text());
        assert_eq!(got.json()["backend"], "b");
    }
    assert_eq!(state.requests(), 10);
    drop(keep_alive);
    wait_no_live(&proxy).await;
}

/// Runs curl with `args`; returns its standard output.
async fn curl(args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(&args)
            .output()
            .expect("curl runs (scripts/test installs it)")
    })
    .await
    .expect("curl task");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

#[tokio::test]
async fn curl_over_http2_prior_knowledge_and_http11() {
    let (backend, _) = counting_echo_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(app_config(port, backend, "h2", json!({}))).await;
    let url = format!("http://app.test:{port}/curl?x=1");
    let resolve = format!("app.test:{port}:127.0.0.1");
    for (flag, client_version) in [("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")] {
        let out = curl(vec![
            flag.into(),
            "--resolve".into(),
            resolve.clone(),
            "--data-binary".into(),
            "curl body".into(),
            "--write-out".into(),
            "\n%{http_code} %{http_version}".into(),
            url.clone(),
        ])
        .await;
        let (body, trailer) = out.rsplit_once('\n').expect("write-out line");
        assert_eq!(trailer, format!("200 {client_version}"), "{flag}");
        let seen: Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(seen["version"], "HTTP/2.0");
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["uri"], format!("http://app.test:{port}/curl?x=1"));
        assert_eq!(seen["bodyLen"], 9);
    }
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn each_route_keeps_its_own_pool() {
    // Two routes to one backend keep separate pools: each opens its own connection, then
    // reuses it.
    let (backend, state) = counting_echo_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        ["one", "two"]
            .iter()
            .map(|name| {
                json!({
                    "name": name,
                    "match": {"ports": port, "domains": format!("{name}.test")},
                    "action": {"type": "forward",
                        "targets": [{"host": "127.0.0.1", "port": backend}]}
                })
            })
            .collect(),
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    for host in ["one.test", "two.test", "one.test", "two.test"] {
        let got = read(
            client
                .send_request(request("GET", host, "/", b""))
                .await
                .expect("response"),
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["headers"]["host"], host);
    }
    assert_eq!(state.accepts.load(Ordering::SeqCst), 2);
    drop(client);
    wait_no_live(&proxy).await;
}
