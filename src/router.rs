//! The route table, compiled once from the config: for each local port, the enabled routes that
//! listen on it, by priority (higher first) and then file order.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::admission::RouteAdmission;
use crate::config::{
    ActionKind, ActionProtocol, HeaderRules, IpPattern, Route, TlsMode, TlsVersion,
    WebSocketOptions,
};
use crate::connect::Endpoints;
use crate::http::upstream::Upstream;
use crate::tls::certs::CertStore;
use crate::tls::client_hello::ClientHello;

/// What a route does with a TLS connection it matched.
pub enum TlsHandling {
    /// Bytes go to the backend untouched: `tls: passthrough`, or no `tls` at all.
    Forward,
    /// The proxy completes the handshake; with a connector it re-encrypts toward the backend.
    Terminate {
        acceptor: TlsAcceptor,
        reencrypt: Option<TlsConnector>,
    },
}

/// A route as the data path uses it.
pub struct RouteEntry {
    pub name: String,
    client_ip: Vec<IpPattern>,
    domains: Vec<String>,
    tls_versions: Vec<TlsVersion>,
    /// As configured, for logs: `None` when the route has no `tls`.
    tls_mode: Option<TlsMode>,
    pub tls: TlsHandling,
    pub endpoints: Arc<Endpoints>,
    /// HTTP only: a case-sensitive glob over the path.
    path: Option<String>,
    /// HTTP only: lowercase name → case-insensitive glob over the value.
    headers: Vec<(String, String)>,
    pub action: ActionKind,
    pub protocol: Option<ActionProtocol>,
    pub header_rules: HeaderRules,
    pub websocket: WebSocketOptions,
    /// Pooled HTTP connections to the endpoints (forward routes only).
    pub upstream: Option<Arc<Upstream>>,
    /// `security`: address lists and limits, and on HTTP a request rate and credentials.
    pub admission: RouteAdmission,
    /// Settings only HTTP can honour: header rules, WebSocket pings, HTTP/2 targets, a request
    /// rate limit, credentials.
    http_options: bool,
}

/// What the proxy has read from the client when it picks a route.
#[derive(Clone, Copy)]
pub enum FirstBytes<'a> {
    /// Nothing: the port connects at once.
    NotRead,
    Tls(&'a ClientHello),
    /// Bytes that are not TLS.
    NotTls,
}

