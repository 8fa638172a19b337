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

use crate::conn::{self, Accepted, Shared};

const LISTEN_BACKLOG: i32 = 4096;

/// Binds `port` on `bind_address`, or on all interfaces (dual-stack `[::]`, falling back to
/// `0.0.0.0` where IPv6 is unavailable) when none is given.
pub fn bind(bind_address: Option<IpAddr>, port: u16) -> io::Result<TcpListener> {
    let socket = match bind_address {
        Some(ip) => bind_one(SocketAddr::new(ip, port), false)?,
        None => match bind_one(
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
            true,
        ) {
            Ok(socket) => socket,
            Err(e) if ipv6_unavailable(&e) => bind_one(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                false,
            )?,
            Err(e) => return Err(e),
        },
    };
    TcpListener::from_std(socket.into())
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn bind_one(addr: SocketAddr, dual_stack: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
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
        tokio::spawn(conn::serve_tcp(Arc::clone(&shared), conn));
    }
}
