//! Routing on the ClientHello without terminating: SNI and version matching, passthrough of
//! every byte, ClientHellos in unusual shapes, and the ways a first read can fail.

mod common;

use std::time::Duration;

use common::tls::*;
use common::*;
use serde_json::{Value, json};
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UNRECOGNIZED_NAME: u8 = 112;

/// A passthrough route for `domains` to 127.0.0.1:`target`.
fn pass_route(name: &str, port: u16, domains: Value, target: u16) -> Value {
    tls_route(name, port, domains, target, passthrough())
}

fn passthrough() -> Value {
    json!({"mode": "passthrough"})
}

#[tokio::test]
async fn passthrough_routes_by_sni_end_to_end() {
    let ca = TestCa::new("passthrough CA");
    let (a_port, a_seen) = tls_echo_backend(&ca.leaf(&["a.test"])).await;
    let (b_port, b_seen) = tls_echo_backend(&ca.leaf(&["b.example.org"])).await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("a", port, json!("a.test"), a_port),
            pass_route("b", port, json!(["*.example.org"]), b_port),
        ],
        json!({}),
    ))
    .await;
    let client = client_config(&ca);

    let mut a = tls_connect(port, "a.test", client.clone())
        .await
        .expect("a handshake");
    assert_eq!(echo_roundtrip(&mut a, b"to a").await, b"to a");
    // Globs are case-insensitive.
    let mut b = tls_connect(port, "B.Example.ORG", client.clone())
        .await
        .expect("b handshake");
    assert_eq!(echo_roundtrip(&mut b, b"to b").await, b"to b");
    assert_eq!(*a_seen.lock().unwrap(), [Some("a.test".to_string())]);
    let b_sni = b_seen.lock().unwrap().clone();
    assert!(
        matches!(b_sni.as_slice(), [Some(name)] if name.eq_ignore_ascii_case("b.example.org")),
        "{b_sni:?}"
    );

    a.shutdown().await.expect("close a");
    b.shutdown().await.expect("close b");
    drop((a, b));
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::NoRoute), 0);
}

#[tokio::test]
async fn glob_domains_match_case_insensitively() {
    let (backend_port, received) = recording_backend(1, b"").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route(
            "org",
            port,
            json!("*.example.org"),
            backend_port,
        )],
        json!({}),
    ))
    .await;
    let ca = TestCa::new("unused");
    let hello = client_hello(Some("A.b.EXAMPLE.org"), client_config(&ca));
    let mut client = connect(port).await;
    client.write_all(&hello).await.expect("send hello");
    eventually("hello forwarded", || {
        received.lock().unwrap().len() >= hello.len()
    })
    .await;
    assert_eq!(*received.lock().unwrap(), hello);
    client.shutdown().await.expect("fin");
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 1);
}

#[tokio::test]
async fn every_byte_reaches_the_backend_untouched() {
    let ca = TestCa::new("unused");
    let hello = client_hello(Some("raw.test"), client_config(&ca));
    // The ClientHello, then bytes that are not TLS at all: passthrough does not look.
    let mut sent = hello.clone();
    sent.extend_from_slice(&pattern(100_000));
    let reply = b"\x16\x03\x03\x00\x01\x00 reply from the backend";
    let (backend_port, received) = recording_backend(sent.len(), reply).await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("raw", port, json!("raw.test"), backend_port)],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.write_all(&sent).await.expect("send");
    let mut back = vec![0; reply.len()];
    tokio::time::timeout(PATIENCE, client.read_exact(&mut back))
        .await
        .expect("reply in time")
        .expect("reply");
    assert_eq!(back, reply);
    assert_eq!(*received.lock().unwrap(), sent);
    client.shutdown().await.expect("fin");
    let (rest, ending) = read_to_end(&mut client).await;
    assert!(rest.is_empty());
    assert_eq!(ending, Ending::Fin);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_hello_one_byte_per_segment() {
    let ca = TestCa::new("dribble CA");
    let (backend_port, seen) = tls_echo_backend(&ca.leaf(&["slow.test"])).await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("other", port, json!("other.test"), free_port()),
            pass_route("slow", port, json!("slow.test"), backend_port),
        ],
        json!({}),
    ))
    .await;
    // A real handshake whose first flight the client writes one byte per TCP segment.
    let (conn, hello) = first_flight(Some("slow.test"), client_config(&ca));
    let mut tcp = connect(port).await;
    tcp.set_nodelay(true).expect("nodelay");
    for byte in &hello {
        tcp.write_all(std::slice::from_ref(byte))
            .await
            .expect("one byte");
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    // Finish the handshake with the bytes the backend answers, then echo.
    let back = finish_and_echo(conn, tcp, b"after dribble").await;
    assert_eq!(back, b"after dribble");
    assert_eq!(*seen.lock().unwrap(), [Some("slow.test".to_string())]);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_hello_split_across_records() {
    let ca = TestCa::new("unused");
    let hello = client_hello(Some("split.test"), client_config(&ca));
    // Records of at most 60 payload bytes each: four or more.
    let split = split_records(&hello, 60);
    assert!(
        split.len() >= hello.len() + 15,
        "the hello spans several records"
    );
    let (backend_port, received) = recording_backend(split.len(), b"").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("other", port, json!("other.test"), free_port()),
            pass_route("split", port, json!("split.test"), backend_port),
        ],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.set_nodelay(true).expect("nodelay");
    // Records also arrive cut at odd places.
    for piece in split.chunks(37) {
        client.write_all(piece).await.expect("piece");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    eventually("split hello forwarded", || {
        received.lock().unwrap().len() >= split.len()
    })
    .await;
    assert_eq!(
        *received.lock().unwrap(),
        split,
        "forwarded exactly as sent"
    );
    client.shutdown().await.expect("fin");
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::NotTls), 0);
}

