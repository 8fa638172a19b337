//! WebSocket keep-alive for the client side of an upgraded connection: Ping frames toward the
//! client, slotted between the backend's frames, and a read error once a ping goes unanswered.
//! Every byte either peer sends is passed on unchanged.
//!
//! The relay polls the client's read side whenever it may read, so the timer lives there: a
//! silent backend must not hold a ping back. Writes toward the client follow the backend's
//! frame boundaries (RFC 6455 §5.2) so a ping never lands inside a frame.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::conn::relay::RelayStream;

const PING_PAYLOAD: usize = 8;
const PING_LEN: usize = 2 + PING_PAYLOAD;
/// 2 fixed bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;
const OPCODE_CLOSE: u8 = 0x8;
/// Stands in for a deadline too far away to represent.
const FAR: Duration = Duration::from_secs(86400 * 365);

/// The error a dead client's read ends with; the relay maps it to its own close reason.
#[derive(Debug)]
pub struct PingTimedOut;

impl fmt::Display for PingTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebSocket client did not answer a ping in time")
    }
}

impl Error for PingTimedOut {}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, PingTimedOut)
}

/// Whether `e` is the error a [`PingingClient`] read ends with when its client went dead.
pub fn is_ping_timeout(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
        && e.get_ref().is_some_and(|inner| inner.is::<PingTimedOut>())
}

/// Wraps the client side of a WebSocket relay: pings the client every `interval` and fails the
/// read side when nothing comes back within `timeout` of a ping.
pub struct PingingClient<S> {
    // The relay's `&self` methods (`take_error`, …) reach the inner stream too.
    core: Mutex<Core<S>>,
}

impl<S: RelayStream> PingingClient<S> {
    /// The first ping is due `interval` from now. Must be called inside a Tokio runtime with
    /// its timer enabled.
    pub fn new(inner: S, interval: Duration, timeout: Duration) -> Self {
        PingingClient {
            core: Mutex::new(Core {
                inner,
                ping: Ping::Waiting,
                sleep: Box::pin(sleep_until(deadline(interval))),
                interval,
                timeout,
                frames: Frames::START,
                stopping: false,
                sent: 0,
            }),
        }
    }
}

