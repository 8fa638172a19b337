//! One request: checked, routed, then answered by its route's action.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::header::HeaderValue;
use http::{Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;

use super::ConnCtx;
use super::body::ProxyBody;
use super::h1_guard::Rejection;
use super::headers::Templates;
use super::{forward, respond};
use crate::admission::{Refusal, RequestRefusal, Ticket};
use crate::config::ActionKind;
use crate::conn::lifecycle::CloseReason;
use crate::router::{HttpRequestFacts, RouteEntry};

/// What the handler learned about a request before routing it.
pub struct RequestFacts {
    /// Host or :authority as sent (port included), if any.
    pub authority: Option<String>,
    /// Lowercase, without the port.
    pub domain: Option<String>,
}

pub async fn handle(
    ctx: Arc<ConnCtx>,
    request: Request<Incoming>,
    rejection: Option<Rejection>,
) -> Result<Response<ProxyBody>, Infallible> {
    ctx.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(rejection) = rejection {
        let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(respond::text(status, rejection.reason, true));
    }
    let facts = match request_facts(&request) {
        Ok(facts) => facts,
        Err(message) => return Ok(respond::text(StatusCode::BAD_REQUEST, message, true)),
    };
    let port = ctx.info.peers.local.port();
    let route = ctx.shared.router.select_http(
        port,
        ctx.client_ip,
        ctx.info.terminated,
        &HttpRequestFacts {
            host: facts.domain.as_deref(),
            path: request.uri().path(),
            headers: request.headers(),
        },
    );
    let Some(route) = route.cloned() else {
        return Ok(respond::text(
            StatusCode::NOT_FOUND,
            "no route matches this host and path",
            false,
        ));
    };
    ctx.note(&route, None);
    let ticket = match admit(&ctx, &route, &request).await {
        Ok(ticket) => ticket,
        Err(refused) => return Ok(refused),
    };
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let path = request.uri().path().to_string();
    let domain = facts.domain.clone().unwrap_or_default();
    let templates = Templates {
        domain: &domain,
        client_ip: ctx.client_ip,
        path: &path,
        query: &query,
        port: ctx.info.peers.destination.port(),
    };
    let response = match &route.action {
        ActionKind::Block => respond::text(StatusCode::FORBIDDEN, "blocked by the proxy", true),
        ActionKind::Redirect { to, status } => respond::redirect(to, *status, &templates),
        ActionKind::Respond {
            status,
            body,
            headers,
        } => respond::respond(*status, body, headers, &templates),
        ActionKind::Forward => {
            forward::forward(&ctx, &route, request, (&facts, &templates), ticket).await
        }
    };
    Ok(response)
}

/// The route's admission for one request: address lists and connection limits (a refusal
/// ends an HTTP/1.1 connection), then its request rate and credentials.
async fn admit(
    ctx: &ConnCtx,
    route: &Arc<RouteEntry>,
    request: &Request<Incoming>,
) -> Result<Ticket, Response<ProxyBody>> {
    let h1 = request.version() != Version::HTTP_2;
    let ticket = match ctx.admit(route) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            ctx.refused(refusal.reason(), h1);
            let (status, message) = match refusal {
                Refusal::Blocked => (StatusCode::FORBIDDEN, "your address may not use this route"),
                Refusal::RouteFull | Refusal::ProxyFull => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the route is at its connection limit",
                ),
                Refusal::PerIp(_) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from your address",
                ),
            };
            let mut response = respond::text(status, message, h1);
            if let Some(after) = refusal.retry_after() {
                set_retry_after(&mut response, after);
            }
            return Err(response);
        }
    };
    let checked = route
        .admission
        .check_request(ctx.client_ip, request.uri().path(), request.headers())
        .await;
    match checked {
        Ok(()) => Ok(ticket),
        Err(RequestRefusal::RateLimited {
            retry_after,
            message,
        }) => {
            ctx.refused(CloseReason::Limit, false);
            let message = message
                .as_deref()
                .unwrap_or("too many requests; try again later");
            let mut response = respond::text(StatusCode::TOO_MANY_REQUESTS, message, false);
            set_retry_after(&mut response, retry_after);
            Err(response)
        }
        Err(RequestRefusal::Unauthorized(challenge)) => {
            let mut response =
                respond::text(StatusCode::UNAUTHORIZED, "credentials required", false);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
            Err(response)
        }
    }
}

/// `Retry-After` in whole seconds, rounded up.
fn set_retry_after(response: &mut Response<ProxyBody>, after: std::time::Duration) {
    let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
}

/// The request's authority: `:authority` on HTTP/2, else the Host header (one, and agreeing
/// with an absolute-form target if there is one).
fn request_facts(request: &Request<Incoming>) -> Result<RequestFacts, &'static str> {
    let uri_authority = request.uri().authority().map(|a| a.as_str().to_string());
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err("more than one Host header"),
        (Some(value), None) => Some(
            value
                .to_str()
                .map_err(|_| "the Host header is not valid text")?
                .to_string(),
        ),
        (None, None) => None,
    };
    let authority = match (request.version(), uri_authority, host) {
        (Version::HTTP_2, Some(authority), _) => Some(authority),
        (Version::HTTP_2, None, host) => host,
        (Version::HTTP_11, None, None) => return Err("an HTTP/1.1 request needs a Host header"),
        (_, Some(authority), _) => Some(authority),
        (_, None, host) => host,
    };
    let domain = authority
        .as_deref()
        .map(|a| strip_port(a).to_ascii_lowercase());
    Ok(RequestFacts { authority, domain })
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_authorities() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a:b"), "a:b");
    }
}
