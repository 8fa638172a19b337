//! Action types, `redirect`/`respond`, `tls` on answering routes, `protocol`, `websocket` and
//! `loadBalancing` (`parse/action.rs`). Header maps and templates are in headers.rs.

use std::time::Duration;

use super::*;
use crate::config::{
    Action, ActionKind, ActionProtocol, Algorithm, HealthCheck, LoadBalancing, RouteTls, TlsMode,
    WebSocketOptions,
};
use crate::tls::certs::tests::TestCa;

fn action_of(config: Value) -> Action {
    let (config, warnings) = accept(config);
    assert!(warnings.is_empty(), "{warnings:?}");
    config.routes[0].action.clone()
}

/// A route on port 80 with this action.
fn local_route(action: Value) -> Value {
    with_route(json!({ "match": { "ports": 80 }, "action": action }))
}

fn warnings_of(config: Value) -> Vec<String> {
    let (_, warnings) = accept(config);
    warnings.iter().map(ToString::to_string).collect()
}

/// A `tls` object that terminates with a freshly made certificate.
fn terminate(mode: &str) -> Value {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]);
    json!({ "mode": mode, "certificate": { "cert": cert, "key": key } })
}

// --- types ---------------------------------------------------------------------------

#[test]
fn action_types() {
    let t = "routes[0].action.type";
    assert_single(
        &refuse(route_with("/action/type", json!("socket-handler"))),
        &format!(
            "{t}: \"socket-handler\" is not supported yet by this version (arrives with \
             socket handlers in the library); forward, redirect, respond and block work"
        ),
    );
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
    assert_eq!(
        action_of(with_route(forward_route())).kind,
        ActionKind::Forward
    );
}

#[test]
fn block_needs_nothing() {
    assert_eq!(
        action_of(local_route(json!({ "type": "block" }))),
        Action {
            kind: ActionKind::Block,
            targets: vec![],
            tls: None,
            protocol: None,
            headers: Default::default(),
            websocket: WebSocketOptions::default(),
            load_balancing: LoadBalancing::default(),
        }
    );
}

#[test]
fn redirect() {
    assert_eq!(
        action_of(local_route(json!({
            "type": "redirect",
            "redirect": { "to": "https://{domain}{path}{query}", "status": 308 }
        })))
        .kind,
        ActionKind::Redirect {
            to: "https://{domain}{path}{query}".into(),
            status: 308
        }
    );
    // status defaults to 301; a path is a valid target.
    assert_eq!(
        action_of(local_route(json!({
            "type": "redirect", "redirect": { "to": "/moved{query}" }
        })))
        .kind,
        ActionKind::Redirect {
            to: "/moved{query}".into(),
            status: 301
        }
    );
    for status in [301, 302, 303, 307, 308] {
        let action = action_of(local_route(json!({
            "type": "redirect", "redirect": { "to": "//{domain}:8443{path}", "status": status }
        })));
        assert!(matches!(action.kind, ActionKind::Redirect { status: s, .. } if s == status));
    }

    let r = "routes[0].action.redirect";
    for (redirect, expected) in [
        (
            json!({ "status": 301 }),
            format!(
                "{r}.to: required key missing: where to send the client, e.g. \
                 \"https://{{domain}}{{path}}{{query}}\""
            ),
        ),
        (
            json!({ "to": "" }),
            format!("{r}.to: expected a URL or a path, found an empty string"),
        ),
        (
            json!({ "to": "example.com/new" }),
            format!(
                "{r}.to: \"example.com/new\" is not a redirect target; expected an absolute URL \
                 (e.g. \"https://{{domain}}{{path}}{{query}}\") or a path starting with / \
                 (e.g. \"/new\")"
            ),
        ),
        (
            json!({ "to": "https://{host}{path}" }),
            format!(
                "{r}.to: \"{{host}}\" is not a template (did you mean {{domain}}, the Host \
                 without its port?); the templates are {{domain}}, {{clientIp}}, {{path}}, \
                 {{query}}, {{port}}"
            ),
        ),
        (
            json!({ "to": "https://x\r\n" }),
            format!(
                "{r}.to: \"https://x\\r\\n\" contains a line break or another control \
                 character, which a header value cannot hold"
            ),
        ),
        (
            json!({ "to": "https://x", "status": 200 }),
            format!(
                "{r}.status: expected a redirect status (301, 302, 303, 307 or 308), found 200"
            ),
        ),
        (
            json!({ "to": "https://x", "status": "301" }),
            format!(
                "{r}.status: expected a redirect status (301, 302, 303, 307 or 308), found the \
                 string \"301\""
            ),
        ),
        (
            json!({ "to": "https://x", "code": 301 }),
            format!("{r}.code: unknown key; expected one of: to, status"),
        ),
        (
            json!("https://x"),
            format!("{r}: expected an object {{to, status}}, found the string \"https://x\""),
        ),
    ] {
        assert_single(
            &refuse(local_route(
                json!({ "type": "redirect", "redirect": redirect.clone() }),
            )),
            &expected,
        );
    }
    assert_single(
        &refuse(local_route(json!({ "type": "redirect" }))),
        "routes[0].action.redirect: required key missing: `type: redirect` needs `redirect: \
         {to, status}, e.g. {to: \"https://{domain}{path}{query}\", status: 301}`",
    );
    assert_single(
        &refuse(route_with("/action/redirect", json!({ "to": "https://x" }))),
        "routes[0].action.redirect: only used with `type: redirect`",
    );
}

