//! Interim pass-through.
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Clone, Default)]
pub struct Verdicts(Arc<Mutex<VecDeque<Option<Rejection>>>>);
impl Verdicts {
    pub fn next(&self) -> Option<Rejection> {
        self.0.lock().ok()?.pop_front().flatten()
    }
}
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}
pub struct GuardedIo<S> {
    inner: S,
}
impl<S> GuardedIo<S> {
    pub fn new(inner: S, _max_head: usize, _verdicts: Verdicts) -> Self {
        GuardedIo { inner }
    }
    pub fn into_inner(self) -> (S, bytes::Bytes) {
        (self.inner, bytes::Bytes::new())
    }
}
impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}
impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
