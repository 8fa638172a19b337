//! The end-to-end harness: an in-process proxy from a JSON config, real loopback backends and
//! clients, and the checks every lifecycle test needs (live count, close reasons, open files).
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod http;
pub mod pp;
pub mod tls;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use smartproxy::{CloseReason, Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// Upper bound for any wait in a test; generous because CI shares two cores.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A loopback port that is free right now.
pub fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// `n` consecutive ports free on 127.0.0.1 and 127.0.0.2, below the ephemeral range (so busy
/// outgoing connections cannot crowd them out).
pub fn free_port_range(n: u16) -> u16 {
    let seed = std::process::id() as usize
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as usize);
    for attempt in 0..500usize {
        let first = 10_000 + ((seed + attempt * 7_919) % 20_000) as u16;
        let all_free = (first..first + n).all(|p| {
            StdListener::bind(("127.0.0.1", p)).is_ok()
                && StdListener::bind(("127.0.0.2", p)).is_ok()
        });
        if all_free {
            return first;
        }
    }
    panic!("no range of {n} free ports found");
}

/// `base` with the top-level keys of `extra` added (replacing those it has already).
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(extra)) = (base.as_object_mut(), extra) {
        map.extend(extra);
    }
    base
}

/// A config with loopback binding and one forward route, merged with `globals`.
pub fn one_route(port: u16, backend_port: u16, globals: Value) -> Value {
    let config = json!({
        "bindAddress": "127.0.0.1",
        "routes": [{
            "name": "test",
            "match": {"ports": port},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend_port}]}
        }]
    });
    merged(config, globals)
}

pub async fn start_proxy(config: Value) -> Proxy {
    let (config, _warnings) = Config::from_value(&config).expect("valid test config");
    Proxy::start(config).await.expect("proxy starts")
}

/// A backend on a free loopback port that runs `handler` for every connection.
pub async fn backend<F, Fut>(handler: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = listener.local_addr().expect("backend addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handler(stream));
        }
    });
    port
}

/// As `backend`, and counts the connections it accepts.
pub async fn counting_backend<F, Fut>(handler: F) -> (u16, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let port = backend(move |stream| {
        count.fetch_add(1, Ordering::SeqCst);
        handler(stream)
    })
    .await;
    (port, accepted)
}

