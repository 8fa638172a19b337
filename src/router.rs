//! The route table, compiled once from the config: for each local port, the enabled routes that
//! listen on it, by priority (higher first) and then file order.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
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

    /// On a terminated connection only terminating routes serve requests, on a plain one only
    /// routes without TLS.
    fn matches_http(
        &self,
        client_ip: IpAddr,
        terminated: bool,
        request: &HttpRequestFacts<'_>,
    ) -> bool {
        let kind_ok = if terminated {
            self.terminates()
        } else {
            self.serves_plain_http()
        };
        kind_ok && self.matches_request(client_ip, request)
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
    /// Which of `routes` a name can match, so that choosing a route tries only those.
    by_domain: DomainIndex,
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
                    by_domain: DomainIndex::default(),
                    reads_first: false,
                    speaks_http: false,
                });
                port_routes.reads_first |= entry.reads_first();
                port_routes.speaks_http |=
                    entry.tls_mode.is_none() && (entry.needs_http() || !entry.domains.is_empty());
                port_routes
                    .by_domain
                    .add(port_routes.routes.len(), &entry.domains);
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
        self.by_port
            .get(&port)?
            .candidates(request.host)
            .find(|route| route.matches_http(client_ip, terminated, request))
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
        let port_routes = self.by_port.get(&port)?;
        let name = match first {
            // Domains play no part before anything is read.
            FirstBytes::NotRead => {
                return port_routes
                    .routes
                    .iter()
                    .find(|route| route.matches(client_ip, first));
            }
            // Only routes without domains take bytes that are not TLS.
            FirstBytes::NotTls => None,
            FirstBytes::Tls(hello) => hello.server_name.as_deref(),
        };
        port_routes
            .candidates(name)
            .find(|route| route.matches(client_ip, first))
    }
}

impl PortRoutes {
    /// The routes that may match `name` (SNI or Host; `None` when the client sent none), in
    /// priority order; the caller still checks each in full.
    fn candidates<'a>(&'a self, name: Option<&str>) -> impl Iterator<Item = &'a Arc<RouteEntry>> {
        self.by_domain
            .candidates(name)
            .filter_map(|position| self.routes.get(position))
    }
}

/// A port's routes by their `domains`, as positions in its route list. Every list is
/// ascending, so merging the lists a name hits keeps priority order. Keys follow `glob_match`:
/// ASCII case folded, nothing else normalised (a trailing dot is part of the name).
#[derive(Default)]
struct DomainIndex {
    /// Patterns without `*`, lowercase: they match only the name itself.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// `*.rest` with no other `*`, by `rest` lowercase: `*` takes any run, dots included and
    /// empty too, so the pattern matches exactly the names that end in `.rest`.
    wildcard: HashMap<Box<str>, Vec<usize>>,
    /// Routes without domains (any name, or none) and routes with any other pattern (`*`,
    /// `api-*.example.com`, …): tried whatever the name.
    always: Vec<usize>,
}

/// How a `domains` pattern is indexed.
enum DomainKey<'a> {
    Exact(&'a str),
    /// The part after `*.`.
    Wildcard(&'a str),
    Other,
}

fn domain_key(pattern: &str) -> DomainKey<'_> {
    match pattern.strip_prefix("*.") {
        Some(rest) if !rest.contains('*') => DomainKey::Wildcard(rest),
        _ if !pattern.contains('*') => DomainKey::Exact(pattern),
        _ => DomainKey::Other,
    }
}

impl DomainIndex {
    /// Indexes the route at `position`; positions must come in ascending order.
    fn add(&mut self, position: usize, domains: &[String]) {
        let keys: Vec<DomainKey<'_>> = domains.iter().map(|d| domain_key(d)).collect();
        if keys.is_empty() || keys.iter().any(|k| matches!(k, DomainKey::Other)) {
            self.always.push(position);
            return;
        }
        for key in keys {
            let (map, key) = match key {
                DomainKey::Exact(name) => (&mut self.exact, name),
                DomainKey::Wildcard(rest) => (&mut self.wildcard, rest),
                DomainKey::Other => continue,
            };
            let list = map.entry(key.to_ascii_lowercase().into()).or_default();
            // Two patterns of one route may share a key (`a.com`, `A.com`).
            if list.last() != Some(&position) {
                list.push(position);
            }
        }
    }

