//! WebSocket tunnels over time: an idle one survives the default limits, the proxy's pings keep
//! a live client and find a dead one, a route may refuse upgrades, and a client's FIN ends only
//! its own direction of the tunnel. Its own test binary because the idle test waits.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use smartproxy::CloseReason;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A WebSocket backend that echoes every data message.
async fn ws_echo_backend() -> u16 {
    backend(|stream| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
    .await
}

/// A forward route for `ws.test` on a plain port, with `websocket` options when not null.
fn ws_config(port: u16, backend: u16, websocket: Value) -> Value {
    let mut config = json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "ws", "match": {"ports": port, "domains": "ws.test"},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]}}]
    });
    if !websocket.is_null() {
        config["routes"][0]["action"]["websocket"] = websocket;
    }
    config
}

/// Reads a request or response head byte by byte, so nothing after it is consumed.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("head in time")
            .expect("read head");
        assert_eq!(
            n,
            1,
            "closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("text head")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A WebSocket handshake written by hand through the proxy; returns the stream right after the
/// response head, and the head.
async fn raw_upgrade(port: u16) -> (TcpStream, String) {
    let mut stream = connect(port).await;
    stream
        .write_all(
            b"GET /raw HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("write handshake");
    let head = read_head(&mut stream).await;
    (stream, head)
}

/// A masked client text frame (RFC 6455 §5.3).
fn client_text_frame(text: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// An unmasked server text frame.
fn server_text_frame(text: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text);
    frame
}

#[tokio::test]
async fn an_idle_websocket_survives_36_seconds_with_default_limits() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend, Value::Null)).await;
    let (mut ws, response) =
        tokio_tungstenite::client_async(format!("ws://ws.test:{port}/idle"), connect(port).await)
            .await
            .expect("handshake through the proxy");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("before")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("message"),
        Message::text("before")
    );
    tokio::time::sleep(Duration::from_secs(36)).await;
    assert_eq!(proxy.live_connections(), 1, "still open after 36 s idle");
    ws.send(Message::text("after"))
        .await
        .expect("send after idling");
    let echo = timeout(PATIENCE, ws.next())
        .await
        .expect("echo in time")
        .expect("echo")
        .expect("message");
    assert_eq!(echo, Message::text("after"));
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::Inactivity), 0);
}

fn pinging() -> Value {
    json!({"pingInterval": "200ms", "pingTimeout": "300ms"})
}

#[tokio::test]
async fn pings_reach_a_reading_client_which_stays_connected() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend, pinging())).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("ws://ws.test:{port}/ping"), connect(port).await)
            .await
            .expect("handshake through the proxy");
    // Reading makes tungstenite answer each ping with a pong.
    let until = Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while let Ok(next) = tokio::time::timeout_at(until, ws.next()).await {
        match next.expect("still open").expect("message") {
            Message::Ping(_) => pings += 1,
            other => panic!("only pings while idle, got {other:?}"),
        }
    }
    assert!(pings >= 3, "a ping every 200 ms, got {pings} in 2 s");
    ws.send(Message::text("still here")).await.expect("send");
    loop {
        match timeout(PATIENCE, ws.next())
            .await
            .expect("echo in time")
            .expect("open")
            .expect("message")
        {
            Message::Ping(_) => continue,
            echo => {
                assert_eq!(echo, Message::text("still here"));
                break;
            }
        }
    }
    assert_eq!(proxy.closed_with(CloseReason::PingTimeout), 0);
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::PingTimeout), 0);
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_ping_timeout() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend, pinging())).await;
    let (mut stream, head) = raw_upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let started = Instant::now();
    // Neither reads nor writes until the proxy gives up on it.
    wait_closed_with(&proxy, CloseReason::PingTimeout, 1).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "first ping at 200 ms, unanswered 300 ms later: closed after {took:?}"
    );
    let (bytes, _) = read_to_end(&mut stream).await;
    assert!(
        bytes.first() == Some(&0x89),
        "what it got before the close starts with a ping frame: {bytes:?}"
    );
    drop(stream);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::PingTimeout), 1);
}

#[tokio::test]
async fn websocket_disabled_refuses_the_upgrade_with_403() {
    let backend = ws_echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend, json!({"enabled": false}))).await;
    let refused =
        tokio_tungstenite::client_async(format!("ws://ws.test:{port}/"), connect(port).await).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = response.body().as_deref().unwrap_or_default();
            assert!(!body.is_empty(), "a short reason");
        }
        Err(e) => panic!("expected a 403, got {e}"),
        Ok(_) => panic!("the upgrade went through on a route that refuses WebSockets"),
    }
    let (mut stream, head) = raw_upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let _ = stream.shutdown().await;
    drop(stream);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_client_fin_in_a_websocket_tunnel_leaves_the_other_direction_open() {
    // A backend that upgrades by hand, reads until the client's FIN, then answers.
    let backend = backend(|mut stream| async move {
        let head = read_head(&mut stream).await;
        let key = header(&head, "sec-websocket-key").expect("key");
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        stream.write_all(answer.as_bytes()).await.expect("101");
        let mut before_fin = Vec::new();
        stream.read_to_end(&mut before_fin).await.expect("read");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = format!("got {} bytes, then your FIN", before_fin.len());
        let _ = stream.write_all(&server_text_frame(reply.as_bytes())).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let port = free_port();
    let proxy = start_proxy(ws_config(port, backend, Value::Null)).await;
    let (mut stream, head) = raw_upgrade(port).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_str())
    );
    let frame = client_text_frame(b"hello");
    stream.write_all(&frame).await.expect("write frame");
    stream.shutdown().await.expect("client FIN");
    let (bytes, ending) = read_to_end(&mut stream).await;
    assert_eq!(
        bytes,
        server_text_frame(format!("got {} bytes, then your FIN", frame.len()).as_bytes())
    );
    assert_eq!(ending, Ending::Fin);
    drop(stream);
    wait_no_live(&proxy).await;
    assert_eq!(
        proxy.closed_with(CloseReason::ClientFin) + proxy.closed_with(CloseReason::BackendFin),
        1
    );
}
