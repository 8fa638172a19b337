//! The top level: the global options over their defaults, the globals that are refused or
//! ignored, and the `routes` list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;

use super::ip::{ip_list, trusted_proxies};
use super::routes::route;
use super::tree::{
    Ctx, check_keys, expect_bool, expect_choice, expect_count, expect_duration, expect_object,
    expect_size, expect_str,
};
use super::{
    WITH_ACME, WITH_ADMIN, WITH_ADMISSION, WITH_DEFAULTS, WITH_METRICS, WITH_PROXY_PROTOCOL,
};
use crate::config::units::{MAX_DURATION, MAX_DURATION_TEXT, describe, quoted, shown};
use crate::config::{Config, KeepAliveTreatment};

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
    check_keys(ctx, "", object, GLOBAL_KEYS, IGNORED_GLOBALS);

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

    // SmartProxy's PROXY protocol switches are accepted as names, but a value that would turn
    // the protocol on must not be silently ignored.
    for key in ["acceptProxyProtocol", "sendProxyProtocol", "proxyIPs"] {
        let enabled = match object.get(key) {
            Some(Value::Bool(on)) => *on,
            Some(Value::Array(list)) => !list.is_empty(),
            Some(Value::String(text)) => !text.is_empty(),
            _ => false,
        };
        if enabled {
            ctx.unsupported(key, WITH_PROXY_PROTOCOL);
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
        config.admission.max_connections = n;
    }

    // Accepted shapes whose behaviour does not exist yet: refused when they would matter.
    for key in ["maxConnectionsPerIP", "connectionRateLimitPerMinute"] {
        if let Some(value) = object.get(key)
            && expect_count(ctx, key, value).is_some_and(|n| n != 0)
        {
            ctx.unsupported(key, WITH_ADMISSION);
        }
    }
    for key in ["ipAllowList", "ipBlockList"] {
        if let Some(value) = object.get(key)
            && ip_list(ctx, key, value).is_some_and(|list| !list.is_empty())
        {
            ctx.unsupported(key, WITH_ADMISSION);
        }
    }
    if let Some(value) = object.get("trustedProxies")
        && let Some(list) = trusted_proxies(ctx, "trustedProxies", value)
    {
        config.trusted_proxies = list;
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
