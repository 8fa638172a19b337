//! `action.targets` and `action.target` (`parse/target.rs`).

use super::*;
use crate::config::{ProxyProtocolVersion, Target, TargetPort, TargetProtocol};

fn targets_of(route: Value) -> Vec<Target> {
    let (config, _) = accept(with_route(route));
    config.routes[0].action.targets.clone()
}

#[test]
fn target_forms() {
    // A list of hosts, "preserve", several targets.
    let mut route = forward_route();
    set(
        &mut route,
        "/action/targets",
        json!([
            { "host": ["10.0.0.1", "10.0.0.2", "backend-3.internal"], "port": "preserve" },
            { "host": "::1", "port": 8443, "protocol": "h1", "sendProxyProtocol": false },
        ]),
    );
    assert_eq!(
        targets_of(route),
        vec![
            Target {
                hosts: vec![
                    "10.0.0.1".into(),
                    "10.0.0.2".into(),
                    "backend-3.internal".into()
                ],
                port: TargetPort::Preserve,
                protocol: TargetProtocol::H1,
                send_proxy_protocol: None,
            },
            Target {
                hosts: vec!["::1".into()],
                port: TargetPort::Fixed(8443),
                protocol: TargetProtocol::H1,
                send_proxy_protocol: None,
            },
        ]
    );

    // The single `target` form (SmartProxy v19) equals a one-element `targets`.
    let mut single = forward_route();
    remove(&mut single, "/action/targets");
    set(
        &mut single,
        "/action/target",
        json!({ "host": "127.0.0.1", "port": 3000 }),
    );
    assert_eq!(targets_of(single), targets_of(forward_route()));
}

#[test]
fn target_protocol() {
    let protocol_of = |value: Value| {
        let (config, warnings) = accept(route_with("/action/targets/0/protocol", value));
        assert!(warnings.is_empty(), "{warnings:?}");
        config.routes[0].action.targets[0].protocol
    };
    assert_eq!(protocol_of(json!("h1")), TargetProtocol::H1);
    assert_eq!(protocol_of(json!("h2")), TargetProtocol::H2);
    assert_eq!(targets_of(forward_route())[0].protocol, TargetProtocol::H1);
    assert_single(
        &refuse(route_with("/action/targets/0/protocol", json!(2))),
        "routes[0].action.targets[0].protocol: expected a target protocol (h1 or h2), found 2",
    );
    assert_single(
        &refuse(route_with("/action/targets/0/protocol", json!("H2"))),
        "routes[0].action.targets[0].protocol: \"H2\" is not a target protocol; expected h1 \
         or h2",
    );
}

#[test]
fn target_send_proxy_protocol() {
    let send_of = |value: Value| {
        let (config, warnings) = accept(route_with("/action/targets/0/sendProxyProtocol", value));
        assert!(warnings.is_empty(), "{warnings:?}");
        config.routes[0].action.targets[0].send_proxy_protocol
    };
    assert_eq!(send_of(json!("v1")), Some(ProxyProtocolVersion::V1));
    assert_eq!(send_of(json!("v2")), Some(ProxyProtocolVersion::V2));
    // SmartProxy's boolean: true writes v1.
    assert_eq!(send_of(json!(true)), Some(ProxyProtocolVersion::V1));
    assert_eq!(send_of(json!(false)), None);
    assert_eq!(targets_of(forward_route())[0].send_proxy_protocol, None);
}

#[test]
fn target_and_targets_together_is_an_error() {
    let mut route = forward_route();
    set(
        &mut route,
        "/action/target",
        json!({ "host": "127.0.0.1", "port": 3000 }),
    );
    assert_single(
        &refuse(with_route(route)),
        "routes[0].action: has both `target` and `targets`; give either one `target` or a \
         list of `targets`",
    );
}

