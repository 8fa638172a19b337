//! A route's `action`: its type, its targets, and its option objects (`tls`, `websocket`,
//! `headers`, `redirect`, `respond`, `loadBalancing`), which are shape-checked and refused.

use std::path::PathBuf;

use serde_json::Value;

use super::target::{target, targets};
use super::tree::{
    Ctx, check_keys, child, expect_bool, expect_choice, expect_duration, expect_object,
    expect_size, expect_str, expect_string_list, expect_string_map, expect_text, one_of,
};
use super::{WITH_ACME, WITH_HEALTH_CHECKS, WITH_HTTP, WITH_LOAD_BALANCING, WITH_SOCKET_HANDLERS};
use crate::config::units::{describe, quoted};
use crate::config::{Action, CertificateSource, RouteTls, TlsMode};

pub(super) const ACTION_KEYS: &[&str] = &[
    "type",
    "targets",
    "target",
    "tls",
    "websocket",
    "headers",
    "redirect",
    "respond",
    "protocol",
    "loadBalancing",
];

pub(super) const TLS_KEYS: &[&str] = &["mode", "certificate", "caFile", "rejectUnauthorized"];
const CERTIFICATE_KEYS: &[&str] = &["certFile", "keyFile", "cert", "key", "ca"];
const WEBSOCKET_KEYS: &[&str] = &[
    "enabled",
    "pingInterval",
    "pingTimeout",
    "maxPayloadSize",
    "subprotocols",
    "rewritePath",
    "allowedOrigins",
    "customHeaders",
];
const HEADERS_KEYS: &[&str] = &["request", "response"];
const REDIRECT_KEYS: &[&str] = &["to", "status"];
const RESPOND_KEYS: &[&str] = &["status", "body", "headers"];
const LOAD_BALANCING_KEYS: &[&str] = &["algorithm", "healthCheck"];

const ACTION_TYPES: &[&str] = &["forward", "redirect", "respond", "block", "socket-handler"];

