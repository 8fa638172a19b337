//! A route's `action`: its type, its targets, and its option objects (`tls`, `protocol`,
//! `headers`, `websocket`, `loadBalancing`, and `redirect`/`respond` for those types).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::headers::{
    HeaderEntry, check_header_value, check_templates, check_writable_header, check_written_value,
    header_map,
};
use super::target::{target, targets};
use super::tree::{
    Ctx, check_keys, child, expect_bool, expect_choice, expect_duration, expect_object,
    expect_size, expect_str, expect_string_list, expect_string_map, expect_text, one_of,
};
use super::{WITH_ACME, WITH_SOCKET_HANDLERS, WITH_WEBSOCKET_OPTIONS};
use crate::config::units::{describe, quoted, shown};
use crate::config::{
    Action, ActionKind, ActionProtocol, Algorithm, CertificateSource, HeaderRules, HealthCheck,
    LoadBalancing, RouteTls, TlsMode, WebSocketOptions,
};

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
pub(super) const WEBSOCKET_KEYS: &[&str] = &[
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
pub(super) const REDIRECT_KEYS: &[&str] = &["to", "status"];
pub(super) const RESPOND_KEYS: &[&str] = &["status", "body", "headers"];
pub(super) const LOAD_BALANCING_KEYS: &[&str] = &["algorithm", "healthCheck"];
pub(super) const HEALTH_CHECK_KEYS: &[&str] = &["path", "interval", "timeout"];

const ACTION_TYPES: &[&str] = &["forward", "redirect", "respond", "block", "socket-handler"];
const REDIRECT_STATUSES: &[u64] = &[301, 302, 303, 307, 308];
const ALGORITHMS: &[&str] = &["round-robin", "least-connections", "ip-hash"];

/// What the proxy gets to see of a route's traffic, for the options that act on HTTP.
#[derive(Clone, Copy)]
enum Sight {
    /// A forward that may carry HTTP the proxy reads.
    Http,
    /// A forward whose bytes the proxy never reads; the reason, for messages.
    Opaque(&'static str),
    /// Not a forward: the proxy answers or closes the connection itself.
    Local,
}

/// Why a route's bytes are never read as HTTP (`None`: they may be).
pub(super) fn opaque_reason(
    tls: Option<&RouteTls>,
    protocol: Option<ActionProtocol>,
) -> Option<&'static str> {
    if tls.is_some_and(|tls| tls.mode == TlsMode::Passthrough) {
        Some("the proxy cannot see inside TLS it does not terminate (tls.mode: passthrough)")
    } else if protocol == Some(ActionProtocol::Tcp) {
        Some("a route with `protocol: tcp` relays the bytes without reading them")
    } else {
        None
    }
}

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
    if kind == Some("socket-handler") {
        ctx.error(
            &type_path,
            format!(
                "\"socket-handler\" is not supported yet by this version (arrives with \
                 {WITH_SOCKET_HANDLERS}); forward, redirect, respond and block work"
            ),
        );
    }
    let forward = kind == Some("forward");
    let local = matches!(kind, Some("redirect" | "respond" | "block"));

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
    if local {
        for key in ["targets", "target"] {
            if object.contains_key(key) {
                ctx.warn(
                    &child(path, key),
                    "ignored: only forward connects to targets",
                );
            }
        }
    }

    let tls_path = child(path, "tls");
    let tls = match object.get("tls") {
        None => Some(None),
        Some(value) => match (tls(ctx, &tls_path, value), kind) {
            (Some(tls), Some(kind @ ("redirect" | "respond" | "block")))
                if tls.mode != TlsMode::Terminate =>
            {
                local_tls_mode(ctx, &child(&tls_path, "mode"), tls.mode, kind);
                None
            }
            (tls, _) => tls.map(Some),
        },
    };

    let protocol = match object.get("protocol") {
        None => Some(None),
        Some(value) => protocol(ctx, &child(path, "protocol"), value, tls.as_ref(), kind),
    };

    let sight = if local {
        Sight::Local
    } else {
        let tls = tls.as_ref().and_then(Option::as_ref);
        match opaque_reason(tls, protocol.flatten()) {
            Some(why) => Sight::Opaque(why),
            None => Sight::Http,
        }
    };

    let headers = match object.get("headers") {
        None => Some(HeaderRules::default()),
        Some(value) => header_rules(ctx, &child(path, "headers"), value, sight),
    };
    let websocket = match object.get("websocket") {
        None => Some(WebSocketOptions::default()),
        Some(value) => websocket(ctx, &child(path, "websocket"), value, sight),
    };
    let load_balancing = match object.get("loadBalancing") {
        None => Some(LoadBalancing::default()),
        Some(value) => load_balancing(ctx, &child(path, "loadBalancing"), value, sight),
    };

    let redirect = object
        .get("redirect")
        .map(|value| redirect(ctx, &child(path, "redirect"), value, kind));
    let respond = object
        .get("respond")
        .map(|value| respond(ctx, &child(path, "respond"), value, kind));

    let (kind, targets) = match kind {
        Some("forward") => (Some(ActionKind::Forward), targets),
        Some("redirect") => (
            required_object(ctx, path, "redirect", redirect, REDIRECT_EXAMPLE),
            Some(Vec::new()),
        ),
        Some("respond") => (
            required_object(ctx, path, "respond", respond, RESPOND_EXAMPLE),
            Some(Vec::new()),
        ),
        Some("block") => (Some(ActionKind::Block), Some(Vec::new())),
        _ => (None, None),
    };

    Some(Action {
        kind: kind?,
        targets: targets?,
        tls: tls?,
        protocol: protocol?,
        headers: headers?,
        websocket: websocket?,
        load_balancing: load_balancing?,
    })
}

