//! Pooled HTTP connections to one route's endpoints: HTTP/1.1 keep-alive connections (one
//! request at a time, back in the pool once a response has been read to its end) and one
//! multiplexed HTTP/2 connection per endpoint (per endpoint and SNI when re-encrypting). A
//! connection is closed after IDLE_TIMEOUT in the pool; a connection that carries a request, a
//! stream or a WebSocket is never idle, so never recycled by age.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::body::{BodyHold, Hold, ProxyBody};
use crate::config::{Route, TargetProtocol};
use crate::conn::SocketOptions;
use crate::conn::relay::RelayStream;
use crate::conn::tls::TlsSide;
use crate::connect::Endpoints;

/// An idle pooled backend connection is closed after this long (SPEC §5).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Most idle HTTP/1.1 connections kept per endpoint; more are closed when they come back.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// A backend connection's byte stream: TCP, or TLS (the relay's `TlsSide`) when the route
/// re-encrypts. One type, so that hyper can hand it back after a WebSocket upgrade.
pub type BackendStream = Box<dyn RelayStream>;

/// Whether a pooled connection is in use, and since when it has been idle.
#[derive(Default)]
struct ConnState {
    inner: Mutex<StateInner>,
    /// Wakes the connection's task when it becomes idle, so it can arm its idle timer.
    changed: Notify,
}

#[derive(Default)]
struct StateInner {
    busy: usize,
    idle_since: Option<Instant>,
    expired: bool,
}

impl ConnState {
    fn lock(&self) -> std::sync::MutexGuard<'_, StateInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks one more request on the connection, unless its idle timer already closed it.
    fn enter(&self) -> bool {
        let mut state = self.lock();
        if state.expired {
            return false;
        }
        state.busy += 1;
        state.idle_since = None;
        true
    }

    fn leave(&self) {
        let mut state = self.lock();
        state.busy = state.busy.saturating_sub(1);
        if state.busy == 0 {
            state.idle_since = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Ends the connection's task once it has been idle for IDLE_TIMEOUT.
    async fn expire_when_idle(&self) {
        loop {
            let idle_since = self.lock().idle_since;
            match idle_since {
                None => self.changed.notified().await,
                Some(since) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(since + IDLE_TIMEOUT) => {}
                        _ = self.changed.notified() => continue,
                    }
                    let mut state = self.lock();
                    if state.busy == 0 && state.idle_since == Some(since) {
                        state.expired = true;
                        return;
                    }
                }
            }
        }
    }
}

/// Marks its connection busy until dropped (with the response body, for HTTP/2 and for
/// HTTP/1.1 until the connection is back in the pool).
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.leave();
    }
}

pub enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

/// A connection ready for one request.
pub struct Checkout {
    pub sender: Sender,
    pub busy: Busy,
    /// It served requests before (a stale one may fail without the request being sent).
    pub reused: bool,
    pub backend: Option<std::net::SocketAddr>,
    /// The SNI it was opened with (re-encrypting routes), for pooling.
    pub sni: Option<ServerName<'static>>,
    /// It began with a PROXY header naming one client, so it serves no one else: never
    /// pooled, never shared.
    pub private: bool,
}

struct IdleH1 {
    sender: http1::SendRequest<ProxyBody>,
    state: Arc<ConnState>,
    sni: Option<ServerName<'static>>,
    backend: Option<std::net::SocketAddr>,
}

struct SharedH2 {
    sender: http2::SendRequest<ProxyBody>,
    state: Arc<ConnState>,
    sni: Option<ServerName<'static>>,
    backend: Option<std::net::SocketAddr>,
}

/// One endpoint's connections.
#[derive(Default)]
struct Slot {
    idle: Mutex<Vec<IdleH1>>,
    /// One shared HTTP/2 connection per SNI (one, `None`, without TLS): a re-encrypting route
    /// whose requests name several hosts keeps each host's connection instead of replacing it.
    h2: Mutex<Vec<SharedH2>>,
    /// Held while a connection to a `protocol: h2` target is opened, so that requests arriving
    /// together wait for it and share it instead of each opening a connection of its own.
    h2_connecting: tokio::sync::Mutex<()>,
}

/// TLS toward the backends of a re-encrypting route, one connector per ALPN offer.
struct BackendTls {
    /// h2 and http/1.1: the backend picks.
    any: TlsConnector,
    h1: TlsConnector,
    h2: TlsConnector,
}

/// Which protocol a request needs from the backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// What the target is configured for (or what ALPN picks).
    Any,
    /// A WebSocket handshake: HTTP/1.1 Upgrade, on a connection of its own.
    Http1,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting took longer than connectionTimeout")]
    Timeout,
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("TLS handshake with the backend failed: {0}")]
    Tls(io::Error),
    #[error("no valid name to send as SNI to the backend")]
    NoServerName,
    #[error("HTTP handshake with the backend failed: {0}")]
    Handshake(hyper::Error),
}

