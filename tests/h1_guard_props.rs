//! Properties of the request scanner and the guard: read sizes never change what is found, any
//! input is safe, and valid traffic passes through byte for byte.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use proptest::sample::Index;
use smartproxy::http::h1_guard::{Fed, GuardedIo, RequestScanner, Verdicts};
use tokio::io::{AsyncRead, ReadBuf};

const MAX_HEAD: usize = 8192;

#[derive(Debug, Clone)]
enum Body {
    Empty,
    Sized(Vec<u8>),
    Chunked {
        chunks: Vec<(Vec<u8>, Framing)>,
        trailers: Vec<String>,
    },
}

/// How one chunk-size line is spelled.
#[derive(Debug, Clone, Copy)]
struct Framing {
    upper: bool,
    zeros: usize,
    space: bool,
    extension: bool,
}

#[derive(Debug, Clone)]
struct Request {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Body,
    bare_lf: bool,
    blank_lines: usize,
}

impl Request {
    /// Appends the request; returns where its head ends.
    fn write(&self, out: &mut Vec<u8>) -> u64 {
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let mut head = eol.repeat(self.blank_lines);
        head.push_str(&format!(
            "{} {} HTTP/1.1{eol}host: example{eol}",
            self.method, self.target
        ));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}{eol}"));
        }
        match &self.body {
            Body::Empty => {}
            Body::Sized(bytes) => head.push_str(&format!("Content-Length: {}{eol}", bytes.len())),
            Body::Chunked { .. } => head.push_str(&format!("Transfer-Encoding: chunked{eol}")),
        }
        head.push_str(eol);
        out.extend_from_slice(head.as_bytes());
        let end = out.len() as u64;
        match &self.body {
            Body::Empty => {}
            Body::Sized(bytes) => out.extend_from_slice(bytes),
            Body::Chunked { chunks, trailers } => {
                for (data, framing) in chunks {
                    out.extend_from_slice(framing.size_line(data.len()).as_bytes());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                for trailer in trailers {
                    out.extend_from_slice(format!("{trailer}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        end
    }
}

impl Framing {
    fn size_line(self, size: usize) -> String {
        let digits = if self.upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        let mut line = "0".repeat(self.zeros) + &digits;
        if self.space {
            line.push_str(" \t");
        }
        if self.extension {
            line.push_str(";name=\"va lue\";flag");
        }
        line.push_str("\r\n");
        line
    }
}

fn framing() -> impl Strategy<Value = Framing> {
    (any::<bool>(), 0..3usize, any::<bool>(), any::<bool>()).prop_map(
        |(upper, zeros, space, extension)| Framing {
            upper,
            zeros,
            space,
            extension,
        },
    )
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::Empty),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Body::Sized),
        (
            prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 1..300), framing()),
                0..5
            ),
            prop::collection::vec("x-[a-z]{1,8}: [ -~]{0,12}", 0..3),
        )
            .prop_map(|(chunks, trailers)| Body::Chunked { chunks, trailers }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        "/[a-zA-Z0-9._~/-]{0,30}(\\?[a-z]=[a-z0-9]{0,5})?",
        prop::collection::vec(("x-[a-z0-9-]{1,12}", "[a-zA-Z0-9 ;=,./]{0,24}"), 0..6),
        body(),
        prop::bool::weighted(0.2),
        prop::sample::select(vec![0usize, 0, 0, 1, 2]),
    )
        .prop_map(
            |(method, target, headers, body, bare_lf, blank_lines)| Request {
                method,
                target,
                headers,
                body,
                bare_lf,
                blank_lines,
            },
        )
}

/// A pipelined stream of requests and where each head ends.
fn pipeline() -> impl Strategy<Value = (Vec<u8>, Vec<u64>)> {
    prop::collection::vec(request(), 1..6).prop_map(|requests| {
        let mut stream = Vec::new();
        let ends = requests.iter().map(|r| r.write(&mut stream)).collect();
        (stream, ends)
    })
}

