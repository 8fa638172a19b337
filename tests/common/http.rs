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

    /// The value of `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header value"))
    }
}

/// An HTTP/1.1 client over an already connected `stream` (that may have written a header).
pub async fn h1_over(stream: TcpStream) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn.with_upgrades());
    sender
}

/// An HTTP/2 (prior knowledge) client over an already connected `stream`.
pub async fn h2_over(stream: TcpStream) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 client connection to the proxy on 127.0.0.1:`port`.
pub async fn h1_client(port: u16) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    h1_over(loopback(port).await).await
}

/// An HTTP/2 (prior knowledge) client connection to the proxy on 127.0.0.1:`port`.
pub async fn h2_client(port: u16) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    h2_over(loopback(port).await).await
}

async fn loopback(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
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

/// A response read off a raw connection: status, headers in arrival order (names lowercase),
/// and the body with its framing removed.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Parses one complete response from the start of `data`; `None` until it is complete (or,
/// for a body framed by the close, until `closed`). Returns the response and the bytes it used.
pub fn parse_response(data: &[u8], closed: bool) -> Option<(RawResponse, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(data).expect("a valid response head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return None,
    };
    let status = parsed.code.expect("status");
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let rest = &data[head_len..];
    let (body, used) = if (100..200).contains(&status) || status == 204 || status == 304 {
        (Vec::new(), 0)
    } else if find("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = at + rest.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[at..line_end]).expect("chunk size");
            let size_text = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16).expect("hex chunk size");
            at = line_end + 2;
            if size == 0 {
                // No trailers expected: the final CRLF follows.
                rest.get(at..at + 2)?;
                at += 2;
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size;
            rest.get(at..at + 2)?;
            at += 2;
        }
        (body, at)
    } else if let Some(len) = find("content-length") {
        let len: usize = len.trim().parse().expect("numeric content-length");
        (rest.get(..len)?.to_vec(), len)
    } else if closed {
        (rest.to_vec(), rest.len())
    } else {
        return None;
    };
    Some((
        RawResponse {
            status,
            headers,
            body,
        },
        head_len + used,
    ))
}

/// An HTTP/1.1 client on a plain TCP stream, for requests exactly as written.
pub struct RawConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(port: u16) -> RawConn {
        RawConn::over(super::connect(port).await)
    }

    /// A client on an already connected `stream`.
    pub fn over(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("write request");
    }

    /// The next response; panics if the stream ends before one is complete.
    pub async fn response(&mut self) -> RawResponse {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0; 16 * 1024];
        loop {
            if let Some((response, used)) = parse_response(&self.buf, false) {
                self.buf.drain(..used);
                return response;
            }
            let n = tokio::time::timeout(super::PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("a response in time")
                .expect("read response");
            if n == 0 {
                let (response, used) = parse_response(&self.buf, true).unwrap_or_else(|| {
                    panic!(
                        "the stream ended before a whole response: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )
                });
                self.buf.drain(..used);
                return response;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `request` and reads the response.
    pub async fn exchange(&mut self, request: &[u8]) -> RawResponse {
        self.send(request).await;
        self.response().await
    }

    /// Reads until the proxy closes: whatever came after the last response, and how it ended.
    pub async fn end(mut self) -> (Vec<u8>, super::Ending) {
        let (more, ending) = super::read_to_end(&mut self.stream).await;
        self.buf.extend_from_slice(&more);
        (self.buf, ending)
    }
}

/// Writes `request` on a new connection and reads until the proxy closes it: the one response
/// it holds, and how the stream ended.
pub async fn raw_until_close(port: u16, request: &[u8]) -> (RawResponse, super::Ending) {
    response_then_close(RawConn::connect(port).await, request).await
}

/// As `raw_until_close`, on a connection from the loopback address `source`.
pub async fn raw_until_close_from(
    source: std::net::Ipv4Addr,
    port: u16,
    request: &[u8],
) -> (RawResponse, super::Ending) {
    let conn = RawConn::over(super::connect_from(source, port).await);
    response_then_close(conn, request).await
}

async fn response_then_close(mut conn: RawConn, request: &[u8]) -> (RawResponse, super::Ending) {
    conn.send(request).await;
    let (data, ending) = conn.end().await;
    let (response, used) = parse_response(&data, true).unwrap_or_else(|| {
        panic!(
            "no whole response before the close: {:?}",
            String::from_utf8_lossy(&data)
        )
    });
    assert_eq!(
        used,
        data.len(),
        "nothing after the response: {:?}",
        String::from_utf8_lossy(&data)
    );
    (response, ending)
}

/// A backend on a free loopback port that answers every request head it reads (bodies are
/// not expected) with the bytes of `response`, keeping the connection open. Returns the port
/// and a request counter.
pub async fn raw_http_backend(response: &'static [u8]) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let port = listener.local_addr().expect("addr").port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0; 16 * 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counter.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, count)
}

/// What one curl run reported.
#[derive(Debug)]
pub struct CurlRun {
    pub status: u16,
    /// The last response's headers (names lowercase).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl CurlRun {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `curl -sS` with `args` (off the async threads, so the proxy keeps running) and returns
/// the status, headers and body of the last response. `None`, after saying so, when curl is not
/// installed (scripts/test installs it).
pub async fn curl(args: &[&str]) -> Option<CurlRun> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("temp dir");
        let head_file = dir.path().join("head");
        let body_file = dir.path().join("body");
        let output = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "15", "-w", "%{http_code}", "-D"])
            .arg(&head_file)
            .arg("-o")
            .arg(&body_file)
            .args(&args)
            .output();
        let output = match output {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: curl is not installed (scripts/test installs it)");
                return None;
            }
            Err(e) => panic!("running curl: {e}"),
        };
        assert!(
            output.status.success(),
            "curl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let status = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("curl's %{http_code}");
        let head = std::fs::read_to_string(&head_file).unwrap_or_default();
        // With several responses (interim ones, redirects followed), the last head counts.
        let last = head
            .split("\r\n\r\n")
            .filter(|h| !h.trim().is_empty())
            .last()
            .unwrap_or_default();
        let headers = last
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let body = std::fs::read_to_string(&body_file).unwrap_or_default();
        Some(CurlRun {
            status,
            headers,
            body,
        })
    })
    .await
    .expect("curl task")
}

/// An HTTP/1.1 client connection to 127.0.0.1:`port` from the loopback address `source`.
pub async fn h1_client_from(
    source: std::net::Ipv4Addr,
    port: u16,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    h1_over(super::connect_from(source, port).await).await
}

/// An HTTP/2 (prior knowledge) client connection to 127.0.0.1:`port` from the loopback address
/// `source`.
pub async fn h2_client_from(
    source: std::net::Ipv4Addr,
    port: u16,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    h2_over(super::connect_from(source, port).await).await
}

/// One request with extra `headers` over `client`, read to the end.
pub async fn send(
    client: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut request = request("GET", host, path, b"");
    for (name, value) in headers {
        request.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            hyper::header::HeaderValue::from_str(value).expect("header value"),
        );
    }
    client
        .ready()
        .await
        .expect("connection ready for the next request");
    read(client.send_request(request).await.expect("response")).await
}

/// One HTTP/2 GET of `uri` (its authority becomes `:authority`) over `client`.
pub async fn h2_get(
    client: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    uri: &str,
) -> Got {
    let request = Request::builder()
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .expect("request");
    read(client.send_request(request).await.expect("h2 response")).await
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
