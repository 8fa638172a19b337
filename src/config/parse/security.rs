//! A route's `security`: its own address lists and connection limits, and the request limit
//! and authentication that act on HTTP requests (`rateLimit`, `basicAuth`). `jwtAuth` is
//! checked for shape and refused.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};

use super::WITH_JWT_AUTH;
use super::headers::check_header_name;
use super::ip::ip_list;
use super::routes::check_path_pattern;
use super::tree::{
    Ctx, check_entries, check_keys, child, expect_bool, expect_choice, expect_count,
    expect_duration, expect_object, expect_str, expect_string_list, expect_text, item,
};
use crate::config::units::{describe, quoted, shown};
use crate::config::{
    Admission, BasicAuth, BasicAuthUser, Password, RateLimit, RateLimitKey, RouteSecurity,
};

pub(super) const SECURITY_KEYS: &[&str] = &[
    "ipAllowList",
    "ipBlockList",
    "maxConnections",
    "maxConnectionsPerIP",
    "connectionRateLimitPerMinute",
    "rateLimit",
    "basicAuth",
    "jwtAuth",
];
pub(super) const RATE_LIMIT_KEYS: &[&str] = &[
    "enabled",
    "maxRequests",
    "window",
    "keyBy",
    "headerName",
    "errorMessage",
];
pub(super) const BASIC_AUTH_KEYS: &[&str] = &["enabled", "users", "realm", "excludePaths"];
pub(super) const USER_KEYS: &[&str] = &["username", "password"];
pub(super) const JWT_AUTH_KEYS: &[&str] = &[
    "enabled",
    "secret",
    "algorithm",
    "issuer",
    "audience",
    "expiresIn",
    "excludePaths",
];

const DEFAULT_REALM: &str = "Restricted";
const BCRYPT_PREFIXES: &[&str] = &["$2a$", "$2b$", "$2y$"];
const ARGON2_PREFIXES: &[&str] = &["$argon2id$", "$argon2i$", "$argon2d$"];
/// How other password hash formats begin: such a password is refused rather than compared as
/// plain text (which would make the hash itself the password).
const OTHER_HASH_PREFIXES: &[&str] = &[
    "$argon2", "$2$", "$2x$", "$1$", "$apr1$", "$md5", "$5$", "$6$", "$7$", "$y$", "$gy$",
    "$sha1$", "$scrypt$", "$pbkdf2", "{SHA}", "{SSHA}",
];
/// bcrypt's cost range (log2 of the rounds).
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Route-level `security`. `why_opaque` is set when the route's bytes are never read as HTTP
/// (the reason, for messages): `rateLimit` and `basicAuth` are errors there.
pub(super) fn security(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    why_opaque: Option<&'static str>,
) -> Option<RouteSecurity> {
    let object = expect_object(ctx, path, value, "an object")?;
    check_keys(ctx, path, object, SECURITY_KEYS, &[]);
    let admission = admission(ctx, path, object);

    let rate_limit = match object.get("rateLimit") {
        None => Some(None),
        Some(v) => rate_limit(ctx, &child(path, "rateLimit"), v),
    };
    let basic_auth = match object.get("basicAuth") {
        None => Some(None),
        Some(v) => basic_auth(ctx, &child(path, "basicAuth"), v),
    };
    let jwt_ok = object
        .get("jwtAuth")
        .is_none_or(|v| jwt_auth(ctx, &child(path, "jwtAuth"), v));

    let mut ok = jwt_ok;
    if let Some(why) = why_opaque {
        for (key, on, what) in [
            (
                "rateLimit",
                matches!(rate_limit, Some(Some(_))),
                "rate limiting",
            ),
            (
                "basicAuth",
                matches!(basic_auth, Some(Some(_))),
                "basic authentication",
            ),
        ] {
            if on {
                ctx.error(
                    &child(path, key),
                    format!("{what} needs the HTTP request, but {why}"),
                );
                ok = false;
            }
        }
    }
    let security = RouteSecurity {
        admission: admission?,
        rate_limit: rate_limit?,
        basic_auth: basic_auth?,
    };
    ok.then_some(security)
}