#[test]
fn target_errors() {
    let mut route = forward_route();
    remove(&mut route, "/action/targets");
    assert_single(
        &refuse(with_route(route)),
        "routes[0].action.targets: required key missing: a forward action needs `targets` \
         (a list of {host, port}) or `target` (one {host, port})",
    );
    assert_single(
        &refuse(route_with("/action/targets", json!([]))),
        "routes[0].action.targets: an empty list; a forward action needs at least one \
         target {host, port}",
    );
    assert_single(
        &refuse(route_with(
            "/action/targets",
            json!({ "host": "a", "port": 1 }),
        )),
        "routes[0].action.targets: expected a list of targets ({host, port} objects), found \
         an object",
    );
    let t = "routes[0].action.targets[0]";
    for (target, expected) in [
        (
            json!({ "port": 1 }),
            format!("{t}.host: required key missing: a host name or IP address, or a list of them"),
        ),
        (
            json!({ "host": "a" }),
            format!("{t}.port: required key missing: a port number (1-65535) or \"preserve\""),
        ),
        (
            json!({ "host": [], "port": 1 }),
            format!("{t}.host: an empty list; give at least one host"),
        ),
        (
            json!({ "host": "", "port": 1 }),
            format!("{t}.host: expected a host name or IP address, found an empty string"),
        ),
        (
            json!({ "host": ["a", ""], "port": 1 }),
            format!("{t}.host[1]: expected a host name or IP address, found an empty string"),
        ),
        (
            json!({ "host": "http://a", "port": 1 }),
            format!(
                "{t}.host: \"http://a\" is not a host; write only the host name or IP \
                 address, without a scheme"
            ),
        ),
        (
            json!({ "host": "a:80", "port": 1 }),
            format!("{t}.host: \"a:80\" is not a host; put the port in `port`, not in `host`"),
        ),
        (
            json!({ "host": "[::1]", "port": 1 }),
            format!(
                "{t}.host: \"[::1]\" is not a host; write IPv6 addresses without brackets \
                 (e.g. ::1)"
            ),
        ),
        (
            json!({ "host": "a b", "port": 1 }),
            format!(
                "{t}.host: \"a b\" is not a host name or IP address (e.g. backend.internal, \
                 10.0.0.5, ::1)"
            ),
        ),
        (
            json!({ "host": 10, "port": 1 }),
            format!("{t}.host: expected a host name or IP address or a list of them, found 10"),
        ),
        (
            json!({ "host": "a", "port": "80" }),
            format!("{t}.port: \"80\" is not a port; expected a number (1-65535) or \"preserve\""),
        ),
        (
            json!({ "host": "a", "port": true }),
            format!("{t}.port: expected a port number (1-65535) or \"preserve\", found true"),
        ),
        (
            json!({ "host": "a", "port": 1, "protocol": "h3" }),
            format!("{t}.protocol: \"h3\" is not a target protocol; expected h1 or h2"),
        ),
        (
            json!({ "host": "a", "port": 1, "sendProxyProtocol": 2 }),
            format!("{t}.sendProxyProtocol: expected a PROXY protocol version (v1 or v2), found 2"),
        ),
        (
            json!({ "host": "a", "port": 1, "sendProxyProtocol": "V2" }),
            format!(
                "{t}.sendProxyProtocol: \"V2\" is not a PROXY protocol version; expected v1 \
                 or v2"
            ),
        ),
        (
            json!({ "host": "a", "port": 1, "sendProxyProtocol": "v3" }),
            format!(
                "{t}.sendProxyProtocol: \"v3\" is not a PROXY protocol version; expected v1 \
                 or v2"
            ),
        ),
        (
            json!({ "host": "a", "port": 1, "websocket": {} }),
            format!(
                "{t}.websocket: not supported yet by this version (arrives with per-target \
                 options)"
            ),
        ),
        (
            json!({ "host": "a", "port": 1, "hots": "b" }),
            format!("{t}.hots: unknown key; did you mean `host`?"),
        ),
        (
            json!("a:1"),
            format!(
                "{t}: expected a target (an object with `host` and `port`), found the string \
                 \"a:1\""
            ),
        ),
    ] {
        assert_single(
            &refuse(route_with("/action/targets/0", target.clone())),
            &expected,
        );
    }
}
