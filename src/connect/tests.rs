use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::AtomicU16;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::*;
use crate::config::TargetProtocol;
use crate::tls::certs::tests::TestCa;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const WAIT: Duration = Duration::from_secs(5);

fn target(port: u16) -> Target {
    Target {
        hosts: vec!["127.0.0.1".into()],
        port: TargetPort::Fixed(port),
        protocol: TargetProtocol::H1,
        send_proxy_protocol: None,
    }
}

fn lb(algorithm: Algorithm) -> LoadBalancing {
    LoadBalancing {
        algorithm,
        health_check: None,
    }
}

fn checked(path: &str, interval_ms: u64, timeout_ms: u64) -> LoadBalancing {
    LoadBalancing {
        algorithm: Algorithm::RoundRobin,
        health_check: Some(HealthCheck {
            path: path.into(),
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
        }),
    }
}

fn endpoints(ports: &[u16], algorithm: Algorithm) -> Endpoints {
    let targets: Vec<Target> = ports.iter().map(|&p| target(p)).collect();
    Endpoints::new(&targets, &lb(algorithm))
}

fn is_down(endpoints: &Endpoints, index: usize) -> bool {
    endpoints.inner.slots[index].down.load(Ordering::Relaxed)
}

fn sorted(plan: &[usize]) -> Vec<usize> {
    let mut plan = plan.to_vec();
    plan.sort_unstable();
    plan
}

/// A loopback port that refuses connections: bound once, then released.
async fn refusing_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request as the test backend saw it: path, Host, Connection.
type Seen = (String, Option<String>, Option<String>);

/// An HTTP/1 backend answering every request with `status`, which the test may change.
struct Backend {
    port: u16,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let entry = (
            req.uri().path().to_string(),
            header(http::header::HOST),
            header(http::header::CONNECTION),
        );
        seen.lock().expect("seen").push(entry);
        let response = Response::builder()
            .status(status.load(Ordering::Relaxed))
            .body(Empty::<Bytes>::new())
            .expect("response");
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

async fn http_backend(status: u16, tls: Option<Arc<ServerConfig>>) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let status = Arc::new(AtomicU16::new(status));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (st, se) = (Arc::clone(&status), Arc::clone(&seen));
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (st, se, tls) = (Arc::clone(&st), Arc::clone(&se), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => serve_http(tcp, st, se).await,
                    Some(config) => {
                        if let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                            serve_http(tls, st, se).await;
                        }
                    }
                }
            });
        }
    });
    Backend {
        port,
        status,
        seen,
        task,
    }
}

#[test]
fn round_robin_rotates_the_start() {
    let e = endpoints(&[1, 2, 3], Algorithm::RoundRobin);
    let plans: Vec<Vec<usize>> = (0..6).map(|_| e.plan(CLIENT)).collect();
    for plan in &plans {
        assert_eq!(sorted(plan), [0, 1, 2], "each endpoint once: {plan:?}");
    }
    let firsts: Vec<usize> = plans.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    assert_eq!(plans[1], [1, 2, 0]);
}

#[test]
fn least_connections_prefers_fewer_live_leases() {
    let e = endpoints(&[1, 2, 3], Algorithm::LeastConnections);
    let a = e.lease(0).expect("lease");
    let b = e.lease(0).expect("lease");
    let _c = e.lease(1).expect("lease");
    for _ in 0..4 {
        assert_eq!(e.plan(CLIENT), [2, 1, 0]);
    }
    drop((a, b));
    // 0 and 2 tie at no lease and take turns; 1 holds one and comes last.
    let mut firsts = BTreeSet::new();
    for _ in 0..4 {
        let plan = e.plan(CLIENT);
        assert_eq!(plan[2], 1, "{plan:?}");
        firsts.insert(plan[0]);
    }
    assert_eq!(firsts, BTreeSet::from([0, 2]));
    assert!(e.lease(3).is_none());
}

#[tokio::test]
async fn least_connections_counts_connections_until_their_lease_drops() {
    let one = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let two = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let ports = [one.local_addr(), two.local_addr()].map(|a| a.expect("address").port());
    let e = endpoints(&ports, Algorithm::LeastConnections);
    let first = e.connect(0, CLIENT, WAIT, None).await.expect("connects");
    // The first endpoint is busy as long as its connection lives.
    for _ in 0..3 {
        let next = e.connect(0, CLIENT, WAIT, None).await.expect("connects");
        assert_ne!(next.lease.index(), first.lease.index());
    }
    drop(first);
    let mut used = BTreeSet::new();
    for _ in 0..4 {
        used.insert(
            e.connect(0, CLIENT, WAIT, None)
                .await
                .expect("connects")
                .lease
                .index(),
        );
    }
    assert_eq!(used, BTreeSet::from([0, 1]));
}

