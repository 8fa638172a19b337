//! Formats, files, syntax errors and how errors are shown (`parse/mod.rs`).

use super::*;
use std::time::Duration;

use crate::config::Format;
use crate::config::parse::{ConfigError, ConfigErrors, from_text, load_file};

// --- formats and files ---------------------------------------------------------------

const SAME_JSON: &str = r#"{
        "bindAddress": "0.0.0.0",
        "inactivityTimeout": "2h",
        "keepAliveTreatment": "standard",
        "maxPendingDataSize": "512KiB",
        "routes": [
            {
                "name": "web",
                "priority": 10,
                "match": {
                    "ports": [80, { "from": 8000, "to": 8002 }],
                    "clientIp": ["10.0.0.0/8"]
                },
                "action": {
                    "type": "forward",
                    "targets": [{ "host": ["10.0.0.5", "10.0.0.6"], "port": "preserve" }]
                }
            },
            {
                "match": { "ports": 5432 },
                "action": { "type": "forward", "target": { "host": "db.internal", "port": 5432 } }
            }
        ]
    }"#;

const SAME_YAML: &str = r#"
bindAddress: 0.0.0.0
inactivityTimeout: 2h
keepAliveTreatment: standard
maxPendingDataSize: 512KiB
routes:
  - name: web
    priority: 10
    match:
      ports: [80, {from: 8000, to: 8002}]
      clientIp: ["10.0.0.0/8"]
    action:
      type: forward
      targets:
        - host: [10.0.0.5, 10.0.0.6]
          port: preserve
  - match: {ports: 5432}
    action:
      type: forward
      target: {host: db.internal, port: 5432}
"#;

const SAME_TOML: &str = r#"
bindAddress = "0.0.0.0"
inactivityTimeout = "2h"
keepAliveTreatment = "standard"
maxPendingDataSize = "512KiB"

[[routes]]
name = "web"
priority = 10
match = { ports = [80, { from = 8000, to = 8002 }], clientIp = ["10.0.0.0/8"] }
action = { type = "forward", targets = [{ host = ["10.0.0.5", "10.0.0.6"], port = "preserve" }] }

[[routes]]
match = { ports = 5432 }
[routes.action]
type = "forward"
target = { host = "db.internal", port = 5432 }
"#;

#[test]
fn json_yaml_and_toml_give_the_same_config() {
    let (json_config, _) = from_text(SAME_JSON, Format::Json).expect("json");
    let (yaml_config, _) = from_text(SAME_YAML, Format::Yaml).expect("yaml");
    let (toml_config, _) = from_text(SAME_TOML, Format::Toml).expect("toml");
    assert_eq!(json_config, yaml_config);
    assert_eq!(json_config, toml_config);
    assert_eq!(json_config.routes.len(), 2);
    assert_eq!(
        json_config.routes[0].matcher.ports,
        vec![80, 8000, 8001, 8002]
    );
    assert_eq!(json_config.routes[1].name, "route-2");
    assert_eq!(json_config.inactivity_timeout, Duration::from_secs(7200));
    assert_eq!(json_config.max_pending_data_size, 512 * 1024);
}

#[test]
fn syntax_errors_are_one_error_with_line_and_column() {
    for (text, format, expected) in [
        (
            "{\"routes\": [],}",
            Format::Json,
            "JSON syntax error: trailing comma at line 1 column 15",
        ),
        ("routes: [\nb: 1\n", Format::Yaml, "YAML syntax error:"),
        (
            "routes = \n",
            Format::Toml,
            "TOML syntax error at line 1, column 10:",
        ),
    ] {
        let errors = from_text(text, format).expect_err("syntax error");
        assert_eq!(errors.0.len(), 1, "{errors}");
        let error = &errors.0[0];
        assert_eq!(error.path, "");
        assert!(
            error.message.starts_with(expected),
            "{:?} vs {expected:?}",
            error.message
        );
        assert!(error.message.contains("line"), "{}", error.message);
        assert!(
            !error.message.contains('\n'),
            "one line: {:?}",
            error.message
        );
    }
}