#[tokio::test]
async fn no_sni_matches_only_routes_without_domains() {
    let ca = TestCa::new("unused");
    let no_sni = client_hello(None, client_config(&ca));
    let (catch_all, catch_all_received) = recording_backend(1, b"").await;
    let (named, named_received) = recording_backend(1, b"").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("named", port, json!("named.test"), named),
            tls_route("plain", port, Value::Null, catch_all, Value::Null),
        ],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.write_all(&no_sni).await.expect("hello");
    eventually("no-SNI hello at the catch-all", || {
        catch_all_received.lock().unwrap().len() >= no_sni.len()
    })
    .await;
    assert!(named_received.lock().unwrap().is_empty());
    drop(client);

    // A port whose routes all need a name: no SNI is no route, told with an alert.
    let port = free_port();
    let only_named = start_proxy(routes_config(
        vec![pass_route("named", port, json!("named.test"), named)],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.write_all(&no_sni).await.expect("hello");
    expect_alert(&mut client, UNRECOGNIZED_NAME).await;
    wait_closed_with(&only_named, CloseReason::NoRoute, 1).await;
    wait_no_live(&only_named).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn catch_all_domain_star_takes_hellos_without_sni() {
    let ca = TestCa::new("unused");
    let no_sni = client_hello(None, client_config(&ca));
    let (backend_port, received) = recording_backend(1, b"").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("star", port, json!("*"), backend_port)],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.write_all(&no_sni).await.expect("hello");
    eventually("hello forwarded", || {
        received.lock().unwrap().len() >= no_sni.len()
    })
    .await;
    drop(client);
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::NoRoute), 0);
}

