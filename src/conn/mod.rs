//! One client connection from accept to close: route, connect, relay, log. Every path ends in
//! the same relay (`relay.rs`) under the same limits (`lifecycle.rs`).

mod first_bytes;
mod job;
pub mod lifecycle;
pub(crate) mod prefixed;
pub mod registry;
pub mod relay;
pub(crate) mod tls;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::admission::{Admission, Refusal, Ticket};
use crate::config::{ActionProtocol, ProxyProtocolAccept};
use crate::http::detect::{self, Detected};
use crate::http::{ClientStream, ConnInfo as HttpConnInfo, Protocol as HttpProtocol};
use crate::proxy_protocol::{self, Addresses, ReadError, Received};
use crate::router::{FirstBytes, RouteEntry, Router, TlsHandling};
use crate::tls::TlsVersion;
use crate::tls::client_hello::ClientHello;
use first_bytes::{Refused, Sniffed};
use job::{RelayJob, Routed};
use lifecycle::CloseReason;
use prefixed::Prefixed;
use registry::{ConnGuard, Registry};
use relay::{CloseSignals, RelayConfig, RelayStream};
use tls::TlsSide;

/// TCP options applied to both sockets of every connection.
#[derive(Debug, Clone, Copy)]
pub struct SocketOptions {
    pub no_delay: bool,
    /// `None` = SO_KEEPALIVE off; else the idle time before the first probe.
    pub keep_alive: Option<Duration>,
}

impl SocketOptions {
    /// Sets the options on a connected socket, or on a listener: sockets it accepts inherit
    /// them, which saves three system calls per connection on the accept path.
    pub fn apply<S: std::os::fd::AsFd>(&self, socket: &S) {
        // Failures here leave the kernel defaults in place; they are not worth a connection.
        // New sockets start with both off, so only "on" costs a system call.
        let sock = socket2::SockRef::from(socket);
        if self.no_delay {
            let _ = sock.set_tcp_nodelay(true);
        }
        if let Some(idle) = self.keep_alive {
            let _ = sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
        }
    }
}

/// What every connection task of one proxy shares.
pub struct Shared {
    pub router: Router,
    pub relay: RelayConfig,
    pub connect_timeout: Duration,
    /// Bounds reading the first bytes and the client's TLS handshake; zero = none.
    pub initial_data_timeout: Duration,
    /// Most bytes read from a client before it is routed.
    pub max_pending: usize,
    pub socket_options: SocketOptions,
    pub signals: CloseSignals,
    pub registry: Arc<Registry>,
    pub max_connections: usize,
    pub http: crate::http::HttpSettings,
    /// The global address lists and per-IP limits.
    pub admission: Admission,
    /// Peers trusted to send a PROXY header.
    pub proxy_protocol: Option<ProxyProtocolAccept>,
}

/// A client's addresses as the proxy uses them.
#[derive(Debug, Clone, Copy)]
pub struct Peers {
    /// The real client: a trusted PROXY header's source, else the socket's peer. Routing
    /// (`clientIp`), limits, X-Forwarded-For and logs use it.
    pub client: SocketAddr,
    /// Where the client connected to: a PROXY header's destination, else the local address.
    pub destination: SocketAddr,
    /// The socket's own peer, when a PROXY header named another client.
    pub via: Option<SocketAddr>,
    /// The socket's local address: its port selects the routes.
    pub local: SocketAddr,
}

impl Peers {
    fn direct(peer: SocketAddr, local: SocketAddr) -> Peers {
        Peers {
            client: peer,
            destination: local,
            via: None,
            local,
        }
    }

    /// IPv4-mapped IPv6 as IPv4, so one client is one address whatever the listener family.
    pub fn client_ip(&self) -> IpAddr {
        self.client.ip().to_canonical()
    }

    /// The peer this socket is connected to.
    pub fn socket_peer(&self) -> SocketAddr {
        self.via.unwrap_or(self.client)
    }

    /// What a PROXY header toward a backend says.
    pub fn proxy_addresses(&self) -> Addresses {
        Addresses {
            source: self.client,
            destination: self.destination,
        }
    }
}

