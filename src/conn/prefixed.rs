//! A client stream whose first bytes were already read (to route on them): reads give those
//! bytes back first, so passthrough forwards them untouched and a TLS acceptor sees the whole
//! ClientHello.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::relay::RelayStream;

pub struct Prefixed<S> {
    prefix: Vec<u8>,
    /// How much of `prefix` has been read back.
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(mut prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        // Kept at their exact size: the read buffer's spare room goes back before the backend
        // connect, not when the relay has passed the bytes on.
        prefix.shrink_to_fit();
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }

    fn rest(&self) -> &[u8] {
        self.prefix.get(self.pos..).unwrap_or_default()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = this.rest();
        if rest.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.pos += n;
        if this.pos >= this.prefix.len() {
            // Give the memory back: the connection may live for days.
            this.prefix = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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

impl<S: RelayStream> RelayStream for Prefixed<S> {
    fn reset_on_close(&self) {
        self.inner.reset_on_close();
    }

    fn take_error(&self) -> Option<io::Error> {
        self.inner.take_error()
    }

    fn unsent_bytes(&self) -> usize {
        self.inner.unsent_bytes()
    }

    fn close_is_fin(&self) -> bool {
        self.inner.close_is_fin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn prefix_comes_back_first_then_the_stream() {
        let inner: &[u8] = b" world";
        let mut stream = Prefixed::new(b"hello".to_vec(), inner);
        let mut small = [0u8; 3];
        assert_eq!(stream.read(&mut small).await.ok(), Some(3));
        assert_eq!(&small, b"hel");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.ok();
        assert_eq!(rest, b"lo world");
        assert!(stream.prefix.is_empty() && stream.prefix.capacity() == 0);
    }
}
