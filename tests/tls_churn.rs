//! TLS connections ending every way, garbage and half ClientHellos included; afterwards the
//! live count is 0 and the open file count is back at its start value. Its own test binary,
//! so no other test's sockets move the file count.

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 300;

const CONCURRENCY: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_churn_leaves_nothing_behind() {
    let ca = TestCa::new("churn CA");
    let (tls_backend, _) = tls_echo_backend(&ca.leaf(&["pass.test"])).await;
    let (reencrypt_backend, _) = tls_echo_backend(&ca.leaf(&["re.test"])).await;
    let plain_backend = echo_backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // File-based certificates, so the certificate watch runs during the churn too.
    let (term_cert, term_key) = ca.leaf(&["term.test"]).write(dir.path(), "term");
    let (re_cert, re_key) = ca.leaf(&["re.test", "gone.test"]).write(dir.path(), "re");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    let files =
        |cert: &std::path::Path, key: &std::path::Path| json!({"certFile": cert, "keyFile": key});
    let port = free_port();
    let routes = vec![
        tls_route(
            "pass",
            port,
            json!("pass.test"),
            tls_backend,
            json!({"mode": "passthrough"}),
        ),
        tls_route(
            "term",
            port,
            json!("term.test"),
            plain_backend,
            json!({"mode": "terminate", "certificate": files(&term_cert, &term_key)}),
        ),
        tls_route(
            "re",
            port,
            json!("re.test"),
            reencrypt_backend,
            json!({"mode": "terminate-and-reencrypt", "caFile": ca_file,
                         "certificate": files(&re_cert, &re_key)}),
        ),
        // Its backend is not listening: the client's handshake succeeds, the connect fails.
        tls_route(
            "gone",
            port,
            json!("gone.test"),
            free_port(),
            json!({"mode": "terminate", "certificate": files(&re_cert, &re_key)}),
        ),
    ];
    let proxy = start_proxy(routes_config(
        routes,
        json!({"initialDataTimeout": "500ms"}),
    ))
    .await;
    let client = client_config(&ca);
    let hello = client_hello(Some("term.test"), client.clone());
    churn_leaves_nothing(&proxy, CONNECTIONS, CONCURRENCY, |i| {
        one_connection(i % 10, port, client.clone(), hello.clone())
    })
    .await;
    for reason in [
        CloseReason::ClientFin,
        CloseReason::ClientReset,
        CloseReason::NotTls,
        CloseReason::InitialDataTimeout,
        CloseReason::NoRoute,
        CloseReason::ConnectFailed,
    ] {
        assert!(
            proxy.closed_with(reason) > 0,
            "no connection ended with {reason}"
        );
    }
}

async fn one_connection(
    kind: usize,
    port: u16,
    client: std::sync::Arc<rustls::ClientConfig>,
    hello: Vec<u8>,
) {
    match kind {
        // Passthrough, clean close.
        0 => {
            let mut s = tls_connect(port, "pass.test", client).await.expect("pass");
            assert_eq!(echo_roundtrip(&mut s, b"pass").await, b"pass");
            let _ = s.shutdown().await;
            let _ = s.read_to_end(&mut Vec::new()).await;
        }
        // Terminated, clean close.
        1 => {
            let mut s = tls_connect(port, "term.test", client).await.expect("term");
            assert_eq!(echo_roundtrip(&mut s, b"term").await, b"term");
            let _ = s.shutdown().await;
            let _ = s.read_to_end(&mut Vec::new()).await;
        }
        // Terminated, then the client resets.
        2 => {
            let mut s = tls_connect(port, "term.test", client).await.expect("term");
            assert_eq!(echo_roundtrip(&mut s, b"x").await, b"x");
            let (tcp, _) = s.into_inner();
            reset(tcp);
        }
        // Garbage.
        3 => {
            let mut s = connect(port).await;
            let _ = s.write_all(b"\x00\x01garbage that is not TLS").await;
            let _ = read_to_end(&mut s).await;
        }
        // Half a ClientHello, then silence until initialDataTimeout.
        4 => {
            let mut s = connect(port).await;
            let _ = s.write_all(&hello[..hello.len() / 2]).await;
            let _ = read_to_end(&mut s).await;
        }
        // Half a ClientHello, then a reset.
        5 => {
            let mut s = connect(port).await;
            let _ = s.write_all(&hello[..hello.len() / 3]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            reset(s);
        }
        // A name no route serves.
        6 => {
            let mut s = connect(port).await;
            let unknown = client_hello(Some("nobody.test"), client);
            let _ = s.write_all(&unknown).await;
            let _ = read_to_end(&mut s).await;
        }
        // Re-encrypted to a verified backend, clean close.
        8 => {
            let mut s = tls_connect(port, "re.test", client).await.expect("re");
            assert_eq!(echo_roundtrip(&mut s, b"re").await, b"re");
            let _ = s.shutdown().await;
            let _ = s.read_to_end(&mut Vec::new()).await;
        }
        // Terminated, then the backend cannot be reached (the first plaintext bytes, not
        // HTTP, make it a TCP stream).
        9 => {
            let mut s = tls_connect(port, "gone.test", client).await.expect("gone");
            let _ = s.write_all(b"hello\n").await;
            let _ = s.read_to_end(&mut Vec::new()).await;
        }
        // The whole ClientHello, then a reset in the middle of the handshake.
        _ => {
            let mut s = connect(port).await;
            let _ = s.write_all(&hello).await;
            let mut first = [0; 1];
            let _ = s.read_exact(&mut first).await;
            reset(s);
        }
    }
}
