//! One route: its name, priority and flags, and its `match` (ports, client addresses, SNI
//! domains, TLS versions, and the HTTP conditions `path` and `headers`).

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::action::{action, opaque_reason};
use super::headers::{check_header_value, header_map};
use super::ip::client_ips;
use super::security::security;
use super::tree::{
    Ctx, check_entries, check_keys, child, expect_bool, expect_object, expect_str,
    expect_string_list, expect_text, item, string_or_list,
};
use crate::config::units::{describe, quoted};
use crate::config::{Action, Route, RouteMatch, RouteSecurity, TlsVersion};

pub(super) const ROUTE_KEYS: &[&str] = &[
    "name",
    "priority",
    "enabled",
    "match",
    "action",
    "security",
    "description",
    "tags",
];
pub(super) const MATCH_KEYS: &[&str] = &[
    "ports",
    "domains",
    "path",
    "clientIp",
    "headers",
    "tlsVersion",
];
const RANGE_KEYS: &[&str] = &["from", "to"];

/// Where a route name was first seen, and whether it was written or generated.
pub(super) struct NameOwner {
    index: usize,
    generated: bool,
}

pub(super) fn route(
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

    let security = match object.get("security") {
        None => Some(RouteSecurity::default()),
        Some(value) => {
            let why_opaque = action
                .as_ref()
                .and_then(|action| opaque_reason(action.tls.as_ref(), action.protocol));
            security(ctx, &child(&path, "security"), value, why_opaque)
        }
    };

    if let (Some(matcher), Some(action)) = (&matcher, &action) {
        http_conditions_readable(ctx, &child(&path, "match"), matcher, action);
    }

    Some(Route {
        name: name?,
        priority: priority?,
        enabled: enabled?,
        matcher: matcher?,
        action: action?,
        security: security?,
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

    let domains = match object.get("domains") {
        None => Some(Vec::new()),
        Some(value) => routing_condition(
            ctx,
            &child(path, "domains"),
            value,
            "a domain name or pattern",
            check_domain,
        ),
    };
    let match_path = match object.get("path") {
        None => Some(None),
        Some(value) => path_pattern(ctx, &child(path, "path"), value).map(Some),
    };
    let headers = match object.get("headers") {
        None => Some(Vec::new()),
        Some(value) => header_conditions(ctx, &child(path, "headers"), value),
    };
    let tls_versions = match object.get("tlsVersion") {
        None => Some(Vec::new()),
        Some(value) => routing_condition(
            ctx,
            &child(path, "tlsVersion"),
            value,
            "a TLS version",
            check_tls_version,
        ),
    };

    Some(RouteMatch {
        ports: ports?,
        client_ip: client_ip?,
        domains: domains?,
        tls_versions: tls_versions?,
        path: match_path?,
        headers: headers?,
    })
}

/// `match.path` and `match.headers` need the request head: a route whose bytes the proxy never
/// reads as HTTP (TLS passthrough, `protocol: tcp`) could never match them.
fn http_conditions_readable(ctx: &mut Ctx, path: &str, matcher: &RouteMatch, action: &Action) {
    let Some(why) = opaque_reason(action.tls.as_ref(), action.protocol) else {
        return;
    };
    if matcher.path.is_some() {
        ctx.error(
            &child(path, "path"),
            format!("matching the path needs the HTTP request, but {why}"),
        );
    }
    if !matcher.headers.is_empty() {
        ctx.error(
            &child(path, "headers"),
            format!("matching headers needs the HTTP request, but {why}"),
        );
    }
}

/// `match.path`: a case-sensitive glob over the request path, starting with `/` or `*`.
fn path_pattern(ctx: &mut Ctx, path: &str, value: &Value) -> Option<String> {
    let text = expect_str(ctx, path, value, "a path pattern")?;
    ctx.report(path, check_path_pattern(text))
}

/// A glob over the request path (`match.path`, `basicAuth.excludePaths`): starts with `/` or
/// `*`, and holds no spaces or control characters.
pub(super) fn check_path_pattern(text: &str) -> Result<String, String> {
    if !(text.starts_with('/') || text.starts_with('*')) {
        return Err(format!(
            "{} is not a path pattern; expected one starting with / or * (e.g. /api/*)",
            quoted(text)
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} contains spaces or control characters, which never appear in a request \
             path (write them percent-encoded, as they arrive: %20)",
            quoted(text)
        ));
    }
    Ok(text.to_string())
}

/// `match.headers`: lowercase header name → case-insensitive glob over its value.
fn header_conditions(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Vec<(String, String)>> {
    let entries = header_map(ctx, path, value, false)?;
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for entry in entries {
        let pattern = entry.value.unwrap_or_default();
        match check_header_value(pattern) {
            Ok(()) => out.push((entry.name, pattern.to_string())),
            Err(message) => {
                ctx.error(&entry.path, message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
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

pub(super) fn port_number(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u16> {
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

/// A routing condition given as a string or a list (`domains`, `tlsVersion`), each entry
/// checked and converted.
fn routing_condition<T>(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    what: &str,
    check: fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let entries = string_or_list(ctx, path, value, what)?;
    check_entries(ctx, &entries, check)
}

fn check_domain(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && !text.contains("..")
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'));
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{} is not a domain name or pattern (e.g. example.com, *.example.com)",
            quoted(text)
        ))
    }
}

fn check_tls_version(text: &str) -> Result<TlsVersion, String> {
    match text {
        "TLSv1.2" => Ok(TlsVersion::Tls12),
        "TLSv1.3" => Ok(TlsVersion::Tls13),
        _ => Err(format!(
            "{} is not a TLS version that can be matched; expected TLSv1.2 or TLSv1.3",
            quoted(text)
        )),
    }
}