/// The facts logged when a connection ends.
struct ConnEnd {
    /// The client a trusted PROXY header named, when it named one.
    proxied: Option<SocketAddr>,
    route: Option<Arc<RouteEntry>>,
    /// The name the ClientHello asked for.
    sni: Option<String>,
    backend: Option<SocketAddr>,
    reason: CloseReason,
    error: Option<io::ErrorKind>,
    /// Why a connection ended before its relay, in words (bad ClientHello, handshake error).
    detail: Option<String>,
    client_to_backend: u64,
    backend_to_client: u64,
}

impl ConnEnd {
    fn new(reason: CloseReason) -> ConnEnd {
        ConnEnd {
            proxied: None,
            route: None,
            sni: None,
            backend: None,
            reason,
            error: None,
            detail: None,
            client_to_backend: 0,
            backend_to_client: 0,
        }
    }

    fn refused(refused: Refused) -> ConnEnd {
        ConnEnd {
            error: refused.error,
            detail: Some(refused.detail),
            ..ConnEnd::new(refused.reason)
        }
    }

    fn with_route(mut self, route: &Arc<RouteEntry>) -> ConnEnd {
        self.route = Some(Arc::clone(route));
        self
    }

    fn refusal(refusal: Refusal) -> ConnEnd {
        ConnEnd {
            detail: Some(refusal.detail().into()),
            ..ConnEnd::new(refusal.reason())
        }
    }
}

pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub at: Instant,
    pub guard: ConnGuard,
}

/// Serves one accepted connection to its end: routes it (at once, or on its ClientHello),
/// terminates TLS where the route says so, connects, relays, logs, and records the reason.
///
/// An async block, not an `async fn`: its captures are its only copy of them (an `async fn`
/// keeps its arguments twice), and this future is what every connection carries while idle.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve(shared: Arc<Shared>, mut conn: Accepted) -> impl Future<Output = ()> + Send {
    async move {
        // Routing runs boxed and is gone once it returns; a TCP relay then runs in its place
        // (`job.rs`).
        let id = conn.guard.id();
        let routing = route_and_relay(&shared, conn.stream, conn.peer, conn.local, conn.at, id);
        let mut routed = Box::pin(routing).await;
        let end = routed.finish(&shared).await;
        // Every stream is dropped (sockets closed) before the guard takes the connection off
        // the registry.
        drop(routed);
        log_end(id, conn.peer, conn.local, conn.at, &end);
        conn.guard.set_reason(end.reason);
        drop(conn.guard);
    }
}

/// The PROXY header (from trusted peers), then global admission, then routing.
async fn route_and_relay(
    shared: &Arc<Shared>,
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    at: Instant,
    id: u64,
) -> Routed<Prefixed<TcpStream>> {
    let mut prefix = Vec::new();
    let mut peers = Peers::direct(peer, local);
    if let Some(accept) = &shared.proxy_protocol
        && accept
            .accept
            .iter()
            .any(|n| n.contains(&peer.ip().to_canonical()))
    {
        let deadline = deadline_from(
            at,
            shared.initial_data_timeout,
            CloseReason::InitialDataTimeout,
        );
        let reading = proxy_protocol::read_header(&mut client, &mut prefix);
        let refused = match shared.bounded(at, deadline, reading).await {
            Ok(Ok(Received::Header(Some(addresses)))) => {
                peers.client = addresses.source;
                peers.destination = addresses.destination;
                peers.via = Some(peer);
                None
            }
            Ok(Ok(Received::Header(None))) => None,
            Ok(Ok(Received::NoHeader)) if accept.required => Some(ConnEnd {
                detail: Some("no PROXY header from a peer in proxyProtocol.accept".into()),
                ..ConnEnd::new(CloseReason::Blocked)
            }),
            Ok(Ok(Received::NoHeader)) => None,
            Ok(Err(ReadError::Closed)) => Some(ConnEnd {
                detail: Some(ReadError::Closed.to_string()),
                ..ConnEnd::new(CloseReason::ClientFin)
            }),
            Ok(Err(ReadError::Io(e))) => {
                return Routed::Ended(ConnEnd {
                    error: Some(e.kind()),
                    detail: Some("error while reading the PROXY header".into()),
                    ..ConnEnd::new(CloseReason::ClientReset)
                });
            }
            Ok(Err(e @ ReadError::Invalid(_))) => Some(ConnEnd {
                detail: Some(e.to_string()),
                ..ConnEnd::new(CloseReason::BadRequest)
            }),
            Err(reason) => Some(ConnEnd::new(reason)),
        };
        if let Some(end) = refused {
            shared.close_unrelayed(&mut client, None).await;
            return end.into();
        }
    }
    let proxied = peers.via.map(|_| peers.client);
    // Held for the connection's whole life: the client's global per-IP counts.
    let ticket = match shared.admission.admit_connection(peers.client_ip()) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            shared.close_unrelayed(&mut client, None).await;
            return Routed::Ended(ConnEnd {
                proxied,
                ..ConnEnd::refusal(refusal)
            });
        }
    };
    match route_connection(shared, client, prefix, peers, at, id).await {
        Routed::Ended(end) => Routed::Ended(ConnEnd { proxied, ..end }),
        Routed::Relay(mut job) => {
            job.proxied = proxied;
            job.tickets.1 = Some(ticket);
            Routed::Relay(job)
        }
    }
}

