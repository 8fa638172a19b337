//! Graceful shutdown: listeners close at once, live connections keep working during
//! the drain, the rest are closed with FIN at gracefulShutdownTimeout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

async fn echo_once(client: &mut tokio::net::TcpStream, byte: u8) {
    client.write_all(&[byte]).await.expect("write during drain");
    let mut one = [0; 1];
    client
        .read_exact(&mut one)
        .await
        .expect("echo during drain");
    assert_eq!(one[0], byte);
}

#[tokio::test]
async fn drain_keeps_live_connections_working_then_closes_them() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({"gracefulShutdownTimeout": "1500ms"});
    let proxy = Arc::new(start_proxy(one_route(port, backend, globals)).await);
    let mut client = connect(port).await;
    echo_once(&mut client, 1).await;

    let started = Instant::now();
    let shutting_down = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.shutdown().await }
    });
    eventually("listener closed", || {
        std::net::TcpStream::connect(addr(port)).is_err()
    })
    .await;
    for i in 0..5 {
        echo_once(&mut client, i).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (closed, ending) = wait_closed(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let after = closed - started;
    assert!(
        after >= Duration::from_millis(1500) && after <= Duration::from_millis(3500),
        "closed {after:?} after shutdown began"
    );
    tokio::time::timeout(PATIENCE, shutting_down)
        .await
        .expect("shutdown finished")
        .expect("join");
    assert_eq!(proxy.closed_with(CloseReason::Shutdown), 1);
    assert_eq!(proxy.live_connections(), 0);
}

#[tokio::test]
async fn drain_ends_early_when_connections_finish() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({"gracefulShutdownTimeout": "30s"});
    let proxy = Arc::new(start_proxy(one_route(port, backend, globals)).await);
    let mut client = connect(port).await;
    echo_once(&mut client, 9).await;
    let started = Instant::now();
    let shutting_down = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move { proxy.shutdown().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.shutdown().await.expect("client FIN");
    let (_, ending) = wait_closed(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    tokio::time::timeout(PATIENCE, shutting_down)
        .await
        .expect("shutdown finished")
        .expect("join");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 1);
}

#[tokio::test]
async fn shutdown_now_closes_everything_at_once() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({"gracefulShutdownTimeout": "60s"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut client = connect(port).await;
        echo_once(&mut client, i).await;
        clients.push(client);
    }
    let started = Instant::now();
    proxy.shutdown_now().await;
    for client in &mut clients {
        let (_, ending) = wait_closed(client).await;
        assert_eq!(ending, Ending::Fin);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(proxy.live_connections(), 0);
    assert_eq!(proxy.closed_with(CloseReason::Shutdown), 10);
}
