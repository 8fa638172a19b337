//! The relay: the one place where bytes move between a client and its backend, for every path.
//!
//! Two directions ("pipes") run independently inside one task. A FIN from one side is passed on
//! as a write shutdown toward the other once its buffered bytes are out, and the other direction
//! keeps going. A reset or error on either side aborts the other with a reset. Limits are timers
//! re-armed lazily: a read only stores a timestamp, and a timer that fires early re-arms itself
//! to the real deadline.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::lifecycle::{CloseReason, Limits};

/// How long a limit or shutdown waits for buffered bytes to reach their receiver before it
/// closes anyway (a receiver that stopped reading must not hold the connection open).
pub const FLUSH_ON_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A stream the relay can carry: TCP now, TLS streams on the terminating paths.
pub trait RelayStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Makes the coming close send a reset (RST) instead of a FIN.
    fn reset_on_close(&self);
}

impl RelayStream for TcpStream {
    fn reset_on_close(&self) {
        // SO_LINGER 0: close() discards unsent data and sends RST. Failure only means a FIN.
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }
}

/// What the relay asks the caller to do with the sockets, and what it counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEnd {
    pub reason: CloseReason,
    /// The I/O error behind a reset reason.
    pub error: Option<io::ErrorKind>,
    /// Bytes read from the client and written toward the backend.
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

/// Signals from outside the connection: the drain deadline passed (flush, then FIN) or the
/// operator asked for everything to close now.
#[derive(Clone, Default)]
pub struct CloseSignals {
    pub close: CancellationToken,
    pub abort: CancellationToken,
}

/// Relay settings shared by all connections of a proxy.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub limits: Limits,
    pub buffer_size: usize,
}

/// One direction: bytes read from `src` wait in `buf[start..]` until written to `dst`.
struct Pipe {
    /// Fixed capacity (the bound); `len()` is where the next read lands. Never zero-filled:
    /// reads go into the spare capacity, so an idle connection's buffer pages stay untouched.
    buf: Vec<u8>,
    start: usize,
    /// `src` sent FIN (read returned 0).
    src_done: bool,
    /// `dst`'s write half is shut down: this direction is finished.
    dst_shut: bool,
    /// Bytes were written since the last flush (TLS writers buffer internally).
    unflushed: bool,
    bytes: u64,
    last_read: Instant,
    fin_at: Option<Instant>,
}

/// Which peer a pipe's failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Source,
    Destination,
}

impl Pipe {
    fn new(size: usize, now: Instant) -> Pipe {
        Pipe {
            buf: Vec::with_capacity(size),
            start: 0,
            src_done: false,
            dst_shut: false,
            unflushed: false,
            bytes: 0,
            last_read: now,
            fin_at: None,
        }
    }

