//! docs/CONFIG.md stays true: its examples load, and it names every key.

use crate::config::Format;
use crate::config::parse::action::{ACTION_KEYS, TLS_KEYS};
use crate::config::parse::from_text;
use crate::config::parse::globals::{GLOBAL_KEYS, IGNORED_GLOBALS};
use crate::config::parse::routes::{MATCH_KEYS, ROUTE_KEYS};
use crate::config::parse::security::SECURITY_KEYS;
use crate::config::parse::target::TARGET_KEYS;

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