/// How backend connections are opened.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSettings {
    pub timeout: Duration,
    pub socket_options: SocketOptions,
    /// The client, for a PROXY header toward endpoints that want one.
    pub client: crate::proxy_protocol::Addresses,
}

pub struct Upstream {
    endpoints: Arc<Endpoints>,
    /// Per endpoint, in the order `Endpoints` lists them (targets, then each target's hosts).
    protocols: Vec<TargetProtocol>,
    slots: Vec<Slot>,
    tls: Option<BackendTls>,
}

impl Upstream {
    /// `reencrypt`: the route's backend TLS settings when it re-encrypts.
    pub fn new(
        route: &Route,
        endpoints: Arc<Endpoints>,
        reencrypt: Option<&Arc<ClientConfig>>,
    ) -> Upstream {
        let protocols: Vec<TargetProtocol> = route
            .action
            .targets
            .iter()
            .flat_map(|t| t.hosts.iter().map(move |_| t.protocol))
            .collect();
        let slots = protocols.iter().map(|_| Slot::default()).collect();
        let with_alpn = |base: &Arc<ClientConfig>, alpn: &[&[u8]]| {
            let mut config = ClientConfig::clone(base);
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            TlsConnector::from(Arc::new(config))
        };
        let tls = reencrypt.map(|base| BackendTls {
            any: with_alpn(base, &[b"h2", b"http/1.1"]),
            h1: with_alpn(base, &[b"http/1.1"]),
            h2: with_alpn(base, &[b"h2"]),
        });
        Upstream {
            endpoints,
            protocols,
            slots,
            tls,
        }
    }

    pub fn endpoints(&self) -> &Arc<Endpoints> {
        &self.endpoints
    }

    /// Pooled connections open and carrying nothing right now.
    pub fn idle_connections(&self) -> usize {
        self.slots
            .iter()
            .map(|slot| {
                let h1 = slot
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|c| !c.sender.is_closed())
                    .count();
                let h2 = slot
                    .h2
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|c| !c.sender.is_closed() && c.state.lock().busy == 0)
                    .count();
                h1 + h2
            })
            .sum()
    }

    pub fn re_encrypts(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to endpoint `index`: a pooled one if one is free, else a new one.
    pub async fn checkout(
        &self,
        index: usize,
        local_port: u16,
        sni: Option<&str>,
        want: Want,
        fresh: bool,
        settings: &ConnectSettings,
    ) -> Result<Checkout, UpstreamError> {
        let slot = self.slots.get(index).ok_or_else(|| {
            UpstreamError::Connect(io::Error::new(io::ErrorKind::NotFound, "no such endpoint"))
        })?;
        let protocol = self.protocols.get(index).copied().unwrap_or_default();
        let sni = match &self.tls {
            Some(_) => {
                let host = self
                    .endpoints
                    .get(index)
                    .map(|e| e.host())
                    .unwrap_or_default();
                Some(
                    crate::tls::backend::server_name(sni, &host)
                        .ok_or(UpstreamError::NoServerName)?,
                )
            }
            None => None,
        };
        let private = self
            .endpoints
            .get(index)
            .is_some_and(|e| e.sends_proxy_header());
        if !fresh
            && !private
            && let Some(checkout) = self.pooled(slot, want, sni.as_ref())
        {
            return Ok(checkout);
        }
        let shares_h2 = !private && want == Want::Any && protocol == TargetProtocol::H2;
        let connecting = async {
            // The wait for another request's connect counts toward this one's timeout too.
            let _turn = match shares_h2 {
                true => Some(slot.h2_connecting.lock().await),
                false => None,
            };
            if shares_h2 && let Some(checkout) = self.pooled(slot, want, sni.as_ref()) {
                return Ok(checkout);
            }
            let (sender, state, sni, backend) = self
                .connect(index, local_port, sni, protocol, want, settings)
                .await?;
            let busy = Busy(Arc::clone(&state));
            // A fresh connection cannot have expired yet.
            state.enter();
            if let Sender::H2(h2) = &sender
                && want == Want::Any
                && !private
            {
                let mut shared = slot.h2.lock().unwrap_or_else(PoisonError::into_inner);
                shared.retain(|c| c.sni != sni && !c.sender.is_closed());
                shared.push(SharedH2 {
                    sender: h2.clone(),
                    state: Arc::clone(&state),
                    sni: sni.clone(),
                    backend,
                });
            }
            Ok(Checkout {
                sender,
                busy,
                reused: false,
                backend,
                sni,
                private,
            })
        };
        if settings.timeout.is_zero() {
            connecting.await
        } else {
            tokio::time::timeout(settings.timeout, connecting)
                .await
                .unwrap_or(Err(UpstreamError::Timeout))
        }
    }

    fn pooled(
        &self,
        slot: &Slot,
        want: Want,
        sni: Option<&ServerName<'static>>,
    ) -> Option<Checkout> {
        if want == Want::Any {
            let mut shared = slot.h2.lock().unwrap_or_else(PoisonError::into_inner);
            shared.retain(|c| !c.sender.is_closed());
            if let Some(h2) = shared.iter().find(|c| c.sni.as_ref() == sni)
                && h2.state.enter()
            {
                return Some(Checkout {
                    sender: Sender::H2(h2.sender.clone()),
                    busy: Busy(Arc::clone(&h2.state)),
                    reused: true,
                    backend: h2.backend,
                    sni: h2.sni.clone(),
                    private: false,
                });
            }
        }
        let mut idle = slot.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Closed ones go; the newest ready one is taken. One whose response end hyper has not
        // processed yet stays for the next request.
        idle.retain(|c| !c.sender.is_closed());
        let position = idle
            .iter()
            .rposition(|c| c.sni.as_ref() == sni && c.sender.is_ready())?;
        let conn = idle.swap_remove(position);
        conn.state.enter().then(|| Checkout {
            sender: Sender::H1(conn.sender),
            busy: Busy(conn.state),
            reused: true,
            backend: conn.backend,
            sni: conn.sni,
            private: false,
        })
    }

    /// The body hold of a response from an HTTP/1.1 connection: back to the pool when the body
    /// was read to its end, closed otherwise.
    /// `holds`: what must live until the body ends too (the endpoint lease, the route's
    /// admission ticket).
    pub fn return_on_end<T: Send + Sync + 'static>(
        self: &Arc<Self>,
        index: usize,
        checkout: Checkout,
        holds: T,
    ) -> Hold {
        Box::new(ReturnOnEnd {
            upstream: Arc::clone(self),
            index,
            checkout,
            _holds: holds,
        })
    }
}