impl RouteEntry {
    /// The route's TLS mode as the config names it; `-` without `tls`.
    pub fn tls_mode_name(&self) -> &'static str {
        match self.tls_mode {
            None => "-",
            Some(TlsMode::Passthrough) => "passthrough",
            Some(TlsMode::Terminate) => "terminate",
            Some(TlsMode::TerminateAndReencrypt) => "terminate-and-reencrypt",
        }
    }

    /// Reading the first bytes is needed to decide about this route.
    fn reads_first(&self) -> bool {
        !self.domains.is_empty()
            || !self.tls_versions.is_empty()
            || !matches!(self.tls, TlsHandling::Forward)
            || self.needs_http()
    }

    /// Only an HTTP request can match or be answered: path or header conditions, or an
    /// action the proxy answers itself.
    pub fn needs_http(&self) -> bool {
        self.path.is_some()
            || !self.headers.is_empty()
            || self.action != ActionKind::Forward
            || self.http_options
    }

    pub fn terminates(&self) -> bool {
        matches!(self.tls, TlsHandling::Terminate { .. })
    }

    /// On a plain (not TLS) connection this route is chosen per HTTP request.
    fn serves_plain_http(&self) -> bool {
        self.tls_mode.is_none() && self.tls_versions.is_empty()
    }

    fn matches_request(&self, client_ip: IpAddr, request: &HttpRequestFacts<'_>) -> bool {
        self.ip_ok(client_ip)
            && (self.domains.is_empty()
                || request
                    .host
                    .is_some_and(|h| self.domains.iter().any(|d| glob_match(d, h))))
            && self
                .path
                .as_deref()
                .is_none_or(|p| glob_match_case(p, request.path))
            && self.headers.iter().all(|(name, pattern)| {
                request
                    .headers
                    .get_all(name.as_str())
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| glob_match(pattern, v)))
            })
    }

    fn ip_ok(&self, client_ip: IpAddr) -> bool {
        self.client_ip.is_empty() || self.client_ip.iter().any(|p| ip_matches(p, client_ip))
    }

    fn matches(&self, client_ip: IpAddr, first: FirstBytes<'_>) -> bool {
        self.ip_ok(client_ip)
            && match first {
                FirstBytes::NotRead => true,
                // A route that names any TLS handling wants TLS; only plain routes take the rest.
                FirstBytes::NotTls => !self.reads_first() && self.tls_mode.is_none(),
                // Without terminating, HTTP conditions and local answers cannot see inside TLS.
                FirstBytes::Tls(hello) => {
                    (self.terminates() || !self.needs_http()) && self.matches_hello(hello)
                }
            }
    }

    fn matches_hello(&self, hello: &ClientHello) -> bool {
        // Without SNI only routes without domains, or with the catch-all `*`, match.
        let domain_ok = self.domains.is_empty()
            || match hello.server_name.as_deref() {
                Some(name) => self.domains.iter().any(|d| glob_match(d, name)),
                None => self.domains.iter().any(|d| d == "*"),
            };
        let version_ok = self.tls_versions.is_empty()
            || hello
                .highest_version()
                .is_some_and(|v| self.tls_versions.contains(&v));
        domain_ok && version_ok
    }
}

/// What an HTTP request offers to route on.
pub struct HttpRequestFacts<'a> {
    /// Host or :authority without the port, lowercase.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The routes of one port.
struct PortRoutes {
    routes: Vec<Arc<RouteEntry>>,
    /// Some route needs the ClientHello (SNI, version, termination) to decide.
    reads_first: bool,
    /// Some route routes plaintext by Host, path or headers, or answers HTTP itself.
    speaks_http: bool,
}

/// A route whose TLS settings could not be put in place at start.
#[derive(Debug, thiserror::Error)]
#[error("route {route}: {message}")]
pub struct TlsSetupError {
    pub route: String,
    pub message: String,
}

pub struct Router {
    by_port: BTreeMap<u16, PortRoutes>,
    certificates: Option<Arc<CertStore>>,
}

impl Router {
    /// Compiles the enabled routes; loads the certificates of the terminating ones.
    pub fn new(routes: &[Route]) -> Result<Router, TlsSetupError> {
        let mut ordered: Vec<&Route> = routes.iter().filter(|r| r.enabled).collect();
        // A stable sort keeps file order among equal priorities.
        ordered.sort_by_key(|r| std::cmp::Reverse(r.priority));
        let certificates = load_certificates(&ordered)?;
        let mut by_port: BTreeMap<u16, PortRoutes> = BTreeMap::new();
        let mut next_cert = 0;
        for route in ordered {
            let (tls, backend_tls) = tls_handling(route, certificates.as_ref(), &mut next_cert)?;
            let endpoints = Arc::new(Endpoints::new(
                &route.action.targets,
                &route.action.load_balancing,
            ));
            let upstream = match route.action.kind {
                ActionKind::Forward => Some(Arc::new(Upstream::new(
                    route,
                    Arc::clone(&endpoints),
                    backend_tls.as_ref(),
                ))),
                _ => None,
            };
            let entry = Arc::new(RouteEntry {
                name: route.name.clone(),
                client_ip: route.matcher.client_ip.clone(),
                domains: route.matcher.domains.clone(),
                tls_versions: route.matcher.tls_versions.clone(),
                tls_mode: route.action.tls.as_ref().map(|t| t.mode),
                tls,
                endpoints,
                path: route.matcher.path.clone(),
                headers: route.matcher.headers.clone(),
                action: route.action.kind.clone(),
                protocol: route.action.protocol,
                header_rules: route.action.headers.clone(),
                websocket: route.action.websocket,
                upstream,
                admission: RouteAdmission::new(&route.security),
                http_options: route.security.rate_limit.is_some()
                    || route.security.basic_auth.is_some()
                    || !route.action.headers.request.is_empty()
                    || !route.action.headers.response.is_empty()
                    || !route.action.websocket.ping_interval.is_zero()
                    || route
                        .action
                        .targets
                        .iter()
                        .any(|t| t.protocol == crate::config::TargetProtocol::H2),
            });
            for &port in &route.matcher.ports {
                let port_routes = by_port.entry(port).or_insert_with(|| PortRoutes {
                    routes: Vec::new(),
                    reads_first: false,
                    speaks_http: false,
                });
                port_routes.reads_first |= entry.reads_first();
                port_routes.speaks_http |=
                    entry.tls_mode.is_none() && (entry.needs_http() || !entry.domains.is_empty());
                port_routes.routes.push(Arc::clone(&entry));
            }
        }
        Ok(Router {
            by_port,
            certificates,
        })
    }

