//! Action types and the refused action options (`parse/action.rs`).

use super::*;

#[test]
fn action_types() {
    let t = "routes[0].action.type";
    assert_single(
        &refuse(route_with("/action/type", json!("redirect"))),
        &format!(
            "{t}: \"redirect\" is not supported yet by this version (arrives with the HTTP \
             engine); only forward works so far"
        ),
    );
    assert_single(
        &refuse(route_with("/action/type", json!("socket-handler"))),
        &format!(
            "{t}: \"socket-handler\" is not supported yet by this version (arrives with \
             socket handlers in the library); only forward works so far"
        ),
    );
    for kind in ["respond", "block"] {
        assert_has(
            &refuse(route_with("/action/type", json!(kind))),
            "not supported yet",
        );
    }
    assert_single(
        &refuse(route_with("/action/type", json!("proxy"))),
        &format!(
            "{t}: \"proxy\" is not an action type; expected forward, redirect, respond, \
             block or socket-handler"
        ),
    );
    let mut route = forward_route();
    remove(&mut route, "/action/type");
    assert_single(
        &refuse(with_route(route)),
        &format!(
            "{t}: required key missing: the action type (forward, redirect, respond, block \
             or socket-handler)"
        ),
    );
    // Non-forward actions need no targets, and their own object is only shape-checked.
    let errors = refuse(with_route(json!({
        "match": { "ports": 80 },
        "action": {
            "type": "redirect",
            "redirect": { "to": "https://{domain}{path}", "status": 301 }
        }
    })));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let errors = refuse(with_route(json!({
        "match": { "ports": 80 },
        "action": { "type": "respond", "respond": { "status": 700 } }
    })));
    assert_eq!(
        errors,
        [
            "routes[0].action.type: \"respond\" is not supported yet by this version \
             (arrives with the HTTP engine); only forward works so far",
            "routes[0].action.respond.status: expected an HTTP status (100-599), found 700",
        ]
    );
    assert_has(
        &refuse(route_with("/action/redirect", json!({ "to": "https://x" }))),
        "routes[0].action.redirect: only used with `type: redirect`",
    );
}

#[test]
fn action_options_not_supported_yet() {
    let a = "routes[0].action";
    let http_refused = "not supported yet by this version (arrives with the HTTP engine)";
    for (key, value, expected) in [
        (
            "websocket",
            json!({ "enabled": true, "pingInterval": "30s" }),
            vec![format!("{a}.websocket: {http_refused}")],
        ),
        (
            "headers",
            json!({ "request": { "x-a": "{clientIp}", "x-b": null } }),
            vec![format!("{a}.headers: {http_refused}")],
        ),
        (
            "protocol",
            json!("http"),
            vec![format!("{a}.protocol: {http_refused}")],
        ),
        (
            "protocol",
            json!("udp"),
            vec![format!(
                "{a}.protocol: \"udp\" is not a protocol; expected tcp or http"
            )],
        ),
        (
            "loadBalancing",
            json!({ "algorithm": "least-connections" }),
            vec![format!(
                "{a}.loadBalancing.algorithm: not supported yet by this version (arrives \
                 with more load-balancing algorithms)"
            )],
        ),
        (
            "loadBalancing",
            json!({ "algorithm": "random" }),
            vec![format!(
                "{a}.loadBalancing.algorithm: \"random\" is not a load-balancing algorithm; \
                 expected round-robin, least-connections or ip-hash"
            )],
        ),
        (
            "loadBalancing",
            json!({ "healthCheck": {} }),
            vec![format!(
                "{a}.loadBalancing.healthCheck: not supported yet by this version (arrives \
                 with backend health checks)"
            )],
        ),
    ] {
        assert_eq!(
            refuse(route_with(&format!("/action/{key}"), value.clone())),
            expected,
            "{key}: {value}"
        );
    }
    let (config, _) = accept(route_with(
        "/action/loadBalancing",
        json!({ "algorithm": "round-robin" }),
    ));
    assert_eq!(config.routes[0].action.targets.len(), 1);
    accept(route_with("/action/loadBalancing", json!({})));
}
