//! Bodies stream through the HTTP engine without being buffered: server-sent events arrive as
//! they are written, and 100 MiB uploads and downloads pass intact with flat memory.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, channel::Channel};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const MIB: usize = 1 << 20;
const BIG: usize = 100 * MIB;

/// A backend serving `/events` (an SSE stream: one event whenever the test says, stamped when
/// written), `/download` (100 MiB), and counting any upload's bytes without keeping them.
async fn streaming_backend(
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<()>>>,
    written: mpsc::UnboundedSender<Instant>,
    uploaded: Arc<AtomicU64>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (events, written, uploaded) = (events.clone(), written.clone(), uploaded.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (events, written, uploaded) =
                    (events.clone(), written.clone(), uploaded.clone());
                async move {
                    let (mut tx, body) = Channel::<Bytes, Infallible>::new(4);
                    let response = hyper::Response::builder();
                    match req.uri().path() {
                        "/events" => {
                            tokio::spawn(async move {
                                let mut events = events.lock().await;
                                let mut n = 0;
                                while events.recv().await.is_some() {
                                    n += 1;
                                    let event = Bytes::from(format!("data: event {n}\n\n"));
                                    if tx.send(Frame::data(event)).await.is_err() {
                                        return;
                                    }
                                    let _ = written.send(Instant::now());
                                }
                            });
                            Ok::<_, Infallible>(
                                response
                                    .header("content-type", "text/event-stream")
                                    .body(body)
                                    .expect("response"),
                            )
                        }
                        "/download" => {
                            tokio::spawn(async move {
                                let chunk = Bytes::from(pattern(64 * 1024));
                                for _ in 0..BIG / chunk.len() {
                                    if tx.send(Frame::data(chunk.clone())).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            Ok(response.body(body).expect("response"))
                        }
                        _ => {
                            let mut incoming = req.into_body();
                            let mut n = 0u64;
                            while let Some(Ok(frame)) = incoming.frame().await {
                                if let Some(data) = frame.data_ref() {
                                    n += data.len() as u64;
                                }
                            }
                            uploaded.store(n, Ordering::SeqCst);
                            drop(tx);
                            Ok(response.body(body).expect("response"))
                        }
                    }
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    port
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test]
async fn events_stream_as_written_and_100_mib_pass_both_ways_with_flat_memory() {
    let (event_tx, event_rx) = mpsc::channel(1);
    let (written_tx, mut written_rx) = mpsc::unbounded_channel();
    let uploaded = Arc::new(AtomicU64::new(0));
    let backend = streaming_backend(
        Arc::new(tokio::sync::Mutex::new(event_rx)),
        written_tx,
        Arc::clone(&uploaded),
    )
    .await;
    let port = free_port();
    let proxy = start_proxy(json!({
        "bindAddress": "127.0.0.1",
        "routes": [{"name": "s", "match": {"ports": port, "domains": "s.test"},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]}}]
    }))
    .await;

    // Server-sent events: each one reaches the client while the response is still open.
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .expect("h1");
    tokio::spawn(conn);
    let request = hyper::Request::get("/events")
        .header("host", "s.test")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let mut body = response.into_body();
    let mut delays = Vec::new();
    for n in 1..=5 {
        event_tx.send(()).await.expect("trigger");
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("event in time");
        let arrived = Instant::now();
        let data = frame
            .expect("frame")
            .expect("ok")
            .into_data()
            .expect("data");
        assert_eq!(data, Bytes::from(format!("data: event {n}\n\n")));
        let written = written_rx.recv().await.expect("stamp");
        delays.push(arrived.saturating_duration_since(written));
    }
    delays.sort();
    assert!(
        delays[2] < Duration::from_millis(50),
        "median event delay {:?} (all {delays:?})",
        delays[2]
    );
    drop(body);
    drop(sender);

    let before = peak_rss_kib();
    // 100 MiB down.
    let mut client = common::http::h1_client(port).await;
    let response = client
        .send_request(common::http::request("GET", "s.test", "/download", b""))
        .await
        .expect("response");
    let mut body = response.into_body();
    let (mut received, mut expected) = (0usize, pattern(64 * 1024));
    let mut offset = 0;
    while let Some(frame) = body.frame().await {
        let data = frame.expect("frame").into_data().unwrap_or_default();
        for (i, byte) in data.iter().enumerate() {
            if *byte != expected[(offset + i) % expected.len()] {
                panic!("byte {} differs", received + i);
            }
        }
        offset = (offset + data.len()) % expected.len();
        received += data.len();
    }
    expected.clear();
    assert_eq!(received, BIG);

    // 100 MiB up, streamed from a channel.
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Channel<Bytes, Infallible>>(TokioIo::new(
            stream,
        ))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let (mut tx, upload) = Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![5u8; 64 * 1024]);
        for _ in 0..BIG / chunk.len() {
            if tx.send(Frame::data(chunk.clone())).await.is_err() {
                return;
            }
        }
    });
    let request = hyper::Request::post("/upload")
        .header("host", "s.test")
        .body(upload)
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(uploaded.load(Ordering::SeqCst), BIG as u64);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "peak RSS grew by {grown} KiB while 200 MiB passed"
    );
    drop(sender);
    drop(client);
    wait_no_live(&proxy).await;
}
