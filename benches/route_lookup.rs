//! Picking a route among 10,000: by SNI on one TLS port (exact names and wildcards, a hit on
//! the first route, hits at the end of the table, a miss), and per HTTP request by Host and
//! path (first route, last route, miss).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use smartproxy::bench_api::{FirstBytes, HttpRequestFacts, Router};
use smartproxy::tls::TlsVersion;
use smartproxy::tls::client_hello::ClientHello;
use smartproxy::{Config, Format};

const ROUTES: usize = 10_000;
const TLS_PORT: u16 = 443;
const HTTP_PORT: u16 = 80;
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

fn route_json(name: &str, port: u16, matcher: &str, tls: &str) -> String {
    format!(
        r#"{{"name":"{name}","match":{{"ports":{port},{matcher}}},"action":{{"type":"forward","targets":[{{"host":"127.0.0.1","port":9000}}]{tls}}}}}"#
    )
}

fn router(routes: Vec<String>) -> Router {
    let text = format!(r#"{{"routes":[{}]}}"#, routes.join(","));
    let (config, _warnings) = Config::parse(&text, Format::Json).expect("benchmark config");
    assert_eq!(config.routes.len(), ROUTES);
    Router::new(&config.routes).expect("router")
}

/// Passthrough routes on one port; even ones match an exact name `svcN.example.com`, odd
/// ones a wildcard `*.svcN.example.net`.
fn sni_router() -> Router {
    router(
        (0..ROUTES)
            .map(|i| {
                let domain = if i % 2 == 0 {
                    format!("svc{i}.example.com")
                } else {
                    format!("*.svc{i}.example.net")
                };
                route_json(
                    &format!("sni-{i}"),
                    TLS_PORT,
                    &format!(r#""domains":["{domain}"]"#),
                    r#","tls":{"mode":"passthrough"}"#,
                )
            })
            .collect(),
    )
}

/// Plain-HTTP routes on one port: 1,000 hosts `appN.example.com`, each with ten path
/// prefixes `/p0/*` .. `/p9/*`; route i is host i / 10, path i % 10.
fn http_router() -> Router {
    router(
        (0..ROUTES)
            .map(|i| {
                route_json(
                    &format!("http-{i}"),
                    HTTP_PORT,
                    &format!(
                        r#""domains":["app{}.example.com"],"path":"/p{}/*""#,
                        i / 10,
                        i % 10
                    ),
                    "",
                )
            })
            .collect(),
    )
}

fn hello(name: &str) -> ClientHello {
    ClientHello {
        server_name: Some(name.to_string()),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        versions: vec![TlsVersion::Tls13, TlsVersion::Tls12],
    }
}

fn route_name(router: &Router, name: &str) -> Option<String> {
    router
        .select(TLS_PORT, CLIENT, FirstBytes::Tls(&hello(name)))
        .map(|r| r.name.clone())
}

fn bench_sni(c: &mut Criterion) {
    let router = sni_router();
    let cases = [
        ("exact_first", "svc0.example.com", Some("sni-0")),
        ("exact_at_end", "svc9998.example.com", Some("sni-9998")),
        ("wildcard_at_end", "a.svc9999.example.net", Some("sni-9999")),
        ("miss", "unknown.example.org", None),
    ];
    let mut group = c.benchmark_group("route_lookup_sni_10k");
    for (label, name, expected) in cases {
        assert_eq!(route_name(&router, name).as_deref(), expected, "{label}");
        let hello = hello(name);
        group.bench_function(label, |b| {
            b.iter(|| {
                router
                    .select(
                        black_box(TLS_PORT),
                        black_box(CLIENT),
                        FirstBytes::Tls(black_box(&hello)),
                    )
                    .is_some()
            })
        });
    }
    group.finish();
}

/// Request headers as a browser sends them (only Host and path decide here, but a route
/// with header conditions would read these).
fn browser_headers(host: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", host),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

fn bench_http(c: &mut Criterion) {
    let router = http_router();
    let cases = [
        (
            "first",
            "app0.example.com",
            "/p0/index.html",
            Some("http-0"),
        ),
        (
            "at_end",
            "app999.example.com",
            "/p9/items/42",
            Some("http-9999"),
        ),
        ("miss", "app999.example.com", "/elsewhere", None),
    ];
    let mut group = c.benchmark_group("route_lookup_http_10k");
    for (label, host, path, expected) in cases {
        let headers = browser_headers(host);
        let facts = HttpRequestFacts {
            host: Some(host),
            path,
            headers: &headers,
        };
        let found = router
            .select_http(HTTP_PORT, CLIENT, false, &facts)
            .map(|r| r.name.clone());
        assert_eq!(found.as_deref(), expected, "{label}");
        group.bench_function(label, |b| {
            b.iter(|| {
                router
                    .select_http(
                        black_box(HTTP_PORT),
                        black_box(CLIENT),
                        false,
                        black_box(&facts),
                    )
                    .is_some()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sni, bench_http);
criterion_main!(benches);
