//! The connector: turns a route's targets into endpoints and opens a backend connection,
//! round-robin, trying each endpoint once before giving up.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{Target, TargetPort};

/// One host of one target.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: Host,
    port: TargetPort,
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

    fn port_for(&self, local_port: u16) -> u16 {
        match self.port {
            TargetPort::Fixed(p) => p,
            TargetPort::Preserve => local_port,
        }
    }

    pub async fn connect(&self, local_port: u16) -> io::Result<TcpStream> {
        let port = self.port_for(local_port);
        match &self.host {
            Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, port)).await,
            Host::Name(name) => TcpStream::connect((name.as_str(), port)).await,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.host();
        match self.port {
            TargetPort::Fixed(p) => write!(f, "{host}:{p}"),
            TargetPort::Preserve => write!(f, "{host}:preserve"),
        }
    }
}

/// A route's endpoints with its round-robin position.
pub struct Endpoints {
    list: Vec<Endpoint>,
    next: AtomicUsize,
}

/// Every endpoint failed; the last error is kept for the log.
#[derive(Debug)]
pub struct ConnectFailed {
    pub attempts: usize,
    pub last_error: io::Error,
}

impl Endpoints {
    pub fn new(targets: &[Target], _lb: &crate::config::LoadBalancing) -> Endpoints {
        let list = targets
            .iter()
            .flat_map(|t| {
                t.hosts.iter().map(move |h| Endpoint {
                    host: match h.parse::<IpAddr>() {
                        Ok(ip) => Host::Ip(ip),
                        Err(_) => Host::Name(h.clone()),
                    },
                    port: t.port,
                })
            })
            .collect();
        Endpoints {
            list,
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the next endpoint in turn; on failure each other endpoint is tried once.
    /// `timeout` (zero = none) bounds each attempt.
    pub async fn connect(
        &self,
        local_port: u16,
        timeout: Duration,
    ) -> Result<(TcpStream, &Endpoint), ConnectFailed> {
        let n = self.list.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "route has no endpoints");
        for i in 0..n {
            let Some(endpoint) = self.list.get(first.wrapping_add(i) % n) else {
                continue;
            };
            let attempt = endpoint.connect(local_port);
            let result = if timeout.is_zero() {
                attempt.await
            } else {
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                    })
            };
            match result {
                Ok(stream) => return Ok((stream, endpoint)),
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint, error = %e, "backend connect failed");
                    last_error = e;
                }
            }
        }
        Err(ConnectFailed {
            attempts: n,
            last_error,
        })
    }
}

// Interim API, replaced by the load-balancing module.
pub struct EndpointLease;
impl Endpoints {
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn get(&self, index: usize) -> Option<&Endpoint> {
        self.list.get(index)
    }
    pub fn plan(&self, _client_ip: IpAddr) -> Vec<usize> {
        let n = self.list.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|i| first.wrapping_add(i) % n).collect()
    }
    pub fn lease(&self, _index: usize) -> EndpointLease {
        EndpointLease
    }
    pub fn report_connect(&self, _index: usize, _ok: bool) {}
}