    /// Moves what it can. Ready(Ok) once this direction is finished (FIN passed on), Ready(Err)
    /// naming the failing peer, Pending otherwise (with a waker registered on a blocked socket).
    /// `reading` false drains what is buffered and then shuts `dst` without reading more.
    fn poll_move<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
        reading: bool,
    ) -> Poll<Result<(), (Peer, io::Error)>>
    where
        S: AsyncRead + Unpin,
        D: AsyncWrite + Unpin,
    {
        if self.dst_shut {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut progressed = false;
            while let Some(pending) = self.buf.get(self.start..).filter(|b| !b.is_empty()) {
                match Pin::new(&mut *dst).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => {
                        let err = io::Error::from(io::ErrorKind::WriteZero);
                        return Poll::Ready(Err((Peer::Destination, err)));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.unflushed = true;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((Peer::Destination, e))),
                    Poll::Pending => break,
                }
            }
            if self.start == self.buf.len() {
                self.start = 0;
                self.buf.clear();
                if self.unflushed {
                    match Pin::new(&mut *dst).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.unflushed = false,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err((Peer::Destination, e))),
                        Poll::Pending => {}
                    }
                }
            }
            if reading && !self.src_done && self.buf.len() < self.buf.capacity() {
                let mut rb = ReadBuf::uninit(self.buf.spare_capacity_mut());
                match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        let now = Instant::now();
                        if n == 0 {
                            self.src_done = true;
                            self.fin_at = Some(now);
                        } else {
                            // SAFETY: ReadBuf guarantees its first `n` bytes were initialised,
                            // and they are the `n` bytes right after the current length.
                            unsafe { self.buf.set_len(self.buf.len() + n) };
                            self.bytes += n as u64;
                            self.last_read = now;
                        }
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((Peer::Source, e))),
                    Poll::Pending => {}
                }
            }
            let drained = self.start == self.buf.len() && !self.unflushed;
            if drained && (self.src_done || !reading) {
                return match ready!(Pin::new(&mut *dst).poll_shutdown(cx)) {
                    Ok(()) => {
                        self.dst_shut = true;
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err((Peer::Destination, e))),
                };
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

enum Event {
    Finished,
    ClientFailed(io::Error),
    BackendFailed(io::Error),
    TimerFired,
    /// A FIN arrived: the half-close deadline may now be the earliest one.
    HalfClosed,
    Close,
}

/// Drives both directions of both pipes once.
fn poll_pipes<C, B>(
    cx: &mut Context<'_>,
    client: &mut C,
    backend: &mut B,
    c2b: &mut Pipe,
    b2c: &mut Pipe,
    reading: bool,
) -> Poll<Event>
where
    C: RelayStream,
    B: RelayStream,
{
    let up = c2b.poll_move(cx, client, backend, reading);
    if let Poll::Ready(Err((peer, e))) = up {
        return Poll::Ready(match peer {
            Peer::Source => Event::ClientFailed(e),
            Peer::Destination => Event::BackendFailed(e),
        });
    }
    let down = b2c.poll_move(cx, backend, client, reading);
    match down {
        Poll::Ready(Err((Peer::Source, e))) => Poll::Ready(Event::BackendFailed(e)),
        Poll::Ready(Err((Peer::Destination, e))) => Poll::Ready(Event::ClientFailed(e)),
        Poll::Ready(Ok(())) if up.is_ready() => Poll::Ready(Event::Finished),
        _ => Poll::Pending,
    }
}

/// The earliest limit deadline, and which reason it carries.
fn next_deadline(
    limits: &Limits,
    accepted: Instant,
    c2b: &Pipe,
    b2c: &Pipe,
) -> Option<(Instant, CloseReason)> {
    let last_activity = c2b.last_read.max(b2c.last_read);
    let inactivity = limits
        .inactivity
        .map(|d| (last_activity + d, CloseReason::Inactivity));
    let lifetime = limits
        .lifetime
        .map(|d| (accepted + d, CloseReason::Lifetime));
    // After exactly one FIN, the open direction gets halfCloseTimeout from the later of that
    // FIN and its own last read.
    let half_close = limits.half_close.and_then(|d| {
        let (fin, open) = match (c2b.fin_at, b2c.fin_at) {
            (Some(fin), None) => (fin, b2c),
            (None, Some(fin)) => (fin, c2b),
            _ => return None,
        };
        Some((fin.max(open.last_read) + d, CloseReason::HalfCloseTimeout))
    });
    [inactivity, lifetime, half_close]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

/// Relays until the connection ends and returns why. The caller drops both streams afterwards;
/// when the end was a failure the surviving side has been set to reset on close.
pub async fn relay<C, B>(
    client: &mut C,
    backend: &mut B,
    config: &RelayConfig,
    accepted: Instant,
    signals: &CloseSignals,
) -> RelayEnd
where
    C: RelayStream,
    B: RelayStream,
{
    let now = Instant::now();
    let mut c2b = Pipe::new(config.buffer_size, now);
    let mut b2c = Pipe::new(config.buffer_size, now);
    // Stands in for "no limit"; re-armed whenever it fires, so its size does not matter.
    let far_future = now + Duration::from_secs(86400 * 365);
    let mut timer = pin!(sleep_until(
        next_deadline(&config.limits, accepted, &c2b, &b2c).map_or(far_future, |(at, _)| at)
    ));
    let mut close = pin!(signals.close.cancelled());

    let mut error = None;
    let mut half_closed = false;
    let reason = loop {
        let event = poll_fn(|cx| {
            if let Poll::Ready(event) = poll_pipes(cx, client, backend, &mut c2b, &mut b2c, true) {
                return Poll::Ready(event);
            }
            if !half_closed && (c2b.src_done || b2c.src_done) {
                half_closed = true;
                return Poll::Ready(Event::HalfClosed);
            }
            if close.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Close);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::TimerFired);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Finished => {
                let client_first = match (c2b.fin_at, b2c.fin_at) {
                    (Some(c), Some(b)) => c <= b,
                    _ => true,
                };
                break if client_first {
                    CloseReason::ClientFin
                } else {
                    CloseReason::BackendFin
                };
            }
            Event::ClientFailed(e) => {
                error = Some(e.kind());
                client.reset_on_close();
                backend.reset_on_close();
                break CloseReason::ClientReset;
            }
            Event::BackendFailed(e) => {
                error = Some(e.kind());
                backend.reset_on_close();
                client.reset_on_close();
                break CloseReason::BackendReset;
            }
            Event::Close => {
                break drain(
                    client,
                    backend,
                    &mut c2b,
                    &mut b2c,
                    signals,
                    CloseReason::Shutdown,
                )
                .await;
            }
            Event::HalfClosed => {
                if let Some((at, _)) = next_deadline(&config.limits, accepted, &c2b, &b2c) {
                    timer.as_mut().reset(at);
                }
            }
            Event::TimerFired => {
                match next_deadline(&config.limits, accepted, &c2b, &b2c) {
                    Some((at, reason)) if at <= Instant::now() => {
                        break drain(client, backend, &mut c2b, &mut b2c, signals, reason).await;
                    }
                    // Activity moved the deadline: sleep again until the real one.
                    Some((at, _)) => timer.as_mut().reset(at),
                    None => timer.as_mut().reset(far_future),
                }
            }
        }
    };
    RelayEnd {
        reason,
        error,
        client_to_backend: c2b.bytes,
        backend_to_client: b2c.bytes,
    }
}

/// A limit closes both sides with FIN after flushing what the proxy holds, bounded by
/// FLUSH_ON_CLOSE_GRACE and cut short by an abort.
async fn drain<C, B>(
    client: &mut C,
    backend: &mut B,
    c2b: &mut Pipe,
    b2c: &mut Pipe,
    signals: &CloseSignals,
    reason: CloseReason,
) -> CloseReason
where
    C: RelayStream,
    B: RelayStream,
{
    let flushed = async { poll_fn(|cx| poll_pipes(cx, client, backend, c2b, b2c, false)).await };
    tokio::select! {
        event = flushed => {
            match event {
                Event::ClientFailed(_) | Event::BackendFailed(_) => {
                    client.reset_on_close();
                    backend.reset_on_close();
                }
                _ => {}
            }
        }
        _ = tokio::time::sleep(FLUSH_ON_CLOSE_GRACE) => {}
        _ = signals.abort.cancelled() => {}
    }
    reason
}
