//! Loading a config file into a generic tree, and validating that tree by hand.
//!
//! The validator walks a `serde_json::Value` (whatever the file format was) and collects every
//! problem it finds, each with the path of the offending field (`routes[2].action.targets[0].port`)
//! and what was expected. Nothing stops at the first error. SmartProxy option names that this
//! implementation accepts but ignores produce warnings; every other unknown key is an error.
//! Features that exist in SmartProxy's schema but not yet here are validated for shape and then
//! refused with a "not supported yet" error, so a config never silently means less than it says.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::units::{MAX_DURATION, describe, parse_duration, parse_size, quoted, shown};
use super::{
    Action, Config, Format, IpPattern, KeepAliveTreatment, Route, RouteMatch, Target, TargetPort,
};

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// One problem in a config, at a field path such as `routes[2].action.targets[0].port`.
/// The path is empty for problems with the whole file (unreadable, syntax error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_entry(f, &self.path, &self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config (never empty when returned by the loaders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something accepted but worth telling the operator, e.g. a SmartProxy option that is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_entry(f, &self.path, &self.message)
    }
}

fn write_entry(f: &mut fmt::Formatter<'_>, path: &str, message: &str) -> fmt::Result {
    if path.is_empty() {
        f.write_str(message)
    } else {
        write!(f, "{path}: {message}")
    }
}

fn single(message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError::new("", message)])
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Reads a config file; the format comes from the extension (`.json`, `.yaml`/`.yml`, `.toml`,
/// case-insensitive).
pub fn load_file(path: &Path) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let shown = path.display();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("json") => Format::Json,
        Some("yaml" | "yml") => Format::Yaml,
        Some("toml") => Format::Toml,
        _ => {
            return Err(single(format!(
                "{shown}: unknown config file extension; expected .yaml, .yml, .json or .toml"
            )));
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| single(format!("{shown}: cannot read the config file: {e}")))?;
    let value = parse_text(&text, format).map_err(|m| single(format!("{shown}: {m}")))?;
    from_value(&value)
}

/// Parses and validates config text in the given format.
pub fn from_text(text: &str, format: Format) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let value = parse_text(text, format).map_err(single)?;
    from_value(&value)
}

/// Validates a config tree (JSON shape, whatever format it came from).
pub fn from_value(value: &Value) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let mut ctx = Ctx::default();
    let config = validate_config(&mut ctx, value);
    match config {
        Some(config) if ctx.errors.is_empty() => Ok((config, ctx.warnings)),
        _ => {
            if ctx.errors.is_empty() {
                ctx.error("", "the config is invalid");
            }
            Err(ConfigErrors(ctx.errors))
        }
    }
}

/// Text to tree; a syntax error is one message with the parser's line and column.
fn parse_text(text: &str, format: Format) -> Result<Value, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => serde_json::from_str::<StrictJson>(text)
            .map(|strict| strict.0)
            .map_err(|e| format!("JSON syntax error: {e}")),
        Format::Yaml => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| format!("YAML syntax error: {}", e.without_snippet())),
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| toml_error(text, &e)),
    }
}

fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span().and_then(|span| text.get(..span.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// A JSON document read into a `Value`, refusing duplicate keys in an object (serde_json's own
/// `Value` keeps the last one silently; YAML and TOML parsers refuse duplicates themselves).
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictJson::deserialize(deserializer).map(|strict| strict.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

const GLOBAL_KEYS: &[&str] = &[
    "routes",
    "bindAddress",
    "initialDataTimeout",
    "connectionTimeout",
    "inactivityTimeout",
    "keepAliveTreatment",
    "keepAliveInactivityMultiplier",
    "maxConnectionLifetime",
    "extendedKeepAliveLifetime",
    "halfCloseTimeout",
    "gracefulShutdownTimeout",
    "noDelay",
    "keepAlive",
    "keepAliveInitialDelay",
    "maxPendingDataSize",
    "maxConnections",
    "relayBufferSize",
    "httpResponseTimeout",
    "maxRequestHeadSize",
    "maxConnectionsPerIP",
    "connectionRateLimitPerMinute",
    "ipAllowList",
    "ipBlockList",
    "trustedProxies",
    "acme",
    "admin",
    "metrics",
    "proxyProtocol",
    "defaults",
];

/// SmartProxy global options that load with a warning and have no effect here.
const IGNORED_GLOBALS: &[&str] = &[
    "socketTimeout",
    "inactivityCheckInterval",
    "enableKeepAliveProbes",
    "enableRandomizedTimeouts",
    "allowSessionTicket",
    "enableDetailedLogging",
    "enableTlsDebugLogging",
    "enableNonTlsLogging",
    "proxyIPs",
    "acceptProxyProtocol",
    "sendProxyProtocol",
    "useHttpProxy",
    "httpProxyPort",
    "networkProxyPort",
    "forwardingEngine",
    "certProvisionFunction",
    "certProvisionFallbackToAcme",
    "globalPortRanges",
    "sniHandling",
    "useNetworkProxy",
    "pfx",
    "key",
    "cert",
    "ca",
];

const ROUTE_KEYS: &[&str] = &[
    "name",
    "priority",
    "enabled",
    "match",
    "action",
    "security",
    "description",
    "tags",
];
const MATCH_KEYS: &[&str] = &[
    "ports",
    "domains",
    "path",
    "clientIp",
    "headers",
    "tlsVersion",
];
const RANGE_KEYS: &[&str] = &["from", "to"];
const ACTION_KEYS: &[&str] = &[
    "type",
    "targets",
    "target",
    "tls",
    "websocket",
    "headers",
    "redirect",
    "respond",
    "protocol",
    "loadBalancing",
];
const TARGET_KEYS: &[&str] = &[
    "host",
    "port",
    "protocol",
    "sendProxyProtocol",
    "match",
    "priority",
    "tls",
    "websocket",
    "loadBalancing",
    "headers",
];
const TLS_KEYS: &[&str] = &["mode", "certificate", "caFile", "rejectUnauthorized"];
const CERTIFICATE_KEYS: &[&str] = &["certFile", "keyFile", "cert", "key", "ca"];
const WEBSOCKET_KEYS: &[&str] = &[
    "enabled",
    "pingInterval",
    "pingTimeout",
    "maxPayloadSize",
    "subprotocols",
    "rewritePath",
    "allowedOrigins",
    "customHeaders",
];
const HEADERS_KEYS: &[&str] = &["request", "response"];
const REDIRECT_KEYS: &[&str] = &["to", "status"];
const RESPOND_KEYS: &[&str] = &["status", "body", "headers"];
const LOAD_BALANCING_KEYS: &[&str] = &["algorithm", "healthCheck"];
const SECURITY_KEYS: &[&str] = &[
    "ipAllowList",
    "ipBlockList",
    "maxConnections",
    "maxConnectionsPerIP",
    "rateLimit",
    "basicAuth",
    "jwtAuth",
];
const RATE_LIMIT_KEYS: &[&str] = &[
    "enabled",
    "maxRequests",
    "window",
    "keyBy",
    "headerName",
    "errorMessage",
];
const BASIC_AUTH_KEYS: &[&str] = &["enabled", "users", "realm", "excludePaths"];
const JWT_AUTH_KEYS: &[&str] = &[
    "enabled",
    "secret",
    "algorithm",
    "issuer",
    "audience",
    "expiresIn",
    "excludePaths",
];

// What each refused feature arrives with, for the "not supported yet" messages.
const WITH_ADMISSION: &str = "admission control";
const WITH_ROUTING: &str = "SNI/Host/HTTP routing";
const WITH_HTTP: &str = "the HTTP engine";
const WITH_TLS: &str = "TLS passthrough/termination";
const WITH_ACME: &str = "automatic certificates (ACME)";
const WITH_ADMIN: &str = "the admin API";
const WITH_METRICS: &str = "the admin API and metrics";
const WITH_PROXY_PROTOCOL: &str = "PROXY protocol support";
const WITH_DEFAULTS: &str = "route defaults";
const WITH_LOAD_BALANCING: &str = "more load-balancing algorithms";
const WITH_HEALTH_CHECKS: &str = "backend health checks";
const WITH_SOCKET_HANDLERS: &str = "socket handlers in the library";
const WITH_TARGET_OPTIONS: &str = "per-target options";

/// The kernel counts keepalive idle time in whole seconds, up to this many (Linux TCP_KEEPIDLE).
const MAX_KEEPALIVE_IDLE_SECS: u64 = 32_767;
const MIN_RELAY_BUFFER: u64 = 1 << 10;
const MAX_RELAY_BUFFER: u64 = 16 << 20;

/// The defaults of SPEC §2.1.
fn defaults() -> Config {
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
        max_connections: 0,
        relay_buffer_size: 64 << 10,
        http_response_timeout: Duration::from_secs(60),
        max_request_head_size: 64 << 10,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Ctx {
    errors: Vec<ConfigError>,
    warnings: Vec<Warning>,
}

impl Ctx {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn unsupported(&mut self, path: &str, arrives_with: &str) {
        self.error(
            path,
            format!("not supported yet by this version (arrives with {arrives_with})"),
        );
    }

    /// Runs `check` and tells whether it reported no new error.
    fn clean<T>(&mut self, check: impl FnOnce(&mut Ctx) -> T) -> (T, bool) {
        let before = self.errors.len();
        let result = check(self);
        let clean = self.errors.len() == before;
        (result, clean)
    }
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Reports every key of `object` that is not in `known`: a warning for `ignored` SmartProxy
/// options, an error (with a suggestion when one is close) for anything else.
fn check_keys(
    ctx: &mut Ctx,
    path: &str,
    object: &Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
) {
    for key in object.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let key_path = child(path, key);
        if ignored.contains(&key.as_str()) {
            ctx.warn(
                &key_path,
                "SmartProxy option accepted but ignored by smartproxy",
            );
            continue;
        }
        let message = match suggest(key, known.iter().chain(ignored)) {
            Some(close) => format!("unknown key; did you mean `{close}`?"),
            None if known.len() <= 12 => {
                format!("unknown key; expected one of: {}", known.join(", "))
            }
            None => "unknown key".to_string(),
        };
        ctx.error(&key_path, message);
    }
}

/// The candidate closest to `key` (edit distance ≤ 2, ignoring case, `_` and `-`).
fn suggest<'a>(key: &str, candidates: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let wanted = normalize_key(key);
    let length = wanted.chars().count();
    candidates
        .map(|candidate| {
            (
                edit_distance(&wanted, &normalize_key(candidate)),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= 2 && *distance < length)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        let mut row = current.iter_mut();
        if let Some(first) = row.next() {
            *first = i + 1;
        }
        let mut left = i + 1;
        for ((cb, cell), window) in b.iter().zip(row).zip(previous.windows(2)) {
            let (diagonal, up) = match window {
                [diagonal, up] => (*diagonal, *up),
                _ => (0, 0),
            };
            let substitution = diagonal + usize::from(ca != *cb);
            let value = substitution.min(up + 1).min(left + 1);
            *cell = value;
            left = value;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous.last().copied().unwrap_or(0)
}

fn expect_object<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<&'a Map<String, Value>> {
    match value {
        Value::Object(object) => Some(object),
        other => {
            ctx.error(path, format!("expected {what}, found {}", describe(other)));
            None
        }
    }
}

fn expect_bool(ctx: &mut Ctx, path: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            ctx.error(
                path,
                format!("expected true or false, found {}", describe(other)),
            );
            None
        }
    }
}

fn expect_str<'a>(ctx: &mut Ctx, path: &str, value: &'a Value, what: &str) -> Option<&'a str> {
    match value {
        Value::String(s) => Some(s),
        other => {
            ctx.error(path, format!("expected {what}, found {}", describe(other)));
            None
        }
    }
}

/// A non-empty string.
fn expect_text<'a>(ctx: &mut Ctx, path: &str, value: &'a Value, what: &str) -> Option<&'a str> {
    let text = expect_str(ctx, path, value, what)?;
    if text.is_empty() {
        ctx.error(path, format!("expected {what}, found an empty string"));
        return None;
    }
    Some(text)
}