struct ReturnOnEnd<T> {
    upstream: Arc<Upstream>,
    index: usize,
    checkout: Checkout,
    _holds: T,
}

impl<T: Send + Sync> BodyHold for ReturnOnEnd<T> {
    fn finished(self: Box<Self>, complete: bool) {
        let ReturnOnEnd {
            upstream,
            index,
            checkout,
            ..
        } = *self;
        if let (true, false, Sender::H1(sender)) = (complete, checkout.private, checkout.sender) {
            upstream.checkin(index, sender, checkout.busy, checkout.sni, checkout.backend);
        }
    }
}

impl Upstream {
    /// Puts an HTTP/1.1 connection back; it takes the next request once hyper has seen the end
    /// of the response (checked at checkout).
    fn checkin(
        &self,
        index: usize,
        sender: http1::SendRequest<ProxyBody>,
        busy: Busy,
        sni: Option<ServerName<'static>>,
        backend: Option<std::net::SocketAddr>,
    ) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let state = Arc::clone(&busy.0);
        let mut idle = slot.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE_PER_ENDPOINT || sender.is_closed() {
            return;
        }
        idle.push(IdleH1 {
            sender,
            state,
            sni,
            backend,
        });
        drop(idle);
        drop(busy);
    }

    async fn connect(
        &self,
        index: usize,
        local_port: u16,
        sni: Option<ServerName<'static>>,
        protocol: TargetProtocol,
        want: Want,
        settings: &ConnectSettings,
    ) -> Result<
        (
            Sender,
            Arc<ConnState>,
            Option<ServerName<'static>>,
            Option<std::net::SocketAddr>,
        ),
        UpstreamError,
    > {
        let endpoint = self.endpoints.get(index).ok_or_else(|| {
            UpstreamError::Connect(io::Error::new(io::ErrorKind::NotFound, "no such endpoint"))
        })?;
        let tcp = endpoint
            .connect(local_port, Some(settings.client))
            .await
            .map_err(UpstreamError::Connect)?;
        settings.socket_options.apply(&tcp);
        let backend = tcp.peer_addr().ok();
        let (stream, h2) = match (&self.tls, &sni) {
            (Some(tls), Some(name)) => {
                let connector = match (want, protocol) {
                    (Want::Http1, _) => &tls.h1,
                    (Want::Any, TargetProtocol::H2) => &tls.h2,
                    (Want::Any, TargetProtocol::H1) => &tls.any,
                };
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(UpstreamError::Tls)?;
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let stream: BackendStream =
                    Box::new(TlsSide(tokio_rustls::TlsStream::Client(stream)));
                (stream, h2)
            }
            _ => (
                Box::new(tcp) as BackendStream,
                want == Want::Any && protocol == TargetProtocol::H2,
            ),
        };
        let state = Arc::new(ConnState::default());
        let io = TokioIo::new(stream);
        let sender = if h2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(UpstreamError::Handshake)?;
            let watch = Arc::clone(&state);
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn => {}
                    _ = watch.expire_when_idle() => {}
                }
            });
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(UpstreamError::Handshake)?;
            let watch = Arc::clone(&state);
            tokio::spawn(async move {
                tokio::select! {
                    _ = conn.with_upgrades() => {}
                    _ = watch.expire_when_idle() => {}
                }
            });
            Sender::H1(sender)
        };
        Ok((sender, state, sni, backend))
    }
}
