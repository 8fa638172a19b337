//! The HTTP engine: HTTP/1.1 and HTTP/2 from clients, routed per request, forwarded over pooled
//! backend connections; WebSocket upgrades end in the core relay, under the same lifecycle as
//! every other connection.

mod activity;
mod body;
pub mod detect;
mod forward;
pub mod h1_guard;
pub(crate) mod headers;
mod respond;
mod service;
pub(crate) mod upstream;
mod websocket;
pub mod ws_ping;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admission::{Refusal, Ticket};
use crate::conn::lifecycle::CloseReason;
use crate::conn::relay::{RelayEnd, RelayStream};
use crate::conn::{Peers, Shared};
use crate::router::RouteEntry;
use activity::{Activity, Watched};
use h1_guard::{GuardedIo, Verdicts};

/// Any client stream the engine serves: TCP, TLS, with or without bytes read ahead.
pub(crate) type ClientStream = Box<dyn RelayStream>;

/// The client stream exactly as hyper's HTTP/1.1 server holds it (an upgrade gives it back).
type H1Io = TokioIo<GuardedIo<Watched<ClientStream>>>;

/// HTTP settings from the config.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    /// Longest wait for a backend's response head (then 504); zero = none.
    pub response_timeout: Duration,
    /// Longest wait for a client's request head, and for the next one on a keep-alive
    /// connection; zero = none.
    pub headers_timeout: Duration,
    pub max_request_head: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// The client connection, as every request on it sees it.
pub(crate) struct ConnInfo {
    pub id: u64,
    pub peers: Peers,
    /// Accepted at; lifetime limits count from here.
    pub at: Instant,
    /// Came in over TLS the proxy terminated.
    pub terminated: bool,
    pub sni: Option<String>,
}

/// How an HTTP connection ended, for its close log line.
pub(crate) struct HttpEnd {
    pub reason: CloseReason,
    pub error: Option<io::ErrorKind>,
    pub detail: Option<String>,
    /// The route and backend of the last request.
    pub route: Option<Arc<RouteEntry>>,
    pub backend: Option<SocketAddr>,
    /// Bytes relayed by WebSocket tunnels.
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

type Tunnel = Pin<Box<dyn Future<Output = RelayEnd> + Send>>;

/// What every request handler of one connection shares.
struct ConnCtx {
    shared: Arc<Shared>,
    info: ConnInfo,
    client_ip: IpAddr,
    /// The peer may vouch for an X-Forwarded-For chain.
    trusted: bool,
    /// Rejections found by the HTTP/1.1 head guard, one per request (HTTP/1.1 only).
    verdicts: Option<Verdicts>,
    tunnels: mpsc::UnboundedSender<Tunnel>,
    requests: AtomicU64,
    last: Mutex<(Option<Arc<RouteEntry>>, Option<SocketAddr>)>,
    /// The routes that admitted this connection (each counts it once toward its connection
    /// rate), and the last admission refusal, which ends an HTTP/1.1 connection.
    admitted: Mutex<Admitted>,
}

#[derive(Default)]
struct Admitted {
    routes: Vec<Arc<RouteEntry>>,
    refused: u64,
    closing: Option<CloseReason>,
}

impl ConnCtx {
    fn note(&self, route: &Arc<RouteEntry>, backend: Option<SocketAddr>) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        *last = (Some(Arc::clone(route)), backend);
    }

    /// The route's admission for one request. The connection counts toward the route's
    /// connection rate at its first *admitted* request there: a refused request leaves the
    /// connection uncounted, so its next request is still a new connection's (an HTTP/2
    /// connection over the rate stays refused on every stream). Decided under the
    /// connection's lock, so concurrent streams count the connection once.
    fn admit(&self, route: &Arc<RouteEntry>) -> Result<Ticket, Refusal> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        let new_connection = !admitted.routes.iter().any(|r| Arc::ptr_eq(r, route));
        let ticket = route.admission.admit(self.client_ip, new_connection)?;
        if new_connection {
            admitted.routes.push(Arc::clone(route));
        }
        Ok(ticket)
    }

    /// Records a refused request; `closes`: its answer ends the connection, with `reason`.
    fn refused(&self, reason: CloseReason, closes: bool) {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        admitted.refused += 1;
        if closes {
            admitted.closing = Some(reason);
        }
    }
}

