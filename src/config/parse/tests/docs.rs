//! docs/CONFIG.md stays true: its examples load, and it names every key.

use crate::config::parse::action::{
    ACTION_KEYS, HEALTH_CHECK_KEYS, LOAD_BALANCING_KEYS, REDIRECT_KEYS, RESPOND_KEYS, TLS_KEYS,
    WEBSOCKET_KEYS,
};
use crate::config::parse::from_text;
use crate::config::parse::globals::{GLOBAL_KEYS, IGNORED_GLOBALS};
use crate::config::parse::routes::{MATCH_KEYS, ROUTE_KEYS};
use crate::config::parse::security::SECURITY_KEYS;
use crate::config::parse::target::TARGET_KEYS;
use crate::config::{ActionKind, Format};

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
        .chain(SECURITY_KEYS);
    for key in keys {
        assert!(
            CONFIG_MD.contains(&format!("`{key}`")),
            "docs/CONFIG.md does not mention `{key}`"
        );
    }
}