async fn route_connection(
    shared: &Arc<Shared>,
    mut client: TcpStream,
    mut prefix: Vec<u8>,
    peers: Peers,
    at: Instant,
    id: u64,
) -> Routed<Prefixed<TcpStream>> {
    let client_ip = peers.client_ip();
    let port = peers.local.port();
    if !shared.router.reads_first(port) {
        let Some(route) = shared.router.select(port, client_ip, FirstBytes::NotRead) else {
            shared.close_unrelayed(&mut client, None).await;
            return ConnEnd::new(CloseReason::NoRoute).into();
        };
        let client = Prefixed::new(prefix, client);
        return admit_and_relay(shared, route, client, &peers, (at, id), None, None).await;
    }

    // The first bytes decide; all of them are kept for the backend or the TLS acceptor.
    let deadline = deadline_from(
        at,
        shared.initial_data_timeout,
        CloseReason::InitialDataTimeout,
    );
    let reading = first_bytes::read_client_hello(&mut client, &mut prefix, shared.max_pending);
    let sniffed = match shared.bounded(at, deadline, reading).await {
        Ok(Ok(sniffed)) => sniffed,
        Ok(Err(refused)) => {
            shared.close_unrelayed(&mut client, None).await;
            return ConnEnd::refused(refused).into();
        }
        Err(reason) => {
            shared.close_unrelayed(&mut client, None).await;
            return ConnEnd::new(reason).into();
        }
    };
    let (hello, first) = match &sniffed {
        Sniffed::Tls(hello) => (Some(hello), FirstBytes::Tls(hello)),
        Sniffed::NotTls => (None, FirstBytes::NotTls),
    };
    if hello.is_none() && shared.router.speaks_http(port) {
        let detecting = detect::read_until_known(&mut client, &mut prefix, shared.max_pending);
        let detected = shared.bounded(at, deadline, detecting).await;
        let protocol = match shared.read_outcome(detected, &mut client).await {
            Ok(Detected::Http1) => Some(HttpProtocol::Http1),
            Ok(Detected::Http2) => Some(HttpProtocol::Http2),
            Ok(_) => None,
            Err(end) => return end.into(),
        };
        // `PROXY ` reads as an HTTP/1 method and space: a v1 header is refused below, not
        // answered by the HTTP engine.
        let protocol = protocol.filter(|_| !proxy_protocol::starts_with_signature(&prefix));
        if let Some(protocol) = protocol {
            let info = HttpConnInfo {
                id,
                peers,
                at,
                terminated: false,
                sni: None,
            };
            let stream: ClientStream = Box::new(Prefixed::new(prefix, client));
            return serve_http(shared, stream, protocol, info).await.into();
        }
    }
    if hello.is_none() {
        // A signature that arrives in pieces is still told from other bytes.
        let reading = read_past_partial_signature(&mut client, &mut prefix);
        let read = shared.bounded(at, deadline, reading).await;
        if let Err(end) = shared.read_outcome(read, &mut client).await {
            return end.into();
        }
    }
    if hello.is_none() && proxy_protocol::starts_with_signature(&prefix) {
        // Only peers in proxyProtocol.accept may say who the client is.
        shared.close_unrelayed(&mut client, None).await;
        return ConnEnd {
            detail: Some("PROXY header from a peer not in proxyProtocol.accept".into()),
            ..ConnEnd::new(CloseReason::Blocked)
        }
        .into();
    }
    let sni = hello.and_then(|h| h.server_name.clone());
    let Some(route) = shared.router.select(port, client_ip, first) else {
        let end = match hello {
            Some(_) => {
                shared
                    .close_unrelayed(&mut client, Some(&tls::UNRECOGNIZED_NAME_ALERT))
                    .await;
                ConnEnd::new(CloseReason::NoRoute)
            }
            None => {
                shared.close_unrelayed(&mut client, None).await;
                ConnEnd::new(CloseReason::NotTls)
            }
        };
        return ConnEnd { sni, ..end }.into();
    };
    let client = Prefixed::new(prefix, client);
    // A refused client whose ClientHello was read hears why before the close.
    let alert = hello.map(|_| &tls::ACCESS_DENIED_ALERT[..]);
    let routed = match &route.tls {
        TlsHandling::Forward => {
            admit_and_relay(shared, route, client, &peers, (at, id), alert, None).await
        }
        TlsHandling::Terminate {
            acceptor,
            reencrypt,
        } => {
            let mut client = client;
            if !route.admission.lists_admit(client_ip) {
                shared.close_unrelayed(&mut client, alert).await;
                return ConnEnd {
                    sni,
                    ..ConnEnd::refusal(Refusal::Blocked).with_route(route)
                }
                .into();
            }
            if let Some(detail) = hello.and_then(unusable_version) {
                // rustls would answer a TLS 1.1 ClientHello with TLS 1.2; refuse it plainly.
                shared
                    .close_unrelayed(&mut client, Some(&tls::PROTOCOL_VERSION_ALERT))
                    .await;
                return ConnEnd {
                    sni,
                    detail: Some(detail.into()),
                    ..ConnEnd::new(CloseReason::TlsHandshakeFailed).with_route(route)
                }
                .into();
            }
            // Boxed, like every branch taken by some connections only: a task's future is as
            // large as its largest state, and an idle passthrough connection should not carry
            // room for a TLS server.
            let terminating = async {
                match accept_tls(shared, acceptor, client, at, deadline).await {
                    Ok(client) => {
                        let info = HttpConnInfo {
                            id,
                            peers,
                            at,
                            terminated: true,
                            sni: sni.clone(),
                        };
                        let reencrypt = reencrypt.as_ref().map(|c| (c, sni.as_deref()));
                        after_handshake(shared, route, client, info, deadline, reencrypt).await
                    }
                    Err(end) => end.with_route(route),
                }
            };
            Routed::Ended(Box::pin(terminating).await)
        }
    };
    routed.with_sni(sni)
}

