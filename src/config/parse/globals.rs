//! The top level: the global options over their defaults (admission among them), which peers
//! may send a PROXY header (`proxyProtocol`, or SmartProxy's `acceptProxyProtocol` + `proxyIPs`),
//! the globals that are refused or ignored, and the `routes` list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::ip::{ip_list, trusted_peers};
use super::routes::route;
use super::tree::{
    Ctx, check_keys, child, expect_bool, expect_choice, expect_count, expect_duration,
    expect_object, expect_size, expect_str,
};
use super::{WITH_ACME, WITH_ADMIN, WITH_DEFAULTS, WITH_METRICS};
use crate::config::units::{MAX_DURATION, MAX_DURATION_TEXT, describe, quoted, shown};
use crate::config::{Config, KeepAliveTreatment, ProxyProtocolAccept};

pub(super) const GLOBAL_KEYS: &[&str] = &[
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
    "headersTimeout",
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
pub(super) const IGNORED_GLOBALS: &[&str] = &[
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

/// The kernel counts keepalive idle time in whole seconds, up to this many (Linux TCP_KEEPIDLE).
const MAX_KEEPALIVE_IDLE_SECS: u64 = 32_767;
const MIN_RELAY_BUFFER: u64 = 1 << 10;
const MAX_RELAY_BUFFER: u64 = 16 << 20;

pub(super) fn validate_config(ctx: &mut Ctx, root: &Value) -> Option<Config> {
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
    // SmartProxy's `acceptProxyProtocol: true` with `proxyIPs` is read (as `proxyProtocol`), so
    // those two are not reported as ignored then.
    let legacy = legacy_proxy_protocol(object);
    if legacy.is_some() {
        let mut known = GLOBAL_KEYS.to_vec();
        known.extend(["acceptProxyProtocol", "proxyIPs"]);
        check_keys(ctx, "", object, &known, IGNORED_GLOBALS);
    } else {
        check_keys(ctx, "", object, GLOBAL_KEYS, IGNORED_GLOBALS);
    }

    let mut config = Config::default();

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
            ("headersTimeout", &mut c.headers_timeout),
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
            Some(m) if m.is_finite() && m >= 1.0 => config.keep_alive_inactivity_multiplier = m,
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

    // Checked whichever of the two was written: the extended limit must stay a valid duration.
    let multiplier = config.keep_alive_inactivity_multiplier;
    if config.inactivity_timeout.as_secs_f64() * multiplier > MAX_DURATION.as_secs_f64() {
        let key = if object.contains_key("keepAliveInactivityMultiplier") {
            "keepAliveInactivityMultiplier"
        } else {
            "inactivityTimeout"
        };
        ctx.error(
            key,
            format!(
                "inactivityTimeout × {multiplier} is longer than the longest allowed \
                 duration ({})",
                MAX_DURATION_TEXT
            ),
        );
        config.keep_alive_inactivity_multiplier = 1.0;
    }

    config.proxy_protocol = proxy_protocol(ctx, object, legacy);

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
        config.admission.max_connections = n;
    }

    {
        let admission = &mut config.admission;
        for (key, slot) in [
            ("maxConnectionsPerIP", &mut admission.max_connections_per_ip),
            (
                "connectionRateLimitPerMinute",
                &mut admission.connection_rate_limit_per_minute,
            ),
        ] {
            if let Some(value) = object.get(key)
                && let Some(n) = expect_count(ctx, key, value)
            {
                *slot = n;
            }
        }
        for (key, slot) in [
            ("ipAllowList", &mut admission.ip_allow_list),
            ("ipBlockList", &mut admission.ip_block_list),
        ] {
            if let Some(value) = object.get(key)
                && let Some(list) = ip_list(ctx, key, value)
            {
                *slot = list;
            }
        }
    }
    if let Some(value) = object.get("trustedProxies")
        && let Some(list) = trusted_peers(ctx, "trustedProxies", value)
    {
        config.trusted_proxies = list;
    }
    for (key, arrives_with) in [
        ("acme", WITH_ACME),
        ("admin", WITH_ADMIN),
        ("metrics", WITH_METRICS),
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

pub(super) const PROXY_PROTOCOL_KEYS: &[&str] = &["accept", "required"];
const PROXY_PROTOCOL_EXAMPLE: &str = "proxyProtocol: {accept: [\"10.0.0.0/8\"]}";

/// SmartProxy's older way to accept PROXY headers, when it is switched on: the value of
/// `proxyIPs` beside `acceptProxyProtocol: true`.
fn legacy_proxy_protocol(object: &Map<String, Value>) -> Option<&Value> {
    let on = matches!(object.get("acceptProxyProtocol"), Some(Value::Bool(true)));
    object.get("proxyIPs").filter(|ips| on && is_given(ips))
}

/// A list or string that names something (SmartProxy's switches count as off when empty).
fn is_given(value: &Value) -> bool {
    match value {
        Value::Array(list) => !list.is_empty(),
        Value::String(text) => !text.is_empty(),
        _ => false,
    }
}

/// `proxyProtocol`, or SmartProxy's `acceptProxyProtocol: true` + `proxyIPs` read as
/// `proxyProtocol: {accept: proxyIPs, required: false}`. Either form, not both.
fn proxy_protocol(
    ctx: &mut Ctx,
    object: &Map<String, Value>,
    legacy: Option<&Value>,
) -> Option<ProxyProtocolAccept> {
    // A global switch to send headers would be silently ignored: sending is per target.
    if let Some(value) = object.get("sendProxyProtocol")
        && (matches!(value, Value::Bool(true)) || is_given(value))
    {
        ctx.error(
            "sendProxyProtocol",
            "a PROXY header is sent per target here: set `sendProxyProtocol: v1` (or v2) on \
             each target that expects one (`targets[].sendProxyProtocol`)",
        );
    }
    let accept_on = matches!(object.get("acceptProxyProtocol"), Some(Value::Bool(true)));
    let ips_given = object.get("proxyIPs").is_some_and(is_given);
    let current = object.get("proxyProtocol");

    if current.is_some() && (accept_on || ips_given) {
        let key = if accept_on {
            "acceptProxyProtocol"
        } else {
            "proxyIPs"
        };
        ctx.error(
            key,
            "`proxyProtocol` is given too; keep only `proxyProtocol: {accept, required}` \
             (acceptProxyProtocol and proxyIPs are SmartProxy's older form of it)",
        );
        // `proxyProtocol` is still checked, so that every problem in it is reported.
        if let Some(value) = current {
            proxy_protocol_object(ctx, value);
        }
        return None;
    }
    if let Some(value) = current {
        return proxy_protocol_object(ctx, value);
    }
    if accept_on && !ips_given {
        ctx.error(
            "acceptProxyProtocol",
            format!(
                "true without `proxyIPs` would trust no peer to send a PROXY header; list the \
                 peers that may, e.g. `{PROXY_PROTOCOL_EXAMPLE}`"
            ),
        );
        return None;
    }
    if ips_given && !accept_on {
        ctx.error(
            "proxyIPs",
            format!(
                "read only with `acceptProxyProtocol: true`; to accept PROXY headers from these \
                 peers write `{PROXY_PROTOCOL_EXAMPLE}` instead"
            ),
        );
        return None;
    }
    let ips = legacy?;
    let accept = trusted_peers(ctx, "proxyIPs", ips)?;
    ctx.warn(
        "acceptProxyProtocol",
        "read with `proxyIPs` as `proxyProtocol: {accept: <proxyIPs>, required: false}` (peers \
         in proxyIPs may send a PROXY header, and need not); write that form instead \
         (`required: true`, the default, refuses a listed peer that sends none)",
    );
    Some(ProxyProtocolAccept {
        accept,
        required: false,
    })
}

/// `proxyProtocol: {accept, required}`.
fn proxy_protocol_object(ctx: &mut Ctx, value: &Value) -> Option<ProxyProtocolAccept> {
    let path = "proxyProtocol";
    let object = expect_object(ctx, path, value, "an object {accept, required}")?;
    check_keys(ctx, path, object, PROXY_PROTOCOL_KEYS, &[]);
    let accept_path = child(path, "accept");
    let accept = match object.get("accept") {
        None => {
            ctx.error(
                &accept_path,
                format!(
                    "required key missing: the peers (CIDRs or IP addresses) trusted to send a \
                     PROXY header, e.g. `{PROXY_PROTOCOL_EXAMPLE}`"
                ),
            );
            None
        }
        Some(value) => match trusted_peers(ctx, &accept_path, value) {
            Some(list) if list.is_empty() => {
                ctx.error(
                    &accept_path,
                    "an empty list trusts no peer to send a PROXY header; list the peers that \
                     may (or leave `proxyProtocol` out)",
                );
                None
            }
            list => list,
        },
    };
    let required = match object.get("required") {
        None => Some(true),
        Some(value) => expect_bool(ctx, &child(path, "required"), value),
    };
    Some(ProxyProtocolAccept {
        accept: accept?,
        required: required?,
    })
}
