//! Loading a config file into a generic tree, and validating that tree by hand.
//!
//! The validator walks a `serde_json::Value` (whatever the file format was) and collects every
//! problem it finds, each with the path of the offending field (`routes[2].action.targets[0].port`)
//! and what was expected. Nothing stops at the first error. SmartProxy option names that this
//! implementation accepts but ignores produce warnings; every other unknown key is an error.
//! Features that exist in SmartProxy's schema but not yet here are validated for shape and then
//! refused with a "not supported yet" error, so a config never silently means less than it says.
//!
//! The modules follow the config's structure: `globals` (the top level), `routes` (a route and
//! its `match`), `target` (`action.targets`), `action` (the action and its option objects),
//! `security` (route-level `security`), `ip` (address patterns, wherever they appear) and
//! `headers` (header maps, header values and the `{word}` templates).
//! `tree` holds what they share: the path-tracking context `Ctx` and the `expect_*` checks.

mod action;
mod globals;
mod headers;
mod ip;
mod routes;
mod security;
mod target;
mod tree;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Config, Format};
use tree::Ctx;

// ---------------------------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------------------------

/// One problem in a config, at a field path such as `routes[2].action.targets[0].port`.
/// The path is empty for problems with the whole file (unreadable, syntax error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_entry(f, &self.path, &self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config (never empty when returned by the loaders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Something accepted but worth telling the operator, e.g. a SmartProxy option that is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_entry(f, &self.path, &self.message)
    }
}

fn write_entry(f: &mut fmt::Formatter<'_>, path: &str, message: &str) -> fmt::Result {
    if path.is_empty() {
        f.write_str(message)
    } else {
        write!(f, "{path}: {message}")
    }
}

fn single(message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError::new("", message)])
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Reads a config file; the format comes from the extension (`.json`, `.yaml`/`.yml`, `.toml`,
/// case-insensitive).
pub fn load_file(path: &Path) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let shown = path.display();
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("json") => Format::Json,
        Some("yaml" | "yml") => Format::Yaml,
        Some("toml") => Format::Toml,
        _ => {
            return Err(single(format!(
                "{shown}: unknown config file extension; expected .yaml, .yml, .json or .toml"
            )));
        }
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| single(format!("{shown}: cannot read the config file: {e}")))?;
    let value = parse_text(&text, format).map_err(|m| single(format!("{shown}: {m}")))?;
    from_value(&value)
}

/// Parses and validates config text in the given format.
pub fn from_text(text: &str, format: Format) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let value = parse_text(text, format).map_err(single)?;
    from_value(&value)
}

/// Validates a config tree (JSON shape, whatever format it came from).
pub fn from_value(value: &Value) -> Result<(Config, Vec<Warning>), ConfigErrors> {
    let mut ctx = Ctx::default();
    let config = globals::validate_config(&mut ctx, value);
    match config {
        Some(config) if ctx.errors.is_empty() => Ok((config, ctx.warnings)),
        _ => {
            if ctx.errors.is_empty() {
                ctx.error("", "the config is invalid");
            }
            Err(ConfigErrors(ctx.errors))
        }
    }
}

/// Text to tree; a syntax error is one message with the parser's line and column.
fn parse_text(text: &str, format: Format) -> Result<Value, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::Json => serde_json::from_str::<StrictJson>(text)
            .map(|strict| strict.0)
            .map_err(|e| format!("JSON syntax error: {e}")),
        Format::Yaml => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| format!("YAML syntax error: {}", e.without_snippet())),
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| toml_error(text, &e)),
    }
}

fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span().and_then(|span| text.get(..span.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML syntax error: {message}"),
    }
}

/// A JSON document read into a `Value`, refusing duplicate keys in an object (serde_json's own
/// `Value` keeps the last one silently; YAML and TOML parsers refuse duplicates themselves).
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        StrictJson::deserialize(deserializer).map(|strict| strict.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let StrictJson(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------------
// Refused features
// ---------------------------------------------------------------------------------------------

// What each refused feature arrives with, for the "not supported yet" messages.
const WITH_ACME: &str = "automatic certificates (ACME)";
const WITH_ADMIN: &str = "the admin API";
const WITH_METRICS: &str = "the admin API and metrics";
const WITH_JWT_AUTH: &str = "JWT authentication";
const WITH_DEFAULTS: &str = "route defaults";
const WITH_SOCKET_HANDLERS: &str = "socket handlers in the library";
const WITH_TARGET_OPTIONS: &str = "per-target options";
const WITH_WEBSOCKET_OPTIONS: &str = "more WebSocket options";
