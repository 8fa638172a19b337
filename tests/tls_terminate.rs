//! Terminating TLS with rustls: certificate choice by SNI, TLS versions, certificate reloads,
//! re-encryption to a verified backend, one port mixing passthrough and termination, and the
//! same relay and timers as plain TCP after the handshake.

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use serde_json::{Value, json};
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy with one terminating route on a fresh port.
async fn terminating(
    name: &str,
    domains: Value,
    leaf: &Leaf,
    backend_port: u16,
    globals: Value,
) -> (smartproxy::Proxy, u16) {
    let port = free_port();
    let route = tls_route(name, port, domains, backend_port, terminate_inline(leaf));
    (start_proxy(routes_config(vec![route], globals)).await, port)
}

fn terminate_files(cert: &std::path::Path, key: &std::path::Path) -> Value {
    json!({"mode": "terminate", "certificate": {"certFile": cert, "keyFile": key}})
}

fn terminate_inline(leaf: &Leaf) -> Value {
    json!({"mode": "terminate", "certificate": {"cert": leaf.cert_pem, "key": leaf.key_pem}})
}

#[tokio::test]
async fn terminate_forwards_plaintext_and_half_closes() {
    let ca = TestCa::new("terminate CA");
    let leaf = ca.leaf(&["app.test"]);
    let backend_port = echo_backend().await;
    let (proxy, port) = terminating("app", json!("app.test"), &leaf, backend_port, json!({})).await;
    let mut stream = tls_connect(port, "app.test", client_config(&ca))
        .await
        .expect("handshake");
    assert_eq!(presented_leaf(&stream), leaf.der);
    let big = pattern(1 << 20);
    assert_eq!(echo_roundtrip(&mut stream, &big).await, big);
    // close_notify from the client becomes a FIN to the backend; the echo backend answers
    // with its own FIN, which comes back as close_notify.
    stream.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("clean TLS close");
    assert!(rest.is_empty());
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 1);
}

#[tokio::test]
async fn backend_keeps_sending_after_the_client_half_closes_over_tls() {
    let ca = TestCa::new("half-close CA");
    let leaf = ca.leaf(&["half.test"]);
    // Reads to the client's FIN, then streams 1 MiB and closes.
    let backend_port = backend(|mut stream| async move {
        let mut request = Vec::new();
        let _ = stream.read_to_end(&mut request).await;
        let _ = stream.write_all(&pattern(1 << 20)).await;
        let _ = stream.shutdown().await;
    })
    .await;
    let (proxy, port) = terminating("half", Value::Null, &leaf, backend_port, json!({})).await;
    let mut stream = tls_connect(port, "half.test", client_config(&ca))
        .await
        .expect("handshake");
    stream.write_all(b"request").await.expect("request");
    stream.shutdown().await.expect("close_notify");
    let mut body = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut body))
        .await
        .expect("body in time")
        .expect("body");
    assert_eq!(body, pattern(1 << 20));
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 1);
}

