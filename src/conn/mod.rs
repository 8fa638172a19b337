//! One client connection from accept to close: route, connect, relay, log. Every path ends in
//! the same relay (`relay.rs`) under the same limits (`lifecycle.rs`).

pub mod lifecycle;
pub mod registry;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::router::Router;
use lifecycle::CloseReason;
use registry::{ConnGuard, Registry};
use relay::{CloseSignals, RelayConfig};

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
        let sock = socket2::SockRef::from(socket);
        let _ = sock.set_tcp_nodelay(self.no_delay);
        match self.keep_alive {
            Some(idle) => {
                let _ = sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
            }
            None => {
                let _ = sock.set_keepalive(false);
            }
        }
    }
}

/// What every connection task of one proxy shares.
pub struct Shared {
    pub router: Router,
    pub relay: RelayConfig,
    pub connect_timeout: Duration,
    pub socket_options: SocketOptions,
    pub signals: CloseSignals,
    pub registry: Arc<Registry>,
    pub max_connections: usize,
}

/// The facts logged when a connection ends.
struct ConnEnd<'a> {
    /// The connection reached the relay (else the client is still to be closed).
    relayed: bool,
    route: Option<&'a str>,
    backend: Option<SocketAddr>,
    reason: CloseReason,
    error: Option<std::io::ErrorKind>,
    client_to_backend: u64,
    backend_to_client: u64,
}

pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub at: Instant,
    pub guard: ConnGuard,
}

/// Serves one accepted connection on a port whose routes all forward plain TCP: the backend is
/// chosen and connected at once, without waiting for the client to speak.
pub async fn serve_tcp(shared: Arc<Shared>, conn: Accepted) {
    let Accepted {
        stream: mut client,
        peer,
        local,
        at,
        mut guard,
    } = conn;
    let end = async {
        let Some(route) = shared.router.select(local.port(), peer.ip().to_canonical()) else {
            return ConnEnd::without_relay(None, CloseReason::NoRoute);
        };
        let connecting = route
            .endpoints
            .connect(local.port(), shared.connect_timeout);
        let mut backend = tokio::select! {
            result = connecting => match result {
                Ok(backend) => backend,
                Err(failed) => {
                    tracing::debug!(
                        conn = guard.id(), route = %route.name, attempts = failed.attempts,
                        error = %failed.last_error, "no backend endpoint reachable"
                    );
                    return ConnEnd::without_relay(Some(&route.name), CloseReason::ConnectFailed);
                }
            },
            _ = shared.signals.close.cancelled() => {
                return ConnEnd::without_relay(Some(&route.name), CloseReason::Shutdown);
            }
        };
        shared.socket_options.apply(&backend);
        let backend_addr = backend.peer_addr().ok();
        let relayed = relay::relay(
            &mut client,
            &mut backend,
            &shared.relay,
            at,
            &shared.signals,
        )
        .await;
        ConnEnd {
            relayed: true,
            route: Some(&route.name),
            backend: backend_addr,
            reason: relayed.reason,
            error: relayed.error,
            client_to_backend: relayed.client_to_backend,
            backend_to_client: relayed.backend_to_client,
        }
    }
    .await;
    if !end.relayed {
        close_unrelayed(&mut client).await;
    }
    log_end(guard.id(), peer, local, at, &end);
    guard.set_reason(end.reason);
    // Sockets close here, then the guard takes the connection off the registry.
    drop(client);
    drop(guard);
}

/// Ends a client that never reached a backend with a FIN: what it already sent is read and
/// discarded until its own FIN (closing with unread bytes would make the kernel send RST),
/// for at most FLUSH_ON_CLOSE_GRACE.
async fn close_unrelayed(client: &mut TcpStream) {
    let _ = client.shutdown().await;
    let mut sink = [0u8; 4096];
    let discard = async {
        while let Ok(n) = client.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(relay::FLUSH_ON_CLOSE_GRACE, discard).await;
}

impl<'a> ConnEnd<'a> {
    fn without_relay(route: Option<&'a str>, reason: CloseReason) -> ConnEnd<'a> {
        ConnEnd {
            relayed: false,
            route,
            backend: None,
            reason,
            error: None,
            client_to_backend: 0,
            backend_to_client: 0,
        }
    }
}

fn log_end(id: u64, peer: SocketAddr, local: SocketAddr, at: Instant, end: &ConnEnd<'_>) {
    tracing::debug!(
        conn = id,
        route = %end.route.unwrap_or("-"),
        client = %peer,
        listener = %local,
        backend = %end.backend.map_or_else(|| "-".to_string(), |a| a.to_string()),
        bytes_in = end.client_to_backend,
        bytes_out = end.backend_to_client,
        duration_ms = at.elapsed().as_millis() as u64,
        reason = %end.reason,
        error = ?end.error,
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
        &ConnEnd::without_relay(None, CloseReason::Limit),
    );
}
