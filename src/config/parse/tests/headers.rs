//! `action.headers` header rules, header names and values, and templates (`parse/headers.rs`).

use super::*;
use crate::config::HeaderRules;

fn rules_of(headers: Value) -> HeaderRules {
    let (config, warnings) = accept(route_with("/action/headers", headers));
    assert!(warnings.is_empty(), "{warnings:?}");
    config.routes[0].action.headers.clone()
}

fn set_to(name: &str, value: &str) -> (String, Option<String>) {
    (name.to_string(), Some(value.to_string()))
}

#[test]
fn header_rules_set_and_remove() {
    assert_eq!(
        rules_of(json!({
            "request": {
                "X-Real-IP": "{clientIp}",
                "x-forwarded-prefix": "/app",
                "Host": "{domain}:{port}",
                "cookie": null
            },
            "response": {
                "server": null,
                "strict-transport-security": "max-age=31536000",
                "x-request-uri": "{path}{query}"
            }
        })),
        HeaderRules {
            // Lowercase names, sorted by name; each name once.
            request: vec![
                ("cookie".to_string(), None),
                set_to("host", "{domain}:{port}"),
                set_to("x-forwarded-prefix", "/app"),
                set_to("x-real-ip", "{clientIp}"),
            ],
            response: vec![
                ("server".to_string(), None),
                set_to("strict-transport-security", "max-age=31536000"),
                set_to("x-request-uri", "{path}{query}"),
            ],
        }
    );
    assert_eq!(rules_of(json!({})), HeaderRules::default());
    assert_eq!(rules_of(json!({ "response": {} })), HeaderRules::default());
    // Braces that are not a `{word}` are kept as written; an empty value is a value.
    assert_eq!(
        rules_of(json!({ "request": { "x-json": "{\"a\": {}} {", "x-empty": "" } })).request,
        [set_to("x-empty", ""), set_to("x-json", "{\"a\": {}} {")]
    );
}

#[test]
fn header_rule_errors() {
    let h = "routes[0].action.headers";
    let templates = "the templates are {domain}, {clientIp}, {path}, {query}, {port}";
    for (headers, expected) in [
        (
            json!({ "request": { "x-a": "{host}" } }),
            vec![format!(
                "{h}.request.x-a: \"{{host}}\" is not a template (did you mean {{domain}}, the \
                 Host without its port?); {templates}"
            )],
        ),
        (
            json!({ "request": { "x-a": "{clientIP}" } }),
            vec![format!(
                "{h}.request.x-a: \"{{clientIP}}\" is not a template (did you mean \
                 {{clientIp}}? templates are case-sensitive); {templates}"
            )],
        ),
        (
            json!({ "response": { "x-a": "{domain} at {timestamp}" } }),
            vec![format!(
                "{h}.response.x-a: \"{{timestamp}}\" is not a template; {templates}"
            )],
        ),
        (
            json!({ "request": { "x-a": "a\nb" } }),
            vec![format!(
                "{h}.request.x-a: \"a\\nb\" contains a line break or another control \
                 character, which a header value cannot hold"
            )],
        ),
        (
            json!({ "request": { "x-a": 1, "x-b": ["v"] } }),
            vec![
                format!(
                    "{h}.request.x-a: expected a string (or null to remove the header), found 1"
                ),
                format!(
                    "{h}.request.x-b: expected a string (or null to remove the header), found a \
                     list"
                ),
            ],
        ),
        (
            json!({ "request": { "": "v", "x:a": "v", "x-ä": "v" } }),
            vec![
                format!(
                    "{h}.request.: \"\" is not a header name; expected letters, digits and \
                     !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
                ),
                format!(
                    "{h}.request.x-ä: \"x-ä\" is not a header name; expected letters, digits \
                     and !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
                ),
                format!(
                    "{h}.request.x:a: \"x:a\" is not a header name; expected letters, digits \
                     and !#$%&'*+-.^_`|~ only (e.g. x-forwarded-prefix)"
                ),
            ],
        ),
        (
            json!({ "response": { "Server": "a", "server": null } }),
            vec![format!(
                "{h}.response.server: \"Server\" and \"server\" name the same header (header \
                 names are case-insensitive); keep one"
            )],
        ),
        (
            json!({ "request": { "X.Trace": "a", "x.trace": "b" } }),
            vec![format!(
                "{h}.request.x.trace: \"X.Trace\" and \"x.trace\" name the same header \
                 (header names are case-insensitive); keep one"
            )],
        ),
        (
            json!({ "request": { "Transfer-Encoding": null, "connection": "close" } }),
            vec![
                format!(
                    "{h}.request.connection: \"connection\" is managed by the proxy (message \
                     framing and hop-by-hop headers) and cannot be set or removed here"
                ),
                format!(
                    "{h}.request.Transfer-Encoding: \"transfer-encoding\" is managed by the \
                     proxy (message framing and hop-by-hop headers) and cannot be set or \
                     removed here"
                ),
            ],
        ),
        (
            json!({ "requests": {} }),
            vec![format!(
                "{h}.requests: unknown key; did you mean `request`?"
            )],
        ),
        (
            json!({ "request": "x-a: 1" }),
            vec![format!(
                "{h}.request: expected an object of header names to values, found the string \
                 \"x-a: 1\""
            )],
        ),
        (
            json!(["x-a"]),
            vec![format!(
                "{h}: expected an object with `request` and/or `response`, found a list"
            )],
        ),
    ] {
        assert_eq!(
            refuse(route_with("/action/headers", headers.clone())),
            expected,
            "{headers}"
        );
    }
}

#[test]
fn header_rules_need_http_the_proxy_can_see() {
    let mut route = forward_route();
    set(&mut route, "/action/tls", json!({ "mode": "passthrough" }));
    set(
        &mut route,
        "/action/headers",
        json!({ "response": { "server": null } }),
    );
    assert_single(
        &refuse(with_route(route.clone())),
        "routes[0].action.headers: header rules need the HTTP messages, but the proxy cannot \
         see inside TLS it does not terminate (tls.mode: passthrough)",
    );
    // Empty rules change nothing.
    set(
        &mut route,
        "/action/headers",
        json!({ "request": {}, "response": {} }),
    );
    accept(with_route(route));
}
