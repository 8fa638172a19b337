//! TLS streams as the relay carries them: the client side of a terminating route and the
//! backend side of a re-encrypting one. Resets, send queues and socket errors are the TCP
//! socket's underneath.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsStream;

use super::relay::RelayStream;

/// The TLS alert a client gets when no route serves the name it asked for: a fatal
/// `unrecognized_name` (RFC 6066 §3), as a plaintext record since no handshake happened.
pub const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// A fatal `protocol_version` alert: the client offers nothing newer than TLS 1.1.
pub const PROTOCOL_VERSION_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 70];

/// A fatal `access_denied` alert: the client's address or a limit refuses it.
pub const ACCESS_DENIED_ALERT: [u8; 7] = [21, 3, 3, 0, 2, 2, 49];

pub struct TlsSide<S>(pub TlsStream<S>);

impl<S: RelayStream> AsyncRead for TlsSide<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.get_mut().0).poll_read(cx, buf) {
            // A peer that closes TCP without close_notify has still ended its direction; to
            // the relay that is a FIN, as it is for HAProxy and nginx.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<S: RelayStream> AsyncWrite for TlsSide<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    /// Sends close_notify, then shuts the TCP write half: TLS half-close as a FIN.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: RelayStream> RelayStream for TlsSide<S> {
    fn reset_on_close(&self) {
        self.0.get_ref().0.reset_on_close();
    }

    fn take_error(&self) -> Option<io::Error> {
        self.0.get_ref().0.take_error()
    }

    fn unsent_bytes(&self) -> usize {
        self.0.get_ref().0.unsent_bytes()
    }
}
