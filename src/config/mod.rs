//! Configuration: the typed model the proxy runs from, and loading it from JSON, YAML or TOML.
//!
//! Files are read into a generic tree first (`serde_json::Value`), then `parse` walks that tree
//! by hand so that every problem is reported with its field path, not only the first one.

mod parse;
mod units;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::{ConfigError, ConfigErrors, Warning};
pub use units::{parse_duration, parse_size};

pub use crate::tls::TlsVersion;

/// The embedded config that `smartproxy` runs when no file is given: loopback only.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// A whole proxy configuration, validated. Durations of zero mean "off".
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub routes: Vec<Route>,
    /// `None` = all interfaces (dual-stack `[::]`, or `0.0.0.0` where IPv6 is off).
    pub bind_address: Option<IpAddr>,
    pub initial_data_timeout: Duration,
    pub connection_timeout: Duration,
    pub inactivity_timeout: Duration,
    pub keep_alive_treatment: KeepAliveTreatment,
    pub keep_alive_inactivity_multiplier: f64,
    pub max_connection_lifetime: Duration,
    pub extended_keep_alive_lifetime: Duration,
    pub half_close_timeout: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub no_delay: bool,
    pub keep_alive: bool,
    pub keep_alive_initial_delay: Duration,
    pub max_pending_data_size: u64,
    /// The global client address lists and connection limits (`ipAllowList`, `ipBlockList`,
    /// `maxConnections`, `maxConnectionsPerIP`, `connectionRateLimitPerMinute`).
    pub admission: Admission,
    /// `proxyProtocol`: which peers may send a PROXY header; `None` = no peer may.
    pub proxy_protocol: Option<ProxyProtocolAccept>,
    /// Bytes buffered per relay direction (`relayBufferSize`, not a SmartProxy key).
    pub relay_buffer_size: usize,
    pub http_response_timeout: Duration,
    pub max_request_head_size: u64,
    /// Longest time a client may take to send a request head (and the longest an HTTP/1.1
    /// keep-alive connection waits for its next request); `headersTimeout`, zero = none.
    pub headers_timeout: Duration,
    /// Peers whose X-Forwarded-For chain is kept and appended to. Host bits are cleared, and
    /// IPv4-mapped IPv6 networks are stored as the IPv4 networks they name.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveTreatment {
    Standard,
    Extended,
    Immortal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Unique; generated as `route-N` (N = 1-based position) when absent.
    pub name: String,
    /// Higher is tried first; ties keep file order.
    pub priority: i64,
    pub enabled: bool,
    pub matcher: RouteMatch,
    pub action: Action,
    /// `security`: the route's own admission rules, checked after the route matched and before
    /// any backend connect.
    pub security: RouteSecurity,
}

/// Client address lists and connection limits, global or per route. Zero = no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    /// Non-empty: only these clients are admitted.
    pub ip_allow_list: Vec<IpPattern>,
    /// These clients are refused, even when the allow list names them.
    pub ip_block_list: Vec<IpPattern>,
    /// Live connections (on HTTP routes: requests in flight and open WebSockets).
    pub max_connections: u64,
    /// Live connections per client IP (HTTP routes count as above).
    pub max_connections_per_ip: u64,
    /// New connections per client IP within a sliding 60 s window.
    pub connection_rate_limit_per_minute: u64,
}

impl Admission {
    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        *self == Admission::default()
    }
}

/// A route's `security`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteSecurity {
    pub admission: Admission,
    /// HTTP only: requests per key per window; over it → 429.
    pub rate_limit: Option<RateLimit>,
    /// HTTP only: requests must carry one of these users' credentials; else 401.
    pub basic_auth: Option<BasicAuth>,
}

/// `security.rateLimit`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Never zero.
    pub max_requests: u64,
    /// Never zero.
    pub window: Duration,
    pub key: RateLimitKey,
    /// The 429 body; a short default when `None`.
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The client address (the real one, after a PROXY header).
    Ip,
    /// The value of this header (lowercase name); requests without it are keyed by address.
    Header(String),
}

/// `security.basicAuth`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    /// Never empty; usernames are unique.
    pub users: Vec<BasicAuthUser>,
    /// Shown in `WWW-Authenticate`; holds no `"` or `\\` or control characters.
    pub realm: String,
    /// Request paths (globs, as `match.path`) that need no credentials.
    pub exclude_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuthUser {
    pub username: String,
    pub password: Password,
}

