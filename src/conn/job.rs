//! The hand-off between routing a connection and relaying it.
//!
//! A tokio task's future is as large as its largest state, and nested `async fn`s keep every
//! caller's locals alive across the innermost await. Routing a connection walks through many
//! steps (PROXY header, admission, ClientHello, route choice, backend connect), so a relay
//! awaited at the bottom of them would carry all their locals for the connection's whole
//! life. Instead the routing steps run boxed and return a `RelayJob`: what the relay needs and
//! nothing else. `serve` drops the routing future and runs the job in its place, so an idle
//! connection costs its relay only.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::relay::{self, RelayStream};
use super::{ConnEnd, Shared};
use crate::admission::Ticket;
use crate::connect::EndpointLease;
use crate::router::RouteEntry;

/// A connection routed to a backend it is connected to, ready to relay. The plain TCP backend
/// is the one that travels up to `serve`; a TLS backend's job runs where it was made.
pub(super) struct RelayJob<C, B = TcpStream> {
    pub client: C,
    pub backend: B,
    pub backend_addr: Option<SocketAddr>,
    pub route: Arc<RouteEntry>,
    pub at: Instant,
    /// Counts the connection for least-connections while it lives.
    pub lease: EndpointLease,
    /// The route's admission counts, and the client's global ones once the job reaches
    /// `serve`; both are released when the job ends.
    pub tickets: (Ticket, Option<Ticket>),
    /// Logged with the end: the client a PROXY header named, the name the ClientHello asked.
    pub proxied: Option<SocketAddr>,
    pub sni: Option<String>,
}

/// What routing a connection came to.
pub(super) enum Routed<C> {
    /// The connection already ended (refused, failed, or served on a path that keeps its own
    /// state: HTTP, terminated TLS).
    Ended(ConnEnd),
    Relay(RelayJob<C>),
}

impl<C: RelayStream, B: RelayStream> RelayJob<C, B> {
    /// Relays until the connection ends. Borrowed, not moved: a future keeps an argument it
    /// takes by value twice, and the caller's copy is the only one needed. Dropping the job
    /// closes both sockets and releases the lease and the admission counts.
    pub async fn run(&mut self, shared: &Shared) -> ConnEnd {
        let relayed = relay::relay(
            &mut self.client,
            &mut self.backend,
            &shared.relay,
            self.at,
            &shared.signals,
        )
        .await;
        ConnEnd {
            proxied: self.proxied,
            sni: self.sni.take(),
            backend: self.backend_addr,
            error: relayed.error,
            client_to_backend: relayed.client_to_backend,
            backend_to_client: relayed.backend_to_client,
            ..ConnEnd::new(relayed.reason).with_route(&self.route)
        }
    }
}

impl<C: RelayStream> Routed<C> {
    /// Runs the relay, if it is one, and returns the end. Borrowed like `RelayJob::run`; the
    /// streams close when the caller drops `self`.
    pub async fn finish(&mut self, shared: &Shared) -> ConnEnd {
        match self {
            Routed::Ended(end) => std::mem::replace(end, ConnEnd::new(end.reason)),
            Routed::Relay(job) => job.run(shared).await,
        }
    }

    /// Records the name the ClientHello asked for, on whichever end comes.
    pub fn with_sni(self, sni: Option<String>) -> Routed<C> {
        match self {
            Routed::Ended(end) => Routed::Ended(ConnEnd { sni, ..end }),
            Routed::Relay(mut job) => {
                job.sni = sni;
                Routed::Relay(job)
            }
        }
    }
}

impl<C> From<ConnEnd> for Routed<C> {
    fn from(end: ConnEnd) -> Routed<C> {
        Routed::Ended(end)
    }
}
