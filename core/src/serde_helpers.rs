//! serde and schemars helpers for the types Baton writes in its files: durations as `30s`.
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     #[serde(default, with = "baton_core::serde_helpers::duration_opt")]
//!     timeout: Option<std::time::Duration>,
//! }
//! let c: Config = serde_json::from_str(r#"{"timeout": "250ms"}"#).expect("a duration");
//! assert_eq!(c.timeout, Some(std::time::Duration::from_millis(250)));
//! ```

/// The JSON schema of a duration written as `30s`.
pub fn duration_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A duration: a number followed by ms, s, m or h (e.g. `250ms`, `30s`, `5m`).",
        "type": "string",
        "pattern": "^[0-9]+ *(ms|s|m|min|h)$"
    })
}

/// serde helpers for required durations written as `30s`.
pub mod duration_req {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `30s`.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_duration(*d))
    }

    /// Deserializes `30s`, `250ms`, `5m`, `2h`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// serde helpers for optional durations written as `30s`.
pub mod duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `30s`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes `30s`, `250ms`, `5m`, `2h`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| crate::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