/// A served connection hyper can be asked to wind down.
trait ServedConn: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> ServedConn for http1::UpgradeableConnection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, E> ServedConn for http2::Connection<I, S, E>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Serves HTTP on one client connection until it ends, then waits for its WebSocket tunnels.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: ClientStream,
    protocol: Protocol,
    info: ConnInfo,
) -> HttpEnd {
    let client_ip = info.peers.client_ip();
    // The hop that sent these bytes vouches for the chain: a trusted proxy, or a peer trusted
    // to send PROXY headers.
    let hop = info.peers.socket_peer().ip().to_canonical();
    let trusted = shared.http.trusted_proxies.iter().any(|n| n.contains(&hop))
        || shared
            .proxy_protocol
            .as_ref()
            .is_some_and(|p| p.accept.iter().any(|n| n.contains(&hop)));
    let activity = Activity::new(info.at);
    let stream = Watched::new(stream, Arc::clone(&activity));
    let (tunnel_tx, tunnel_rx) = mpsc::unbounded_channel();
    let verdicts = (protocol == Protocol::Http1).then(Verdicts::default);
    let ctx = Arc::new(ConnCtx {
        shared: Arc::clone(&shared),
        info,
        client_ip,
        trusted,
        verdicts: verdicts.clone(),
        tunnels: tunnel_tx,
        requests: AtomicU64::new(0),
        last: Mutex::new((None, None)),
        admitted: Mutex::new(Admitted::default()),
    });
    let handler = Arc::clone(&ctx);
    let service = service_fn(move |request| {
        // Taken here, in request order, before the handler runs.
        let rejection = handler.verdicts.as_ref().and_then(Verdicts::next);
        service::handle(Arc::clone(&handler), request, rejection)
    });
    let settings = &shared.http;
    let served = match protocol {
        Protocol::Http1 => {
            let io = GuardedIo::new(
                stream,
                settings.max_request_head,
                verdicts.unwrap_or_default(),
            );
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(
                    (!settings.headers_timeout.is_zero()).then_some(settings.headers_timeout),
                )
                // The guard enforces the head size; hyper's buffer only needs room for it.
                .max_buf_size(settings.max_request_head.saturating_add(8192).max(16384));
            let conn = builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            drive(&ctx, conn, &activity, tunnel_rx).await
        }
        Protocol::Http2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .enable_connect_protocol()
                .max_header_list_size(u32::try_from(settings.max_request_head).unwrap_or(u32::MAX));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            drive(&ctx, conn, &activity, tunnel_rx).await
        }
    };
    let (route, backend) = {
        let last = ctx.last.lock().unwrap_or_else(PoisonError::into_inner);
        (last.0.clone(), last.1)
    };
    let requests = ctx.requests.load(Ordering::Relaxed);
    let (refused, closing) = {
        let admitted = ctx.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        (admitted.refused, admitted.closing)
    };
    let mut summary = format!("{requests} requests");
    if refused > 0 {
        summary.push_str(&format!(", {refused} refused"));
    }
    let reason = match (closing, served.reason) {
        // The refusal's answer asked the client to close; its leaving is the refusal's doing.
        (Some(refusal), CloseReason::ClientFin | CloseReason::BackendFin) => refusal,
        _ => served.reason,
    };
    HttpEnd {
        route,
        backend,
        reason,
        detail: Some(match served.detail {
            Some(detail) => format!("{summary}; {detail}"),
            None => summary,
        }),
        ..served
    }
}

