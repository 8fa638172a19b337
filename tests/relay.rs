//! The relay over real loopback sockets: integrity, half-close in both directions, reset
//! propagation, backpressure, socket options.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[tokio::test]
async fn one_mib_echo_arrives_intact() {
    let backend = echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let data = pattern(1024 * 1024);
    let mut client = connect(port).await;
    let (mut r, mut w) = client.split();
    let send = async {
        w.write_all(&data).await.expect("write 1 MiB");
        w.shutdown().await.expect("client FIN");
    };
    let receive = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read echo");
        got
    };
    let ((), got) = tokio::join!(send, receive);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "echoed bytes differ");
    wait_closed_with(&proxy, CloseReason::ClientFin, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_fin_then_backend_streams_for_seconds() {
    // The backend answers only after the client's FIN, and keeps streaming for 3 s.
    let backend = backend(|mut stream| async move {
        let mut request = Vec::new();
        stream
            .read_to_end(&mut request)
            .await
            .expect("read request");
        for i in 0..15u8 {
            let chunk = [i; 1000];
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = stream.shutdown().await;
    })
    .await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let mut client = connect(port).await;
    client.write_all(b"request").await.expect("write");
    client.shutdown().await.expect("client FIN");
    let (got, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    let expected: Vec<u8> = (0..15u8).flat_map(|i| [i; 1000]).collect();
    assert!(
        got == expected,
        "got {} of {} bytes",
        got.len(),
        expected.len()
    );
    wait_closed_with(&proxy, CloseReason::ClientFin, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn backend_fin_then_client_keeps_sending() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let backend = backend(move |mut stream| {
        let tx = tx.clone();
        async move {
            stream.write_all(b"bye").await.expect("greet");
            stream.shutdown().await.expect("backend FIN");
            let mut got = Vec::new();
            let result = stream.read_to_end(&mut got).await.map(|_| got);
            let _ = tx.send(result);
        }
    })
    .await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let mut client = connect(port).await;
    let (got, ending) = read_to_end(&mut client).await;
    assert_eq!((got.as_slice(), ending), (&b"bye"[..], Ending::Fin));
    let mut sent = Vec::new();
    for i in 0..20u8 {
        let chunk = [i; 4096];
        client.write_all(&chunk).await.expect("client still sends");
        sent.extend_from_slice(&chunk);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.shutdown().await.expect("client FIN");
    let received = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("backend finished")
        .expect("backend result")
        .expect("backend read everything");
    assert!(
        received == sent,
        "backend got {} of {} bytes",
        received.len(),
        sent.len()
    );
    wait_closed_with(&proxy, CloseReason::BackendFin, 1).await;
    wait_no_live(&proxy).await;
}

/// A backend that reads until the connection ends and reports how it ended.
async fn reporting_backend() -> (u16, mpsc::UnboundedReceiver<Ending>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let port = backend(move |mut stream| {
        let tx = tx.clone();
        async move {
            let (_, ending) = read_to_end(&mut stream).await;
            let _ = tx.send(ending);
        }
    })
    .await;
    (port, rx)
}

#[tokio::test]
async fn client_reset_resets_the_backend() {
    let (backend, mut endings) = reporting_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let mut client = connect(port).await;
    client.write_all(b"some bytes").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    reset(client);
    let ending = tokio::time::timeout(PATIENCE, endings.recv())
        .await
        .expect("backend ended");
    assert_eq!(ending, Some(Ending::Reset));
    wait_closed_with(&proxy, CloseReason::ClientReset, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn backend_reset_resets_the_client() {
    let backend = backend(|mut stream| async move {
        let mut buf = [0; 5];
        let _ = stream.read_exact(&mut buf).await;
        reset(stream);
    })
    .await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let mut client = connect(port).await;
    client.write_all(b"hello").await.expect("write");
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Reset);
    wait_closed_with(&proxy, CloseReason::BackendReset, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn reset_after_the_other_side_sent_fin_is_still_propagated() {
    // The backend sends FIN first, then waits; the client resets: the backend must see a reset.
    let (tx, mut endings) = mpsc::unbounded_channel();
    let backend = backend(move |mut stream| {
        let tx = tx.clone();
        async move {
            stream.shutdown().await.expect("backend FIN");
            let (_, ending) = read_to_end(&mut stream).await;
            let _ = tx.send(ending);
        }
    })
    .await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;

    let mut client = connect(port).await;
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin, "backend FIN reaches the client");
    client
        .write_all(b"late")
        .await
        .expect("write after backend FIN");
    tokio::time::sleep(Duration::from_millis(100)).await;
    reset(client);
    let ending = tokio::time::timeout(PATIENCE, endings.recv())
        .await
        .expect("backend ended");
    assert_eq!(ending, Some(Ending::Reset));
    wait_closed_with(&proxy, CloseReason::ClientReset, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_slows_the_writer() {
    // The backend never reads; the client can only fill kernel buffers plus the proxy's bounded
    // buffer, not push an unbounded amount into the proxy's memory.
    let backend = silent_backend().await;
    let port = free_port();
    let globals = json!({"relayBufferSize": "64KiB"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;

    let client = connect(port).await;
    let (written, stalled) =
        write_until_stalled(&client, Duration::from_millis(500), 256 * 1024 * 1024).await;
    assert!(
        stalled,
        "the client was never held back ({written} bytes written)"
    );
    assert!(
        written < 64 * 1024 * 1024,
        "{written} bytes were accepted while nobody read them"
    );
    assert_eq!(proxy.live_connections(), 1);
    drop(client);
    proxy.shutdown_now().await;
    wait_no_live(&proxy).await;
}

/// Finds this process's socket whose peer is `peer` (the proxy's side of a connection).
fn socket_with_peer(peer: std::net::SocketAddr) -> Option<socket2::Socket> {
    use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd};
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: the fd is open while we look; the duplicate is owned by the returned socket.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(owned) = borrowed.try_clone_to_owned() else {
            continue;
        };
        let socket = unsafe { socket2::Socket::from_raw_fd(owned.into_raw_fd()) };
        if socket.peer_addr().ok().and_then(|a| a.as_socket()) == Some(peer) {
            return Some(socket);
        }
    }
    None
}

#[tokio::test]
async fn nodelay_and_keepalive_are_set_on_both_sockets() {
    for (no_delay, keep_alive) in [(true, false), (false, true)] {
        let backend = echo_backend().await;
        let port = free_port();
        let globals =
            json!({"noDelay": no_delay, "keepAlive": keep_alive, "keepAliveInitialDelay": "7s"});
        let proxy = start_proxy(one_route(port, backend, globals)).await;
        let mut client = connect(port).await;
        client.write_all(b"x").await.expect("write");
        let mut one = [0; 1];
        client.read_exact(&mut one).await.expect("echo");

        let toward_client =
            socket_with_peer(client.local_addr().expect("addr")).expect("proxy's client socket");
        let toward_backend = socket_with_peer(addr(backend)).expect("proxy's backend socket");
        for socket in [&toward_client, &toward_backend] {
            assert_eq!(socket.tcp_nodelay().expect("nodelay"), no_delay);
            assert_eq!(socket.keepalive().expect("keepalive"), keep_alive);
            if keep_alive {
                assert_eq!(
                    socket.tcp_keepalive_time().expect("keepidle"),
                    Duration::from_secs(7)
                );
            }
        }
        drop((toward_client, toward_backend, client));
        wait_no_live(&proxy).await;
        proxy.shutdown_now().await;
    }
}

#[tokio::test]
async fn a_reset_after_fin_reaches_the_other_side_without_traffic() {
    // The client sends, FINs, then resets while the backend is idle: the relay is no longer
    // reading the client, yet the backend must get the reset within about a second.
    // The backend reads the request and the FIN, then watches its socket for the reset
    // (after a FIN a read returns 0 again; the reset shows in SO_ERROR).
    let (tx, mut endings) = mpsc::unbounded_channel();
    let backend = backend(move |mut stream| {
        let tx = tx.clone();
        async move {
            let (_, ending) = read_to_end(&mut stream).await;
            assert_eq!(ending, Ending::Fin);
            for _ in 0..200 {
                if let Ok(Some(_)) = stream.take_error() {
                    let _ = tx.send(Ending::Reset);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = tx.send(Ending::Fin);
        }
    })
    .await;
    let port = free_port();
    let globals = json!({"keepAliveTreatment": "immortal", "halfCloseTimeout": 0});
    let proxy = start_proxy(one_route(port, backend, globals)).await;

    let mut client = connect(port).await;
    client.write_all(b"request").await.expect("write");
    client.shutdown().await.expect("client FIN");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reset_at = tokio::time::Instant::now();
    reset(client);
    let ending = tokio::time::timeout(PATIENCE, endings.recv())
        .await
        .expect("backend ended");
    assert_eq!(ending, Some(Ending::Reset));
    assert!(
        reset_at.elapsed() < Duration::from_secs(2),
        "reset took {:?}",
        reset_at.elapsed()
    );
    wait_closed_with(&proxy, CloseReason::ClientReset, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_reset_while_the_pipe_is_full_is_not_held_back() {
    // The backend never reads, the client fills every buffer and then resets.
    let backend = silent_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;
    let client = connect(port).await;
    let (_, stalled) = write_until_stalled(&client, Duration::from_millis(300), usize::MAX).await;
    assert!(stalled, "the client was never held back");
    reset(client);
    let reset_at = tokio::time::Instant::now();
    wait_closed_with(&proxy, CloseReason::ClientReset, 1).await;
    assert!(
        reset_at.elapsed() < Duration::from_secs(2),
        "noticed after {:?}",
        reset_at.elapsed()
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_limit_flushes_what_it_holds_and_ends_with_fin() {
    // The backend streams as fast as it can; the client reads slowly and keeps talking until
    // the lifetime limit ends the connection: it must see a FIN, after an intact prefix.
    let backend = streaming_backend(2000).await;
    let port = free_port();
    let globals = json!({"maxConnectionLifetime": "1s", "keepAliveTreatment": "standard"});
    let proxy = start_proxy(one_route(port, backend, globals)).await;
    let mut client = connect(port).await;
    let mut got = Vec::new();
    let mut buf = vec![0; 32 * 1024];
    let started = tokio::time::Instant::now();
    let ending = loop {
        // Talk during the first half of the lifetime only: the drain discards what the client
        // sends, but a byte sent after the proxy closed would draw a reset from the kernel.
        if started.elapsed() < Duration::from_millis(500) {
            let _ = client.write_all(b".").await;
        }
        match tokio::time::timeout(PATIENCE, client.read(&mut buf))
            .await
            .expect("progress")
        {
            Ok(0) => break Ending::Fin,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ending::Reset,
            Err(e) => panic!("read failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ending, Ending::Fin, "after {} bytes", got.len());
    let expected = pattern(64 * 1024);
    assert!(!got.is_empty());
    assert!(
        got.chunks(expected.len())
            .all(|c| c == &expected[..c.len()]),
        "bytes arrived damaged"
    );
    drop(client);
    wait_closed_with(&proxy, CloseReason::Lifetime, 1).await;
}
