//! PROXY protocol peers for the end-to-end tests: clients that write a header first, headers
//! written out by hand (so the proxy is checked against the protocol, not only against its own
//! encoder), and backends that read the header they are sent.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use smartproxy::proxy_protocol::{self, Addresses, MAX_HEADER_LEN, Parse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::{Ending, PATIENCE};

/// How a v2 header begins.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A connection from 127.0.0.1 that has written `header`.
pub async fn connect_with_header(port: u16, header: &[u8]) -> TcpStream {
    let mut stream = super::connect_from(Ipv4Addr::LOCALHOST, port).await;
    stream.write_all(header).await.expect("write the header");
    stream
}

/// Writes `bytes`, sends FIN, and reads until the other side closes.
pub async fn send_and_finish(stream: &mut TcpStream, bytes: &[u8]) -> (Vec<u8>, Ending) {
    stream.write_all(bytes).await.expect("write");
    stream.shutdown().await.expect("FIN");
    super::read_to_end(stream).await
}

/// A v2 PROXY header over TCP/IPv4, built byte by byte from the protocol's definition.
pub fn v2_tcp4(source: SocketAddrV4, destination: SocketAddrV4) -> Vec<u8> {
    v2_tcp4_with_tlvs(source, destination, &[])
}

/// As [`v2_tcp4`], with `tlvs` (already encoded) after the addresses.
pub fn v2_tcp4_with_tlvs(source: SocketAddrV4, destination: SocketAddrV4, tlvs: &[u8]) -> Vec<u8> {
    let ips = (&source.ip().octets()[..], &destination.ip().octets()[..]);
    v2_proxy(0x11, ips, (source.port(), destination.port()), tlvs) // AF_INET, STREAM
}

/// A v2 PROXY header over TCP/IPv6, built byte by byte.
pub fn v2_tcp6(source: SocketAddrV6, destination: SocketAddrV6) -> Vec<u8> {
    let ips = (&source.ip().octets()[..], &destination.ip().octets()[..]);
    v2_proxy(0x21, ips, (source.port(), destination.port()), &[]) // AF_INET6, STREAM
}

/// A v2 header with command PROXY: `family` (address family and transport), the source and
/// destination addresses and ports, then `tlvs`.
fn v2_proxy(family: u8, ips: (&[u8], &[u8]), ports: (u16, u16), tlvs: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, command PROXY
    header.push(family);
    let len = u16::try_from(ips.0.len() + ips.1.len() + 4 + tlvs.len()).expect("short TLVs");
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(ips.0);
    header.extend_from_slice(ips.1);
    header.extend_from_slice(&ports.0.to_be_bytes());
    header.extend_from_slice(&ports.1.to_be_bytes());
    header.extend_from_slice(tlvs);
    header
}

/// A v2 LOCAL header (what a load balancer's own health checks send), built byte by byte.
pub fn v2_local() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]); // LOCAL, AF_UNSPEC, no addresses
    header
}

pub fn v4(text: &str) -> SocketAddrV4 {
    text.parse().expect("an IPv4 socket address")
}

pub fn v6(text: &str) -> SocketAddrV6 {
    text.parse().expect("an IPv6 socket address")
}

pub fn sa(text: &str) -> SocketAddr {
    text.parse().expect("a socket address")
}

/// Splits `bytes` into the PROXY header at their start (its addresses; `None` for LOCAL or
/// UNKNOWN) and what follows. Panics, showing the bytes, when they do not start with one.
pub fn split_header(bytes: &[u8]) -> (Option<Addresses>, &[u8], &[u8]) {
    match proxy_protocol::parse(bytes) {
        Parse::Complete { len, addresses } => (addresses, &bytes[..len], &bytes[len..]),
        other => panic!(
            "no PROXY header at the start ({other:?}): {:?}",
            bytes.escape_ascii().to_string()
        ),
    }
}

/// Reads a PROXY header off `stream` one byte at a time, so that nothing after it is consumed.
/// Returns its bytes and addresses, or what was wrong.
pub async fn read_header_exactly(
    stream: &mut TcpStream,
) -> Result<(Vec<u8>, Option<Addresses>), String> {
    let mut raw = Vec::new();
    loop {
        match proxy_protocol::parse(&raw) {
            Parse::Complete { len, addresses } if len == raw.len() => return Ok((raw, addresses)),
            Parse::Incomplete if raw.len() <= MAX_HEADER_LEN => {}
            other => {
                return Err(format!(
                    "not a PROXY header ({other:?}): {:?}",
                    raw.escape_ascii().to_string()
                ));
            }
        }
        let mut byte = [0u8; 1];
        match timeout(PATIENCE, stream.read(&mut byte)).await {
            Ok(Ok(1)) => raw.push(byte[0]),
            Ok(Ok(_)) => return Err(format!("closed after {} header bytes", raw.len())),
            Ok(Err(e)) => return Err(format!("read error: {e}")),
            Err(_) => return Err("no header in time".into()),
        }
    }
}