pub(super) fn action(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Action> {
    let object = expect_object(ctx, path, value, "an object with `type` and `targets`")?;
    check_keys(ctx, path, object, ACTION_KEYS, &[]);

    let type_path = child(path, "type");
    let kind = match object.get("type") {
        None => {
            ctx.error(
                &type_path,
                format!(
                    "required key missing: the action type ({})",
                    one_of(ACTION_TYPES)
                ),
            );
            None
        }
        Some(value) => expect_choice(ctx, &type_path, value, ACTION_TYPES, "an action type"),
    };
    match kind {
        Some(k @ ("redirect" | "respond" | "block")) => ctx.error(
            &type_path,
            format!(
                "{} is not supported yet by this version (arrives with {WITH_HTTP}); \
                 only forward works so far",
                quoted(k)
            ),
        ),
        Some("socket-handler") => ctx.error(
            &type_path,
            format!(
                "\"socket-handler\" is not supported yet by this version (arrives with \
                 {WITH_SOCKET_HANDLERS}); only forward works so far"
            ),
        ),
        _ => {}
    }
    let forward = kind == Some("forward");

    let targets = match (object.get("targets"), object.get("target")) {
        (Some(list), Some(one)) => {
            targets(ctx, &child(path, "targets"), list);
            target(ctx, &child(path, "target"), one);
            ctx.error(
                path,
                "has both `target` and `targets`; give either one `target` or a list of `targets`",
            );
            None
        }
        (Some(list), None) => targets(ctx, &child(path, "targets"), list),
        (None, Some(one)) => target(ctx, &child(path, "target"), one).map(|t| vec![t]),
        (None, None) => {
            if forward {
                ctx.error(
                    &child(path, "targets"),
                    "required key missing: a forward action needs `targets` (a list of \
                     {host, port}) or `target` (one {host, port})",
                );
            }
            None
        }
    };

    let tls = match object.get("tls") {
        None => Some(None),
        Some(value) => tls(ctx, &child(path, "tls"), value).map(Some),
    };
    if let Some(value) = object.get("websocket") {
        websocket(ctx, &child(path, "websocket"), value);
    }
    if let Some(value) = object.get("headers") {
        header_ops(ctx, &child(path, "headers"), value);
    }
    if let Some(value) = object.get("redirect") {
        redirect(ctx, &child(path, "redirect"), value, kind);
    }
    if let Some(value) = object.get("respond") {
        respond(ctx, &child(path, "respond"), value, kind);
    }
    if let Some(value) = object.get("protocol") {
        let key_path = child(path, "protocol");
        // `tcp` is what forwarding does today; forcing HTTP needs the HTTP engine.
        if expect_choice(ctx, &key_path, value, &["tcp", "http"], "a protocol") == Some("http") {
            ctx.unsupported(&key_path, WITH_HTTP);
        }
    }
    if let Some(value) = object.get("loadBalancing") {
        load_balancing(ctx, &child(path, "loadBalancing"), value);
    }

    if forward {
        match (targets, tls) {
            (Some(targets), Some(tls)) => Some(Action {
                kind: crate::config::ActionKind::Forward,
                targets,
                tls,
                protocol: None,
                headers: Default::default(),
                websocket: Default::default(),
                load_balancing: Default::default(),
            }),
            _ => None,
        }
    } else {
        None
    }
}

fn tls(ctx: &mut Ctx, path: &str, value: &Value) -> Option<RouteTls> {
    let object = expect_object(ctx, path, value, "an object with `mode`")?;
    check_keys(ctx, path, object, TLS_KEYS, &[]);
    let modes = ["passthrough", "terminate", "terminate-and-reencrypt"];
    let mode = match object.get("mode") {
        None => {
            ctx.error(
                &child(path, "mode"),
                format!("required key missing: the TLS mode ({})", one_of(&modes)),
            );
            None
        }
        Some(value) => {
            match expect_choice(ctx, &child(path, "mode"), value, &modes, "a TLS mode") {
                Some("passthrough") => Some(TlsMode::Passthrough),
                Some("terminate") => Some(TlsMode::Terminate),
                Some(_) => Some(TlsMode::TerminateAndReencrypt),
                None => None,
            }
        }
    };
    let cert_path = child(path, "certificate");
    let certificate = match (object.get("certificate"), mode) {
        (None, _) => Ok(None),
        // Not read at all: passthrough has no use for it (a warning follows).
        (Some(_), Some(TlsMode::Passthrough)) => Ok(None),
        (Some(value), _) => certificate(ctx, &cert_path, value)
            // Loaded here too, so that `check` reports a missing or mismatched certificate.
            .filter(|source| match crate::tls::certs::load_source(source) {
                Ok(_) => true,
                Err(message) => {
                    ctx.error(&cert_path, message);
                    false
                }
            })
            .map(Some)
            .ok_or(()),
    };
    let ca_file = match object.get("caFile") {
        None => Ok(None),
        Some(value) => expect_text(ctx, &child(path, "caFile"), value, "a file path")
            .map(|p| Some(PathBuf::from(p)))
            .ok_or(()),
    };
    let reject_unauthorized = match object.get("rejectUnauthorized") {
        None => Some(true),
        Some(value) => expect_bool(ctx, &child(path, "rejectUnauthorized"), value),
    };

    let mode = mode?;
    match mode {
        TlsMode::Passthrough => {
            if object.contains_key("certificate") {
                ctx.warn(
                    &cert_path,
                    "ignored: passthrough forwards TLS untouched, the backend holds the certificate",
                );
            }
        }
        TlsMode::Terminate | TlsMode::TerminateAndReencrypt => {
            if !object.contains_key("certificate") {
                ctx.error(
                    &cert_path,
                    "required key missing: terminating TLS needs {certFile, keyFile} or \
                     {cert, key} (inline PEM)",
                );
            }
        }
    }
    if mode != TlsMode::TerminateAndReencrypt {
        for key in ["caFile", "rejectUnauthorized"] {
            if object.contains_key(key) {
                ctx.warn(
                    &child(path, key),
                    "ignored: only terminate-and-reencrypt verifies a backend certificate",
                );
            }
        }
    }
    // The CA file is read here too, so that `check` reports it; the system roots are read
    // only when the proxy starts.
    if let (TlsMode::TerminateAndReencrypt, Ok(Some(ca_file)), Some(true)) =
        (mode, &ca_file, reject_unauthorized)
        && let Err(message) = crate::tls::backend::client_config(Some(ca_file), true)
    {
        ctx.error(&child(path, "caFile"), message);
        return None;
    }
    Some(RouteTls {
        mode,
        certificate: certificate.ok()?,
        ca_file: ca_file.ok()?,
        reject_unauthorized: reject_unauthorized?,
    })
}

/// `{certFile, keyFile}` or inline `{cert, key}` (with an optional `ca` chain); `auto` is
/// ACME's.
fn certificate(ctx: &mut Ctx, path: &str, value: &Value) -> Option<CertificateSource> {
    let expected = "\"auto\", {certFile, keyFile} or {cert, key} (inline PEM)";
    let object = match value {
        Value::String(s) if s == "auto" => {
            ctx.unsupported(path, WITH_ACME);
            return None;
        }
        Value::Object(object) => object,
        other => {
            ctx.error(
                path,
                format!("expected {expected}, found {}", describe(other)),
            );
            return None;
        }
    };
    check_keys(ctx, path, object, CERTIFICATE_KEYS, &[]);
    let mut text = |key: &str| {
        object
            .get(key)
            .and_then(|v| expect_text(ctx, &child(path, key), v, "a non-empty string"))
            .map(str::to_string)
    };
    let (cert_file, key_file) = (text("certFile"), text("keyFile"));
    let (cert, key, ca) = (text("cert"), text("key"), text("ca"));
    let has = |k: &str| object.contains_key(k);
    let files = has("certFile") || has("keyFile");
    let inline = has("cert") || has("key");
    if files && inline {
        ctx.error(
            path,
            "mixes files (certFile/keyFile) with inline PEM (cert/key); give one pair",
        );
        return None;
    }
    if files {
        if has("ca") {
            ctx.error(
                &child(path, "ca"),
                "inline `ca` goes with inline `cert`; with files, put the chain in certFile \
                 after the certificate",
            );
        }
        if !(has("certFile") && has("keyFile")) {
            ctx.error(path, "needs both `certFile` and `keyFile`");
        }
        return Some(CertificateSource::Files {
            cert_file: PathBuf::from(cert_file?),
            key_file: PathBuf::from(key_file?),
        });
    }
    if inline {
        if !(has("cert") && has("key")) {
            ctx.error(path, "needs both `cert` and `key`");
        }
        let (cert, key) = (cert?, key?);
        let chain = match ca {
            Some(ca) => format!("{}\n{ca}", cert.trim_end()),
            None if has("ca") => return None,
            None => cert,
        };
        return Some(CertificateSource::Inline { cert: chain, key });
    }
    ctx.error(path, format!("expected {expected}"));
    None
}

fn websocket(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object") else {
        return;
    };
    check_keys(ctx, path, object, WEBSOCKET_KEYS, &[]);
    if let Some(v) = object.get("enabled") {
        expect_bool(ctx, &child(path, "enabled"), v);
    }
    for key in ["pingInterval", "pingTimeout"] {
        if let Some(v) = object.get(key) {
            expect_duration(ctx, &child(path, key), v);
        }
    }
    if let Some(v) = object.get("maxPayloadSize") {
        expect_size(ctx, &child(path, "maxPayloadSize"), v);
    }
    for key in ["subprotocols", "allowedOrigins"] {
        if let Some(v) = object.get(key) {
            expect_string_list(ctx, &child(path, key), v, "strings");
        }
    }
    if let Some(v) = object.get("rewritePath") {
        expect_str(ctx, &child(path, "rewritePath"), v, "a path");
    }
    if let Some(v) = object.get("customHeaders") {
        expect_string_map(ctx, &child(path, "customHeaders"), v, false);
    }
    ctx.unsupported(path, WITH_HTTP);
}

