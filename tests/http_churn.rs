//! HTTP connections ending every way they can, many at once: afterwards no connection is
//! live, every one has exactly one close reason, and the open file count is back at its start
//! value apart from idle pooled backend connections.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::http::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

async fn ws_echo() -> u16 {
    backend(|stream| async move {
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

async fn churn_proxy() -> (u16, smartproxy::Proxy) {
    let (app, _) = echo_http_backend("app").await;
    let ws = ws_echo().await;
    let port = free_port();
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "initialDataTimeout": "500ms",
        "headersTimeout": "500ms",
        "routes": [
            {"name": "app", "match": {"ports": port, "domains": "app.test"},
             "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": app}]}},
            {"name": "ws", "match": {"ports": port, "domains": "ws.test"},
             "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": ws}]}},
            {"name": "gone", "match": {"ports": port, "domains": "gone.test"},
             "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": free_port()}]}},
        ]
    }))
    .await;
    (port, proxy)
}

async fn one_connection(kind: usize, port: u16) {
    match kind {
        // Three keep-alive requests, then a clean close.
        0 => {
            let mut client = h1_client(port).await;
            for _ in 0..3 {
                let got = read(
                    client
                        .send_request(request("GET", "app.test", "/", b""))
                        .await
                        .expect("response"),
                )
                .await;
                assert_eq!(got.status, 200);
            }
        }
        // HTTP/2 with a POST body.
        1 => {
            let mut client = h2_client(port).await;
            let req = hyper::Request::post(format!("http://app.test:{port}/up"))
                .body(Full::new(Bytes::from_static(b"body")))
                .expect("request");
            let got = read(client.send_request(req).await.expect("response")).await;
            assert_eq!(got.status, 200);
        }
        // No route: 404.
        2 => assert_eq!(get(port, "nobody.test", "/").await.status, 404),
        // Backend unreachable: 502.
        3 => assert_eq!(get(port, "gone.test", "/").await.status, 502),
        // A WebSocket that echoes once and closes.
        4 => {
            let stream = connect(port).await;
            let (mut ws, _) =
                tokio_tungstenite::client_async(format!("ws://ws.test:{port}/"), stream)
                    .await
                    .expect("ws handshake");
            ws.send(Message::text("x")).await.expect("send");
            assert_eq!(
                ws.next().await.expect("echo").expect("msg"),
                Message::text("x")
            );
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        // Half a request head, then a reset.
        5 => {
            let mut s = connect(port).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.te")
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(5)).await;
            reset(s);
        }
        // Half a request head, then nothing until the proxy gives up on it.
        6 => {
            let mut s = connect(port).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.te")
                .await
                .expect("write");
            let _ = read_to_end(&mut s).await;
        }
        // A malformed request: 400 with a body, then the close.
        7 => {
            let mut s = connect(port).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nbad header\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer).await;
            assert!(
                answer.starts_with(b"HTTP/1.1 400"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        // A request, and the client resets while the response may still be on its way.
        8 => {
            let mut s = connect(port).await;
            s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .await
                .expect("write");
            let mut first = [0u8; 1];
            let _ = s.read_exact(&mut first).await;
            reset(s);
        }
        // Idle keep-alive connection closed by the client without a request.
        _ => {
            let s = connect(port).await;
            s.writable().await.expect("writable");
            drop(s);
        }
    }
}

#[tokio::test]
async fn http_churn_leaves_nothing_but_idle_pooled_connections() {
    let (port, proxy) = churn_proxy().await;
    let pooled = || 2 * proxy.idle_backend_connections();
    churn_leaves_only(&proxy, 500, 50, pooled, |i| one_connection(i % 10, port)).await;
    assert!(proxy.closed_with(smartproxy::CloseReason::ClientReset) > 0);
}

#[tokio::test]
async fn five_hundred_concurrent_clients_each_get_their_answers() {
    let (app, count) = echo_http_backend("app").await;
    let port = free_port();
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "app", "match": {"ports": port, "domains": "app.test"},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": app}]}}]
    }))
    .await;
    let clients: Vec<_> = (0..500)
        .map(|i| {
            tokio::spawn(async move {
                let mut client = h1_client(port).await;
                for j in 0..4 {
                    let path = format!("/c{i}/r{j}");
                    let req = hyper::Request::get(path.as_str())
                        .header("host", "app.test")
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    let got = read(client.send_request(req).await.expect("response")).await;
                    assert_eq!(got.status, 200);
                    assert_eq!(
                        got.json()["uri"],
                        path,
                        "each answer belongs to its request"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2000);
    wait_no_live(&proxy).await;
}
