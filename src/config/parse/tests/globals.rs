//! The top level: defaults, global options, admission, the PROXY protocol, ignored and refused
//! globals (`parse/globals.rs`).

use super::*;
use std::net::IpAddr;
use std::time::Duration;

use crate::config::parse::from_text;
use crate::config::parse::globals::IGNORED_GLOBALS;
use crate::config::{
    ActionKind, Admission, Format, IpPattern, KeepAliveTreatment, ProxyProtocolAccept,
};

// --- the embedded default and defaults -----------------------------------------------

#[test]
fn embedded_default_is_valid() {
    let (config, warnings) =
        from_text(crate::config::DEFAULT_CONFIG_YAML, Format::Yaml).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config, Config::embedded_default());
    assert_eq!(config.bind_address, Some(IpAddr::from([127, 0, 0, 1])));
    assert_eq!(config.routes.len(), 1);
    let welcome = &config.routes[0];
    assert_eq!(welcome.name, "welcome");
    assert_eq!(welcome.matcher.ports, vec![8080]);
    assert!(welcome.action.targets.is_empty());
    assert_eq!(welcome.action.tls, None);
    let ActionKind::Respond {
        status,
        body,
        headers,
    } = &welcome.action.kind
    else {
        panic!("the welcome route responds: {:?}", welcome.action.kind);
    };
    assert_eq!(*status, 200);
    assert_eq!(
        headers,
        &[(
            "content-type".to_string(),
            "text/html; charset=utf-8".to_string()
        )]
    );
    assert!(body.contains("smartproxy is running"), "{body}");
    assert!(body.contains("smartproxy check -c my.yaml"), "{body}");
    assert!(body.contains("smartproxy run -c my.yaml"), "{body}");
}