#[test]
fn duplicate_keys_are_syntax_errors_in_every_format() {
    let json = from_text("{\"routes\": [], \"routes\": []}", Format::Json).expect_err("dup");
    assert!(
        json.0[0].message.contains("duplicate key `routes`"),
        "{json}"
    );
    assert!(json.0[0].message.contains("line 1"), "{json}");
    let yaml = from_text("routes: []\nroutes: []\n", Format::Yaml).expect_err("dup");
    assert!(yaml.0[0].message.contains("duplicate"), "{yaml}");
    let toml = from_text("routes = []\nroutes = []\n", Format::Toml).expect_err("dup");
    assert!(toml.0[0].message.contains("duplicate"), "{toml}");
}

#[test]
fn a_byte_order_mark_is_ignored() {
    from_text("\u{feff}{\"routes\": []}", Format::Json).expect("BOM");
}

#[test]
fn loading_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        ("a.json", SAME_JSON),
        ("a.yaml", SAME_YAML),
        ("a.YML", SAME_YAML),
        ("a.toml", SAME_TOML),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let (config, _) = load_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config.routes.len(), 2);
    }

    let missing = dir.path().join("missing.yaml");
    let errors = load_file(&missing).expect_err("missing");
    let message = errors.to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("cannot read the config file"), "{message}");
    assert!(message.contains("os error"), "{message}");

    let odd = dir.path().join("proxy.conf");
    std::fs::write(&odd, "routes: []").expect("write");
    let message = load_file(&odd).expect_err("extension").to_string();
    assert!(message.contains(&odd.display().to_string()), "{message}");
    assert!(
        message.contains("expected .yaml, .yml, .json or .toml"),
        "{message}"
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{").expect("write");
    let message = load_file(&broken).expect_err("syntax").to_string();
    assert!(
        message.starts_with(&format!("{}: JSON syntax error", broken.display())),
        "{message}"
    );

    let invalid = dir.path().join("invalid.yaml");
    std::fs::write(&invalid, "routes: []\nnoDelay: 1\n").expect("write");
    assert_eq!(
        load_file(&invalid).expect_err("invalid").to_string(),
        "noDelay: expected true or false, found 1"
    );
}

#[test]
fn display_forms() {
    let with_path = ConfigError::new("routes[0].name", "bad");
    assert_eq!(with_path.to_string(), "routes[0].name: bad");
    assert_eq!(ConfigError::new("", "whole file").to_string(), "whole file");
    let errors = ConfigErrors(vec![with_path, ConfigError::new("", "two")]);
    assert_eq!(errors.to_string(), "routes[0].name: bad\ntwo");
    let warning = Warning {
        path: "socketTimeout".into(),
        message: "ignored".into(),
    };
    assert_eq!(warning.to_string(), "socketTimeout: ignored");
    let _: &dyn std::error::Error = &errors;
}

// --- the headline: all errors, with exact paths --------------------------------------

#[test]
fn all_errors_are_reported_with_their_paths() {
    let text = r#"
inactivityTimeout: 4 hours
routes:
  - name: one
    match: {ports: 80}
    action: {type: forward, targets: [{host: a, port: 1}]}
  - name: two
    match: {ports: [443, 0]}
    action: {type: forward, targets: [{host: b, port: 2}]}
  - name: three
    match: {ports: 8443}
    action:
      type: forward
      targets:
        - host: c
          port: 70000
"#;
    let errors = from_text(text, Format::Yaml).expect_err("three mistakes");
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "inactivityTimeout",
            "routes[1].match.ports[1]",
            "routes[2].action.targets[0].port"
        ]
    );
    assert_eq!(
        errors.0[2].to_string(),
        "routes[2].action.targets[0].port: 70000 is not a port (1-65535)"
    );
    assert_eq!(
        errors.0[1].to_string(),
        "routes[1].match.ports[1]: 0 is not a port (1-65535)"
    );
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), 3, "{shown}");
    assert!(shown.ends_with("routes[2].action.targets[0].port: 70000 is not a port (1-65535)"));
}
