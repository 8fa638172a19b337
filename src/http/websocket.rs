//! WebSocket: an HTTP/1.1 Upgrade or an HTTP/2 extended CONNECT (RFC 8441) from the client
//! becomes an HTTP/1.1 Upgrade to the backend, on a connection of its own. Once the backend
//! answers 101 both streams go to the core relay with the connection's lifecycle: half-close,
//! timers, and not one byte added (except pings when the route asks for them).

use std::sync::Arc;

use base64::Engine;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use super::body::{Keep, ProxyBody};
use super::forward::{self, Connected};
use super::headers::{self, Templates};
use super::service::RequestFacts;
use super::upstream::{BackendStream, Sender, Upstream, Want};
use super::ws_ping::PingingClient;
use super::{ConnCtx, H1Io, respond};
use crate::admission::Ticket;
use crate::conn::Shared;
use crate::conn::lifecycle::CloseReason;
use crate::conn::prefixed::Prefixed;
use crate::conn::relay::{self, RelayEnd, RelayStream};
use crate::router::RouteEntry;

const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// An HTTP/1.1 `Upgrade: websocket` with `Connection: upgrade`, or an HTTP/2 CONNECT with
/// `:protocol websocket`.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    if request.version() == Version::HTTP_2 {
        return request.method() == Method::CONNECT
            && request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    }
    let has_token = |name: HeaderName, token: &str| {
        request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// `ticket`: the route's admission, held for as long as the tunnel lives.
pub async fn forward(
    ctx: &ConnCtx,
    route: &Arc<RouteEntry>,
    upstream: &Arc<Upstream>,
    mut request: Request<Incoming>,
    (facts, templates): (&RequestFacts, &Templates<'_>),
    ticket: Ticket,
) -> Response<ProxyBody> {
    if !route.websocket.enabled {
        return respond::text(
            StatusCode::FORBIDDEN,
            "WebSocket is not enabled on this route",
            request.version() != Version::HTTP_2,
        );
    }
    let from_h2 = request.version() == Version::HTTP_2;
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    forward::prepare_headers(ctx, route, &mut parts.headers, facts, templates);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts
        .headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if from_h2 {
        // RFC 8441 has no key; the HTTP/1.1 handshake toward the backend needs one.
        parts.method = Method::GET;
        parts.extensions.remove::<hyper::ext::Protocol>();
        if let Ok(key) = HeaderValue::from_str(&handshake_key()) {
            parts.headers.insert(SEC_WEBSOCKET_KEY, key);
        }
    }
    let mut outgoing = Request::from_parts(parts, ProxyBody::empty());
    forward::set_target(&mut outgoing, facts, false, upstream.re_encrypts());
    let sni = forward::backend_sni(ctx, facts);
    let Connected {
        index,
        mut checkout,
    } = match forward::connect(ctx, upstream, sni, Want::Http1).await {
        Ok(connected) => connected,
        Err(e) => return forward::connect_failure(e.as_ref()),
    };
    ctx.note(route, checkout.backend);
    let lease = upstream.endpoints().lease(index);
    let Sender::H1(sender) = &mut checkout.sender else {
        return respond::text(
            StatusCode::BAD_GATEWAY,
            "no HTTP/1.1 connection to the backend",
            false,
        );
    };
    let response = match forward::with_timeout(ctx, sender.send_request(outgoing)).await {
        Some(Ok(response)) => response,
        Some(Err(e)) => {
            tracing::debug!(conn = ctx.info.id, route = %route.name, error = %e, "WebSocket handshake to the backend failed");
            return respond::text(
                StatusCode::BAD_GATEWAY,
                "the backend closed the connection or sent an invalid response",
                false,
            );
        }
        None => return forward::response_timeout(),
    };
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::SWITCHING_PROTOCOLS {
        // Refused by the backend: its answer goes back as an ordinary response. The HTTP/1.1
        // guard checks nothing after an Upgrade head, so that connection then closes.
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::apply_rules(&mut parts.headers, &route.header_rules.response, templates);
        if !from_h2 {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return Response::from_parts(
            parts,
            ProxyBody::held(body, Box::new(Keep((lease, checkout.busy, ticket)))),
        );
    }
    let mut backend_response = Response::from_parts(parts, ());
    let backend_upgrade = hyper::upgrade::on(&mut backend_response);
    let (mut client_parts, ()) = backend_response.into_parts();
    headers::strip_hop_by_hop(&mut client_parts.headers);
    headers::apply_rules(
        &mut client_parts.headers,
        &route.header_rules.response,
        templates,
    );
    if from_h2 {
        client_parts.status = StatusCode::OK;
        client_parts.headers.remove(SEC_WEBSOCKET_ACCEPT);
    } else {
        client_parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        client_parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    let shared = Arc::clone(&ctx.shared);
    let route = Arc::clone(route);
    let at = ctx.info.at;
    let tunnel = async move {
        let end = tunnel(&shared, &route, client_upgrade, backend_upgrade, at).await;
        drop(lease);
        drop(ticket);
        end
    };
    if ctx.tunnels.send(Box::pin(tunnel)).is_err() {
        return respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the connection is closing",
            true,
        );
    }
    Response::from_parts(client_parts, ProxyBody::empty())
}

/// A fresh Sec-WebSocket-Key: 16 bytes, base64 (RFC 6455 §4.1). It is a nonce, not a secret.
fn handshake_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(u64::from(std::process::id()));
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn failed(reason: CloseReason) -> RelayEnd {
    RelayEnd {
        reason,
        error: None,
        client_to_backend: 0,
        backend_to_client: 0,
    }
}

/// Waits for both upgrades, takes the streams back from hyper, and relays.
async fn tunnel(
    shared: &Shared,
    route: &RouteEntry,
    client: OnUpgrade,
    backend: OnUpgrade,
    at: tokio::time::Instant,
) -> RelayEnd {
    let Ok(backend) = backend.await else {
        return failed(CloseReason::BackendReset);
    };
    let backend = match backend.downcast::<TokioIo<BackendStream>>() {
        Ok(parts) => Prefixed::new(parts.read_buf.to_vec(), parts.io.into_inner()),
        Err(_) => return failed(CloseReason::BackendReset),
    };
    let Ok(client) = client.await else {
        return failed(CloseReason::ClientReset);
    };
    match client.downcast::<H1Io>() {
        Ok(parts) => {
            let (stream, unread) = parts.io.into_inner().into_inner();
            let mut prefix = parts.read_buf.to_vec();
            prefix.extend_from_slice(&unread);
            relay_with_pings(shared, route, Prefixed::new(prefix, stream), backend, at).await
        }
        // An HTTP/2 stream: no socket of its own underneath.
        Err(upgraded) => {
            let client = StreamSide(TokioIo::new(upgraded));
            relay_with_pings(shared, route, client, backend, at).await
        }
    }
}

async fn relay_with_pings<C: RelayStream, B: RelayStream>(
    shared: &Shared,
    route: &RouteEntry,
    client: C,
    mut backend: B,
    at: tokio::time::Instant,
) -> RelayEnd {
    let ws = route.websocket;
    if ws.ping_interval.is_zero() {
        let mut client = client;
        relay::relay(
            &mut client,
            &mut backend,
            &shared.relay,
            at,
            &shared.signals,
        )
        .await
    } else {
        let mut client = PingingClient::new(client, ws.ping_interval, ws.ping_timeout);
        relay::relay(
            &mut client,
            &mut backend,
            &shared.relay,
            at,
            &shared.signals,
        )
        .await
    }
}

/// A WebSocket carried by an HTTP/2 stream. Resets and send queues belong to the shared
/// connection, not to this stream, so they are not reported here.
struct StreamSide(TokioIo<Upgraded>);

impl tokio::io::AsyncRead for StreamSide {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StreamSide {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl RelayStream for StreamSide {
    fn reset_on_close(&self) {}

    fn take_error(&self) -> Option<std::io::Error> {
        None
    }

    fn unsent_bytes(&self) -> usize {
        0
    }
}
