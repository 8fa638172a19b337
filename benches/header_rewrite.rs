//! The header work on a proxied HTTP request and its response, on header maps shaped like a
//! browser's request and a web application's response: hop-by-hop stripping, X-Forwarded-*,
//! and a route's rules with templates; each step alone and the whole pass. Every iteration
//! works on a fresh copy of the map, made outside the timed part.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use smartproxy::bench_api::{Forwarded, Templates, apply_rules, set_forwarded, strip_hop_by_hop};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 23));

fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for &(name, value) in pairs {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

/// A browser's request for a page, with a client-supplied X-Forwarded-For (not trusted, so
/// replaced) and hop-by-hop headers, one of them named by Connection.
fn request_headers() -> HeaderMap {
    map(&[
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.9,de;q=0.8"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://shop.example.com/catalog/shoes?page=2"),
        (
            "cookie",
            "session=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08; cart=3; \
             consent=analytics:0,ads:0; theme=dark; _ga=GA1.2.1234567890.1700000000; \
             _gid=GA1.2.987654321.1700000000; ab=checkout-v2",
        ),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("sec-fetch-user", "?1"),
        ("priority", "u=0, i"),
        ("x-request-id", "6a1f2c9e-41b7-4f5e-9d3a-0c2b8e7f1a55"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-debug-token", "abc123"),
        ("connection", "keep-alive, x-client-hop"),
        ("keep-alive", "timeout=5"),
        ("x-client-hop", "1"),
        ("te", "trailers"),
    ])
}

/// An application's response to that page.
fn response_headers() -> HeaderMap {
    map(&[
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "48213"),
        ("date", "Sat, 21 Nov 2026 12:00:00 GMT"),
        ("server", "gunicorn"),
        ("x-powered-by", "Django"),
        ("cache-control", "private, max-age=0, must-revalidate"),
        ("etag", "W/\"bc2f-18c7a5d3e40\""),
        ("vary", "Accept-Encoding, Cookie"),
        (
            "set-cookie",
            "session=9f86d081884c7d659a2feaa0c55ad015; Path=/; HttpOnly; Secure; SameSite=Lax",
        ),
        (
            "set-cookie",
            "cart=3; Path=/; Max-Age=2592000; Secure; SameSite=Lax",
        ),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5, max=1000"),
    ])
}

fn rules(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
        .collect()
}

fn bench(c: &mut Criterion) {
    let request = request_headers();
    let response = response_headers();
    let templates = Templates {
        domain: "shop.example.com",
        client_ip: CLIENT,
        path: "/catalog/shoes/42",
        query: "?colour=red&size=44",
        port: 443,
    };
    let forwarded = Forwarded {
        client_ip: CLIENT,
        trusted: false,
        proto: "https",
        host: Some("shop.example.com"),
        port: 443,
    };
    let request_rules = rules(&[
        ("x-real-ip", Some("{clientIp}")),
        ("x-original-url", Some("https://{domain}{path}{query}")),
        ("x-entry-port", Some("{port}")),
        ("x-tenant", Some("acme")),
        ("x-debug-token", None),
    ]);
    let response_rules = rules(&[
        ("server", None),
        ("x-powered-by", None),
        (
            "strict-transport-security",
            Some("max-age=63072000; includeSubDomains"),
        ),
        ("x-served-for", Some("{domain}")),
    ]);

    // What the whole request pass leaves, checked once.
    let mut done = request.clone();
    strip_hop_by_hop(&mut done);
    set_forwarded(&mut done, &forwarded);
    apply_rules(&mut done, &request_rules, &templates);
    for gone in ["connection", "keep-alive", "x-client-hop", "x-debug-token"] {
        assert!(!done.contains_key(gone), "{gone} should be gone");
    }
    assert_eq!(done["te"], "trailers");
    assert_eq!(done["x-forwarded-for"], "198.51.100.23");
    assert_eq!(
        done["x-original-url"],
        "https://shop.example.com/catalog/shoes/42?colour=red&size=44"
    );

    let mut group = c.benchmark_group("header_rewrite");
    group.bench_function("request/strip_hop_by_hop", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("request/set_forwarded", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| set_forwarded(black_box(h), black_box(&forwarded)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("request/apply_rules_5_with_templates", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| apply_rules(black_box(h), black_box(&request_rules), &templates),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("request/all", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| {
                strip_hop_by_hop(black_box(h));
                set_forwarded(h, black_box(&forwarded));
                apply_rules(h, black_box(&request_rules), &templates);
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("response/all", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| {
                strip_hop_by_hop(black_box(h));
                apply_rules(h, black_box(&response_rules), &templates);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