impl<S> PingingClient<S> {
    fn core(&mut self) -> &mut Core<S> {
        // A panic elsewhere cannot leave the state half-updated in a way that matters more
        // than losing the connection would.
        self.core.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Core<S>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn deadline(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

fn ping_frame(n: u64) -> [u8; PING_LEN] {
    let mut frame = [0u8; PING_LEN];
    let [op, len, payload @ ..] = &mut frame;
    *op = 0x80 | 0x9;
    *len = PING_PAYLOAD as u8;
    *payload = n.to_be_bytes();
    frame
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    /// The next ping is due at the sleep's deadline.
    Waiting,
    /// Due; goes out at the next frame boundary.
    Due,
    Writing {
        frame: [u8; PING_LEN],
        written: usize,
    },
    /// Written; TLS streams may still hold it, so the answer clock starts after the flush.
    Flushing,
    /// Sent; the sleep's deadline is the answer deadline.
    Awaiting,
    /// The answer deadline passed with nothing read. A byte still readable now saves it.
    TimedOut,
    /// No more pings: the backend closed, we shut down, or the stream is no longer trackable.
    Off,
}

struct Core<S> {
    inner: S,
    ping: Ping,
    sleep: Pin<Box<Sleep>>,
    interval: Duration,
    timeout: Duration,
    frames: Frames,
    /// No new ping will start; one already sent still has to be answered.
    stopping: bool,
    /// Pings started so far; also the payload of the latest.
    sent: u64,
}

impl<S: RelayStream> Core<S> {
    /// Timer work: notices due pings and answer deadlines and writes a due ping when the
    /// backend's stream is at a frame boundary. Leaves wakers registered for whatever it
    /// waits on. Errors are the client's write side failing.
    fn drive(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            match &mut self.ping {
                Ping::Waiting => {
                    if self.sleep.as_mut().poll(cx).is_pending() {
                        return Ok(());
                    }
                    self.ping = Ping::Due;
                }
                Ping::Due => {
                    if !self.frames.at_boundary() {
                        return Ok(());
                    }
                    self.sent = self.sent.wrapping_add(1);
                    self.ping = Ping::Writing {
                        frame: ping_frame(self.sent),
                        written: 0,
                    };
                }
                Ping::Writing { frame, written } => {
                    while let Some(rest) = frame.get(*written..).filter(|r| !r.is_empty()) {
                        match Pin::new(&mut self.inner).poll_write(cx, rest) {
                            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                            Poll::Ready(Ok(n)) => *written = written.saturating_add(n),
                            Poll::Ready(Err(e)) => return Err(e),
                            Poll::Pending => return Ok(()),
                        }
                    }
                    self.ping = Ping::Flushing;
                }
                Ping::Flushing => match Pin::new(&mut self.inner).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.arm(Ping::Awaiting, self.timeout, cx),
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(()),
                },
                Ping::Awaiting => {
                    if self.sleep.as_mut().poll(cx).is_pending() {
                        return Ok(());
                    }
                    self.ping = Ping::TimedOut;
                }
                Ping::TimedOut | Ping::Off => return Ok(()),
            }
        }
    }

    /// Enters a timed state and registers the waker for its deadline.
    fn arm(&mut self, state: Ping, after: Duration, cx: &mut Context<'_>) {
        self.ping = state;
        self.sleep.as_mut().reset(deadline(after));
        if self.sleep.as_mut().poll(cx).is_ready() {
            // Already due: the next drive acts on it, but someone must call it.
            cx.waker().wake_by_ref();
        }
    }

    /// A byte arrived from the client.
    fn heard(&mut self, cx: &mut Context<'_>) {
        if matches!(self.ping, Ping::Awaiting | Ping::TimedOut) {
            if self.stopping {
                self.ping = Ping::Off;
            } else {
                self.arm(Ping::Waiting, self.interval, cx);
            }
        }
    }

    fn stop(&mut self) {
        self.stopping = true;
        if matches!(self.ping, Ping::Waiting | Ping::Due) {
            self.ping = Ping::Off;
        }
    }

    /// What a read that found nothing returns.
    fn nothing_read(&self) -> Poll<io::Result<()>> {
        if self.ping == Ping::TimedOut {
            Poll::Ready(Err(timed_out()))
        } else {
            Poll::Pending
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.drive(cx)?;
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.heard(cx);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.nothing_read(),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.drive(cx)?;
        if matches!(self.ping, Ping::Writing { .. }) {
            // Backend bytes behind a partial ping would corrupt both.
            return Poll::Pending;
        }
        let chunk = if self.ping == Ping::Due {
            // Mid-frame (drive would have sent it otherwise): stop at the frame's end so the
            // ping can follow it.
            buf.get(..self.frames.bytes_to_frame_end(buf))
                .unwrap_or(buf)
        } else {
            buf
        };
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, chunk))?;
        if !self.stopping {
            self.track(chunk.get(..n).unwrap_or(chunk));
            if self.ping == Ping::Due && self.frames.at_boundary() {
                // The backend may send nothing more for a while: the read side sends it.
                cx.waker().wake_by_ref();
            }
        }
        Poll::Ready(Ok(n))
    }