/// Reads while `prefix` is only the start of a PROXY signature (12 bytes at most in all), so
/// that `proxy_protocol::starts_with_signature` can decide; stops at end of stream.
async fn read_past_partial_signature<S: AsyncRead + Unpin>(
    stream: &mut S,
    prefix: &mut Vec<u8>,
) -> io::Result<()> {
    while proxy_protocol::is_partial_signature(prefix) {
        let mut more = [0u8; 16];
        let n = stream.read(&mut more).await?;
        if n == 0 {
            break;
        }
        prefix.extend_from_slice(more.get(..n).unwrap_or_default());
    }
    Ok(())
}

/// After a terminating handshake: HTTP when ALPN says so, when the route forces it, or when
/// the first plaintext bytes are an HTTP request; otherwise the plaintext is relayed as TCP.
async fn after_handshake(
    shared: &Arc<Shared>,
    route: &Arc<RouteEntry>,
    mut client: TlsSide<Prefixed<TcpStream>>,
    info: HttpConnInfo,
    deadline: StepDeadline,
    reencrypt: Option<(&TlsConnector, Option<&str>)>,
) -> ConnEnd {
    let (at, id, peers) = (info.at, info.id, info.peers);
    let alpn = match &client.0 {
        tokio_rustls::TlsStream::Server(s) => s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
        tokio_rustls::TlsStream::Client(_) => None,
    };
    let forced = route.protocol == Some(ActionProtocol::Http) || route.needs_http();
    let protocol = match alpn.as_deref() {
        Some(b"h2") => Some(HttpProtocol::Http2),
        Some(b"http/1.1") => Some(HttpProtocol::Http1),
        _ if route.protocol == Some(ActionProtocol::Tcp) && !forced => None,
        _ => {
            let mut prefix = Vec::new();
            let detecting = detect::read_until_known(&mut client, &mut prefix, shared.max_pending);
            let detected = shared.bounded(at, deadline, detecting).await;
            let detected = match shared.read_outcome(detected, &mut client).await {
                Ok(detected) => detected,
                Err(end) => return end.with_route(route),
            };
            let client = Prefixed::new(prefix, client);
            let protocol = match detected {
                Detected::Http2 => HttpProtocol::Http2,
                Detected::Http1 => HttpProtocol::Http1,
                // hyper answers what it cannot parse with 400.
                _ if forced => HttpProtocol::Http1,
                _ => {
                    let started = (at, id);
                    let routing =
                        admit_and_relay(shared, route, client, &peers, started, None, reencrypt);
                    return routing.await.finish(shared).await;
                }
            };
            let stream: ClientStream = Box::new(client);
            return serve_http(shared, stream, protocol, info).await;
        }
    };
    match protocol {
        Some(protocol) => {
            let stream: ClientStream = Box::new(client);
            serve_http(shared, stream, protocol, info).await
        }
        None => {
            let routing = admit_and_relay(shared, route, client, &peers, (at, id), None, reencrypt);
            routing.await.finish(shared).await
        }
    }
}

