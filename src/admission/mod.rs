//! Admission: the stage every connection and every HTTP request passes before it may reach a
//! backend. Address lists, connection limits and request limits live here, so no path can
//! skip them.
//!
//! Two levels, checked in this order (docs/SECURITY.md):
//! - global (`Admission`): every client connection, at accept (after any PROXY header);
//! - per route (`RouteAdmission`): a TCP relay before its backend connect, a terminating route's
//!   lists before the handshake, and each HTTP request (and WebSocket) once routed.

pub mod basic_auth;
pub mod per_ip;
pub mod request_rate;
mod table;
pub mod window;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{self, IpPattern, RateLimitKey};
use crate::conn::lifecycle::CloseReason;
use crate::router::ip_matches;
use basic_auth::BasicAuthCheck;
use per_ip::{IpRefusal, IpSlot, PerIp};
use request_rate::{RateKey, RequestRate};

/// How often idle per-IP and per-key entries are dropped, so the tables shrink after a flood.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// Why a client was refused, and how to tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An address list said no.
    Blocked,
    /// The route's `maxConnections` is reached.
    RouteFull,
    /// The global `maxConnections` is reached.
    ProxyFull,
    /// The client's own connection count or connection rate.
    PerIp(IpRefusal),
}

impl Refusal {
    pub fn reason(self) -> CloseReason {
        match self {
            Refusal::Blocked => CloseReason::Blocked,
            _ => CloseReason::Limit,
        }
    }

    /// For logs.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Blocked => "client address refused by ipAllowList/ipBlockList",
            Refusal::RouteFull => "route at its maxConnections",
            Refusal::ProxyFull => "proxy at its maxConnections",
            Refusal::PerIp(IpRefusal::TooManyLive) => "client at maxConnectionsPerIP",
            Refusal::PerIp(IpRefusal::TooFast { .. }) => "client over connectionRateLimitPerMinute",
        }
    }

    /// When the client may try again, if that is known.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Refusal::PerIp(IpRefusal::TooFast { retry_after }) => Some(retry_after),
            _ => None,
        }
    }
}

/// Held while a connection (or an HTTP request, or a WebSocket) is admitted; dropping it
/// releases every count it holds.
#[derive(Default)]
pub struct Ticket {
    _route: Option<RouteSlot>,
    _ip: Option<IpSlot>,
}

/// One live connection on a route.
struct RouteSlot(Arc<AtomicU64>);

impl Drop for RouteSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `ipAllowList` and `ipBlockList`: block beats allow; an empty allow list allows everyone.
#[derive(Debug, Default)]
struct IpLists {
    allow: Vec<IpPattern>,
    block: Vec<IpPattern>,
}

impl IpLists {
    fn new(rules: &config::Admission) -> IpLists {
        IpLists {
            allow: rules.ip_allow_list.clone(),
            block: rules.ip_block_list.clone(),
        }
    }

    fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let blocked = self.block.iter().any(|p| ip_matches(p, ip));
        let allowed = self.allow.is_empty() || self.allow.iter().any(|p| ip_matches(p, ip));
        allowed && !blocked
    }
}

/// Lists and limits of one level (global or a route).
struct Rules {
    lists: IpLists,
    max_connections: u64,
    live: Arc<AtomicU64>,
    /// Only when a per-IP limit is set: no table, no lock, otherwise.
    per_ip: Option<Arc<PerIp>>,
}

impl Rules {
    fn new(rules: &config::Admission) -> Rules {
        let per_ip = (rules.max_connections_per_ip != 0
            || rules.connection_rate_limit_per_minute != 0)
            .then(|| {
                PerIp::new(
                    rules.max_connections_per_ip,
                    rules.connection_rate_limit_per_minute,
                )
            });
        Rules {
            lists: IpLists::new(rules),
            max_connections: rules.max_connections,
            live: Arc::new(AtomicU64::new(0)),
            per_ip,
        }
    }

    fn admit(
        &self,
        ip: IpAddr,
        new_connection: bool,
        full: Refusal,
        now: Instant,
    ) -> Result<Ticket, Refusal> {
        if !self.lists.admits(ip) {
            return Err(Refusal::Blocked);
        }
        let route = if self.max_connections == 0 {
            None
        } else {
            // Counted first, then checked: concurrent admissions can never overshoot.
            let slot = RouteSlot(Arc::clone(&self.live));
            if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
                return Err(full);
            }
            Some(slot)
        };
        let ip = match &self.per_ip {
            Some(table) => Some(
                table
                    .admit(ip.to_canonical(), new_connection, now)
                    .map_err(Refusal::PerIp)?,
            ),
            None => None,
        };
        Ok(Ticket {
            _route: route,
            _ip: ip,
        })
    }

    fn entries(&self) -> usize {
        self.per_ip.as_ref().map_or(0, |t| t.len())
    }

    fn purge(&self, now: Instant) {
        if let Some(table) = &self.per_ip {
            table.purge(now);
        }
    }
}

/// The global level: every client connection passes it once.
pub struct Admission {
    rules: Rules,
}

impl Admission {
    /// The global `maxConnections` is counted by the listener (it refuses before a task is
    /// spawned), so it is not repeated here.
    pub fn new(global: &config::Admission) -> Admission {
        let rules = config::Admission {
            max_connections: 0,
            ..global.clone()
        };
        Admission {
            rules: Rules::new(&rules),
        }
    }

    /// A new client connection from `ip` (the real client, after any PROXY header).
    pub fn admit_connection(&self, ip: IpAddr) -> Result<Ticket, Refusal> {
        self.rules
            .admit(ip, true, Refusal::ProxyFull, Instant::now())
    }

    pub fn entries(&self) -> usize {
        self.rules.entries()
    }

