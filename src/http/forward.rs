//! Forwarding one request: headers rewritten, an endpoint chosen by the route's load balancing
//! (the next one tried when a connect fails), the request sent over a pooled connection, and
//! the response streamed back.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::body::{Keep, ProxyBody};
use super::headers::{self, Forwarded, Templates};
use super::service::RequestFacts;
use super::upstream::{Checkout, ConnectSettings, Sender, Upstream, UpstreamError, Want};
use super::{ConnCtx, respond, websocket};
use crate::admission::Ticket;
use crate::router::RouteEntry;

/// A connection to one of the route's endpoints, and which endpoint.
pub struct Connected {
    pub index: usize,
    pub checkout: Checkout,
}

/// Why no endpoint could be reached: 504 for a timeout, else 502.
pub fn connect_failure(error: Option<&UpstreamError>) -> Response<ProxyBody> {
    match error {
        Some(UpstreamError::Timeout) => respond::text(
            StatusCode::GATEWAY_TIMEOUT,
            "the backend did not accept the connection in time",
            false,
        ),
        _ => respond::text(StatusCode::BAD_GATEWAY, "the backend is unreachable", false),
    }
}

/// Tries the route's endpoints in load-balancing order until one connects.
pub async fn connect(
    ctx: &ConnCtx,
    upstream: &Upstream,
    sni: Option<&str>,
    want: Want,
) -> Result<Connected, Option<UpstreamError>> {
    let settings = ConnectSettings {
        timeout: ctx.shared.connect_timeout,
        socket_options: ctx.shared.socket_options,
        client: ctx.info.peers.proxy_addresses(),
    };
    let endpoints = upstream.endpoints();
    let mut last = None;
    for index in endpoints.plan(ctx.client_ip) {
        match upstream
            .checkout(
                index,
                ctx.info.peers.local.port(),
                sni,
                want,
                false,
                &settings,
            )
            .await
        {
            Ok(checkout) => {
                endpoints.report_connect(index, true);
                return Ok(Connected { index, checkout });
            }
            Err(e) => {
                tracing::debug!(conn = ctx.info.id, endpoint = index, error = %e, "backend connect failed");
                endpoints.report_connect(index, false);
                last = Some(e);
            }
        }
    }
    Err(last)
}

/// The name a re-encrypting route sends as SNI: the request's host, else the connection's SNI.
pub fn backend_sni<'a>(ctx: &'a ConnCtx, facts: &'a RequestFacts) -> Option<&'a str> {
    facts.domain.as_deref().or(ctx.info.sni.as_deref())
}