/// The text of every `<pre>` block in the welcome page, HTML entities decoded.
fn welcome_page_blocks() -> Vec<String> {
    let config = Config::embedded_default();
    let ActionKind::Respond { body, .. } = &config.routes[0].action.kind else {
        panic!("the welcome route responds");
    };
    body.split("<pre>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</pre>"))
        .map(|(block, _)| {
            block
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
        .collect()
}

#[test]
fn the_route_shown_on_the_welcome_page_is_valid() {
    let blocks = welcome_page_blocks();
    let example = blocks
        .iter()
        .find(|block| block.contains("routes:"))
        .expect("the page shows a route");
    let (config, warnings) = from_text(example, Format::Yaml).expect("example route is valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].matcher.ports, vec![8080]);
    assert_eq!(config.routes[0].action.kind, ActionKind::Forward);
    assert!(
        blocks
            .iter()
            .any(|block| block.contains("smartproxy check -c my.yaml")
                && block.contains("smartproxy run -c my.yaml"))
    );
}

#[test]
fn defaults_follow_the_spec() {
    let (config, warnings) = accept(json!({ "routes": [] }));
    assert!(warnings.is_empty());
    let hour = 3600;
    assert_eq!(config.routes, vec![]);
    assert_eq!(config.bind_address, None);
    assert_eq!(config.initial_data_timeout, Duration::from_secs(60));
    assert_eq!(config.connection_timeout, Duration::from_secs(30));
    assert_eq!(config.inactivity_timeout, Duration::from_secs(4 * hour));
    assert_eq!(config.keep_alive_treatment, KeepAliveTreatment::Extended);
    assert_eq!(config.keep_alive_inactivity_multiplier, 6.0);
    assert_eq!(
        config.max_connection_lifetime,
        Duration::from_secs(24 * hour)
    );
    assert_eq!(
        config.extended_keep_alive_lifetime,
        Duration::from_secs(7 * 24 * hour)
    );
    assert_eq!(config.half_close_timeout, Duration::from_secs(600));
    assert_eq!(config.graceful_shutdown_timeout, Duration::from_secs(30));
    assert!(config.no_delay);
    assert!(config.keep_alive);
    assert_eq!(config.keep_alive_initial_delay, Duration::from_secs(10));
    assert_eq!(config.max_pending_data_size, 1024 * 1024);
    assert_eq!(config.admission, Admission::default());
    assert_eq!(config.proxy_protocol, None);
    assert_eq!(config.relay_buffer_size, 64 * 1024);
    assert_eq!(config.http_response_timeout, Duration::from_secs(60));
    assert_eq!(config.max_request_head_size, 64 * 1024);
    assert_eq!(config.headers_timeout, Duration::from_secs(60));
    assert_eq!(config.trusted_proxies, vec![]);
}

#[test]
fn every_global_option_is_read() {
    let (config, warnings) = accept(json!({
        "routes": [],
        "bindAddress": "::1",
        "initialDataTimeout": "5s",
        "connectionTimeout": 2500,
        "inactivityTimeout": "15m",
        "keepAliveTreatment": "immortal",
        "keepAliveInactivityMultiplier": 2.5,
        "maxConnectionLifetime": "0",
        "extendedKeepAliveLifetime": "30d",
        "halfCloseTimeout": "0s",
        "gracefulShutdownTimeout": "1.5s",
        "noDelay": false,
        "keepAlive": true,
        "keepAliveInitialDelay": "1m",
        "maxPendingDataSize": "2MiB",
        "maxConnections": 10000,
        "relayBufferSize": "16KiB",
        "httpResponseTimeout": "90s",
        "maxRequestHeadSize": 32768,
        "headersTimeout": "15s",
        "maxConnectionsPerIP": 0,
        "connectionRateLimitPerMinute": 0,
        "ipAllowList": [],
        "ipBlockList": [],
        "trustedProxies": ["10.0.0.0/8"],
    }));
    assert!(warnings.is_empty());
    assert_eq!(config.bind_address, Some("::1".parse().expect("ip")));
    assert_eq!(config.initial_data_timeout, Duration::from_secs(5));
    assert_eq!(config.connection_timeout, Duration::from_millis(2500));
    assert_eq!(config.inactivity_timeout, Duration::from_secs(900));
    assert_eq!(config.keep_alive_treatment, KeepAliveTreatment::Immortal);
    assert_eq!(config.keep_alive_inactivity_multiplier, 2.5);
    assert_eq!(config.max_connection_lifetime, Duration::ZERO);
    assert_eq!(
        config.extended_keep_alive_lifetime,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(config.half_close_timeout, Duration::ZERO);
    assert_eq!(
        config.graceful_shutdown_timeout,
        Duration::from_millis(1500)
    );
    assert!(!config.no_delay);
    assert!(config.keep_alive);
    assert_eq!(config.keep_alive_initial_delay, Duration::from_secs(60));
    assert_eq!(config.max_pending_data_size, 2 << 20);
    assert_eq!(config.admission.max_connections, 10_000);
    assert_eq!(config.relay_buffer_size, 16 << 10);
    assert_eq!(config.http_response_timeout, Duration::from_secs(90));
    assert_eq!(config.max_request_head_size, 32_768);
    assert_eq!(config.headers_timeout, Duration::from_secs(15));
    assert_eq!(
        config.trusted_proxies,
        vec!["10.0.0.0/8".parse::<ipnet::IpNet>().expect("net")]
    );

    for (treatment, expected) in [
        ("standard", KeepAliveTreatment::Standard),
        ("extended", KeepAliveTreatment::Extended),
        ("immortal", KeepAliveTreatment::Immortal),
    ] {
        let (config, _) = accept(json!({ "routes": [], "keepAliveTreatment": treatment }));
        assert_eq!(config.keep_alive_treatment, expected);
    }
}

#[test]
fn global_option_errors() {
    const OK: &str = "(accepted)";
    for (key, value, expected) in [
        (
            "bindAddress",
            json!("localhost"),
            "bindAddress: \"localhost\" is not an IP address",
        ),
        (
            "bindAddress",
            json!(127),
            "bindAddress: expected an IP address, found 127",
        ),
        (
            "keepAliveTreatment",
            json!("forever"),
            "keepAliveTreatment: \"forever\" is not a keep-alive treatment; expected \
             standard, extended or immortal",
        ),
        (
            "keepAliveInactivityMultiplier",
            json!(0.5),
            "keepAliveInactivityMultiplier: 0.5 is less than 1",
        ),
        (
            "keepAliveInactivityMultiplier",
            json!("6"),
            "keepAliveInactivityMultiplier: expected a number ≥ 1",
        ),
        (
            "keepAliveInactivityMultiplier",
            json!(1e300),
            "longer than the longest allowed duration",
        ),
        ("keepAliveInactivityMultiplier", json!(1), OK),
        (
            "noDelay",
            json!("yes"),
            "noDelay: expected true or false, found the string \"yes\"",
        ),
        (
            "inactivityTimeout",
            json!("4 hours"),
            "inactivityTimeout: \"4 hours\" has an unknown unit `hours`",
        ),
        (
            "halfCloseTimeout",
            json!(-1),
            "halfCloseTimeout: -1 is negative",
        ),
        (
            "maxPendingDataSize",
            json!(0),
            "maxPendingDataSize: 0 would refuse every client",
        ),
        ("maxPendingDataSize", json!("1 MiB "), OK),
        (
            "maxRequestHeadSize",
            json!("0KiB"),
            "maxRequestHeadSize: 0 would refuse every HTTP request",
        ),
        (
            "maxConnections",
            json!(-1),
            "maxConnections: expected a whole number ≥ 0 (0 = unlimited), found -1",
        ),
        (
            "maxConnections",
            json!(1.5),
            "maxConnections: expected a whole number ≥ 0",
        ),
        (
            "relayBufferSize",
            json!(512),
            "relayBufferSize: 512 (512 bytes) is outside the allowed range 1KiB to 16MiB",
        ),
        (
            "relayBufferSize",
            json!("17MiB"),
            "relayBufferSize: \"17MiB\" (17825792 bytes) is outside the allowed range",
        ),
        ("relayBufferSize", json!("1KiB"), OK),
        ("relayBufferSize", json!("16MiB"), OK),
        (
            "keepAliveInitialDelay",
            json!(0),
            "keepAliveInitialDelay: 0 is shorter than 1s",
        ),
        (
            "keepAliveInitialDelay",
            json!("500ms"),
            "keepAliveInitialDelay: \"500ms\" is shorter than 1s",
        ),
        (
            "keepAliveInitialDelay",
            json!("10h"),
            "keepAliveInitialDelay: \"10h\" is longer than the kernel accepts",
        ),
        ("keepAliveInitialDelay", json!("1s"), OK),
    ] {
        let config = json!({ "routes": [], key: value.clone() });
        if expected == OK {
            accept(config);
            continue;
        }
        let errors = refuse(config);
        assert_eq!(errors.len(), 1, "{key}={value}: {errors:#?}");
        assert!(
            errors[0].starts_with(expected) || errors[0].contains(expected),
            "{key}={value}: {:?} does not match {expected:?}",
            errors[0]
        );
    }
}

#[test]
fn keep_alive_initial_delay_zero_is_fine_when_keepalive_is_off() {
    let (config, _) = accept(json!({
        "routes": [], "keepAlive": false, "keepAliveInitialDelay": 0
    }));
    assert!(!config.keep_alive);
    assert_eq!(config.keep_alive_initial_delay, Duration::ZERO);
}

#[test]
fn root_must_be_an_object_with_routes() {
    assert_single(
        &refuse(json!({})),
        "routes: required key missing: a list of routes (`routes: []` is valid)",
    );
    assert_single(
        &refuse(json!({ "routes": { "web": {} } })),
        "routes: expected a list of routes, found an object",
    );
    assert_has(
        &refuse(json!([1, 2])),
        "expected an object with the global options",
    );
    let errors = from_text("# nothing here\n", Format::Yaml).expect_err("empty");
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].message.starts_with("the config is empty"));
    assert_eq!(errors.0[0].path, "");
}

// --- unknown keys and ignored SmartProxy options -------------------------------------

#[test]
fn ignored_smartproxy_options_are_warnings() {
    let (config, warnings) = accept(json!({
        "routes": [],
        "socketTimeout": 3_600_000,
        "enableDetailedLogging": true,
        "forwardingEngine": "node",
    }));
    assert_eq!(config.routes, vec![]);
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "enableDetailedLogging: SmartProxy option accepted but ignored by smartproxy",
            "forwardingEngine: SmartProxy option accepted but ignored by smartproxy",
            "socketTimeout: SmartProxy option accepted but ignored by smartproxy",
        ]
    );
    for key in IGNORED_GLOBALS {
        let (_, warnings) = accept(json!({ "routes": [], *key: null }));
        assert_eq!(warnings.len(), 1, "{key}");
        assert_eq!(warnings[0].path, *key);
    }
}

