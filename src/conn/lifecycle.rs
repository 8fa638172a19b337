//! The lifecycle policy of a relayed connection: which limits apply and why it ended.

use std::fmt;
use std::time::Duration;

use crate::config::{Config, KeepAliveTreatment};

/// The limits one connection runs under, derived once from the config's keep-alive treatment.
/// `None` means the limit is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// No byte read from either peer for this long closes the connection.
    pub inactivity: Option<Duration>,
    /// Hard cap from the accept; activity does not reset it.
    pub lifetime: Option<Duration>,
    /// After one side's FIN, the still-open direction may be idle this long.
    pub half_close: Option<Duration>,
}

fn limit(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        let half_close = limit(config.half_close_timeout);
        // `extended` needs TCP keepalive to find dead peers; without it, it is `standard`.
        let treatment = match config.keep_alive_treatment {
            KeepAliveTreatment::Extended if !config.keep_alive => KeepAliveTreatment::Standard,
            t => t,
        };
        match treatment {
            KeepAliveTreatment::Standard => Limits {
                inactivity: limit(config.inactivity_timeout),
                lifetime: limit(config.max_connection_lifetime),
                half_close,
            },
            KeepAliveTreatment::Extended => Limits {
                inactivity: limit(
                    config
                        .inactivity_timeout
                        .mul_f64(config.keep_alive_inactivity_multiplier),
                ),
                lifetime: limit(config.extended_keep_alive_lifetime),
                half_close,
            },
            KeepAliveTreatment::Immortal => Limits {
                inactivity: None,
                lifetime: None,
                half_close,
            },
        }
    }
}

/// Why a connection ended. Every connection gets exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides sent FIN; the client's came first.
    ClientFin,
    /// Both sides sent FIN; the backend's came first.
    BackendFin,
    ClientReset,
    BackendReset,
    Inactivity,
    Lifetime,
    HalfCloseTimeout,
    InitialDataTimeout,
    ConnectFailed,
    NoRoute,
    NotTls,
    /// The client's TLS handshake with a terminating route failed.
    TlsHandshakeFailed,
    /// The client sent a request the HTTP engine refused as malformed (400, 431).
    BadRequest,
    /// A WebSocket client answered no ping within websocket.pingTimeout.
    PingTimeout,
    Limit,
    Blocked,
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 17] = [
        CloseReason::ClientFin,
        CloseReason::BackendFin,
        CloseReason::ClientReset,
        CloseReason::BackendReset,
        CloseReason::Inactivity,
        CloseReason::Lifetime,
        CloseReason::HalfCloseTimeout,
        CloseReason::InitialDataTimeout,
        CloseReason::ConnectFailed,
        CloseReason::NoRoute,
        CloseReason::NotTls,
        CloseReason::TlsHandshakeFailed,
        CloseReason::BadRequest,
        CloseReason::PingTimeout,
        CloseReason::Limit,
        CloseReason::Blocked,
        CloseReason::Shutdown,
    ];

    /// Position in `ALL`, for per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientFin => "client_fin",
            CloseReason::BackendFin => "backend_fin",
            CloseReason::ClientReset => "client_reset",
            CloseReason::BackendReset => "backend_reset",
            CloseReason::Inactivity => "inactivity",
            CloseReason::Lifetime => "lifetime",
            CloseReason::HalfCloseTimeout => "half_close_timeout",
            CloseReason::InitialDataTimeout => "initial_data_timeout",
            CloseReason::ConnectFailed => "connect_failed",
            CloseReason::NoRoute => "no_route",
            CloseReason::NotTls => "not_tls",
            CloseReason::TlsHandshakeFailed => "tls_handshake_failed",
            CloseReason::BadRequest => "bad_request",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Limit => "limit",
            CloseReason::Blocked => "blocked",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
