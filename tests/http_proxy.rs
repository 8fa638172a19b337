//! The HTTP engine end to end: routing per request, forwarding with pooled connections, both
//! protocol versions on either side, and the answers the proxy writes itself.

mod common;

use common::http::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn routes_by_host_per_request_on_one_keep_alive_connection() {
    let (a, _) = echo_http_backend("a").await;
    let (b, _) = echo_http_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "routes": [
            {"name": "a", "match": {"ports": port, "domains": "a.test"},
             "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": a}]}},
            {"name": "b", "match": {"ports": port, "domains": "*.b.test"},
             "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": b}]}},
        ]
    }))
    .await;
    let mut client = h1_client(port).await;
    for (host, expect) in [("a.test", "a"), ("x.b.test:80", "b"), ("A.TEST", "a")] {
        let got = read(
            client
                .send_request(request("GET", host, "/p?q=1", b""))
                .await
                .expect("response"),
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text());
        let seen = got.json();
        assert_eq!(seen["backend"], expect);
        assert_eq!(seen["uri"], "/p?q=1");
        assert_eq!(seen["headers"]["host"], host);
        assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
        assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    }
    let got = read(
        client
            .send_request(request("GET", "c.test", "/", b""))
            .await
            .expect("response"),
    )
    .await;
    assert_eq!(got.status, 404);
    assert!(got.text().contains("no route"), "{}", got.text());
    let mut h2 = h2_client(port).await;
    let req = hyper::Request::builder()
        .uri(format!("http://a.test:{port}/h2"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let got = read(h2.send_request(req).await.expect("h2 response")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["backend"], "a");
    assert_eq!(got.json()["version"], "HTTP/1.1");
    drop(client);
    drop(h2);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_keep_alive_at_once_and_lets_requests_finish() {
    let (app, _) = echo_http_backend("app").await;
    let port = free_port();
    let proxy = std::sync::Arc::new(
        start_proxy(json!({
            "bindAddress": "127.0.0.1",
            "gracefulShutdownTimeout": "10s",
            "routes": [{"name": "app", "match": {"ports": port, "domains": "app.test"},
                "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": app}]}}]
        }))
        .await,
    );
    // An idle HTTP/1.1 keep-alive connection and an HTTP/2 one, each after one request.
    let mut idle = h1_client(port).await;
    let got = read(
        idle.send_request(request("GET", "app.test", "/", b""))
            .await
            .expect("response"),
    )
    .await;
    assert_eq!(got.status, 200);
    let mut idle_h2 = h2_client(port).await;
    let req = hyper::Request::get(format!("http://app.test:{port}/"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    assert_eq!(
        read(idle_h2.send_request(req).await.expect("h2"))
            .await
            .status,
        200
    );
    // A request in flight for 1 s.
    let mut busy = h1_client(port).await;
    let in_flight = tokio::spawn(async move {
        let response = busy
            .send_request(request("GET", "app.test", "/slow?delay=1000", b""))
            .await;
        read(response.expect("the in-flight request is answered")).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let stopping = {
        let proxy = std::sync::Arc::clone(&proxy);
        tokio::spawn(async move { proxy.shutdown().await })
    };
    eventually("idle keep-alive connections closed", || {
        idle.is_closed() && idle_h2.is_closed()
    })
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "closed at once, not after the in-flight request"
    );
    let got = in_flight.await.expect("task");
    assert_eq!(got.status, 200);
    stopping.await.expect("shutdown");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown waited for the request, not the timeout"
    );
    assert_eq!(proxy.live_connections(), 0);
    assert_eq!(proxy.closed_with(smartproxy::CloseReason::Shutdown), 3);
}