#[test]
fn a_refused_config_reports_only_errors() {
    let errors = refuse(json!({ "routes": [], "socketTimeout": 1, "foo": 1 }));
    assert_single(&errors, "foo: unknown key");
}

// --- admission --------------------------------------------------------------------

#[test]
fn global_admission() {
    let (config, warnings) = accept(json!({
        "routes": [],
        "maxConnections": 5000,
        "maxConnectionsPerIP": 100,
        "connectionRateLimitPerMinute": 300,
        "ipAllowList": ["10.0.0.0/8", "192.168.1.7", "172.16.*", "2001:db8::/32"],
        "ipBlockList": ["10.1.2.3/16", "::ffff:10.9.0.1", "::ffff:10.8.0.0/112", "::FFFF:10.7.*"],
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    let net = |text: &str| IpPattern::Net(text.parse().expect("net"));
    assert_eq!(
        config.admission,
        Admission {
            ip_allow_list: vec![
                net("10.0.0.0/8"),
                net("192.168.1.7/32"),
                IpPattern::Glob("172.16.*".into()),
                net("2001:db8::/32"),
            ],
            // Host bits are cleared, and IPv4-mapped IPv6 is stored as the IPv4 it names.
            ip_block_list: vec![
                net("10.1.0.0/16"),
                net("10.9.0.1/32"),
                net("10.8.0.0/16"),
                IpPattern::Glob("10.7.*".into()),
            ],
            max_connections: 5000,
            max_connections_per_ip: 100,
            connection_rate_limit_per_minute: 300,
        }
    );
    // Zero and empty mean no limit and no list.
    let (config, _) = accept(json!({
        "routes": [],
        "maxConnectionsPerIP": 0,
        "connectionRateLimitPerMinute": 0,
        "ipAllowList": [],
        "ipBlockList": [],
    }));
    assert!(config.admission.is_empty());
}

#[test]
fn global_admission_errors() {
    assert_eq!(
        refuse(json!({
            "routes": [],
            "maxConnectionsPerIP": -1,
            "connectionRateLimitPerMinute": "300/m",
            "ipAllowList": "10.0.0.0/8",
            "ipBlockList": ["nope", 10, "10.0.0.0/33", "::ffff:10.0.0.0/95"],
        })),
        [
            "maxConnectionsPerIP: expected a whole number ≥ 0 (0 = unlimited), found -1",
            "connectionRateLimitPerMinute: expected a whole number ≥ 0 (0 = unlimited), found \
             the string \"300/m\"",
            "ipAllowList: expected a list of IP addresses, CIDRs or globs, found the string \
             \"10.0.0.0/8\"",
            "ipBlockList[1]: expected IP addresses, CIDRs or globs, found 10",
        ]
    );
    assert_eq!(
        refuse(json!({
            "routes": [],
            "ipBlockList": ["nope", "10.0.0.0/33", "10.0.0.*/8", ""],
        })),
        [
            "ipBlockList[0]: \"nope\" is not a CIDR (e.g. 10.0.0.0/8), an IP address (e.g. \
             192.168.1.10) or a glob (e.g. 192.168.1.*)",
            "ipBlockList[1]: \"10.0.0.0/33\" is not a CIDR (e.g. 10.0.0.0/8), an IP address \
             (e.g. 192.168.1.10) or a glob (e.g. 192.168.1.*)",
            "ipBlockList[2]: \"10.0.0.*/8\" is not a CIDR (e.g. 10.0.0.0/8), an IP address \
             (e.g. 192.168.1.10) or a glob (e.g. 192.168.1.*)",
            "ipBlockList[3]: \"\" is not a CIDR (e.g. 10.0.0.0/8), an IP address (e.g. \
             192.168.1.10) or a glob (e.g. 192.168.1.*)",
        ]
    );
}

#[test]
fn an_ipv4_mapped_network_too_wide_for_ipv4_stays_ipv6() {
    let (config, _) = accept(json!({ "routes": [], "ipAllowList": ["::ffff:0:0/95"] }));
    assert_eq!(
        config.admission.ip_allow_list,
        [IpPattern::Net("::fffe:0:0/95".parse().expect("net"))]
    );
    // An IPv6 glob is kept as written.
    let (config, _) = accept(json!({ "routes": [], "ipAllowList": ["::ffff:*", "fe80::*"] }));
    assert_eq!(
        config.admission.ip_allow_list,
        [
            IpPattern::Glob("::ffff:*".into()),
            IpPattern::Glob("fe80::*".into())
        ]
    );
}

// --- refused ("not supported yet") features ------------------------------------------

#[test]
fn global_features_not_supported_yet() {
    for key in ["acme", "admin", "metrics", "defaults"] {
        let errors = refuse(json!({ "routes": [], key: {} }));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(&format!("{key}: not supported yet by this version")),
            "{errors:?}"
        );
        assert_single(
            &refuse(json!({ "routes": [], key: true })),
            &format!("{key}: expected an object, found true"),
        );
    }
}

#[test]
fn the_extended_inactivity_limit_is_checked_whichever_key_is_written() {
    // The default multiplier (6) makes a 36500d inactivityTimeout too long.
    let errors = refuse(json!({"inactivityTimeout": "36500d", "routes": []}));
    assert_single(
        &errors,
        "inactivityTimeout: inactivityTimeout × 6 is longer than the longest allowed duration (36500d)",
    );
    let errors = refuse(json!({
        "inactivityTimeout": "10000d", "keepAliveInactivityMultiplier": 4, "routes": []
    }));
    assert_single(
        &errors,
        "keepAliveInactivityMultiplier: inactivityTimeout × 4 is longer than the longest allowed duration (36500d)",
    );
    assert_eq!(
        crate::config::parse_duration(&json!(crate::config::units::MAX_DURATION_TEXT)),
        Ok(crate::config::units::MAX_DURATION)
    );
}

// --- PROXY protocol -----------------------------------------------------------------

fn proxy_protocol(value: Value) -> (Option<ProxyProtocolAccept>, Vec<String>) {
    let (config, warnings) = accept(value);
    (
        config.proxy_protocol,
        warnings.iter().map(ToString::to_string).collect(),
    )
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().expect("net")).collect()
}

#[test]
fn proxy_protocol_accept() {
    let (parsed, warnings) = proxy_protocol(json!({
        "routes": [],
        "proxyProtocol": {
            "accept": ["10.0.0.0/8", "192.168.1.7", "10.1.2.3/16", "::ffff:172.16.0.0/108", "::1"]
        }
    }));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        parsed,
        Some(ProxyProtocolAccept {
            accept: nets(&[
                "10.0.0.0/8",
                "192.168.1.7/32",
                "10.1.0.0/16",
                "172.16.0.0/12",
                "::1/128"
            ]),
            required: true,
        })
    );
    // One string is a one-element list; `required` may be turned off.
    let (parsed, _) = proxy_protocol(json!({
        "routes": [],
        "proxyProtocol": { "accept": "::ffff:10.0.0.1", "required": false }
    }));
    assert_eq!(
        parsed,
        Some(ProxyProtocolAccept {
            accept: nets(&["10.0.0.1/32"]),
            required: false,
        })
    );
    // Absent: no peer may send a header.
    assert_eq!(proxy_protocol(json!({ "routes": [] })).0, None);
}

