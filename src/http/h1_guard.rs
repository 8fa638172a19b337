//! Request-head guard for the HTTP/1 server side.
//!
//! hyper answers a malformed or oversized request head itself, with an empty body, and it accepts
//! a request that carries both `Content-Length` and `Transfer-Encoding`. [`GuardedIo`] sits between
//! the client stream and hyper's HTTP/1 connection so that those decisions are ours: it holds each
//! request head until it is complete, checks it, and either hands it to hyper unchanged or hands
//! hyper [`STAND_IN_HEAD`] and nothing more (reads stay pending), leaving a [`Rejection`] in
//! [`Verdicts`] for the request handler to answer with a body. Bodies are never held: the guard follows their
//! framing only to know where the next head starts.
//!
//! Reads stay pending after the stand-in rather than ending the stream: hyper (without
//! `half_close`) would take an end of stream while the handler is busy as the client leaving and
//! drop the connection without writing the answer. The stand-in's `connection: close` ends the
//! connection after the answer; closing it then drains what the client still sends. hyper's
//! `max_buf_size` must be at least the guard's `max_head`, or hyper refuses a long head that the
//! guard accepted.
//!
//! After a head hyper may upgrade (an `Upgrade` header on HTTP/1.1, or CONNECT) nothing more is
//! checked, since the bytes that follow may be a tunnel: a handler that declines such a request
//! must close the connection, or later requests on it reach hyper unchecked.
//!
//! [`RequestScanner`] is the same logic without IO.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What hyper receives in place of a rejected head: the smallest request it accepts, asking it
/// to close the connection once the handler has answered.
pub const STAND_IN_HEAD: &[u8] = b"GET / HTTP/1.1\r\nhost: invalid\r\nconnection: close\r\n\r\n";

/// Headers allowed in one head; hyper's own default limit, so hyper never refuses on count first.
pub const MAX_HEADERS: usize = 100;

/// hyper answers 414 itself above this request-target length.
const MAX_TARGET_LEN: usize = u16::MAX as usize - 1;
/// hyper refuses longer header names itself.
const MAX_HEADER_NAME_LEN: usize = u16::MAX as usize;
/// hyper keeps the two largest values as markers and refuses them as lengths.
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// Why a request head was refused: the status to answer and a short text for the body and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// 400 or 431.
    pub status: u16,
    /// Short plain text, fit for a response body.
    pub reason: &'static str,
}

impl Rejection {
    const fn bad(reason: &'static str) -> Self {
        Self {
            status: 400,
            reason,
        }
    }

    const fn too_large(reason: &'static str) -> Self {
        Self {
            status: 431,
            reason,
        }
    }
}

const MALFORMED: Rejection = Rejection::bad("malformed request");
const BAD_METHOD: Rejection = Rejection::bad("invalid method");
const BAD_TARGET: Rejection = Rejection::bad("invalid request target");
const BOTH_LENGTHS: Rejection = Rejection::bad("both Content-Length and Transfer-Encoding");
const BAD_LENGTH: Rejection = Rejection::bad("invalid Content-Length");
const CONFLICTING_LENGTHS: Rejection = Rejection::bad("conflicting Content-Length values");
const TE_NOT_CHUNKED: Rejection = Rejection::bad("Transfer-Encoding must end in chunked");
const TE_ON_HTTP10: Rejection = Rejection::bad("Transfer-Encoding on HTTP/1.0");
const HEAD_TOO_LARGE: Rejection = Rejection::too_large("request head too large");
const LINE_TOO_LONG: Rejection = Rejection::too_large("request line too long");
const TOO_MANY_HEADERS: Rejection = Rejection::too_large("too many headers");
const TARGET_TOO_LONG: Rejection = Rejection::too_large("request target too long");
const NAME_TOO_LONG: Rejection = Rejection::too_large("header name too long");

/// Verdicts on request heads, in arrival order, shared between a [`GuardedIo`] and the handler of
/// the requests hyper reads through it.
#[derive(Debug, Clone, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<Option<Rejection>>>>);

impl Verdicts {
    pub fn new() -> Self {
        Self::default()
    }

    /// The verdict on the next request: call once per request, in order. `None` means the head
    /// was good, or came after an upgrade or CONNECT, past which nothing is checked.
    pub fn next(&self) -> Option<Rejection> {
        self.queue().pop_front().flatten()
    }