/// How a configured password is checked. Hashes are validated when the config loads.
#[derive(Debug, Clone, PartialEq)]
pub enum Password {
    /// Compared as written.
    Plain(String),
    /// A bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
    Bcrypt(String),
    /// An argon2 PHC string (`$argon2id$…`, `$argon2i$…`, `$argon2d$…`).
    Argon2(String),
}

/// `proxyProtocol`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocolAccept {
    /// Peers trusted to send a PROXY header (host bits cleared; IPv4-mapped IPv6 networks
    /// stored as IPv4). Empty = none.
    pub accept: Vec<ipnet::IpNet>,
    /// A trusted peer must send a header (default true).
    pub required: bool,
}

/// `targets[].sendProxyProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// Every local port this route listens on, sorted and without duplicates.
    pub ports: Vec<u16>,
    /// Client address patterns; empty = any client.
    pub client_ip: Vec<IpPattern>,
    /// SNI patterns (case-insensitive globs over the whole name); empty = any name or none.
    pub domains: Vec<String>,
    /// Highest version the ClientHello offers must be one of these; empty = any.
    pub tls_versions: Vec<TlsVersion>,
    /// HTTP only: a case-sensitive glob over the request path (without the query); starts with
    /// `/` or `*`.
    pub path: Option<String>,
    /// HTTP only: lowercase header name → case-insensitive glob its value must match. Sorted by
    /// name, each name once; empty = any request.
    pub headers: Vec<(String, String)>,
}

