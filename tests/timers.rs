//! Limits as timers: inactivity, lifetime, halfCloseTimeout and the three
//! keepAliveTreatments. Short limits, generous upper bounds: a limit must not fire before its
//! deadline and must fire within one second after it.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SLACK: Duration = Duration::from_secs(1);

/// Sends one byte and waits for its echo; returns when it was sent (the proxy's last read is
/// no earlier than that) and when its echo arrived (no later than that).
async fn ping(client: &mut TcpStream) -> (Instant, Instant) {
    let sent = Instant::now();
    client.write_all(b"p").await.expect("write");
    let mut one = [0; 1];
    client.read_exact(&mut one).await.expect("echo");
    (sent, Instant::now())
}

/// Opens a connection through a proxy with `globals` to an echo backend, pings once, waits for
/// the close, and returns (close time − ping sent, close time − echo received, reason count).
async fn idle_until_closed(globals: Value, reason: CloseReason) -> (Duration, Duration) {
    let backend = echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    let (sent, echoed) = ping(&mut client).await;
    let (closed, ending) = wait_closed(&mut client).await;
    assert_eq!(ending, Ending::Fin, "a limit closes with FIN");
    wait_closed_with(&proxy, reason, 1).await;
    wait_no_live(&proxy).await;
    (closed - sent, closed - echoed)
}

fn assert_window(what: &str, (since_sent, since_echo): (Duration, Duration), limit: Duration) {
    assert!(
        since_sent >= limit,
        "{what}: closed {since_sent:?} after activity, before {limit:?}"
    );
    assert!(
        since_echo <= limit + SLACK,
        "{what}: closed {since_echo:?} after activity, limit {limit:?} + 1 s"
    );
}

#[tokio::test]
async fn inactivity_closes_within_the_window() {
    let limit = Duration::from_millis(800);
    let window = idle_until_closed(
        json!({"inactivityTimeout": "800ms", "keepAliveTreatment": "standard"}),
        CloseReason::Inactivity,
    )
    .await;
    assert_window("inactivity", window, limit);
}

#[tokio::test]
async fn a_chatty_connection_outlives_many_inactivity_limits() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({"inactivityTimeout": 500, "keepAliveTreatment": "standard"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(3000) {
        ping(&mut client).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Six limits have passed; the connection still carries data both ways.
    ping(&mut client).await;
    assert_eq!(proxy.closed_with(CloseReason::Inactivity), 0);
    let (closed, _) = wait_closed(&mut client).await;
    assert!(closed - start >= Duration::from_millis(3500));
    wait_closed_with(&proxy, CloseReason::Inactivity, 1).await;
}

#[tokio::test]
async fn standard_treatment_uses_inactivity_timeout() {
    let window = idle_until_closed(
        json!({"inactivityTimeout": "600ms", "keepAliveTreatment": "standard", "keepAlive": true}),
        CloseReason::Inactivity,
    )
    .await;
    assert_window("standard", window, Duration::from_millis(600));
}

#[tokio::test]
async fn extended_treatment_multiplies_inactivity_when_keepalive_is_on() {
    let globals = json!({
        "inactivityTimeout": "500ms", "keepAliveTreatment": "extended",
        "keepAliveInactivityMultiplier": 3, "keepAlive": true
    });
    let window = idle_until_closed(globals, CloseReason::Inactivity).await;
    assert_window("extended", window, Duration::from_millis(1500));
}

#[tokio::test]
async fn extended_without_keepalive_behaves_as_standard() {
    let globals = json!({
        "inactivityTimeout": "500ms", "keepAliveTreatment": "extended",
        "keepAliveInactivityMultiplier": 6, "keepAlive": false
    });
    let window = idle_until_closed(globals, CloseReason::Inactivity).await;
    assert_window(
        "extended without keepalive",
        window,
        Duration::from_millis(500),
    );
}

#[tokio::test]
async fn extended_treatment_uses_the_extended_lifetime() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({
        "inactivityTimeout": 0, "keepAliveTreatment": "extended", "keepAlive": true,
        "maxConnectionLifetime": "300ms", "extendedKeepAliveLifetime": "1200ms"
    });
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let connected = Instant::now();
    let mut client = connect(port).await;
    ping(&mut client).await;
    let (closed, _) = wait_closed(&mut client).await;
    let age = closed - connected;
    assert!(
        age >= Duration::from_millis(1200) && age <= Duration::from_millis(1200) + SLACK,
        "closed at {age:?}"
    );
    wait_closed_with(&proxy, CloseReason::Lifetime, 1).await;
}

#[tokio::test]
async fn immortal_treatment_has_no_inactivity_or_lifetime_limit() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({
        "inactivityTimeout": "200ms", "maxConnectionLifetime": "300ms",
        "extendedKeepAliveLifetime": "300ms", "keepAliveTreatment": "immortal"
    });
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    ping(&mut client).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    ping(&mut client).await;
    assert_eq!(proxy.live_connections(), 1);
    drop(client);
    wait_closed_with(&proxy, CloseReason::ClientFin, 1).await;
}

