//! Header work on the way through: hop-by-hop headers out, X-Forwarded-* in, the route's
//! `action.headers` rules applied, and the templates they may use.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// What the templates `{domain} {clientIp} {path} {query} {port}` expand to for one request.
pub struct Templates<'a> {
    /// Host without the port.
    pub domain: &'a str,
    pub client_ip: IpAddr,
    /// Path only.
    pub path: &'a str,
    /// `?a=b`, or empty.
    pub query: &'a str,
    /// The port the client connected to.
    pub port: u16,
}

impl Templates<'_> {
    /// Replaces every known `{name}`; anything else is kept as written.
    pub fn expand(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (before, from_brace) = rest.split_at(open);
            out.push_str(before);
            let value = from_brace.find('}').and_then(|close| {
                let name = from_brace.get(1..close)?;
                let value = match name {
                    "domain" => self.domain.to_string(),
                    "clientIp" => self.client_ip.to_string(),
                    "path" => self.path.to_string(),
                    "query" => self.query.to_string(),
                    "port" => self.port.to_string(),
                    _ => return None,
                };
                Some((value, close + 1))
            });
            match value {
                Some((value, used)) => {
                    out.push_str(&value);
                    rest = from_brace.get(used..).unwrap_or_default();
                }
                None => {
                    out.push('{');
                    rest = from_brace.get(1..).unwrap_or_default();
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), beside those the
/// `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Strips hop-by-hop headers. `Upgrade` goes too; a WebSocket handshake sets its own.
/// `TE: trailers` is kept for HTTP/2 backends (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// What the X-Forwarded-* headers say about one request.
pub struct Forwarded<'a> {
    pub client_ip: IpAddr,
    /// The peer may vouch for an incoming chain (trustedProxies, proxyProtocol.accept).
    pub trusted: bool,
    /// `http` or `https`, as the client reached the proxy.
    pub proto: &'static str,
    /// The Host the client asked for, as sent.
    pub host: Option<&'a str>,
    pub port: u16,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Sets X-Forwarded-For/-Proto/-Host/-Port. From a trusted peer the incoming chain is kept and
/// the peer appended (and its -Proto/-Host/-Port kept); from anyone else they are replaced.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    let client = forwarded.client_ip.to_string();
    let chain = forwarded
        .trusted
        .then(|| {
            let parts: Vec<&str> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        })
        .flatten();
    let xff = match chain {
        Some(chain) => format!("{chain}, {client}"),
        None => client,
    };
    if let Ok(value) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let mut set = |name: HeaderName, value: Option<HeaderValue>| {
        if forwarded.trusted && headers.contains_key(&name) {
            return;
        }
        match value {
            Some(value) => {
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    };
    set(
        X_FORWARDED_PROTO,
        Some(HeaderValue::from_static(forwarded.proto)),
    );
    set(
        X_FORWARDED_HOST,
        forwarded.host.and_then(|h| HeaderValue::from_str(h).ok()),
    );
    set(X_FORWARDED_PORT, Some(HeaderValue::from(forwarded.port)));
}

/// Applies a route's header rules in order: a value sets (templates expanded), `None` removes.
/// A value that expands to something not allowed in a header (a newline from a path) is
/// skipped rather than sent.
pub fn apply_rules(
    headers: &mut HeaderMap,
    rules: &[(String, Option<String>)],
    templates: &Templates<'_>,
) {
    for (name, value) in rules {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        match value {
            None => {
                headers.remove(name);
            }
            Some(template) => {
                if let Ok(value) = HeaderValue::from_str(&templates.expand(template)) {
                    headers.insert(name, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn templates() -> Templates<'static> {
        Templates {
            domain: "example.com",
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            path: "/a/b",
            query: "?x=1",
            port: 8080,
        }
    }

    #[test]
    fn templates_expand_known_names_only() {
        let t = templates();
        assert_eq!(
            t.expand("https://{domain}{path}{query}"),
            "https://example.com/a/b?x=1"
        );
        assert_eq!(t.expand("{clientIp}:{port}"), "10.0.0.7:8080");
        assert_eq!(t.expand("{nope} {domain"), "{nope} {domain");
        assert_eq!(t.expand("{}{{domain}}"), "{}{example.com}");
    }

    #[test]
    fn hop_by_hop_headers_go_and_named_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-secret").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::UPGRADE).is_none());
        assert_eq!(
            h.get(header::TE).map(|v| v.as_bytes()),
            Some(&b"trailers"[..])
        );
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn forwarded_chain_is_kept_only_from_trusted_peers() {
        let mut forwarded = Forwarded {
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            trusted: false,
            proto: "https",
            host: Some("example.com:8443"),
            port: 8443,
        };
        let incoming = || {
            let mut h = HeaderMap::new();
            h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
            h
        };
        let mut h = incoming();
        set_forwarded(&mut h, &forwarded);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_FORWARDED_HOST], "example.com:8443");
        assert_eq!(h[&X_FORWARDED_PORT], "8443");
        forwarded.trusted = true;
        let mut h = incoming();
        set_forwarded(&mut h, &forwarded);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.0.0.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn rules_set_and_remove_in_order() {
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("backend"));
        let rules = vec![
            ("server".to_string(), None),
            ("x-origin".to_string(), Some("{domain}{path}".to_string())),
            ("x-bad".to_string(), Some("a\nb".to_string())),
        ];
        apply_rules(&mut h, &rules, &templates());
        assert!(h.get("server").is_none());
        assert_eq!(h["x-origin"], "example.com/a/b");
        assert!(h.get("x-bad").is_none());
    }
}
