//! Durations and sizes as written in config files.
//!
//! - A duration is an integer number of milliseconds (SmartProxy's unit) or a string made of a
//!   number (decimals allowed) and a unit: `ms`, `s`, `m`, `h`, `d` (`"250ms"`, `"1.5s"`, `"4h"`).
//!   Zero turns a limit off; callers map `Duration::ZERO` to "no limit".
//! - A size is an integer number of bytes or a string made of a number and a unit: `B`,
//!   `KB`/`MB`/`GB` (powers of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), case-insensitive.
//!
//! Both parsers work on exact decimal arithmetic (no floating point for strings), never panic,
//! and explain the expected format in every error.

use std::time::Duration;

use serde_json::{Number, Value};

/// The longest duration a config may give: 36500 days (100 years). Longer values are almost
/// certainly mistakes and would overflow timer arithmetic; `0` is the way to turn a limit off.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);
/// `MAX_DURATION` as an operator writes it, for messages.
pub(crate) const MAX_DURATION_TEXT: &str = "36500d";

const DURATION_FORMAT: &str = "expected a duration: a whole number of milliseconds (e.g. 30000) \
     or a string with a unit ms, s, m, h or d (e.g. \"250ms\", \"1.5s\", \"15m\", \"4h\", \"7d\"); \
     0 turns the limit off";

const SIZE_FORMAT: &str = "expected a size: a whole number of bytes (e.g. 65536) or a string \
     with a unit B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), \
     e.g. \"64KiB\", \"1.5MiB\"";

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// At most this many fraction digits are taken into account; later digits are below a nanosecond
/// (durations) or a byte (sizes) and are dropped.
const MAX_FRACTION_DIGITS: usize = 18;

/// Parses a config duration (see the module docs). `Duration::ZERO` means "off".
pub fn parse_duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => {
            let ms = whole_number(n).map_err(|why| match why {
                NotWhole::Fraction => format!(
                    "{n} is not a whole number of milliseconds; write a string with a unit for \
                     fractions (e.g. \"1.5s\"); {DURATION_FORMAT}"
                ),
                other => format!("{n} {}; {DURATION_FORMAT}", other.describe()),
            })?;
            let nanos = u128::from(ms).saturating_mul(NANOS_PER_MILLI);
            duration_from_nanos(nanos).ok_or_else(|| too_long(&n.to_string()))
        }
        Value::String(s) => parse_duration_str(s),
        other => Err(format!("found {}; {DURATION_FORMAT}", describe(other))),
    }
}

/// Parses a config size in bytes (see the module docs).
pub fn parse_size(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => whole_number(n).map_err(|why| match why {
            NotWhole::Fraction => {
                format!("{n} is not a whole number of bytes; {SIZE_FORMAT}")
            }
            other => format!("{n} {}; {SIZE_FORMAT}", other.describe()),
        }),
        Value::String(s) => parse_size_str(s),
        other => Err(format!("found {}; {SIZE_FORMAT}", describe(other))),
    }
}

fn parse_duration_str(text: &str) -> Result<Duration, String> {
    let shown = quoted(text);
    let (number, unit) = split_amount(text)
        .map_err(|why| format!("{shown} {}; {DURATION_FORMAT}", why.describe()))?;
    let unit_nanos: u128 = match unit.to_ascii_lowercase().as_str() {
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "" if number.is_zero() => return Ok(Duration::ZERO),
        "" => {
            return Err(format!(
                "{shown} has no unit; write e.g. \"{text}ms\" or \"{text}s\", or the bare number \
                 for milliseconds; {DURATION_FORMAT}",
                text = text.trim()
            ));
        }
        _ => {
            return Err(format!(
                "{shown} has an unknown unit `{unit}`; {DURATION_FORMAT}"
            ));
        }
    };
    let nanos = number.scaled(unit_nanos).ok_or_else(|| too_long(&shown))?;
    duration_from_nanos(nanos).ok_or_else(|| too_long(&shown))
}

fn parse_size_str(text: &str) -> Result<u64, String> {
    let shown = quoted(text);
    let (number, unit) =
        split_amount(text).map_err(|why| format!("{shown} {}; {SIZE_FORMAT}", why.describe()))?;
    let unit_bytes: u128 = match unit.to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "" if number.is_zero() => return Ok(0),
        "" => {
            return Err(format!(
                "{shown} has no unit; write e.g. \"{text}B\" or \"{text}KiB\", or the bare \
                 number for bytes; {SIZE_FORMAT}",
                text = text.trim()
            ));
        }
        u @ ("k" | "m" | "g") => {
            let upper = u.to_ascii_uppercase();
            return Err(format!(
                "{shown} has an ambiguous unit `{unit}`; write {upper}iB (powers of 1024) or \
                 {upper}B (powers of 1000); {SIZE_FORMAT}"
            ));
        }
        _ => {
            return Err(format!(
                "{shown} has an unknown unit `{unit}`; {SIZE_FORMAT}"
            ));
        }
    };
    number
        .scaled(unit_bytes)
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(|| format!("{shown} is too large (more than {} bytes)", u64::MAX))
}

