//! Route-level `security` (`parse/security.rs`).

use std::time::Duration;

use super::*;
use crate::config::{
    Admission, BasicAuth, BasicAuthUser, IpPattern, Password, RateLimit, RateLimitKey,
    RouteSecurity,
};
use crate::tls::certs::tests::TestCa;

const S: &str = "routes[0].security";

fn security_of(security: Value) -> (RouteSecurity, Vec<String>) {
    let (config, warnings) = accept(route_with("/security", security));
    (
        config.routes[0].security.clone(),
        warnings.iter().map(ToString::to_string).collect(),
    )
}

fn security_errors(security: Value) -> Vec<String> {
    refuse(route_with("/security", security))
}

/// A bcrypt hash of `password` at the lowest cost, made by the bcrypt crate.
fn bcrypt_hash(password: &str) -> String {
    let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
    assert!(bcrypt::verify(password, &hash).expect("verifiable"));
    hash
}

/// An argon2id PHC string of `password` with small parameters, made by the argon2 crate.
fn argon2_hash(password: &str) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
    let params = Params::new(8, 1, 1, None).expect("params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon2
        .hash_password(password.as_bytes())
        .expect("argon2 hash");
    assert!(argon2.verify_password(password.as_bytes(), &hash).is_ok());
    hash.to_string()
}

// --- admission -----------------------------------------------------------------------