/// `ticket`: the route's admission, held until the response body ends (or the WebSocket).
pub async fn forward(
    ctx: &ConnCtx,
    route: &Arc<RouteEntry>,
    request: Request<Incoming>,
    (facts, templates): (&RequestFacts, &Templates<'_>),
    ticket: Ticket,
) -> Response<ProxyBody> {
    let Some(upstream) = route.upstream.as_ref() else {
        return respond::text(StatusCode::BAD_GATEWAY, "the route has no backend", false);
    };
    if websocket::is_upgrade(&request) {
        let request_facts = (facts, templates);
        return websocket::forward(ctx, route, upstream, request, request_facts, ticket).await;
    }
    if request.method() == Method::CONNECT {
        return respond::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served by a reverse proxy",
            true,
        );
    }
    // After an Upgrade or CONNECT head the HTTP/1.1 guard checks nothing more on this
    // connection, so a declined one closes it after the answer.
    let unguarded_after =
        request.version() != Version::HTTP_2 && request.headers().contains_key(header::UPGRADE);
    let (mut parts, body) = request.into_parts();
    prepare_headers(ctx, route, &mut parts.headers, facts, templates);
    parts.headers.remove(header::EXPECT);
    let mut request = Some(Request::from_parts(parts, ProxyBody::stream(body)));
    let sni = backend_sni(ctx, facts);
    let Connected {
        index,
        mut checkout,
    } = match connect(ctx, upstream, sni, Want::Any).await {
        Ok(connected) => connected,
        Err(e) => return connect_failure(e.as_ref()),
    };
    let endpoints = upstream.endpoints();
    let mut retried = false;
    loop {
        let Some(mut outgoing) = request.take() else {
            return respond::text(StatusCode::BAD_GATEWAY, "the request was lost", false);
        };
        ctx.note(route, checkout.backend);
        let lease = endpoints.lease(index);
        let h2 = matches!(checkout.sender, Sender::H2(_));
        set_target(&mut outgoing, facts, h2, upstream.re_encrypts());
        let sent = match &mut checkout.sender {
            Sender::H1(sender) => {
                let sending = sender.try_send_request(outgoing);
                match with_timeout(ctx, sending).await {
                    Some(Ok(response)) => Ok(response),
                    Some(Err(mut e)) => {
                        // A pooled connection the backend closed while idle fails before the
                        // request is written; the request comes back and goes out once more.
                        if let Some(back) = e.take_message()
                            && checkout.reused
                            && !retried
                        {
                            retried = true;
                            request = Some(back);
                            let settings = ConnectSettings {
                                timeout: ctx.shared.connect_timeout,
                                socket_options: ctx.shared.socket_options,
                                client: ctx.info.peers.proxy_addresses(),
                            };
                            match upstream
                                .checkout(
                                    index,
                                    ctx.info.peers.local.port(),
                                    sni,
                                    Want::Any,
                                    true,
                                    &settings,
                                )
                                .await
                            {
                                Ok(fresh) => checkout = fresh,
                                Err(e) => {
                                    endpoints.report_connect(index, false);
                                    return connect_failure(Some(&e));
                                }
                            }
                            continue;
                        }
                        Err(e.into_error())
                    }
                    None => return response_timeout(),
                }
            }
            Sender::H2(sender) => match with_timeout(ctx, sender.send_request(outgoing)).await {
                Some(result) => result,
                None => return response_timeout(),
            },
        };
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(conn = ctx.info.id, route = %route.name, error = %e, "backend request failed");
                return respond::text(
                    StatusCode::BAD_GATEWAY,
                    "the backend closed the connection or sent an invalid response",
                    false,
                );
            }
        };
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::apply_rules(&mut parts.headers, &route.header_rules.response, templates);
        if unguarded_after {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let hold = match checkout.sender {
            Sender::H1(_) => upstream.return_on_end(index, checkout, (lease, ticket)),
            Sender::H2(_) => Box::new(Keep((lease, checkout.busy, ticket))),
        };
        return Response::from_parts(parts, ProxyBody::held(body, hold));
    }
}

/// Waits for the response head within httpResponseTimeout; `None` when it passed.
pub async fn with_timeout<T>(ctx: &ConnCtx, sending: impl Future<Output = T>) -> Option<T> {
    let limit = ctx.shared.http.response_timeout;
    if limit.is_zero() {
        return Some(sending.await);
    }
    tokio::time::timeout(limit, sending).await.ok()
}

pub fn response_timeout() -> Response<ProxyBody> {
    respond::text(
        StatusCode::GATEWAY_TIMEOUT,
        "the backend did not answer in time",
        false,
    )
}

/// Hop-by-hop headers out, X-Forwarded-* in, then the route's request rules.
pub fn prepare_headers(
    ctx: &ConnCtx,
    route: &RouteEntry,
    headers: &mut http::HeaderMap,
    facts: &RequestFacts,
    templates: &Templates<'_>,
) {
    headers::strip_hop_by_hop(headers);
    headers::set_forwarded(
        headers,
        &Forwarded {
            client_ip: ctx.client_ip,
            trusted: ctx.trusted,
            proto: if ctx.info.terminated { "https" } else { "http" },
            host: facts.authority.as_deref(),
            port: ctx.info.peers.destination.port(),
        },
    );
    headers::apply_rules(headers, &route.header_rules.request, templates);
}

/// Shapes the request target for the backend connection: origin-form and a Host header on
/// HTTP/1.1; an absolute URI whose authority is the client's Host on HTTP/2.
pub fn set_target<B>(request: &mut Request<B>, facts: &RequestFacts, h2: bool, tls: bool) {
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let authority = facts
        .authority
        .as_deref()
        .and_then(|a| a.parse::<Authority>().ok());
    if h2 {
        *request.version_mut() = Version::HTTP_2;
        let mut uri = Uri::builder()
            .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
            .path_and_query(path.clone());
        if let Some(authority) = authority {
            uri = uri.authority(authority);
        }
        if let Ok(uri) = uri.build() {
            *request.uri_mut() = uri;
        }
        request.headers_mut().remove(header::HOST);
    } else {
        *request.version_mut() = Version::HTTP_11;
        *request.uri_mut() = Uri::from(path);
        if let Some(host) = facts
            .authority
            .as_deref()
            .and_then(|a| HeaderValue::from_str(a).ok())
        {
            request.headers_mut().insert(header::HOST, host);
        }
    }
}