/// A `match.clientIp` entry: a CIDR (`10.0.0.0/8`, a bare address) or a glob (`192.168.1.*`).
#[derive(Debug, Clone, PartialEq)]
pub enum IpPattern {
    Net(ipnet::IpNet),
    Glob(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    /// Where `forward` connects; empty for the other kinds.
    pub targets: Vec<Target>,
    /// `None`: TLS connections that match are forwarded untouched, like passthrough.
    pub tls: Option<RouteTls>,
    /// `action.protocol`: on terminated TLS, `tcp` relays the plaintext at once and `http`
    /// forces the HTTP engine; `None` lets ALPN and the first plaintext bytes decide. Always
    /// `None` without a terminating `tls` (the key is ignored there, with a warning).
    pub protocol: Option<ActionProtocol>,
    /// `action.headers`: request and response header rules (HTTP only). Empty unless the kind is
    /// `Forward` and the route can carry HTTP the proxy reads.
    pub headers: HeaderRules,
    /// The defaults unless the kind is `Forward`; pings only on routes the proxy reads as HTTP.
    pub websocket: WebSocketOptions,
    /// The default unless the kind is `Forward`.
    pub load_balancing: LoadBalancing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    Forward,
    /// `to` is an absolute URL or a path starting with `/`, and may hold the templates
    /// `{domain} {clientIp} {path} {query} {port}`; `status` is 301, 302, 303, 307 or 308.
    Redirect {
        to: String,
        status: u16,
    },
    Respond {
        status: u16,
        body: String,
        /// Lowercase header name → value (templates allowed), sorted by name, each name once;
        /// content-type defaults to text/plain.
        headers: Vec<(String, String)>,
    },
    /// Closes the connection; on HTTP, answers 403 and then closes.
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionProtocol {
    Tcp,
    Http,
}

/// Header rules: a value sets the header (templates allowed), `None` removes it. Each list is
/// sorted by name and holds each name once, so the rules never depend on one another's order.
/// Names are never framing or hop-by-hop headers (`connection`, `content-length`, `keep-alive`,
/// `proxy-connection`, `te`, `trailer`, `transfer-encoding`, `upgrade`); values hold no control
/// characters other than tab, and only the templates `{domain} {clientIp} {path} {query} {port}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderRules {
    /// Lowercase header name → value.
    pub request: Vec<(String, Option<String>)>,
    pub response: Vec<(String, Option<String>)>,
}

/// `action.websocket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketOptions {
    /// `false` refuses WebSocket upgrades on the route with 403.
    pub enabled: bool,
    /// Ping the client this often after the upgrade; zero = off (the default).
    pub ping_interval: Duration,
    /// A client that sends nothing for this long after a ping is closed; never zero while
    /// `ping_interval` is set.
    pub ping_timeout: Duration,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        WebSocketOptions {
            enabled: true,
            ping_interval: Duration::ZERO,
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// `action.loadBalancing`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadBalancing {
    pub algorithm: Algorithm,
    pub health_check: Option<HealthCheck>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Algorithm {
    #[default]
    RoundRobin,
    LeastConnections,
    IpHash,
}

/// `loadBalancing.healthCheck`: an HTTP GET of `path` on every endpoint each `interval`; a 2xx
/// or 3xx status marks it up, anything else (another status, a connect failure, a timeout)
/// marks it down until a check passes again. `path` starts with `/`; `interval` and `timeout` are never zero, and `timeout`
/// is at most `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A route's `action.tls`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTls {
    pub mode: TlsMode,
    /// Required by the terminating modes: the route's default certificate.
    pub certificate: Option<CertificateSource>,
    /// Roots for verifying a re-encrypted backend instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `false` turns backend certificate verification off (re-encrypt only).
    pub reject_unauthorized: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Passthrough,
    Terminate,
    TerminateAndReencrypt,
}

/// Where a certificate chain and its private key come from (PEM).
#[derive(Debug, Clone, PartialEq)]
pub enum CertificateSource {
    /// Re-read when either file changes, and on SIGHUP.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// `cert` holds the chain (leaf first, then any `ca` given beside it).
    Inline { cert: String, key: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// One endpoint per host; never empty.
    pub hosts: Vec<String>,
    pub port: TargetPort,
    /// How HTTP requests reach this target (TCP paths ignore it).
    pub protocol: TargetProtocol,
    /// Write a PROXY header of this version on every connection to this target.
    pub send_proxy_protocol: Option<ProxyProtocolVersion>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TargetProtocol {
    /// HTTP/1.1 (or what ALPN picks when re-encrypting).
    #[default]
    H1,
    /// HTTP/2 with prior knowledge.
    H2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetPort {
    Fixed(u16),
    /// The port the client connected to.
    Preserve,
}

impl Default for Config {
    /// The documented defaults (docs/CONFIG.md), with no routes: what `{"routes": []}` loads as.
    fn default() -> Self {
        Config {
            routes: Vec::new(),
            bind_address: None,
            initial_data_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(30),
            inactivity_timeout: Duration::from_secs(4 * 3600),
            keep_alive_treatment: KeepAliveTreatment::Extended,
            keep_alive_inactivity_multiplier: 6.0,
            max_connection_lifetime: Duration::from_secs(24 * 3600),
            extended_keep_alive_lifetime: Duration::from_secs(7 * 86_400),
            half_close_timeout: Duration::from_secs(10 * 60),
            graceful_shutdown_timeout: Duration::from_secs(30),
            no_delay: true,
            keep_alive: true,
            keep_alive_initial_delay: Duration::from_secs(10),
            max_pending_data_size: 1 << 20,
            admission: Admission::default(),
            proxy_protocol: None,
            relay_buffer_size: 64 << 10,
            http_response_timeout: Duration::from_secs(60),
            max_request_head_size: 64 << 10,
            headers_timeout: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Which file format a path holds, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    Toml,
}

impl Config {
    /// Reads and validates a config file; the format comes from the extension.
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigErrors> {
        parse::load_file(path)
    }

    /// Parses config text in the given format.
    pub fn parse(text: &str, format: Format) -> Result<(Config, Vec<Warning>), ConfigErrors> {
        parse::from_text(text, format)
    }

    /// Validates an already-parsed tree (JSON shape).
    pub fn from_value(value: &serde_json::Value) -> Result<(Config, Vec<Warning>), ConfigErrors> {
        parse::from_value(value)
    }

    /// The embedded default config.
    pub fn embedded_default() -> Config {
        match Self::parse(DEFAULT_CONFIG_YAML, Format::Yaml) {
            Ok((config, _)) => config,
            // The embedded file is checked by a unit test; reaching this is a build defect.
            Err(errors) => panic!("embedded default config is invalid: {errors}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_what_an_empty_route_list_loads_as() {
        let (parsed, warnings) = Config::parse(r#"{"routes": []}"#, Format::Json).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(Config::default(), parsed);
    }
}