/// Runs a served connection under the connection limits (inactivity, lifetime, shutdown)
/// beside its WebSocket tunnels; once the connection ends, waits for the tunnels.
async fn drive<C: ServedConn>(
    ctx: &ConnCtx,
    conn: C,
    activity: &Activity,
    mut tunnel_rx: mpsc::UnboundedReceiver<Tunnel>,
) -> HttpEnd {
    let shared = &ctx.shared;
    let limits = shared.relay.limits;
    let lifetime = limits.lifetime.map(|d| ctx.info.at + d);
    // Boxed so that it can be dropped (its socket closed) before the tunnels are waited for.
    let mut conn = Box::pin(conn);
    let mut tunnels: JoinSet<RelayEnd> = JoinSet::new();
    let mut draining = false;
    let mut end = HttpEnd {
        reason: CloseReason::ClientFin,
        error: None,
        detail: None,
        route: None,
        backend: None,
        client_to_backend: 0,
        backend_to_client: 0,
    };
    let mut last_tunnel: Option<RelayEnd> = None;
    loop {
        let inactivity = limits.inactivity.map(|d| activity.last() + d);
        let (deadline, reason) = [
            inactivity.map(|at| (at, CloseReason::Inactivity)),
            lifetime.map(|at| (at, CloseReason::Lifetime)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
        .unwrap_or((
            ctx.info.at + Duration::from_secs(86400 * 365),
            CloseReason::Lifetime,
        ));
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    classify_error(&e, &mut end);
                } else if let Some(kind) = activity.read_error() {
                    end.reason = CloseReason::ClientReset;
                    end.error = Some(kind);
                } else if draining {
                    end.reason = CloseReason::Shutdown;
                }
                break;
            }
            _ = shared.signals.draining.cancelled(), if !draining => {
                // Idle keep-alive connections close at once (HTTP/2: GOAWAY); requests in
                // flight finish.
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = shared.signals.close.cancelled() => {
                end.reason = CloseReason::Shutdown;
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                // Activity may have moved the inactivity deadline meanwhile.
                let now = Instant::now();
                let due = match reason {
                    CloseReason::Inactivity => inactivity.is_some_and(|_| {
                        limits.inactivity.is_some_and(|d| activity.last() + d <= now)
                    }),
                    _ => true,
                };
                if due {
                    end.reason = reason;
                    break;
                }
            }
            Some(tunnel) = tunnel_rx.recv() => {
                tunnels.spawn(tunnel);
            }
            Some(done) = tunnels.join_next(), if !tunnels.is_empty() => {
                if let Ok(done) = done {
                    last_tunnel = Some(done);
                }
            }
        }
    }
    drop(conn);
    // Tunnels handed over before the connection ended (an HTTP/1.1 upgrade ends it) still run.
    while let Ok(tunnel) = tunnel_rx.try_recv() {
        tunnels.spawn(tunnel);
    }
    while let Some(done) = tunnels.join_next().await {
        if let Ok(done) = done {
            last_tunnel = Some(done);
        }
    }
    if let Some(tunnel) = last_tunnel {
        end.reason = tunnel.reason;
        end.error = tunnel.error;
        end.client_to_backend = tunnel.client_to_backend;
        end.backend_to_client = tunnel.backend_to_client;
    }
    end
}

fn classify_error(e: &hyper::Error, end: &mut HttpEnd) {
    end.detail = Some(e.to_string());
    end.reason = if e.is_timeout() {
        CloseReason::Inactivity
    } else if e.is_parse() || e.is_parse_too_large() {
        CloseReason::BadRequest
    } else {
        let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>());
        end.error = io.map(io::Error::kind);
        match io.map(io::Error::kind) {
            Some(io::ErrorKind::TimedOut) => CloseReason::Inactivity,
            Some(_) => CloseReason::ClientReset,
            None if e.is_incomplete_message() || e.is_closed() => CloseReason::ClientFin,
            None => CloseReason::ClientReset,
        }
    };
}
