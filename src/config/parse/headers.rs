//! Header maps (`match.headers`, `action.headers.request`/`response`, `respond.headers`): header
//! names, header values, and the `{word}` templates allowed in values the proxy writes.

use serde_json::Value;

use super::tree::{Ctx, child, expect_object};
use crate::config::units::{describe, quoted};

/// The templates a written header value (and a redirect's `to`) may hold.
pub(super) const TEMPLATES: &[&str] = &["domain", "clientIp", "path", "query", "port"];

/// Headers the proxy manages itself (message framing and hop-by-hop headers): rules that set or
/// remove them would break the connection, so they are refused.
const MANAGED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One entry of a header map, after its name and value type were checked.
pub(super) struct HeaderEntry<'a> {
    /// Lowercase.
    pub(super) name: String,
    /// The name as written.
    pub(super) written: &'a str,
    /// The entry's field path (with the name as written).
    pub(super) path: String,
    /// `None` for `null` (only where `allow_null`).
    pub(super) value: Option<&'a str>,
}

/// An object of header names to strings (or `null` where `allow_null`). Names must be HTTP
/// tokens and are lowercased; two names that differ only in case are an error. The entries come
/// sorted by name (each name appears once, so their order carries no meaning). `None` after any
/// error.
pub(super) fn header_map<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    allow_null: bool,
) -> Option<Vec<HeaderEntry<'a>>> {
    let object = expect_object(ctx, path, value, "an object of header names to values")?;
    let mut entries: Vec<HeaderEntry<'a>> = Vec::with_capacity(object.len());
    let mut ok = true;
    for (key, entry) in object {
        let key_path = child(path, key);
        let value = match entry {
            Value::String(s) => Some(s.as_str()),
            Value::Null if allow_null => None,
            other => {
                let expected = if allow_null {
                    "a string (or null to remove the header)"
                } else {
                    "a string"
                };
                ctx.error(
                    &key_path,
                    format!("expected {expected}, found {}", describe(other)),
                );
                ok = false;
                continue;
            }
        };
        if let Err(message) = check_header_name(key) {
            ctx.error(&key_path, message);
            ok = false;
            continue;
        }
        let name = key.to_ascii_lowercase();
        if let Some(first) = entries.iter().find(|e| e.name == name) {
            ctx.error(
                &key_path,
                format!(
                    "{} and {} name the same header (header names are case-insensitive); \
                     keep one",
                    quoted(first.written),
                    quoted(key)
                ),
            );
            ok = false;
            continue;
        }
        entries.push(HeaderEntry {
            name,
            written: key,
            path: key_path,
            value,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    ok.then_some(entries)
}

/// A header name: one or more token characters (RFC 9110: letters, digits and
/// ``!#$%&'*+-.^_`|~``).
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.bytes().all(token) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a header name; expected letters, digits and !#$%&'*+-.^_`|~ only \
             (e.g. x-forwarded-prefix)",
            quoted(name)
        ))
    }
}

/// A header value: no line breaks or other control characters (a tab is allowed).
pub(super) fn check_header_value(value: &str) -> Result<(), String> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        Err(format!(
            "{} contains a line break or another control character, which a header value \
             cannot hold",
            quoted(value)
        ))
    } else {
        Ok(())
    }
}

/// A header the proxy writes (`action.headers`, `respond.headers`): its name must not be one
/// the proxy manages.
pub(super) fn check_writable_header(name: &str) -> Result<(), String> {
    if MANAGED_HEADERS.contains(&name) {
        Err(format!(
            "{} is managed by the proxy (message framing and hop-by-hop headers) and cannot be \
             set or removed here",
            quoted(name)
        ))
    } else {
        Ok(())
    }
}

/// Every `{word}` in `text` must be one of TEMPLATES (case-sensitive). Braces around anything
/// that is not a word (`{}`, `{"a": 1}`, a lone `{`) are kept as written.
pub(super) fn check_templates(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            break;
        };
        let word = &after[..close];
        let is_word = word.starts_with(|c: char| c.is_ascii_alphabetic())
            && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_word && !TEMPLATES.contains(&word) {
            let known = TEMPLATES
                .iter()
                .map(|t| format!("{{{t}}}"))
                .collect::<Vec<_>>()
                .join(", ");
            let hint = match TEMPLATES.iter().find(|t| t.eq_ignore_ascii_case(word)) {
                Some(close) => format!(" (did you mean {{{close}}}? templates are case-sensitive)"),
                None if matches!(word.to_ascii_lowercase().as_str(), "host" | "hostname") => {
                    " (did you mean {domain}, the Host without its port?)".to_string()
                }
                None => String::new(),
            };
            return Err(format!(
                "{} is not a template{hint}; the templates are {known}",
                quoted(&format!("{{{word}}}"))
            ));
        }
        rest = if is_word { &after[close + 1..] } else { after };
    }
    Ok(())
}

/// A value the proxy writes into a header: a valid header value with known templates.
pub(super) fn check_written_value(value: &str) -> Result<(), String> {
    check_header_value(value)?;
    check_templates(value)
}