    pub fn purge(&self, now: Instant) {
        self.rules.purge(now);
    }

    /// Whether anything here needs the periodic purge.
    pub fn has_tables(&self) -> bool {
        self.rules.per_ip.is_some()
    }
}

/// A route's `security`.
pub struct RouteAdmission {
    rules: Rules,
    rate_limit: Option<RequestLimit>,
    basic_auth: Option<BasicAuthCheck>,
}

struct RequestLimit {
    limiter: RequestRate,
    key: RateLimitKey,
    message: Option<String>,
}

/// Why an HTTP request was not let through, as its answer says it.
#[derive(Debug)]
pub enum RequestRefusal {
    /// `rateLimit`: 429 with this Retry-After and body.
    RateLimited {
        retry_after: Duration,
        message: Option<String>,
    },
    /// `basicAuth`: 401 with this challenge.
    Unauthorized(http::HeaderValue),
}

impl RouteAdmission {
    pub fn new(security: &config::RouteSecurity) -> RouteAdmission {
        RouteAdmission {
            rules: Rules::new(&security.admission),
            rate_limit: security.rate_limit.as_ref().map(|r| RequestLimit {
                limiter: RequestRate::new(r.max_requests, r.window),
                key: r.key.clone(),
                message: r.error_message.clone(),
            }),
            basic_auth: security.basic_auth.as_ref().map(BasicAuthCheck::new),
        }
    }

    /// The address lists alone: what can be decided before a TLS handshake.
    pub fn lists_admit(&self, ip: IpAddr) -> bool {
        self.rules.lists.admits(ip)
    }

    /// One TCP relay, HTTP request or WebSocket on this route. `new_connection`: the client
    /// connection has not reached this route before (it counts toward the connection rate).
    pub fn admit(&self, ip: IpAddr, new_connection: bool) -> Result<Ticket, Refusal> {
        self.rules
            .admit(ip, new_connection, Refusal::RouteFull, Instant::now())
    }

    /// The HTTP-only checks, after `admit`: the request rate first (so guessing passwords is
    /// rate limited too), then credentials.
    pub async fn check_request(
        &self,
        ip: IpAddr,
        path: &str,
        headers: &http::HeaderMap,
    ) -> Result<(), RequestRefusal> {
        if let Some(limit) = &self.rate_limit {
            let key = match &limit.key {
                RateLimitKey::Header(name) => match headers.get(name.as_str()) {
                    Some(value) => RateKey::Header(value.as_bytes()),
                    None => RateKey::Ip(ip),
                },
                RateLimitKey::Ip => RateKey::Ip(ip),
            };
            if let Err(retry_after) = limit.limiter.check(key, Instant::now()) {
                return Err(RequestRefusal::RateLimited {
                    retry_after,
                    message: limit.message.clone(),
                });
            }
        }
        if let Some(auth) = &self.basic_auth
            && !auth.exempt(path)
            && !auth.verify(headers.get(http::header::AUTHORIZATION)).await
        {
            return Err(RequestRefusal::Unauthorized(auth.challenge()));
        }
        Ok(())
    }

    /// Entries held for per-client state (per-IP counts and request-rate keys).
    pub fn entries(&self) -> usize {
        self.rules.entries() + self.rate_limit.as_ref().map_or(0, |l| l.limiter.len())
    }

    pub fn purge(&self, now: Instant) {
        self.rules.purge(now);
        if let Some(limit) = &self.rate_limit {
            limit.limiter.purge(now);
        }
    }

    /// Whether anything here needs the periodic purge.
    pub fn has_tables(&self) -> bool {
        self.rules.per_ip.is_some() || self.rate_limit.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn net(text: &str) -> IpPattern {
        IpPattern::Net(ipnet::IpNet::from_str(text).expect("valid"))
    }

    fn ip(text: &str) -> IpAddr {
        IpAddr::from_str(text).expect("valid")
    }

    #[test]
    fn block_beats_allow_and_mapped_addresses_match_ipv4_rules() {
        let lists = IpLists {
            allow: vec![net("10.0.0.0/8")],
            block: vec![net("10.0.0.5/32"), IpPattern::Glob("10.1.*".into())],
        };
        assert!(lists.admits(ip("10.0.0.4")));
        assert!(lists.admits(ip("::ffff:10.0.0.4")));
        assert!(!lists.admits(ip("10.0.0.5")));
        assert!(!lists.admits(ip("::ffff:10.0.0.5")));
        assert!(!lists.admits(ip("10.1.2.3")));
        assert!(!lists.admits(ip("192.168.0.1")));
        assert!(IpLists::default().admits(ip("192.168.0.1")));
    }

    #[test]
    fn route_max_connections_counts_live_tickets() {
        let route = RouteAdmission::new(&config::RouteSecurity {
            admission: config::Admission {
                max_connections: 2,
                ..Default::default()
            },
            ..Default::default()
        });
        let a = route.admit(ip("127.0.0.1"), true).expect("first");
        let b = route.admit(ip("127.0.0.2"), true).expect("second");
        assert_eq!(
            route.admit(ip("127.0.0.3"), true).err(),
            Some(Refusal::RouteFull)
        );
        drop(a);
        let _c = route.admit(ip("127.0.0.3"), true).expect("room again");
        drop(b);
        assert_eq!(route.rules.live.load(Ordering::Acquire), 1);
    }

    #[test]
    fn refusals_name_their_close_reason() {
        assert_eq!(Refusal::Blocked.reason(), CloseReason::Blocked);
        assert_eq!(Refusal::RouteFull.reason(), CloseReason::Limit);
        assert_eq!(
            Refusal::PerIp(IpRefusal::TooManyLive).reason(),
            CloseReason::Limit
        );
    }
}