/// Echoes one connection until the client's FIN, then sends its own.
pub async fn echo_connection(mut stream: TcpStream) {
    let (mut r, mut w) = stream.split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// Echoes until the client's FIN, then sends its own.
pub async fn echo_backend() -> u16 {
    backend(echo_connection).await
}

/// Writes `chunks` copies of a 64 KiB pattern as fast as the peer takes them, then closes.
pub async fn streaming_backend(chunks: usize) -> u16 {
    backend(move |mut stream| async move {
        let chunk = pattern(64 * 1024);
        for _ in 0..chunks {
            if stream.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// Accepts and holds each connection for 30 s without reading or writing a byte.
pub async fn silent_backend() -> u16 {
    backend(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await
}

/// Writes as fast as the stream takes bytes until it stops taking them for `stall`, or `limit`
/// bytes or 3 s have gone by. Returns the bytes written and whether the writer was held back.
pub async fn write_until_stalled(
    stream: &TcpStream,
    stall: Duration,
    limit: usize,
) -> (usize, bool) {
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && written < limit {
        match timeout(stall, stream.writable()).await {
            Err(_) => return (written, true),
            Ok(ready) => ready.expect("writable"),
        }
        match stream.try_write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write failed: {e}"),
        }
    }
    (written, false)
}

pub async fn connect(port: u16) -> TcpStream {
    timeout(PATIENCE, TcpStream::connect(("127.0.0.1", port)))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `source` (port chosen by the
/// kernel).
pub async fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind the client's source address");
    let stream = timeout(PATIENCE, socket.connect(addr(port)))
        .await
        .expect("connect in time")
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes `message`, reads the same number of bytes back.
pub async fn echo_roundtrip<S>(stream: &mut S, message: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(message).await.expect("write");
    stream.flush().await.expect("flush");
    let mut back = vec![0; message.len()];
    timeout(PATIENCE, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read echo");
    back
}

/// Closes with RST instead of FIN.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("set linger");
    drop(stream);
}

/// How a read-until-close ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    Fin,
    Reset,
}

/// Reads until EOF or error; returns the bytes and how the stream ended.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, Ending) {
    let mut data = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!("stream neither closed nor sent data within {PATIENCE:?}"),
            Ok(Ok(0)) => return (data, Ending::Fin),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (data, Ending::Reset);
            }
            Ok(Err(e)) => panic!("unexpected read error: {e}"),
        }
    }
}

/// The proxy ends `stream` with a FIN and not one byte.
pub async fn assert_closed_unanswered(stream: &mut TcpStream, what: &str) {
    let (data, ending) = read_to_end(stream).await;
    assert!(
        data.is_empty(),
        "{what}: the proxy sent {:?}",
        String::from_utf8_lossy(&data)
    );
    assert_eq!(ending, Ending::Fin, "{what}");
}

/// Waits for the stream to end and returns when it did.
pub async fn wait_closed(stream: &mut TcpStream) -> (Instant, Ending) {
    let (_, ending) = read_to_end(stream).await;
    (Instant::now(), ending)
}

/// Polls `cond` until it holds or PATIENCE passes.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_no_live(proxy: &Proxy) {
    eventually("live connections back to 0", || {
        proxy.live_connections() == 0
    })
    .await;
}

pub async fn wait_closed_with(proxy: &Proxy, reason: CloseReason, count: u64) {
    eventually(
        &format!("{count} connection(s) closed with {reason}"),
        || proxy.closed_with(reason) >= count,
    )
    .await;
}

/// This process's open file descriptors.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Waits until this process has no more open files than `at_start` (its count from before
/// the test's connections) and `allowed()`.
pub async fn wait_fds_back(at_start: usize, allowed: impl Fn() -> usize) {
    eventually("open files back to their start value", || {
        open_fds() <= at_start + allowed()
    })
    .await;
}

/// Deterministic bytes for integrity checks.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Runs `connections` client connections, `concurrency` at a time (`connection(i)` for the
/// i-th), then checks that nothing is left (live count 0, the open file count back at its value
/// from before the first one) and that each connection was counted under exactly one reason.
pub async fn churn_leaves_nothing<F, Fut>(
    proxy: &Proxy,
    connections: usize,
    concurrency: usize,
    connection: F,
) where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    churn_leaves_only(proxy, connections, concurrency, || 0, connection).await;
}

/// As `churn_leaves_nothing`, but `allowed()` more files may stay open (idle pooled backend
/// connections, which may outlive the clients that opened them).
pub async fn churn_leaves_only<F, Fut>(
    proxy: &Proxy,
    connections: usize,
    concurrency: usize,
    allowed: impl Fn() -> usize,
    connection: F,
) where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fds_at_start = open_fds();
    for batch in 0..connections / concurrency {
        let tasks: Vec<_> = (0..concurrency)
            .map(|i| tokio::spawn(connection(batch * concurrency + i)))
            .collect();
        for task in tasks {
            task.await.expect("connection task");
        }
    }
    wait_no_live(proxy).await;
    wait_fds_back(fds_at_start, allowed).await;
    assert_eq!(proxy.total_connections(), connections as u64);
    assert_reasons_add_up(proxy, "the churn");
}

/// Every connection `proxy` has closed was counted under exactly one close reason.
pub fn assert_reasons_add_up(proxy: &Proxy, which: &str) {
    let counted: u64 = CloseReason::ALL.iter().map(|&r| proxy.closed_with(r)).sum();
    assert_eq!(
        counted,
        proxy.total_connections(),
        "{which}: every connection has exactly one close reason"
    );
}
