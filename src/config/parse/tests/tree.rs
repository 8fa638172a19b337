//! Unknown keys and did-you-mean suggestions (`parse/tree.rs`).

use super::*;
use crate::config::parse::globals::GLOBAL_KEYS;
use crate::config::parse::tree::{edit_distance, suggest};

#[test]
fn unknown_keys_are_errors_with_suggestions() {
    assert_single(
        &refuse(json!({ "routes": [], "bindAdress": "127.0.0.1" })),
        "bindAdress: unknown key; did you mean `bindAddress`?",
    );
    assert_single(
        &refuse(json!({ "routes": [], "inactivity_timeout": "1h" })),
        "inactivity_timeout: unknown key; did you mean `inactivityTimeout`?",
    );
    assert_single(
        &refuse(json!({ "routes": [], "foo": 1 })),
        "foo: unknown key",
    );
    assert_eq!(
        refuse(json!({ "route": [] })),
        [
            "route: unknown key; did you mean `routes`?",
            "routes: required key missing: a list of routes (`routes: []` is valid)",
        ]
    );
    let mut route = forward_route();
    set(&mut route, "/prio", json!(1));
    assert_single(
        &refuse(with_route(route)),
        "routes[0].prio: unknown key; expected one of: name, priority, enabled, match, \
         action, security, description, tags",
    );
    assert_single(
        &refuse(route_with("/match/port", json!(80))),
        "routes[0].match.port: unknown key; did you mean `ports`?",
    );
    assert_single(
        &refuse(route_with("/action/taregts", json!([]))),
        "routes[0].action.taregts: unknown key; did you mean `targets`?",
    );
}

#[test]
fn edit_distance_and_suggestions() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("abc", ""), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("ports", "port"), 1);
    assert_eq!(suggest("a", ["to", "from"].iter()), None);
    assert_eq!(suggest("NODELAY", GLOBAL_KEYS.iter()), Some("noDelay"));
    assert_eq!(
        suggest("keep_alive_initial_delay", GLOBAL_KEYS.iter()),
        Some("keepAliveInitialDelay")
    );
    assert_eq!(suggest("completelyDifferent", GLOBAL_KEYS.iter()), None);
}