    fn candidates(&self, name: Option<&str>) -> Candidates<'_> {
        let mut candidates = Candidates::default();
        candidates.push(&self.always);
        // Without a name only `always` can match: an indexed route has domains, none of them `*`.
        let Some(name) = name else {
            return candidates;
        };
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if let Some(list) = self.exact.get(name.as_ref()) {
            candidates.push(list);
        }
        if !self.wildcard.is_empty() {
            // `rest` may hold dots itself, and `*` may take nothing: try what follows each dot.
            for (at, _) in name.match_indices('.') {
                if let Some(list) = name.get(at + 1..).and_then(|rest| self.wildcard.get(rest)) {
                    candidates.push(list);
                }
            }
        }
        candidates
    }
}

/// Lists a name hits that fit without allocating: `always`, an exact name and a few wildcards.
const INLINE_LISTS: usize = 8;

/// Ascending lists of route positions, merged into one ascending run without repeats. Each
/// list is its own cursor: a position is taken off the front of every list that holds it.
#[derive(Default)]
struct Candidates<'a> {
    inline: [&'a [usize]; INLINE_LISTS],
    /// Only a name that ends in more configured wildcard suffixes than fit inline allocates.
    more: Vec<&'a [usize]>,
}

impl<'a> Candidates<'a> {
    fn push(&mut self, list: &'a [usize]) {
        if list.is_empty() {
            return;
        }
        match self.inline.iter_mut().find(|slot| slot.is_empty()) {
            Some(slot) => *slot = list,
            None => self.more.push(list),
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let lowest = self
            .inline
            .iter()
            .chain(&self.more)
            .filter_map(|list| list.first())
            .min()
            .copied()?;
        for list in self.inline.iter_mut().chain(&mut self.more) {
            if let Some((&first, rest)) = list.split_first()
                && first == lowest
            {
                *list = rest;
            }
        }
        Some(lowest)
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
    use crate::config::Config;
    use crate::tls::TlsVersion;
    use crate::tls::certs::tests::TestCa;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::sync::OnceLock;

    const TLS_PORT: u16 = 443;
    const HTTP_PORT: u16 = 80;
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// One leaf for every terminating route the tests build.
    fn certificate() -> &'static (String, String) {
        static CERTIFICATE: OnceLock<(String, String)> = OnceLock::new();
        CERTIFICATE.get_or_init(|| TestCa::new().leaf(&["example.com"]))
    }

    /// A forward route; `tls` is `None`, `"passthrough"` or `"terminate"`.
    fn route(name: &str, ports: &[u16], domains: &[&str], tls: Option<&str>) -> Value {
        let mut route = json!({
            "name": name,
            "match": {"ports": ports, "domains": domains},
            "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": 9000}]},
        });
        if let Some(mode) = tls {
            let (cert, key) = certificate();
            route["action"]["tls"] = match mode {
                "passthrough" => json!({"mode": mode}),
                _ => json!({"mode": mode, "certificate": {"cert": cert, "key": key}}),
            };
        }
        route
    }

    fn passthrough(name: &str, domains: &[&str]) -> Value {
        route(name, &[TLS_PORT], domains, Some("passthrough"))
    }

    fn plain(name: &str, domains: &[&str]) -> Value {
        route(name, &[HTTP_PORT], domains, None)
    }

    fn build(routes: Vec<Value>) -> Router {
        let (config, _warnings) =
            Config::from_value(&json!({ "routes": routes })).expect("test config");
        Router::new(&config.routes).expect("router")
    }

    fn hello(name: Option<&str>, versions: &[TlsVersion]) -> ClientHello {
        ClientHello {
            server_name: name.map(str::to_string),
            alpn: Vec::new(),
            versions: versions.to_vec(),
        }
    }

    /// Asserts the route each name gets, in order.
    fn expect(
        router: &Router,
        pick: fn(&Router, Option<&str>) -> Option<String>,
        cases: &[(Option<&str>, Option<&str>)],
    ) {
        for (name, want) in cases {
            assert_eq!(pick(router, *name).as_deref(), *want, "name {name:?}");
        }
    }

    fn by_sni(router: &Router, name: Option<&str>) -> Option<String> {
        let hello = hello(name, &[TlsVersion::Tls13, TlsVersion::Tls12]);
        router
            .select(TLS_PORT, CLIENT, FirstBytes::Tls(&hello))
            .map(|r| r.name.clone())
    }

    fn by_host(router: &Router, host: Option<&str>) -> Option<String> {
        let headers = http::HeaderMap::new();
        let request = HttpRequestFacts {
            host,
            path: "/",
            headers: &headers,
        };
        router
            .select_http(HTTP_PORT, CLIENT, false, &request)
            .map(|r| r.name.clone())
    }

    /// The route table as it was before the index: every route of the port, in order.
    fn linear_select<'a>(
        router: &'a Router,
        port: u16,
        client_ip: IpAddr,
        first: FirstBytes<'_>,
    ) -> Option<&'a Arc<RouteEntry>> {
        router
            .by_port
            .get(&port)?
            .routes
            .iter()
            .find(|route| route.matches(client_ip, first))
    }

    fn linear_select_http<'a>(
        router: &'a Router,
        port: u16,
        client_ip: IpAddr,
        terminated: bool,
        request: &HttpRequestFacts<'_>,
    ) -> Option<&'a Arc<RouteEntry>> {
        router
            .by_port
            .get(&port)?
            .routes
            .iter()
            .find(|route| route.matches_http(client_ip, terminated, request))
    }

    #[test]
    fn exact_names_are_found_wherever_the_route_is() {
        let routes = (0..500)
            .map(|i| passthrough(&format!("r{i}"), &[&format!("svc{i}.example.com")]))
            .collect();
        let router = build(routes);
        expect(
            &router,
            by_sni,
            &[
                (Some("svc0.example.com"), Some("r0")),
                (Some("svc499.example.com"), Some("r499")),
            ],
        );
        assert_eq!(by_sni(&router, Some("svc500.example.com")), None);
        assert_eq!(by_sni(&router, Some("x.svc1.example.com")), None);
        assert_eq!(by_sni(&router, Some("svc1.example.co")), None);
        assert_eq!(by_sni(&router, None), None);
    }

    #[test]
    fn wildcards_take_any_depth_but_not_the_bare_suffix() {
        let router = build(vec![
            passthrough("deep", &["*.a.example.com"]),
            passthrough("wide", &["*.example.com"]),
        ]);
        expect(
            &router,
            by_sni,
            &[
                (Some("x.a.example.com"), Some("deep")),
                (Some("y.x.a.example.com"), Some("deep")),
                (Some("a.example.com"), Some("wide")),
                (Some("b.c.example.com"), Some("wide")),
            ],
        );
        assert_eq!(by_sni(&router, Some("example.com")), None);
        assert_eq!(by_sni(&router, Some("xexample.com")), None);
        // `*` may take nothing: a name that starts with the dot matches.
        assert_eq!(
            by_sni(&router, Some(".example.com")).as_deref(),
            Some("wide")
        );
    }

    #[test]
    fn other_patterns_are_tried_for_every_name() {
        let router = build(vec![
            passthrough("api", &["api-*.example.com"]),
            passthrough("suffix", &["*example.org"]),
            passthrough("inner", &["a.*.example.net"]),
            passthrough("any", &["*"]),
        ]);
        expect(
            &router,
            by_sni,
            &[
                (Some("api-v2.example.com"), Some("api")),
                (Some("api-.example.com"), Some("api")),
                (Some("example.org"), Some("suffix")),
                (Some("myexample.org"), Some("suffix")),
                (Some("a.b.c.example.net"), Some("inner")),
                (Some("elsewhere.test"), Some("any")),
                (None, Some("any")),
            ],
        );
    }

    #[test]
    fn priority_holds_across_kinds_of_pattern() {
        let router = build(vec![
            passthrough("wildcard", &["*.example.com"]),
            passthrough("exact", &["a.example.com"]),
            passthrough("glob", &["b*.example.com"]),
            passthrough("exact-b", &["b.example.org"]),
            passthrough("no-domains", &[]),
            passthrough("late-exact", &["c.example.org"]),
        ]);
        expect(
            &router,
            by_sni,
            &[
                (Some("a.example.com"), Some("wildcard")),
                (Some("b.example.org"), Some("exact-b")),
                // A route without domains ahead of an exact name takes it.
                (Some("c.example.org"), Some("no-domains")),
            ],
        );

        let mut later_but_higher = passthrough("exact-first", &["a.example.com"]);
        later_but_higher["priority"] = json!(5);
        let router = build(vec![
            passthrough("wildcard", &["*.example.com"]),
            later_but_higher,
        ]);
        expect(
            &router,
            by_sni,
            &[
                (Some("a.example.com"), Some("exact-first")),
                (Some("b.example.com"), Some("wildcard")),
            ],
        );
    }

    #[test]
    fn without_sni_only_routes_without_domains_or_the_catch_all_match() {
        let named = build(vec![
            passthrough("exact", &["a.example.com"]),
            passthrough("wildcard", &["*.example.com"]),
            passthrough("glob", &["a*"]),
            passthrough("double-star", &["**"]),
        ]);
        assert_eq!(by_sni(&named, None), None);
        let catch_all = build(vec![
            passthrough("exact", &["a.example.com"]),
            passthrough("any", &["example.org", "*"]),
        ]);
        assert_eq!(by_sni(&catch_all, None).as_deref(), Some("any"));
        let open = build(vec![
            passthrough("exact", &["a.example.com"]),
            passthrough("open", &[]),
        ]);
        assert_eq!(by_sni(&open, None).as_deref(), Some("open"));
        assert_eq!(
            by_sni(&open, Some("a.example.com")).as_deref(),
            Some("exact")
        );
    }

    #[test]
    fn names_and_patterns_compare_without_ascii_case() {
        let router = build(vec![
            passthrough("exact", &["Shop.Example.COM"]),
            passthrough("wildcard", &["*.EXAMPLE.org"]),
        ]);
        for name in ["shop.example.com", "SHOP.EXAMPLE.COM", "sHoP.eXaMpLe.CoM"] {
            assert_eq!(
                by_sni(&router, Some(name)).as_deref(),
                Some("exact"),
                "{name}"
            );
        }
        assert_eq!(
            by_sni(&router, Some("Www.Example.Org")).as_deref(),
            Some("wildcard")
        );
    }

    #[test]
    fn a_trailing_dot_is_part_of_the_name() {
        let router = build(vec![
            plain("exact", &["a.example.com"]),
            plain("dotted", &["b.example.com."]),
        ]);
        assert_eq!(
            by_host(&router, Some("a.example.com")).as_deref(),
            Some("exact")
        );
        assert_eq!(by_host(&router, Some("a.example.com.")), None);
        assert_eq!(
            by_host(&router, Some("b.example.com.")).as_deref(),
            Some("dotted")
        );
        assert_eq!(by_host(&router, Some("b.example.com")), None);
    }

    #[test]
    fn a_port_of_routes_without_domains() {
        let router = build(vec![
            route("tls", &[TLS_PORT], &[], Some("passthrough")),
            route("tcp", &[TLS_PORT], &[], None),
        ]);
        expect(
            &router,
            by_sni,
            &[(Some("a.example.com"), Some("tls")), (None, Some("tls"))],
        );
        let first = |bytes| {
            router
                .select(TLS_PORT, CLIENT, bytes)
                .map(|r| r.name.clone())
        };
        assert_eq!(first(FirstBytes::NotTls).as_deref(), Some("tcp"));
        assert_eq!(first(FirstBytes::NotRead).as_deref(), Some("tls"));
    }

    #[test]
    fn requests_route_by_host() {
        let router = build(vec![
            plain("exact", &["a.example.com"]),
            plain("wildcard", &["*.example.com"]),
            plain("any-host", &["*"]),
            plain("no-host", &[]),
        ]);
        expect(
            &router,
            by_host,
            &[
                (Some("a.example.com"), Some("exact")),
                (Some("A.EXAMPLE.COM"), Some("exact")),
                (Some("b.example.com"), Some("wildcard")),
                (Some("other.test"), Some("any-host")),
                // Unlike a ClientHello without SNI, a request without a host is not taken by `*`.
                (None, Some("no-host")),
            ],
        );
    }

    #[test]
    fn requests_on_terminated_connections_see_only_terminating_routes() {
        let router = build(vec![
            route("plain", &[TLS_PORT], &["a.example.com"], None),
            route(
                "terminated",
                &[TLS_PORT],
                &["a.example.com"],
                Some("terminate"),
            ),
        ]);
        let headers = http::HeaderMap::new();
        let request = HttpRequestFacts {
            host: Some("a.example.com"),
            path: "/",
            headers: &headers,
        };
        let pick = |terminated| {
            router
                .select_http(TLS_PORT, CLIENT, terminated, &request)
                .map(|r| r.name.clone())
        };
        assert_eq!(pick(true).as_deref(), Some("terminated"));
        assert_eq!(pick(false).as_deref(), Some("plain"));
    }

    #[test]
    fn a_name_that_hits_many_wildcards_merges_them_all() {
        // More wildcard suffixes of one name than the lists held without allocating.
        let labels: Vec<String> = (0..12).map(|i| format!("l{i}")).collect();
        let name = labels.join(".");
        let routes = (1..labels.len())
            .rev()
            .map(|from| {
                let suffix = labels.get(from..).unwrap_or_default().join(".");
                let mut route = passthrough(&format!("from-{from}"), &[&format!("*.{suffix}")]);
                // Only the last (widest) wildcard admits the client.
                if from != 1 {
                    route["match"]["clientIp"] = json!("10.9.9.9");
                }
                route
            })
            .collect();
        let router = build(routes);
        assert_eq!(by_sni(&router, Some(&name)).as_deref(), Some("from-1"));
        let index = &router.by_port[&TLS_PORT].by_domain;
        let positions: Vec<usize> = index.candidates(Some(&name)).collect();
        assert_eq!(positions, (0..labels.len() - 1).collect::<Vec<_>>());
    }

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

    /// A `domains` pattern over a small alphabet, so that routes and names collide often.
    fn domain_pattern() -> impl Strategy<Value = String> {
        let labels =
            || prop::collection::vec(prop::sample::select(vec!["a", "b", "A", "ab"]), 1..4);
        prop_oneof![
            labels().prop_map(|l| l.join(".")),
            labels().prop_map(|l| format!("*.{}", l.join("."))),
            prop::collection::vec(prop::sample::select(vec!["a", "b", "B", ".", "*"]), 1..7)
                .prop_map(|t| t.concat()),
        ]
        .prop_filter("a pattern the config accepts", |p| !p.contains(".."))
    }

    /// A name a client could send: SNI and Host may start with, end with or repeat dots.
    fn client_name() -> impl Strategy<Value = Option<String>> {
        prop::option::weighted(
            0.9,
            prop::collection::vec(prop::sample::select(vec!["a", "b", "A", "ab", "."]), 0..8)
                .prop_map(|t| t.concat()),
        )
    }

    #[derive(Debug, Clone)]
    struct RouteSpec {
        domains: Vec<String>,
        tls: Option<&'static str>,
        on_both_ports: bool,
        priority: i64,
        only_other_client: bool,
        tls12_only: bool,
        path: bool,
    }

    fn route_spec() -> impl Strategy<Value = RouteSpec> {
        (
            prop::option::weighted(0.8, prop::collection::vec(domain_pattern(), 1..3)),
            prop::sample::select(vec![None, Some("passthrough"), Some("terminate")]),
            any::<bool>(),
            0i64..3,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
        )
            .prop_map(
                |(domains, tls, on_both_ports, priority, only_other_client, tls12_only, path)| {
                    RouteSpec {
                        domains: domains.unwrap_or_default(),
                        tls,
                        on_both_ports,
                        priority,
                        only_other_client,
                        tls12_only,
                        // Passthrough never shows a path.
                        path: path && tls != Some("passthrough"),
                    }
                },
            )
    }

    fn spec_router(specs: &[RouteSpec]) -> Router {
        let routes = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let ports: &[u16] = if spec.on_both_ports {
                    &[HTTP_PORT, TLS_PORT]
                } else {
                    &[TLS_PORT]
                };
                let domains: Vec<&str> = spec.domains.iter().map(String::as_str).collect();
                let mut route = route(&format!("r{i}"), ports, &domains, spec.tls);
                route["priority"] = json!(spec.priority);
                if spec.only_other_client {
                    route["match"]["clientIp"] = json!(OTHER_CLIENT.to_string());
                }
                if spec.tls12_only {
                    route["match"]["tlsVersion"] = json!("TLSv1.2");
                }
                if spec.path {
                    route["match"]["path"] = json!("/a*");
                }
                route
            })
            .collect();
        build(routes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_index_picks_the_route_a_full_scan_picks(
            specs in prop::collection::vec(route_spec(), 0..14),
            names in prop::collection::vec(client_name(), 1..8),
        ) {
            let router = spec_router(&specs);
            let headers = http::HeaderMap::new();
            let name_of = |route: Option<&Arc<RouteEntry>>| route.map(|r| r.name.clone());
            for name in &names {
                for port in [HTTP_PORT, TLS_PORT] {
                    for client_ip in [CLIENT, OTHER_CLIENT] {
                        for versions in [&[TlsVersion::Tls13, TlsVersion::Tls12][..], &[TlsVersion::Tls12]] {
                            let hello = hello(name.as_deref(), versions);
                            for first in [FirstBytes::Tls(&hello), FirstBytes::NotTls, FirstBytes::NotRead] {
                                prop_assert_eq!(
                                    name_of(router.select(port, client_ip, first)),
                                    name_of(linear_select(&router, port, client_ip, first)),
                                    "select {:?} on {}", name, port
                                );
                            }
                        }
                        for (terminated, path) in [(false, "/a"), (false, "/b"), (true, "/a"), (true, "/")] {
                            let request = HttpRequestFacts { host: name.as_deref(), path, headers: &headers };
                            prop_assert_eq!(
                                name_of(router.select_http(port, client_ip, terminated, &request)),
                                name_of(linear_select_http(&router, port, client_ip, terminated, &request)),
                                "select_http {:?} {} on {}", name, path, port
                            );
                        }
                    }
                }
            }
        }
    }
}