    /// Every port some enabled route listens on, ascending.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_port.keys().copied()
    }

    /// Whether connections on `port` are routed on their first bytes (else they connect at
    /// once, which server-first protocols need).
    pub fn reads_first(&self, port: u16) -> bool {
        self.by_port.get(&port).is_some_and(|p| p.reads_first)
    }

    /// Whether plaintext on `port` that looks like HTTP goes to the HTTP engine.
    pub fn speaks_http(&self, port: u16) -> bool {
        self.by_port.get(&port).is_some_and(|p| p.speaks_http)
    }

    /// Every route (each once), for tasks that run beside the routes such as health checks.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<RouteEntry>> + '_ {
        let mut seen = std::collections::HashSet::new();
        self.by_port
            .values()
            .flat_map(|p| p.routes.iter())
            .filter(move |r| seen.insert(Arc::as_ptr(r)))
    }

    /// The route for one HTTP request: on a terminated connection among the terminating
    /// routes of the port, on a plain one among the routes without TLS.
    pub fn select_http(
        &self,
        port: u16,
        client_ip: IpAddr,
        terminated: bool,
        request: &HttpRequestFacts<'_>,
    ) -> Option<&Arc<RouteEntry>> {
        self.by_port.get(&port)?.routes.iter().find(|route| {
            let kind_ok = if terminated {
                route.terminates()
            } else {
                route.serves_plain_http()
            };
            kind_ok && route.matches_request(client_ip, request)
        })
    }

    /// The certificates served by terminating routes, if any.
    pub(crate) fn certificates(&self) -> Option<&Arc<CertStore>> {
        self.certificates.as_ref()
    }

    /// The first route on `port` whose every given field matches.
    pub fn select(
        &self,
        port: u16,
        client_ip: IpAddr,
        first: FirstBytes<'_>,
    ) -> Option<&Arc<RouteEntry>> {
        self.by_port
            .get(&port)?
            .routes
            .iter()
            .find(|route| route.matches(client_ip, first))
    }
}

fn terminates(route: &Route) -> bool {
    route
        .action
        .tls
        .as_ref()
        .is_some_and(|tls| tls.mode != TlsMode::Passthrough)
}

