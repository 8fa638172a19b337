//! The one body type the engine moves in both directions: a streamed hyper body (with whatever
//! must live as long as it, such as a pooled connection's busy mark) or a small body the proxy
//! writes itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// What lives as long as a streamed body: the endpoint's least-connections lease, the backend
/// connection's busy mark, or the connection itself to put back in the pool once the body has
/// been read to its end.
pub trait BodyHold: Send + Sync {
    /// `complete`: the body was read to its end (a connection may be reused).
    fn finished(self: Box<Self>, complete: bool);
}

pub type Hold = Box<dyn BodyHold>;

/// Anything that only needs dropping.
pub struct Keep<T>(pub T);

impl<T: Send + Sync> BodyHold for Keep<T> {
    fn finished(self: Box<Self>, _complete: bool) {}
}

pub enum ProxyBody {
    /// Written by the proxy; `None` once sent (or empty from the start).
    Full(Option<Bytes>),
    /// Streamed as it arrives, never buffered whole.
    Stream { body: Incoming, hold: Option<Hold> },
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let ProxyBody::Stream { body, hold } = self
            && let Some(hold) = hold.take()
        {
            hold.finished(body.is_end_stream());
        }
    }
}

impl ProxyBody {
    pub fn empty() -> ProxyBody {
        ProxyBody::Full(None)
    }

    pub fn text(text: impl Into<Bytes>) -> ProxyBody {
        let bytes = text.into();
        if bytes.is_empty() {
            ProxyBody::Full(None)
        } else {
            ProxyBody::Full(Some(bytes))
        }
    }

    pub fn stream(body: Incoming) -> ProxyBody {
        ProxyBody::Stream { body, hold: None }
    }

    pub fn held(body: Incoming, hold: Hold) -> ProxyBody {
        ProxyBody::Stream {
            body,
            hold: Some(hold),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Stream { body, hold } => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(None) = polled
                    && let Some(hold) = hold.take()
                {
                    hold.finished(true);
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Stream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Stream { body, .. } => body.size_hint(),
        }
    }
}