    fn push(&self, verdict: Option<Rejection>) {
        self.queue().push_back(verdict);
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Option<Rejection>>> {
        // A queue of plain values stays consistent even if a holder panicked.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    Empty,
    Length(u64),
    Chunked,
}

/// A complete request head that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The head exactly as received, leading empty lines included.
    pub bytes: Bytes,
    /// Stream offset just past the head.
    pub end: u64,
    pub body: BodyLength,
    /// An upgrade or CONNECT: everything after the head passes unchecked from here on.
    pub tunnel: bool,
}

/// What [`RequestScanner::step`] made of a prefix of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The first `n` bytes (never 0) are body or tunnel bytes, to be handed on unchanged now.
    Pass(usize),
    /// All of the input went into a head that is not complete yet (or the input was empty).
    NeedMore,
    /// A head ended after `consumed` bytes of the input and passed the checks.
    Head { consumed: usize, head: Head },
    /// The head is refused; nothing more is scanned. Repeated on every later call.
    Reject(Rejection),
    /// A chunked body is framed wrongly, so the next head cannot be found; nothing more is
    /// scanned. hyper refuses the same framing. Repeated on every later call.
    BrokenBody,
}

/// Everything one [`RequestScanner::feed`] call made of its input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes to hand on, in order: good heads, bodies, tunnel bytes.
    pub passed: Vec<u8>,
    pub heads: Vec<Head>,
    pub rejection: Option<Rejection>,
    pub broken_body: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    Tunnel,
    Rejected(Rejection),
    Broken,
}

/// Chunked-body framing, byte for byte as hyper's decoder reads it, so both agree on where the
/// body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size(u64),
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// Incremental scanner of a client's byte stream as a sequence of HTTP/1 requests.
#[derive(Debug)]
pub struct RequestScanner {
    max_head: usize,
    state: State,
    head: BytesMut,
    /// Bytes in the current head line so far.
    line_len: usize,
    /// Whether the last byte of the current head line was CR.
    line_cr: bool,
    /// Whether the head has a non-empty line yet; empty lines before the request line are
    /// skipped by httparse, so they do not end a head.
    seen_line: bool,
    position: u64,
}

impl RequestScanner {
    /// Heads longer than `max_head` bytes are refused with 431.
    pub fn new(max_head: usize) -> Self {
        Self {
            max_head,
            state: State::Head,
            head: BytesMut::new(),
            line_len: 0,
            line_cr: false,
            seen_line: false,
            position: 0,
        }
    }

    /// Stream bytes taken so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Bytes of a head in progress, taken but not handed on yet.
    pub fn held(&self) -> &[u8] {
        &self.head
    }

    /// Whether everything from here on passes unchecked (after an upgrade or CONNECT head).
    pub fn is_tunnel(&self) -> bool {
        self.state == State::Tunnel
    }

    /// Scans a prefix of `input`, up to the first event.
    pub fn step(&mut self, input: &[u8]) -> Step {
        match self.state {
            State::Rejected(rejection) => Step::Reject(rejection),
            State::Broken => Step::BrokenBody,
            _ if input.is_empty() => Step::NeedMore,
            State::Head => self.step_head(input),
            State::Tunnel => self.pass(input.len()),
            State::Length(remaining) => {
                let n = input
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let left = remaining.saturating_sub(widen(n));
                self.state = if left == 0 {
                    State::Head
                } else {
                    State::Length(left)
                };
                self.pass(n)
            }
            State::Chunked(chunk) => self.step_chunked(chunk, input),
        }
    }

