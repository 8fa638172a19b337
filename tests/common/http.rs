//! HTTP peers for the end-to-end tests: a hyper backend that reports what it received, and
//! hyper clients over plain TCP (HTTP/1.1 or HTTP/2 with prior knowledge).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// What an echoing backend saw; its JSON body.
pub type Seen = Value;

/// A backend on a free loopback port serving HTTP/1.1 and HTTP/2 (prior knowledge) that
/// answers every request with JSON: its `name`, the method, URI, version, request headers
/// and the body length it read. Returns the port and a request counter.
pub async fn echo_http_backend(name: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(describe(name, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, count)
}

/// `?delay=MS` holds the answer back that long.
async fn describe(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let delay = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("delay=")))
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
        .collect();
    let seen = json!({
        "backend": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "bodyLen": len,
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-backend", name)
        .body(Full::new(Bytes::from(seen.to_string())))
        .expect("response")
}

/// A response read to the end.
pub struct Got {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client connection to the proxy on 127.0.0.1:`port`.
pub async fn h1_client(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender
}

/// An HTTP/2 (prior knowledge) client connection to the proxy on 127.0.0.1:`port`.
pub async fn h2_client(port: u16) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

pub fn request(method: &str, host: &str, path: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::from_static(body)))
        .expect("request")
}

pub async fn read(response: Response<Incoming>) -> Got {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// One GET over a new HTTP/1.1 connection.
pub async fn get(port: u16, host: &str, path: &str) -> Got {
    let mut client = h1_client(port).await;
    let response = client
        .send_request(request("GET", host, path, b""))
        .await
        .expect("response");
    read(response).await
}

/// Counters and switches of a backend made by `counting_echo_backend` (or
/// `tls::tls_echo_http_backend`).
#[derive(Default)]
pub struct EchoState {
    /// Connections accepted.
    pub accepts: AtomicUsize,
    /// Requests answered, health checks not counted.
    pub requests: AtomicUsize,
    /// `GET /health` requests.
    pub health_checks: AtomicUsize,
    /// While set, `/health` answers 500.
    pub unhealthy: AtomicBool,
}

impl EchoState {
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.health_checks.load(Ordering::SeqCst)
    }
}

/// As `echo_http_backend`, and besides: counts accepted connections, answers `/health` with
/// 200 (500 while `unhealthy` is set), and answers any path under `/echo` with the request body
/// itself (header `x-version`: the HTTP version it arrived in).
pub async fn counting_echo_backend(name: &'static str) -> (u16, Arc<EchoState>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(EchoState::default());
    let shared = Arc::clone(&state);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            shared.accepts.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_echo_connection(
                stream,
                name,
                Arc::clone(&shared),
                None,
            ));
        }
    });
    (port, state)
}

/// Serves one connection (HTTP/1.1 or HTTP/2, told apart by its first bytes) the way
/// `counting_echo_backend` answers; with `sni`, every response says it in `x-sni`.
pub async fn serve_echo_connection<I>(
    io: I,
    name: &'static str,
    state: Arc<EchoState>,
    sni: Option<String>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (state, sni) = (Arc::clone(&state), sni.clone());
        async move {
            let mut response = answer(name, &state, req).await;
            if let Some(sni) = sni.and_then(|s| s.parse().ok()) {
                response.headers_mut().insert("x-sni", sni);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}

async fn answer(name: &str, state: &EchoState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
        let status = match state.unhealthy.load(Ordering::SeqCst) {
            true => 500,
            false => 200,
        };
        return Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"health\n")))
            .expect("response");
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    if path.starts_with("/echo") {
        let version = format!("{:?}", req.version());
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Response::builder()
            .header("x-backend", name)
            .header("x-version", version)
            .body(Full::new(body))
            .expect("response");
    }
    describe(name, req).await
}

/// An HTTP/1.1 client connection to the proxy on 127.0.0.1:`port`, from the local address
/// `from` (any address of 127.0.0.0/8).
pub async fn h1_client_from(
    from: std::net::Ipv4Addr,
    port: u16,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind the client's address");
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}
