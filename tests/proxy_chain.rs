//! Two proxies in one process, chained by the PROXY protocol: the outer one forwards TCP to
//! the inner one with `sendProxyProtocol: v2`, the inner one trusts it and limits each real
//! client to two connections. The inner one counts the clients behind the outer one, not the
//! outer one; and after a churn of connections ending every way through both, nothing is left:
//! no live connection in either, and the process's open file count back at its start value.
//! Its own test binary, so no other test's sockets move the file count.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use serde_json::json;
use smartproxy::CloseReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Connections in the churn, run by WORKERS tasks one after another.
const WORKERS: usize = 25;
const PER_WORKER: usize = 12;
/// Churn sources: 127.0.1.1 to 127.0.1.150, each used by exactly two connections, so the inner
/// proxy's limit of two per client never refuses one of them.
const SOURCES: usize = 150;
/// The inner proxy closes a connection that carried nothing for this long.
const INACTIVITY: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inner_proxy_limits_the_real_clients_and_the_chain_leaves_nothing_behind() {
    let echo = echo_backend().await;
    let (outer_port, inner_port) = (free_port(), free_port());
    let inner = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "proxyProtocol": {"accept": ["127.0.0.1"]},
        "maxConnectionsPerIP": 2,
        "keepAliveTreatment": "standard",
        "inactivityTimeout": INACTIVITY.as_millis() as u64,
        "routes": [{"name": "echo", "match": {"ports": inner_port},
                    "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": echo}]}}]
    }))
    .await;
    let outer = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "to-inner", "match": {"ports": outer_port},
                    "action": {"type": "forward", "targets": [
                        {"host": "127.0.0.1", "port": inner_port, "sendProxyProtocol": "v2"}]}}]
    }))
    .await;
    let fds_at_start = open_fds();

    // Every connection reaches the inner proxy from 127.0.0.1; it counts the clients.
    let seven = Ipv4Addr::new(127, 0, 0, 7);
    let eight = Ipv4Addr::new(127, 0, 0, 8);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = connect_from(seven, outer_port).await;
        assert_eq!(echo_roundtrip(&mut client, b"held").await, b"held");
        held.push(client);
    }
    let mut third = connect_from(seven, outer_port).await;
    assert_closed_unanswered(&mut third, "the third from .7").await;
    drop(third);
    wait_closed_with(&inner, CloseReason::Limit, 1).await;
    let mut other = connect_from(eight, outer_port).await;
    assert_eq!(echo_roundtrip(&mut other, b"eight").await, b"eight");
    // The held ones are still up (within the inner's inactivity limit): the refusal was the
    // limit's, and the only one, and the outer proxy refused nothing.
    for client in &mut held {
        assert_eq!(echo_roundtrip(client, b"still").await, b"still");
    }
    assert_eq!(inner.closed_with(CloseReason::Limit), 1);
    assert_eq!(outer.closed_with(CloseReason::Limit), 0);
    drop((held, other));
    wait_no_live(&outer).await;
    wait_no_live(&inner).await;

    // The churn: connections ending every way, from many clients, through both proxies.
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(async move {
                for k in 0..PER_WORKER {
                    let i = w * PER_WORKER + k;
                    let source = Ipv4Addr::new(127, 0, 1, (i % SOURCES) as u8 + 1);
                    one_connection((w + k) % 10, source, outer_port).await;
                }
            })
        })
        .collect();
    for worker in workers {
        timeout(Duration::from_secs(120), worker)
            .await
            .expect("the churn ends in time")
            .expect("churn worker");
    }
    let idle = (0..WORKERS)
        .flat_map(|w| (0..PER_WORKER).map(move |k| (w + k) % 10))
        .filter(|&kind| kind == 3)
        .count() as u64;

    wait_no_live(&outer).await;
    wait_no_live(&inner).await;
    wait_fds_back(fds_at_start, || 0).await;
    let churned = (WORKERS * PER_WORKER) as u64;
    assert_eq!(outer.total_connections(), churned + 4);
    // Each connection to the outer proxy was one to the inner proxy.
    assert_eq!(inner.total_connections(), outer.total_connections());
    assert_reasons_add_up(&outer, "outer");
    assert_reasons_add_up(&inner, "inner");
    assert_eq!(
        inner.closed_with(CloseReason::Limit),
        1,
        "no churn connection was over its limit"
    );
    assert!(inner.closed_with(CloseReason::Inactivity) >= idle);
    assert!(outer.closed_with(CloseReason::ClientReset) >= 1);
    outer.shutdown().await;
    inner.shutdown().await;
}

/// One churn connection from `source` through the outer proxy.
async fn one_connection(kind: usize, source: Ipv4Addr, port: u16) {
    let payload = pattern(10_000);
    let mut client = connect_from(source, port).await;
    match kind {
        // Resets mid-stream, after the echo has begun.
        1 | 6 => {
            client.write_all(&payload).await.expect("write");
            let mut some = [0; 100];
            let _ = timeout(PATIENCE, client.read(&mut some)).await;
            reset(client);
        }
        // Connects and leaves without a word.
        2 | 7 => {
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(client);
        }
        // Says nothing until the inner proxy closes it for inactivity.
        3 => assert_closed_unanswered(&mut client, "an idle connection").await,
        // A larger echo, written and read at once.
        9 => {
            let big = pattern(300_000);
            let (mut r, mut w) = client.split();
            let write = async {
                w.write_all(&big).await.expect("write");
                w.shutdown().await.expect("FIN");
            };
            let read = async {
                let mut got = Vec::with_capacity(big.len());
                timeout(PATIENCE, r.read_to_end(&mut got))
                    .await
                    .expect("echo in time")
                    .expect("read");
                got
            };
            let ((), got) = tokio::join!(write, read);
            assert!(
                got == big,
                "{} of {} bytes echoed intact",
                got.len(),
                big.len()
            );
        }
        // Normal: echo, then both FINs.
        _ => {
            let (got, ending) = common::pp::send_and_finish(&mut client, &payload).await;
            assert_eq!((got.len(), ending), (payload.len(), Ending::Fin));
            assert!(got == payload, "the echo arrived changed");
        }
    }
}
