//! Tests of the validator, by the part of the config they exercise. Most go through
//! `from_value` and compare the exact messages, since those are what an operator reads.

mod action;
mod docs;
mod fuzz;
mod globals;
mod headers;
mod loading;
mod routes;
mod security;
mod target;
mod tls;
mod tree;

use serde_json::{Value, json};

use super::{Config, Warning, from_value};

fn accept(value: Value) -> (Config, Vec<Warning>) {
    match from_value(&value) {
        Ok(result) => result,
        Err(errors) => panic!("config refused:\n{errors}\nconfig: {value}"),
    }
}

fn refuse(value: Value) -> Vec<String> {
    match from_value(&value) {
        Ok((config, _)) => panic!("config accepted: {config:?}\nconfig: {value}"),
        Err(errors) => {
            assert!(!errors.0.is_empty());
            errors.0.iter().map(ToString::to_string).collect()
        }
    }
}

/// A config with one route.
fn with_route(route: Value) -> Value {
    json!({ "routes": [route] })
}

fn forward_route() -> Value {
    json!({
        "match": { "ports": 8080 },
        "action": { "type": "forward", "targets": [{ "host": "127.0.0.1", "port": 3000 }] }
    })
}

/// A config with `forward_route()`, its `pointer` (a JSON pointer) set to `value`.
fn route_with(pointer: &str, value: Value) -> Value {
    let mut route = forward_route();
    set(&mut route, pointer, value);
    with_route(route)
}

fn set(root: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let parent = root.pointer_mut(parent).expect("parent exists");
    match parent {
        Value::Object(object) => {
            object.insert(key.to_string(), value);
        }
        Value::Array(items) => {
            let index: usize = key.parse().expect("index");
            items[index] = value;
        }
        _ => panic!("cannot set {pointer}"),
    }
}

fn remove(root: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    if let Some(Value::Object(object)) = root.pointer_mut(parent) {
        object.remove(key);
    }
}

fn assert_single(errors: &[String], expected: &str) {
    assert_eq!(errors, [expected.to_string()], "unexpected errors");
}

fn assert_has(errors: &[String], needle: &str) {
    assert!(
        errors.iter().any(|e| e.contains(needle)),
        "no error contains {needle:?}: {errors:#?}"
    );
}
