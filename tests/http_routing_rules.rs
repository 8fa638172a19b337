//! HTTP routing and header rules end to end: routes picked per request by Host, path, headers,
//! priority and client address; hop-by-hop headers, X-Forwarded-* and `action.headers` on the
//! way to the backend and back.

mod common;

use std::net::Ipv4Addr;

use common::http::*;
use common::tls::routes_config;
use common::*;
use serde_json::{Value, json};

/// A forward route to 127.0.0.1:`backend` on `port`, with `matcher`'s fields added to its match.
fn forward_route(name: &str, port: u16, backend: u16, matcher: Value) -> Value {
    let mut route = json!({
        "name": name,
        "match": {"ports": port},
        "action": {"type": "forward", "targets": [{"host": "127.0.0.1", "port": backend}]}
    });
    if let (Some(base), Value::Object(extra)) = (route["match"].as_object_mut(), matcher) {
        base.extend(extra);
    }
    route
}

fn with_priority(mut route: Value, priority: i64) -> Value {
    route["priority"] = json!(priority);
    route
}

/// Asserts that `got` came from the echo backend `backend` and returns what it saw.
fn from_backend(got: &Got, backend: &str) -> Value {
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = got.json();
    assert_eq!(seen["backend"], backend, "{seen}");
    seen
}

