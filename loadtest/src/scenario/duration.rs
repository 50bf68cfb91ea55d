//! Human durations: `10` (seconds), `2.5`, `500ms`, `10s`, `2m`, `1h`; in TOML also a bare number.
//!
//! Invariants: results are finite, non-negative and at most [`MAX_SECS`]; anything else is an error
//! message (never a panic).

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Largest accepted duration (one week).
pub const MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// Parses a human duration.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let mult = match unit.trim() {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in duration {s:?} (use ms, s, m or h)")),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)"))?;
    from_secs(n * mult).map_err(|e| format!("{s:?}: {e}"))
}

/// Checks and converts seconds.
pub fn from_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("must be a non-negative number of seconds".to_string());
    }
    if secs > MAX_SECS {
        return Err(format!("must be at most {MAX_SECS} seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as written in a scenario file: a number of seconds or a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub Duration);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let dur = match Raw::deserialize(d)? {
            Raw::Int(i) => from_secs(i as f64),
            Raw::Float(f) => from_secs(f),
            Raw::Text(s) => parse(&s),
        };
        dur.map(Secs).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "secs_f64")]`: a `Duration` as fractional seconds in JSON.
pub mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes seconds as a float.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Reads seconds from a float, validated like scenario durations.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::from_secs(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        assert_eq!(parse("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse(" 2m ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations_are_errors() {
        for bad in ["", "x", "10q", "-1", "NaN", "1e30", "5 parsecs"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn toml_accepts_numbers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: Secs,
            b: Secs,
            c: Secs,
        }
        let t: T = toml::from_str("a = 3\nb = 0.25\nc = \"2m\"").unwrap();
        assert_eq!(
            (t.a.0, t.b.0, t.c.0),
            (Duration::from_secs(3), Duration::from_millis(250), Duration::from_secs(120))
        );
        let err = toml::from_str::<T>("a = -3\nb = 1\nc = 1").err().unwrap();
        assert!(err.message().contains("non-negative"), "{err}");
    }
}
