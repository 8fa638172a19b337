//! The connector: turns a route's targets into endpoints, orders them for each connection by the
//! route's load-balancing algorithm and the endpoints' health, and opens a backend connection,
//! trying each endpoint once before giving up.
//!
//! Health has two sources. Passive: a failed connect puts the endpoint in cooldown, a successful
//! one ends it. Active (only with `loadBalancing.healthCheck`): a periodic HTTP check marks the
//! endpoint up or down. An endpoint that is unhealthy by either is tried last, never skipped, so a
//! route whose endpoints all look down still tries them.

mod health;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::{
    Algorithm, HealthCheck, LoadBalancing, ProxyProtocolVersion, Target, TargetPort,
};
use crate::proxy_protocol::{self, Addresses};

/// How long an endpoint whose connect failed is tried last.
pub const PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// One host of one target.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: Host,
    port: TargetPort,
    /// `sendProxyProtocol`: every connection to it starts with a PROXY header.
    send_proxy: Option<ProxyProtocolVersion>,
}

#[derive(Debug, Clone)]
enum Host {
    /// Literal addresses skip the resolver.
    Ip(IpAddr),
    Name(String),
}

impl Endpoint {
    /// The host as configured: an address or a name.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// The port to connect to for a client that connected to `local_port`.
    pub fn port_for(&self, local_port: u16) -> u16 {
        match self.port {
            TargetPort::Fixed(p) => p,
            TargetPort::Preserve => local_port,
        }
    }

    /// Whether connections to it start with a PROXY header (and so serve one client only).
    pub fn sends_proxy_header(&self) -> bool {
        self.send_proxy.is_some()
    }

    /// One connect attempt, unbounded and unrecorded: `Endpoints::connect` adds both. With
    /// `sendProxyProtocol`, the header goes out first: `client`'s addresses, or "unknown"
    /// (v2 LOCAL, v1 UNKNOWN) without a client, as for health checks.
    pub async fn connect(
        &self,
        local_port: u16,
        client: Option<Addresses>,
    ) -> io::Result<TcpStream> {
        let mut stream = self.connect_port(self.port_for(local_port)).await?;
        self.send_proxy_header(&mut stream, client).await?;
        Ok(stream)
    }

    async fn send_proxy_header(
        &self,
        stream: &mut TcpStream,
        client: Option<Addresses>,
    ) -> io::Result<()> {
        let Some(version) = self.send_proxy else {
            return Ok(());
        };
        let header = match client {
            Some(addresses) => proxy_protocol::encode(version, addresses),
            None => proxy_protocol::encode_local(version),
        };
        stream.write_all(&header).await
    }

    /// Where a connection for `local_port` goes, when the host is an address (a name may
    /// resolve differently per connect).
    pub fn ip_address(&self, local_port: u16) -> Option<SocketAddr> {
        match &self.host {
            Host::Ip(ip) => Some(SocketAddr::new(*ip, self.port_for(local_port))),
            Host::Name(_) => None,
        }
    }

    async fn connect_port(&self, port: u16) -> io::Result<TcpStream> {
        match &self.host {
            Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await,
            Host::Name(name) => TcpStream::connect((name.as_str(), port)).await,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            _ => write!(f, "{}", self.host())?,
        }
        match self.port {
            TargetPort::Fixed(p) => write!(f, ":{p}"),
            TargetPort::Preserve => write!(f, ":preserve"),
        }
    }
}

/// An endpoint with its counters; shared with leases, hence its own `Arc`.
struct Slot {
    endpoint: Endpoint,
    leases: AtomicUsize,
    /// Milliseconds since `Inner::epoch` until which the endpoint is tried last; 0 = its last
    /// connect succeeded. It stays non-zero after the cooldown ends, until a connect succeeds, so
    /// a run of failures is logged once.
    failing_until: AtomicU64,
    /// Set by the active check.
    down: AtomicBool,
}

impl Slot {
    fn usable(&self, now_ms: u64) -> bool {
        !self.down.load(Ordering::Relaxed) && self.failing_until.load(Ordering::Relaxed) <= now_ms
    }
}