fn too_long(shown: &str) -> String {
    format!(
        "{shown} is longer than the longest allowed duration (36500d, 100 years); use 0 to turn \
         the limit off"
    )
}

fn duration_from_nanos(nanos: u128) -> Option<Duration> {
    if nanos > MAX_DURATION.as_nanos() {
        return None;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    let sub = u32::try_from(nanos % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, sub))
}

/// Why a JSON number is not a non-negative whole number.
enum NotWhole {
    Negative,
    Fraction,
    TooLarge,
    NotFinite,
}

impl NotWhole {
    fn describe(&self) -> &'static str {
        match self {
            NotWhole::Negative => "is negative",
            NotWhole::Fraction => "is not a whole number",
            NotWhole::TooLarge => "is too large",
            NotWhole::NotFinite => "is not a finite number",
        }
    }
}

/// A non-negative whole JSON number (`1000` or `1000.0`, as YAML's `1e3` gives) as `u64`.
fn whole_number(n: &Number) -> Result<u64, NotWhole> {
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    if n.as_i64().is_some() {
        // as_u64 failed, so this integer is negative.
        return Err(NotWhole::Negative);
    }
    let Some(f) = n.as_f64() else {
        return Err(NotWhole::NotFinite);
    };
    if !f.is_finite() {
        return Err(NotWhole::NotFinite);
    }
    if f < 0.0 {
        return Err(NotWhole::Negative);
    }
    if f.fract() != 0.0 {
        return Err(NotWhole::Fraction);
    }
    // 2^64 is exactly representable; anything at or above it does not fit.
    if f >= 18_446_744_073_709_551_616.0 {
        return Err(NotWhole::TooLarge);
    }
    // In range and whole, so the conversion is exact.
    Ok(f as u64)
}

/// Why a string is not `<number><unit>`.
enum BadAmount {
    Empty,
    Negative,
    NoNumber,
    BadNumber,
    TooLarge,
}

impl BadAmount {
    fn describe(&self) -> &'static str {
        match self {
            BadAmount::Empty => "is empty",
            BadAmount::Negative => "is negative",
            BadAmount::NoNumber => "does not start with a number",
            BadAmount::BadNumber => "is not a plain decimal number followed by a unit",
            BadAmount::TooLarge => "is too large",
        }
    }
}

/// A non-negative decimal number, exactly: `int + frac / 10^frac_digits`.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    int: u128,
    frac: u128,
    frac_digits: u32,
}

impl Decimal {
    fn is_zero(&self) -> bool {
        self.int == 0 && self.frac == 0
    }

    /// `self * unit`, rounded down to a whole number; `None` on overflow.
    fn scaled(&self, unit: u128) -> Option<u128> {
        let whole = self.int.checked_mul(unit)?;
        // frac < 10^18 and unit < 10^14 (a day in nanoseconds), so this cannot overflow u128;
        // checked all the same.
        let part = self
            .frac
            .checked_mul(unit)?
            .checked_div(10u128.checked_pow(self.frac_digits)?)?;
        whole.checked_add(part)
    }
}

/// Splits `" 1.5 s "` into the number 1.5 and the unit `"s"` (surrounding whitespace and
/// whitespace between number and unit are allowed).
fn split_amount(text: &str) -> Result<(Decimal, &str), BadAmount> {
    let text = text.trim();
    if text.is_empty() {
        return Err(BadAmount::Empty);
    }
    if text.starts_with('-') {
        return Err(BadAmount::Negative);
    }
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    if number.is_empty() {
        return Err(BadAmount::NoNumber);
    }
    let unit = unit.trim_start();
    if !unit.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(BadAmount::BadNumber);
    }
    Ok((parse_decimal(number)?, unit))
}

/// Parses `digits` or `digits.digits` exactly.
fn parse_decimal(number: &str) -> Result<Decimal, BadAmount> {
    let (int_part, frac_part) = match number.split_once('.') {
        Some((int_part, frac_part)) => (int_part, Some(frac_part)),
        None => (number, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || frac_part.is_some_and(|f| !all_digits(f)) {
        return Err(BadAmount::BadNumber);
    }
    let int = digits_value(int_part).ok_or(BadAmount::TooLarge)?;
    let frac_part = frac_part.unwrap_or("");
    let kept = frac_part.get(..MAX_FRACTION_DIGITS).unwrap_or(frac_part);
    let frac = digits_value(kept).ok_or(BadAmount::TooLarge)?;
    let frac_digits = u32::try_from(kept.len()).map_err(|_| BadAmount::TooLarge)?;
    Ok(Decimal {
        int,
        frac,
        frac_digits,
    })
}

fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?
            .checked_add(u128::from(b.wrapping_sub(b'0')))
    })
}