    /// Scans all of `input`.
    pub fn feed(&mut self, mut input: &[u8]) -> Fed {
        let mut fed = Fed::default();
        loop {
            match self.step(input) {
                Step::Pass(n) => {
                    let (now, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
                    fed.passed.extend_from_slice(now);
                    input = rest;
                }
                Step::NeedMore => return fed,
                Step::Head { consumed, head } => {
                    fed.passed.extend_from_slice(&head.bytes);
                    fed.heads.push(head);
                    input = input.get(consumed..).unwrap_or_default();
                }
                Step::Reject(rejection) => {
                    fed.rejection = Some(rejection);
                    return fed;
                }
                Step::BrokenBody => {
                    fed.broken_body = true;
                    return fed;
                }
            }
        }
    }

    fn pass(&mut self, n: usize) -> Step {
        self.position = self.position.saturating_add(widen(n));
        Step::Pass(n)
    }

    fn reject(&mut self, rejection: Rejection) -> Step {
        self.state = State::Rejected(rejection);
        self.head = BytesMut::new();
        Step::Reject(rejection)
    }

    fn step_head(&mut self, input: &[u8]) -> Step {
        let room = self.max_head.saturating_sub(self.head.len());
        let window = input.get(..room).unwrap_or(input);
        // Each byte is looked at once, whatever the read sizes: httparse runs only on a head
        // whose empty line has arrived.
        let mut end = None;
        for (i, &byte) in window.iter().enumerate() {
            if byte == b'\n' {
                let empty = self.line_len == 0 || (self.line_len == 1 && self.line_cr);
                if !empty {
                    self.seen_line = true;
                } else if self.seen_line {
                    end = Some(i.saturating_add(1));
                    break;
                }
                self.line_len = 0;
                self.line_cr = false;
            } else {
                self.line_len = self.line_len.saturating_add(1);
                self.line_cr = byte == b'\r';
            }
        }
        let taken = end.map_or(window, |end| window.get(..end).unwrap_or(window));
        self.head.extend_from_slice(taken);
        self.position = self.position.saturating_add(widen(taken.len()));
        let Some(consumed) = end else {
            if window.len() < input.len() {
                let in_request_line = !self.seen_line && self.line_len > 0;
                return self.reject(if in_request_line {
                    LINE_TOO_LONG
                } else {
                    HEAD_TOO_LARGE
                });
            }
            return Step::NeedMore;
        };
        self.line_len = 0;
        self.line_cr = false;
        self.seen_line = false;
        let bytes = self.head.split().freeze();
        match check_head(&bytes) {
            Ok((body, tunnel)) => {
                self.state = if tunnel {
                    State::Tunnel
                } else {
                    match body {
                        BodyLength::Empty => State::Head,
                        BodyLength::Length(n) => State::Length(n),
                        BodyLength::Chunked => State::Chunked(Chunk::Start),
                    }
                };
                Step::Head {
                    consumed,
                    head: Head {
                        bytes,
                        end: self.position,
                        body,
                        tunnel,
                    },
                }
            }
            Err(rejection) => self.reject(rejection),
        }
    }

    fn step_chunked(&mut self, mut chunk: Chunk, input: &[u8]) -> Step {
        let mut i = 0usize;
        while let Some(&byte) = input.get(i) {
            if let Chunk::Data(remaining) = chunk {
                let available = input.len().saturating_sub(i);
                let n = available.min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let left = remaining.saturating_sub(widen(n));
                chunk = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                i = i.saturating_add(n);
                continue;
            }
            let Some(next) = chunk_byte(chunk, byte) else {
                self.state = State::Broken;
                return if i == 0 {
                    Step::BrokenBody
                } else {
                    self.pass(i)
                };
            };
            i = i.saturating_add(1);
            match next {
                Some(next) => chunk = next,
                None => {
                    self.state = State::Head;
                    return self.pass(i);
                }
            }
        }
        self.state = State::Chunked(chunk);
        self.pass(i)
    }
}

fn widen(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// One framing byte of a chunked body: `None` if hyper would refuse it, `Some(None)` once the
/// body is over.
fn chunk_byte(chunk: Chunk, byte: u8) -> Option<Option<Chunk>> {
    let next = match (chunk, byte) {
        (Chunk::Start, _) => Chunk::Size(u64::from(hex_digit(byte)?)),
        (Chunk::Size(size), _) if hex_digit(byte).is_some() => {
            let digit = u64::from(hex_digit(byte)?);
            Chunk::Size(size.checked_mul(16)?.checked_add(digit)?)
        }
        (Chunk::Size(size) | Chunk::SizeSpace(size), b' ' | b'\t') => Chunk::SizeSpace(size),
        (Chunk::Size(size) | Chunk::SizeSpace(size), b';') => Chunk::Extension(size),
        (Chunk::Size(size) | Chunk::SizeSpace(size) | Chunk::Extension(size), b'\r') => {
            Chunk::SizeLf(size)
        }
        (Chunk::Extension(_), b'\n') => return None,
        (Chunk::Extension(size), _) => Chunk::Extension(size),
        (Chunk::SizeLf(0), b'\n') => Chunk::EndCr,
        (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataLf, b'\n') => Chunk::Start,
        (Chunk::EndCr, b'\r') => Chunk::EndLf,
        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
        (Chunk::EndCr | Chunk::Trailer, _) => Chunk::Trailer,
        (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
        (Chunk::EndLf, b'\n') => return Some(None),
        _ => return None,
    };
    Some(Some(next))
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Checks a complete head: everything hyper would refuse, plus the framing ambiguities hyper lets
/// through. Returns the body framing and whether the connection may become a tunnel.
fn check_head(bytes: &[u8]) -> Result<(BodyLength, bool), Rejection> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => {}
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_HEADERS),
        _ => return Err(MALFORMED),
    }
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(MALFORMED);
    };
    if target.len() > MAX_TARGET_LEN {
        return Err(TARGET_TOO_LONG);
    }
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(BAD_METHOD);
    }
    if http::Uri::try_from(target).is_err() {
        return Err(BAD_TARGET);
    }
    let http11 = version == 1;

    let mut has_length = false;
    let mut length = None;
    let mut length_error = None;
    let mut has_te = false;
    let mut te_bad = false;
    let mut te_chunked = false;
    let mut has_upgrade = false;
    for header in request.headers.iter() {
        if header.name.len() > MAX_HEADER_NAME_LEN {
            return Err(NAME_TOO_LONG);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            match parse_length(header.value) {
                Some(n) if length.is_none_or(|previous| previous == n) => length = Some(n),
                Some(_) => {
                    length_error.get_or_insert(CONFLICTING_LENGTHS);
                }
                None => {
                    length_error.get_or_insert(BAD_LENGTH);
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
            // hyper reads the value as text and refuses it otherwise.
            te_bad |= !header
                .value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
            for coding in header.value.split(|&b| b == b',') {
                // chunked applied twice, or anything applied after it, leaves the end unknown.
                te_bad |= te_chunked;
                te_chunked = trim(coding).eq_ignore_ascii_case(b"chunked");
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            has_upgrade = true;
        }
    }

    if has_te && has_length {
        return Err(BOTH_LENGTHS);
    }
    if has_te && !http11 {
        return Err(TE_ON_HTTP10);
    }
    if has_te && (te_bad || !te_chunked) {
        return Err(TE_NOT_CHUNKED);
    }
    if let Some(rejection) = length_error {
        return Err(rejection);
    }
    let body = match length {
        _ if has_te => BodyLength::Chunked,
        Some(0) | None => BodyLength::Empty,
        Some(n) => BodyLength::Length(n),
    };
    // hyper's own test for a request it may upgrade: any such connection may carry non-HTTP
    // bytes next, which must not be read as requests.
    let tunnel = method == "CONNECT" || (http11 && has_upgrade);
    Ok((body, tunnel))
}

/// Digits only, as hyper reads a single Content-Length value; `None` if invalid or too large.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &byte in value {
        if !byte.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    (n <= MAX_CONTENT_LENGTH).then_some(n)
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    Open,
    /// Handing on the stand-in head; this much of it is handed already.
    StandIn(usize),
    /// The stand-in head is out: reads stay pending from now on, so hyper answers it (its
    /// `connection: close` then ends the connection) while still noticing nothing else.
    Held,
    Eof,
}

/// Client stream wrapper for hyper's HTTP/1 server connection; see the module documentation.
#[derive(Debug)]
pub struct GuardedIo<S> {
    inner: S,
    scanner: RequestScanner,
    verdicts: Verdicts,
    /// Read from `inner` and cleared, not handed on yet.
    out: BytesMut,
    tail: Tail,
    /// After a refusal, bounds reading and dropping what the client still sends.
    drain: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// After a refusal the client may still be sending (the rest of an oversized head): its bytes
/// are read and dropped until its FIN, for at most this long, so the close is a FIN and not a
/// reset that could destroy the answer before the client reads it.
const DRAIN_AFTER_REFUSAL: std::time::Duration = std::time::Duration::from_secs(1);

impl<S> GuardedIo<S> {
    /// Heads longer than `max_head` bytes are refused with 431.
    pub fn new(inner: S, max_head: usize, verdicts: Verdicts) -> Self {
        Self {
            inner,
            scanner: RequestScanner::new(max_head),
            verdicts,
            out: BytesMut::new(),
            tail: Tail::Open,
            drain: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The stream back, with the bytes read from it but not handed on yet: a caller taking the
    /// stream after an upgrade sends these first (after hyper's own leftover). After a rejection
    /// the refused head and whatever followed it are dropped.
    pub fn into_inner(self) -> (S, Bytes) {
        let mut rest = self.out;
        rest.extend_from_slice(self.scanner.held());
        (self.inner, rest.freeze())
    }

    /// Scans bytes just read; returns how many of them, from the start, stay where they are.
    /// Everything after that goes to `out`.
    fn scan(&mut self, mut input: &[u8]) -> usize {
        let mut in_place = 0usize;
        let mut moved = false;
        loop {
            match self.scanner.step(input) {
                Step::Pass(n) => {
                    let (now, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
                    if moved {
                        self.out.extend_from_slice(now);
                    } else {
                        in_place = in_place.saturating_add(now.len());
                    }
                    input = rest;
                }
                Step::NeedMore => return in_place,
                Step::Head { consumed, head } => {
                    moved = true;
                    self.verdicts.push(None);
                    self.out.extend_from_slice(&head.bytes);
                    input = input.get(consumed..).unwrap_or_default();
                }
                Step::Reject(rejection) => {
                    self.verdicts.push(Some(rejection));
                    self.tail = Tail::StandIn(0);
                    return in_place;
                }
                Step::BrokenBody => {
                    self.tail = Tail::Eof;
                    return in_place;
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(this.out.get(..n).unwrap_or_default());
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.tail {
                Tail::Open => {}
                Tail::StandIn(sent) => {
                    let rest = STAND_IN_HEAD.get(sent..).unwrap_or_default();
                    let n = rest.len().min(buf.remaining());
                    buf.put_slice(rest.get(..n).unwrap_or_default());
                    let sent = sent.saturating_add(n);
                    this.tail = if sent >= STAND_IN_HEAD.len() {
                        Tail::Held
                    } else {
                        Tail::StandIn(sent)
                    };
                    return Poll::Ready(Ok(()));
                }
                Tail::Held => return Poll::Pending,
                Tail::Eof => return Poll::Ready(Ok(())),
            }

            // Read straight into the caller's buffer so body bytes are never copied; whatever
            // follows a held or completed head is moved aside to keep the order.
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let after = buf.filled().len();
            if after == before {
                return Poll::Ready(Ok(()));
            }
            let fresh = buf.filled().get(before..).unwrap_or_default();
            let in_place = this.scan(fresh);
            buf.set_filled(before.saturating_add(in_place));
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(this.out.get(..n).unwrap_or_default());
                this.out.advance(n);
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        if matches!(this.tail, Tail::Open) {
            return Poll::Ready(Ok(()));
        }
        let grace = this
            .drain
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(DRAIN_AFTER_REFUSAL)));
        if grace.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let mut sink = [0u8; 4096];
        loop {
            let mut discard = ReadBuf::new(&mut sink);
            match Pin::new(&mut this.inner).poll_read(cx, &mut discard) {
                Poll::Ready(Ok(())) if !discard.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// Hands out one scripted chunk per read; end of stream (or pending, if `hang`) when empty.
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        reads: usize,
        hang: bool,
    }

    fn script(chunks: &[&[u8]]) -> Script {
        Script {
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
            reads: 0,
            hang: false,
        }
    }

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            match self.chunks.pop_front() {
                Some(mut chunk) => {
                    let n = chunk.len().min(buf.remaining());
                    buf.put_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.chunks.push_front(chunk.split_off(n));
                    }
                    Poll::Ready(Ok(()))
                }
                None if self.hang => Poll::Pending,
                None => Poll::Ready(Ok(())),
            }
        }
    }

    fn read_once<S: AsyncRead + Unpin>(io: &mut GuardedIo<S>, size: usize) -> Poll<Vec<u8>> {
        let mut storage = vec![0u8; size];
        let mut buf = ReadBuf::new(&mut storage);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(io).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(buf.filled().to_vec()),
            Poll::Ready(Err(e)) => panic!("read failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Everything the server would get, read `size` bytes at a time up to end of stream.
    fn read_all<S: AsyncRead + Unpin>(io: &mut GuardedIo<S>, size: usize) -> Vec<u8> {
        let mut handed = Vec::new();
        loop {
            match read_once(io, size) {
                Poll::Ready(bytes) if bytes.is_empty() => return handed,
                Poll::Ready(bytes) => handed.extend_from_slice(&bytes),
                Poll::Pending if io.tail == Tail::Held => return handed,
                Poll::Pending => panic!("script never blocks"),
            }
        }
    }

    fn verdicts_of(verdicts: &Verdicts) -> Vec<Option<Rejection>> {
        verdicts.queue().drain(..).collect()
    }

    /// Runs `chunks` through a guard; returns what the server got, the verdicts and the script.
    fn run(chunks: &[&[u8]], max_head: usize) -> (Vec<u8>, Vec<Option<Rejection>>, Script) {
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(chunks), max_head, verdicts.clone());
        let handed = read_all(&mut io, 8192);
        let (inner, rest) = io.into_inner();
        assert!(rest.is_empty(), "left over: {rest:?}");
        (handed, verdicts_of(&verdicts), inner)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn good_get_passes_unchanged() {
        let (handed, verdicts, _) = run(&[GET], 8192);
        assert_eq!(handed, GET);
        assert_eq!(verdicts, [None]);
    }

    #[test]
    fn pipelined_requests_in_one_read() {
        let stream = [GET, b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n", GET].concat();
        let (handed, verdicts, _) = run(&[&stream], 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None, None, None]);
    }

    #[test]
    fn content_length_body_then_request() {
        let stream = [
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nGET / HTTP/".as_slice(),
            GET,
        ]
        .concat();
        let (handed, verdicts, _) = run(&[&stream], 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None, None]);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_then_request() {
        let stream = [
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".as_slice(),
            b"5;name=value;other\r\nhello\r\n",
            b"A \t;x\r\n0123456789\r\n",
            b"0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n",
            GET,
        ]
        .concat();
        let (handed, verdicts, _) = run(&[&stream], 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None, None]);

        let mut scanner = RequestScanner::new(8192);
        let fed = scanner.feed(&stream);
        let ends: Vec<u64> = fed.heads.iter().map(|h| h.end).collect();
        assert_eq!(ends, [62, widen(stream.len())]);
        assert_eq!(fed.heads[0].body, BodyLength::Chunked);
    }

    #[test]
    fn same_content_length_twice_and_bare_lf_heads_pass() {
        let stream = [
            b"\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok"
                .as_slice(),
            b"GET / HTTP/1.1\nHost: a\n\n",
        ]
        .concat();
        let (handed, verdicts, _) = run(&[&stream], 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None, None]);
    }

    fn header_lines(count: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..count {
            head.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    fn assert_rejected(head: &[u8], max_head: usize, expected: Rejection) {
        let after = b"GET /after HTTP/1.1\r\n\r\n";
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(&[head, after]), max_head, verdicts.clone());
        let handed = read_all(&mut io, 8192);
        assert_eq!(handed, STAND_IN_HEAD, "{:?}", String::from_utf8_lossy(head));
        let reads = io.get_ref().reads;
        assert_eq!(read_once(&mut io, 8192), Poll::Pending);
        assert_eq!(
            io.get_ref().reads,
            reads,
            "read the stream after a rejection"
        );
        assert_eq!(
            io.get_ref().chunks.len(),
            1,
            "read the stream after a rejection"
        );
        assert_eq!(
            verdicts.next(),
            Some(expected),
            "{:?}",
            String::from_utf8_lossy(head)
        );
        assert_eq!(verdicts.next(), None);
    }

    #[test]
    fn rejections() {
        let post = |headers: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        let cases: Vec<(String, Rejection)> = vec![
            ("NOT HTTP\r\n\r\n".into(), MALFORMED),
            ("GET / HTTP/1.1\r\nHost x\r\n\r\n".into(), MALFORMED),
            ("GET / HTTP/1.1\r\nHost : x\r\n\r\n".into(), MALFORMED),
            ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n".into(), MALFORMED),
            (
                "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".into(),
                MALFORMED,
            ),
            ("GET http:// HTTP/1.1\r\n\r\n".into(), BAD_TARGET),
            (
                post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
                BOTH_LENGTHS,
            ),
            (
                post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"),
                BOTH_LENGTHS,
            ),
            (
                post("Content-Length: 5\r\nContent-Length: 6\r\n"),
                CONFLICTING_LENGTHS,
            ),
            (post("Content-Length: abc\r\n"), BAD_LENGTH),
            (post("Content-Length: +5\r\n"), BAD_LENGTH),
            (post("Content-Length: 5, 5\r\n"), BAD_LENGTH),
            (post("Content-Length:\r\n"), BAD_LENGTH),
            (post("Content-Length: 18446744073709551615\r\n"), BAD_LENGTH),
            (post("Content-Length: 18446744073709551614\r\n"), BAD_LENGTH),
            (
                post("Content-Length: 99999999999999999999999\r\n"),
                BAD_LENGTH,
            ),
            (post("Transfer-Encoding: gzip\r\n"), TE_NOT_CHUNKED),
            (post("Transfer-Encoding: chunked, gzip\r\n"), TE_NOT_CHUNKED),
            (
                post("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
                TE_NOT_CHUNKED,
            ),
            (
                post("Transfer-Encoding: chunked, chunked\r\n"),
                TE_NOT_CHUNKED,
            ),
            (post("Transfer-Encoding: chunked,\r\n"), TE_NOT_CHUNKED),
            (post("Transfer-Encoding:\r\n"), TE_NOT_CHUNKED),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                TE_ON_HTTP10,
            ),
        ];
        for (head, expected) in cases {
            assert_rejected(head.as_bytes(), 8192, expected);
        }
        let mut obs_text = post("Transfer-Encoding: g\u{e9}zip, chunked\r\n").into_bytes();
        obs_text.retain(|&b| b != 0xc3);
        assert_rejected(&obs_text, 8192, TE_NOT_CHUNKED);
    }

    #[test]
    fn header_count_limit() {
        let (handed, verdicts, _) = run(&[&header_lines(MAX_HEADERS)], 8192);
        assert_eq!(handed, header_lines(MAX_HEADERS));
        assert_eq!(verdicts, [None]);
        assert_rejected(&header_lines(MAX_HEADERS + 1), 8192, TOO_MANY_HEADERS);
    }

    #[test]
    fn long_request_line_and_names() {
        let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
        assert_rejected(line.as_bytes(), 256, LINE_TOO_LONG);

        let target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET_LEN));
        assert_rejected(target.as_bytes(), 1 << 20, TARGET_TOO_LONG);

        let name = format!("GET / HTTP/1.1\r\n{}: v\r\n\r\n", "n".repeat(1 << 16));
        assert_rejected(name.as_bytes(), 1 << 20, NAME_TOO_LONG);
    }

    fn head_of_size(size: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "p".repeat(size - fixed)).into_bytes()
    }

    #[test]
    fn head_of_exactly_max_head_passes_and_one_more_byte_is_too_large() {
        for max_head in [64, 256, 9000] {
            let head = head_of_size(max_head);
            assert_eq!(head.len(), max_head);
            let (handed, verdicts, _) = run(&[&head], max_head);
            assert_eq!(handed, head);
            assert_eq!(verdicts, [None]);
            // Byte by byte too: the limit must not depend on read sizes.
            let bytes: Vec<&[u8]> = head.chunks(1).collect();
            assert_eq!(run(&bytes, max_head).0, head);

            assert_rejected(&head_of_size(max_head + 1), max_head, HEAD_TOO_LARGE);
        }
    }

    #[test]
    fn one_byte_per_read() {
        let stream = [
            GET,
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            GET,
        ]
        .concat();
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (handed, verdicts, _) = run(&bytes, 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None; 4]);

        // And a server reading one byte at a time.
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(&[&stream]), 8192, verdicts.clone());
        assert_eq!(read_all(&mut io, 1), stream);
        assert_eq!(verdicts_of(&verdicts), [None; 4]);
    }

    #[test]
    fn long_head_one_byte_per_read() {
        // Linear: httparse runs once per head, not once per read.
        let head = head_of_size(64 * 1024);
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        let (handed, verdicts, _) = run(&bytes, head.len());
        assert_eq!(handed, head);
        assert_eq!(verdicts, [None]);
    }

    #[test]
    fn rejection_after_good_requests_keeps_their_bytes() {
        let bad = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = [GET, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nok", bad].concat();
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(&[&stream, GET]), 8192, verdicts.clone());
        let handed = read_all(&mut io, 7);
        let good = stream.len() - bad.len();
        assert_eq!(&handed[..good], &stream[..good]);
        assert_eq!(&handed[good..], STAND_IN_HEAD);
        assert_eq!(verdicts.next(), None);
        assert_eq!(verdicts.next(), None);
        assert_eq!(verdicts.next(), Some(BOTH_LENGTHS));
    }

    #[test]
    fn body_bytes_are_handed_on_as_they_arrive() {
        let head = b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n";
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(&[head, b"part"]), 8192, verdicts.clone());
        io.inner.hang = true;
        assert_eq!(read_once(&mut io, 8192), Poll::Ready(head.to_vec()));
        assert_eq!(read_once(&mut io, 8192), Poll::Ready(b"part".to_vec()));
        assert_eq!(read_once(&mut io, 8192), Poll::Pending);
        assert!(io.into_inner().1.is_empty());
    }

    #[test]
    fn broken_chunk_framing_ends_the_stream_before_the_bad_byte() {
        let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice();
        for (body, good) in [
            (b"5\r\nhelloXX".as_slice(), 8),
            (b"5\r\nhello\r\nZ\r\n", 10),
            (b"fffffffffffffffff\r\n", 16),
            (b"5;a\nb\r\n", 3),
            (b"0\r\nT: 1\rx", 8),
        ] {
            let stream = [head, body, GET].concat();
            let (handed, verdicts, _) = run(&[&stream], 8192);
            assert_eq!(handed, &stream[..head.len() + good]);
            assert_eq!(verdicts, [None]);
        }
    }

    #[test]
    fn upgrade_passes_everything_after_the_head() {
        let head = b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let stream = [
            head.as_slice(),
            b"\x81\x05hello",
            b"not http at all\r\n\r\n",
        ]
        .concat();
        let (handed, verdicts, _) = run(&[&stream], 8192);
        assert_eq!(handed, stream);
        assert_eq!(verdicts, [None]);

        let connect = [
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".as_slice(),
            b"\x16\x03\x01",
        ]
        .concat();
        let (handed, verdicts, _) = run(&[&connect], 8192);
        assert_eq!(handed, connect);
        assert_eq!(verdicts, [None]);
    }

    #[test]
    fn into_inner_returns_bytes_not_handed_on() {
        let head =
            b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let stream = [head.as_slice(), b"\x81\x05hello"].concat();
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(script(&[&stream]), 8192, verdicts.clone());
        io.inner.hang = true;
        let first = match read_once(&mut io, 20) {
            Poll::Ready(bytes) => bytes,
            Poll::Pending => panic!("pending"),
        };
        assert_eq!(first, &stream[..20]);
        let (_, rest) = io.into_inner();
        assert_eq!(rest, &stream[20..]);

        // A head still arriving is returned too.
        let mut io = GuardedIo::new(script(&[b"GET / HT"]), 8192, Verdicts::new());
        io.inner.hang = true;
        assert_eq!(read_once(&mut io, 8192), Poll::Pending);
        assert_eq!(io.into_inner().1, b"GET / HT".as_slice());
    }

    #[test]
    fn end_of_stream_inside_a_head_hands_nothing() {
        let verdicts = Verdicts::new();
        let mut io = GuardedIo::new(
            script(&[GET, b"GET / HTTP/1.1\r\nHo"]),
            8192,
            verdicts.clone(),
        );
        assert_eq!(read_all(&mut io, 8192), GET);
        assert_eq!(verdicts_of(&verdicts), [None]);
        assert_eq!(io.into_inner().1, b"GET / HTTP/1.1\r\nHo".as_slice());
    }

    #[test]
    fn largest_content_length_hyper_takes_passes() {
        let mut scanner = RequestScanner::new(8192);
        let fed =
            scanner.feed(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551613\r\n\r\nabc");
        assert_eq!(fed.heads[0].body, BodyLength::Length(u64::MAX - 2));
        assert_eq!(fed.rejection, None);
        assert_eq!(scanner.position(), 60);
    }
}