/// The route's admission for a TCP relay, then the relay. A refused client hears `alert`
/// (access_denied when its ClientHello was read and not terminated) before the close.
async fn admit_and_relay<C: RelayStream>(
    shared: &Shared,
    route: &Arc<RouteEntry>,
    mut client: C,
    peers: &Peers,
    started: (Instant, u64),
    alert: Option<&[u8]>,
    reencrypt: Option<(&TlsConnector, Option<&str>)>,
) -> Routed<C> {
    match route.admission.admit(peers.client_ip(), true) {
        Ok(ticket) => {
            connect_and_relay(shared, route, client, peers, (started, ticket), reencrypt).await
        }
        Err(refusal) => {
            shared.close_unrelayed(&mut client, alert).await;
            ConnEnd::refusal(refusal).with_route(route).into()
        }
    }
}

/// The HTTP engine, boxed (see `route_connection`).
async fn serve_http(
    shared: &Arc<Shared>,
    stream: ClientStream,
    protocol: HttpProtocol,
    info: HttpConnInfo,
) -> ConnEnd {
    http_end(
        Box::pin(crate::http::serve(
            Arc::clone(shared),
            stream,
            protocol,
            info,
        ))
        .await,
    )
}

fn http_end(end: crate::http::HttpEnd) -> ConnEnd {
    ConnEnd {
        proxied: None,
        route: end.route,
        sni: None,
        backend: end.backend,
        reason: end.reason,
        error: end.error,
        detail: end.detail,
        client_to_backend: end.client_to_backend,
        backend_to_client: end.backend_to_client,
    }
}

/// Why a terminating route cannot serve this ClientHello: it offers nothing it may negotiate.
fn unusable_version(hello: &ClientHello) -> Option<&'static str> {
    match hello.highest_version() {
        None => Some("the client offers no TLS version this proxy knows"),
        Some(v) if v < TlsVersion::Tls12 => Some("the client offers nothing newer than TLS 1.1"),
        Some(_) => None,
    }
}

/// The client's TLS handshake, within the same deadline as its ClientHello.
async fn accept_tls(
    shared: &Shared,
    acceptor: &TlsAcceptor,
    client: Prefixed<TcpStream>,
    at: Instant,
    deadline: StepDeadline,
) -> Result<TlsSide<Prefixed<TcpStream>>, ConnEnd> {
    let handshake = acceptor.accept(client).into_fallible();
    match shared.bounded(at, deadline, handshake).await {
        Ok(Ok(stream)) => Ok(TlsSide(tokio_rustls::TlsStream::Server(stream))),
        Ok(Err((e, mut client))) => {
            shared.close_unrelayed(&mut client, None).await;
            Err(ConnEnd {
                error: Some(e.kind()),
                detail: Some(e.to_string()),
                ..ConnEnd::new(CloseReason::TlsHandshakeFailed)
            })
        }
        // The unfinished handshake is dropped with the future; the socket closes with it.
        Err(reason) => Err(ConnEnd::new(reason)),
    }
}