/// A non-negative whole number (a count).
fn expect_count(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u64> {
    match value.as_u64() {
        Some(n) => Some(n),
        None => {
            ctx.error(
                path,
                format!(
                    "expected a whole number ≥ 0 (0 = unlimited), found {}",
                    describe(value)
                ),
            );
            None
        }
    }
}

fn expect_duration(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Duration> {
    match parse_duration(value) {
        Ok(duration) => Some(duration),
        Err(message) => {
            ctx.error(path, message);
            None
        }
    }
}

fn expect_size(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u64> {
    match parse_size(value) {
        Ok(size) => Some(size),
        Err(message) => {
            ctx.error(path, message);
            None
        }
    }
}

/// A string or a list of strings, each with its own path. `None` after a shape error.
fn string_or_list<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    match value {
        Value::String(s) => Some(vec![(path.to_string(), s.as_str())]),
        Value::Array(items) => list_of_strings(ctx, path, items, what),
        other => {
            ctx.error(
                path,
                format!(
                    "expected {what} or a list of them, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn expect_string_list<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    match value {
        Value::Array(items) => list_of_strings(ctx, path, items, what),
        other => {
            ctx.error(
                path,
                format!("expected a list of {what}, found {}", describe(other)),
            );
            None
        }
    }
}

fn list_of_strings<'a>(
    ctx: &mut Ctx,
    path: &str,
    items: &'a [Value],
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, entry) in items.iter().enumerate() {
        let entry_path = item(path, i);
        match entry {
            Value::String(s) => out.push((entry_path, s.as_str())),
            other => {
                ctx.error(
                    &entry_path,
                    format!("expected {what}, found {}", describe(other)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// An object whose values are all strings (`headers`-like maps); `allow_null` admits `null`
/// values (header removal). Returns how many entries it has.
fn expect_string_map(ctx: &mut Ctx, path: &str, value: &Value, allow_null: bool) -> Option<usize> {
    let object = expect_object(ctx, path, value, "an object of header names to values")?;
    let mut ok = true;
    for (key, entry) in object {
        match entry {
            Value::String(_) => {}
            Value::Null if allow_null => {}
            other => {
                let expected = if allow_null {
                    "a string (or null to remove the header)"
                } else {
                    "a string"
                };
                ctx.error(
                    &child(path, key),
                    format!("expected {expected}, found {}", describe(other)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(object.len())
}

/// `one of a, b or c`
fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [only] => only.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn expect_choice<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    allowed: &[&'a str],
    what: &str,
) -> Option<&'a str> {
    match value {
        Value::String(s) => match allowed.iter().find(|a| **a == s.as_str()) {
            Some(found) => Some(*found),
            None => {
                ctx.error(
                    path,
                    format!("{} is not {what}; expected {}", quoted(s), one_of(allowed)),
                );
                None
            }
        },
        other => {
            ctx.error(
                path,
                format!(
                    "expected {what} ({}), found {}",
                    one_of(allowed),
                    describe(other)
                ),
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Global options
// ---------------------------------------------------------------------------------------------

fn validate_config(ctx: &mut Ctx, root: &Value) -> Option<Config> {
    let object = match root {
        Value::Object(object) => object,
        Value::Null => {
            ctx.error(
                "",
                "the config is empty; expected an object with at least `routes` \
                 (a list of routes; `routes: []` is valid)",
            );
            return None;
        }
        other => {
            ctx.error(
                "",
                format!(
                    "expected an object with the global options and `routes` at the top level, \
                     found {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    check_keys(ctx, "", object, GLOBAL_KEYS, IGNORED_GLOBALS);

    let mut config = defaults();

    if let Some(value) = object.get("bindAddress") {
        config.bind_address = bind_address(ctx, value);
    }

    {
        let c = &mut config;
        for (key, slot) in [
            ("initialDataTimeout", &mut c.initial_data_timeout),
            ("connectionTimeout", &mut c.connection_timeout),
            ("inactivityTimeout", &mut c.inactivity_timeout),
            ("maxConnectionLifetime", &mut c.max_connection_lifetime),
            (
                "extendedKeepAliveLifetime",
                &mut c.extended_keep_alive_lifetime,
            ),
            ("halfCloseTimeout", &mut c.half_close_timeout),
            ("gracefulShutdownTimeout", &mut c.graceful_shutdown_timeout),
            ("httpResponseTimeout", &mut c.http_response_timeout),
        ] {
            if let Some(value) = object.get(key)
                && let Some(duration) = expect_duration(ctx, key, value)
            {
                *slot = duration;
            }
        }
        for (key, slot) in [
            ("noDelay", &mut c.no_delay),
            ("keepAlive", &mut c.keep_alive),
        ] {
            if let Some(value) = object.get(key)
                && let Some(b) = expect_bool(ctx, key, value)
            {
                *slot = b;
            }
        }
    }

    if let Some(value) = object.get("keepAliveTreatment") {
        let allowed = ["standard", "extended", "immortal"];
        match expect_choice(
            ctx,
            "keepAliveTreatment",
            value,
            &allowed,
            "a keep-alive treatment",
        ) {
            Some("standard") => config.keep_alive_treatment = KeepAliveTreatment::Standard,
            Some("immortal") => config.keep_alive_treatment = KeepAliveTreatment::Immortal,
            Some(_) => config.keep_alive_treatment = KeepAliveTreatment::Extended,
            None => {}
        }
    }

    if let Some(value) = object.get("keepAliveInactivityMultiplier") {
        let key = "keepAliveInactivityMultiplier";
        match value.as_f64() {
            Some(m) if m.is_finite() && m >= 1.0 => {
                let extended = config.inactivity_timeout.as_secs_f64() * m;
                if extended > MAX_DURATION.as_secs_f64() {
                    ctx.error(
                        key,
                        format!(
                            "inactivityTimeout × {m} is longer than the longest allowed \
                             duration (36500d)"
                        ),
                    );
                } else {
                    config.keep_alive_inactivity_multiplier = m;
                }
            }
            Some(_) => ctx.error(
                key,
                format!(
                    "{} is less than 1; expected a number ≥ 1 (e.g. 6; decimals allowed)",
                    shown(value)
                ),
            ),
            None => ctx.error(
                key,
                format!(
                    "expected a number ≥ 1 (e.g. 6; decimals allowed), found {}",
                    describe(value)
                ),
            ),
        }
    }

    if let Some(value) = object.get("keepAliveInitialDelay") {
        let key = "keepAliveInitialDelay";
        if let Some(delay) = expect_duration(ctx, key, value) {
            if config.keep_alive && delay < Duration::from_secs(1) {
                ctx.error(
                    key,
                    format!(
                        "{} is shorter than 1s; the kernel counts keepalive idle time in whole \
                         seconds and needs at least 1s (to turn keepalive off, set `keepAlive: false`)",
                        shown(value)
                    ),
                );
            } else if config.keep_alive && delay.as_secs() > MAX_KEEPALIVE_IDLE_SECS {
                ctx.error(
                    key,
                    format!(
                        "{} is longer than the kernel accepts ({MAX_KEEPALIVE_IDLE_SECS}s, about 9h6m)",
                        shown(value)
                    ),
                );
            } else {
                config.keep_alive_initial_delay = delay;
            }
        }
    }

    if let Some(value) = object.get("maxPendingDataSize") {
        let key = "maxPendingDataSize";
        match expect_size(ctx, key, value) {
            Some(0) => ctx.error(
                key,
                "0 would refuse every client that sends data before its backend is connected; \
                 expected a size of at least 1 byte (default 1MiB)",
            ),
            Some(size) => config.max_pending_data_size = size,
            None => {}
        }
    }

    if let Some(value) = object.get("maxRequestHeadSize") {
        let key = "maxRequestHeadSize";
        match expect_size(ctx, key, value) {
            Some(0) => ctx.error(
                key,
                "0 would refuse every HTTP request; expected a size of at least 1 byte \
                 (default 64KiB)",
            ),
            Some(size) => config.max_request_head_size = size,
            None => {}
        }
    }

    if let Some(value) = object.get("relayBufferSize") {
        let key = "relayBufferSize";
        if let Some(size) = expect_size(ctx, key, value) {
            match usize::try_from(size) {
                Ok(bytes) if (MIN_RELAY_BUFFER..=MAX_RELAY_BUFFER).contains(&size) => {
                    config.relay_buffer_size = bytes;
                }
                _ => ctx.error(
                    key,
                    format!(
                        "{} ({size} bytes) is outside the allowed range 1KiB to 16MiB",
                        shown(value)
                    ),
                ),
            }
        }
    }

    if let Some(value) = object.get("maxConnections")
        && let Some(n) = expect_count(ctx, "maxConnections", value)
    {
        config.max_connections = n;
    }

    // Accepted shapes whose behaviour does not exist yet: refused when they would matter.
    for key in ["maxConnectionsPerIP", "connectionRateLimitPerMinute"] {
        if let Some(value) = object.get(key)
            && expect_count(ctx, key, value).is_some_and(|n| n != 0)
        {
            ctx.unsupported(key, WITH_ADMISSION);
        }
    }
    for (key, arrives_with) in [
        ("ipAllowList", WITH_ADMISSION),
        ("ipBlockList", WITH_ADMISSION),
        ("trustedProxies", WITH_HTTP),
    ] {
        if let Some(value) = object.get(key)
            && ip_list(ctx, key, value).is_some_and(|list| !list.is_empty())
        {
            ctx.unsupported(key, arrives_with);
        }
    }
    for (key, arrives_with) in [
        ("acme", WITH_ACME),
        ("admin", WITH_ADMIN),
        ("metrics", WITH_METRICS),
        ("proxyProtocol", WITH_PROXY_PROTOCOL),
        ("defaults", WITH_DEFAULTS),
    ] {
        if let Some(value) = object.get(key)
            && expect_object(ctx, key, value, "an object").is_some()
        {
            ctx.unsupported(key, arrives_with);
        }
    }

    match object.get("routes") {
        None => ctx.error(
            "routes",
            "required key missing: a list of routes (`routes: []` is valid)",
        ),
        Some(Value::Array(list)) => {
            let mut names = HashMap::new();
            for (index, value) in list.iter().enumerate() {
                if let Some(route) = route(ctx, index, value, &mut names) {
                    config.routes.push(route);
                }
            }
        }
        Some(other) => ctx.error(
            "routes",
            format!("expected a list of routes, found {}", describe(other)),
        ),
    }

    Some(config)
}

fn bind_address(ctx: &mut Ctx, value: &Value) -> Option<IpAddr> {
    let text = expect_str(ctx, "bindAddress", value, "an IP address")?;
    match IpAddr::from_str(text) {
        Ok(address) => Some(address),
        Err(_) => {
            ctx.error(
                "bindAddress",
                format!(
                    "{} is not an IP address; expected e.g. 127.0.0.1, 0.0.0.0 or ::1 \
                     (without brackets or a port; leave the key out to bind all interfaces)",
                    quoted(text)
                ),
            );
            None
        }
    }
}

/// A list of client address patterns (`ipAllowList`, `ipBlockList`, `trustedProxies`).
fn ip_list(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<IpPattern>> {
    let entries = expect_string_list(ctx, path, value, "IP addresses, CIDRs or globs")?;
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (entry_path, text) in entries {
        match ip_pattern(text) {
            Ok(pattern) => out.push(pattern),
            Err(message) => {
                ctx.error(&entry_path, message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A CIDR (`10.0.0.0/8`), a bare address (→ /32 or /128) or a glob (`192.168.1.*`).
fn ip_pattern(text: &str) -> Result<IpPattern, String> {
    let bad = || {
        format!(
            "{} is not a CIDR (e.g. 10.0.0.0/8), an IP address (e.g. 192.168.1.10) or a glob \
             (e.g. 192.168.1.*)",
            quoted(text)
        )
    };
    if text.contains('*') {
        let glob_chars = text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*'));
        return if glob_chars {
            Ok(IpPattern::Glob(text.to_string()))
        } else {
            Err(bad())
        };
    }
    if text.contains('/') {
        return IpNet::from_str(text)
            .map(|net| IpPattern::Net(net.trunc()))
            .map_err(|_| bad());
    }
    IpAddr::from_str(text)
        .map(|address| IpPattern::Net(IpNet::from(address)))
        .map_err(|_| bad())
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// Where a route name was first seen, and whether it was written or generated.
struct NameOwner {
    index: usize,
    generated: bool,
}

fn route(
    ctx: &mut Ctx,
    index: usize,
    value: &Value,
    names: &mut HashMap<String, NameOwner>,
) -> Option<Route> {
    let path = item("routes", index);
    let object = expect_object(
        ctx,
        &path,
        value,
        "a route (an object with `match` and `action`)",
    )?;
    check_keys(ctx, &path, object, ROUTE_KEYS, &[]);

    let name = route_name(ctx, &path, index, object, names);

    let priority = match object.get("priority") {
        None => Some(0),
        Some(value) => match value.as_i64() {
            Some(p) => Some(p),
            None => {
                ctx.error(
                    &child(&path, "priority"),
                    format!(
                        "expected a whole number (higher is tried first), found {}",
                        describe(value)
                    ),
                );
                None
            }
        },
    };

    let enabled = match object.get("enabled") {
        None => Some(true),
        Some(value) => expect_bool(ctx, &child(&path, "enabled"), value),
    };

    if let Some(value) = object.get("description") {
        expect_str(ctx, &child(&path, "description"), value, "a string");
    }
    if let Some(value) = object.get("tags") {
        expect_string_list(ctx, &child(&path, "tags"), value, "strings");
    }

    let matcher = match object.get("match") {
        None => {
            ctx.error(
                &child(&path, "match"),
                "required key missing: an object with at least `ports`",
            );
            None
        }
        Some(value) => route_match(ctx, &child(&path, "match"), value),
    };

    let action = match object.get("action") {
        None => {
            ctx.error(
                &child(&path, "action"),
                "required key missing: an object with `type` (e.g. forward) and `targets`",
            );
            None
        }
        Some(value) => action(ctx, &child(&path, "action"), value),
    };

    if let Some(value) = object.get("security") {
        security(ctx, &child(&path, "security"), value);
    }

    Some(Route {
        name: name?,
        priority: priority?,
        enabled: enabled?,
        matcher: matcher?,
        action: action?,
    })
}

fn route_name(
    ctx: &mut Ctx,
    path: &str,
    index: usize,
    object: &Map<String, Value>,
    names: &mut HashMap<String, NameOwner>,
) -> Option<String> {
    let name_path = child(path, "name");
    let (name, generated) = match object.get("name") {
        None => (format!("route-{}", index + 1), true),
        Some(value) => {
            let name = expect_text(ctx, &name_path, value, "a route name")?;
            if name.chars().any(char::is_control) {
                ctx.error(
                    &name_path,
                    format!("{} contains control characters", quoted(name)),
                );
                return None;
            }
            (name.to_string(), false)
        }
    };
    if let Some(owner) = names.get(&name) {
        let first = item("routes", owner.index);
        let owner_kind = if owner.generated {
            format!("{first}, whose name is generated")
        } else {
            first
        };
        if generated {
            ctx.error(
                path,
                format!(
                    "the generated name {} is already used by {owner_kind}; give this route a `name`",
                    quoted(&name)
                ),
            );
        } else {
            ctx.error(
                &name_path,
                format!(
                    "duplicate route name {} (already used by {owner_kind})",
                    quoted(&name)
                ),
            );
        }
        return None;
    }
    names.insert(name.clone(), NameOwner { index, generated });
    Some(name)
}

fn route_match(ctx: &mut Ctx, path: &str, value: &Value) -> Option<RouteMatch> {
    let object = expect_object(ctx, path, value, "an object with at least `ports`")?;
    check_keys(ctx, path, object, MATCH_KEYS, &[]);

    let ports = match object.get("ports") {
        None => {
            ctx.error(
                &child(path, "ports"),
                "required key missing: a port, a list of ports or {from, to}",
            );
            None
        }
        Some(value) => ports(ctx, &child(path, "ports"), value),
    };

    let client_ip = match object.get("clientIp") {
        None => Some(Vec::new()),
        Some(value) => client_ips(ctx, &child(path, "clientIp"), value),
    };

    if let Some(value) = object.get("domains") {
        domains(ctx, &child(path, "domains"), value);
    }
    if let Some(value) = object.get("path") {
        let key_path = child(path, "path");
        if let Some(text) = expect_str(ctx, &key_path, value, "a path pattern") {
            if text.starts_with('/') || text.starts_with('*') {
                ctx.unsupported(&key_path, WITH_ROUTING);
            } else {
                ctx.error(
                    &key_path,
                    format!(
                        "{} is not a path pattern; expected one starting with / or * (e.g. /api/*)",
                        quoted(text)
                    ),
                );
            }
        }
    }
    if let Some(value) = object.get("headers") {
        let key_path = child(path, "headers");
        if expect_string_map(ctx, &key_path, value, false).is_some_and(|count| count > 0) {
            ctx.unsupported(&key_path, WITH_ROUTING);
        }
    }
    if let Some(value) = object.get("tlsVersion") {
        tls_versions(ctx, &child(path, "tlsVersion"), value);
    }

    Some(RouteMatch {
        ports: ports?,
        client_ip: client_ip?,
    })
}

/// `443` | `[80, 443]` | `{from, to}` | `[80, {from: 8000, to: 8010}]` → sorted, de-duplicated.
fn ports(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    let ok = match value {
        Value::Array(items) => {
            if items.is_empty() {
                ctx.error(
                    path,
                    "an empty list matches no port; give at least one port",
                );
                return None;
            }
            let mut ok = true;
            for (i, entry) in items.iter().enumerate() {
                ok &= port_entry(ctx, &item(path, i), entry, &mut out, true);
            }
            ok
        }
        other => port_entry(ctx, path, other, &mut out, false),
    };
    if !ok {
        return None;
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn port_entry(ctx: &mut Ctx, path: &str, value: &Value, out: &mut Vec<u16>, in_list: bool) -> bool {
    match value {
        Value::Number(_) => match port_number(ctx, path, value) {
            Some(port) => {
                out.push(port);
                true
            }
            None => false,
        },
        Value::Object(range) => {
            check_keys(ctx, path, range, RANGE_KEYS, &[]);
            let mut bound = |key: &str| match range.get(key) {
                None => {
                    ctx.error(
                        &child(path, key),
                        "required key missing: a port number (1-65535)",
                    );
                    None
                }
                Some(v) => port_number(ctx, &child(path, key), v),
            };
            let from = bound("from");
            let to = bound("to");
            match (from, to) {
                (Some(from), Some(to)) if from <= to => {
                    out.extend(from..=to);
                    true
                }
                (Some(from), Some(to)) => {
                    ctx.error(path, format!("`from` ({from}) is greater than `to` ({to})"));
                    false
                }
                _ => false,
            }
        }
        other => {
            let expected = if in_list {
                "a port number (1-65535) or {from, to}"
            } else {
                "a port number (1-65535), a list of ports or {from, to}"
            };
            ctx.error(
                path,
                format!("expected {expected}, found {}", describe(other)),
            );
            false
        }
    }
}

fn port_number(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
            Some(port) if port >= 1 => Some(port),
            _ => {
                ctx.error(path, format!("{n} is not a port (1-65535)"));
                None
            }
        },
        other => {
            ctx.error(
                path,
                format!(
                    "expected a port number (1-65535), found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn client_ips(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<IpPattern>> {
    let entries = string_or_list(ctx, path, value, "an IP address, CIDR or glob")?;
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (entry_path, text) in entries {
        match ip_pattern(text) {
            Ok(pattern) => out.push(pattern),
            Err(message) => {
                ctx.error(&entry_path, message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn domains(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(entries) = string_or_list(ctx, path, value, "a domain name or pattern") else {
        return;
    };
    let mut ok = true;
    for (entry_path, text) in &entries {
        let valid = !text.is_empty()
            && !text.contains("..")
            && text
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'));
        if !valid {
            ctx.error(
                entry_path,
                format!(
                    "{} is not a domain name or pattern (e.g. example.com, *.example.com)",
                    quoted(text)
                ),
            );
            ok = false;
        }
    }
    if ok && !entries.is_empty() {
        ctx.unsupported(path, WITH_ROUTING);
    }
}

fn tls_versions(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(entries) = string_or_list(ctx, path, value, "a TLS version") else {
        return;
    };
    let mut ok = true;
    for (entry_path, text) in &entries {
        if !matches!(*text, "TLSv1.2" | "TLSv1.3") {
            ctx.error(
                entry_path,
                format!(
                    "{} is not a TLS version that can be matched; expected TLSv1.2 or TLSv1.3",
                    quoted(text)
                ),
            );
            ok = false;
        }
    }
    if ok && !entries.is_empty() {
        ctx.unsupported(path, WITH_ROUTING);
    }
}

// ---------------------------------------------------------------------------------------------
// Actions and targets
// ---------------------------------------------------------------------------------------------

const ACTION_TYPES: &[&str] = &["forward", "redirect", "respond", "block", "socket-handler"];

fn action(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Action> {
    let object = expect_object(ctx, path, value, "an object with `type` and `targets`")?;
    check_keys(ctx, path, object, ACTION_KEYS, &[]);

    let type_path = child(path, "type");
    let kind = match object.get("type") {
        None => {
            ctx.error(
                &type_path,
                format!(
                    "required key missing: the action type ({})",
                    one_of(ACTION_TYPES)
                ),
            );
            None
        }
        Some(value) => expect_choice(ctx, &type_path, value, ACTION_TYPES, "an action type"),
    };
    match kind {
        Some(k @ ("redirect" | "respond" | "block")) => ctx.error(
            &type_path,
            format!(
                "{} is not supported yet by this version (arrives with {WITH_HTTP}); \
                 only forward works so far",
                quoted(k)
            ),
        ),
        Some("socket-handler") => ctx.error(
            &type_path,
            format!(
                "\"socket-handler\" is not supported yet by this version (arrives with \
                 {WITH_SOCKET_HANDLERS}); only forward works so far"
            ),
        ),
        _ => {}
    }
    let forward = kind == Some("forward");

    let targets = match (object.get("targets"), object.get("target")) {
        (Some(list), Some(one)) => {
            targets(ctx, &child(path, "targets"), list);
            target(ctx, &child(path, "target"), one);
            ctx.error(
                path,
                "has both `target` and `targets`; give either one `target` or a list of `targets`",
            );
            None
        }
        (Some(list), None) => targets(ctx, &child(path, "targets"), list),
        (None, Some(one)) => target(ctx, &child(path, "target"), one).map(|t| vec![t]),
        (None, None) => {
            if forward {
                ctx.error(
                    &child(path, "targets"),
                    "required key missing: a forward action needs `targets` (a list of \
                     {host, port}) or `target` (one {host, port})",
                );
            }
            None
        }
    };

    if let Some(value) = object.get("tls") {
        tls(ctx, &child(path, "tls"), value);
    }
    if let Some(value) = object.get("websocket") {
        websocket(ctx, &child(path, "websocket"), value);
    }
    if let Some(value) = object.get("headers") {
        header_ops(ctx, &child(path, "headers"), value);
    }
    if let Some(value) = object.get("redirect") {
        redirect(ctx, &child(path, "redirect"), value, kind);
    }
    if let Some(value) = object.get("respond") {
        respond(ctx, &child(path, "respond"), value, kind);
    }
    if let Some(value) = object.get("protocol") {
        let key_path = child(path, "protocol");
        if expect_choice(ctx, &key_path, value, &["tcp", "http"], "a protocol").is_some() {
            ctx.unsupported(&key_path, WITH_TLS);
        }
    }
    if let Some(value) = object.get("loadBalancing") {
        load_balancing(ctx, &child(path, "loadBalancing"), value);
    }

    if forward {
        targets.map(|targets| Action { targets })
    } else {
        None
    }
}

fn targets(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<Target>> {
    let Value::Array(items) = value else {
        ctx.error(
            path,
            format!(
                "expected a list of targets ({{host, port}} objects), found {}",
                describe(value)
            ),
        );
        return None;
    };
    if items.is_empty() {
        ctx.error(
            path,
            "an empty list; a forward action needs at least one target {host, port}",
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, entry) in items.iter().enumerate() {
        match target(ctx, &item(path, i), entry) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn target(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Target> {
    let object = expect_object(
        ctx,
        path,
        value,
        "a target (an object with `host` and `port`)",
    )?;
    check_keys(ctx, path, object, TARGET_KEYS, &[]);

    let host_path = child(path, "host");
    let hosts = match object.get("host") {
        None => {
            ctx.error(
                &host_path,
                "required key missing: a host name or IP address, or a list of them",
            );
            None
        }
        Some(Value::Array(items)) if items.is_empty() => {
            ctx.error(&host_path, "an empty list; give at least one host");
            None
        }
        Some(value) => {
            let (hosts, clean) = ctx.clean(|ctx| {
                let entries = string_or_list(ctx, &host_path, value, "a host name or IP address")?;
                let mut hosts = Vec::with_capacity(entries.len());
                for (entry_path, text) in entries {
                    match check_host(text) {
                        Ok(()) => hosts.push(text.to_string()),
                        Err(message) => ctx.error(&entry_path, message),
                    }
                }
                Some(hosts)
            });
            hosts.filter(|_| clean)
        }
    };

    let port_path = child(path, "port");
    let port = match object.get("port") {
        None => {
            ctx.error(
                &port_path,
                "required key missing: a port number (1-65535) or \"preserve\"",
            );
            None
        }
        Some(Value::String(s)) if s == "preserve" => Some(TargetPort::Preserve),
        Some(Value::String(s)) => {
            ctx.error(
                &port_path,
                format!(
                    "{} is not a port; expected a number (1-65535) or \"preserve\"",
                    quoted(s)
                ),
            );
            None
        }
        Some(value @ Value::Number(_)) => {
            port_number(ctx, &port_path, value).map(TargetPort::Fixed)
        }
        Some(other) => {
            ctx.error(
                &port_path,
                format!(
                    "expected a port number (1-65535) or \"preserve\", found {}",
                    describe(other)
                ),
            );
            None
        }
    };

    if let Some(value) = object.get("protocol") {
        let key_path = child(path, "protocol");
        if let Some("h2") = expect_choice(ctx, &key_path, value, &["h1", "h2"], "a target protocol")
        {
            ctx.unsupported(&key_path, WITH_HTTP);
        }
    }
    if let Some(value) = object.get("sendProxyProtocol") {
        let key_path = child(path, "sendProxyProtocol");
        match value {
            Value::Bool(false) => {}
            Value::Bool(true) => ctx.unsupported(&key_path, WITH_PROXY_PROTOCOL),
            other => {
                if expect_choice(
                    ctx,
                    &key_path,
                    other,
                    &["v1", "v2"],
                    "a PROXY protocol version",
                )
                .is_some()
                {
                    ctx.unsupported(&key_path, WITH_PROXY_PROTOCOL);
                }
            }
        }
    }
    for key in [
        "match",
        "priority",
        "tls",
        "websocket",
        "loadBalancing",
        "headers",
    ] {
        if object.contains_key(key) {
            ctx.unsupported(&child(path, key), WITH_TARGET_OPTIONS);
        }
    }

    Some(Target {
        hosts: hosts?,
        port: port?,
    })
}

/// An IP address or a DNS host name, without scheme, port or brackets.
fn check_host(text: &str) -> Result<(), String> {
    let shown = quoted(text);
    if text.is_empty() {
        return Err("expected a host name or IP address, found an empty string".to_string());
    }
    if IpAddr::from_str(text).is_ok() {
        return Ok(());
    }
    if text.contains("://") {
        return Err(format!(
            "{shown} is not a host; write only the host name or IP address, without a scheme"
        ));
    }
    if text.starts_with('[') {
        return Err(format!(
            "{shown} is not a host; write IPv6 addresses without brackets (e.g. ::1)"
        ));
    }
    if let Some((_, after)) = text.rsplit_once(':')
        && !after.is_empty()
        && after.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "{shown} is not a host; put the port in `port`, not in `host`"
        ));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    let valid = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{shown} is not a host name or IP address (e.g. backend.internal, 10.0.0.5, ::1)"
        ))
    }
}

fn tls(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object with `mode`") else {
        return;
    };
    check_keys(ctx, path, object, TLS_KEYS, &[]);
    let modes = ["passthrough", "terminate", "terminate-and-reencrypt"];
    match object.get("mode") {
        None => ctx.error(
            &child(path, "mode"),
            format!("required key missing: the TLS mode ({})", one_of(&modes)),
        ),
        Some(value) => {
            expect_choice(ctx, &child(path, "mode"), value, &modes, "a TLS mode");
        }
    }
    if let Some(value) = object.get("certificate") {
        certificate(ctx, &child(path, "certificate"), value);
    }
    if let Some(value) = object.get("caFile") {
        expect_text(ctx, &child(path, "caFile"), value, "a file path");
    }
    if let Some(value) = object.get("rejectUnauthorized") {
        expect_bool(ctx, &child(path, "rejectUnauthorized"), value);
    }
    ctx.unsupported(path, WITH_TLS);
}

fn certificate(ctx: &mut Ctx, path: &str, value: &Value) {
    let expected = "\"auto\", {certFile, keyFile} or {cert, key} (inline PEM)";
    match value {
        Value::String(s) if s == "auto" => {}
        Value::Object(object) => {
            check_keys(ctx, path, object, CERTIFICATE_KEYS, &[]);
            for key in CERTIFICATE_KEYS {
                if let Some(v) = object.get(*key) {
                    expect_text(ctx, &child(path, key), v, "a non-empty string");
                }
            }
            let has = |k: &str| object.contains_key(k);
            let files = has("certFile") || has("keyFile");
            let inline = has("cert") || has("key");
            if files && inline {
                ctx.error(
                    path,
                    "mixes files (certFile/keyFile) with inline PEM (cert/key); give one pair",
                );
            } else if files && !(has("certFile") && has("keyFile")) {
                ctx.error(path, "needs both `certFile` and `keyFile`");
            } else if inline && !(has("cert") && has("key")) {
                ctx.error(path, "needs both `cert` and `key`");
            } else if !files && !inline {
                ctx.error(path, format!("expected {expected}"));
            }
        }
        other => ctx.error(
            path,
            format!("expected {expected}, found {}", describe(other)),
        ),
    }
}

fn websocket(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object") else {
        return;
    };
    check_keys(ctx, path, object, WEBSOCKET_KEYS, &[]);
    if let Some(v) = object.get("enabled") {
        expect_bool(ctx, &child(path, "enabled"), v);
    }
    for key in ["pingInterval", "pingTimeout"] {
        if let Some(v) = object.get(key) {
            expect_duration(ctx, &child(path, key), v);
        }
    }
    if let Some(v) = object.get("maxPayloadSize") {
        expect_size(ctx, &child(path, "maxPayloadSize"), v);
    }
    for key in ["subprotocols", "allowedOrigins"] {
        if let Some(v) = object.get(key) {
            expect_string_list(ctx, &child(path, key), v, "strings");
        }
    }
    if let Some(v) = object.get("rewritePath") {
        expect_str(ctx, &child(path, "rewritePath"), v, "a path");
    }
    if let Some(v) = object.get("customHeaders") {
        expect_string_map(ctx, &child(path, "customHeaders"), v, false);
    }
    ctx.unsupported(path, WITH_HTTP);
}

fn header_ops(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(
        ctx,
        path,
        value,
        "an object with `request` and/or `response`",
    ) else {
        return;
    };
    check_keys(ctx, path, object, HEADERS_KEYS, &[]);
    for key in HEADERS_KEYS {
        if let Some(v) = object.get(*key) {
            expect_string_map(ctx, &child(path, key), v, true);
        }
    }
    ctx.unsupported(path, WITH_HTTP);
}

/// `redirect`/`respond` belong to their action type, which is refused on its own; here only the
/// shape is checked, and a mismatch with the type is an error.
fn redirect(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) {
    let Some(object) = expect_object(ctx, path, value, "an object {to, status}") else {
        return;
    };
    check_keys(ctx, path, object, REDIRECT_KEYS, &[]);
    match object.get("to") {
        None => ctx.error(
            &child(path, "to"),
            "required key missing: the target URL (e.g. \"https://{domain}{path}\")",
        ),
        Some(v) => {
            expect_text(ctx, &child(path, "to"), v, "a URL");
        }
    }
    if let Some(v) = object.get("status") {
        let valid = v
            .as_u64()
            .is_some_and(|s| matches!(s, 301 | 302 | 303 | 307 | 308));
        if !valid {
            ctx.error(
                &child(path, "status"),
                format!(
                    "expected a redirect status (301, 302, 303, 307 or 308), found {}",
                    describe(v)
                ),
            );
        }
    }
    if kind.is_some_and(|k| k != "redirect") {
        ctx.error(path, "only used with `type: redirect`");
    }
}

fn respond(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) {
    let Some(object) = expect_object(ctx, path, value, "an object {status, body, headers}") else {
        return;
    };
    check_keys(ctx, path, object, RESPOND_KEYS, &[]);
    if let Some(v) = object.get("status")
        && !v.as_u64().is_some_and(|s| (100..=599).contains(&s))
    {
        ctx.error(
            &child(path, "status"),
            format!("expected an HTTP status (100-599), found {}", describe(v)),
        );
    }
    if let Some(v) = object.get("body") {
        expect_str(ctx, &child(path, "body"), v, "a string");
    }
    if let Some(v) = object.get("headers") {
        expect_string_map(ctx, &child(path, "headers"), v, false);
    }
    if kind.is_some_and(|k| k != "respond") {
        ctx.error(path, "only used with `type: respond`");
    }
}

fn load_balancing(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object {algorithm}") else {
        return;
    };
    check_keys(ctx, path, object, LOAD_BALANCING_KEYS, &[]);
    if let Some(v) = object.get("algorithm") {
        let key_path = child(path, "algorithm");
        let algorithms = ["round-robin", "least-connections", "ip-hash"];
        if let Some("least-connections" | "ip-hash") =
            expect_choice(ctx, &key_path, v, &algorithms, "a load-balancing algorithm")
        {
            ctx.unsupported(&key_path, WITH_LOAD_BALANCING);
        }
    }
    if let Some(v) = object.get("healthCheck") {
        let key_path = child(path, "healthCheck");
        if expect_object(ctx, &key_path, v, "an object").is_some() {
            ctx.unsupported(&key_path, WITH_HEALTH_CHECKS);
        }
    }
}

/// Route-level `security`: empty lists and zero limits are accepted (they change nothing);
/// anything that would change behaviour is refused until admission control exists.
fn security(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object") else {
        return;
    };
    check_keys(ctx, path, object, SECURITY_KEYS, &[]);
    for key in ["ipAllowList", "ipBlockList"] {
        if let Some(v) = object.get(key) {
            let key_path = child(path, key);
            if ip_list(ctx, &key_path, v).is_some_and(|list| !list.is_empty()) {
                ctx.unsupported(&key_path, WITH_ADMISSION);
            }
        }
    }
    for key in ["maxConnections", "maxConnectionsPerIP"] {
        if let Some(v) = object.get(key) {
            let key_path = child(path, key);
            if expect_count(ctx, &key_path, v).is_some_and(|n| n != 0) {
                ctx.unsupported(&key_path, WITH_ADMISSION);
            }
        }
    }
    for (key, keys) in [
        ("rateLimit", RATE_LIMIT_KEYS),
        ("basicAuth", BASIC_AUTH_KEYS),
        ("jwtAuth", JWT_AUTH_KEYS),
    ] {
        let Some(v) = object.get(key) else {
            continue;
        };
        let key_path = child(path, key);
        let Some(inner) = expect_object(ctx, &key_path, v, "an object") else {
            continue;
        };
        check_keys(ctx, &key_path, inner, keys, &[]);
        let enabled = match inner.get("enabled") {
            None => Some(true),
            Some(e) => expect_bool(ctx, &child(&key_path, "enabled"), e),
        };
        if enabled == Some(true) {
            ctx.unsupported(&key_path, WITH_ADMISSION);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn accept(value: Value) -> (Config, Vec<Warning>) {
        match from_value(&value) {
            Ok(result) => result,
            Err(errors) => panic!("config refused:\n{errors}\nconfig: {value}"),
        }
    }

    fn refuse(value: Value) -> Vec<String> {
        match from_value(&value) {
            Ok((config, _)) => panic!("config accepted: {config:?}\nconfig: {value}"),
            Err(errors) => {
                assert!(!errors.0.is_empty());
                errors.0.iter().map(ToString::to_string).collect()
            }
        }
    }

    /// A config with one route.
    fn with_route(route: Value) -> Value {
        json!({ "routes": [route] })
    }

    fn forward_route() -> Value {
        json!({
            "match": { "ports": 8080 },
            "action": { "type": "forward", "targets": [{ "host": "127.0.0.1", "port": 3000 }] }
        })
    }

    /// A config with `forward_route()`, its `pointer` (a JSON pointer) set to `value`.
    fn route_with(pointer: &str, value: Value) -> Value {
        let mut route = forward_route();
        set(&mut route, pointer, value);
        with_route(route)
    }

    fn set(root: &mut Value, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        let parent = root.pointer_mut(parent).expect("parent exists");
        match parent {
            Value::Object(object) => {
                object.insert(key.to_string(), value);
            }
            Value::Array(items) => {
                let index: usize = key.parse().expect("index");
                items[index] = value;
            }
            _ => panic!("cannot set {pointer}"),
        }
    }

    fn remove(root: &mut Value, pointer: &str) {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
        if let Some(Value::Object(object)) = root.pointer_mut(parent) {
            object.remove(key);
        }
    }

    fn assert_single(errors: &[String], expected: &str) {
        assert_eq!(errors, [expected.to_string()], "unexpected errors");
    }

    fn assert_has(errors: &[String], needle: &str) {
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "no error contains {needle:?}: {errors:#?}"
        );
    }

    // --- the embedded default and defaults -----------------------------------------------

    #[test]
    fn embedded_default_is_valid() {
        let (config, warnings) =
            from_text(super::super::DEFAULT_CONFIG_YAML, Format::Yaml).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config, Config::embedded_default());
        assert_eq!(config.bind_address, Some(IpAddr::from([127, 0, 0, 1])));
        assert!(config.routes.is_empty());
    }

    #[test]
    fn the_route_shown_in_the_default_file_is_valid() {
        // The commented example in default.yaml, uncommented, must load.
        let text: String = super::super::DEFAULT_CONFIG_YAML
            .lines()
            .skip_while(|line| !line.starts_with("# routes:"))
            .map(|line| {
                line.strip_prefix("# ")
                    .unwrap_or(line.trim_start_matches('#'))
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.starts_with("routes:"), "{text}");
        let (config, _) = from_text(&text, Format::Yaml).expect("example route is valid");
        assert_eq!(config.routes.len(), 1);
        assert_eq!(config.routes[0].matcher.ports, vec![8080]);
    }

    #[test]
    fn defaults_follow_the_spec() {
        let (config, warnings) = accept(json!({ "routes": [] }));
        assert!(warnings.is_empty());
        let hour = 3600;
        assert_eq!(config.routes, vec![]);
        assert_eq!(config.bind_address, None);
        assert_eq!(config.initial_data_timeout, Duration::from_secs(60));
        assert_eq!(config.connection_timeout, Duration::from_secs(30));
        assert_eq!(config.inactivity_timeout, Duration::from_secs(4 * hour));
        assert_eq!(config.keep_alive_treatment, KeepAliveTreatment::Extended);
        assert_eq!(config.keep_alive_inactivity_multiplier, 6.0);
        assert_eq!(
            config.max_connection_lifetime,
            Duration::from_secs(24 * hour)
        );
        assert_eq!(
            config.extended_keep_alive_lifetime,
            Duration::from_secs(7 * 24 * hour)
        );
        assert_eq!(config.half_close_timeout, Duration::from_secs(600));
        assert_eq!(config.graceful_shutdown_timeout, Duration::from_secs(30));
        assert!(config.no_delay);
        assert!(config.keep_alive);
        assert_eq!(config.keep_alive_initial_delay, Duration::from_secs(10));
        assert_eq!(config.max_pending_data_size, 1024 * 1024);
        assert_eq!(config.max_connections, 0);
        assert_eq!(config.relay_buffer_size, 64 * 1024);
        assert_eq!(config.http_response_timeout, Duration::from_secs(60));
        assert_eq!(config.max_request_head_size, 64 * 1024);
    }

    #[test]
    fn every_global_option_is_read() {
        let (config, warnings) = accept(json!({
            "routes": [],
            "bindAddress": "::1",
            "initialDataTimeout": "5s",
            "connectionTimeout": 2500,
            "inactivityTimeout": "15m",
            "keepAliveTreatment": "immortal",
            "keepAliveInactivityMultiplier": 2.5,
            "maxConnectionLifetime": "0",
            "extendedKeepAliveLifetime": "30d",
            "halfCloseTimeout": "0s",
            "gracefulShutdownTimeout": "1.5s",
            "noDelay": false,
            "keepAlive": true,
            "keepAliveInitialDelay": "1m",
            "maxPendingDataSize": "2MiB",
            "maxConnections": 10000,
            "relayBufferSize": "16KiB",
            "httpResponseTimeout": "90s",
            "maxRequestHeadSize": 32768,
            "maxConnectionsPerIP": 0,
            "connectionRateLimitPerMinute": 0,
            "ipAllowList": [],
            "ipBlockList": [],
            "trustedProxies": [],
        }));
        assert!(warnings.is_empty());
        assert_eq!(config.bind_address, Some("::1".parse().expect("ip")));
        assert_eq!(config.initial_data_timeout, Duration::from_secs(5));
        assert_eq!(config.connection_timeout, Duration::from_millis(2500));
        assert_eq!(config.inactivity_timeout, Duration::from_secs(900));
        assert_eq!(config.keep_alive_treatment, KeepAliveTreatment::Immortal);
        assert_eq!(config.keep_alive_inactivity_multiplier, 2.5);
        assert_eq!(config.max_connection_lifetime, Duration::ZERO);
        assert_eq!(
            config.extended_keep_alive_lifetime,
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(config.half_close_timeout, Duration::ZERO);
        assert_eq!(
            config.graceful_shutdown_timeout,
            Duration::from_millis(1500)
        );
        assert!(!config.no_delay);
        assert!(config.keep_alive);
        assert_eq!(config.keep_alive_initial_delay, Duration::from_secs(60));
        assert_eq!(config.max_pending_data_size, 2 << 20);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.relay_buffer_size, 16 << 10);
        assert_eq!(config.http_response_timeout, Duration::from_secs(90));
        assert_eq!(config.max_request_head_size, 32_768);

        for (treatment, expected) in [
            ("standard", KeepAliveTreatment::Standard),
            ("extended", KeepAliveTreatment::Extended),
            ("immortal", KeepAliveTreatment::Immortal),
        ] {
            let (config, _) = accept(json!({ "routes": [], "keepAliveTreatment": treatment }));
            assert_eq!(config.keep_alive_treatment, expected);
        }
    }

    #[test]
    fn global_option_errors() {
        const OK: &str = "(accepted)";
        for (key, value, expected) in [
            (
                "bindAddress",
                json!("localhost"),
                "bindAddress: \"localhost\" is not an IP address",
            ),
            (
                "bindAddress",
                json!(127),
                "bindAddress: expected an IP address, found 127",
            ),
            (
                "keepAliveTreatment",
                json!("forever"),
                "keepAliveTreatment: \"forever\" is not a keep-alive treatment; expected \
                 standard, extended or immortal",
            ),
            (
                "keepAliveInactivityMultiplier",
                json!(0.5),
                "keepAliveInactivityMultiplier: 0.5 is less than 1",
            ),
            (
                "keepAliveInactivityMultiplier",
                json!("6"),
                "keepAliveInactivityMultiplier: expected a number ≥ 1",
            ),
            (
                "keepAliveInactivityMultiplier",
                json!(1e300),
                "longer than the longest allowed duration",
            ),
            ("keepAliveInactivityMultiplier", json!(1), OK),
            (
                "noDelay",
                json!("yes"),
                "noDelay: expected true or false, found the string \"yes\"",
            ),
            (
                "inactivityTimeout",
                json!("4 hours"),
                "inactivityTimeout: \"4 hours\" has an unknown unit `hours`",
            ),
            (
                "halfCloseTimeout",
                json!(-1),
                "halfCloseTimeout: -1 is negative",
            ),
            (
                "maxPendingDataSize",
                json!(0),
                "maxPendingDataSize: 0 would refuse every client",
            ),
            ("maxPendingDataSize", json!("1 MiB "), OK),
            (
                "maxRequestHeadSize",
                json!("0KiB"),
                "maxRequestHeadSize: 0 would refuse every HTTP request",
            ),
            (
                "maxConnections",
                json!(-1),
                "maxConnections: expected a whole number ≥ 0 (0 = unlimited), found -1",
            ),
            (
                "maxConnections",
                json!(1.5),
                "maxConnections: expected a whole number ≥ 0",
            ),
            (
                "relayBufferSize",
                json!(512),
                "relayBufferSize: 512 (512 bytes) is outside the allowed range 1KiB to 16MiB",
            ),
            (
                "relayBufferSize",
                json!("17MiB"),
                "relayBufferSize: \"17MiB\" (17825792 bytes) is outside the allowed range",
            ),
            ("relayBufferSize", json!("1KiB"), OK),
            ("relayBufferSize", json!("16MiB"), OK),
            (
                "keepAliveInitialDelay",
                json!(0),
                "keepAliveInitialDelay: 0 is shorter than 1s",
            ),
            (
                "keepAliveInitialDelay",
                json!("500ms"),
                "keepAliveInitialDelay: \"500ms\" is shorter than 1s",
            ),
            (
                "keepAliveInitialDelay",
                json!("10h"),
                "keepAliveInitialDelay: \"10h\" is longer than the kernel accepts",
            ),
            ("keepAliveInitialDelay", json!("1s"), OK),
        ] {
            let config = json!({ "routes": [], key: value.clone() });
            if expected == OK {
                accept(config);
                continue;
            }
            let errors = refuse(config);
            assert_eq!(errors.len(), 1, "{key}={value}: {errors:#?}");
            assert!(
                errors[0].starts_with(expected) || errors[0].contains(expected),
                "{key}={value}: {:?} does not match {expected:?}",
                errors[0]
            );
        }
    }

    #[test]
    fn keep_alive_initial_delay_zero_is_fine_when_keepalive_is_off() {
        let (config, _) = accept(json!({
            "routes": [], "keepAlive": false, "keepAliveInitialDelay": 0
        }));
        assert!(!config.keep_alive);
        assert_eq!(config.keep_alive_initial_delay, Duration::ZERO);
    }

    #[test]
    fn root_must_be_an_object_with_routes() {
        assert_single(
            &refuse(json!({})),
            "routes: required key missing: a list of routes (`routes: []` is valid)",
        );
        assert_single(
            &refuse(json!({ "routes": { "web": {} } })),
            "routes: expected a list of routes, found an object",
        );
        assert_has(
            &refuse(json!([1, 2])),
            "expected an object with the global options",
        );
        let errors = from_text("# nothing here\n", Format::Yaml).expect_err("empty");
        assert_eq!(errors.0.len(), 1);
        assert!(errors.0[0].message.starts_with("the config is empty"));
        assert_eq!(errors.0[0].path, "");
    }

    // --- routes --------------------------------------------------------------------------

    #[test]
    fn a_route_reads_its_fields_and_defaults() {
        let (config, _) = accept(json!({ "routes": [
            {
                "name": "db",
                "priority": -5,
                "enabled": false,
                "description": "postgres",
                "tags": ["db", "internal"],
                "match": { "ports": 5432 },
                "action": {
                    "type": "forward",
                    "targets": [{ "host": "db.internal", "port": 5432 }]
                }
            },
            forward_route(),
        ]}));
        assert_eq!(
            config.routes[0],
            Route {
                name: "db".into(),
                priority: -5,
                enabled: false,
                matcher: RouteMatch {
                    ports: vec![5432],
                    client_ip: vec![]
                },
                action: Action {
                    targets: vec![Target {
                        hosts: vec!["db.internal".into()],
                        port: TargetPort::Fixed(5432),
                    }],
                },
            }
        );
        let second = &config.routes[1];
        assert_eq!(second.name, "route-2");
        assert_eq!(second.priority, 0);
        assert!(second.enabled);
    }

    #[test]
    fn disabled_routes_are_still_validated() {
        let mut route = forward_route();
        set(&mut route, "/enabled", json!(false));
        set(&mut route, "/match/ports", json!(0));
        assert_single(
            &refuse(with_route(route)),
            "routes[0].match.ports: 0 is not a port (1-65535)",
        );
    }

    #[test]
    fn route_field_errors() {
        assert_single(
            &refuse(route_with("/priority", json!("high"))),
            "routes[0].priority: expected a whole number (higher is tried first), found the \
             string \"high\"",
        );
        assert_single(
            &refuse(route_with("/enabled", json!("no"))),
            "routes[0].enabled: expected true or false, found the string \"no\"",
        );
        assert_single(
            &refuse(route_with("/name", json!(""))),
            "routes[0].name: expected a route name, found an empty string",
        );
        assert_single(
            &refuse(route_with("/tags", json!("x"))),
            "routes[0].tags: expected a list of strings, found the string \"x\"",
        );
        let mut route = forward_route();
        remove(&mut route, "/match");
        remove(&mut route, "/action");
        assert_eq!(
            refuse(with_route(route)),
            [
                "routes[0].match: required key missing: an object with at least `ports`",
                "routes[0].action: required key missing: an object with `type` (e.g. forward) \
                 and `targets`",
            ]
        );
        assert_single(
            &refuse(json!({ "routes": ["web"] })),
            "routes[0]: expected a route (an object with `match` and `action`), found the \
             string \"web\"",
        );
    }

    #[test]
    fn duplicate_route_names_are_reported_at_the_second_one() {
        let mut a = forward_route();
        set(&mut a, "/name", json!("web"));
        let b = forward_route();
        let mut c = forward_route();
        set(&mut c, "/name", json!("web"));
        assert_single(
            &refuse(json!({ "routes": [a, b, c] })),
            "routes[2].name: duplicate route name \"web\" (already used by routes[0])",
        );

        // A written name that equals an earlier generated one.
        let mut named = forward_route();
        set(&mut named, "/name", json!("route-1"));
        assert_single(
            &refuse(json!({ "routes": [forward_route(), named] })),
            "routes[1].name: duplicate route name \"route-1\" (already used by routes[0], \
             whose name is generated)",
        );

        // A generated name that equals an earlier written one.
        let mut named = forward_route();
        set(&mut named, "/name", json!("route-2"));
        assert_single(
            &refuse(json!({ "routes": [named, forward_route()] })),
            "routes[1]: the generated name \"route-2\" is already used by routes[0]; give this \
             route a `name`",
        );
    }

    // --- ports ---------------------------------------------------------------------------

    fn ports_of(ports: Value) -> Result<Vec<u16>, Vec<String>> {
        match from_value(&route_with("/match/ports", ports)) {
            Ok((config, _)) => Ok(config.routes[0].matcher.ports.clone()),
            Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
        }
    }

    #[test]
    fn every_ports_shape() {
        assert_eq!(ports_of(json!(443)), Ok(vec![443]));
        assert_eq!(ports_of(json!([443, 80, 443])), Ok(vec![80, 443]));
        assert_eq!(
            ports_of(json!({ "from": 8000, "to": 8003 })),
            Ok(vec![8000, 8001, 8002, 8003])
        );
        assert_eq!(ports_of(json!({ "from": 1, "to": 1 })), Ok(vec![1]));
        assert_eq!(
            ports_of(json!([9000, { "from": 8000, "to": 8002 }, 8001, 22])),
            Ok(vec![22, 8000, 8001, 8002, 9000])
        );
        assert_eq!(
            ports_of(json!([{ "from": 1, "to": 65535 }])).map(|p| p.len()),
            Ok(65535)
        );
    }

    #[test]
    fn ports_errors() {
        let p = "routes[0].match.ports";
        for (ports, expected) in [
            (json!(0), vec![format!("{p}: 0 is not a port (1-65535)")]),
            (
                json!(65536),
                vec![format!("{p}: 65536 is not a port (1-65535)")],
            ),
            (json!(-1), vec![format!("{p}: -1 is not a port (1-65535)")]),
            (
                json!(80.5),
                vec![format!("{p}: 80.5 is not a port (1-65535)")],
            ),
            (
                json!([]),
                vec![format!(
                    "{p}: an empty list matches no port; give at least one port"
                )],
            ),
            (
                json!("443"),
                vec![format!(
                    "{p}: expected a port number (1-65535), a list of ports or {{from, to}}, \
                     found the string \"443\""
                )],
            ),
            (
                json!([80, "443", [1]]),
                vec![
                    format!(
                        "{p}[1]: expected a port number (1-65535) or {{from, to}}, found the \
                         string \"443\""
                    ),
                    format!(
                        "{p}[2]: expected a port number (1-65535) or {{from, to}}, found a list"
                    ),
                ],
            ),
            (
                json!({ "from": 9000, "to": 8000 }),
                vec![format!("{p}: `from` (9000) is greater than `to` (8000)")],
            ),
            (
                json!([{ "from": 10 }]),
                vec![format!(
                    "{p}[0].to: required key missing: a port number (1-65535)"
                )],
            ),
            (
                json!({ "from": 0, "to": 70000 }),
                vec![
                    format!("{p}.from: 0 is not a port (1-65535)"),
                    format!("{p}.to: 70000 is not a port (1-65535)"),
                ],
            ),
            (
                json!({ "from": 1, "to": 2, "step": 1 }),
                vec![format!("{p}.step: unknown key; expected one of: from, to")],
            ),
        ] {
            assert_eq!(ports_of(ports.clone()), Err(expected), "ports: {ports}");
        }
        let mut route = forward_route();
        remove(&mut route, "/match/ports");
        assert_single(
            &refuse(with_route(route)),
            "routes[0].match.ports: required key missing: a port, a list of ports or {from, to}",
        );
    }

    // --- client IPs ----------------------------------------------------------------------

    #[test]
    fn client_ip_patterns() {
        let (config, _) = accept(route_with(
            "/match/clientIp",
            json!([
                "10.0.0.0/8",
                "192.168.1.7",
                "2001:db8::/32",
                "::1",
                "192.168.1.*",
                "fe80::*",
                "10.1.2.3/16"
            ]),
        ));
        let net = |s: &str| IpPattern::Net(s.parse().expect("net"));
        assert_eq!(
            config.routes[0].matcher.client_ip,
            vec![
                net("10.0.0.0/8"),
                net("192.168.1.7/32"),
                net("2001:db8::/32"),
                net("::1/128"),
                IpPattern::Glob("192.168.1.*".into()),
                IpPattern::Glob("fe80::*".into()),
                net("10.1.0.0/16"),
            ]
        );
        let (config, _) = accept(route_with("/match/clientIp", json!("127.0.0.1")));
        assert_eq!(
            config.routes[0].matcher.client_ip,
            vec![net("127.0.0.1/32")]
        );

        let errors = refuse(route_with(
            "/match/clientIp",
            json!(["10.0.0.0/33", "host.example", "10.0.*.x", ""]),
        ));
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with(
            "routes[0].match.clientIp[0]: \"10.0.0.0/33\" is not a CIDR (e.g. 10.0.0.0/8), an IP \
             address (e.g. 192.168.1.10) or a glob (e.g. 192.168.1.*)"
        ));
        assert!(errors[3].starts_with("routes[0].match.clientIp[3]: \"\" is not a CIDR"));
        assert_single(
            &refuse(route_with("/match/clientIp", json!(10))),
            "routes[0].match.clientIp: expected an IP address, CIDR or glob or a list of them, \
             found 10",
        );
    }

    // --- targets -------------------------------------------------------------------------

    fn targets_of(route: Value) -> Vec<Target> {
        let (config, _) = accept(with_route(route));
        config.routes[0].action.targets.clone()
    }

    #[test]
    fn target_forms() {
        // A list of hosts, "preserve", several targets.
        let mut route = forward_route();
        set(
            &mut route,
            "/action/targets",
            json!([
                { "host": ["10.0.0.1", "10.0.0.2", "backend-3.internal"], "port": "preserve" },
                { "host": "::1", "port": 8443, "protocol": "h1", "sendProxyProtocol": false },
            ]),
        );
        assert_eq!(
            targets_of(route),
            vec![
                Target {
                    hosts: vec![
                        "10.0.0.1".into(),
                        "10.0.0.2".into(),
                        "backend-3.internal".into()
                    ],
                    port: TargetPort::Preserve,
                },
                Target {
                    hosts: vec!["::1".into()],
                    port: TargetPort::Fixed(8443)
                },
            ]
        );

        // The single `target` form (SmartProxy v19) equals a one-element `targets`.
        let mut single = forward_route();
        remove(&mut single, "/action/targets");
        set(
            &mut single,
            "/action/target",
            json!({ "host": "127.0.0.1", "port": 3000 }),
        );
        assert_eq!(targets_of(single), targets_of(forward_route()));
    }

    #[test]
    fn target_and_targets_together_is_an_error() {
        let mut route = forward_route();
        set(
            &mut route,
            "/action/target",
            json!({ "host": "127.0.0.1", "port": 3000 }),
        );
        assert_single(
            &refuse(with_route(route)),
            "routes[0].action: has both `target` and `targets`; give either one `target` or a \
             list of `targets`",
        );
    }

    #[test]
    fn target_errors() {
        let mut route = forward_route();
        remove(&mut route, "/action/targets");
        assert_single(
            &refuse(with_route(route)),
            "routes[0].action.targets: required key missing: a forward action needs `targets` \
             (a list of {host, port}) or `target` (one {host, port})",
        );
        assert_single(
            &refuse(route_with("/action/targets", json!([]))),
            "routes[0].action.targets: an empty list; a forward action needs at least one \
             target {host, port}",
        );
        assert_single(
            &refuse(route_with(
                "/action/targets",
                json!({ "host": "a", "port": 1 }),
            )),
            "routes[0].action.targets: expected a list of targets ({host, port} objects), found \
             an object",
        );
        let t = "routes[0].action.targets[0]";
        for (target, expected) in [
            (
                json!({ "port": 1 }),
                format!(
                    "{t}.host: required key missing: a host name or IP address, or a list of them"
                ),
            ),
            (
                json!({ "host": "a" }),
                format!("{t}.port: required key missing: a port number (1-65535) or \"preserve\""),
            ),
            (
                json!({ "host": [], "port": 1 }),
                format!("{t}.host: an empty list; give at least one host"),
            ),
            (
                json!({ "host": "", "port": 1 }),
                format!("{t}.host: expected a host name or IP address, found an empty string"),
            ),
            (
                json!({ "host": ["a", ""], "port": 1 }),
                format!("{t}.host[1]: expected a host name or IP address, found an empty string"),
            ),
            (
                json!({ "host": "http://a", "port": 1 }),
                format!(
                    "{t}.host: \"http://a\" is not a host; write only the host name or IP \
                     address, without a scheme"
                ),
            ),
            (
                json!({ "host": "a:80", "port": 1 }),
                format!("{t}.host: \"a:80\" is not a host; put the port in `port`, not in `host`"),
            ),
            (
                json!({ "host": "[::1]", "port": 1 }),
                format!(
                    "{t}.host: \"[::1]\" is not a host; write IPv6 addresses without brackets \
                     (e.g. ::1)"
                ),
            ),
            (
                json!({ "host": "a b", "port": 1 }),
                format!(
                    "{t}.host: \"a b\" is not a host name or IP address (e.g. backend.internal, \
                     10.0.0.5, ::1)"
                ),
            ),
            (
                json!({ "host": 10, "port": 1 }),
                format!("{t}.host: expected a host name or IP address or a list of them, found 10"),
            ),
            (
                json!({ "host": "a", "port": "80" }),
                format!(
                    "{t}.port: \"80\" is not a port; expected a number (1-65535) or \"preserve\""
                ),
            ),
            (
                json!({ "host": "a", "port": true }),
                format!("{t}.port: expected a port number (1-65535) or \"preserve\", found true"),
            ),
            (
                json!({ "host": "a", "port": 1, "protocol": "h3" }),
                format!("{t}.protocol: \"h3\" is not a target protocol; expected h1 or h2"),
            ),
            (
                json!({ "host": "a", "port": 1, "protocol": "h2" }),
                format!(
                    "{t}.protocol: not supported yet by this version (arrives with the HTTP \
                     engine)"
                ),
            ),
            (
                json!({ "host": "a", "port": 1, "sendProxyProtocol": "v2" }),
                format!(
                    "{t}.sendProxyProtocol: not supported yet by this version (arrives with \
                     PROXY protocol support)"
                ),
            ),
            (
                json!({ "host": "a", "port": 1, "sendProxyProtocol": "v3" }),
                format!(
                    "{t}.sendProxyProtocol: \"v3\" is not a PROXY protocol version; expected v1 \
                     or v2"
                ),
            ),
            (
                json!({ "host": "a", "port": 1, "websocket": {} }),
                format!(
                    "{t}.websocket: not supported yet by this version (arrives with per-target \
                     options)"
                ),
            ),
            (
                json!({ "host": "a", "port": 1, "hots": "b" }),
                format!("{t}.hots: unknown key; did you mean `host`?"),
            ),
            (
                json!("a:1"),
                format!(
                    "{t}: expected a target (an object with `host` and `port`), found the string \
                     \"a:1\""
                ),
            ),
        ] {
            assert_single(
                &refuse(route_with("/action/targets/0", target.clone())),
                &expected,
            );
        }
    }

    // --- the headline: all errors, with exact paths --------------------------------------

    #[test]
    fn all_errors_are_reported_with_their_paths() {
        let text = r#"
inactivityTimeout: 4 hours
routes:
  - name: one
    match: {ports: 80}
    action: {type: forward, targets: [{host: a, port: 1}]}
  - name: two
    match: {ports: [443, 0]}
    action: {type: forward, targets: [{host: b, port: 2}]}
  - name: three
    match: {ports: 8443}
    action:
      type: forward
      targets:
        - host: c
          port: 70000
"#;
        let errors = from_text(text, Format::Yaml).expect_err("three mistakes");
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "inactivityTimeout",
                "routes[1].match.ports[1]",
                "routes[2].action.targets[0].port"
            ]
        );
        assert_eq!(
            errors.0[2].to_string(),
            "routes[2].action.targets[0].port: 70000 is not a port (1-65535)"
        );
        assert_eq!(
            errors.0[1].to_string(),
            "routes[1].match.ports[1]: 0 is not a port (1-65535)"
        );
        let shown = errors.to_string();
        assert_eq!(shown.lines().count(), 3, "{shown}");
        assert!(shown.ends_with("routes[2].action.targets[0].port: 70000 is not a port (1-65535)"));
    }

    // --- unknown keys and ignored SmartProxy options -------------------------------------

    #[test]
    fn unknown_keys_are_errors_with_suggestions() {
        assert_single(
            &refuse(json!({ "routes": [], "bindAdress": "127.0.0.1" })),
            "bindAdress: unknown key; did you mean `bindAddress`?",
        );
        assert_single(
            &refuse(json!({ "routes": [], "inactivity_timeout": "1h" })),
            "inactivity_timeout: unknown key; did you mean `inactivityTimeout`?",
        );
        assert_single(
            &refuse(json!({ "routes": [], "foo": 1 })),
            "foo: unknown key",
        );
        assert_eq!(
            refuse(json!({ "route": [] })),
            [
                "route: unknown key; did you mean `routes`?",
                "routes: required key missing: a list of routes (`routes: []` is valid)",
            ]
        );
        let mut route = forward_route();
        set(&mut route, "/prio", json!(1));
        assert_single(
            &refuse(with_route(route)),
            "routes[0].prio: unknown key; expected one of: name, priority, enabled, match, \
             action, security, description, tags",
        );
        assert_single(
            &refuse(route_with("/match/port", json!(80))),
            "routes[0].match.port: unknown key; did you mean `ports`?",
        );
        assert_single(
            &refuse(route_with("/action/taregts", json!([]))),
            "routes[0].action.taregts: unknown key; did you mean `targets`?",
        );
    }

    #[test]
    fn ignored_smartproxy_options_are_warnings() {
        let (config, warnings) = accept(json!({
            "routes": [],
            "socketTimeout": 3_600_000,
            "enableDetailedLogging": true,
            "forwardingEngine": "node",
        }));
        assert_eq!(config.routes, vec![]);
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "enableDetailedLogging: SmartProxy option accepted but ignored by smartproxy",
                "forwardingEngine: SmartProxy option accepted but ignored by smartproxy",
                "socketTimeout: SmartProxy option accepted but ignored by smartproxy",
            ]
        );
        for key in IGNORED_GLOBALS {
            let (_, warnings) = accept(json!({ "routes": [], *key: null }));
            assert_eq!(warnings.len(), 1, "{key}");
            assert_eq!(warnings[0].path, *key);
        }
    }

    #[test]
    fn a_refused_config_reports_only_errors() {
        let errors = refuse(json!({ "routes": [], "socketTimeout": 1, "foo": 1 }));
        assert_single(&errors, "foo: unknown key");
    }

    // --- refused ("not supported yet") features ------------------------------------------

    #[test]
    fn global_features_not_supported_yet() {
        assert_single(
            &refuse(json!({ "routes": [], "maxConnectionsPerIP": 100 })),
            "maxConnectionsPerIP: not supported yet by this version (arrives with admission \
             control)",
        );
        assert_single(
            &refuse(json!({ "routes": [], "connectionRateLimitPerMinute": 300 })),
            "connectionRateLimitPerMinute: not supported yet by this version (arrives with \
             admission control)",
        );
        assert_single(
            &refuse(json!({ "routes": [], "ipBlockList": ["10.0.0.0/8"] })),
            "ipBlockList: not supported yet by this version (arrives with admission control)",
        );
        assert_single(
            &refuse(json!({ "routes": [], "trustedProxies": ["10.0.0.1"] })),
            "trustedProxies: not supported yet by this version (arrives with the HTTP engine)",
        );
        assert_single(
            &refuse(json!({ "routes": [], "ipAllowList": "10.0.0.0/8" })),
            "ipAllowList: expected a list of IP addresses, CIDRs or globs, found the string \
             \"10.0.0.0/8\"",
        );
        assert_has(
            &refuse(json!({ "routes": [], "ipAllowList": ["nope"] })),
            "ipAllowList[0]: \"nope\" is not a CIDR",
        );
        for key in ["acme", "admin", "metrics", "proxyProtocol", "defaults"] {
            let errors = refuse(json!({ "routes": [], key: {} }));
            assert_eq!(errors.len(), 1);
            assert!(
                errors[0].starts_with(&format!("{key}: not supported yet by this version")),
                "{errors:?}"
            );
            assert_single(
                &refuse(json!({ "routes": [], key: true })),
                &format!("{key}: expected an object, found true"),
            );
        }
        // Values that change nothing are accepted.
        accept(json!({
            "routes": [],
            "maxConnectionsPerIP": 0,
            "connectionRateLimitPerMinute": 0,
            "ipAllowList": [],
            "ipBlockList": [],
            "trustedProxies": [],
        }));
    }

    #[test]
    fn match_features_not_supported_yet() {
        let m = "routes[0].match";
        let routing = "not supported yet by this version (arrives with SNI/Host/HTTP routing)";
        for (key, value, expected) in [
            (
                "domains",
                json!("example.com"),
                format!("{m}.domains: {routing}"),
            ),
            (
                "domains",
                json!(["a.example.com", "*.example.org"]),
                format!("{m}.domains: {routing}"),
            ),
            (
                "domains",
                json!(["ok.example", ""]),
                format!(
                    "{m}.domains[1]: \"\" is not a domain name or pattern (e.g. example.com, \
                     *.example.com)"
                ),
            ),
            (
                "domains",
                json!([1]),
                format!("{m}.domains[0]: expected a domain name or pattern, found 1"),
            ),
            ("path", json!("/api/*"), format!("{m}.path: {routing}")),
            (
                "path",
                json!("api"),
                format!(
                    "{m}.path: \"api\" is not a path pattern; expected one starting with / or * \
                     (e.g. /api/*)"
                ),
            ),
            (
                "headers",
                json!({ "x-tenant": "acme" }),
                format!("{m}.headers: {routing}"),
            ),
            (
                "headers",
                json!({ "x-tenant": 1 }),
                format!("{m}.headers.x-tenant: expected a string, found 1"),
            ),
            (
                "tlsVersion",
                json!("TLSv1.3"),
                format!("{m}.tlsVersion: {routing}"),
            ),
            (
                "tlsVersion",
                json!(["TLSv1.2", "TLSv1.1"]),
                format!(
                    "{m}.tlsVersion[1]: \"TLSv1.1\" is not a TLS version that can be matched; \
                     expected TLSv1.2 or TLSv1.3"
                ),
            ),
        ] {
            assert_single(
                &refuse(route_with(&format!("/match/{key}"), value)),
                &expected,
            );
        }
        // Empty forms change nothing.
        accept(route_with("/match/domains", json!([])));
        accept(route_with("/match/headers", json!({})));
        accept(route_with("/match/tlsVersion", json!([])));
    }

    #[test]
    fn action_types() {
        let t = "routes[0].action.type";
        assert_single(
            &refuse(route_with("/action/type", json!("redirect"))),
            &format!(
                "{t}: \"redirect\" is not supported yet by this version (arrives with the HTTP \
                 engine); only forward works so far"
            ),
        );
        assert_single(
            &refuse(route_with("/action/type", json!("socket-handler"))),
            &format!(
                "{t}: \"socket-handler\" is not supported yet by this version (arrives with \
                 socket handlers in the library); only forward works so far"
            ),
        );
        for kind in ["respond", "block"] {
            assert_has(
                &refuse(route_with("/action/type", json!(kind))),
                "not supported yet",
            );
        }
        assert_single(
            &refuse(route_with("/action/type", json!("proxy"))),
            &format!(
                "{t}: \"proxy\" is not an action type; expected forward, redirect, respond, \
                 block or socket-handler"
            ),
        );
        let mut route = forward_route();
        remove(&mut route, "/action/type");
        assert_single(
            &refuse(with_route(route)),
            &format!(
                "{t}: required key missing: the action type (forward, redirect, respond, block \
                 or socket-handler)"
            ),
        );
        // Non-forward actions need no targets, and their own object is only shape-checked.
        let errors = refuse(with_route(json!({
            "match": { "ports": 80 },
            "action": {
                "type": "redirect",
                "redirect": { "to": "https://{domain}{path}", "status": 301 }
            }
        })));
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let errors = refuse(with_route(json!({
            "match": { "ports": 80 },
            "action": { "type": "respond", "respond": { "status": 700 } }
        })));
        assert_eq!(
            errors,
            [
                "routes[0].action.type: \"respond\" is not supported yet by this version \
                 (arrives with the HTTP engine); only forward works so far",
                "routes[0].action.respond.status: expected an HTTP status (100-599), found 700",
            ]
        );
        assert_has(
            &refuse(route_with("/action/redirect", json!({ "to": "https://x" }))),
            "routes[0].action.redirect: only used with `type: redirect`",
        );
    }

    #[test]
    fn action_options_not_supported_yet() {
        let a = "routes[0].action";
        let tls_refused = format!(
            "{a}.tls: not supported yet by this version (arrives with TLS passthrough/termination)"
        );
        let http_refused = "not supported yet by this version (arrives with the HTTP engine)";
        for (key, value, expected) in [
            (
                "tls",
                json!({ "mode": "passthrough" }),
                vec![tls_refused.clone()],
            ),
            (
                "tls",
                json!({ "mode": "terminate", "certificate": "auto" }),
                vec![tls_refused.clone()],
            ),
            (
                "tls",
                json!({
                    "mode": "terminate-and-reencrypt",
                    "certificate": { "cert": "PEM", "key": "PEM" },
                    "caFile": "/etc/ca.pem",
                    "rejectUnauthorized": false
                }),
                vec![tls_refused.clone()],
            ),
            (
                "tls",
                json!({ "mode": "terminate", "certificate": { "certFile": "c.pem" } }),
                vec![
                    format!("{a}.tls.certificate: needs both `certFile` and `keyFile`"),
                    tls_refused.clone(),
                ],
            ),
            (
                "tls",
                json!({ "mode": "reencrypt", "rejectUnauthorized": "no" }),
                vec![
                    format!(
                        "{a}.tls.mode: \"reencrypt\" is not a TLS mode; expected passthrough, \
                         terminate or terminate-and-reencrypt"
                    ),
                    format!(
                        "{a}.tls.rejectUnauthorized: expected true or false, found the string \
                         \"no\""
                    ),
                    tls_refused.clone(),
                ],
            ),
            (
                "websocket",
                json!({ "enabled": true, "pingInterval": "30s" }),
                vec![format!("{a}.websocket: {http_refused}")],
            ),
            (
                "headers",
                json!({ "request": { "x-a": "{clientIp}", "x-b": null } }),
                vec![format!("{a}.headers: {http_refused}")],
            ),
            (
                "protocol",
                json!("tcp"),
                vec![format!(
                    "{a}.protocol: not supported yet by this version (arrives with TLS \
                     passthrough/termination)"
                )],
            ),
            (
                "protocol",
                json!("udp"),
                vec![format!(
                    "{a}.protocol: \"udp\" is not a protocol; expected tcp or http"
                )],
            ),
            (
                "loadBalancing",
                json!({ "algorithm": "least-connections" }),
                vec![format!(
                    "{a}.loadBalancing.algorithm: not supported yet by this version (arrives \
                     with more load-balancing algorithms)"
                )],
            ),
            (
                "loadBalancing",
                json!({ "algorithm": "random" }),
                vec![format!(
                    "{a}.loadBalancing.algorithm: \"random\" is not a load-balancing algorithm; \
                     expected round-robin, least-connections or ip-hash"
                )],
            ),
            (
                "loadBalancing",
                json!({ "healthCheck": {} }),
                vec![format!(
                    "{a}.loadBalancing.healthCheck: not supported yet by this version (arrives \
                     with backend health checks)"
                )],
            ),
        ] {
            assert_eq!(
                refuse(route_with(&format!("/action/{key}"), value.clone())),
                expected,
                "{key}: {value}"
            );
        }
        let (config, _) = accept(route_with(
            "/action/loadBalancing",
            json!({ "algorithm": "round-robin" }),
        ));
        assert_eq!(config.routes[0].action.targets.len(), 1);
        accept(route_with("/action/loadBalancing", json!({})));
    }

    #[test]
    fn route_security() {
        let s = "routes[0].security";
        let admission = "not supported yet by this version (arrives with admission control)";
        accept(route_with(
            "/security",
            json!({
                "ipAllowList": [], "ipBlockList": [], "maxConnections": 0, "maxConnectionsPerIP": 0,
                "rateLimit": { "enabled": false, "maxRequests": 10 },
                "basicAuth": { "enabled": false }
            }),
        ));
        for (security, expected) in [
            (
                json!({ "ipAllowList": ["10.0.0.0/8"] }),
                format!("{s}.ipAllowList: {admission}"),
            ),
            (
                json!({ "maxConnections": 5 }),
                format!("{s}.maxConnections: {admission}"),
            ),
            (
                json!({ "maxConnectionsPerIP": -1 }),
                format!(
                    "{s}.maxConnectionsPerIP: expected a whole number ≥ 0 (0 = unlimited), \
                     found -1"
                ),
            ),
            (
                json!({ "rateLimit": { "maxRequests": 10, "window": 60 } }),
                format!("{s}.rateLimit: {admission}"),
            ),
            (
                json!({ "basicAuth": { "users": [] } }),
                format!("{s}.basicAuth: {admission}"),
            ),
            (
                json!({ "jwtAuth": { "enabled": false, "secrett": "x" } }),
                format!("{s}.jwtAuth.secrett: unknown key; did you mean `secret`?"),
            ),
            (
                json!({ "firewall": true }),
                format!(
                    "{s}.firewall: unknown key; expected one of: ipAllowList, ipBlockList, \
                     maxConnections, maxConnectionsPerIP, rateLimit, basicAuth, jwtAuth"
                ),
            ),
            (json!([]), format!("{s}: expected an object, found a list")),
        ] {
            assert_single(
                &refuse(route_with("/security", security.clone())),
                &expected,
            );
        }
    }

    // --- formats and files ---------------------------------------------------------------

    const SAME_JSON: &str = r#"{
        "bindAddress": "0.0.0.0",
        "inactivityTimeout": "2h",
        "keepAliveTreatment": "standard",
        "maxPendingDataSize": "512KiB",
        "routes": [
            {
                "name": "web",
                "priority": 10,
                "match": {
                    "ports": [80, { "from": 8000, "to": 8002 }],
                    "clientIp": ["10.0.0.0/8"]
                },
                "action": {
                    "type": "forward",
                    "targets": [{ "host": ["10.0.0.5", "10.0.0.6"], "port": "preserve" }]
                }
            },
            {
                "match": { "ports": 5432 },
                "action": { "type": "forward", "target": { "host": "db.internal", "port": 5432 } }
            }
        ]
    }"#;

    const SAME_YAML: &str = r#"
bindAddress: 0.0.0.0
inactivityTimeout: 2h
keepAliveTreatment: standard
maxPendingDataSize: 512KiB
routes:
  - name: web
    priority: 10
    match:
      ports: [80, {from: 8000, to: 8002}]
      clientIp: ["10.0.0.0/8"]
    action:
      type: forward
      targets:
        - host: [10.0.0.5, 10.0.0.6]
          port: preserve
  - match: {ports: 5432}
    action:
      type: forward
      target: {host: db.internal, port: 5432}
"#;

    const SAME_TOML: &str = r#"
bindAddress = "0.0.0.0"
inactivityTimeout = "2h"
keepAliveTreatment = "standard"
maxPendingDataSize = "512KiB"

[[routes]]
name = "web"
priority = 10
match = { ports = [80, { from = 8000, to = 8002 }], clientIp = ["10.0.0.0/8"] }
action = { type = "forward", targets = [{ host = ["10.0.0.5", "10.0.0.6"], port = "preserve" }] }

[[routes]]
match = { ports = 5432 }
[routes.action]
type = "forward"
target = { host = "db.internal", port = 5432 }
"#;

    #[test]
    fn json_yaml_and_toml_give_the_same_config() {
        let (json_config, _) = from_text(SAME_JSON, Format::Json).expect("json");
        let (yaml_config, _) = from_text(SAME_YAML, Format::Yaml).expect("yaml");
        let (toml_config, _) = from_text(SAME_TOML, Format::Toml).expect("toml");
        assert_eq!(json_config, yaml_config);
        assert_eq!(json_config, toml_config);
        assert_eq!(json_config.routes.len(), 2);
        assert_eq!(
            json_config.routes[0].matcher.ports,
            vec![80, 8000, 8001, 8002]
        );
        assert_eq!(json_config.routes[1].name, "route-2");
        assert_eq!(json_config.inactivity_timeout, Duration::from_secs(7200));
        assert_eq!(json_config.max_pending_data_size, 512 * 1024);
    }

    #[test]
    fn syntax_errors_are_one_error_with_line_and_column() {
        for (text, format, expected) in [
            (
                "{\"routes\": [],}",
                Format::Json,
                "JSON syntax error: trailing comma at line 1 column 15",
            ),
            ("routes: [\nb: 1\n", Format::Yaml, "YAML syntax error:"),
            (
                "routes = \n",
                Format::Toml,
                "TOML syntax error at line 1, column 10:",
            ),
        ] {
            let errors = from_text(text, format).expect_err("syntax error");
            assert_eq!(errors.0.len(), 1, "{errors}");
            let error = &errors.0[0];
            assert_eq!(error.path, "");
            assert!(
                error.message.starts_with(expected),
                "{:?} vs {expected:?}",
                error.message
            );
            assert!(error.message.contains("line"), "{}", error.message);
            assert!(
                !error.message.contains('\n'),
                "one line: {:?}",
                error.message
            );
        }
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_in_every_format() {
        let json = from_text("{\"routes\": [], \"routes\": []}", Format::Json).expect_err("dup");
        assert!(
            json.0[0].message.contains("duplicate key `routes`"),
            "{json}"
        );
        assert!(json.0[0].message.contains("line 1"), "{json}");
        let yaml = from_text("routes: []\nroutes: []\n", Format::Yaml).expect_err("dup");
        assert!(yaml.0[0].message.contains("duplicate"), "{yaml}");
        let toml = from_text("routes = []\nroutes = []\n", Format::Toml).expect_err("dup");
        assert!(toml.0[0].message.contains("duplicate"), "{toml}");
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        from_text("\u{feff}{\"routes\": []}", Format::Json).expect("BOM");
    }

    #[test]
    fn loading_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("a.json", SAME_JSON),
            ("a.yaml", SAME_YAML),
            ("a.YML", SAME_YAML),
            ("a.toml", SAME_TOML),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let (config, _) = load_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(config.routes.len(), 2);
        }

        let missing = dir.path().join("missing.yaml");
        let errors = load_file(&missing).expect_err("missing");
        let message = errors.to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(message.contains("cannot read the config file"), "{message}");
        assert!(message.contains("os error"), "{message}");

        let odd = dir.path().join("proxy.conf");
        std::fs::write(&odd, "routes: []").expect("write");
        let message = load_file(&odd).expect_err("extension").to_string();
        assert!(message.contains(&odd.display().to_string()), "{message}");
        assert!(
            message.contains("expected .yaml, .yml, .json or .toml"),
            "{message}"
        );

        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{").expect("write");
        let message = load_file(&broken).expect_err("syntax").to_string();
        assert!(
            message.starts_with(&format!("{}: JSON syntax error", broken.display())),
            "{message}"
        );

        let invalid = dir.path().join("invalid.yaml");
        std::fs::write(&invalid, "routes: []\nnoDelay: 1\n").expect("write");
        assert_eq!(
            load_file(&invalid).expect_err("invalid").to_string(),
            "noDelay: expected true or false, found 1"
        );
    }

    #[test]
    fn display_forms() {
        let with_path = ConfigError::new("routes[0].name", "bad");
        assert_eq!(with_path.to_string(), "routes[0].name: bad");
        assert_eq!(ConfigError::new("", "whole file").to_string(), "whole file");
        let errors = ConfigErrors(vec![with_path, ConfigError::new("", "two")]);
        assert_eq!(errors.to_string(), "routes[0].name: bad\ntwo");
        let warning = Warning {
            path: "socketTimeout".into(),
            message: "ignored".into(),
        };
        assert_eq!(warning.to_string(), "socketTimeout: ignored");
        let _: &dyn std::error::Error = &errors;
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ports", "port"), 1);
        assert_eq!(suggest("a", ["to", "from"].iter()), None);
        assert_eq!(suggest("NODELAY", GLOBAL_KEYS.iter()), Some("noDelay"));
        assert_eq!(
            suggest("keep_alive_initial_delay", GLOBAL_KEYS.iter()),
            Some("keepAliveInitialDelay")
        );
        assert_eq!(suggest("completelyDifferent", GLOBAL_KEYS.iter()), None);
    }

    // --- docs/CONFIG.md stays true ------------------------------------------------------

    const CONFIG_MD: &str = include_str!("../../docs/CONFIG.md");

    /// The fenced block that follows `<!-- example:NAME -->` in docs/CONFIG.md.
    fn doc_example(name: &str) -> &'static str {
        let marker = format!("<!-- example:{name} -->");
        let after = CONFIG_MD
            .split_once(marker.as_str())
            .map(|(_, after)| after)
            .expect("marker present");
        let body = after
            .split_once("```")
            .and_then(|(_, rest)| rest.split_once('\n'))
            .map(|(_, rest)| rest)
            .expect("code block");
        body.split_once("```")
            .map(|(block, _)| block)
            .expect("closed")
    }

    #[test]
    fn the_documented_examples_are_valid_and_equal() {
        let (yaml, yaml_warnings) = from_text(doc_example("yaml"), Format::Yaml)
            .unwrap_or_else(|e| panic!("YAML example: {e}"));
        let (json, json_warnings) = from_text(doc_example("json"), Format::Json)
            .unwrap_or_else(|e| panic!("JSON example: {e}"));
        assert_eq!(yaml, json);
        assert!(yaml_warnings.is_empty() && json_warnings.is_empty());
        assert_eq!(yaml.routes.len(), 4);
        assert!(!yaml.routes[3].enabled);
    }

    #[test]
    fn every_key_is_documented() {
        let keys = GLOBAL_KEYS
            .iter()
            .chain(IGNORED_GLOBALS)
            .chain(ROUTE_KEYS)
            .chain(MATCH_KEYS)
            .chain(ACTION_KEYS)
            .chain(TARGET_KEYS)
            .chain(TLS_KEYS)
            .chain(SECURITY_KEYS);
        for key in keys {
            assert!(
                CONFIG_MD.contains(&format!("`{key}`")),
                "docs/CONFIG.md does not mention `{key}`"
            );
        }
    }

    // --- no panics on any input ----------------------------------------------------------

    fn any_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("routes".to_string()),
            Just("match".to_string()),
            Just("action".to_string()),
            Just("ports".to_string()),
            Just("targets".to_string()),
            Just("target".to_string()),
            Just("host".to_string()),
            Just("port".to_string()),
            Just("type".to_string()),
            Just("from".to_string()),
            Just("to".to_string()),
            Just("name".to_string()),
            Just("security".to_string()),
            Just("tls".to_string()),
            "[a-zA-Z]{0,12}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (0u64..70_000).prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            Just(json!("forward")),
            Just(json!("preserve")),
            ".{0,16}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn validation_never_panics(value in any_value()) {
            if let Err(errors) = from_value(&value) {
                prop_assert!(!errors.0.is_empty());
            }
            let _ = from_value(&json!({ "routes": [value.clone()] }));
            let _ = from_value(&json!({ "routes": [{ "match": value.clone(), "action": value }] }));
        }

        #[test]
        fn parsing_text_never_panics(text in ".{0,200}") {
            let _ = from_text(&text, Format::Json);
            let _ = from_text(&text, Format::Yaml);
            let _ = from_text(&text, Format::Toml);
        }
    }
}
