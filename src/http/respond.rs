//! Answers the proxy writes itself: errors (404, 502, 504, 400, 431, 403), and the `redirect`
//! and `respond` actions.

use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::headers::Templates;

/// A short plain-text answer; `close` also asks an HTTP/1.1 client to close the connection.
pub fn text(status: StatusCode, message: &str, close: bool) -> Response<ProxyBody> {
    let body = format!(
        "{} {}\n{message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ProxyBody::text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if close {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `{type: redirect, redirect: {to, status}}`.
pub fn redirect(to: &str, status: u16, templates: &Templates<'_>) -> Response<ProxyBody> {
    let location = templates.expand(to);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = text(status, &format!("Redirecting to {location}"), false);
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        // A template that expanded to something no header may hold (control characters).
        Err(_) => text(
            StatusCode::BAD_REQUEST,
            "the redirect target cannot be built from this request",
            false,
        ),
    }
}

/// `{type: respond, respond: {status, body, headers}}`; content-type defaults to text/plain.
pub fn respond(
    status: u16,
    body: &str,
    headers: &[(String, String)],
    templates: &Templates<'_>,
) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::text(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let map = response.headers_mut();
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&templates.expand(value)),
        ) {
            map.insert(name, value);
        }
    }
    response
}
