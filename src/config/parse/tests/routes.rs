//! Routes and their `match` (`parse/routes.rs`, `parse/ip.rs`).

use super::*;
use crate::config::{
    Action, ActionKind, HeaderRules, IpPattern, LoadBalancing, Route, RouteMatch, Target,
    TargetPort, TargetProtocol, TlsVersion, WebSocketOptions,
};

// --- routes --------------------------------------------------------------------------

#[test]
fn a_route_reads_its_fields_and_defaults() {
    let (config, _) = accept(json!({ "routes": [
        {
            "name": "db",
            "priority": -5,
            "enabled": false,
            "description": "postgres",
            "tags": ["db", "internal"],
            "match": { "ports": 5432 },
            "action": {
                "type": "forward",
                "targets": [{ "host": "db.internal", "port": 5432 }]
            }
        },
        forward_route(),
    ]}));
    assert_eq!(
        config.routes[0],
        Route {
            name: "db".into(),
            priority: -5,
            enabled: false,
            matcher: RouteMatch {
                ports: vec![5432],
                client_ip: vec![],
                domains: vec![],
                tls_versions: vec![],
                path: None,
                headers: vec![],
            },
            action: Action {
                kind: ActionKind::Forward,
                targets: vec![Target {
                    hosts: vec!["db.internal".into()],
                    port: TargetPort::Fixed(5432),
                    protocol: TargetProtocol::H1,
                    send_proxy_protocol: None,
                }],
                tls: None,
                protocol: None,
                headers: HeaderRules::default(),
                websocket: WebSocketOptions::default(),
                load_balancing: LoadBalancing::default(),
            },
            security: crate::config::RouteSecurity::default(),
        }
    );
    let second = &config.routes[1];
    assert_eq!(second.name, "route-2");
    assert_eq!(second.priority, 0);
    assert!(second.enabled);
}

#[test]
fn disabled_routes_are_still_validated() {
    let mut route = forward_route();
    set(&mut route, "/enabled", json!(false));
    set(&mut route, "/match/ports", json!(0));
    assert_single(
        &refuse(with_route(route)),
        "routes[0].match.ports: 0 is not a port (1-65535)",
    );
}

#[test]
fn route_field_errors() {
    assert_single(
        &refuse(route_with("/priority", json!("high"))),
        "routes[0].priority: expected a whole number (higher is tried first), found the \
         string \"high\"",
    );
    assert_single(
        &refuse(route_with("/enabled", json!("no"))),
        "routes[0].enabled: expected true or false, found the string \"no\"",
    );
    assert_single(
        &refuse(route_with("/name", json!(""))),
        "routes[0].name: expected a route name, found an empty string",
    );
    assert_single(
        &refuse(route_with("/tags", json!("x"))),
        "routes[0].tags: expected a list of strings, found the string \"x\"",
    );
    let mut route = forward_route();
    remove(&mut route, "/match");
    remove(&mut route, "/action");
    assert_eq!(
        refuse(with_route(route)),
        [
            "routes[0].match: required key missing: an object with at least `ports`",
            "routes[0].action: required key missing: an object with `type` (e.g. forward) \
             and `targets`",
        ]
    );
    assert_single(
        &refuse(json!({ "routes": ["web"] })),
        "routes[0]: expected a route (an object with `match` and `action`), found the \
         string \"web\"",
    );
}

#[test]
fn duplicate_route_names_are_reported_at_the_second_one() {
    let mut a = forward_route();
    set(&mut a, "/name", json!("web"));
    let b = forward_route();
    let mut c = forward_route();
    set(&mut c, "/name", json!("web"));
    assert_single(
        &refuse(json!({ "routes": [a, b, c] })),
        "routes[2].name: duplicate route name \"web\" (already used by routes[0])",
    );

    // A written name that equals an earlier generated one.
    let mut named = forward_route();
    set(&mut named, "/name", json!("route-1"));
    assert_single(
        &refuse(json!({ "routes": [forward_route(), named] })),
        "routes[1].name: duplicate route name \"route-1\" (already used by routes[0], \
         whose name is generated)",
    );

    // A generated name that equals an earlier written one.
    let mut named = forward_route();
    set(&mut named, "/name", json!("route-2"));
    assert_single(
        &refuse(json!({ "routes": [named, forward_route()] })),
        "routes[1]: the generated name \"route-2\" is already used by routes[0]; give this \
         route a `name`",
    );
}

// --- ports ---------------------------------------------------------------------------

fn ports_of(ports: Value) -> Result<Vec<u16>, Vec<String>> {
    match from_value(&route_with("/match/ports", ports)) {
        Ok((config, _)) => Ok(config.routes[0].matcher.ports.clone()),
        Err(errors) => Err(errors.0.iter().map(ToString::to_string).collect()),
    }
}

