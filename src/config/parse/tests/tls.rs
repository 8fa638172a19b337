//! `match.domains`/`tlsVersion` are covered in routes.rs; this is `action.tls` (`parse/action.rs`).

use super::*;
use crate::config::{CertificateSource, RouteTls, TlsMode};
use crate::tls::certs::tests::TestCa;

fn tls_route(tls: Value) -> Value {
    route_with("/action/tls", tls)
}

#[test]
fn modes_and_certificates_load() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["app.test"]);
    let (config, warnings) = accept(tls_route(json!({"mode": "passthrough"})));
    assert!(warnings.is_empty());
    assert_eq!(
        config.routes[0].action.tls,
        Some(RouteTls {
            mode: TlsMode::Passthrough,
            certificate: None,
            ca_file: None,
            reject_unauthorized: true,
        })
    );

    let (config, _) = accept(tls_route(json!({
        "mode": "terminate", "certificate": {"cert": cert, "key": key}
    })));
    let tls = config.routes[0].action.tls.clone().expect("tls");
    assert_eq!(tls.mode, TlsMode::Terminate);
    assert_eq!(
        tls.certificate,
        Some(CertificateSource::Inline {
            cert: cert.clone(),
            key: key.clone()
        })
    );

    // Files, and an inline `ca` appended to the chain.
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_file, &cert).expect("write");
    std::fs::write(&key_file, &key).expect("write");
    let (config, _) = accept(tls_route(json!({
        "mode": "terminate-and-reencrypt",
        "certificate": {"certFile": cert_file, "keyFile": key_file},
        "caFile": "/etc/ssl/certs/ca-certificates.crt",
        "rejectUnauthorized": false
    })));
    let tls = config.routes[0].action.tls.clone().expect("tls");
    assert_eq!(tls.mode, TlsMode::TerminateAndReencrypt);
    assert!(!tls.reject_unauthorized);
    assert!(tls.ca_file.is_some());
    let (config, _) = accept(tls_route(json!({
        "mode": "terminate", "certificate": {"cert": cert, "key": key, "ca": ca.pem}
    })));
    match &config.routes[0]
        .action
        .tls
        .as_ref()
        .expect("tls")
        .certificate
    {
        Some(CertificateSource::Inline { cert: chain, .. }) => {
            assert!(chain.starts_with(cert.trim_end()) && chain.ends_with(&ca.pem));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn certificate_problems_are_reported_at_their_path() {
    let c = "routes[0].action.tls.certificate";
    let ca = TestCa::new();
    let (cert, _) = ca.leaf(&["a.test"]);
    let (_, other_key) = ca.leaf(&["b.test"]);
    assert_single(
        &refuse(tls_route(json!({"mode": "terminate"}))),
        &format!(
            "{c}: required key missing: terminating TLS needs {{certFile, keyFile}} or \
             {{cert, key}} (inline PEM)"
        ),
    );
    assert_single(
        &refuse(tls_route(
            json!({"mode": "terminate", "certificate": "auto"}),
        )),
        &format!(
            "{c}: not supported yet by this version (arrives with automatic certificates (ACME))"
        ),
    );
    assert_single(
        &refuse(tls_route(json!({
            "mode": "terminate",
            "certificate": {"certFile": "/nonexistent/c.pem", "keyFile": "/nonexistent/k.pem"}
        }))),
        &format!("{c}: /nonexistent/c.pem: No such file or directory (os error 2)"),
    );
    assert_has(
        &refuse(tls_route(json!({
            "mode": "terminate", "certificate": {"cert": cert, "key": other_key}
        }))),
        "key does not match the certificate",
    );
    assert_has(
        &refuse(tls_route(json!({
            "mode": "terminate", "certificate": {"cert": "not PEM", "key": "not PEM"}
        }))),
        "inline certificate: no certificate found",
    );
    assert_single(
        &refuse(tls_route(json!({
            "mode": "terminate", "certificate": {"certFile": "c.pem"}
        }))),
        &format!("{c}: needs both `certFile` and `keyFile`"),
    );
    assert_has(
        &refuse(tls_route(json!({
            "mode": "terminate",
            "certificate": {"certFile": "c.pem", "keyFile": "k.pem", "cert": "x", "key": "y"}
        }))),
        "mixes files (certFile/keyFile) with inline PEM (cert/key); give one pair",
    );
    let (cert, key) = ca.leaf(&["a.test"]);
    assert_has(
        &refuse(tls_route(json!({
            "mode": "terminate-and-reencrypt",
            "certificate": {"cert": cert, "key": key},
            "caFile": "/nonexistent/ca.pem"
        }))),
        "routes[0].action.tls.caFile: /nonexistent/ca.pem",
    );
    assert_eq!(
        refuse(tls_route(
            json!({"mode": "reencrypt", "rejectUnauthorized": "no"})
        )),
        [
            "routes[0].action.tls.mode: \"reencrypt\" is not a TLS mode; expected passthrough, \
             terminate or terminate-and-reencrypt",
            "routes[0].action.tls.rejectUnauthorized: expected true or false, found the string \
             \"no\"",
        ]
    );
}

#[test]
fn options_that_do_not_apply_warn() {
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]);
    let (_, auto_warnings) = accept(tls_route(json!({
        "mode": "passthrough", "certificate": "auto"
    })));
    assert_eq!(auto_warnings.len(), 1, "{auto_warnings:?}");
    let (_, warnings) = accept(tls_route(json!({
        "mode": "passthrough", "certificate": {"cert": "unread", "key": "unread"}
    })));
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "routes[0].action.tls.certificate: ignored: passthrough forwards TLS untouched, the \
          backend holds the certificate"
        ]
    );
    let (_, warnings) = accept(tls_route(json!({
        "mode": "terminate", "certificate": {"cert": cert, "key": key},
        "caFile": "ca.pem", "rejectUnauthorized": false
    })));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .all(|w| w.to_string().contains("only terminate-and-reencrypt"))
    );
}