/// A string shown in an error message: quoted, and shortened when long.
pub(super) fn quoted(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() > MAX {
        let head: String = text.chars().take(MAX).collect();
        format!("{head:?}…")
    } else {
        format!("{text:?}")
    }
}

/// A value as the subject of a sentence (`"500ms" is shorter than 1s`): strings quoted, other
/// scalars as written, containers named.
pub(super) fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => quoted(s),
        other => describe(other),
    }
}

/// How a value is named after "found" in an error message: scalars are shown, containers are
/// named.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("the string {}", quoted(s)),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn d(v: Value) -> Result<Duration, String> {
        parse_duration(&v)
    }

    fn s(v: Value) -> Result<u64, String> {
        parse_size(&v)
    }

    #[test]
    fn duration_integer_is_milliseconds() {
        assert_eq!(d(json!(0)), Ok(Duration::ZERO));
        assert_eq!(d(json!(250)), Ok(Duration::from_millis(250)));
        assert_eq!(d(json!(14_400_000)), Ok(Duration::from_secs(4 * 3600)));
        // YAML's 1e3 arrives as a float with a whole value.
        assert_eq!(d(json!(1000.0)), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn duration_strings_with_units() {
        assert_eq!(d(json!("250ms")), Ok(Duration::from_millis(250)));
        assert_eq!(d(json!("1.5s")), Ok(Duration::from_millis(1500)));
        assert_eq!(d(json!("15m")), Ok(Duration::from_secs(900)));
        assert_eq!(d(json!("4h")), Ok(Duration::from_secs(14_400)));
        assert_eq!(d(json!("7d")), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(d(json!("0s")), Ok(Duration::ZERO));
        assert_eq!(d(json!("0")), Ok(Duration::ZERO));
        assert_eq!(d(json!("0.0")), Ok(Duration::ZERO));
        assert_eq!(d(json!(" 10 s ")), Ok(Duration::from_secs(10)));
        assert_eq!(d(json!("2H")), Ok(Duration::from_secs(7200)));
        assert_eq!(d(json!("0.5ms")), Ok(Duration::from_micros(500)));
        assert_eq!(d(json!("1.000000001s")), Ok(Duration::new(1, 1)));
        // Digits below a nanosecond are dropped.
        assert_eq!(d(json!("1.0000000019s")), Ok(Duration::new(1, 1)));
        assert_eq!(d(json!("36500d")), Ok(MAX_DURATION));
    }

    #[test]
    fn duration_errors_explain_the_format() {
        for (value, needle) in [
            (json!(-5), "-5 is negative"),
            (json!(1.5), "1.5 is not a whole number of milliseconds"),
            (json!("-5s"), "\"-5s\" is negative"),
            (json!("500"), "\"500\" has no unit"),
            (json!("5x"), "unknown unit `x`"),
            (json!("5min"), "unknown unit `min`"),
            (json!("NaN"), "does not start with a number"),
            (json!("nan"), "does not start with a number"),
            (json!(""), "is empty"),
            (json!("1.2.3s"), "is not a plain decimal number"),
            (json!(".5s"), "is not a plain decimal number"),
            (json!("5.s"), "is not a plain decimal number"),
            (json!("1h30m"), "is not a plain decimal number"),
            (json!("1e3ms"), "is not a plain decimal number"),
            (json!("36501d"), "longer than the longest allowed duration"),
            (json!(u64::MAX), "longer than the longest allowed duration"),
            (
                json!("99999999999999999999999999999999999999999999d"),
                "is too large",
            ),
            (json!(true), "found true"),
            (json!(null), "found null"),
            (json!([1]), "found a list"),
            (json!({"a": 1}), "found an object"),
        ] {
            let err = d(value.clone()).expect_err(&format!("{value} must be refused"));
            assert!(err.contains(needle), "{value}: {err:?} lacks {needle:?}");
            assert!(
                err.contains("expected a duration") || err.contains("longest allowed"),
                "{value}: {err:?} does not explain the format"
            );
        }
    }

    #[test]
    fn size_forms() {
        assert_eq!(s(json!(0)), Ok(0));
        assert_eq!(s(json!(65536)), Ok(65536));
        assert_eq!(s(json!(1e6)), Ok(1_000_000));
        assert_eq!(s(json!("10B")), Ok(10));
        assert_eq!(s(json!("64KiB")), Ok(65536));
        assert_eq!(s(json!("64kib")), Ok(65536));
        assert_eq!(s(json!("10MiB")), Ok(10 << 20));
        assert_eq!(s(json!("1GiB")), Ok(1 << 30));
        assert_eq!(s(json!("1KB")), Ok(1000));
        assert_eq!(s(json!("1kb")), Ok(1000));
        assert_eq!(s(json!("2MB")), Ok(2_000_000));
        assert_eq!(s(json!("3GB")), Ok(3_000_000_000));
        assert_eq!(s(json!("1.5MiB")), Ok(1_572_864));
        assert_eq!(s(json!("1.5 KiB")), Ok(1536));
        // Fractions of a byte are dropped.
        assert_eq!(s(json!("0.1KiB")), Ok(102));
        assert_eq!(s(json!("0")), Ok(0));
        assert_eq!(s(json!("17179869183GiB")), Ok(17_179_869_183 << 30));
    }

    #[test]
    fn size_errors_explain_the_format() {
        for (value, needle) in [
            (json!(-1), "-1 is negative"),
            (json!(1.5), "1.5 is not a whole number of bytes"),
            (json!(1e30), "is too large"),
            (json!("64"), "\"64\" has no unit"),
            (json!("64k"), "ambiguous unit `k`; write KiB"),
            (json!("64M"), "ambiguous unit `M`; write MiB"),
            (json!("1TB"), "unknown unit `TB`"),
            (json!("-1KiB"), "is negative"),
            (json!("KiB"), "does not start with a number"),
            (json!("17179869184GiB"), "is too large"),
            (json!(false), "found false"),
            (json!(null), "found null"),
        ] {
            let err = s(value.clone()).expect_err(&format!("{value} must be refused"));
            assert!(err.contains(needle), "{value}: {err:?} lacks {needle:?}");
            assert!(
                err.contains("expected a size") || err.contains("too large"),
                "{value}: {err:?} does not explain the format"
            );
        }
    }

    #[test]
    fn long_strings_are_shortened_in_messages() {
        let long = "x".repeat(500);
        let err = d(json!(long)).expect_err("refused");
        assert!(err.len() < 500, "{err}");
    }

    const DURATION_UNITS: [(&str, u64); 5] = [
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];

    const SIZE_UNITS: [(&str, u64); 7] = [
        ("B", 1),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
    ];

    fn any_json_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<String>().prop_map(Value::String),
            "[ -.0-9a-zA-Z]{0,24}".prop_map(Value::String),
            "-?[0-9]{0,40}(\\.[0-9]{0,40})?(ms|s|m|h|d|B|KiB|MB|gib|x)?".prop_map(Value::String),
            any::<u64>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
        ]
    }

    proptest! {
        #[test]
        fn parsers_never_panic(value in any_json_scalar()) {
            let _ = parse_duration(&value);
            let _ = parse_size(&value);
        }

        #[test]
        fn duration_round_trip(n in 0u64..1_000_000, unit in 0usize..DURATION_UNITS.len()) {
            let (name, nanos) = DURATION_UNITS[unit];
            let expected = u128::from(n) * u128::from(nanos);
            let parsed = parse_duration(&json!(format!("{n}{name}")));
            if expected <= MAX_DURATION.as_nanos() {
                prop_assert_eq!(parsed.map(|d| d.as_nanos()), Ok(expected));
            } else {
                prop_assert!(parsed.is_err());
            }
        }

        #[test]
        fn duration_decimal_round_trip(
            int in 0u64..10_000,
            frac in 0u64..1000,
            unit in 0usize..DURATION_UNITS.len(),
        ) {
            let (name, nanos) = DURATION_UNITS[unit];
            let text = format!("{int}.{frac:03}{name}");
            let expected = u128::from(int) * u128::from(nanos)
                + u128::from(frac) * u128::from(nanos) / 1000;
            prop_assert_eq!(parse_duration(&json!(text)).map(|d| d.as_nanos()), Ok(expected));
        }

        #[test]
        fn duration_milliseconds_round_trip(ms in 0u64..=MAX_DURATION.as_millis() as u64) {
            prop_assert_eq!(parse_duration(&json!(ms)), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn size_round_trip(
            n in 0u64..1_000_000,
            unit in 0usize..SIZE_UNITS.len(),
            lower in any::<bool>(),
        ) {
            let (name, bytes) = SIZE_UNITS[unit];
            let name = if lower { name.to_lowercase() } else { name.to_string() };
            prop_assert_eq!(parse_size(&json!(format!("{n}{name}"))), Ok(n * bytes));
        }

        #[test]
        fn size_bytes_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_size(&json!(n)), Ok(n));
        }
    }
}