#[test]
fn every_ports_shape() {
    assert_eq!(ports_of(json!(443)), Ok(vec![443]));
    assert_eq!(ports_of(json!([443, 80, 443])), Ok(vec![80, 443]));
    assert_eq!(
        ports_of(json!({ "from": 8000, "to": 8003 })),
        Ok(vec![8000, 8001, 8002, 8003])
    );
    assert_eq!(ports_of(json!({ "from": 1, "to": 1 })), Ok(vec![1]));
    assert_eq!(
        ports_of(json!([9000, { "from": 8000, "to": 8002 }, 8001, 22])),
        Ok(vec![22, 8000, 8001, 8002, 9000])
    );
    assert_eq!(
        ports_of(json!([{ "from": 1, "to": 65535 }])).map(|p| p.len()),
        Ok(65535)
    );
}

#[test]
fn ports_errors() {
    let p = "routes[0].match.ports";
    for (ports, expected) in [
        (json!(0), vec![format!("{p}: 0 is not a port (1-65535)")]),
        (
            json!(65536),
            vec![format!("{p}: 65536 is not a port (1-65535)")],
        ),
        (json!(-1), vec![format!("{p}: -1 is not a port (1-65535)")]),
        (
            json!(80.5),
            vec![format!("{p}: 80.5 is not a port (1-65535)")],
        ),
        (
            json!([]),
            vec![format!(
                "{p}: an empty list matches no port; give at least one port"
            )],
        ),
        (
            json!("443"),
            vec![format!(
                "{p}: expected a port number (1-65535), a list of ports or {{from, to}}, \
                 found the string \"443\""
            )],
        ),
        (
            json!([80, "443", [1]]),
            vec![
                format!(
                    "{p}[1]: expected a port number (1-65535) or {{from, to}}, found the \
                     string \"443\""
                ),
                format!("{p}[2]: expected a port number (1-65535) or {{from, to}}, found a list"),
            ],
        ),
        (
            json!({ "from": 9000, "to": 8000 }),
            vec![format!("{p}: `from` (9000) is greater than `to` (8000)")],
        ),
        (
            json!([{ "from": 10 }]),
            vec![format!(
                "{p}[0].to: required key missing: a port number (1-65535)"
            )],
        ),
        (
            json!({ "from": 0, "to": 70000 }),
            vec![
                format!("{p}.from: 0 is not a port (1-65535)"),
                format!("{p}.to: 70000 is not a port (1-65535)"),
            ],
        ),
        (
            json!({ "from": 1, "to": 2, "step": 1 }),
            vec![format!("{p}.step: unknown key; expected one of: from, to")],
        ),
    ] {
        assert_eq!(ports_of(ports.clone()), Err(expected), "ports: {ports}");
    }
    let mut route = forward_route();
    remove(&mut route, "/match/ports");
    assert_single(
        &refuse(with_route(route)),
        "routes[0].match.ports: required key missing: a port, a list of ports or {from, to}",
    );
}

// --- client IPs ----------------------------------------------------------------------

#[test]
fn client_ip_patterns() {
    let (config, _) = accept(route_with(
        "/match/clientIp",
        json!([
            "10.0.0.0/8",
            "192.168.1.7",
            "2001:db8::/32",
            "::1",
            "192.168.1.*",
            "fe80::*",
            "10.1.2.3/16"
        ]),
    ));
    let net = |s: &str| IpPattern::Net(s.parse().expect("net"));
    assert_eq!(
        config.routes[0].matcher.client_ip,
        vec![
            net("10.0.0.0/8"),
            net("192.168.1.7/32"),
            net("2001:db8::/32"),
            net("::1/128"),
            IpPattern::Glob("192.168.1.*".into()),
            IpPattern::Glob("fe80::*".into()),
            net("10.1.0.0/16"),
        ]
    );
    let (config, _) = accept(route_with("/match/clientIp", json!("127.0.0.1")));
    assert_eq!(
        config.routes[0].matcher.client_ip,
        vec![net("127.0.0.1/32")]
    );

    let errors = refuse(route_with(
        "/match/clientIp",
        json!(["10.0.0.0/33", "host.example", "10.0.*.x", ""]),
    ));
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].starts_with(
        "routes[0].match.clientIp[0]: \"10.0.0.0/33\" is not a CIDR (e.g. 10.0.0.0/8), an IP \
         address (e.g. 192.168.1.10) or a glob (e.g. 192.168.1.*)"
    ));
    assert!(errors[3].starts_with("routes[0].match.clientIp[3]: \"\" is not a CIDR"));
    assert_single(
        &refuse(route_with("/match/clientIp", json!(10))),
        "routes[0].match.clientIp: expected an IP address, CIDR or glob or a list of them, \
         found 10",
    );
}

// --- match conditions ----------------------------------------------------------------