#[test]
fn respond() {
    assert_eq!(
        action_of(local_route(json!({
            "type": "respond",
            "respond": {
                "status": 503,
                "body": "down for maintenance\n",
                "headers": { "Content-Type": "text/plain; charset=utf-8", "retry-after": "120" }
            }
        })))
        .kind,
        ActionKind::Respond {
            status: 503,
            body: "down for maintenance\n".into(),
            headers: vec![
                ("content-type".into(), "text/plain; charset=utf-8".into()),
                ("retry-after".into(), "120".into()),
            ],
        }
    );
    // Every field has a default.
    assert_eq!(
        action_of(local_route(json!({ "type": "respond", "respond": {} }))).kind,
        ActionKind::Respond {
            status: 200,
            body: String::new(),
            headers: vec![],
        }
    );
    // Templates in header values; a body is kept exactly, braces included.
    assert_eq!(
        action_of(local_route(json!({
            "type": "respond",
            "respond": { "status": 204, "headers": { "x-seen": "{clientIp} on {port}" } }
        })))
        .kind,
        ActionKind::Respond {
            status: 204,
            body: String::new(),
            headers: vec![("x-seen".into(), "{clientIp} on {port}".into())],
        }
    );
    let (config, _) = accept(local_route(json!({
        "type": "respond", "respond": { "status": 599, "body": "{whatever} {" }
    })));
    assert!(matches!(
        &config.routes[0].action.kind,
        ActionKind::Respond { status: 599, body, .. } if body == "{whatever} {"
    ));

    let r = "routes[0].action.respond";
    for (respond, expected) in [
        (
            json!({ "status": 700 }),
            format!("{r}.status: expected a final HTTP status (200-599), found 700"),
        ),
        (
            json!({ "status": 99 }),
            format!("{r}.status: expected a final HTTP status (200-599), found 99"),
        ),
        (
            json!({ "status": 101 }),
            format!("{r}.status: expected a final HTTP status (200-599), found 101"),
        ),
        (
            json!({ "status": 204, "body": "x" }),
            format!(
                "{r}.body: a 204 response has no body; leave `body` out or pick another status"
            ),
        ),
        (
            json!({ "body": 5 }),
            format!("{r}.body: expected a string, found 5"),
        ),
        (
            json!({ "headers": { "x-a": null } }),
            format!("{r}.headers.x-a: expected a string, found null"),
        ),
        (
            json!({ "headers": { "x a": "1" } }),
            format!(
                "{r}.headers.x a: \"x a\" is not a header name; expected letters, digits and \
                 !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
            ),
        ),
        (
            json!({ "headers": { "content-length": "5" } }),
            format!(
                "{r}.headers.content-length: \"content-length\" is managed by the proxy (message \
                 framing and hop-by-hop headers) and cannot be set or removed here"
            ),
        ),
        (
            json!({ "headers": { "x-a": "{Domain}" } }),
            format!(
                "{r}.headers.x-a: \"{{Domain}}\" is not a template (did you mean {{domain}}? \
                 templates are case-sensitive); the templates are {{domain}}, {{clientIp}}, \
                 {{path}}, {{query}}, {{port}}"
            ),
        ),
        (
            json!({ "satus": 200 }),
            format!("{r}.satus: unknown key; did you mean `status`?"),
        ),
    ] {
        assert_single(
            &refuse(local_route(
                json!({ "type": "respond", "respond": respond.clone() }),
            )),
            &expected,
        );
    }
    assert_single(
        &refuse(local_route(json!({ "type": "respond" }))),
        "routes[0].action.respond: required key missing: `type: respond` needs `respond: \
         {status, body, headers} (each optional: 200, empty, none), e.g. {status: 200, body: \
         \"ok\"}`",
    );
    assert_single(
        &refuse(local_route(
            json!({ "type": "block", "respond": { "status": 200 } }),
        )),
        "routes[0].action.respond: only used with `type: respond`",
    );
    // All the problems at once.
    assert_eq!(
        refuse(local_route(json!({
            "type": "respond",
            "respond": { "status": 0, "body": [], "headers": { "a": 1 } }
        }))),
        [
            format!("{r}.status: expected a final HTTP status (200-599), found 0"),
            format!("{r}.body: expected a string, found a list"),
            format!("{r}.headers.a: expected a string, found 1"),
        ]
    );
}