#[test]
fn proxy_protocol_errors() {
    let p = "proxyProtocol";
    for (value, expected) in [
        (
            json!(true),
            vec![format!(
                "{p}: expected an object {{accept, required}}, found true"
            )],
        ),
        (
            json!({}),
            vec![format!(
                "{p}.accept: required key missing: the peers (CIDRs or IP addresses) trusted to \
                 send a PROXY header, e.g. `proxyProtocol: {{accept: [\"10.0.0.0/8\"]}}`"
            )],
        ),
        (
            json!({ "accept": [] }),
            vec![format!(
                "{p}.accept: an empty list trusts no peer to send a PROXY header; list the peers \
                 that may (or leave `proxyProtocol` out)"
            )],
        ),
        (
            json!({ "accept": ["10.0.0.*", "lb.internal"], "required": "yes", "trusted": [] }),
            vec![
                format!("{p}.trusted: unknown key; expected one of: accept, required"),
                format!(
                    "{p}.accept[0]: \"10.0.0.*\" is a glob; trusted proxies are CIDRs (e.g. \
                     10.0.0.0/8) or IP addresses (e.g. 192.168.1.10)"
                ),
                format!(
                    "{p}.accept[1]: \"lb.internal\" is not a CIDR (e.g. 10.0.0.0/8) or an IP \
                     address (e.g. 192.168.1.10)"
                ),
                format!("{p}.required: expected true or false, found the string \"yes\""),
            ],
        ),
        (
            json!({ "accept": 10 }),
            vec![format!(
                "{p}.accept: expected a CIDR or IP address or a list of them, found 10"
            )],
        ),
    ] {
        assert_eq!(
            refuse(json!({ "routes": [], "proxyProtocol": value.clone() })),
            expected,
            "{value}"
        );
    }
}

