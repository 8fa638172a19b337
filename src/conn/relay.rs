//! The relay: the one place where bytes move between a client and its backend, for every path.
//!
//! Two directions ("pipes") run independently inside one task. A FIN from one side is passed on
//! as a write shutdown toward the other once its buffered bytes are out, and the other direction
//! keeps going. A reset or error on either side aborts the other with a reset. Limits are timers
//! re-armed lazily: moving bytes only stores a timestamp, and a timer that fires early re-arms
//! itself to the real deadline.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::lifecycle::{CloseReason, Limits};

/// How long a limit or shutdown waits for buffered bytes to reach their receiver (and for the
/// peers to answer our FIN) before it closes anyway: a receiver that stopped reading must not
/// hold the connection open.
pub const FLUSH_ON_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often a side the relay is not reading (it sent FIN, or its pipe is full) is checked for
/// a reset that arrived meanwhile, so the reset still reaches the other side within a second.
pub const UNREAD_SIDE_CHECK: Duration = Duration::from_millis(500);

/// Read/write steps one pipe takes per poll before yielding, so one busy direction cannot
/// starve the other connections of this worker even over a stream that ignores tokio's budget.
const MAX_STEPS_PER_POLL: usize = 64;

/// A stream the relay can carry: TCP now, TLS streams on the terminating paths.
pub trait RelayStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Makes the coming close send a reset (RST) instead of a FIN.
    fn reset_on_close(&self);

    /// A pending socket error (SO_ERROR): how a reset shows on a side that is not being read.
    fn take_error(&self) -> Option<io::Error>;

    /// Bytes written but not yet taken by the peer (the kernel's send queue); 0 if unknown.
    fn unsent_bytes(&self) -> usize;

    /// Whether closing the stream sends the same FIN as a write shutdown (plain TCP). Then the
    /// direction that finishes last skips `shutdown()`: the close that follows says the same,
    /// one system call fewer per connection. TLS must write close_notify, so it keeps false.
    fn close_is_fin(&self) -> bool {
        false
    }
}

impl<S: RelayStream + ?Sized> RelayStream for Box<S> {
    fn reset_on_close(&self) {
        (**self).reset_on_close();
    }

    fn take_error(&self) -> Option<io::Error> {
        (**self).take_error()
    }

    fn unsent_bytes(&self) -> usize {
        (**self).unsent_bytes()
    }

    fn close_is_fin(&self) -> bool {
        (**self).close_is_fin()
    }
}

impl RelayStream for TcpStream {
    fn reset_on_close(&self) {
        // SO_LINGER 0: close() discards unsent data and sends RST. Failure only means a FIN.
        let _ = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO));
    }

    fn take_error(&self) -> Option<io::Error> {
        TcpStream::take_error(self).unwrap_or_else(Some)
    }

    fn close_is_fin(&self) -> bool {
        true
    }

    fn unsent_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int; the fd is owned by `self` and open.
        let rc = unsafe { libc::ioctl(self.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if rc == 0 {
            usize::try_from(queued).unwrap_or(0)
        } else {
            0
        }
    }
}

/// The kernel send queues toward each side, compared across an idle deadline.
#[derive(Debug, Clone, Copy)]
struct Unsent {
    client: usize,
    backend: usize,
}

/// How the relay ended and what it counted.
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
    /// Shutdown began: HTTP connections close once idle (in-flight requests finish).
    pub draining: CancellationToken,
    pub close: CancellationToken,
    pub abort: CancellationToken,
}

/// Relay settings shared by all connections of a proxy.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub limits: Limits,
    pub buffer_size: usize,
}