#[test]
fn ip_hash_is_stable_per_client_and_spreads_clients() {
    let e = endpoints(&[1, 2, 3], Algorithm::IpHash);
    let mut per_endpoint = [0; 3];
    for n in 0..=255u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
        let plan = e.plan(ip);
        assert_eq!(sorted(&plan), [0, 1, 2]);
        for _ in 0..3 {
            assert_eq!(e.plan(ip), plan, "same client, same order");
        }
        per_endpoint[plan[0]] += 1;
    }
    assert!(per_endpoint.iter().all(|&n| n > 40), "{per_endpoint:?}");
    // An IPv4 client seen as IPv4-mapped IPv6 is the same client.
    let v4 = Ipv4Addr::new(10, 0, 0, 7);
    assert_eq!(
        e.plan(IpAddr::V6(v4.to_ipv6_mapped())),
        e.plan(IpAddr::V4(v4))
    );
    let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
    assert_eq!(e.plan(v6), e.plan(v6));
}

#[test]
fn ip_hash_moves_clients_off_an_endpoint_that_failed() {
    let e = endpoints(&[1, 2, 3], Algorithm::IpHash);
    e.report_connect(1, false);
    for n in 0..=255u8 {
        let plan = e.plan(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)));
        assert_eq!(plan[2], 1, "{plan:?}");
    }
}

#[test]
fn no_endpoints_no_plan() {
    let e = endpoints(&[], Algorithm::RoundRobin);
    assert!(e.plan(CLIENT).is_empty());
    assert_eq!(e.len(), 0);
    assert!(e.get(0).is_none());
}

#[tokio::test]
async fn connect_fails_over_to_the_next_endpoint() {
    let live = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let live_port = live.local_addr().expect("address").port();
    let e = endpoints(&[refusing_port().await, live_port], Algorithm::RoundRobin);
    let connected = e.connect(0, CLIENT, WAIT, None).await.expect("connects");
    assert_eq!(connected.lease.index(), 1);
    assert_eq!(connected.lease.port_for(0), live_port);
    let (_accepted, from) = live.accept().await.expect("accept");
    assert_eq!(
        Some(from),
        connected.stream.local_addr().ok(),
        "the connection reached the live endpoint"
    );
    // The refusing endpoint is now in cooldown: tried last.
    for _ in 0..3 {
        assert_eq!(e.plan(CLIENT), [1, 0]);
    }
}

#[tokio::test]
async fn connect_fails_after_trying_each_endpoint_once() {
    let e = endpoints(
        &[refusing_port().await, refusing_port().await],
        Algorithm::RoundRobin,
    );
    let failed = e.connect(0, CLIENT, WAIT, None).await.err().expect("fails");
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.last_error.kind(), io::ErrorKind::ConnectionRefused);
    // All in cooldown: still tried, not refused at once.
    let failed = e.connect(0, CLIENT, WAIT, None).await.err().expect("fails");
    assert_eq!(failed.attempts, 2);
}

#[tokio::test]
async fn passive_cooldown_puts_a_failed_endpoint_last_until_it_ends() {
    let targets = [target(1), target(2), target(3)];
    let cooldown = Duration::from_millis(500);
    let e = Endpoints::with_cooldown(&targets, &lb(Algorithm::RoundRobin), cooldown);
    e.report_connect(1, false);
    for _ in 0..6 {
        let plan = e.plan(CLIENT);
        assert_eq!(plan.last(), Some(&1), "{plan:?}");
    }
    tokio::time::sleep(cooldown + Duration::from_millis(200)).await;
    let firsts: BTreeSet<usize> = (0..3).map(|_| e.plan(CLIENT)[0]).collect();
    assert_eq!(firsts, BTreeSet::from([0, 1, 2]), "back after the cooldown");

    // A successful connect ends the cooldown at once.
    e.report_connect(2, false);
    assert_eq!(e.plan(CLIENT).last(), Some(&2));
    e.report_connect(2, true);
    let firsts: BTreeSet<usize> = (0..3).map(|_| e.plan(CLIENT)[0]).collect();
    assert_eq!(firsts, BTreeSet::from([0, 1, 2]));
}