#[test]
fn targets_on_answering_routes_are_ignored_with_a_warning() {
    let a = "routes[0].action";
    let (config, warnings) = accept(local_route(json!({
        "type": "block", "targets": [{ "host": "127.0.0.1", "port": 3000 }]
    })));
    assert!(config.routes[0].action.targets.is_empty());
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{a}.targets: ignored: only forward connects to targets"
        )]
    );
    assert_eq!(
        warnings_of(local_route(json!({
            "type": "respond", "respond": {}, "target": { "host": "a", "port": 1 }
        }))),
        [format!(
            "{a}.target: ignored: only forward connects to targets"
        )]
    );
    // Still shape-checked.
    assert_single(
        &refuse(local_route(json!({
            "type": "block", "targets": [{ "host": "a", "port": 0 }]
        }))),
        "routes[0].action.targets[0].port: 0 is not a port (1-65535)",
    );
}

// --- tls on routes that answer themselves --------------------------------------------

#[test]
fn answering_routes_terminate_tls() {
    let action = action_of(local_route(json!({
        "type": "respond", "respond": {}, "tls": terminate("terminate")
    })));
    assert_eq!(
        action.tls.as_ref().map(|tls| tls.mode),
        Some(TlsMode::Terminate)
    );
    let m = "routes[0].action.tls.mode";
    for (kind, extra) in [
        ("redirect", json!({ "redirect": { "to": "/" } })),
        ("respond", json!({ "respond": {} })),
        ("block", json!({})),
    ] {
        let mut passthrough = extra.clone();
        set(&mut passthrough, "/type", json!(kind));
        set(&mut passthrough, "/tls", json!({ "mode": "passthrough" }));
        let block_hint = if kind == "block" {
            " (or leave `tls` out: a block route then closes TLS connections without answering)"
        } else {
            ""
        };
        assert_single(
            &refuse(local_route(passthrough)),
            &format!(
                "{m}: \"passthrough\" cannot be used with `type: {kind}`: only terminate lets \
                 the proxy answer the client itself (passthrough forwards TLS untouched to a \
                 backend); use `mode: terminate`{block_hint}"
            ),
        );
        let mut reencrypt = extra;
        set(&mut reencrypt, "/type", json!(kind));
        set(&mut reencrypt, "/tls", terminate("terminate-and-reencrypt"));
        assert_single(
            &refuse(local_route(reencrypt)),
            &format!(
                "{m}: \"terminate-and-reencrypt\" cannot be used with `type: {kind}`: only \
                 terminate lets the proxy answer the client itself (terminate-and-reencrypt \
                 connects to a backend); use `mode: terminate`{block_hint}"
            ),
        );
    }
}

// --- protocol ------------------------------------------------------------------------

