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