thread_local! {
    /// Where a pipe with nothing buffered reads to (`Pipe::poll_read_through`): one per
    /// runtime thread, grown once to the relay buffer size.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One direction: bytes read from `src` that `dst` did not take at once wait in
/// `buf[start..]` until written.
struct Pipe {
    /// Allocated (at `size`, never zero-filled) only while bytes wait for `dst`: an idle
    /// connection, or one whose receivers keep up, holds no buffer. `len()` is where the next
    /// read lands, and it never grows past `size`.
    buf: Vec<u8>,
    size: usize,
    start: usize,
    /// `src` sent FIN (read returned 0), or, while draining, failed.
    src_done: bool,
    /// `dst`'s write half is shut down: this direction is finished.
    dst_shut: bool,
    /// Bytes were written since the last flush (TLS writers buffer internally).
    unflushed: bool,
    bytes: u64,
    last_read: Instant,
    last_write: Instant,
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
            buf: Vec::new(),
            size,
            start: 0,
            src_done: false,
            dst_shut: false,
            unflushed: false,
            bytes: 0,
            last_read: now,
            last_write: now,
            fin_at: None,
        }
    }

    /// The last time this direction moved a byte, in or out. A receiver that is slowly
    /// taking bytes keeps the connection alive even while the pipe is too full to read.
    fn last_activity(&self) -> Instant {
        self.last_read.max(self.last_write)
    }

    /// The relay is not reading this pipe's source: it sent FIN, or the buffer is full.
    fn src_unread(&self) -> bool {
        self.src_done || self.buf.len() >= self.size
    }

    /// Moves what it can. Ready(Ok) once this direction is finished (FIN passed on), Ready(Err)
    /// naming the failing peer, Pending otherwise (with a waker registered on a blocked socket).
    /// `reading` false drains what is buffered and then shuts `dst` without reading more.
    /// `dst_done` says the other direction is finished with `dst`'s FIN read: once this one
    /// finishes too the relay ends and closes `dst`, so a close that sends FIN replaces the
    /// shutdown (while `reading`).
    fn poll_move<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
        reading: bool,
        dst_done: bool,
    ) -> Poll<Result<(), (Peer, io::Error)>>
    where
        S: RelayStream,
        D: RelayStream,
    {
        if self.dst_shut {
            return Poll::Ready(Ok(()));
        }
        for _ in 0..MAX_STEPS_PER_POLL {
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
                        self.last_write = Instant::now();
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
            if reading && !self.src_unread() {
                let read = if self.buf.is_empty() {
                    self.poll_read_through(cx, src, dst)
                } else {
                    self.poll_read_behind(cx, src)
                };
                match read {
                    Poll::Ready(Ok(())) => progressed = true,
                    Poll::Ready(Err(failed)) => return Poll::Ready(Err(failed)),
                    // Nothing in flight: give the buffer back until the source sends more.
                    Poll::Pending if self.buf.is_empty() => self.buf = Vec::new(),
                    Poll::Pending => {}
                }
            }
            let drained = self.start == self.buf.len() && !self.unflushed;
            if drained && (self.src_done || !reading) {
                // Only while relaying: then both directions done ends the relay at once.
                // A drain still waits for the peers' FINs, so its FIN must go out now.
                if reading && dst_done && dst.close_is_fin() {
                    self.dst_shut = true;
                    return Poll::Ready(Ok(()));
                }
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
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// With nothing buffered: reads into the thread's scratch area and writes straight on to
    /// `dst`; only what `dst` does not take is copied into a buffer of the pipe's own. A pipe
    /// whose destination keeps up never allocates, idle or busy.
    fn poll_read_through<S, D>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
        dst: &mut D,
    ) -> Poll<Result<(), (Peer, io::Error)>>
    where
        S: RelayStream,
        D: RelayStream,
    {
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // A stream that re-entered a relay on this thread: read into our own buffer.
                self.buf.reserve_exact(self.size);
                return self.poll_read_behind(cx, src);
            };
            if scratch.len() < self.size {
                scratch.resize(self.size, 0);
            }
            let mut rb = ReadBuf::new(scratch.split_at_mut(self.size).0);
            if let Err(e) = ready!(Pin::new(&mut *src).poll_read(cx, &mut rb)) {
                return Poll::Ready(Err((Peer::Source, e)));
            }
            let read = rb.filled();
            let now = Instant::now();
            if read.is_empty() {
                self.src_done = true;
                self.fin_at = Some(now);
                return Poll::Ready(Ok(()));
            }
            self.bytes += read.len() as u64;
            self.last_read = now;
            let mut written = 0;
            while let Some(rest) = read.get(written..).filter(|r| !r.is_empty()) {
                match Pin::new(&mut *dst).poll_write(cx, rest) {
                    Poll::Ready(Ok(0)) => {
                        let err = io::Error::from(io::ErrorKind::WriteZero);
                        return Poll::Ready(Err((Peer::Destination, err)));
                    }
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        self.unflushed = true;
                        self.last_write = Instant::now();
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((Peer::Destination, e))),
                    Poll::Pending => break,
                }
            }
            if let Some(rest) = read.get(written..).filter(|r| !r.is_empty()) {
                self.buf.reserve_exact(self.size);
                self.buf.extend_from_slice(rest);
                self.start = 0;
            }
            Poll::Ready(Ok(()))
        })
    }

    /// With bytes already waiting for `dst`: reads more behind them, up to the buffer size.
    fn poll_read_behind<S: RelayStream>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
    ) -> Poll<Result<(), (Peer, io::Error)>> {
        let room = self.size.saturating_sub(self.buf.len());
        let spare = self.buf.spare_capacity_mut();
        let spare_len = spare.len().min(room);
        let mut rb = ReadBuf::uninit(spare.split_at_mut(spare_len).0);
        if let Err(e) = ready!(Pin::new(&mut *src).poll_read(cx, &mut rb)) {
            return Poll::Ready(Err((Peer::Source, e)));
        }
        let n = rb.filled().len();
        let now = Instant::now();
        if n == 0 {
            self.src_done = true;
            self.fin_at = Some(now);
        } else {
            // SAFETY: ReadBuf guarantees its first `n` bytes were initialised, and they are
            // the `n` bytes right after the current length.
            unsafe { self.buf.set_len(self.buf.len() + n) };
            self.bytes += n as u64;
            self.last_read = now;
        }
        Poll::Ready(Ok(()))
    }

    /// While closing: reads and discards what `src` still sends until its FIN, so the socket
    /// holds no unread bytes when it is closed (which would make the kernel send RST).
    fn poll_discard<S: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut S,
    ) -> Poll<()> {
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        for _ in 0..MAX_STEPS_PER_POLL {
            if self.src_done {
                return Poll::Ready(());
            }
            let mut rb = ReadBuf::uninit(&mut scratch);
            match ready!(Pin::new(&mut *src).poll_read(cx, &mut rb)) {
                Ok(()) if !rb.filled().is_empty() => {}
                // FIN, or the side is gone: nothing more to wait for.
                Ok(()) | Err(_) => self.src_done = true,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

enum Event {
    Finished,
    Failed(Side, io::Error),
    TimerFired,
    /// A side is no longer being read: start checking it for resets.
    Unread,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

/// Drives both directions once.
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
    let backend_done = b2c.src_done && b2c.dst_shut;
    let up = c2b.poll_move(cx, client, backend, reading, backend_done);
    if let Poll::Ready(Err((peer, e))) = up {
        let side = match peer {
            Peer::Source => Side::Client,
            Peer::Destination => Side::Backend,
        };
        return Poll::Ready(Event::Failed(side, e));
    }
    let client_done = c2b.src_done && c2b.dst_shut;
    match b2c.poll_move(cx, backend, client, reading, client_done) {
        Poll::Ready(Err((Peer::Source, e))) => Poll::Ready(Event::Failed(Side::Backend, e)),
        Poll::Ready(Err((Peer::Destination, e))) => Poll::Ready(Event::Failed(Side::Client, e)),
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
    let last_activity = c2b.last_activity().max(b2c.last_activity());
    let inactivity = limits
        .inactivity
        .map(|d| (last_activity + d, CloseReason::Inactivity));
    let lifetime = limits
        .lifetime
        .map(|d| (accepted + d, CloseReason::Lifetime));
    // After exactly one FIN, the open direction gets halfCloseTimeout from the later of that
    // FIN and the last byte it moved.
    let half_close = limits.half_close.and_then(|d| {
        let (fin, open) = match (c2b.fin_at, b2c.fin_at) {
            (Some(fin), None) => (fin, b2c),
            (None, Some(fin)) => (fin, c2b),
            _ => return None,
        };
        Some((
            fin.max(open.last_activity()) + d,
            CloseReason::HalfCloseTimeout,
        ))
    });
    [inactivity, lifetime, half_close]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

/// What a timer expiry decided.
enum Expiry {
    /// Nothing to do yet; sleep until `Timers::next_wake`.
    Continue,
    Fail(Side, io::Error),
    Close(CloseReason),
}

/// The connection's limits and checks, all served by one `Sleep`.
struct Timers {
    limits: Limits,
    accepted: Instant,
    /// A side is not being read: check it for a reset every UNREAD_SIDE_CHECK.
    watching: bool,
    /// Send queues seen when an idle limit came due, to tell a slow receiver from a dead one.
    unsent_before: Option<Unsent>,
}

impl Timers {
    fn deadline(&self, c2b: &Pipe, b2c: &Pipe) -> Option<(Instant, CloseReason)> {
        next_deadline(&self.limits, self.accepted, c2b, b2c)
    }

    fn on_expiry<C, B>(&mut self, client: &C, backend: &B, c2b: &mut Pipe, b2c: &mut Pipe) -> Expiry
    where
        C: RelayStream,
        B: RelayStream,
    {
        let now = Instant::now();
        if self.watching {
            if let Some(e) = c2b.src_unread().then(|| client.take_error()).flatten() {
                return Expiry::Fail(Side::Client, e);
            }
            if let Some(e) = b2c.src_unread().then(|| backend.take_error()).flatten() {
                return Expiry::Fail(Side::Backend, e);
            }
            self.watching = c2b.src_unread() || b2c.src_unread();
        }
        let Some((_, reason)) = self.deadline(c2b, b2c).filter(|(at, _)| *at <= now) else {
            self.unsent_before = None;
            return Expiry::Continue;
        };
        // An idle limit first looks at the kernel's send queues toward the peers whose
        // direction it judges: bytes still leaving them are a live receiver the relay cannot see.
        let (toward_client, toward_backend) = match reason {
            CloseReason::Inactivity => (true, true),
            CloseReason::HalfCloseTimeout => (c2b.fin_at.is_some(), b2c.fin_at.is_some()),
            _ => return Expiry::Close(reason),
        };
        let unsent = Unsent {
            client: if toward_client {
                client.unsent_bytes()
            } else {
                0
            },
            backend: if toward_backend {
                backend.unsent_bytes()
            } else {
                0
            },
        };
        match self.unsent_before.take() {
            None if unsent.client > 0 || unsent.backend > 0 => {
                self.unsent_before = Some(unsent);
                Expiry::Continue
            }
            Some(before) if unsent.client < before.client || unsent.backend < before.backend => {
                if unsent.client < before.client {
                    b2c.last_write = now;
                }
                if unsent.backend < before.backend {
                    c2b.last_write = now;
                }
                Expiry::Continue
            }
            _ => Expiry::Close(reason),
        }
    }

    /// When the timer must next fire: the earliest limit, or the next check if sooner. A limit
    /// already due waits for its send-queue check.
    fn next_wake(&self, c2b: &Pipe, b2c: &Pipe) -> Option<Instant> {
        let now = Instant::now();
        let check =
            (self.watching || self.unsent_before.is_some()).then(|| now + UNREAD_SIDE_CHECK);
        let limit = self
            .deadline(c2b, b2c)
            .map(|(at, _)| at)
            .filter(|at| self.unsent_before.is_none() || *at > now);
        [limit, check].into_iter().flatten().min()
    }
}

/// How the relaying loop stopped: the connection ended, or a limit or shutdown starts a drain.
enum Stop {
    Done(Result<CloseReason, (Side, io::Error)>),
    Drain(CloseReason),
}

/// Relays until the connection ends and returns why. The caller drops both streams afterwards;
/// when the end was a failure both have been set to reset on close.
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
    let mut timers = Timers {
        limits: config.limits,
        accepted,
        watching: false,
        unsent_before: None,
    };
    // Stands in for "no limit"; re-armed whenever it fires, so its size does not matter.
    let far_future = now + Duration::from_secs(86400 * 365);
    // The timer and the close signal live only while relaying; a drain runs after them, so the
    // future has room for one or the other, not both.
    let stop = {
        let mut timer = pin!(sleep_until(far_future));
        let mut close = pin!(signals.close.cancelled());
        loop {
            let wake = timers.next_wake(&c2b, &b2c).unwrap_or(far_future);
            if wake != timer.deadline() {
                timer.as_mut().reset(wake);
            }
            // Timer and close first: a pipe that is always ready must not starve them.
            let event = poll_fn(|cx| {
                if close.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Close);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::TimerFired);
                }
                if let Poll::Ready(event) =
                    poll_pipes(cx, client, backend, &mut c2b, &mut b2c, true)
                {
                    return Poll::Ready(event);
                }
                if !timers.watching && (c2b.src_unread() || b2c.src_unread()) {
                    return Poll::Ready(Event::Unread);
                }
                Poll::Pending
            })
            .await;
            let limit = match event {
                Event::Finished => {
                    let client_first = match (c2b.fin_at, b2c.fin_at) {
                        (Some(c), Some(b)) => c <= b,
                        _ => true,
                    };
                    break Stop::Done(Ok(if client_first {
                        CloseReason::ClientFin
                    } else {
                        CloseReason::BackendFin
                    }));
                }
                Event::Failed(side, e) => break Stop::Done(Err((side, e))),
                Event::Close => CloseReason::Shutdown,
                Event::Unread => {
                    timers.watching = true;
                    continue;
                }
                Event::TimerFired => match timers.on_expiry(client, backend, &mut c2b, &mut b2c) {
                    Expiry::Continue => continue,
                    Expiry::Fail(side, e) => break Stop::Done(Err((side, e))),
                    Expiry::Close(reason) => reason,
                },
            };
            break Stop::Drain(limit);
        }
    };
    let end = match stop {
        Stop::Done(end) => end,
        // Boxed: only closing connections need room for it.
        Stop::Drain(limit) => {
            Ok(Box::pin(drain(client, backend, &mut c2b, &mut b2c, signals, limit)).await)
        }
    };
    let (reason, error) = match end {
        Ok(reason) => (reason, None),
        Err((side, e)) => {
            // A reset or error on one side resets the other at once.
            client.reset_on_close();
            backend.reset_on_close();
            let reason = match side {
                // A WebSocket client that stopped answering pings.
                Side::Client if crate::http::ws_ping::is_ping_timeout(&e) => {
                    CloseReason::PingTimeout
                }
                Side::Client => CloseReason::ClientReset,
                Side::Backend => CloseReason::BackendReset,
            };
            (reason, Some(e.kind()))
        }
    };
    RelayEnd {
        reason,
        error,
        client_to_backend: c2b.bytes,
        backend_to_client: b2c.bytes,
    }
}

/// A limit closes both sides with FIN after flushing what the proxy holds: reading stops,
/// buffered bytes go out, both write halves are shut, and what the peers still send is read
/// and discarded until their FINs (so the close sends no RST). Bounded by
/// FLUSH_ON_CLOSE_GRACE and cut short by an abort. A side failing meanwhile resets both; the
/// limit stays the reason.
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
    let closed = poll_fn(|cx| {
        if let Poll::Ready(Event::Failed(..)) = poll_pipes(cx, client, backend, c2b, b2c, false) {
            return Poll::Ready(false);
        }
        let flushed = c2b.dst_shut && b2c.dst_shut;
        let client_done = c2b.poll_discard(cx, client).is_ready();
        let backend_done = b2c.poll_discard(cx, backend).is_ready();
        if flushed && client_done && backend_done {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    });
    let clean = tokio::select! {
        clean = closed => clean,
        _ = tokio::time::sleep(FLUSH_ON_CLOSE_GRACE) => true,
        _ = signals.abort.cancelled() => true,
    };
    if !clean {
        client.reset_on_close();
        backend.reset_on_close();
    }
    reason
}

/// Streams for the relay's unit tests and those of the streams built on it.
#[cfg(test)]
pub(crate) mod test_streams {
    use super::*;
    use tokio::io::DuplexStream;

    /// An in-memory side: `tokio::io::duplex` takes at most its capacity per write, so a small
    /// one makes the relay's writes partial.
    pub struct Mem(pub DuplexStream);

    impl AsyncRead for Mem {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Mem {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl RelayStream for Mem {
        fn reset_on_close(&self) {}
        fn take_error(&self) -> Option<io::Error> {
            None
        }
        fn unsent_bytes(&self) -> usize {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_streams::Mem;
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Polls one pipe until it has passed on `total` bytes in all.
    async fn move_until(pipe: &mut Pipe, src: &mut Mem, dst: &mut Mem, total: u64) {
        poll_fn(|cx| {
            if let Poll::Ready(Err((_, e))) = pipe.poll_move(cx, src, dst, true, false) {
                panic!("pipe failed: {e}");
            }
            if pipe.bytes >= total && pipe.buf.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    #[tokio::test]
    async fn bytes_a_receiver_does_not_take_at_once_wait_in_order_and_the_buffer_goes_back() {
        let (src, mut sender) = tokio::io::duplex(1 << 20);
        let (dst, mut receiver) = tokio::io::duplex(1000);
        let data = pattern(300_000);
        sender.write_all(&data).await.expect("write");
        let total = data.len() as u64;
        // The pipe runs on its own task, as in the relay; the receiver takes 1000 bytes at most
        // per write, so most of every 64 KiB read waits in the pipe's own buffer.
        let driver = tokio::spawn(async move {
            let (mut src, mut dst) = (Mem(src), Mem(dst));
            let mut pipe = Pipe::new(64 << 10, Instant::now());
            let mut largest = 0;
            poll_fn(|cx| {
                let moved = pipe.poll_move(cx, &mut src, &mut dst, true, false);
                largest = largest.max(pipe.buf.capacity());
                match moved {
                    Poll::Ready(Err((_, e))) => panic!("pipe failed: {e}"),
                    _ if pipe.bytes == total && pipe.buf.is_empty() => Poll::Ready(()),
                    _ => Poll::Pending,
                }
            })
            .await;
            (pipe.buf.capacity(), largest)
        });
        let mut got = Vec::new();
        while got.len() < data.len() {
            let mut chunk = [0u8; 4096];
            let n = receiver.read(&mut chunk).await.expect("read");
            got.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
        assert_eq!(got, data, "every byte, in order");
        let (capacity, largest) = driver.await.expect("driver");
        assert!(largest > 0, "bytes waited in the pipe's own buffer");
        assert!(largest <= 64 << 10, "never more than one buffer: {largest}");
        assert_eq!(capacity, 0, "drained and the source idle: no buffer held");
    }

    #[tokio::test]
    async fn a_receiver_that_keeps_up_leaves_the_pipe_without_a_buffer() {
        let (src, mut sender) = tokio::io::duplex(1 << 20);
        let (dst, mut receiver) = tokio::io::duplex(1 << 20);
        let (mut src, mut dst) = (Mem(src), Mem(dst));
        let mut pipe = Pipe::new(64 << 10, Instant::now());
        let mut total = 0;
        for round in 0..20 {
            let data = pattern(10_000 + round);
            sender.write_all(&data).await.expect("write");
            total += data.len() as u64;
            move_until(&mut pipe, &mut src, &mut dst, total).await;
            assert_eq!(pipe.buf.capacity(), 0, "round {round}");
            let mut got = vec![0u8; data.len()];
            receiver.read_exact(&mut got).await.expect("read");
            assert_eq!(got, data);
        }
    }

    /// One peer of the relay: sends `bytes` then FIN while reading everything until the FIN.
    async fn exchange(mut peer: DuplexStream, bytes: Vec<u8>, who: &str) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(&mut peer);
        let write = async {
            w.write_all(&bytes).await.expect(who);
            w.shutdown().await.expect(who);
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(write, r.read_to_end(&mut got));
        read.expect(who);
        got
    }

    #[tokio::test]
    async fn the_relay_carries_a_mib_both_ways_through_partial_writes() {
        let (client, client_peer) = tokio::io::duplex(777);
        let (backend, backend_peer) = tokio::io::duplex(1500);
        let config = RelayConfig {
            limits: Limits {
                inactivity: None,
                lifetime: None,
                half_close: None,
            },
            buffer_size: 16 << 10,
        };
        let signals = CloseSignals::default();
        let relay = tokio::spawn(async move {
            let (mut client, mut backend) = (Mem(client), Mem(backend));
            relay(&mut client, &mut backend, &config, Instant::now(), &signals).await
        });
        let up = pattern(1 << 20);
        let down: Vec<u8> = pattern((1 << 20) + 3).into_iter().rev().collect();
        let client_side = tokio::spawn(exchange(client_peer, up.clone(), "client"));
        let backend_side = tokio::spawn(exchange(backend_peer, down.clone(), "backend"));
        let at_client = client_side.await.expect("client task");
        let at_backend = backend_side.await.expect("backend task");
        let end = relay.await.expect("relay task");
        assert_eq!(at_backend, up);
        assert_eq!(at_client, down);
        assert_eq!(end.client_to_backend, up.len() as u64);
        assert_eq!(end.backend_to_client, down.len() as u64);
        assert!(matches!(
            end.reason,
            CloseReason::ClientFin | CloseReason::BackendFin
        ));
    }
}