#[tokio::test]
async fn lifetime_is_a_hard_cap_that_activity_does_not_reset() {
    let backend = echo_backend().await;
    let port = free_port();
    let globals = json!({"inactivityTimeout": 0, "maxConnectionLifetime": "1s", "keepAliveTreatment": "standard"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let connected = Instant::now();
    let mut client = connect(port).await;
    let mut buf = [0; 64];
    let closed = loop {
        client.write_all(b"p").await.ok();
        match tokio::time::timeout(Duration::from_millis(100), client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break Instant::now(),
            _ => {}
        }
        assert!(
            connected.elapsed() < Duration::from_secs(10),
            "never closed"
        );
    };
    let age = closed - connected;
    assert!(
        age >= Duration::from_secs(1) && age <= Duration::from_secs(1) + SLACK,
        "closed at {age:?}"
    );
    wait_closed_with(&proxy, CloseReason::Lifetime, 1).await;
}

/// A backend that reads to the client's FIN, then writes `writes` bytes at 200 ms intervals
/// and then stays silent without closing.
async fn silent_after_fin_backend(writes: usize) -> u16 {
    backend(move |mut stream| async move {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        for _ in 0..writes {
            if stream.write_all(b"w").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Hold the connection open without a FIN; the proxy's halfCloseTimeout must end it.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await
}

#[tokio::test]
async fn half_close_timeout_counts_from_the_fin() {
    let backend = silent_after_fin_backend(0).await;
    let port = free_port();
    let globals = json!({"halfCloseTimeout": "700ms", "inactivityTimeout": "1h"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    let fin = Instant::now();
    client.shutdown().await.expect("client FIN");
    let (closed, ending) = wait_closed(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let after = closed - fin;
    assert!(
        after >= Duration::from_millis(700) && after <= Duration::from_millis(700) + SLACK,
        "closed {after:?} after FIN"
    );
    wait_closed_with(&proxy, CloseReason::HalfCloseTimeout, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn half_close_timeout_is_pushed_back_by_bytes_in_the_open_direction() {
    let backend = silent_after_fin_backend(8).await;
    let port = free_port();
    let globals = json!({"halfCloseTimeout": "700ms", "inactivityTimeout": "1h"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    client.shutdown().await.expect("client FIN");
    let mut got = 0;
    let mut buf = [0; 16];
    let mut last_byte = Instant::now();
    let closed = loop {
        match tokio::time::timeout(PATIENCE, client.read(&mut buf)).await {
            Ok(Ok(0)) => break Instant::now(),
            Ok(Ok(n)) => {
                got += n;
                last_byte = Instant::now();
            }
            other => panic!("unexpected: {other:?}"),
        }
    };
    assert_eq!(got, 8, "every byte of the open direction arrived");
    let after = closed - last_byte;
    assert!(
        after >= Duration::from_millis(650) && after <= Duration::from_millis(700) + SLACK,
        "closed {after:?} after the last byte"
    );
    wait_closed_with(&proxy, CloseReason::HalfCloseTimeout, 1).await;
}

#[tokio::test]
async fn half_close_timeout_applies_under_immortal() {
    let backend = silent_after_fin_backend(0).await;
    let port = free_port();
    let globals = json!({"halfCloseTimeout": "500ms", "keepAliveTreatment": "immortal"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    client.shutdown().await.expect("client FIN");
    let (_, ending) = wait_closed(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::HalfCloseTimeout, 1).await;
}

#[tokio::test]
async fn a_slow_reader_is_activity_not_inactivity() {
    // The client takes 2 KiB every 100 ms through a small receive buffer: the proxy's buffer
    // toward it stays full for longer than the inactivity limit, but bytes keep moving.
    let total = 100 * 1024;
    let backend = backend(move |mut stream| async move {
        let _ = stream.write_all(&pattern(total)).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await;
    let port = free_port();
    let globals = json!({"inactivityTimeout": "1s", "keepAliveTreatment": "standard"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut client = socket.connect(addr(port)).await.expect("connect");
    let mut got = Vec::new();
    let mut buf = vec![0; 2048];
    loop {
        match tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .expect("progress")
        {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {} bytes: {e}", got.len()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got.len(), total);
    assert!(got == pattern(total));
    drop(client);
    wait_no_live(&proxy).await;
    wait_closed_with(&proxy, CloseReason::BackendFin, 1).await;
    assert_eq!(proxy.closed_with(CloseReason::Inactivity), 0);
}

#[tokio::test]
async fn a_receiver_that_stopped_reading_is_inactive() {
    // The client never reads: once every buffer toward it is full nothing moves, and the
    // inactivity limit closes the connection even though bytes are still queued for it.
    let backend = streaming_backend(1000).await;
    let port = free_port();
    let globals = json!({"inactivityTimeout": "800ms", "keepAliveTreatment": "standard"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let started = Instant::now();
    let client = connect(port).await;
    wait_closed_with(&proxy, CloseReason::Inactivity, 1).await;
    let after = started.elapsed();
    // The limit, at most one send-queue check, and the bounded flush on close.
    assert!(
        after >= Duration::from_millis(800)
            && after <= Duration::from_millis(800 + 500 + 1000) + SLACK,
        "closed after {after:?}"
    );
    drop(client);
    wait_no_live(&proxy).await;
}