    /// Follows the frame boundaries in bytes passed to the client.
    fn track(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.stopping {
            let (used, event) = self.frames.step(data);
            match event {
                Some(FrameEvent::End { close: true }) => self.stop(),
                Some(FrameEvent::Lost) => {
                    tracing::debug!("WebSocket frame length out of range; pings stop");
                    self.stop();
                }
                Some(FrameEvent::End { close: false }) | None => {}
            }
            if used == 0 {
                break;
            }
            data = data.get(used..).unwrap_or_default();
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        if self.ping == Ping::Flushing {
            self.arm(Ping::Awaiting, self.timeout, cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stop();
        // A ping already started must be whole before the FIN.
        self.drive(cx)?;
        if matches!(self.ping, Ping::Writing { .. }) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: RelayStream> AsyncRead for PingingClient<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().core().poll_read(cx, buf)
    }
}

impl<S: RelayStream> AsyncWrite for PingingClient<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().core().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().core().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().core().poll_shutdown(cx)
    }
}

impl<S: RelayStream> RelayStream for PingingClient<S> {
    fn reset_on_close(&self) {
        self.lock().inner.reset_on_close();
    }

    fn take_error(&self) -> Option<io::Error> {
        self.lock().inner.take_error()
    }

    fn unsent_bytes(&self) -> usize {
        self.lock().inner.unsent_bytes()
    }
}

/// Where the backend's byte stream stands relative to its frame boundaries.
#[derive(Debug, Clone, Copy)]
enum Frames {
    /// Collecting a frame header; none of it yet is a boundary.
    Header {
        buf: [u8; MAX_HEADER],
        have: usize,
    },
    Payload {
        remaining: u64,
        close: bool,
    },
    /// A length not worth trusting: boundaries are unknown from here on.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameEvent {
    End { close: bool },
    Lost,
}

impl Frames {
    const START: Frames = Frames::Header {
        buf: [0; MAX_HEADER],
        have: 0,
    };

    fn at_boundary(&self) -> bool {
        matches!(self, Frames::Header { have: 0, .. })
    }

    /// How many bytes of `data` finish the current frame (all of them if it goes on).
    fn bytes_to_frame_end(&self, data: &[u8]) -> usize {
        let mut ahead = *self;
        ahead.step(data).0
    }

    /// Consumes `data` up to the end of the current frame at most; returns how much it took
    /// and whether a frame ended there (or tracking was given up).
    fn step(&mut self, data: &[u8]) -> (usize, Option<FrameEvent>) {
        let mut used = 0;
        if let Frames::Header { buf, have } = self {
            loop {
                let need = header_len(buf, *have);
                if *have >= need {
                    break;
                }
                let (Some(&byte), Some(slot)) = (data.get(used), buf.get_mut(*have)) else {
                    return (used, None);
                };
                *slot = byte;
                *have += 1;
                used += 1;
            }
            let [b0, ..] = *buf;
            *self = match payload_len(buf) {
                Some(remaining) => Frames::Payload {
                    remaining,
                    close: b0 & 0x0f == OPCODE_CLOSE,
                },
                None => {
                    *self = Frames::Lost;
                    return (used, Some(FrameEvent::Lost));
                }
            };
        }
        match self {
            Frames::Payload { remaining, close } => {
                let avail = data.len().saturating_sub(used);
                let take = usize::try_from(*remaining).map_or(avail, |r| r.min(avail));
                *remaining = remaining.saturating_sub(take as u64);
                used += take;
                if *remaining == 0 {
                    let close = *close;
                    *self = Frames::START;
                    (used, Some(FrameEvent::End { close }))
                } else {
                    (used, None)
                }
            }
            Frames::Lost => (data.len(), None),
            Frames::Header { .. } => (used, None),
        }
    }
}

/// The frame-boundary tracker on its own, for fuzzing and property tests: where the frames of a
/// server-to-client WebSocket stream end.
#[derive(Debug, Clone, Copy)]
pub struct FrameBoundaries(Frames);

impl Default for FrameBoundaries {
    fn default() -> Self {
        FrameBoundaries(Frames::START)
    }
}

impl FrameBoundaries {
    /// Feeds the next bytes; returns the offsets within `data` just past each frame's end.
    pub fn feed(&mut self, data: &[u8]) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let (used, event) = self.0.step(data.get(at..).unwrap_or_default());
            at = at.saturating_add(used);
            match event {
                Some(FrameEvent::End { .. }) => ends.push(at),
                Some(FrameEvent::Lost) => break,
                None if used == 0 => break,
                None => {}
            }
        }
        ends
    }

    /// A length was out of range; boundaries are no longer known.
    pub fn lost(&self) -> bool {
        matches!(self.0, Frames::Lost)
    }
}