/// Connects the route's backend. A plain backend's relay is returned as a job for `serve` to
/// run; a re-encrypting one does its TLS handshake and relays here.
async fn connect_and_relay<C: RelayStream>(
    shared: &Shared,
    route: &Arc<RouteEntry>,
    mut client: C,
    peers: &Peers,
    ((at, id), ticket): ((Instant, u64), Ticket),
    reencrypt: Option<(&TlsConnector, Option<&str>)>,
) -> Routed<C> {
    // Boxed while it runs (name resolution, attempts): the relay that follows is what an
    // idle connection keeps, so its future should not be sized for this.
    let connecting = Box::pin(route.endpoints.connect(
        peers.local.port(),
        peers.client_ip(),
        shared.connect_timeout,
        Some(peers.proxy_addresses()),
    ));
    // The lease counts the connection for least-connections while it lives.
    let (backend, endpoint, backend_addr) = match shared.bounded(at, None, connecting).await {
        Ok(Ok(connected)) => (connected.stream, connected.lease, connected.address),
        Ok(Err(failed)) => {
            tracing::debug!(
                conn = id, route = %route.name, attempts = failed.attempts,
                error = %failed.last_error, "no backend endpoint reachable"
            );
            shared.close_unrelayed(&mut client, None).await;
            return ConnEnd::new(CloseReason::ConnectFailed)
                .with_route(route)
                .into();
        }
        Err(reason) => {
            shared.close_unrelayed(&mut client, None).await;
            return ConnEnd::new(reason).with_route(route).into();
        }
    };
    shared.socket_options.apply(&backend);
    let job = RelayJob {
        client,
        backend,
        backend_addr,
        route: Arc::clone(route),
        at,
        lease: endpoint,
        tickets: (ticket, None),
        proxied: None,
        sni: None,
    };
    match reencrypt {
        None => Routed::Relay(job),
        Some(reencrypt) => {
            Routed::Ended(Box::pin(reencrypt_and_relay(shared, job, id, reencrypt)).await)
        }
    }
}

/// TLS to the backend (bounded by connectionTimeout), then the relay. Boxed by the caller: a TLS
/// stream is large, and only re-encrypting connections need room for one.
async fn reencrypt_and_relay<C: RelayStream>(
    shared: &Shared,
    job: RelayJob<C>,
    id: u64,
    (connector, sni): (&TlsConnector, Option<&str>),
) -> ConnEnd {
    let RelayJob {
        mut client,
        backend,
        backend_addr,
        route,
        at,
        lease,
        tickets,
        ..
    } = job;
    let Some(name) = crate::tls::backend::server_name(sni, &lease.host()) else {
        shared.close_unrelayed(&mut client, None).await;
        return ConnEnd {
            detail: Some("no valid name to send as SNI to the backend".into()),
            ..ConnEnd::new(CloseReason::ConnectFailed).with_route(&route)
        };
    };
    let deadline = deadline_from(
        Instant::now(),
        shared.connect_timeout,
        CloseReason::ConnectFailed,
    );
    let handshake = connector.connect(name, backend);
    match shared.bounded(at, deadline, handshake).await {
        Ok(Ok(backend)) => {
            let job = RelayJob {
                client,
                backend: TlsSide(tokio_rustls::TlsStream::Client(backend)),
                backend_addr,
                route,
                at,
                lease,
                tickets,
                proxied: None,
                sni: None,
            };
            let mut job = job;
            job.run(shared).await
        }
        Ok(Err(e)) => {
            tracing::debug!(conn = id, route = %route.name, error = %e, "backend TLS handshake failed");
            shared.close_unrelayed(&mut client, None).await;
            ConnEnd {
                backend: backend_addr,
                error: Some(e.kind()),
                detail: Some(format!("backend TLS handshake: {e}")),
                ..ConnEnd::new(CloseReason::ConnectFailed).with_route(&route)
            }
        }
        Err(reason) => {
            shared.close_unrelayed(&mut client, None).await;
            ConnEnd {
                backend: backend_addr,
                detail: Some("backend TLS handshake did not finish".into()),
                ..ConnEnd::new(reason).with_route(&route)
            }
        }
    }
}

