//! Listeners, router and connector over real sockets: priority, client address matching,
//! failover between endpoints, port "preserve" and ranges, server-first backends, limits.

mod common;

use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that greets with `tag` before reading anything, then closes.
async fn tagged_backend(tag: &'static str) -> u16 {
    backend(move |mut stream| async move {
        let _ = stream.write_all(tag.as_bytes()).await;
        let _ = stream.shutdown().await;
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await
}

async fn greeting(port: u16) -> (Vec<u8>, Ending) {
    let mut client = connect(port).await;
    let result = read_to_end(&mut client).await;
    drop(client);
    result
}

#[tokio::test]
async fn a_server_first_backend_speaks_without_the_client_sending() {
    let backend = tagged_backend("220 smtp.test ESMTP ready\r\n").await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({}))).await;
    let (got, ending) = greeting(port).await;
    assert_eq!(got, b"220 smtp.test ESMTP ready\r\n");
    assert_eq!(ending, Ending::Fin);
    wait_closed_with(&proxy, CloseReason::BackendFin, 1).await;
}

#[tokio::test]
async fn higher_priority_wins_and_ties_keep_file_order() {
    let low = tagged_backend("low").await;
    let first_tie = tagged_backend("first").await;
    let second_tie = tagged_backend("second").await;
    let port = free_port();
    let route = |name: &str, priority: i64, target: u16| {
        json!({"name": name, "priority": priority, "match": {"ports": port},
               "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": target}}})
    };
    let config = json!({"bindAddress": "127.0.0.1", "routes": [
        route("low", 1, low), route("first", 5, first_tie), route("second", 5, second_tie)
    ]});
    let _proxy = start_proxy(config).await;
    assert_eq!(greeting(port).await.0, b"first");
}