/// The header length once `have` bytes of it are known (2 until the length byte is in).
fn header_len(buf: &[u8; MAX_HEADER], have: usize) -> usize {
    let [_, b1, ..] = *buf;
    if have < 2 {
        return 2;
    }
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// The payload length of a complete header; `None` for a 64-bit length with the top bit set.
fn payload_len(buf: &[u8; MAX_HEADER]) -> Option<u64> {
    let [_, b1, e0, e1, e2, e3, e4, e5, e6, e7, ..] = *buf;
    match b1 & 0x7f {
        126 => Some(u64::from(u16::from_be_bytes([e0, e1]))),
        127 => {
            let len = u64::from_be_bytes([e0, e1, e2, e3, e4, e5, e6, e7]);
            (len >> 63 == 0).then_some(len)
        }
        n => Some(u64::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use crate::conn::lifecycle::{CloseReason, Limits};
    use crate::conn::relay::test_streams::Mem;
    use crate::conn::relay::{CloseSignals, RelayConfig, RelayEnd, relay};

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Frame {
        fin: bool,
        opcode: u8,
        mask: Option<[u8; 4]>,
        /// Unmasked.
        payload: Vec<u8>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Width {
        Minimal,
        Ext16,
        Ext64,
    }

    impl Frame {
        fn data(opcode: u8, payload: Vec<u8>) -> Frame {
            Frame {
                fin: true,
                opcode,
                mask: None,
                payload,
            }
        }

        fn encode(&self, width: Width) -> Vec<u8> {
            let len = self.payload.len();
            let width = match width {
                Width::Minimal if len < 126 => Width::Minimal,
                Width::Minimal | Width::Ext16 if len <= 0xffff => Width::Ext16,
                _ => Width::Ext64,
            };
            let mut out = vec![u8::from(self.fin) << 7 | self.opcode];
            let m = if self.mask.is_some() { 0x80 } else { 0 };
            match width {
                Width::Minimal => out.push(m | len as u8),
                Width::Ext16 => {
                    out.push(m | 126);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                }
                Width::Ext64 => {
                    out.push(m | 127);
                    out.extend_from_slice(&(len as u64).to_be_bytes());
                }
            }
            match self.mask {
                Some(key) => {
                    out.extend_from_slice(&key);
                    out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
                }
                None => out.extend_from_slice(&self.payload),
            }
            out
        }
    }

    async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Frame> {
        let mut h = [0u8; 2];
        r.read_exact(&mut h).await?;
        let len = match h[1] & 0x7f {
            126 => u64::from(r.read_u16().await?),
            127 => r.read_u64().await?,
            n => u64::from(n),
        };
        let mask = if h[1] & 0x80 != 0 {
            let mut key = [0u8; 4];
            r.read_exact(&mut key).await?;
            Some(key)
        } else {
            None
        };
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await?;
        if let Some(key) = mask {
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= key[i % 4]);
        }
        Ok(Frame {
            fin: h[0] & 0x80 != 0,
            opcode: h[0] & 0x0f,
            mask,
            payload,
        })
    }

    fn is_our_ping(f: &Frame) -> bool {
        f.fin && f.opcode == 0x9 && f.mask.is_none() && f.payload.len() == PING_PAYLOAD
    }

    fn pong(payload: &[u8]) -> Vec<u8> {
        Frame {
            fin: true,
            opcode: 0xA,
            mask: Some([0x12, 0x34, 0x56, 0x78]),
            payload: payload.to_vec(),
        }
        .encode(Width::Minimal)
    }

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    /// A client and a backend joined by the relay, the client side wrapped.
    struct Link {
        client: TcpStream,
        backend: TcpStream,
        relay: JoinHandle<RelayEnd>,
    }

    async fn link(interval: Duration, timeout: Duration) -> Link {
        let (client, proxy_client) = tcp_pair().await;
        let (mut proxy_backend, backend) = tcp_pair().await;
        let relay = tokio::spawn(async move {
            let mut wrapped = PingingClient::new(proxy_client, interval, timeout);
            let config = RelayConfig {
                limits: Limits {
                    inactivity: None,
                    lifetime: None,
                    half_close: None,
                },
                buffer_size: 16 * 1024,
            };
            let signals = CloseSignals::default();
            relay(
                &mut wrapped,
                &mut proxy_backend,
                &config,
                Instant::now(),
                &signals,
            )
            .await
        });
        Link {
            client,
            backend,
            relay,
        }
    }

    const GENEROUS: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn ping_reaches_a_client_of_a_silent_backend() {
        let interval = Duration::from_millis(80);
        let start = Instant::now();
        let mut l = link(interval, Duration::from_secs(10)).await;
        let frame = tokio::time::timeout(GENEROUS, read_frame(&mut l.client))
            .await
            .expect("a ping in time")
            .unwrap();
        let elapsed = start.elapsed();
        assert!(elapsed >= interval, "ping after {elapsed:?}");
        assert!(elapsed < interval + Duration::from_secs(2), "{elapsed:?}");
        assert!(is_our_ping(&frame), "{frame:?}");
        assert!(!l.relay.is_finished());
    }

    #[tokio::test]
    async fn pings_only_between_frames_of_a_split_backend_stream() {
        let mut l = link(Duration::from_millis(30), Duration::from_secs(10)).await;
        let big = Frame::data(0x2, (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect());
        let small = Frame::data(0x1, b"after the big one".to_vec());
        let expected = vec![big.clone(), small.clone()];
        let (mut backend_rd, mut backend_wr) = l.backend.into_split();
        let writer = tokio::spawn(async move {
            for piece in big.encode(Width::Minimal).chunks(1000) {
                backend_wr.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            backend_wr
                .write_all(&small.encode(Width::Minimal))
                .await
                .unwrap();
            backend_wr
        });
        let mut seen = Vec::new();
        let mut pongs = Vec::new();
        while seen.iter().filter(|f| !is_our_ping(f)).count() < expected.len() {
            let f = tokio::time::timeout(GENEROUS, read_frame(&mut l.client))
                .await
                .expect("frames keep coming")
                .unwrap();
            if is_our_ping(&f) {
                let answer = pong(&f.payload);
                l.client.write_all(&answer).await.unwrap();
                pongs.extend_from_slice(&answer);
            }
            seen.push(f);
        }
        let data: Vec<Frame> = seen.iter().filter(|f| !is_our_ping(f)).cloned().collect();
        assert_eq!(data, expected);
        let big_at = seen.iter().position(|f| f.opcode == 0x2).unwrap();
        assert!(
            is_our_ping(&seen[big_at + 1]),
            "the ping due mid-frame follows the frame"
        );
        // The answers reach the backend untouched.
        let mut got = vec![0u8; pongs.len()];
        tokio::time::timeout(GENEROUS, backend_rd.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, pongs);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn answering_client_stays_silent_one_is_closed() {
        let interval = Duration::from_millis(50);
        let timeout = Duration::from_millis(100);

        let mut alive = link(interval, timeout).await;
        let mut dead = link(interval, timeout).await;
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            // Reads pings but never answers.
            let mut sink = Vec::new();
            let _ = dead.client.read_to_end(&mut sink).await;
            (dead.relay.await.unwrap(), start.elapsed(), dead.backend)
        });
        let mut pings = 0;
        while start.elapsed() < Duration::from_millis(600) {
            let f = tokio::time::timeout(GENEROUS, read_frame(&mut alive.client))
                .await
                .unwrap()
                .unwrap();
            assert!(is_our_ping(&f));
            pings += 1;
            alive.client.write_all(&pong(&f.payload)).await.unwrap();
        }
        assert!(pings >= 3, "{pings} pings");
        assert!(!alive.relay.is_finished());

        let (end, elapsed, _backend) = reader.await.unwrap();
        assert_eq!(end.reason, CloseReason::PingTimeout);
        assert_eq!(end.error, Some(io::ErrorKind::TimedOut));
        assert!(elapsed >= interval + timeout, "{elapsed:?}");
        assert!(elapsed < interval + timeout + GENEROUS, "{elapsed:?}");
    }

    #[tokio::test]
    async fn unanswered_read_fails_with_the_ping_timeout() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let interval = Duration::from_millis(50);
        let timeout = Duration::from_millis(80);
        let start = Instant::now();
        let mut wrapped = PingingClient::new(Mem(ours), interval, timeout);
        let mut buf = [0u8; 64];
        let err = tokio::time::timeout(GENEROUS, wrapped.read(&mut buf))
            .await
            .unwrap()
            .unwrap_err();
        assert!(is_ping_timeout(&err), "{err:?}");
        assert!(start.elapsed() >= interval + timeout);
        let mut ping = [0u8; PING_LEN];
        peer.read_exact(&mut ping).await.unwrap();
        assert_eq!(ping, ping_frame(1));
        assert!(!is_ping_timeout(&io::Error::from(io::ErrorKind::TimedOut)));
    }

    #[tokio::test]
    async fn any_byte_answers() {
        let (ours, mut peer) = tokio::io::duplex(1024);
        let mut wrapped = PingingClient::new(
            Mem(ours),
            Duration::from_millis(30),
            Duration::from_millis(60),
        );
        let mut buf = [0u8; 64];
        let client = tokio::spawn(async move {
            let mut ping = [0u8; PING_LEN];
            for _ in 0..4 {
                peer.read_exact(&mut ping).await.unwrap();
                peer.write_all(b"x").await.unwrap();
            }
            peer
        });
        for _ in 0..4 {
            let n = tokio::time::timeout(GENEROUS, wrapped.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf[..n], b"x");
        }
        let _peer = client.await.unwrap();
        assert_eq!(wrapped.core().sent, 4);
    }

    #[tokio::test]
    async fn no_ping_after_the_backends_close_frame() {
        let interval = Duration::from_millis(40);
        let mut l = link(interval, Duration::from_millis(60)).await;
        let close = Frame::data(OPCODE_CLOSE, vec![0x03, 0xe8]);
        l.backend
            .write_all(&close.encode(Width::Minimal))
            .await
            .unwrap();
        let f = read_frame(&mut l.client).await.unwrap();
        assert_eq!(f, close);
        let mut buf = [0u8; 16];
        let quiet = tokio::time::timeout(interval * 6, l.client.read(&mut buf)).await;
        assert!(quiet.is_err(), "nothing after Close: {quiet:?}");
        assert!(!l.relay.is_finished());
    }

    #[tokio::test]
    async fn no_ping_after_shutdown() {
        let interval = Duration::from_millis(40);
        let mut l = link(interval, Duration::from_millis(60)).await;
        l.backend.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(GENEROUS, l.client.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        // A ping written after the FIN would fail the client side.
        tokio::time::sleep(interval * 6).await;
        assert!(!l.relay.is_finished());
        l.client.shutdown().await.unwrap();
        let end = tokio::time::timeout(GENEROUS, l.relay)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(end.reason, CloseReason::BackendFin);
    }

    #[tokio::test]
    async fn shutdown_finishes_a_partial_ping_first() {
        let (ours, mut peer) = tokio::io::duplex(4);
        let mut wrapped = PingingClient::new(
            Mem(ours),
            Duration::from_millis(10),
            Duration::from_secs(10),
        );
        // Drive the timer until the ping is half out.
        std::future::poll_fn(|cx| {
            let core = wrapped.core();
            core.drive(cx).unwrap();
            match core.ping {
                Ping::Writing { written, .. } if written > 0 => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })
        .await;
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        assert_eq!(reader.await.unwrap(), ping_frame(1));
    }

    #[test]
    fn absurd_length_stops_tracking_and_pinging() {
        let mut frames = Frames::START;
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(1u64 << 63).to_be_bytes());
        let (used, event) = frames.step(&header[..5]);
        assert_eq!((used, event), (5, None));
        let (used, event) = frames.step(&header[5..]);
        assert_eq!((used, event), (5, Some(FrameEvent::Lost)));
        assert!(matches!(frames, Frames::Lost));
        assert!(!frames.at_boundary());
    }

    fn frame_strategy() -> impl Strategy<Value = (Frame, Width)> {
        let len = prop_oneof![
            8 => 0usize..126,
            3 => 126usize..2000,
            1 => 65_536usize..70_000,
        ];
        let opcode = prop::sample::select(vec![0x0u8, 0x1, 0x2, 0x8, 0x9, 0xA]);
        let width = prop::sample::select(vec![Width::Minimal, Width::Ext16, Width::Ext64]);
        (
            any::<bool>(),
            opcode,
            proptest::option::weighted(0.2, any::<[u8; 4]>()),
            len,
            any::<u8>(),
            width,
        )
            .prop_map(|(fin, opcode, mask, len, seed, width)| {
                // A backend ping shaped exactly like ours would make the check ambiguous.
                let len = if opcode == 0x9 && len == PING_PAYLOAD {
                    len + 1
                } else {
                    len
                };
                let payload = (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect();
                (
                    Frame {
                        fin,
                        opcode,
                        mask,
                        payload,
                    },
                    width,
                )
            })
    }

    /// Writes `input` through the wrapper in pieces of `sizes`, forcing a due ping before each
    /// piece whose flag is set; returns what the client receives and the pings sent.
    fn pass_through(input: &[u8], sizes: &[usize], force: &[bool]) -> (Vec<u8>, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let (ours, mut peer) = tokio::io::duplex(1 << 24);
            let hour = Duration::from_secs(3600);
            let mut wrapped = PingingClient::new(Mem(ours), hour, hour);
            let mut rest = input;
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                let core = wrapped.core();
                // What the timer would do: a ping comes due unless pinging has stopped.
                if force[i % force.len()] && !core.stopping {
                    core.ping = Ping::Due;
                }
                wrapped.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
                i += 1;
            }
            let sent = wrapped.core().sent;
            wrapped.shutdown().await.unwrap();
            drop(wrapped);
            let mut out = Vec::new();
            peer.read_to_end(&mut out).await.unwrap();
            (out, sent)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn backend_bytes_unchanged_pings_only_at_boundaries(
            frames in prop::collection::vec(frame_strategy(), 0..6),
            sizes in prop::collection::vec(1usize..3000, 1..20),
            force in prop::collection::vec(any::<bool>(), 1..20),
        ) {
            let encoded: Vec<Vec<u8>> = frames.iter().map(|(f, w)| f.encode(*w)).collect();
            let input = encoded.concat();
            let (out, sent) = pass_through(&input, &sizes, &force);

            let mut pos = 0;
            let mut pings = 0u64;
            let mut closed = false;
            let mut take_pings = |pos: &mut usize, closed: bool| {
                while out[*pos..].starts_with(&ping_frame(pings + 1)) {
                    prop_assert!(!closed, "ping after the backend's Close");
                    pings += 1;
                    *pos += PING_LEN;
                }
                Ok(())
            };
            for ((frame, _), bytes) in frames.iter().zip(&encoded) {
                take_pings(&mut pos, closed)?;
                prop_assert_eq!(out.get(pos..pos + bytes.len()), Some(&bytes[..]));
                pos += bytes.len();
                closed |= frame.opcode == OPCODE_CLOSE;
            }
            take_pings(&mut pos, closed)?;
            prop_assert_eq!(pos, out.len());
            prop_assert_eq!(pings, sent);
        }
    }
}