/// A backend that writes `tag` at once, then echoes until the client's FIN and sends its own.
pub async fn tag_echo_backend(tag: &'static str) -> u16 {
    super::backend(move |mut stream| async move {
        if stream.write_all(tag.as_bytes()).await.is_err() {
            return;
        }
        let (mut r, mut w) = stream.split();
        let _ = timeout(PATIENCE, tokio::io::copy(&mut r, &mut w)).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// A backend that records every byte of each connection until the client's FIN, then closes
/// with its own FIN; the recording of each connection can be taken in the order they end.
pub struct Recorder {
    pub port: u16,
    accepts: Arc<AtomicUsize>,
    received: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let (tx, received) = mpsc::unbounded_channel();
        let (port, accepts) = super::counting_backend(move |mut stream| {
            let tx = tx.clone();
            async move {
                let mut all = Vec::new();
                let _ = timeout(PATIENCE, stream.read_to_end(&mut all)).await;
                let _ = tx.send(all);
                let _ = stream.shutdown().await;
            }
        })
        .await;
        Recorder {
            port,
            accepts,
            received,
        }
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Every byte one connection carried (the next to end).
    pub async fn next(&mut self) -> Vec<u8> {
        timeout(PATIENCE, self.received.recv())
            .await
            .expect("a backend connection ended in time")
            .expect("recorder running")
    }
}

/// What a PROXY-reading HTTP backend saw.
#[derive(Default)]
pub struct PpHttpState {
    /// Connections accepted.
    pub accepts: AtomicUsize,
    /// The header of every `GET /health`, in arrival order.
    pub health: Mutex<Vec<Vec<u8>>>,
    /// Connections that did not start with a PROXY header, and why.
    pub bad: Mutex<Vec<String>>,
}

impl PpHttpState {
    pub fn health(&self) -> Vec<Vec<u8>> {
        self.health.lock().expect("lock").clone()
    }

    pub fn bad(&self) -> Vec<String> {
        self.bad.lock().expect("lock").clone()
    }
}

fn describe(addresses: Option<Addresses>) -> (serde_json::Value, serde_json::Value) {
    match addresses {
        Some(a) => (
            json!(a.source.to_string()),
            json!(a.destination.to_string()),
        ),
        None => (json!("local"), json!("local")),
    }
}

/// An HTTP/1.1 backend whose connections must start with a PROXY header (read here with
/// `proxy_protocol::parse`, one byte at a time). Answers `/health` with 200 (recording the
/// header) and any other request with JSON: `conn` (the connection's number, from 0),
/// `source` and `destination` from its header, `xff` (X-Forwarded-For) and `path`.
pub async fn pp_http_backend() -> (u16, Arc<PpHttpState>) {
    let state = Arc::new(PpHttpState::default());
    let shared = Arc::clone(&state);
    let port = super::backend(move |mut stream| {
        let conn = shared.accepts.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&shared);
        async move {
            let (raw, addresses) = match read_header_exactly(&mut stream).await {
                Ok(header) => header,
                Err(why) => {
                    state.bad.lock().expect("lock").push(why);
                    return;
                }
            };
            let (source, destination) = describe(addresses);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let path = req.uri().path().to_string();
                let body = if path == "/health" {
                    state.health.lock().expect("lock").push(raw.clone());
                    "ok".to_string()
                } else {
                    let xff = req
                        .headers()
                        .get("x-forwarded-for")
                        .map(|v| v.to_str().unwrap_or("?").to_string());
                    json!({"conn": conn, "source": source, "destination": destination,
                           "xff": xff, "path": path})
                    .to_string()
                };
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    (port, state)
}

/// A WebSocket backend whose connections must start with a PROXY header: after the handshake
/// it sends one text message, `"<source> <destination>"` from the header (`"local local"` for
/// LOCAL/UNKNOWN), then echoes data messages until the close.
pub async fn pp_ws_backend() -> u16 {
    super::backend(|mut stream| async move {
        let Ok((_, addresses)) = read_header_exactly(&mut stream).await else {
            return;
        };
        let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
            return;
        };
        let (source, destination) = describe(addresses);
        let hello = format!(
            "{} {}",
            source.as_str().unwrap_or("?"),
            destination.as_str().unwrap_or("?")
        );
        if ws.send(Message::text(hello)).await.is_err() {
            return;
        }
        // Bounded: a test exchanges a few messages at most.
        for _ in 0..100 {
            let msg = match timeout(PATIENCE, ws.next()).await {
                Ok(Some(Ok(msg))) => msg,
                _ => break,
            };
            let data = matches!(msg, Message::Text(_) | Message::Binary(_));
            if matches!(msg, Message::Close(_)) || (data && ws.send(msg).await.is_err()) {
                break;
            }
        }
    })
    .await
}

/// Writes `bytes` one byte per write, with a short pause after each, so that each byte leaves
/// in a segment of its own.
pub async fn write_byte_by_byte(stream: &mut TcpStream, bytes: &[u8]) {
    for &b in bytes {
        stream.write_all(&[b]).await.expect("write a byte");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