struct Inner {
    slots: Vec<Arc<Slot>>,
    algorithm: Algorithm,
    health_check: Option<HealthCheck>,
    cooldown: Duration,
    epoch: Instant,
    /// Round-robin position, also the tie-breaker of least-connections.
    next: AtomicUsize,
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A route's endpoints and their load-balancing and health state, shared by all its
/// connections. Cheap state only: every counter is an atomic.
pub struct Endpoints {
    inner: Arc<Inner>,
}

/// Counts one live connection or request on an endpoint until dropped. Derefs to the endpoint,
/// like a guard.
pub struct EndpointLease {
    slot: Arc<Slot>,
    index: usize,
}

impl EndpointLease {
    /// The endpoint's index in its `Endpoints`.
    #[allow(
        dead_code,
        reason = "part of the endpoint API; the TCP path does not need it"
    )]
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Deref for EndpointLease {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.slot.endpoint
    }
}

impl Drop for EndpointLease {
    fn drop(&mut self) {
        self.slot.leases.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A backend connection and the lease that counts it; keep the lease as long as the connection.
pub struct Connected {
    pub stream: TcpStream,
    pub lease: EndpointLease,
    /// The backend's address (one system call fewer than asking the socket).
    pub address: Option<SocketAddr>,
}

/// Every endpoint failed; the last error is kept for the log.
#[derive(Debug)]
pub struct ConnectFailed {
    pub attempts: usize,
    pub last_error: io::Error,
}

impl Endpoints {
    pub fn new(targets: &[Target], lb: &LoadBalancing) -> Endpoints {
        Endpoints::with_cooldown(targets, lb, PASSIVE_COOLDOWN)
    }

    /// As `new`, with another passive cooldown than `PASSIVE_COOLDOWN`.
    pub fn with_cooldown(targets: &[Target], lb: &LoadBalancing, cooldown: Duration) -> Endpoints {
        let slots = targets
            .iter()
            .flat_map(|t| {
                t.hosts.iter().map(move |h| Endpoint {
                    host: match h.parse::<IpAddr>() {
                        Ok(ip) => Host::Ip(ip),
                        Err(_) => Host::Name(h.clone()),
                    },
                    port: t.port,
                    send_proxy: t.send_proxy_protocol,
                })
            })
            .map(|endpoint| {
                Arc::new(Slot {
                    endpoint,
                    leases: AtomicUsize::new(0),
                    failing_until: AtomicU64::new(0),
                    down: AtomicBool::new(false),
                })
            })
            .collect();
        Endpoints {
            inner: Arc::new(Inner {
                slots,
                algorithm: lb.algorithm,
                health_check: lb.health_check.clone(),
                cooldown,
                epoch: Instant::now(),
                next: AtomicUsize::new(0),
            }),
        }
    }

    #[allow(
        dead_code,
        reason = "part of the endpoint API; the TCP path does not need it"
    )]
    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    #[allow(
        dead_code,
        reason = "part of the endpoint API; the TCP path does not need it"
    )]
    pub fn get(&self, index: usize) -> Option<&Endpoint> {
        self.inner.slots.get(index).map(|s| &s.endpoint)
    }

    /// The order in which to try the endpoints for one connection or request from `client_ip`:
    /// each endpoint once, the usable ones (not in cooldown, not down) first, then the others,
    /// each group in the algorithm's order. Round-robin rotates the start; least-connections
    /// puts the fewest live leases first, ties in rotation; ip-hash starts at an index taken from
    /// a hash of the client address, so a client keeps its endpoint while the set of usable
    /// endpoints does not change.
    pub fn plan(&self, client_ip: IpAddr) -> Vec<usize> {
        let inner = &*self.inner;
        let now = inner.now_ms();
        let mut usable = Vec::with_capacity(inner.slots.len());
        let mut unusable = Vec::new();
        for (i, slot) in inner.slots.iter().enumerate() {
            match slot.usable(now) {
                true => usable.push(i),
                false => unusable.push(i),
            }
        }
        let key = match inner.algorithm {
            Algorithm::IpHash => ip_hash(client_ip),
            Algorithm::RoundRobin | Algorithm::LeastConnections => {
                inner.next.fetch_add(1, Ordering::Relaxed)
            }
        };
        for group in [&mut usable, &mut unusable] {
            if !group.is_empty() {
                let start = key % group.len();
                group.rotate_left(start);
            }
            if inner.algorithm == Algorithm::LeastConnections {
                // Stable, and each count is read once: ties keep the rotation.
                group.sort_by_cached_key(|&i| {
                    inner
                        .slots
                        .get(i)
                        .map_or(0, |s| s.leases.load(Ordering::Relaxed))
                });
            }
        }
        usable.append(&mut unusable);
        usable
    }

    /// Counts a live connection or request on endpoint `index` until the lease is dropped;
    /// `None` for an index out of range.
    pub fn lease(&self, index: usize) -> Option<EndpointLease> {
        let slot = Arc::clone(self.inner.slots.get(index)?);
        slot.leases.fetch_add(1, Ordering::Relaxed);
        Some(EndpointLease { slot, index })
    }

    /// Passive health: a failed connect puts the endpoint in cooldown, a successful one ends it.
    pub fn report_connect(&self, index: usize, ok: bool) {
        let Some(slot) = self.inner.slots.get(index) else {
            return;
        };
        if ok {
            // Most connects succeed on a healthy endpoint: read before writing the shared line.
            if slot.failing_until.load(Ordering::Relaxed) != 0
                && slot.failing_until.swap(0, Ordering::Relaxed) != 0
            {
                tracing::info!(endpoint = %slot.endpoint, "backend endpoint up: connect succeeded");
            }
            return;
        }
        let cooldown_ms = u64::try_from(self.inner.cooldown.as_millis()).unwrap_or(u64::MAX);
        let until = self.inner.now_ms().saturating_add(cooldown_ms).max(1);
        if slot.failing_until.swap(until, Ordering::Relaxed) == 0 {
            tracing::info!(
                endpoint = %slot.endpoint, cooldown = ?self.inner.cooldown,
                "backend endpoint down: connect failed"
            );
        }
    }

    /// Connects the endpoints in `plan(client_ip)` order until one accepts. `timeout` (zero =
    /// none) bounds each attempt; each result feeds passive health.
    pub async fn connect(
        &self,
        local_port: u16,
        client_ip: IpAddr,
        timeout: Duration,
        client: Option<Addresses>,
    ) -> Result<Connected, ConnectFailed> {
        let mut attempts = 0;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "route has no endpoints");
        for index in self.plan(client_ip) {
            // Leased before connecting, so concurrent connects already spread by least-connections.
            let Some(lease) = self.lease(index) else {
                continue;
            };
            attempts += 1;
            let attempt = lease.connect(local_port, client);
            let result = if timeout.is_zero() {
                attempt.await
            } else {
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    })
            };
            self.report_connect(index, result.is_ok());
            match result {
                Ok(stream) => {
                    let address = lease
                        .ip_address(local_port)
                        .or_else(|| stream.peer_addr().ok());
                    return Ok(Connected {
                        stream,
                        lease,
                        address,
                    });
                }
                Err(e) => {
                    tracing::debug!(endpoint = %*lease, error = %e, "backend connect failed");
                    last_error = e;
                }
            }
        }
        Err(ConnectFailed {
            attempts,
            last_error,
        })
    }

    /// Starts the route's active health checks: one task that checks every endpoint each
    /// `interval` with `GET {path}` (over TLS with `tls`, the endpoint host as server name) and
    /// marks it up on a 2xx or 3xx status, down on anything else. Endpoints with port `preserve`
    /// have no port to check and are left to passive health. The task ends when `stop` is
    /// cancelled or these endpoints are dropped. `None` when the route has no `healthCheck`.
    /// Must be called within a Tokio runtime.
    pub fn start_health_checks(
        &self,
        tls: Option<TlsConnector>,
        stop: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let check = self.inner.health_check.clone()?;
        Some(tokio::spawn(health::run(
            Arc::downgrade(&self.inner),
            check,
            tls,
            stop,
        )))
    }
}

/// A hash of the client address that is stable for the life of the process and spreads
/// neighbouring addresses (FNV-1a, then a 64-bit finalizer).
fn ip_hash(ip: IpAddr) -> usize {
    let (v4, v6);
    let octets: &[u8] = match ip.to_canonical() {
        IpAddr::V4(ip) => {
            v4 = ip.octets();
            &v4
        }
        IpAddr::V6(ip) => {
            v6 = ip.octets();
            &v6
        }
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in octets {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // Truncation on 32-bit targets only drops hash bits.
    h as usize
}
