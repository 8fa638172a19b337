//! The request-head guard in front of a real hyper HTTP/1 server, driven by a raw TCP client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use smartproxy::http::h1_guard::{GuardedIo, Verdicts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

/// A server answering each request with the length of its body, or the guard's rejection.
async fn server(max_head: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, max_head));
        }
    });
    addr
}

async fn connection(stream: TcpStream, max_head: usize) {
    let verdicts = Verdicts::new();
    let io = TokioIo::new(GuardedIo::new(stream, max_head, verdicts.clone()));
    let service = service_fn(move |request: Request<Incoming>| {
        let verdict = verdicts.next();
        async move { Ok::<_, Infallible>(answer(request, verdict).await) }
    });
    let _ = http1::Builder::new()
        .max_buf_size(max_head.max(8192))
        .serve_connection(io, service)
        .with_upgrades()
        .await;
}

async fn answer(
    request: Request<Incoming>,
    verdict: Option<smartproxy::http::h1_guard::Rejection>,
) -> Response<Full<Bytes>> {
    if let Some(rejection) = verdict {
        return Response::builder()
            .status(rejection.status)
            .header("content-type", "text/plain")
            .header("connection", "close")
            .body(Full::new(Bytes::from(format!("{}\n", rejection.reason))))
            .expect("response");
    }
    if request.headers().contains_key("upgrade") {
        tokio::spawn(echo_upgraded(request));
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::default())
            .expect("response");
    }
    let mut body = request.into_body();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
        }
    }
    Response::new(Full::new(Bytes::from(length.to_string())))
}

/// Takes the stream back from hyper and the guard, and sends back every byte after the head.
async fn echo_upgraded(request: Request<Incoming>) {
    let Ok(upgraded) = hyper::upgrade::on(request).await else {
        return;
    };
    let Ok(parts) = upgraded.downcast::<TokioIo<GuardedIo<TcpStream>>>() else {
        return;
    };
    let (mut stream, unread) = parts.io.into_inner().into_inner();
    let mut pending = parts.read_buf.to_vec();
    pending.extend_from_slice(&unread);
    while pending.len() < 4 {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(1) => pending.push(byte[0]),
            _ => return,
        }
    }
    let _ = stream.write_all(&pending).await;
}

struct Answer {
    status: u16,
    close: bool,
    body: Vec<u8>,
}

/// Reads one response with a Content-Length body; `buf` keeps bytes past it.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(buf).expect("response head") {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
            };
            let length: usize =
                header("content-length").map_or(0, |v| v.parse().expect("content-length"));
            let status = response.code.expect("status");
            let close = header("connection").is_some_and(|v| v.contains("close"));
            while buf.len() < head + length {
                read_more(stream, buf).await;
            }
            let body = buf[head..head + length].to_vec();
            buf.drain(..head + length);
            return Answer {
                status,
                close,
                body,
            };
        }
        read_more(stream, buf).await;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = timeout(WAIT, stream.read(&mut chunk))
        .await
        .expect("answer in time")
        .expect("read");
    assert_ne!(
        n,
        0,
        "closed before a whole answer: {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

async fn assert_closed(stream: &mut TcpStream, buf: &[u8]) {
    assert!(buf.is_empty(), "bytes after the answer: {buf:?}");
    let mut rest = Vec::new();
    let n = timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read to end");
    assert_eq!(n, 0, "bytes after the answer: {rest:?}");
}

#[tokio::test]
async fn both_lengths_are_refused_with_a_body() {
    let addr = server(8192).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 400);
    assert!(answer.close);
    assert_eq!(answer.body, b"both Content-Length and Transfer-Encoding\n");
    assert_closed(&mut stream, &buf).await;
}

#[tokio::test]
async fn malformed_head_is_refused_with_a_body() {
    let addr = server(8192).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, b"malformed request\n");
    assert_closed(&mut stream, &buf).await;
}

#[tokio::test]
async fn oversized_head_is_refused_with_a_body() {
    let addr = server(4096).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 431);
    assert!(answer.close);
    assert_eq!(answer.body, b"request head too large\n");
    assert_closed(&mut stream, &buf).await;
}

#[tokio::test]
async fn head_longer_than_hyper_minimum_buffer_passes() {
    let addr = server(32 * 1024).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\nContent-Length: 3\r\n\r\nabc",
        "b".repeat(20_000)
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"3");
}

#[tokio::test]
async fn keep_alive_requests_with_chunked_and_sized_bodies() {
    let addr = server(8192).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let requests: [(&[u8], &[u8]); 3] = [
        (
            b"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
            b"11",
        ),
        (
            b"PUT /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\nseven!!",
            b"7",
        ),
        (
            b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"3",
        ),
    ];
    let mut buf = Vec::new();
    for (request, length) in requests {
        stream.write_all(request).await.expect("write");
        let answer = read_answer(&mut stream, &mut buf).await;
        assert_eq!(answer.status, 200);
        assert!(!answer.close);
        assert_eq!(answer.body, length);
    }

    // The same three pipelined in one write, then a refused one.
    let mut pipelined: Vec<u8> = requests.iter().flat_map(|(r, _)| r.to_vec()).collect();
    pipelined.extend_from_slice(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    stream.write_all(&pipelined).await.expect("write");
    for (_, length) in requests {
        let answer = read_answer(&mut stream, &mut buf).await;
        assert_eq!((answer.status, answer.body.as_slice()), (200, length));
    }
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, b"Transfer-Encoding on HTTP/1.0\n");
    assert_closed(&mut stream, &buf).await;
}

#[tokio::test]
async fn large_chunked_upload_streams_through() {
    const TOTAL: usize = 20 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let addr = server(8192).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let upload = tokio::spawn(async move {
        write
            .write_all(b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await?;
        let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
        chunk.extend(std::iter::repeat_n(b'x', CHUNK));
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..TOTAL / CHUNK {
            write.write_all(&chunk).await?;
        }
        write.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(write)
    });
    let mut response = Vec::new();
    while !response.ends_with(TOTAL.to_string().as_bytes()) {
        let mut piece = [0u8; 1024];
        let n = timeout(WAIT, read.read(&mut piece))
            .await
            .expect("answer in time")
            .expect("read");
        assert_ne!(n, 0, "closed: {:?}", String::from_utf8_lossy(&response));
        response.extend_from_slice(&piece[..n]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    upload.await.expect("join").expect("upload");
}

#[tokio::test]
async fn upgrade_hands_back_every_byte_after_the_head() {
    let addr = server(8192).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\nping")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf).await;
    assert_eq!(answer.status, 101);
    while buf.len() < 4 {
        read_more(&mut stream, &mut buf).await;
    }
    assert_eq!(buf, b"ping");
}