#[tokio::test]
async fn client_ip_decides_between_routes_and_no_match_is_no_route() {
    let loopback = tagged_backend("loopback").await;
    let port = free_port();
    let other_port = free_port();
    let config = json!({"bindAddress": "127.0.0.1", "routes": [
        {"name": "private", "match": {"ports": [port, other_port], "clientIp": ["10.0.0.0/8"]},
         "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": loopback}}},
        {"name": "loopback", "match": {"ports": port, "clientIp": "127.0.0.*"},
         "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": loopback}}}
    ]});
    let proxy = start_proxy(config).await;
    assert_eq!(greeting(port).await.0, b"loopback");
    let (got, ending) = greeting(other_port).await;
    assert_eq!((got.len(), ending), (0, Ending::Fin));
    wait_closed_with(&proxy, CloseReason::NoRoute, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_refused_endpoint_fails_over_to_the_next() {
    let refused = free_port();
    let backend = tagged_backend("second").await;
    let port = free_port();
    let config = json!({"bindAddress": "127.0.0.1", "routes": [{
        "name": "failover", "match": {"ports": port},
        "action": {"type": "forward", "targets": [
            {"host": "127.0.0.1", "port": refused},
            {"host": "127.0.0.1", "port": backend}
        ]}
    }]});
    let proxy = start_proxy(config).await;
    // Round-robin starts on the refused endpoint, then the second: both reach the backend.
    for _ in 0..4 {
        assert_eq!(greeting(port).await.0, b"second");
    }
    assert_eq!(proxy.closed_with(CloseReason::ConnectFailed), 0);
}

#[tokio::test]
async fn each_host_of_a_target_is_an_endpoint() {
    // One backend port on two loopback addresses, each answering with its own address.
    let backend_port = free_port_range(1);
    for host in ["127.0.0.1", "127.0.0.2"] {
        let listener = TcpListener::bind((host, backend_port))
            .await
            .expect("bind backend");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(host.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
    }
    let port = free_port();
    let config = json!({"bindAddress": "127.0.0.1", "routes": [{
        "match": {"ports": port},
        "action": {"type": "forward", "target": {"host": ["127.0.0.2", "127.0.0.1"], "port": backend_port}}
    }]});
    let _proxy = start_proxy(config).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(String::from_utf8(greeting(port).await.0).expect("utf-8"));
    }
    assert_eq!(
        seen,
        ["127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.1"],
        "round-robin over hosts"
    );
}

#[tokio::test]
async fn a_refused_host_fails_over_to_the_next_host() {
    // The backend listens on 127.0.0.1 only, so 127.0.0.2 refuses on the same port.
    let backend = tagged_backend("one").await;
    let port = free_port();
    let config = json!({"bindAddress": "127.0.0.1", "routes": [{
        "match": {"ports": port},
        "action": {"type": "forward", "target": {"host": ["127.0.0.2", "127.0.0.1"], "port": backend}}
    }]});
    let _proxy = start_proxy(config).await;
    for _ in 0..3 {
        assert_eq!(greeting(port).await.0, b"one");
    }
}

#[tokio::test]
async fn every_endpoint_refusing_closes_the_client_with_connect_failed() {
    let port = free_port();
    let config = json!({"bindAddress": "127.0.0.1", "routes": [{
        "match": {"ports": port},
        "action": {"type": "forward", "targets": [
            {"host": "127.0.0.1", "port": free_port()},
            {"host": "127.0.0.1", "port": free_port()}
        ]}
    }]});
    let proxy = start_proxy(config).await;
    let (got, ending) = greeting(port).await;
    assert_eq!((got.len(), ending), (0, Ending::Fin));
    wait_closed_with(&proxy, CloseReason::ConnectFailed, 1).await;
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn a_port_range_listens_on_every_port_and_preserve_keeps_the_port() {
    let first = free_port_range(3);
    // Backends on 127.0.0.2 with the same port numbers; each answers with its own port.
    for port in first..first + 3 {
        let listener = TcpListener::bind(("127.0.0.2", port))
            .await
            .expect("bind 127.0.0.2");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(port.to_string().as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
    }
    let config = json!({"bindAddress": "127.0.0.1", "routes": [{
        "name": "range", "match": {"ports": [{"from": first, "to": first + 2}]},
        "action": {"type": "forward", "target": {"host": "127.0.0.2", "port": "preserve"}}
    }]});
    let proxy = start_proxy(config).await;
    assert_eq!(proxy.local_addrs().len(), 3);
    for port in first..first + 3 {
        assert_eq!(greeting(port).await.0, port.to_string().as_bytes());
    }
}

#[tokio::test]
async fn max_connections_refuses_past_the_cap() {
    let backend = echo_backend().await;
    let port = free_port();
    let proxy = start_proxy(one_route(port, backend, json!({"maxConnections": 2}))).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = connect(port).await;
        client.write_all(b"x").await.expect("write");
        let mut one = [0; 1];
        client.read_exact(&mut one).await.expect("echo");
        held.push(client);
    }
    let (got, ending) = greeting(port).await;
    assert_eq!((got.len(), ending), (0, Ending::Fin));
    wait_closed_with(&proxy, CloseReason::Limit, 1).await;
    drop(held);
    wait_no_live(&proxy).await;
    // Below the cap again: accepted.
    let mut client = connect(port).await;
    client.write_all(b"y").await.expect("write");
    let mut one = [0; 1];
    client
        .read_exact(&mut one)
        .await
        .expect("echo after the cap freed");
}

#[tokio::test]
async fn disabled_routes_do_not_listen() {
    let backend = echo_backend().await;
    let port = free_port();
    let mut config = one_route(port, backend, json!({}));
    config["routes"][0]["enabled"] = json!(false);
    let proxy = start_proxy(config).await;
    assert!(proxy.local_addrs().is_empty());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn ipv6_loopback_listener_and_a_hostname_target() {
    let backend = tagged_backend("by-name").await;
    let port = free_port();
    let config = json!({"bindAddress": "::1", "routes": [{
        "match": {"ports": port},
        "action": {"type": "forward", "target": {"host": "localhost", "port": backend}}
    }]});
    let proxy = start_proxy(config).await;
    let mut client = tokio::time::timeout(PATIENCE, tokio::net::TcpStream::connect(("::1", port)))
        .await
        .expect("connect in time")
        .expect("connect over IPv6 loopback");
    let (got, ending) = read_to_end(&mut client).await;
    assert_eq!((got.as_slice(), ending), (&b"by-name"[..], Ending::Fin));
    drop(client);
    wait_closed_with(&proxy, CloseReason::BackendFin, 1).await;
}

#[tokio::test]
async fn without_bind_address_one_dual_stack_listener_serves_ipv4_and_ipv6() {
    // IPv4 clients reach the `[::]` listener as IPv4-mapped addresses; clientIp sees plain IPv4.
    let backend = tagged_backend("dual").await;
    let port = free_port();
    let config = json!({"routes": [{
        "match": {"ports": port, "clientIp": ["127.0.0.1/32", "::1"]},
        "action": {"type": "forward", "target": {"host": "127.0.0.1", "port": backend}}
    }]});
    let proxy = start_proxy(config).await;
    assert_eq!(proxy.local_addrs().len(), 1);
    assert!(
        proxy.local_addrs()[0].is_ipv6(),
        "{:?}",
        proxy.local_addrs()
    );
    for host in ["127.0.0.1", "::1"] {
        let mut client = tokio::net::TcpStream::connect((host, port))
            .await
            .expect("connect");
        let (got, _) = read_to_end(&mut client).await;
        assert_eq!(got, b"dual", "via {host}");
    }
    assert_eq!(proxy.closed_with(CloseReason::NoRoute), 0);
}