#[tokio::test]
async fn host_routing_strips_the_port_ignores_case_and_matches_wildcards() {
    let (exact, _) = echo_http_backend("exact").await;
    let (wild, _) = echo_http_backend("wild").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route("exact", port, exact, json!({"domains": "exact.test"})),
            forward_route("wild", port, wild, json!({"domains": ["*.wild.test"]})),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    for (host, backend) in [
        ("exact.test", "exact"),
        ("exact.test:8080", "exact"),
        ("EXACT.Test:1", "exact"),
        ("a.wild.test", "wild"),
        ("a.b.WILD.test:443", "wild"),
    ] {
        let seen = from_backend(&send(&mut client, host, "/", &[]).await, backend);
        assert_eq!(seen["headers"]["host"], host, "the Host goes on as sent");
    }
    // `*.wild.test` needs one more label; other names match nothing.
    for host in [
        "wild.test",
        "notwild.test",
        "exact.test.evil",
        "xexact.test",
    ] {
        let got = send(&mut client, host, "/", &[]).await;
        assert_eq!(got.status, 404, "{host}: {}", got.text());
    }
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn path_globs_are_case_sensitive_and_ignore_the_query() {
    let (api, _) = echo_http_backend("api").await;
    let (php, _) = echo_http_backend("php").await;
    let (web, _) = echo_http_backend("web").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route("api", port, api, json!({"path": "/api/*"})),
            forward_route("php", port, php, json!({"path": "*.php"})),
            forward_route("web", port, web, json!({})),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    for (path, backend) in [
        ("/api/x/y", "api"),
        ("/api/", "api"),
        ("/api/x?y=1", "api"),
        ("/api/a.php", "api"),
        ("/api", "web"),
        ("/API/x", "web"),
        ("/Api/x", "web"),
        ("/apix", "web"),
        ("/web?next=/api/x", "web"),
        ("/index.php", "php"),
        ("/deep/dir/index.php?a=b", "php"),
        ("/index.PHP", "web"),
        ("/", "web"),
    ] {
        let seen = from_backend(&send(&mut client, "any.test", path, &[]).await, backend);
        assert_eq!(
            seen["uri"], path,
            "path and query reach the backend unchanged"
        );
    }
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn header_matches_need_every_listed_header_with_a_case_insensitive_value_glob() {
    let (both, _) = echo_http_backend("both").await;
    let (tenant, _) = echo_http_backend("tenant").await;
    let (rest, _) = echo_http_backend("rest").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route(
                "both",
                port,
                both,
                json!({"headers": {"x-tenant": "acme*", "accept": "*json*"}}),
            ),
            forward_route(
                "tenant",
                port,
                tenant,
                json!({"headers": {"X-Tenant": "acme*"}}),
            ),
            forward_route("rest", port, rest, json!({})),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[("x-tenant", "ACME-corp"), ("accept", "application/JSON")],
            "both",
        ),
        (&[("X-TENANT", "acme"), ("Accept", "text/json")], "both"),
        (&[("x-tenant", "Acme"), ("accept", "text/html")], "tenant"),
        (&[("x-tenant", "acme")], "tenant"),
        (&[("x-tenant", "other-acme")], "rest"),
        (&[("accept", "application/json")], "rest"),
        (&[], "rest"),
    ];
    for (headers, backend) in cases {
        let got = send(&mut client, "h.test", "/", headers).await;
        assert_eq!(got.status, 200, "{headers:?}");
        assert_eq!(got.json()["backend"], backend, "{headers:?}");
    }
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn priority_wins_and_equal_priorities_keep_file_order() {
    let names = ["fallback", "low", "high", "tie-a", "tie-b"];
    let mut ports = Vec::new();
    for name in names {
        ports.push(echo_http_backend(name).await.0);
    }
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            // First in the file but last by priority.
            with_priority(forward_route("fallback", port, ports[0], json!({})), -1),
            forward_route("low", port, ports[1], json!({"domains": "prio.test"})),
            with_priority(
                forward_route(
                    "high",
                    port,
                    ports[2],
                    json!({"domains": "prio.test", "path": "/p/*"}),
                ),
                10,
            ),
            with_priority(
                forward_route("tie-a", port, ports[3], json!({"domains": "tie.test"})),
                5,
            ),
            with_priority(
                forward_route("tie-b", port, ports[4], json!({"domains": "tie.test"})),
                5,
            ),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    for (host, path, backend) in [
        ("prio.test", "/p/x", "high"),
        ("prio.test", "/q", "low"),
        ("tie.test", "/p/x", "tie-a"),
        ("tie.test", "/", "tie-a"),
        ("other.test", "/", "fallback"),
    ] {
        from_backend(&send(&mut client, host, path, &[]).await, backend);
    }
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn client_ip_patterns_pick_routes_by_the_peer_address() {
    let (ten, ten_count) = echo_http_backend("ten").await;
    let (two, _) = echo_http_backend("two").await;
    let (glob, _) = echo_http_backend("glob").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route(
                "ten",
                port,
                ten,
                json!({"domains": "ip.test", "clientIp": ["10.0.0.0/8"]}),
            ),
            forward_route(
                "two",
                port,
                two,
                json!({"domains": "ip.test", "clientIp": "127.0.0.2"}),
            ),
            forward_route(
                "glob",
                port,
                glob,
                json!({"domains": "ip.test", "clientIp": ["192.168.1.*", "127.0.0.*"]}),
            ),
        ],
        json!({}),
    ))
    .await;
    for (source, backend) in [
        (Ipv4Addr::new(127, 0, 0, 1), "glob"),
        (Ipv4Addr::new(127, 0, 0, 2), "two"),
        (Ipv4Addr::new(127, 0, 0, 3), "glob"),
    ] {
        let mut client = h1_client_from(source, port).await;
        let seen = from_backend(&send(&mut client, "ip.test", "/", &[]).await, backend);
        assert_eq!(seen["headers"]["x-forwarded-for"], source.to_string());
    }
    assert_eq!(ten_count.load(std::sync::atomic::Ordering::SeqCst), 0);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn one_keep_alive_connection_reaches_a_different_route_per_request() {
    let (a, _) = echo_http_backend("a").await;
    let (b, _) = echo_http_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route("a", port, a, json!({"domains": "a.test"})),
            forward_route("b", port, b, json!({"domains": "b.test", "path": "/b/*"})),
            json!({"name": "answer", "match": {"ports": port, "domains": "answer.test"},
                   "action": {"type": "respond", "respond": {"body": "answered\n"}}}),
            json!({"name": "moved", "match": {"ports": port, "domains": "moved.test"},
                   "action": {"type": "redirect",
                              "redirect": {"to": "http://a.test{path}", "status": 302}}}),
        ],
        json!({}),
    ))
    .await;
    let mut client = h1_client(port).await;
    from_backend(&send(&mut client, "a.test", "/1", &[]).await, "a");
    from_backend(&send(&mut client, "b.test", "/b/2", &[]).await, "b");
    let got = send(&mut client, "answer.test", "/3", &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "answered\n"));
    let got = send(&mut client, "b.test", "/not-b", &[]).await;
    assert_eq!(got.status, 404);
    let got = send(&mut client, "moved.test", "/x", &[]).await;
    assert_eq!(got.status, 302);
    assert_eq!(got.headers["location"], "http://a.test/x");
    from_backend(&send(&mut client, "a.test", "/again", &[]).await, "a");
    assert_eq!(
        proxy.total_connections(),
        1,
        "every request went over the one client connection"
    );
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn unmatched_request_gets_a_short_plain_text_404_and_the_connection_stays_open() {
    let (a, a_count) = echo_http_backend("a").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![forward_route("a", port, a, json!({"domains": "a.test"}))],
        json!({}),
    ))
    .await;
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(b"GET /nowhere HTTP/1.1\r\nHost: elsewhere.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 404);
    assert!(
        got.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        got.headers
    );
    let body = got.text();
    assert!(
        !body.trim().is_empty() && body.len() < 200,
        "a short text: {body:?}"
    );
    assert_eq!(a_count.load(std::sync::atomic::Ordering::SeqCst), 0);
    let got = conn
        .exchange(b"GET /here HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["backend"], "a");
    drop(conn);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn http2_routes_each_request_by_authority() {
    let (a, _) = echo_http_backend("a").await;
    let (b, _) = echo_http_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route("a", port, a, json!({"domains": "a.test"})),
            forward_route("b", port, b, json!({"domains": "*.b.test", "path": "/b/*"})),
        ],
        json!({}),
    ))
    .await;
    let mut client = h2_client(port).await;
    let authority = format!("a.test:{port}");
    let seen = from_backend(
        &h2_get(&mut client, &format!("http://{authority}/x?q=1")).await,
        "a",
    );
    assert_eq!(seen["uri"], "/x?q=1");
    assert_eq!(seen["headers"]["host"], authority.as_str());
    assert_eq!(seen["headers"]["x-forwarded-host"], authority.as_str());
    from_backend(&h2_get(&mut client, "http://x.y.b.test/b/1").await, "b");
    let got = h2_get(&mut client, "http://x.b.test/other").await;
    assert_eq!(got.status, 404);
    assert!(!got.text().trim().is_empty());
    let got = h2_get(&mut client, "http://c.test/").await;
    assert_eq!(got.status, 404);
    from_backend(&h2_get(&mut client, "http://a.test/again").await, "a");
    assert_eq!(proxy.total_connections(), 1);
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn curl_is_routed_by_host_over_http1_and_h2_prior_knowledge() {
    let (a, _) = echo_http_backend("a").await;
    let (b, _) = echo_http_backend("b").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![
            forward_route("a", port, a, json!({"domains": "a.test"})),
            forward_route("b", port, b, json!({"domains": "b.test"})),
        ],
        json!({}),
    ))
    .await;
    let url = format!("http://127.0.0.1:{port}/curl?x=1");
    let Some(run) = curl(&["-H", "Host: b.test", &url]).await else {
        return;
    };
    assert_eq!(run.status, 200, "{}", run.body);
    let seen: Value = serde_json::from_str(&run.body).expect("JSON");
    assert_eq!(seen["backend"], "b");
    assert_eq!(seen["uri"], "/curl?x=1");
    assert_eq!(seen["headers"]["host"], "b.test");
    let run = curl(&["--http2-prior-knowledge", "-H", "Host: a.test", &url])
        .await
        .expect("curl");
    assert_eq!(run.status, 200, "{}", run.body);
    let seen: Value = serde_json::from_str(&run.body).expect("JSON");
    assert_eq!(seen["backend"], "a");
    assert_eq!(seen["headers"]["host"], "a.test");
    let run = curl(&["--http2-prior-knowledge", "-H", "Host: c.test", &url])
        .await
        .expect("curl");
    assert_eq!(run.status, 404);
    assert!(!run.body.trim().is_empty());
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_stripped_and_host_is_kept_as_sent() {
    let (echo, _) = echo_http_backend("echo").await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![forward_route(
            "hop",
            port,
            echo,
            json!({"domains": "hop.test"}),
        )],
        json!({}),
    ))
    .await;
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(
            b"GET /hop?x=1 HTTP/1.1\r\n\
              Host: Hop.Test:8080\r\n\
              Connection: keep-alive, X-Secret\r\n\
              X-Secret: s\r\n\
              Keep-Alive: timeout=5\r\n\
              Proxy-Connection: keep-alive\r\n\
              TE: trailers\r\n\
              X-Kept: 1\r\n\
              \r\n",
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = got.json();
    let headers = &seen["headers"];
    for gone in ["connection", "x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the backend: {seen}"
        );
    }
    assert_eq!(headers["te"], "trailers", "TE: trailers is kept");
    assert_eq!(headers["x-kept"], "1");
    assert_eq!(headers["host"], "Hop.Test:8080");
    assert_eq!(seen["uri"], "/hop?x=1");
    drop(conn);
    // A non-WebSocket Upgrade, and a TE other than trailers.
    let mut conn = RawConn::connect(port).await;
    let got = conn
        .exchange(
            b"GET /up HTTP/1.1\r\n\
              Host: hop.test\r\n\
              Connection: Upgrade\r\n\
              Upgrade: h2c\r\n\
              TE: gzip\r\n\
              \r\n",
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.text());
    let seen = got.json();
    for gone in ["connection", "upgrade", "te"] {
        assert!(
            seen["headers"].get(gone).is_none(),
            "{gone} reached the backend: {seen}"
        );
    }
    drop(conn);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_stripped() {
    let (backend, count) = raw_http_backend(
        b"HTTP/1.1 200 OK\r\n\
          Content-Length: 2\r\n\
          Connection: x-hop\r\n\
          X-Hop: 1\r\n\
          Keep-Alive: timeout=5, max=100\r\n\
          Proxy-Connection: keep-alive\r\n\
          X-Kept: 1\r\n\
          \r\n\
          ok",
    )
    .await;
    let port = free_port();
    let proxy = start_proxy(routes_config(
        vec![forward_route(
            "hop",
            port,
            backend,
            json!({"domains": "hop.test"}),
        )],
        json!({}),
    ))
    .await;
    let mut conn = RawConn::connect(port).await;
    for _ in 0..2 {
        let got = conn
            .exchange(b"GET / HTTP/1.1\r\nHost: hop.test\r\n\r\n")
            .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "ok");
        for gone in ["x-hop", "keep-alive", "proxy-connection", "connection"] {
            assert!(got.header(gone).is_none(), "{gone}: {:?}", got.headers);
        }
        assert_eq!(got.header("x-kept"), Some("1"));
    }
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://hop.test/").await;
    assert_eq!(got.status, 200);
    assert!(got.headers.get("x-hop").is_none());
    assert_eq!(got.headers["x-kept"], "1");
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
    drop(conn);
    drop(h2);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn x_forwarded_headers_are_set_and_an_untrusted_chain_is_replaced() {
    let (echo, _) = echo_http_backend("echo").await;
    // 127.0.0.1 is not among the trusted proxies.
    for globals in [json!({}), json!({"trustedProxies": ["10.0.0.0/8"]})] {
        let port = free_port();
        let proxy = start_proxy(routes_config(
            vec![forward_route(
                "fwd",
                port,
                echo,
                json!({"domains": "fwd.test"}),
            )],
            globals,
        ))
        .await;
        let mut client = h1_client(port).await;
        let forged = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-port", "1"),
        ];
        for headers in [&[][..], &forged[..]] {
            let seen = from_backend(&send(&mut client, "fwd.test", "/", headers).await, "echo");
            let h = &seen["headers"];
            assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{seen}");
            assert_eq!(h["x-forwarded-proto"], "http");
            assert_eq!(h["x-forwarded-host"], "fwd.test");
            assert_eq!(h["x-forwarded-port"], port.to_string());
        }
        drop(client);
        wait_no_live(&proxy).await;
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_trusted_peer_chain_is_appended_to_and_its_proto_and_host_kept() {
    let (echo, _) = echo_http_backend("echo").await;
    for trusted in [json!("127.0.0.0/8"), json!(["10.0.0.0/8", "127.0.0.1"])] {
        let port = free_port();
        let proxy = start_proxy(routes_config(
            vec![forward_route(
                "fwd",
                port,
                echo,
                json!({"domains": "fwd.test"}),
            )],
            json!({"trustedProxies": trusted}),
        ))
        .await;
        let mut client = h1_client(port).await;
        let seen = from_backend(
            &send(
                &mut client,
                "fwd.test",
                "/",
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "orig.test"),
                    ("x-forwarded-port", "443"),
                ],
            )
            .await,
            "echo",
        );
        let h = &seen["headers"];
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{trusted}");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "orig.test");
        assert_eq!(h["x-forwarded-port"], "443");
        // A chain in two header lines is one chain.
        let seen = from_backend(
            &send(
                &mut client,
                "fwd.test",
                "/",
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "5.6.7.8"),
                ],
            )
            .await,
            "echo",
        );
        assert_eq!(
            seen["headers"]["x-forwarded-for"],
            "1.2.3.4, 5.6.7.8, 127.0.0.1"
        );
        // Nothing incoming: the proxy's own values.
        let seen = from_backend(&send(&mut client, "fwd.test", "/", &[]).await, "echo");
        let h = &seen["headers"];
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "fwd.test");
        assert_eq!(h["x-forwarded-port"], port.to_string());
        drop(client);
        wait_no_live(&proxy).await;
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn request_header_rules_set_every_template_and_remove() {
    let (echo, _) = echo_http_backend("echo").await;
    let port = free_port();
    let mut route = forward_route("rules", port, echo, json!({}));
    route["action"]["headers"] = json!({"request": {
        "x-domain": "{domain}",
        "x-client": "{clientIp}",
        "x-path": "{path}",
        "x-query": "{query}",
        "x-port": "{port}",
        "x-url": "https://{domain}:{port}{path}{query}",
        "x-replaced": "new",
        "cookie": null,
        "x-forwarded-host": null,
    }});
    let proxy = start_proxy(routes_config(vec![route], json!({}))).await;
    let mut client = h1_client(port).await;
    let seen = from_backend(
        &send(
            &mut client,
            "rules.test:8080",
            "/a/b%20c?x=1&y=2",
            &[
                ("cookie", "session=1"),
                ("x-replaced", "old"),
                ("x-domain", "forged"),
            ],
        )
        .await,
        "echo",
    );
    let h = &seen["headers"];
    assert_eq!(h["x-domain"], "rules.test", "{seen}");
    assert_eq!(h["x-client"], "127.0.0.1");
    assert_eq!(h["x-path"], "/a/b%20c");
    assert_eq!(h["x-query"], "?x=1&y=2");
    assert_eq!(h["x-port"], port.to_string());
    assert_eq!(
        h["x-url"],
        format!("https://rules.test:{port}/a/b%20c?x=1&y=2")
    );
    assert_eq!(h["x-replaced"], "new");
    assert!(h.get("cookie").is_none(), "{seen}");
    assert!(h.get("x-forwarded-host").is_none(), "{seen}");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["host"], "rules.test:8080");
    assert_eq!(seen["uri"], "/a/b%20c?x=1&y=2");
    // Without a query, {query} is empty.
    let seen = from_backend(
        &send(&mut client, "rules.test", "/plain", &[]).await,
        "echo",
    );
    let h = &seen["headers"];
    assert_eq!(h["x-query"], "");
    assert_eq!(h["x-path"], "/plain");
    assert_eq!(h["x-url"], format!("https://rules.test:{port}/plain"));
    drop(client);
    wait_no_live(&proxy).await;
}