#[test]
fn protocol() {
    for (written, expected) in [("tcp", ActionProtocol::Tcp), ("http", ActionProtocol::Http)] {
        for mode in ["terminate", "terminate-and-reencrypt"] {
            let mut route = forward_route();
            set(&mut route, "/action/tls", terminate(mode));
            set(&mut route, "/action/protocol", json!(written));
            assert_eq!(action_of(with_route(route)).protocol, Some(expected));
        }
    }
    let action = action_of(local_route(json!({
        "type": "block", "protocol": "tcp", "tls": terminate("terminate")
    })));
    assert_eq!(action.protocol, Some(ActionProtocol::Tcp));

    // Without a terminating `tls`: a warning, and no protocol in the model.
    let ignored = "routes[0].action.protocol: ignored: `protocol` applies only to TLS the proxy \
                   terminates (tls.mode: terminate or terminate-and-reencrypt)";
    for tls in [None, Some(json!({ "mode": "passthrough" }))] {
        let mut route = forward_route();
        set(&mut route, "/action/protocol", json!("http"));
        if let Some(tls) = tls {
            set(&mut route, "/action/tls", tls);
        }
        let (config, warnings) = accept(with_route(route));
        assert_eq!(config.routes[0].action.protocol, None);
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings, [ignored]);
    }

    let p = "routes[0].action.protocol";
    assert_single(
        &refuse(route_with("/action/protocol", json!("udp"))),
        &format!("{p}: \"udp\" is not a protocol; expected tcp or http"),
    );
    assert_single(
        &refuse(local_route(json!({
            "type": "redirect", "redirect": { "to": "/" }, "protocol": "tcp",
            "tls": terminate("terminate")
        }))),
        &format!(
            "{p}: \"tcp\" cannot be used with `type: redirect`, which answers over HTTP; use \
             \"http\" or leave `protocol` out"
        ),
    );
}

#[test]
fn a_tcp_route_cannot_match_or_rewrite_http() {
    let why = "a route with `protocol: tcp` relays the bytes without reading them";
    let mut route = forward_route();
    set(&mut route, "/action/tls", terminate("terminate"));
    set(&mut route, "/action/protocol", json!("tcp"));
    let mut headers = route.clone();
    set(
        &mut headers,
        "/action/headers",
        json!({ "request": { "x-a": "1" } }),
    );
    assert_single(
        &refuse(with_route(headers)),
        &format!("routes[0].action.headers: header rules need the HTTP messages, but {why}"),
    );
    let mut path = route.clone();
    set(&mut path, "/match/path", json!("/a"));
    assert_single(
        &refuse(with_route(path)),
        &format!("routes[0].match.path: matching the path needs the HTTP request, but {why}"),
    );
    let mut pings = route;
    set(
        &mut pings,
        "/action/websocket",
        json!({ "pingInterval": "1s" }),
    );
    assert_single(
        &refuse(with_route(pings)),
        &format!(
            "routes[0].action.websocket.pingInterval: WebSocket pings need the WebSocket \
             frames, but {why}"
        ),
    );
}

// --- websocket -----------------------------------------------------------------------