/// One store for every terminating route's certificate, in route order, so that a name any of
/// them serves is found whichever route the connection matched.
fn load_certificates(ordered: &[&Route]) -> Result<Option<Arc<CertStore>>, TlsSetupError> {
    let terminating: Vec<&Route> = ordered.iter().copied().filter(|r| terminates(r)).collect();
    if terminating.is_empty() {
        return Ok(None);
    }
    let mut sources = Vec::new();
    for route in &terminating {
        match route
            .action
            .tls
            .as_ref()
            .and_then(|t| t.certificate.clone())
        {
            Some(source) => sources.push(source),
            None => {
                return Err(TlsSetupError {
                    route: route.name.clone(),
                    message: "terminating TLS needs a certificate".into(),
                });
            }
        }
    }
    CertStore::load(sources)
        .map(Some)
        .map_err(|(index, message)| TlsSetupError {
            route: terminating
                .get(index)
                .map_or_else(String::new, |r| r.name.clone()),
            message,
        })
}

/// How the route treats TLS, and the backend TLS settings when it re-encrypts.
fn tls_handling(
    route: &Route,
    certificates: Option<&Arc<CertStore>>,
    next_cert: &mut usize,
) -> Result<(TlsHandling, Option<Arc<rustls::ClientConfig>>), TlsSetupError> {
    let Some(tls) = route.action.tls.as_ref().filter(|_| terminates(route)) else {
        return Ok((TlsHandling::Forward, None));
    };
    let setup_error = |message: String| TlsSetupError {
        route: route.name.clone(),
        message,
    };
    let store = certificates.ok_or_else(|| setup_error("no certificate loaded".into()))?;
    let mut server_config = rustls::ServerConfig::clone(&store.server_config(*next_cert));
    *next_cert += 1;
    // Offered unless the route relays the plaintext as TCP; a client that picks neither
    // is told apart by its first bytes.
    if route.action.protocol != Some(ActionProtocol::Tcp) {
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    let acceptor = TlsAcceptor::from(Arc::new(server_config));
    let backend = match tls.mode {
        TlsMode::TerminateAndReencrypt => Some(
            crate::tls::backend::client_config(tls.ca_file.as_deref(), tls.reject_unauthorized)
                .map_err(setup_error)?,
        ),
        _ => None,
    };
    let handling = TlsHandling::Terminate {
        acceptor,
        reencrypt: backend.as_ref().map(|c| TlsConnector::from(Arc::clone(c))),
    };
    Ok((handling, backend))
}

pub(crate) fn ip_matches(pattern: &IpPattern, ip: IpAddr) -> bool {
    match pattern {
        IpPattern::Net(net) => net.contains(&ip),
        IpPattern::Glob(glob) => glob_match(glob, &ip.to_string()),
    }
}

/// Case-insensitive glob over the whole text: `*` matches any run of characters (dots
/// included), everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), true)
}

/// As `glob_match`, but case-sensitive (paths).
pub fn glob_match_case(pattern: &str, text: &str) -> bool {
    glob(pattern.as_bytes(), text.as_bytes(), false)
}

fn glob(p: &[u8], t: &[u8], ignore_case: bool) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and which text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == t[ti] || (ignore_case && c.eq_ignore_ascii_case(&t[ti])) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn glob_rules() {
        assert!(glob_match("*.example.com", "a.example.com"));
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("192.168.1.*", "192.168.1.20"));
        assert!(!glob_match("192.168.1.*", "192.168.10.2x"));
        assert!(glob_match("EXAMPLE.com", "example.COM"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match_case("/api/*", "/api/v1/users"));
        assert!(!glob_match_case("/api/*", "/API/v1"));
        assert!(!glob_match_case("/api/*", "/api"));
    }

    proptest! {
        #[test]
        fn glob_without_star_is_case_insensitive_equality(a in "[a-z0-9.]{0,12}", b in "[a-z0-9.]{0,12}") {
            prop_assert_eq!(glob_match(&a, &b), a.eq_ignore_ascii_case(&b));
        }

        #[test]
        fn star_prefix_matches_any_suffix_extension(prefix in "[a-z.]{0,8}", suffix in "[a-z.]{0,8}") {
            let text = format!("{prefix}{suffix}");
            let pattern = format!("*{suffix}");
            prop_assert!(glob_match(&pattern, &text));
        }
    }
}
