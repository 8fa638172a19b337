//! A route's `security`: admission rules and authentication, none of which exist yet.

use serde_json::Value;

use super::WITH_ADMISSION;
use super::ip::ip_list;
use super::tree::{Ctx, check_keys, child, expect_bool, expect_count, expect_object};

pub(super) const SECURITY_KEYS: &[&str] = &[
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

/// Route-level `security`: empty lists and zero limits are accepted (they change nothing);
/// anything that would change behaviour is refused until admission control exists.
pub(super) fn security(ctx: &mut Ctx, path: &str, value: &Value) {
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