#[test]
fn websocket_options() {
    let ws = |value: Value| action_of(route_with("/action/websocket", value)).websocket;
    assert_eq!(ws(json!({})), WebSocketOptions::default());
    assert_eq!(
        WebSocketOptions::default(),
        WebSocketOptions {
            enabled: true,
            ping_interval: Duration::ZERO,
            ping_timeout: Duration::from_secs(10),
        }
    );
    assert_eq!(
        ws(json!({ "enabled": false, "pingInterval": "30s", "pingTimeout": 5000 })),
        WebSocketOptions {
            enabled: false,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
        }
    );
    // pingTimeout 0 is fine while pings are off.
    assert_eq!(ws(json!({ "pingTimeout": 0 })).ping_timeout, Duration::ZERO);
    // Pings work where the proxy terminates TLS.
    let mut route = forward_route();
    set(
        &mut route,
        "/action/tls",
        terminate("terminate-and-reencrypt"),
    );
    set(
        &mut route,
        "/action/websocket",
        json!({ "pingInterval": "20s" }),
    );
    assert_eq!(
        action_of(with_route(route)).websocket.ping_interval,
        Duration::from_secs(20)
    );

    let w = "routes[0].action.websocket";
    let more = "not supported yet by this version (arrives with more WebSocket options)";
    for (value, expected) in [
        (
            json!({ "pingInterval": "30s", "pingTimeout": 0 }),
            vec![format!(
                "{w}.pingTimeout: 0 cannot be used while pingInterval is set: a client that \
                 does not answer a ping within pingTimeout is closed; expected a duration > 0 \
                 (default 10s)"
            )],
        ),
        (
            json!({ "enabled": "yes" }),
            vec![format!(
                "{w}.enabled: expected true or false, found the string \"yes\""
            )],
        ),
        (
            json!({ "pingInterval": "30 seconds" }),
            vec![format!(
                "{w}.pingInterval: \"30 seconds\" has an unknown unit `seconds`; expected a \
                 duration: a whole number of milliseconds (e.g. 30000) or a string with a unit \
                 ms, s, m, h or d (e.g. \"250ms\", \"1.5s\", \"15m\", \"4h\", \"7d\"); 0 turns \
                 the limit off"
            )],
        ),
        (
            json!({ "maxPayloadSize": "1MiB", "subprotocols": ["chat"] }),
            vec![
                format!("{w}.maxPayloadSize: {more}"),
                format!("{w}.subprotocols: {more}"),
            ],
        ),
        (
            json!({ "allowedOrigins": "https://a", "rewritePath": "/ws", "customHeaders": {} }),
            vec![
                format!(
                    "{w}.allowedOrigins: expected a list of strings, found the string \"https://a\""
                ),
                format!("{w}.rewritePath: {more}"),
                format!("{w}.customHeaders: {more}"),
            ],
        ),
        (
            json!({ "pingIntervall": "1s" }),
            vec![format!(
                "{w}.pingIntervall: unknown key; did you mean `pingInterval`?"
            )],
        ),
        (
            json!(true),
            vec![format!("{w}: expected an object, found true")],
        ),
    ] {
        assert_eq!(
            refuse(route_with("/action/websocket", value.clone())),
            expected,
            "{value}"
        );
    }
}

#[test]
fn websocket_pings_need_frames_the_proxy_can_see() {
    let w = "routes[0].action.websocket";
    let why = "the proxy cannot see inside TLS it does not terminate (tls.mode: passthrough)";
    let mut route = forward_route();
    set(&mut route, "/action/tls", json!({ "mode": "passthrough" }));
    set(
        &mut route,
        "/action/websocket",
        json!({ "pingInterval": "30s", "pingTimeout": "5s" }),
    );
    assert_eq!(
        refuse(with_route(route.clone())),
        [
            format!("{w}.pingInterval: WebSocket pings need the WebSocket frames, but {why}"),
            format!("{w}.pingTimeout: WebSocket pings need the WebSocket frames, but {why}"),
        ]
    );
    // Values that change nothing load; `enabled: false` is ignored with a warning.
    set(
        &mut route,
        "/action/websocket",
        json!({ "pingInterval": 0, "enabled": false }),
    );
    let (config, warnings) = accept(with_route(route));
    assert_eq!(
        config.routes[0].action.websocket,
        WebSocketOptions::default()
    );
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [format!(
            "{w}.enabled: ignored: refusing WebSocket upgrades needs the HTTP request, but {why}"
        )]
    );
}

// --- options that only forward uses --------------------------------------------------

#[test]
fn forward_only_options_on_answering_routes_warn() {
    let a = "routes[0].action";
    let (config, warnings) = accept(local_route(json!({
        "type": "block",
        "websocket": { "pingInterval": "1s" },
        "headers": { "request": { "x-a": "1" } },
        "loadBalancing": { "algorithm": "ip-hash" }
    })));
    let action = &config.routes[0].action;
    assert_eq!(action.websocket, WebSocketOptions::default());
    assert_eq!(action.headers, Default::default());
    assert_eq!(action.load_balancing, LoadBalancing::default());
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            format!(
                "{a}.headers: ignored: only forward sends requests to a backend (a respond \
                 action sets its own headers in respond.headers)"
            ),
            format!("{a}.websocket: ignored: only forward relays WebSockets"),
            format!("{a}.loadBalancing: ignored: only forward connects to targets"),
        ]
    );
    // Still checked.
    assert_single(
        &refuse(local_route(json!({
            "type": "block", "loadBalancing": { "algorithm": "random" }
        }))),
        "routes[0].action.loadBalancing.algorithm: \"random\" is not a load-balancing \
         algorithm; expected round-robin, least-connections or ip-hash",
    );
}

