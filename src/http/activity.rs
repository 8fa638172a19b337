//! A client stream that records when it last moved a byte, so an HTTP connection runs under
//! the same inactivity limit as a relayed one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::conn::relay::RelayStream;

/// Milliseconds since `origin` at the last byte read or written.
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    /// The kind of the first read error, which hyper may treat as a plain close when the
    /// connection looked idle to it (a reset during a head the guard still held).
    read_error: std::sync::OnceLock<io::ErrorKind>,
}

impl Activity {
    pub fn new(origin: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            origin,
            last_ms: AtomicU64::new(0),
            read_error: std::sync::OnceLock::new(),
        })
    }

    pub fn read_error(&self) -> Option<io::ErrorKind> {
        self.read_error.get().copied()
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn last(&self) -> Instant {
        self.origin + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        if let Poll::Ready(Err(e)) = &polled {
            let _ = this.activity.read_error.set(e.kind());
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: RelayStream> RelayStream for Watched<S> {
    fn reset_on_close(&self) {
        self.inner.reset_on_close();
    }

    fn take_error(&self) -> Option<io::Error> {
        self.inner.take_error()
    }

    fn unsent_bytes(&self) -> usize {
        self.inner.unsent_bytes()
    }
}