#[test]
fn smartproxy_accept_proxy_protocol_is_read_as_proxy_protocol() {
    let (parsed, warnings) = proxy_protocol(json!({
        "routes": [],
        "acceptProxyProtocol": true,
        "proxyIPs": ["10.0.0.5", "::ffff:10.1.0.0/112"],
    }));
    assert_eq!(
        parsed,
        Some(ProxyProtocolAccept {
            accept: nets(&["10.0.0.5/32", "10.1.0.0/16"]),
            required: false,
        })
    );
    assert_eq!(
        warnings,
        [
            "acceptProxyProtocol: read with `proxyIPs` as `proxyProtocol: {accept: <proxyIPs>, \
          required: false}` (peers in proxyIPs may send a PROXY header, and need not); write \
          that form instead (`required: true`, the default, refuses a listed peer that sends \
          none)"
        ]
    );
    // One string works as with trustedProxies.
    let (parsed, _) = proxy_protocol(json!({
        "routes": [], "acceptProxyProtocol": true, "proxyIPs": "127.0.0.1"
    }));
    assert_eq!(parsed.map(|p| p.accept), Some(nets(&["127.0.0.1/32"])));
}

#[test]
fn smartproxy_proxy_protocol_switch_errors() {
    let both = "`proxyProtocol` is given too; keep only `proxyProtocol: {accept, required}` \
                (acceptProxyProtocol and proxyIPs are SmartProxy's older form of it)";
    for (config, expected) in [
        (
            json!({ "acceptProxyProtocol": true }),
            vec![
                "acceptProxyProtocol: true without `proxyIPs` would trust no peer to send a \
                 PROXY header; list the peers that may, e.g. `proxyProtocol: {accept: \
                 [\"10.0.0.0/8\"]}`"
                    .to_string(),
            ],
        ),
        (
            json!({ "acceptProxyProtocol": true, "proxyIPs": [] }),
            vec![
                "acceptProxyProtocol: true without `proxyIPs` would trust no peer to send a \
                 PROXY header; list the peers that may, e.g. `proxyProtocol: {accept: \
                 [\"10.0.0.0/8\"]}`"
                    .to_string(),
            ],
        ),
        (
            json!({ "proxyIPs": ["10.0.0.1"] }),
            vec![
                "proxyIPs: read only with `acceptProxyProtocol: true`; to accept PROXY headers \
                 from these peers write `proxyProtocol: {accept: [\"10.0.0.0/8\"]}` instead"
                    .to_string(),
            ],
        ),
        (
            json!({
                "acceptProxyProtocol": true,
                "proxyIPs": ["10.0.0.1"],
                "proxyProtocol": { "accept": "10.0.0.1" }
            }),
            vec![format!("acceptProxyProtocol: {both}")],
        ),
        (
            // proxyProtocol is still checked.
            json!({ "proxyIPs": ["10.0.0.1"], "proxyProtocol": { "accept": [] } }),
            vec![
                format!("proxyIPs: {both}"),
                "proxyProtocol.accept: an empty list trusts no peer to send a PROXY header; \
                 list the peers that may (or leave `proxyProtocol` out)"
                    .to_string(),
            ],
        ),
        (
            json!({ "acceptProxyProtocol": true, "proxyIPs": ["10.0.0.*", 7] }),
            vec!["proxyIPs[1]: expected a CIDR or IP address, found 7".to_string()],
        ),
        (
            json!({ "acceptProxyProtocol": true, "proxyIPs": ["10.0.0.*"] }),
            vec![
                "proxyIPs[0]: \"10.0.0.*\" is a glob; trusted proxies are CIDRs (e.g. \
                 10.0.0.0/8) or IP addresses (e.g. 192.168.1.10)"
                    .to_string(),
            ],
        ),
        (
            json!({ "sendProxyProtocol": true }),
            vec![
                "sendProxyProtocol: a PROXY header is sent per target here: set \
                 `sendProxyProtocol: v1` (or v2) on each target that expects one \
                 (`targets[].sendProxyProtocol`)"
                    .to_string(),
            ],
        ),
        (
            json!({ "sendProxyProtocol": "v2" }),
            vec![
                "sendProxyProtocol: a PROXY header is sent per target here: set \
                 `sendProxyProtocol: v1` (or v2) on each target that expects one \
                 (`targets[].sendProxyProtocol`)"
                    .to_string(),
            ],
        ),
    ] {
        let mut config = config;
        set(&mut config, "/routes", json!([]));
        assert_eq!(refuse(config.clone()), expected, "{config}");
    }
    // Off, they change nothing: accepted with the usual warning.
    for (key, value) in [
        ("acceptProxyProtocol", json!(false)),
        ("sendProxyProtocol", json!(false)),
        ("proxyIPs", json!([])),
        ("proxyIPs", json!("")),
    ] {
        let (config, warnings) = accept(json!({key: value, "routes": []}));
        assert_eq!(config.proxy_protocol, None);
        assert_eq!(
            warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "{key}: SmartProxy option accepted but ignored by smartproxy"
            )]
        );
    }
    // `proxyProtocol` beside switched-off legacy keys is fine.
    let (config, _) = accept(json!({
        "routes": [],
        "acceptProxyProtocol": false,
        "proxyIPs": [],
        "proxyProtocol": { "accept": "10.0.0.0/8" },
    }));
    assert_eq!(
        config.proxy_protocol.map(|p| p.accept),
        Some(nets(&["10.0.0.0/8"]))
    );
}

