//! Active health checks: a periodic HTTP GET to every endpoint of a route.

use std::future::Future;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::{Endpoint, Host, Inner, Slot};
use crate::config::{HealthCheck, TargetPort};

/// `tokio::time::interval` refuses zero, and a tiny interval would spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The checking task: a round every `interval`, the endpoints of a round checked concurrently.
pub(super) async fn run(
    inner: Weak<Inner>,
    check: HealthCheck,
    tls: Option<TlsConnector>,
    stop: CancellationToken,
) {
    let Some(targets) = inner.upgrade().map(|inner| checked_endpoints(&inner)) else {
        return;
    };
    let interval = check.interval.max(MIN_INTERVAL);
    // A check that never answers would otherwise hold up every later round.
    let timeout = match check.timeout.is_zero() {
        true => interval,
        false => check.timeout,
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Nobody routes to these endpoints any more (the route table was replaced).
        if inner.strong_count() == 0 {
            return;
        }
        let round =
            join_all(targets.iter().map(|(slot, port)| {
                check_and_mark(slot, *port, &check.path, timeout, tls.as_ref())
            }));
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = round => {}
        }
    }
}

/// The endpoints with a port to check: `preserve` takes the port each client connected to, so
/// such endpoints are left to passive health.
fn checked_endpoints(inner: &Inner) -> Vec<(Arc<Slot>, u16)> {
    inner
        .slots
        .iter()
        .filter_map(|slot| match slot.endpoint.port {
            TargetPort::Fixed(port) => Some((Arc::clone(slot), port)),
            TargetPort::Preserve => {
                tracing::debug!(
                    endpoint = %slot.endpoint,
                    "no active health check for an endpoint with port preserve"
                );
                None
            }
        })
        .collect()
}

async fn join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        match pending.is_empty() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await
}

async fn check_and_mark(
    slot: &Slot,
    port: u16,
    path: &str,
    timeout: Duration,
    tls: Option<&TlsConnector>,
) {
    let result = tokio::time::timeout(timeout, probe(&slot.endpoint, port, path, tls))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    match result {
        Ok(()) => {
            if slot.down.swap(false, Ordering::Relaxed) {
                tracing::info!(endpoint = %slot.endpoint, "backend endpoint up: health check passed");
            }
        }
        Err(reason) => {
            if !slot.down.swap(true, Ordering::Relaxed) {
                tracing::info!(
                    endpoint = %slot.endpoint, reason = %reason,
                    "backend endpoint down: health check failed"
                );
            } else {
                tracing::debug!(endpoint = %slot.endpoint, reason = %reason, "health check failed");
            }
        }
    }
}

/// One check: `Ok` on a 2xx or 3xx status, else why not.
async fn probe(
    endpoint: &Endpoint,
    port: u16,
    path: &str,
    tls: Option<&TlsConnector>,
) -> Result<(), String> {
    let mut stream = endpoint
        .connect_port(port)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    endpoint
        .send_proxy_header(&mut stream, None)
        .await
        .map_err(|e| format!("PROXY header: {e}"))?;
    let host = match &endpoint.host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => endpoint.host(),
    };
    let Some(connector) = tls else {
        return get(stream, &host, path).await;
    };
    let name = crate::tls::backend::server_name(None, &endpoint.host())
        .ok_or_else(|| "no valid TLS server name for the endpoint host".to_string())?;
    let stream = connector
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    get(stream, &host, path).await
}

async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    host: &str,
    path: &str,
) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("health check path {path:?} does not start with /"));
    }
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let mut conn = pin!(conn);
    let mut response = pin!(sender.send_request(request));
    let response = tokio::select! {
        biased;
        r = &mut response => r,
        // The connection ended first: the response, or the error, is already queued.
        _ = &mut conn => response.await,
    };
    let status = response.map_err(|e| format!("HTTP: {e}"))?.status();
    match status.is_success() || status.is_redirection() {
        true => Ok(()),
        false => Err(format!("status {}", status.as_u16())),
    }
}