#[tokio::test]
async fn certificate_by_sni_exact_then_wildcard_then_default() {
    let ca = TestCa::new("selection CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let default = ca.leaf(&["default.test"]);
    let wildcard = ca.leaf(&["*.example.com"]);
    let exact = ca.leaf(&["exact.example.com"]);
    let (dc, dk) = default.write(dir.path(), "default");
    let backend_port = echo_backend().await;
    let port = free_port();
    let other_port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            // Routes on another port only contribute certificates.
            tls_route(
                "wild",
                other_port,
                json!("*.example.com"),
                backend_port,
                terminate_inline(&wildcard),
            ),
            tls_route(
                "exact",
                other_port,
                json!("exact.example.com"),
                backend_port,
                terminate_inline(&exact),
            ),
            tls_route(
                "any",
                port,
                Value::Null,
                backend_port,
                terminate_files(&dc, &dk),
            ),
        ],
        json!({}),
    ))
    .await;
    // Verification is by name; these clients check what the proxy presents is right.
    let client = client_config(&ca);
    let seen = |sni: &'static str| {
        let client = client.clone();
        async move {
            let mut stream = tls_connect(port, sni, client).await.expect(sni);
            assert_eq!(
                echo_roundtrip(&mut stream, sni.as_bytes()).await,
                sni.as_bytes()
            );
            presented_leaf(&stream)
        }
    };
    assert_eq!(seen("exact.example.com").await, exact.der);
    assert_eq!(seen("a.example.com").await, wildcard.der);
    assert_eq!(seen("default.test").await, default.der);
    // A name nothing covers gets the route's default (and this client rejects it).
    let rejected = tls_connect(port, "a.b.example.com", client.clone()).await;
    assert!(rejected.is_err(), "a wildcard covers one label only");
    wait_closed_with(&proxy, CloseReason::TlsHandshakeFailed, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn tls12_and_tls13_only() {
    let ca = TestCa::new("versions CA");
    let leaf = ca.leaf(&["v.test"]);
    let backend_port = echo_backend().await;
    let (proxy, port) = terminating("v", Value::Null, &leaf, backend_port, json!({})).await;
    for versions in [
        &[&rustls::version::TLS12][..],
        &[&rustls::version::TLS13][..],
    ] {
        let mut stream = tls_connect(port, "v.test", client_config_for(&ca, versions))
            .await
            .expect("handshake");
        let version = stream.get_ref().1.protocol_version();
        assert_eq!(
            version,
            Some(versions[0].version),
            "negotiated what the client allows"
        );
        assert_eq!(echo_roundtrip(&mut stream, b"ok").await, b"ok");
        drop(stream);
    }
    // A ClientHello that offers at most TLS 1.1 is refused with an alert.
    let mut old = client_hello(
        Some("v.test"),
        client_config_for(&ca, &[&rustls::version::TLS12]),
    );
    // client_version sits after the record header (5) and handshake header (4); the
    // supported_versions extension (43) lists 0x0303 alone. Both become TLS 1.1.
    assert_eq!(&old[9..11], &[3, 3]);
    old[9..11].copy_from_slice(&[3, 2]);
    let versions_ext = [0, 43, 0, 3, 2, 3, 3];
    let at = old
        .windows(versions_ext.len())
        .position(|w| w == versions_ext)
        .expect("supported_versions extension");
    old[at + 5..at + 7].copy_from_slice(&[3, 2]);
    let mut client = connect(port).await;
    client.write_all(&old).await.expect("hello");
    const PROTOCOL_VERSION: u8 = 70;
    expect_alert(&mut client, PROTOCOL_VERSION).await;
    wait_closed_with(&proxy, CloseReason::TlsHandshakeFailed, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn certificate_files_reload_on_change_and_keep_the_old_on_a_bad_file() {
    let ca = TestCa::new("reload CA");
    let first = ca.leaf(&["reload.test"]);
    let second = ca.leaf(&["reload.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = first.write(dir.path(), "site");
    let backend_port = echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![tls_route(
            "r",
            port,
            Value::Null,
            backend_port,
            terminate_files(&cert, &key),
        )],
        json!({}),
    ))
    .await;
    let presented = || async {
        let stream = tls_connect(port, "reload.test", client_config(&ca))
            .await
            .expect("handshake");
        presented_leaf(&stream)
    };
    assert_eq!(presented().await, first.der);

    // Replaced files are picked up without a restart.
    second.write(dir.path(), "site");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while presented().await != second.der {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A broken file keeps the certificate that works.
    std::fs::write(&cert, "not a certificate").expect("break the file");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        proxy.reload_certificates().await,
        0,
        "nothing valid to load"
    );
    assert_eq!(presented().await, second.der);

    // SIGHUP's path re-reads at once.
    first.write(dir.path(), "site");
    assert_eq!(proxy.reload_certificates().await, 1);
    assert_eq!(presented().await, first.der);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn reencrypt_sends_the_client_sni_and_verifies_the_backend() {
    let front_ca = TestCa::new("front CA");
    let backend_ca = TestCa::new("backend CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_file, backend_ca.pem()).expect("write CA");
    let front = front_ca.leaf(&["app.test"]);
    let (backend_port, backend_seen) = tls_echo_backend(&backend_ca.leaf(&["app.test"])).await;
    let untrusted_ca = TestCa::new("someone else");
    let (untrusted_port, _) = tls_echo_backend(&untrusted_ca.leaf(&["app.test"])).await;
    let [verified, lax, strict] = [free_port(), free_port(), free_port()];
    let reencrypt = |extra: Value| {
        let mut tls = json!({"mode": "terminate-and-reencrypt",
                             "certificate": {"cert": front.cert_pem, "key": front.key_pem}});
        if let (Some(tls), Value::Object(extra)) = (tls.as_object_mut(), extra) {
            tls.extend(extra);
        }
        tls
    };
    let proxy = start_proxy(routes_config(
        vec![
            tls_route(
                "verified",
                verified,
                Value::Null,
                backend_port,
                reencrypt(json!({"caFile": ca_file})),
            ),
            tls_route(
                "lax",
                lax,
                Value::Null,
                untrusted_port,
                reencrypt(json!({"rejectUnauthorized": false})),
            ),
            tls_route(
                "strict",
                strict,
                Value::Null,
                untrusted_port,
                reencrypt(json!({"caFile": ca_file})),
            ),
        ],
        json!({}),
    ))
    .await;
    let client = client_config(&front_ca);

    let mut stream = tls_connect(verified, "app.test", client.clone())
        .await
        .expect("handshake");
    assert_eq!(presented_leaf(&stream), front.der);
    let big = pattern(300_000);
    assert_eq!(echo_roundtrip(&mut stream, &big).await, big);
    assert_eq!(
        *backend_seen.lock().unwrap(),
        [Some("app.test".to_string())]
    );
    stream.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.expect("clean close");

    let mut stream = tls_connect(lax, "app.test", client.clone())
        .await
        .expect("handshake");
    assert_eq!(
        echo_roundtrip(&mut stream, b"unverified backend").await,
        b"unverified backend"
    );
    drop(stream);

    // A backend the CA file does not vouch for is never reached with data.
    let mut stream = tls_connect(strict, "app.test", client.clone())
        .await
        .expect("the client's own handshake succeeds");
    let _ = stream.write_all(b"must not arrive").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed in time");
    assert!(buf.is_empty());
    wait_closed_with(&proxy, CloseReason::ConnectFailed, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn one_port_mixes_passthrough_and_terminate() {
    let ca = TestCa::new("mixed CA");
    let (pass_backend, pass_seen) = tls_echo_backend(&ca.leaf(&["pass.test"])).await;
    let term_leaf = ca.leaf(&["term.test"]);
    let plain_backend = echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            tls_route(
                "pass",
                port,
                json!("pass.test"),
                pass_backend,
                json!({"mode": "passthrough"}),
            ),
            tls_route(
                "term",
                port,
                json!("term.test"),
                plain_backend,
                terminate_inline(&term_leaf),
            ),
        ],
        json!({}),
    ))
    .await;
    let client = client_config(&ca);
    let mut pass = tls_connect(port, "pass.test", client.clone())
        .await
        .expect("pass");
    let mut term = tls_connect(port, "term.test", client.clone())
        .await
        .expect("term");
    assert_ne!(presented_leaf(&pass), term_leaf.der);
    assert_eq!(presented_leaf(&term), term_leaf.der);
    assert_eq!(echo_roundtrip(&mut pass, b"p").await, b"p");
    assert_eq!(echo_roundtrip(&mut term, b"t").await, b"t");
    assert_eq!(*pass_seen.lock().unwrap(), [Some("pass.test".to_string())]);
    drop((pass, term));
    wait_no_live(&proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_handshakes_in_parallel() {
    let ca = TestCa::new("parallel CA");
    let leaf = ca.leaf(&["many.test"]);
    let backend_port = echo_backend().await;
    let (proxy, port) =
        terminating("many", json!("many.test"), &leaf, backend_port, json!({})).await;
    let client = client_config(&ca);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = tls_connect(port, "many.test", client)
                .await
                .expect("handshake");
            let message = format!("connection {i}");
            let back = echo_roundtrip(&mut stream, message.as_bytes()).await;
            assert_eq!(back, message.as_bytes());
            stream.shutdown().await.expect("close_notify");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        }));
    }
    for task in tasks {
        task.await.expect("connection task");
    }
    wait_no_live(&proxy).await;
    assert_eq!(proxy.total_connections(), 200);
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 200);
}

#[tokio::test]
async fn terminated_connections_obey_the_same_timers() {
    let ca = TestCa::new("timer CA");
    let leaf = ca.leaf(&["idle.test"]);
    let backend_port = echo_backend().await;
    let (proxy, port) = terminating(
        "idle",
        Value::Null,
        &leaf,
        backend_port,
        json!({"inactivityTimeout": "1s", "keepAlive": false}),
    )
    .await;
    let mut stream = tls_connect(port, "idle.test", client_config(&ca))
        .await
        .expect("handshake");
    assert_eq!(echo_roundtrip(&mut stream, b"once").await, b"once");
    let idle_from = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
    wait_closed_with(&proxy, CloseReason::Inactivity, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn unfinished_handshake_times_out() {
    let ca = TestCa::new("slow CA");
    let leaf = ca.leaf(&["slow.test"]);
    let (proxy, port) = terminating(
        "slow",
        Value::Null,
        &leaf,
        free_port(),
        json!({"initialDataTimeout": "700ms"}),
    )
    .await;
    // The ClientHello arrives, the rest of the handshake never does.
    let mut client = connect(port).await;
    client
        .write_all(&client_hello(Some("slow.test"), client_config(&ca)))
        .await
        .expect("hello");
    let started = tokio::time::Instant::now();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, client.read_to_end(&mut sink)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    wait_closed_with(&proxy, CloseReason::InitialDataTimeout, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn each_route_serves_its_own_certificate_when_it_covers_the_name() {
    let ca = TestCa::new("own CA");
    let public = ca.leaf(&["shared.test"]);
    let internal = ca.leaf(&["shared.test", "*.internal.test"]);
    let backend_port = echo_backend().await;
    let (public_port, internal_port) = (free_port(), free_port());
    let proxy = start_proxy(routes_config(
        vec![
            tls_route(
                "public",
                public_port,
                Value::Null,
                backend_port,
                terminate_inline(&public),
            ),
            tls_route(
                "internal",
                internal_port,
                Value::Null,
                backend_port,
                terminate_inline(&internal),
            ),
        ],
        json!({}),
    ))
    .await;
    let client = client_config(&ca);
    for (port, expected) in [(public_port, &public), (internal_port, &internal)] {
        let stream = tls_connect(port, "shared.test", client.clone())
            .await
            .expect("handshake");
        assert_eq!(presented_leaf(&stream), expected.der, "port {port}");
    }
    // A name only the other route's certificate covers is still served from the store.
    let stream = tls_connect(public_port, "a.internal.test", client.clone())
        .await
        .expect("handshake");
    assert_eq!(presented_leaf(&stream), internal.der);
    drop(stream);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_reset_on_a_terminated_connection_resets_the_backend() {
    let ca = TestCa::new("reset CA");
    let leaf = ca.leaf(&["reset.test"]);
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let ended_tx = std::sync::Mutex::new(Some(ended_tx));
    let backend_port = backend(move |mut stream| {
        let tx = ended_tx.lock().unwrap().take();
        async move {
            let mut first = [0; 5];
            stream.read_exact(&mut first).await.expect("first bytes");
            let (_, ending) = read_to_end(&mut stream).await;
            if let Some(tx) = tx {
                let _ = tx.send(ending);
            }
        }
    })
    .await;
    let (proxy, port) = terminating("reset", Value::Null, &leaf, backend_port, json!({})).await;
    let mut stream = tls_connect(port, "reset.test", client_config(&ca))
        .await
        .expect("handshake");
    stream.write_all(b"hello").await.expect("write");
    stream.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (tcp, _) = stream.into_inner();
    reset(tcp);
    let ending = tokio::time::timeout(PATIENCE, ended_rx)
        .await
        .expect("backend saw the end in time")
        .expect("backend reported");
    assert_eq!(ending, Ending::Reset);
    wait_closed_with(&proxy, CloseReason::ClientReset, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn terminates_a_client_hello_split_across_records_and_segments() {
    let ca = TestCa::new("split CA");
    let leaf = ca.leaf(&["split.test"]);
    let (proxy, port) = terminating(
        "split",
        json!("split.test"),
        &leaf,
        echo_backend().await,
        json!({}),
    )
    .await;
    let (conn, hello) = first_flight(Some("split.test"), client_config(&ca));
    let mut tcp = connect(port).await;
    tcp.set_nodelay(true).expect("nodelay");
    for piece in split_records(&hello, 40).chunks(7) {
        tcp.write_all(piece).await.expect("piece");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let back = finish_and_echo(conn, tcp, b"through termination").await;
    assert_eq!(back, b"through termination");
    wait_no_live(&proxy).await;
}