fn header_ops(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(
        ctx,
        path,
        value,
        "an object with `request` and/or `response`",
    ) else {
        return;
    };
    check_keys(ctx, path, object, HEADERS_KEYS, &[]);
    for key in HEADERS_KEYS {
        if let Some(v) = object.get(*key) {
            expect_string_map(ctx, &child(path, key), v, true);
        }
    }
    ctx.unsupported(path, WITH_HTTP);
}

/// `redirect`/`respond` belong to their action type, which is refused on its own; here only the
/// shape is checked, and a mismatch with the type is an error.
fn redirect(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) {
    let Some(object) = expect_object(ctx, path, value, "an object {to, status}") else {
        return;
    };
    check_keys(ctx, path, object, REDIRECT_KEYS, &[]);
    match object.get("to") {
        None => ctx.error(
            &child(path, "to"),
            "required key missing: the target URL (e.g. \"https://{domain}{path}\")",
        ),
        Some(v) => {
            expect_text(ctx, &child(path, "to"), v, "a URL");
        }
    }
    if let Some(v) = object.get("status") {
        let valid = v
            .as_u64()
            .is_some_and(|s| matches!(s, 301 | 302 | 303 | 307 | 308));
        if !valid {
            ctx.error(
                &child(path, "status"),
                format!(
                    "expected a redirect status (301, 302, 303, 307 or 308), found {}",
                    describe(v)
                ),
            );
        }
    }
    if kind.is_some_and(|k| k != "redirect") {
        ctx.error(path, "only used with `type: redirect`");
    }
}

fn respond(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) {
    let Some(object) = expect_object(ctx, path, value, "an object {status, body, headers}") else {
        return;
    };
    check_keys(ctx, path, object, RESPOND_KEYS, &[]);
    if let Some(v) = object.get("status")
        && !v.as_u64().is_some_and(|s| (100..=599).contains(&s))
    {
        ctx.error(
            &child(path, "status"),
            format!("expected an HTTP status (100-599), found {}", describe(v)),
        );
    }
    if let Some(v) = object.get("body") {
        expect_str(ctx, &child(path, "body"), v, "a string");
    }
    if let Some(v) = object.get("headers") {
        expect_string_map(ctx, &child(path, "headers"), v, false);
    }
    if kind.is_some_and(|k| k != "respond") {
        ctx.error(path, "only used with `type: respond`");
    }
}

fn load_balancing(ctx: &mut Ctx, path: &str, value: &Value) {
    let Some(object) = expect_object(ctx, path, value, "an object {algorithm}") else {
        return;
    };
    check_keys(ctx, path, object, LOAD_BALANCING_KEYS, &[]);
    if let Some(v) = object.get("algorithm") {
        let key_path = child(path, "algorithm");
        let algorithms = ["round-robin", "least-connections", "ip-hash"];
        if let Some("least-connections" | "ip-hash") =
            expect_choice(ctx, &key_path, v, &algorithms, "a load-balancing algorithm")
        {
            ctx.unsupported(&key_path, WITH_LOAD_BALANCING);
        }
    }
    if let Some(v) = object.get("healthCheck") {
        let key_path = child(path, "healthCheck");
        if expect_object(ctx, &key_path, v, "an object").is_some() {
            ctx.unsupported(&key_path, WITH_HEALTH_CHECKS);
        }
    }
}
