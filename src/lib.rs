//! smartproxy: a route-based TCP proxy whose connections live and die by one lifecycle.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use smartproxy::{Config, Format, Proxy};
//! let (config, _warnings) = Config::parse(r#"{"routes": []}"#, Format::Json)?;
//! let proxy = Proxy::start(config).await?;
//! println!("live connections: {}", proxy.live_connections());
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod config;
mod conn;
mod connect;
pub mod http;
mod listen;
mod proxy;
pub mod proxy_protocol;
mod router;
pub mod tls;

pub use config::{Config, ConfigErrors, Format};
pub use conn::lifecycle::CloseReason;
pub use proxy::{Proxy, StartError};

/// Internals the benchmarks under `benches/` measure directly. Not a stable API.
#[doc(hidden)]
pub mod bench_api {
    pub use crate::http::headers::{
        Forwarded, Templates, apply_rules, set_forwarded, strip_hop_by_hop,
    };
    pub use crate::router::{FirstBytes, HttpRequestFacts, Router};
}