// --- HTTP globals --------------------------------------------------------------------

#[test]
fn headers_timeout() {
    let (config, _) = accept(json!({ "routes": [], "headersTimeout": 0 }));
    assert_eq!(config.headers_timeout, Duration::ZERO);
    let (config, _) = accept(json!({ "routes": [], "headersTimeout": 2500 }));
    assert_eq!(config.headers_timeout, Duration::from_millis(2500));
    let errors = refuse(json!({ "routes": [], "headersTimeout": "1 minute" }));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("headersTimeout: \"1 minute\" has an unknown unit `minute`"),
        "{errors:?}"
    );
    assert_single(
        &refuse(json!({ "routes": [], "headerTimeout": "5s" })),
        "headerTimeout: unknown key; did you mean `headersTimeout`?",
    );
}

#[test]
fn trusted_proxies() {
    let nets = |value: Value| {
        let (config, warnings) = accept(json!({ "routes": [], "trustedProxies": value }));
        assert!(warnings.is_empty(), "{warnings:?}");
        config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nets(json!([
            "10.0.0.0/8",
            "192.168.1.7",
            "2001:db8::/32",
            "::1",
            "10.1.2.3/16",
            "::ffff:172.16.0.1",
            "::ffff:172.16.0.0/108",
            "::ffff:0:0/96",
            "::ffff:0:0/95"
        ])),
        [
            "10.0.0.0/8",
            "192.168.1.7/32",
            "2001:db8::/32",
            "::1/128",
            "10.1.0.0/16",
            "172.16.0.1/32",
            "172.16.0.0/12",
            "0.0.0.0/0",
            "::fffe:0:0/95",
        ]
    );
    // A single string is a one-element list; [] is none.
    assert_eq!(nets(json!("127.0.0.1")), ["127.0.0.1/32"]);
    assert!(nets(json!([])).is_empty());

    assert_eq!(
        refuse(json!({
            "routes": [],
            "trustedProxies": ["10.0.0.0/33", "10.0.0.*", "proxy.internal", 7]
        })),
        ["trustedProxies[3]: expected a CIDR or IP address, found 7",]
    );
    assert_eq!(
        refuse(json!({
            "routes": [],
            "trustedProxies": ["10.0.0.0/33", "10.0.0.*", "proxy.internal", ""]
        })),
        [
            "trustedProxies[0]: \"10.0.0.0/33\" is not a CIDR (e.g. 10.0.0.0/8) or an IP \
             address (e.g. 192.168.1.10)",
            "trustedProxies[1]: \"10.0.0.*\" is a glob; trusted proxies are CIDRs (e.g. \
             10.0.0.0/8) or IP addresses (e.g. 192.168.1.10)",
            "trustedProxies[2]: \"proxy.internal\" is not a CIDR (e.g. 10.0.0.0/8) or an IP \
             address (e.g. 192.168.1.10)",
            "trustedProxies[3]: \"\" is not a CIDR (e.g. 10.0.0.0/8) or an IP address (e.g. \
             192.168.1.10)",
        ]
    );
    assert_single(
        &refuse(json!({ "routes": [], "trustedProxies": { "cidr": "10.0.0.0/8" } })),
        "trustedProxies: expected a CIDR or IP address or a list of them, found an object",
    );
}
