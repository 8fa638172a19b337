//! The answers the proxy writes itself, end to end: `redirect`, `respond` and `block` routes,
//! the HTTP→HTTPS redirect beside a terminating route, and the refusals: a request without
//! Host, a head over maxRequestHeadSize (431), a malformed one (400), request-smuggling
//! ambiguities (400, never forwarded), and `headersTimeout` on slow and idle clients.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http::*;
use common::tls::{TestCa, client_config, routes_config, tls_connect};
use common::*;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn route(name: &str, port: u16, matcher: Value, action: Value) -> Value {
    let mut route = json!({"name": name, "match": {"ports": port}, "action": action});
    if let (Some(base), Value::Object(extra)) = (route["match"].as_object_mut(), matcher) {
        base.extend(extra);
    }
    route
}

fn forward_to(backend: u16) -> Value {
    json!({"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]})
}

fn redirect_to(to: &str, status: Option<u16>) -> Value {
    let mut redirect = json!({"to": to});
    if let Some(status) = status {
        redirect["status"] = json!(status);
    }
    json!({"type": "redirect", "redirect": redirect})
}

#[tokio::test]
async fn redirect_expands_templates_with_301_by_default_and_the_status_asked_for() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            route(
                "default",
                port,
                json!({"path": "/old/*"}),
                redirect_to("https://{domain}{path}{query}", None),
            ),
            route(
                "found",
                port,
                json!({"path": "/302/*"}),
                redirect_to("/new{path}{query}", Some(302)),
            ),
            route(
                "see-other",
                port,
                json!({"path": "/303/*"}),
                redirect_to("https://{domain}:{port}{path}", Some(303)),
            ),
            route(
                "temporary",
                port,
                json!({"path": "/307/*"}),
                redirect_to("//cdn.test{path}{query}", Some(307)),
            ),
            route(
                "permanent",
                port,
                json!({"path": "/308/*"}),
                redirect_to("https://{domain}/from/{clientIp}{query}", Some(308)),
            ),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    for (host, path, status, location) in [
        (
            "shop.test:8080",
            "/old/a/b?x=1&y=2",
            301,
            "https://shop.test/old/a/b?x=1&y=2".to_string(),
        ),
        (
            "shop.test",
            "/old/",
            301,
            "https://shop.test/old/".to_string(),
        ),
        ("shop.test", "/302/p?q=1", 302, "/new/302/p?q=1".to_string()),
        (
            "shop.test:80",
            "/303/p?dropped=1",
            303,
            format!("https://shop.test:{port}/303/p"),
        ),
        (
            "shop.test",
            "/307/img.png",
            307,
            "//cdn.test/307/img.png".to_string(),
        ),
        (
            "shop.test",
            "/308/x?a=b",
            308,
            "https://shop.test/from/127.0.0.1?a=b".to_string(),
        ),
    ] {
        let got = send(&mut client, host, path, &[]).await;
        assert_eq!(got.status, status, "{path}: {}", got.text());
        assert_eq!(got.headers["location"], location.as_str(), "{path}");
        assert!(!got.text().trim().is_empty(), "a short body says where");
    }
    // The same over HTTP/2, with :authority as {domain}.
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://h2.test:9/old/z?k=v").await;
    assert_eq!(got.status, 301);
    assert_eq!(got.headers["location"], "https://h2.test/old/z?k=v");
    assert_eq!(proxy.total_connections(), 2);
    drop(client);
    drop(h2);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn http_to_https_redirect_on_one_port_beside_a_terminating_route_on_another() {
    let ca = TestCa::new("redirect");
    let leaf = ca.leaf(&["app.test"]);
    let (app, app_count) = echo_http_backend("app").await;
    let (plain_port, tls_port) = (free_port(), free_port());
    let mut terminating = route(
        "app",
        tls_port,
        json!({"domains": ["app.test"]}),
        forward_to(app),
    );
    terminating["action"]["tls"] =
        json!({"mode": "terminate", "certificate": {"cert": leaf.cert_pem, "key": leaf.key_pem}});
    let proxy = start_proxy(routes_config(
        vec![
            route(
                "to-https",
                plain_port,
                json!({}),
                redirect_to("https://{domain}{path}{query}", Some(301)),
            ),
            terminating,
        ],
        json!({}),
    ))
    .await;
    let got = get(plain_port, "app.test", "/login?next=/home").await;
    assert_eq!(got.status, 301);
    let location = got.headers["location"].to_str().expect("text").to_string();
    assert_eq!(location, "https://app.test/login?next=/home");
    assert_eq!(
        app_count.load(Ordering::SeqCst),
        0,
        "a redirect has no backend"
    );
    // Follow it: the same host and path over TLS on the terminating port.
    let target = location
        .strip_prefix("https://app.test")
        .expect("same host");
    let stream = tls_connect(tls_port, "app.test", client_config(&ca))
        .await
        .expect("handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 over TLS");
    tokio::spawn(conn);
    let got = read(
        sender
            .send_request(request("GET", "app.test", target, b""))
            .await
            .expect("response"),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = got.json();
    assert_eq!(seen["backend"], "app");
    assert_eq!(seen["uri"], "/login?next=/home");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-port"], tls_port.to_string());
    // Plain HTTP on the TLS port matches nothing there.
    let mut plain = RawConn::connect(tls_port).await;
    plain
        .send(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let (answer, _) = plain.end().await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(sender);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn respond_answers_with_status_body_headers_and_a_text_plain_default() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            route(
                "maintenance",
                port,
                json!({"domains": "shop.test"}),
                json!({"type": "respond", "respond": {
                    "status": 503,
                    "body": "Down for maintenance, back soon.\n",
                    "headers": {"retry-after": "600", "x-where": "{domain}{path}{query}"}
                }}),
            ),
            route(
                "json",
                port,
                json!({"domains": "api.test"}),
                json!({"type": "respond", "respond": {
                    "body": "{\"ok\":true}",
                    "headers": {"content-type": "application/json"}
                }}),
            ),
            route(
                "empty",
                port,
                json!({"domains": "empty.test"}),
                json!({"type": "respond", "respond": {}}),
            ),
        ],
        json!({}),
    ))
    .await;
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(b"GET /cart?id=7 HTTP/1.1\r\nHost: shop.test:8080\r\n\r\n")
        .await;
    assert_eq!(got.status, 503);
    assert_eq!(got.text(), "Down for maintenance, back soon.\n");
    assert_eq!(got.header("content-length"), Some("33"));
    assert!(
        got.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        got.headers
    );
    assert_eq!(got.header("retry-after"), Some("600"));
    assert_eq!(got.header("x-where"), Some("shop.test/cart?id=7"));
    let got = conn
        .exchange(b"POST /x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "{\"ok\":true}");
    assert_eq!(got.header("content-type"), Some("application/json"));
    let got = conn
        .exchange(b"GET / HTTP/1.1\r\nHost: empty.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), Some("0"));
    drop(conn);
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://shop.test/h2").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.text(), "Down for maintenance, back soon.\n");
    assert_eq!(got.headers["x-where"], "shop.test/h2");
    drop(h2);
    wait_no_live(&proxy).await;
}

/// The docs' shop: `/admin/*` blocked at a higher priority, everything else forwarded.
async fn shop_with_blocked_admin() -> (u16, smartproxy::Proxy, Arc<AtomicUsize>) {
    let (shop, count) = echo_http_backend("shop").await;
    let port = free_port();
    let mut block = route(
        "no-admin",
        port,
        json!({"path": "/admin/*"}),
        json!({"type": "block"}),
    );
    block["priority"] = json!(10);
    let proxy = start_proxy(routes_config(
        vec![route("shop", port, json!({}), forward_to(shop)), block],
        json!({}),
    ))
    .await;
    (port, proxy, count)
}

#[tokio::test]
async fn block_answers_403_with_a_body_then_closes_the_connection() {
    let (port, proxy, count) = shop_with_blocked_admin().await;
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(b"GET /shop HTTP/1.1\r\nHost: shop.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["backend"], "shop");
    // On the same keep-alive connection, even asking to keep it alive.
    conn.send(b"GET /admin/users HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let got = conn.response().await;
    assert_eq!(got.status, 403);
    assert!(!got.text().trim().is_empty(), "403 has a body");
    assert!(
        got.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    let (after, ending) = conn.end().await;
    assert!(
        after.is_empty(),
        "nothing after the 403: {:?}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(ending, Ending::Fin, "the proxy closes the connection");
    let (got, ending) =
        raw_until_close(port, b"GET /admin/ HTTP/1.1\r\nHost: shop.test\r\n\r\n").await;
    assert_eq!(got.status, 403);
    assert_eq!(ending, Ending::Fin);
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "blocked requests never reach the backend"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn block_on_http2_still_answers_403() {
    let (port, proxy, count) = shop_with_blocked_admin().await;
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://shop.test/admin/x").await;
    assert_eq!(got.status, 403);
    assert!(!got.text().trim().is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 0);
    drop(h2);
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://shop.test/open").await;
    assert_eq!(got.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    drop(h2);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn curl_follows_the_answers_the_proxy_writes() {
    let port = free_port();
    let mut block = route(
        "no-admin",
        port,
        json!({"path": "/admin/*"}),
        json!({"type": "block"}),
    );
    block["priority"] = json!(10);
    let proxy = start_proxy(routes_config(
        vec![
            route(
                "moved",
                port,
                json!({"domains": "old.test"}),
                redirect_to("http://new.test:{port}{path}{query}", Some(308)),
            ),
            route(
                "hello",
                port,
                json!({"domains": "new.test"}),
                json!({"type": "respond", "respond": {
                    "status": 202, "body": "hello from {domain}\n", "headers": {"x-path": "{path}"}
                }}),
            ),
            block,
        ],
        json!({}),
    ))
    .await;
    let old = format!("http://old.test:{port}/a?b=c");
    let resolve_old = format!("old.test:{port}:127.0.0.1");
    let resolve_new = format!("new.test:{port}:127.0.0.1");
    let Some(run) = curl(&["--resolve", &resolve_old, &old]).await else {
        return;
    };
    assert_eq!(run.status, 308);
    assert_eq!(
        run.header("location"),
        Some(format!("http://new.test:{port}/a?b=c").as_str())
    );
    let run = curl(&[
        "-L",
        "--resolve",
        &resolve_old,
        "--resolve",
        &resolve_new,
        &old,
    ])
    .await
    .expect("curl");
    assert_eq!(run.status, 202);
    assert_eq!(
        run.body, "hello from {domain}\n",
        "respond bodies are not templates"
    );
    assert_eq!(run.header("x-path"), Some("/a"));
    let admin = format!("http://127.0.0.1:{port}/admin/x");
    let run = curl(&["-H", "Host: new.test", &admin]).await.expect("curl");
    assert_eq!(run.status, 403);
    assert!(!run.body.trim().is_empty());
    let run = curl(&["--http2-prior-knowledge", "-H", "Host: new.test", &admin])
        .await
        .expect("curl");
    assert_eq!(run.status, 403);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn an_http11_request_without_host_gets_400_and_a_close() {
    let (echo, count) = echo_http_backend("echo").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![route("any", port, json!({"path": "/*"}), forward_to(echo))],
        json!({}),
    ))
    .await;
    let (got, ending) = raw_until_close(port, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(got.status, 400);
    assert!(got.text().contains("Host"), "{}", got.text());
    assert_eq!(ending, Ending::Fin);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // HTTP/1.0 may leave Host out.
    let (got, _) = raw_until_close(port, b"GET /old HTTP/1.0\r\n\r\n").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["uri"], "/old");
    wait_no_live(&proxy).await;
}

/// A proxy with `headersTimeout: 300ms` forwarding everything to an echo backend.
async fn impatient_proxy() -> (u16, smartproxy::Proxy, Arc<AtomicUsize>) {
    let (echo, count) = echo_http_backend("echo").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![route("any", port, json!({"path": "/*"}), forward_to(echo))],
        json!({"headersTimeout": "300ms"}),
    ))
    .await;
    (port, proxy, count)
}

#[tokio::test]
async fn headers_timeout_closes_a_client_that_trickles_its_head() {
    let (port, proxy, count) = impatient_proxy().await;
    let (mut reader, mut writer) = connect(port).await.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slow: ";
        for &byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = vec![0; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, reader.read(&mut buf)).await {
            Err(_) => panic!("a trickling client is still open after {PATIENCE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    let closed_after = started.elapsed();
    trickle.abort();
    assert!(
        closed_after >= Duration::from_millis(300),
        "not before headersTimeout: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(3),
        "closed {closed_after:?} after the first byte"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
    drop(reader);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn headers_timeout_closes_an_idle_keep_alive_connection() {
    let (port, proxy, count) = impatient_proxy().await;
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(b"GET /1 HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    // Well inside the limit the connection still takes a request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = conn
        .exchange(b"GET /2 HTTP/1.1\r\nHost: idle.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    let idle_from = Instant::now();
    let (after, _) = conn.end().await;
    let idle = idle_from.elapsed();
    assert!(
        idle < Duration::from_secs(3),
        "the idle connection lived {idle:?}"
    );
    assert!(
        !after.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&after)
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    wait_no_live(&proxy).await;
}

/// A proxy with a 4 KiB request-head limit forwarding everything to an echo backend.
async fn guarded_proxy() -> (u16, smartproxy::Proxy, Arc<AtomicUsize>) {
    let (echo, count) = echo_http_backend("echo").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![route("any", port, json!({"path": "/*"}), forward_to(echo))],
        json!({"maxRequestHeadSize": "4KiB"}),
    ))
    .await;
    (port, proxy, count)
}

/// Sends `request` and checks the proxy answered `status` with a short plain-text body, then
/// closed the connection.
async fn refused(port: u16, request: &[u8], status: u16) {
    let mut conn = RawConn::connect(port).await;
    conn.send(request).await;
    let got = conn.response().await;
    assert_eq!(got.status, status, "{}", got.text());
    let body = got.text();
    assert!(
        !body.trim().is_empty() && body.len() < 300,
        "a short body: {body:?}"
    );
    assert!(
        got.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        got.headers
    );
    let (after, _ending) = conn.end().await;
    assert!(
        after.is_empty(),
        "nothing after the refusal: {:?}",
        String::from_utf8_lossy(&after)
    );
}

#[tokio::test]
async fn a_request_head_over_max_request_head_size_gets_431_then_close() {
    let (port, proxy, count) = guarded_proxy().await;
    // Just under the limit passes.
    let mut small = b"GET /ok HTTP/1.1\r\nHost: big.test\r\nX-Fill: ".to_vec();
    small.extend(std::iter::repeat_n(b'a', 3 * 1024));
    small.extend_from_slice(b"\r\n\r\n");
    let mut conn = RawConn::connect(port).await;
    let got = conn.exchange(&small).await;
    assert_eq!(got.status, 200, "{}", got.text());
    drop(conn);
    let mut big = b"GET /big HTTP/1.1\r\nHost: big.test\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    refused(port, &big, 431).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the large head never reached the backend"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_malformed_request_line_gets_400_with_a_body() {
    let (port, proxy, count) = guarded_proxy().await;
    refused(port, b"GET /a b HTTP/1.1\r\nHost: x.test\r\n\r\n", 400).await;
    refused(port, b"GET / HTTX/1.1\r\nHost: x.test\r\n\r\n", 400).await;
    assert_eq!(count.load(Ordering::SeqCst), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_gets_400_and_never_reaches_the_backend() {
    let (port, proxy, count) = guarded_proxy().await;
    refused(
        port,
        b"POST /smuggle HTTP/1.1\r\n\
          Host: x.test\r\n\
          Content-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\
          \r\n\
          0\r\n\r\n",
        400,
    )
    .await;
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // A plain request afterwards is served: the refusal was about that request only.
    let got = get(port, "x.test", "/after").await;
    assert_eq!(got.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn two_different_content_lengths_get_400() {
    let (port, proxy, count) = guarded_proxy().await;
    refused(
        port,
        b"POST /twice HTTP/1.1\r\n\
          Host: x.test\r\n\
          Content-Length: 5\r\n\
          Content-Length: 6\r\n\
          \r\n\
          hello!",
        400,
    )
    .await;
    assert_eq!(count.load(Ordering::SeqCst), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn curl_sees_the_431_body() {
    let (port, proxy, count) = guarded_proxy().await;
    let big = format!("X-Big: {}", "a".repeat(10 * 1024));
    let url = format!("http://127.0.0.1:{port}/big");
    let Some(run) = curl(&["-H", "Host: big.test", "-H", &big, &url]).await else {
        return;
    };
    assert_eq!(run.status, 431);
    assert!(!run.body.trim().is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 0);
    wait_no_live(&proxy).await;
}
