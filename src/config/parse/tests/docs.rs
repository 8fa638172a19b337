//! docs/CONFIG.md stays true: its examples load, and it names every key.

use crate::config::parse::action::{
    ACTION_KEYS, HEALTH_CHECK_KEYS, LOAD_BALANCING_KEYS, REDIRECT_KEYS, RESPOND_KEYS, TLS_KEYS,
    WEBSOCKET_KEYS,
};
use crate::config::parse::from_text;
use crate::config::parse::globals::{GLOBAL_KEYS, IGNORED_GLOBALS, PROXY_PROTOCOL_KEYS};
use crate::config::parse::routes::{MATCH_KEYS, ROUTE_KEYS};
use crate::config::parse::security::{
    BASIC_AUTH_KEYS, JWT_AUTH_KEYS, RATE_LIMIT_KEYS, SECURITY_KEYS, USER_KEYS,
};
use crate::config::parse::target::TARGET_KEYS;
use crate::config::{ActionKind, Format, Password};

const CONFIG_MD: &str = include_str!("../../../../docs/CONFIG.md");

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
    assert_eq!(yaml.routes.len(), 5);
    assert!(!yaml.routes[4].enabled);
    assert_eq!(
        yaml.routes[3].action.kind,
        ActionKind::Redirect {
            to: "https://{domain}{path}{query}".into(),
            status: 301
        }
    );
    assert!(matches!(
        yaml.routes[4].action.kind,
        ActionKind::Respond { status: 503, .. }
    ));
}

#[test]
fn the_answering_routes_example_is_valid() {
    let (config, warnings) = from_text(doc_example("answers"), Format::Yaml)
        .unwrap_or_else(|e| panic!("answers example: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let kinds: Vec<&ActionKind> = config.routes.iter().map(|r| &r.action.kind).collect();
    assert_eq!(
        kinds,
        [
            &ActionKind::Redirect {
                to: "https://{domain}{path}{query}".into(),
                status: 301
            },
            &ActionKind::Respond {
                status: 503,
                body: "Down for maintenance, back soon.\n".into(),
                headers: vec![
                    ("content-type".into(), "text/plain; charset=utf-8".into()),
                    ("retry-after".into(), "600".into()),
                ],
            },
            &ActionKind::Block,
        ]
    );
    assert_eq!(config.routes[2].matcher.path.as_deref(), Some("/admin/*"));
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
        .chain(WEBSOCKET_KEYS)
        .chain(REDIRECT_KEYS)
        .chain(RESPOND_KEYS)
        .chain(LOAD_BALANCING_KEYS)
        .chain(HEALTH_CHECK_KEYS)
        .chain(SECURITY_KEYS)
        .chain(RATE_LIMIT_KEYS)
        .chain(BASIC_AUTH_KEYS)
        .chain(USER_KEYS)
        .chain(JWT_AUTH_KEYS)
        .chain(PROXY_PROTOCOL_KEYS);
    for key in keys {
        assert!(
            CONFIG_MD.contains(&format!("`{key}`")),
            "docs/CONFIG.md does not mention `{key}`"
        );
    }
}

#[test]
fn the_route_security_example_is_valid() {
    let (config, warnings) = from_text(doc_example("security"), Format::Yaml)
        .unwrap_or_else(|e| panic!("security example: {e}"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let security = &config.routes[0].security;
    assert_eq!(security.admission.ip_allow_list.len(), 2);
    assert_eq!(security.admission.max_connections, 500);
    assert_eq!(security.admission.max_connections_per_ip, 20);
    assert_eq!(security.admission.connection_rate_limit_per_minute, 120);
    let rate_limit = security.rate_limit.as_ref().expect("rateLimit");
    assert_eq!(
        (rate_limit.max_requests, rate_limit.window),
        (100, std::time::Duration::from_secs(60))
    );
    let basic_auth = security.basic_auth.as_ref().expect("basicAuth");
    assert_eq!(basic_auth.realm, "Admin");
    assert_eq!(basic_auth.exclude_paths, ["/health"]);
    // The hash shown is what its comment says.
    let Password::Bcrypt(hash) = &basic_auth.users[0].password else {
        panic!("a bcrypt hash: {:?}", basic_auth.users[0].password);
    };
    assert!(bcrypt::verify("change-me", hash).expect("a valid hash"));
}