#[test]
fn match_conditions_checked() {
    let m = "routes[0].match";
    for (key, value, expected) in [
        (
            "domains",
            json!(["ok.example", ""]),
            format!(
                "{m}.domains[1]: \"\" is not a domain name or pattern (e.g. example.com, \
                 *.example.com)"
            ),
        ),
        (
            "domains",
            json!([1]),
            format!("{m}.domains[0]: expected a domain name or pattern, found 1"),
        ),
        (
            "path",
            json!("api"),
            format!(
                "{m}.path: \"api\" is not a path pattern; expected one starting with / or * \
                 (e.g. /api/*)"
            ),
        ),
        (
            "path",
            json!(""),
            format!(
                "{m}.path: \"\" is not a path pattern; expected one starting with / or * \
                 (e.g. /api/*)"
            ),
        ),
        (
            "path",
            json!("/a b"),
            format!(
                "{m}.path: \"/a b\" contains spaces or control characters, which never appear \
                 in a request path (write them percent-encoded, as they arrive: %20)"
            ),
        ),
        (
            "path",
            json!(["/a"]),
            format!("{m}.path: expected a path pattern, found a list"),
        ),
        (
            "headers",
            json!({ "x-tenant": 1 }),
            format!("{m}.headers.x-tenant: expected a string, found 1"),
        ),
        (
            "headers",
            json!({ "x-tenant": null }),
            format!("{m}.headers.x-tenant: expected a string, found null"),
        ),
        (
            "headers",
            json!({ "x tenant": "acme" }),
            format!(
                "{m}.headers.x tenant: \"x tenant\" is not a header name; expected letters, \
                 digits and !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
            ),
        ),
        (
            "headers",
            json!({ "X-Tenant": "a", "x-tenant": "b" }),
            format!(
                "{m}.headers.x-tenant: \"X-Tenant\" and \"x-tenant\" name the same header \
                 (header names are case-insensitive); keep one"
            ),
        ),
        (
            "headers",
            json!({ "x-tenant": "a\r\nx-evil: 1" }),
            format!(
                "{m}.headers.x-tenant: \"a\\r\\nx-evil: 1\" contains a line break or another \
                 control character, which a header value cannot hold"
            ),
        ),
        (
            "headers",
            json!(["x-tenant"]),
            format!("{m}.headers: expected an object of header names to values, found a list"),
        ),
        (
            "tlsVersion",
            json!(["TLSv1.2", "TLSv1.1"]),
            format!(
                "{m}.tlsVersion[1]: \"TLSv1.1\" is not a TLS version that can be matched; \
                 expected TLSv1.2 or TLSv1.3"
            ),
        ),
    ] {
        assert_single(
            &refuse(route_with(&format!("/match/{key}"), value)),
            &expected,
        );
    }
    // Empty forms change nothing.
    accept(route_with("/match/domains", json!([])));
    accept(route_with("/match/headers", json!({})));
    accept(route_with("/match/tlsVersion", json!([])));
}

#[test]
fn http_conditions_are_kept() {
    let mut route = forward_route();
    set(&mut route, "/match/path", json!("/api/*"));
    set(
        &mut route,
        "/match/headers",
        json!({ "X-Tenant": "Acme*", "accept": "", "x-b": "*" }),
    );
    let (config, warnings) = accept(with_route(route));
    assert!(warnings.is_empty(), "{warnings:?}");
    let matcher = &config.routes[0].matcher;
    assert_eq!(matcher.path.as_deref(), Some("/api/*"));
    // Names lowercased and sorted; values (globs) kept as written.
    assert_eq!(
        matcher.headers,
        [
            ("accept".to_string(), String::new()),
            ("x-b".to_string(), "*".to_string()),
            ("x-tenant".to_string(), "Acme*".to_string()),
        ]
    );
    for pattern in ["*", "*.php", "/", "/CaseKept/*"] {
        let (config, _) = accept(route_with("/match/path", json!(pattern)));
        assert_eq!(config.routes[0].matcher.path.as_deref(), Some(pattern));
    }
    let (config, _) = accept(with_route(forward_route()));
    assert_eq!(config.routes[0].matcher.path, None);
    assert!(config.routes[0].matcher.headers.is_empty());
}

#[test]
fn http_conditions_need_a_route_that_reads_http() {
    let mut route = forward_route();
    set(&mut route, "/match/path", json!("/api/*"));
    set(&mut route, "/match/headers", json!({ "x-tenant": "acme" }));
    set(&mut route, "/action/tls", json!({ "mode": "passthrough" }));
    let why = "the proxy cannot see inside TLS it does not terminate (tls.mode: passthrough)";
    assert_eq!(
        refuse(with_route(route.clone())),
        [
            format!("routes[0].match.path: matching the path needs the HTTP request, but {why}"),
            format!("routes[0].match.headers: matching headers needs the HTTP request, but {why}"),
        ]
    );
    // An empty header map matches anything, so it is fine anywhere.
    remove(&mut route, "/match/path");
    set(&mut route, "/match/headers", json!({}));
    accept(with_route(route));
}

#[test]
fn sni_conditions_are_kept() {
    let mut route = forward_route();
    set(
        &mut route,
        "/match/domains",
        json!(["a.example.com", "*.Example.org"]),
    );
    set(&mut route, "/match/tlsVersion", json!("TLSv1.3"));
    let (config, _) = accept(with_route(route));
    let matcher = &config.routes[0].matcher;
    assert_eq!(matcher.domains, ["a.example.com", "*.Example.org"]);
    assert_eq!(matcher.tls_versions, [TlsVersion::Tls13]);
    let (config, _) = accept(route_with("/match/domains", json!("one.example")));
    assert_eq!(config.routes[0].matcher.domains, ["one.example"]);
    assert!(config.routes[0].matcher.tls_versions.is_empty());
}