#[tokio::test]
async fn unknown_sni_gets_unrecognized_name_and_no_route() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("known", port, json!("known.test"), free_port())],
        json!({}),
    ))
    .await;
    let ca = TestCa::new("alert CA");
    let mut client = connect(port).await;
    client
        .write_all(&client_hello(Some("unknown.test"), client_config(&ca)))
        .await
        .expect("hello");
    expect_alert(&mut client, UNRECOGNIZED_NAME).await;
    wait_closed_with(&proxy, CloseReason::NoRoute, 1).await;

    // A real TLS client sees the alert as a handshake error naming it.
    let err = tls_connect(port, "unknown.test", client_config(&ca))
        .await
        .expect_err("no route");
    assert!(err.to_string().contains("UnrecognisedName"), "{err}");
    wait_closed_with(&proxy, CloseReason::NoRoute, 2).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn non_tls_bytes_close_with_not_tls() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("tls-only", port, json!("a.test"), free_port())],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .expect("send");
    let (answer, ending) = read_to_end(&mut client).await;
    assert!(answer.is_empty(), "nothing is answered to non-TLS bytes");
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::NotTls, 1).await;

    // A malformed ClientHello (a record claiming a handshake, then garbage) also ends there.
    let mut client = connect(port).await;
    let mut bad = vec![22, 3, 1, 0, 40, 1, 0, 0, 36, 3, 3];
    bad.extend_from_slice(&[0xff; 34]);
    client.write_all(&bad).await.expect("send");
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::NotTls, 2).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn non_tls_bytes_go_to_a_plain_route_on_a_mixed_port() {
    let (plain, received) = recording_backend(5, b"plain ok").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("named", port, json!("a.test"), free_port()),
            tls_route("plain", port, Value::Null, plain, Value::Null),
        ],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client.write_all(b"hello").await.expect("send");
    let mut back = [0; 8];
    client.read_exact(&mut back).await.expect("reply");
    assert_eq!(&back, b"plain ok");
    assert_eq!(*received.lock().unwrap(), b"hello");
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn unfinished_client_hello_times_out() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("a", port, json!("a.test"), free_port())],
        json!({"initialDataTimeout": "600ms"}),
    ))
    .await;
    let ca = TestCa::new("unused");
    let hello = client_hello(Some("a.test"), client_config(&ca));
    let mut client = connect(port).await;
    client
        .write_all(&hello[..hello.len() / 2])
        .await
        .expect("half");
    let started = tokio::time::Instant::now();
    let (_, ending) = wait_closed(&mut client).await;
    let waited = started.elapsed();
    assert_eq!(ending, Ending::Fin);
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    wait_closed_with(&proxy, CloseReason::InitialDataTimeout, 1).await;

    // A client that says nothing at all is closed the same way.
    let mut silent = connect(port).await;
    let (_, ending) = wait_closed(&mut silent).await;
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::InitialDataTimeout, 2).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn tls_version_and_priority_pick_the_route() {
    let ca = TestCa::new("version CA");
    let (v13, v13_received) = recording_backend(1, b"").await;
    let (v12, v12_received) = recording_backend(1, b"").await;
    let (high, high_received) = recording_backend(1, b"").await;
    let port = free_port();
    let mut only13 = tls_route("only13", port, json!("v.test"), v13, passthrough());
    only13["match"]["tlsVersion"] = json!("TLSv1.3");
    let mut only12 = tls_route("only12", port, json!("v.test"), v12, passthrough());
    only12["match"]["tlsVersion"] = json!(["TLSv1.2"]);
    let mut preferred = pass_route("preferred", port, json!("p.test"), high);
    preferred["priority"] = json!(10);
    let proxy = start_proxy(routes_config(
        vec![
            only13,
            only12,
            pass_route("p-low", port, json!("p.test"), free_port()),
            preferred,
        ],
        json!({}),
    ))
    .await;
    let send = |hello: Vec<u8>| async move {
        let mut client = connect(port).await;
        client.write_all(&hello).await.expect("hello");
        client
    };
    let tls13 = client_hello(Some("v.test"), client_config(&ca));
    let tls12 = client_hello(
        Some("v.test"),
        client_config_for(&ca, &[&rustls::version::TLS12]),
    );
    let _c1 = send(tls13.clone()).await;
    eventually("1.3 hello at the 1.3 route", || {
        v13_received.lock().unwrap().len() >= tls13.len()
    })
    .await;
    let _c2 = send(tls12.clone()).await;
    eventually("1.2 hello at the 1.2 route", || {
        v12_received.lock().unwrap().len() >= tls12.len()
    })
    .await;
    let _c3 = send(client_hello(Some("p.test"), client_config(&ca))).await;
    eventually("higher priority wins", || {
        !high_received.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(v13_received.lock().unwrap().len(), tls13.len());
    assert_eq!(v12_received.lock().unwrap().len(), tls12.len());
    drop((_c1, _c2, _c3));
    wait_no_live(&proxy).await;
}

/// SmartProxy once cut WebSockets in SNI passthrough every 30 s; here an idle passthrough
/// session outlives that by a margin, then carries data both ways.
#[tokio::test]
async fn idle_passthrough_session_survives_35_seconds() {
    let ca = TestCa::new("idle CA");
    let (backend_port, _) = tls_echo_backend(&ca.leaf(&["ws.test"])).await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("ws", port, json!("ws.test"), backend_port)],
        json!({}),
    ))
    .await;
    let mut stream = tls_connect(port, "ws.test", client_config(&ca))
        .await
        .expect("handshake");
    assert_eq!(echo_roundtrip(&mut stream, b"before").await, b"before");
    tokio::time::sleep(Duration::from_secs(36)).await;
    assert_eq!(
        proxy.live_connections(),
        1,
        "the idle session is still open"
    );
    let big = pattern(200_000);
    assert_eq!(echo_roundtrip(&mut stream, &big).await, big);
    stream.shutdown().await.expect("close_notify");
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("close in time")
        .expect("clean close");
    wait_no_live(&proxy).await;
    assert_eq!(proxy.closed_with(CloseReason::ClientFin), 1);
}

#[tokio::test]
async fn non_tls_bytes_never_reach_a_route_that_expects_tls() {
    let (backend_port, received) = recording_backend(1, b"").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            pass_route("named", port, json!("a.test"), backend_port),
            // No domains, but it says passthrough: it wants TLS too.
            tls_route("any-tls", port, Value::Null, backend_port, passthrough()),
        ],
        json!({}),
    ))
    .await;
    let mut client = connect(port).await;
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    let (_, ending) = read_to_end(&mut client).await;
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::NotTls, 1).await;
    assert!(received.lock().unwrap().is_empty());
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn lifetime_caps_a_connection_that_never_sends_its_client_hello() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("a", port, json!("a.test"), free_port())],
        json!({
            "initialDataTimeout": 0,
            "keepAliveTreatment": "standard",
            "maxConnectionLifetime": "800ms"
        }),
    ))
    .await;
    let mut client = connect(port).await;
    let started = tokio::time::Instant::now();
    let (_, ending) = wait_closed(&mut client).await;
    let waited = started.elapsed();
    assert_eq!(ending, Ending::Fin);
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    wait_closed_with(&proxy, CloseReason::Lifetime, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_hello_larger_than_max_pending_data_is_a_limit() {
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![pass_route("a", port, json!("a.test"), free_port())],
        json!({"maxPendingDataSize": 100}),
    ))
    .await;
    let ca = TestCa::new("unused");
    let hello = client_hello(Some("a.test"), client_config(&ca));
    assert!(hello.len() > 100);
    let mut client = connect(port).await;
    client.write_all(&hello).await.expect("hello");
    let (answer, ending) = read_to_end(&mut client).await;
    assert!(answer.is_empty());
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::Limit, 1).await;
    wait_no_live(&proxy).await;
}
