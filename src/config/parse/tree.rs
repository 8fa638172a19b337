//! Walking the config tree: the context that collects errors and warnings at field paths,
//! unknown-key checks with did-you-mean suggestions, and the `expect_*` shape checks.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{ConfigError, Warning};
use crate::config::units::{describe, parse_duration, parse_size, quoted};

#[derive(Default)]
pub(super) struct Ctx {
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<Warning>,
}

impl Ctx {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    pub(super) fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The value of `result`, or `None` after reporting its error at `path`.
    pub(super) fn report<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(path, message)).ok()
    }

    pub(super) fn unsupported(&mut self, path: &str, arrives_with: &str) {
        self.error(
            path,
            format!("not supported yet by this version (arrives with {arrives_with})"),
        );
    }
}

pub(super) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Reports every key of `object` that is not in `known`: a warning for `ignored` SmartProxy
/// options, an error (with a suggestion when one is close) for anything else.
pub(super) fn check_keys(
    ctx: &mut Ctx,
    path: &str,
    object: &Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
) {
    for key in object.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let key_path = child(path, key);
        if ignored.contains(&key.as_str()) {
            ctx.warn(
                &key_path,
                "SmartProxy option accepted but ignored by smartproxy",
            );
            continue;
        }
        let message = match suggest(key, known.iter().chain(ignored)) {
            Some(close) => format!("unknown key; did you mean `{close}`?"),
            None if known.len() <= 12 => {
                format!("unknown key; expected one of: {}", known.join(", "))
            }
            None => "unknown key".to_string(),
        };
        ctx.error(&key_path, message);
    }
}

/// The candidate closest to `key` (edit distance ≤ 2, ignoring case, `_` and `-`).
pub(super) fn suggest<'a>(
    key: &str,
    candidates: impl Iterator<Item = &'a &'a str>,
) -> Option<&'a str> {
    let wanted = normalize_key(key);
    let length = wanted.chars().count();
    candidates
        .map(|candidate| {
            (
                edit_distance(&wanted, &normalize_key(candidate)),
                *candidate,
            )
        })
        .filter(|(distance, _)| *distance <= 2 && *distance < length)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Levenshtein distance over chars.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        let mut row = current.iter_mut();
        if let Some(first) = row.next() {
            *first = i + 1;
        }
        let mut left = i + 1;
        for ((cb, cell), window) in b.iter().zip(row).zip(previous.windows(2)) {
            let (diagonal, up) = match window {
                [diagonal, up] => (*diagonal, *up),
                _ => (0, 0),
            };
            let substitution = diagonal + usize::from(ca != *cb);
            let value = substitution.min(up + 1).min(left + 1);
            *cell = value;
            left = value;
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous.last().copied().unwrap_or(0)
}

pub(super) fn expect_object<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<&'a Map<String, Value>> {
    match value {
        Value::Object(object) => Some(object),
        other => {
            ctx.error(path, format!("expected {what}, found {}", describe(other)));
            None
        }
    }
}

pub(super) fn expect_bool(ctx: &mut Ctx, path: &str, value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            ctx.error(
                path,
                format!("expected true or false, found {}", describe(other)),
            );
            None
        }
    }
}

pub(super) fn expect_str<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<&'a str> {
    match value {
        Value::String(s) => Some(s),
        other => {
            ctx.error(path, format!("expected {what}, found {}", describe(other)));
            None
        }
    }
}

/// A non-empty string.
pub(super) fn expect_text<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<&'a str> {
    let text = expect_str(ctx, path, value, what)?;
    if text.is_empty() {
        ctx.error(path, format!("expected {what}, found an empty string"));
        return None;
    }
    Some(text)
}

/// A non-negative whole number (a count).
pub(super) fn expect_count(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u64> {
    match value.as_u64() {
        Some(n) => Some(n),
        None => {
            ctx.error(
                path,
                format!(
                    "expected a whole number ≥ 0 (0 = unlimited), found {}",
                    describe(value)
                ),
            );
            None
        }
    }
}

pub(super) fn expect_duration(ctx: &mut Ctx, path: &str, value: &Value) -> Option<Duration> {
    ctx.report(path, parse_duration(value))
}

pub(super) fn expect_size(ctx: &mut Ctx, path: &str, value: &Value) -> Option<u64> {
    ctx.report(path, parse_size(value))
}

/// A string or a list of strings, each with its own path. `None` after a shape error.
pub(super) fn string_or_list<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    match value {
        Value::String(s) => Some(vec![(path.to_string(), s.as_str())]),
        Value::Array(items) => list_of_strings(ctx, path, items, what),
        other => {
            ctx.error(
                path,
                format!(
                    "expected {what} or a list of them, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

pub(super) fn expect_string_list<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &'a Value,
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    match value {
        Value::Array(items) => list_of_strings(ctx, path, items, what),
        other => {
            ctx.error(
                path,
                format!("expected a list of {what}, found {}", describe(other)),
            );
            None
        }
    }
}

fn list_of_strings<'a>(
    ctx: &mut Ctx,
    path: &str,
    items: &'a [Value],
    what: &str,
) -> Option<Vec<(String, &'a str)>> {
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, entry) in items.iter().enumerate() {
        let entry_path = item(path, i);
        match entry {
            Value::String(s) => out.push((entry_path, s.as_str())),
            other => {
                ctx.error(
                    &entry_path,
                    format!("expected {what}, found {}", describe(other)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Checks every entry of a string list with `check`, reporting each failure at its entry's path.
/// `None` if any entry failed.
pub(super) fn check_entries<T>(
    ctx: &mut Ctx,
    entries: &[(String, &str)],
    check: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (entry_path, text) in entries {
        match check(text) {
            Ok(checked) => out.push(checked),
            Err(message) => {
                ctx.error(entry_path, message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// An object whose values are all strings (`headers`-like maps); `allow_null` admits `null`
/// values (header removal). Returns how many entries it has.
pub(super) fn expect_string_map(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    allow_null: bool,
) -> Option<usize> {
    let object = expect_object(ctx, path, value, "an object of header names to values")?;
    let mut ok = true;
    for (key, entry) in object {
        match entry {
            Value::String(_) => {}
            Value::Null if allow_null => {}
            other => {
                let expected = if allow_null {
                    "a string (or null to remove the header)"
                } else {
                    "a string"
                };
                ctx.error(
                    &child(path, key),
                    format!("expected {expected}, found {}", describe(other)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(object.len())
}

/// `one of a, b or c`
pub(super) fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [only] => only.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

pub(super) fn expect_choice<'a>(
    ctx: &mut Ctx,
    path: &str,
    value: &Value,
    allowed: &[&'a str],
    what: &str,
) -> Option<&'a str> {
    match value {
        Value::String(s) => match allowed.iter().find(|a| **a == s.as_str()) {
            Some(found) => Some(*found),
            None => {
                ctx.error(
                    path,
                    format!("{} is not {what}; expected {}", quoted(s), one_of(allowed)),
                );
                None
            }
        },
        other => {
            ctx.error(
                path,
                format!(
                    "expected {what} ({}), found {}",
                    one_of(allowed),
                    describe(other)
                ),
            );
            None
        }
    }
}