// --- loadBalancing -------------------------------------------------------------------

#[test]
fn load_balancing() {
    let lb = |value: Value| action_of(route_with("/action/loadBalancing", value)).load_balancing;
    assert_eq!(lb(json!({})), LoadBalancing::default());
    assert_eq!(LoadBalancing::default().algorithm, Algorithm::RoundRobin);
    assert_eq!(LoadBalancing::default().health_check, None);
    for (written, expected) in [
        ("round-robin", Algorithm::RoundRobin),
        ("least-connections", Algorithm::LeastConnections),
        ("ip-hash", Algorithm::IpHash),
    ] {
        assert_eq!(lb(json!({ "algorithm": written })).algorithm, expected);
    }
    assert_eq!(
        lb(json!({ "healthCheck": {} })).health_check,
        Some(HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
        })
    );
    assert_eq!(
        lb(json!({
            "algorithm": "least-connections",
            "healthCheck": { "path": "/healthz?full=1", "interval": "30s", "timeout": "30s" }
        })),
        LoadBalancing {
            algorithm: Algorithm::LeastConnections,
            health_check: Some(HealthCheck {
                path: "/healthz?full=1".into(),
                interval: Duration::from_secs(30),
                timeout: Duration::from_secs(30),
            }),
        }
    );

    let l = "routes[0].action.loadBalancing";
    let h = "routes[0].action.loadBalancing.healthCheck";
    for (value, expected) in [
        (
            json!({ "algorithm": "random" }),
            vec![format!(
                "{l}.algorithm: \"random\" is not a load-balancing algorithm; expected \
                 round-robin, least-connections or ip-hash"
            )],
        ),
        (
            json!({ "algoritm": "ip-hash" }),
            vec![format!(
                "{l}.algoritm: unknown key; did you mean `algorithm`?"
            )],
        ),
        (
            json!("round-robin"),
            vec![format!(
                "{l}: expected an object {{algorithm, healthCheck}}, found the string \
                 \"round-robin\""
            )],
        ),
        (
            json!({ "healthCheck": true }),
            vec![format!(
                "{h}: expected an object {{path, interval, timeout}}, found true"
            )],
        ),
        (
            json!({ "healthCheck": { "path": "health" } }),
            vec![format!(
                "{h}.path: \"health\" is not a request path; expected one starting with / \
                 (e.g. /health)"
            )],
        ),
        (
            json!({ "healthCheck": { "path": "/a b" } }),
            vec![format!(
                "{h}.path: \"/a b\" contains spaces or control characters; write them \
                 percent-encoded (%20)"
            )],
        ),
        (
            json!({ "healthCheck": { "interval": 0, "timeout": "0s" } }),
            vec![
                format!(
                    "{h}.interval: 0 cannot be used here: expected a duration > 0 (leave \
                     `healthCheck` out to turn health checks off)"
                ),
                format!(
                    "{h}.timeout: \"0s\" cannot be used here: expected a duration > 0 (leave \
                     `healthCheck` out to turn health checks off)"
                ),
            ],
        ),
        (
            json!({ "healthCheck": { "interval": "5s", "timeout": "6s" } }),
            vec![format!(
                "{h}.timeout: timeout \"6s\" is longer than the interval (5s); a check must end \
                 before the next one starts, so expected a timeout ≤ the interval"
            )],
        ),
        (
            json!({ "healthCheck": { "interval": "1s" } }),
            vec![format!(
                "{h}.interval: the default timeout (2s) is longer than the interval (1s); a \
                 check must end before the next one starts, so expected a timeout ≤ the \
                 interval"
            )],
        ),
        (
            json!({ "healthCheck": { "path": "/", "expectStatus": 200 } }),
            vec![format!(
                "{h}.expectStatus: unknown key; expected one of: path, interval, timeout"
            )],
        ),
    ] {
        assert_eq!(
            refuse(route_with("/action/loadBalancing", value.clone())),
            expected,
            "{value}"
        );
    }
}

#[test]
fn tls_is_kept_on_every_type() {
    let tls = action_of(local_route(json!({
        "type": "block", "tls": terminate("terminate")
    })))
    .tls;
    assert!(matches!(
        tls,
        Some(RouteTls {
            mode: TlsMode::Terminate,
            certificate: Some(_),
            ..
        })
    ));
}