#[tokio::test]
async fn response_header_rules_set_and_remove() {
    let (backend, _) = raw_http_backend(
        b"HTTP/1.1 200 OK\r\n\
          Content-Length: 5\r\n\
          Server: backend/1.0\r\n\
          X-Powered-By: backend\r\n\
          X-Kept: 1\r\n\
          \r\n\
          hello",
    )
    .await;
    let port = free_port();
    let mut route = forward_route("resp", port, backend, json!({}));
    route["action"]["headers"] = json!({"response": {
        "server": null,
        "x-route": "{domain}",
        "x-powered-by": "proxy {port}{path}",
    }});
    let proxy = start_proxy(routes_config(vec![route], json!({}))).await;
    let mut client = h1_client(port).await;
    let got = send(&mut client, "resp.test:1234", "/r?x=1", &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello");
    assert!(got.headers.get("server").is_none(), "{:?}", got.headers);
    assert_eq!(got.headers["x-route"], "resp.test");
    assert_eq!(got.headers["x-powered-by"], format!("proxy {port}/r"));
    assert_eq!(got.headers["x-kept"], "1");
    let mut h2 = h2_client(port).await;
    let got = h2_get(&mut h2, "http://other.test/h2").await;
    assert_eq!(got.status, 200);
    assert!(got.headers.get("server").is_none());
    assert_eq!(got.headers["x-route"], "other.test");
    drop(client);
    drop(h2);
    wait_no_live(&proxy).await;
}
