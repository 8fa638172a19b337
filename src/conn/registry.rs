//! The registry of live connections: the live count the proxy reports and waits on, and the
//! guard that takes a connection off it however its task ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::lifecycle::CloseReason;

#[derive(Default)]
pub struct Registry {
    live: AtomicUsize,
    total: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    idle: Notify,
}

impl Registry {
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Connections that ended with `reason` since start.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn record_close(&self, reason: CloseReason) {
        if let Some(counter) = self.closed.get(reason.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a new connection; it stays live until the returned guard is dropped.
    pub fn register(self: &Arc<Self>) -> ConnGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        let id = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        ConnGuard {
            registry: Arc::clone(self),
            id,
            reason: None,
        }
    }

    /// Resolves once no connection is live.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Owned by a connection's task; dropping it (on any exit, panics included) releases the entry.
pub struct ConnGuard {
    registry: Arc<Registry>,
    id: u64,
    reason: Option<CloseReason>,
}

impl ConnGuard {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records why the connection ended; counted when the guard drops.
    pub fn set_reason(&mut self, reason: CloseReason) {
        self.reason = Some(reason);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        // A task that ended without a reason was cancelled by the runtime shutting down.
        self.registry
            .record_close(self.reason.unwrap_or(CloseReason::Shutdown));
        if self.registry.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.registry.idle.notify_waiters();
        }
    }
}