const REDIRECT_EXAMPLE: &str =
    "{to, status}, e.g. {to: \"https://{domain}{path}{query}\", status: 301}";
const RESPOND_EXAMPLE: &str =
    "{status, body, headers} (each optional: 200, empty, none), e.g. {status: 200, body: \"ok\"}";

/// The option object that `type: redirect`/`respond` needs: its parsed kind, or an error when
/// it is missing.
fn required_object(
    ctx: &mut Ctx,
    path: &str,
    key: &str,
    parsed: Option<Option<ActionKind>>,
    example: &str,
) -> Option<ActionKind> {
    match parsed {
        Some(kind) => kind,
        None => {
            ctx.error(
                &child(path, key),
                format!("required key missing: `type: {key}` needs `{key}: {example}`"),
            );
            None
        }
    }
}

/// A redirect, respond or block route answers (or closes) itself: only `terminate` fits.
fn local_tls_mode(ctx: &mut Ctx, path: &str, mode: TlsMode, kind: &str) {
    let (name, why) = match mode {
        TlsMode::Passthrough => (
            "passthrough",
            "passthrough forwards TLS untouched to a backend",
        ),
        _ => (
            "terminate-and-reencrypt",
            "terminate-and-reencrypt connects to a backend",
        ),
    };
    let block_hint = if kind == "block" {
        " (or leave `tls` out: a block route then closes TLS connections without answering)"
    } else {
        ""
    };
    ctx.error(
        path,
        format!(
            "{} cannot be used with `type: {kind}`: only terminate lets the proxy answer the \
             client itself ({why}); use `mode: terminate`{block_hint}",
            quoted(name)
        ),
    );
}