/// When a step before the relay must end, and the reason it then ends with.
type StepDeadline = Option<(Instant, CloseReason)>;

/// `from + limit` with `reason`, or no deadline for a limit of zero.
fn deadline_from(from: Instant, limit: Duration, reason: CloseReason) -> StepDeadline {
    (!limit.is_zero()).then(|| (from + limit, reason))
}

impl Shared {
    /// Runs a step of a connection that has no relay yet, until the step's own deadline, the
    /// connection's lifetime cap (a hard cap from the accept on every path), or a shutdown.
    async fn bounded<T>(
        &self,
        at: Instant,
        deadline: StepDeadline,
        step: impl Future<Output = T>,
    ) -> Result<T, CloseReason> {
        let lifetime = (self.relay.limits.lifetime).map(|d| (at + d, CloseReason::Lifetime));
        let limit = [deadline, lifetime]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at);
        let expired = async {
            match limit {
                Some((at, reason)) => {
                    tokio::time::sleep_until(at).await;
                    reason
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            out = step => Ok(out),
            reason = expired => Err(reason),
            _ = self.signals.close.cancelled() => Err(CloseReason::Shutdown),
        }
    }

    /// What a bounded read from the client before routing comes to: its value, or the end of a
    /// client that reset (`client_reset`) or ran out of time (closed as `close_unrelayed` does).
    async fn read_outcome<T, S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        outcome: Result<io::Result<T>, CloseReason>,
        client: &mut S,
    ) -> Result<T, ConnEnd> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ConnEnd {
                error: Some(e.kind()),
                ..ConnEnd::new(CloseReason::ClientReset)
            }),
            Err(reason) => {
                self.close_unrelayed(client, None).await;
                Err(ConnEnd::new(reason))
            }
        }
    }

    /// Ends a client that never reached a backend with a FIN (after `alert`, if any): what it
    /// already sent is read and discarded until its own FIN (closing with unread bytes would
    /// make the kernel send RST), for at most FLUSH_ON_CLOSE_GRACE, or until an abort.
    async fn close_unrelayed<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        client: &mut S,
        alert: Option<&[u8]>,
    ) {
        let closing = async {
            if let Some(alert) = alert {
                let _ = client.write_all(alert).await;
            }
            let _ = client.shutdown().await;
            // On the heap: an array here would make every connection's future 4 KiB larger.
            let mut sink = vec![0u8; 4096];
            while let Ok(n) = client.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        tokio::select! {
            _ = closing => {}
            _ = tokio::time::sleep(relay::FLUSH_ON_CLOSE_GRACE) => {}
            _ = self.signals.abort.cancelled() => {}
        }
    }
}

fn log_end(id: u64, peer: SocketAddr, local: SocketAddr, at: Instant, end: &ConnEnd) {
    tracing::debug!(
        conn = id,
        route = %end.route.as_ref().map_or("-", |r| r.name.as_str()),
        client = %end.proxied.unwrap_or(peer),
        via = %end.proxied.map_or_else(|| "-".to_string(), |_| peer.to_string()),
        listener = %local,
        sni = %end.sni.as_deref().unwrap_or("-"),
        tls = %end.route.as_ref().map_or("-", |r| r.tls_mode_name()),
        backend = %end.backend.map_or_else(|| "-".to_string(), |a| a.to_string()),
        bytes_in = end.client_to_backend,
        bytes_out = end.backend_to_client,
        duration_ms = at.elapsed().as_millis() as u64,
        reason = %end.reason,
        error = ?end.error,
        detail = %end.detail.as_deref().unwrap_or("-"),
        "connection closed"
    );
}

/// Refuses a connection over the global maxConnections at accept (reason `limit`).
pub fn refuse_over_limit(mut conn: Accepted) {
    conn.guard.set_reason(CloseReason::Limit);
    log_end(
        conn.guard.id(),
        conn.peer,
        conn.local,
        conn.at,
        &ConnEnd::new(CloseReason::Limit),
    );
}
