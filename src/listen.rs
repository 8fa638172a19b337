//! Listeners: one socket per port the routes name, and the accept loop that hands each new
//! connection to its own task.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, Accepted, Shared, SocketOptions};

const LISTEN_BACKLOG: i32 = 4096;

/// A port that could not be bound, with the address that was tried.
#[derive(Debug)]
pub struct BindError {
    pub address: SocketAddr,
    pub source: io::Error,
}

/// Binds `port` on `bind_address`, or on all interfaces (dual-stack `[::]`, falling back to
/// `0.0.0.0` where IPv6 is unavailable) when none is given. The socket options are set before
/// `listen()`, so every accepted socket inherits them.
pub fn bind(
    bind_address: Option<IpAddr>,
    port: u16,
    options: &SocketOptions,
) -> Result<TcpListener, BindError> {
    let socket = match bind_address {
        Some(ip) => bind_one(SocketAddr::new(ip, port), false, options)?,
        None => {
            let any_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            match bind_one(any_v6, true, options) {
                Ok(socket) => socket,
                Err(e) if ipv6_unavailable(&e.source) => {
                    let any_v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                    bind_one(any_v4, false, options)?
                }
                Err(e) => return Err(e),
            }
        }
    };
    let address = socket.local_addr().ok().and_then(|a| a.as_socket());
    TcpListener::from_std(socket.into()).map_err(|source| BindError {
        address: address.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port))),
        source,
    })
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn bind_one(
    address: SocketAddr,
    dual_stack: bool,
    options: &SocketOptions,
) -> Result<Socket, BindError> {
    let attempt = || -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if dual_stack {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        options.apply(&socket);
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket)
    };
    attempt().map_err(|source| BindError { address, source })
}

/// Accepts until `stop` is cancelled, then drops (closes) the listener.
pub async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address; not accepting");
            return;
        }
    };
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            // Stop first: once shutdown begins, no further connection is taken.
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning, and say so
                // at most once a second.
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(listener = %local, error = %e, "accept failed");
                    last_warning = Some(Instant::now());
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let conn = Accepted {
            stream,
            peer,
            local,
            at: Instant::now(),
            guard: shared.registry.register(),
        };
        if shared.max_connections != 0 && shared.registry.live() > shared.max_connections {
            conn::refuse_over_limit(conn);
            continue;
        }
        tokio::spawn(conn::serve(Arc::clone(&shared), conn));
    }
}