/// The route's address lists and connection limits (the same keys as the global ones).
fn admission(ctx: &mut Ctx, path: &str, object: &Map<String, Value>) -> Option<Admission> {
    let mut admission = Admission::default();
    let mut ok = true;
    for (key, slot) in [
        ("ipAllowList", &mut admission.ip_allow_list),
        ("ipBlockList", &mut admission.ip_block_list),
    ] {
        if let Some(v) = object.get(key) {
            match ip_list(ctx, &child(path, key), v) {
                Some(list) => *slot = list,
                None => ok = false,
            }
        }
    }
    for (key, slot) in [
        ("maxConnections", &mut admission.max_connections),
        ("maxConnectionsPerIP", &mut admission.max_connections_per_ip),
        (
            "connectionRateLimitPerMinute",
            &mut admission.connection_rate_limit_per_minute,
        ),
    ] {
        if let Some(v) = object.get(key) {
            match expect_count(ctx, &child(path, key), v) {
                Some(n) => *slot = n,
                None => ok = false,
            }
        }
    }
    ok.then_some(admission)
}

/// `enabled` of an option object: `true` when absent.
fn enabled(ctx: &mut Ctx, path: &str, object: &Map<String, Value>) -> Option<bool> {
    match object.get("enabled") {
        None => Some(true),
        Some(v) => expect_bool(ctx, &child(path, "enabled"), v),
    }
}

