//! Load balancing on HTTP routes, request by request: round-robin, least-connections and
//! ip-hash over two backends, and active and passive health taking endpoints out of the way.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::http::*;
use common::*;
use serde_json::{Value, json};

/// One forward route for `app.test` to 127.0.0.1 on `ports`, balanced by `load_balancing`.
fn balanced(port: u16, ports: &[u16], load_balancing: Value) -> Value {
    let targets: Vec<Value> = ports
        .iter()
        .map(|p| json!({"host": "127.0.0.1", "port": p}))
        .collect();
    json!({
        "bindAddress": "127.0.0.1",
        "routes": [{
            "name": "app",
            "match": {"ports": port, "domains": "app.test"},
            "action": {"type": "forward", "targets": targets, "loadBalancing": load_balancing}
        }]
    })
}

/// `n` GETs over one keep-alive connection; the backend name of each answer.
async fn backends_of(port: u16, n: usize) -> Vec<String> {
    let mut client = h1_client(port).await;
    let mut names = Vec::new();
    for _ in 0..n {
        let got = read(
            client
                .send_request(request("GET", "app.test", "/", b""))
                .await
                .expect("response"),
        )
        .await;
        assert_eq!(got.status, 200, "{}", got.text());
        names.push(got.json()["backend"].as_str().expect("name").to_string());
    }
    names
}

#[tokio::test]
async fn round_robin_alternates_request_by_request() {
    let (a, _) = counting_echo_backend("a").await;
    let (b, _) = counting_echo_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(balanced(port, &[a, b], json!({"algorithm": "round-robin"}))).await;
    let names = backends_of(port, 8).await;
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "each request goes to the other backend: {names:?}"
    );
    // New connections continue the rotation rather than starting it again.
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(get(port, "app.test", "/").await.json()["backend"].clone());
    }
    assert!(more.windows(2).all(|w| w[0] != w[1]), "{more:?}");
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn least_connections_avoids_the_backend_with_a_request_in_flight() {
    let (a, a_state) = counting_echo_backend("a").await;
    let (b, b_state) = counting_echo_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(balanced(
        port,
        &[a, b],
        json!({"algorithm": "least-connections"}),
    ))
    .await;
    let slow = tokio::spawn(get(port, "app.test", "/slow?delay=1500"));
    eventually("the slow request reached a backend", || {
        a_state.requests() + b_state.requests() == 1
    })
    .await;
    let busy = match a_state.requests() {
        1 => "a",
        _ => "b",
    };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let got = get(port, "app.test", "/fast").await;
        assert_eq!(got.status, 200);
        seen.push(got.json()["backend"].as_str().expect("name").to_string());
        // The finished request's lease ends with its response body.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        seen.iter().all(|name| name != busy),
        "{busy} holds a slow request; the others went elsewhere: {seen:?}"
    );
    let got = slow.await.expect("slow request");
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["backend"], busy);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn ip_hash_keeps_each_client_address_on_one_backend() {
    let (a, _) = counting_echo_backend("a").await;
    let (b, _) = counting_echo_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(balanced(port, &[a, b], json!({"algorithm": "ip-hash"}))).await;
    let mut per_address = Vec::new();
    for last in 1..=8u8 {
        let from = Ipv4Addr::new(127, 0, 0, last);
        let mut names = Vec::new();
        // Two connections from each address (so two source ports), two requests on each.
        for _ in 0..2 {
            let mut client = h1_client_from(from, port).await;
            for _ in 0..2 {
                let got = read(
                    client
                        .send_request(request("GET", "app.test", "/", b""))
                        .await
                        .expect("response"),
                )
                .await;
                assert_eq!(got.status, 200);
                assert_eq!(got.json()["headers"]["x-forwarded-for"], from.to_string());
                names.push(got.json()["backend"].as_str().expect("name").to_string());
            }
        }
        assert!(
            names.iter().all(|n| *n == names[0]),
            "{from} stays on one backend: {names:?}"
        );
        per_address.push(names[0].clone());
    }
    assert!(
        per_address.contains(&"a".to_string()) && per_address.contains(&"b".to_string()),
        "eight addresses are spread over both backends: {per_address:?}"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn active_health_check_takes_a_failing_backend_out_and_back_in() {
    let (a, a_state) = counting_echo_backend("a").await;
    let (b, b_state) = counting_echo_backend("b").await;
    a_state.unhealthy.store(true, Ordering::SeqCst);
    let port = free_port();
    let proxy = start_proxy(balanced(
        port,
        &[a, b],
        json!({"algorithm": "round-robin",
            "healthCheck": {"path": "/health", "interval": "100ms", "timeout": "100ms"}}),
    ))
    .await;
    // Once a second check has arrived, the first one's answer has been taken into account.
    eventually("two health checks on a", || a_state.health_checks() >= 2).await;
    assert!(b_state.health_checks() >= 1, "every endpoint is checked");
    let names = backends_of(port, 6).await;
    assert!(
        names.iter().all(|n| n == "b"),
        "a fails its check: {names:?}"
    );
    assert_eq!(a_state.requests(), 0);

    a_state.unhealthy.store(false, Ordering::SeqCst);
    let checks = a_state.health_checks();
    eventually("two more health checks on a", || {
        a_state.health_checks() >= checks + 2
    })
    .await;
    let names = backends_of(port, 6).await;
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "a is back in the rotation: {names:?}"
    );
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn passive_health_skips_a_refusing_backend() {
    let (a, a_state) = counting_echo_backend("a").await;
    let (b, b_state) = counting_echo_backend("b").await;
    let refusing = free_port();
    let port = free_port();
    let proxy = start_proxy(balanced(
        port,
        &[refusing, a, b],
        json!({"algorithm": "round-robin"}),
    ))
    .await;
    for _ in 0..4 {
        let got = get(port, "app.test", "/").await;
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let names = backends_of(port, 8).await;
    assert!(
        names.windows(2).all(|w| w[0] != w[1]),
        "the two live backends share the requests: {names:?}"
    );
    assert_eq!(a_state.requests() + b_state.requests(), 12);
    wait_no_live(&proxy).await;
}