/// `action.protocol`: meaningful only where the proxy terminates TLS; elsewhere ignored with a
/// warning (and `None` in the model).
fn protocol(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    tls: Option<&Option<RouteTls>>,
    kind: Option<&str>,
) -> Option<Option<ActionProtocol>> {
    let protocol = match expect_choice(ctx, path, value, &["tcp", "http"], "a protocol")? {
        "tcp" => ActionProtocol::Tcp,
        _ => ActionProtocol::Http,
    };
    let Some(tls) = tls else {
        // `tls` itself is invalid (already reported): nothing more to say.
        return Some(Some(protocol));
    };
    let terminating = tls.as_ref().is_some_and(|tls| {
        matches!(
            tls.mode,
            TlsMode::Terminate | TlsMode::TerminateAndReencrypt
        )
    });
    if !terminating {
        ctx.warn(
            path,
            "ignored: `protocol` applies only to TLS the proxy terminates (tls.mode: terminate \
             or terminate-and-reencrypt)",
        );
        return Some(None);
    }
    if let (ActionProtocol::Tcp, Some(kind @ ("redirect" | "respond"))) = (protocol, kind) {
        ctx.error(
            path,
            format!(
                "\"tcp\" cannot be used with `type: {kind}`, which answers over HTTP; use \
                 \"http\" or leave `protocol` out"
            ),
        );
        return None;
    }
    Some(Some(protocol))
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

/// `action.websocket`: `enabled`, `pingInterval` and `pingTimeout` are read; the other
/// SmartProxy keys are shape-checked and refused.
fn websocket(ctx: &mut Ctx, path: &str, value: &Value, sight: Sight) -> Option<WebSocketOptions> {
    let object = expect_object(ctx, path, value, "an object")?;
    check_keys(ctx, path, object, WEBSOCKET_KEYS, &[]);
    let mut options = WebSocketOptions::default();
    let mut ok = true;
    if let Some(v) = object.get("enabled") {
        match expect_bool(ctx, &child(path, "enabled"), v) {
            Some(enabled) => options.enabled = enabled,
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("pingInterval", &mut options.ping_interval),
        ("pingTimeout", &mut options.ping_timeout),
    ] {
        if let Some(v) = object.get(key) {
            match expect_duration(ctx, &child(path, key), v) {
                Some(duration) => *slot = duration,
                None => ok = false,
            }
        }
    }

    // Not supported yet: shape first, then refused.
    let mut refuse = |ctx: &mut Ctx, key: &str, shape_ok: bool| {
        if shape_ok {
            ctx.unsupported(&child(path, key), WITH_WEBSOCKET_OPTIONS);
        }
        ok = false;
    };
    if let Some(v) = object.get("maxPayloadSize") {
        let shape_ok = expect_size(ctx, &child(path, "maxPayloadSize"), v).is_some();
        refuse(ctx, "maxPayloadSize", shape_ok);
    }
    for key in ["subprotocols", "allowedOrigins"] {
        if let Some(v) = object.get(key) {
            let shape_ok = expect_string_list(ctx, &child(path, key), v, "strings").is_some();
            refuse(ctx, key, shape_ok);
        }
    }
    if let Some(v) = object.get("rewritePath") {
        let shape_ok = expect_str(ctx, &child(path, "rewritePath"), v, "a path").is_some();
        refuse(ctx, "rewritePath", shape_ok);
    }
    if let Some(v) = object.get("customHeaders") {
        let shape_ok = expect_string_map(ctx, &child(path, "customHeaders"), v, false).is_some();
        refuse(ctx, "customHeaders", shape_ok);
    }
    if !ok {
        return None;
    }

    let pings = !options.ping_interval.is_zero();
    if pings && options.ping_timeout.is_zero() {
        ctx.error(
            &child(path, "pingTimeout"),
            "0 cannot be used while pingInterval is set: a client that does not answer a ping \
             within pingTimeout is closed; expected a duration > 0 (default 10s)",
        );
        return None;
    }
    match sight {
        Sight::Http => Some(options),
        Sight::Local => {
            ctx.warn(path, "ignored: only forward relays WebSockets");
            Some(WebSocketOptions::default())
        }
        Sight::Opaque(why) => {
            let mut refused = false;
            for (key, given) in [
                ("pingInterval", pings),
                ("pingTimeout", object.contains_key("pingTimeout")),
            ] {
                if given {
                    ctx.error(
                        &child(path, key),
                        format!("WebSocket pings need the WebSocket frames, but {why}"),
                    );
                    refused = true;
                }
            }
            if refused {
                return None;
            }
            if !options.enabled {
                ctx.warn(
                    &child(path, "enabled"),
                    format!(
                        "ignored: refusing WebSocket upgrades needs the HTTP request, but {why}"
                    ),
                );
            }
            Some(WebSocketOptions::default())
        }
    }
}

/// `action.headers: {request, response}`: header name → value (set, templates allowed) or
/// `null` (remove).
fn header_rules(ctx: &mut Ctx, path: &str, value: &Value, sight: Sight) -> Option<HeaderRules> {
    let object = expect_object(
        ctx,
        path,
        value,
        "an object with `request` and/or `response`",
    )?;
    check_keys(ctx, path, object, HEADERS_KEYS, &[]);
    let mut rules = HeaderRules::default();
    let mut ok = true;
    for (key, slot) in [
        ("request", &mut rules.request),
        ("response", &mut rules.response),
    ] {
        let Some(v) = object.get(key) else {
            continue;
        };
        match written_headers(ctx, &child(path, key), v, true) {
            Some(entries) => *slot = entries,
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    match sight {
        Sight::Http => Some(rules),
        Sight::Local => {
            ctx.warn(
                path,
                "ignored: only forward sends requests to a backend (a respond action sets its \
                 own headers in respond.headers)",
            );
            Some(HeaderRules::default())
        }
        Sight::Opaque(_) if rules.request.is_empty() && rules.response.is_empty() => {
            Some(HeaderRules::default())
        }
        Sight::Opaque(why) => {
            ctx.error(
                path,
                format!("header rules need the HTTP messages, but {why}"),
            );
            None
        }
    }
}

/// A map of headers the proxy writes: names it may write, values without control characters
/// and with known templates. `None` values are `null` (only where `allow_null`).
fn written_headers(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    allow_null: bool,
) -> Option<Vec<(String, Option<String>)>> {
    let entries = header_map(ctx, path, value, allow_null)?;
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for HeaderEntry {
        name, path, value, ..
    } in entries
    {
        let checked =
            check_writable_header(&name).and_then(|()| value.map_or(Ok(()), check_written_value));
        match checked {
            Ok(()) => out.push((name, value.map(str::to_string))),
            Err(message) => {
                ctx.error(&path, message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// `redirect: {to, status}` → `ActionKind::Redirect`. Given with another type, an error.
fn redirect(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) -> Option<ActionKind> {
    let object = expect_object(ctx, path, value, "an object {to, status}")?;
    check_keys(ctx, path, object, REDIRECT_KEYS, &[]);
    let to_path = child(path, "to");
    let to = match object.get("to") {
        None => {
            ctx.error(
                &to_path,
                "required key missing: where to send the client, e.g. \
                 \"https://{domain}{path}{query}\"",
            );
            None
        }
        Some(v) => expect_text(ctx, &to_path, v, "a URL or a path")
            .and_then(|to| ctx.report(&to_path, check_redirect_to(to))),
    };
    let status = match object.get("status") {
        None => Some(301),
        Some(v) => match v.as_u64().filter(|s| REDIRECT_STATUSES.contains(s)) {
            Some(status) => u16::try_from(status).ok(),
            None => {
                ctx.error(
                    &child(path, "status"),
                    format!(
                        "expected a redirect status (301, 302, 303, 307 or 308), found {}",
                        describe(v)
                    ),
                );
                None
            }
        },
    };
    if kind.is_some_and(|k| k != "redirect") {
        ctx.error(path, "only used with `type: redirect`");
        return None;
    }
    Some(ActionKind::Redirect {
        to: to?,
        status: status?,
    })
}

/// A redirect's `to`: an absolute URL (`scheme://…`) or a path (`/…`, also `//host/…`), with
/// known templates, fit for a Location header.
fn check_redirect_to(to: &str) -> Result<String, String> {
    check_header_value(to)?;
    let has_scheme = to.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if !(has_scheme || to.starts_with('/')) {
        return Err(format!(
            "{} is not a redirect target; expected an absolute URL (e.g. \
             \"https://{{domain}}{{path}}{{query}}\") or a path starting with / (e.g. \"/new\")",
            quoted(to)
        ));
    }
    check_templates(to)?;
    Ok(to.to_string())
}

/// `respond: {status, body, headers}` → `ActionKind::Respond`. Given with another type, an error.
fn respond(ctx: &mut Ctx, path: &str, value: &Value, kind: Option<&str>) -> Option<ActionKind> {
    let object = expect_object(ctx, path, value, "an object {status, body, headers}")?;
    check_keys(ctx, path, object, RESPOND_KEYS, &[]);
    let status = match object.get("status") {
        None => Some(200),
        // A 1xx is an interim answer, never the last one a client gets.
        Some(v) => match v.as_u64().filter(|s| (200..=599).contains(s)) {
            Some(status) => u16::try_from(status).ok(),
            None => {
                ctx.error(
                    &child(path, "status"),
                    format!(
                        "expected a final HTTP status (200-599), found {}",
                        describe(v)
                    ),
                );
                None
            }
        },
    };
    let body = match object.get("body") {
        None => Some(String::new()),
        Some(v) => expect_str(ctx, &child(path, "body"), v, "a string").map(str::to_string),
    };
    if let (Some(status), Some(body)) = (status, &body)
        && !body.is_empty()
        && (status == 204 || status == 304)
    {
        ctx.error(
            &child(path, "body"),
            format!("a {status} response has no body; leave `body` out or pick another status"),
        );
        return None;
    }
    let headers = match object.get("headers") {
        None => Some(Vec::new()),
        Some(v) => written_headers(ctx, &child(path, "headers"), v, false).map(|entries| {
            entries
                .into_iter()
                .map(|(name, value)| (name, value.unwrap_or_default()))
                .collect()
        }),
    };
    if kind.is_some_and(|k| k != "respond") {
        ctx.error(path, "only used with `type: respond`");
        return None;
    }
    Some(ActionKind::Respond {
        status: status?,
        body: body?,
        headers: headers?,
    })
}

/// `loadBalancing: {algorithm, healthCheck}`.
fn load_balancing(ctx: &mut Ctx, path: &str, value: &Value, sight: Sight) -> Option<LoadBalancing> {
    let object = expect_object(ctx, path, value, "an object {algorithm, healthCheck}")?;
    check_keys(ctx, path, object, LOAD_BALANCING_KEYS, &[]);
    let algorithm = match object.get("algorithm") {
        None => Some(Algorithm::RoundRobin),
        Some(v) => {
            let key_path = child(path, "algorithm");
            match expect_choice(ctx, &key_path, v, ALGORITHMS, "a load-balancing algorithm") {
                Some("least-connections") => Some(Algorithm::LeastConnections),
                Some("ip-hash") => Some(Algorithm::IpHash),
                Some(_) => Some(Algorithm::RoundRobin),
                None => None,
            }
        }
    };
    let health_check = match object.get("healthCheck") {
        None => Some(None),
        Some(v) => health_check(ctx, &child(path, "healthCheck"), v).map(Some),
    };
    let load_balancing = LoadBalancing {
        algorithm: algorithm?,
        health_check: health_check?,
    };
    if let Sight::Local = sight {
        ctx.warn(path, "ignored: only forward connects to targets");
        return Some(LoadBalancing::default());
    }
    Some(load_balancing)
}

/// `healthCheck: {path, interval, timeout}`: defaults `/`, 10s, 2s.
fn health_check(ctx: &mut Ctx, path: &str, value: &Value) -> Option<HealthCheck> {
    let object = expect_object(ctx, path, value, "an object {path, interval, timeout}")?;
    check_keys(ctx, path, object, HEALTH_CHECK_KEYS, &[]);
    let check_path = match object.get("path") {
        None => Some("/".to_string()),
        Some(v) => {
            let key_path = child(path, "path");
            expect_str(ctx, &key_path, v, "a path")
                .and_then(|text| ctx.report(&key_path, check_probe_path(text)))
        }
    };
    let mut duration = |key: &str, default: Duration| match object.get(key) {
        None => Some(default),
        Some(v) => {
            let key_path = child(path, key);
            match expect_duration(ctx, &key_path, v)? {
                Duration::ZERO => {
                    ctx.error(
                        &key_path,
                        format!(
                            "{} cannot be used here: expected a duration > 0 (leave \
                             `healthCheck` out to turn health checks off)",
                            shown(v)
                        ),
                    );
                    None
                }
                duration => Some(duration),
            }
        }
    };
    let interval = duration("interval", Duration::from_secs(10));
    let timeout = duration("timeout", Duration::from_secs(2));
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout > interval
    {
        let (key, subject) = match object.get("timeout") {
            Some(v) => ("timeout", format!("timeout {}", shown(v))),
            None => ("interval", "the default timeout (2s)".to_string()),
        };
        ctx.error(
            &child(path, key),
            format!(
                "{subject} is longer than the interval ({interval:?}); a check must end before \
                 the next one starts, so expected a timeout ≤ the interval"
            ),
        );
        return None;
    }
    Some(HealthCheck {
        path: check_path?,
        interval: interval?,
        timeout: timeout?,
    })
}

/// A health-check request path: starts with `/`, no spaces or control characters.
fn check_probe_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "{} is not a request path; expected one starting with / (e.g. /health)",
            quoted(text)
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} contains spaces or control characters; write them percent-encoded (%20)",
            quoted(text)
        ));
    }
    Ok(text.to_string())
}
