//! Route-level `security` (`parse/security.rs`).

use super::*;

#[test]
fn route_security() {
    let s = "routes[0].security";
    let admission = "not supported yet by this version (arrives with admission control)";
    accept(route_with(
        "/security",
        json!({
            "ipAllowList": [], "ipBlockList": [], "maxConnections": 0, "maxConnectionsPerIP": 0,
            "rateLimit": { "enabled": false, "maxRequests": 10 },
            "basicAuth": { "enabled": false }
        }),
    ));
    for (security, expected) in [
        (
            json!({ "ipAllowList": ["10.0.0.0/8"] }),
            format!("{s}.ipAllowList: {admission}"),
        ),
        (
            json!({ "maxConnections": 5 }),
            format!("{s}.maxConnections: {admission}"),
        ),
        (
            json!({ "maxConnectionsPerIP": -1 }),
            format!(
                "{s}.maxConnectionsPerIP: expected a whole number ≥ 0 (0 = unlimited), \
                 found -1"
            ),
        ),
        (
            json!({ "rateLimit": { "maxRequests": 10, "window": 60 } }),
            format!("{s}.rateLimit: {admission}"),
        ),
        (
            json!({ "basicAuth": { "users": [] } }),
            format!("{s}.basicAuth: {admission}"),
        ),
        (
            json!({ "jwtAuth": { "enabled": false, "secrett": "x" } }),
            format!("{s}.jwtAuth.secrett: unknown key; did you mean `secret`?"),
        ),
        (
            json!({ "firewall": true }),
            format!(
                "{s}.firewall: unknown key; expected one of: ipAllowList, ipBlockList, \
                 maxConnections, maxConnectionsPerIP, rateLimit, basicAuth, jwtAuth"
            ),
        ),
        (json!([]), format!("{s}: expected an object, found a list")),
    ] {
        assert_single(
            &refuse(route_with("/security", security.clone())),
            &expected,
        );
    }
}