#[test]
fn route_admission() {
    let (security, warnings) = security_of(json!({
        "ipAllowList": ["10.0.0.0/8", "192.168.1.*", "::ffff:172.16.0.1"],
        "ipBlockList": ["10.0.0.7"],
        "maxConnections": 50,
        "maxConnectionsPerIP": 5,
        "connectionRateLimitPerMinute": 60,
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    let net = |text: &str| IpPattern::Net(text.parse().expect("net"));
    assert_eq!(
        security,
        RouteSecurity {
            admission: Admission {
                ip_allow_list: vec![
                    net("10.0.0.0/8"),
                    IpPattern::Glob("192.168.1.*".into()),
                    net("172.16.0.1/32"),
                ],
                ip_block_list: vec![net("10.0.0.7/32")],
                max_connections: 50,
                max_connections_per_ip: 5,
                connection_rate_limit_per_minute: 60,
            },
            rate_limit: None,
            basic_auth: None,
        }
    );
    // Values that change nothing, and disabled options.
    let (security, warnings) = security_of(json!({
        "ipAllowList": [], "ipBlockList": [], "maxConnections": 0, "maxConnectionsPerIP": 0,
        "connectionRateLimitPerMinute": 0,
        "rateLimit": { "enabled": false, "maxRequests": 10 },
        "basicAuth": { "enabled": false },
        "jwtAuth": { "enabled": false, "secret": "x" }
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(security, RouteSecurity::default());
    // Connection limits apply on every path, TLS passthrough included.
    let mut route = forward_route();
    set(&mut route, "/action/tls", json!({ "mode": "passthrough" }));
    set(
        &mut route,
        "/security",
        json!({ "ipBlockList": ["10.0.0.0/8"], "maxConnectionsPerIP": 3 }),
    );
    let (config, _) = accept(with_route(route));
    assert_eq!(
        config.routes[0].security.admission.max_connections_per_ip,
        3
    );
}

#[test]
fn route_security_shape_errors() {
    for (security, expected) in [
        (
            json!({ "maxConnectionsPerIP": -1 }),
            vec![format!(
                "{S}.maxConnectionsPerIP: expected a whole number ≥ 0 (0 = unlimited), found -1"
            )],
        ),
        (
            json!({ "maxConnections": "10", "connectionRateLimitPerMinute": 1.5 }),
            vec![
                format!(
                    "{S}.maxConnections: expected a whole number ≥ 0 (0 = unlimited), found the \
                     string \"10\""
                ),
                format!(
                    "{S}.connectionRateLimitPerMinute: expected a whole number ≥ 0 (0 = \
                     unlimited), found 1.5"
                ),
            ],
        ),
        (
            json!({ "ipAllowList": "10.0.0.0/8", "ipBlockList": ["10.0.0.0/33"] }),
            vec![
                format!(
                    "{S}.ipAllowList: expected a list of IP addresses, CIDRs or globs, found the \
                     string \"10.0.0.0/8\""
                ),
                format!(
                    "{S}.ipBlockList[0]: \"10.0.0.0/33\" is not a CIDR (e.g. 10.0.0.0/8), an IP \
                     address (e.g. 192.168.1.10) or a glob (e.g. 192.168.1.*)"
                ),
            ],
        ),
        (
            json!({ "jwtAuth": { "enabled": false, "secrett": "x" } }),
            vec![format!(
                "{S}.jwtAuth.secrett: unknown key; did you mean `secret`?"
            )],
        ),
        (
            json!({ "jwtAuth": { "secret": "x" } }),
            vec![format!(
                "{S}.jwtAuth: not supported yet by this version (arrives with JWT authentication)"
            )],
        ),
        (
            json!({ "firewall": true }),
            vec![format!(
                "{S}.firewall: unknown key; expected one of: ipAllowList, ipBlockList, \
                 maxConnections, maxConnectionsPerIP, connectionRateLimitPerMinute, rateLimit, \
                 basicAuth, jwtAuth"
            )],
        ),
        (
            json!({ "connectionRateLimit": 10 }),
            vec![format!(
                "{S}.connectionRateLimit: unknown key; expected one of: ipAllowList, \
                 ipBlockList, maxConnections, maxConnectionsPerIP, \
                 connectionRateLimitPerMinute, rateLimit, basicAuth, jwtAuth"
            )],
        ),
        (
            json!([]),
            vec![format!("{S}: expected an object, found a list")],
        ),
        (
            json!({ "rateLimit": true, "basicAuth": [] }),
            vec![
                format!(
                    "{S}.rateLimit: expected an object {{maxRequests, window, keyBy}}, found true"
                ),
                format!(
                    "{S}.basicAuth: expected an object {{users, realm, excludePaths}}, found a \
                     list"
                ),
            ],
        ),
    ] {
        assert_eq!(security_errors(security.clone()), expected, "{security}");
    }
}

// --- rateLimit -----------------------------------------------------------------------

#[test]
fn rate_limit() {
    let (security, warnings) = security_of(json!({
        "rateLimit": { "maxRequests": 100, "window": "1m" }
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        security.rate_limit,
        Some(RateLimit {
            max_requests: 100,
            window: Duration::from_secs(60),
            key: RateLimitKey::Ip,
            error_message: None,
        })
    );
    let (security, _) = security_of(json!({
        "rateLimit": {
            "enabled": true,
            "maxRequests": 5,
            "window": 1500,
            "keyBy": "header",
            "headerName": "X-API-Key",
            "errorMessage": "Slow down.\tTry again in a minute."
        }
    }));
    assert_eq!(
        security.rate_limit,
        Some(RateLimit {
            max_requests: 5,
            window: Duration::from_millis(1500),
            key: RateLimitKey::Header("x-api-key".into()),
            error_message: Some("Slow down.\tTry again in a minute.".into()),
        })
    );
    let (security, _) = security_of(json!({
        "rateLimit": { "maxRequests": 1, "window": "10s", "keyBy": "ip" }
    }));
    assert_eq!(security.rate_limit.map(|r| r.key), Some(RateLimitKey::Ip));
}

#[test]
fn rate_limit_errors() {
    let r = format!("{S}.rateLimit");
    for (rate_limit, expected) in [
        (
            json!({ "maxRequests": 0, "window": "1m" }),
            vec![format!(
                "{r}.maxRequests: 0 would refuse every request; expected a whole number ≥ 1 (to \
                 turn rate limiting off, set `enabled: false`)"
            )],
        ),
        (
            json!({ "maxRequests": "100", "window": "1m" }),
            vec![format!(
                "{r}.maxRequests: expected a whole number ≥ 1, found the string \"100\""
            )],
        ),
        (
            json!({ "maxRequests": 100 }),
            vec![format!(
                "{r}.window: required key missing: the window requests are counted in, a \
                 duration such as \"1m\" or 60000 (milliseconds)"
            )],
        ),
        (
            json!({}),
            vec![
                format!(
                    "{r}.maxRequests: required key missing: how many requests one client may \
                     make per window, e.g. 100"
                ),
                format!(
                    "{r}.window: required key missing: the window requests are counted in, a \
                     duration such as \"1m\" or 60000 (milliseconds)"
                ),
            ],
        ),
        (
            json!({ "maxRequests": 10, "window": "0s" }),
            vec![format!(
                "{r}.window: \"0s\" cannot be used here: expected a duration > 0, e.g. \"1m\" \
                 (to turn rate limiting off, set `enabled: false`)"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1 minute" }),
            vec![format!(
                "{r}.window: \"1 minute\" has an unknown unit `minute`; expected a duration: a \
                 whole number of milliseconds (e.g. 30000) or a string with a unit ms, s, m, h \
                 or d (e.g. \"250ms\", \"1.5s\", \"15m\", \"4h\", \"7d\"); 0 turns the limit off"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "keyBy": "header" }),
            vec![format!(
                "{r}.headerName: required key missing: `keyBy: header` needs the name of the \
                 header whose value requests are counted by, e.g. x-api-key"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "headerName": "x-api-key" }),
            vec![format!(
                "{r}.headerName: only used with `keyBy: header` (with `keyBy: ip`, the default, \
                 requests are counted per client address)"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "keyBy": "ip", "headerName": "x" }),
            vec![format!(
                "{r}.headerName: only used with `keyBy: header` (with `keyBy: ip`, the default, \
                 requests are counted per client address)"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "keyBy": "header", "headerName": "x key" }),
            vec![format!(
                "{r}.headerName: \"x key\" is not a header name; expected letters, digits and \
                 !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "keyBy": "header", "headerName": 7 }),
            vec![format!("{r}.headerName: expected a header name, found 7")],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "keyBy": "user" }),
            vec![format!(
                "{r}.keyBy: \"user\" is not a rate-limit key; expected ip or header"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "errorMessage": "slow\ndown" }),
            vec![format!(
                "{r}.errorMessage: \"slow\\ndown\" contains a line break or another control \
                 character; expected one line of text (a tab is allowed)"
            )],
        ),
        (
            json!({ "maxRequests": 10, "window": "1m", "errorMessage": 429 }),
            vec![format!("{r}.errorMessage: expected a string, found 429")],
        ),
        (
            json!({ "maxRequest": 10, "window": "1m", "enabled": "yes" }),
            vec![
                format!("{r}.maxRequest: unknown key; did you mean `maxRequests`?"),
                format!("{r}.enabled: expected true or false, found the string \"yes\""),
            ],
        ),
        (
            // Disabled: the given keys are still checked.
            json!({ "enabled": false, "maxRequests": 0 }),
            vec![format!(
                "{r}.maxRequests: 0 would refuse every request; expected a whole number ≥ 1 (to \
                 turn rate limiting off, set `enabled: false`)"
            )],
        ),
    ] {
        assert_eq!(
            security_errors(json!({ "rateLimit": rate_limit.clone() })),
            expected,
            "{rate_limit}"
        );
    }
}

// --- basicAuth -----------------------------------------------------------------------

#[test]
fn basic_auth_with_hashes() {
    let bcrypt = bcrypt_hash("correct horse");
    let argon2 = argon2_hash("battery staple");
    // Every bcrypt prefix is read (the crate writes $2b$; $2a$ and $2y$ hashes look the same).
    let bcrypt_2y = format!("$2y${}", &bcrypt[4..]);
    let (security, warnings) = security_of(json!({
        "basicAuth": {
            "users": [
                { "username": "alice", "password": bcrypt },
                { "username": "bob", "password": argon2 },
                { "username": "carol", "password": bcrypt_2y },
            ],
            "realm": "Staff only",
            "excludePaths": ["/health", "/public/*", "*.css"]
        }
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        security.basic_auth,
        Some(BasicAuth {
            users: vec![
                BasicAuthUser {
                    username: "alice".into(),
                    password: Password::Bcrypt(bcrypt.clone()),
                },
                BasicAuthUser {
                    username: "bob".into(),
                    password: Password::Argon2(argon2.clone()),
                },
                BasicAuthUser {
                    username: "carol".into(),
                    password: Password::Bcrypt(bcrypt_2y.clone()),
                },
            ],
            realm: "Staff only".into(),
            exclude_paths: vec!["/health".into(), "/public/*".into(), "*.css".into()],
        })
    );
    assert!(bcrypt.starts_with("$2b$04$"), "{bcrypt}");
    assert!(argon2.starts_with("$argon2id$v=19$"), "{argon2}");
}

#[test]
fn basic_auth_plain_passwords_warn_once_per_route() {
    let (security, warnings) = security_of(json!({
        "basicAuth": {
            "users": [
                { "username": "alice", "password": "s3cret" },
                { "username": "bob", "password": bcrypt_hash("x") },
                { "username": "carol", "password": "hunter2" },
            ]
        }
    }));
    let basic_auth = security.basic_auth.expect("enabled");
    assert_eq!(basic_auth.realm, "Restricted");
    assert!(basic_auth.exclude_paths.is_empty());
    assert_eq!(
        basic_auth.users[0].password,
        Password::Plain("s3cret".into())
    );
    assert_eq!(
        basic_auth.users[2].password,
        Password::Plain("hunter2".into())
    );
    assert_eq!(
        warnings,
        [format!(
            "{S}.basicAuth.users: plain-text passwords (users[0], users[2]): kept as written in \
             the config file, where anyone who can read the file can use them; a bcrypt hash \
             ($2b$…, e.g. from `htpasswd -nbB user password`) or an argon2 PHC string \
             ($argon2id$…) is safer"
        )]
    );
    let (_, warnings) = security_of(json!({
        "basicAuth": { "users": [{ "username": "alice", "password": "s3cret" }] }
    }));
    assert_eq!(
        warnings,
        [format!(
            "{S}.basicAuth.users: a plain-text password (users[0]): kept as written in the \
             config file, where anyone who can read the file can use it; a bcrypt hash ($2b$…, \
             e.g. from `htpasswd -nbB user password`) or an argon2 PHC string ($argon2id$…) is \
             safer"
        )]
    );
    // None of the warnings shows a password.
    assert!(!warnings.iter().any(|w| w.contains("s3cret")));
}

#[test]
fn basic_auth_errors() {
    let b = format!("{S}.basicAuth");
    let user =
        |password: Value| json!({ "users": [{ "username": "alice", "password": password }] });
    for (basic_auth, expected) in [
        (
            json!({}),
            vec![format!(
                "{b}.users: required key missing: a list of users, each {{username, password}}"
            )],
        ),
        (
            json!({ "users": [] }),
            vec![format!(
                "{b}.users: an empty list; give at least one user {{username, password}} (or \
                 set `enabled: false`)"
            )],
        ),
        (
            json!({ "users": { "alice": "x" } }),
            vec![format!(
                "{b}.users: expected a list of users ({{username, password}} objects), found an \
                 object"
            )],
        ),
        (
            json!({ "users": ["alice:x"] }),
            vec![format!(
                "{b}.users[0]: expected a user {{username, password}}, found the string \
                 \"alice:x\""
            )],
        ),
        (
            json!({ "users": [{ "user": "alice", "password": "x" }] }),
            vec![
                format!("{b}.users[0].user: unknown key; expected one of: username, password"),
                format!("{b}.users[0].username: required key missing: the user's name"),
            ],
        ),
        (
            json!({ "users": [{ "username": "alice" }] }),
            vec![format!(
                "{b}.users[0].password: required key missing: the password, or a bcrypt or \
                 argon2 hash of it"
            )],
        ),
        (
            json!({ "users": [
                { "username": "alice", "password": "a" },
                { "username": "bob", "password": "b" },
                { "username": "alice", "password": "c" },
            ] }),
            vec![format!(
                "{b}.users[2].username: duplicate username \"alice\" (already used by users[0])"
            )],
        ),
        (
            json!({ "users": [
                { "username": "", "password": "a" },
                { "username": "a:b", "password": "b" },
                { "username": "a\u{7}", "password": "c" },
            ] }),
            vec![
                format!("{b}.users[0].username: expected a username, found an empty string"),
                format!(
                    "{b}.users[1].username: \"a:b\" cannot be a username: Basic authentication \
                     separates the username from the password with `:`"
                ),
                format!("{b}.users[2].username: \"a\\u{{7}}\" contains control characters"),
            ],
        ),
        (
            user(json!("")),
            vec![format!(
                "{b}.users[0].password: an empty password; expected the password, or a bcrypt or \
                 argon2 hash of it"
            )],
        ),
        (
            user(json!(123456)),
            vec![format!(
                "{b}.users[0].password: expected a string (the password, or a bcrypt or argon2 \
                 hash of it; quote a password that would otherwise be read as a number), found a \
                 number"
            )],
        ),
        (
            user(json!("$apr1$abc$0123456789abcdef")),
            vec![format!(
                "{b}.users[0].password: looks like a password hash that smartproxy cannot check \
                 (it starts with \"$apr1$\"); expected a bcrypt hash ($2a$, $2b$, $2y$), an \
                 argon2 PHC string ($argon2id$, $argon2i$, $argon2d$) or a plain-text password"
            )],
        ),
        (
            json!({ "users": [{ "username": "alice", "password": "x" }], "realm": "say \"hi\"" }),
            vec![format!(
                "{b}.realm: \"say \\\"hi\\\"\" cannot be used as a realm: it is sent as \
                 `WWW-Authenticate: Basic realm=\"…\"`, which cannot hold `\"`, `\\` or control \
                 characters"
            )],
        ),
        (
            json!({ "users": [{ "username": "alice", "password": "x" }], "realm": 5 }),
            vec![format!("{b}.realm: expected a string, found 5")],
        ),
        (
            json!({
                "users": [{ "username": "alice", "password": "x" }],
                "excludePaths": ["/health", "health", "/a b", 3]
            }),
            vec![format!(
                "{b}.excludePaths[3]: expected path patterns, found 3"
            )],
        ),
        (
            json!({
                "users": [{ "username": "alice", "password": "x" }],
                "excludePaths": ["/health", "health", "/a b"]
            }),
            vec![
                format!(
                    "{b}.excludePaths[1]: \"health\" is not a path pattern; expected one \
                     starting with / or * (e.g. /api/*)"
                ),
                format!(
                    "{b}.excludePaths[2]: \"/a b\" contains spaces or control characters, which \
                     never appear in a request path (write them percent-encoded, as they \
                     arrive: %20)"
                ),
            ],
        ),
        (
            json!({ "users": [{ "username": "alice", "password": "x" }], "excludePaths": "/x" }),
            vec![format!(
                "{b}.excludePaths: expected a list of path patterns, found the string \"/x\""
            )],
        ),
        (
            json!({ "enabled": false, "users": [], "realm": "a\\b" }),
            vec![
                format!(
                    "{b}.users: an empty list; give at least one user {{username, password}} (or \
                     set `enabled: false`)"
                ),
                format!(
                    "{b}.realm: \"a\\\\b\" cannot be used as a realm: it is sent as \
                     `WWW-Authenticate: Basic realm=\"…\"`, which cannot hold `\"`, `\\` or \
                     control characters"
                ),
            ],
        ),
    ] {
        assert_eq!(
            security_errors(json!({ "basicAuth": basic_auth.clone() })),
            expected,
            "{basic_auth}"
        );
    }
}

#[test]
fn malformed_hashes_are_errors_that_do_not_show_them() {
    let p = format!("{S}.basicAuth.users[0].password");
    let bcrypt = bcrypt_hash("pw");
    let argon2 = argon2_hash("pw");
    let salt_and_hash = &bcrypt[7..];
    for (password, expected) in [
        (
            bcrypt[..59].to_string(),
            "not a valid bcrypt hash: the hash format is malformed; expected 60 ASCII bytes",
        ),
        (
            format!(
                "$2b$04${}",
                salt_and_hash.replace(|c: char| c.is_ascii_alphanumeric(), "!")
            ),
            "not a valid bcrypt hash: the salt part is not valid base64",
        ),
        (
            format!("$2b$xx${salt_and_hash}"),
            "not a valid bcrypt hash: the cost value is not a number",
        ),
        (
            format!("$2b$03${salt_and_hash}"),
            "not a valid bcrypt hash: its cost is 3, and bcrypt allows 4 to 31",
        ),
        (
            format!("$2a$32${salt_and_hash}"),
            "not a valid bcrypt hash: its cost is 32, and bcrypt allows 4 to 31",
        ),
        (
            "$argon2id$".to_string(),
            "not a valid argon2 PHC string: salt too short (minimum 8 bytes)",
        ),
        (
            "$argon2id$v=19$m=8,t=1,p=1".to_string(),
            "not a valid argon2 PHC string: it has no salt",
        ),
        (
            argon2.replace("m=8", "m=1"),
            "not a valid argon2 PHC string: invalid parameter: \"m\"",
        ),
        (
            argon2.replace("m=8", "mem=8"),
            "not a valid argon2 PHC string: invalid parameters",
        ),
        (
            argon2.replace("v=19", "v=18"),
            "not a valid argon2 PHC string: the version (v=) is neither 16 nor 19",
        ),
        (
            argon2.rsplit_once('$').expect("hash part").0.to_string(),
            "not a valid argon2 PHC string: it has no hash after the salt",
        ),
        (
            format!("{argon2}$extra"),
            "not a valid argon2 PHC string: password hash has unexpected trailing characters",
        ),
        (
            {
                let fields: Vec<&str> = argon2.split('$').collect();
                format!("$argon2i$v=19${}$!!!!!!!!!!!!$", fields[3]) + fields[5]
            },
            "not a valid argon2 PHC string: invalid Base64 encoding",
        ),
    ] {
        let errors = security_errors(json!({
            "basicAuth": { "users": [{ "username": "alice", "password": password.clone() }] }
        }));
        assert_eq!(errors, [format!("{p}: {expected}")], "{password}");
        assert!(!errors[0].contains(&password), "{errors:?}");
    }
    // The other argon2 variants are read too.
    for variant in ["$argon2i$", "$argon2d$"] {
        let other = argon2.replace("$argon2id$", variant);
        let (security, _) = security_of(json!({
            "basicAuth": { "users": [{ "username": "alice", "password": other.clone() }] }
        }));
        assert_eq!(
            security.basic_auth.expect("enabled").users[0].password,
            Password::Argon2(other)
        );
    }
}

// --- HTTP only -----------------------------------------------------------------------

#[test]
fn request_rules_need_http_the_proxy_can_see() {
    let passthrough = "the proxy cannot see inside TLS it does not terminate (tls.mode: \
                       passthrough)";
    let security = json!({
        "maxConnections": 10,
        "rateLimit": { "maxRequests": 10, "window": "1m" },
        "basicAuth": { "users": [{ "username": "alice", "password": bcrypt_hash("pw") }] }
    });
    let mut route = forward_route();
    set(&mut route, "/action/tls", json!({ "mode": "passthrough" }));
    set(&mut route, "/security", security.clone());
    assert_eq!(
        refuse(with_route(route.clone())),
        [
            format!("{S}.rateLimit: rate limiting needs the HTTP request, but {passthrough}"),
            format!(
                "{S}.basicAuth: basic authentication needs the HTTP request, but {passthrough}"
            ),
        ]
    );
    // Disabled, they change nothing and are accepted.
    set(
        &mut route,
        "/security",
        json!({
            "maxConnections": 10,
            "rateLimit": { "enabled": false },
            "basicAuth": { "enabled": false }
        }),
    );
    accept(with_route(route));

    // `protocol: tcp` on terminated TLS relays bytes without reading them.
    let (cert, key) = TestCa::new().leaf(&["a.test"]);
    let mut route = forward_route();
    set(
        &mut route,
        "/action/tls",
        json!({ "mode": "terminate", "certificate": { "cert": cert, "key": key } }),
    );
    set(&mut route, "/action/protocol", json!("tcp"));
    set(
        &mut route,
        "/security",
        json!({ "rateLimit": { "maxRequests": 1, "window": 1000 } }),
    );
    assert_single(
        &refuse(with_route(route.clone())),
        &format!(
            "{S}.rateLimit: rate limiting needs the HTTP request, but a route with `protocol: \
             tcp` relays the bytes without reading them"
        ),
    );
    // Terminated and read as HTTP: accepted.
    set(&mut route, "/action/protocol", json!("http"));
    let (config, _) = accept(with_route(route));
    assert!(config.routes[0].security.rate_limit.is_some());

    // Plain HTTP routes and routes that answer themselves read the request.
    let (security, _) = security_of(security.clone());
    assert!(security.rate_limit.is_some() && security.basic_auth.is_some());
    let mut route = forward_route();
    set(
        &mut route,
        "/action",
        json!({ "type": "respond", "respond": { "body": "hi" } }),
    );
    set(&mut route, "/security", security_json_with_plain_user());
    let (config, _) = accept(with_route(route));
    assert!(config.routes[0].security.basic_auth.is_some());
}

fn security_json_with_plain_user() -> Value {
    json!({ "basicAuth": { "users": [{ "username": "alice", "password": "pw" }] } })
}