#[tokio::test]
async fn active_check_follows_the_backend_status() {
    let backend = http_backend(500, None).await;
    let e = Endpoints::new(&[target(backend.port)], &checked("/healthz", 50, 2000));
    let stop = CancellationToken::new();
    let task = e.start_health_checks(None, stop.clone()).expect("a task");
    wait_until("down on 500", || is_down(&e, 0)).await;
    backend.status.store(200, Ordering::Relaxed);
    wait_until("up on 200", || !is_down(&e, 0)).await;
    backend.status.store(404, Ordering::Relaxed);
    wait_until("down on 404", || is_down(&e, 0)).await;
    backend.status.store(302, Ordering::Relaxed);
    wait_until("up on 302", || !is_down(&e, 0)).await;

    let seen = backend.seen.lock().expect("seen").first().cloned();
    let expected = (
        "/healthz".into(),
        Some("127.0.0.1".into()),
        Some("close".into()),
    );
    assert_eq!(seen, Some(expected));

    stop.cancel();
    let ended = tokio::time::timeout(WAIT, task).await;
    assert!(matches!(ended, Ok(Ok(()))), "the task ends on cancel");
}

#[tokio::test]
async fn active_check_puts_a_down_endpoint_last() {
    let backend = http_backend(200, None).await;
    let refusing = refusing_port().await;
    let e = Endpoints::new(
        &[target(refusing), target(backend.port)],
        &checked("/", 50, 2000),
    );
    let stop = CancellationToken::new();
    let _task = e.start_health_checks(None, stop.clone()).expect("a task");
    wait_until("down when refused", || is_down(&e, 0)).await;
    for _ in 0..4 {
        assert_eq!(e.plan(CLIENT), [1, 0]);
    }
    assert!(!is_down(&e, 1));
    stop.cancel();
}

#[tokio::test]
async fn active_check_times_out_a_silent_backend() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("address").port();
    // Accepts, then never answers.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let e = Endpoints::new(&[target(port)], &checked("/", 50, 100));
    let stop = CancellationToken::new();
    let _task = e.start_health_checks(None, stop.clone()).expect("a task");
    wait_until("down on timeout", || is_down(&e, 0)).await;
    stop.cancel();
    holder.abort();
}

#[tokio::test]
async fn active_check_over_tls_uses_the_endpoint_host_as_server_name() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["127.0.0.1"]);
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let server =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
    let backend = http_backend(503, Some(Arc::new(server))).await;
    let e = Endpoints::new(&[target(backend.port)], &checked("/up", 50, 2000));
    let connector = TlsConnector::from(ca.client(rustls::ALL_VERSIONS));
    let stop = CancellationToken::new();
    let _task = e
        .start_health_checks(Some(connector), stop.clone())
        .expect("a task");
    wait_until("a check over TLS", || {
        !backend.seen.lock().expect("seen").is_empty()
    })
    .await;
    wait_until("down on 503", || is_down(&e, 0)).await;
    backend.status.store(204, Ordering::Relaxed);
    wait_until("up on 204", || !is_down(&e, 0)).await;
    stop.cancel();
}

#[tokio::test]
async fn no_active_check_without_health_check_or_for_preserve() {
    let e = endpoints(&[1], Algorithm::RoundRobin);
    assert!(
        e.start_health_checks(None, CancellationToken::new())
            .is_none()
    );

    let preserve = Target {
        port: TargetPort::Preserve,
        ..target(0)
    };
    let e = Endpoints::new(&[preserve], &checked("/", 20, 100));
    let stop = CancellationToken::new();
    let _task = e.start_health_checks(None, stop.clone()).expect("a task");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !is_down(&e, 0),
        "a preserve endpoint is left to passive health"
    );
    stop.cancel();
}

#[tokio::test]
async fn check_task_ends_when_the_endpoints_are_dropped() {
    let e = Endpoints::new(&[target(refusing_port().await)], &checked("/", 20, 100));
    let task = e
        .start_health_checks(None, CancellationToken::new())
        .expect("a task");
    drop(e);
    let ended = tokio::time::timeout(WAIT, task).await;
    assert!(matches!(ended, Ok(Ok(()))));
}
