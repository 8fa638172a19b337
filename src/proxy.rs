//! The embedding API: start a proxy from a config, read its live count, shut it down.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, PURGE_INTERVAL};
use crate::config::Config;
use crate::conn::lifecycle::Limits;
use crate::conn::registry::Registry;
use crate::conn::relay::{CloseSignals, FLUSH_ON_CLOSE_GRACE, RelayConfig};
use crate::conn::{Shared, SocketOptions};
use crate::listen;
use crate::router::{Router, TlsSetupError};

/// Why a proxy could not start (exit code 3 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port that could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address whose bind failed (`[::]:PORT` or `0.0.0.0:PORT` without a bindAddress).
        address: String,
        #[source]
        source: io::Error,
    },
    /// A certificate or CA file that could not be loaded.
    #[error("cannot set up TLS for {0}")]
    Tls(#[from] TlsSetupError),
}

/// A running proxy. Dropping it does not stop it; call `shutdown` or `shutdown_now`.
pub struct Proxy {
    shared: Arc<Shared>,
    stop_accepting: CancellationToken,
    accept_tasks: Mutex<Vec<JoinHandle<()>>>,
    local_addrs: Vec<SocketAddr>,
    graceful_timeout: Duration,
}

impl Proxy {
    /// Binds every port the enabled routes name and starts accepting. Needs a tokio runtime.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        let router = Router::new(&config.routes)?;
        let socket_options = SocketOptions {
            no_delay: config.no_delay,
            keep_alive: config.keep_alive.then_some(config.keep_alive_initial_delay),
        };
        let mut listeners = Vec::new();
        for port in router.ports() {
            let listener =
                listen::bind(config.bind_address, port, &socket_options).map_err(|e| {
                    StartError::Listen {
                        address: e.address.to_string(),
                        source: e.source,
                    }
                })?;
            listeners.push(listener);
        }
        let shared = Arc::new(Shared {
            router,
            relay: RelayConfig {
                limits: Limits::from_config(&config),
                buffer_size: config.relay_buffer_size,
            },
            connect_timeout: config.connection_timeout,
            initial_data_timeout: config.initial_data_timeout,
            max_pending: usize::try_from(config.max_pending_data_size).unwrap_or(usize::MAX),
            socket_options,
            signals: CloseSignals::default(),
            registry: Arc::new(Registry::default()),
            max_connections: usize::try_from(config.admission.max_connections)
                .unwrap_or(usize::MAX),
            admission: Admission::new(&config.admission),
            proxy_protocol: config.proxy_protocol.clone(),
            http: crate::http::HttpSettings {
                response_timeout: config.http_response_timeout,
                headers_timeout: config.headers_timeout,
                max_request_head: usize::try_from(config.max_request_head_size)
                    .unwrap_or(usize::MAX),
                trusted_proxies: config.trusted_proxies.clone(),
            },
        });
        let stop_accepting = CancellationToken::new();
        let mut local_addrs = Vec::new();
        let mut accept_tasks = Vec::new();
        // Stopped and awaited with the accept loops.
        if let Some(certificates) = shared.router.certificates() {
            let watch = Arc::clone(certificates).watch(stop_accepting.clone());
            accept_tasks.push(tokio::spawn(watch));
        }
        for route in shared.router.routes() {
            let reencrypt = match &route.tls {
                crate::router::TlsHandling::Terminate { reencrypt, .. } => reencrypt.clone(),
                crate::router::TlsHandling::Forward => None,
            };
            if let Some(checks) = route
                .endpoints
                .start_health_checks(reencrypt, stop_accepting.clone())
            {
                accept_tasks.push(checks);
            }
        }
        if let Some(purging) = purge_admission_tables(&shared, stop_accepting.clone()) {
            accept_tasks.push(purging);
        }
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                local_addrs.push(addr);
            }
            accept_tasks.push(tokio::spawn(listen::accept_loop(
                listener,
                Arc::clone(&shared),
                stop_accepting.clone(),
            )));
        }
        Ok(Proxy {
            shared,
            stop_accepting,
            accept_tasks: Mutex::new(accept_tasks),
            local_addrs,
            graceful_timeout: config.graceful_shutdown_timeout,
        })
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Connections accepted and not yet fully closed.
    pub fn live_connections(&self) -> usize {
        self.shared.registry.live()
    }

    /// Idle pooled HTTP connections to backends: the only sockets that may outlive the client
    /// connections that opened them (each closes after 90 s idle).
    pub fn idle_backend_connections(&self) -> usize {
        self.shared
            .router
            .routes()
            .filter_map(|r| r.upstream.as_ref())
            .map(|u| u.idle_connections())
            .sum()
    }

    /// Per-client entries the admission tables hold (per-IP counts and request-rate keys,
    /// global and per route). Each table holds at most 100,000; idle entries are dropped.
    pub fn admission_entries(&self) -> usize {
        self.shared.admission.entries()
            + self
                .shared
                .router
                .routes()
                .map(|r| r.admission.entries())
                .sum::<usize>()
    }

    /// Connections accepted since start.
    pub fn total_connections(&self) -> u64 {
        self.shared.registry.total()
    }

    /// Connections that ended with `reason` since start.
    pub fn closed_with(&self, reason: crate::CloseReason) -> u64 {
        self.shared.registry.closed(reason)
    }

    /// Re-reads every certificate file now (SIGHUP); a file that fails to load keeps its old
    /// certificate. Returns how many certificates were replaced. Changed files are also picked
    /// up on their own within a few seconds.
    pub async fn reload_certificates(&self) -> usize {
        let Some(certificates) = self.shared.router.certificates().cloned() else {
            return 0;
        };
        // File reads stay off the runtime's workers.
        tokio::task::spawn_blocking(move || certificates.reload(true))
            .await
            .unwrap_or(0)
    }

    /// Closes every listener; live connections go on. Returns once the listeners are closed.
    pub async fn stop_accepting(&self) {
        self.stop_accepting.cancel();
        let tasks = match self.accept_tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Graceful shutdown (docs/LIFECYCLE.md): stop accepting, let live connections run until they end or
    /// gracefulShutdownTimeout passes, then close the rest with FIN after flushing.
    pub async fn shutdown(&self) {
        self.stop_accepting().await;
        self.shared.signals.draining.cancel();
        let drained = self.shared.registry.wait_idle();
        if self.graceful_timeout.is_zero() {
            drained.await;
        } else if tokio::time::timeout(self.graceful_timeout, drained)
            .await
            .is_err()
        {
            tracing::info!(
                live = self.live_connections(),
                "graceful shutdown timeout reached; closing remaining connections"
            );
            self.shared.signals.close.cancel();
            self.wait_closed(FLUSH_ON_CLOSE_GRACE * 2).await;
        }
    }

    /// Closes everything at once: listeners, and every connection without waiting to flush.
    pub async fn shutdown_now(&self) {
        self.abort_connections();
        self.stop_accepting().await;
        self.wait_closed(FLUSH_ON_CLOSE_GRACE).await;
    }

    /// Tells every connection to close now; does not wait.
    pub fn abort_connections(&self) {
        self.shared.signals.draining.cancel();
        self.shared.signals.abort.cancel();
        self.shared.signals.close.cancel();
    }

    /// Resolves when no connection is live.
    pub async fn wait_idle(&self) {
        self.shared.registry.wait_idle().await;
    }

    async fn wait_closed(&self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.shared.registry.wait_idle()).await;
    }
}

/// Drops idle per-client admission entries every PURGE_INTERVAL until `stop`, so the tables
/// shrink back after a flood. `None` when no table exists.
fn purge_admission_tables(shared: &Arc<Shared>, stop: CancellationToken) -> Option<JoinHandle<()>> {
    let any =
        shared.admission.has_tables() || shared.router.routes().any(|r| r.admission.has_tables());
    if !any {
        return None;
    }
    let shared = Arc::clone(shared);
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(PURGE_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {
                    let now = tokio::time::Instant::now();
                    shared.admission.purge(now);
                    for route in shared.router.routes() {
                        route.admission.purge(now);
                    }
                }
            }
        }
    }))
}