fn pieces(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut start = 0;
    let mut out = Vec::new();
    for cut in cuts {
        out.push(bytes[start..cut].to_vec());
        start = cut;
    }
    out
}

/// Feeds the pieces one after the other and merges what each feed found.
fn scan_pieces(max_head: usize, pieces: &[Vec<u8>]) -> (Fed, Vec<u8>) {
    let mut scanner = RequestScanner::new(max_head);
    let mut all = Fed::default();
    for piece in pieces {
        let fed = scanner.feed(piece);
        all.passed.extend_from_slice(&fed.passed);
        all.heads.extend(fed.heads);
        all.rejection = all.rejection.or(fed.rejection);
        all.broken_body |= fed.broken_body;
    }
    (all, scanner.held().to_vec())
}

/// Hands out the scripted chunks, one per read.
struct Script(VecDeque<Vec<u8>>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn read_sizes_never_change_the_boundaries(
        (stream, ends) in pipeline(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (whole, held) = scan_pieces(MAX_HEAD, std::slice::from_ref(&stream));
        let found: Vec<u64> = whole.heads.iter().map(|h| h.end).collect();
        prop_assert_eq!(&found, &ends);
        prop_assert_eq!(whole.rejection, None);
        prop_assert!(!whole.broken_body);
        prop_assert!(held.is_empty());

        let split = scan_pieces(MAX_HEAD, &pieces(&stream, &cuts));
        prop_assert_eq!(split, (whole, held));
    }

    #[test]
    fn byte_at_a_time_finds_the_same_boundaries((stream, ends) in pipeline()) {
        let bytes: Vec<Vec<u8>> = stream.chunks(1).map(<[u8]>::to_vec).collect();
        let (fed, held) = scan_pieces(MAX_HEAD, &bytes);
        let found: Vec<u64> = fed.heads.iter().map(|h| h.end).collect();
        prop_assert_eq!(found, ends);
        prop_assert_eq!(fed.passed, stream);
        prop_assert!(held.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_pass_a_prefix(
        prefix in prop::sample::select(vec![
            "",
            "GET / HTTP/1.1\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 20\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
        ]),
        noise in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..1500),
            prop::collection::vec(
                prop::sample::select(b"0123456789abcdefABCDEF\r\n\r\n \t;:,GETPOST/HTTP/1.1 xContent-Length".to_vec()),
                0..1500,
            ),
        ],
        max_head in 0..400usize,
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let input = [prefix.as_bytes(), &noise].concat();
        let (whole, held) = scan_pieces(max_head, std::slice::from_ref(&input));
        prop_assert!(input.starts_with(&whole.passed));
        if whole.rejection.is_none() && !whole.broken_body {
            prop_assert_eq!([whole.passed.as_slice(), &held].concat(), input.clone());
        }
        for head in &whole.heads {
            prop_assert!(head.bytes.len() <= max_head);
        }
        prop_assert_eq!(scan_pieces(max_head, &pieces(&input, &cuts)), (whole, held));
    }

    #[test]
    fn valid_traffic_round_trips_through_the_guard(
        (stream, ends) in pipeline(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
        read_size in 1..9000usize,
    ) {
        let verdicts = Verdicts::new();
        let inner = Script(pieces(&stream, &cuts).into_iter().filter(|p| !p.is_empty()).collect());
        let mut io = GuardedIo::new(inner, MAX_HEAD, verdicts.clone());
        let mut handed = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut storage = vec![0u8; read_size];
            let mut buf = ReadBuf::new(&mut storage);
            let poll = Pin::new(&mut io).poll_read(&mut cx, &mut buf);
            prop_assert!(matches!(poll, Poll::Ready(Ok(()))));
            if buf.filled().is_empty() {
                break;
            }
            handed.extend_from_slice(buf.filled());
        }
        prop_assert_eq!(handed, stream);
        for _ in &ends {
            prop_assert_eq!(verdicts.next(), None);
        }
        prop_assert!(io.into_inner().1.is_empty());
    }
}
