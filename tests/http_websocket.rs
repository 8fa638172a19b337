//! WebSocket through the HTTP engine: HTTP/1.1 Upgrade and HTTP/2 extended CONNECT from the
//! client, an HTTP/1.1 Upgrade to the backend, then the core relay.

mod common;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use smartproxy::CloseReason;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A WebSocket backend that echoes every data message and answers `who` with the request path.
async fn ws_echo_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut path = String::new();
                // The callback's error type is tungstenite's, not ours to shrink.
                #[allow(clippy::result_large_err)]
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        path = req.uri().to_string();
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    let reply = match msg {
                        Message::Text(t) if t.as_str() == "who" => Message::text(path.clone()),
                        Message::Text(_) | Message::Binary(_) => msg,
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn ws_config(port: u16, backend: u16) -> serde_json::Value {
    json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "ws", "match": {"ports": port, "domains": "ws.test"},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]}}]
    })
}

#[tokio::test]
async fn http1_upgrade_is_relayed_and_ends_with_the_relays_reason() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend)).await;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut ws, response) =
        tokio_tungstenite::client_async(format!("ws://ws.test:{port}/chat?room=1"), stream)
            .await
            .expect("handshake through the proxy");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("who")).await.expect("send");
    let reply = ws.next().await.expect("reply").expect("message");
    assert_eq!(reply, Message::text("/chat?room=1"));
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone()))
        .await
        .expect("send big");
    let echoed = ws.next().await.expect("echo").expect("message");
    assert_eq!(echoed.into_data().as_ref(), &big[..]);
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    wait_no_live(&proxy).await;
    let clean =
        proxy.closed_with(CloseReason::ClientFin) + proxy.closed_with(CloseReason::BackendFin);
    assert_eq!(clean, 1, "the tunnel ends like any relayed connection");
}

#[tokio::test]
async fn http2_extended_connect_is_relayed() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend)).await;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method("CONNECT")
        .uri(format!("http://ws.test:{port}/h2chat"))
        .header("sec-websocket-version", "13")
        .body(Empty::new())
        .expect("request");
    request
        .extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let response = sender
        .send_request(request)
        .await
        .expect("CONNECT answered");
    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(response).await.expect("upgraded stream");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    ws.send(Message::text("who")).await.expect("send");
    let reply = ws.next().await.expect("reply").expect("message");
    assert_eq!(reply, Message::text("/h2chat"));
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("msg"),
        Message::text("hello")
    );
    drop(ws);
    drop(sender);
    wait_no_live(&proxy).await;
}
