//! `action.targets` (or the single `action.target`): where a forward action connects.

use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use super::WITH_TARGET_OPTIONS;
use super::routes::port_number;
use super::tree::{
    Ctx, check_entries, check_keys, child, expect_choice, expect_object, item, string_or_list,
};
use crate::config::units::{describe, quoted};
use crate::config::{ProxyProtocolVersion, Target, TargetPort, TargetProtocol};

/// The target keys this version acts on; the rest of TARGET_KEYS are refused as not supported yet.
const SUPPORTED_TARGET_KEYS: &[&str] = &["host", "port", "protocol", "sendProxyProtocol"];

pub(super) const TARGET_KEYS: &[&str] = &[
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

pub(super) fn targets(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<Target>> {
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

pub(super) fn target(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Target> {
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
            let entries = string_or_list(ctx, &host_path, value, "a host name or IP address");
            entries.and_then(|entries| check_entries(ctx, &entries, check_host))
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

    let protocol = match object.get("protocol") {
        None => Some(TargetProtocol::H1),
        Some(value) => {
            let key_path = child(path, "protocol");
            match expect_choice(ctx, &key_path, value, &["h1", "h2"], "a target protocol") {
                Some("h2") => Some(TargetProtocol::H2),
                Some(_) => Some(TargetProtocol::H1),
                None => None,
            }
        }
    };
    // SmartProxy's `true` (it writes v1) is accepted as v1.
    let send_proxy_protocol = match object.get("sendProxyProtocol") {
        None | Some(Value::Bool(false)) => Some(None),
        Some(Value::Bool(true)) => Some(Some(ProxyProtocolVersion::V1)),
        Some(value) => {
            let key_path = child(path, "sendProxyProtocol");
            match expect_choice(
                ctx,
                &key_path,
                value,
                &["v1", "v2"],
                "a PROXY protocol version",
            ) {
                Some("v1") => Some(Some(ProxyProtocolVersion::V1)),
                Some(_) => Some(Some(ProxyProtocolVersion::V2)),
                None => None,
            }
        }
    };
    for &key in TARGET_KEYS {
        if !SUPPORTED_TARGET_KEYS.contains(&key) && object.contains_key(key) {
            ctx.unsupported(&child(path, key), WITH_TARGET_OPTIONS);
        }
    }

    Some(Target {
        hosts: hosts?,
        port: port?,
        protocol: protocol?,
        send_proxy_protocol: send_proxy_protocol?,
    })
}

/// An IP address or a DNS host name, without scheme, port or brackets; `Ok` holds it as given.
fn check_host(text: &str) -> Result<String, String> {
    let shown = quoted(text);
    if text.is_empty() {
        return Err("expected a host name or IP address, found an empty string".to_string());
    }
    if IpAddr::from_str(text).is_ok() {
        return Ok(text.to_string());
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
        Ok(text.to_string())
    } else {
        Err(format!(
            "{shown} is not a host name or IP address (e.g. backend.internal, 10.0.0.5, ::1)"
        ))
    }
}
