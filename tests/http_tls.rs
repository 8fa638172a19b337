//! HTTP over terminated TLS: ALPN h2 and http/1.1, HTTP told apart by its first bytes when no
//! ALPN was negotiated, and routes chosen per request by Host.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::http::*;
use common::tls::*;
use common::*;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use serde_json::json;

fn with_alpn(ca: &TestCa, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::clone(&client_config(ca));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn terminating_proxy(ca: &TestCa) -> (u16, smartproxy::Proxy) {
    let (a, _) = echo_http_backend("a").await;
    let (b, _) = echo_http_backend("b").await;
    let leaf = ca.leaf(&["a.test", "b.test"]);
    let tls =
        json!({"mode": "terminate", "certificate": {"cert": leaf.cert_pem, "key": leaf.key_pem}});
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            tls_route("a", port, json!("a.test"), a, tls.clone()),
            tls_route("b", port, json!("b.test"), b, tls),
        ],
        json!({}),
    ))
    .await;
    (port, proxy)
}

#[tokio::test]
async fn alpn_h2_serves_http2_and_routes_each_request_by_authority() {
    let ca = TestCa::new("http-tls");
    let (port, proxy) = terminating_proxy(&ca).await;
    let stream = tls_connect(port, "a.test", with_alpn(&ca, &[b"h2"]))
        .await
        .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(conn);
    for (host, backend) in [("a.test", "a"), ("b.test", "b")] {
        let request = hyper::Request::builder()
            .uri(format!("https://{host}/x"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let got = read(sender.send_request(request).await.expect("response")).await;
        assert_eq!(got.status, 200);
        let seen = got.json();
        assert_eq!(seen["backend"], backend);
        assert_eq!(seen["headers"]["host"], host);
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    }
    drop(sender);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn alpn_http11_and_no_alpn_both_reach_the_http_engine() {
    let ca = TestCa::new("http-tls");
    let (port, proxy) = terminating_proxy(&ca).await;
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let stream = tls_connect(port, "b.test", with_alpn(&ca, alpn))
            .await
            .expect("handshake");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("h1");
        tokio::spawn(conn);
        let got = read(
            sender
                .send_request(request("POST", "b.test", "/upload", b"twelve bytes"))
                .await
                .expect("response"),
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["backend"], "b");
        assert_eq!(got.json()["bodyLen"], 12);
    }
    wait_no_live(&proxy).await;
}