/// `rateLimit: {enabled, maxRequests, window, keyBy, headerName, errorMessage}`: `Some(None)`
/// when disabled. The given keys are checked either way; the required ones only when enabled.
fn rate_limit(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Option<RateLimit>> {
    let object = expect_object(ctx, path, value, "an object {maxRequests, window, keyBy}")?;
    check_keys(ctx, path, object, RATE_LIMIT_KEYS, &[]);
    let enabled = enabled(ctx, path, object);
    let required = enabled == Some(true);

    let max_path = child(path, "maxRequests");
    let max_requests = match object.get("maxRequests") {
        None if required => {
            ctx.error(
                &max_path,
                "required key missing: how many requests one client may make per window, \
                 e.g. 100",
            );
            None
        }
        None => Some(0),
        Some(v) => match v.as_u64() {
            Some(0) => {
                ctx.error(
                    &max_path,
                    "0 would refuse every request; expected a whole number ≥ 1 (to turn rate \
                     limiting off, set `enabled: false`)",
                );
                None
            }
            Some(n) => Some(n),
            None => {
                ctx.error(
                    &max_path,
                    format!("expected a whole number ≥ 1, found {}", describe(v)),
                );
                None
            }
        },
    };

    let window_path = child(path, "window");
    let window = match object.get("window") {
        None if required => {
            ctx.error(
                &window_path,
                "required key missing: the window requests are counted in, a duration such \
                 as \"1m\" or 60000 (milliseconds)",
            );
            None
        }
        None => Some(Duration::ZERO),
        Some(v) => match expect_duration(ctx, &window_path, v) {
            Some(Duration::ZERO) => {
                ctx.error(
                    &window_path,
                    format!(
                        "{} cannot be used here: expected a duration > 0, e.g. \"1m\" (to turn \
                         rate limiting off, set `enabled: false`)",
                        shown(v)
                    ),
                );
                None
            }
            window => window,
        },
    };

    let key_by = match object.get("keyBy") {
        None => Some("ip"),
        Some(v) => expect_choice(
            ctx,
            &child(path, "keyBy"),
            v,
            &["ip", "header"],
            "a rate-limit key",
        ),
    };
    let header_path = child(path, "headerName");
    let header_name = match object.get("headerName") {
        None => None,
        Some(v) => {
            let name = expect_str(ctx, &header_path, v, "a header name")
                .and_then(|name| ctx.report(&header_path, check_header_name(name).map(|()| name)));
            Some(name.map(str::to_ascii_lowercase))
        }
    };
    let key = match (key_by, header_name) {
        (Some("header"), Some(name)) => name.map(RateLimitKey::Header),
        (Some("header"), None) => {
            if required {
                ctx.error(
                    &header_path,
                    "required key missing: `keyBy: header` needs the name of the header whose \
                     value requests are counted by, e.g. x-api-key",
                );
            }
            None
        }
        (Some(_), Some(_)) => {
            ctx.error(
                &header_path,
                "only used with `keyBy: header` (with `keyBy: ip`, the default, requests are \
                 counted per client address)",
            );
            None
        }
        (Some(_), None) => Some(RateLimitKey::Ip),
        (None, _) => None,
    };

    let message_path = child(path, "errorMessage");
    let error_message = match object.get("errorMessage") {
        None => Some(None),
        Some(v) => expect_str(ctx, &message_path, v, "a string").and_then(|text| {
            if text.chars().any(|c| c.is_control() && c != '\t') {
                ctx.error(
                    &message_path,
                    format!(
                        "{} contains a line break or another control character; expected one \
                         line of text (a tab is allowed)",
                        quoted(text)
                    ),
                );
                None
            } else {
                Some(Some(text.to_string()))
            }
        }),
    };

    let rate_limit = RateLimit {
        max_requests: max_requests?,
        window: window?,
        key: key?,
        error_message: error_message?,
    };
    match enabled? {
        true => Some(Some(rate_limit)),
        false => Some(None),
    }
}

/// `basicAuth: {enabled, users, realm, excludePaths}`: `Some(None)` when disabled. The given
/// keys are checked either way; `users` is required only when enabled.
fn basic_auth(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Option<BasicAuth>> {
    let object = expect_object(ctx, path, value, "an object {users, realm, excludePaths}")?;
    check_keys(ctx, path, object, BASIC_AUTH_KEYS, &[]);
    let enabled = enabled(ctx, path, object);

    let users_path = child(path, "users");
    let mut plain = Vec::new();
    let users = match object.get("users") {
        None if enabled == Some(true) => {
            ctx.error(
                &users_path,
                "required key missing: a list of users, each {username, password}",
            );
            None
        }
        None => Some(Vec::new()),
        Some(v) => users(ctx, &users_path, v, &mut plain),
    };

    let realm_path = child(path, "realm");
    let realm = match object.get("realm") {
        None => Some(DEFAULT_REALM.to_string()),
        Some(v) => expect_str(ctx, &realm_path, v, "a string").and_then(|realm| {
            if realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
            {
                ctx.error(
                    &realm_path,
                    format!(
                        "{} cannot be used as a realm: it is sent as `WWW-Authenticate: Basic \
                         realm=\"…\"`, which cannot hold `\"`, `\\` or control characters",
                        quoted(realm)
                    ),
                );
                None
            } else {
                Some(realm.to_string())
            }
        }),
    };

    let exclude_paths = match object.get("excludePaths") {
        None => Some(Vec::new()),
        Some(v) => expect_string_list(ctx, &child(path, "excludePaths"), v, "path patterns")
            .and_then(|entries| check_entries(ctx, &entries, check_path_pattern)),
    };

    let basic_auth = BasicAuth {
        users: users?,
        realm: realm?,
        exclude_paths: exclude_paths?,
    };
    if !enabled? {
        return Some(None);
    }
    if !plain.is_empty() {
        let (which, them) = match plain.as_slice() {
            [one] => (format!("a plain-text password ({one})"), "it"),
            many => (
                format!("plain-text passwords ({})", many.join(", ")),
                "them",
            ),
        };
        ctx.warn(
            &users_path,
            format!(
                "{which}: kept as written in the config file, where anyone who can read the file \
                 can use {them}; a bcrypt hash ($2b$…, e.g. from `htpasswd -nbB user password`) \
                 or an argon2 PHC string ($argon2id$…) is safer"
            ),
        );
    }
    Some(Some(basic_auth))
}

/// `basicAuth.users`: a non-empty list of `{username, password}` with unique usernames. The
/// users whose password is plain text are added to `plain` (as `users[i]`).
fn users(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    plain: &mut Vec<String>,
) -> Option<Vec<BasicAuthUser>> {
    let Value::Array(items) = value else {
        ctx.error(
            path,
            format!(
                "expected a list of users ({{username, password}} objects), found {}",
                describe(value)
            ),
        );
        return None;
    };
    if items.is_empty() {
        ctx.error(
            path,
            "an empty list; give at least one user {username, password} (or set \
             `enabled: false`)",
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ok = true;
    for (index, entry) in items.iter().enumerate() {
        let user_path = item(path, index);
        let Some(object) = expect_object(ctx, &user_path, entry, "a user {username, password}")
        else {
            ok = false;
            continue;
        };
        check_keys(ctx, &user_path, object, USER_KEYS, &[]);

        let name_path = child(&user_path, "username");
        let username = match object.get("username") {
            None => {
                ctx.error(&name_path, "required key missing: the user's name");
                None
            }
            Some(v) => expect_text(ctx, &name_path, v, "a username")
                .and_then(|name| ctx.report(&name_path, check_username(name))),
        };
        let username = username.filter(|name| match seen.get(name) {
            Some(first) => {
                ctx.error(
                    &name_path,
                    format!(
                        "duplicate username {} (already used by users[{first}])",
                        quoted(name)
                    ),
                );
                false
            }
            None => {
                seen.insert(name.clone(), index);
                true
            }
        });

        let password_path = child(&user_path, "password");
        let password = match object.get("password") {
            None => {
                ctx.error(
                    &password_path,
                    "required key missing: the password, or a bcrypt or argon2 hash of it",
                );
                None
            }
            Some(v) => password(ctx, &password_path, v),
        };
        if let Some(Password::Plain(_)) = password {
            plain.push(format!("users[{index}]"));
        }
        match (username, password) {
            (Some(username), Some(password)) => out.push(BasicAuthUser { username, password }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// A username: no `:` (Basic credentials are `username:password`) and no control characters.
fn check_username(name: &str) -> Result<String, String> {
    if name.contains(':') {
        return Err(format!(
            "{} cannot be a username: Basic authentication separates the username from the \
             password with `:`",
            quoted(name)
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{} contains control characters", quoted(name)));
    }
    Ok(name.to_string())
}

/// A password: a bcrypt hash, an argon2 PHC string, or plain text. Messages never show the
/// password or the hash.
fn password(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Password> {
    let Value::String(text) = value else {
        ctx.error(
            path,
            format!(
                "expected a string (the password, or a bcrypt or argon2 hash of it; quote a \
                 password that would otherwise be read as a number), found {}",
                kind(value)
            ),
        );
        return None;
    };
    let checked = if text.is_empty() {
        Err("an empty password; expected the password, or a bcrypt or argon2 hash of it".into())
    } else if BCRYPT_PREFIXES.iter().any(|p| text.starts_with(p)) {
        check_bcrypt(text).map(|()| Password::Bcrypt(text.clone()))
    } else if ARGON2_PREFIXES.iter().any(|p| text.starts_with(p)) {
        check_argon2(text).map(|()| Password::Argon2(text.clone()))
    } else if let Some(prefix) = OTHER_HASH_PREFIXES.iter().find(|p| text.starts_with(*p)) {
        Err(format!(
            "looks like a password hash that smartproxy cannot check (it starts with {}); \
             expected a bcrypt hash ({}), an argon2 PHC string ({}) or a plain-text password",
            quoted(prefix),
            BCRYPT_PREFIXES.join(", "),
            ARGON2_PREFIXES.join(", ")
        ))
    } else {
        Ok(Password::Plain(text.clone()))
    };
    ctx.report(path, checked)
}

/// What kind of value a password field holds, without showing it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A bcrypt hash that the bcrypt crate can parse, with a cost it accepts.
fn check_bcrypt(text: &str) -> Result<(), String> {
    match bcrypt::HashParts::from_str(text) {
        Ok(parts) if BCRYPT_COSTS.contains(&parts.get_cost()) => Ok(()),
        Ok(parts) => Err(format!(
            "not a valid bcrypt hash: its cost is {}, and bcrypt allows {} to {}",
            parts.get_cost(),
            BCRYPT_COSTS.start(),
            BCRYPT_COSTS.end()
        )),
        Err(bcrypt::BcryptError::InvalidHash(reason)) => {
            Err(format!("not a valid bcrypt hash: {reason}"))
        }
        Err(_) => Err("not a valid bcrypt hash".to_string()),
    }
}

/// An argon2 PHC string whose algorithm, version and parameters argon2 accepts, with a salt
/// and a hash.
fn check_argon2(text: &str) -> Result<(), String> {
    let bad = |reason: &dyn std::fmt::Display| format!("not a valid argon2 PHC string: {reason}");
    let hash = argon2::PasswordHash::new(text).map_err(|e| bad(&e))?;
    argon2::Algorithm::try_from(hash.algorithm.as_str()).map_err(|e| bad(&e))?;
    if let Some(version) = hash.version {
        argon2::Version::try_from(version)
            .map_err(|_| bad(&"the version (v=) is neither 16 nor 19"))?;
    }
    argon2::Params::try_from(&hash).map_err(|e| bad(&e))?;
    if hash.salt.is_none() {
        return Err(bad(&"it has no salt"));
    }
    if hash.hash.is_none() {
        return Err(bad(&"it has no hash after the salt"));
    }
    Ok(())
}

/// `jwtAuth`: checked for shape; refused unless `enabled: false`. `false` after an error.
fn jwt_auth(ctx: &mut Ctx, path: &str, value: &Value) -> bool {
    let Some(object) = expect_object(ctx, path, value, "an object") else {
        return false;
    };
    check_keys(ctx, path, object, JWT_AUTH_KEYS, &[]);
    match enabled(ctx, path, object) {
        Some(false) => true,
        Some(true) => {
            ctx.unsupported(path, WITH_JWT_AUTH);
            false
        }
        None => false,
    }
}
