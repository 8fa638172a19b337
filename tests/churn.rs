//! Hundreds of connections ending every way; afterwards nothing is left: live count 0 and the
//! process's open file count back at its start value. Its own test
//! binary, so no other test's sockets move the file count.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 400;
const CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_leaves_nothing_behind() {
    let echo = echo_backend().await;
    // Sends its greeting and FIN first, then reads whatever the client still sends.
    let greeter = backend(|mut stream| async move {
        let _ = stream.write_all(b"hello").await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await;
    let resetter = backend(|mut stream| async move {
        let mut buf = [0; 4];
        let _ = stream.read_exact(&mut buf).await;
        reset(stream);
    })
    .await;
    let refused = free_port();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let route = |name: &str, port: u16, target: u16| {
        json!({"name": name, "match": {"ports": port},
               "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": target}}})
    };
    let config = json!({"bindAddress": "127.0.0.1", "routes": [
        route("echo", ports[0], echo), route("greeter", ports[1], greeter),
        route("resetter", ports[2], resetter), route("refused", ports[3], refused)
    ]});
    let proxy = start_proxy(config).await;
    churn_leaves_nothing(&proxy, CONNECTIONS, CONCURRENCY, |i| {
        one_connection(i % 6, ports)
    })
    .await;
    for (reason, at_least) in [
        (CloseReason::ClientFin, 1),
        (CloseReason::BackendFin, 1),
        (CloseReason::ClientReset, 1),
        (CloseReason::BackendReset, 1),
        (CloseReason::ConnectFailed, (CONNECTIONS / 6) as u64),
    ] {
        assert!(
            proxy.closed_with(reason) >= at_least,
            "{reason}: {}",
            proxy.closed_with(reason)
        );
    }
    proxy.shutdown().await;
}

async fn one_connection(kind: usize, ports: [u16; 4]) {
    let payload = pattern(10_000);
    match kind {
        // Normal: echo, both FINs.
        0 => {
            let mut client = connect(ports[0]).await;
            client.write_all(&payload).await.expect("write");
            client.shutdown().await.expect("FIN");
            let (got, ending) = read_to_end(&mut client).await;
            assert_eq!((got.len(), ending), (payload.len(), Ending::Fin));
        }
        // Backend FIN first, the client keeps sending, then its FIN.
        1 => {
            let mut client = connect(ports[1]).await;
            let (got, _) = read_to_end(&mut client).await;
            assert_eq!(got, b"hello");
            let _ = client.write_all(&payload).await;
            let _ = client.shutdown().await;
        }
        // Client resets mid-stream.
        2 => {
            let mut client = connect(ports[0]).await;
            client.write_all(&payload).await.expect("write");
            let mut some = [0; 100];
            let _ = client.read(&mut some).await;
            reset(client);
        }
        // Backend resets.
        3 => {
            let mut client = connect(ports[2]).await;
            let _ = client.write_all(b"ping").await;
            let (_, ending) = read_to_end(&mut client).await;
            assert_eq!(ending, Ending::Reset);
        }
        // Refused backend.
        4 => {
            let mut client = connect(ports[3]).await;
            let (got, _) = read_to_end(&mut client).await;
            assert!(got.is_empty());
        }
        // Connect and leave without a word.
        _ => {
            let client = connect(ports[0]).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(client);
        }
    }
}
